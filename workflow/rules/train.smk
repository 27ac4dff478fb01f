# train: one job trains, then evaluates, the batches of one train job (PLAN.jobs) by calling
# `python -m impls.<paper> run`, generic over papers. A batch is every run that differs only in the
# paper's `batch_over` keys; its batch.json is written when the workflow is planned
# (common.smk). How many batches one job takes, and its threads: config train_jobs.


def job_batch_files(wildcards):
    return [str(PLAN.batch_file(RESULTS, b)) for b in PLAN.jobs[wildcards.job].batch_ids]


def job_datasets(wildcards):
    names = dict.fromkeys(PLAN.batches[b].dataset for b in PLAN.jobs[wildcards.job].batch_ids)
    return [f"{DATASETS}/{name}.npz" for name in names]


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
    resources:
        **train_resources("train"),
    conda:
        paper_env
    shell:
        "{PY_ENV} {PYTHON} -m impls.{wildcards.paper} run {input.batches} --job-file {output}"
        " --datasets-dir {DATASETS} --platform {params.platform} --threads {threads}"
        " --compile-cache {params.compile_cache} --checkpoint-minutes {params.checkpoint_minutes} 2> {log}"
