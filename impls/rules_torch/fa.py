"""Feedback alignment (Lillicrap, Cownden, Tweed & Akerman 2016, Nat. Commun. 7:13276).

Same as backprop except that the error travels down through fixed random matrices B_l
instead of the transposed forward weights:

    δ_L = y − t,   δ_l = (δ_{l+1} B_{l+1}ᵀ) ⊙ f′(a_l) ⊙ m_l,   G_l = Σ_batch δ_lᵀ h_{l−1}

B_{l+1} has the shape of W_{l+1}ᵀ, i.e. (n_l, n_{l+1}), and is drawn once as
U(±√(6/n_l)) -- the He-uniform limit of its input size, *without* PEPITA's 0.05 factor
(the PEPITA code's ``he_uniform`` FA init, papers/pepita/README.md "Baselines"). With B_{l+1} = W_{l+1}ᵀ the rule
is backprop exactly (tested). :func:`feedback_alignment` is the rule object
(``impls.rules_torch.LearningRule``); its JAX twin is ``impls.rules.fa`` (whose B_l has the same
(in, out) layout, tests/test_rules_parity.py).

Reference: T. P. Lillicrap, D. Cownden, D. B. Tweed, C. J. Akerman, "Random synaptic feedback
weights support error backpropagation for deep learning", Nat. Commun. 7:13276 (2016).
"""
from __future__ import annotations

import math

import torch

from impls.rules_torch import LearningRule, backprop, fixed_feedback_rule, mlp_forward


def init_feedback(weights, generator: torch.Generator) -> list[torch.Tensor | None]:
    """One run's B_l (n_{l}, n_{l+1}) for l ≥ 1 (None for the first layer, which needs none).

    ``weights`` are one run's (unstacked) W_l of shape (out, in).
    """
    out: list[torch.Tensor | None] = [None]
    for w in weights[1:]:
        n_out, n_in = w.shape
        limit = math.sqrt(6.0 / n_in)
        out.append((torch.rand(n_in, n_out, generator=generator, dtype=torch.float64) * 2 - 1).mul_(limit).to(w.dtype))
    return out


def pseudo_grads(weights, x, target, feedback, masks=None, activation: str = "relu"):
    """``(grads, y)`` with the error sent down through ``feedback[l]`` (stacked (R, n_{l}, n_{l+1}))."""
    y, hs, pre = mlp_forward(weights, x, masks, activation=activation)
    return backprop.backward(weights, y, target, hs, pre, masks, feedback=feedback, activation=activation), y


def feedback_alignment(activation: str = "relu") -> LearningRule:
    """FA as a rule object; ``init(weights, generator)`` draws :func:`init_feedback` run by run."""
    return fixed_feedback_rule(init_feedback, pseudo_grads, activation)
