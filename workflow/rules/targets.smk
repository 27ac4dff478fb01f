# The named targets, generated from papers/<paper>/paper.yaml through PLAN (nothing restated here):
#   fig_<paper>_* / tab_<paper>_*   one rule per figure or table of every configured paper:
#                                   results/<paper>/<target>.{csv,png,pdf} (tab_*: and .html)
#   <paper>_all                     every figure and table of that paper at the configured scale
#                                   (bpfree, two_routes and arena: named after the paper, impls.common.plan.paper_target)
# A paper that is not in config['papers'] has no targets. The generic rules (data, train, figures)
# build the files.
from impls.common.plan import paper_target


for _paper in PLAN.papers:
    for _target in PLAN.targets(_paper):

        rule:
            name:
                _target
            input:
                figure_outputs(_target),
            localrule: True

    rule:
        name:
            paper_target(_paper)
        input:
            paper_figure_outputs(_paper),
        localrule: True
