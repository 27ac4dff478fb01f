"""Feedback alignment (FA) as a pseudo-gradient estimator.

Reference: T. P. Lillicrap, D. Cownden, D. B. Tweed, C. J. Akerman, "Random synaptic feedback
weights support error backpropagation for deep learning", Nat. Commun. 7:13276 (2016).
Row-vector convention, a_l = x_{l−1} W_l + b_l with W_l (in, out):

    δa_L+1 = ∂L/∂z
    δx_{l}  = δa_{l+1} B_{l+1}ᵀ       (fixed random B_{l+1}, shape of W_{l+1}, in place of W_{l+1})
    δa_l    = δx_l ⊙ f′(a_l)  (through dropout/BN as autodiff gives)
    ΔW_l = x_{l−1}ᵀ δa_l,  Δb_l = Σ_n δa_l                 (every layer, output exact)

Implementation: :func:`fa_dense`, a ``jax.custom_vjp`` dense layer whose backward uses B instead
of W for the input cotangent (the weight and bias cotangents are exact). A model built from it
gives FA pseudo-gradients with one ordinary ``jax.grad``. With B_l = W_l this is backprop.
Rule state: :class:`impls.rules.dfa.FeedbackState` with one B per kernel.
"""
from __future__ import annotations

from typing import Callable, Sequence

import jax
import jax.numpy as jnp

from impls.rules import LearningRule
from impls.rules.dfa import init_feedback


@jax.custom_vjp
def fa_dense(x, w, b, feedback):
    """x W + b; backward sends g Bᵀ (not g Wᵀ) to x."""
    del feedback
    return x @ w + b


def _fa_fwd(x, w, b, feedback):
    return x @ w + b, (x, feedback)


def _fa_bwd(res, g):
    x, feedback = res
    return g @ feedback.T, x.T @ g, g.sum(0), jnp.zeros_like(feedback)


fa_dense.defvjp(_fa_fwd, _fa_bwd)


def feedback_alignment(forward: Callable, loss_fn: Callable, kernel_shapes: Sequence[tuple[int, int]],
                       feedback_init: str = "ortho") -> LearningRule:
    """FA for a model whose dense layers use :func:`fa_dense`.

    Args:
      forward: ``forward(params, x, key, feedback) -> (z, aux)``; ``feedback`` is the tuple of
        B_l (one per kernel, same shape) that layer l passes to ``fa_dense``.
      loss_fn: ``loss_fn(z, y) -> scalar``.
      kernel_shapes: the (in, out) shapes of the kernels, input layer first.
    """

    def init(params, key=None):
        del params
        return init_feedback(key, list(kernel_shapes), feedback_init)

    def estimate(params, state, x, y, key=None):
        def objective(p):
            z, aux = forward(p, x, key, state.B)
            return loss_fn(z, y), aux

        (loss, aux), grads = jax.value_and_grad(objective, has_aux=True)(params)
        return grads, state, {"loss": loss, **aux}

    return LearningRule(init=init, estimate=estimate)
