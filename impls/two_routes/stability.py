"""How large a step B may take: the step-size limit of the backward weights under their regulariser R.

Every rule's R_l(W, B) (impls.two_routes.rules) is quadratic in B, so with the input x and W held fixed
its gradient is affine in B, ∇R(B) = H·B − c, with a constant Hessian H (a linear map on B's entries).
In a conv layer H sums over every output position of every example (E = batch mean, then the sum over
H × W × C, README "Primitives"), so its largest eigenvalue λ grows with the feature-map size: at initialisation it
is tens to hundreds for AA and IA in a CIFAR-style ResNet, while decay alone (WM, SA, KP) has λ = 2α.

Gradient descent with Nesterov momentum μ on a quadratic with curvature λ (optax ``trace(nesterov=True)``,
update d = g + μ·(μ·v + g)) is stable if and only if

    lr · λ < 2 (1 + μ) / (1 + 2μ)            (= 1.357 at μ = 0.9; plain gradient descent, μ = 0: 2)

so B's step is unstable once the task learning rate times λ passes that limit, whatever W does: with one
optimiser for W and B (the original's default) B takes the task rate (0.1 at its peak). A rule stays
stable when its coefficients are scaled down (λ ∝ the coefficients, their ratio and hence the fixed
point unchanged) or when B gets its own optimiser with a small enough rate.

``hessian_top_eigenvalue`` estimates λ by power iteration on Hessian-vector products, which for a
quadratic are exact differences of gradients, H·v = ∇R(B + v) − ∇R(B); ``momentum_limit`` gives the
bound; ``stable_lr`` the largest stable rate. Caller: tests/test_two_routes_stability.py.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from impls.two_routes import primitives as P
from impls.two_routes.rules import AlignmentRule


def momentum_limit(momentum: float) -> float:
    """The largest lr·λ at which Nesterov momentum ``momentum`` (0: plain gradient descent) converges."""
    return 2.0 * (1.0 + momentum) / (1.0 + 2.0 * momentum)


def hessian_top_eigenvalue(rule: AlignmentRule, x, kf, kb, geo: P.Geometry = P.DENSE, iters: int = 100,
                           key=None) -> float:
    """Largest eigenvalue of ∂²R/∂B² at (x, W): power iteration on exact Hessian-vector products."""
    grad = jax.jit(jax.grad(lambda b: rule.regularizer(x, kf, b, geo)))
    g0 = grad(kb)
    v = jax.random.normal(jax.random.PRNGKey(0) if key is None else key, kb.shape, kb.dtype)
    v = v / jnp.linalg.norm(v)
    lam = 0.0
    for _ in range(iters):
        hv = grad(kb + v) - g0
        lam = float(jnp.vdot(v, hv))
        v = hv / jnp.linalg.norm(hv)
    return lam


def stable_lr(rule: AlignmentRule, x, kf, kb, geo: P.Geometry = P.DENSE, momentum: float = 0.9) -> float:
    """The largest learning rate at which B's update under R alone does not diverge."""
    return momentum_limit(momentum) / hessian_top_eigenvalue(rule, x, kf, kb, geo)
