# dataset -> resources/datasets/<name>.npz (+ .json with source and sha256).
# A localrule: it may need the internet, which compute nodes often lack.


rule dataset:
    output:
        npz=f"{DATASETS}/{{dataset}}.npz",
        meta=f"{DATASETS}/{{dataset}}.json",
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
