# pepita: the paper's figure targets and paper-only rules. Spec: ../shared/papers/pepita.md
# Grids per scale live in papers/pepita/paper.yaml; targets exist when pepita is among config['papers'].
# Every target aggregates and plots through the generic rules (figures.smk) with pepita's own
# aggregate/plot functions (impls/pepita/figures.py); the runs are shared across targets.

if "pepita" in PLAN.papers:

    rule tab_pepita_accuracy:
        # main table: BP, FA, DRTP, PEPITA x {FC, conv} x datasets, mean ± std over seeds
        input:
            figure_outputs("tab_pepita_accuracy"),
        localrule: True

    rule fig_pepita_curves:
        # test accuracy vs epoch of the main-table runs, panel per arch x dataset, line per rule
        input:
            figure_outputs("fig_pepita_curves"),
        localrule: True

    rule tab_pepita_slowness:
        # hyperbolic fit acc_max X/(s + X) of every main-table curve, with the fitted curves
        input:
            figure_outputs("tab_pepita_slowness"),
        localrule: True

    rule fig_pepita_control:
        # PEPITA vs F = 0 vs random input perturbation k in {0.01, 0.1, 1}
        input:
            figure_outputs("fig_pepita_control"),
        localrule: True

    rule fig_pepita_alignment:
        # test accuracy, angle between F and (W2 W1)^T, and ||W1|| over epochs
        input:
            figure_outputs("fig_pepita_alignment"),
        localrule: True

    rule fig_pepita_tutorial_check:
        # our CIFAR-10 FC curve against the tutorial notebook's saved run (paper scale)
        input:
            figure_outputs("fig_pepita_tutorial_check"),
        localrule: True

    rule fig_pepita_conv_filters:
        # learned conv filters of PEPITA and BP
        input:
            figure_outputs("fig_pepita_conv_filters"),
        localrule: True

    rule fig_pepita_sweeps:
        # code switches: F scale, depth, ERINsign
        input:
            figure_outputs("fig_pepita_sweeps"),
        localrule: True

    rule pepita_all:
        # every pepita target at the configured scale
        input:
            paper_figure_outputs("pepita"),
        localrule: True
