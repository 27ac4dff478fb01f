"""Backward-weight dynamics of a linear layer against the derived fixed points (spec §2.4, figure 9).

W is fixed; only B trains, by plain SGD on the rule's regulariser R(x, W, B) with a fresh batch of
inputs each step: white noise N(0, σ²I) or real data (standardised images, a fixed random subset of
``n_in`` pixels). Storage as in the layers: K_f = Wᵀ and K_b = B, both (n_in, n_out).

Derived fixed points (column notation, Σ = E[xxᵀ]):
    WM  B* = (β/2α) Σ Wᵀ                         SA  B* = (β/2α) Wᵀ       (= Wᵀ at β = 2α)
    IA  B* = (α/2β) Σ Wᵀ (W Σ Wᵀ + (γ/β) I)⁻¹     AA  B* = (β/2α) Wᵀ on the span of the inputs
The error ‖P(B − B*)‖/‖P B*‖ is measured on the input span (P its projector; P = I for white inputs),
since AA never moves B off that span.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from impls.two_routes.layers import angle_deg
from impls.two_routes.rules import AlignmentRule


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
    target = fixed_point(rule, kf, sigma)
    proj = span_projector(sigma)

    def measure(kb):
        err = jnp.linalg.norm(proj @ (kb - target)) / jnp.linalg.norm(proj @ target)
        return {"angle": angle_deg(kb, kf), "fp_error": err,
                "norm_ratio": jnp.linalg.norm(kb) / jnp.linalg.norm(kf)}

    grad = jax.grad(lambda kb, x, t: rule.regularizer(x, kf, kb, scheduled=None if coefficients_at is None
                                                      else coefficients_at(t)))

    def chunk(kb, inputs):
        k, t0 = inputs

        def step(kb, step_inputs):
            kk, t = step_inputs
            return kb - lr * grad(kb, sample(kk), t), None
        kb, _ = jax.lax.scan(step, kb, (jax.random.split(k, log_every), t0 + jnp.arange(log_every)))
        return kb, measure(kb)

    n_chunks = steps // log_every
    kb, logs = jax.lax.scan(chunk, kb0, (jax.random.split(key, n_chunks), jnp.arange(n_chunks) * log_every))
    first = measure(kb0)
    return kb, {k: jnp.concatenate([first[k][None], v]) for k, v in logs.items()}


def white_sampler(n_in: int, batch: int, stddev: float = 1.0):
    return lambda k: stddev * jax.random.normal(k, (batch, n_in), jnp.float32)


def data_sampler(x: np.ndarray, batch: int):
    """Batches drawn with replacement from the rows of ``x`` (n, n_in), and Σ = xᵀx / n."""
    xj = jnp.asarray(x, jnp.float32)
    sigma = xj.T @ xj / len(x)
    return (lambda k: xj[jax.random.randint(k, (batch,), 0, len(x))]), sigma


def train_fixed_point_batch(job, options_, write_runs) -> None:
    """Runs of ``model.arch: linear``: W fixed, B trained on R alone; one "epoch" = ``steps_per_epoch``
    SGD steps at the spec's lr, with batch_size inputs per step. Runs differ in seed (and lr)."""
    import time

    from impls.common import datasets
    from impls.two_routes import options
    from impls.two_routes.rules import rule_for_spec

    spec = job.specs[0]
    hp, cfg = options.hparams(spec), options.model_config(spec)
    rule = rule_for_spec(spec["rule"], hp)
    n_in, n_out, epochs, spe = int(cfg["n_in"]), int(cfg["n_out"]), spec["epochs"], hp["steps_per_epoch"]
    scheduled = any(hp[k] != d for k, d in options.schedule_keys().items())
    coefficients_at = (lambda t: rule.term_coefficients(t, spe, float(epochs), hp)) if scheduled else None
    t0 = time.perf_counter()
    logs = []
    for s in job.specs:
        key = jax.random.PRNGKey(s["seed"])
        k_w, k_b, k_cols, k_run = jax.random.split(key, 4)
        if hp["inputs"] == "white":
            sample, sigma = white_sampler(n_in, s["batch_size"], hp["input_stddev"]), hp["input_stddev"] ** 2 * jnp.eye(n_in)
        else:
            ds = datasets.load_dataset(options_.datasets_dir / f"{s['dataset']}.npz")
            x = ds.x_train.reshape(len(ds.x_train), -1).astype(np.float32)
            x = (x - x.mean(0)) / (x.std() + 1e-8)       # centred, one global scale
            if n_in > x.shape[1]:
                raise ValueError(f"model.n_in {n_in} exceeds the {x.shape[1]} input dimensions of {s['dataset']}")
            cols = np.asarray(jax.random.permutation(k_cols, x.shape[1]))[:n_in]
            sample, sigma = data_sampler(x[:, np.sort(cols)], s["batch_size"])
        kf = jax.random.normal(k_w, (n_in, n_out)) / np.sqrt(n_in)
        kb0 = jax.random.normal(k_b, (n_in, n_out)) / np.sqrt(n_in)
        _, log = jax.jit(lambda kf, kb0, k, lr: simulate(rule, kf, kb0, sample, k, epochs * spe, lr, spe, sigma,
                                                                     coefficients_at))(
            kf, kb0, k_run, jnp.float32(s["hparams"]["lr"]))
        logs.append({k: np.asarray(v) for k, v in log.items()})
    history = {f"align_{k}": np.stack([lg[k] for lg in logs], axis=1) for k in logs[0]}
    diverged = np.array([-1 if np.all(np.isfinite(lg["angle"])) else int(np.argmax(~np.isfinite(lg["angle"])))
                         for lg in logs])
    write_runs(job, history, diverged, epochs, time.perf_counter() - t0, {"steps_per_epoch": spe})
