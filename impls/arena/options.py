"""What an arena run spec may name (pure Python: imported when the workflow is parsed).

Caller: ``impls.common.specs.validate_spec`` (``SCHEMA``, then ``validate``); the arena programs read
the defaults through ``resolved_hparams`` / ``resolved_model``.
"""
from __future__ import annotations

from impls.arena.contenders import CONTENDERS, conv_exclusion
from impls.common.errors import SpecError
from impls.common.option_schema import POSITIVE, POSITIVE_INT, keys, list_of, one_of, run_spec

#: named datasets the arena trains on (a user's own file is ``user-<sha12>``, impls.arena.data)
DATASETS = ("digits", "fashion_mnist", "mnist", "kmnist", "cifar10", "cifar100")
ACTIVATIONS = ("relu", "tanh")
OPTIMIZERS = ("sgd", "adam")

MODEL_DEFAULTS = {"arch": "mlp", "hidden": [256, 256], "activation": "relu"}
#: the conv task's net (``arch: conv``, impls.arena.nets.ConvNet): the node-perturbation paper's conv_base
CONV_DEFAULTS = {"channels": [32, 32, 32], "strides": [1, 2, 1]}
#: node perturbation's σ per architecture: the paper's 1e-4 for MLPs and 1e-5 for conv nets
NP_SIGMA = {"mlp": 1.0e-4, "conv": 1.0e-5}
#: hparams, their defaults and meaning
HPARAMS = {
    "lr": (None, "learning rate (required); the grid's lrs are the sweep each rule is tuned over"),
    "optimizer": ("sgd", "'sgd' (θ ← θ − lr·g, every rule) or 'adam' (0.9, 0.999, 1e-8 on the rule's update)"),
    "n_val": (5000, "training examples put aside as the validation split that selects the learning rate"),
    "probe": (512, "training examples of the fixed batch on which the update's cosine to BP is measured"),
    "sigma": (None, "node perturbation: noise std on every pre-activation (NP rules only; default the paper's 1e-4 "
                    "on the MLP, 1e-5 on the conv net)"),
}
HPARAM_TYPES = {"lr": POSITIVE, "optimizer": one_of(OPTIMIZERS), "n_val": POSITIVE_INT, "probe": POSITIVE_INT,
                "sigma": POSITIVE}
MODEL_TYPES = {"arch": one_of(["mlp", "conv"]), "hidden": list_of(POSITIVE_INT, non_empty=True),
               "activation": one_of(ACTIVATIONS), "channels": list_of(POSITIVE_INT, non_empty=True),
               "strides": list_of(POSITIVE_INT, non_empty=True)}

SCHEMA = run_spec(rule=sorted(CONTENDERS), model=keys(MODEL_TYPES), hparams=keys(HPARAM_TYPES), all_of=[
    {"properties": {"dataset": {"anyOf": [one_of(DATASETS), {"pattern": "^user-[0-9a-f]{12}$", "title": (
        "user-<12 hex digits> (a file of your own: config arena_data)")}]}}}])


def resolved_hparams(spec: dict) -> dict:
    out = {k: default for k, (default, _) in HPARAMS.items()}
    out["sigma"] = NP_SIGMA[resolved_model(spec)["arch"]]
    out.update(spec["hparams"])
    return out


def resolved_model(spec: dict) -> dict:
    model = {**MODEL_DEFAULTS, **spec["model"]}
    return {**CONV_DEFAULTS, **model} if model["arch"] == "conv" else model


def validate(spec: dict) -> None:
    """What the schema cannot say: at least one epoch; a conv net only for rules with conv code, one
    stride per convolution, and conv keys only on a conv net."""
    if spec["epochs"] < 1:
        raise SpecError("run spec: key 'epochs' is 0; an arena run trains at least one epoch")
    given, model = spec["model"], resolved_model(spec)
    if model["arch"] != "conv":
        stray = sorted(set(given) & set(CONV_DEFAULTS))
        if stray:
            raise SpecError(f"run spec: model.{stray[0]} describes the conv net; it needs model.arch: conv "
                            f"(model.arch is {model['arch']!r})")
        return
    if "hidden" in given:
        raise SpecError("run spec: model.hidden sizes an MLP's layers; the conv net (model.arch: conv) takes "
                        "model.channels and model.strides")
    if len(model["channels"]) != len(model["strides"]):
        raise SpecError(f"run spec: model.channels has {len(model['channels'])} convolutions but model.strides "
                        f"{len(model['strides'])}; give one stride per convolution")
    reason = conv_exclusion(spec["rule"])
    if reason:
        raise SpecError(f"run spec: arena rule {spec['rule']} does not train the conv net (model.arch: conv): {reason}")


def cosine_points(epochs: int) -> tuple[int, int, int]:
    """(early, mid, late): the epochs after which the update's cosine to BP is reported: 1, E // 2, E."""
    return 1, max(1, epochs // 2), epochs


def cosine_epochs(epochs: int) -> tuple[int, ...]:
    """Every epoch at which the cosine is measured: 0 (the untrained net) and ``cosine_points``."""
    return tuple(sorted({0, *cosine_points(epochs)}))
