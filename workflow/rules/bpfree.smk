# bpfree: the paper's figure targets and paper-only rules. Spec: ../shared/papers/bpfree.md
# Grids per scale live in papers/bpfree/paper.yaml; targets exist when bpfree is among config['papers'].
# The impl is impls/bpfree (JAX); the generic rules (dataset, batch_spec, train, evaluate,
# aggregate, plot) do the work: each target only names the figure files it needs.

if "bpfree" in PLAN.papers:

    rule fig_bpfree_train_error:
        # README img_1: training error vs epoch (stage 2: 500x5 tanh, Adam 1e-4, bp/dfa/drtp/cce)
        input:
            figure_outputs("fig_bpfree_train_error"),
        localrule: True

    rule fig_bpfree_test_error:
        # README img_2: test error vs epoch, same runs
        input:
            figure_outputs("fig_bpfree_test_error"),
        localrule: True

    rule fig_bpfree_lr_sweep:
        # notebook stage 1: best training error vs learning rate per rule
        input:
            figure_outputs("fig_bpfree_lr_sweep"),
        localrule: True

    rule fig_bpfree_bp_cosine:
        # cosine of each hidden layer's update with the backprop gradient (stage-2 runs)
        input:
            figure_outputs("fig_bpfree_bp_cosine"),
        localrule: True

    rule fig_bpfree_weight_alignment:
        # W_l vs B_{l-1} B_lᵀ and W_out vs B_L alignment (stage-2 runs, corrected definitions)
        input:
            figure_outputs("fig_bpfree_weight_alignment"),
        localrule: True

    rule fig_bpfree_trackers:
        # per-layer local loss, update and weight norms (stage-2 runs)
        input:
            figure_outputs("fig_bpfree_trackers"),
        localrule: True

    rule tab_bpfree_grid:
        # rule x activation x architecture x batch norm at the best lr (DRTP + ReLU diverges)
        input:
            figure_outputs("tab_bpfree_grid"),
        localrule: True

    rule fig_bpfree_reconstruction:
        # autoencoders by bp, dfa, LL-mse with sample reconstructions
        input:
            figure_outputs("fig_bpfree_reconstruction"),
        localrule: True

    rule tab_bpfree_dfa:
        # Nøkland 2016 settings: BP / FA / DFA
        input:
            figure_outputs("tab_bpfree_dfa"),
        localrule: True

    rule tab_bpfree_drtp:
        # Frenkel et al. 2021 settings: BP / FA / DFA / DRTP
        input:
            figure_outputs("tab_bpfree_drtp"),
        localrule: True

    rule tab_bpfree_local_errors:
        # Mostafa et al. 2018 placeholder: LL-cce / LL-mse vs FA vs BP
        input:
            figure_outputs("tab_bpfree_local_errors"),
        localrule: True

    rule bpfree:
        # every bpfree figure and table at the configured scale
        input:
            paper_figure_outputs("bpfree"),
        localrule: True
