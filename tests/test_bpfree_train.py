"""The bpfree train loop: trackers against identities, divergence, validation, resume (papers/bpfree/README.md,
"Metrics and trackers")."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pandas as pd
import pytest

from impls.bpfree.compiled import CompiledBatch, load_arrays
from impls.bpfree.figures import best_lr_table
from impls.common import specs as speclib
from impls.common.checkpointing import KILL_AFTER_EPOCH_ENV
from impls.common.errors import SpecError
from impls.common.io import read_json
from impls.common.plotting import plot_figure
from impls.rules.dfa import FeedbackState

jax.config.update("jax_default_matmul_precision", "highest")  # cosines compared to 1


def spec(rule="dfa", lr=1e-3, seed=0, epochs=2, trackers="all", **model):
    hp = {"lr": lr} if rule in ("bp", "fa") else {"lr": lr, "trackers": trackers}
    return speclib.validate_spec({
        "paper": "bpfree", "rule": rule, "dataset": "digits", "seed": seed, "epochs": epochs, "batch_size": 32,
        "model": {"arch": "mlp", "hidden": [16, 16], **model}, "hparams": hp, "scale": "smoke"})


def _run0(tree):
    return jax.tree_util.tree_map(lambda a: a[0], tree)


def test_trackers_are_one_for_the_backprop_update_and_aligned_weights(datasets_dir):
    # DFA with one hidden layer and B_1 = W_out is backprop: its bp_cosine must be 1;
    # aligned weights (W_2 = B_1 B_2ᵀ, W_out = B_L) must give weight alignment 1 (corrected definitions)
    s = spec(hidden=[16])
    program = CompiledBatch(s, load_arrays(s, datasets_dir))
    state, keys = program.init(np.array([0]), np.array([1e-3]))
    params = _run0(state["params"])
    x, labels = program.x_train[:32], program.y_train[:32]
    out = program._step(params, _run0(state["opt"]), FeedbackState(B=(params["out"]["w"],)), _run0(state["model"]),
                        jax.random.PRNGKey(1), x, labels)[-1]
    np.testing.assert_allclose(out["bpcosine_l1"], 1.0, atol=1e-5)
    np.testing.assert_allclose(out["walign_out"], 1.0, atol=1e-5)

    s = spec(hidden=[16, 12, 8])
    program = CompiledBatch(s, load_arrays(s, datasets_dir))
    state, keys = program.init(np.array([0]), np.array([1e-3]))
    params, B = _run0(state["params"]), _run0(state["rule"]).B
    params["hidden"][1]["w"] = B[0] @ B[1].T
    params["hidden"][2]["w"] = B[1] @ B[2].T
    params["out"]["w"] = B[2]
    out = program._step(params, _run0(state["opt"]), FeedbackState(B=B), _run0(state["model"]),
                        jax.random.PRNGKey(1), x, labels)[-1]
    for name in ("walign_l2", "walign_l3", "walign_out"):
        np.testing.assert_allclose(out[name], 1.0, atol=1e-5)
    assert set(program.tracker_names()) >= {"bpcosine_l1", "localloss_l3", "gradnorm_out", "wnorm_l2"}
    assert "walign_l1" not in program.tracker_names()  # undefined for the first layer


def test_drtp_for_reconstruction_is_rejected_with_a_clear_message():
    with pytest.raises(SpecError, match="rule 'drtp' cannot train model.task 'reconstruction'"):
        spec("drtp", task="reconstruction")
    with pytest.raises(SpecError, match="model.activation"):
        spec("dfa", activation="gelu")


def write_batch(results: Path, runs: dict, batch_id="b0") -> Path:
    path = results / "bpfree" / "batches" / batch_id / "batch.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"paper": "bpfree", "batch_id": batch_id, "runs": runs}))
    return path


def impl(command, batch, datasets_dir, env=None, **extra):
    args = [sys.executable, "-m", "impls.bpfree", command, str(batch), "--datasets-dir", str(datasets_dir)]
    for key, value in extra.items():
        args += [f"--{key.replace('_', '-')}", str(value)]
    return subprocess.run(args, capture_output=True, text=True, env={**os.environ, **(env or {})}, timeout=600)


def test_drtp_with_relu_blows_up_and_is_recorded_as_diverged(tmp_path, datasets_dir):
    runs = {speclib.run_id(s): s for s in (spec("drtp", lr=1e-3, epochs=3, activation="relu", hidden=[32, 32, 32]),
                                           spec("drtp", lr=0.1, epochs=3, activation="relu", hidden=[32, 32, 32]))}
    batch = write_batch(tmp_path / "results", runs)
    for command in ("train", "evaluate"):
        done = impl(command, batch, datasets_dir)
        assert done.returncode == 0, done.stderr
    finals = [read_json(tmp_path / "results" / "bpfree" / "runs" / rid / "final.json") for rid in runs]
    assert [f["status"] for f in finals] == ["ok", "diverged"]
    assert finals[1]["diverged_epoch"] >= 1
    metrics = pd.read_csv(tmp_path / "results" / "bpfree" / "runs" / list(runs)[0] / "metrics.csv")
    assert {"bpcosine_l1", "walign_out", "localloss_l2", "error", "acc"} <= set(metrics["metric"])
    figure = {"paper": "bpfree", "target": "tab_test", "label": "T", "title": "t", "scale": "smoke",
              "dataset": "digits", "factors": ["rule", "model.activation", "hparams.lr", "seed"], "runs": runs,
              "plot": {"kind": "table", "by": ["rule", "activation", "lr"], "metrics": ["final_test_error"]}}
    table = best_lr_table(figure, tmp_path / "results")
    assert set(table["status"]) == {"ok"} and set(table["diverged_lrs"]) == {1}   # the ok lr is chosen
    plot_figure(table, figure, tmp_path / "t.png", tmp_path / "t.pdf")
    assert (tmp_path / "t.png").stat().st_size > 5_000


def test_killed_job_resumes_with_identical_metrics(tmp_path, datasets_dir):
    runs = {speclib.run_id(s): s for s in (spec("cce", lr=1e-3, epochs=3, trackers=[], batchnorm=True, dropout=0.2),
                                           spec("cce", lr=1e-2, epochs=3, trackers=[], batchnorm=True, dropout=0.2))}
    ref = write_batch(tmp_path / "ref" / "results", runs)
    assert impl("train", ref, datasets_dir, checkpoint_minutes=0).returncode == 0
    batch = write_batch(tmp_path / "killed" / "results", runs)
    killed = impl("train", batch, datasets_dir, env={KILL_AFTER_EPOCH_ENV: "1"}, checkpoint_minutes=0)
    assert killed.returncode == -9, killed.stderr
    resumed = impl("train", batch, datasets_dir, checkpoint_minutes=0)
    assert resumed.returncode == 0 and "resumed from checkpoint at epoch 1" in resumed.stderr
    for rid in runs:
        a = (tmp_path / "ref" / "results" / "bpfree" / "runs" / rid / "metrics.csv").read_text()
        b = (tmp_path / "killed" / "results" / "bpfree" / "runs" / rid / "metrics.csv").read_text()
        assert a == b


def test_a_checkpoint_of_another_program_is_refused_naming_the_file(tmp_path, datasets_dir):
    # a checkpoint written by a 64-16-16-10 batch must not resume a 64-16-8-10 one: exit 2, the file named
    import shutil

    from impls.common.checkpoint import LAYOUT_KEY
    from impls.common.io import atomic_write_npz, load_npz

    wide, narrow = spec("bp", epochs=3, trackers=[]), spec("bp", epochs=3, trackers=[], hidden=[16, 8])
    first = write_batch(tmp_path / "a" / "results", {speclib.run_id(wide): wide})
    killed = impl("train", first, datasets_dir, env={KILL_AFTER_EPOCH_ENV: "1"}, checkpoint_minutes=0)
    assert killed.returncode == -9, killed.stderr
    written = first.parent / "checkpoint.npz"
    assert written.exists()

    other = write_batch(tmp_path / "b" / "results", {speclib.run_id(narrow): narrow})
    ckpt = other.parent / "checkpoint.npz"
    shutil.copy(written, ckpt)                      # as written: it holds another batch's runs
    refused = impl("train", other, datasets_dir, checkpoint_minutes=0)
    assert refused.returncode == 2, refused.stderr
    assert f"error: {ckpt} does not match" in refused.stderr and "holds runs" in refused.stderr

    data = load_npz(written)                         # relabelled with this batch's run: the shapes still differ
    meta = json.loads(str(data[LAYOUT_KEY]))
    meta["run_ids"] = [speclib.run_id(narrow)]
    atomic_write_npz(ckpt, {**data, LAYOUT_KEY: np.asarray(json.dumps(meta))})
    refused = impl("train", other, datasets_dir, checkpoint_minutes=0)
    assert refused.returncode == 2, refused.stderr
    assert f"error: {ckpt} does not match" in refused.stderr and "has shape [1, 16] in the file but [1, 8] here" \
        in refused.stderr
    assert not (tmp_path / "b" / "results" / "bpfree" / "runs" / speclib.run_id(narrow) / "train.json").exists()
    assert ckpt.exists()                             # refused, never deleted or overwritten
