"""What a nodepert run spec may name (pure Python: imported when the workflow is parsed).

Caller: ``impls.common.specs.validate_spec`` for every nodepert spec, and ``impls.nodepert.train``
(``hidden_sizes``, ``optimizer_kind``).
"""
from __future__ import annotations

from impls.common.errors import SpecError

#: learning rules; see impls/nodepert/rules.py for the estimators and train.py for the optimisers.
#: The paper's defaults come first, then the named variants of spec §2.4.
RULES = {
    "np": "node perturbation, paper-era estimator: one noise vector per layer shared by the minibatch",
    "np_indep_noise": "node perturbation with independent noise per example",
    "sgd": "exact minibatch gradient (backprop) of the same loss",
    "np_clean_pre": "np with clean presynaptic activity h_{l-1} instead of the noisy pass's",
    "np_batch_scalar": "np with one scalar batch delta-loss: g_W = (dL/sigma^2) xi mean_i(h_i)^T (2023 HEAD, not the paper)",
    "np_wd": "np, then weight decay not scaled by lr: W <- W - lr g - wd W",
    "sgd_wd": "sgd, then weight decay not scaled by lr: W <- W - lr g - wd W",
    "np_adam": "np estimate fed to Adam(lr, b1 .9, b2 .999, eps 1e-8)",
    "sgd_adam": "exact gradient fed to Adam(lr, b1 .9, b2 .999, eps 1e-8)",
}
#: ``mlp`` (impls.nodepert.models) or a conv net (impls.nodepert.convnets: ``conv_base``, ``allcnn_a``)
ARCHS = ("mlp", "conv_base", "allcnn_a")
CONV_ARCHS = ("conv_base", "allcnn_a")
#: estimators that exist for conv nets (any optimiser suffix allowed)
CONV_ESTIMATORS = ("np", "np_indep_noise", "sgd")
ACTIVATIONS = ("relu", "linear")
DATASETS = ("digits", "fashion_mnist", "mnist", "cifar10")
HPARAMS = {"lr", "sigma", "wd", "stop_at_test_acc", "linesearch_steps", "linesearch_batches",
           "snapshot_every", "replay_epochs"}
#: crash-dynamics replay (spec §3 "crash_dynamics", impls.nodepert.replay): parameters are kept
#: every ``snapshot_every`` epochs until the first crash; ``evaluate`` replays ``replay_epochs``
#: epochs from the last one, logging after every minibatch
REPLAY_HPARAMS = ("snapshot_every", "replay_epochs")
#: line-search analysis (spec §3 "linesearch"): step sizes logspace(LOG10_MIN, LOG10_MAX, steps)
LINESEARCH_LOG10_RANGE = (-4.0, 1.0)
#: hidden = explicit list of widths, or n_hl x width (the depth/width sweeps' factors)
MODEL_KEYS = {"arch", "hidden", "n_hl", "width", "activation", "channel_scale"}


def estimator_name(rule: str) -> str:
    """The gradient estimator of a rule: ``np_adam`` -> ``np``, ``sgd_wd`` -> ``sgd``."""
    for suffix in ("_adam", "_wd"):
        if rule.endswith(suffix):
            return rule[: -len(suffix)]
    return rule


def optimizer_kind(rule: str) -> str:
    """``sgd`` (plain, the paper), ``sgd_wd`` (plus unscaled weight decay) or ``adam``."""
    if rule.endswith("_adam"):
        return "adam"
    return "sgd_wd" if rule.endswith("_wd") else "sgd"


def hidden_sizes(model: dict) -> list[int]:
    """Hidden widths of an MLP spec: ``hidden``, or ``[width] * n_hl``."""
    if "n_hl" in model:
        return [model["width"]] * model["n_hl"]
    return list(model.get("hidden", []))


def _allowed(key: str, value, allowed) -> SpecError:
    return SpecError(f"run spec: key '{key}' is {value!r}; allowed values: {', '.join(map(repr, allowed))}")


def _positive_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def validate(spec: dict) -> None:
    """Raise ``SpecError`` naming the first key of ``spec`` this impl cannot run."""
    rule = spec["rule"]
    if rule not in RULES:
        raise _allowed("rule", rule, list(RULES))
    if spec["dataset"] not in DATASETS:
        raise _allowed("dataset", spec["dataset"], DATASETS)
    model = spec["model"]
    if model["arch"] not in ARCHS:
        raise _allowed("model.arch", model["arch"], ARCHS)
    extra = set(model) - MODEL_KEYS
    if extra:
        raise SpecError(f"run spec: unknown key 'model.{sorted(extra)[0]}'; allowed keys: {', '.join(sorted(MODEL_KEYS))}")
    if model["arch"] in CONV_ARCHS:
        _validate_conv(spec)
    elif "channel_scale" in model:
        raise SpecError("run spec: key 'model.channel_scale' is only for the conv archs " + ", ".join(CONV_ARCHS))
    if ("n_hl" in model) != ("width" in model):
        raise SpecError("run spec: keys 'model.n_hl' and 'model.width' go together")
    if "n_hl" in model:
        if "hidden" in model:
            raise SpecError("run spec: key 'model.hidden' cannot be combined with 'model.n_hl'/'model.width'")
        for key in ("n_hl", "width"):
            if not _positive_int(model[key]):
                raise SpecError(f"run spec: key 'model.{key}' is {model[key]!r}; expected a positive integer")
    hidden = model.get("hidden", [])
    if not isinstance(hidden, list) or not all(_positive_int(h) for h in hidden):
        raise SpecError(f"run spec: key 'model.hidden' is {hidden!r}; expected a list of positive integers")
    if model.get("activation", "relu") not in ACTIVATIONS:
        raise _allowed("model.activation", model.get("activation"), ACTIVATIONS)
    hparams = spec["hparams"]
    extra = set(hparams) - HPARAMS
    if extra:
        raise SpecError(f"run spec: unknown key 'hparams.{sorted(extra)[0]}'; allowed keys: {', '.join(sorted(HPARAMS))}")
    if rule.startswith("np") and not hparams.get("sigma", 0) > 0:
        raise SpecError("run spec: key 'hparams.sigma' must be a positive number for node-perturbation rules")
    for key in ("linesearch_steps", "linesearch_batches"):
        if key in hparams and not _positive_int(hparams[key]):
            raise SpecError(f"run spec: key 'hparams.{key}' is {hparams[key]!r}; expected a positive integer")
    if ("linesearch_steps" in hparams) != ("linesearch_batches" in hparams):
        raise SpecError("run spec: keys 'hparams.linesearch_steps' and 'hparams.linesearch_batches' go together")
    if "stop_at_test_acc" in hparams and not 0 < hparams["stop_at_test_acc"] < 100:
        raise SpecError(f"run spec: key 'hparams.stop_at_test_acc' is {hparams['stop_at_test_acc']!r}; "
                        "expected a test accuracy in (0, 100)")
    for key in REPLAY_HPARAMS:
        if key in hparams and not _positive_int(hparams[key]):
            raise SpecError(f"run spec: key 'hparams.{key}' is {hparams[key]!r}; expected a positive integer")
    if ("snapshot_every" in hparams) != ("replay_epochs" in hparams):
        raise SpecError("run spec: keys 'hparams.snapshot_every' and 'hparams.replay_epochs' go together")
    if "snapshot_every" in hparams and (model["arch"] != "mlp" or optimizer_kind(rule) != "sgd"):
        raise SpecError("run spec: key 'hparams.snapshot_every' (crash replay) needs model.arch 'mlp' and a "
                        "plain-SGD rule (np, np_indep_noise, np_clean_pre, np_batch_scalar or sgd)")
    if optimizer_kind(rule) == "sgd_wd":
        wd = hparams.get("wd")
        if isinstance(wd, bool) or not isinstance(wd, (int, float)) or wd < 0:
            raise SpecError(f"run spec: key 'hparams.wd' is {wd!r}; rule {rule!r} needs a weight decay >= 0")
    elif "wd" in hparams:
        raise SpecError(f"run spec: key 'hparams.wd' is only used by the *_wd rules, not {rule!r}")


def _validate_conv(spec: dict) -> None:
    model = spec["model"]
    for key in ("hidden", "n_hl", "width"):
        if key in model:
            raise SpecError(f"run spec: key 'model.{key}' is not used by model.arch {model['arch']!r}")
    scale = model.get("channel_scale", 1.0)
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not scale > 0:
        raise SpecError(f"run spec: key 'model.channel_scale' is {scale!r}; expected a positive number")
    if model.get("activation", "relu") != "relu":
        raise SpecError(f"run spec: key 'model.activation' must be 'relu' for model.arch {model['arch']!r}")
    if estimator_name(spec["rule"]) not in CONV_ESTIMATORS:
        raise SpecError(f"run spec: key 'rule' is {spec['rule']!r}; model.arch {model['arch']!r} allows the "
                        f"estimators {', '.join(CONV_ESTIMATORS)}")
    if "linesearch_steps" in spec["hparams"]:
        raise SpecError("run spec: key 'hparams.linesearch_steps' needs model.arch 'mlp'")
