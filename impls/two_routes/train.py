"""The two_routes programs the common driver trains (impls.common.driver), chosen from the spec
(papers/two_routes/README.md, "Mechanism, rules and metrics").

``make_program(job, options)`` is the program factory of ``impls.two_routes.__main__``:

- ``model.arch: linear`` -> ``fixed_points.FixedPointProgram`` (B alone trained on R, against the
  derived fixed points);
- ``dataset: imagenet`` -> ``imagenet_program.ImageNetProgram`` (streamed, data-parallel over the
  local devices; the runs of a batch train one after another inside each epoch);
- otherwise ``ResidentProgram`` below: every run of the batch at once on device-resident data
  (digits, Fashion-MNIST), compiled in ``impls.two_routes.compiled``.

ResidentProgram: epoch 0 is the test split and the alignment angles of the untrained runs; each epoch
trains one compiled ``lax.scan`` over the shuffled training set (the mean train loss, R and accuracy of
its steps), then scores the test split (top-1, top-5, loss); the alignment angles are measured again
every ``metric_every`` epochs and at the last. Runs stop at divergence (``program.diverged_at``); a
diverged run keeps training with the batch but its record ends at that epoch.
"""
from __future__ import annotations

import numpy as np

from impls.common import jax_state
from impls.common.driver import Progress
from impls.two_routes import options
from impls.two_routes.compiled import CompiledBatch, load_arrays
from impls.two_routes.program import TwoRoutesProgram

TRAIN_TEST = ["train_loss", "train_acc", "train_R", "test_loss", "test_acc", "test_top5"]
METAPARAMETERS = "code defaults + recalled protocol (paper pickles unavailable, papers/two_routes/README.md)"


def make_program(job, options_) -> TwoRoutesProgram:
    """The program for ``job``'s runs (which share everything but seed and lr)."""
    spec = job.specs[0]
    if spec["model"]["arch"] == "linear":
        from impls.two_routes.fixed_points import FixedPointProgram

        return FixedPointProgram(job, options_)
    if spec["dataset"] == "imagenet":
        from impls.two_routes.imagenet_program import ImageNetProgram

        return ImageNetProgram(job, options_)
    return ResidentProgram(job, options_)


class ResidentProgram(TwoRoutesProgram):
    """A batch of runs on device-resident data, trained together (``CompiledBatch``)."""

    def __init__(self, job, options_):
        super().__init__(job)
        spec = job.specs[0]
        self.epochs = spec["epochs"]
        self.every = options.hparams(spec)["metric_every"]
        self.compiled = CompiledBatch(spec, load_arrays(spec, options_.datasets_dir))
        seeds = np.array([s["seed"] for s in job.specs])
        lrs = np.array([s["hparams"]["lr"] for s in job.specs], np.float32)
        self.train_state, self.keys = self.compiled.init(seeds, lrs)
        self.align0 = self.compiled.measure(self.train_state, self.keys)   # its keys name the angle metrics
        self.metric_names = TRAIN_TEST + [f"align_{k}" for k in self.align0]

    def evaluate(self):
        return {**self.compiled.evaluate(self.train_state), **{f"align_{k}": v for k, v in self.align0.items()}}

    def train_epoch(self, progress: Progress):
        epoch = progress.epoch
        self.train_state, running = self.compiled.train_epoch(self.train_state, self.keys, epoch - 1)
        out = {f"train_{k}": v for k, v in running.items()} | self.compiled.evaluate(self.train_state)
        if epoch % self.every == 0 or epoch == self.epochs:
            out |= {f"align_{k}": v for k, v in self.compiled.measure(self.train_state, self.keys).items()}
        return out

    def state(self):
        return jax_state.by_path(self.train_state)

    def load_state(self, state):
        self.train_state = jax_state.from_paths(self.train_state, state)

    def run_files(self, i):
        return {"params.npz": jax_state.run_leaves(self.train_state["params"], i)}

    def record(self, i, progress):
        return {"steps_per_epoch": self.compiled.steps_per_epoch, "devices": 1, "metaparameters": METAPARAMETERS}
