"""Crash and "no learning" classification of a test-accuracy curve (papers/nodepert/README.md, "Metrics").

- **Crash:** test accuracy more than ``drop`` (25) points below its running maximum; the crash
  epoch is the first such epoch.
- **No learning:** the running maximum is still ≤ ``no_learning_max`` (25 %) after
  ``no_learning_after`` (50) epochs; the original stops such a run there. With fewer epochs than
  that (smoke/cpu caps) the whole curve is the window.

The two classes exclude each other: a curve whose maximum is ≤ 25 % cannot drop by more than 25
points. Every other curve is ``no_crash``; figures draw it at the epoch cap and ``no_learning``
at 0, as the paper's crash-timing figure does.

Caller: ``impls.nodepert.__main__`` (``evaluate`` adds the result to each run's final.json) and
``impls.nodepert.figures.crash_timing_table``.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

DROP = 25.0
NO_LEARNING_MAX = 25.0
NO_LEARNING_AFTER = 50


def classify(test_acc: Sequence[float], epochs_cap: int, drop: float = DROP,
             no_learning_max: float = NO_LEARNING_MAX, no_learning_after: int = NO_LEARNING_AFTER) -> dict:
    """``test_acc[e]`` = test accuracy (%) after epoch e (e = 0 before training).

    Returns ``{"crash_class": "crash"|"no_crash"|"no_learning", "crash_epoch": int|None,
    "crash_plot_epoch": int}`` (the y value of the crash-timing figure: crash epoch, cap, or 0).
    NaN accuracies (a diverged network) count as 0 %.
    """
    acc = np.nan_to_num(np.asarray(test_acc, dtype=np.float64), nan=0.0)
    if acc.size == 0:
        return {"crash_class": "no_learning", "crash_epoch": None, "crash_plot_epoch": 0}
    running = np.maximum.accumulate(acc)
    window = acc[: no_learning_after + 1]
    if window.max() <= no_learning_max:
        return {"crash_class": "no_learning", "crash_epoch": None, "crash_plot_epoch": 0}
    crashed = np.flatnonzero(acc < running - drop)
    if crashed.size:
        epoch = int(crashed[0])
        return {"crash_class": "crash", "crash_epoch": epoch, "crash_plot_epoch": epoch}
    return {"crash_class": "no_crash", "crash_epoch": None, "crash_plot_epoch": int(epochs_cap)}


def from_metrics(metrics, epochs_cap: int) -> dict:
    """``classify`` on a run's tidy metrics (impls.common.metrics.read_metrics)."""
    test = metrics.query("split == 'test' and metric == 'acc'").sort_values("epoch")["value"].to_numpy()
    out = classify(test, epochs_cap)
    out["criterion"] = {"drop": DROP, "no_learning_max": NO_LEARNING_MAX, "no_learning_after": NO_LEARNING_AFTER}
    return out
