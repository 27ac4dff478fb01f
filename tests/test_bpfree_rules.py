"""bpfree rules against identities and hand computations (papers/bpfree/README.md, "Local learning signals", "Metrics
and trackers")."""
from __future__ import annotations

import jax
import numpy as np
import pytest

from impls.bpfree import models
from impls.bpfree.rules import local_losses, make_rule
from impls.rules.dfa import FeedbackState

jax.config.update("jax_default_matmul_precision", "highest")  # cosines compared to 1
leaves = jax.tree_util.tree_leaves


def _setup(hidden=(7,), batchnorm=False, activation="tanh", seed=0, n=9, d=5, c=4):
    cfg = models.Config(d, tuple(hidden), c, activation=activation, batchnorm=batchnorm)
    params, state = models.init(jax.random.PRNGKey(seed), cfg)
    kx, ky = jax.random.split(jax.random.PRNGKey(seed + 100))
    x = jax.random.normal(kx, (n, d))
    y = jax.nn.one_hot(jax.random.randint(ky, (n,), 0, c), c)
    return cfg, params, state, x, y


def _grads(name, cfg, params, state, x, y, feedback=None):
    rule = make_rule(name, cfg, state)
    rstate = rule.init(params) if feedback is None else FeedbackState(B=tuple(feedback))
    return rule.estimate(params, rstate, x, y, None)[0]


@pytest.mark.parametrize("batchnorm", [False, True], ids=["plain", "batchnorm"])
def test_dfa_with_one_hidden_layer_and_b_equal_to_output_weights_is_backprop(batchnorm):
    # row-vector convention: δh = e B_1ᵀ, backprop δh = e W_outᵀ, so B_1 = W_out ("B = W_outᵀ" column-wise)
    cfg, params, state, x, y = _setup(batchnorm=batchnorm)
    dfa = _grads("dfa", cfg, params, state, x, y, feedback=[params["out"]["w"]])
    bp = _grads("bp", cfg, params, state, x, y)
    for a, b in zip(leaves(dfa), leaves(bp)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


def test_fa_with_b_equal_to_w_is_backprop():
    cfg, params, state, x, y = _setup(hidden=(6, 5), batchnorm=True, activation="relu")
    kernels = [layer["w"] for layer in params["hidden"]] + [params["out"]["w"]]
    fa = _grads("fa", cfg, params, state, x, y, feedback=kernels)
    bp = _grads("bp", cfg, params, state, x, y)
    for a, b in zip(leaves(fa), leaves(bp)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


def _numpy_net(params, x):
    w1, b1 = (np.asarray(params["hidden"][0][k], np.float64) for k in ("w", "b"))
    w2, b2 = (np.asarray(params["out"][k], np.float64) for k in ("w", "b"))
    x = np.asarray(x, np.float64)
    h = np.tanh(x @ w1 + b1)
    z = h @ w2 + b2
    p = np.exp(z - z.max(1, keepdims=True))
    return x, h, p / p.sum(1, keepdims=True)


def test_drtp_update_matches_a_hand_computation():
    cfg, params, state, x, y = _setup(hidden=(3,), n=4, d=2, c=2)
    B = jax.random.normal(jax.random.PRNGKey(5), (3, 2))
    got = _grads("drtp", cfg, params, state, x, y, feedback=[B])
    xs, h, yhat = _numpy_net(params, x)
    yn, Bn = np.asarray(y, np.float64), np.asarray(B, np.float64)
    delta_a = (yn @ Bn.T) * (1 - h**2)                # δh = y Bᵀ (no 1/N), through tanh′
    e = (yhat - yn) / len(xs)                          # output layer: exact CE gradient
    expected = {"w1": xs.T @ delta_a, "b1": delta_a.sum(0), "w2": h.T @ e, "b2": e.sum(0)}
    np.testing.assert_allclose(got["hidden"][0]["w"], expected["w1"], rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(got["hidden"][0]["b"], expected["b1"], rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(got["out"]["w"], expected["w2"], rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(got["out"]["b"], expected["b2"], rtol=1e-5, atol=1e-7)


def test_local_cce_update_matches_a_hand_computation():
    cfg, params, state, x, y = _setup(hidden=(3,), n=4, d=2, c=2)
    B = jax.random.normal(jax.random.PRNGKey(6), (3, 2))
    got = _grads("cce", cfg, params, state, x, y, feedback=[B])
    xs, h, _ = _numpy_net(params, x)
    yn, Bn = np.asarray(y, np.float64), np.asarray(B, np.float64)
    p = h @ Bn
    s = np.exp(p - p.max(1, keepdims=True))
    s /= s.sum(1, keepdims=True)
    delta_a = ((s - yn) @ Bn.T) * (1 - h**2)           # δh = (softmax(hB) − y) Bᵀ, batch sum
    np.testing.assert_allclose(got["hidden"][0]["w"], xs.T @ delta_a, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(got["hidden"][0]["b"], delta_a.sum(0), rtol=1e-5, atol=1e-7)


def test_local_losses_are_per_example_means_of_the_projected_objectives():
    cfg, params, state, x, y = _setup(hidden=(3,), n=4, d=2, c=2)
    B = jax.random.normal(jax.random.PRNGKey(6), (3, 2))
    z, hs, _ = models.apply(params, state, x, None, cfg, train=True)
    xs, h, yhat = _numpy_net(params, x)
    yn, Bn = np.asarray(y, np.float64), np.asarray(B, np.float64)
    e = (yhat - yn) / len(xs)
    np.testing.assert_allclose(local_losses("dfa", cfg, hs, z, y, [B])[0], np.sum(e * (h @ Bn)) / 4, rtol=1e-5)
    np.testing.assert_allclose(local_losses("drtp", cfg, hs, z, y, [B])[0], np.sum(yn * (h @ Bn)) / 4, rtol=1e-5)


def test_relu_derivative_at_zero_is_one():
    assert float(jax.grad(models.relu_ge)(0.0)) == 1.0
