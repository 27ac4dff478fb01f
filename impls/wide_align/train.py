"""Training a batch of wide_align runs: seeds and learning rates of one configuration, stacked.

All runs of a batch share rule, model, dataset, epochs and batch size and differ only in
``seed`` and ``hparams.lr`` (``batch_over``). The R runs are the R groups of grouped
convolutions (impls.wide_align.models), η is a per-run vector, so one process and one Python
loop train them all.

Per run r with seed s, independent ``torch.Generator`` streams give: the forward weights (s;
identical for every rule, so Align's frozen copies, BP, FA, DFA ... of one seed start from the
same weights), the FA/DFA feedback (s + STREAM_FEEDBACK), the batch order (s + STREAM_DATA) and
the evaluation order (s + STREAM_EVAL). A run's numbers do not depend on its batch-mates.

Data (spec §2): pixels/255 (digits /16); validation = the first ``n_val`` training images (the
original's "test set", logged as ``val_acc``); training = the rest (``data.n_train``: its first n,
validation then min(n, n_val)); the official test set is evaluated separately (``test_acc``).
Per epoch one permutation, int(N/B) full batches; evaluation in shuffled full batches of 100
(batch statistics, as the original; 'bn' uses running averages). Metrics per epoch: train loss/acc
(running, live net before each step), val and test loss/acc, and ``time_epoch`` = seconds of the
training epoch plus the validation pass (after an untimed warm-up step on a throw-away copy).

ImageNet (``dataset: imagenet``) is streamed instead: impls.wide_align.streaming.StreamingProgram
(same net, rules and loop; batches from DataLoader workers over an ImageFolder tree; official
validation split only, no test split).

Alignment snapshots (``hparams.score_epochs``, rule bp): the run also accumulates
W̃(t) = W(0) − η Σ_steps J₀ᵀ e_BP (the Align-zero direction on the frozen net driven by BP's own
error) and keeps W(0), and W_BP, W̃ of the hidden conv layers at the listed epochs only, in
``align_snapshots.npz``; the evaluate stage turns them into scores (impls.wide_align.alignment).
"""
from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING

import numpy as np
import torch

from impls.common import datasets, metrics, provenance, torch_loop
from impls.common.backend import require_torch_platform
from impls.common.checkpointing import CheckpointClock
from impls.common.io import atomic_write_json, atomic_write_npz
from impls.wide_align import models, rules
from impls.wide_align.options import STREAMED, resolved_hparams, resolved_model, strides

if TYPE_CHECKING:  # impls.common.cli needs jsonschema; the benchmark imports Program without it
    from impls.common.cli import BatchJob, TrainOptions

STREAM_FEEDBACK, STREAM_DATA, STREAM_EVAL = 2_000_003, 3_000_017, 4_000_037
EVAL_BATCH = 100
PIXEL_MAX = {"digits": 16.0}
METRICS = ("train_acc", "train_loss", "val_acc", "val_loss", "test_acc", "test_loss", "time_epoch")


def generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(seed))


def load_images(spec: dict, datasets_dir) -> dict:
    """Channel-first float images; train / val (first n_val of train) / official test splits."""
    ds = datasets.load_dataset(datasets_dir / f"{spec['dataset']}.npz")
    hp = resolved_hparams(spec)
    scale = PIXEL_MAX.get(spec["dataset"], 255.0)

    def prep(x):
        x = x.astype(np.float32) / scale
        return torch.from_numpy(x[:, None] if x.ndim == 3 else np.ascontiguousarray(x.transpose(0, 3, 1, 2)))

    n_val = hp["n_val"]
    if n_val >= len(ds.x_train):
        raise ValueError(f"hparams.n_val = {n_val} leaves no training images ({len(ds.x_train)} in {spec['dataset']})")
    x_val, y_val = ds.x_train[:n_val], ds.y_train[:n_val]
    x_tr, y_tr = ds.x_train[n_val:], ds.y_train[n_val:]
    data = spec.get("data", {})
    if data.get("n_train"):
        n = data["n_train"]
        x_tr, y_tr = x_tr[:n], y_tr[:n]
        x_val, y_val = x_val[:min(n, n_val)], y_val[:min(n, n_val)]
    x_te, y_te = ds.x_test[:data.get("n_test")], ds.y_test[:data.get("n_test")]
    lab = lambda y: torch.from_numpy(y.astype(np.int64))  # noqa: E731
    return {"train": (prep(x_tr), lab(y_tr)), "val": (prep(x_val), lab(y_val)), "test": (prep(x_te), lab(y_te)),
            "n_classes": ds.num_classes}


def targets(labels: torch.Tensor, n_classes: int, kind: str) -> torch.Tensor:
    y = torch.nn.functional.one_hot(labels, n_classes).float()
    return y - 0.1 if kind == "shifted" else y


class Program:
    """Data, stacked state, a train epoch and an evaluation for one batch of runs."""

    #: splits evaluated after every epoch (the first is the validation split)
    eval_splits = ("val", "test")

    def __init__(self, specs: list[dict], data: dict, device: str):
        x_tr = data["train"][0]
        self.data = {k: (data[k][0].to(device), data[k][1].to(device)) for k in ("train", "val", "test")}
        self._setup(specs, x_tr.shape[1], x_tr.shape[2], data["n_classes"], device)

    def split_sizes(self) -> dict[str, int]:
        return {f"n_{k}": len(self.data[k][0]) for k in ("train", "val", "test")}

    def _setup(self, specs: list[dict], c_in: int, size: int, n_classes: int, device: str) -> None:
        """Net shape, stacked parameters, optimiser and streams (everything but the data)."""
        spec = specs[0]
        self.spec, self.rule, self.device = spec, spec["rule"], device
        self.hp = resolved_hparams(spec)
        model = resolved_model(spec)
        self.shape = models.NetShape(c_in, size, model["width"], tuple(strides(spec)), n_classes, model["norm"],
                                     model["param"])
        self.n_classes = n_classes
        self.batch_size = spec["batch_size"]
        self.seeds = [s["seed"] for s in specs]
        self.lr = torch.tensor([float(s["hparams"]["lr"]) for s in specs], device=device)
        self.scoring = bool(self.hp["score_epochs"])
        self.init_state()

    def init_state(self) -> None:
        per_run = [models.init_params(self.shape, generator(s)) for s in self.seeds]
        self.params = {k: ([t.to(self.device) for t in v] if isinstance(v, list) else v.to(self.device))
                       for k, v in models.stack_params(per_run).items()}
        self.params0 = {k: ([t.clone() for t in v] if isinstance(v, list) else v.clone()) for k, v in self.params.items()}
        fbs = [rules.init_feedback(self.rule, self.shape, p, generator(s + STREAM_FEEDBACK), self.hp["dfa_feedback"])
               for p, s in zip(per_run, self.seeds)]
        self.feedback = None
        if fbs[0] is not None:
            self.feedback = {k: ([torch.stack(z).to(self.device) for z in zip(*(f[k] for f in fbs))]
                                 if isinstance(fbs[0][k], list) else torch.stack([f[k] for f in fbs]).to(self.device))
                             for k in fbs[0]}
        self.running = models.init_running(self.shape, len(self.seeds), self.device) if self.shape.norm == "bn" else None
        self.opt = rules.Optimizer(self.hp["optimizer"], models.flat(self.params), self.lr)
        self.wtilde = [w.clone() for w in self.params["w"]] if self.scoring else None
        self.snapshots = {}
        if self.scoring:
            self.snapshot(0)
        self.gen_data = [generator(s + STREAM_DATA) for s in self.seeds]
        self.gen_eval = [generator(s + STREAM_EVAL) for s in self.seeds]

    def snapshot(self, epoch: int) -> None:
        """W_BP(epoch) and W̃(epoch) of every hidden conv layer (W(0) = the epoch-0 entry)."""
        for l, w in enumerate(self.params["w"]):
            self.snapshots[f"wbp_e{epoch}_l{l}"] = w.detach().cpu().clone()
            self.snapshots[f"wt_e{epoch}_l{l}"] = self.wtilde[l].detach().cpu().clone()

    def state_dict(self) -> dict:
        return {"params": self.params, "opt": self.opt.state_dict(), "running": self.running, "wtilde": self.wtilde,
                "snapshots": self.snapshots, "gen_data": [g.get_state() for g in self.gen_data],
                "gen_eval": [g.get_state() for g in self.gen_eval]}

    def load_state_dict(self, state: dict) -> None:
        self.params = state["params"]
        self.opt = rules.Optimizer(self.hp["optimizer"], models.flat(self.params), self.lr)
        self.opt.load_state_dict(state["opt"])
        self.running, self.wtilde, self.snapshots = state["running"], state["wtilde"], state["snapshots"]
        for g, s in zip(self.gen_data, state["gen_data"]):
            g.set_state(s)
        for g, s in zip(self.gen_eval, state["gen_eval"]):
            g.set_state(s)

    # ------------------------------------------------------------------ batches
    def _gather(self, split: str, idx: torch.Tensor):
        """idx (R, B) -> x (B, R·C, H, W), labels (R, B)."""
        x, y = self.data[split]
        xb = x[idx]  # (R, B, C, H, W)
        r, b = idx.shape
        return xb.transpose(0, 1).reshape(b, r * x.shape[1], *x.shape[2:]), y[idx]

    def _perms(self, n: int, gens) -> torch.Tensor:
        return torch.stack([torch.randperm(n, generator=g) for g in gens]).to(self.device)

    def step(self, x, labels, lr_scale: float = 1.0, update: bool = True):
        y = targets(labels, self.n_classes, self.hp["targets"])
        dirs, f, e = rules.directions(self.rule, self.params, self.params0, self.feedback, x, y, self.shape,
                                      self.running, self.hp["dfa_feedback"])
        if update:
            self.opt.step(models.flat(self.params), dirs)
            if self.scoring:  # NTK prediction of BP's change: Align-zero direction driven by BP's error
                pred = rules.frozen_signals(self.params0, x, e, self.shape, want_hidden=False)
                with torch.no_grad():
                    for w, d in zip(self.wtilde, pred):
                        w.sub_(self.lr.view(-1, 1, 1, 1, 1) * d)
        return f, y

    def warm_up(self) -> None:
        """One untimed step on a throw-away copy (first-call costs out of the epoch time)."""
        saved = self.state_dict()
        copy = {k: ([t.clone() for t in v] if isinstance(v, list) else v.clone()) for k, v in self.params.items()}
        running = None if self.running is None else {k: [t.clone() for t in v] for k, v in self.running.items()}
        params, self.params, self.running = self.params, copy, running
        idx = self._perms(len(self.data["train"][0]), [torch.Generator().manual_seed(0) for _ in self.seeds])
        x, lab = self._gather("train", idx[:, :self.batch_size])
        self.step(x, lab, update=False)
        self.params, self.running = params, saved["running"]

    def train_epoch(self) -> dict[str, np.ndarray]:
        n, bsz = len(self.data["train"][0]), self.batch_size
        perms = self._perms(n, self.gen_data)
        r = len(self.seeds)
        loss_sum = torch.zeros(r, dtype=torch.float64, device=self.device)
        correct = torch.zeros_like(loss_sum)
        steps = n // bsz
        for i in range(steps):
            x, lab = self._gather("train", perms[:, i * bsz:(i + 1) * bsz])
            f, y = self.step(x, lab)
            loss_sum += models.mse(f, y).double()
            correct += (f.argmax(-1) == lab).double().mean(-1)
        return {"train_loss": (loss_sum / steps).cpu().numpy(), "train_acc": (100 * correct / steps).cpu().numpy()}

    @torch.no_grad()
    def evaluate(self, split: str) -> dict[str, np.ndarray]:
        n = len(self.data[split][0])
        bsz = min(EVAL_BATCH, n)
        perms = self._perms(n, self.gen_eval)
        r = len(self.seeds)
        loss = torch.zeros(r, dtype=torch.float64, device=self.device)
        correct = torch.zeros_like(loss)
        steps = n // bsz
        for i in range(steps):
            x, lab = self._gather(split, perms[:, i * bsz:(i + 1) * bsz])
            f = models.forward(self.params, x, self.shape, running=self.running, training=False)[0]
            loss += models.mse(f, targets(lab, self.n_classes, self.hp["targets"])).double()
            correct += (f.argmax(-1) == lab).double().mean(-1)
        return {f"{split}_loss": (loss / steps).cpu().numpy(), f"{split}_acc": (100 * correct / steps).cpu().numpy()}


def _log(job, epoch, epochs, history, diverged) -> None:
    val = history["val_acc"][epoch][diverged < 0]
    summary = f"val acc mean {np.nanmean(val):.2f}%" if val.size else "all diverged"
    train = history["train_loss"][epoch]
    train = f"{np.nanmean(train):.4g}" if np.isfinite(train).any() else "-"
    test = f" | test acc {np.nanmean(history['test_acc'][epoch]):.2f}%" if "test_acc" in history else ""
    print(f"[{job.batch_id}] epoch {epoch}/{epochs} | {len(job.run_ids)} runs | train loss "
          f"{train} | {summary}{test} | diverged {int((diverged >= 0).sum())} | "
          f"{np.nanmean(history['time_epoch'][epoch]):.2f} s/epoch", file=sys.stderr, flush=True)


def train_batch(job: "BatchJob", options: "TrainOptions") -> None:
    """Train every run of ``job``; write spec.json, metrics.csv, params.npz, train.json per run."""
    device = require_torch_platform(options.platform)
    if device == "cpu":
        torch_loop.keep_freed_memory()
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    spec0 = job.specs[0]
    if spec0["model"]["arch"] == "rnn":
        from impls.wide_align.add_task import train_batch as train_add

        return train_add(job, options)
    epochs = spec0["epochs"]
    for run_dir, spec in zip(job.run_dirs, job.specs):
        atomic_write_json(run_dir / "spec.json", spec)
    if spec0["dataset"] in STREAMED:
        from impls.wide_align.streaming import StreamingProgram

        program = StreamingProgram(list(job.specs), options.datasets_dir, device)
    else:
        program = Program(list(job.specs), load_images(spec0, options.datasets_dir), device)
    names = [k for k in METRICS if k.split("_")[0] in ("train", "time") + program.eval_splits]
    history = {k: np.full((epochs + 1, len(job.run_ids)), np.nan) for k in names}
    diverged = np.full(len(job.run_ids), -1, np.int64)
    ckpt_path = job.batch_dir / "checkpoint.pt"
    ckpt = torch_loop.load_checkpoint(ckpt_path, job)
    if ckpt:
        start, elapsed = ckpt["epoch"], ckpt["elapsed"]
        program.load_state_dict(ckpt["state"])
        history, diverged = ckpt["history"], ckpt["diverged"]
        print(f"[{job.batch_id}] resumed from checkpoint at epoch {start}", file=sys.stderr, flush=True)
    else:
        start, elapsed = 0, 0.0
        for split in program.eval_splits:
            for k, v in program.evaluate(split).items():
                history[k][0] = v
        _log(job, 0, epochs, history, diverged)
    program.warm_up()
    t_start, clock = time.perf_counter() - elapsed, CheckpointClock(options.checkpoint_minutes)
    epoch = start
    for epoch in range(start + 1, epochs + 1):
        t0 = time.perf_counter()
        stats = program.train_epoch()
        stats.update(program.evaluate("val"))
        stats["time_epoch"] = np.full(len(job.run_ids), time.perf_counter() - t0)
        for split in program.eval_splits[1:]:
            stats.update(program.evaluate(split))
        for k, v in stats.items():
            history[k][epoch] = v
        if epoch in program.hp["score_epochs"]:
            program.snapshot(epoch)
        bad = ~np.isfinite(history["train_loss"][epoch]) | ~np.isfinite(history["val_loss"][epoch])
        diverged[(diverged < 0) & bad] = epoch
        _log(job, epoch, epochs, history, diverged)
        done = epoch == epochs or bool((diverged >= 0).all())
        if not done and clock.due():
            torch_loop.save_checkpoint(ckpt_path, job, epoch, program, history, diverged, time.perf_counter() - t_start)
            clock.saved(epoch)
        if done:
            break
    wall = time.perf_counter() - t_start
    record = provenance.record(torch_loop.device_record(device))
    extra = {"hparams_resolved": program.hp, "model_resolved": resolved_model(spec0),
             "seeds_in_process": program.seeds, "lrs_in_process": program.lr.tolist(), **program.split_sizes()}
    for i, (rid, run_dir) in enumerate(zip(job.run_ids, job.run_dirs)):
        arrays = {f"w_{j}": w[i].cpu().numpy() for j, w in enumerate(program.params["w"])}
        arrays.update(v=program.params["v"][i].cpu().numpy(), c=program.params["c"][i].cpu().numpy())
        atomic_write_npz(run_dir / "params.npz", arrays)
        if program.scoring:
            atomic_write_npz(run_dir / "align_snapshots.npz", {k: v[i].numpy() for k, v in program.snapshots.items()})
        d = int(diverged[i])
        last = d if d >= 0 else epoch
        metrics.write_metrics(run_dir, {k: v[:, i] for k, v in history.items()}, last + 1)
        metrics.write_train_record(run_dir, run_id=rid, diverged_epoch=d if d >= 0 else None,
                                   epochs_completed=last, wall_time_s=wall, batch_id=job.batch_id,
                                   runs_in_batch=len(job.run_ids), provenance=record, extra=extra)
    ckpt_path.unlink(missing_ok=True)
