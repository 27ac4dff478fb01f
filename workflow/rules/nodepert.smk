# Node perturbation (Mehta et al.): the paper's figure targets. Spec: ../shared/papers/nodepert.md
# Grids per scale live in papers/nodepert/paper.yaml; the impl is impls/nodepert (JAX); the
# paper-only aggregations and plots are impls/nodepert/figures.py.

# Targets exist when nodepert is among config['papers'].

if "nodepert" in PLAN.papers:

    rule fig_nodepert_lr:
        # spec F1: test accuracy vs epoch, NP and SGD at four learning rates
        input:
            figure_outputs("fig_nodepert_lr"),
        localrule: True

    rule fig_nodepert_depth:
        # spec F4: final accuracy vs learning rate per depth, NP and SGD, plus box panel
        input:
            figure_outputs("fig_nodepert_depth"),
        localrule: True

    rule fig_nodepert_width:
        # spec F5: final accuracy vs learning rate per width, NP and SGD, plus box panel
        input:
            figure_outputs("fig_nodepert_width"),
        localrule: True

    rule fig_nodepert_adam:
        # spec F11: box plots of final accuracy for NP, SGD, NP-Adam, SGD-Adam
        input:
            figure_outputs("fig_nodepert_adam"),
        localrule: True

    rule fig_nodepert_crash_timing:
        # spec F9: first-crash epoch vs learning rate over seeds (crash / no crash / no learning)
        input:
            figure_outputs("fig_nodepert_crash_timing"),
        localrule: True

    rule fig_nodepert_crash_timing_sgd:
        # spec §3: the committed SGD crash-timing experiment (learning rates 2-20)
        input:
            figure_outputs("fig_nodepert_crash_timing_sgd"),
        localrule: True

    rule fig_nodepert_appendix:
        # spec F12 (code only): weight decay not scaled by lr, linear networks, batch size at equal updates
        input:
            figure_outputs("fig_nodepert_appendix"),
        localrule: True

    rule fig_nodepert_linesearch:
        # spec F6: one-step loss change vs step size from an SGD checkpoint (evaluate-stage analysis)
        input:
            figure_outputs("fig_nodepert_linesearch"),
        localrule: True

    rule fig_nodepert_budget_gap:
        # spec F10: gap to SGD vs epoch budget, conv (conv-base) and fully connected panels
        input:
            figure_outputs("fig_nodepert_budget_gap"),
        localrule: True

    rule fig_nodepert_conv:
        # spec F2: All-CNN-A, test accuracy vs epoch, NP and SGD per learning rate (convolutional NP)
        input:
            figure_outputs("fig_nodepert_conv"),
        localrule: True

    rule fig_nodepert_conv_small:
        # spec F3 (optional): conv-base, test accuracy vs epoch, NP and SGD per learning rate
        input:
            figure_outputs("fig_nodepert_conv_small"),
        localrule: True

    rule fig_nodepert_crash_dynamics:
        # spec F8: per-minibatch replay around NP's first crash (evaluate-stage analysis, replay.py)
        input:
            figure_outputs("fig_nodepert_crash_dynamics"),
        localrule: True

    rule nodepert_all:
        # every nodepert figure at the configured scale (benchmarks/bench_smoke_dag.sh times it)
        input:
            paper_figure_outputs("nodepert"),
        localrule: True
