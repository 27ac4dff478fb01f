"""What a pepita run spec may name (pure Python: imported when the workflow is parsed).

Caller: ``impls.common.specs.validate_spec`` for every pepita spec: ``SCHEMA`` (built from the tables
below: rules, datasets, per-arch model keys, hparams with their choices, types and ranges), then
``validate`` (how keys depend on each other); and ``impls.pepita.stacked`` (``resolved_hparams``
fills in the defaults below, which are the original code's).
"""
from __future__ import annotations

from impls.common.errors import SpecError
from impls.common.option_schema import (BOOL, NON_NEGATIVE, NON_NEGATIVE_INT, NUMBER, POSITIVE_INT, keys,
                                        list_of, one_of, run_spec, when)

#: learning rules; update equations in impls/pepita/rules.py and impls/rules_torch/*.py
RULES = {
    "pepita": "PEPITA: two forward passes, input modulated by the output error (papers/pepita/README.md)",
    "bp": "backpropagation (FC: η inside the momentum; conv: torch SGD on cross-entropy)",
    "fa": "feedback alignment, fixed random feedback B_l ~ U(±√(6/n_l))",
    "drtp": "direct random target projection (Frenkel et al. 2021)",
}
ARCHS = ("fc", "conv")
DATASETS = ("digits", "fashion_mnist", "mnist", "cifar10", "cifar100")
#: FC hidden nonlinearity: ReLU everywhere in the original; tanh for the BP/FA/DRTP baselines
#: (variant ``drtp_tanh``: DRTP as Frenkel et al. ran it, with bounded units; README "Baselines")
ACTIVATIONS = ("relu", "tanh")
TANH_RULES = ("bp", "fa", "drtp")
#: model keys per arch besides ``arch`` (defaults: impls.pepita.stacked), with what each accepts
MODEL_OPTIONS = {"fc": {"hidden": list_of(POSITIVE_INT, non_empty=True), "activation": one_of(ACTIVATIONS)},
                 "conv": {"channels": POSITIVE_INT, "kernel": POSITIVE_INT, "pool": POSITIVE_INT}}

#: hparams, their defaults (None = depends on the architecture, see ``resolved_hparams``) and meaning
HPARAMS = {
    "lr": (None, "learning rate η (required)"),
    "momentum": (0.9, "momentum μ: v ← μv + ηG/B, W ← W − v (η inside the velocity)"),
    "decay_epochs": ([], "η ← max(decay·η, 1e-6) at the start of these 0-indexed epochs"),
    "decay": (0.1, "learning-rate decay factor"),
    "keep": (None, "dropout keep probability of hidden units (FC 0.9, conv 1 = no dropout)"),
    "F_scale": (0.05, "F = U(−1,1)·√(6/d_in)·F_scale; 0 gives the F = 0 control"),
    "last_error": (None, "output-layer error: 'modulated' (FC code) or 'standard' (Alg. 1, conv code)"),
    "perturbation": ("error", "'error': x + F e; 'random': x + k ξ (control, ξ fresh per example and step)"),
    "rp_k": (0.0, "k of the random-perturbation control"),
    "rp_noise": ("normal", "law of ξ for the random-perturbation control: 'normal' or 'uniform' (U(−1,1))"),
    "erin_sign": (False, "code switch ERINsign: x + 0.1·F·sign(e)"),
    "F_init": ("he", "law of F: 'he' U(±√(6/d_in))·F_scale, or 'nok' U(±1/√C)·F_scale (code option)"),
    "double_mask": (False, "numpy main.py (README command): hidden PEPITA δ multiplied by the dropout mask again"),
    "carry_remainder": (False, "numpy main.py: the epoch's last partial batch is added to the next epoch's first update"),
    "sqrt_conv": (False, "conv code variant: the conv update divided by √P instead of P positions"),
    "modulated_product": ("factored", "FC first layer of the modulated pass: 'factored' x W_1ᵀ + s (W_1 F)ᵀ "
                                      "(one B×d×n matmul fewer) or 'direct' (x + s Fᵀ) W_1ᵀ as the original"),
    "shuffle": ("fresh", "data order: 'fresh' (a new seeded permutation every epoch) or 'compose' (numpy main.py: "
                         "one seeded permutation per run, applied to the current order at every epoch)"),
    "dtype": ("float32", "arithmetic precision of weights, data and updates: 'float32' or 'float64' "
                         "(numpy main.py computes in float64)"),
}
CHOICES = {"last_error": ("modulated", "standard"), "perturbation": ("error", "random"),
           "rp_noise": ("normal", "uniform"), "modulated_product": ("factored", "direct"),
           "F_init": ("he", "nok"), "shuffle": ("fresh", "compose"), "dtype": ("float32", "float64")}
#: what each hparam accepts (``CHOICES`` for the named ones)
HPARAM_TYPES = {
    "lr": NUMBER, "momentum": {"type": "number", "minimum": 0, "exclusiveMaximum": 1},
    "decay_epochs": list_of(NON_NEGATIVE_INT), "decay": NUMBER,
    "keep": {"type": "number", "exclusiveMinimum": 0, "maximum": 1}, "F_scale": NON_NEGATIVE, "rp_k": NON_NEGATIVE,
    "erin_sign": BOOL, "double_mask": BOOL, "carry_remainder": BOOL, "sqrt_conv": BOOL,
    **{key: one_of(allowed) for key, allowed in CHOICES.items()},
}
SCHEMA = run_spec(
    rule=sorted(RULES), dataset=DATASETS,
    model={"properties": {"arch": one_of(ARCHS)},
           "allOf": [when("arch", arch, keys({"arch": {}, **opts})) for arch, opts in MODEL_OPTIONS.items()]},
    hparams=keys({key: HPARAM_TYPES[key] for key in HPARAMS}))


def resolved_hparams(spec: dict) -> dict:
    """Every hparam of ``spec`` with the original code's defaults filled in."""
    arch = spec["model"]["arch"]
    out = {k: default for k, (default, _) in HPARAMS.items()}
    out.update(keep=0.9 if arch == "fc" else 1.0, last_error="modulated" if arch == "fc" else "standard")
    out.update(spec["hparams"])
    return out


def validate(spec: dict) -> None:
    """Raise ``SpecError`` naming the first key of ``spec`` this impl cannot run (after ``SCHEMA``: only
    what depends on another key)."""
    model, rule = spec["model"], spec["rule"]
    arch = model["arch"]
    activation = model.get("activation", "relu")
    if activation != "relu" and rule not in TANH_RULES:
        raise SpecError(f"run spec: key 'model.activation' is {activation!r} for rule {rule!r}; "
                        f"only rules {', '.join(TANH_RULES)} have a tanh variant (PEPITA is ReLU only)")
    hp = resolved_hparams(spec)
    if hp["perturbation"] == "random" and rule != "pepita":
        raise SpecError("run spec: key 'hparams.perturbation' = 'random' applies to rule 'pepita' only")
    for key, only_rule, needed in (("double_mask", "pepita", "fc"), ("sqrt_conv", "pepita", "conv"),
                                   ("carry_remainder", None, "fc")):
        if hp[key] and (arch != needed or only_rule not in (None, rule)):
            who = f"rule '{only_rule}' with arch '{needed}'" if only_rule else f"arch '{needed}'"
            raise SpecError(f"run spec: key 'hparams.{key}' applies to {who} only")
    if arch == "conv" and hp["keep"] != 1.0:
        raise SpecError("run spec: key 'hparams.keep' must be 1 for arch 'conv' (the conv code uses no dropout)")
