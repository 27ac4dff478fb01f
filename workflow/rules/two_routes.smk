# two_routes: the paper's figure targets and paper-only rules. Spec: ../shared/papers/two_routes.md
# Grids per scale live in papers/two_routes/paper.yaml; targets exist when two_routes is among config['papers'].

if "two_routes" in PLAN.papers:
    pass  # fig_two_routes_* / tab_two_routes_* targets go here (see workflow/rules/nodepert.smk)
