# train: one job trains, then evaluates, the batches of one train job (PLAN.jobs) by calling
# `python -m impls.<paper> run`, generic over papers. A batch is every run that differs only in the
# paper's `batch_over` keys; its batch.json is written when the workflow is planned
# (common.smk). How many batches one job takes, and its threads: config train_jobs (a profile's
# set-threads, or --set-threads train=N, replaces the threads).


rule train:
    input:
        batches=job_batch_files,
        data=job_datasets,
    output:
        f"{RESULTS}/{{paper}}/jobs/{{job}}.json",
    log:
        "logs/{paper}/train/{job}.log",
    threads: PLAN.threads
    params:
        platform=config["platform"],
        checkpoint_minutes=config.get("checkpoint_minutes", 10),
        compile_cache=COMPILE_CACHE,
        datasets=datasets_dir,
    resources:
        **train_resources("train"),
    conda:
        paper_env
    shell:
        "python -m impls.{wildcards.paper} run {input.batches} --job-file {output}"
        " --datasets-dir {params.datasets} --platform {params.platform} --threads {threads}"
        " --compile-cache {params.compile_cache} --checkpoint-minutes {params.checkpoint_minutes} 2> {log}"
