# dataset -> resources/datasets/<name>.npz (+ .json with source and sha256), for every paper.
# A localrule: it may need the internet, which compute nodes often lack.
# It claims only the names impls.common.datasets can build, so a paper's own rule may write other
# files under resources/datasets without competing with it. `imagenet` is streamed: its .npz is an
# index of the ImageFolder tree at config data.imagenet_dir (unset: $CREDITBENCH_IMAGENET_DIR, else
# the dataset command's default), no pixels; two_routes and wide_align both read it.
# With config data.loader naming tfds for a dataset, the rule reads it from the TFDS data dir data.tfds_dir
# (building it there from local files where it can; impls.common.tfds_data): same arrays, same files.
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
        imagenet=imagenet_root_option(),
        **tfds_params(),
    conda:
        "../../envs/data.yaml"
    shell:
        dataset_command()


# the arena on a user's own .npz (config arena_data): checked and cached as user-<sha12>.npz; the id is
# the file's hash, so a changed file is a new dataset (and new runs), never a stale cache
rule user_dataset:
    output:
        npz=f"{DATASETS}/{{dataset}}.npz",
        meta=f"{DATASETS}/{{dataset}}.json",
    wildcard_constraints:
        dataset="user-[0-9a-f]{12}",
    localrule: True
    log:
        "logs/dataset/{dataset}.log",
    params:
        source=lambda wildcards: PLAN.user_data.get(wildcards.dataset, f"(no arena_data file has id {wildcards.dataset})"),
    conda:
        "../../envs/data.yaml"
    shell:
        "python -m impls.arena.data prepare-user {params.source:q} {output.npz} --expect {wildcards.dataset}"
        " 2> {log} || {{ cat {log} >&2; exit 2; }}"
