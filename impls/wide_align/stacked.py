"""A batch of wide_align runs as one stacked net: data, state, a train epoch and an evaluation.

Caller: the driver program ``impls.wide_align.train.Program`` (which adds epoch 0, the timing, the
snapshot epochs and the run records), ``impls.wide_align.streaming`` (the same net on streamed
ImageNet), tests and benchmarks/bench_wide_align.py.

All runs of a batch share rule, model, dataset, epochs and batch size and differ only in
``seed`` and ``hparams.lr`` (``batch_over``). The R runs are the R groups of grouped
convolutions (impls.wide_align.models), η is a per-run vector, so one process and one Python
loop train them all.

Per run r with seed s, independent ``torch.Generator`` streams give: the forward weights (s;
identical for every rule, so Align's frozen copies, BP, FA, DFA ... of one seed start from the
same weights), the FA/DFA feedback (s + STREAM_FEEDBACK), the batch order (s + STREAM_DATA) and
the evaluation order (s + STREAM_EVAL). A run's numbers do not depend on its batch-mates.

Data (papers/wide_align/README.md, "Network and data conventions"): pixels/255 (digits /16); validation = the first
``n_val`` training images (the original's "test set", logged as ``val_acc``); training = the rest (``data.n_train``:
its first n, validation then min(n, n_val)); the official test set is evaluated separately (``test_acc``).
Per epoch one permutation, int(N/B) full batches; evaluation in shuffled full batches of 100
(batch statistics, as the original; 'bn' uses running averages). ``train_epoch`` returns the train
loss/acc (running, live net before each step), ``evaluate(split)`` that split's loss/acc.

Alignment snapshots (``hparams.score_epochs``, rule bp): the runs also accumulate
W̃(t) = W(0) − η Σ_steps J₀ᵀ e_BP (the Align-zero direction on the frozen net driven by BP's own
error) and keep W(0), and W_BP, W̃ of the hidden conv layers at the listed epochs only
(``snapshot``); their slots exist from the start, so the state keeps one structure at every epoch.

``state()`` is everything that evolves (parameters, optimiser, running norm statistics, W̃, the
snapshots and the generators' states) as a tree of tensors for the driver's checkpoint;
``load_state`` takes it back as numpy arrays.
"""
from __future__ import annotations

import numpy as np
import torch

from impls.common import datasets
from impls.wide_align import models, rules
from impls.wide_align.options import resolved_hparams, resolved_model, strides

STREAM_FEEDBACK, STREAM_DATA, STREAM_EVAL = 2_000_003, 3_000_017, 4_000_037
EVAL_BATCH = 100
PIXEL_MAX = {"digits": 16.0}


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


def _clone(params: dict) -> dict:
    return {k: ([t.clone() for t in v] if isinstance(v, list) else v.clone()) for k, v in params.items()}


def to_torch(tree, device):
    """A state tree of numpy arrays (as the checkpoint gives it back) as tensors on ``device``."""
    if tree is None:
        return None
    if isinstance(tree, dict):
        return {k: to_torch(v, device) for k, v in tree.items()}
    if isinstance(tree, list):
        return [to_torch(v, device) for v in tree]
    return torch.from_numpy(np.array(tree)).to(device)


class StackedRuns:
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
        self.params0 = _clone(self.params)
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
        # one slot per (scored epoch, layer) from the start: the state has the same structure at every epoch
        self.snapshot_epochs = [0, *self.hp["score_epochs"]] if self.scoring else []
        self.snapshots = {f"{kind}_e{e}_l{l}": torch.zeros(w.shape) for e in self.snapshot_epochs
                          for l, w in enumerate(self.params["w"]) for kind in ("wbp", "wt")}
        self.snapped = np.zeros(len(self.snapshot_epochs), bool)
        if self.scoring:
            self.snapshot(0)
        self.gen_data = [generator(s + STREAM_DATA) for s in self.seeds]
        self.gen_eval = [generator(s + STREAM_EVAL) for s in self.seeds]

    def snapshot(self, epoch: int) -> None:
        """W_BP(epoch) and W̃(epoch) of every hidden conv layer (W(0) = the epoch-0 entry)."""
        if epoch not in self.snapshot_epochs:
            self.snapshot_epochs.append(epoch)
            self.snapped = np.append(self.snapped, False)
        for l, w in enumerate(self.params["w"]):
            self.snapshots[f"wbp_e{epoch}_l{l}"] = w.detach().cpu().clone()
            self.snapshots[f"wt_e{epoch}_l{l}"] = self.wtilde[l].detach().cpu().clone()
        self.snapped[self.snapshot_epochs.index(epoch)] = True

    def taken_snapshots(self, i: int) -> dict[str, np.ndarray]:
        """Run ``i``'s snapshots of the epochs reached (align_snapshots.npz)."""
        taken = {f"_e{e}_" for e, done in zip(self.snapshot_epochs, self.snapped) if done}
        return {k: v[i].numpy() for k, v in self.snapshots.items() if f"_{k.split('_')[1]}_" in taken}

    def state(self) -> dict:
        return {"params": self.params, "opt": self.opt.state_dict(), "running": self.running, "wtilde": self.wtilde,
                "snapshots": self.snapshots, "snapped": self.snapped,
                "gen_data": [g.get_state() for g in self.gen_data], "gen_eval": [g.get_state() for g in self.gen_eval]}

    def load_state(self, state: dict) -> None:
        self.params = to_torch(state["params"], self.device)
        self.opt = rules.Optimizer(self.hp["optimizer"], models.flat(self.params), self.lr)
        opt = state["opt"]
        self.opt.load_state_dict({"step": int(opt["step"]), "m": to_torch(opt["m"], self.device),
                                  "v": to_torch(opt["v"], self.device)})
        self.running, self.wtilde = to_torch(state["running"], self.device), to_torch(state["wtilde"], self.device)
        self.snapshots, self.snapped = to_torch(state["snapshots"], "cpu"), np.array(state["snapped"])
        for g, s in zip(self.gen_data, state["gen_data"]):
            g.set_state(to_torch(s, "cpu"))
        for g, s in zip(self.gen_eval, state["gen_eval"]):
            g.set_state(to_torch(s, "cpu"))

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
        params, running = self.params, self.running
        self.params = _clone(params)
        if running is not None:
            self.running = {k: [t.clone() for t in v] for k, v in running.items()}
        idx = self._perms(len(self.data["train"][0]), [torch.Generator().manual_seed(0) for _ in self.seeds])
        x, lab = self._gather("train", idx[:, :self.batch_size])
        self.step(x, lab, update=False)
        self.params, self.running = params, running

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
