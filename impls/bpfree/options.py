"""What a bpfree run spec may name (pure Python: imported when the workflow is parsed).

Caller: ``impls.common.specs.validate_spec`` for every bpfree spec: ``SCHEMA`` (built from the tables
below: rules, datasets, archs, model keys and hparams with their choices, types and ranges), then
``validate`` (the conv string, and how keys depend on each other and on the rule). Defaults
(``MODEL_DEFAULTS``, ``HPARAM_DEFAULTS``) are the Pathak repository's (papers/bpfree/README.md, "The original's
settings"); a spec only names what differs.
"""
from __future__ import annotations

from impls.bpfree import conv as convlib
from impls.common.errors import SpecError
from impls.common.option_schema import (BOOL, NON_NEGATIVE, POSITIVE_INT, STRING, keys, list_of, nullable, one_of,
                                        run_spec, when)

#: learning rules (papers/bpfree/README.md, "Rules"). Update equations: impls/rules/*.py, impls/bpfree/rules.py
RULES = {
    "bp": "backpropagation (exact gradient everywhere)",
    "dfa": "direct feedback alignment: δh_l = e B_lᵀ (impls.rules.dfa)",
    "drtp": "direct random target projection: δh_l = y B_lᵀ (impls.rules.drtp)",
    "cce": "local loss: softmax cross-entropy of a fixed random classifier h_l B_l per hidden layer",
    "mse": "local loss: squared error of g(h_l B_l) per hidden layer (g = tanh | sigmoid)",
    "fa": "feedback alignment: fixed random B_l in place of W_lᵀ in the backward pass (impls.rules.fa)",
}
ARCHS = ("mlp", "conv")      # conv: model.conv stack (impls.bpfree.conv) in front of model.hidden
TASKS = ("classification", "reconstruction")
ACTIVATIONS = ("tanh", "relu", "lrelu", "sigmoid", "swish")
FEEDBACK_INITS = ("ortho", "lecun", "uniform", "kaiming_uniform")
WEIGHT_INITS = ("ortho", "zero_hidden", "aligned")
SCALERS = ("standard", "minmax", "zscore", "zscore_channel")
UNBOUNDED_SCALERS = ("zscore", "zscore_channel")
OUTPUTS = ("softmax_cce", "sigmoid_bce")
OPTIMIZERS = ("adam", "rmsprop", "nag", "sgd")
DATASETS = ("digits", "fashion_mnist", "mnist", "kmnist", "cifar10", "cifar100")
#: rules whose fixed matrices are one B_l of shape (n_l, C) per hidden layer (``weight_init: aligned``)
ALIGNABLE_RULES = ("dfa", "drtp", "cce", "mse")
TRACKERS = ("bp_cosine", "weight_alignment", "local_loss", "gradients", "weights")

MODEL_DEFAULTS = {
    "task": "classification",   # or reconstruction (target = input, local MSE)
    "hidden": [500, 500, 500, 500, 500],
    "activation": "tanh",
    "batchnorm": False,          # Keras BN (momentum 0.99, eps 1e-3) after each hidden dense layer
    "dropout": 0.0,              # on each hidden output (after the local signal is taken)
    "input_dropout": 0.0,        # on the input (Nøkland's MNIST dropout variant uses 0.1)
    "feedback_init": "ortho",    # B_l: ortho | lecun | uniform (Nøkland) | kaiming_uniform (Frenkel)
    "weight_init": "ortho",      # ortho (Pathak) | zero_hidden (zero hidden and trained conv kernels, as dfa-torch
                                 #   for tanh/sigmoid)
                                 # | aligned (Pathak's aligned_init constant: W_l = B_{l-1} B_lᵀ for l >= 2, W_out = B_L)
    "scaler": "standard",        # standard: x -> 2x/max - 1 (Pathak); minmax: x/max; zscore: global mean/std;
                                 # zscore_channel: mean/std per colour channel (Frenkel's CIFAR-10)
    "output": "softmax_cce",     # classification head: softmax + CCE (Pathak) | sigmoid + BCE (Nøkland, Frenkel)
    "conv": "",                  # arch conv: conv stack in the papers' notation, e.g. "32c5-2p" (impls.bpfree.conv)
    "conv_trained": True,        # arch conv: false = conv kernels fixed at initialisation (Frenkel's "random" rows)
}
HPARAM_DEFAULTS = {
    "lr": 1.0e-4,
    "optimizer": "adam",         # adam (Keras eps 1e-7) | rmsprop (Nøkland) | nag (momentum 0.9, Frenkel) | sgd
    "momentum": 0.9,             # nag only
    "wd": 0.0,                   # weight decay wd·Σ½‖W‖² on kernels
    "trackers": [],              # "all" or a list of TRACKERS; every step, averaged per epoch; ignored by bp and fa
    "shuffle_buffer": None,      # None: full reshuffle each epoch; k: tf.data shuffle buffer of k (README figures: 128)
    "brightness": 0.0,           # max δ of per-example random brightness, clipped to the scaler range (README figures: 0.2)
    "early_stop_patience": None, # None: train every epoch; k: stop a run after k epochs without an improvement of the
    "early_stop_min_delta": 0.0, #   training error (%) by more than min_delta (Keras EarlyStopping; notebook stage 1)
    "lr_halving": False,         # true: halve the lr after every epoch whose training error did not fall (Nøkland's
                                 #   dfa-torch; impls.bpfree.schedules)
    "stop_train_error": None,    # None: off; k: stop a run once its training error (%) is <= k (dfa-torch: 0.01)
    "adversarial_eps": 0.0,      # 0: off; ε > 0: Nøkland's adversarial training (dfa-torch best MNIST: 0.08), each
                                 #   update ½ clean + ½ on x + ε·sign(∂L/∂x) clipped to the scaler range
                                 #   (impls.bpfree.adversarial)
}
RATE = {"type": "number", "minimum": 0, "exclusiveMaximum": 1}
#: what each model key and hparam accepts (keys: those of the defaults above)
MODEL_TYPES = {"task": one_of(TASKS), "hidden": list_of(POSITIVE_INT), "activation": one_of(ACTIVATIONS),
               "batchnorm": BOOL, "dropout": RATE, "input_dropout": RATE, "feedback_init": one_of(FEEDBACK_INITS),
               "weight_init": one_of(WEIGHT_INITS), "scaler": one_of(SCALERS), "output": one_of(OUTPUTS),
               "conv": STRING, "conv_trained": BOOL}
HPARAM_TYPES = {
    "lr": NON_NEGATIVE, "optimizer": one_of(OPTIMIZERS), "momentum": NON_NEGATIVE, "wd": NON_NEGATIVE,
    "trackers": {"anyOf": [{"const": "all"}, list_of(one_of(TRACKERS))]},
    "shuffle_buffer": nullable(POSITIVE_INT), "brightness": NON_NEGATIVE,
    "early_stop_patience": nullable(POSITIVE_INT), "early_stop_min_delta": NON_NEGATIVE, "lr_halving": BOOL,
    "stop_train_error": nullable({"type": "number", "minimum": 0, "exclusiveMaximum": 100}),
    "adversarial_eps": NON_NEGATIVE,
}
SCHEMA = run_spec(
    rule=sorted(RULES), dataset=DATASETS,
    model={**keys({"arch": one_of(ARCHS), **{key: MODEL_TYPES[key] for key in MODEL_DEFAULTS}}),
           # the hidden layers may be empty only behind a conv stack
           "allOf": [when("arch", "mlp", {"properties": {"hidden": list_of(POSITIVE_INT, non_empty=True)}})]},
    hparams=keys({key: HPARAM_TYPES[key] for key in HPARAM_DEFAULTS}))
#: what a conv net (arch conv) cannot be combined with: the trackers, aligned init and BN are defined
#: for the fully connected layers of Pathak's nets only
CONV_UNSUPPORTED = "model.batchnorm, model.weight_init 'aligned' and hparams.trackers"


def model_config(spec: dict) -> dict:
    return {**MODEL_DEFAULTS, **{k: v for k, v in spec["model"].items() if k != "arch"}}


def hparams(spec: dict) -> dict:
    return {**HPARAM_DEFAULTS, **spec["hparams"]}


def validate(spec: dict) -> None:
    """Raise ``SpecError`` naming the first key of ``spec`` this impl cannot run (after ``SCHEMA``: the
    conv string and what depends on another key)."""
    rule = spec["rule"]
    cfg, hp = model_config(spec), hparams(spec)
    _validate_conv(spec["model"]["arch"], cfg, hp)
    if cfg["weight_init"] == "aligned" and rule not in ALIGNABLE_RULES:
        raise SpecError(f"run spec: key 'model.weight_init' = 'aligned' needs a rule with one fixed B_l per hidden "
                        f"layer ({', '.join(ALIGNABLE_RULES)}); rule {rule!r} has none")
    if cfg["task"] == "reconstruction":
        if rule == "drtp":
            raise SpecError("run spec: rule 'drtp' cannot train model.task 'reconstruction': DRTP projects the "
                            "one-hot class target, which a reconstruction task does not have (the original code "
                            "forbids it too); use bp, dfa, fa or mse")
        if rule == "cce":
            raise SpecError("run spec: rule 'cce' cannot train model.task 'reconstruction' (its local classifier "
                            "needs class labels); use mse")
        if cfg["scaler"] in UNBOUNDED_SCALERS:
            raise SpecError(f"run spec: key 'model.scaler' is {cfg['scaler']!r}; reconstruction needs a bounded target "
                            "('standard' for a tanh output or 'minmax' for a sigmoid output)")
        if hp["lr_halving"] or hp["stop_train_error"] is not None:
            raise SpecError("run spec: keys 'hparams.lr_halving' / 'hparams.stop_train_error' monitor the training "
                            "error, which model.task 'reconstruction' does not have")
        if hp["early_stop_patience"] is not None:
            raise SpecError("run spec: key 'hparams.early_stop_patience' monitors the training error, which "
                            "model.task 'reconstruction' does not have")
    if hp["adversarial_eps"] and (cfg["task"] != "classification" or hp["trackers"]):
        raise SpecError("run spec: key 'hparams.adversarial_eps' needs model.task 'classification' (the sign of the "
                        "loss's input gradient) and no hparams.trackers (they are defined for clean batches only)")
    if hp["brightness"] and cfg["scaler"] in UNBOUNDED_SCALERS:
        raise SpecError("run spec: key 'hparams.brightness' needs a bounded pixel range to clip to; "
                        f"model.scaler {cfg['scaler']!r} has none (use 'standard' or 'minmax')")


def _validate_conv(arch: str, cfg: dict, hp: dict) -> None:
    if arch != "conv":
        if cfg["conv"] or cfg["conv_trained"] is not True:
            raise SpecError("run spec: keys 'model.conv' / 'model.conv_trained' need model.arch 'conv'")
        return
    try:
        layers = convlib.parse(cfg["conv"])
    except ValueError as err:
        raise SpecError(f"run spec: key 'model.conv' is {cfg['conv']!r}: {err}") from err
    if not any(isinstance(layer, convlib.ConvLayer) for layer in layers):
        raise SpecError(f"run spec: key 'model.conv' is {cfg['conv']!r}; arch 'conv' needs at least one "
                        "convolution (<filters>c<kernel>)")
    if cfg["task"] != "classification":
        raise SpecError("run spec: model.arch 'conv' supports model.task 'classification' only")
    if cfg["batchnorm"] or cfg["weight_init"] == "aligned" or hp["trackers"]:
        raise SpecError(f"run spec: model.arch 'conv' cannot be combined with {CONV_UNSUPPORTED}")
    if cfg["weight_init"] == "zero_hidden" and not cfg["conv_trained"]:
        raise SpecError("run spec: key 'model.weight_init' = 'zero_hidden' with model.conv_trained false would "
                        "fix the conv kernels at zero; use 'ortho'")


def trackers(spec: dict) -> tuple[str, ...]:
    """Trackers this run records: none for bp and fa (trackers exist for projected signals only, as the
    original's)."""
    if spec["rule"] in ("bp", "fa"):
        return ()
    value = hparams(spec)["trackers"]
    return TRACKERS if value == "all" else tuple(t for t in TRACKERS if t in value)
