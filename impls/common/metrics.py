"""Per-run results on disk: tidy metrics, train.json, final.json.

Layout of ``results/<paper>/runs/<run_id>/``:

- ``spec.json``     the validated run spec
- ``metrics.csv``   tidy per-epoch metrics: epoch, split, metric, value (epoch 0 = before training)
- ``train.json``    status (ok|diverged), epochs completed, wall time, provenance
- ``params.npz``    final parameters (one array per leaf)
- ``final.json``    written by ``evaluate``: status plus reduced metrics (``reduce_run``) and the paper's analyses

Caller: the training driver, ``impls.common.driver`` (``write_metrics``, ``write_train_record``),
and ``impls.common.cli`` evaluate (``reduce_run``; the cli writes final.json once, after the
paper's evaluate hook). Every file is written atomically.
"""
from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Mapping

import numpy as np
import pandas as pd

from impls.common.io import atomic_write_json, atomic_write_text, read_json

#: mean test accuracy over the last this-many evaluations = "final accuracy" (as nodepert's depth/width/Adam figures
#: define it)
FINAL_ACC_WINDOW = 5
METRIC_COLUMNS = ["epoch", "split", "metric", "value"]


def tidy_rows(history: Mapping[str, np.ndarray], n_epochs: int) -> pd.DataFrame:
    """``history["test_acc"][e]`` for e in 0..n_epochs-1 -> rows (epoch, split, metric, value)."""
    frames = []
    for name, values in history.items():
        split, metric = name.split("_", 1)
        frames.append(pd.DataFrame({"epoch": np.arange(n_epochs), "split": split, "metric": metric,
                                    "value": np.asarray(values[:n_epochs], dtype=np.float64)}))
    return pd.concat(frames, ignore_index=True)[METRIC_COLUMNS]


def write_metrics(run_dir: Path, history: Mapping[str, np.ndarray], n_epochs: int) -> None:
    buffer = io.StringIO()
    tidy_rows(history, n_epochs).to_csv(buffer, index=False, float_format="%.9g")
    atomic_write_text(Path(run_dir) / "metrics.csv", buffer.getvalue())


def read_metrics(run_dir: Path) -> pd.DataFrame:
    return pd.read_csv(Path(run_dir) / "metrics.csv")


def write_train_record(run_dir: Path, *, run_id: str, diverged_epoch: int | None, epochs_completed: int,
                       wall_time_s: float, batch_id: str, runs_in_batch: int, provenance: dict,
                       extra: Mapping | None = None) -> None:
    """train.json: the record ``reduce_run`` turns into final.json. Every impl writes it last."""
    atomic_write_json(Path(run_dir) / "train.json", {
        "run_id": run_id, "status": "ok" if diverged_epoch is None else "diverged",
        "diverged_epoch": diverged_epoch, "epochs_completed": epochs_completed,
        "wall_time_s": wall_time_s, "batch_id": batch_id, "runs_in_batch": runs_in_batch,
        "provenance": provenance, **(extra or {})})


def _finite_or_none(x: float) -> float | None:
    return float(x) if x is not None and math.isfinite(x) else None


def reduce_run(run_dir: Path) -> dict:
    """final.json content: status, provenance, and reduced metrics of one trained run.

    ``final_acc`` is the mean test accuracy over the last ``FINAL_ACC_WINDOW`` evaluations
    (epochs E−4..E). For a diverged run every accuracy reduction is None and ``diverged_epoch``
    says when it happened; the run stays in every table and figure.
    """
    run_dir = Path(run_dir)
    record = read_json(run_dir / "train.json")
    metrics = read_metrics(run_dir)
    test_acc = metrics.query("split == 'test' and metric == 'acc'").sort_values("epoch")["value"].to_numpy()
    final = {}
    if record["status"] == "ok" and len(test_acc):
        for split in ("train", "test"):
            for metric in ("acc", "loss"):
                series = metrics.query("split == @split and metric == @metric").sort_values("epoch")["value"]
                if len(series):
                    final[f"{split}_{metric}"] = _finite_or_none(series.iloc[-1])
        final["final_acc"] = _finite_or_none(float(np.mean(test_acc[-FINAL_ACC_WINDOW:])))
        final["best_test_acc"] = _finite_or_none(float(np.max(test_acc)))
    return {
        "run_id": record["run_id"],
        "status": record["status"],
        "diverged_epoch": record.get("diverged_epoch"),
        "epochs_completed": record["epochs_completed"],
        "final": final,
        "final_acc_window": FINAL_ACC_WINDOW,
        "wall_time_s": record["wall_time_s"],
        "batch_id": record["batch_id"],
        "runs_in_batch": record["runs_in_batch"],
        "provenance": record["provenance"],
    }
