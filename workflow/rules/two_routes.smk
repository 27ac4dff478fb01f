# two_routes: the paper's figure targets and paper-only rules. Spec: ../shared/papers/two_routes.md
# Grids per scale live in papers/two_routes/paper.yaml; targets exist when two_routes is among config['papers'].
# The impl is impls/two_routes (JAX/Flax); the generic rules (dataset, batch_spec, train, evaluate, aggregate,
# plot) do the work. ImageNet (paper scale) is streamed, never cached: the rule below writes only an index
# of the ImageFolder tree named by $CREDITBENCH_IMAGENET_DIR (train/ and val/ with one folder per class).

import os

if "two_routes" in PLAN.papers:

    ruleorder: two_routes_imagenet_index > dataset

    rule two_routes_imagenet_index:
        # resources/datasets/imagenet.npz: file lists and labels of the tree (no pixels), for the streaming loader
        output:
            npz=f"{DATASETS}/imagenet.npz",
        localrule: True
        log:
            "logs/dataset/imagenet.log",
        params:
            root=os.environ.get("CREDITBENCH_IMAGENET_DIR", "/data/imagenet"),
        shell:
            "{PY_ENV} {PYTHON} -m impls.two_routes.imagenet index {params.root} {output.npz} 2> {log}"
            " || {{ cat {log} >&2; exit 2; }}"

    rule tab_two_routes_rules:
        # Table 1: rule = Σ primitives (from the rule registry) + measured B-only fixed-point angles
        input:
            figure_outputs("tab_two_routes_rules"),
        localrule: True

    rule fig_two_routes_fixed_points:
        # project check: B trained alone on R vs the derived fixed points (white and real-data inputs)
        input:
            figure_outputs("fig_two_routes_fixed_points"),
        localrule: True

    rule fig_two_routes_local:
        # Fig. 3?: top-1 vs depth for BP, FA, WM, IA
        input:
            figure_outputs("fig_two_routes_local"),
        localrule: True

    rule fig_two_routes_nonlocal:
        # Fig. 4?: top-1 vs depth for SA, AA, KP vs BP
        input:
            figure_outputs("fig_two_routes_nonlocal"),
        localrule: True

    rule fig_two_routes_angles:
        # appendix: per-layer weight / projection / gradient angles vs epoch per rule
        input:
            figure_outputs("fig_two_routes_angles"),
        localrule: True

    rule tab_two_routes_accuracy:
        # appendix table: top-1 / top-5 per rule x architecture
        input:
            figure_outputs("tab_two_routes_accuracy"),
        localrule: True

    rule fig_two_routes_wm_sensitivity:
        # Fig. 2?: WM beta/alpha x R-input sweep vs BP (paper's TPE configs unknown)
        input:
            figure_outputs("fig_two_routes_wm_sensitivity"),
        localrule: True

    rule fig_two_routes_noise:
        # Fig. 5?: top-1 vs NoisyOptimizer variance on B
        input:
            figure_outputs("fig_two_routes_noise"),
        localrule: True

    rule two_routes:
        # every two_routes figure and table at the configured scale
        input:
            paper_figure_outputs("two_routes"),
        localrule: True
