# wide_align: the paper's figure targets and paper-only rules. Spec: ../shared/papers/wide_align.md
# Grids per scale live in papers/wide_align/paper.yaml; targets exist when wide_align is among config['papers'].

if "wide_align" in PLAN.papers:
    pass  # fig_wide_align_* / tab_wide_align_* targets go here (see workflow/rules/nodepert.smk)
