"""config data.loader in the workflow, without TFDS installed: the default leaves the dataset rule and
every run id as they were (no cached dataset or run is redone), and tfds marks exactly the runs whose
dataset it reads."""
from __future__ import annotations

import copy
import json
import os
import subprocess
import sys

import pytest
import yaml

from impls.common.errors import SpecError
from impls.common.plan import build_plan
from tests.conftest import LOCAL_ENV, REPO, copy_repo

#: the dataset rule's command before data.loader existed; Snakemake reruns a job whose rule's command
#: or params changed (rerun-triggers code, params), so the default must keep both
COMMAND_BEFORE_TFDS = ("python -m impls.common.datasets prepare {wildcards.dataset} {output.npz}"
                       " --fashion-mnist-dir {params.fmnist} --download-dir {params.downloads} {params.download}"
                       " {params.imagenet} 2> {log} || {{ cat {log} >&2; exit 2; }}")
PARAMS_BEFORE_TFDS = ["fmnist", "downloads", "download", "imagenet"]

DUMP_DATASET_RULE = r'''
import json, sys
from pathlib import Path
from snakemake.api import SnakemakeApi
from snakemake.settings.types import ConfigSettings, ResourceSettings

with SnakemakeApi() as api:
    workflow = api.workflow(resource_settings=ResourceSettings(), config_settings=ConfigSettings(
        configfiles=[Path(p) for p in sys.argv[1:]]), snakefile=Path("Snakefile"), workdir=Path.cwd())._workflow
    rule = workflow.get_rule("dataset")
    print("RULE-JSON " + json.dumps({"shell": rule.shellcmd, "params": list(rule.params._names)}))
'''


def _dataset_rule(root, *configfiles) -> dict:
    done = subprocess.run([sys.executable, "-c", DUMP_DATASET_RULE, *map(str, configfiles)], cwd=root,
                          capture_output=True, text=True, timeout=600, env={**os.environ, **LOCAL_ENV})
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(next(l for l in done.stdout.splitlines() if l.startswith("RULE-JSON ")).removeprefix("RULE-JSON "))


def test_dataset_rule_is_unchanged_by_default_and_gains_its_tfds_option_otherwise(tmp_path):
    root = copy_repo(tmp_path / "repo")
    (root / "tfds.yaml").write_text("data: {loader: {fashion_mnist: tfds}}\npapers: [two_routes]\n")
    (root / "two_routes.yaml").write_text("papers: [two_routes]\n")
    default = _dataset_rule(root, root / "two_routes.yaml")
    assert default == {"shell": COMMAND_BEFORE_TFDS, "params": PARAMS_BEFORE_TFDS}
    tfds = _dataset_rule(root, root / "tfds.yaml")
    assert tfds["params"] == PARAMS_BEFORE_TFDS + ["tfds"] and "{params.imagenet} {params.tfds} 2>" in tfds["shell"]


def _config(**data) -> dict:
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    config["data"].update(data)
    return config


def test_loader_enters_the_specs_it_reads_and_only_those():
    default = build_plan(_config(), REPO)
    assert all("loader" not in spec.get("data", {}) for spec in default.runs.values())
    fashion = build_plan({**_config(loader={"fashion_mnist": "tfds"}), "scale": "cpu"}, REPO)
    unchanged = build_plan({**_config(), "scale": "cpu"}, REPO)
    for rid, spec in fashion.runs.items():
        through_tfds = spec["dataset"] == "fashion_mnist"
        assert (spec.get("data", {}).get("loader") == "tfds") == through_tfds
        assert (rid in unchanged.runs) != through_tfds   # a new id exactly where the data come from TFDS
    assert any(s["dataset"] == "fashion_mnist" for s in fashion.runs.values())


def test_imagenet_through_tfds_is_refused_for_the_pytorch_papers():
    config = {**_config(loader={"imagenet": "tfds"}), "scale": "paper", "papers": ["two_routes", "wide_align"]}
    with pytest.raises(SpecError, match="reads imagenet through TFDS, which only the JAX papers stream; wide_align"):
        build_plan(config, REPO)
    two_routes = build_plan({**copy.deepcopy(config), "papers": ["two_routes"]}, REPO)
    assert {s.get("data", {}).get("loader") for s in two_routes.runs.values() if s["dataset"] == "imagenet"} == {"tfds"}
