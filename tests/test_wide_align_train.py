"""The wide_align train loop: stacked runs, frozen copies, both accuracy splits, resume, CLI, plan."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch

from impls.common import specs as speclib
from impls.common.errors import SpecError
from impls.common.io import atomic_write_json, read_json
from impls.wide_align.stacked import StackedRuns, load_images
from tests.conftest import REPO

torch.set_num_threads(1)


def digits_spec(rule="bp", seed=99, lr=1.0, epochs=1, width=8, **hp):
    return speclib.validate_spec(dict(paper="wide_align", rule=rule, model={"arch": "allconv", "depth": 3, "width": width},
                                      dataset="digits", hparams={"lr": lr, "n_val": 300, **hp}, seed=seed, epochs=epochs,
                                      batch_size=100, scale="smoke"))


def test_splits_are_validation_first_then_train_and_the_official_test_set(datasets_dir):
    data = load_images(digits_spec(), datasets_dir)
    assert len(data["val"][0]) == 300 and len(data["train"][0]) == 1000 and len(data["test"][0]) == 497
    assert float(data["train"][0].max()) == 1.0 and data["train"][0].shape[1:] == (1, 8, 8)
    spec = digits_spec()
    spec["data"] = {"n_train": 45}
    data = load_images(spec, datasets_dir)
    assert len(data["train"][0]) == 45 and len(data["val"][0]) == 45


@pytest.mark.parametrize("rule", ["alignzero", "alignada", "dfa", "fa"])
def test_a_run_does_not_depend_on_its_batch_mates_and_frozen_copies_never_change(datasets_dir, rule):
    specs = [digits_spec(rule, seed=s, lr=lr) for s, lr in ((99, 1.0), (100, 5.0), (99, 5.0))]
    data = load_images(specs[0], datasets_dir)
    both = StackedRuns(specs, data, "cpu")
    w0 = [w.clone() for w in both.params0["w"]]
    stats = both.train_epoch()
    assert all(torch.equal(a, b) for a, b in zip(w0, both.params0["w"]))
    assert not torch.equal(both.params["w"][0], w0[0]) or rule == "lastlayer"
    alone = StackedRuns(specs[1:2], data, "cpu")
    stats_alone = alone.train_epoch()
    assert stats["train_loss"][1] == pytest.approx(stats_alone["train_loss"][0], rel=1e-5)
    assert torch.allclose(both.params["w"][1][1], alone.params["w"][1][0], rtol=1e-4, atol=1e-6)


def test_every_rule_starts_from_the_same_weights_for_a_seed(datasets_dir):
    data = load_images(digits_spec(), datasets_dir)
    w = [StackedRuns([digits_spec(r)], data, "cpu").params["w"][1] for r in ("bp", "fa", "dfa", "alignada")]
    assert all(torch.equal(w[0], x) for x in w[1:])


def _write_batch(tmp_path, specs, name="b0"):
    results = tmp_path / "results" / "wide_align"
    batch_dir = results / "batches" / name
    runs = {speclib.run_id(s): s for s in specs}
    atomic_write_json(batch_dir / "batch.json", {"paper": "wide_align", "batch_id": name, "runs": runs})
    return batch_dir / "batch.json", results, list(runs)


def _cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "impls.wide_align", *map(str, args)], cwd=REPO, capture_output=True,
                          text=True, env={**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", **(env or {})},
                          timeout=300)


def test_cli_trains_scores_and_a_killed_job_resumes_to_identical_metrics(tmp_path, datasets_dir):
    specs = [digits_spec("bp", seed=s, lr=lr, epochs=3, score_epochs=[1, 3], score_probes=5)
             for s in (99, 100) for lr in (1.0, 5.0)]
    batch, results, ids = _write_batch(tmp_path / "a", specs)
    done = _cli("train", batch, "--datasets-dir", datasets_dir, "--platform", "cpu")
    assert done.returncode == 0, done.stderr
    ev = _cli("evaluate", batch, "--datasets-dir", datasets_dir)
    assert ev.returncode == 0, ev.stderr
    for rid in ids:
        run = results / "runs" / rid
        final = read_json(run / "final.json")
        assert final["status"] == "ok"
        assert {"val_acc", "best_val_acc", "test_acc", "time_epoch"} <= set(final["final"])
        record = read_json(run / "train.json")
        assert record["runs_in_batch"] == 4 and record["n_val"] == 300 and record["n_test"] == 497
        metrics = pd.read_csv(run / "metrics.csv")
        assert {"train", "val", "test", "time"} <= set(metrics["split"])
        snaps = np.load(run / "align_snapshots.npz")
        assert sorted({k.split("_")[1] for k in snaps.files}) == ["e0", "e1", "e3"]  # only the scored epochs
        align = pd.read_csv(run / "alignment.csv")
        assert list(align["epoch"].unique()) == [1, 3] and list(align["layer"].unique()) == [1, 2, 3]
        assert align["score"].between(-1, 1).all() and align["control"].between(-1, 1).all()

    batch_b, results_b, _ = _write_batch(tmp_path / "b", specs)
    killed = _cli("train", batch_b, "--datasets-dir", datasets_dir, "--platform", "cpu", "--checkpoint-minutes", 0,
                  env={"CREDITBENCH_KILL_AFTER_EPOCH": "1"})
    assert killed.returncode != 0 and (batch_b.parent / "checkpoint.npz").exists()
    resumed = _cli("train", batch_b, "--datasets-dir", datasets_dir, "--platform", "cpu", "--checkpoint-minutes", 0)
    assert resumed.returncode == 0 and "resumed from checkpoint at epoch 1" in resumed.stderr
    for rid in ids:
        a = pd.read_csv(results / "runs" / rid / "metrics.csv").query("split != 'time'").reset_index(drop=True)
        b = pd.read_csv(results_b / "runs" / rid / "metrics.csv").query("split != 'time'").reset_index(drop=True)
        pd.testing.assert_frame_equal(a, b)
        sa, sb = np.load(results / "runs" / rid / "align_snapshots.npz"), np.load(results_b / "runs" / rid / "align_snapshots.npz")
        assert all(np.array_equal(sa[k], sb[k]) for k in sa.files)
    assert not (batch_b.parent / "checkpoint.npz").exists()


def test_a_checkpoint_of_another_program_is_refused_naming_the_file(tmp_path, datasets_dir):
    import json
    import shutil

    from impls.common.io import atomic_write_npz, load_npz

    batch_a, _, _ = _write_batch(tmp_path / "a", [digits_spec("bp", epochs=2, width=8)])
    killed = _cli("train", batch_a, "--datasets-dir", datasets_dir, "--platform", "cpu", "--checkpoint-minutes", 0,
                  env={"CREDITBENCH_KILL_AFTER_EPOCH": "1"})
    written = batch_a.parent / "checkpoint.npz"
    assert killed.returncode != 0 and written.exists()
    batch_b, results_b, ids_b = _write_batch(tmp_path / "b", [digits_spec("bp", epochs=2, width=16)])
    target = batch_b.parent / "checkpoint.npz"
    # the width-8 state under batch b's run ids (as if the code had changed the net): refused by its shape
    arrays = load_npz(written)
    meta = json.loads(str(arrays["__layout__"]))
    meta["run_ids"] = ids_b
    atomic_write_npz(target, {**arrays, "__layout__": np.asarray(json.dumps(meta))})
    refused = _cli("train", batch_b, "--datasets-dir", datasets_dir, "--platform", "cpu")
    assert refused.returncode == 2, refused.stderr[-2000:]
    assert f"error: {target} does not match" in refused.stderr and "has shape" in refused.stderr
    assert "[1, 8, 1, 3, 3] in the file but [1, 16, 1, 3, 3] here" in refused.stderr
    # another batch's checkpoint as it is: refused by its runs
    shutil.copy(written, target)
    refused = _cli("train", batch_b, "--datasets-dir", datasets_dir, "--platform", "cpu")
    assert refused.returncode == 2 and f"error: {target} does not match" in refused.stderr
    assert "it holds runs" in refused.stderr
    assert target.exists() and not (results_b / "runs" / ids_b[0] / "train.json").exists()


@pytest.mark.parametrize("hp,message", [({"optimizer": "rmsprop"}, "hparams.optimizer"),
                                        ({"score_epochs": [5]}, "score_epochs"),
                                        ({"bogus": 1}, "hparams.bogus")])
def test_bad_spec_names_the_key(hp, message):
    with pytest.raises(SpecError, match=message):
        digits_spec(**hp)
    with pytest.raises(SpecError, match="'rule'"):
        digits_spec(rule="drtp")
    with pytest.raises(SpecError, match="model.norm"):
        speclib.validate_spec(dict(paper="wide_align", rule="bp", model={"arch": "allconv", "norm": "layer"},
                                   dataset="digits", hparams={"lr": 1.0}, seed=0, epochs=1, batch_size=8, scale="smoke"))


@pytest.mark.parametrize("scale", ["smoke", "cpu", "paper"])
def test_every_target_expands_at_every_scale_with_seeds_and_lrs_batched(scale):
    import yaml

    from impls.common.plan import build_plan

    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    config.update(scale=scale, papers=["wide_align"])
    plan = build_plan(config, REPO)
    assert len(plan.targets("wide_align")) == 11
    for batch in plan.batches.values():
        specs = [plan.runs[r] for r in batch.run_ids]
        keys = {(s["rule"], s["model"]["width"], s["epochs"], s["batch_size"]) for s in specs}
        assert len(keys) == 1  # only seeds and learning rates vary inside a batch
