"""Per-run training schedules that are pure functions of the metric history (so a resumed job
recomputes them exactly from its checkpointed history).

``train_error``: array (epochs_so_far + 1, R) of training error % per epoch and run, row 0 the
untrained evaluation (never monitored), as the common driver keeps it for ``impls.bpfree.train``.

- :func:`lr_halvings` — Nøkland's dfa-torch schedule (the lr is halved when the training error
  stops falling, papers/bpfree/README.md "Source-paper settings"): after every epoch t ≥ 2 whose training error is not
  below that of epoch t − 1, the learning rate is halved, so the lr of the next epoch is lr₀ · 2^(−k), k the number of
  such epochs so far. A non-finite error counts as not falling.
- :func:`threshold_stop_epochs` — dfa-torch's stop (training stops at ≤ 0.01 % training
  error): a run stops at the first epoch t ≥ 1 with training error ≤ the threshold.
- :func:`early_stop_epochs` (in ``impls.bpfree.train``) — the notebook's Keras EarlyStopping.
"""
from __future__ import annotations

import numpy as np


def lr_halvings(train_error: np.ndarray, enabled: bool) -> np.ndarray:
    """Halvings in force for the epoch after the history (int array (R,)); zeros when not ``enabled``."""
    runs = train_error.shape[1]
    if not enabled or train_error.shape[0] < 3:
        return np.zeros(runs, np.int64)
    previous, current = train_error[1:-1], train_error[2:]
    falling = np.isfinite(current) & np.isfinite(previous) & (current < previous)
    return (~falling).sum(axis=0).astype(np.int64)


def lr_factor(train_error: np.ndarray, enabled: bool) -> np.ndarray:
    """lr / lr₀ for the epoch after the history: 2^(−halvings), float32 (R,)."""
    return np.power(0.5, lr_halvings(train_error, enabled)).astype(np.float32)


def threshold_stop_epochs(train_error: np.ndarray, threshold: float | None) -> np.ndarray:
    """First epoch ≥ 1 whose training error is ≤ ``threshold`` per run, or −1 (also when ``threshold`` is None)."""
    runs = train_error.shape[1]
    stopped = np.full(runs, -1, np.int64)
    if threshold is None:
        return stopped
    for epoch in range(1, train_error.shape[0]):
        hit = (stopped < 0) & np.isfinite(train_error[epoch]) & (train_error[epoch] <= threshold)
        stopped[hit] = epoch
    return stopped


def first_stop(*stops: np.ndarray) -> np.ndarray:
    """Elementwise earliest non-negative stop epoch of several rules (−1 where none stopped)."""
    stacked = np.stack(stops)
    masked = np.where(stacked >= 0, stacked, np.iinfo(np.int64).max)
    earliest = masked.min(axis=0)
    return np.where(earliest == np.iinfo(np.int64).max, -1, earliest)
