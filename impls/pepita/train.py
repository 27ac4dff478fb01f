"""The pepita program the common driver trains (impls.common.driver): a batch of seeds, one epoch at a time.

The stacked network, its seeded streams, the train epoch and the evaluation are
``impls.pepita.stacked.StackedBatch``. What this adds for the driver:

- TF32 off on CUDA (h − h^err is a small difference; papers/pepita/README.md "Pitfalls") and every epoch, epoch 0
  included, under ``torch.no_grad()``;
- each epoch's metrics: the running train loss/accuracy of the epoch, then the full test set
  (and, FC, the alignment angle and ‖W_1‖_F); a non-finite train or test loss marks a run
  diverged (the driver's default);
- the state the driver checkpoints (``StackedBatch.state_dict``: tensors, generator states,
  None), params.npz (``w_0``, ``w_1`` ..., ``F``) and train.json's extra fields:
  ``hparams_resolved``, ``optimizer``, ``dtype``, ``train_epoch_seconds`` (the train part of
  each epoch this process ran, evaluation excluded) and ``seeds_in_process``.
"""
from __future__ import annotations

import time

import torch

from impls.common import torch_loop
from impls.common.backend import require_torch_platform
from impls.common.driver import BatchProgram, Progress
from impls.pepita.stacked import StackedBatch, load_images

METRICS_FC = ["train_acc", "train_loss", "test_acc", "test_loss", "weights_angle", "weights_w1norm"]
METRICS_CONV = METRICS_FC[:4]


class Program(BatchProgram):
    """A batch of pepita runs (``make_program`` for the driver is the class itself)."""

    def __init__(self, job, options, dtype=None):
        self.torch_device = require_torch_platform(options.platform)
        torch.backends.cuda.matmul.allow_tf32 = False  # h − h^err is a small difference (README "Pitfalls")
        torch.backends.cudnn.allow_tf32 = False
        spec = job.specs[0]
        self.seeds = [s["seed"] for s in job.specs]
        self.batch = StackedBatch(spec, self.seeds, load_images(spec, options.datasets_dir), self.torch_device, dtype)
        self.metric_names = METRICS_FC if self.batch.arch == "fc" else METRICS_CONV
        self.epoch_seconds: list[float] = []

    def evaluate(self):
        with torch.no_grad():
            return self.batch.evaluate()

    def train_epoch(self, progress: Progress):
        with torch.no_grad():
            t0 = time.perf_counter()
            stats = self.batch.train_epoch(progress.epoch)
            self.epoch_seconds.append(time.perf_counter() - t0)
            stats.update(self.batch.evaluate())
        return stats

    def state(self):
        return self.batch.state_dict()

    def load_state(self, state):
        self.batch.load_state_dict(state)

    def run_files(self, i):
        arrays = {f"w_{j}": w[i].cpu().numpy() for j, w in enumerate(self.batch.weights)}
        arrays["F"] = self.batch.F[i].cpu().numpy()
        return {"params.npz": arrays}

    def train_record(self, i, progress):
        b = self.batch
        return {"hparams_resolved": b.hp, "optimizer": b.optimizer, "dtype": str(b.dtype),
                "train_epoch_seconds": self.epoch_seconds, "seeds_in_process": self.seeds}

    def device(self):
        return torch_loop.device_record(self.torch_device)

