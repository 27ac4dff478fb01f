# two_routes: paper-only rules (its targets come from papers/two_routes/paper.yaml, see targets.smk).
# ImageNet (paper scale) is streamed, never cached: the rule below writes only an index
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
