# batch_spec -> train -> evaluate, generic over papers: each calls `python -m impls.<paper>`.
# A batch is every run that differs only in the paper's `batch_over` keys; one job trains it.


rule batch_spec:
    output:
        f"{RESULTS}/{{paper}}/batches/{{batch}}/batch.json",
    localrule: True
    params:
        runs=lambda wc: {rid: PLAN.runs[rid] for rid in PLAN.batches[wc.batch].run_ids},
    run:
        from impls.common.io import atomic_write_json

        atomic_write_json(output[0], {"paper": wildcards.paper, "batch_id": wildcards.batch, "runs": params.runs})


rule train:
    input:
        batch=f"{RESULTS}/{{paper}}/batches/{{batch}}/batch.json",
        data=batch_dataset,
    output:
        f"{RESULTS}/{{paper}}/batches/{{batch}}/trained.json",
    log:
        "logs/{paper}/train/{batch}.log",
    params:
        platform=config["platform"],
        checkpoint_minutes=config.get("checkpoint_minutes", 10),
    resources:
        **train_resources("train"),
    conda:
        paper_env
    shell:
        "{PY_ENV} {PYTHON} -m impls.{wildcards.paper} train {input.batch}"
        " --datasets-dir {DATASETS} --platform {params.platform}"
        " --checkpoint-minutes {params.checkpoint_minutes} 2> {log}"


rule evaluate:
    input:
        batch=f"{RESULTS}/{{paper}}/batches/{{batch}}/batch.json",
        trained=f"{RESULTS}/{{paper}}/batches/{{batch}}/trained.json",
        data=batch_dataset,
    output:
        f"{RESULTS}/{{paper}}/batches/{{batch}}/evaluated.json",
    log:
        "logs/{paper}/evaluate/{batch}.log",
    params:
        platform=config["platform"],
    resources:
        **train_resources("evaluate"),
    conda:
        paper_env
    shell:
        "{PY_ENV} {PYTHON} -m impls.{wildcards.paper} evaluate {input.batch}"
        " --datasets-dir {DATASETS} --platform {params.platform} 2> {log}"
