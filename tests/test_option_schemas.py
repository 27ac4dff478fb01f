"""Each paper's option schema (``impls.<paper>.options.SCHEMA``): every planned spec passes it, bad
specs are refused by it with a one-line message naming the key, and it is a valid JSON schema."""
from functools import lru_cache

import jsonschema
import pytest
import yaml

from impls.common import plan as planlib
from impls.common import specs as speclib
from impls.common.errors import SpecError
from tests.conftest import REPO

CONFIG = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
PAPERS = CONFIG["papers"]
#: every paper's schema-shaped option checks are schema data
SCHEMA_PAPERS = PAPERS
SCALES = ("smoke", "cpu", "paper")


@lru_cache(maxsize=None)
def planned_specs(scale: str) -> dict[str, list[dict]]:
    plan = planlib.build_plan({**CONFIG, "scale": scale}, REPO)
    out: dict[str, list[dict]] = {}
    for spec in plan.runs.values():
        out.setdefault(spec["paper"], []).append(spec)
    return out


@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("paper", PAPERS)
def test_every_planned_spec_passes_unchanged(paper, scale):
    specs = planned_specs(scale).get(paper, [])
    assert specs or scale != "smoke", f"{paper} plans no run at scale {scale}"
    schema = getattr(speclib.paper_options(paper), "SCHEMA", None)
    for spec in specs:
        if schema is not None:
            speclib.validate_against(spec, schema, "run spec")
        assert speclib.validate_spec(spec) == spec   # validation never changes a spec


@pytest.mark.parametrize("paper", SCHEMA_PAPERS)
def test_schema_is_a_valid_json_schema(paper):
    schema = speclib.paper_options(paper).SCHEMA
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"


BASE = {
    "pepita": {"paper": "pepita", "rule": "pepita", "model": {"arch": "fc", "hidden": [32]}, "dataset": "digits",
               "hparams": {"lr": 0.1}, "seed": 0, "epochs": 1, "batch_size": 64, "scale": "smoke"},
    "nodepert": {"paper": "nodepert", "rule": "np", "model": {"arch": "mlp", "hidden": [32, 32]}, "dataset": "digits",
                 "hparams": {"lr": 0.01, "sigma": 1e-4}, "seed": 0, "epochs": 1, "batch_size": 100, "scale": "smoke"},
    "bpfree": {"paper": "bpfree", "rule": "dfa", "model": {"arch": "mlp", "hidden": [16]}, "dataset": "digits",
               "hparams": {"lr": 1e-3}, "seed": 0, "epochs": 1, "batch_size": 32, "scale": "smoke"},
    "wide_align": {"paper": "wide_align", "rule": "bp", "model": {"arch": "allconv", "depth": 3, "width": 8},
                   "dataset": "digits", "hparams": {"lr": 1.0, "n_val": 300}, "seed": 0, "epochs": 2, "batch_size": 100,
                   "scale": "smoke"},
    "two_routes": {"paper": "two_routes", "rule": "sa", "model": {"arch": "fc", "hidden": [6]}, "dataset": "digits",
                   "hparams": {"lr": 0.1, "warmup_epochs": 0.0, "decay_epochs": []}, "seed": 0, "epochs": 1,
                   "batch_size": 64, "scale": "smoke"},
    "arena": {"paper": "arena", "rule": "dfa_jax", "model": {"arch": "mlp", "hidden": [16]}, "dataset": "digits",
              "hparams": {"lr": 0.1, "n_val": 200}, "seed": 0, "epochs": 2, "batch_size": 32, "scale": "smoke"},
}
RNN = {"arch": "rnn", "width": 8}
CONV = {"pepita": {"arch": "conv", "channels": 4, "kernel": 3}, "nodepert": {"arch": "conv_base"},
        "bpfree": {"arch": "conv", "conv": "4c3-2p"}}

#: (paper, overrides deep-merged into BASE[paper], the key the message names, what it says is allowed)
BAD = [
    ("arena", {"rule": "dfa"}, "rule", "allowed values: 'aa', 'backprop_jax', 'backprop_torch'"),
    ("arena", {"dataset": "imagenet"}, "dataset", "expected one of 'digits', 'fashion_mnist', 'mnist', 'kmnist', "
     "'cifar10', 'cifar100' or user-<12 hex digits> (a file of your own: config arena_data)"),
    ("arena", {"model": {"arch": "resnet"}}, "model.arch", "allowed values: 'mlp', 'conv'"),
    ("arena", {"model": {"arch": "conv", "strides": [0]}}, "model.strides.0", "expected an integer >= 1"),
    ("arena", {"model": {"hidden": []}}, "model.hidden", "expected a non-empty list"),
    ("arena", {"model": {"activation": "gelu"}}, "model.activation", "allowed values: 'relu', 'tanh'"),
    ("arena", {"hparams": {"optimizer": "rmsprop"}}, "hparams.optimizer", "allowed values: 'sgd', 'adam'"),
    ("arena", {"hparams": {"n_val": 0}}, "hparams.n_val", "expected an integer >= 1"),
    ("arena", {"hparams": {"lrr": 0.1}}, "hparams.lrr", "allowed keys: lr, n_val, optimizer, probe, sigma"),
    ("pepita", {"rule": "dfa"}, "rule", "allowed values: 'bp', 'drtp', 'fa', 'pepita'"),
    ("pepita", {"dataset": "kmnist"}, "dataset", "allowed values: 'digits'"),
    ("pepita", {"model": {"arch": "mlp"}}, "model.arch", "allowed values: 'fc', 'conv'"),
    ("pepita", {"model": {"width": 3}}, "model.width", "allowed keys: activation, arch, hidden"),
    ("pepita", {"model": {**CONV["pepita"], "hidden": [3]}}, "model.hidden", "allowed keys: arch, channels, kernel"),
    ("pepita", {"model": {"hidden": []}}, "model.hidden", "expected a non-empty list"),
    ("pepita", {"model": {"hidden": [8, 0]}}, "model.hidden.1", "expected an integer >= 1"),
    ("pepita", {"model": {"hidden": [8.0]}}, "model.hidden.0", "expected an integer >= 1"),
    ("pepita", {"model": {"activation": "sigmoid"}}, "model.activation", "allowed values: 'relu', 'tanh'"),
    ("pepita", {"model": {**CONV["pepita"], "kernel": 0}}, "model.kernel", "expected an integer >= 1"),
    ("pepita", {"hparams": {"bogus": 1}}, "hparams.bogus", "allowed keys: F_init, F_scale, carry_remainder"),
    ("pepita", {"hparams": {"last_error": "both"}}, "hparams.last_error", "allowed values: 'modulated', 'standard'"),
    ("pepita", {"hparams": {"carry_remainder": 1}}, "hparams.carry_remainder", "expected true or false"),
    ("pepita", {"hparams": {"keep": 0}}, "hparams.keep", "expected a number in (0, 1]"),
    ("pepita", {"hparams": {"momentum": 1.0}}, "hparams.momentum", "expected a number in [0, 1)"),
    ("pepita", {"hparams": {"F_scale": -0.1}}, "hparams.F_scale", "expected a number >= 0"),
    ("pepita", {"hparams": {"decay_epochs": [1, -1]}}, "hparams.decay_epochs.1", "expected an integer >= 0"),
    ("pepita", {"hparams": {"decay_epochs": 3}}, "hparams.decay_epochs", "expected a list"),
    ("nodepert", {"rule": "nodeperturb"}, "rule", "allowed values: 'np', 'np_indep_noise', 'sgd', 'np_clean_pre'"),
    ("nodepert", {"dataset": "cifar100"}, "dataset", "allowed values: 'digits', 'fashion_mnist', 'mnist', 'cifar10'"),
    ("nodepert", {"model": {"arch": "resnet"}}, "model.arch", "allowed values: 'mlp', 'conv_base', 'allcnn_a'"),
    ("nodepert", {"model": {"depth": 3}}, "model.depth", "allowed keys: activation, arch, channel_scale, hidden"),
    ("nodepert", {"model": {"hidden": [32, 0]}}, "model.hidden.1", "expected an integer >= 1"),
    ("nodepert", {"model": {"hidden": 32}}, "model.hidden", "expected a list"),
    ("nodepert", {"model": {"activation": "tanh"}}, "model.activation", "allowed values: 'relu', 'linear'"),
    ("nodepert", {"model": {"n_hl": 0, "width": 4}}, "model.n_hl", "expected an integer >= 1"),
    ("nodepert", {"model": {**CONV["nodepert"], "channel_scale": -1}}, "model.channel_scale", "expected a number > 0"),
    ("nodepert", {"hparams": {"momentum": 0.9}}, "hparams.momentum", "allowed keys: linesearch_batches"),
    ("nodepert", {"hparams": {"sigma": "small"}}, "hparams.sigma", "expected a number"),
    ("nodepert", {"rule": "sgd_wd", "hparams": {"wd": -1e-4}}, "hparams.wd", "expected a number >= 0"),
    ("nodepert", {"hparams": {"stop_at_test_acc": 100}}, "hparams.stop_at_test_acc", "expected a number in (0, 100)"),
    ("nodepert", {"hparams": {"linesearch_steps": 2.0, "linesearch_batches": 1}}, "hparams.linesearch_steps",
     "expected an integer >= 1"),
    ("nodepert", {"hparams": {"snapshot_every": 0, "replay_epochs": 1}}, "hparams.snapshot_every",
     "expected an integer >= 1"),
    ("bpfree", {"rule": "np"}, "rule", "allowed values: 'bp', 'cce', 'dfa', 'drtp', 'fa', 'mse'"),
    ("bpfree", {"dataset": "imagenet"}, "dataset", "allowed values: 'digits', 'fashion_mnist'"),
    ("bpfree", {"model": {"arch": "resnet"}}, "model.arch", "allowed values: 'mlp', 'conv'"),
    ("bpfree", {"model": {"width": 8}}, "model.width", "allowed keys: activation, arch, batchnorm, conv"),
    ("bpfree", {"model": {"hidden": []}}, "model.hidden", "expected a non-empty list"),
    ("bpfree", {"model": {"hidden": [16, -1]}}, "model.hidden.1", "expected an integer >= 1"),
    ("bpfree", {"model": {"activation": "gelu"}}, "model.activation", "allowed values: 'tanh', 'relu', 'lrelu'"),
    ("bpfree", {"model": {"scaler": "robust"}}, "model.scaler", "allowed values: 'standard', 'minmax'"),
    ("bpfree", {"model": {"batchnorm": "yes"}}, "model.batchnorm", "expected true or false"),
    ("bpfree", {"model": {"dropout": 1.0}}, "model.dropout", "expected a number in [0, 1)"),
    ("bpfree", {"model": {**CONV["bpfree"], "conv": 32}}, "model.conv", "expected a string"),
    ("bpfree", {"model": {**CONV["bpfree"], "conv_trained": 0}}, "model.conv_trained", "expected true or false"),
    ("bpfree", {"hparams": {"momentun": 0.9}}, "hparams.momentun", "allowed keys: adversarial_eps, brightness"),
    ("bpfree", {"hparams": {"optimizer": "adamw"}}, "hparams.optimizer", "allowed values: 'adam', 'rmsprop'"),
    ("bpfree", {"hparams": {"trackers": ["bp_cosine", "bogus"]}}, "hparams.trackers",
     "expected 'all' or a list (each item: one of 'bp_cosine', 'weight_alignment'"),
    ("bpfree", {"hparams": {"trackers": "some"}}, "hparams.trackers", "expected 'all' or a list"),
    ("bpfree", {"hparams": {"wd": -1e-4}}, "hparams.wd", "expected a number >= 0"),
    ("bpfree", {"hparams": {"shuffle_buffer": True}}, "hparams.shuffle_buffer", "expected null or an integer >= 1"),
    ("bpfree", {"hparams": {"early_stop_patience": 0}}, "hparams.early_stop_patience", "expected null or an integer"),
    ("bpfree", {"hparams": {"lr_halving": "yes"}}, "hparams.lr_halving", "expected true or false"),
    ("bpfree", {"hparams": {"stop_train_error": 100}}, "hparams.stop_train_error", "expected null or a number in [0, 100)"),
    ("bpfree", {"hparams": {"adversarial_eps": -0.1}}, "hparams.adversarial_eps", "expected a number >= 0"),
    ("wide_align", {"rule": "drtp"}, "rule", "allowed values: 'alignada', 'alignprop', 'alignzero', 'bp', 'dfa'"),
    ("wide_align", {"model": RNN}, "rule", "allowed values: 'alignada', 'alignzero', 'bptt', 'readout'"),
    ("wide_align", {"model": RNN, "rule": "bptt", "dataset": "kmnist", "hparams": {"add_targets": "zero"}},
     "hparams.add_targets", "allowed values: 'causal', 'released'"),
    ("wide_align", {"dataset": "svhn"}, "dataset", "allowed values: 'digits', 'fashion_mnist'"),
    ("wide_align", {"model": {"arch": "mlp"}}, "model.arch", "allowed values: 'allconv', 'rnn'"),
    ("wide_align", {"model": {"hidden": [8]}}, "model.hidden", "allowed keys: arch, depth, norm, param, width"),
    ("wide_align", {"model": {**RNN, "depth": 3}, "rule": "bptt"}, "model.depth", "allowed keys: arch, width"),
    ("wide_align", {"model": {"norm": "layer"}}, "model.norm", "allowed values: 'batch', 'bn', 'none'"),
    ("wide_align", {"model": {"depth": 5}}, "model.depth", "allowed values: 3, 7"),
    ("wide_align", {"model": {"width": 0}}, "model.width", "expected an integer >= 1"),
    ("wide_align", {"hparams": {"bogus": 1}}, "hparams.bogus", "allowed keys: add_alignada, add_targets"),
    ("wide_align", {"hparams": {"optimizer": "rmsprop"}}, "hparams.optimizer", "allowed values: 'sgd', 'adam'"),
    ("wide_align", {"hparams": {"score_epochs": [0]}}, "hparams.score_epochs.0", "expected an integer >= 1"),
    ("wide_align", {"hparams": {"n_val": 0}}, "hparams.n_val", "expected an integer >= 1"),
    ("wide_align", {"hparams": {"score_probes": 1.5}}, "hparams.score_probes", "expected an integer >= 1"),
    ("wide_align", {"dataset": "imagenet", "hparams": {"image_size": 4}}, "hparams.image_size",
     "expected an integer >= 8"),
    ("wide_align", {"data": {"subset": "stratified"}}, "data.subset", "allowed values: 'first'"),
    ("two_routes", {"rule": "dfa"}, "rule", "allowed values: 'aa', 'bp', 'fa', 'ia', 'kp'"),
    ("two_routes", {"dataset": "cifar10"}, "dataset", "allowed values: 'digits', 'fashion_mnist', 'imagenet'"),
    ("two_routes", {"model": {"arch": "vgg"}}, "model.arch", "allowed values: 'resnet', 'linear', 'fc'"),
    ("two_routes", {"model": {"blocks": 3}}, "model.blocks", "allowed keys: activation, arch, depth, hidden"),
    ("two_routes", {"model": {"hidden": []}}, "model.hidden", "expected a non-empty list"),
    ("two_routes", {"model": {"activation": "gelu"}}, "model.activation", "allowed values: 'sigmoid', 'tanh', 'relu'"),
    ("two_routes", {"model": {"arch": "resnet", "stem": "tiny"}}, "model.stem", "allowed values: 'cifar', 'imagenet'"),
    ("two_routes", {"model": {"arch": "resnet", "version": 3}}, "model.version", "allowed values: 1, 2"),
    ("two_routes", {"model": {"arch": "resnet", "depth": "8"}}, "model.depth", "expected an integer >= 1"),
    ("two_routes", {"hparams": {"bogus": 1}}, "hparams.bogus", "allowed keys: activation_backward, activation_forward"),
    ("two_routes", {"hparams": {"noise_target": "forward"}}, "hparams.noise_target", "allowed values: 'backward', 'all'"),
    ("two_routes", {"hparams": {"momentum": -0.9}}, "hparams.momentum", "expected a number >= 0"),
    ("two_routes", {"hparams": {"alpha": -1e-3}}, "hparams.alpha", "expected null or a number >= 0"),
    ("two_routes", {"hparams": {"decay_epochs": 30}}, "hparams.decay_epochs", "expected a list"),
    ("two_routes", {"hparams": {"metric_every": 0}}, "hparams.metric_every", "expected an integer >= 1"),
    ("two_routes", {"hparams": {"alpha_start": 1.5}}, "hparams.alpha_start", "expected a number in [0, 1]"),
    ("two_routes", {"hparams": {"alpha_cycle": 0}}, "hparams.alpha_cycle", "expected null or a number > 0"),
    ("two_routes", {"hparams": {"beta_schedule_rate": "fast"}}, "hparams.beta_schedule_rate", "expected a number"),
    ("two_routes", {"hparams": {"alpha_schedule_type": "cyclic"}}, "hparams.alpha_schedule_type",
     "allowed values: 'none', 'linear', 'exponential'"),
    ("two_routes", {"hparams": {"delay_epochs": -1}}, "hparams.delay_epochs", "expected null or a number >= 0"),
    ("two_routes", {"hparams": {"alternate_step_freq": 1.5}}, "hparams.alternate_step_freq",
     "expected null or an integer >= 1"),
    ("two_routes", {"hparams": {"normalize_input": "yes"}}, "hparams.normalize_input", "expected true or false"),
]


def _bad_spec(paper, overrides):
    base = BASE[paper]
    if "model" in overrides and overrides["model"].get("arch", base["model"]["arch"]) != base["model"]["arch"]:
        base = {**base, "model": {}}   # another arch: its model block replaces the base one
    return speclib.deep_merge(base, overrides)


@pytest.mark.parametrize("paper, overrides, key, allowed", BAD)
def test_bad_specs_are_refused_by_the_schema_naming_the_key(paper, overrides, key, allowed):
    speclib.validate_spec(BASE[paper])
    spec = _bad_spec(paper, overrides)
    with pytest.raises(SpecError) as err:
        speclib.validate_spec(spec)
    message = str(err.value)
    assert "\n" not in message and message.startswith("run spec: ")
    assert f"'{key}'" in message and allowed in message, message
    with pytest.raises(SpecError) as direct:   # the paper's schema alone refuses it: no Python check needed
        speclib.validate_against(spec, speclib.paper_options(paper).SCHEMA, "run spec")
    assert str(direct.value) == message


def test_bad_table_covers_every_schema_paper():
    assert {paper for paper, *_ in BAD} == set(SCHEMA_PAPERS) == set(BASE)


@pytest.mark.parametrize("value, expected", [
    (3.0, "key 'x' is 3.0; expected an integer >= 1"),
    (True, "key 'x' is True; expected an integer >= 1"),
    (0, "key 'x' is 0; expected an integer >= 1"),
])
def test_integers_are_python_ints(value, expected):
    with pytest.raises(SpecError, match=expected):
        speclib.validate_against({"x": value}, {"properties": {"x": {"type": "integer", "minimum": 1}}}, "doc")


def test_unknown_key_message_names_the_dotted_key_and_the_allowed_keys():
    schema = {"properties": {"a": {"type": "object", "properties": {"b": {}, "c": {}}, "additionalProperties": False}}}
    with pytest.raises(SpecError) as err:
        speclib.validate_against({"a": {"b": 1, "z": 2, "y": 3}}, schema, "doc")
    assert str(err.value) == "doc: unknown key 'a.y'; allowed keys: b, c"
