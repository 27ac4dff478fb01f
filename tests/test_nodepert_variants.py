"""The named variants (papers/nodepert/README.md, "Named variants") against closed forms: clean presynaptic activity,
batch-scalar δL, unscaled weight decay, Adam, linear networks; and their spec validation."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from impls.common import specs as speclib
from impls.common.errors import SpecError
from impls.nodepert import models
from impls.nodepert.options import hidden_sizes
from impls.nodepert.rules import estimate_with_noise, make_rule
from impls.nodepert.compiled import make_optimizer


def _forward(params, x, noise, linear=False):
    """float64 reference: returns output and the input each layer saw."""
    h, inputs = x, []
    for l, layer in enumerate(params):
        inputs.append(h)
        a = h @ layer["w"].T + layer["b"] + (0 if noise is None else noise[l])
        if linear:
            h = a
        else:
            h = 1 / (1 + np.exp(-a)) if l == len(params) - 1 else np.maximum(a, 0)
    return h, inputs


@pytest.fixture
def tiny():
    rng = np.random.default_rng(3)
    params = [{"w": rng.normal(size=(3, 4)), "b": rng.normal(size=3) * 0.1},
              {"w": rng.normal(size=(2, 3)), "b": rng.normal(size=2) * 0.1}]
    x = rng.normal(size=(5, 4))
    y = np.eye(2)[rng.integers(0, 2, 5)]
    sigma = 0.1
    noise = [sigma * rng.normal(size=3), sigma * rng.normal(size=2)]
    return params, x, y, noise, sigma


def _f32(tree):
    return jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float32), tree)


def _assert_close(got, expected):
    for g, e in zip(got, expected):
        np.testing.assert_allclose(g["w"], e["w"], rtol=2e-4, atol=1e-6)
        np.testing.assert_allclose(g["b"], e["b"], rtol=2e-4, atol=1e-6)


def _deltas(params, x, y, noise, linear=False):
    clean, clean_inputs = _forward(params, x, None, linear)
    noisy, noisy_inputs = _forward(params, x, noise, linear)
    return ((noisy - y) ** 2).mean(1) - ((clean - y) ** 2).mean(1), clean_inputs, noisy_inputs


def test_clean_presynaptic_variant_uses_the_clean_pass(tiny):
    params, x, y, noise, sigma = tiny
    delta, clean_inputs, noisy_inputs = _deltas(params, x, y, noise)
    expected = [{"w": sum(delta[i] / sigma**2 * np.outer(noise[l], clean_inputs[l][i]) for i in range(5)) / 5,
                 "b": sum(delta[i] / sigma**2 * noise[l] for i in range(5)) / 5} for l in range(2)]
    got, _ = estimate_with_noise(_f32(params), _f32(x), _f32(y), _f32(noise), sigma, presynaptic="clean")
    _assert_close(got, expected)
    # and it really differs from the paper's noisy-pass estimate in the second layer
    paper, _ = estimate_with_noise(_f32(params), _f32(x), _f32(y), _f32(noise), sigma)
    assert not np.allclose(paper[1]["w"], got[1]["w"], rtol=1e-3)
    assert not np.allclose(clean_inputs[1], noisy_inputs[1])


def test_batch_scalar_variant_is_mean_delta_times_mean_activity(tiny):
    params, x, y, noise, sigma = tiny
    delta, _, noisy_inputs = _deltas(params, x, y, noise)
    expected = [{"w": delta.mean() / sigma**2 * np.outer(noise[l], noisy_inputs[l].mean(0)),
                 "b": delta.mean() / sigma**2 * noise[l]} for l in range(2)]
    got, _ = estimate_with_noise(_f32(params), _f32(x), _f32(y), _f32(noise), sigma, batch_scalar=True)
    _assert_close(got, expected)


def test_linear_network_estimate_and_exact_gradient(tiny):
    params, x, y, noise, sigma = tiny
    delta, _, noisy_inputs = _deltas(params, x, y, noise, linear=True)
    expected = [{"w": sum(delta[i] / sigma**2 * np.outer(noise[l], noisy_inputs[l][i]) for i in range(5)) / 5,
                 "b": sum(delta[i] / sigma**2 * noise[l] for i in range(5)) / 5} for l in range(2)]
    got, _ = estimate_with_noise(_f32(params), _f32(x), _f32(y), _f32(noise), sigma, activation="linear")
    _assert_close(got, expected)
    # linear net, one layer: ∇_W (1/B) Σ_i (1/K)|W x_i + b − y_i|² = (2/(BK)) Σ_i (W x_i + b − y_i) x_iᵀ
    one = [params[0] | {"w": params[0]["w"][:2], "b": params[0]["b"][:2]}]
    grads, _, _ = make_rule("sgd", {}, activation="linear").estimate(_f32(one), (), _f32(x), _f32(y), None)
    residual = x @ one[0]["w"].T + one[0]["b"] - y
    np.testing.assert_allclose(grads[0]["w"], 2 / (5 * 2) * residual.T @ x, rtol=1e-5)
    np.testing.assert_allclose(grads[0]["b"], 2 / (5 * 2) * residual.sum(0), rtol=1e-5)


def _one_step(rule, hparams, lr, params, grads):
    opt = optax.inject_hyperparams(make_optimizer(rule, hparams))(learning_rate=lr)
    updates, _ = opt.update(grads, opt.init(params), params)
    return optax.apply_updates(params, updates)


def test_weight_decay_is_not_scaled_by_the_learning_rate(tiny):
    params, *_ = tiny
    params = _f32(params)
    grads = jax.tree_util.tree_map(lambda p: jnp.full_like(p, 0.5), params)
    lr, wd = 0.1, 1e-2
    new = _one_step("np_wd", {"wd": wd, "sigma": 1e-4}, lr, params, grads)
    for p, n in zip(params, new):
        np.testing.assert_allclose(n["w"], p["w"] - lr * 0.5 - wd * p["w"], rtol=1e-6)
        np.testing.assert_allclose(n["b"], p["b"] - lr * 0.5, rtol=1e-6)  # biases are not decayed
    same = _one_step("sgd_wd", {"wd": 0.0}, lr, params, grads)
    plain = _one_step("sgd", {}, lr, params, grads)
    for a, b in zip(jax.tree_util.tree_leaves(same), jax.tree_util.tree_leaves(plain)):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("rule", ["np_adam", "sgd_adam"])
def test_adam_first_steps_match_the_closed_form(tiny, rule):
    # step 1: m̂ = g, v̂ = g², so Δθ = −lr g/(|g| + eps); step 2 with the same g is the same
    params, *_ = tiny
    params = _f32(params)
    grads = jax.tree_util.tree_map(lambda p: jnp.linspace(-1.0, 2.0, p.size).reshape(p.shape), params)
    lr = 1e-3
    opt = optax.inject_hyperparams(make_optimizer(rule, {"sigma": 1e-4}))(learning_rate=lr)
    state = opt.init(params)
    current = params
    for _ in range(2):
        updates, state = opt.update(grads, state, current)
        current = optax.apply_updates(current, updates)
    for p, g, n in zip(jax.tree_util.tree_leaves(params), jax.tree_util.tree_leaves(grads),
                       jax.tree_util.tree_leaves(current)):
        np.testing.assert_allclose(n, p - 2 * lr * g / (np.abs(g) + 1e-8), rtol=1e-5, atol=1e-7)


def test_variant_rules_share_their_base_estimator():
    key = jax.random.PRNGKey(0)
    params = models.init_mlp(key, [6, 5, 3])
    x = jax.random.normal(key, (4, 6))
    y = jax.nn.one_hot(jnp.arange(4) % 3, 3)
    for variant, base in [("np_adam", "np"), ("np_wd", "np"), ("sgd_adam", "sgd"), ("sgd_wd", "sgd")]:
        a = make_rule(variant, {"sigma": 1e-3}).estimate(params, (), x, y, jax.random.PRNGKey(1))[0]
        b = make_rule(base, {"sigma": 1e-3}).estimate(params, (), x, y, jax.random.PRNGKey(1))[0]
        for u, v in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
            np.testing.assert_array_equal(u, v)


def _spec(**overrides):
    base = {"paper": "nodepert", "rule": "np", "model": {"arch": "mlp", "n_hl": 3, "width": 16},
            "dataset": "digits", "hparams": {"lr": 0.01, "sigma": 1e-4}, "seed": 0, "epochs": 1,
            "batch_size": 100, "scale": "smoke"}
    return speclib.deep_merge(base, overrides)


def test_depth_and_width_keys_expand_to_hidden_layers():
    spec = speclib.validate_spec(_spec())
    assert hidden_sizes(spec["model"]) == [16, 16, 16]
    assert hidden_sizes({"arch": "mlp", "hidden": [7, 5]}) == [7, 5]
    speclib.validate_spec(_spec(rule="sgd_wd", hparams={"wd": 1e-5}))
    speclib.validate_spec(_spec(rule="np_adam"))


@pytest.mark.parametrize("overrides, message", [
    ({"model": {"width": 0}}, "key 'model.width' is 0"),
    ({"model": {"hidden": [3]}}, "key 'model.hidden' cannot be combined"),
    ({"rule": "np_wd"}, "key 'hparams.wd' is None; rule 'np_wd' needs a weight decay >= 0"),
    ({"hparams": {"wd": 1e-3}}, "key 'hparams.wd' is only used by the *_wd rules"),
    ({"rule": "np_clean_pre", "hparams": {"sigma": 0.0}}, "key 'hparams.sigma'"),
])
def test_bad_variant_specs_name_the_key(overrides, message):
    with pytest.raises(SpecError) as err:
        speclib.validate_spec(_spec(**overrides))
    assert message in str(err.value)
