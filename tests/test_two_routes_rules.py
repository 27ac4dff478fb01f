"""two_routes layers, primitives and rules against autodiff, closed forms and derived fixed points."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from impls.two_routes import fixed_points as fp
from impls.two_routes import layers, models
from impls.two_routes import primitives as P
from impls.two_routes.rules import RULES, make_rule

jax.config.update("jax_default_matmul_precision", "highest")
KEY = jax.random.PRNGKey(0)


def _rand(key, shape, scale=1.0):
    return scale * jax.random.normal(key, shape, jnp.float32)


def test_bp_pseudogradient_equals_jax_grad_dense():
    k = jax.random.split(KEY, 4)
    x, w1, w2, y = _rand(k[0], (5, 6)), _rand(k[1], (6, 4)), _rand(k[2], (4, 3)), _rand(k[3], (5, 3))

    def loss(params, layer):
        h = jnp.tanh(layer(x, params[0]))
        return jnp.sum((layer(h, params[1]) - y) ** 2)

    pg = jax.grad(loss)((w1, w2), lambda a, w: layers.pg_dense(a, w, w))
    exact = jax.grad(loss)((w1, w2), lambda a, w: a @ w)
    for a, b in zip(pg, exact):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("stride,ksize", [(1, 3), (2, 3), (2, 1), (2, 7)])
def test_conv_pseudogradient_with_b_equal_w_equals_jax_grad(stride, ksize):
    k = jax.random.split(KEY, 4)
    x = _rand(k[0], (2, 9, 9, 3))
    w1, w2 = _rand(k[1], (ksize, ksize, 3, 4)), _rand(k[2], (3, 3, 4, 2))

    def loss(params, layer):
        h = jax.nn.relu(layer(x, params[0], stride))
        return jnp.sum(jnp.sin(layer(h, params[1], 1)))

    def pg(a, w, s):
        return layers.pg_conv(a, w, w, s)

    got = jax.grad(loss, argnums=0)((w1, w2), pg)
    exact = jax.grad(loss)((w1, w2), lambda a, w, s: layers.conv(a, w, s))
    for a, b in zip(got, exact):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)
    # and the input cotangent: the error sent down equals backprop's
    gx = jax.grad(lambda xx: jnp.sum(jnp.sin(layers.pg_conv(xx, w1, w1, stride))))(x)
    ex = jax.grad(lambda xx: jnp.sum(jnp.sin(layers.conv(xx, w1, stride))))(x)
    np.testing.assert_allclose(gx, ex, rtol=1e-4, atol=1e-4)


def test_pseudogradient_sends_error_through_b():
    k = jax.random.split(KEY, 3)
    x, w, b = _rand(k[0], (4, 5)), _rand(k[1], (5, 3)), _rand(k[2], (5, 3))
    g = jnp.ones((4, 3))
    _, vjp = jax.vjp(lambda xx, ww, bb: layers.pg_dense(xx, ww, bb), x, w, b)
    gx, gw, gb = vjp(g)
    np.testing.assert_allclose(gx, g @ b.T, rtol=1e-6)
    np.testing.assert_allclose(gw, x.T @ g, rtol=1e-6)
    assert not np.any(np.asarray(gb))


def _model_grads(rule_name, **kw):
    rule = make_rule(rule_name, **kw)
    model = models.build({"depth": 8, "stem": "cifar", "width": 4, "version": 1}, 10, models.LayerOptions(rule))
    x = _rand(jax.random.PRNGKey(1), (8, 8, 8, 1))
    y = jax.nn.one_hot(jnp.arange(8) % 10, 10)
    var = model.init({"params": KEY}, x, train=False)

    def loss(params, task_only=False):
        out, mut = model.apply({"params": params, "batch_stats": var["batch_stats"]}, x, train=True,
                               mutable=["batch_stats", "losses"])
        ce = -jnp.mean(jnp.sum(y * jax.nn.log_softmax(out), -1))
        r = sum(jax.tree_util.tree_leaves(mut.get("losses", {})))
        return ce if task_only else ce + r

    return var["params"], jax.grad(loss)(var["params"]), jax.grad(lambda p: loss(p, True))(var["params"]), rule


def _kernels(tree, name):
    flat = jax.tree_util.tree_flatten_with_path(tree)[0]
    return {"/".join(p.key for p in path[:-1]): v for path, v in flat if path[-1].key == name}


def test_fa_leaves_b_unchanged():
    params, grads, _, _ = _model_grads("fa")
    gb = _kernels(grads, "backward_kernel")
    assert len(gb) == 10  # stem, 6 block convs, 2 projections, classifier
    assert all(not np.any(np.asarray(g)) for g in gb.values())
    gf = _kernels(grads, "kernel")   # (convs feeding a zero-γ v1 BN get no gradient at init, as in BP)
    assert np.any(np.asarray(gf["dense"])) and np.any(np.asarray(gf["conv0"]))


def test_kp_backward_update_is_transposed_forward_gradient_plus_decay():
    params, grads, task, rule = _model_grads("kp")
    alpha = rule.terms["decay"]
    kb, gb, gf = _kernels(params, "backward_kernel"), _kernels(grads, "backward_kernel"), _kernels(task, "kernel")
    for name in kb:   # K_b = B stores the transpose of Wᵀ's layout: the tied gradient is W's gradient itself
        np.testing.assert_allclose(gb[name], gf[name] + 2 * alpha * kb[name], rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("name", ["wm", "ia", "sa", "aa"])
def test_primitive_gradients_match_the_closed_forms(name):
    k = jax.random.split(KEY, 3)
    x, kf, kb = _rand(k[0], (64, 6)), _rand(k[1], (6, 4)), _rand(k[2], (6, 4))
    rule = make_rule(name)
    sigma = x.T @ x / len(x)
    t = rule.terms
    closed = {"decay": 2 * kb, "sparse": 2 * sigma @ kb, "amp": -sigma @ kf, "null": 2 * kb @ kf.T @ sigma @ kf,
              "self": -kf}
    expect = sum(c * closed[p] for p, c in t.items())
    got = jax.grad(lambda b: rule.regularizer(jax.lax.stop_gradient(x), jax.lax.stop_gradient(kf), b))(kb)
    np.testing.assert_allclose(got, expect, rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("prim", ["sparse", "amp", "null"])
def test_conv_primitives_equal_dense_ones_for_1x1_kernels(prim):
    k = jax.random.split(KEY, 3)
    x, kf, kb = _rand(k[0], (3, 5, 5, 6)), _rand(k[1], (1, 1, 6, 4)), _rand(k[2], (1, 1, 6, 4))
    conv_value = P.PRIMITIVES[prim](x, kf, kb, P.Geometry("conv", 1, None))
    # per pixel dense, then E = batch mean of the sum over pixels and units
    dense_value = P.PRIMITIVES[prim](x.reshape(-1, 6), kf[0, 0], kb[0, 0]) * (x.shape[1] * x.shape[2])
    np.testing.assert_allclose(conv_value, dense_value, rtol=1e-4)


def test_primitive_values_have_no_half_factors():
    x, kf, kb = jnp.ones((2, 1)), jnp.full((1, 1), 2.0), jnp.full((1, 1), 3.0)
    assert float(P.decay(x, kf, kb)) == 13.0 and float(P.self_(x, kf, kb)) == -6.0
    assert float(P.sparse(x, kf, kb)) == 13.0 and float(P.amp(x, kf, kb)) == -6.0
    assert float(P.null(x, kf, kb)) == 36.0


def _white_run(name, steps=3000, lr=20.0, n_in=12, n_out=6, batch=4096):
    rule = make_rule(name)
    k = jax.random.split(KEY, 3)
    kf, kb0 = _rand(k[0], (n_in, n_out), n_in ** -0.5), _rand(k[1], (n_in, n_out), n_in ** -0.5)
    kb, logs = fp.simulate(rule, kf, kb0, fp.white_sampler(n_in, batch), k[2], steps, lr, steps // 10, jnp.eye(n_in))
    return rule, kf, kb, logs


def test_sa_converges_to_w_transpose():
    _, kf, kb, logs = _white_run("sa", steps=2000)
    np.testing.assert_allclose(kb, kf, rtol=1e-3, atol=1e-4)
    assert float(logs["angle"][0]) > 60 and float(logs["angle"][-1]) < 0.1


def test_wm_converges_to_half_w_transpose_on_white_inputs():
    _, kf, kb, logs = _white_run("wm")
    np.testing.assert_allclose(kb, 0.5 * kf, atol=0.02 * float(jnp.abs(kf).max()))
    assert float(logs["angle"][-1]) < 3 and abs(float(logs["norm_ratio"][-1]) - 0.5) < 0.02


def test_ia_converges_to_the_ridge_pseudo_inverse():
    rule, kf, kb, logs = _white_run("ia")
    t = rule.terms
    w = kf.T
    ridge = w.T @ jnp.linalg.inv(w @ w.T + t["decay"] / t["null"] * jnp.eye(w.shape[0]))  # Wᵀ(WWᵀ + γ/β I)⁻¹
    assert float(jnp.linalg.norm(kb - ridge) / jnp.linalg.norm(ridge)) < 0.03
    assert float(logs["fp_error"][-1]) < 0.03 and float(logs["fp_error"][0]) > 0.5


def test_aa_converges_to_w_transpose_on_the_input_span():
    k = jax.random.split(KEY, 4)
    basis = jnp.linalg.qr(_rand(k[0], (10, 4)))[0]          # inputs on a 4-d subspace of R^10
    x = _rand(k[1], (2000, 4)) @ basis.T
    sample, sigma = fp.data_sampler(np.asarray(x), 1024)
    kf, kb0 = _rand(k[2], (10, 5), 0.3), _rand(k[3], (10, 5), 0.3)
    kb, logs = fp.simulate(make_rule("aa"), kf, kb0, sample, KEY, 3000, 20.0, 300, sigma)
    proj = basis @ basis.T
    np.testing.assert_allclose(proj @ kb, proj @ kf, atol=0.02)
    assert float(logs["fp_error"][-1]) < 0.02
    np.testing.assert_allclose((jnp.eye(10) - proj) @ kb, (jnp.eye(10) - proj) @ kb0, atol=1e-5)  # off-span: untouched


def test_alignment_angles_are_zero_for_bp_and_large_for_fa():
    def angles(rule_name):
        rule = make_rule(rule_name)
        model = models.build({"depth": 8, "stem": "cifar", "width": 4, "version": 1}, 10,
                             models.LayerOptions(rule, measure=True))
        x = _rand(jax.random.PRNGKey(2), (8, 8, 8, 1))
        var = model.init({"params": KEY}, x, train=False)
        params = jax.tree_util.tree_map_with_path(   # γ = 1 everywhere, so an error reaches every layer
            lambda path, v: jnp.ones_like(v) if path[-1].key == "scale" else v, var["params"])

        def loss(probes):
            out, mut = model.apply({"params": params, "batch_stats": var["batch_stats"], "probes": probes},
                                   x, train=True, mutable=["batch_stats", "metrics"])
            return jnp.sum(out ** 2), mut["metrics"]

        stats, mets = jax.grad(loss, has_aux=True)(var["probes"])
        grad_angles = [float(layers.angle_from_stats(s)) for s in jax.tree_util.tree_leaves(stats)]
        return [float(v) for v in jax.tree_util.tree_leaves(mets)], grad_angles

    for values in angles("bp"):
        assert len(values) >= 10 and np.all(np.isfinite(values)) and max(values) < 0.5
    weight_and_proj, grad = angles("fa")
    assert min(weight_and_proj) > 45 and min(grad[:-1]) > 45   # classifier's sent error has no angle below


def test_every_rule_is_registered_with_a_docstring_and_default_ratios():
    assert set(RULES) >= {"bp", "fa", "wm", "ia", "sa", "aa", "kp"}
    for name in RULES:
        rule = make_rule(name)
        assert rule.name == name
    sa, aa, ia = make_rule("sa").terms, make_rule("aa").terms, make_rule("ia").terms
    assert sa["self"] == 2 * sa["decay"] and aa["amp"] == 2 * aa["sparse"] and ia["amp"] == 2 * ia["null"]
    from impls.two_routes import rules as R
    for f in (R.backprop, R.feedback_alignment, R.weight_mirror, R.information_alignment, R.symmetric_alignment,
              R.activation_alignment, R.kolen_pollack):
        assert "Δ" in f.__doc__ or "δ" in f.__doc__
