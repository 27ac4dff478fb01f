"""The wide_align stacked runs on a streamed dataset (ImageNet): same net, rules and driver, other data.

Caller: ``impls.wide_align.train.make_program`` for specs with ``dataset: imagenet`` (the driver
program ``impls.wide_align.train.Program`` wraps it exactly as it wraps the in-memory runs).

:class:`StreamedRuns` is a :class:`impls.wide_align.stacked.StackedRuns` whose batches come from
DataLoader worker processes over the ImageFolder index (impls.wide_align.imagenet) instead of
device-resident tensors. Runs of a batch that share a seed share one stream (same order, same
crops); each distinct seed gets its own train and val stream, so a run's numbers do not depend on
its batch-mates. The epoch number drives the order and the augmentation, so a resumed job sees
the same batches as an uninterrupted one. Only the official validation split is evaluated
(``val_acc``; ImageNet's test labels are not public), over every image, weighted by batch size.
"""
from __future__ import annotations

import numpy as np
import torch

from impls.wide_align import imagenet, models
from impls.wide_align.options import resolved_hparams
from impls.wide_align.stacked import EVAL_BATCH, StackedRuns, targets


class StreamedRuns(StackedRuns):
    """One batch of wide_align runs trained on a streamed ImageFolder tree."""

    eval_splits = ("val",)

    def __init__(self, specs: list[dict], datasets_dir, device: str, workers: int | None = None,
                 index: imagenet.ImageIndex | None = None):
        spec = specs[0]
        self.index = index if index is not None else imagenet.load_index(datasets_dir)
        self.image_size = int(resolved_hparams(spec)["image_size"])
        stream_seeds = list(dict.fromkeys(s["seed"] for s in specs))
        self.stream_of_run = [stream_seeds.index(s["seed"]) for s in specs]
        workers = imagenet.default_workers() if workers is None else workers
        per_stream = max(1, workers // len(stream_seeds)) if workers > 0 else 0
        pin = device == "cuda"
        self.train_loaders = [imagenet.loader(self.index, "train", spec["batch_size"], self.image_size, s, per_stream,
                                              pin) for s in stream_seeds]
        self.val_loaders = [imagenet.loader(self.index, "val", EVAL_BATCH, self.image_size, s, per_stream,
                                            pin) for s in stream_seeds]
        self.epochs_done = 0
        self._setup(specs, 3, self.image_size, self.index.n_classes, device)

    def split_sizes(self) -> dict[str, int]:
        return {"n_train": len(self.index.train_files), "n_val": len(self.index.val_files), "n_test": 0,
                "steps_per_epoch": len(self.train_loaders[0].batch_sampler),
                "val_batches": len(self.val_loaders[0].batch_sampler), "data_workers": self.train_loaders[0].num_workers}

    def state(self) -> dict:
        return {**super().state(), "epochs_done": np.int64(self.epochs_done)}

    def load_state(self, state: dict) -> None:
        super().load_state(state)
        self.epochs_done = int(state["epochs_done"])

    def _stack(self, batches) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-stream (x (B, 3, S, S), y (B,)) -> x (B, R·3, S, S), labels (R, B) on the device."""
        xs = [x.to(self.device, non_blocking=True) for x, _ in batches]
        ys = [y.to(self.device, non_blocking=True) for _, y in batches]
        x = torch.stack([xs[i] for i in self.stream_of_run], 1)
        return x.reshape(x.shape[0], -1, *x.shape[3:]), torch.stack([ys[i] for i in self.stream_of_run])

    def warm_up(self) -> None:
        """One untimed step on a synthetic batch and a throw-away copy (no decoding)."""
        saved_params, saved_running = self.params, self.running
        self.params = {k: ([t.clone() for t in v] if isinstance(v, list) else v.clone()) for k, v in saved_params.items()}
        if saved_running is not None:
            self.running = {k: [t.clone() for t in v] for k, v in saved_running.items()}
        r, s = len(self.seeds), self.image_size
        x = torch.randn(self.batch_size, r * 3, s, s, generator=torch.Generator().manual_seed(0)).to(self.device)
        self.step(x, torch.zeros(r, self.batch_size, dtype=torch.int64, device=self.device), update=False)
        self.params, self.running = saved_params, saved_running

    def train_epoch(self) -> dict[str, np.ndarray]:
        self.epochs_done += 1
        for stream in self.train_loaders:
            stream.batch_sampler.set_epoch(self.epochs_done)
        r = len(self.seeds)
        loss_sum = torch.zeros(r, dtype=torch.float64, device=self.device)
        correct = torch.zeros_like(loss_sum)
        steps = 0
        for batches in zip(*self.train_loaders):
            x, lab = self._stack(batches)
            f, y = self.step(x, lab)
            loss_sum += models.mse(f, y).double()
            correct += (f.argmax(-1) == lab).double().mean(-1)
            steps += 1
        steps = max(steps, 1)
        return {"train_loss": (loss_sum / steps).cpu().numpy(), "train_acc": (100 * correct / steps).cpu().numpy()}

    @torch.no_grad()
    def evaluate(self, split: str) -> dict[str, np.ndarray]:
        """Loss and accuracy over every image of the split, each image counted once."""
        r = len(self.seeds)
        loss = torch.zeros(r, dtype=torch.float64, device=self.device)
        correct = torch.zeros_like(loss)
        n = 0
        for batches in zip(*self.val_loaders):
            x, lab = self._stack(batches)
            f = models.forward(self.params, x, self.shape, running=self.running, training=False)[0]
            b = lab.shape[1]
            loss += models.mse(f, targets(lab, self.n_classes, self.hp["targets"])).double() * b
            correct += (f.argmax(-1) == lab).double().sum(-1)
            n += b
        return {f"{split}_loss": (loss / n).cpu().numpy(), f"{split}_acc": (100 * correct / n).cpu().numpy()}

