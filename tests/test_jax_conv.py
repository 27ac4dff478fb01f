"""impls.common.jax_conv: convolutions and max pooling whose gradients XLA:CPU runs fast inside a loop give
the same numbers as autodiff of the lax primitives."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from impls.common import jax_conv

KEY = jax.random.PRNGKey(0)


def _rand(key, shape, scale=1.0):
    return scale * jax.random.normal(key, shape, jnp.float32)


@pytest.mark.parametrize("shape,ksize,stride,padding", [
    ((2, 9, 10, 3), 3, 1, None), ((2, 9, 10, 3), 3, 2, None), ((2, 9, 10, 3), 1, 2, None), ((2, 8, 9, 3), 7, 2, None),
    ((3, 10, 11, 2), 3, 2, "SAME"), ((3, 11, 11, 2), 3, 2, "VALID"), ((2, 12, 12, 3), 3, 3, ((0, 2), (1, 0)))])
def test_conv_and_its_transpose_differentiate_like_lax(shape, ksize, stride, padding):
    """conv / conv_transpose_like write their gradients as canonical convs (fast in XLA:CPU loops): same
    values as autodiff of lax.conv_general_dilated, also inside a lax.scan."""
    k = jax.random.split(KEY, 4)
    x, w = _rand(k[0], shape), _rand(k[1], (ksize, ksize, shape[-1], 4))
    pads = jax_conv.conv_pads(x.shape, w.shape, stride, padding)

    def ref(a, kk):
        return jax.lax.conv_general_dilated(a, kk, (stride, stride), pads, dimension_numbers=jax_conv.DIMS)

    y, vjp_ref = jax.vjp(ref, x, w)
    g = _rand(k[2], y.shape)
    y_new, vjp_new = jax.vjp(lambda a, kk: jax_conv.conv(a, kk, stride, padding), x, w)
    for a, b in zip((y_new,) + vjp_new(g), (y,) + vjp_ref(g)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)

    def scanned(a, kk):                               # the same gradients from inside a loop body
        return jax.lax.scan(lambda c, i: (c + jnp.sum(jnp.sin(jax_conv.conv(a * i, kk, stride, padding))), None),
                            0.0, jnp.arange(1.0, 3.0))[0]

    def scanned_ref(a, kk):
        return jax.lax.scan(lambda c, i: (c + jnp.sum(jnp.sin(ref(a * i, kk))), None), 0.0, jnp.arange(1.0, 3.0))[0]

    for a, b in zip(jax.jit(jax.grad(scanned, (0, 1)))(x, w), jax.grad(scanned_ref, (0, 1))(x, w)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)
    # conv_transpose_like = the input cotangent of conv, differentiable in the error and the kernel
    t_ref, vjp_t_ref = jax.vjp(lambda yy, kk: jax.vjp(lambda a: ref(a, kk), x)[1](yy)[0], g, w)
    t_new, vjp_t_new = jax.vjp(lambda yy, kk: jax_conv.conv_transpose_like(yy, kk, x.shape, stride, padding), g, w)
    gx = _rand(k[3], x.shape)
    for a, b in zip((t_new,) + vjp_t_new(gx), (t_ref,) + vjp_t_ref(gx)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4 * float(jnp.max(jnp.abs(b))))


def _reference_pool(x, size, stride):
    return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, size, size, 1), (1, stride, stride, 1), "VALID")


@pytest.mark.parametrize("shape,size,stride", [
    ((3, 28, 28, 4), 3, 2), ((3, 28, 28, 4), 2, 2), ((2, 13, 11, 3), 3, 2), ((2, 9, 9, 2), 3, 3), ((2, 7, 8, 2), 2, 1)])
def test_max_pool_and_its_gradient_equal_reduce_window_bitwise_ties_included(shape, size, stride):
    """Same pooled values and the same gradient as autodiff of lax.reduce_window, bit for bit: with ties
    (tanh saturates to exactly ±1, and a block of equal values) the gradient goes to the first maximum of
    each window, and overlapping windows add up in the same order. Also inside a lax.scan."""
    x = jnp.tanh(6.0 * _rand(KEY, shape))
    x = x.at[:, :4, :4, :].set(0.25)                      # whole windows of equal values
    assert int(jnp.sum(x == 1.0)) > 0                     # saturated ties too
    g = _rand(jax.random.fold_in(KEY, 1), _reference_pool(x, size, stride).shape)
    y_ref, vjp_ref = jax.vjp(lambda a: _reference_pool(a, size, stride), x)
    y_new, vjp_new = jax.vjp(lambda a: jax_conv.max_pool(a, size, stride), x)
    np.testing.assert_array_equal(y_new, y_ref)
    np.testing.assert_array_equal(vjp_new(g)[0], vjp_ref(g)[0])
    assert int(jnp.sum(vjp_new(g)[0] != 0)) <= g.size     # one receiver per window

    def scanned(pool):
        return jax.jit(jax.grad(lambda a: jax.lax.scan(
            lambda c, i: (c + jnp.sum(jnp.sin(pool(a * i, size, stride))), None), 0.0, jnp.arange(1.0, 3.0))[0]))

    np.testing.assert_array_equal(scanned(jax_conv.max_pool)(x), scanned(_reference_pool)(x))


def test_max_pool_gradient_goes_to_the_first_maximum_of_a_window():
    x = jnp.array([[0.0, 2.0, 2.0], [2.0, 1.0, 0.0], [0.0, 0.0, 2.0]]).reshape(1, 3, 3, 1)
    grad = jax.grad(lambda a: jnp.sum(jax_conv.max_pool(a, 3, 1)))(x)
    np.testing.assert_array_equal(grad[0, :, :, 0], [[0, 1, 0], [0, 0, 0], [0, 0, 0]])
