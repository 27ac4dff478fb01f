"""What a bpfree run spec may name (pure Python: imported when the workflow is parsed).

Caller: ``impls.common.specs.validate_spec`` for every bpfree spec. Defaults (``MODEL_DEFAULTS``,
``HPARAM_DEFAULTS``) are the Pathak repository's (spec §2.1–2.3); a spec only names what differs.
"""
from __future__ import annotations

from impls.bpfree import conv as convlib
from impls.common.errors import SpecError

#: learning rules (spec §2.3 table; FA from §2.4). Update equations: impls/rules/*.py, impls/bpfree/rules.py
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
#: what a conv net (arch conv) cannot be combined with: the trackers, aligned init and BN are defined
#: for the fully connected layers of Pathak's nets only
CONV_UNSUPPORTED = "model.batchnorm, model.weight_init 'aligned' and hparams.trackers"


def _allowed(key: str, value, allowed) -> SpecError:
    return SpecError(f"run spec: key '{key}' is {value!r}; allowed values: {', '.join(map(repr, allowed))}")


def model_config(spec: dict) -> dict:
    return {**MODEL_DEFAULTS, **{k: v for k, v in spec["model"].items() if k != "arch"}}


def hparams(spec: dict) -> dict:
    return {**HPARAM_DEFAULTS, **spec["hparams"]}


def validate(spec: dict) -> None:
    """Raise ``SpecError`` naming the first key of ``spec`` this impl cannot run."""
    rule = spec["rule"]
    if rule not in RULES:
        raise _allowed("rule", rule, sorted(RULES))
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
    hidden = cfg["hidden"]
    if not isinstance(hidden, list) or not all(isinstance(h, int) and h > 0 for h in hidden) or (
            not hidden and model["arch"] != "conv"):
        raise SpecError(f"run spec: key 'model.hidden' is {hidden!r}; expected a non-empty list of positive integers "
                        "(may be empty for arch conv)")
    _validate_conv(model["arch"], cfg, hparams(spec))
    for key, allowed in (("task", TASKS), ("activation", ACTIVATIONS), ("feedback_init", FEEDBACK_INITS),
                         ("weight_init", WEIGHT_INITS), ("scaler", SCALERS), ("output", OUTPUTS)):
        if cfg[key] not in allowed:
            raise _allowed(f"model.{key}", cfg[key], allowed)
    if cfg["weight_init"] == "aligned" and rule not in ALIGNABLE_RULES:
        raise SpecError(f"run spec: key 'model.weight_init' = 'aligned' needs a rule with one fixed B_l per hidden "
                        f"layer ({', '.join(ALIGNABLE_RULES)}); rule {rule!r} has none")
    if not isinstance(cfg["batchnorm"], bool):
        raise SpecError(f"run spec: key 'model.batchnorm' is {cfg['batchnorm']!r}; expected true or false")
    for key in ("dropout", "input_dropout"):
        if not (isinstance(cfg[key], (int, float)) and 0.0 <= cfg[key] < 1.0):
            raise SpecError(f"run spec: key 'model.{key}' is {cfg[key]!r}; expected a rate in [0, 1)")
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
    extra = set(spec["hparams"]) - set(HPARAM_DEFAULTS)
    if extra:
        raise SpecError(f"run spec: unknown key 'hparams.{sorted(extra)[0]}'; allowed keys: "
                        f"{', '.join(sorted(HPARAM_DEFAULTS))}")
    hp = hparams(spec)
    if hp["optimizer"] not in OPTIMIZERS:
        raise _allowed("hparams.optimizer", hp["optimizer"], OPTIMIZERS)
    trackers = hp["trackers"]
    if trackers != "all" and (not isinstance(trackers, list) or any(t not in TRACKERS for t in trackers)):
        raise SpecError(f"run spec: key 'hparams.trackers' is {trackers!r}; expected 'all' or a list of "
                        f"{', '.join(TRACKERS)}")
    for key in ("lr", "momentum", "wd", "brightness"):
        if not isinstance(hp[key], (int, float)) or isinstance(hp[key], bool) or hp[key] < 0:
            raise SpecError(f"run spec: key 'hparams.{key}' is {hp[key]!r}; expected a non-negative number")
    patience = hp["early_stop_patience"]
    if patience is not None and (not isinstance(patience, int) or isinstance(patience, bool) or patience < 1):
        raise SpecError(f"run spec: key 'hparams.early_stop_patience' is {patience!r}; expected null (off) "
                        "or a positive integer")
    if not isinstance(hp["early_stop_min_delta"], (int, float)) or hp["early_stop_min_delta"] < 0:
        raise SpecError(f"run spec: key 'hparams.early_stop_min_delta' is {hp['early_stop_min_delta']!r}; "
                        "expected a non-negative number")
    if not isinstance(hp["lr_halving"], bool):
        raise SpecError(f"run spec: key 'hparams.lr_halving' is {hp['lr_halving']!r}; expected true or false")
    threshold = hp["stop_train_error"]
    if threshold is not None and (not isinstance(threshold, (int, float)) or isinstance(threshold, bool)
                                  or not 0 <= threshold < 100):
        raise SpecError(f"run spec: key 'hparams.stop_train_error' is {threshold!r}; expected null (off) or a "
                        "training error in percent, 0 <= k < 100")
    if cfg["task"] == "reconstruction" and (hp["lr_halving"] or threshold is not None):
        raise SpecError("run spec: keys 'hparams.lr_halving' / 'hparams.stop_train_error' monitor the training "
                        "error, which model.task 'reconstruction' does not have")
    if patience is not None and cfg["task"] == "reconstruction":
        raise SpecError("run spec: key 'hparams.early_stop_patience' monitors the training error, which "
                        "model.task 'reconstruction' does not have")
    eps = hp["adversarial_eps"]
    if not isinstance(eps, (int, float)) or isinstance(eps, bool) or eps < 0:
        raise SpecError(f"run spec: key 'hparams.adversarial_eps' is {eps!r}; expected 0 (off) or a positive number")
    if eps and (cfg["task"] != "classification" or hp["trackers"]):
        raise SpecError("run spec: key 'hparams.adversarial_eps' needs model.task 'classification' (the sign of the "
                        "loss's input gradient) and no hparams.trackers (they are defined for clean batches only)")
    buffer = hp["shuffle_buffer"]
    if buffer is not None and (not isinstance(buffer, int) or isinstance(buffer, bool) or buffer < 1):
        raise SpecError(f"run spec: key 'hparams.shuffle_buffer' is {buffer!r}; expected null (full shuffle) "
                        "or a positive integer")
    if hp["brightness"] and cfg["scaler"] in UNBOUNDED_SCALERS:
        raise SpecError("run spec: key 'hparams.brightness' needs a bounded pixel range to clip to; "
                        f"model.scaler {cfg['scaler']!r} has none (use 'standard' or 'minmax')")


def _validate_conv(arch: str, cfg: dict, hp: dict) -> None:
    if not isinstance(cfg["conv"], str):
        raise SpecError(f"run spec: key 'model.conv' is {cfg['conv']!r}; expected a string such as '32c5-2p'")
    if not isinstance(cfg["conv_trained"], bool):
        raise SpecError(f"run spec: key 'model.conv_trained' is {cfg['conv_trained']!r}; expected true or false")
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
    """Trackers this run records: none for bp and fa (spec §5: trackers exist for projected signals only)."""
    if spec["rule"] in ("bp", "fa"):
        return ()
    value = hparams(spec)["trackers"]
    return TRACKERS if value == "all" else tuple(t for t in TRACKERS if t in value)
