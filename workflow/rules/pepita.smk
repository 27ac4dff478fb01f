# pepita: the paper's figure targets and paper-only rules. Spec: ../shared/papers/pepita.md
# Grids per scale live in papers/pepita/paper.yaml; targets exist when pepita is among config['papers'].

if "pepita" in PLAN.papers:
    pass  # fig_pepita_* / tab_pepita_* targets go here (see workflow/rules/nodepert.smk)
