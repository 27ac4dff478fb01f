"""The step-size limit of B under its regulariser (impls.two_routes.stability): why AA, IA and WM blow up
with the task optimiser at the code-default coefficients, and which settings keep B stable."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from impls.two_routes import primitives as P
from impls.two_routes.rules import make_rule
from impls.two_routes.stability import hessian_top_eigenvalue, momentum_limit, stable_lr

CONV = P.Geometry("conv", 1, None)


def _layer(seed=0, batch=16, size=8, c_in=4, c_out=6):
    """One 3x3 conv layer on post-ReLU inputs, kernels at the variance-scaling (fan-in) initialisation."""
    kx, kf, kb = jax.random.split(jax.random.PRNGKey(seed), 3)
    x = jax.nn.relu(jax.random.normal(kx, (batch, size, size, c_in)))
    scale = 1.0 / np.sqrt(9 * c_in)
    return x, scale * jax.random.normal(kf, (3, 3, c_in, c_out)), scale * jax.random.normal(kb, (3, 3, c_in, c_out))


def _exact_top_eigenvalue(rule, x, kf, kb):
    """The full Hessian of R in B, column by column (R is quadratic: H e_i = ∇R(B + e_i) − ∇R(B))."""
    grad = jax.jit(jax.grad(lambda b: rule.regularizer(x, kf, b, CONV)))
    g0 = grad(kb)
    n = kb.size
    cols = [(grad(kb + jnp.zeros(n).at[i].set(1.0).reshape(kb.shape)) - g0).ravel() for i in range(n)]
    return float(np.linalg.eigvalsh(np.asarray(jnp.stack(cols, 1), np.float64)).max())


def _train_b_alone(rule, x, kf, kb, lr, steps=600, momentum=0.9):
    """B's updates under R alone with the trainer's optimiser (optax Nesterov trace, p − lr·d)."""
    tx = optax.trace(decay=momentum, nesterov=True)
    grad = jax.jit(jax.grad(lambda b: rule.regularizer(x, kf, b, CONV)))
    state = tx.init(kb)
    for _ in range(steps):
        d, state = tx.update(grad(kb), state)
        kb = kb - lr * d
    return kb


def test_momentum_limit():
    assert momentum_limit(0.0) == pytest.approx(2.0)
    assert momentum_limit(0.9) == pytest.approx(1.3571, abs=1e-4)


@pytest.mark.parametrize("name", ["aa", "ia", "wm"])
def test_power_iteration_finds_the_top_eigenvalue(name):
    rule = make_rule(name)
    x, kf, kb = _layer()
    assert hessian_top_eigenvalue(rule, x, kf, kb, CONV) == pytest.approx(_exact_top_eigenvalue(rule, x, kf, kb),
                                                                         rel=1e-3)


def test_decay_only_curvature_is_two_alpha_and_scales_with_the_coefficients():
    x, kf, kb = _layer()
    assert hessian_top_eigenvalue(make_rule("wm"), x, kf, kb, CONV) == pytest.approx(2e-3, rel=1e-4)
    assert hessian_top_eigenvalue(make_rule("sa"), x, kf, kb, CONV) == pytest.approx(2e-3, rel=1e-4)
    full = hessian_top_eigenvalue(make_rule("aa"), x, kf, kb, CONV)
    tenth = hessian_top_eigenvalue(make_rule("aa", alpha=1e-4, beta=2e-4), x, kf, kb, CONV)
    assert tenth == pytest.approx(full / 10, rel=1e-3)
    # the conv sums over output positions: AA's curvature dwarfs decay's (the reason the defaults blow up)
    assert full > 100 * 2e-3


@pytest.mark.parametrize("name", ["aa", "ia"])
def test_b_converges_below_the_limit_and_diverges_above_it(name):
    rule = make_rule(name)
    x, kf, kb = _layer()
    lr = stable_lr(rule, x, kf, kb, CONV, momentum=0.9)
    start = float(jnp.linalg.norm(kb))
    below = _train_b_alone(rule, x, kf, kb, 0.9 * lr)
    above = _train_b_alone(rule, x, kf, kb, 1.1 * lr)
    assert np.isfinite(float(jnp.linalg.norm(below))) and float(jnp.linalg.norm(below)) < 10 * start
    grad = jax.grad(lambda b: rule.regularizer(x, kf, b, CONV))
    assert float(jnp.linalg.norm(grad(below))) < 1e-2 * float(jnp.linalg.norm(grad(kb)))   # at its fixed point
    assert not float(jnp.linalg.norm(above)) < 1e3 * start                                 # blown up (or inf/nan)
