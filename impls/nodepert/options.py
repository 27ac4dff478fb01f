"""What a nodepert run spec may name (pure Python: imported when the workflow is parsed).

Caller: ``impls.common.specs.validate_spec`` for every nodepert spec.
"""
from __future__ import annotations

from impls.common.errors import SpecError

#: learning rules; see impls/nodepert/rules.py for the update equations.
RULES = {
    "np": "node perturbation, paper-era estimator: one noise vector per layer shared by the minibatch",
    "np_indep_noise": "node perturbation with independent noise per example",
    "sgd": "exact minibatch gradient (backprop) of the same loss",
}
ARCHS = ("mlp",)
ACTIVATIONS = ("relu", "linear")
DATASETS = ("digits", "fashion_mnist", "mnist", "cifar10")
HPARAMS = {"lr", "sigma"}
MODEL_KEYS = {"arch", "hidden", "activation"}


def _allowed(key: str, value, allowed) -> SpecError:
    return SpecError(f"run spec: key '{key}' is {value!r}; allowed values: {', '.join(map(repr, allowed))}")


def validate(spec: dict) -> None:
    """Raise ``SpecError`` naming the first key of ``spec`` this impl cannot run."""
    if spec["rule"] not in RULES:
        raise _allowed("rule", spec["rule"], sorted(RULES))
    if spec["dataset"] not in DATASETS:
        raise _allowed("dataset", spec["dataset"], DATASETS)
    model = spec["model"]
    if model["arch"] not in ARCHS:
        raise _allowed("model.arch", model["arch"], ARCHS)
    extra = set(model) - MODEL_KEYS
    if extra:
        raise SpecError(f"run spec: unknown key 'model.{sorted(extra)[0]}'; allowed keys: {', '.join(sorted(MODEL_KEYS))}")
    hidden = model.get("hidden", [])
    if not isinstance(hidden, list) or not all(isinstance(h, int) and h > 0 for h in hidden):
        raise SpecError(f"run spec: key 'model.hidden' is {hidden!r}; expected a list of positive integers")
    if model.get("activation", "relu") not in ACTIVATIONS:
        raise _allowed("model.activation", model.get("activation"), ACTIVATIONS)
    extra = set(spec["hparams"]) - HPARAMS
    if extra:
        raise SpecError(f"run spec: unknown key 'hparams.{sorted(extra)[0]}'; allowed keys: {', '.join(sorted(HPARAMS))}")
    if spec["rule"].startswith("np") and not spec["hparams"].get("sigma", 0) > 0:
        raise SpecError("run spec: key 'hparams.sigma' must be a positive number for node-perturbation rules")
