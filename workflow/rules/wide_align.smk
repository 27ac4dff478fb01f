# wide_align: the paper's figure targets. Spec: ../shared/papers/wide_align.md
# Grids per scale live in papers/wide_align/paper.yaml; targets exist when wide_align is among config['papers'].
# Every target aggregates and plots through the generic rules (figures.smk) with wide_align's own
# aggregate/plot functions (impls/wide_align/figures.py); runs shared by several targets train once.
# The alignment scores are computed at the evaluate stage (impls/wide_align/evaluate.py) from
# snapshots saved only at the scored epochs.

if "wide_align" in PLAN.papers:

    rule fig_wide_align_score_width:
        # per-layer alignment score (and shuffled control) vs width, one BP run per width
        input:
            figure_outputs("fig_wide_align_score_width"),
        localrule: True

    rule fig_wide_align_score_time:
        # alignment score (and control) vs epoch at the largest width
        input:
            figure_outputs("fig_wide_align_score_time"),
        localrule: True

    rule fig_wide_align_width:
        # validation (and test-set) accuracy vs width per rule, best lr
        input:
            figure_outputs("fig_wide_align_width"),
        localrule: True

    rule fig_wide_align_lr:
        # validation accuracy vs learning rate per rule and width
        input:
            figure_outputs("fig_wide_align_lr"),
        localrule: True

    rule fig_wide_align_standard_param:
        # Adam + standard parameterisation vs width
        input:
            figure_outputs("fig_wide_align_standard_param"),
        localrule: True

    rule fig_wide_align_small_data:
        # validation accuracy vs training-set size
        input:
            figure_outputs("fig_wide_align_small_data"),
        localrule: True

    rule fig_wide_align_prop:
        # Align-prop vs width over BP / Align-ada / Align-zero
        input:
            figure_outputs("fig_wide_align_prop"),
        localrule: True

    rule fig_wide_align_seeds:
        # mean ± sd over seeds
        input:
            figure_outputs("fig_wide_align_seeds"),
        localrule: True

    rule fig_wide_align_time:
        # seconds per epoch (+ validation pass) vs width per rule
        input:
            figure_outputs("fig_wide_align_time"),
        localrule: True

    rule fig_wide_align_add:
        # Add task: best train/test loss vs hidden units per rule, with chance
        input:
            figure_outputs("fig_wide_align_add"),
        localrule: True

    rule tab_wide_align_imagenet:
        # top-1 validation accuracy per rule (ImageNet stand-ins, see README)
        input:
            figure_outputs("tab_wide_align_imagenet"),
        localrule: True

    rule wide_align_all:
        # every wide_align target at the configured scale
        input:
            paper_figure_outputs("wide_align"),
        localrule: True
