# bpfree: the paper's figure targets and paper-only rules. Spec: ../shared/papers/bpfree.md
# Grids per scale live in papers/bpfree/paper.yaml; targets exist when bpfree is among config['papers'].

if "bpfree" in PLAN.papers:
    pass  # fig_bpfree_* / tab_bpfree_* targets go here (see workflow/rules/nodepert.smk)
