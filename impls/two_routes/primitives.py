"""The regularisation primitives of Kunin et al. 2020 (spec §2.3), exactly as the original code computes them.

Column notation: x ∈ Rⁿ, W ∈ R^{m×n}, B ∈ R^{n×m}. Storage (row vectors, TF): K_f = Wᵀ and K_b = B, both
(n_in, n_out) for dense layers and [kh, kw, c_in, c_out] for convs. E[·] = mean over the batch, then
sum over every other axis (units, or H × W × channels). No ½ factors.

| primitive | value                                  | ∂/∂B (W fixed), Σ = E[xxᵀ] |
|-----------|----------------------------------------|----------------------------|
| decay     | ‖W‖² + ‖B‖²                            | 2B                         |
| sparse    | E‖Wx‖² + E‖Bᵀx‖²                       | 2ΣB                        |
| amp       | −E[(Wx)·(Bᵀx)]                         | −ΣWᵀ                       |
| null      | E‖BWx‖²  (+ E‖WᵀBᵀx‖² if ``reversal``) | 2BWΣWᵀ                     |
| self      | −tr(BW) = −⟨K_f, K_b⟩                  | −Wᵀ                        |

Conv versions: Wx -> conv(x, K_f), Bᵀx -> conv(x, K_b), BWx -> convᵀ(conv(x, K_f), K_b),
WᵀBᵀx -> convᵀ(conv(x, K_b), K_f), with the layer's stride and padding. Callers hold x and K_f
fixed (``stop_gradient``) so a primitive trains only K_b (spec §2.2).
"""
from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp

from impls.two_routes.layers import conv, conv_transpose_like


class Geometry(NamedTuple):
    """How a layer maps its input: ``dense`` or ``conv`` (with stride and padding)."""

    kind: str = "dense"
    stride: int = 1
    padding: tuple | None = None

    def fwd(self, x, k):
        """x ↦ x K (dense) or conv(x, K): Wx for K = K_f, Bᵀx for K = K_b."""
        return x @ k if self.kind == "dense" else conv(x, k, self.stride, self.padding)

    def bwd(self, y, k, x_shape):
        """y ↦ y Kᵀ (dense) or convᵀ(y, K) back to the input shape: B y for K = K_b, Wᵀ y for K = K_f."""
        return y @ k.T if self.kind == "dense" else conv_transpose_like(y, k, x_shape, self.stride, self.padding)


DENSE = Geometry()


def _E(t):
    """Batch mean of the per-example sum over every other axis."""
    return jnp.sum(t) / t.shape[0]


def decay(x, kf, kb, geo: Geometry = DENSE):
    del x, geo
    return jnp.sum(kf * kf) + jnp.sum(kb * kb)


def sparse(x, kf, kb, geo: Geometry = DENSE):
    return _E(geo.fwd(x, kf) ** 2) + _E(geo.fwd(x, kb) ** 2)


def amp(x, kf, kb, geo: Geometry = DENSE, reconstruction: bool = False):
    """−E[(Wx)·(Bᵀx)]; ``reconstruction`` (IA switch ``reconstruction_amp``): −E[x·(BWx)] (same value)."""
    if reconstruction:
        return -_E(x * geo.bwd(geo.fwd(x, kf), kb, x.shape))
    return -_E(geo.fwd(x, kf) * geo.fwd(x, kb))


def null(x, kf, kb, geo: Geometry = DENSE, reversal: bool = False):
    """E‖BWx‖² (+ E‖WᵀBᵀx‖² with ``reversal``, the IA switch ``reconstruction_reversal``; off by default)."""
    out = _E(geo.bwd(geo.fwd(x, kf), kb, x.shape) ** 2)
    if reversal:
        out = out + _E(geo.bwd(geo.fwd(x, kb), kf, x.shape) ** 2)
    return out


def self_(x, kf, kb, geo: Geometry = DENSE):
    """−tr(BW) = −⟨W, Bᵀ⟩ = −Σ K_f ⊙ K_b (the only non-local primitive)."""
    del x, geo
    return -jnp.sum(kf * kb)


PRIMITIVES = {"decay": decay, "sparse": sparse, "amp": amp, "null": null, "self": self_}
