"""What a nodepert run spec may name (pure Python: imported when the workflow is parsed).

Caller: ``impls.common.specs.validate_spec`` for every nodepert spec: ``SCHEMA`` (built from the tables
below: rules, datasets, archs, model keys and hparams with their types and ranges), then ``validate``
(how keys depend on each other and on the rule and arch); and ``impls.nodepert.train``
(``hidden_sizes``, ``optimizer_kind``).
"""
from __future__ import annotations

from impls.common.errors import SpecError
from impls.common.option_schema import NON_NEGATIVE, NUMBER, POSITIVE, POSITIVE_INT, keys, list_of, one_of, run_spec

#: learning rules; see impls/nodepert/rules.py for the estimators and train.py for the optimisers.
#: The paper's defaults come first, then the named variants (papers/nodepert/README.md, "Named variants").
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
#: hparams and what each accepts (sigma > 0 for the np rules and wd for the *_wd rules: ``validate``)
HPARAMS = {"lr": NUMBER, "sigma": NUMBER, "wd": NON_NEGATIVE,
           "stop_at_test_acc": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 100},
           "linesearch_steps": POSITIVE_INT, "linesearch_batches": POSITIVE_INT,
           "snapshot_every": POSITIVE_INT, "replay_epochs": POSITIVE_INT}
#: crash-dynamics replay (papers/nodepert/README.md, "Figure protocols"; impls.nodepert.replay): parameters are kept
#: every ``snapshot_every`` epochs until the first crash; ``evaluate`` replays ``replay_epochs``
#: epochs from the last one, logging after every minibatch
REPLAY_HPARAMS = ("snapshot_every", "replay_epochs")
#: line-search analysis (papers/nodepert/README.md, "Figure protocols"): step sizes logspace(LOG10_MIN, LOG10_MAX,
#: steps)
LINESEARCH_LOG10_RANGE = (-4.0, 1.0)
#: model keys and what each accepts: hidden = explicit list of widths, or n_hl x width (the depth/width
#: sweeps' factors) for mlp; channel_scale for the conv archs (which arch takes which: ``validate``)
MODEL_OPTIONS = {"arch": one_of(ARCHS), "hidden": list_of(POSITIVE_INT), "n_hl": POSITIVE_INT, "width": POSITIVE_INT,
                 "activation": one_of(ACTIVATIONS), "channel_scale": POSITIVE}
SCHEMA = run_spec(rule=RULES, dataset=DATASETS, model=keys(MODEL_OPTIONS), hparams=keys(HPARAMS))


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


def validate(spec: dict) -> None:
    """Raise ``SpecError`` naming the first key of ``spec`` this impl cannot run (after ``SCHEMA``: only
    what depends on another key)."""
    rule, model, hparams = spec["rule"], spec["model"], spec["hparams"]
    if model["arch"] in CONV_ARCHS:
        _validate_conv(spec)
    elif "channel_scale" in model:
        raise SpecError("run spec: key 'model.channel_scale' is only for the conv archs " + ", ".join(CONV_ARCHS))
    if ("n_hl" in model) != ("width" in model):
        raise SpecError("run spec: keys 'model.n_hl' and 'model.width' go together")
    if "n_hl" in model and "hidden" in model:
        raise SpecError("run spec: key 'model.hidden' cannot be combined with 'model.n_hl'/'model.width'")
    if rule.startswith("np") and not hparams.get("sigma", 0) > 0:
        raise SpecError("run spec: key 'hparams.sigma' must be a positive number for node-perturbation rules")
    if ("linesearch_steps" in hparams) != ("linesearch_batches" in hparams):
        raise SpecError("run spec: keys 'hparams.linesearch_steps' and 'hparams.linesearch_batches' go together")
    if ("snapshot_every" in hparams) != ("replay_epochs" in hparams):
        raise SpecError("run spec: keys 'hparams.snapshot_every' and 'hparams.replay_epochs' go together")
    if "snapshot_every" in hparams and (model["arch"] != "mlp" or optimizer_kind(rule) != "sgd"):
        raise SpecError("run spec: key 'hparams.snapshot_every' (crash replay) needs model.arch 'mlp' and a "
                        "plain-SGD rule (np, np_indep_noise, np_clean_pre, np_batch_scalar or sgd)")
    if optimizer_kind(rule) == "sgd_wd":
        if "wd" not in hparams:
            raise SpecError(f"run spec: key 'hparams.wd' is None; rule {rule!r} needs a weight decay >= 0")
    elif "wd" in hparams:
        raise SpecError(f"run spec: key 'hparams.wd' is only used by the *_wd rules, not {rule!r}")


def _validate_conv(spec: dict) -> None:
    model = spec["model"]
    for key in ("hidden", "n_hl", "width"):
        if key in model:
            raise SpecError(f"run spec: key 'model.{key}' is not used by model.arch {model['arch']!r}")
    if model.get("activation", "relu") != "relu":
        raise SpecError(f"run spec: key 'model.activation' must be 'relu' for model.arch {model['arch']!r}")
    if estimator_name(spec["rule"]) not in CONV_ESTIMATORS:
        raise SpecError(f"run spec: key 'rule' is {spec['rule']!r}; model.arch {model['arch']!r} allows the "
                        f"estimators {', '.join(CONV_ESTIMATORS)}")
    if "linesearch_steps" in spec["hparams"]:
        raise SpecError("run spec: key 'hparams.linesearch_steps' needs model.arch 'mlp'")
