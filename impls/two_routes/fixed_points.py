"""Backward-weight dynamics of a linear layer against the derived fixed points (papers/two_routes/README.md, "Rules,
default coefficients and fixed points"; `fig_two_routes_fixed_points`).

W is fixed; only B trains, by plain SGD on the rule's regulariser R(x, W, B) with a fresh batch of
inputs each step: white noise N(0, σ²I) or real data (standardised images, a fixed random subset of
``n_in`` pixels). Storage as in the layers: K_f = Wᵀ and K_b = B, both (n_in, n_out).

Derived fixed points (column notation, Σ = E[xxᵀ]):
    WM  B* = (β/2α) Σ Wᵀ                         SA  B* = (β/2α) Wᵀ       (= Wᵀ at β = 2α)
    IA  B* = (α/2β) Σ Wᵀ (W Σ Wᵀ + (γ/β) I)⁻¹     AA  B* = (β/2α) Wᵀ on the span of the inputs
The error ‖P(B − B*)‖/‖P B*‖ is measured on the input span (P its projector; P = I for white inputs),
since AA never moves B off that span.

``FixedPointProgram`` is these runs' program for the common driver (impls.common.driver): one epoch of
each run is one ``simulate`` chunk, measured at its end.
"""
from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from impls.common import datasets
from impls.common.driver import Progress
from impls.two_routes import options
from impls.two_routes.layers import angle_deg
from impls.two_routes.program import TwoRoutesProgram
from impls.two_routes.rules import AlignmentRule, rule_for_spec


def fixed_point(rule: AlignmentRule, kf, sigma):
    """B* (as K_b, shape of K_f) of ``rule`` for forward kernel K_f = Wᵀ and input covariance Σ."""
    t = rule.terms
    if rule.name == "sa":
        return t["self"] / (2 * t["decay"]) * kf
    if rule.name == "wm":
        return t["amp"] / (2 * t["decay"]) * sigma @ kf
    if rule.name == "aa":
        return t["amp"] / (2 * t["sparse"]) * kf
    if rule.name == "ia":
        m = kf.shape[1]
        inner = kf.T @ sigma @ kf + (t["decay"] / t["null"]) * jnp.eye(m)
        return t["amp"] / (2 * t["null"]) * sigma @ kf @ jnp.linalg.inv(inner)
    raise ValueError(f"rule {rule.name!r} has no B-only fixed point (FA: B stays at init; KP: decays to 0)")


def span_projector(sigma, tol: float = 1e-6):
    """Orthogonal projector onto the span of Σ (eigenvalues above ``tol`` × the largest)."""
    vals, vecs = jnp.linalg.eigh(sigma)
    keep = (vals > tol * vals.max()).astype(sigma.dtype)
    return (vecs * keep) @ vecs.T


def simulate(rule: AlignmentRule, kf, kb0, sample, key, steps: int, lr: float, log_every: int, sigma,
             coefficients_at=None):
    """SGD on R over B only. ``sample(key) -> x`` draws one batch. Returns (K_b, logs) where logs has
    ``angle`` ∠(B, Wᵀ) in degrees, ``fp_error`` (on the input span) and ``norm_ratio`` ‖B‖/‖Wᵀ‖,
    each of shape (steps // log_every + 1,), entry 0 before training. ``coefficients_at(t)`` (optional)
    gives {term: coefficient} at update t = 0, 1, ... (the spec's alpha/beta/gamma schedules); the
    fixed point B* is that of the rule's base coefficients."""
    measure = measurer(rule, kf, sigma)
    chunk = sgd_chunk(rule, kf, sample, lr, log_every, coefficients_at)

    def logged(kb, inputs):
        kb = chunk(kb, inputs)
        return kb, measure(kb)

    n_chunks = steps // log_every
    kb, logs = jax.lax.scan(logged, kb0, (jax.random.split(key, n_chunks), jnp.arange(n_chunks) * log_every))
    first = measure(kb0)
    return kb, {k: jnp.concatenate([first[k][None], v]) for k, v in logs.items()}


def measurer(rule: AlignmentRule, kf, sigma):
    """``measure(kb) -> {angle, fp_error, norm_ratio}`` against the fixed point B* of ``rule``."""
    target = fixed_point(rule, kf, sigma)
    proj = span_projector(sigma)

    def measure(kb):
        err = jnp.linalg.norm(proj @ (kb - target)) / jnp.linalg.norm(proj @ target)
        return {"angle": angle_deg(kb, kf), "fp_error": err,
                "norm_ratio": jnp.linalg.norm(kb) / jnp.linalg.norm(kf)}

    return measure


def sgd_chunk(rule: AlignmentRule, kf, sample, lr, log_every: int, coefficients_at=None):
    """``chunk(kb, (key, t0)) -> kb``: ``log_every`` SGD steps on R from update t0, the step keys split
    from ``key``."""
    grad = jax.grad(lambda kb, x, t: rule.regularizer(x, kf, kb, scheduled=None if coefficients_at is None
                                                      else coefficients_at(t)))

    def chunk(kb, inputs):
        k, t0 = inputs

        def step(kb, step_inputs):
            kk, t = step_inputs
            return kb - lr * grad(kb, sample(kk), t), None
        kb, _ = jax.lax.scan(step, kb, (jax.random.split(k, log_every), t0 + jnp.arange(log_every)))
        return kb

    return chunk


def white_sampler(n_in: int, batch: int, stddev: float = 1.0):
    return lambda k: stddev * jax.random.normal(k, (batch, n_in), jnp.float32)


def data_sampler(x: np.ndarray, batch: int):
    """Batches drawn with replacement from the rows of ``x`` (n, n_in), and Σ = xᵀx / n."""
    xj = jnp.asarray(x, jnp.float32)
    sigma = xj.T @ xj / len(x)
    return (lambda k: xj[jax.random.randint(k, (batch,), 0, len(x))]), sigma


class FixedPointProgram(TwoRoutesProgram):
    """Runs of ``model.arch: linear``: W fixed, B trained on R alone; one "epoch" = ``steps_per_epoch``
    SGD steps at the run's lr, with batch_size inputs per step. Runs differ in seed (and lr) and train one
    after another inside each epoch.

    Per run: k_w, k_b, k_cols, k_run = split(PRNGKey(seed), 4); K_f, K_b(0) ~ N(0, 1/n_in) from k_w, k_b; real
    inputs use the ``n_in`` pixels permutation(k_cols)[:n_in]; epoch e's steps draw their batches from
    split(split(k_run, epochs)[e - 1], steps_per_epoch) at updates t = (e - 1)·steps_per_epoch, ... -- the
    streams of ``simulate`` over the whole budget. A run diverges when its angle is no longer finite."""

    metric_names = ["align_angle", "align_fp_error", "align_norm_ratio"]
    log_metric = "align_angle"

    def __init__(self, job, options_):
        super().__init__(job)
        spec = job.specs[0]
        hp, cfg = options.hparams(spec), options.model_config(spec)
        self.rule = rule = rule_for_spec(spec["rule"], hp)
        n_in, n_out, epochs = int(cfg["n_in"]), int(cfg["n_out"]), spec["epochs"]
        self.spe = spe = hp["steps_per_epoch"]
        scheduled = any(hp[k] != d for k, d in options.schedule_keys().items())
        coefficients_at = (lambda t: rule.term_coefficients(t, spe, float(epochs), hp)) if scheduled else None
        self.kf, kb, self.epoch_keys, self.lrs, self.first, self.epoch = [], [], [], [], [], []
        for s in job.specs:
            k_w, k_b, k_cols, k_run = jax.random.split(jax.random.PRNGKey(s["seed"]), 4)
            if hp["inputs"] == "white":
                sample, sigma = (white_sampler(n_in, s["batch_size"], hp["input_stddev"]),
                                 hp["input_stddev"] ** 2 * jnp.eye(n_in))
            else:
                sample, sigma = _data_inputs(options_.datasets_dir, s, n_in, k_cols)
            self.kf.append(jax.random.normal(k_w, (n_in, n_out)) / np.sqrt(n_in))
            kb.append(jax.random.normal(k_b, (n_in, n_out)) / np.sqrt(n_in))
            self.epoch_keys.append(jax.random.split(k_run, epochs))
            self.lrs.append(jnp.float32(s["hparams"]["lr"]))
            self.first.append(jax.jit(partial(_measure, rule, sigma)))
            self.epoch.append(jax.jit(partial(_epoch, rule, sample, sigma, spe, coefficients_at)))
        self.kb = jnp.stack(kb)

    def evaluate(self):
        return self._stack([f(kf, kb) for f, kf, kb in zip(self.first, self.kf, self.kb)])

    def train_epoch(self, progress: Progress):
        t0 = jnp.int32((progress.epoch - 1) * self.spe)
        kb, logs = [], []
        for i, run_epoch in enumerate(self.epoch):
            b, log = run_epoch(self.kf[i], self.kb[i], self.epoch_keys[i][progress.epoch - 1], t0, self.lrs[i])
            kb.append(b)
            logs.append(log)
        self.kb = jnp.stack(kb)
        return self._stack(logs)

    def diverged(self, progress: Progress):
        return ~np.isfinite(progress.history["align_angle"][progress.epoch])

    def state(self):
        return {"kb": np.asarray(self.kb)}

    def load_state(self, state):
        self.kb = jnp.asarray(state["kb"])

    def run_files(self, i):
        return {}

    def record(self, i, progress):
        return {"steps_per_epoch": self.spe}

    @staticmethod
    def _stack(logs):
        return {f"align_{k}": np.stack([np.asarray(lg[k]) for lg in logs]) for k in logs[0]}


def _measure(rule, sigma, kf, kb):
    return measurer(rule, kf, sigma)(kb)


def _epoch(rule, sample, sigma, log_every, coefficients_at, kf, kb, key, t0, lr):
    """One epoch of one run: ``log_every`` SGD steps on R from update t0, then the measurements."""
    kb = sgd_chunk(rule, kf, sample, lr, log_every, coefficients_at)(kb, (key, t0))
    return kb, measurer(rule, kf, sigma)(kb)


def _data_inputs(datasets_dir, spec, n_in, k_cols):
    """(sampler, Σ) of real inputs: the training images centred, one global scale, ``n_in`` random pixels."""
    ds = datasets.load_dataset(datasets_dir / f"{spec['dataset']}.npz")
    x = ds.x_train.reshape(len(ds.x_train), -1).astype(np.float32)
    x = (x - x.mean(0)) / (x.std() + 1e-8)       # centred, one global scale
    if n_in > x.shape[1]:
        raise ValueError(f"model.n_in {n_in} exceeds the {x.shape[1]} input dimensions of {spec['dataset']}")
    cols = np.asarray(jax.random.permutation(k_cols, x.shape[1]))[:n_in]
    return data_sampler(x[:, np.sort(cols)], spec["batch_size"])
