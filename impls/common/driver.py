"""The one training driver of every paper and both frameworks.

Caller: ``impls.common.cli`` ``train``, with the batch's runs and the paper's program factory.

A paper supplies a *program* for a batch of runs (``BatchProgram`` below): it initialises the runs,
trains one epoch, evaluates, and hands its state out as a tree of arrays. The driver owns
everything around that, identically for every paper:

- ``spec.json`` of every run, then epoch 0 (the program's ``evaluate`` before training);
- the epoch loop: ``train_epoch`` returns the epoch's metrics, the driver records them in the
  history (metric -> (epochs + 1, runs)), marks runs that diverged (``program.diverged``) or
  stopped early (``program.stopped``), prints one log line (wall-clock time, metrics, seconds per
  epoch and the batch's ETA from its mean epoch time), and ends when every run has;
- checkpoint/resume: every ``checkpoint_minutes`` the program state, history and run status go to
  ``checkpoint.npz`` in the batch directory (``impls.common.checkpoint``: saved with its
  structure, refused with a clear message when it does not match the program); a killed job
  resumes there and ends with identical metrics;
- the run records: ``metrics.csv`` (up to each run's last epoch: divergence, early stop or the
  budget), the program's per-run files (``params.npz`` ...) and ``train.json`` last, since
  ``train.json`` is what marks a run trained.
"""
from __future__ import annotations

import sys
import time
from datetime import datetime, timedelta
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from impls.common import checkpoint, metrics, provenance
from impls.common.checkpointing import CheckpointClock
from impls.common.io import atomic_write_json, atomic_write_npz

CHECKPOINT_FILE = "checkpoint.npz"


@dataclass
class Progress:
    """Where a batch stands after an epoch: what the program's hooks are shown."""

    epoch: int
    epochs: int
    history: dict[str, np.ndarray]   # metric -> (epochs + 1, runs); NaN where not measured
    diverged: np.ndarray             # per run: epoch of divergence, -1 = none
    stopped: np.ndarray              # per run: epoch of an early stop, -1 = none

    @property
    def active(self) -> np.ndarray:
        """Runs that still train."""
        return (self.diverged < 0) & (self.stopped < 0)

    def last_epoch(self, i: int) -> int:
        """The last epoch in run ``i``'s record: its divergence, its early stop, or the epoch reached."""
        for ended in (int(self.diverged[i]), int(self.stopped[i])):
            if ended >= 0:
                return ended
        return self.epoch


class BatchProgram(ABC):
    """What a paper implements for the driver; the defaults of the hooks suit most papers.

    Required (abstract): ``metric_names``, ``evaluate``, ``train_epoch``, ``state``, ``load_state``,
    ``run_files``, ``device``. The run axis is the leading axis of every per-run array.
    """

    #: history keys, "<split>_<metric>" (e.g. "test_acc"); epoch 0 holds what ``evaluate`` returns
    metric_names: list[str]
    #: the metric the log line summarises
    log_metric = "test_acc"
    #: losses whose non-finite value marks a run diverged (``diverged``'s default)
    divergence_losses = ("train_loss", "test_loss")

    @abstractmethod
    def evaluate(self) -> Mapping[str, np.ndarray]:
        """Metrics of the untrained runs (epoch 0), each an array over runs."""

    @abstractmethod
    def train_epoch(self, progress: Progress) -> Mapping[str, np.ndarray]:
        """Train epoch ``progress.epoch`` (1-based) of every active run; return its metrics."""

    @abstractmethod
    def state(self) -> Any:
        """Everything that evolves during training, as a tree of dicts, lists, None and arrays."""

    @abstractmethod
    def load_state(self, state: Any) -> None:
        """Take back a tree ``state()`` returned (its arrays as numpy, its tuples as lists)."""

    @abstractmethod
    def run_files(self, i: int) -> Mapping[str, Mapping[str, np.ndarray]]:
        """Files of run ``i`` after training: ``{"params.npz": {name: array}}``."""

    @abstractmethod
    def device(self) -> dict[str, str]:
        """The accelerator record (``provenance.jax_device()`` or ``torch_loop.device_record``)."""

    # ------------------------------------------------------------------ optional hooks
    def diverged(self, progress: Progress) -> np.ndarray:
        """Per run: did this epoch leave it unusable? Default: a non-finite loss."""
        epoch = progress.epoch
        bad = np.zeros(progress.diverged.shape, bool)
        for name in self.divergence_losses:
            bad |= ~np.isfinite(progress.history[name][epoch])
        return bad

    def stopped(self, progress: Progress) -> np.ndarray:
        """Per run: should it stop early after this epoch? Default: never."""
        return np.zeros(progress.stopped.shape, bool)

    def epoch_done(self, progress: Progress, run_dirs: tuple[Path, ...]) -> None:
        """Called after epoch 0 and after each recorded epoch (e.g. to keep snapshots)."""

    def train_record(self, i: int, progress: Progress) -> Mapping[str, Any]:
        """Fields of run ``i``'s train.json beyond the common ones."""
        return {}


def eta(epochs_done: int, epochs_left: int, elapsed_s: float) -> float | None:
    """Seconds the batch still needs: its mean epoch time so far times the epochs left (None
    before the first epoch, when there is no epoch time to go by)."""
    if epochs_done <= 0:
        return None
    return elapsed_s / epochs_done * max(epochs_left, 0)


def format_duration(seconds: float) -> str:
    """A duration as H:MM:SS (whole seconds, rounded up: an ETA of 0.2 s reads 0:00:01)."""
    whole = int(-(-seconds // 1))
    hours, rest = divmod(whole, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}"


def log_line(batch_id: str, program: BatchProgram, progress: Progress, seconds: float | None,
             remaining_s: float | None, now: datetime) -> str:
    """One progress line of the batch: wall-clock time, epoch, loss, the log metric, diverged and
    stopped runs, the epoch's time and the ETA of the batch (time left and the clock time it ends)."""
    epoch, n = progress.epoch, len(progress.diverged)
    live = progress.diverged < 0
    values = progress.history.get(program.log_metric, np.full((epoch + 1, n), np.nan))[epoch][live]
    summary = (f"{program.log_metric} median {np.nanmedian(values):.4g} max {np.nanmax(values):.4g}"
               if live.any() and np.isfinite(values).any() else f"{program.log_metric} n/a")
    loss = progress.history.get("train_loss")
    loss_text = f" | train loss {np.nanmean(loss[epoch][live]):.4g}" if (
        loss is not None and live.any() and np.isfinite(loss[epoch][live]).any()) else ""
    rate = f" | {seconds:.3g} s/epoch" if seconds is not None else ""
    left = (f" | ETA {format_duration(remaining_s)} "
            f"({(now + timedelta(seconds=remaining_s)).strftime('%H:%M:%S')})") if remaining_s is not None else ""
    return (f"{now.strftime('%Y-%m-%d %H:%M:%S')} [{batch_id}] epoch {epoch}/{progress.epochs} | {n} runs{loss_text} | "
            f"{summary} | diverged {int((~live).sum())} | stopped {int((progress.stopped >= 0).sum())}{rate}{left}")


def _log(batch_id: str, program: BatchProgram, progress: Progress, seconds: float | None,
         remaining_s: float | None = None) -> None:
    print(log_line(batch_id, program, progress, seconds, remaining_s, datetime.now()), file=sys.stderr, flush=True)


def _record(program: BatchProgram, progress: Progress, values: Mapping[str, np.ndarray]) -> None:
    for name, value in values.items():
        if name not in progress.history:
            raise KeyError(f"the program returned metric {name!r}, which is not in its metric_names")
        progress.history[name][progress.epoch] = np.asarray(value, dtype=np.float64)


def train(job, options, make_program: Callable[[Any, Any], BatchProgram]) -> None:
    """Train every run of ``job`` (a ``cli.BatchJob``) to its budget and write its records."""
    for run_dir, spec in zip(job.run_dirs, job.specs):
        atomic_write_json(run_dir / "spec.json", spec)
    program = make_program(job, options)
    epochs, n = job.specs[0]["epochs"], len(job.run_ids)
    names = list(program.metric_names)
    ckpt_path = job.batch_dir / CHECKPOINT_FILE
    resumed = checkpoint.load(ckpt_path, list(job.run_ids), names, program.state())
    if resumed:
        program.load_state(resumed.state)
        progress = Progress(resumed.epoch, epochs, resumed.history, resumed.diverged, resumed.stopped)
        elapsed = resumed.elapsed_s
        print(f"[{job.batch_id}] resumed from checkpoint at epoch {progress.epoch}", file=sys.stderr, flush=True)
    else:
        history = {k: np.full((epochs + 1, n), np.nan) for k in names}
        progress = Progress(0, epochs, history, np.full(n, -1, np.int64), np.full(n, -1, np.int64))
        elapsed = 0.0
        _record(program, progress, program.evaluate())
        _log(job.batch_id, program, progress, None)
        program.epoch_done(progress, job.run_dirs)
    t_start, clock = time.perf_counter() - elapsed, CheckpointClock(options.checkpoint_minutes)
    first_epoch = progress.epoch  # the ETA goes by the epochs timed in this process (not a resumed one's)
    t_first = time.perf_counter()
    while progress.epoch < epochs and progress.active.any():
        t0 = time.perf_counter()
        progress.epoch += 1
        _record(program, progress, program.train_epoch(progress))
        live = progress.diverged < 0
        progress.diverged[live & program.diverged(progress)] = progress.epoch
        running = progress.active
        progress.stopped[running & program.stopped(progress)] = progress.epoch
        now = time.perf_counter()
        left = epochs - progress.epoch if progress.active.any() else 0   # every run diverged or stopped: done
        _log(job.batch_id, program, progress, now - t0, eta(progress.epoch - first_epoch, left, now - t_first))
        program.epoch_done(progress, job.run_dirs)
        done = progress.epoch == epochs or not progress.active.any()
        if not done and clock.due():
            checkpoint.save(ckpt_path, checkpoint.Snapshot(
                progress.epoch, list(job.run_ids), time.perf_counter() - t_start, progress.history,
                progress.diverged, progress.stopped, program.state()))
            clock.saved(progress.epoch)
    _write_runs(job, program, progress, time.perf_counter() - t_start)
    ckpt_path.unlink(missing_ok=True)


def _write_runs(job, program: BatchProgram, progress: Progress, wall: float) -> None:
    record = provenance.record(program.device())
    for i, (rid, run_dir) in enumerate(zip(job.run_ids, job.run_dirs)):
        for name, arrays in program.run_files(i).items():
            atomic_write_npz(run_dir / name, arrays)
        last = progress.last_epoch(i)
        diverged = int(progress.diverged[i])
        metrics.write_metrics(run_dir, {k: v[:, i] for k, v in progress.history.items()}, last + 1)
        metrics.write_train_record(run_dir, run_id=rid, diverged_epoch=diverged if diverged >= 0 else None,
                                   epochs_completed=last, wall_time_s=wall, batch_id=job.batch_id,
                                   runs_in_batch=len(job.run_ids), provenance=record,
                                   extra=program.train_record(i, progress))
