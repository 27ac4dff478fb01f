"""Direct feedback alignment (DFA) in PyTorch: the twin of ``impls.rules.dfa``.

Reference: A. Nøkland, "Direct Feedback Alignment Provides Learning in Deep Neural Networks",
NeurIPS 2016 (code anokland/dfa-torch).

Every hidden layer receives the global output error through its own fixed random matrix, so no
error travels between hidden layers. B_l has shape (n_l, C), the layout of the JAX twin (and of
wide_align's conv nets), and the signal at the hidden output is e B_lᵀ:

    δ_L = e = y − t,                                  G_L = Σ_batch δ_Lᵀ h_{L−1}          (output)
    δh_l = e B_lᵀ,   δa_l = δh_l ⊙ f′(a_l) ⊙ m_l,     G_l = Σ_batch δa_lᵀ h_{l−1}         (hidden l)

(stacked no-bias MLP of ``impls.rules_torch``; G_l summed over the minibatch as in
``impls.rules_torch.backprop``). :func:`init_feedback` draws B_l ~ U(±1/√n_l) (dfa-torch's
uniform law, fan = the receiving layer's size); :func:`direct_feedback_alignment` is the rule
object (``impls.rules_torch.LearningRule``, G_l / B), equal to the JAX rule given the same B_l
(tests/test_rules_parity.py).

Conv nets (wide_align's all-conv net, Boopathy & Fiete 2022 §3): the same e B_lᵀ is placed at
the post-norm activation a_l = ReLU(h_l) of every hidden layer by :func:`conv_signal` and
injected with the surrogate :func:`conv_surrogate` Σ_l ⟨a_l, B_l e⟩ (whose gradient, taken in a
net run in local mode, is the DFA direction). 'full' feedback: B_l ∈ ℝ^{(H_l W_l C_l)×K} acting on
every position; 'pooled': B_l ∈ ℝ^{C_l×K}, the signal B_l e / (H_l W_l) at every position. Both are
drawn N(0, 1/n) by :func:`draw_normal_feedback` (n = H_l W_l C_l or C_l).
"""
from __future__ import annotations

import math
from typing import Sequence

import torch

from impls.rules_torch import LearningRule, fixed_feedback_rule, hidden_derivative, mlp_forward, outer_sum

#: layouts of the conv-net feedback (``conv_signal``'s ``mode``)
CONV_MODES = ("full", "pooled")


def project_error(e: torch.Tensor, b_l: torch.Tensor) -> torch.Tensor:
    """e B_lᵀ for stacked e (R, B, C) and B_l (R, n_l, C): (R, B, n_l)."""
    return torch.matmul(e, b_l.transpose(-1, -2))


# ----------------------------------------------------------------------------- stacked MLP

def init_feedback(weights, generator: torch.Generator) -> list[torch.Tensor | None]:
    """One run's B_l (n_l, C) ~ U(±1/√n_l) for every hidden layer l (None for the output layer).

    ``weights`` are one run's (unstacked) W_l of shape (out, in).
    """
    n_classes = weights[-1].shape[0]
    out: list[torch.Tensor | None] = []
    for w in weights[:-1]:
        n_hidden = w.shape[0]
        limit = 1.0 / math.sqrt(n_hidden)
        out.append((torch.rand(n_hidden, n_classes, generator=generator, dtype=torch.float64) * 2 - 1)
                   .mul_(limit).to(w.dtype))
    return out + [None]


def pseudo_grads(weights, x, target, feedback, masks=None, activation: str = "relu"):
    """``(grads, y)``: DFA updates of every layer; ``feedback[l]`` stacked (R, n_l, C)."""
    y, hs, pre = mlp_forward(weights, x, masks, activation=activation)
    e = y - target
    last = len(weights) - 1
    grads = []
    for l in range(last):
        delta = project_error(e, feedback[l]) * hidden_derivative(pre[l], None if masks is None else masks[l],
                                                                  activation)
        grads.append(outer_sum(delta, hs[l]))
    grads.append(outer_sum(e, hs[last]))
    return grads, y


def direct_feedback_alignment(activation: str = "relu") -> LearningRule:
    """DFA as a rule object; ``init(weights, generator)`` draws :func:`init_feedback` run by run."""
    return fixed_feedback_rule(init_feedback, pseudo_grads, activation)


# ----------------------------------------------------------------------------- conv nets

def draw_normal_feedback(sizes: Sequence[int], n_classes: int, generator: torch.Generator,
                         dtype=torch.float32) -> list[torch.Tensor]:
    """One run's B_l (n_l, K) ~ N(0, 1/n_l) for the given n_l, drawn in order in float64."""
    return [(torch.randn(n, n_classes, generator=generator, dtype=torch.float64) / math.sqrt(n)).to(dtype)
            for n in sizes]


def conv_feedback_sizes(layer_outputs: Sequence[tuple[int, int]], mode: str = "full") -> list[int]:
    """n_l of each hidden conv layer from its (channels, side): C_l·S_l² ('full') or C_l ('pooled')."""
    if mode not in CONV_MODES:
        raise ValueError(f"dfa feedback mode {mode!r}; allowed: {', '.join(CONV_MODES)}")
    return [c * s * s if mode == "full" else c for c, s in layer_outputs]


def conv_signal(b_l: torch.Tensor, e: torch.Tensor, act_shape, mode: str) -> torch.Tensor:
    """B_l e placed at ReLU(h_l): (B, R·C, H, W) from e (R, B, K) and B_l (R, n, K)."""
    bsz, rc, h, w = act_shape
    r = e.shape[0]
    s = project_error(e, b_l)  # (R, B, n)
    if mode == "full":
        s = s.reshape(r, bsz, rc // r, h, w)
    else:
        s = (s / (h * w)).reshape(r, bsz, rc // r, 1, 1).expand(r, bsz, rc // r, h, w)
    # channels-last like the activations it multiplies (mixed layouts take PyTorch's slow strided paths)
    return s.transpose(0, 1).reshape(bsz, rc, h, w).contiguous(memory_format=torch.channels_last)


def conv_surrogate(acts: Sequence[torch.Tensor], feedback: Sequence[torch.Tensor], e: torch.Tensor,
                   mode: str) -> torch.Tensor:
    """Σ_l ⟨a_l, B_l e⟩: its gradient through each layer's own parameters is the DFA direction."""
    return sum((a * conv_signal(b, e, a.shape, mode)).sum() for a, b in zip(acts, feedback))
