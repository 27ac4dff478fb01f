"""Convolution and max pooling for the JAX programs, with gradients that XLA:CPU runs fast inside a loop.

Callers: ``impls.two_routes.layers`` (its pseudogradient convs), ``impls.bpfree.conv``, ``impls.nodepert.convnets``
and the arena's JAX conv rules.

Why: an epoch is one compiled ``lax.scan``. JAX's autodiff writes the gradients of a convolution as
convolutions with permuted dimension numbers (the kernel gradient contracts over the batch) and the gradient
of a ``reduce_window`` max as a ``select_and_scatter``. At top level XLA:CPU rewrites the former into fast
kernels; inside a while loop it does not, and runs both as naive loops (a 3×3 conv's kernel gradient,
128×32×32×8: 420 ms instead of 13 ms). Here every gradient is itself a canonical NHWC/HWIO/NHWC convolution
with explicitly transposed operands, or, for pooling, strided slices and pads, so the same program runs at
top-level speed inside the scan. They equal ``jax.vjp`` of ``lax.conv_general_dilated`` and of
``lax.reduce_window`` (bitwise in the cases tested: tests/test_jax_conv.py).

- :func:`conv` (stride, symmetric or explicit padding) and :func:`conv_transpose_like` (its input cotangent,
  as a differentiable op): reverse-mode only, no forward mode.
- :func:`max_pool`: max over size×size windows with the given stride, no padding; its gradient goes to the
  first maximum of each window in row-major order, as ``select_and_scatter`` does.
"""
from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
from jax import lax

DIMS = ("NHWC", "HWIO", "NHWC")


def conv_pads(x_shape, k_shape, stride: int, padding):
    """Explicit ((lo, hi), (lo, hi)); ``None``: symmetric (k−1)//2; or a lax padding string."""
    if padding is None:
        return tuple(((d - 1) // 2, (d - 1) // 2) for d in k_shape[:2])
    if isinstance(padding, str):
        return tuple(lax.padtype_to_pads(x_shape[1:3], k_shape[:2], (stride, stride), padding))
    return tuple((int(lo), int(hi)) for lo, hi in padding)


def _conv(x, k, stride: int, pads, precision=None):
    return lax.conv_general_dilated(x, k, (stride, stride), pads, dimension_numbers=DIMS, precision=precision)


def input_grad(g, k, x_shape, stride: int, pads, precision=None):
    """convᵀ: the cotangent of x in r = conv(x, k) for output cotangent g, as a conv of g (dilated by the
    stride) with the spatially flipped, in/out-swapped kernel; the padding gives exactly x's H×W."""
    kt = jnp.swapaxes(k[::-1, ::-1], 2, 3)
    tpads = tuple((kd - 1 - lo, n + lo - (no - 1) * stride - 1)
                  for kd, (lo, _), n, no in zip(k.shape[:2], pads, x_shape[1:3], g.shape[1:3]))
    return lax.conv_general_dilated(g, kt, (1, 1), tpads, lhs_dilation=(stride, stride), dimension_numbers=DIMS,
                                    precision=precision)


def kernel_grad(x, g, k_shape, stride: int, pads, precision=None):
    """The cotangent of k in r = conv(x, k): a conv whose batch is x's channels, whose features are the
    images and whose kernel is g (dilated by the stride); output (c_in, kh, kw, c_out) -> HWIO."""
    kpads = tuple((lo, kd + (no - 1) * stride - n - lo)
                  for kd, (lo, _), n, no in zip(k_shape[:2], pads, x.shape[1:3], g.shape[1:3]))
    out = lax.conv_general_dilated(jnp.transpose(x, (3, 1, 2, 0)), jnp.transpose(g, (1, 2, 0, 3)), (1, 1), kpads,
                                   rhs_dilation=(stride, stride), dimension_numbers=DIMS, precision=precision)
    return jnp.transpose(out, (1, 2, 0, 3))


@partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def _conv_op(x, k, stride, pads, precision):
    return _conv(x, k, stride, pads, precision)


def _conv_op_fwd(x, k, stride, pads, precision):
    return _conv(x, k, stride, pads, precision), (x, k)


def _conv_op_bwd(stride, pads, precision, res, g):
    x, k = res
    return (input_grad(g, k, x.shape, stride, pads, precision),
            kernel_grad(x, g, k.shape, stride, pads, precision))


_conv_op.defvjp(_conv_op_fwd, _conv_op_bwd)


@partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def _conv_t_op(y, k, x_shape, stride, pads):
    return input_grad(y, k, x_shape, stride, pads)


def _conv_t_op_fwd(y, k, x_shape, stride, pads):
    return input_grad(y, k, x_shape, stride, pads), (y, k)


def _conv_t_op_bwd(x_shape, stride, pads, res, gx):
    y, k = res     # convᵀ(·, k) is the adjoint of conv(·, k): ⟨gx, convᵀ(y, k)⟩ = ⟨conv(gx, k), y⟩
    return _conv_op(gx, k, stride, pads, None), kernel_grad(gx, y, k.shape, stride, pads)


_conv_t_op.defvjp(_conv_t_op_fwd, _conv_t_op_bwd)


def conv(x, k, stride: int = 1, padding=None, precision=None):
    """NHWC conv with HWIO kernel; padding defaults to symmetric (k−1)//2 (PyTorch-style 'same'); ``precision``
    (a ``lax.Precision``) applies to the forward conv and both gradient convs. Reverse-mode differentiable
    (canonical-conv gradients, see above); no forward mode."""
    return _conv_op(x, k, stride, conv_pads(x.shape, k.shape, stride, padding), precision)


def conv_transpose_like(y, k, x_shape, stride: int = 1, padding=None):
    """The transposed conv of ``y`` with ``k`` back to the input shape ``x_shape`` (stride 2 leaves it ambiguous
    otherwise): the input-cotangent of :func:`conv`, so stride-2 layers get the exact input shape."""
    x_shape = tuple(x_shape)
    return _conv_t_op(y, k, x_shape, stride, conv_pads(x_shape, k.shape, stride, padding))



def _window_slices(x, size: int, stride: int, out_hw):
    """For each offset (i, j) of a size×size window, in row-major order: the strided slice of x that holds
    every window's element at that offset, shaped like the pooled output."""
    n, _, _, c = x.shape
    oh, ow = out_hw
    for i in range(size):
        for j in range(size):
            yield i, j, lax.slice(x, (0, i, j, 0), (n, i + stride * (oh - 1) + 1, j + stride * (ow - 1) + 1, c),
                                  (1, stride, stride, 1))


def _pool(x, size, stride):
    return lax.reduce_window(x, -jnp.inf, lax.max, (1, size, size, 1), (1, stride, stride, 1), "VALID")


@partial(jax.custom_vjp, nondiff_argnums=(1, 2))
def max_pool(x, size: int, stride: int):
    """Max over size×size windows of NHWC ``x`` with the given stride, no padding (floor mode). Its gradient
    goes to the first maximum of each window (row-major), scattered back with pads instead of
    ``select_and_scatter``."""
    return _pool(x, size, stride)


def _max_pool_fwd(x, size, stride):
    y = _pool(x, size, stride)
    return y, (x, y)


def _max_pool_bwd(size, stride, res, g):
    x, y = res
    _, h, w, _ = x.shape
    oh, ow = y.shape[1:3]
    taken = jnp.zeros(y.shape, bool)
    parts = []
    for i, j, window in _window_slices(x, size, stride, (oh, ow)):
        first = (window == y) & ~taken               # this offset holds the window's first maximum
        taken = taken | first
        spread = ((0, 0, 0), (i, h - i - stride * (oh - 1) - 1, stride - 1),
                  (j, w - j - stride * (ow - 1) - 1, stride - 1), (0, 0, 0))
        parts.append(lax.pad(jnp.where(first, g, 0).astype(x.dtype), jnp.zeros((), x.dtype), spread))
    # select_and_scatter adds the windows' cotangents in row-major window order; an input's windows come in
    # reverse offset order, so summing the offsets backwards rounds alike
    dx = jnp.zeros_like(x)
    for part in reversed(parts):
        dx = dx + part
    return (dx,)


max_pool.defvjp(_max_pool_fwd, _max_pool_bwd)
