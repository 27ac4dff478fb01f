"""impls.common.adopt_unversioned: runs cached under their id from before impl_version are renamed to
their new id, so they are not trained again, and nothing else is touched."""
from __future__ import annotations

import json

import yaml

from impls.common import adopt_unversioned as adoption
from impls.common.cli import is_trained
from impls.common.io import read_json
from impls.common.plan import build_plan
from tests.conftest import REPO

CONFIG = yaml.safe_load((REPO / "config" / "config.yaml").read_text())


def test_runs_of_the_unversioned_id_are_adopted_and_others_left_alone(tmp_path, capsys):
    plan = build_plan({**CONFIG, "scale": "smoke", "papers": ["nodepert"]}, REPO)
    (kept, spec), (other, other_spec), (done, _) = list(plan.runs.items())[:3]
    legacy = {k: v for k, v in spec.items() if k != "impl_version"}
    old = plan.run_dir(tmp_path, kept).with_name(adoption.unversioned_id(spec))
    assert old.name != kept and old.name.rsplit("-", 1)[0] == kept.rsplit("-", 1)[0]
    old.mkdir(parents=True)
    (old / "spec.json").write_text(json.dumps(legacy))
    (old / "train.json").write_text(json.dumps({"run_id": old.name, "status": "ok"}))
    (old / "metrics.csv").write_text("epoch,split,metric,value\n")
    # an untrained old run (no train.json) and a run already under its new id are not adopted
    untrained = plan.run_dir(tmp_path, other).with_name(adoption.unversioned_id(other_spec))
    untrained.mkdir()
    (untrained / "spec.json").write_text(json.dumps({k: v for k, v in other_spec.items() if k != "impl_version"}))
    plan.run_dir(tmp_path, done).mkdir()

    assert adoption.main(["--scale", "smoke", "--results", str(tmp_path)]) == 0   # lists only
    assert old.exists() and not plan.run_dir(tmp_path, kept).exists()
    assert f"would adopt {old} -> {kept}" in capsys.readouterr().out

    found, missing = adoption.adoptions(plan, tmp_path)
    assert [a.new_dir.name for a in found] == [kept] and missing == len(plan.runs) - 2
    adoption.adopt(found[0])
    new = plan.run_dir(tmp_path, kept)
    assert not old.exists() and (new / "metrics.csv").exists()
    assert read_json(new / "spec.json") == spec and read_json(new / "train.json")["run_id"] == kept
    assert is_trained(new, spec)                   # the train entry skips it: it only evaluates
    plan.check_run_specs(tmp_path)                 # and the workflow accepts its record
    assert untrained.exists() and not plan.run_dir(tmp_path, other).exists()
