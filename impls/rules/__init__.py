"""Learning rules shared by more than one paper (JAX), one module per rule.

A learning rule is a pair of pure functions, in the manner of an optax
``GradientTransformation``: ``init(params) -> state`` and
``estimate(params, state, x, y, key) -> (pseudo_grads, state, aux)``. The pseudo-gradients
have the structure of ``params`` and are handed to an ordinary optax optimiser, so
"rule + Adam" is configuration, not code.
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple

Params = Any
State = Any


class LearningRule(NamedTuple):
    """``init(params) -> state``; ``estimate(params, state, x, y, key) -> (grads, state, aux)``.

    ``aux`` is a dict of scalars (at least ``loss``, the minibatch loss before the update).
    """

    init: Callable[[Params], State]
    estimate: Callable[..., tuple[Params, State, dict]]


def stateless_init(params: Params) -> State:
    del params
    return ()
