"""Backpropagation for the stacked no-bias MLP (PyTorch twin of ``impls.rules.backprop``).

Softmax output with cross-entropy, so the output error is δ_L = y − t; for hidden layers

    δ_l = (δ_{l+1} W_{l+1}) ⊙ f′(a_l) ⊙ m_l             (m_l: the dropout mask; f′ = 1[a > 0] for ReLU)
    G_l = Σ_batch δ_lᵀ h_{l−1}                            (the minibatch-summed gradient)

G_l / B is exactly ∇_{W_l} of the mean cross-entropy (checked against autograd and against
the JAX rule in tests/test_pepita_rules.py and tests/test_rules_parity.py). :func:`backprop` is the
rule object (``impls.rules_torch.LearningRule``): it returns G_l / B, the gradient of the mean loss.

Reference: D. E. Rumelhart, G. E. Hinton, R. J. Williams, "Learning representations by
back-propagating errors", Nature 323:533 (1986).
"""
from __future__ import annotations

from typing import Sequence

import torch

from impls.rules_torch import LearningRule, hidden_derivative, minibatch_mean, mlp_forward, outer_sum, stateless_init


def backward(weights: Sequence[torch.Tensor], y: torch.Tensor, target: torch.Tensor, hs, pre, masks=None,
             feedback: Sequence[torch.Tensor] | None = None, activation: str = "relu") -> list[torch.Tensor]:
    """Per-layer G_l, sending the error down through W_{l+1} (BP) or ``feedback[l+1]`` (FA)."""
    n = len(weights)
    grads: list[torch.Tensor] = [None] * n  # type: ignore[list-item]
    delta = y - target
    for l in range(n - 1, -1, -1):
        grads[l] = outer_sum(delta, hs[l])
        if l > 0:
            # row-vector convention: δ_{l} = δ_{l+1} @ M with M = W_{l+1} (C, H) or B_{l+1}ᵀ
            back = weights[l] if feedback is None else feedback[l].transpose(-1, -2)
            delta = torch.matmul(delta, back) * hidden_derivative(pre[l - 1], None if masks is None else masks[l - 1],
                                                                  activation)
    return grads


def pseudo_grads(weights, x, target, masks=None, activation: str = "relu"):
    """``(grads, y)``: the exact minibatch-summed CE gradient of every layer, and the output."""
    y, hs, pre = mlp_forward(weights, x, masks, activation=activation)
    return backward(weights, y, target, hs, pre, masks, activation=activation), y


def backprop(activation: str = "relu") -> LearningRule:
    """BP as a rule object: ``estimate`` returns ∇_{W_l} of the minibatch-mean cross-entropy."""

    def estimate(weights, state, x, target, masks=None):
        grads, y = pseudo_grads(weights, x, target, masks, activation)
        return minibatch_mean(grads, y, target, state)

    return LearningRule(init=stateless_init, estimate=estimate)
