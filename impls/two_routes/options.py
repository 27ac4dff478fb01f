"""What a two_routes run spec may name (pure Python: imported when the workflow is parsed).

Caller: ``impls.common.specs.validate_spec`` for every two_routes spec: ``SCHEMA`` (built from the
tables below: rules, datasets, archs, model keys and hparams with their choices, types and ranges),
then ``validate`` (how keys depend on each other and on the rule and arch). Defaults follow the original
(papers/two_routes/README.md, "Objective", "Training protocol at paper scale"): Nesterov momentum 0.9, warm-up then
×0.1 steps, L2 1e-4 on forward weights only, one optimiser for W and B, rule coefficients from
``impls.two_routes.rules`` unless alpha/beta/gamma say otherwise.
"""
from __future__ import annotations

from impls.common.errors import SpecError
from impls.common.option_schema import (BOOL, NON_NEGATIVE, NUMBER, POSITIVE, POSITIVE_INT, keys, list_of, nullable,
                                        one_of, run_spec)

#: rule -> one line (update equations: impls/two_routes/rules.py)
RULES = {
    "bp": "backprop: δx = Wᵀδ",
    "fa": "feedback alignment: δx = Bδ, B fixed",
    "wm": "weight mirror: R = α·decay + β·amp (α = β = 1e-3)",
    "ia": "information alignment: R = α·amp + β·null + γ·decay (2e-3, 1e-3, 1e-3)",
    "sa": "symmetric alignment: R = α·decay + β·self (1e-3, 2e-3)",
    "aa": "activation alignment: R = α·sparse + β·amp (1e-3, 2e-3)",
    "kp": "Kolen-Pollack: B gets W's task gradient, R = α·decay (1e-3)",
    "kp_equal_leak": "Kolen-Pollack with matched leaks (α = 5e-5)",
}
#: rule -> its named coefficients at the code's defaults (impls.two_routes.rules' signatures; tested to agree)
DEFAULT_COEFFICIENTS = {"bp": {}, "fa": {}, "wm": {"alpha": 1e-3, "beta": 1e-3},
                        "ia": {"alpha": 2e-3, "beta": 1e-3, "gamma": 1e-3}, "sa": {"alpha": 1e-3, "beta": 2e-3},
                        "aa": {"alpha": 1e-3, "beta": 2e-3}, "kp": {"alpha": 1e-3}, "kp_equal_leak": {"alpha": 5e-5}}
#: rule -> its named coefficients (the keys of rules.AlignmentRule.coefficients; tested to agree)
RULE_COEFFICIENTS = {rule: tuple(coefficients) for rule, coefficients in DEFAULT_COEFFICIENTS.items()}
COEFFICIENTS = ("alpha", "beta", "gamma")
#: per-coefficient schedule (impls.two_routes.schedules): suffix -> default (the original code's flag defaults)
SCHEDULE_FIELDS = {
    "start": 0.0,             # fraction of training where the coefficient becomes non-zero
    "stop": 1.0,              # fraction of training after which it is zero again
    "cycle": None,            # period (epochs) of a triangular cycle; None = no cycle
    "schedule_rate": 0.0,     # growth (> 0) or decay (< 0) rate in the non-zero regime
    "schedule_type": "none",  # none | linear | exponential
}
SCHEDULE_TYPES = ("none", "linear", "exponential")
#: what each schedule field accepts
SCHEDULE_FIELD_TYPES = {"start": {"type": "number", "minimum": 0, "maximum": 1},
                        "stop": {"type": "number", "minimum": 0, "maximum": 1},
                        "cycle": nullable(POSITIVE), "schedule_rate": NUMBER, "schedule_type": one_of(SCHEDULE_TYPES)}


def schedule_keys() -> dict:
    """hparams keys of every coefficient schedule with their defaults: alpha_start, ..., gamma_schedule_type."""
    return {f"{c}_{f}": d for c in COEFFICIENTS for f, d in SCHEDULE_FIELDS.items()}


ARCHS = ("resnet", "linear", "fc")
STEMS = ("cifar", "imagenet")
VERSIONS = (1, 2)
FC_ACTIVATIONS = ("sigmoid", "tanh", "relu")
DATASETS = ("digits", "fashion_mnist", "imagenet")
MODEL_DEFAULTS = {
    "depth": 8,          # resnet: 6n+2 (stem cifar) or 18/34/50/101/152 (stem imagenet)
    "stem": "cifar",     # cifar (3x3 stem, 3 stages) | imagenet (7x7/2 stem + max-pool, 4 stages)
    "width": 4,          # width of the first stage (64 for the ImageNet ResNets)
    "version": 1,        # 1 (TPU ResNet-v1) | 2 (pre-activation ResNet-v2)
    "n_in": 64,          # linear (fixed-point) layer only
    "n_out": 32,
    "image_size": 224,   # imagenet only: 224 (v1; the original ran v2 at 299)
    "hidden": [32],      # fc only: hidden widths (smoke size FC 64-32-10)
    "activation": "sigmoid",  # fc only: hidden nonlinearity (sigmoid | tanh | relu; the original's default sigmoid)
}
#: R-only switches of the original code (papers/two_routes/README.md, "Options"; impls.two_routes.projections), all
#: off = the original at its flag defaults except use_bias_*, whose original default is True
#: (papers/two_routes/README.md, deviations)
REGULARIZER_FLAGS = ("activation_forward", "activation_backward", "use_bias_forward", "use_bias_backward",
                     "center_input", "normalize_input", "batch_center_backward_input", "batch_center_forward_output",
                     "center_forward_output", "normalize_forward_output", "center_backward_output",
                     "normalize_backward_output")
#: IA switches of the original code (README "Options"; impls.two_routes.rules.information_alignment)
IA_FLAGS = ("reconstruction_amp", "reconstruction_reversal", "use_sparse")
HPARAM_DEFAULTS = {
    "lr": 0.1,                    # peak learning rate (paper: 0.1 at batch 256 [recalled, unverified])
    "momentum": 0.9,              # Nesterov, fixed in the original code
    "wd": 1.0e-4,                 # L2 gradient wd·W on forward kernels and the FC bias (not BN, not B)
    "warmup_epochs": 5.0,         # linear warm-up from 0
    "decay_epochs": [30, 60, 80],  # lr ×0.1 at each
    "alpha": None, "beta": None, "gamma": None,   # rule coefficients (None = rule default)
    "input_distribution": "none",  # none | normal | uniform: noise replaces x inside R only
    "input_stddev": 1.0,
    "noise_var": 0.0,             # NoisyOptimizer: after each update add lr_t·ξ, ξ ~ N(0, v)
    "noise_target": "backward",   # backward (B only; always for KP) | all (every updated variable)
    "optimizer_split": "single",  # single (W and B share one optimiser) | separate (B: own momentum, b_lr)
    "b_lr": 0.1,                  # separate only: constant lr of B's optimiser
    "metric_every": 1,            # alignment metrics every N epochs (and at epoch 0)
    "inputs": "white",            # linear only: white | data
    "steps_per_epoch": 50,        # linear only: B-only SGD steps per logged "epoch"
    # rate schedule (impls.two_routes.schedules): L = ρ_task·(CE + L2) + ρ_align·ΣR
    "delay_epochs": None,         # ρ_task = 0 for this many epochs (B pre-aligns); lr schedule shifted by it
    "alternate_step_freq": None,  # k: one alignment-only step after every k task-only steps; lr milestones ×(k+1)
    "constant_rate": True,        # False: both rates ×1, 0.1, 0.01, 0.001 from epochs 5, 30, 60, 80
    # per-coefficient schedules: {alpha,beta,gamma}_{start,stop,cycle,schedule_rate,schedule_type}
    **schedule_keys(),
    **{flag: False for flag in REGULARIZER_FLAGS},
    **{flag: False for flag in IA_FLAGS},
}


#: named hparam choices
CHOICES = {"input_distribution": ("none", "normal", "uniform"), "noise_target": ("backward", "all"),
           "optimizer_split": ("single", "separate"), "inputs": ("white", "data")}
#: what each model key and hparam accepts (the resnet depth per stem: ``validate``)
MODEL_TYPES = {"depth": POSITIVE_INT, "stem": one_of(STEMS), "width": POSITIVE_INT, "version": one_of(VERSIONS),
               "n_in": POSITIVE_INT, "n_out": POSITIVE_INT, "image_size": POSITIVE_INT,
               "hidden": list_of(POSITIVE_INT, non_empty=True), "activation": one_of(FC_ACTIVATIONS)}
HPARAM_TYPES = {
    **{key: NON_NEGATIVE for key in ("lr", "momentum", "wd", "warmup_epochs", "input_stddev", "noise_var", "b_lr")},
    **{key: nullable(NON_NEGATIVE) for key in COEFFICIENTS},
    "decay_epochs": list_of(NON_NEGATIVE), "metric_every": POSITIVE_INT, "steps_per_epoch": POSITIVE_INT,
    "delay_epochs": nullable(NON_NEGATIVE), "alternate_step_freq": nullable(POSITIVE_INT),
    **{f"{c}_{f}": SCHEDULE_FIELD_TYPES[f] for c in COEFFICIENTS for f in SCHEDULE_FIELDS},
    **{flag: BOOL for flag in ("constant_rate",) + REGULARIZER_FLAGS + IA_FLAGS},
    **{key: one_of(allowed) for key, allowed in CHOICES.items()},
}
SCHEMA = run_spec(
    rule=sorted(RULES), dataset=DATASETS,
    model=keys({"arch": one_of(ARCHS), **{key: MODEL_TYPES[key] for key in MODEL_DEFAULTS}}),
    hparams=keys({key: HPARAM_TYPES[key] for key in HPARAM_DEFAULTS}))


def model_config(spec: dict) -> dict:
    return {**MODEL_DEFAULTS, **spec["model"]}


def hparams(spec: dict) -> dict:
    return {**HPARAM_DEFAULTS, **spec["hparams"]}


def recorded(spec: dict) -> dict:
    """The effective value of every option of the original code added here (README "Options": schedules, rates, R-only
    and IA switches), for train.json; the model block with its defaults filled in."""
    hp = hparams(spec)
    keys = ["delay_epochs", "alternate_step_freq", "constant_rate", *schedule_keys(), *REGULARIZER_FLAGS, *IA_FLAGS]
    return {"hparams": {k: hp[k] for k in keys}, "model": model_config(spec)}


def validate(spec: dict) -> None:
    """Raise ``SpecError`` naming the first key of ``spec`` this impl cannot run (after ``SCHEMA``: only
    what depends on another key)."""
    model, cfg = spec["model"], model_config(spec)
    if model["arch"] == "resnet":
        depth = cfg["depth"]
        ok = (depth - 2) % 6 == 0 and depth >= 8 if cfg["stem"] == "cifar" else depth in (18, 34, 50, 101, 152)
        if not ok:
            raise SpecError(f"run spec: key 'model.depth' is {depth!r}; stem {cfg['stem']} needs "
                            + ("6n+2 (8, 14, 20, ...)" if cfg["stem"] == "cifar" else "18, 34, 50, 101 or 152"))
    elif model["arch"] == "linear" and spec["rule"] not in ("wm", "ia", "sa", "aa"):
        raise SpecError(f"run spec: key 'rule' is {spec['rule']!r}; model.arch 'linear' (B-only fixed-point "
                        f"dynamics) needs wm, ia, sa or aa")
    hp = hparams(spec)
    _validate_schedules(spec["rule"], hp)
    _validate_rates_and_switches(spec, hp)


def _validate_schedules(rule: str, hp: dict) -> None:
    for c in COEFFICIENTS:
        if hp[f"{c}_start"] > hp[f"{c}_stop"]:
            raise SpecError(f"run spec: key 'hparams.{c}_start' is {hp[f'{c}_start']!r}; expected at most "
                            f"hparams.{c}_stop ({hp[f'{c}_stop']!r})")
    used = [k for k in schedule_keys() if k in hp and hp[k] != schedule_keys()[k]]
    if used:
        own = RULE_COEFFICIENTS[rule]
        for key in used:
            if key.split("_")[0] not in own:
                raise SpecError(f"run spec: key 'hparams.{key}' schedules a coefficient rule {rule!r} does not have; "
                                f"its coefficients: {', '.join(own) or 'none'}")


def _validate_rates_and_switches(spec: dict, hp: dict) -> None:
    for flag in IA_FLAGS:
        if hp[flag] and spec["rule"] != "ia":
            raise SpecError(f"run spec: key 'hparams.{flag}' is True; it is an information-alignment switch "
                            f"(rule 'ia'), not for rule {spec['rule']!r}")
    if spec["model"]["arch"] == "linear":
        for flag in ("delay_epochs", "alternate_step_freq", "constant_rate") + REGULARIZER_FLAGS + IA_FLAGS:
            if hp[flag] != HPARAM_DEFAULTS[flag]:
                raise SpecError(f"run spec: key 'hparams.{flag}' is {hp[flag]!r}; model.arch 'linear' (B-only "
                                f"fixed-point dynamics, no task loss) takes only the coefficient schedules")
