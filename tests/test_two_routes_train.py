"""two_routes train loop: vectorised seeds, kill + resume = uninterrupted, spec validation names the key."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from impls.common import specs
from impls.common.errors import SpecError

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


def test_killed_batch_resumes_to_the_same_metrics(tmp_path, datasets_dir):
    runs = {specs.run_id(s): s for s in (_spec(seed=0), _spec(seed=1))}   # two seeds, one vmapped process
    whole = _batch(tmp_path / "a", runs)
    assert _train(whole, datasets_dir).returncode == 0
    killed = _batch(tmp_path / "b", runs)
    first = _train(killed, datasets_dir, {"CREDITBENCH_KILL_AFTER_EPOCH": "1"})
    assert first.returncode != 0 and (killed.parent / "checkpoint.npz").exists()
    second = _train(killed, datasets_dir)
    assert second.returncode == 0 and "resumed from checkpoint at epoch 1" in second.stderr
    for rid in runs:
        a = pd.read_csv(tmp_path / "a" / "two_routes" / "runs" / rid / "metrics.csv")
        b = pd.read_csv(tmp_path / "b" / "two_routes" / "runs" / rid / "metrics.csv")
        pd.testing.assert_frame_equal(a, b)
        record = json.loads((tmp_path / "b" / "two_routes" / "runs" / rid / "train.json").read_text())
        assert record["runs_in_batch"] == 2 and record["status"] == "ok"
    m0, m1 = (pd.read_csv(tmp_path / "a" / "two_routes" / "runs" / rid / "metrics.csv") for rid in runs)
    assert not m0["value"].equals(m1["value"])   # the seeds differ


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
