"""One-step line search from a trained checkpoint (likely the paper's Fig. 2; papers/nodepert/README.md, "Figure
protocols").

From parameters θ frozen when an SGD run (lr 0.1) first exceeds a test-accuracy threshold, for
each step size η in logspace(−4, 1, steps) and each of the first ``batches`` test-set minibatches
b of 100 (file order):

    ΔL_rule(η) = mean over b of [ L_b(θ − η g_rule,b) − L_b(θ) ]

with g_np,b one node-perturbation estimate on minibatch b (noise shared across the batch,
σ of the paper's FC nets, one draw per minibatch reused for every η) and g_sgd,b the exact minibatch
gradient. L_b is the minibatch MSE loss (papers/nodepert/README.md, "Networks and loss").

Caller: ``impls.nodepert.__main__`` at the ``evaluate`` stage, for runs whose spec has
``hparams.linesearch_steps``; writes ``linesearch.csv`` (step_size, rule, delta_loss) beside the
run's final.json and a summary in final.json. The noise key is fold_in(PRNGKey(seed), 2).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from impls.nodepert import models
from impls.nodepert.rules import make_rule


def step_sizes(steps: int, log10_range=(-4.0, 1.0)) -> np.ndarray:
    return np.logspace(log10_range[0], log10_range[1], steps).astype(np.float32)


def line_search(params, x_batches, y_batches, sigma: float, etas, key, activation: str = "relu") -> dict:
    """Mean one-step loss change per step size for NP and SGD.

    ``x_batches`` (n, B, D), ``y_batches`` (n, B, 10) one-hot. Returns ``{"np": (len(etas),),
    "sgd": (len(etas),)}`` as numpy arrays.
    """
    np_rule = make_rule("np", {"sigma": sigma}, activation)
    sgd_rule = make_rule("sgd", {}, activation)
    loss = lambda p, x, y: models.mean_loss(p, x, y, activation)  # noqa: E731
    etas = jnp.asarray(etas, jnp.float32)

    def one_batch(args):
        i, x, y = args
        base = loss(params, x, y)
        out = []
        for rule in (np_rule, sgd_rule):
            g = rule.estimate(params, (), x, y, jax.random.fold_in(key, i))[0]
            after = jax.vmap(lambda eta: loss(jax.tree_util.tree_map(lambda p, d: p - eta * d, params, g), x, y))(etas)
            out.append(after - base)
        return jnp.stack(out)

    with jax.default_matmul_precision("highest"):
        idx = jnp.arange(x_batches.shape[0], dtype=jnp.uint32)
        deltas = jax.lax.map(one_batch, (idx, x_batches, y_batches)).mean(0)
    deltas = np.asarray(deltas, np.float64)
    return {"np": deltas[0], "sgd": deltas[1]}


def summarise(etas, delta) -> dict:
    """min ΔL and its step size; the smallest step size from which ΔL stays positive (the quantities the paper's
    line-search figure is read by)."""
    etas, delta = np.asarray(etas, np.float64), np.asarray(delta, np.float64)
    i = int(np.nanargmin(delta))
    positive = np.flatnonzero(delta[i:] > 0)
    first_positive = float(etas[i + positive[0]]) if positive.size else None
    return {"min_delta_loss": float(delta[i]), "argmin_step": float(etas[i]), "positive_from_step": first_positive}


def params_from_npz(path, sizes) -> list:
    """The ``params.npz`` a train job wrote (leaf_j in tree order) back into the MLP structure."""
    template = models.init_mlp(jax.random.PRNGKey(0), sizes)
    data = np.load(path)
    leaves = [jnp.asarray(data[f"leaf_{j}"]) for j in range(len(data.files))]
    return jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(template), leaves)


def run_analysis(spec: dict, run_dir, datasets_dir) -> dict:
    """Line search for one trained run; writes ``linesearch.csv`` and returns the summary."""
    import pandas as pd

    from impls.common.io import atomic_write_text
    from impls.nodepert.options import LINESEARCH_LOG10_RANGE, hidden_sizes
    from impls.nodepert.compiled import load_arrays

    arrays = load_arrays(spec, datasets_dir)
    hp = spec["hparams"]
    batch = spec["batch_size"]
    n = min(hp["linesearch_batches"], len(arrays["x_test"]) // batch)
    x = jnp.asarray(arrays["x_test"][: n * batch].reshape(n, batch, -1))
    y = jax.nn.one_hot(jnp.asarray(arrays["y_test"][: n * batch].reshape(n, batch)), 10)
    activation = spec["model"].get("activation", "relu")
    params = params_from_npz(run_dir / "params.npz", models.layer_sizes(x.shape[-1], hidden_sizes(spec["model"])))
    etas = step_sizes(hp["linesearch_steps"], LINESEARCH_LOG10_RANGE)
    key = jax.random.fold_in(jax.random.PRNGKey(spec["seed"]), 2)
    deltas = line_search(params, x, y, float(hp.get("sigma", 1e-4)), etas, key, activation)
    table = pd.concat([pd.DataFrame({"step_size": etas.astype(np.float64), "rule": rule, "delta_loss": d})
                       for rule, d in deltas.items()], ignore_index=True)
    atomic_write_text(run_dir / "linesearch.csv", table.to_csv(index=False, float_format="%.9g"))
    return {"batches": n, **{rule: summarise(etas, d) for rule, d in deltas.items()}}
