"""The recurrent Add task (spec §3.1): a ReLU RNN with a trainable initial state.

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
Runs of a batch (seeds, lrs) train together as one stacked RNN (``train_stacked``: a leading run axis
on every parameter, per-run η); a batch of one takes ``train_one``, the path the spec §6 check used.

Reference: A. Boopathy, I. Fiete, "How to Train Your Wide Neural Network Without Backprop: An
Input-Weight Alignment Perspective", ICML 2022 (the Add task of its recurrent experiment).
"""
from __future__ import annotations

import math
import sys
import time

import numpy as np
import torch

from impls.common import metrics, provenance
from impls.common.io import atomic_write_json, atomic_write_npz
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


def train_one(spec: dict, log_prefix: str = "", dtype=torch.float32) -> dict:
    """One run (float32 as the original; float64 only for the stacked-equals-alone test)."""
    hp, model = resolved_hparams(spec), resolved_model(spec)
    data = {k: torch.tensor(v, dtype=dtype) for k, v in make_data(hp["add_targets"]).items()}
    p = init_params(model["width"], dtype)
    p0 = {k: v.clone() for k, v in p.items()}
    lr = float(hp["lr"])
    rng = np.random.RandomState(DATA_SEED)
    hist = {"train_loss": [np.nan], "test_loss": [np.nan], "time_epoch": [np.nan]}

    def eval_split(split):
        x, y = data[f"x_{split}"], data[f"y_{split}"]
        perm = rng.permutation(len(x))
        with torch.no_grad():
            losses = [float(loss_fn(forward(p, x[idx], p["s"])[0], y[idx]))
                      for idx in (perm[i:i + BATCH] for i in range(0, len(x), BATCH))]
        return float(np.mean(losses))

    hist["test_loss"][0], hist["train_loss"][0] = eval_split("test"), eval_split("train")
    diverged = None
    for epoch in range(1, spec["epochs"] + 1):
        t0 = time.perf_counter()
        perm = rng.permutation(N_TRAIN)
        for i in range(0, N_TRAIN, BATCH):
            idx = perm[i:i + BATCH]
            dirs, _ = directions(spec["rule"], p, p0, data["x_train"][idx], data["y_train"][idx], hp["add_alignada"])
            with torch.no_grad():
                for k, d in zip(NAMES, dirs):
                    p[k] = p[k] - lr * d
        te, tr = eval_split("test"), eval_split("train")
        hist["test_loss"].append(te)
        hist["train_loss"].append(tr)
        hist["time_epoch"].append(time.perf_counter() - t0)
        if not (math.isfinite(te) and math.isfinite(tr)):
            diverged = epoch
            break
        if epoch % 20 == 0 or epoch == spec["epochs"]:
            print(f"{log_prefix} epoch {epoch}/{spec['epochs']} | train {tr:.4f} | test {te:.4f} | "
                  f"best {min(hist['train_loss'][1:]):.4f} / {min(hist['test_loss'][1:]):.4f}", file=sys.stderr, flush=True)
    return {"history": {k: np.asarray(v) for k, v in hist.items()}, "params": p, "diverged": diverged}


def train_stacked(specs: list[dict], log_prefix: str = "", dtype=torch.float32) -> list[dict]:
    """Train R runs that differ only in ``seed`` / ``hparams.lr`` as one stacked RNN; ``train_one``'s output per run.

    Data, initialisation and batch order are seeded with 99 whatever the run's seed (spec §3.1), so the
    runs share x, W(0) and every permutation; parameters carry a leading run axis and η is per run. A
    run stops being logged at its divergence (its NaNs never reach the others: the runs only share x).
    """
    hp, model = resolved_hparams(specs[0]), resolved_model(specs[0])
    data = {k: torch.tensor(v, dtype=dtype) for k, v in make_data(hp["add_targets"]).items()}
    r, epochs = len(specs), specs[0]["epochs"]
    p = {k: torch.stack([v] * r) for k, v in init_params(model["width"], dtype).items()}
    p0 = {k: v.clone() for k, v in p.items()}
    lr = torch.tensor([float(s["hparams"]["lr"]) for s in specs], dtype=dtype)
    rng = np.random.RandomState(DATA_SEED)
    hist = {k: np.full((epochs + 1, r), np.nan) for k in ("train_loss", "test_loss", "time_epoch")}
    diverged = np.full(r, -1)

    def eval_split(split):
        x, y = data[f"x_{split}"], data[f"y_{split}"]
        perm = rng.permutation(len(x))
        with torch.no_grad():
            losses = [loss_fn(forward(p, x[idx], p["s"])[0], y[idx]).numpy()
                      for idx in (perm[i:i + BATCH] for i in range(0, len(x), BATCH))]
        return np.mean(losses, 0)

    hist["test_loss"][0], hist["train_loss"][0] = eval_split("test"), eval_split("train")
    for epoch in range(1, epochs + 1):
        t0 = time.perf_counter()
        perm = rng.permutation(N_TRAIN)
        for i in range(0, N_TRAIN, BATCH):
            idx = perm[i:i + BATCH]
            dirs, _ = directions(specs[0]["rule"], p, p0, data["x_train"][idx], data["y_train"][idx],
                                 hp["add_alignada"])
            with torch.no_grad():
                for k, d in zip(NAMES, dirs):
                    p[k] = p[k] - lr.view(-1, *[1] * (d.dim() - 1)) * d
        hist["test_loss"][epoch], hist["train_loss"][epoch] = eval_split("test"), eval_split("train")
        hist["time_epoch"][epoch] = time.perf_counter() - t0
        bad = ~(np.isfinite(hist["test_loss"][epoch]) & np.isfinite(hist["train_loss"][epoch]))
        diverged[(diverged < 0) & bad] = epoch
        if (diverged >= 0).all():
            break
        if epoch % 20 == 0 or epoch == epochs:
            seen = hist["train_loss"][1:epoch + 1]
            best = [round(float(np.nanmin(c)), 4) if np.isfinite(c).any() else None for c in seen.T]
            print(f"{log_prefix} epoch {epoch}/{epochs} | {r} runs | best train {best}", file=sys.stderr, flush=True)
    out = []
    for j in range(r):
        d = int(diverged[j])
        last = d if d >= 0 else epoch
        out.append({"history": {k: v[:last + 1, j] for k, v in hist.items()},
                    "params": {k: v[j].clone() for k, v in p.items()}, "diverged": d if d >= 0 else None})
    return out


def train_batch(job, options) -> None:
    """One run: ``train_one`` (the measured reference path); several: ``train_stacked`` in one pass."""
    for run_dir, spec in zip(job.run_dirs, job.specs):
        atomic_write_json(run_dir / "spec.json", spec)
    t_batch = time.perf_counter()
    stacked = train_stacked(list(job.specs), f"[{job.batch_id}]") if len(job.specs) > 1 else None
    for j, (rid, run_dir, spec) in enumerate(zip(job.run_ids, job.run_dirs, job.specs)):
        t0 = t_batch if stacked else time.perf_counter()
        out = stacked[j] if stacked else train_one(spec, f"[{job.batch_id}] {rid}")
        n_epochs = len(out["history"]["train_loss"])
        atomic_write_npz(run_dir / "params.npz", {k: v.numpy() for k, v in out["params"].items()})
        metrics.write_metrics(run_dir, out["history"], n_epochs)
        metrics.write_train_record(
            run_dir, run_id=rid, diverged_epoch=out["diverged"], epochs_completed=n_epochs - 1,
            wall_time_s=time.perf_counter() - t0, batch_id=job.batch_id, runs_in_batch=len(job.run_ids),
            provenance=provenance.record({"framework": "torch", "backend": "cpu", "kind": "cpu",
                                          "count": str(torch.get_num_threads())}),
            extra={"hparams_resolved": resolved_hparams(spec), "task": "add", "stacked": stacked is not None})
