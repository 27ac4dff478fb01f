"""Evaluate-stage analyses of nodepert runs: the hook ``impls.common.cli`` calls before final.json is written.

Per run, final.json gains ``crash`` (the test-accuracy curve classified as crash / no crash / no
learning, impls.nodepert.crash); runs whose spec asks for it get ``linesearch`` (one-step loss change
against step size from the trained parameters, impls.nodepert.linesearch, also written to
linesearch.csv) and crash-dynamics runs (``hparams.snapshot_every``) get ``replay`` (every run of the
batch replayed minibatch by minibatch around its first crash, impls.nodepert.replay, replay.csv).
JAX is imported only when a run needs the line search or the replay.
"""
from __future__ import annotations

from impls.common.metrics import read_metrics
from impls.nodepert import crash


def evaluate(job, finals: dict, options) -> None:
    replays = {}
    if any("snapshot_every" in spec["hparams"] for spec in job.specs):
        from impls.nodepert.replay import run_replay_batch  # every run of the batch at once, as trained

        replays = run_replay_batch(dict(zip(job.run_ids, job.specs)), job.run_dirs[0].parent, options.datasets_dir)
    for rid, spec, run_dir in zip(job.run_ids, job.specs, job.run_dirs):
        final = finals[rid]
        final["crash"] = crash.from_metrics(read_metrics(run_dir), spec["epochs"])
        if "linesearch_steps" in spec["hparams"] and final["status"] == "ok":
            from impls.nodepert.linesearch import run_analysis

            final["linesearch"] = run_analysis(spec, run_dir, options.datasets_dir)
        if rid in replays:
            final["replay"] = replays[rid]
