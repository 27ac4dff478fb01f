"""What a pepita run spec may name (pure Python: imported when the workflow is parsed).

Caller: ``impls.common.specs.validate_spec`` for every pepita spec, and ``impls.pepita.stacked``
(``resolved_hparams`` fills in the defaults below, which are the original code's).
"""
from __future__ import annotations

from impls.common.errors import SpecError

#: learning rules; update equations in impls/pepita/rules.py and impls/rules_torch/*.py
RULES = {
    "pepita": "PEPITA: two forward passes, input modulated by the output error (spec §2.2, §2.3)",
    "bp": "backpropagation (FC: η inside the momentum; conv: torch SGD on cross-entropy)",
    "fa": "feedback alignment, fixed random feedback B_l ~ U(±√(6/n_l))",
    "drtp": "direct random target projection (Frenkel et al. 2021)",
}
ARCHS = ("fc", "conv")
DATASETS = ("digits", "fashion_mnist", "mnist", "cifar10", "cifar100")
MODEL_KEYS = {"fc": {"arch", "hidden", "activation"}, "conv": {"arch", "channels", "kernel", "pool"}}
#: FC hidden nonlinearity: ReLU everywhere in the original; tanh for the BP/FA/DRTP baselines
#: (spec §2.4 variant ``drtp_tanh``: DRTP as Frenkel et al. ran it, with bounded units)
ACTIVATIONS = ("relu", "tanh")
TANH_RULES = ("bp", "fa", "drtp")

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
}
CHOICES = {"last_error": ("modulated", "standard"), "perturbation": ("error", "random"),
           "rp_noise": ("normal", "uniform"), "modulated_product": ("factored", "direct"),
           "F_init": ("he", "nok")}


def _allowed(key: str, value, allowed) -> SpecError:
    return SpecError(f"run spec: key '{key}' is {value!r}; allowed values: {', '.join(map(repr, allowed))}")


def resolved_hparams(spec: dict) -> dict:
    """Every hparam of ``spec`` with the original code's defaults filled in."""
    arch = spec["model"]["arch"]
    out = {k: default for k, (default, _) in HPARAMS.items()}
    out.update(keep=0.9 if arch == "fc" else 1.0, last_error="modulated" if arch == "fc" else "standard")
    out.update(spec["hparams"])
    return out


def _positive_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def validate(spec: dict) -> None:
    """Raise ``SpecError`` naming the first key of ``spec`` this impl cannot run."""
    if spec["rule"] not in RULES:
        raise _allowed("rule", spec["rule"], sorted(RULES))
    if spec["dataset"] not in DATASETS:
        raise _allowed("dataset", spec["dataset"], DATASETS)
    model = spec["model"]
    arch = model["arch"]
    if arch not in ARCHS:
        raise _allowed("model.arch", arch, ARCHS)
    extra = set(model) - MODEL_KEYS[arch]
    if extra:
        raise SpecError(f"run spec: unknown key 'model.{sorted(extra)[0]}'; allowed keys for arch {arch!r}: "
                        f"{', '.join(sorted(MODEL_KEYS[arch]))}")
    if arch == "fc":
        hidden = model.get("hidden", [1024])
        if not isinstance(hidden, list) or not hidden or not all(_positive_int(h) for h in hidden):
            raise SpecError(f"run spec: key 'model.hidden' is {hidden!r}; expected a non-empty list of positive integers")
        activation = model.get("activation", "relu")
        if activation not in ACTIVATIONS:
            raise _allowed("model.activation", activation, ACTIVATIONS)
        if activation != "relu" and spec["rule"] not in TANH_RULES:
            raise SpecError(f"run spec: key 'model.activation' is {activation!r} for rule {spec['rule']!r}; "
                            f"only rules {', '.join(TANH_RULES)} have a tanh variant (PEPITA is ReLU only)")
    else:
        for key in ("channels", "kernel", "pool"):
            if key in model and not _positive_int(model[key]):
                raise SpecError(f"run spec: key 'model.{key}' is {model[key]!r}; expected a positive integer")
    extra = set(spec["hparams"]) - set(HPARAMS)
    if extra:
        raise SpecError(f"run spec: unknown key 'hparams.{sorted(extra)[0]}'; allowed keys: {', '.join(sorted(HPARAMS))}")
    hp = resolved_hparams(spec)
    for key, allowed in CHOICES.items():
        if hp[key] not in allowed:
            raise _allowed(f"hparams.{key}", hp[key], allowed)
    if not (isinstance(hp["decay_epochs"], list) and all(isinstance(e, int) and e >= 0 for e in hp["decay_epochs"])):
        raise SpecError(f"run spec: key 'hparams.decay_epochs' is {hp['decay_epochs']!r}; expected a list of epochs >= 0")
    if not 0 < hp["keep"] <= 1:
        raise SpecError(f"run spec: key 'hparams.keep' is {hp['keep']!r}; expected 0 < keep <= 1")
    if hp["F_scale"] < 0 or hp["rp_k"] < 0 or not 0 <= hp["momentum"] < 1:
        raise SpecError("run spec: keys 'hparams.F_scale', 'hparams.rp_k' must be >= 0 and 'hparams.momentum' in [0, 1)")
    if hp["perturbation"] == "random" and spec["rule"] != "pepita":
        raise SpecError("run spec: key 'hparams.perturbation' = 'random' applies to rule 'pepita' only")
    for key, rule, needed in (("double_mask", "pepita", "fc"), ("sqrt_conv", "pepita", "conv"),
                              ("carry_remainder", None, "fc")):
        if not isinstance(hp[key], bool):
            raise SpecError(f"run spec: key 'hparams.{key}' is {hp[key]!r}; expected true or false")
        if hp[key] and (arch != needed or rule not in (None, spec["rule"])):
            who = f"rule '{rule}' with arch '{needed}'" if rule else f"arch '{needed}'"
            raise SpecError(f"run spec: key 'hparams.{key}' applies to {who} only")
    if arch == "conv" and hp["keep"] != 1.0:
        raise SpecError("run spec: key 'hparams.keep' must be 1 for arch 'conv' (the conv code uses no dropout)")
