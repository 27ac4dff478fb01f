"""``python -m impls.nodepert train|evaluate BATCH_JSON`` (see impls.common.cli).

``evaluate`` also classifies each run's test-accuracy curve (crash / no crash / no learning,
impls.nodepert.crash) and records it in final.json under ``crash``; for runs whose spec asks
for it (``hparams.linesearch_steps``) it runs the line-search analysis from the trained
parameters (impls.nodepert.linesearch), writing linesearch.csv and final.json's ``linesearch``;
for crash-dynamics runs (``hparams.snapshot_every``) it replays the updates around the first
crash minibatch by minibatch (impls.nodepert.replay), writing replay.csv and final.json's ``replay``.
"""
from __future__ import annotations

import sys

from impls.common.cli import main


def train_batch(job, options):
    # imported here so that ``evaluate`` (pure pandas/numpy) does not pay JAX's start-up
    from impls.nodepert.train import train_batch as train

    return train(job, options)


def _evaluate_extras(batch_json: str, results_dir: str | None, datasets_dir: str) -> None:
    from pathlib import Path

    from impls.common.io import atomic_write_json, read_json
    from impls.common.metrics import read_metrics
    from impls.nodepert import crash

    doc = read_json(batch_json)
    runs_dir = Path(results_dir or Path(batch_json).resolve().parents[2]) / "runs"
    replays = {}
    if any("snapshot_every" in spec["hparams"] for spec in doc["runs"].values()):
        from impls.nodepert.replay import run_replay_batch  # every run of the batch at once, as trained

        replays = run_replay_batch(doc["runs"], runs_dir, Path(datasets_dir))
    for rid, spec in doc["runs"].items():
        final_path = runs_dir / rid / "final.json"
        final = read_json(final_path)
        final["crash"] = crash.from_metrics(read_metrics(runs_dir / rid), spec["epochs"])
        if "linesearch_steps" in spec["hparams"] and final["status"] == "ok":
            from impls.nodepert.linesearch import run_analysis

            final["linesearch"] = run_analysis(spec, runs_dir / rid, Path(datasets_dir))
        if rid in replays:
            final["replay"] = replays[rid]
        atomic_write_json(final_path, final)


if __name__ == "__main__":
    code = main(train_batch, framework="jax")
    args = sys.argv[1:]
    if code == 0 and args[:1] == ["evaluate"]:
        def option(name, default=None):
            return args[args.index(name) + 1] if name in args else default

        _evaluate_extras(args[1], option("--results-dir"), option("--datasets-dir", "resources/datasets"))
    sys.exit(code)
