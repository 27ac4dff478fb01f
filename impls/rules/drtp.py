"""Direct random target projection (DRTP) as a pseudo-gradient estimator.

Reference: C. Frenkel, M. Lefebvre, D. Bol, "Learning Without Feedback: Fixed Random Learning
Signals Allow for Feedforward Training of Deep Neural Networks", Front. Neurosci. 15:629892
(2021) (code ChFrenkel/DirectRandomTargetProjection). Row-vector convention as in
:mod:`impls.rules.dfa`; y* is the one-hot target (N, C):

    δh_l = y* B_lᵀ                     (no error, no 1/N: the target itself is the signal)
    ΔW_l = x_{l−1}ᵀ [δh_l ⊙ f′(a_l)],  Δb_l = Σ_n [δh_l ⊙ f′(a_l)]_n        (hidden layers)
    ΔW_out, Δb_out = exact gradient of the global loss                       (output layer)

Equivalently each hidden layer descends ℓ_l = Σ_n ⟨y*_n, h_{l,n} B_l⟩. Because the signal
carries no error magnitude, unbounded activations (ReLU) can grow without limit and diverge;
the rule does not guard against it (callers record such runs as diverged).

Implementation: local-mode model (inputs of hidden layers ``stop_gradient``-ed) and
:func:`project_target`, a ``jax.custom_vjp`` identity on z whose backward puts y* B_lᵀ on each h_l.
Rule state: :class:`impls.rules.dfa.FeedbackState`.
"""
from __future__ import annotations

from typing import Callable, Sequence

import jax
import jax.numpy as jnp

from impls.rules import LearningRule
from impls.rules.dfa import init_feedback


@jax.custom_vjp
def project_target(z, hs, feedback, target):
    """Identity on ``z``; backward: y* B_lᵀ at each h_l whatever the error; exact cotangent at z."""
    del hs, feedback, target
    return z


def _project_fwd(z, hs, feedback, target):
    return z, (feedback, target)


def _project_bwd(res, e):
    feedback, target = res
    return (e, tuple(target @ B.T for B in feedback), jax.tree_util.tree_map(jnp.zeros_like, feedback),
            jnp.zeros_like(target))


project_target.defvjp(_project_fwd, _project_bwd)


def direct_random_target_projection(forward: Callable, loss_fn: Callable, hidden_sizes: Sequence[int],
                                    n_out: int, feedback_init: str = "ortho") -> LearningRule:
    """DRTP for a model run in local mode; arguments as :func:`impls.rules.dfa.direct_feedback_alignment`.

    ``y`` handed to ``estimate`` is the one-hot target (it is both the loss target and y*).
    """
    shapes = [(n, n_out) for n in hidden_sizes]

    def init(params, key=None):
        del params
        return init_feedback(key, shapes, feedback_init)

    def estimate(params, state, x, y, key=None):
        def objective(p):
            z, hs, aux = forward(p, x, key)
            target = jax.lax.stop_gradient(y).astype(z.dtype)
            return loss_fn(project_target(z, tuple(hs), state.B, target), y), aux

        (loss, aux), grads = jax.value_and_grad(objective, has_aux=True)(params)
        return grads, state, {"loss": loss, **aux}

    return LearningRule(init=init, estimate=estimate)
