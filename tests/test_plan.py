"""Figures -> runs -> batches; config and spec validation (no Snakemake needed)."""
import copy
import json

import pytest
import yaml

from impls.common import plan as planlib
from impls.common import specs as speclib
from impls.common.errors import SpecError
from tests.conftest import REPO

CONFIG = yaml.safe_load((REPO / "config" / "config.yaml").read_text())


def spec(**overrides):
    base = {"paper": "nodepert", "rule": "np", "model": {"arch": "mlp", "hidden": [32, 32]},
            "dataset": "digits", "hparams": {"lr": 0.01, "sigma": 1e-4}, "seed": 0, "epochs": 2,
            "batch_size": 100, "scale": "smoke"}
    return speclib.deep_merge(base, overrides)


def test_run_id_is_stable_readable_and_canonical():
    a = speclib.validate_spec(spec())
    b = speclib.validate_spec(dict(reversed(list(spec().items()))))  # key order does not matter
    assert speclib.run_id(a) == speclib.run_id(b)
    assert speclib.run_id(a).startswith("np-lr0.01-s0-")
    assert speclib.run_id(a) != speclib.run_id(speclib.validate_spec(spec(seed=1)))
    # a pinned value: changing the id scheme silently would orphan every cached result
    assert speclib.run_id(a) == "np-lr0.01-s0-b56097e31a"
    # ... and it is the id the spec had before impl_version existed, plus that one key
    assert speclib.short_hash({k: v for k, v in a.items() if k != "impl_version"}) == "e8e6f549dc"
    assert speclib.run_id(speclib.validate_spec(spec(hparams={"lr": 1e-2}))) == speclib.run_id(a)


def test_every_spec_carries_its_papers_implementation_version(monkeypatch):
    import impls.nodepert

    a = speclib.validate_spec(spec())
    assert a["impl_version"] == impls.nodepert.IMPL_VERSION
    assert speclib.validate_spec(a) == a
    monkeypatch.setattr(impls.nodepert, "IMPL_VERSION", "2")
    b = speclib.validate_spec(spec())
    assert b["impl_version"] == "2" and speclib.run_id(b) != speclib.run_id(a)
    assert speclib.run_id(b).startswith("np-lr0.01-s0-")
    # a spec planned for version 1 is not trained by version-2 code under its old id
    with pytest.raises(SpecError, match="key 'impl_version' is '1' but impls/nodepert is at IMPL_VERSION '2'"):
        speclib.validate_spec(a)


@pytest.mark.parametrize("value", [None, "", 2])
def test_a_paper_without_a_string_implementation_version_is_refused(monkeypatch, value):
    import impls.nodepert

    monkeypatch.setattr(impls.nodepert, "IMPL_VERSION", value)
    with pytest.raises(SpecError, match=r"impls/nodepert/__init__.py: IMPL_VERSION is .*expected a non-empty string"):
        speclib.validate_spec(spec())


def test_a_version_bump_renames_only_that_papers_runs_batches_and_jobs(monkeypatch):
    import impls.nodepert

    config = {**CONFIG, "scale": "smoke"}
    before = planlib.build_plan(config, REPO)
    monkeypatch.setattr(impls.nodepert, "IMPL_VERSION", impls.nodepert.IMPL_VERSION + "-bumped")
    after = planlib.build_plan(config, REPO)
    for paper in before.papers:
        old = {r for r, s in before.runs.items() if s["paper"] == paper}
        new = {r for r, s in after.runs.items() if s["paper"] == paper}
        old_jobs = {j for j, job in before.jobs.items() if job.paper == paper}
        new_jobs = {j for j, job in after.jobs.items() if job.paper == paper}
        assert len(old) == len(new) and len(old_jobs) == len(new_jobs)
        if paper == "nodepert":
            assert not old & new and not old_jobs & new_jobs   # every run and train job is new: retrained
        else:
            assert old == new and old_jobs == new_jobs


def test_a_hand_edited_spec_json_is_refused_naming_the_file_and_key(tmp_path):
    plan = planlib.build_plan({**CONFIG, "scale": "smoke", "papers": ["nodepert"]}, REPO)
    rid, planned = next(iter(plan.runs.items()))
    path = plan.run_dir(tmp_path, rid) / "spec.json"
    plan.check_run_specs(tmp_path)          # no run started: nothing to check
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(planned))
    plan.check_run_specs(tmp_path)          # the record as the driver writes it
    edited = copy.deepcopy(planned)
    edited["hparams"]["lr"] = planned["hparams"]["lr"] * 10
    path.write_text(json.dumps(edited, indent=1))
    with pytest.raises(SpecError) as err:
        plan.check_run_specs(tmp_path)
    message = str(err.value)
    assert message.startswith(f"{path}: key 'hparams.lr' is {edited['hparams']['lr']!r} there but "
                              f"{planned['hparams']['lr']!r} in the spec of run '{rid}'")
    assert "edit papers/nodepert/paper.yaml" in message and "delete the run's directory" in message
    del edited["hparams"]["lr"]
    edited["hparams"]["lr_typo"] = 1.0
    path.write_text(json.dumps(edited))
    with pytest.raises(SpecError, match=r"key 'hparams.lr' is '<absent>' there"):
        plan.check_run_specs(tmp_path)
    path.write_text("{not json")
    with pytest.raises(SpecError, match=r"spec.json: not valid JSON"):
        plan.check_run_specs(tmp_path)


@pytest.mark.parametrize("a, b, key", [
    ({"x": 1, "h": {"lr": 0.1}}, {"x": 1, "h": {"lr": 0.1}}, None),
    ({"x": 1, "h": {"lr": 0.1}}, {"x": 1, "h": {"lr": 0.2}}, "h.lr"),
    ({"a": 1, "z": 1}, {"a": 2, "z": 2}, "a"),        # the first in sorted order
    ({"a": 1}, {"a": 1, "b": 0}, "b"),
    ({"m": [1, 2]}, {"m": [1, 3]}, "m"),
    ({"m": 1}, {"m": 1.5}, "m"),
])
def test_spec_difference_names_the_first_differing_key(a, b, key):
    assert speclib.spec_difference(a, b) == key


@pytest.mark.parametrize("overrides, message", [
    ({"rule": "nodeperturb"}, "key 'rule' is 'nodeperturb'; allowed values: 'np', 'np_indep_noise', 'sgd'"),
    ({"dataset": "imagenet22k"}, "key 'dataset' is 'imagenet22k'; allowed values:"),
    ({"scale": "huge"}, "key 'scale' is 'huge'; allowed values: 'smoke', 'cpu', 'paper'"),
    ({"hparams": {"lr": -1.0}}, "key 'hparams.lr'"),
    ({"model": {"activation": "tanh"}}, "key 'model.activation' is 'tanh'; allowed values: 'relu', 'linear'"),
    ({"hparams": {"momentum": 0.9}}, "unknown key 'hparams.momentum'"),
    ({"hparams": {"sigma": 0.0}}, "key 'hparams.sigma'"),
])
def test_bad_spec_names_the_key(overrides, message):
    with pytest.raises(SpecError, match=None) as err:
        speclib.validate_spec(spec(**overrides))
    assert message in str(err.value)


def test_config_errors_name_key_and_allowed_values():
    with pytest.raises(SpecError) as err:
        planlib.validate_config({**CONFIG, "scale": "big"})
    assert "key 'scale' is 'big'; allowed values: 'smoke', 'cpu', 'paper'" in str(err.value)
    with pytest.raises(SpecError) as err:
        planlib.validate_config({**CONFIG, "platform": "cuda"})
    assert "key 'platform' is 'cuda'; allowed values: 'auto', 'cpu', 'gpu', 'tpu'" in str(err.value)
    with pytest.raises(SpecError) as err:
        planlib.validate_config({**CONFIG, "scael": "cpu"})
    assert "scael" in str(err.value) and "allowed keys" in str(err.value)


@pytest.mark.parametrize("scale", ["smoke", "cpu", "paper"])
def test_every_figure_expands_at_every_scale(scale):
    plan = planlib.build_plan({**CONFIG, "scale": scale}, REPO)
    assert plan.figures, "no figures"
    for target, fig in plan.figures.items():
        assert fig.run_ids and all(plan.runs[r]["scale"] == scale for r in fig.run_ids)
        # every run belongs to exactly one batch; a batch shares everything but batch_over keys
        for batch in plan.figure_batches(target):
            shapes = {planlib.batch_key(plan.runs[r], plan.papers[fig.paper]["batch_over"]) for r in batch.run_ids}
            assert len(shapes) == 1


def test_lr_figure_grid_matches_the_spec():
    plan = planlib.build_plan({**CONFIG, "scale": "paper"}, REPO)
    runs = [plan.runs[r] for r in plan.figures["fig_nodepert_lr"].run_ids]
    assert {(s["rule"], s["hparams"]["lr"]) for s in runs} == {
        (rule, lr) for rule in ("np", "sgd") for lr in (1e-4, 1e-3, 1e-2, 0.017)}
    assert {(s["dataset"], s["epochs"], s["batch_size"], tuple(s["model"]["hidden"])) for s in runs} == {
        ("mnist", 200, 100, (500, 500))}
    assert {s["hparams"]["sigma"] for s in runs} == {1e-4}
    # NP runs of one figure share a batch: one process, one compile
    assert len(plan.figure_batches("fig_nodepert_lr")) == 2


def test_seeds_override_and_batch_cap():
    plan = planlib.build_plan({**CONFIG, "seeds": 3, "max_runs_per_batch": 4}, REPO)
    runs = plan.figures["fig_nodepert_lr"].run_ids
    assert len(runs) == 2 * 2 * 3
    assert all(len(b.run_ids) <= 4 for b in plan.batches.values())
    assert sorted(r for b in plan.batches.values() for r in b.run_ids) == sorted(plan.runs)


@pytest.mark.parametrize("per_job", [1, 2, 5, 64])
def test_train_jobs_cut_each_papers_batches_in_plan_order(per_job):
    config = {**CONFIG, "train_jobs": {"smoke": {"batches": per_job, "threads": 1}}}
    plan = planlib.build_plan(config, REPO)
    for paper in plan.papers:
        batches = [b for b, batch in plan.batches.items() if batch.paper == paper]
        jobs = [j for j in plan.jobs.values() if j.paper == paper]
        assert [b for j in jobs for b in j.batch_ids] == batches  # every batch once, in order
        assert all(1 <= len(j.batch_ids) <= per_job for j in jobs)
        assert len(jobs) == -(-len(batches) // per_job)
        assert all(plan.job_of[b] == j.job_id for j in jobs for b in j.batch_ids)
        # a job of one batch is named after it
        assert all(j.job_id == j.batch_ids[0] for j in jobs if len(j.batch_ids) == 1)


def test_train_jobs_default_per_scale_and_threads():
    smoke = planlib.build_plan({k: v for k, v in CONFIG.items() if k != "train_jobs"}, REPO)
    assert smoke.threads == 1 and len(smoke.jobs) == len(smoke.papers)
    cpu = planlib.build_plan({**CONFIG, "scale": "cpu", "train_jobs": {"cpu": {"threads": 3}}}, REPO)
    assert cpu.threads == 3 and all(j.batch_ids == (jid,) for jid, j in cpu.jobs.items())


def test_batch_files_are_written_once_and_only_when_changed(tmp_path):
    plan = planlib.build_plan(CONFIG, REPO)
    plan.write_batch_files(tmp_path)
    files = sorted(tmp_path.glob("*/batches/*/batch.json"))
    assert len(files) == len(plan.batches)
    some = plan.batch_file(tmp_path, next(iter(plan.batches)))
    assert json.loads(some.read_text())["runs"] == plan.batch_doc(some.parent.name)["runs"]
    stamps = {f: f.stat().st_mtime_ns for f in files}
    plan.write_batch_files(tmp_path)
    assert {f: f.stat().st_mtime_ns for f in files} == stamps  # unchanged: not rewritten
    some.write_text("{}")
    plan.write_batch_files(tmp_path)
    assert json.loads(some.read_text())["batch_id"] == some.parent.name  # changed: rewritten


def test_shared_runs_are_planned_once(tmp_path):
    """Two figures asking for the same run share its id and its batch."""
    doc = yaml.safe_load((REPO / "papers" / "nodepert" / "paper.yaml").read_text())
    lr = doc["figures"]["fig_nodepert_lr"]
    doc["figures"] = {"fig_nodepert_lr": lr, "fig_nodepert_copy": copy.deepcopy(lr)}  # only these two
    (tmp_path / "papers" / "nodepert").mkdir(parents=True)
    (tmp_path / "papers" / "nodepert" / "paper.yaml").write_text(yaml.safe_dump(doc))
    plan = planlib.build_plan({**CONFIG, "papers": ["nodepert"]}, tmp_path)
    a, b = plan.figures["fig_nodepert_lr"], plan.figures["fig_nodepert_copy"]
    assert a.run_ids == b.run_ids
    assert len(plan.runs) == len(a.run_ids)


def test_bad_paper_yaml_names_file_figure_and_key(tmp_path):
    doc = yaml.safe_load((REPO / "papers" / "nodepert" / "paper.yaml").read_text())
    doc["figures"]["fig_nodepert_lr"]["scales"]["smoke"]["grid"]["rule"] = ["np", "backprop"]
    (tmp_path / "papers" / "nodepert").mkdir(parents=True)
    (tmp_path / "papers" / "nodepert" / "paper.yaml").write_text(yaml.safe_dump(doc))
    with pytest.raises(SpecError) as err:
        planlib.build_plan({**CONFIG, "papers": ["nodepert"]}, tmp_path)
    msg = str(err.value)
    assert "papers/nodepert/paper.yaml" in msg and "fig_nodepert_lr" in msg and "key 'rule' is 'backprop'" in msg


def test_paper_targets_keep_their_names():
    """`snakemake <paper target>` names are in READMEs and benchmarks: the two older ones stay."""
    assert [planlib.paper_target(p) for p in ("nodepert", "bpfree", "pepita", "two_routes", "wide_align", "toy")] == [
        "nodepert_all", "bpfree", "pepita_all", "two_routes", "wide_align_all", "toy_all"]
