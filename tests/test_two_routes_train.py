"""two_routes train loop: vectorised seeds, checkpoints of another program refused, spec validation names the key
(kill + resume = uninterrupted: tests/test_resume.py)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from impls.common import specs
from impls.common.errors import SpecError
from tests.run_batches import assert_looped_batch_matches

REPO = Path(__file__).resolve().parents[1]


def _spec(**over):
    spec = {"paper": "two_routes", "rule": "sa", "dataset": "digits", "seed": 0, "epochs": 2, "batch_size": 64,
            "scale": "smoke", "model": {"arch": "resnet", "stem": "cifar", "depth": 8, "width": 4},
            "hparams": {"lr": 0.1, "warmup_epochs": 0.0, "decay_epochs": [], "noise_var": 1.0e-3}}
    spec.update(over)
    return specs.validate_spec(spec)


def _train(batch: Path, datasets_dir: Path, env_extra=None):
    env = {**os.environ, "PYTHONPATH": str(REPO), **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "impls.two_routes", "train", str(batch), "--datasets-dir",
                           str(datasets_dir), "--platform", "cpu", "--checkpoint-minutes", "0"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=900)


def _batch(root: Path, runs: dict) -> Path:
    path = root / "two_routes" / "batches" / "b" / "batch.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"paper": "two_routes", "batch_id": "b", "runs": runs}))
    return path


def test_a_checkpoint_of_another_program_shape_is_refused(tmp_path, datasets_dir):
    """A checkpoint.npz for these very runs but written by a program of another shape (FC hidden 32 where the
    batch trains hidden 16) is refused: exit 2, one message naming the file and the differing array."""
    from impls.common import checkpoint
    from impls.common.cli import TrainOptions, load_batch
    from impls.two_routes.train import make_program

    small, big = (_spec(model={"arch": "fc", "hidden": [h]}, batch_size=16) for h in (16, 32))
    rid = specs.run_id(small)
    batch = _batch(tmp_path, {rid: small})
    other = _batch(tmp_path / "other", {specs.run_id(big): big})
    job = load_batch(other, tmp_path / "other" / "two_routes")
    program = make_program(job, TrainOptions(datasets_dir, 0.0, "cpu"))   # its state: the hidden-32 arrays
    history = {k: np.full((small["epochs"] + 1, 1), np.nan) for k in program.metric_names}
    ckpt = batch.parent / "checkpoint.npz"
    checkpoint.save(ckpt, checkpoint.Snapshot(1, [rid], 0.0, history, np.array([-1]), np.array([-1]),
                                              program.state()))
    done = _train(batch, datasets_dir)
    assert done.returncode == 2, done.stderr[-2000:]
    assert f"error: {ckpt} does not match the program it would resume" in done.stderr
    assert "has shape" in done.stderr and ckpt.exists()
    assert not (tmp_path / "two_routes" / "runs" / rid / "train.json").exists()


@pytest.mark.parametrize("override,key", [
    ({"rule": "dfa"}, "rule"),
    ({"model": {"arch": "resnet", "depth": 9}}, "model.depth"),
    ({"model": {"arch": "resnet", "stem": "imagenet", "depth": 20}}, "model.depth"),
    ({"model": {"arch": "linear"}, "rule": "kp"}, "rule"),
    ({"hparams": {"lr": 0.1, "noise_target": "forward"}}, "hparams.noise_target"),
    ({"hparams": {"lr": 0.1, "momentum_typo": 1}}, "hparams.momentum_typo"),
])
def test_bad_spec_names_its_key(override, key):
    with pytest.raises(SpecError, match=f"'{key}'"):
        _spec(**override)


def test_fc_run_with_spec_options_trains_and_records_them(tmp_path, datasets_dir):
    """The smoke-size FC 64-32-10 (sigmoid) with AA, a delayed task loss, alternating steps, a scheduled α
    and the R-only switches: trains through the real entry and lists every option in train.json."""
    spec = _spec(rule="aa", model={"arch": "fc", "hidden": [32]}, batch_size=16,
                 hparams={"lr": 0.1, "warmup_epochs": 0.0, "decay_epochs": [], "wd": 1.0e-6, "delay_epochs": 0.5,
                          "alternate_step_freq": 1, "alpha_schedule_type": "exponential", "alpha_schedule_rate": 0.5,
                          "activation_forward": True, "activation_backward": True, "center_input": True})
    rid = specs.run_id(spec)
    assert _train(_batch(tmp_path, {rid: spec}), datasets_dir).returncode == 0
    run = tmp_path / "two_routes" / "runs" / rid
    record = json.loads((run / "train.json").read_text())
    assert record["status"] == "ok"
    hp = record["options"]["hparams"]
    assert hp["delay_epochs"] == 0.5 and hp["alternate_step_freq"] == 1 and hp["activation_forward"] is True
    assert hp["alpha_schedule_type"] == "exponential" and hp["use_bias_forward"] is False
    assert record["options"]["model"] == {**record["options"]["model"], "arch": "fc", "hidden": [32]}
    m = pd.read_csv(run / "metrics.csv")
    final = m[(m.split == "test") & (m.metric == "acc") & (m.epoch == 2)]["value"].item()
    assert final > 20.0                                   # learns in 2 epochs (chance = 10 %)
    assert set(m[(m.split == "align") & m.metric.str.startswith("weight_angle")].metric) == {
        "weight_angle:dense0", "weight_angle:dense_output"}


def test_runs_looped_on_cpu_equal_each_run_alone_and_the_vmapped_batch(datasets_dir):
    """On CPU a batch loops over its runs (jax_state.over_runs, lax.map) instead of vmapping them: each run of a batch
    of two equals the run trained alone, and the vmapped program agrees to float32 rounding."""
    import jax
    import numpy as np

    from impls.two_routes.compiled import CompiledBatch, load_arrays

    spec = _spec(epochs=1, model={"arch": "fc", "hidden": [16]})   # the looping is the same for every arch
    arrays = load_arrays(spec, datasets_dir)

    def train(seeds, sequential):
        prog = CompiledBatch(spec, arrays, sequential_runs=sequential)
        state, keys = prog.init(seeds, [0.1] * len(seeds))
        state, out = prog.train_epoch(state, keys, 0)
        out = {**out, **prog.evaluate(state), **prog.measure(state, keys)}
        return [np.asarray(v) for v in jax.tree_util.tree_leaves((state, out))]

    assert_looped_batch_matches(train, tolerance=1e-3)


def test_a_non_finite_backward_objective_counts_as_divergence():
    """IA at cpu scale: B overflowed to NaN kernels while batch norm kept the loss at chance (2.30)."""
    from impls.two_routes.program import DIVERGED_LOSS, diverged_at

    nan = float("nan")
    history = {"train_loss": np.array([[nan] * 4, [2.3, 2.3, nan, 2.3]]),
               "test_loss": np.array([[2.3] * 4, [2.3, 2.3, 2.3, 10 * DIVERGED_LOSS]]),
               "train_R": np.array([[nan] * 4, [0.0, nan, 0.0, 0.0]])}
    assert diverged_at(history, 1).tolist() == [False, True, True, True]
