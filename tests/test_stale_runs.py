"""Stale results are never reused silently, seen through Snakemake's dry run.

A copy of the workflow is made to look built for two figures of two papers (every output a job
would write, older inputs first), so a dry run has nothing to do. Then:

- bumping ``IMPL_VERSION`` in ``impls/nodepert/__init__.py`` makes the dry run want nodepert's train
  job and figure again, and leaves pepita's figure alone;
- a run's ``spec.json`` edited by hand stops the workflow at start with one message naming the
  file and the key, where Snakemake alone would say "Nothing to be done".
"""
from __future__ import annotations

import copy
import json
import os
import re
import time

import pytest
import yaml

from impls.common.plan import build_plan
from tests.conftest import run_snakemake

PAPERS = ["nodepert", "pepita"]
TARGETS = ["fig_nodepert_lr", "fig_pepita_curves"]
SETTINGS = ["--config", f"papers=[{','.join(PAPERS)}]", "scale=smoke"]


def fake_build(root) -> dict:
    """Write what the jobs of TARGETS would write, each file newer than its inputs; return the plan."""
    config = yaml.safe_load((root / "config" / "config.yaml").read_text())
    plan = build_plan({**config, "papers": PAPERS, "scale": "smoke"}, root)
    plan.write_batch_files(root / "results")
    # newer than every source file (Snakemake reruns a job whose script is newer than its outputs), in
    # order, 10 ms apart; then wait until none is in the future
    stamp = [max(p.stat().st_mtime for p in root.rglob("*") if p.is_file()) + 1]

    def touch(path, text=None):
        path.parent.mkdir(parents=True, exist_ok=True)
        if text is not None or not path.exists():
            path.write_text(text or "{}")
        stamp[0] += 0.01
        os.utime(path, (stamp[0], stamp[0]))

    for batch_id in plan.batches:
        touch(plan.batch_file(root / "results", batch_id))

    jobs = [job for target in TARGETS for job in plan.figure_jobs(target)]
    batches = [plan.batches[b] for job in jobs for b in job.batch_ids]
    for dataset in dict.fromkeys(batch.dataset for batch in batches):     # inputs first, then outputs
        for ext in ("npz", "json"):
            touch(root / "resources" / "datasets" / f"{dataset}.{ext}")
    for rid in (rid for batch in batches for rid in batch.run_ids):
        touch(plan.run_dir(root / "results", rid) / "spec.json", json.dumps(plan.runs[rid]))
    for job in jobs:
        touch(root / "results" / job.paper / "jobs" / f"{job.job_id}.json")
    for target in TARGETS:
        for ext in ("csv", "png", "pdf", "provenance.json"):
            touch(root / "results" / plan.figures[target].paper / f"{target}.{ext}")
    time.sleep(max(0.0, stamp[0] - time.time() + 0.5))
    return plan


def wanted(done) -> dict[str, int]:
    """Job counts of a dry run (Snakemake's "Job stats" table); {} when nothing is to be done."""
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-3000:]
    if "Nothing to be done" in out:
        return {}
    table = out[out.index("Job stats:"):].split("total")[0]
    return {name: int(n) for name, n in re.findall(r"^(\w+)\s+(\d+)\s*$", table, re.M)}


def train_jobs(done) -> set[str]:
    return set(re.findall(r"results/\w+/jobs/([\w.-]+)\.json", done.stdout + done.stderr))


@pytest.fixture
def built(workdir):
    plan = fake_build(workdir)
    assert wanted(run_snakemake(workdir, "-n", *TARGETS, *SETTINGS)) == {}
    return workdir, plan


def test_bumping_the_implementation_version_retrains_that_papers_runs(built):
    root, plan = built
    init = root / "impls" / "nodepert" / "__init__.py"
    text = init.read_text()
    assert 'IMPL_VERSION = "1"' in text
    init.write_text(text.replace('IMPL_VERSION = "1"', 'IMPL_VERSION = "2"'))
    done = run_snakemake(root, "-n", *TARGETS, *SETTINGS)
    # nodepert's one smoke train job (all its batches) and its figure; pepita's figure is up to date
    assert wanted(done) == {"train": 1, "figure": 1, "fig_nodepert_lr": 1}, (done.stdout + done.stderr)[-3000:]
    old = {j.job_id for j in plan.figure_jobs("fig_nodepert_lr")}
    jobs = train_jobs(done)
    assert len(jobs) == 1 and not jobs & old
    # the same holds for the pepita figure alone: nothing to do there
    assert wanted(run_snakemake(root, "-n", "fig_pepita_curves", *SETTINGS)) == {}


def test_a_hand_edited_spec_json_stops_the_workflow_naming_the_file_and_key(built):
    root, plan = built
    rid = plan.figures["fig_nodepert_lr"].run_ids[0]
    path = plan.run_dir(root / "results", rid) / "spec.json"
    spec = copy.deepcopy(plan.runs[rid])
    spec["hparams"]["lr"] = spec["hparams"]["lr"] * 2
    path.write_text(json.dumps(spec, indent=2))
    done = run_snakemake(root, "-n", *TARGETS, *SETTINGS)
    out = done.stdout + done.stderr
    assert done.returncode != 0 and "Nothing to be done" not in out
    relative = path.relative_to(root)
    assert f"{relative}: key 'hparams.lr' is {spec['hparams']['lr']!r} there but {plan.runs[rid]['hparams']['lr']!r}" \
        in out, out[-3000:]
    assert "Traceback" not in out
    # restoring the record is all it takes
    path.write_text(json.dumps(plan.runs[rid]))
    assert wanted(run_snakemake(root, "-n", *TARGETS, *SETTINGS)) == {}
