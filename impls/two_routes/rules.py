"""The learning rules of Kunin et al. 2020 as alignment regularisers on separate backward weights.

Reference: D. Kunin, A. Nayebi, J. Sagastuy-Brena, S. Ganguli, J. M. Bloom, D. L. K. Yamins,
"Two Routes to Scalable Credit Assignment without Weight Symmetry", ICML 2020 (arXiv 2003.01513 v2);
code github.com/neuroailab/Neural-Alignment @ c3ea4f1. Rules, coefficients and fixed points:
papers/two_routes/README.md, "Mechanism, rules and metrics".

Every layer l sends its error down through its own B_l (impls.two_routes.layers), so W_l's update is
the pseudogradient δr xᵀ. B_l is trained by a local scalar R_l(W_l, B_l) built from the primitives
(impls.two_routes.primitives), computed with the layer input and W_l held fixed and summed over layers:

    L = CE + L2(W) + Σ_l R_l,     ΔB_l = −η ∂R_l/∂B_l     (+ for KP the tied task gradient)

A rule is an :class:`AlignmentRule`: its primitive coefficients, whether B receives W's task
gradient (``tie``), whether the backward pass uses B at all (``uses_backward``) and its locality.
Rules are built by the factories below (defaults = the original code's flag defaults) and named in
``RULES``; ``make_rule(name, alpha=, beta=, gamma=)`` overrides coefficients, ``rule_for_spec`` also sets the
IA switches. ``primitive_values`` evaluates the terms on a layer's
:class:`~impls.two_routes.projections.Projections` (where the R-only options act); ``term_coefficients`` gives
the coefficients at update t under the spec's schedules (impls.two_routes.schedules).
"""
from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

from impls.two_routes import primitives as P
from impls.two_routes.projections import Projections
from impls.two_routes.schedules import coefficient_value


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

    def primitive_values(self, proj: Projections) -> dict:
        """{term: unweighted primitive value} of this rule's terms for one layer's projections."""
        out = {}
        for term in self.terms:
            if term == "null":
                out[term] = P.null_of(proj, reversal=self.reversal)
            elif term == "amp":
                out[term] = P.amp_of(proj, reconstruction=self.reconstruction_amp, reversal=self.reversal)
            else:
                out[term] = PRIMITIVES_OF[term](proj)
        return out

    def weighted(self, values: dict, scheduled: dict | None = None):
        """Σ_terms coefficient · value; ``scheduled`` (term -> scalar coefficient at this step) overrides ``terms``."""
        total = jnp.zeros((), jnp.float32)
        for term, value in values.items():
            coef = self.terms[term] if scheduled is None else scheduled[term]
            total = total + coef * value
        return total

    def regularizer(self, x, kf, kb, geo: P.Geometry = P.DENSE, scheduled: dict | None = None):
        """R_l(x, W, B) = Σ_terms coefficient · primitive (every R-only option off); 0 for BP and FA."""
        return self.weighted(self.primitive_values(Projections(x, kf, kb, geo)), scheduled)

    def term_coefficients(self, t, steps_per_epoch: int, train_epochs: float, hp: dict) -> dict:
        """{term: coefficient at update t} under the spec's alpha/beta/gamma schedules (impls.two_routes.schedules)."""
        epoch = jnp.asarray(t, jnp.float32) / steps_per_epoch
        by_term = {term: jnp.asarray(c, jnp.float32) for term, c in self.terms.items()}
        for name, term in self.coefficients.items():
            by_term[term] = coefficient_value(self.terms[term], epoch, train_epochs, hp, name)
        return by_term


PRIMITIVES_OF = {"decay": P.decay_of, "sparse": P.sparse_of, "amp": P.amp_of, "null": P.null_of, "self": P.self_of}


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
                          reversal: bool = False, reconstruction_amp: bool = False,
                          use_sparse: bool = False) -> AlignmentRule:
    """IA: R = α·amp + β·null + γ·decay.

    ΔB = −η(−αΣWᵀ + 2βBWΣWᵀ + 2γB); fixed point B* = (α/2β)ΣWᵀ(WΣWᵀ + (γ/β)I)⁻¹; at α = 2β and white
    inputs the ridge pseudo-inverse Wᵀ(WWᵀ + γ/(βσ²) I)⁻¹ (B is a linear decoder of x from Wx).
    Switches (README "Options", all off): ``reversal`` (``reconstruction_reversal``) uses E‖WᵀBᵀx‖² as null instead
    of E‖BWx‖² (and WᵀBᵀx in the reconstruction amp), as the original code does;
    ``reconstruction_amp`` uses amp = −E[x·(BWx)]; ``use_sparse`` puts γ on sparse instead of decay
    (ΔB's 2γB becomes 2γΣB).
    """
    third = "sparse" if use_sparse else "decay"
    return AlignmentRule("ia", {"amp": alpha, "null": beta, third: gamma}, locality="local",
                         coefficients={"alpha": "amp", "beta": "null", "gamma": third},
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


def rule_for_spec(name: str, hp: dict) -> AlignmentRule:
    """The rule a run spec names, with its hparams alpha/beta/gamma and (IA) the switches
    reconstruction_reversal, reconstruction_amp, use_sparse."""
    rule = make_rule(name, alpha=hp.get("alpha"), beta=hp.get("beta"), gamma=hp.get("gamma"))
    if name == "ia":
        coefs = {k: float(hp[k]) for k in ("alpha", "beta", "gamma") if hp.get(k) is not None}
        rule = information_alignment(**coefs, reversal=bool(hp.get("reconstruction_reversal", False)),
                                     reconstruction_amp=bool(hp.get("reconstruction_amp", False)),
                                     use_sparse=bool(hp.get("use_sparse", False)))
    return rule


def input_for_regularizer(x, key, distribution: str | None, stddev: float):
    """The x R sees (option ``input_distribution``): the true input, or fresh N(0, σ²) / U[−√3σ, √3σ]."""
    if distribution in (None, "none"):
        return x
    if distribution == "normal":
        return stddev * jax.random.normal(key, x.shape, x.dtype)
    if distribution == "uniform":
        lim = jnp.sqrt(3.0) * stddev
        return jax.random.uniform(key, x.shape, x.dtype, -lim, lim)
    raise ValueError(f"unknown input_distribution {distribution!r}")
