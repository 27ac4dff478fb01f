"""What every two_routes program shares for the common driver (``impls.common.driver``).

Callers: the three programs ``impls.two_routes.train.make_program`` chooses from --
``train.ResidentProgram`` (digits, Fashion-MNIST), ``imagenet_program.ImageNetProgram`` and
``fixed_points.FixedPointProgram`` (``model.arch: linear``).

- divergence: ``diverged_at`` (the fixed-point runs, which have no loss, test their angle instead);
- train.json: every run records its effective options (README "Options") (``options.recorded``) after the
  program's own fields (steps_per_epoch, devices, ...).
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from impls.common import provenance
from impls.common.driver import BatchProgram, Progress
from impls.two_routes import options

DIVERGED_LOSS = 1.0e4


def diverged_at(history: dict, epoch: int) -> np.ndarray:
    """Per run: did this epoch leave it unusable? A non-finite or exploded (> DIVERGED_LOSS) train or
    test loss, or a non-finite train_R: backward weights can overflow (IA at cpu scale: B ~ 1e30, then
    NaN kernels) while batch norm keeps the cross-entropy at a finite chance level."""
    losses = np.stack([history["train_loss"][epoch], history["test_loss"][epoch]])
    bad = ~np.isfinite(losses).all(0) | (np.nan_to_num(losses, nan=np.inf) > DIVERGED_LOSS).any(0)
    return bad | ~np.isfinite(history["train_R"][epoch])


class TwoRoutesProgram(BatchProgram):
    """A batch of two_routes runs: ``diverged_at`` as the divergence test, the options in train.json."""

    def __init__(self, job):
        self.specs = job.specs

    def diverged(self, progress: Progress) -> np.ndarray:
        return diverged_at(progress.history, progress.epoch)

    def record(self, i: int, progress: Progress) -> Mapping[str, Any]:
        """The program's own train.json fields of run ``i`` (before ``options``)."""
        return {}

    def train_record(self, i: int, progress: Progress) -> Mapping[str, Any]:
        return {**self.record(i, progress), "options": options.recorded(self.specs[i])}

    def device(self) -> dict[str, str]:
        return provenance.jax_device()
