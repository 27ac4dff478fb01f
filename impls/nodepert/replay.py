"""Per-minibatch replay around a crash (papers/nodepert/README.md, "Figure protocols"; figure F8 of Mehta et al., "On
the limitations of perturbation based methods for training deep networks").

Training (impls.nodepert.train, through ``keep_snapshots``) keeps each run's parameters every ``hparams.snapshot_every``
epochs in ``runs/<id>/replay_start.npz`` until the run first crashes (README "Metrics": test accuracy more
than 25 points below its running maximum), and never later than epoch E − ``replay_epochs``; so
the file holds the last snapshot before the first crash, or (no crash) one ``replay_epochs`` before
the end ("replay forced at the end").

At ``evaluate`` this module reloads that snapshot θ_s (epoch s) and replays the run's own updates
through epoch max(s + replay_epochs, crash epoch) (capped at E): the same minibatches in the same
order, the same noise (key fold_in(fold_in(PRNGKey(seed), 1), t) for global update t, as in
training), the same rule and plain SGD θ ← θ − lr·g. Every run of the training batch is replayed
at once, lane by lane as trained (``run_replay_batch``): float32 NP near a crash is chaotic, and a
single-run replay (``replay_steps``, the unbatched reference used by the tests) drifts away from
the trained trajectory, while the batched replay retraces it exactly (tested). After **every** minibatch it logs, with
g = the rule's estimate on the minibatch (the update applied), g_sgd = the exact minibatch
gradient, g_true = the exact gradient of the mean loss over the whole training set (the 6,000
image subset at paper scale):

- ``norm_{np,sgd,true}`` and ``norm_{np,sgd,true}_l{l}``: weight-only Frobenius norms
  sqrt(Σ_l ‖g_{W_l}‖²) (not multiplied by lr, as the paper's ‖ΔW‖), total and per layer;
- ``err_{np,sgd}`` = ‖g_true − g‖ (weights), ``cos_{np,sgd}`` = cosine with g_true,
  ``sign_{np,sgd}`` = fraction of weight entries whose sign agrees with g_true's;
- ``w_norm`` = sqrt(Σ_l ‖W_l‖²) and ``w_var`` = variance of all weight entries, after the update;
  ``w_norm_l{l}`` per layer;
- ``act_l{l}`` = mean over the minibatch of ‖h_l‖ (clean pass before the update), hidden layers;
- ``delta_mse`` = L_batch(θ_after) − L_batch(θ_before) on the update's own minibatch;
- ``test_acc`` after the update on the run's test split.

``g`` is named ``np`` in the columns whatever the rule (an SGD run replays with g = g_sgd).
Caller: ``impls.nodepert.__main__`` (``evaluate``) for batches with ``hparams.snapshot_every``;
writes ``replay.csv`` (one row per update: ``step``, ``epoch_frac`` = updates done / updates per
epoch, then the columns above) and returns the summary stored in final.json's ``replay``.
"""
from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from impls.nodepert import models

SNAPSHOT_FILE = "replay_start.npz"


def _weights(tree) -> list:
    return [layer["w"] for layer in tree]


def _norm(ws) -> jax.Array:
    return jnp.sqrt(sum(jnp.sum(w ** 2) for w in ws))


def _flat(ws) -> jax.Array:
    return jnp.concatenate([w.ravel() for w in ws])


def diagnostics(p, new, g_np, x, y, loss_before, x_full, y_full, x_test, y_test, activation: str = "relu") -> dict:
    """The logged quantities of one update p → new = p − lr·g_np on minibatch (x, y) (module docstring)."""
    loss = lambda q, a, b: models.mean_loss(q, a, b, activation)  # noqa: E731
    g_sgd, g_true = jax.grad(loss)(p, x, y), jax.grad(loss)(p, x_full, y_full)
    _, acts, _ = models.forward(p, x, activation=activation)
    out = {"delta_mse": loss(new, x, y) - loss_before}
    t = _flat(_weights(g_true))
    for name, g in (("np", g_np), ("sgd", g_sgd), ("true", g_true)):
        ws = _weights(g)
        out[f"norm_{name}"] = _norm(ws)
        for l, w in enumerate(ws):
            out[f"norm_{name}_l{l + 1}"] = jnp.sqrt(jnp.sum(w ** 2))
        if name != "true":
            f = _flat(ws)
            out[f"err_{name}"] = jnp.linalg.norm(t - f)
            out[f"cos_{name}"] = f @ t / (jnp.linalg.norm(f) * jnp.linalg.norm(t) + 1e-30)
            out[f"sign_{name}"] = jnp.mean((jnp.sign(f) == jnp.sign(t)).astype(jnp.float32))
    w = _weights(new)
    out["w_norm"] = _norm(w)
    out["w_var"] = jnp.var(_flat(w))
    for l in range(len(p)):
        out[f"w_norm_l{l + 1}"] = jnp.sqrt(jnp.sum(w[l] ** 2))
    for l in range(1, len(p)):                           # acts[l] = h_l, the l-th hidden layer
        out[f"act_l{l}"] = jnp.mean(jnp.linalg.norm(acts[l], axis=-1))
    pred = models.forward(new, x_test, activation=activation)[0]
    out["test_acc"] = 100.0 * jnp.mean((jnp.argmax(pred, -1) == jnp.argmax(y_test, -1)).astype(jnp.float32))
    return out


def replay_steps(params, lr: float, rule, x_batches, y_batches, x_full, y_full, x_test, y_test, keys,
                 activation: str = "relu") -> dict:
    """One run, unbatched: apply the rule's update for every minibatch (x_batches[t], keys[t]) from
    ``params`` and return a dict of per-update arrays (``diagnostics``), plus ``params`` after the
    last update. ``y_*`` are one-hot (10 classes). Compiled as one ``lax.scan``."""

    def step(p, inputs):
        x, y, key = inputs
        g_np, _, aux = rule.estimate(p, (), x, y, key)
        new = jax.tree_util.tree_map(lambda a, g: a - lr * g, p, g_np)
        return new, diagnostics(p, new, g_np, x, y, aux["loss"], x_full, y_full, x_test, y_test, activation)

    with jax.default_matmul_precision("highest"):
        final, logs = jax.lax.scan(step, params, (x_batches, y_batches, keys))
    return {**{k: np.asarray(v, np.float64) for k, v in logs.items()}, "params": final}


def replay_epoch_fn(program, x_full, y_full, x_test, y_test, activation: str = "relu"):
    """``(params, states, noise_keys, epochs) -> (params, states, logs)``: one epoch of every run of a
    batch, each lane at its own epoch ``epochs[i]`` (0-based), with the training step of
    ``impls.nodepert.compiled.CompiledBatch`` (same vmapped estimate, optimiser and noise keys
    fold_in(key_i, epochs[i]·steps + j)), logging ``diagnostics`` after every update."""
    import optax

    steps = program.steps_per_epoch

    def epoch(params, states, noise_keys, epochs):
        opt = program.optimizer(0.0)
        estimate = jax.vmap(program.rule.estimate, in_axes=(0, 0, None, None, 0))
        diag = jax.vmap(lambda p, new, g, x, y, lb: diagnostics(p, new, g, x, y, lb, x_full, y_full, x_test, y_test,
                                                                activation), in_axes=(0, 0, 0, None, None, 0))

        def step(carry, inputs):
            params, (opt_state, rule_state) = carry
            j, x, y = inputs
            keys = jax.vmap(lambda k, e: jax.random.fold_in(k, e * steps + j))(noise_keys, epochs)
            grads, rule_state, aux = estimate(params, rule_state, x, y, keys)
            updates, opt_state = jax.vmap(opt.update)(grads, opt_state, params)
            new = optax.apply_updates(params, updates)
            return (new, (opt_state, rule_state)), diag(params, new, grads, x, y, aux["loss"])

        js = jnp.arange(steps, dtype=jnp.uint32)
        (params, states), logs = jax.lax.scan(step, (params, states), (js, program.x_batches, program.y_batches))
        return params, states, logs

    return jax.jit(epoch)


def save_snapshot(path: Path, params_leaves: list[np.ndarray], epoch: int) -> None:
    from impls.common.io import atomic_write_npz

    atomic_write_npz(path, {"epoch": np.asarray(epoch), **{f"leaf_{j}": a for j, a in enumerate(params_leaves)}})


def keep_snapshots(run_dirs, spec: dict, epoch: int, params, test_acc: np.ndarray) -> None:
    """Crash-dynamics runs (``hparams.snapshot_every``): after epoch ``epoch``, overwrite each run's
    ``replay_start.npz`` with its parameters when ``epoch`` is a multiple of ``snapshot_every``, at
    most E − ``replay_epochs``, and the run has not crashed yet (``test_acc``: (epoch + 1, runs)), so
    the file ends as the last snapshot before the first crash. Deterministic, so a resumed job
    rewrites the same files."""
    from impls.nodepert import crash

    hp = spec["hparams"]
    every = hp.get("snapshot_every")
    if not every or epoch % every or epoch > spec["epochs"] - hp["replay_epochs"]:
        return
    leaves = jax.tree_util.tree_leaves(params)
    for i, run_dir in enumerate(run_dirs):
        if crash.classify(test_acc[: epoch + 1, i], spec["epochs"])["crash_class"] == "crash":
            continue
        save_snapshot(run_dir / SNAPSHOT_FILE, [np.asarray(x[i]) for x in leaves], epoch)


def replay_window(start: int, crash_epoch: int | None, replay_epochs: int, epochs: int) -> tuple[int, int]:
    """(first, last) epoch replayed: from start + 1 through max(start + replay_epochs, crash) ≤ E."""
    last = start + replay_epochs if crash_epoch is None else max(start + replay_epochs, crash_epoch)
    return start + 1, min(last, epochs)


def run_replay_batch(runs: dict, runs_dir: Path, datasets_dir: Path) -> dict:
    """Replay every run of one training batch (``runs``: run id → spec, in the batch's order) from
    its snapshot, all lanes together as in training; writes each run's ``replay.csv`` and returns
    run id → summary. Replaying the whole batch with the training step keeps the float32
    arithmetic of training (NP near a crash is chaotic: a single-run replay drifts, see README)."""
    import pandas as pd

    from impls.common.io import atomic_write_text
    from impls.common.metrics import read_metrics
    from impls.nodepert import crash
    from impls.nodepert.compiled import CompiledBatch, load_arrays

    rids, specs = list(runs), list(runs.values())
    spec0 = specs[0]
    arrays = load_arrays(spec0, datasets_dir)
    program = CompiledBatch(spec0, arrays)
    params, states, noise_keys = program.init(np.array([s["seed"] for s in specs]),
                                              np.array([s["hparams"]["lr"] for s in specs], np.float32))
    snaps = [np.load(runs_dir / rid / SNAPSHOT_FILE) for rid in rids]
    n_leaves = len(jax.tree_util.tree_leaves(params))
    params = jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(params), [
        jnp.asarray(np.stack([d[f"leaf_{j}"] for d in snaps])) for j in range(n_leaves)])
    starts = [int(d["epoch"]) for d in snaps]
    verdicts = [crash.from_metrics(read_metrics(runs_dir / rid), spec0["epochs"]) for rid in rids]
    windows = [replay_window(s, v["crash_epoch"], spec0["hparams"]["replay_epochs"], spec0["epochs"])
               for s, v in zip(starts, verdicts)]
    activation = spec0["model"].get("activation", "relu")
    onehot = lambda y: jnp.asarray(np.eye(10, dtype=np.float32)[y])  # noqa: E731
    x_full = program.x_batches.reshape(-1, program.x_batches.shape[-1])
    epoch_fn = replay_epoch_fn(program, x_full, onehot(arrays["y_train"]), jnp.asarray(arrays["x_test"]),
                               onehot(arrays["y_test"]), activation)
    n_batches = program.steps_per_epoch
    frames = [[] for _ in rids]
    with jax.default_matmul_precision("highest"):
        for k in range(max(last - first + 1 for first, last in windows)):
            epochs = np.array([first - 1 + k for first, _ in windows], np.uint32)   # 0-based epoch per lane
            params, states, logs = epoch_fn(params, states, noise_keys, jnp.asarray(epochs))
            logs = {name: np.asarray(v, np.float64) for name, v in logs.items()}  # (steps, lanes)
            for i, (first, last) in enumerate(windows):
                if first + k <= last:
                    steps = int(epochs[i]) * n_batches + np.arange(n_batches)
                    frames[i].append(pd.DataFrame({"step": steps, "epoch_frac": (steps + 1) / n_batches,
                                                   **{name: v[:, i] for name, v in logs.items()}}))
    out = {}
    for i, rid in enumerate(rids):
        table = pd.concat(frames[i], ignore_index=True)
        atomic_write_text(runs_dir / rid / "replay.csv", table.to_csv(index=False, float_format="%.9g"))
        recorded = read_metrics(runs_dir / rid).query("split == 'test' and metric == 'acc'").set_index("epoch")["value"]
        ends = table[(table["step"] + 1) % n_batches == 0]
        replayed = dict(zip(((ends["step"] + 1) // n_batches).astype(int), ends["test_acc"]))
        gap = [abs(replayed[e] - recorded[e]) for e in replayed if e in recorded.index]
        first, last = windows[i]
        out[rid] = {"start_epoch": starts[i], "first_epoch": first, "last_epoch": last, "updates": int(len(table)),
                    "crash_epoch": verdicts[i]["crash_epoch"], "crash_class": verdicts[i]["crash_class"],
                    "max_norm_np": float(table["norm_np"].max()), "max_delta_mse": float(table["delta_mse"].max()),
                    "max_abs_test_acc_vs_training": float(max(gap)) if gap else None}
    return out
