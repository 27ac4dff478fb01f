# Node perturbation (Mehta et al.): the paper's figure targets. Spec: ../shared/papers/nodepert.md
# Grids per scale live in papers/nodepert/paper.yaml; the impl is impls/nodepert (JAX).

# Targets exist when nodepert is among config['papers'].

if "nodepert" in PLAN.papers:

    rule fig_nodepert_lr:
        # spec F1: test accuracy vs epoch, NP and SGD at four learning rates
        input:
            figure_outputs("fig_nodepert_lr"),
        localrule: True
