# dataset -> resources/datasets/<name>.npz (+ .json with source and sha256), for every paper.
# A localrule: it may need the internet, which compute nodes often lack.
# It claims only the names impls.common.datasets can build, so a paper's own rule may write other
# files under resources/datasets without competing with it. `imagenet` is streamed: its .npz is an
# index of the ImageFolder tree at $CREDITBENCH_IMAGENET_DIR (default /data/imagenet), no pixels;
# two_routes and wide_align both read it.
from impls.common.datasets import DATASET_NAMES, STREAMED_DATASETS


rule dataset:
    output:
        npz=f"{DATASETS}/{{dataset}}.npz",
        meta=f"{DATASETS}/{{dataset}}.json",
    wildcard_constraints:
        dataset="|".join(DATASET_NAMES + STREAMED_DATASETS),
    localrule: True
    log:
        "logs/dataset/{dataset}.log",
    params:
        fmnist=config["data"]["fashion_mnist_dir"],
        downloads=config["data"]["download_dir"],
        download="" if config["data"]["download"] else "--no-download",
    shell:
        "{PY_ENV} {PYTHON} -m impls.common.datasets prepare {wildcards.dataset} {output.npz}"
        " --fashion-mnist-dir {params.fmnist} --download-dir {params.downloads} {params.download}"
        " 2> {log} || {{ cat {log} >&2; exit 2; }}"
