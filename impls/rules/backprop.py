"""Backpropagation (exact minibatch gradient) as a learning rule.

Update (with ``optax.sgd(lr)``):  θ ← θ − lr · ∇_θ (1/B) Σ_i L_i(θ).

Reference: Rumelhart, Hinton & Williams (1986), Nature 323:533. In creditbench it is the
``sgd`` baseline of the node-perturbation paper and the BP baseline elsewhere.
"""
from __future__ import annotations

from typing import Callable

import jax

from impls.rules import LearningRule, stateless_init


def backprop(loss_fn: Callable) -> LearningRule:
    """``loss_fn(params, x, y) -> scalar`` (mean over the minibatch)."""

    def estimate(params, state, x, y, key=None):
        del key
        loss, grads = jax.value_and_grad(loss_fn)(params, x, y)
        return grads, state, {"loss": loss}

    return LearningRule(init=stateless_init, estimate=estimate)
