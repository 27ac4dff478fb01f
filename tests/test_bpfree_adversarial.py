"""Adversarial training (Nøkland 2016 / Goodfellow et al. 2015): FGSM examples against a hand computation,
the ½ clean + ½ adversarial update, ε = 0 bit-identical, validation (impls.bpfree.adversarial)."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from impls.bpfree import adversarial, models
from impls.bpfree.compiled import CompiledBatch, load_arrays
from impls.common import specs as speclib
from impls.common.errors import SpecError

jax.config.update("jax_default_matmul_precision", "highest")


def spec(rule="dfa", eps=None, hparams=None, **model):
    hp = {"lr": 1e-3, "optimizer": "rmsprop", **(hparams or {})}
    if eps is not None:
        hp["adversarial_eps"] = eps
    return speclib.validate_spec({
        "paper": "bpfree", "rule": rule, "dataset": "digits", "seed": 0, "epochs": 1, "batch_size": 32,
        "model": {"arch": "mlp", "hidden": [16], "activation": "tanh", "output": "sigmoid_bce", "scaler": "minmax",
                  **model},
        "hparams": hp, "scale": "smoke"})


def tiny_net(scaler="minmax"):
    cfg = models.Config(in_dim=5, hidden=(4,), out_dim=3, output="sigmoid_bce", scaler=scaler)
    params, state = models.init(jax.random.PRNGKey(0), cfg)
    params["hidden"][0]["b"] = jnp.linspace(-0.3, 0.3, 4)
    x = jax.random.uniform(jax.random.PRNGKey(1), (6, 5))
    y = jax.nn.one_hot(jnp.array([0, 1, 2, 0, 1, 2]), 3)
    return cfg, params, state, x, y


def hand_input_gradient(params, x, y):
    """∂L/∂x of L = mean_{n,c} BCE(σ(z), y), z = tanh(x W1 + b1) W2 + b2, by the chain rule."""
    w1, b1 = np.asarray(params["hidden"][0]["w"]), np.asarray(params["hidden"][0]["b"])
    w2, b2 = np.asarray(params["out"]["w"]), np.asarray(params["out"]["b"])
    x, y = np.asarray(x, np.float64), np.asarray(y)
    h = np.tanh(x @ w1 + b1)
    z = h @ w2 + b2
    dz = (1 / (1 + np.exp(-z)) - y) / y.size
    return ((dz @ w2.T) * (1 - h ** 2)) @ w1.T


@pytest.mark.parametrize("scaler,bounds", [("minmax", (0.0, 1.0)), ("standard", (-1.0, 1.0)), ("zscore", None)])
def test_fgsm_is_x_plus_eps_sign_of_the_input_gradient_clipped_to_the_scaler_range(scaler, bounds):
    cfg, params, state, x, y = tiny_net(scaler)
    eps = 0.3   # large enough that some pixels leave [0, 1] and get clipped
    g = hand_input_gradient(params, x, y)
    np.testing.assert_allclose(adversarial.input_gradient(params, state, x, y, None, cfg), g, rtol=1e-4, atol=1e-9)
    expected = np.asarray(x) + eps * np.sign(g)
    if bounds is not None:
        assert ((expected < bounds[0]) | (expected > bounds[1])).any()
        expected = np.clip(expected, *bounds)
    x_adv = adversarial.fgsm(params, state, x, y, None, cfg, eps, scaler)
    np.testing.assert_allclose(x_adv, expected, rtol=0, atol=1e-6)


def test_the_update_is_half_clean_half_adversarial_gradient(datasets_dir):
    # bp + plain SGD with lr 1: the new params are params − ½(∇L(x) + ∇L(x_adv)), x_adv from jax.grad w.r.t. x
    s = spec(rule="bp", eps=0.08, hparams={"optimizer": "sgd", "lr": 1.0})
    program = CompiledBatch(s, load_arrays(s, datasets_dir))
    state, _ = program.init(np.array([0]), np.array([1.0], np.float32))
    params, opt, rule, model = (jax.tree_util.tree_map(lambda a: a[0], state[k])
                                for k in ("params", "opt", "rule", "model"))
    x, labels = program.x_train[:32], program.y_train[:32]
    y = jax.nn.one_hot(labels, 10)
    key = jax.random.PRNGKey(3)
    new_params, *_ = program._step(params, opt, rule, model, key, x, labels)

    def loss(p, xb):
        return models.loss(models.apply(p, model, xb, key, program.cfg, train=True)[0], y, program.cfg)

    gx = jax.grad(loss, argnums=1)(params, x)
    x_adv = jnp.clip(x + 0.08 * jnp.sign(gx), 0.0, 1.0)
    g = jax.tree_util.tree_map(lambda a, b: 0.5 * (a + b), jax.grad(loss)(params, x), jax.grad(loss)(params, x_adv))
    expected = jax.tree_util.tree_map(lambda p, d: p - d, params, g)
    for a, b in zip(jax.tree_util.tree_leaves(new_params), jax.tree_util.tree_leaves(expected)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def _train(s, datasets_dir, epochs=2):
    program = CompiledBatch(s, load_arrays(s, datasets_dir))
    state, keys = program.init(np.array([0, 1]), np.array([1e-3, 1e-3], np.float32))
    for epoch in range(epochs):
        state, running = program.train_epoch(state, keys, epoch)
    return state, running


@pytest.mark.parametrize("rule", ["dfa", "fa"])
def test_eps_zero_is_bit_identical_and_eps_positive_changes_training(datasets_dir, rule):
    init = {"weight_init": "zero_hidden", "dropout": 0.5}
    off, run_off = _train(spec(rule, **init), datasets_dir)
    zero, run_zero = _train(spec(rule, eps=0.0, **init), datasets_dir)
    on, _ = _train(spec(rule, eps=0.08, **init), datasets_dir)
    for a, b in zip(jax.tree_util.tree_leaves(off["params"]), jax.tree_util.tree_leaves(zero["params"])):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(run_off["loss"], run_zero["loss"])
    moved = [not np.array_equal(a, b) for a, b in zip(jax.tree_util.tree_leaves(off["params"]),
                                                       jax.tree_util.tree_leaves(on["params"]))]
    assert any(moved)
    assert all(np.isfinite(np.asarray(leaf)).all() for leaf in jax.tree_util.tree_leaves(on["params"]))


@pytest.mark.parametrize("kwargs,message", [
    ({"eps": -0.1}, "adversarial_eps"),
    ({"eps": True}, "adversarial_eps"),
    ({"eps": 0.08, "hparams": {"trackers": "all"}}, "trackers"),
    ({"eps": 0.08, "rule": "bp", "task": "reconstruction"}, "classification"),
])
def test_bad_adversarial_options_name_the_key(kwargs, message):
    with pytest.raises(SpecError, match=message):
        spec(**kwargs)
