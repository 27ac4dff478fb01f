"""The learning rules of Kunin et al. 2020 as alignment regularisers on separate backward weights.

Reference: D. Kunin, A. Nayebi, J. Sagastuy-Brena, S. Ganguli, J. M. Bloom, D. L. K. Yamins,
"Two Routes to Scalable Credit Assignment without Weight Symmetry", ICML 2020 (arXiv 2003.01513 v2);
code github.com/neuroailab/Neural-Alignment @ c3ea4f1. Spec: shared/papers/two_routes.md §2.

Every layer l sends its error down through its own B_l (impls.two_routes.layers), so W_l's update is
the pseudogradient δr xᵀ. B_l is trained by a local scalar R_l(W_l, B_l) built from the primitives
(impls.two_routes.primitives), computed with the layer input and W_l held fixed and summed over layers:

    L = CE + L2(W) + Σ_l R_l,     ΔB_l = −η ∂R_l/∂B_l     (+ for KP the tied task gradient)

A rule is an :class:`AlignmentRule`: its primitive coefficients, whether B receives W's task
gradient (``tie``), whether the backward pass uses B at all (``uses_backward``) and its locality.
Rules are built by the factories below (defaults = the original code's flag defaults) and named in
``RULES``; ``make_rule(name, alpha=, beta=, gamma=)`` overrides coefficients.
"""
from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

from impls.two_routes import primitives as P


class AlignmentRule(NamedTuple):
    """name; ``terms`` (primitive -> coefficient); ``tie`` (KP: B gets the transposed task gradient);
    ``uses_backward`` (False for BP: δx = Wᵀδ, B unused); ``locality``; ``coefficients`` (α, β, γ by name)."""

    name: str
    terms: dict
    tie: bool = False
    uses_backward: bool = True
    locality: str = "—"
    coefficients: dict = {}
    reversal: bool = False
    reconstruction_amp: bool = False

    def regularizer(self, x, kf, kb, geo: P.Geometry = P.DENSE):
        """R_l(x, W, B) = Σ_terms coefficient · primitive; 0 for BP and FA."""
        total = jnp.zeros((), jnp.float32)
        for term, coef in self.terms.items():
            if term == "null":
                value = P.null(x, kf, kb, geo, reversal=self.reversal)
            elif term == "amp":
                value = P.amp(x, kf, kb, geo, reconstruction=self.reconstruction_amp)
            else:
                value = P.PRIMITIVES[term](x, kf, kb, geo)
            total = total + coef * value
        return total


def backprop() -> AlignmentRule:
    """BP: δx = Wᵀ δr (ordinary autodiff); B is unused and no R is added. Fixed point: B ≡ Wᵀ."""
    return AlignmentRule("bp", {}, uses_backward=False, locality="—")


def feedback_alignment() -> AlignmentRule:
    """FA (Lillicrap et al. 2016): δx = B δr with B fixed at its random init; ΔW = δr xᵀ, ΔB = 0, R = 0."""
    return AlignmentRule("fa", {}, locality="local")


def weight_mirror(alpha: float = 1e-3, beta: float = 1e-3) -> AlignmentRule:
    """WM (Akrout et al. 2019, as coded by Kunin et al.): R = α·decay + β·amp.

    ΔB = −η(2αB − βΣWᵀ); fixed point B* = (β/2α)ΣWᵀ (white inputs σ²I: (βσ²/2α)Wᵀ = ½Wᵀ at the defaults).
    """
    return AlignmentRule("wm", {"decay": alpha, "amp": beta}, locality="local",
                         coefficients={"alpha": "decay", "beta": "amp"})


def information_alignment(alpha: float = 2e-3, beta: float = 1e-3, gamma: float = 1e-3,
                          reversal: bool = False, reconstruction_amp: bool = False) -> AlignmentRule:
    """IA: R = α·amp + β·null + γ·decay.

    ΔB = −η(−αΣWᵀ + 2βBWΣWᵀ + 2γB); fixed point B* = (α/2β)ΣWᵀ(WΣWᵀ + (γ/β)I)⁻¹; at α = 2β and white
    inputs the ridge pseudo-inverse Wᵀ(WWᵀ + γ/(βσ²) I)⁻¹ (B is a linear decoder of x from Wx).
    """
    return AlignmentRule("ia", {"amp": alpha, "null": beta, "decay": gamma}, locality="local",
                         coefficients={"alpha": "amp", "beta": "null", "gamma": "decay"},
                         reversal=reversal, reconstruction_amp=reconstruction_amp)


def symmetric_alignment(alpha: float = 1e-3, beta: float = 2e-3) -> AlignmentRule:
    """SA: R = α·decay + β·self.  ΔB = −η(2αB − βWᵀ); B* = (β/2α)Wᵀ = Wᵀ exactly at β = 2α, any input."""
    return AlignmentRule("sa", {"decay": alpha, "self": beta}, locality="non-local",
                         coefficients={"alpha": "decay", "beta": "self"})


def activation_alignment(alpha: float = 1e-3, beta: float = 2e-3) -> AlignmentRule:
    """AA: R = α·sparse + β·amp.  ΔB = −ηΣ(2αB − βWᵀ); B* = Wᵀ on the span of the inputs (β = 2α)."""
    return AlignmentRule("aa", {"sparse": alpha, "amp": beta}, locality="non-local",
                         coefficients={"alpha": "sparse", "beta": "amp"})


def kolen_pollack(alpha: float = 1e-3, name: str = "kp") -> AlignmentRule:
    """KP (Kolen & Pollack 1994; Akrout et al. 2019): R = α·decay plus the tied task gradient.

    ΔB = −η[(∂CE/∂W)ᵀ + 2αB], ΔW = −η[∂CE/∂W + 1e-4·W]: W − Bᵀ decays geometrically only when the
    leaks match (2α = 1e-4, ``kp_equal_leak``, α = 5e-5); at the default B forgets 20× faster than W.
    """
    return AlignmentRule(name, {"decay": alpha}, tie=True, locality="non-local",
                         coefficients={"alpha": "decay"})


RULES: dict[str, Callable[..., AlignmentRule]] = {
    "bp": backprop,
    "fa": feedback_alignment,
    "wm": weight_mirror,
    "ia": information_alignment,
    "sa": symmetric_alignment,
    "aa": activation_alignment,
    "kp": kolen_pollack,
    "kp_equal_leak": lambda alpha=5e-5: kolen_pollack(alpha, name="kp_equal_leak"),
}


def make_rule(name: str, **coefficients) -> AlignmentRule:
    """The rule ``name`` with coefficients (alpha/beta/gamma) overriding the defaults (None = default)."""
    return RULES[name](**{k: float(v) for k, v in coefficients.items() if v is not None})


def input_for_regularizer(x, key, distribution: str | None, stddev: float):
    """The x R sees (spec §2.5 ``input_distribution``): the true input, or fresh N(0, σ²) / U[−√3σ, √3σ]."""
    if distribution in (None, "none"):
        return x
    if distribution == "normal":
        return stddev * jax.random.normal(key, x.shape, x.dtype)
    if distribution == "uniform":
        lim = jnp.sqrt(3.0) * stddev
        return jax.random.uniform(key, x.shape, x.dtype, -lim, lim)
    raise ValueError(f"unknown input_distribution {distribution!r}")
