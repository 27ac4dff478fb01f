"""The arena's PyTorch contenders: ``impls.rules_torch`` (BP, FA, DFA, DRTP) and PEPITA (``impls.pepita.rules``).

Both work on a stack of R runs: ``weights[l]`` (R, n_l, n_{l−1}) (the PyTorch code's layout, the
transpose of ``impls.arena.nets``), inputs (R, B, D), one-hot targets (R, B, C). A
:class:`TorchContender` gives ``init(seeds)`` (stacked weights and rule state from the arena's
numpy draws; the JAX twin of a shared rule starts from the same numbers), ``estimate(weights,
state, x, t)`` -> (per-layer updates as minibatch means, loss (R,)) and ``bp_grads`` (the exact
gradient of the mean cross-entropy, the cosine's reference). Inference is ``logits``.

PEPITA (Dellaferrera & Kreiman 2022) runs its FC rule as the pepita code does (two forward passes,
the input modulated by F e with F (D, C) drawn by ``impls.pepita.models.init_F`` from the run's
seed), without dropout and with the arena's optimiser instead of its SGD with momentum.
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple

import numpy as np
import torch

from impls.arena import nets
from impls.rules_torch import backprop, cross_entropy, dfa, drtp, fa

RULES = {"backprop": backprop.backprop, "fa": fa.feedback_alignment, "dfa": dfa.direct_feedback_alignment,
         "drtp": drtp.direct_random_target_projection}


class TorchContender(NamedTuple):
    init: Callable[[list[int]], tuple[list[torch.Tensor], Any]]
    estimate: Callable[..., tuple[list[torch.Tensor], torch.Tensor]]
    bp_grads: Callable[[list[torch.Tensor], torch.Tensor, torch.Tensor], list[torch.Tensor]]


def stacked_weights(seeds, sizes) -> list[torch.Tensor]:
    per_run = [nets.initial_weights(s, sizes) for s in seeds]
    return [torch.from_numpy(np.stack([run[l].T for run in per_run])).contiguous() for l in range(len(sizes) - 1)]


def feedback_for_torch(rule: str, seeds, sizes) -> list[torch.Tensor | None]:
    """The arena's feedback (``nets.feedback_matrices``, JAX layout) in ``impls.rules_torch``'s layout, stacked:
    FA [None, B_1 … B_L] (n_{l−1}, n_l); DFA [B_l (n_l, C) …, None]; DRTP [B_lᵀ (C, n_l) …, None]."""
    per_run = [nets.feedback_matrices(rule, s, sizes) for s in seeds]

    def stacked(l, transpose=False):
        return torch.from_numpy(np.stack([run[l].T if transpose else run[l] for run in per_run])).contiguous()

    n = len(per_run[0])
    if rule == "fa":
        return [None] + [stacked(l) for l in range(1, n)]
    return [stacked(l, transpose=(rule == "drtp")) for l in range(n)] + [None]


def bp_grads_of(activation: str):
    def grads(weights, x, t):
        g, _ = backprop.pseudo_grads(weights, x, t, None, activation)
        return [gl / x.shape[-2] for gl in g]
    return grads


def shared(rule: str, sizes, activation: str) -> TorchContender:
    # DRTP: hidden updates summed over the minibatch, as its JAX twin (impls.rules.drtp) and
    # tests/test_rules_parity.py; the PEPITA code's default "mean" divides them by the batch size
    options = {"hidden_reduction": "sum"} if rule == "drtp" else {}
    learning = RULES[rule](activation=activation, **options)

    def init(seeds):
        return stacked_weights(seeds, sizes), (() if rule == "backprop" else feedback_for_torch(rule, seeds, sizes))

    def estimate(weights, state, x, t):
        grads, _, aux = learning.estimate(weights, state, x, t)
        return grads, aux["loss"]

    return TorchContender(init, estimate, bp_grads_of(activation))


def pepita(sizes, activation: str, lr: float) -> TorchContender:
    from impls.pepita import models, rules
    from impls.pepita.options import resolved_hparams

    if activation != "relu":
        raise ValueError("arena rule pepita: the PEPITA code (impls.pepita.models.fc_forward) has ReLU hidden "
                         f"units only; model.activation is {activation!r}")
    hp = resolved_hparams({"model": {"arch": "fc"}, "hparams": {"lr": lr}})

    def init(seeds):
        F = torch.stack([models.init_F(sizes[0], sizes[-1], hp["F_scale"], torch.Generator().manual_seed(int(s)),
                                       law=hp["F_init"]) for s in seeds])
        return stacked_weights(seeds, sizes), F

    def estimate(weights, F, x, t):
        grads, y = rules.compute_grads("pepita", "fc", weights, F, [], x, t, None, hp)
        return [g / x.shape[-2] for g in grads], cross_entropy(y, t).mean(-1)

    return TorchContender(init, estimate, bp_grads_of("relu"))


def build(rule: str, sizes, activation: str, hparams: dict) -> TorchContender:
    sizes = [int(s) for s in sizes]
    if rule == "pepita":
        return pepita(sizes, activation, float(hparams["lr"]))
    base = rule.removesuffix("_torch")
    if base in RULES:
        return shared(base, sizes, activation)
    raise ValueError(f"no PyTorch contender {rule!r}")


def logits(weights, x, activation: str) -> torch.Tensor:
    """Pre-softmax outputs (R, N, C) of stacked nets on x (N, D) or (R, N, D)."""
    h = x
    for l, w in enumerate(weights):
        h = torch.matmul(h, w.transpose(-1, -2))
        if l < len(weights) - 1:
            h = torch.relu(h) if activation == "relu" else torch.tanh(h)
    return h


