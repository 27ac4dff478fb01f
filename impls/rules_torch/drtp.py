"""Direct random target projection (Frenkel, Lefebvre & Bol 2021, Front. Neurosci. 15:629892).

Hidden layers get no error at all: their teaching signal is the one-hot *target* projected
by a fixed random matrix, so no forward or backward pass has to wait for the output:

    δh_l = t B_l,   δa_l = δh_l ⊙ f′(a_l) ⊙ m_l,   G_l = Σ_batch δa_lᵀ h_{l−1}      (hidden l)
    δ_L = y − t,    G_L = Σ_batch δ_Lᵀ h_{L−1}                                     (output)

B_l has shape (C, n_l) and is drawn once, Kaiming-uniform as ``torch.nn.init.kaiming_uniform_``
draws a (C, n_l) tensor: U(±√(6/n_l)). The signal carries no error magnitude, so with ReLU
units and a large rate the weights can grow without bound; a diverging run is recorded as
such, not hidden (papers/pepita/README.md, "Baselines"). ``activation="tanh"`` (f′ = 1 − tanh²) is the bounded-unit
setting of Frenkel et al. and PEPITA's ``drtp_tanh`` variant.

:func:`direct_random_target_projection` is the rule object (``impls.rules_torch.LearningRule``).
Its ``hidden_reduction`` says how the hidden G_l are reduced over the minibatch: ``"mean"``
(G_l / B like every other layer, the PEPITA code) or ``"sum"`` (G_l itself: δh_l = t B_l per
example with no 1/B, Frenkel's code and the JAX twin ``impls.rules.drtp``, whose B_l is this
B_l transposed; tests/test_rules_parity.py). The output layer is always G_L / B.

Reference: C. Frenkel, M. Lefebvre, D. Bol, "Learning Without Feedback: Fixed Random Learning
Signals Allow for Feedforward Training of Deep Neural Networks", Front. Neurosci. 15:629892 (2021).
"""
from __future__ import annotations

import math

import torch

from impls.rules_torch import LearningRule, hidden_derivative, minibatch_mean, mlp_forward, outer_sum, stacked_feedback


def init_feedback(weights, generator: torch.Generator) -> list[torch.Tensor | None]:
    """One run's B_l (C, n_l) for every hidden layer l (None for the output layer)."""
    n_classes = weights[-1].shape[0]
    out: list[torch.Tensor | None] = []
    for w in weights[:-1]:
        n_hidden = w.shape[0]
        limit = math.sqrt(6.0 / n_hidden)
        out.append((torch.rand(n_classes, n_hidden, generator=generator, dtype=torch.float64) * 2 - 1)
                   .mul_(limit).to(w.dtype))
    return out + [None]


def pseudo_grads(weights, x, target, feedback, masks=None, activation: str = "relu"):
    """``(grads, y)``: DRTP updates of every layer; ``feedback[l]`` stacked (R, C, n_l)."""
    y, hs, pre = mlp_forward(weights, x, masks, activation=activation)
    grads = []
    last = len(weights) - 1
    for l in range(last):
        delta = torch.matmul(target, feedback[l]) * hidden_derivative(pre[l], None if masks is None else masks[l], activation)
        grads.append(outer_sum(delta, hs[l]))
    grads.append(outer_sum(y - target, hs[last]))
    return grads, y


#: ``hidden_reduction`` of :func:`direct_random_target_projection`
HIDDEN_REDUCTIONS = ("mean", "sum")


def direct_random_target_projection(activation: str = "relu", hidden_reduction: str = "mean") -> LearningRule:
    """DRTP as a rule object; ``init(weights, generator)`` draws :func:`init_feedback` run by run."""
    if hidden_reduction not in HIDDEN_REDUCTIONS:
        raise ValueError(f"hidden_reduction {hidden_reduction!r}; allowed: {', '.join(HIDDEN_REDUCTIONS)}")

    def init(weights, generator: torch.Generator):
        return stacked_feedback(init_feedback, weights, generator)

    def estimate(weights, feedback, x, target, masks=None):
        grads, y = pseudo_grads(weights, x, target, feedback, masks, activation)
        return minibatch_mean(grads, y, target, feedback, hidden_scale=1.0 if hidden_reduction == "sum" else None)

    return LearningRule(init=init, estimate=estimate)
