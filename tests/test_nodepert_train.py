"""The run contract of the nodepert impl: files, determinism, resume after a kill, divergence."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from impls.common import specs as speclib
from impls.common.aggregate import write_figure_table
from impls.common.io import read_json
from impls.common.plotting import plot_figure
from impls.common.checkpointing import KILL_AFTER_EPOCH_ENV


def make_specs(rule="np", lrs=(0.05, 0.1), seeds=(0,), epochs=3, activation="relu"):
    out = {}
    for lr in lrs:
        for seed in seeds:
            s = speclib.validate_spec({
                "paper": "nodepert", "rule": rule, "dataset": "digits", "seed": seed, "epochs": epochs,
                "model": {"arch": "mlp", "hidden": [32, 32], "activation": activation},
                "hparams": {"lr": lr, "sigma": 1e-4}, "batch_size": 100, "scale": "smoke"})
            out[speclib.run_id(s)] = s
    return out


def write_batch(results: Path, runs: dict, batch_id="b0") -> Path:
    path = results / "nodepert" / "batches" / batch_id / "batch.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"paper": "nodepert", "batch_id": batch_id, "runs": runs}))
    return path


def impl(command, batch: Path, datasets_dir: Path, env=None, **extra):
    args = [sys.executable, "-m", "impls.nodepert", command, str(batch), "--datasets-dir", str(datasets_dir)]
    for key, value in extra.items():
        args += [f"--{key.replace('_', '-')}", str(value)]
    return subprocess.run(args, capture_output=True, text=True, env={**os.environ, **(env or {})}, timeout=600)


def train_and_evaluate(tmp: Path, runs: dict, datasets_dir: Path, **extra) -> Path:
    batch = write_batch(tmp / "results", runs)
    for command in ("train", "evaluate"):
        done = impl(command, batch, datasets_dir, **extra)
        assert done.returncode == 0, done.stderr
    return tmp / "results" / "nodepert"


def test_writes_the_run_contract(tmp_path, datasets_dir):
    runs = make_specs()
    results = train_and_evaluate(tmp_path, runs, datasets_dir)
    for rid, spec in runs.items():
        run = results / "runs" / rid
        assert read_json(run / "spec.json") == spec
        metrics = pd.read_csv(run / "metrics.csv")
        assert list(metrics.columns) == ["epoch", "split", "metric", "value"]
        assert sorted(metrics.epoch.unique()) == [0, 1, 2, 3]
        assert set(zip(metrics.split, metrics.metric)) == {(s, m) for s in ("train", "test") for m in ("acc", "loss")}
        final = read_json(run / "final.json")
        assert final["status"] == "ok"
        test_acc = metrics.query("split == 'test' and metric == 'acc'").sort_values("epoch").value
        assert final["final"]["final_acc"] == pytest.approx(test_acc.tail(5).mean())
        prov = final["provenance"]
        assert {"jax", "numpy", "python"} <= set(prov["versions"]) and prov["device"]["backend"] == "cpu"
        assert prov["git_commit"] and final["wall_time_s"] > 0
        assert (run / "params.npz").exists()
    batch_dir = results / "batches" / "b0"
    assert read_json(batch_dir / "trained.json")["runs"] == {rid: "ok" for rid in runs}
    assert not (batch_dir / "checkpoint.npz").exists()


def test_run_trains_and_evaluates_several_batches_in_one_process(tmp_path, datasets_dir):
    """`run B1 B2 --job-file J` (what the train rule calls) gives each batch exactly what `train`
    then `evaluate` give it, and writes the job file last, naming both batches."""
    np_runs, sgd_runs = make_specs(epochs=2), make_specs(rule="sgd", lrs=(0.1,), epochs=2)
    one_by_one = tmp_path / "apart" / "results"
    for batch_id, runs in (("b1", np_runs), ("b2", sgd_runs)):
        batch = write_batch(one_by_one, runs, batch_id)
        for command in ("train", "evaluate"):
            assert impl(command, batch, datasets_dir).returncode == 0
    together = tmp_path / "together" / "results"
    batches = [write_batch(together, np_runs, "b1"), write_batch(together, sgd_runs, "b2")]
    job_file = together / "nodepert" / "jobs" / "j.json"
    done = subprocess.run([sys.executable, "-m", "impls.nodepert", "run", *map(str, batches), "--job-file",
                           str(job_file), "--datasets-dir", str(datasets_dir)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert sorted(read_json(job_file)["batches"]) == ["b1", "b2"]
    for rid in {**np_runs, **sgd_runs}:
        a, b = (root / "nodepert" / "runs" / rid for root in (one_by_one, together))
        pd.testing.assert_frame_equal(pd.read_csv(a / "metrics.csv"), pd.read_csv(b / "metrics.csv"))
        assert read_json(a / "final.json")["final"] == read_json(b / "final.json")["final"]
    for batch_id in ("b1", "b2"):
        assert (together / "nodepert" / "batches" / batch_id / "evaluated.json").exists()


def test_a_killed_train_job_skips_finished_batches_and_resumes_the_interrupted_one(tmp_path, datasets_dir):
    """A train job of two batches killed in the second: run again, it trains nothing of the first,
    resumes the second from its checkpoint and ends where an uninterrupted job ends."""
    first, second = make_specs(epochs=1), make_specs(rule="sgd", lrs=(0.1,), epochs=2)

    def run(root, env=None):
        batches = [write_batch(root, first, "b1"), write_batch(root, second, "b2")]
        job_file = root / "nodepert" / "jobs" / "j.json"
        return job_file, subprocess.run(
            [sys.executable, "-m", "impls.nodepert", "run", *map(str, batches), "--job-file", str(job_file),
             "--datasets-dir", str(datasets_dir), "--checkpoint-minutes", "0"],
            capture_output=True, text=True, env={**os.environ, **(env or {})}, timeout=600)

    _, whole = run(tmp_path / "whole")
    assert whole.returncode == 0, whole.stderr
    job_file, killed = run(tmp_path / "cut", {KILL_AFTER_EPOCH_ENV: "1"})
    batches = tmp_path / "cut" / "nodepert" / "batches"
    assert killed.returncode != 0 and not job_file.exists()
    assert (batches / "b1" / "evaluated.json").exists() and (batches / "b2" / "checkpoint.npz").exists()
    _, resumed = run(tmp_path / "cut")
    assert resumed.returncode == 0, resumed.stderr
    assert f"[b1] {len(first)} runs, 0 to train" in resumed.stderr
    assert "[b2] resumed from checkpoint at epoch 1" in resumed.stderr and job_file.exists()
    for rid in {**first, **second}:
        a, b = (tmp_path / side / "nodepert" / "runs" / rid for side in ("whole", "cut"))
        pd.testing.assert_frame_equal(pd.read_csv(a / "metrics.csv"), pd.read_csv(b / "metrics.csv"))
        assert read_json(a / "final.json")["final"] == read_json(b / "final.json")["final"]


def test_a_bad_batch_file_stops_the_job_before_any_training(tmp_path, datasets_dir):
    good = write_batch(tmp_path / "results", make_specs(epochs=1), "good")
    bad = write_batch(tmp_path / "results", {"np-x": {"paper": "nodepert"}}, "bad")
    job_file = tmp_path / "results" / "nodepert" / "jobs" / "j.json"
    done = subprocess.run([sys.executable, "-m", "impls.nodepert", "run", str(good), str(bad), "--job-file",
                           str(job_file), "--datasets-dir", str(datasets_dir)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 2 and "bad/batch.json: run 'np-x'" in done.stderr, done.stderr
    assert "epoch" not in done.stderr and not (tmp_path / "results" / "nodepert" / "runs").exists()
    assert not job_file.exists()


def test_same_spec_and_seed_give_identical_metrics(tmp_path, datasets_dir):
    runs = make_specs(lrs=(0.1,), seeds=(0, 1))
    a = train_and_evaluate(tmp_path / "a", runs, datasets_dir)
    b = train_and_evaluate(tmp_path / "b", runs, datasets_dir)
    for rid in runs:
        assert (a / "runs" / rid / "metrics.csv").read_text() == (b / "runs" / rid / "metrics.csv").read_text()
    s0, s1 = (pd.read_csv(a / "runs" / rid / "metrics.csv").value for rid in runs)
    assert not np.array_equal(s0, s1)  # different seeds really differ


def test_np_and_sgd_with_one_seed_start_from_identical_weights(tmp_path, datasets_dir):
    np_run = make_specs("np", lrs=(0.1,), epochs=0)
    sgd_run = make_specs("sgd", lrs=(0.1,), epochs=0)
    a = train_and_evaluate(tmp_path / "np", np_run, datasets_dir)
    b = train_and_evaluate(tmp_path / "sgd", sgd_run, datasets_dir)
    pa = np.load(a / "runs" / next(iter(np_run)) / "params.npz")
    pb = np.load(b / "runs" / next(iter(sgd_run)) / "params.npz")
    assert pa.files == pb.files and all(np.array_equal(pa[k], pb[k]) for k in pa.files)


def test_adam_runs_resume_with_identical_results_and_record_the_crash_class(tmp_path, datasets_dir):
    """Adam's moments live in the checkpointed optimiser state; a killed np_adam job must end
    exactly as an uninterrupted one. evaluate adds the crash classification to final.json."""
    runs = make_specs("np_adam", lrs=(1e-3, 1e-2), epochs=3)
    reference = train_and_evaluate(tmp_path / "ref", runs, datasets_dir, checkpoint_minutes=0)
    batch = write_batch(tmp_path / "killed" / "results", runs)
    killed = impl("train", batch, datasets_dir, env={KILL_AFTER_EPOCH_ENV: "1"}, checkpoint_minutes=0)
    assert killed.returncode == -9, killed.stderr
    resumed = impl("train", batch, datasets_dir, checkpoint_minutes=0)
    assert resumed.returncode == 0 and "resumed from checkpoint at epoch 1" in resumed.stderr
    assert impl("evaluate", batch, datasets_dir).returncode == 0
    results = tmp_path / "killed" / "results" / "nodepert"
    for rid in runs:
        assert (results / "runs" / rid / "metrics.csv").read_text() == \
            (reference / "runs" / rid / "metrics.csv").read_text()
        final = read_json(results / "runs" / rid / "final.json")
        assert final["crash"]["crash_class"] in ("crash", "no_crash", "no_learning")
        assert final["crash"]["criterion"] == {"drop": 25.0, "no_learning_max": 25.0, "no_learning_after": 50}


def test_trained_runs_are_not_trained_again(tmp_path, datasets_dir):
    runs = make_specs(lrs=(0.1,))
    results = train_and_evaluate(tmp_path, runs, datasets_dir)
    again = impl("train", results / "batches" / "b0" / "batch.json", datasets_dir)
    assert again.returncode == 0 and "0 to train" in again.stderr


def test_diverged_run_is_recorded_and_still_plotted(tmp_path, datasets_dir):
    # a linear net (no saturating output) at lr 10 blows up to inf/NaN within an epoch
    runs = make_specs("sgd", lrs=(1e-3, 10.0), epochs=3, activation="linear")
    results = train_and_evaluate(tmp_path, runs, datasets_dir)
    status = {rid: read_json(results / "runs" / rid / "final.json") for rid in runs}
    ok, bad = (status[r] for r in runs)
    assert ok["status"] == "ok" and ok["epochs_completed"] == 3
    assert bad["status"] == "diverged" and bad["diverged_epoch"] == 1 and bad["final"] == {}
    figure = {"paper": "nodepert", "target": "fig_test", "label": "Fig. T", "title": "t", "scale": "smoke",
              "dataset": "digits", "factors": ["rule", "hparams.lr", "seed"], "runs": runs,
              "plot": {"kind": "line", "x": "epoch", "y": "test_acc", "hue": "hparams.lr", "style": "rule"}}
    table = write_figure_table(figure, tmp_path / "results", tmp_path / "fig.csv")
    assert set(table.status) == {"ok", "diverged"}
    plot_figure(table, figure, tmp_path / "fig.png", tmp_path / "fig.pdf")
    assert (tmp_path / "fig.png").stat().st_size > 10_000 and (tmp_path / "fig.pdf").stat().st_size > 1_000


def test_bad_batch_file_exits_2_with_one_line(tmp_path, datasets_dir):
    runs = make_specs(lrs=(0.1,))
    rid, spec = next(iter(runs.items()))
    spec = {**spec, "rule": "magic"}
    batch = write_batch(tmp_path / "results", {rid: spec})
    done = impl("train", batch, datasets_dir)
    assert done.returncode == 2
    assert done.stderr.strip() == (f"error: {batch}: run {rid!r}: run spec: key 'rule' is 'magic'; "
                                   "allowed values: 'np', 'np_indep_noise', 'sgd', 'np_clean_pre', "
                                   "'np_batch_scalar', 'np_wd', 'sgd_wd', 'np_adam', 'sgd_adam'")
    assert not (tmp_path / "results" / "nodepert" / "runs").exists()


def test_missing_dataset_names_the_command(tmp_path):
    batch = write_batch(tmp_path / "results", make_specs(lrs=(0.1,)))
    done = impl("train", batch, tmp_path / "no-datasets")
    assert done.returncode == 2 and "snakemake --cores 1" in done.stderr and "digits.npz" in done.stderr


def test_tpu_requested_on_a_cpu_host_fails_loudly(tmp_path, datasets_dir):
    batch = write_batch(tmp_path / "results", make_specs(lrs=(0.1,)))
    done = impl("train", batch, datasets_dir, platform="tpu")
    assert done.returncode == 2
    assert "must run on platform=tpu" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "results" / "nodepert" / "runs").exists()
