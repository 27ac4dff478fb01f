"""The bpfree program the common driver trains (impls.common.driver): a batch of runs, one epoch at a time.

The compiled epoch, network, optimiser and data are ``impls.bpfree.compiled``. What this adds:

- epoch 0 is evaluated on both full splits before training; after every epoch the training
  metrics are the running means over its minibatches (with the trackers) and the test metrics
  are evaluated on the full test set; training error = 100 − training accuracy;
- a run whose training or test loss turns non-finite or exceeds ``DIVERGED_LOSS`` is recorded as
  diverged (the ``diverged`` hook);
- with ``early_stop_patience`` a run stops (its state frozen, its metrics ending there) once its
  training error has not improved by more than ``early_stop_min_delta`` for that many epochs
  (``early_stop_epochs``; the notebook's stage-1 Keras EarlyStopping), and with ``stop_train_error``
  once its training error is at or below that threshold (Nøkland's dfa-torch stop). Both are pure
  functions of the metric history (``stop_epochs``); the ``stopped`` hook stops a run at the first
  epoch they name, and the driver checkpoints the stop epochs;
- with ``lr_halving`` each run's learning rate is halved after every epoch whose training error did
  not fall (Nøkland's dfa-torch; ``impls.bpfree.schedules``), recorded as the metric ``train_lr``;
  a resumed job recomputes it from the checkpointed history;
- reconstruction runs also write ``samples.npz`` (test images and their reconstructions);
  ``train.json`` adds ``steps_per_epoch``, ``examples_per_epoch`` and ``early_stopped_epoch``.

Seeds and streams: ``impls.bpfree.compiled``.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from impls.bpfree import schedules
from impls.bpfree.compiled import CompiledBatch, load_arrays, with_learning_rates
from impls.common import jax_state, provenance
from impls.common.driver import BatchProgram, Progress

#: a run has diverged when its training or test loss is non-finite (Keras TerminateOnNaN) or above
#: this bound: a softmax-CE of 1e4 nats needs logits of order 1e4, i.e. blown-up weights. Keras
#: computes the CE from the logits too, so the original only stops once activations overflow to
#: inf/NaN, a few epochs later on the same trajectory (papers/bpfree/README.md, deviation 3).
DIVERGED_LOSS = 1.0e4


class Program(BatchProgram):
    """A batch of bpfree runs (``make_program`` for the driver is the class itself)."""

    def __init__(self, job, options):
        spec = job.specs[0]
        self.compiled = CompiledBatch(spec, load_arrays(spec, options.datasets_dir))
        self.hp, self.recon = self.compiled.hp, self.compiled.recon
        self.metric_names = self.compiled.metric_names()
        self.log_metric = "test_loss" if self.recon else "test_error"
        seeds = np.array([s["seed"] for s in job.specs])
        self.lrs = np.array([s["hparams"]["lr"] for s in job.specs], np.float32)
        self.current, self.keys = self.compiled.init(seeds, self.lrs)
        self._reconstructions = None

    def evaluate(self):
        return self.compiled.evaluate(self.current)

    def train_epoch(self, progress: Progress):
        epoch, history, out = progress.epoch, progress.history, {}
        if self.hp["lr_halving"]:   # Nøkland: lr₀ · 2^(−k), k = epochs so far whose training error did not fall
            epoch_lrs = self.lrs * schedules.lr_factor(history["train_error"][:epoch], True)
            self.current = with_learning_rates(self.current, epoch_lrs)
            out["train_lr"] = epoch_lrs
        frozen = progress.stopped >= 0
        before = jax.tree_util.tree_map(jnp.copy, self.current) if frozen.any() else None  # the state is donated
        self.current, running = self.compiled.train_epoch(self.current, self.keys, epoch - 1)
        if before is not None:   # stopped runs keep their state (parameters, optimiser, BN statistics)
            self.current = jax_state.keep_where(frozen, self.current, before)
        test = self.compiled.evaluate(self.current)
        for name in self.metric_names:
            if name in ("train_error", "train_lr"):
                continue
            out[name] = test[name] if name.startswith("test_") else running[name[len("train_"):]]
        if not self.recon:
            out["train_error"] = 100.0 - np.asarray(out["train_acc"], np.float64)
        return out

    def diverged(self, progress: Progress):
        epoch, history = progress.epoch, progress.history
        losses = np.stack([history["train_loss"][epoch], history["test_loss"][epoch]])
        return ~np.isfinite(losses).all(0) | (np.nan_to_num(losses, nan=np.inf) > DIVERGED_LOSS).any(0)

    def stopped(self, progress: Progress):
        if self.recon:
            return super().stopped(progress)
        # a run still training reaches its first stop epoch now: stop_epochs of earlier epochs were all −1 for it
        return stop_epochs(progress.history["train_error"][:progress.epoch + 1], self.hp) >= 0

    def state(self):
        return jax_state.by_path(self.current)

    def load_state(self, state):
        self.current = jax_state.from_paths(self.current, state)

    def run_files(self, i):
        files = {"params.npz": jax_state.run_leaves(self.current["params"], i)}
        if self.recon:
            if self._reconstructions is None:
                self._reconstructions = self.compiled.reconstructions(self.current)
            files["samples.npz"] = {"input": np.asarray(self.compiled.x_samples),
                                    "reconstruction": self._reconstructions[i]}
        return files

    def train_record(self, i, progress: Progress):
        s = int(progress.stopped[i])
        return {"steps_per_epoch": self.compiled.steps_per_epoch,
                "examples_per_epoch": self.compiled.steps_per_epoch * self.compiled.batch_size,
                "early_stopped_epoch": s if s >= 0 else None}

    def device(self):
        return provenance.jax_device()


def early_stop_epochs(train_error: np.ndarray, patience: int | None, min_delta: float) -> np.ndarray:
    """Epoch at which each run stops, or −1: Keras ``EarlyStopping(monitor=training error, mode='min')``.

    ``train_error``: (epochs_so_far + 1, R), row 0 the untrained evaluation (not monitored). From
    epoch 1 on, an epoch improves when its error is below best − min_delta (then best ← error and
    the wait resets), otherwise the wait grows; a run stops at the first epoch whose wait reaches
    ``patience``. A pure function of the history.
    """
    runs = train_error.shape[1]
    stopped = np.full(runs, -1, np.int64)
    if patience is None:
        return stopped
    best, wait = np.full(runs, np.inf), np.zeros(runs, np.int64)
    for epoch in range(1, train_error.shape[0]):
        err = train_error[epoch]
        better = np.isfinite(err) & (err < best - min_delta)
        best = np.where(better, err, best)
        wait = np.where(better, 0, wait + 1)
        stopped[(stopped < 0) & (wait >= patience)] = epoch
    return stopped


def stop_epochs(train_error: np.ndarray, hp: dict) -> np.ndarray:
    """Epoch at which each run stops (−1: still running): the earliest of the Keras early stop and
    the training-error threshold stop, both pure functions of the history."""
    return schedules.first_stop(
        early_stop_epochs(train_error, hp["early_stop_patience"], hp["early_stop_min_delta"]),
        schedules.threshold_stop_epochs(train_error, hp["stop_train_error"]))
