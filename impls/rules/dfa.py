"""Direct feedback alignment (DFA) as a pseudo-gradient estimator.

Reference: A. Nøkland, "Direct Feedback Alignment Provides Learning in Deep Neural Networks",
NeurIPS 2016 (code anokland/dfa-torch). Row-vector convention, kernels W_l of shape (in, out):

    a_l = x_{l−1} W_l + b_l,   h_l = f(a_l),   x_l = dropout(h_l),   z = x_L W_out + b_out
    e   = ∂L/∂z                                      (global output error, (N, C))
    δh_l = e B_lᵀ                                    (B_l fixed random, (n_l, C))
    ΔW_l = x_{l−1}ᵀ [δh_l ⊙ f′(a_l)],  Δb_l = Σ_n [δh_l ⊙ f′(a_l)]_n     (hidden layers)
    ΔW_out, Δb_out = exact gradient of L                                  (output layer)

No error travels between hidden layers: the model runs in *local mode* (each hidden layer's
input is ``stop_gradient``-ed) and :func:`broadcast_error`, a ``jax.custom_vjp`` that is the
identity on z, sends the cotangent arriving at z to every h_l through B_l. The pseudo-gradients
come out of one ordinary ``jax.grad`` and go to any optax optimiser (descent).

Rule state: :class:`FeedbackState` with ``B``, a tuple of the fixed matrices (never trained).
"""
from __future__ import annotations

from typing import Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp

from impls.rules import LearningRule

#: feedback-matrix initialisers (``init_feedback``'s ``kind``)
FEEDBACK_INITS = ("ortho", "lecun", "uniform", "kaiming_uniform")


class FeedbackState(NamedTuple):
    """State of DFA/DRTP/FA-type rules.

    B: tuple of fixed random matrices, one per layer that receives a projected signal
       (DFA/DRTP: hidden layer l gets B_l of shape (n_l, C); FA: one per kernel, its shape).
    """

    B: tuple


def init_matrix(key: jax.Array, shape: tuple[int, int], kind: str) -> jax.Array:
    """One fixed feedback matrix of ``shape`` (fan, out).

    ``ortho``: (semi-)orthogonal, gain 1 (Keras ``Orthogonal``; Pathak's default);
    ``lecun``: truncated normal with std √(1/fan) (Keras ``LecunNormal``, fan = shape[0]);
    ``uniform``: U[−1/√fan, 1/√fan] (Nøkland's dfa-torch, fan = receiving layer size = shape[0]);
    ``kaiming_uniform``: PyTorch ``kaiming_uniform_`` default (a = √5) as Frenkel's code applies it to
    its (C, n_l) matrix: U[−1/√n_l, 1/√n_l], n_l = shape[0] here (the transposed layout).
    """
    if kind == "ortho":
        return jax.nn.initializers.orthogonal()(key, shape, jnp.float32)
    if kind == "lecun":
        return jax.nn.initializers.lecun_normal(in_axis=0, out_axis=1)(key, shape, jnp.float32)
    if kind == "uniform":
        bound = 1.0 / jnp.sqrt(shape[0])
        return jax.random.uniform(key, shape, jnp.float32, -bound, bound)
    if kind == "kaiming_uniform":
        bound = 1.0 / jnp.sqrt(shape[0])
        return jax.random.uniform(key, shape, jnp.float32, -bound, bound)
    raise ValueError(f"unknown feedback init {kind!r}; allowed: {', '.join(FEEDBACK_INITS)}")


def init_feedback(key: jax.Array | None, shapes: Sequence[tuple[int, int]], kind: str = "ortho") -> FeedbackState:
    """Fixed matrices of the given shapes; ``key=None`` means PRNGKey(0)."""
    key = jax.random.PRNGKey(0) if key is None else key
    keys = jax.random.split(key, max(len(shapes), 1))
    return FeedbackState(B=tuple(init_matrix(k, tuple(s), kind) for k, s in zip(keys, shapes)))


@jax.custom_vjp
def broadcast_error(z, hs, feedback):
    """Identity on ``z``; backward: cotangent e at z -> e B_lᵀ at each h_l (and e at z)."""
    del hs, feedback
    return z


def _broadcast_fwd(z, hs, feedback):
    return z, feedback


def _broadcast_bwd(feedback, e):
    return (e, tuple(e @ B.T for B in feedback), jax.tree_util.tree_map(jnp.zeros_like, feedback))


broadcast_error.defvjp(_broadcast_fwd, _broadcast_bwd)


def direct_feedback_alignment(forward: Callable, loss_fn: Callable, hidden_sizes: Sequence[int], n_out: int,
                              feedback_init: str = "ortho") -> LearningRule:
    """DFA for a model run in local mode.

    Args:
      forward: ``forward(params, x, key) -> (z, hs, aux)``: output pre-activations z (N, C), the
        hidden outputs hs[l] (N, n_l) taken before dropout, each computed from a
        ``stop_gradient``-ed input, and a dict ``aux`` handed back unchanged.
      loss_fn: ``loss_fn(z, y) -> scalar`` (the global loss; e = ∂L/∂z).
      hidden_sizes: n_l of each hidden layer; n_out: C.
      feedback_init: see :func:`init_matrix`.
    ``init(params, key=None)`` draws B_l (n_l, C); ``estimate`` returns aux ``{"loss", **aux}``.
    """
    shapes = [(n, n_out) for n in hidden_sizes]

    def init(params, key=None):
        del params
        return init_feedback(key, shapes, feedback_init)

    def estimate(params, state, x, y, key=None):
        def objective(p):
            z, hs, aux = forward(p, x, key)
            return loss_fn(broadcast_error(z, tuple(hs), state.B), y), aux

        (loss, aux), grads = jax.value_and_grad(objective, has_aux=True)(params)
        return grads, state, {"loss": loss, **aux}

    return LearningRule(init=init, estimate=estimate)
