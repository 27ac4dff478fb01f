"""What a user is told about a typo, a number YAML read as text, or a YAML syntax error.

Run specs, config.yaml and paper.yaml share one validator (``impls.common.specs.validate_against``)
and one message writer (``impls.common.errors``), so the cases below cover all three documents.
"""
from __future__ import annotations

import copy
import re

import pytest
import yaml

from impls.common import plan as planlib
from impls.common import specs as speclib
from impls.common.errors import SpecError, yaml_number
from tests.conftest import REPO, run_snakemake

CONFIG = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
SPEC = {"paper": "nodepert", "rule": "np", "model": {"arch": "mlp", "hidden": [32, 32]}, "dataset": "digits",
        "hparams": {"lr": 0.01, "sigma": 1e-4}, "seed": 0, "epochs": 2, "batch_size": 100, "scale": "smoke"}


def spec_error(spec) -> str:
    with pytest.raises(SpecError) as err:
        speclib.validate_spec(spec)
    return str(err.value)


def config_error(config) -> str:
    with pytest.raises(SpecError) as err:
        planlib.validate_config(config)
    return str(err.value)


def renamed(mapping: dict, old: str, new: str) -> dict:
    out = copy.deepcopy(mapping)
    out[new] = out.pop(old)
    return out


# --- typos: the unknown key is named, with the valid key it is close to ---------------------------

def test_typo_in_a_required_key_names_the_typo_and_the_key_meant():
    msg = spec_error({**SPEC, "hparams": renamed(SPEC["hparams"], "lr", "lrr")})
    assert msg == ("run spec: unknown key 'hparams.lrr' (did you mean 'hparams.lr'?); "
                   "required key 'hparams.lr' is missing")


def test_typo_in_a_required_top_level_key():
    msg = spec_error(renamed(SPEC, "seed", "seeed"))
    assert "unknown key 'seeed' (did you mean 'seed'?)" in msg


def test_missing_required_key_without_a_typo_is_named():
    msg = spec_error({**SPEC, "hparams": {"sigma": 1e-4}})
    assert msg == "run spec: required key 'hparams.lr' is missing"


@pytest.mark.parametrize("where, key, meant", [
    ("hparams", "sigmaa", "hparams.sigma"), ("model", "hiden", "model.hidden"), ("data", "n_trian", "data.n_train")])
def test_typo_in_an_optional_key_suggests_the_close_one(where, key, meant):
    spec = copy.deepcopy(SPEC)
    spec.setdefault(where, {})[key] = spec.get(where, {}).pop(meant.split(".")[1], 1)
    msg = spec_error(spec)
    assert f"unknown key '{where}.{key}' (did you mean '{meant}'?); allowed keys:" in msg


def test_an_unknown_key_like_no_valid_one_gets_no_suggestion():
    msg = spec_error({**SPEC, "hparams": {**SPEC["hparams"], "momentum": 0.9}})
    assert "unknown key 'hparams.momentum'; allowed keys:" in msg and "did you mean" not in msg


def test_config_typo_suggests_the_close_key():
    msg = config_error(renamed(CONFIG, "scale", "scael"))
    assert "unknown key 'scael' (did you mean 'scale'?)" in msg


def test_paper_yaml_typo_in_a_grid_factor_is_named_with_file_and_figure(tmp_path):
    doc = yaml.safe_load((REPO / "papers" / "nodepert" / "paper.yaml").read_text())
    grid = doc["figures"]["fig_nodepert_lr"]["scales"]["smoke"]["grid"]
    grid["hparams.lrr"] = grid.pop("hparams.lr")
    (tmp_path / "papers" / "nodepert").mkdir(parents=True)
    (tmp_path / "papers" / "nodepert" / "paper.yaml").write_text(yaml.safe_dump(doc))
    with pytest.raises(SpecError) as err:
        planlib.build_plan({**CONFIG, "papers": ["nodepert"], "scale": "smoke"}, tmp_path)
    assert str(err.value).startswith("papers/nodepert/paper.yaml, figure fig_nodepert_lr, scale smoke: ")
    assert "unknown key 'hparams.lrr' (did you mean 'hparams.lr'?)" in str(err.value)


# --- numbers YAML reads as strings ----------------------------------------------------------------

@pytest.mark.parametrize("text, form", [("1.0e8", "1.0e+8"), ("1e-3", "1.0e-3"), ("1e+3", "1.0e+3"),
                                        ("1E5", "1.0e+5"), ("-3e2", "-3.0e+2"), ("1.5e3", "1.5e+3")])
def test_yaml_reads_these_as_strings_and_the_suggested_form_as_the_same_number(text, form):
    assert yaml.safe_load(f"lr: {text}")["lr"] == text  # PyYAML follows YAML 1.1: a string
    assert yaml_number(text) == form and yaml.safe_load(f"lr: {form}")["lr"] == float(text)


@pytest.mark.parametrize("text, form", [("1.0e8", "1.0e+8"), ("1e-3", "1.0e-3")])
def test_a_number_read_as_a_string_is_told_with_the_form_to_write(text, form):
    hparams = yaml.safe_load(f"{{lr: {text}, sigma: 1.0e-4}}")
    msg = spec_error({**SPEC, "hparams": hparams})
    assert msg == (f"run spec: key 'hparams.lr' is '{text}'; expected a number > 0 "
                   f"(YAML reads {text} as a string, not a number: write {form})")


def test_an_integer_read_as_a_string_is_told_as_digits():
    msg = spec_error({**SPEC, "epochs": yaml.safe_load("epochs: 1e2")["epochs"]})
    assert msg.endswith("expected an integer >= 0 (YAML reads 1e2 as a string, not a number: write 100)")


def test_config_number_read_as_a_string():
    msg = config_error({**CONFIG, **yaml.safe_load("checkpoint_minutes: 1e1")})
    assert "key 'checkpoint_minutes' is '1e1'" in msg and "write 1.0e+1" in msg


def test_a_quoted_number_is_told_to_lose_its_quotes_and_other_text_gets_no_hint():
    assert "(a quoted number is a string: write 0.1 without quotes)" in spec_error(
        {**SPEC, "hparams": {**SPEC["hparams"], "lr": "0.1"}})
    msg = spec_error({**SPEC, "hparams": {**SPEC["hparams"], "lr": "fast"}})
    assert msg == "run spec: key 'hparams.lr' is 'fast'; expected a number > 0"


# --- YAML syntax errors: file, line and column in one line ----------------------------------------

BROKEN = {
    "mapping in a plain scalar": ("title: Node: perturbation\n", 1, 12, "mapping values are not allowed here"),
    "unclosed flow list": ("a: 1\nscale: [smoke\npapers: []\n", 3, 7,
                           "expected ',' or ']', but got ':' (while parsing a flow sequence at line 2, column 8)"),
    "tab indentation": ("scale: smoke\n\tpapers: [x]\n", 2, 1, "found character '\\t' that cannot start any token"),
}


@pytest.mark.parametrize("case", BROKEN)
def test_yaml_syntax_error_names_file_line_and_column_in_one_line(tmp_path, case):
    text, line, column, problem = BROKEN[case]
    path = tmp_path / "config.yaml"
    path.write_text(text)
    with pytest.raises(SpecError) as err:
        planlib.check_yaml_syntax(path)
    msg = str(err.value)
    assert msg.startswith(f"{path}:{line}:{column}: YAML syntax error: ") and problem in msg and "\n" not in msg


def test_broken_paper_yaml_is_named_relative_to_the_repo(tmp_path):
    (tmp_path / "papers" / "nodepert").mkdir(parents=True)
    (tmp_path / "papers" / "nodepert" / "paper.yaml").write_text("paper: nodepert\ntitle: a: b\n")
    with pytest.raises(SpecError, match=r"^papers/nodepert/paper\.yaml:2:9: YAML syntax error: mapping values"):
        planlib.load_paper(tmp_path, "nodepert")


def test_a_missing_config_passes_the_syntax_check(tmp_path):
    planlib.check_yaml_syntax(tmp_path / "absent.yaml")  # Snakemake's configfile names a missing file


def _break(path, prefix: str, replacement: str) -> int:
    """Replace the first line of ``path`` that starts with ``prefix``; return its number (from 1)."""
    lines = path.read_text().splitlines(keepends=True)
    at = next(i for i, text in enumerate(lines) if text.startswith(prefix))
    lines[at] = replacement + "\n"
    path.write_text("".join(lines))
    return at + 1


@pytest.mark.e2e
def test_snakemake_shows_a_config_yaml_error_in_one_line_without_a_traceback(workdir):
    line = _break(workdir / "config" / "config.yaml", "papers:", "papers: [nodepert")
    done = run_snakemake(workdir, "-n", "fig_nodepert_lr")
    output = done.stdout + done.stderr
    assert done.returncode != 0
    assert re.search(rf"^config/config\.yaml:\d+:\d+: YAML syntax error: expected ',' or ']'.*"
                     rf"\(while parsing a flow sequence at line {line}, column 9\)$", output, re.M), output[-2000:]
    assert "Traceback" not in output and "yaml/" not in output, output[-2000:]


@pytest.mark.e2e
def test_snakemake_shows_a_paper_yaml_error_in_one_line_without_a_traceback(workdir):
    line = _break(workdir / "papers" / "nodepert" / "paper.yaml", "    title:", "    title: Node: perturbation")
    done = run_snakemake(workdir, "-n", "fig_nodepert_lr")
    output = done.stdout + done.stderr
    assert done.returncode != 0
    assert (f"\npapers/nodepert/paper.yaml:{line}:16: YAML syntax error: mapping values are not allowed here\n"
            in output), output[-2000:]
    assert "Traceback" not in output and "yaml/" not in output, output[-2000:]
