"""What a wide_align run spec may name (pure Python: imported when the workflow is parsed).

Caller: ``impls.common.specs.validate_spec`` for every wide_align spec: ``SCHEMA`` (built from the
tables below: rules per arch, datasets, per-arch model keys and hparams with their choices, types and
ranges, the data subset), then ``validate`` (how keys depend on each other, the epochs and the
dataset); and the wide_align programs (``stacked``, ``train``, ``add_task``: ``resolved_hparams`` /
``resolved_model`` fill in the defaults below, the original code's).
"""
from __future__ import annotations

from impls.common.errors import SpecError
from impls.common.option_schema import NUMBER, POSITIVE_INT, keys, list_of, one_of, run_spec, when

#: learning rules of the feed-forward net; update equations in impls/wide_align/rules.py
RULES = {
    "bp": "backpropagation",
    "fa": "feedback alignment: fixed N(0,1) transposes, same 1/sqrt(fan_in)",
    "dfa": "direct feedback alignment: B_l e at ReLU(h_l) of every hidden layer",
    "alignzero": "frozen initial net's gradient weighted by the live error",
    "alignada": "live local VJP of the frozen net's backward signal at each layer",
    "alignprop": "backprop with every transpose replaced by the initial W_l(0)",
    "lastlayer": "readout only (hidden layers frozen at init)",
}
#: rules of the recurrent Add task (arch rnn), README "Add task"
RNN_RULES = {
    "bptt": "backprop through time on u, W, b, v, c, s",
    "alignzero": "BPTT through the frozen initial RNN weighted by the live error",
    "alignada": "live local inputs x frozen-net backward signal delta_tau; no live chain through time",
    "readout": "v, c and s only",
}
ARCHS = ("allconv", "rnn")
DATASETS = ("digits", "fashion_mnist", "mnist", "kmnist", "cifar10", "cifar100", "imagenet")
#: datasets streamed from an ImageFolder tree (impls.wide_align.imagenet), never loaded whole
STREAMED = ("imagenet",)
#: strides of the paper's nets by depth: 7 = CIFAR, 3 = KMNIST
STRIDES = {7: [1, 1, 1, 2, 1, 2, 1], 3: [1, 2, 2]}
#: ImageNet's 7-layer net: 224 -> 56, 28, 28, 14, 14, 7, 7
IMAGENET_STRIDES = {7: [4, 2, 1, 2, 1, 2, 1], 3: [1, 2, 2]}
MODEL_DEFAULTS = {"allconv": {"arch": "allconv", "depth": 3, "width": 8, "norm": "batch", "param": "ntk"},
                  "rnn": {"arch": "rnn", "width": 8}}
MODEL_CHOICES = {"norm": ("batch", "bn", "none"), "param": ("ntk", "standard"), "depth": (3, 7)}

#: hparams, their defaults and meaning
HPARAMS = {
    "lr": (None, "learning rate (required); constant, same at every width"),
    "optimizer": ("sgd", "'sgd' (plain, the paper) or 'adam' (0.9, 0.999, 1e-8; the standard-param figure)"),
    "targets": ("shifted", "'shifted': one-hot - 0.1 (CIFAR/KMNIST code); 'onehot' (ImageNet code)"),
    "n_val": (5000, "validation split = the first n_val training images (the original's 'test' set)"),
    "dfa_feedback": ("full", "'full': B_l in R^(HWC x K); 'pooled': B_l in R^(C x K) spread over positions (B2)"),
    "score_epochs": ([], "bp only: epochs at which W_BP and the NTK-predicted W~ are snapshotted for the score"),
    "score_probes": (100, "alignment estimator: probe draws (each a batch of 100 Gaussian tensors)"),
    "add_targets": ("causal", "Add task: 'causal' zero-filled targets or 'released' (B4)"),
    "add_alignada": ("default", "Add task: 'default' keeps v(0)e_tau or 'released' (B5)"),
    "image_size": (224, "imagenet only: side of the train crop and of the val centre crop (val resizes to 256/224 of it)"),
}
CHOICES = {"optimizer": ("sgd", "adam"), "targets": ("shifted", "onehot"), "dfa_feedback": ("full", "pooled"),
           "add_targets": ("causal", "released"), "add_alignada": ("default", "released")}
#: what each model key and hparam accepts (``MODEL_CHOICES`` / ``CHOICES`` for the named ones)
MODEL_TYPES = {"arch": one_of(ARCHS), "width": POSITIVE_INT,
               **{key: one_of(allowed) for key, allowed in MODEL_CHOICES.items()}}
HPARAM_TYPES = {"lr": NUMBER, "n_val": POSITIVE_INT, "score_epochs": list_of(POSITIVE_INT), "score_probes": POSITIVE_INT,
                "image_size": {"type": "integer", "minimum": 8},
                **{key: one_of(allowed) for key, allowed in CHOICES.items()}}
SCHEMA = run_spec(
    dataset=DATASETS,
    model={"properties": {"arch": one_of(ARCHS)},
           "allOf": [when("arch", arch, keys({key: MODEL_TYPES[key] for key in defaults}))
                     for arch, defaults in MODEL_DEFAULTS.items()]},
    hparams=keys({key: HPARAM_TYPES[key] for key in HPARAMS}),
    all_of=[when("model.arch", "allconv", {"properties": {"rule": one_of(sorted(RULES))}}),
            when("model.arch", "rnn", {"properties": {"rule": one_of(sorted(RNN_RULES))}}),
            # the first n_train images after the validation split, as the original: no stratified subset
            {"properties": {"data": {"properties": {"subset": one_of(["first"])}}}}])


def resolved_hparams(spec: dict) -> dict:
    out = {k: default for k, (default, _) in HPARAMS.items()}
    out.update(spec["hparams"])
    return out


def resolved_model(spec: dict) -> dict:
    out = dict(MODEL_DEFAULTS.get(spec["model"]["arch"], {}))
    out.update(spec["model"])
    return out


def strides(spec: dict) -> list[int]:
    """The conv strides of a feed-forward spec: ImageNet's stem stride 4 at depth 7, else STRIDES."""
    depth = resolved_model(spec)["depth"]
    return (IMAGENET_STRIDES if spec["dataset"] in STREAMED else STRIDES)[depth]


def _validate_streamed(spec: dict) -> None:
    """ImageNet specs: the official val split, no subsets, no alignment snapshots, feed-forward only."""
    name = spec["dataset"]
    if name not in STREAMED:
        if "image_size" in spec["hparams"]:
            raise SpecError(f"run spec: key 'hparams.image_size' applies to dataset(s) {', '.join(STREAMED)} only")
        return
    if spec["model"]["arch"] != "allconv":
        raise SpecError(f"run spec: key 'dataset' is {name!r}, which needs model.arch 'allconv'")
    for key in ("n_val", "score_epochs"):
        if key in spec["hparams"]:
            raise SpecError(f"run spec: key 'hparams.{key}' does not apply to {name!r} "
                            "(official validation split; no alignment snapshots)")
    if spec.get("data"):
        raise SpecError(f"run spec: key 'data.{sorted(spec['data'])[0]}' does not apply to {name!r} (streamed whole)")


def validate(spec: dict) -> None:
    """Raise ``SpecError`` naming the first key of ``spec`` this impl cannot run (after ``SCHEMA``: only
    what depends on another key)."""
    arch = spec["model"]["arch"]
    hp = resolved_hparams(spec)
    if hp["score_epochs"] and (spec["rule"] != "bp" or arch != "allconv"):
        raise SpecError("run spec: key 'hparams.score_epochs' applies to rule 'bp' of arch 'allconv' only")
    if any(e > spec["epochs"] for e in hp["score_epochs"]):
        raise SpecError("run spec: key 'hparams.score_epochs' lists an epoch after the last one")
    _validate_streamed(spec)
