"""The arena's network and its random draws, in numpy, so that both frameworks start from the same numbers.

Every contender trains the same fully connected net: inputs x ∈ R^D (flattened, standardised with
training-split statistics), hidden layers h_l = f(h_{l−1} W_l) with f = ReLU (``model.activation``),
no biases, and C outputs. Weights are drawn here, per run seed, as W_l ∈ R^{n_{l−1} × n_l}
(row-vector convention) with He-uniform entries U(±√(6 / n_{l−1})) — the initialiser of the
PyTorch FA/PEPITA code — and handed to each rule's own code in its own layout (transposed for the
PyTorch rules and for node perturbation). The fixed feedback matrices of FA, DFA and DRTP are drawn
here too, from each rule's own law (``impls.rules_torch.fa/dfa/drtp``), so the JAX and the PyTorch
twin of a rule train from identical weights and identical feedback and their trajectories can be
compared step by step.

Streams: weights from ``default_rng([seed, 0])``, feedback from ``default_rng([seed, 1])``, data order
from ``default_rng([seed, 2])`` (``impls.arena.data.epoch_order``): two rules with the same seed see
the same initial weights and the same minibatches.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

WEIGHT_STREAM, FEEDBACK_STREAM, ORDER_STREAM = 0, 1, 2


def layer_sizes(in_dim: int, hidden: Sequence[int], n_classes: int) -> list[int]:
    return [int(in_dim), *map(int, hidden), int(n_classes)]


def he_uniform(rng: np.random.Generator, n_in: int, n_out: int) -> np.ndarray:
    """U(±√(6/n_in)) of shape (n_in, n_out), float32."""
    limit = math.sqrt(6.0 / n_in)
    return rng.uniform(-limit, limit, (n_in, n_out)).astype(np.float32)


def initial_weights(seed: int, sizes: Sequence[int]) -> list[np.ndarray]:
    """W_l (n_{l−1}, n_l) of one run; depends only on the seed and the sizes, never on the rule."""
    rng = np.random.default_rng([seed, WEIGHT_STREAM])
    return [he_uniform(rng, n_in, n_out) for n_in, n_out in zip(sizes[:-1], sizes[1:])]


def feedback_matrices(rule: str, seed: int, sizes: Sequence[int]) -> list[np.ndarray]:
    """The fixed feedback of FA, DFA or DRTP (``rule`` without its framework suffix), float32, JAX layout:

    - ``fa``:   B_l (n_{l−1}, n_l) for every layer, U(±√(6/n_{l−1})) (the first is never used: no error
      goes to the input);
    - ``dfa``:  B_l (n_l, C) for every hidden layer, U(±1/√n_l);
    - ``drtp``: B_l (n_l, C) for every hidden layer, U(±√(6/n_l)).
    The PyTorch twins take the same numbers (``impls.arena.torch_rules.feedback_for_torch``).
    """
    rng = np.random.default_rng([seed, FEEDBACK_STREAM])
    n_classes, hidden = sizes[-1], sizes[1:-1]
    if rule == "fa":
        return [he_uniform(rng, n_in, n_out) for n_in, n_out in zip(sizes[:-1], sizes[1:])]
    if rule == "dfa":
        return [rng.uniform(-1.0, 1.0, (n, n_classes)).astype(np.float32) / np.float32(math.sqrt(n)) for n in hidden]
    if rule == "drtp":
        return [(rng.uniform(-1.0, 1.0, (n, n_classes)) * math.sqrt(6.0 / n)).astype(np.float32) for n in hidden]
    raise ValueError(f"no fixed feedback for rule {rule!r}; rules with one: fa, dfa, drtp")


def backward_weights(seed: int, sizes: Sequence[int]) -> list[np.ndarray]:
    """The initial backward kernels B_l (n_{l−1}, n_l) of the two_routes rules: drawn like the forward
    weights (He-uniform), independently of them (the feedback stream)."""
    rng = np.random.default_rng([seed, FEEDBACK_STREAM])
    return [he_uniform(rng, n_in, n_out) for n_in, n_out in zip(sizes[:-1], sizes[1:])]


def cosine(a: Sequence[np.ndarray], b: Sequence[np.ndarray]) -> float:
    """cos(a, b) of two lists of arrays taken as one flat vector each (NaN if either is zero)."""
    va = np.concatenate([np.ravel(np.asarray(x, np.float64)) for x in a])
    vb = np.concatenate([np.ravel(np.asarray(x, np.float64)) for x in b])
    denom = np.linalg.norm(va) * np.linalg.norm(vb)
    return float(va @ vb / denom) if denom > 0 else float("nan")
