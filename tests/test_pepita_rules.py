"""PEPITA and the PyTorch BP/FA/DRTP rules against hand computations, autograd and identities."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from impls.pepita import models, rules
from impls.pepita.figures import fit_slowness
from impls.pepita.options import resolved_hparams
from impls.pepita.reference import TUTORIAL_CURVE
from impls.rules_torch import backprop, drtp
from impls.rules_torch import fa as fa_rule

DT = torch.float64


def hp(arch="fc", **kw):
    return resolved_hparams({"model": {"arch": arch}, "hparams": {"lr": 0.1, **kw}})


def tiny_fc(seed=0, sizes=(5, 4, 3), runs=1, batch=2, keep=0.5):
    """Stacked tiny net with nonnegative inputs, a dropout mask and one-hot targets."""
    g = torch.Generator().manual_seed(seed)
    weights = [torch.stack([models.uniform((o, i), 1.0, g, DT) for _ in range(runs)])
               for i, o in zip(sizes[:-1], sizes[1:])]
    F = torch.stack([models.uniform((sizes[0], sizes[-1]), 0.5, g, DT) for _ in range(runs)])
    x = torch.rand(runs, batch, sizes[0], generator=g, dtype=DT)
    t = torch.nn.functional.one_hot(torch.randint(0, sizes[-1], (runs, batch), generator=g), sizes[-1]).to(DT)
    masks = [(torch.rand(runs, batch, h, generator=g) < keep).to(DT) / keep for h in sizes[1:-1]]
    return weights, F, x, t, masks


def softmax(a):
    z = np.exp(a - a.max())
    return z / z.sum()


@pytest.mark.parametrize("last_error", ["modulated", "standard"])
def test_pepita_fc_step_equals_a_per_example_hand_computation(last_error):
    weights, F, x, t, masks = tiny_fc()
    W1, W2 = (w[0].numpy().copy() for w in weights)
    Fn, xn, tn, m = F[0].numpy(), x[0].numpy(), t[0].numpy(), masks[0][0].numpy()
    v_prev = [np.full_like(W1, 0.01), np.full_like(W2, -0.02)]
    lr, mu, batch = 0.1, 0.9, xn.shape[0]
    d1, d2 = np.zeros_like(W1), np.zeros_like(W2)
    for b in range(batch):  # the original code's per-example loop, written out
        h = m[b] * np.maximum(W1 @ xn[b], 0)
        e = softmax(W2 @ h) - tn[b]
        xm = xn[b] + Fn @ e
        h_err = m[b] * np.maximum(W1 @ xm, 0)
        e_err = softmax(W2 @ h_err) - tn[b]
        d1 += np.outer(h - h_err, xm)
        d2 += np.outer(e_err if last_error == "modulated" else e, h_err)
    v1 = mu * v_prev[0] + lr * d1 / batch
    v2 = mu * v_prev[1] + lr * d2 / batch
    expected = [W1 - v1, W2 - v2]

    grads, _ = rules.pepita_fc(weights, F, x, t, masks, hp(last_error=last_error))
    vel = [torch.from_numpy(v[None].copy()) for v in v_prev]
    rules.apply_update("eta_inside", weights, vel, grads, lr, mu, batch)
    for w, exp in zip(weights, expected):
        np.testing.assert_allclose(w[0].numpy(), exp, rtol=1e-12, atol=1e-14)
    assert not np.allclose(expected[0], W1)  # the hidden layer did move


def test_pepita_conv_step_equals_a_loop_over_positions():
    shape = models.ConvShape(c_in=2, height=5, width=5, channels=3, kernel=2, pool=2, n_classes=3)
    g = torch.Generator().manual_seed(1)
    w = [x[None].to(DT) for x in models.init_conv(shape, g, DT)]
    F = models.uniform((2 * 25, 3), 0.3, g, DT)[None]
    x = torch.rand(1, 4, 2, 5, 5, generator=g, dtype=DT)
    t = torch.nn.functional.one_hot(torch.tensor([[0, 2, 1, 1]]), 3).to(DT)
    grads, _ = rules.pepita_conv(w, F, x, t, shape, hp("conv"))

    wc = w[0][0].numpy().reshape(3, 2, 2, 2)
    wo = w[1][0].numpy()
    xn, tn, Fn = x[0].numpy(), t[0].numpy(), F[0].numpy()
    B, P = 4, 16

    def conv_relu(img):
        out = np.zeros((3, 4, 4))
        for c in range(3):
            for i in range(4):
                for j in range(4):
                    out[c, i, j] = np.sum(wc[c] * img[:, i:i + 2, j:j + 2])
        return np.maximum(out, 0)

    def pool(h):
        return h.reshape(3, 2, 2, 2, 2).max(axis=(2, 4)).reshape(-1)

    dconv, dout = np.zeros_like(wc), np.zeros_like(wo)
    for b in range(B):
        h = conv_relu(xn[b])
        e = softmax(wo @ pool(h)) - tn[b]
        xm = xn[b] + (Fn @ e).reshape(2, 5, 5)
        hm = conv_relu(xm)
        d = h - hm
        for i in range(4):  # the original code loops over the positions
            for j in range(4):
                dconv += np.einsum("c,kpq->ckpq", d[:, i, j], xm[:, i:i + 2, j:j + 2]) / B
        dout += -np.outer(e, pool(hm))
    dconv /= P
    # the original adds v = mu v + eta dW / B to W; ours subtracts v = mu v + eta G / B, so G = -dW
    np.testing.assert_allclose(grads[0][0].numpy().reshape(wc.shape), -dconv, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(grads[1][0].numpy(), -dout, rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("sizes", [(6, 5, 3), (6, 5, 4, 3)], ids=["1-hidden", "2-hidden"])
def test_f_zero_gives_exactly_zero_hidden_updates(sizes):
    weights, F, x, t, masks = tiny_fc(sizes=sizes, runs=2, batch=3, keep=0.8)
    grads, _ = rules.pepita_fc(weights, torch.zeros_like(F), x, t, masks, hp())
    for g in grads[:-1]:
        assert torch.count_nonzero(g) == 0
    assert torch.count_nonzero(grads[-1]) > 0  # the output layer still learns (delta rule)
    grads, _ = rules.pepita_fc(weights, F, x, t, masks, hp())
    assert all(torch.count_nonzero(g) > 0 for g in grads)


def test_f_zero_conv_gives_exactly_zero_conv_update():
    shape = models.ConvShape(1, 6, 6, 4, 3, 2, 3)
    g = torch.Generator().manual_seed(2)
    w = [x[None] for x in models.init_conv(shape, g, DT)]
    x = torch.rand(1, 5, 1, 6, 6, generator=g, dtype=DT)
    t = torch.nn.functional.one_hot(torch.randint(0, 3, (1, 5), generator=g), 3).to(DT)
    grads, _ = rules.pepita_conv(w, torch.zeros(1, 36, 3, dtype=DT), x, t, shape, hp("conv"))
    assert torch.count_nonzero(grads[0]) == 0 and torch.count_nonzero(grads[1]) > 0


def _autograd_fc(weights, x, t, masks):
    leaves = [w.detach().clone().requires_grad_(True) for w in weights]
    y, _, pre = models.fc_forward(leaves, x, masks)
    loss = -(t * torch.log_softmax(pre[-1], -1)).sum()
    return torch.autograd.grad(loss, leaves)


@pytest.mark.parametrize("sizes", [(6, 5, 3), (6, 5, 4, 3)], ids=["1-hidden", "2-hidden"])
def test_bp_equals_autograd_and_fa_with_transposed_weights_equals_bp(sizes):
    weights, _, x, t, masks = tiny_fc(sizes=sizes, runs=2, batch=4, keep=0.7)
    bp, _ = backprop.pseudo_grads(weights, x, t, masks)
    for mine, ref in zip(bp, _autograd_fc(weights, x, t, masks)):
        torch.testing.assert_close(mine, ref, rtol=1e-12, atol=1e-12)
    feedback = [None] + [w.transpose(-1, -2).clone() for w in weights[1:]]
    fa, _ = fa_rule.pseudo_grads(weights, x, t, feedback, masks)
    for a, b in zip(fa, bp):
        assert torch.equal(a, b)
    random_fb = [None] + [b[None].expand(2, -1, -1) for b in
                          fa_rule.init_feedback([w[0] for w in weights], torch.Generator().manual_seed(0))[1:]]
    fa_random, _ = fa_rule.pseudo_grads(weights, x, t, random_fb, masks)
    assert torch.equal(fa_random[-1], bp[-1]) and not torch.allclose(fa_random[0], bp[0])


def test_conv_fa_with_transposed_output_weights_equals_conv_bp():
    shape = models.ConvShape(1, 8, 8, 4, 3, 2, 10)
    g = torch.Generator().manual_seed(3)
    w = [torch.stack([a, b]) for a, b in zip(models.init_conv(shape, g, DT), models.init_conv(shape, g, DT))]
    x = torch.rand(2, 6, 1, 8, 8, generator=g, dtype=DT)
    t = torch.nn.functional.one_hot(torch.randint(0, 10, (2, 6), generator=g), 10).to(DT)
    bp, _ = rules.compute_grads("bp", "conv", w, None, None, x, t, None, hp("conv"), shape)
    fa, _ = rules.compute_grads("fa", "conv", w, None, [None, w[1].transpose(-1, -2)], x, t, None, hp("conv"), shape)
    for a, b in zip(fa, bp):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_drtp_hidden_signal_is_the_projected_target():
    weights, _, x, t, masks = tiny_fc(sizes=(6, 5, 3), runs=1, batch=4, keep=0.7)
    fb = drtp.init_feedback([w[0] for w in weights], torch.Generator().manual_seed(0))
    assert fb[0].shape == (3, 5) and fb[-1] is None
    assert fb[0].abs().max() <= math.sqrt(6 / 5)
    stacked = [fb[0][None], None]
    grads, y = drtp.pseudo_grads(weights, x, t, stacked, masks)
    a = x[0] @ weights[0][0].T
    delta = (t[0] @ fb[0]) * (a > 0).to(DT) * masks[0][0]
    torch.testing.assert_close(grads[0][0], delta.T @ x[0])
    h = masks[0][0] * torch.relu(a)
    torch.testing.assert_close(grads[1][0], (y[0] - t[0]).T @ h)


def test_alignment_angle_is_zero_for_aligned_and_180_for_opposite_f():
    weights, _, _, _, _ = tiny_fc(sizes=(6, 5, 3), runs=1)
    prod = (weights[1][0] @ weights[0][0]).T[None]  # (W2 W1)^T, (d_in, C)
    angle, norm = models.alignment(weights, 0.3 * prod)
    assert angle.item() == pytest.approx(0.0, abs=1e-5)
    assert models.alignment(weights, -prod)[0].item() == pytest.approx(180.0, abs=1e-5)
    assert norm.item() == pytest.approx(weights[0][0].norm().item())


def test_f_has_the_specified_scale():
    F = models.init_F(784, 10, 0.05, torch.Generator().manual_seed(0))
    limit = 0.05 * math.sqrt(6 / 784)
    assert F.abs().max() <= limit and F.abs().max() > 0.95 * limit
    assert F.std().item() == pytest.approx(0.05 * math.sqrt(2 / 784), rel=0.05)


# --------------------------------------------------------------------------- slowness fit


def test_slowness_fit_recovers_a_known_s():
    x = np.arange(40, dtype=float)
    acc_max, s = 80.0, 1.7
    curve = acc_max * x / (s + x)
    curve[-1] = acc_max  # the fit fixes acc_max = max(points): make that the true asymptote
    fitted_max, fitted_s = fit_slowness(curve)
    assert fitted_max == acc_max
    assert fitted_s == pytest.approx(s, rel=0.02)
    noisy = curve + np.random.default_rng(0).normal(0, 0.3, curve.shape) * (x > 0)
    assert fit_slowness(noisy)[1] == pytest.approx(s, rel=0.1)


@pytest.mark.parametrize("n, acc_max, s", [(60, 51.79, 0.928), (100, 52.93, 1.137)])
def test_slowness_fit_on_the_reference_curve_matches_the_notebook_method(n, acc_max, s):
    points = np.array([10.0] + TUTORIAL_CURVE)[:n]  # chance as point 0 (README "Metrics")
    fitted_max, fitted_s = fit_slowness(points)
    assert fitted_max == pytest.approx(acc_max)
    assert fitted_s == pytest.approx(s, abs=2e-3)


@pytest.mark.parametrize("erin_sign", [False, True])
def test_factored_first_layer_equals_the_direct_modulated_pass(erin_sign):
    """x W_1ᵀ + s (W_1 F)ᵀ is (x + s Fᵀ) W_1ᵀ: float64 equal to rounding; float32 close on a
    784-1024-10 net (the difference h − h^err is what PEPITA learns from)."""
    weights, F, x, t, masks = tiny_fc(sizes=(7, 6, 5, 3), runs=2, batch=4, keep=0.8)
    direct, y_d = rules.pepita_fc(weights, F, x, t, masks, hp(modulated_product="direct", erin_sign=erin_sign))
    factored, y_f = rules.pepita_fc(weights, F, x, t, masks, hp(erin_sign=erin_sign))
    assert torch.equal(y_d, y_f)
    for gd, gf in zip(direct, factored):
        assert torch.count_nonzero(gd) > 0
        torch.testing.assert_close(gf, gd, rtol=1e-12, atol=1e-14)

    g = torch.Generator().manual_seed(3)
    big = [models.uniform((1024, 784), math.sqrt(6 / 784), g, torch.float32)[None],
           models.uniform((10, 1024), math.sqrt(6 / 1024), g, torch.float32)[None]]
    F32 = models.init_F(784, 10, 0.05, g, torch.float32)[None]
    x32 = torch.rand(1, 64, 784, generator=g)
    t32 = torch.nn.functional.one_hot(torch.randint(0, 10, (1, 64), generator=g), 10).float()
    mask = [(torch.rand(1, 64, 1024, generator=g) < 0.9).float() / 0.9]
    d32, _ = rules.pepita_fc(big, F32, x32, t32, mask, hp(modulated_product="direct", erin_sign=erin_sign))
    f32, _ = rules.pepita_fc(big, F32, x32, t32, mask, hp(erin_sign=erin_sign))
    for gd, gf in zip(d32, f32):
        assert (gf - gd).norm() / gd.norm() < 1e-3


def test_factored_first_layer_is_not_used_for_random_perturbation():
    weights, F, x, t, masks = tiny_fc()
    assert rules.modulated_first_pre(x, weights[0], t, F, hp(perturbation="random", rp_k=0.1)) is None
    assert rules.modulated_first_pre(x, weights[0], t, F, hp(modulated_product="direct")) is None


# --------------------------------------------------------------------------- code variants

def test_double_mask_multiplies_the_hidden_delta_by_the_mask_again():
    weights, F, x, t, masks = tiny_fc(sizes=(6, 5, 4, 3), runs=1, batch=3, keep=0.6)
    _, hs, _ = models.fc_forward(weights, x, masks)
    e = torch.softmax(hs[-1] @ weights[-1].transpose(-1, -2), -1) - t
    x_mod = x + e @ F.transpose(-1, -2)
    _, hs_err, _ = models.fc_forward(weights, x_mod, masks)
    grads, _ = rules.pepita_fc(weights, F, x, t, masks, hp(double_mask=True))
    for l in range(2):
        expected = ((hs[l + 1] - hs_err[l + 1]) * masks[l]).transpose(-1, -2) @ hs_err[l]
        torch.testing.assert_close(grads[l], expected, rtol=1e-12, atol=1e-14)
    single, _ = rules.pepita_fc(weights, F, x, t, masks, hp())
    assert not torch.allclose(single[0], grads[0])  # kept units differ by the factor 1/keep
    torch.testing.assert_close(single[-1], grads[-1])  # the output layer is untouched


def test_sqrt_conv_divides_the_conv_update_by_root_p():
    shape = models.ConvShape(1, 6, 6, 4, 3, 2, 3)
    g = torch.Generator().manual_seed(4)
    w = [x[None] for x in models.init_conv(shape, g, DT)]
    F = models.uniform((36, 3), 0.3, g, DT)[None]
    x = torch.rand(1, 5, 1, 6, 6, generator=g, dtype=DT)
    t = torch.nn.functional.one_hot(torch.randint(0, 3, (1, 5), generator=g), 3).to(DT)
    default, _ = rules.pepita_conv(w, F, x, t, shape, hp("conv"))
    root, _ = rules.pepita_conv(w, F, x, t, shape, hp("conv", sqrt_conv=True))
    assert shape.positions == 16
    torch.testing.assert_close(root[0], default[0] * 4.0, rtol=1e-12, atol=1e-15)
    torch.testing.assert_close(root[1], default[1])


def test_f_init_nok_scales_by_the_number_of_classes():
    F = models.init_F(784, 10, 0.05, torch.Generator().manual_seed(0), law="nok")
    limit = 0.05 / math.sqrt(10)
    assert F.abs().max() <= limit and F.abs().max() > 0.95 * limit


def test_fused_outer_update_equals_materialised_grads_then_update():
    weights, F, x, t, masks = tiny_fc(sizes=(7, 6, 5, 3), runs=2, batch=4, keep=0.8)
    w_a = [w.clone() for w in weights]
    w_b = [w.clone() for w in weights]
    v_a = [torch.full_like(w, 0.01) for w in weights]
    v_b = [v.clone() for v in v_a]
    for _ in range(3):
        grads, y_a = rules.pepita_fc(w_a, F, x, t, masks, hp())
        rules.apply_update("eta_inside", w_a, v_a, grads, 0.1, 0.9, 4)
        factors, y_b = rules.pepita_fc_factors(w_b, F, x, t, masks, hp())
        rules.apply_outer_update(w_b, v_b, factors, 0.1, 0.9, 4)
        torch.testing.assert_close(y_a, y_b, rtol=1e-12, atol=1e-14)
    for a, b in zip(w_a + v_a, w_b + v_b):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)
    assert not torch.allclose(w_a[0], weights[0])


def _autograd_fc_tanh(weights, x, t, masks):
    leaves = [w.detach().clone().requires_grad_(True) for w in weights]
    _, _, pre = models.fc_forward(leaves, x, masks, activation="tanh")
    loss = -(t * torch.log_softmax(pre[-1], -1)).sum()
    return torch.autograd.grad(loss, leaves)


def test_tanh_variant_bp_equals_autograd_fa_with_transposed_weights_equals_bp_and_drtp_by_hand():
    """The ``model.activation: tanh`` baselines (``drtp_tanh``, README "Baselines"): f′(a) = 1 − tanh²(a)."""
    weights, _, x, t, masks = tiny_fc(sizes=(6, 5, 4, 3), runs=2, batch=4, keep=0.7)
    bp, _ = backprop.pseudo_grads(weights, x, t, masks, activation="tanh")
    for mine, ref in zip(bp, _autograd_fc_tanh(weights, x, t, masks)):
        torch.testing.assert_close(mine, ref, rtol=1e-12, atol=1e-12)
    relu_bp, _ = backprop.pseudo_grads(weights, x, t, masks)
    assert not torch.allclose(relu_bp[0], bp[0])
    feedback = [None] + [w.transpose(-1, -2).clone() for w in weights[1:]]
    fa, _ = fa_rule.pseudo_grads(weights, x, t, feedback, masks, activation="tanh")
    for a, b in zip(fa, bp):
        assert torch.equal(a, b)

    weights, _, x, t, masks = tiny_fc(sizes=(6, 5, 3), runs=1, batch=4, keep=0.7)
    fb = drtp.init_feedback([w[0] for w in weights], torch.Generator().manual_seed(0))
    grads, y = drtp.pseudo_grads(weights, x, t, [fb[0][None], None], masks, activation="tanh")
    W1, W2 = (w[0].numpy() for w in weights)
    xn, tn, m, B = x[0].numpy(), t[0].numpy(), masks[0][0].numpy(), fb[0].numpy()
    a = xn @ W1.T
    h = m * np.tanh(a)
    delta = (tn @ B) * (1 - np.tanh(a) ** 2) * m
    np.testing.assert_allclose(grads[0][0].numpy(), delta.T @ xn, rtol=1e-12)
    out = np.stack([softmax(r) for r in h @ W2.T])
    np.testing.assert_allclose(grads[1][0].numpy(), (out - tn).T @ h, rtol=1e-10, atol=1e-12)
