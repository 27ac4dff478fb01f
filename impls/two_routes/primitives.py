"""The regularisation primitives of Kunin et al. 2020 (papers/two_routes/README.md, "Primitives"), exactly as the
original code computes them.

Column notation: x ∈ Rⁿ, W ∈ R^{m×n}, B ∈ R^{n×m}. Storage (row vectors, TF): K_f = Wᵀ and K_b = B, both
(n_in, n_out) for dense layers and [kh, kw, c_in, c_out] for convs. E[·] = mean over the batch, then
sum over every other axis (units, or H × W × channels). No ½ factors.

| primitive | value                                  | ∂/∂B (W fixed), Σ = E[xxᵀ] |
|-----------|----------------------------------------|----------------------------|
| decay     | ‖W‖² + ‖B‖²                            | 2B                         |
| sparse    | E‖Wx‖² + E‖Bᵀx‖²                       | 2ΣB                        |
| amp       | −E[(Wx)·(Bᵀx)]                         | −ΣWᵀ                       |
| null      | E‖BWx‖²  (E‖WᵀBᵀx‖² if ``reversal``)   | 2BWΣWᵀ                     |
| self      | −tr(BW) = −⟨K_f, K_b⟩                  | −Wᵀ                        |

Conv versions: Wx -> conv(x, K_f), Bᵀx -> conv(x, K_b), BWx -> convᵀ(conv(x, K_f), K_b),
WᵀBᵀx -> convᵀ(conv(x, K_b), K_f), with the layer's stride and padding. Callers hold x and K_f
fixed (``stop_gradient``) so a primitive trains only K_b (README "Objective"). ``*_of`` versions read a
:class:`~impls.two_routes.projections.Projections`, where the R-only options (bias, activation,
standardisation) replace Wx, Bᵀx, BWx, WᵀBᵀx by p_f, p_b, r_f, r_b.
"""
from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp

from impls.common.jax_conv import conv, conv_transpose_like
from impls.two_routes.projections import Projections


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


# Primitives of the quantities in impls.two_routes.projections (the original's R-only options live there).

def decay_of(p: Projections):
    return jnp.sum(p.kf * p.kf) + jnp.sum(p.kb * p.kb)


def sparse_of(p: Projections):
    return _E(p.forward ** 2) + _E(p.backward ** 2)


def amp_of(p: Projections, reconstruction: bool = False, reversal: bool = False):
    """−E[p_f·p_b]; ``reconstruction`` (IA switch ``reconstruction_amp``): −E[x·r_f], or −E[x·r_b] when
    ``reversal`` (``reconstruction_reversal``) is on too, as the original code does."""
    if reconstruction:
        return -_E(p.x * (p.backward_reconstruction if reversal else p.forward_reconstruction))
    return -_E(p.forward * p.backward)


def null_of(p: Projections, reversal: bool = False):
    """E‖r_f‖²; with ``reversal`` E‖r_b‖² instead (the original zeroes the forward term)."""
    return _E((p.backward_reconstruction if reversal else p.forward_reconstruction) ** 2)


def self_of(p: Projections):
    return -jnp.sum(p.kf * p.kb)


# The same primitives of (x, K_f, K_b) with every option off.

def decay(x, kf, kb, geo: Geometry = DENSE):
    return decay_of(Projections(x, kf, kb, geo))


def sparse(x, kf, kb, geo: Geometry = DENSE):
    return sparse_of(Projections(x, kf, kb, geo))


def amp(x, kf, kb, geo: Geometry = DENSE, reconstruction: bool = False):
    """−E[(Wx)·(Bᵀx)]; ``reconstruction`` (IA switch ``reconstruction_amp``): −E[x·(BWx)] (same value)."""
    return amp_of(Projections(x, kf, kb, geo), reconstruction)


def null(x, kf, kb, geo: Geometry = DENSE, reversal: bool = False):
    """E‖BWx‖², or E‖WᵀBᵀx‖² with ``reversal`` (the IA switch ``reconstruction_reversal``; off by default)."""
    return null_of(Projections(x, kf, kb, geo), reversal)


def self_(x, kf, kb, geo: Geometry = DENSE):
    """−tr(BW) = −⟨W, Bᵀ⟩ = −Σ K_f ⊙ K_b (the only non-local primitive)."""
    return self_of(Projections(x, kf, kb, geo))


PRIMITIVES = {"decay": decay, "sparse": sparse, "amp": amp, "null": null, "self": self_}
