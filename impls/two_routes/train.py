"""Vectorised training of a batch of two_routes runs (spec §2.2, §3, §6).

All runs of a batch share rule, model, dataset, epochs and batch size; they differ in seed and peak
learning rate (``batch_over``), so one process trains them together: parameters, BN statistics and
optimiser states are stacked on a leading run axis, one step is ``jax.vmap``-ed over it (on CPU: a ``lax.map``
over the runs, see ``over_runs``) and an epoch is one compiled ``lax.scan`` over device-resident data (digits,
Fashion-MNIST). ImageNet specs are
streamed instead (impls.two_routes.imagenet) and train one run per process, data-parallel over devices.

Per step (ALGO LOGIC): L = ρ_task·(CE + L2) + ρ_align·Σ_l R_l (both rates 1 unless ``delay_epochs``,
``alternate_step_freq`` or ``constant_rate`` say otherwise; R's coefficients follow their schedules:
impls.two_routes.schedules); gradients of L by the layers' pseudogradients (W) and R (B); + ρ_task·wd·W on
forward kernels and the FC bias; Nesterov momentum 0.9 with
linear warm-up and ×0.1 steps; NoisyOptimizer adds lr_t·ξ, ξ ~ N(0, v), to B (or to everything).

Every ``metric_every`` epochs (and at epoch 0) per-layer angles are measured on a fixed training batch
(the first ``batch_size`` images, BN in training mode): weight_angle ∠(K_f, K_b), projection_angle
∠(Wx, Bᵀx) and gradient_angle ∠(Bδ, Wᵀδ) for the CE error δ. Test top-1/top-5 after every epoch.
Seeds: base = PRNGKey(seed); weights fold_in(base, 0) (every rule starts from the same W for a
seed), shuffling fold_in(base, 1), R's noise inputs and update noise fold_in(base, 2) per step.
"""
from __future__ import annotations

import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from impls.common import datasets, metrics, provenance
from impls.common.checkpointing import CheckpointClock
from impls.common.cli import BatchJob, TrainOptions
from impls.common.io import atomic_write_json, atomic_write_npz, load_npz
from impls.two_routes import models, options, schedules
from impls.two_routes.layers import angle_from_stats
from impls.two_routes.projections import RegularizerOptions
from impls.two_routes.rules import rule_for_spec

EVAL_CHUNK = 500
DIVERGED_LOSS = 1.0e4
PIXEL_MAX = {"digits": 16.0}


# ----------------------------------------------------------------------------- data

def load_arrays(spec: dict, datasets_dir) -> dict:
    """Images as float32 NHWC, /max, Fashion-MNIST zero-padded to 32×32, standardised by the training
    set's global mean/std."""
    ds = datasets.load_dataset(datasets_dir / f"{spec['dataset']}.npz")
    ds = datasets.subset_for_spec(ds, spec)
    top = PIXEL_MAX.get(spec["dataset"], 255.0)
    out = []
    for x in (ds.x_train, ds.x_test):
        x = x.astype(np.float32) / top
        if x.ndim == 3:
            x = x[..., None]
        if spec["dataset"] == "fashion_mnist":
            x = np.pad(x, ((0, 0), (2, 2), (2, 2), (0, 0)))
        out.append(x)
    mean, std = out[0].mean(), out[0].std()
    return {"x_train": (out[0] - mean) / std, "y_train": ds.y_train.astype(np.int32),
            "x_test": (out[1] - mean) / std, "y_test": ds.y_test.astype(np.int32), "n_classes": ds.num_classes}


# ----------------------------------------------------------------------------- pieces shared with imagenet

def lr_shape(t, steps_per_epoch: int, hp: dict):
    """Multiplier of the peak lr at global step t: linear warm-up from 0, then ×0.1 at each decay epoch;
    the epoch is shifted by ``delay_epochs`` and every milestone stretched ×(k+1) by ``alternate_step_freq``
    (impls.two_routes.schedules)."""
    e, stretch = schedules.lr_epoch_and_stretch(t, steps_per_epoch, hp)
    warm = hp["warmup_epochs"] * stretch
    ramp = jnp.where(warm > 0, jnp.minimum(e / jnp.maximum(warm, 1e-9), 1.0), 1.0)
    drops = (sum((e >= float(d) * stretch).astype(jnp.float32) for d in hp["decay_epochs"])
             if hp["decay_epochs"] else 0.0)
    return ramp * 0.1 ** drops


def _path_keys(path):
    return [getattr(p, "key", str(p)) for p in path]


def decay_mask(params):
    """True on forward kernels and the classifier bias (spec §2.2: not BN, not B)."""
    return jax.tree_util.tree_map_with_path(
        lambda p, _: _path_keys(p)[-1] == "kernel" or _path_keys(p)[-2:] == ["dense", "bias"], params)


def backward_mask(params):
    return jax.tree_util.tree_map_with_path(lambda p, _: _path_keys(p)[-1] == "backward_kernel", params)


class Trainer:
    """Model, loss and one update for one run (vmapped by the callers)."""

    def __init__(self, spec: dict, n_classes: int, steps_per_epoch: int):
        self.hp = options.hparams(spec)
        self.rule = rule_for_spec(spec["rule"], self.hp)
        dist = None if self.hp["input_distribution"] == "none" else self.hp["input_distribution"]
        mcfg = options.model_config(spec)
        reg = RegularizerOptions(**{k: bool(self.hp[k]) for k in options.REGULARIZER_FLAGS})
        self.model = models.build(mcfg, n_classes, models.LayerOptions(self.rule, False, dist, self.hp["input_stddev"],
                                                                      reg))
        self.probe_model = models.build(mcfg, n_classes, models.LayerOptions(self.rule, True, dist,
                                                                            self.hp["input_stddev"], reg))
        self.n_classes = n_classes
        self.steps_per_epoch = steps_per_epoch
        self.train_epochs = float(spec.get("epochs", 1))
        defaults = options.schedule_keys()
        self.scheduled = any(self.hp[k] != d for k, d in defaults.items())   # static: else R is summed as sown
        self.tx = optax.trace(decay=self.hp["momentum"], nesterov=True)

    def init(self, key, x):
        var = self.model.init({"params": key}, x[:1], train=False)
        params = var["params"]
        opt = {"fwd": self.tx.init(params), "bwd": self.tx.init(params)}
        return {"params": params, "batch_stats": var.get("batch_stats", {}), "opt": opt}   # FC: no BN

    def probes(self, key, x):
        return self.probe_model.init({"params": key}, x[:1], train=False)["probes"]

    def loss(self, params, batch_stats, x, labels, key, t=0, rates=(1.0, 1.0)):
        """ρ_task·CE + ρ_align·Σ_l R_l at update t, R's coefficients scheduled (impls.two_routes.schedules)."""
        collection = "primitives" if self.scheduled else "losses"
        out, mut = self.model.apply({"params": params, "batch_stats": batch_stats}, x, train=True,
                                    mutable=["batch_stats", collection], rngs={"noise": key})
        ce = optax.softmax_cross_entropy_with_integer_labels(out, labels).mean()
        if self.scheduled:
            coefs = self.rule.term_coefficients(t, self.steps_per_epoch, self.train_epochs, self.hp)
            reg = self.rule.weighted(_sum_by_term(mut.get("primitives", {})), coefs) if self.rule.terms else 0.0
            reg = jnp.asarray(reg, jnp.float32)
        else:
            reg = sum(jax.tree_util.tree_leaves(mut.get("losses", {})), jnp.zeros(()))
        return rates[0] * ce + rates[1] * reg, (ce, reg, out, mut.get("batch_stats", {}))

    def step(self, state, lr, t, key, x, labels):
        """One update of one run; returns (state, {loss, R, acc})."""
        hp = self.hp
        k_r, k_noise = jax.random.split(key)
        rho_task, rho_align = schedules.rates(t, self.steps_per_epoch, hp)
        grads, (ce, reg, out, new_stats) = jax.grad(self.loss, has_aux=True)(
            state["params"], state["batch_stats"], x, labels, k_r, t, (rho_task, rho_align))
        params = state["params"]
        dmask, bmask = decay_mask(params), backward_mask(params)
        wd = rho_task * hp["wd"]                          # L2 is part of the task loss (spec §2.2)
        grads = jax.tree_util.tree_map(lambda g, p, m: g + wd * p if m else g, grads, params, dmask)
        lr_t = lr * lr_shape(t, self.steps_per_epoch, hp)
        fwd_dir, opt_f = self.tx.update(grads, state["opt"]["fwd"])
        opt_b = state["opt"]["bwd"]
        if hp["optimizer_split"] == "separate":
            bwd_dir, opt_b = self.tx.update(grads, opt_b)
            new = jax.tree_util.tree_map(lambda p, f, b, m: p - (hp["b_lr"] * b if m else lr_t * f),
                                         params, fwd_dir, bwd_dir, bmask)
        else:
            new = jax.tree_util.tree_map(lambda p, f: p - lr_t * f, params, fwd_dir)
        if hp["noise_var"] > 0:
            only_b = hp["noise_target"] == "backward" or self.rule.tie
            leaves, treedef = jax.tree_util.tree_flatten(new)
            keys = jax.random.split(k_noise, len(leaves))
            masks = jax.tree_util.tree_leaves(bmask)
            sd = jnp.sqrt(hp["noise_var"])
            leaves = [p + (lr_t * sd * jax.random.normal(k, p.shape, p.dtype) if (m or not only_b) else 0.0)
                      for p, k, m in zip(leaves, keys, masks)]
            new = jax.tree_util.tree_unflatten(treedef, leaves)
        acc = 100.0 * jnp.mean(jnp.argmax(out, -1) == labels)
        state = {"params": new, "batch_stats": new_stats, "opt": {"fwd": opt_f, "bwd": opt_b}}
        return state, {"loss": ce, "R": reg, "acc": acc}

    def alignment(self, params, batch_stats, probes, x, labels, key):
        """Per-layer {weight_angle, projection_angle, gradient_angle} (degrees) on one batch."""
        def task(pr):
            out, mut = self.probe_model.apply({"params": params, "batch_stats": batch_stats, "probes": pr}, x,
                                              train=True, mutable=["batch_stats", "metrics", "losses"],
                                              rngs={"noise": key})
            return optax.softmax_cross_entropy_with_integer_labels(out, labels).mean(), mut["metrics"]

        stats, mets = jax.grad(task, has_aux=True)(probes)
        out = {}
        for path, v in jax.tree_util.tree_flatten_with_path(mets)[0]:
            keys = [p.key for p in path if hasattr(p, "key")]        # drop sow's tuple index
            name = [k for k in keys if k not in ("weight_angle", "projection_angle")]
            kind = [k for k in keys if k in ("weight_angle", "projection_angle")][0]
            out[f"{kind}:{'/'.join(name)}"] = v
        for path, s in jax.tree_util.tree_flatten_with_path(stats)[0]:
            out[f"gradient_angle:{'/'.join(_path_keys(path)[:-1])}"] = angle_from_stats(s)
        return out

    def evaluate_chunk(self, params, batch_stats, x):
        return self.model.apply({"params": params, "batch_stats": batch_stats}, x, train=False)


def _sum_by_term(primitives) -> dict:
    """{term: Σ over layers} of the ``primitives`` collection ({layer...: {term: (value,)}})."""
    out = {}
    for path, v in jax.tree_util.tree_flatten_with_path(primitives)[0]:
        term = [p.key for p in path if hasattr(p, "key")][-1]
        out[term] = out.get(term, 0.0) + v
    return out


def topk_correct(logits, labels, k):
    top = jnp.argsort(logits, axis=-1)[..., ::-1][..., :k]
    return jnp.any(top == labels[..., None], axis=-1).astype(jnp.float32)


# ----------------------------------------------------------------------------- resident-data program

def _pad_chunks(x, y, chunk):
    n = len(x)
    total = -(-n // chunk) * chunk
    xp = np.zeros((total,) + x.shape[1:], np.float32)
    xp[:n] = x
    yp = np.zeros(total, np.int32)
    yp[:n] = y
    mask = (np.arange(total) < n).astype(np.float32)
    shape = (total // chunk, chunk)
    return jnp.asarray(xp.reshape(shape + x.shape[1:])), jnp.asarray(yp.reshape(shape)), jnp.asarray(mask.reshape(shape)), n


def cheap_jit(fn):
    """jit whose CPU compile skips XLA's expensive optimisations: for code that runs once or rarely
    (init: threefry-heavy graphs take ~15 s to compile at full optimisation on CPU; alignment probes)."""
    jitted = jax.jit(fn)
    if jax.default_backend() != "cpu":
        return jitted
    cache = {}

    def call(*args):
        shapes = jax.tree_util.tree_map(lambda a: (jnp.shape(a), jnp.result_type(a)), args)
        key = str(shapes)
        if key not in cache:
            cache[key] = jitted.lower(*args).compile(compiler_options={
                "xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True})
        return cache[key](*args)

    return call


def over_runs(fn, in_axes, sequential: bool):
    """``jax.vmap(fn, in_axes)`` over the leading run axis (every axis 0 or None), or, if ``sequential``, the same
    as a ``lax.map`` over the runs: each run then computes exactly what it computes alone. XLA:CPU runs the
    grouped convolutions that vmap makes of per-run kernels several times slower than a loop over runs
    (ResNet-8 w8, batch 128, 2 runs: 460 vs 1,100 images/s), so the CPU backend maps (papers/two_routes/README.md)."""
    if not sequential:
        return jax.vmap(fn, in_axes=in_axes)

    def mapped(*args):
        def one(batched):
            it = iter(batched)
            return fn(*[a if ax is None else next(it) for a, ax in zip(args, in_axes)])
        return jax.lax.map(one, [a for a, ax in zip(args, in_axes) if ax is not None])

    return mapped


class BatchProgram:
    def __init__(self, spec: dict, arrays: dict, sequential_runs: bool | None = None):
        """``sequential_runs``: loop over the runs of the batch instead of vmapping them (default: on CPU)."""
        self.sequential = jax.default_backend() == "cpu" if sequential_runs is None else bool(sequential_runs)
        self.batch_size = spec["batch_size"]
        self.n_train = len(arrays["x_train"])
        if self.n_train < self.batch_size:
            raise ValueError(f"batch_size {self.batch_size} exceeds the {self.n_train} training examples")
        self.steps_per_epoch = self.n_train // self.batch_size
        self.trainer = Trainer(spec, arrays["n_classes"], self.steps_per_epoch)
        self.x_train, self.y_train = jnp.asarray(arrays["x_train"]), jnp.asarray(arrays["y_train"])
        self.test = _pad_chunks(arrays["x_test"], arrays["y_test"], EVAL_CHUNK)
        self.probe_x = self.x_train[:self.batch_size]
        self.probe_y = self.y_train[:self.batch_size]
        self.train_epoch = jax.jit(self._train_epoch, donate_argnums=(0,))
        self.evaluate = jax.jit(self._evaluate)
        self.measure = cheap_jit(self._measure)

    def init(self, seeds, lrs):
        base = jax.vmap(jax.random.PRNGKey)(jnp.asarray(seeds, jnp.uint32))
        fold = lambda i: jax.vmap(lambda k: jax.random.fold_in(k, i))(base)  # noqa: E731
        x0 = self.x_train[:1]
        state = cheap_jit(jax.vmap(lambda k: self.trainer.init(k, x0)))(fold(0))   # eager Flax init is slow
        self.probes = cheap_jit(lambda k: self.trainer.probes(k, x0))(jax.random.PRNGKey(0))
        return state, {"shuffle": fold(1), "noise": fold(2), "lr": jnp.asarray(lrs, jnp.float32)}

    def _train_epoch(self, state, keys, epoch):
        spe, bs = self.steps_per_epoch, self.batch_size

        def order(k):
            return jax.random.permutation(jax.random.fold_in(k, epoch), self.n_train)[:spe * bs].reshape(spe, bs)

        idx = jnp.swapaxes(jax.vmap(order)(keys["shuffle"]), 0, 1)
        step = over_runs(self.trainer.step, (0, 0, None, 0, 0, 0), self.sequential)

        def body(st, inputs):
            t, ix = inputs
            k = jax.vmap(lambda kk: jax.random.fold_in(kk, t))(keys["noise"])
            return step(st, keys["lr"], t, k, self.x_train[ix], self.y_train[ix])

        ts = epoch * spe + jnp.arange(spe, dtype=jnp.uint32)
        state, outs = jax.lax.scan(body, state, (ts, idx))
        return state, jax.tree_util.tree_map(lambda v: v.mean(0), outs)

    def _evaluate(self, state):
        xc, yc, mask, n = self.test

        def chunk(args):
            x, labels, m = args
            z = over_runs(lambda p, s: self.trainer.evaluate_chunk(p, s, x), (0, 0), self.sequential)(
                state["params"], state["batch_stats"])
            loss = optax.softmax_cross_entropy_with_integer_labels(z, labels[None])
            return ((topk_correct(z, labels[None], 1) * m).sum(-1), (topk_correct(z, labels[None], 5) * m).sum(-1),
                    (loss * m).sum(-1))

        c1, c5, loss = jax.lax.map(chunk, (xc, yc, mask))
        return {"test_acc": 100.0 * c1.sum(0) / n, "test_top5": 100.0 * c5.sum(0) / n, "test_loss": loss.sum(0) / n}

    def _measure(self, state, keys):
        return over_runs(lambda p, s, k: self.trainer.alignment(p, s, self.probes, self.probe_x, self.probe_y, k),
                         (0, 0, 0), self.sequential)(state["params"], state["batch_stats"], keys["noise"])


# ----------------------------------------------------------------------------- checkpoints

def diverged_at(history: dict, epoch: int) -> np.ndarray:
    """Per run: did this epoch leave it unusable? A non-finite or exploded (> DIVERGED_LOSS) train or
    test loss, or a non-finite train_R: backward weights can overflow (IA at cpu scale: B ~ 1e30, then
    NaN kernels) while batch norm keeps the cross-entropy at a finite chance level."""
    losses = np.stack([history["train_loss"][epoch], history["test_loss"][epoch]])
    bad = ~np.isfinite(losses).all(0) | (np.nan_to_num(losses, nan=np.inf) > DIVERGED_LOSS).any(0)
    return bad | ~np.isfinite(history["train_R"][epoch])


def save_checkpoint(path, job, epoch, state, history, diverged, elapsed):
    arrays = {"epoch": np.asarray(epoch), "run_ids": np.asarray(job.run_ids), "diverged_epoch": diverged,
              "elapsed_s": np.asarray(elapsed)}
    arrays.update({f"state_{i}": np.asarray(a) for i, a in enumerate(jax.tree_util.tree_leaves(state))})
    arrays.update({f"hist_{k}": v for k, v in history.items()})
    atomic_write_npz(path, arrays)


def load_checkpoint(path, job, state, names):
    if not path.exists():
        return None
    data = load_npz(path)
    if list(data["run_ids"]) != list(job.run_ids):
        return None
    treedef = jax.tree_util.tree_structure(state)
    state = jax.tree_util.tree_unflatten(treedef, [jnp.asarray(data[f"state_{i}"]) for i in range(treedef.num_leaves)])
    return (int(data["epoch"]), state, {k: data[f"hist_{k}"].copy() for k in names if f"hist_{k}" in data},
            data["diverged_epoch"].copy(), float(data["elapsed_s"]))


# ----------------------------------------------------------------------------- driver

def _write_runs(job, history, diverged, last_epoch, wall, extra, params=None):
    record = provenance.record(provenance.jax_device())
    leaves = jax.tree_util.tree_leaves(params) if params is not None else []
    for i, (rid, run_dir) in enumerate(zip(job.run_ids, job.run_dirs)):
        if leaves:
            atomic_write_npz(run_dir / "params.npz", {f"leaf_{j}": np.asarray(x[i]) for j, x in enumerate(leaves)})
        d = int(diverged[i])
        last = d if d >= 0 else last_epoch
        metrics.write_metrics(run_dir, {k: v[:, i] for k, v in history.items()}, last + 1)
        metrics.write_train_record(run_dir, run_id=rid, diverged_epoch=d if d >= 0 else None, epochs_completed=last,
                                   wall_time_s=wall, batch_id=job.batch_id, runs_in_batch=len(job.run_ids),
                                   provenance=record, extra={**extra, "options": options.recorded(job.specs[i])})


def train_batch(job: BatchJob, options_: TrainOptions) -> None:
    """Train every run of ``job``; write each run's spec.json, metrics.csv, params.npz and train.json."""
    spec0 = job.specs[0]
    for run_dir, spec in zip(job.run_dirs, job.specs):
        atomic_write_json(run_dir / "spec.json", spec)
    if spec0["model"]["arch"] == "linear":
        from impls.two_routes.fixed_points import train_fixed_point_batch
        return train_fixed_point_batch(job, options_, _write_runs)
    if spec0["dataset"] == "imagenet":
        from impls.two_routes.imagenet import train_imagenet_batch
        return train_imagenet_batch(job, options_, _write_runs)
    epochs = spec0["epochs"]
    program = BatchProgram(spec0, load_arrays(spec0, options_.datasets_dir))
    seeds = np.array([s["seed"] for s in job.specs])
    lrs = np.array([s["hparams"]["lr"] for s in job.specs], np.float32)
    state, keys = program.init(seeds, lrs)
    every = options.hparams(spec0)["metric_every"]
    align0 = program.measure(state, keys)
    names = ["train_loss", "train_acc", "train_R", "test_loss", "test_acc", "test_top5"] + [
        f"align_{k}" for k in align0]
    n = len(seeds)
    history = {k: np.full((epochs + 1, n), np.nan) for k in names}
    diverged = np.full(n, -1, np.int64)
    ckpt = job.batch_dir / "checkpoint.npz"
    resumed = load_checkpoint(ckpt, job, state, names)
    if resumed:
        start, state, history, diverged, elapsed = resumed
        print(f"[{job.batch_id}] resumed from checkpoint at epoch {start}", file=sys.stderr, flush=True)
    else:
        start, elapsed = 0, 0.0
        for k, v in {**program.evaluate(state), **{f"align_{a}": b for a, b in align0.items()}}.items():
            history[k][0] = np.asarray(v)
    t_start, clock = time.perf_counter() - elapsed, CheckpointClock(options_.checkpoint_minutes)
    epoch = start
    for epoch in range(start + 1, epochs + 1):
        t0 = time.perf_counter()
        state, running = program.train_epoch(state, keys, epoch - 1)
        out = {f"train_{k}": v for k, v in running.items()} | program.evaluate(state)
        if epoch % every == 0 or epoch == epochs:
            out |= {f"align_{k}": v for k, v in program.measure(state, keys).items()}
        for k, v in out.items():
            history[k][epoch] = np.asarray(v)
        diverged[(diverged < 0) & diverged_at(history, epoch)] = epoch
        ok = diverged < 0
        acc = np.median(history["test_acc"][epoch][ok]) if ok.any() else float("nan")
        print(f"[{job.batch_id}] epoch {epoch}/{epochs} | {n} runs | test_acc median {acc:.4g} | diverged "
              f"{int((~ok).sum())} | {time.perf_counter() - t0:.3g} s/epoch", file=sys.stderr, flush=True)
        done = epoch == epochs or not ok.any()
        if not done and clock.due():
            save_checkpoint(ckpt, job, epoch, state, history, diverged, time.perf_counter() - t_start)
            clock.saved(epoch)
        if done:
            break
    _write_runs(job, history, diverged, epoch, time.perf_counter() - t_start,
                {"steps_per_epoch": program.steps_per_epoch, "devices": 1,
                 "metaparameters": "code defaults + recalled protocol (paper pickles unavailable, spec §7.1)"},
                state["params"])
    ckpt.unlink(missing_ok=True)
