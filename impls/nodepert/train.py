"""The nodepert program the common driver trains (impls.common.driver): a batch of runs, one epoch at a time.

The compiled epoch, network and optimiser are ``impls.nodepert.compiled``. What this adds:

- epoch 0 and every epoch are evaluated on the full train and test splits;
- ``hparams.stop_at_test_acc`` (the line-search warm-up, papers/nodepert/README.md, "Figure protocols") stops a run
  after the first epoch whose test accuracy exceeds the threshold: its parameters stay those of that epoch and its
  history ends there;
- crash-dynamics runs (``hparams.snapshot_every``) keep the parameter snapshots that the
  evaluate-stage replay starts from (``impls.nodepert.replay.keep_snapshots``).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from impls.common import jax_state, provenance
from impls.common.driver import BatchProgram, Progress
from impls.nodepert import replay
from impls.nodepert.compiled import CompiledBatch, load_arrays

METRIC_NAMES = ["train_acc", "train_loss", "test_acc", "test_loss"]


class Program(BatchProgram):
    """A batch of nodepert runs (``make_program`` for the driver is the class itself)."""

    metric_names = METRIC_NAMES

    def __init__(self, job, options):
        self.spec = job.specs[0]
        self.compiled = CompiledBatch(self.spec, load_arrays(self.spec, options.datasets_dir))
        seeds = np.array([s["seed"] for s in job.specs])
        lrs = np.array([s["hparams"]["lr"] for s in job.specs], np.float32)
        self.params, self.states, self.noise_keys = self.compiled.init(seeds, lrs)
        self.threshold = self.spec["hparams"].get("stop_at_test_acc")

    def evaluate(self):
        return self.compiled.evaluate(self.params)

    def train_epoch(self, progress: Progress):
        frozen = progress.stopped >= 0
        before = jax.tree_util.tree_map(jnp.copy, self.params) if frozen.any() else None  # params are donated
        self.params, self.states, _ = self.compiled.train_epoch(self.params, self.states, self.noise_keys,
                                                                progress.epoch - 1)
        if before is not None:  # stopped runs keep the parameters of their stopping epoch
            self.params = jax_state.keep_where(frozen, self.params, before)
        return self.compiled.evaluate(self.params)

    def stopped(self, progress: Progress):
        if self.threshold is None:
            return super().stopped(progress)
        return progress.history["test_acc"][progress.epoch] > self.threshold

    def epoch_done(self, progress: Progress, run_dirs):
        replay.keep_snapshots(run_dirs, self.spec, progress.epoch, self.params,
                              progress.history["test_acc"])

    def state(self):
        return {"params": jax_state.by_path(self.params), "states": jax_state.by_path(self.states)}

    def load_state(self, state):
        self.params = jax_state.from_paths(self.params, state["params"])
        self.states = jax_state.from_paths(self.states, state["states"])

    def run_files(self, i):
        return {"params.npz": jax_state.run_leaves(self.params, i)}

    def train_record(self, i, progress):
        return {} if self.threshold is None else {"stopped_epoch": int(progress.stopped[i])}

    def device(self):
        return provenance.jax_device()
