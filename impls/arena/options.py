"""What an arena run spec may name (pure Python: imported when the workflow is parsed).

Caller: ``impls.common.specs.validate_spec`` (``SCHEMA``, then ``validate``); the arena programs read
the defaults through ``resolved_hparams`` / ``resolved_model``.
"""
from __future__ import annotations

from impls.arena.contenders import CONTENDERS
from impls.common.errors import SpecError
from impls.common.option_schema import POSITIVE, POSITIVE_INT, keys, list_of, one_of, run_spec

#: named datasets the arena trains on (a user's own file is ``user-<sha12>``, impls.arena.data)
DATASETS = ("digits", "fashion_mnist", "mnist", "kmnist", "cifar10", "cifar100")
ACTIVATIONS = ("relu", "tanh")
OPTIMIZERS = ("sgd", "adam")

MODEL_DEFAULTS = {"arch": "mlp", "hidden": [256, 256], "activation": "relu"}
#: hparams, their defaults and meaning
HPARAMS = {
    "lr": (None, "learning rate (required); the grid's lrs are the sweep each rule is tuned over"),
    "optimizer": ("sgd", "'sgd' (θ ← θ − lr·g, every rule) or 'adam' (0.9, 0.999, 1e-8 on the rule's update)"),
    "n_val": (5000, "training examples put aside as the validation split that selects the learning rate"),
    "probe": (512, "training examples of the fixed batch on which the update's cosine to BP is measured"),
    "sigma": (1.0e-4, "node perturbation: noise std on every pre-activation (NP rules only; the paper's 1e-4)"),
}
HPARAM_TYPES = {"lr": POSITIVE, "optimizer": one_of(OPTIMIZERS), "n_val": POSITIVE_INT, "probe": POSITIVE_INT,
                "sigma": POSITIVE}
MODEL_TYPES = {"arch": one_of(["mlp"]), "hidden": list_of(POSITIVE_INT, non_empty=True),
               "activation": one_of(ACTIVATIONS)}

SCHEMA = run_spec(rule=sorted(CONTENDERS), model=keys(MODEL_TYPES), hparams=keys(HPARAM_TYPES), all_of=[
    {"properties": {"dataset": {"anyOf": [one_of(DATASETS), {"pattern": "^user-[0-9a-f]{12}$", "title": (
        "user-<12 hex digits> (a file of your own: config arena_data)")}]}}}])


def resolved_hparams(spec: dict) -> dict:
    out = {k: default for k, (default, _) in HPARAMS.items()}
    out.update(spec["hparams"])
    return out


def resolved_model(spec: dict) -> dict:
    return {**MODEL_DEFAULTS, **spec["model"]}


def validate(spec: dict) -> None:
    """What the schema cannot say: an arena run trains at least one epoch."""
    if spec["epochs"] < 1:
        raise SpecError("run spec: key 'epochs' is 0; an arena run trains at least one epoch")


def cosine_points(epochs: int) -> tuple[int, int, int]:
    """(early, mid, late): the epochs after which the update's cosine to BP is reported: 1, E // 2, E."""
    return 1, max(1, epochs // 2), epochs


def cosine_epochs(epochs: int) -> tuple[int, ...]:
    """Every epoch at which the cosine is measured: 0 (the untrained net) and ``cosine_points``."""
    return tuple(sorted({0, *cosine_points(epochs)}))
