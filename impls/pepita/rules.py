"""PEPITA's updates (FC and conv) and the dispatch to the shared BP/FA/DRTP rules.

Every function returns ``(grads, y)``: per layer a pseudo-gradient G_l with the shape of the
stacked weights, summed over the minibatch, and the standard-pass softmax output y. The
train epoch (``impls.pepita.stacked``) applies one optimiser to all of them (``apply_update``):

    eta_inside (PEPITA, FA, DRTP, FC-BP; README "Pitfalls"):  v ← μ v + η G / B,  W ← W − v
    torch_sgd  (conv BP, as the original uses torch.optim.SGD): v ← μ v + G / B,  W ← W − η v

PEPITA, FC (papers/pepita/README.md, "The algorithm as implemented"; Dellaferrera & Kreiman 2022, Algorithm 1), row
vectors, one dropout mask m shared by both passes:

    standard pass   h_0 = x,      h_l = m_l ⊙ ReLU(h_{l−1} W_lᵀ),   y = softmax(h_{L−1} W_Lᵀ),  e = y − t
    modulated pass  h^err_0 = x + e Fᵀ,  h^err_l = m_l ⊙ ReLU(h^err_{l−1} W_lᵀ),  e^err = y^err − t
    G_l = Σ_batch (h_l − h^err_l)ᵀ h^err_{l−1}   (hidden layers; ``double_mask``: (m_l ⊙ (h_l − h^err_l))ᵀ h^err_{l−1})
    G_L = Σ_batch ê ᵀ h^err_{L−1},   ê = e^err (``last_error='modulated'``, the FC code) or e ('standard')

With F = 0 the two passes are identical, so every hidden G_l is exactly zero (tested).
Controls: ``perturbation='random'`` replaces F e by k ξ, ξ ~ N(0, I) or U(−1, 1) drawn fresh
per example and step (README "Control conditions"; not in the original repository); ``erin_sign`` uses 0.1 F sign(e).

PEPITA, conv (the conv code of the original): D = ReLU(conv(x)) − ReLU(conv(x_mod)) before pooling;
the original adds v ← μ v + η ΔW / B to W with ΔW_conv = (1/P) Σ_positions mean_batch(D ⊗ patch(x_mod))
(``sqrt_conv``: 1/√P)
and ΔW_out = −eᵀ pool(ReLU(conv(x_mod))) (standard-pass e). In the W ← W − v convention
that is G_conv = −Σ_b Σ_p D ⊗ patch / (P·B) (the batch averaged twice, as in the code) and
G_out = eᵀ feat^err.

Conv FA/DRTP (not in the paper's code; README "Baselines"): the output layer learns from y − t; the
signal reaching the pooled features (δ B_outᵀ for FA, t B for DRTP) is routed through the
max-pool and ReLU to the conv pre-activations, then G_conv = Σ_b Σ_p δ_a ⊗ patch.
"""
from __future__ import annotations

import math

import torch

from impls.pepita import models
from impls.rules_torch import backprop, drtp, fa, outer_sum

OPTIMIZER = {("bp", "conv"): "torch_sgd"}  # every other (rule, arch): "eta_inside"


def optimizer_kind(rule: str, arch: str) -> str:
    return OPTIMIZER.get((rule, arch), "eta_inside")


def modulation_signal(e: torch.Tensor, hp: dict) -> torch.Tensor:
    """s with x_mod = x + s Fᵀ: the error e, or 0.1·sign(e) under ``erin_sign``."""
    return torch.sign(e) * 0.1 if hp["erin_sign"] else e


def modulated_input(x_flat: torch.Tensor, e: torch.Tensor, F: torch.Tensor, hp: dict,
                    noise: torch.Tensor | None) -> torch.Tensor:
    """x + F e (default), x + 0.1·F sign(e) (``erin_sign``) or x + k ξ (random perturbation)."""
    if hp["perturbation"] == "random":
        return x_flat + hp["rp_k"] * noise
    return x_flat + torch.matmul(modulation_signal(e, hp), F.transpose(-1, -2))


def modulated_first_pre(pre_first: torch.Tensor, w_first: torch.Tensor, e: torch.Tensor, F: torch.Tensor,
                        hp: dict) -> torch.Tensor | None:
    """x_mod W_1ᵀ = x W_1ᵀ + s (W_1 F)ᵀ without the B×d_in×n_1 product, or None (compute it directly).

    Exact algebra (x_mod = x + s Fᵀ); it costs an n_1×d_in×C product instead of B×d_in×n_1 and
    changes only the float rounding (float64 tests: equal to 1e-12). Used for ``modulated_product
    = 'factored'`` and error modulation; the random-perturbation control has no such shortcut.
    """
    if hp["modulated_product"] != "factored" or hp["perturbation"] == "random":
        return None
    w1f_t = torch.matmul(F.transpose(-1, -2), w_first.transpose(-1, -2))  # (W_1 F)ᵀ, (R, C, n_1): 3x faster than W_1 F
    return pre_first + torch.matmul(modulation_signal(e, hp), w1f_t)


def pepita_fc(weights, F, x, target, masks, hp, noise=None):
    """PEPITA pseudo-gradients of a stacked FC net (module docstring)."""
    factors, y = pepita_fc_factors(weights, F, x, target, masks, hp, noise)
    return [outer_sum(d, h) for d, h in factors], y


def pepita_fc_factors(weights, F, x, target, masks, hp, noise=None):
    """``([(δ_l, h_{l−1}) per layer], y)`` with G_l = Σ_batch δ_lᵀ h_{l−1}, not multiplied out
    (``apply_outer_update`` folds the product into the velocity update)."""
    y, hs, pre = models.fc_forward(weights, x, masks)
    e = y - target
    x_mod = modulated_input(x, e, F, hp, noise)
    first = modulated_first_pre(pre[0], weights[0], e, F, hp)
    y_err, hs_err, _ = models.fc_forward(weights, x_mod, masks, first)
    last = len(weights) - 1
    deltas = [hs[l + 1] - hs_err[l + 1] for l in range(last)]
    if hp["double_mask"] and masks is not None:
        deltas = [d if m is None else d * m for d, m in zip(deltas, masks)]
    e_last = (y_err - target) if hp["last_error"] == "modulated" else e
    return [(d, hs_err[l]) for l, d in enumerate(deltas + [e_last])], y


def pepita_conv(weights, F, x, target, shape: models.ConvShape, hp, noise=None):
    """PEPITA pseudo-gradients of the stacked one-conv-layer net (module docstring)."""
    y, _, a, _, _ = models.conv_forward(weights, x, shape)
    e = y - target
    x_mod = modulated_input(x.flatten(2), e, F, hp, noise).view_as(x)
    y_err, patches_m, a_m, feat_m, _ = models.conv_forward(weights, x_mod, shape)
    d = torch.relu(a) - torch.relu(a_m)
    batch = x.shape[1]
    positions = math.sqrt(shape.positions) if hp["sqrt_conv"] else shape.positions
    g_conv = -torch.einsum("rbcp,rbkp->rck", d, patches_m) / (positions * batch)
    e_last = (y_err - target) if hp["last_error"] == "modulated" else e
    return [g_conv, outer_sum(e_last, feat_m)], y


def _conv_routed(weights, x, target, shape, signal_fn):
    """Output layer from y − t; ``signal_fn(delta_out)`` reaches the pooled features and is
    routed through max-pool and ReLU to the conv pre-activations."""
    y, patches, a, feat, _ = models.conv_forward(weights, x, shape)
    delta_out = y - target
    a_leaf = a.detach().requires_grad_(True)
    with torch.enable_grad():
        feat_again = models.pool_flatten(torch.relu(a_leaf), shape)
        (delta_a,) = torch.autograd.grad(feat_again, a_leaf, grad_outputs=signal_fn(delta_out))
    return [torch.einsum("rbcp,rbkp->rck", delta_a, patches), outer_sum(delta_out, feat)], y


def bp_conv(weights, x, target, shape):
    """Exact minibatch-summed cross-entropy gradient of the conv net (autograd)."""
    leaves = [w.detach().requires_grad_(True) for w in weights]
    with torch.enable_grad():
        _, _, _, _, logits = models.conv_forward(leaves, x, shape)
        logp = torch.log_softmax(logits, -1)
        loss = -(target * logp).sum()
        grads = torch.autograd.grad(loss, leaves)
    return list(grads), torch.softmax(logits.detach(), -1)


def init_feedback(rule: str, arch: str, weights, generator, shape: models.ConvShape | None = None):
    """One run's fixed feedback matrices (FA: shapes of W_lᵀ; DRTP: (C, n_l)), or []."""
    if rule == "fa":
        return fa.init_feedback(weights, generator)
    if rule == "drtp":
        if arch == "fc":
            return drtp.init_feedback(weights, generator)
        return [None, models.uniform((shape.n_classes, shape.features), math.sqrt(6.0 / shape.features),
                                     generator, weights[0].dtype)]
    return []


def compute_grads(rule, arch, weights, F, feedback, x, target, masks, hp, shape=None, noise=None,
                  activation: str = "relu"):
    """``(grads, y)`` of any rule on a stacked net (x: (R, B, d) for FC, (R, B, c, H, W) for conv);
    ``activation`` is the FC baselines' hidden nonlinearity (``model.activation``: relu | tanh)."""
    if rule == "pepita":
        if arch == "fc":
            return pepita_fc(weights, F, x, target, masks, hp, noise)
        return pepita_conv(weights, F, x, target, shape, hp, noise)
    if arch == "fc":
        if rule == "bp":
            return backprop.pseudo_grads(weights, x, target, masks, activation)
        if rule == "fa":
            return fa.pseudo_grads(weights, x, target, feedback, masks, activation)
        if rule == "drtp":
            return drtp.pseudo_grads(weights, x, target, feedback, masks, activation)
    else:
        if rule == "bp":
            return bp_conv(weights, x, target, shape)
        if rule == "fa":
            return _conv_routed(weights, x, target, shape, lambda d: torch.matmul(d, feedback[1].transpose(-1, -2)))
        if rule == "drtp":
            return _conv_routed(weights, x, target, shape, lambda d: torch.matmul(target, feedback[1]))
    raise ValueError(f"unknown rule/arch {rule!r}/{arch!r}")


def apply_outer_update(weights, velocities, factors, lr: float, momentum: float, batch_size: int) -> None:
    """In place, ``eta_inside`` with G_l = δ_lᵀ h_{l−1} given as factors: v ← μ v + (η/B) δᵀh in one
    ``baddbmm_`` (G is never materialised), then W ← W − v. Same update as ``apply_update``."""
    for w, v, (delta, h) in zip(weights, velocities, factors):
        v.baddbmm_(delta.transpose(-1, -2), h, beta=momentum, alpha=lr / batch_size)
        w.sub_(v)


def apply_update(kind: str, weights, velocities, grads, lr: float, momentum: float, batch_size: int) -> None:
    """In place: the optimiser of the module docstring (``kind`` from ``optimizer_kind``)."""
    for w, v, g in zip(weights, velocities, grads):
        if kind == "eta_inside":
            v.mul_(momentum).add_(g, alpha=lr / batch_size)
            w.sub_(v)
        else:
            v.mul_(momentum).add_(g, alpha=1.0 / batch_size)
            w.sub_(v, alpha=lr)
