"""One table of every JAX learning rule, the same contract checks on each (STYLE.md, optax style).

Adding a rule is one row in ``RULES``: a name and a builder returning (rule, params, x, y).
Checks (one test per rule, so each rule compiles once): pseudo-gradients have the parameters'
structure, shapes and dtypes and are finite; the aux holds a scalar ``loss``; ``vmap`` over runs
gives each run's own result; the same inputs and key give bit-identical outputs. Rules with a fixed-matrix state are built with ``init(params)`` (key 0).
"""
from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from impls.bpfree import models as bp_models
from impls.bpfree import options as bp_options
from impls.bpfree.rules import make_rule as bpfree_rule
from impls.nodepert import convnets as np_convnets
from impls.nodepert import models as np_models
from impls.nodepert import options as np_options
from impls.nodepert.rules import make_rule as nodepert_rule
from impls.rules.backprop import backprop

N, D, C = 8, 6, 3


def _data(key, target_dim=C, reconstruction=False):
    kx, ky = jax.random.split(key)
    x = jax.random.normal(kx, (N, D), jnp.float32)
    if reconstruction:
        return x, jnp.tanh(x)
    return x, jax.nn.one_hot(jax.random.randint(ky, (N,), 0, target_dim), target_dim)


def _nodepert(name, key):
    params = np_models.init_mlp(key, [D, 5, C])
    x, y = _data(jax.random.fold_in(key, 1))
    return nodepert_rule(name, {"sigma": 0.1}), params, x, y  # large sigma: little cancellation in δL/σ²


def _nodepert_conv(name, key, arch="conv_base"):
    """A conv net of ``arch`` with every hidden channel count scaled to 1/8, on 6x6x1 images."""
    image_shape = (6, 6, 1)
    convs = np_convnets.layers(arch, channel_scale=0.125)
    params = np_convnets.init_convnet(key, convs, image_shape)
    kx, ky = jax.random.split(jax.random.fold_in(key, 1))
    x = jax.random.normal(kx, (N, *image_shape), jnp.float32)
    y = jax.nn.one_hot(jax.random.randint(ky, (N,), 0, np_convnets.N_CLASSES), np_convnets.N_CLASSES)
    return np_convnets.make_conv_rule(name, {"sigma": 0.1}, convs, image_shape), params, x, y


def _shared_backprop(key):
    params = np_models.init_mlp(key, [D, 5, C])
    x, y = _data(jax.random.fold_in(key, 1))
    return backprop(partial(np_models.mean_loss, activation="relu")), params, x, y


def _bpfree(name, key, batchnorm=False, activation="tanh", task="classification", dropout=0.0):
    recon = task == "reconstruction"
    cfg = bp_models.Config(D, (5, 4), D if recon else C, task=task, activation=activation, batchnorm=batchnorm,
                           dropout=dropout)
    params, model_state = bp_models.init(key, cfg)
    x, y = _data(jax.random.fold_in(key, 1), reconstruction=recon)
    return bpfree_rule(name, cfg, model_state), params, x, y


def _bpfree_conv(name, key, trained=True):
    # the D = 6 inputs seen as a 2x3 grey image; conv 2c3 ('same') -> 2x3x2 -> FC 4 -> C
    from impls.bpfree import conv
    cfg = bp_models.Config(D, (4,), C, output="sigmoid_bce", conv=conv.parse("2c3"), conv_trained=trained,
                           image_shape=(2, 3, 1))
    params, model_state = bp_models.init(key, cfg)
    x, y = _data(jax.random.fold_in(key, 1))
    return bpfree_rule(name, cfg, model_state), params, x, y


# every registered rule of every JAX paper (nodepert rules that differ only in their optimiser
# share an estimator and appear once)
_estimator = getattr(np_options, "estimator_name", lambda rule: rule)
NODEPERT_ESTIMATORS = sorted({_estimator(r) for r in np_options.RULES})

RULES = {
    "rules.backprop": _shared_backprop,
    **{f"nodepert.{r}": partial(_nodepert, r) for r in NODEPERT_ESTIMATORS},
    **{f"nodepert.conv.{r}": partial(_nodepert_conv, r) for r in np_options.CONV_ESTIMATORS},
    "nodepert.conv.np.allcnn_a": partial(_nodepert_conv, "np", arch="allcnn_a"),
    **{f"bpfree.{r}": partial(_bpfree, r) for r in bp_options.RULES},
    **{f"bpfree.{r}+bn+relu+dropout": partial(_bpfree, r, batchnorm=True, activation="relu", dropout=0.3)
       for r in ("dfa", "drtp", "cce", "fa")},
    **{f"bpfree.{r}.reconstruction": partial(_bpfree, r, task="reconstruction", batchnorm=True)
       for r in ("dfa", "mse")},
    **{f"bpfree.{r}.conv": partial(_bpfree_conv, r) for r in ("bp", "fa", "dfa", "drtp")},
    **{f"bpfree.{r}.conv_frozen": partial(_bpfree_conv, r, trained=False) for r in ("fa", "drtp")},
}


def _grads_of(rule, params, x, y, key):
    state = rule.init(params)
    grads, _, aux = rule.estimate(params, state, x, y, key)
    return grads, aux["loss"]


@pytest.mark.parametrize("name", list(RULES))
def test_rule_contract(name):
    rule, params, x, y = RULES[name](jax.random.PRNGKey(0))
    key = jax.random.PRNGKey(7)
    leaves = jax.tree_util.tree_leaves

    # structure, shape, dtype, finiteness; a scalar loss
    jitted = jax.jit(partial(_grads_of, rule))
    grads, loss = jitted(params, x, y, key)
    assert jax.tree_util.tree_structure(grads) == jax.tree_util.tree_structure(params)
    for g, p in zip(leaves(grads), leaves(params)):
        assert g.shape == p.shape and g.dtype == p.dtype
        assert bool(jnp.all(jnp.isfinite(g)))
    assert jnp.shape(loss) == () and bool(jnp.isfinite(loss))

    # the same inputs and key give bit-identical outputs (a fresh trace of the same rule too)
    again = jax.jit(partial(_grads_of, rule))(params, x, y, key)[0]
    for a, b in zip(leaves(grads), leaves(again)):
        np.testing.assert_array_equal(a, b)

    # vmap over two runs (different weights and keys) gives each run's own result
    other = RULES[name](jax.random.PRNGKey(1))[1]
    stacked = jax.tree_util.tree_map(lambda *a: jnp.stack(a), params, other)
    keys = jnp.stack([key, jax.random.PRNGKey(8)])
    batched = jax.jit(jax.vmap(partial(_grads_of, rule), in_axes=(0, None, None, 0)))(stacked, x, y, keys)[0]
    for i, p in enumerate((params, other)):
        single = jitted(p, x, y, keys[i])[0]
        for s, v in zip(leaves(single), leaves(batched)):
            np.testing.assert_allclose(v[i], s, rtol=1e-4, atol=1e-6)
