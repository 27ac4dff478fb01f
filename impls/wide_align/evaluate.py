"""Evaluate-stage extras of wide_align runs: the hook ``impls.common.cli`` calls before final.json is written.

Caller: ``python -m impls.wide_align evaluate`` (``Impl.evaluate``), once per batch; it adds to each
run's final.json content (``finals[run_id]``), the cli writes final.json once afterwards.

Per run, final.json's ``final`` gains the validation-split reductions (``val_acc`` after the last
epoch, ``best_val_acc``; the original printed the validation split as "test") and the minimum
train/test loss over the evaluated epochs (the Add task's metric; kept for diverged runs, from the
epochs before the divergence). For runs with ``hparams.score_epochs`` the alignment score and
its shuffled control are computed per hidden layer and scored epoch from ``align_snapshots.npz``
and written to ``alignment.csv`` (epoch, layer, score, control); final.json gains them as
``alignment``. torch is imported only when a run has snapshots to score.
"""
from __future__ import annotations

import io

import numpy as np
import pandas as pd

from impls.common.io import atomic_write_text, load_npz
from impls.common.metrics import read_metrics

STREAM_PROBE, STREAM_SHUFFLE = 5_000_011, 6_000_001


def _series(df: pd.DataFrame, split: str, metric: str) -> np.ndarray:
    return df.query("split == @split and metric == @metric").sort_values("epoch")["value"].to_numpy()


def alignment_table(spec: dict, snapshots: dict) -> pd.DataFrame:
    import torch

    from impls.wide_align import alignment, models
    from impls.wide_align.options import STRIDES, resolved_hparams, resolved_model

    hp, model = resolved_hparams(spec), resolved_model(spec)
    strides = STRIDES[model["depth"]]
    n_layers = len(strides)
    w0 = [snapshots[f"wbp_e0_l{l}"] for l in range(n_layers)]
    size = {"digits": 8, "cifar10": 32, "cifar100": 32}.get(spec["dataset"], 28)
    c_in = {"cifar10": 3, "cifar100": 3}.get(spec["dataset"], 1)
    shape = models.NetShape(c_in, size, model["width"], tuple(strides), 10)
    rows = []
    for epoch in hp["score_epochs"]:
        for l, ((ci, s), stride) in enumerate(zip(shape.layer_inputs(), strides)):
            dw = snapshots[f"wbp_e{epoch}_l{l}"] - w0[l]
            dwt = snapshots[f"wt_e{epoch}_l{l}"] - w0[l]
            g = torch.Generator().manual_seed(spec["seed"] + STREAM_PROBE + 1000 * epoch + l)
            sc = alignment.score(dw, dwt, ci, s, stride, g, hp["score_probes"])
            g_shuffle = torch.Generator().manual_seed(spec["seed"] + STREAM_SHUFFLE + 1000 * epoch + l)
            ctrl_dw = alignment.shuffled_change(snapshots[f"wbp_e{epoch}_l{l}"], w0[l], g_shuffle)
            ctrl = alignment.score(ctrl_dw, dwt, ci, s, stride, g, hp["score_probes"])
            rows.append({"epoch": epoch, "layer": l + 1, "score": sc, "control": ctrl})
    return pd.DataFrame(rows, columns=["epoch", "layer", "score", "control"])


def evaluate(job, finals: dict, options) -> None:
    """Add the validation reductions, loss minima and alignment scores to ``finals[run_id]``."""
    for rid, spec, run_dir in zip(job.run_ids, job.specs, job.run_dirs):
        final = finals[rid]
        df = read_metrics(run_dir)
        for split in ("train", "test"):
            # minimum over the evaluated epochs (the Add task's metric): kept for diverged runs too,
            # from the epochs before the divergence, as the original's running minimum
            loss = _series(df, split, "loss")[1:]
            loss = loss[np.isfinite(loss)]
            if len(loss):
                final["final"][f"min_{split}_loss"] = float(loss.min())
        if final["status"] == "ok":
            acc = _series(df, "val", "acc")
            if len(acc):
                final["final"]["val_acc"] = float(acc[-1])
                final["final"]["best_val_acc"] = float(np.nanmax(acc))
            for metric in ("acc", "loss"):  # streamed datasets have no test split, so reduce_run skipped these
                series = _series(df, "train", metric)
                if len(series) and f"train_{metric}" not in final["final"]:
                    final["final"][f"train_{metric}"] = float(series[-1]) if np.isfinite(series[-1]) else None
            t = _series(df, "time", "epoch")
            if len(t) > 1:
                final["final"]["time_epoch"] = float(np.nanmean(t[1:]))
        if spec["hparams"].get("score_epochs") and (run_dir / "align_snapshots.npz").exists():
            table = alignment_table(spec, load_npz(run_dir / "align_snapshots.npz"))
            buffer = io.StringIO()
            table.to_csv(buffer, index=False, float_format="%.6g")
            atomic_write_text(run_dir / "alignment.csv", buffer.getvalue())
            final["alignment"] = table.to_dict("records")
