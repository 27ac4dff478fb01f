"""Dense and conv layers with a separate backward kernel: the two-routes pseudogradient (papers/two_routes/README.md,
"Layers with a backward kernel").

Row-vector / TF storage convention. A dense layer stores its forward kernel K_f = Wᵀ (n_in, n_out)
and its backward kernel K_b of the same shape (K_b = B in column notation, so B = Wᵀ ⟺ K_b = K_f); a conv layer stores K_f, K_b as
[kh, kw, c_in, c_out]. With upstream error δ = ∂L/∂r at the layer output r:

    forward   r  = x K_f                      (conv: r = conv(x, K_f))
    δx           = δ K_bᵀ  (= B δ)            (conv: transposed conv of δ with K_b, same stride/padding)
    ∂/∂K_f       = xᵀ δ                       (conv: filter gradient of x and δ) -- a pseudogradient,
                                              since δ arrived through the B's above
    ∂/∂K_b       = 0                          (``tie=True``, Kolen-Pollack: xᵀ δ, the transpose of W's
                                              task gradient, identical kernel for conv)

With K_b = K_f both layers are exact backprop (tested against ``jax.grad``).

``measure=True`` adds a ``probe`` argument (shape (3,), value ignored) whose cotangent is
[⟨a, b⟩, ‖a‖², ‖b‖²] with a = the error the layer sends down (B δ) and b = the error backprop
would send from the same δ (Wᵀ δ). ``jax.grad`` with respect to the probes thus returns the
per-layer gradient-angle statistics (README "Metrics") at the cost of one extra transposed matmul/conv.

With K_b fixed (``tie=False``) the dense layer is feedback alignment, the math of the shared
:func:`impls.rules.fa.fa_dense` (kept separate here: no bias, the trainable/tied K_b and the probe).

Reference: D. Kunin et al., "Two Routes to Scalable Credit Assignment without Weight Symmetry",
ICML 2020; FA: T. P. Lillicrap et al., Nat. Commun. 7:13276 (2016).
"""
from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
from jax import lax

DIMS = ("NHWC", "HWIO", "NHWC")


# Convolutions and their gradients, every one written as a canonical NHWC/HWIO/NHWC convolution (operands
# transposed explicitly). JAX's own transpose rules emit the gradient convs with permuted dimension numbers
# (the filter gradient contracts over the batch); XLA:CPU rewrites those into fast kernels in a top-level
# computation but not inside a while loop, so inside the ``lax.scan`` of an epoch they ran as naive loops
# (filter gradient of a 3×3 conv, 128×32×32×8: 420 ms instead of 13 ms). The formulas below give the same
# numbers as ``jax.vjp`` of :func:`lax.conv_general_dilated` (tests/test_two_routes_rules.py).

def _pads(x_shape, k_shape, stride: int, padding):
    """Explicit ((lo, hi), (lo, hi)); ``None``: symmetric (k−1)//2; or a lax padding string."""
    if padding is None:
        return tuple(((d - 1) // 2, (d - 1) // 2) for d in k_shape[:2])
    if isinstance(padding, str):
        return tuple(lax.padtype_to_pads(x_shape[1:3], k_shape[:2], (stride, stride), padding))
    return tuple((int(lo), int(hi)) for lo, hi in padding)


def _conv(x, k, stride: int, pads):
    return lax.conv_general_dilated(x, k, (stride, stride), pads, dimension_numbers=DIMS)


def _input_grad(g, k, x_shape, stride: int, pads):
    """convᵀ: the cotangent of x in r = conv(x, k) for output cotangent g, as a conv of g (dilated by the
    stride) with the spatially flipped, in/out-swapped kernel; the padding gives exactly x's H×W."""
    kt = jnp.swapaxes(k[::-1, ::-1], 2, 3)
    tpads = tuple((kd - 1 - lo, n + lo - (no - 1) * stride - 1)
                  for kd, (lo, _), n, no in zip(k.shape[:2], pads, x_shape[1:3], g.shape[1:3]))
    return lax.conv_general_dilated(g, kt, (1, 1), tpads, lhs_dilation=(stride, stride), dimension_numbers=DIMS)


def _kernel_grad(x, g, k_shape, stride: int, pads):
    """The cotangent of k in r = conv(x, k): a conv whose batch is x's channels, whose features are the
    images and whose kernel is g (dilated by the stride); output (c_in, kh, kw, c_out) -> HWIO."""
    kpads = tuple((lo, kd + (no - 1) * stride - n - lo)
                  for kd, (lo, _), n, no in zip(k_shape[:2], pads, x.shape[1:3], g.shape[1:3]))
    out = lax.conv_general_dilated(jnp.transpose(x, (3, 1, 2, 0)), jnp.transpose(g, (1, 2, 0, 3)), (1, 1), kpads,
                                   rhs_dilation=(stride, stride), dimension_numbers=DIMS)
    return jnp.transpose(out, (1, 2, 0, 3))


@partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _conv_op(x, k, stride, pads):
    return _conv(x, k, stride, pads)


def _conv_op_fwd(x, k, stride, pads):
    return _conv(x, k, stride, pads), (x, k)


def _conv_op_bwd(stride, pads, res, g):
    x, k = res
    return _input_grad(g, k, x.shape, stride, pads), _kernel_grad(x, g, k.shape, stride, pads)


_conv_op.defvjp(_conv_op_fwd, _conv_op_bwd)


@partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def _conv_t_op(y, k, x_shape, stride, pads):
    return _input_grad(y, k, x_shape, stride, pads)


def _conv_t_op_fwd(y, k, x_shape, stride, pads):
    return _input_grad(y, k, x_shape, stride, pads), (y, k)


def _conv_t_op_bwd(x_shape, stride, pads, res, gx):
    y, k = res     # convᵀ(·, k) is the adjoint of conv(·, k): ⟨gx, convᵀ(y, k)⟩ = ⟨conv(gx, k), y⟩
    return _conv_op(gx, k, stride, pads), _kernel_grad(gx, y, k.shape, stride, pads)


_conv_t_op.defvjp(_conv_t_op_fwd, _conv_t_op_bwd)


def conv(x, k, stride: int = 1, padding=None):
    """NHWC conv with HWIO kernel; padding defaults to symmetric (k−1)//2 (PyTorch-style 'same').
    Reverse-mode differentiable (canonical-conv gradients, see above); no forward mode."""
    return _conv_op(x, k, stride, _pads(x.shape, k.shape, stride, padding))


def conv_transpose_like(y, k, x_shape, stride: int = 1, padding=None):
    """The transposed conv of ``y`` with ``k`` back to the input shape ``x_shape`` (stride 2 leaves it ambiguous
    otherwise): the input-cotangent of :func:`conv`, so stride-2 layers get the exact input shape."""
    x_shape = tuple(x_shape)
    return _conv_t_op(y, k, x_shape, stride, _pads(x_shape, k.shape, stride, padding))


# ----------------------------------------------------------------------------- dense

@partial(jax.custom_vjp, nondiff_argnums=(3,))
def pg_dense(x, kf, kb, tie: bool = False):
    """r = x K_f; backward δx = δ K_bᵀ, ∂K_f = xᵀδ, ∂K_b = xᵀδ if ``tie`` else 0."""
    del kb
    return x @ kf


def _dense_fwd(x, kf, kb, tie):
    return x @ kf, (x, kb)


def _dense_bwd(tie, res, g):
    x, kb = res
    gk = x.T @ g
    return g @ kb.T, gk, gk if tie else jnp.zeros_like(kb)


pg_dense.defvjp(_dense_fwd, _dense_bwd)


@partial(jax.custom_vjp, nondiff_argnums=(4,))
def pg_dense_probe(x, kf, kb, probe, tie: bool = False):
    """:func:`pg_dense` whose ``probe`` cotangent is [⟨Bδ, Wᵀδ⟩, ‖Bδ‖², ‖Wᵀδ‖²]."""
    del kb, probe
    return x @ kf


def _dense_probe_fwd(x, kf, kb, probe, tie):
    return x @ kf, (x, kf, kb)


def _dense_probe_bwd(tie, res, g):
    x, kf, kb = res
    gk = x.T @ g
    a, b = g @ kb.T, g @ kf.T
    stats = jnp.stack([jnp.vdot(a, b), jnp.vdot(a, a), jnp.vdot(b, b)])
    return a, gk, gk if tie else jnp.zeros_like(kb), stats


pg_dense_probe.defvjp(_dense_probe_fwd, _dense_probe_bwd)


# ----------------------------------------------------------------------------- conv

@partial(jax.custom_vjp, nondiff_argnums=(3, 4, 5))
def pg_conv(x, kf, kb, stride: int = 1, padding=None, tie: bool = False):
    """r = conv(x, K_f); backward δx = convᵀ(δ, K_b), ∂K_f = filter-grad(x, δ), ∂K_b = same if ``tie`` else 0."""
    del kb
    return conv(x, kf, stride, padding)


def _conv_fwd(x, kf, kb, stride, padding, tie):
    return conv(x, kf, stride, padding), (x, kf, kb)


def _conv_grads(x, kf, kb, g, stride, padding):
    pads = _pads(x.shape, kf.shape, stride, padding)
    return _input_grad(g, kb, x.shape, stride, pads), _kernel_grad(x, g, kf.shape, stride, pads)


def _conv_bwd(stride, padding, tie, res, g):
    x, kf, kb = res
    gx, gk = _conv_grads(x, kf, kb, g, stride, padding)
    return gx, gk, gk if tie else jnp.zeros_like(kb)


pg_conv.defvjp(_conv_fwd, _conv_bwd)


@partial(jax.custom_vjp, nondiff_argnums=(4, 5, 6))
def pg_conv_probe(x, kf, kb, probe, stride: int = 1, padding=None, tie: bool = False):
    """:func:`pg_conv` whose ``probe`` cotangent is [⟨Bδ, Wᵀδ⟩, ‖Bδ‖², ‖Wᵀδ‖²]."""
    del kb, probe
    return conv(x, kf, stride, padding)


def _conv_probe_fwd(x, kf, kb, probe, stride, padding, tie):
    return conv(x, kf, stride, padding), (x, kf, kb)


def _conv_probe_bwd(stride, padding, tie, res, g):
    x, kf, kb = res
    a, gk = _conv_grads(x, kf, kb, g, stride, padding)
    b = _input_grad(g, kf, x.shape, stride, _pads(x.shape, kf.shape, stride, padding))
    stats = jnp.stack([jnp.vdot(a, b), jnp.vdot(a, a), jnp.vdot(b, b)])
    return a, gk, gk if tie else jnp.zeros_like(kb), stats


pg_conv_probe.defvjp(_conv_probe_fwd, _conv_probe_bwd)


def angle_deg(a, b):
    """∠(a, b) in degrees, tensors flattened, cosine clipped to [−1, 1], as the original's angle metrics."""
    a, b = a.ravel(), b.ravel()
    cos = jnp.vdot(a, b) / jnp.maximum(jnp.linalg.norm(a) * jnp.linalg.norm(b), 1e-30)
    return jnp.degrees(jnp.arccos(jnp.clip(cos, -1.0, 1.0)))


def angle_from_stats(stats):
    """Angle from the probe cotangent [⟨a,b⟩, ‖a‖², ‖b‖²]; NaN when no error reached the layer
    (e.g. a conv feeding a zero-initialised v1 BN), where the angle is undefined."""
    norm = jnp.sqrt(stats[1] * stats[2])
    cos = stats[0] / jnp.maximum(norm, 1e-30)
    return jnp.where(norm > 0, jnp.degrees(jnp.arccos(jnp.clip(cos, -1.0, 1.0))), jnp.nan)
