"""The compiled pieces of a batch of nodepert runs (papers/nodepert/README.md, "Initialisation, data and training
loop"): data, network, optimiser, epoch.

Caller: ``impls.nodepert.train`` (the program the common driver trains), the evaluate-stage
analyses (``replay``, ``linesearch``) and the benchmarks.

All runs of a batch share rule, model, dataset, epochs and batch size; they differ in seed
and learning rate (``batch_over``):

- parameters, optimiser states and noise keys are stacked along a leading run axis and the
  update is ``jax.vmap``-ed over it (conv nets on CPU: a ``lax.map`` over the runs,
  ``impls.common.jax_state.over_runs``, since XLA:CPU runs vmap's grouped convs slowly);
- a whole epoch is one compiled ``lax.scan`` over the minibatches of the device-resident
  training set, in fixed file order (no shuffling, as the original), so every run sees the
  same minibatches and nothing syncs with the host inside an epoch;
- evaluation covers the full train and test splits;
- the optimiser is the rule's (``make_optimizer``: plain SGD as the paper, or the ``*_wd`` and
  ``*_adam`` variants).

Seeds: init key = fold_in(PRNGKey(seed), 0) whatever the rule, so NP and SGD with the same
seed start from identical weights; the noise of update t is drawn from
fold_in(fold_in(PRNGKey(seed), 1), t), so a resumed job draws exactly the noise an
uninterrupted one would.
"""

from __future__ import annotations

from functools import partial
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from impls.common import datasets, jax_state
from impls.common.jax_state import over_runs, pad_chunks
from impls.nodepert import convnets, models
from impls.nodepert.options import CONV_ARCHS, hidden_sizes, optimizer_kind
from impls.nodepert.rules import make_rule

# Perturbation methods need full float32 matmuls: sigma = 1e-4 is below TF32 rounding (papers/nodepert/README.md,
# "Numerical precision").
jax.config.update("jax_default_matmul_precision", "highest")

METRIC_NAMES = ("train_acc", "train_loss", "test_acc", "test_loss")
EVAL_CHUNK = 1000


def load_arrays(spec: dict, datasets_dir) -> dict[str, np.ndarray]:
    """Standardised, flattened float32 inputs and int labels; train split cut to whole minibatches."""
    ds = datasets.load_dataset(datasets_dir / f"{spec['dataset']}.npz")
    ds = datasets.subset_for_spec(ds, spec)
    # MNIST/F-MNIST: one scalar mean/std; CIFAR: per-channel mean/std of the train set, as the original
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
    W ← W − lr·g − wd·W: the decay is not scaled by lr, as the original's (papers/nodepert/README.md, "Named
    variants").
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


class CompiledBatch:
    """The compiled pieces of one batch: init, one training epoch, evaluation."""

    def __init__(self, spec: dict, arrays: dict[str, np.ndarray], sequential_runs: bool | None = None):
        """``sequential_runs``: loop over the runs of the batch instead of vmapping them (default: conv nets on
        CPU, ``impls.common.jax_state.sequential_runs``)."""
        self.net = build_network(spec, arrays["image_shape"])
        self.sequential = (jax_state.sequential_runs(spec["model"]["arch"] in CONV_ARCHS) if sequential_runs is None
                           else bool(sequential_runs))
        self.rule = self.net.rule
        self.optimizer = optax.inject_hyperparams(make_optimizer(spec["rule"], spec["hparams"]))
        self.batch_size = spec["batch_size"]
        x, y = arrays["x_train"], arrays["y_train"]
        n_batches = len(x) // self.batch_size
        self.steps_per_epoch = n_batches
        x, x_test = x.reshape(-1, *self.net.input_shape), arrays["x_test"].reshape(-1, *self.net.input_shape)
        self.x_batches = jnp.asarray(x.reshape(n_batches, self.batch_size, *self.net.input_shape))
        self.y_batches = jax.nn.one_hot(jnp.asarray(y.reshape(n_batches, self.batch_size)), 10)
        self.eval_sets = {"train": pad_chunks(x, y, EVAL_CHUNK),
                          "test": pad_chunks(x_test, arrays["y_test"], EVAL_CHUNK)}
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
        estimate = over_runs(self.rule.estimate, (0, 0, None, None, 0), self.sequential)

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
                pred = over_runs(lambda p: self.net.apply(p, x), (0,), self.sequential)(params)
                loss = models.per_example_loss(pred, jax.nn.one_hot(y, 10)[None])
                correct = (jnp.argmax(pred, -1) == y[None]).astype(jnp.float32)
                return (correct * m).sum(-1), (loss * m).sum(-1)

            correct, loss = jax.lax.map(chunk_stats, (xc, yc, mask))
            out[f"{split}_acc"] = 100.0 * correct.sum(0) / n
            out[f"{split}_loss"] = loss.sum(0) / n
        return out
