"""The wide_align programs the common driver trains (impls.common.driver), and their factory.

Caller: ``impls.common.cli`` ``train`` through ``make_program`` (``python -m impls.wide_align``).

``make_program`` picks the program of a batch: the recurrent Add task (``model.arch: rnn``,
impls.wide_align.add_task.AddProgram), the all-conv net on streamed ImageNet
(impls.wide_align.streaming.StreamedRuns) or on an in-memory dataset
(impls.wide_align.stacked.StackedRuns; data, seeds and streams are described there). The conv
runs are wrapped by :class:`Program`, which adds what the driver asks of a program:

- epoch 0 and every epoch evaluate every split of the runs (``val`` and ``test``; streamed: ``val``);
- per epoch the metrics are train loss/acc (running, live net before each step), val and test
  loss/acc, and ``time_epoch`` = seconds of the training epoch plus the validation pass (after an
  untimed warm-up step on a throw-away copy before the first trained epoch);
- a run diverges at the first epoch whose train or validation loss is not finite;
- alignment snapshots (``hparams.score_epochs``, rule bp) are taken after each listed epoch and
  written to ``align_snapshots.npz`` beside ``params.npz``; the evaluate stage turns them into
  scores (impls.wide_align.alignment via impls.wide_align.evaluate).

The driver owns the epoch loop, checkpoint/resume (``checkpoint.npz``), the log line and the run
records (metrics.csv, params.npz, train.json).
"""
from __future__ import annotations

import time

import numpy as np
import torch

from impls.common import torch_loop
from impls.common.backend import require_torch_platform
from impls.common.driver import BatchProgram, Progress
from impls.wide_align.add_task import AddProgram
from impls.wide_align.options import STREAMED, resolved_model
from impls.wide_align.stacked import StackedRuns, load_images
from impls.wide_align.streaming import StreamedRuns

METRICS = ("train_acc", "train_loss", "val_acc", "val_loss", "test_acc", "test_loss", "time_epoch")


class Program(BatchProgram):
    """A batch of conv-net runs (``StackedRuns`` or ``StreamedRuns``) for the driver."""

    log_metric = "val_acc"
    divergence_losses = ("train_loss", "val_loss")

    def __init__(self, runs: StackedRuns):
        self.runs = runs
        self.metric_names = [k for k in METRICS if k.split("_")[0] in ("train", "time") + runs.eval_splits]
        self.warm = False

    def evaluate(self):
        out = {}
        for split in self.runs.eval_splits:
            out.update(self.runs.evaluate(split))
        return out

    def train_epoch(self, progress: Progress):
        runs = self.runs
        if not self.warm:
            runs.warm_up()
            self.warm = True
        t0 = time.perf_counter()
        stats = runs.train_epoch()
        stats.update(runs.evaluate(runs.eval_splits[0]))
        stats["time_epoch"] = np.full(len(runs.seeds), time.perf_counter() - t0)
        for split in runs.eval_splits[1:]:
            stats.update(runs.evaluate(split))
        if progress.epoch in runs.hp["score_epochs"]:
            runs.snapshot(progress.epoch)
        return stats

    def state(self):
        return self.runs.state()

    def load_state(self, state):
        self.runs.load_state(state)

    def run_files(self, i):
        params = self.runs.params
        arrays = {f"w_{j}": w[i].cpu().numpy() for j, w in enumerate(params["w"])}
        arrays.update(v=params["v"][i].cpu().numpy(), c=params["c"][i].cpu().numpy())
        files = {"params.npz": arrays}
        if self.runs.scoring:
            files["align_snapshots.npz"] = self.runs.taken_snapshots(i)
        return files

    def train_record(self, i, progress):
        runs = self.runs
        return {"hparams_resolved": runs.hp, "model_resolved": resolved_model(runs.spec),
                "seeds_in_process": runs.seeds, "lrs_in_process": runs.lr.tolist(), **runs.split_sizes()}

    def device(self):
        return torch_loop.device_record(self.runs.device)


def make_program(job, options) -> BatchProgram:
    """The program of ``job``'s runs: the Add task, streamed ImageNet or an in-memory dataset."""
    device = require_torch_platform(options.platform)
    if device == "cpu":
        torch_loop.keep_freed_memory()
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    specs = list(job.specs)
    spec0 = specs[0]
    if spec0["model"]["arch"] == "rnn":
        return AddProgram(specs)
    if spec0["dataset"] in STREAMED:
        return Program(StreamedRuns(specs, options.datasets_dir, device))
    return Program(StackedRuns(specs, load_images(spec0, options.datasets_dir), device))
