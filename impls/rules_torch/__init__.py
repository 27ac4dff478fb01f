"""Learning rules shared by more than one paper, in PyTorch: the twins of ``impls.rules``.

One module per rule (``backprop``, ``fa``, ``dfa``, ``drtp``), same names as the JAX
package. Every rule works on a *stack* of R independent fully connected networks (one per
seed), so a batch of runs trains with batched matmuls in one process:

- ``weights[l]``: (R, n_{l+1}, n_l), no biases (a_l = h_{l-1} W_lᵀ, row-vector convention);
- ``x``: (R, B, n_0) inputs; ``target``: (R, B, C) one-hot; ``masks[l]``: (R, B, n_{l+1}) the
  inverted-dropout mask of hidden layer l (values 0 or 1/keep), or None;
- hidden units ReLU (or tanh, ``activation="tanh"``: Frenkel et al.'s DRTP setting), output
  softmax, loss cross-entropy (so δ_L = y − t).

Two layers of API per module:

- ``pseudo_grads(...)`` returns, per layer, G_l = Σ_batch δ_lᵀ h_{l−1} of shape (R, out, in):
  the *sum* over the minibatch, which the caller divides by B (the PEPITA code's convention,
  papers/pepita/README.md "Pitfalls"; ``impls.pepita.rules.apply_update`` is such a caller).
- a :class:`LearningRule` (the contract of the JAX package, ``impls.rules.LearningRule``):
  ``init(weights, generator) -> state`` draws the fixed feedback matrices (``()`` for BP) and
  ``estimate(weights, state, x, target, masks=None) -> (grads, state, aux)`` returns the
  pseudo-gradients as the minibatch *mean* G_l / B, with the weights' shapes, ready for
  ``torch.optim`` (``set_grads``) or an explicit update W ← W − η G_l / B; ``aux`` holds ``loss``
  (R,), the mean cross-entropy before the update, and ``y``, the softmax output.

``mlp_forward`` is shared by every rule.
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple, Sequence

import torch


#: hidden-unit nonlinearities f and their derivatives f′(a)
ACTIVATIONS = ("relu", "tanh")


def _act(a: torch.Tensor, activation: str) -> torch.Tensor:
    if activation == "relu":
        return torch.relu(a)
    if activation == "tanh":
        return torch.tanh(a)
    raise ValueError(f"activation {activation!r}; allowed: {', '.join(ACTIVATIONS)}")


def mlp_forward(weights: Sequence[torch.Tensor], x: torch.Tensor,
                masks: Sequence[torch.Tensor | None] | None = None, first_pre: torch.Tensor | None = None,
                activation: str = "relu"):
    """Stacked MLP forward pass.

    Returns ``(y, hs, pre)``: y = softmax(a_L) (R, B, C); ``hs[l]`` the input of layer l
    (hs[0] = x, hs[l] = mask ⊙ f(a_l) for l ≥ 1, f = ``activation``); ``pre[l]`` the pre-activation a_{l+1}
    of layer l (the last one is the logits). ``first_pre``, when given, is used as the first
    layer's pre-activation x W_1ᵀ instead of computing it (a caller that knows it cheaper).
    """
    h, hs, pre = x, [], []
    last = len(weights) - 1
    for l, w in enumerate(weights):
        hs.append(h)
        a = first_pre if (l == 0 and first_pre is not None) else torch.matmul(h, w.transpose(-1, -2))
        pre.append(a)
        if l < last:
            h = _act(a, activation)
            if masks is not None and masks[l] is not None:
                h = h * masks[l]
    return torch.softmax(pre[-1], dim=-1), hs, pre


def cross_entropy(y: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-example cross-entropy −Σ_k t_k log y_k of softmax outputs, shape (R, B)."""
    return -(target * torch.log(y.clamp_min(torch.finfo(y.dtype).tiny))).sum(-1)


def outer_sum(delta: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """Σ_batch δ_bᵀ h_b for stacked (R, B, out) and (R, B, in): (R, out, in)."""
    return torch.matmul(delta.transpose(-1, -2), h)


def hidden_derivative(a: torch.Tensor, mask: torch.Tensor | None, activation: str = "relu") -> torch.Tensor:
    """∂h/∂a of h = mask ⊙ f(a): mask ⊙ 1[a > 0] (ReLU) or mask ⊙ (1 − tanh²(a)) (tanh)."""
    if activation == "tanh":
        d = 1.0 - torch.tanh(a) ** 2
    else:
        _act(a[..., :0], activation)  # names an unknown activation
        d = (a > 0).to(a.dtype)
    return d if mask is None else d * mask


class LearningRule(NamedTuple):
    """``init(weights, generator) -> state``; ``estimate(weights, state, x, target, masks=None)
    -> (grads, state, aux)`` with ``grads[l]`` = G_l / B and ``aux`` = {"loss": (R,), "y": (R, B, C)}."""

    init: Callable[..., Any]
    estimate: Callable[..., tuple[list[torch.Tensor], Any, dict]]


def stateless_init(weights, generator: torch.Generator | None = None) -> tuple:
    """The state of a rule without fixed matrices (BP): ``()``."""
    del weights, generator
    return ()


def stacked_feedback(init_one_run: Callable, weights: Sequence[torch.Tensor],
                     generator: torch.Generator) -> list[torch.Tensor | None]:
    """``init_one_run(one run's weights, generator)`` for each of the R runs in turn, stacked per layer
    (layers without a matrix stay None)."""
    runs = [init_one_run([w[r] for w in weights], generator) for r in range(weights[0].shape[0])]
    return [None if run_mats[0] is None else torch.stack(run_mats) for run_mats in zip(*runs)]


def minibatch_mean(grads: Sequence[torch.Tensor], y: torch.Tensor, target: torch.Tensor, state,
                   hidden_scale: float | None = None) -> tuple[list[torch.Tensor], Any, dict]:
    """``estimate``'s return value from minibatch-summed G_l: (G_l / B, state, aux).

    ``hidden_scale``, when given, divides the hidden layers' G_l by it instead of by B
    (DRTP's ``hidden_reduction="sum"``: 1).
    """
    batch = target.shape[-2]
    last = len(grads) - 1
    scaled = [g / (batch if (l == last or hidden_scale is None) else hidden_scale) for l, g in enumerate(grads)]
    return scaled, state, {"loss": cross_entropy(y, target).mean(-1), "y": y}


def fixed_feedback_rule(init_one_run: Callable, pseudo_grads: Callable, activation: str = "relu") -> LearningRule:
    """A rule whose state is fixed random feedback (FA, DFA): ``init(weights, generator)`` draws
    ``init_one_run`` run by run (``stacked_feedback``); ``estimate`` is ``pseudo_grads`` per example
    averaged over the minibatch (``minibatch_mean``)."""

    def init(weights, generator: torch.Generator):
        return stacked_feedback(init_one_run, weights, generator)

    def estimate(weights, feedback, x, target, masks=None):
        grads, y = pseudo_grads(weights, x, target, feedback, masks, activation)
        return minibatch_mean(grads, y, target, feedback)

    return LearningRule(init=init, estimate=estimate)


def set_grads(weights: Sequence[torch.Tensor], grads: Sequence[torch.Tensor]) -> None:
    """Hand pseudo-gradients to a ``torch.optim`` optimiser over ``weights`` (``.grad`` of each leaf)."""
    for w, g in zip(weights, grads):
        w.grad = g.detach().clone()
