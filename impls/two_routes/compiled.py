"""The compiled pieces of a batch of two_routes runs on device-resident data (digits, Fashion-MNIST).

Caller: ``impls.two_routes.train`` (the program the common driver trains), the tests and the
benchmarks. The update itself is ``impls.two_routes.trainer.Trainer``.

All runs of a batch share rule, model, dataset, epochs and batch size; they differ in seed and peak
learning rate (``batch_over``), so one process trains them together: parameters, BN statistics and
optimiser states are stacked on a leading run axis, one step is ``jax.vmap``-ed over it (on CPU: a ``lax.map``
over the runs, see ``impls.common.jax_state.over_runs``) and an epoch is one compiled ``lax.scan`` over
device-resident data. ImageNet specs are streamed instead (impls.two_routes.imagenet_program), data-parallel
over devices.

Measurements (``CompiledBatch.measure``): the per-layer angles of ``Trainer.alignment`` on a fixed training
batch (the first ``batch_size`` images, BN in training mode). Test top-1/top-5 and loss: ``evaluate``.
Seeds: base = PRNGKey(seed); weights fold_in(base, 0) (every rule starts from the same W for a
seed), shuffling fold_in(base, 1), R's noise inputs and update noise fold_in(base, 2) per step.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

from impls.common import datasets
from impls.common.jax_state import over_runs, pad_chunks
from impls.two_routes.trainer import Trainer, topk_correct

EVAL_CHUNK = 500
PIXEL_MAX = {"digits": 16.0}


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


class CompiledBatch:
    """A batch of runs on resident data: ``init`` the run-stacked state and keys, then the compiled
    ``train_epoch`` (one ``lax.scan``), ``evaluate`` (test split) and ``measure`` (alignment angles)."""

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
        self.test = pad_chunks(arrays["x_test"], arrays["y_test"], EVAL_CHUNK)
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
