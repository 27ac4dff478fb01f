"""Vectorised training of a batch of nodepert runs (spec §2.5).

All runs of a batch share rule, model, dataset, epochs and batch size; they differ in seed
and learning rate. One process trains them together:

- parameters, optimiser states and noise keys are stacked along a leading run axis and the
  update is ``jax.vmap``-ed over it;
- a whole epoch is one compiled ``lax.scan`` over the minibatches of the device-resident
  training set, in fixed file order (no shuffling, as the original), so every run sees the
  same minibatches and nothing syncs with the host inside an epoch;
- evaluation on the full train and test splits happens at epoch 0 and after every epoch;
- the optimiser is the rule's (``make_optimizer``: plain SGD as the paper, or the ``*_wd`` and
  ``*_adam`` variants), its state checkpointed with the parameters;
- ``hparams.stop_at_test_acc`` (the line-search warm-up) stops a run after the first epoch whose
  test accuracy exceeds the threshold: its parameters are frozen and its history ends there.

Seeds: init key = fold_in(PRNGKey(seed), 0) whatever the rule, so NP and SGD with the same
seed start from identical weights; the noise of update t is drawn from
fold_in(fold_in(PRNGKey(seed), 1), t), so a resumed job draws exactly the noise an
uninterrupted one would.
"""
from __future__ import annotations

import sys
import time
from functools import partial
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from impls.common import datasets, metrics, provenance
from impls.common.checkpointing import KILL_AFTER_EPOCH_ENV, CheckpointClock  # noqa: F401
from impls.common.cli import BatchJob, TrainOptions
from impls.common.io import atomic_write_json, atomic_write_npz, load_npz
from impls.nodepert import convnets, models
from impls.nodepert.options import CONV_ARCHS, hidden_sizes, optimizer_kind
from impls.nodepert.rules import make_rule

# Perturbation methods need full float32 matmuls: sigma = 1e-4 is below TF32 rounding (spec §6.1).
jax.config.update("jax_default_matmul_precision", "highest")

METRIC_NAMES = ("train_acc", "train_loss", "test_acc", "test_loss")
EVAL_CHUNK = 1000


def load_arrays(spec: dict, datasets_dir) -> dict[str, np.ndarray]:
    """Standardised, flattened float32 inputs and int labels; train split cut to whole minibatches."""
    ds = datasets.load_dataset(datasets_dir / f"{spec['dataset']}.npz")
    ds = datasets.subset_for_spec(ds, spec)
    # MNIST/F-MNIST: one scalar mean/std; CIFAR: per-channel mean/std of the train set (spec §2.5)
    mode = "per_channel" if spec["dataset"].startswith("cifar") else "global"
    x_train, x_test = datasets.standardize(ds.x_train, ds.x_test, mode)
    x_train, x_test = x_train.reshape(len(x_train), -1), x_test.reshape(len(x_test), -1)
    n = (len(x_train) // spec["batch_size"]) * spec["batch_size"]
    if n == 0:
        raise ValueError(f"batch_size {spec['batch_size']} exceeds the {len(x_train)} training examples")
    shape = tuple(ds.image_shape) if len(ds.image_shape) == 3 else (*ds.image_shape, 1)
    return {"x_train": x_train[:n], "y_train": ds.y_train[:n].astype(np.int32),
            "x_test": x_test, "y_test": ds.y_test.astype(np.int32), "image_shape": shape}


class Network(NamedTuple):
    """A spec's network: ``init(key) -> params``, ``apply(params, x) -> output``, the rule's
    estimator, and ``input_shape`` (one example: (D,) for MLPs, (H, W, C) for conv nets)."""

    init: Callable
    apply: Callable
    rule: Any
    input_shape: tuple


def build_network(spec: dict, image_shape: tuple) -> Network:
    """MLP (impls.nodepert.models) or conv net (impls.nodepert.convnets) named by ``model.arch``."""
    model = spec["model"]
    if model["arch"] in CONV_ARCHS:
        convs = convnets.layers(model["arch"], float(model.get("channel_scale", 1.0)))
        return Network(partial(convnets.init_convnet, convs=convs, image_shape=image_shape),
                       lambda p, x: convnets.forward(p, x, convs)[0],
                       convnets.make_conv_rule(spec["rule"], spec["hparams"], convs, image_shape), tuple(image_shape))
    activation = model.get("activation", "relu")
    in_dim = int(np.prod(image_shape))
    sizes = models.layer_sizes(in_dim, hidden_sizes(model))
    return Network(partial(models.init_mlp, sizes=sizes),
                   lambda p, x: models.forward(p, x, activation=activation)[0],
                   make_rule(spec["rule"], spec["hparams"], activation), (in_dim,))


def unscaled_weight_decay(wd: float) -> optax.GradientTransformation:
    """Adds −wd·W to the update of every weight matrix (biases untouched), *not* scaled by lr.

    Chained after ``optax.sgd(lr)`` it gives the original's ``npwdupdate``/``sgdwdupdate``:
    W ← W − lr·g − wd·W (spec §2.4).
    """

    def update(updates, state, params):
        return [{"w": u["w"] - wd * p["w"], "b": u["b"]} for u, p in zip(updates, params)], state

    return optax.GradientTransformation(lambda params: optax.EmptyState(), update)


def make_optimizer(rule: str, hparams: dict):
    """``factory(learning_rate) -> GradientTransformation`` for a rule; wrapped in
    ``optax.inject_hyperparams`` so each run of a batch carries its own learning rate.

    - plain rules (the paper): ``optax.sgd(lr)``, θ ← θ − lr·g
    - ``*_wd``: ``optax.sgd(lr)`` then ``unscaled_weight_decay(wd)``
    - ``*_adam``: ``optax.adam(lr, b1=0.9, b2=0.999, eps=1e-8)`` (the original's adam_update.py)
    """
    kind = optimizer_kind(rule)
    if kind == "adam":
        return lambda learning_rate: optax.adam(learning_rate, b1=0.9, b2=0.999, eps=1e-8)
    if kind == "sgd_wd":
        wd = float(hparams["wd"])
        return lambda learning_rate: optax.chain(optax.sgd(learning_rate), unscaled_weight_decay(wd))
    return lambda learning_rate: optax.sgd(learning_rate)


def _pad_chunks(x: np.ndarray, y: np.ndarray, chunk: int):
    """Pad to a multiple of ``chunk`` and reshape to (n_chunks, chunk, ...) with a validity mask."""
    n = len(x)
    total = -(-n // chunk) * chunk
    mask = np.zeros(total, np.float32)
    mask[:n] = 1.0
    xp = np.zeros((total,) + x.shape[1:], np.float32)
    xp[:n] = x
    yp = np.zeros(total, np.int32)
    yp[:n] = y
    shape = (total // chunk, chunk)
    return (jnp.asarray(xp.reshape(shape + x.shape[1:])), jnp.asarray(yp.reshape(shape)),
            jnp.asarray(mask.reshape(shape)), n)


class BatchProgram:
    """The compiled pieces of one batch: init, one training epoch, evaluation."""

    def __init__(self, spec: dict, arrays: dict[str, np.ndarray]):
        self.net = build_network(spec, arrays["image_shape"])
        self.rule = self.net.rule
        self.optimizer = optax.inject_hyperparams(make_optimizer(spec["rule"], spec["hparams"]))
        self.batch_size = spec["batch_size"]
        x, y = arrays["x_train"], arrays["y_train"]
        n_batches = len(x) // self.batch_size
        self.steps_per_epoch = n_batches
        x, x_test = x.reshape(-1, *self.net.input_shape), arrays["x_test"].reshape(-1, *self.net.input_shape)
        self.x_batches = jnp.asarray(x.reshape(n_batches, self.batch_size, *self.net.input_shape))
        self.y_batches = jax.nn.one_hot(jnp.asarray(y.reshape(n_batches, self.batch_size)), 10)
        self.eval_sets = {"train": _pad_chunks(x, y, EVAL_CHUNK),
                          "test": _pad_chunks(x_test, arrays["y_test"], EVAL_CHUNK)}
        self.train_epoch = jax.jit(self._train_epoch, donate_argnums=(0, 1))
        self.evaluate = jax.jit(self._evaluate)

    def init(self, seeds: np.ndarray, lrs: np.ndarray):
        base = jax.vmap(jax.random.PRNGKey)(jnp.asarray(seeds, jnp.uint32))
        init_keys = jax.vmap(lambda k: jax.random.fold_in(k, 0))(base)
        noise_keys = jax.vmap(lambda k: jax.random.fold_in(k, 1))(base)
        params = jax.vmap(self.net.init)(init_keys)
        opt_state = jax.vmap(lambda p, lr: self.optimizer(lr).init(p))(params, jnp.asarray(lrs, jnp.float32))
        rule_state = jax.vmap(self.rule.init)(params)
        return params, (opt_state, rule_state), noise_keys

    def _train_epoch(self, params, states, noise_keys, epoch):
        opt = self.optimizer(0.0)  # the learning rate itself lives in each run's optimiser state
        estimate = jax.vmap(self.rule.estimate, in_axes=(0, 0, None, None, 0))

        def step(carry, inputs):
            params, (opt_state, rule_state) = carry
            t, x, y = inputs
            keys = jax.vmap(lambda k: jax.random.fold_in(k, t))(noise_keys)
            grads, rule_state, aux = estimate(params, rule_state, x, y, keys)
            updates, opt_state = jax.vmap(opt.update)(grads, opt_state, params)
            params = optax.apply_updates(params, updates)
            return (params, (opt_state, rule_state)), aux["loss"]

        t0 = epoch * self.steps_per_epoch
        ts = t0 + jnp.arange(self.steps_per_epoch, dtype=jnp.uint32)
        (params, states), losses = jax.lax.scan(step, (params, states), (ts, self.x_batches, self.y_batches))
        return params, states, losses.mean(axis=0)

    def _evaluate(self, params):
        out = {}
        for split, (xc, yc, mask, n) in self.eval_sets.items():
            def chunk_stats(args):
                x, y, m = args
                pred = jax.vmap(lambda p: self.net.apply(p, x))(params)
                loss = models.per_example_loss(pred, jax.nn.one_hot(y, 10)[None])
                correct = (jnp.argmax(pred, -1) == y[None]).astype(jnp.float32)
                return (correct * m).sum(-1), (loss * m).sum(-1)

            correct, loss = jax.lax.map(chunk_stats, (xc, yc, mask))
            out[f"{split}_acc"] = 100.0 * correct.sum(0) / n
            out[f"{split}_loss"] = loss.sum(0) / n
        return out


def _leaves(tree) -> list[np.ndarray]:
    return [np.asarray(x) for x in jax.tree_util.tree_leaves(tree)]


def _restore(template, arrays: list[np.ndarray]):
    treedef = jax.tree_util.tree_structure(template)
    return jax.tree_util.tree_unflatten(treedef, [jnp.asarray(a) for a in arrays])


def save_checkpoint(path, job: BatchJob, epoch, params, states, history, diverged, elapsed, stopped=None):
    arrays = {"epoch": np.asarray(epoch), "run_ids": np.asarray(job.run_ids),
              "diverged_epoch": diverged, "elapsed_s": np.asarray(elapsed),
              "stopped_epoch": np.full(len(job.run_ids), -1, np.int64) if stopped is None else stopped}
    arrays.update({f"params_{i}": a for i, a in enumerate(_leaves(params))})
    arrays.update({f"states_{i}": a for i, a in enumerate(_leaves(states))})
    arrays.update({f"hist_{k}": v for k, v in history.items()})
    atomic_write_npz(path, arrays)


def load_checkpoint(path, job: BatchJob, params, states):
    """Resume state, or None when there is no checkpoint for exactly these runs."""
    if not path.exists():
        return None
    data = load_npz(path)
    if list(data["run_ids"]) != list(job.run_ids):
        return None
    n_p, n_s = len(jax.tree_util.tree_leaves(params)), len(jax.tree_util.tree_leaves(states))
    return (int(data["epoch"]), _restore(params, [data[f"params_{i}"] for i in range(n_p)]),
            _restore(states, [data[f"states_{i}"] for i in range(n_s)]),
            {k: data[f"hist_{k}"].copy() for k in METRIC_NAMES}, data["diverged_epoch"].copy(),
            float(data["elapsed_s"]),
            data["stopped_epoch"].copy() if "stopped_epoch" in data else np.full(len(job.run_ids), -1, np.int64))


def _log(job: BatchJob, epoch: int, epochs: int, history, diverged, rate: float) -> None:
    acc = history["test_acc"][epoch]
    live = acc[diverged < 0]
    summary = (f"test acc median {np.median(live):.1f}% max {np.max(live):.1f}%" if live.size else "all diverged")
    loss = np.nanmean(history["train_loss"][epoch]) if live.size else float("nan")
    print(f"[{job.batch_id}] epoch {epoch}/{epochs} | {len(job.run_ids)} runs | train loss {loss:.4g} | "
          f"{summary} | diverged {int((diverged >= 0).sum())} | {rate:.2f} epochs/s", file=sys.stderr, flush=True)


def keep_replay_snapshots(job: BatchJob, spec: dict, epoch: int, params, history) -> None:
    """Crash-dynamics runs (``hparams.snapshot_every``, impls.nodepert.replay): after epoch ``epoch``,
    overwrite each run's ``replay_start.npz`` with its parameters when ``epoch`` is a multiple of
    ``snapshot_every``, at most E − ``replay_epochs``, and the run has not crashed yet (so the file
    ends as the last snapshot before the first crash). Deterministic, so a resumed job rewrites
    the same files."""
    hp = spec["hparams"]
    every = hp.get("snapshot_every")
    if not every or epoch % every or epoch > spec["epochs"] - hp["replay_epochs"]:
        return
    from impls.nodepert import crash
    from impls.nodepert.replay import SNAPSHOT_FILE, save_snapshot

    leaves = jax.tree_util.tree_leaves(params)
    for i, run_dir in enumerate(job.run_dirs):
        if crash.classify(history["test_acc"][: epoch + 1, i], spec["epochs"])["crash_class"] == "crash":
            continue
        save_snapshot(run_dir / SNAPSHOT_FILE, [np.asarray(x[i]) for x in leaves], epoch)


def train_batch(job: BatchJob, options: TrainOptions) -> None:
    """Train every run of ``job`` to its epoch budget; write each run's files (impls.common.metrics)."""
    spec0 = job.specs[0]
    epochs = spec0["epochs"]
    for run_dir, spec in zip(job.run_dirs, job.specs):
        atomic_write_json(run_dir / "spec.json", spec)
    program = BatchProgram(spec0, load_arrays(spec0, options.datasets_dir))
    seeds = np.array([s["seed"] for s in job.specs])
    lrs = np.array([s["hparams"]["lr"] for s in job.specs], np.float32)
    params, states, noise_keys = program.init(seeds, lrs)
    history = {k: np.full((epochs + 1, len(seeds)), np.nan) for k in METRIC_NAMES}
    diverged = np.full(len(seeds), -1, np.int64)
    # hparams.stop_at_test_acc (line-search warm-up, spec §3): a run stops -- its parameters frozen,
    # its history ending -- after the first epoch whose test accuracy exceeds the threshold
    threshold = spec0["hparams"].get("stop_at_test_acc")
    stopped = np.full(len(seeds), -1, np.int64)
    ckpt_path = job.batch_dir / "checkpoint.npz"
    resumed = load_checkpoint(ckpt_path, job, params, states)
    if resumed:
        start, params, states, history, diverged, elapsed, stopped = resumed
        print(f"[{job.batch_id}] resumed from checkpoint at epoch {start}", file=sys.stderr, flush=True)
    else:
        start, elapsed = 0, 0.0
        for k, v in program.evaluate(params).items():
            history[k][0] = np.asarray(v)
        _log(job, 0, epochs, history, diverged, 0.0)
        keep_replay_snapshots(job, spec0, 0, params, history)
    t_start, clock = time.perf_counter() - elapsed, CheckpointClock(options.checkpoint_minutes)
    epoch = start
    for epoch in range(start + 1, epochs + 1):
        t0 = time.perf_counter()
        frozen = jnp.asarray(stopped >= 0)
        before = jax.tree_util.tree_map(jnp.copy, params) if threshold is not None and (stopped >= 0).any() else None
        params, states, _ = program.train_epoch(params, states, noise_keys, epoch - 1)
        if before is not None:  # stopped runs keep the parameters of their stopping epoch
            params = jax.tree_util.tree_map(
                lambda new, old: jnp.where(frozen.reshape((-1,) + (1,) * (new.ndim - 1)), old, new), params, before)
        for k, v in program.evaluate(params).items():
            history[k][epoch] = np.asarray(v)
        bad = ~np.isfinite(history["train_loss"][epoch]) | ~np.isfinite(history["test_loss"][epoch])
        diverged[(diverged < 0) & bad] = epoch
        if threshold is not None:
            stopped[(stopped < 0) & (history["test_acc"][epoch] > threshold)] = epoch
        _log(job, epoch, epochs, history, diverged, 1.0 / max(time.perf_counter() - t0, 1e-9))
        keep_replay_snapshots(job, spec0, epoch, params, history)
        done = epoch == epochs or bool(((diverged >= 0) | (stopped >= 0)).all())
        if not done and clock.due():
            save_checkpoint(ckpt_path, job, epoch, params, states, history, diverged, time.perf_counter() - t_start,
                            stopped)
            clock.saved(epoch)
        if done:
            break
    wall = time.perf_counter() - t_start
    record = provenance.record(provenance.jax_device())
    leaves = jax.tree_util.tree_leaves(params)
    for i, (rid, run_dir) in enumerate(zip(job.run_ids, job.run_dirs)):
        atomic_write_npz(run_dir / "params.npz", {f"leaf_{j}": np.asarray(x[i]) for j, x in enumerate(leaves)})
        d, stop = int(diverged[i]), int(stopped[i])
        last = d if d >= 0 else (stop if stop >= 0 else epoch)
        metrics.write_metrics(run_dir, {k: v[:, i] for k, v in history.items()}, last + 1)
        metrics.write_train_record(run_dir, run_id=rid, diverged_epoch=d if d >= 0 else None,
                                   epochs_completed=last, wall_time_s=wall, batch_id=job.batch_id,
                                   runs_in_batch=len(job.run_ids), provenance=record,
                                   extra={"stopped_epoch": stop} if threshold is not None else None)
    ckpt_path.unlink(missing_ok=True)
