"""The recurrent Add task (papers/wide_align/README.md, "Add task"): a ReLU RNN with a trainable initial state.

Data: legacy numpy seed 99, one binomial(1, 0.5) draw of 400 sequences x T = 100; the first 300
train, the last 100 test. Targets y_t = 0.5 + 0.5·x_{t−2} − 0.25·x_{t−5}, x_{t−k} = 0 for t < k
('causal', default) or the released code's circular roll with the first 2 / 5 *sequences* zeroed
('released', bug B4).

Model (row vectors): h_t = ReLU(u·x_t + h_{t−1}W/√n + b), o_t = h_t·v/√n + c, h_0 = s (50 x n,
trainable, zero start; row i belongs to batch slot i, also in evaluation). Reseed 99, then u (n),
W (n x n), v (n) ~ N(0, 1) in that order; b = c = 0. ℒ = Σ_{t=1..100} mean_batch (o_t − y_t)²,
e_t = ∂ℒ/∂o_t.

Rules (update −η·direction, SGD lr 1e-3, batch 50, 6 steps per epoch):
- ``bptt``: ∂ℒ/∂θ for θ = u, W, b, v, c, s (backprop through time).
- ``alignzero``: Σ_t (∂o⁽⁰⁾_t/∂θ⁽⁰⁾)ᵀ e_t -- BPTT through the frozen initial RNN on its own trajectory
  (started from the current s) weighted by the live error, applied to all six. Equals BPTT at init.
- ``alignada``: v, c get the gradient. δ_τ = ∂(Σ_t o⁽⁰⁾_t·e_t)/∂h⁽⁰⁾_τ is the frozen net's full backward
  signal at state τ (v(0)e_τ/√n plus later errors carried back through W(0) and frozen ReLU′); at
  each step τ the live local VJP gives d_u += Σ x_τ g_τ, d_W += (h_{τ−1}/√n)ᵀ g_τ, d_b += Σ g_τ with
  g_τ = ReLU′(live a_τ) ⊙ δ_τ -- the live chain through time is cut. d_s = δ_0 of the frozen net.
  'released' (bug B5): δ_τ loses its direct readout term v(0)e_τ/√n.
- ``readout``: v, c and s get their gradients; u, W, b stay at their initial values.

Metric: each epoch, after the updates, the mean loss over 2 test batches and 6 train batches
(fresh permutations, in that order as the original); the figure reports the minimum over epochs.
``time_epoch`` = seconds of the epoch's updates and both evaluations. A run diverges at the first
epoch whose train or test loss is not finite.

``AddProgram`` is the batch for the common driver (impls.common.driver: epoch loop, checkpoint,
log, run records). Runs of a batch (seeds, lrs) train together as one stacked RNN: a leading run
axis on every parameter, per-run η. Data, initialisation and batch order are seeded with 99 whatever
the run's seed (as the original), so the runs share x, W(0) and every permutation; a diverged run's NaNs
never reach the others (the runs only share x). A batch of one keeps the unstacked arithmetic
(scalar η, per-batch losses averaged in float64), the path the comparison with the original code used (README
"Measured").

Reference: A. Boopathy, I. Fiete, "How to Train Your Wide Neural Network Without Backprop: An
Input-Weight Alignment Perspective", ICML 2022 (the Add task of its recurrent experiment).
"""
from __future__ import annotations

import math
import time

import numpy as np
import torch

from impls.common import torch_loop
from impls.common.driver import BatchProgram, Progress
from impls.wide_align.options import resolved_hparams, resolved_model

T, N_SEQ, N_TRAIN, BATCH = 100, 400, 300, 50
DATA_SEED = 99


def make_data(targets: str = "causal") -> dict[str, np.ndarray]:
    """x (400, 100) in {0, 1} and targets y (400, 100); first 300 train, last 100 test."""
    rng = np.random.RandomState(DATA_SEED)
    x = rng.binomial(1, 0.5, size=(N_SEQ, T)).astype(np.float64)
    if targets == "causal":
        x2, x5 = np.zeros_like(x), np.zeros_like(x)
        x2[:, 2:], x5[:, 5:] = x[:, :-2], x[:, :-5]
    else:  # released code: circular roll in time, then the first 2 / 5 sequences zeroed (B4)
        x2, x5 = np.roll(x, 2, axis=1), np.roll(x, 5, axis=1)
        x2[:2], x5[:5] = 0.0, 0.0
    y = 0.5 + 0.5 * x2 - 0.25 * x5
    return {"x_train": x[:N_TRAIN], "y_train": y[:N_TRAIN], "x_test": x[N_TRAIN:], "y_test": y[N_TRAIN:]}


def chance_loss(y: np.ndarray) -> float:
    """ℒ of the constant prediction 0.5: Σ_t mean_n (0.5 − y_nt)²."""
    return float(((y - 0.5) ** 2).mean(0).sum())


def init_params(n: int, dtype=torch.float32) -> dict:
    rng = np.random.RandomState(DATA_SEED)
    u, w, v = rng.normal(size=n), rng.normal(size=(n, n)), rng.normal(size=n)
    t = lambda a: torch.tensor(a, dtype=dtype)  # noqa: E731
    return {"u": t(u), "W": t(w), "b": torch.zeros(n, dtype=dtype), "v": t(v), "c": torch.zeros((), dtype=dtype),
            "s": torch.zeros(BATCH, n, dtype=dtype)}


NAMES = ("u", "W", "b", "v", "c", "s")


def forward(p: dict, x: torch.Tensor, s: torch.Tensor, cut: bool = False):
    """x (B, T). Returns outputs o (B, T), states [h_0 = s, h_1, ..., h_T], pre-activations [a_1..a_T].

    Stacked runs: every parameter with a leading run axis R (u (R, n), W (R, n, n), c (R,), s (R, B, n))
    gives o (R, B, T) and states (R, B, n) for the shared x; a single run's ops are unchanged.
    """
    n = p["u"].shape[-1]
    h, hs, pre, outs = s, [s], [], []
    for t in range(x.shape[-1]):
        h_prev = h.detach() if cut else h
        a = x[..., t:t + 1] * p["u"][..., None, :] + h_prev @ p["W"] / math.sqrt(n) + p["b"][..., None, :]
        h = torch.relu(a)
        hs.append(h)
        pre.append(a)
        h_out = h.detach() if cut else h
        read = h_out @ p["v"] if p["v"].dim() == 1 else (h_out @ p["v"][..., None])[..., 0]
        outs.append(read / math.sqrt(n) + p["c"][..., None])
    return torch.stack(outs, -1), hs, pre


def loss_fn(o, y):
    """Σ_t mean_batch (o_t − y_t)²: a scalar, or (R,) for stacked runs."""
    return ((o - y) ** 2).mean(-2).sum(-1)


def _leaves(p):
    return {k: v.detach().clone().requires_grad_(True) for k, v in p.items()}


def _grad(scalar, tensors):
    out = torch.autograd.grad(scalar, tensors, allow_unused=True)
    return [torch.zeros_like(t) if g is None else g for t, g in zip(tensors, out)]


def directions(rule: str, p: dict, p0: dict, x, y, alignada_mode: str = "default"):
    """``(dirs, loss)``: a direction per name of ``NAMES``."""
    with torch.enable_grad():
        live = _leaves(p)
        if rule in ("bptt", "readout", "alignzero"):
            o, _, _ = forward(live, x, live["s"])
            loss = loss_fn(o, y)
            if rule == "bptt":
                return _grad(loss.sum(), [live[k] for k in NAMES]), loss.detach()
            if rule == "readout":
                g = _grad(loss.sum(), [live[k] for k in NAMES])
                return [torch.zeros_like(t) if k in ("u", "W", "b") else t for k, t in zip(NAMES, g)], loss.detach()
            e = torch.autograd.grad(loss.sum(), o)[0]
            frozen = _leaves({**p0, "s": p["s"]})
            o0, _, _ = forward(frozen, x, frozen["s"])
            return _grad((o0 * e).sum(), [frozen[k] for k in NAMES]), loss.detach()
        # alignada: local live forward (chain through time cut) + frozen backward signal
        o, hs, _ = forward(live, x, live["s"], cut=True)
        loss = loss_fn(o, y)
        e = torch.autograd.grad(loss.sum(), o, retain_graph=True)[0]
        frozen = _leaves({**p0, "s": p["s"]})
        o0, hs0, _ = forward(frozen, x, frozen["s"])
        deltas = torch.autograd.grad((o0 * e).sum(), hs0)
        n = p["u"].shape[-1]
        if alignada_mode == "released":  # B5: h_τ reaches only the frozen recurrence at τ+1
            deltas = [d if t == 0 else d - e[..., t - 1:t] * p0["v"][..., None, :] / math.sqrt(n)
                      for t, d in enumerate(deltas)]
        surrogate = loss.sum() + sum((h * d).sum() for h, d in zip(hs[1:], deltas[1:]))
        g = _grad(surrogate, [live[k] for k in NAMES])
        g[NAMES.index("s")] = deltas[0]
        return g, loss.detach()


class AddProgram(BatchProgram):
    """A batch of Add-task runs for the driver: one stacked RNN, or one plain RNN for a batch of one.

    ``dtype`` float32 as the original (float64 only for the stacked-equals-alone test); ``stacked``
    forces the stacked arithmetic for a batch of one (default: stacked when there are several runs).
    """

    metric_names = ["train_loss", "test_loss", "time_epoch"]
    log_metric = "test_loss"

    def __init__(self, specs: list[dict], dtype=torch.float32, stacked: bool | None = None):
        self.specs = list(specs)
        self.stacked = len(self.specs) > 1 if stacked is None else bool(stacked)
        self.rule = self.specs[0]["rule"]
        self.hp, model = resolved_hparams(self.specs[0]), resolved_model(self.specs[0])
        self.data = {k: torch.tensor(v, dtype=dtype) for k, v in make_data(self.hp["add_targets"]).items()}
        p = init_params(model["width"], dtype)
        if self.stacked:
            p = {k: torch.stack([v] * len(self.specs)) for k, v in p.items()}
            self.lr = torch.tensor([float(s["hparams"]["lr"]) for s in self.specs], dtype=dtype)
        else:
            self.lr = float(self.hp["lr"])
        self.p, self.p0 = p, {k: v.clone() for k, v in p.items()}
        self.rng = np.random.RandomState(DATA_SEED)  # evaluation and batch order, in the original's sequence

    def _eval_split(self, split: str) -> np.ndarray:
        x, y = self.data[f"x_{split}"], self.data[f"y_{split}"]
        perm = self.rng.permutation(len(x))
        batches = [perm[i:i + BATCH] for i in range(0, len(x), BATCH)]
        with torch.no_grad():
            if self.stacked:
                return np.mean([loss_fn(forward(self.p, x[idx], self.p["s"])[0], y[idx]).numpy() for idx in batches], 0)
            return np.array([float(np.mean([float(loss_fn(forward(self.p, x[idx], self.p["s"])[0], y[idx]))
                                            for idx in batches]))])

    def _losses(self) -> dict[str, np.ndarray]:
        test = self._eval_split("test")  # test first, then train: the original's order of draws
        return {"test_loss": test, "train_loss": self._eval_split("train")}

    def evaluate(self):
        return self._losses()

    def train_epoch(self, progress: Progress):
        t0 = time.perf_counter()
        x, y = self.data["x_train"], self.data["y_train"]
        perm = self.rng.permutation(N_TRAIN)
        for i in range(0, N_TRAIN, BATCH):
            idx = perm[i:i + BATCH]
            dirs, _ = directions(self.rule, self.p, self.p0, x[idx], y[idx], self.hp["add_alignada"])
            with torch.no_grad():
                for k, d in zip(NAMES, dirs):
                    lr = self.lr.view(-1, *[1] * (d.dim() - 1)) if self.stacked else self.lr
                    self.p[k] = self.p[k] - lr * d
        stats = self._losses()
        stats["time_epoch"] = np.full(len(self.specs), time.perf_counter() - t0)
        return stats

    def state(self):
        _, keys, pos, has_gauss, cached = self.rng.get_state()
        return {"p": self.p, "rng": {"keys": keys, "pos": np.int64(pos), "has_gauss": np.int64(has_gauss),
                                     "cached_gaussian": np.float64(cached)}}

    def load_state(self, state):
        self.p = {k: torch.from_numpy(np.array(state["p"][k])) for k in NAMES}
        rng = state["rng"]
        self.rng.set_state(("MT19937", np.array(rng["keys"]), int(rng["pos"]), int(rng["has_gauss"]),
                            float(rng["cached_gaussian"])))

    def run_params(self, i: int) -> dict[str, torch.Tensor]:
        """Run ``i``'s parameters (NAMES)."""
        return {k: v[i].clone() for k, v in self.p.items()} if self.stacked else dict(self.p)

    def run_files(self, i):
        return {"params.npz": {k: v.numpy() for k, v in self.run_params(i).items()}}

    def train_record(self, i, progress):
        return {"hparams_resolved": resolved_hparams(self.specs[i]), "task": "add", "stacked": self.stacked}

    def device(self):
        return torch_loop.device_record("cpu")
