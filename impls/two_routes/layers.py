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

from impls.common.jax_conv import conv, conv_pads, input_grad, kernel_grad


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
    pads = conv_pads(x.shape, kf.shape, stride, padding)
    return input_grad(g, kb, x.shape, stride, pads), kernel_grad(x, g, kf.shape, stride, pads)


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
    b = input_grad(g, kf, x.shape, stride, conv_pads(x.shape, kf.shape, stride, padding))
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
