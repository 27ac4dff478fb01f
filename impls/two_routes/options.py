"""What a two_routes run spec may name (pure Python: imported when the workflow is parsed).

Caller: ``impls.common.specs.validate_spec`` for every two_routes spec. Defaults are the spec's
(§2.2, §3): Nesterov momentum 0.9, warm-up then ×0.1 steps, L2 1e-4 on forward weights only, one
optimiser for W and B, rule coefficients from ``impls.two_routes.rules`` unless alpha/beta/gamma say otherwise.
"""
from __future__ import annotations

from impls.common.errors import SpecError

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
ARCHS = ("resnet", "linear")
DATASETS = ("digits", "fashion_mnist", "imagenet")
MODEL_DEFAULTS = {
    "depth": 8,          # resnet: 6n+2 (stem cifar) or 18/34/50/101/152 (stem imagenet)
    "stem": "cifar",     # cifar (3x3 stem, 3 stages) | imagenet (7x7/2 stem + max-pool, 4 stages)
    "width": 4,          # width of the first stage (64 for the ImageNet ResNets)
    "version": 1,        # 1 (TPU ResNet-v1) | 2 (pre-activation ResNet-v2)
    "n_in": 64,          # linear (fixed-point) layer only
    "n_out": 32,
    "image_size": 224,   # imagenet only: 224 (v1; the original ran v2 at 299)
}
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
}


def _allowed(key, value, allowed):
    return SpecError(f"run spec: key '{key}' is {value!r}; allowed values: {', '.join(map(repr, allowed))}")


def model_config(spec: dict) -> dict:
    return {**MODEL_DEFAULTS, **{k: v for k, v in spec["model"].items() if k != "arch"}}


def hparams(spec: dict) -> dict:
    return {**HPARAM_DEFAULTS, **spec["hparams"]}


def validate(spec: dict) -> None:
    """Raise ``SpecError`` naming the first key of ``spec`` this impl cannot run."""
    if spec["rule"] not in RULES:
        raise _allowed("rule", spec["rule"], sorted(RULES))
    if spec["dataset"] not in DATASETS:
        raise _allowed("dataset", spec["dataset"], DATASETS)
    model = spec["model"]
    if model["arch"] not in ARCHS:
        raise _allowed("model.arch", model["arch"], ARCHS)
    extra = set(model) - set(MODEL_DEFAULTS) - {"arch"}
    if extra:
        raise SpecError(f"run spec: unknown key 'model.{sorted(extra)[0]}'; allowed keys: "
                        f"{', '.join(sorted(set(MODEL_DEFAULTS) | {'arch'}))}")
    cfg = model_config(spec)
    if cfg["stem"] not in ("cifar", "imagenet"):
        raise _allowed("model.stem", cfg["stem"], ("cifar", "imagenet"))
    if cfg["version"] not in (1, 2):
        raise _allowed("model.version", cfg["version"], (1, 2))
    if model["arch"] == "resnet":
        depth = cfg["depth"]
        ok = (depth - 2) % 6 == 0 and depth >= 8 if cfg["stem"] == "cifar" else depth in (18, 34, 50, 101, 152)
        if not ok:
            raise SpecError(f"run spec: key 'model.depth' is {depth!r}; stem {cfg['stem']} needs "
                            + ("6n+2 (8, 14, 20, ...)" if cfg["stem"] == "cifar" else "18, 34, 50, 101 or 152"))
    elif spec["rule"] not in ("wm", "ia", "sa", "aa"):
        raise SpecError(f"run spec: key 'rule' is {spec['rule']!r}; model.arch 'linear' (B-only fixed-point "
                        f"dynamics) needs wm, ia, sa or aa")
    extra = set(spec["hparams"]) - set(HPARAM_DEFAULTS)
    if extra:
        raise SpecError(f"run spec: unknown key 'hparams.{sorted(extra)[0]}'; allowed keys: "
                        f"{', '.join(sorted(HPARAM_DEFAULTS))}")
    hp = hparams(spec)
    for key, allowed in (("input_distribution", ("none", "normal", "uniform")),
                         ("noise_target", ("backward", "all")), ("optimizer_split", ("single", "separate")),
                         ("inputs", ("white", "data"))):
        if hp[key] not in allowed:
            raise _allowed(f"hparams.{key}", hp[key], allowed)
    for key in ("lr", "momentum", "wd", "warmup_epochs", "input_stddev", "noise_var", "b_lr"):
        if not isinstance(hp[key], (int, float)) or hp[key] < 0:
            raise SpecError(f"run spec: key 'hparams.{key}' is {hp[key]!r}; expected a non-negative number")
    for key in ("alpha", "beta", "gamma"):
        if hp[key] is not None and (not isinstance(hp[key], (int, float)) or hp[key] < 0):
            raise SpecError(f"run spec: key 'hparams.{key}' is {hp[key]!r}; expected null or a non-negative number")
    if not isinstance(hp["decay_epochs"], list):
        raise SpecError(f"run spec: key 'hparams.decay_epochs' is {hp['decay_epochs']!r}; expected a list of epochs")
    for key in ("metric_every", "steps_per_epoch"):
        if not isinstance(hp[key], int) or hp[key] < 1:
            raise SpecError(f"run spec: key 'hparams.{key}' is {hp[key]!r}; expected a positive integer")
