"""Safe to stop, for every paper of the plan: a train job killed after an epoch resumes to identical results.

One table: the papers come from config/config.yaml and each row is a smoke batch of that paper's
own figures (impls.common.plan), trained three times through ``python -m impls.<paper> train``:
uninterrupted; killed (SIGKILL) right after the checkpoint of epoch 1; and restarted. The restart
must say where it resumed, leave no checkpoint, and end with the same metrics, parameters and
run statuses as the uninterrupted job. Resume cases with state of their own (optimiser moments,
early stops, a pending remainder, the recurrent Add task, streamed ImageNet) stay beside their
paper's other tests.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import yaml

from impls.common.checkpointing import KILL_AFTER_EPOCH_ENV
from impls.common.driver import CHECKPOINT_FILE
from impls.common.io import read_json
from impls.common.plan import build_plan
from tests.conftest import REPO

PLAN = build_plan(yaml.safe_load((REPO / "config" / "config.yaml").read_text()), REPO)
#: the metrics split that measures the machine, not the training (wide_align's time_epoch)
CLOCK_SPLIT = "time"


def resumable_batch(paper: str):
    """The paper's cheapest smoke batch that has an epoch to resume (≥ 2 epochs), stacked runs first."""
    batches = [b for b in PLAN.batches.values() if b.paper == paper and PLAN.runs[b.run_ids[0]]["epochs"] >= 2]

    def cost(batch):
        spec = PLAN.runs[batch.run_ids[0]]
        return (len(batch.run_ids) < 2, len(batch.run_ids) * spec["epochs"], batch.batch_id)

    return min(batches, key=cost)


def _train(root, paper, batch, datasets_dir, env=None):
    path = root / "results" / paper / "batches" / batch.batch_id / "batch.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"paper": paper, "batch_id": batch.batch_id,
                                "runs": {rid: PLAN.runs[rid] for rid in batch.run_ids}}))
    done = subprocess.run([sys.executable, "-m", f"impls.{paper}", "train", str(path), "--datasets-dir",
                           str(datasets_dir), "--checkpoint-minutes", "0"], cwd=REPO, capture_output=True,
                          text=True, env={**os.environ, **(env or {})}, timeout=1200)
    return path.parent, done


def _without_clocks(run_dir):
    table = pd.read_csv(run_dir / "metrics.csv")
    return table[table["split"] != CLOCK_SPLIT].reset_index(drop=True)


@pytest.mark.slow
@pytest.mark.parametrize("paper", list(PLAN.papers))
def test_a_killed_job_resumes_to_identical_results(tmp_path, datasets_dir, paper):
    batch = resumable_batch(paper)
    _, whole = _train(tmp_path / "whole", paper, batch, datasets_dir)
    assert whole.returncode == 0, whole.stderr[-3000:]

    batch_dir, killed = _train(tmp_path / "cut", paper, batch, datasets_dir, {KILL_AFTER_EPOCH_ENV: "1"})
    assert killed.returncode != 0 and (batch_dir / CHECKPOINT_FILE).exists(), killed.stderr[-3000:]
    assert not (batch_dir / "trained.json").exists()
    _, resumed = _train(tmp_path / "cut", paper, batch, datasets_dir)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resumed from checkpoint at epoch 1" in resumed.stderr
    assert not (batch_dir / CHECKPOINT_FILE).exists()

    for rid in batch.run_ids:
        a, b = (tmp_path / side / "results" / paper / "runs" / rid for side in ("whole", "cut"))
        pd.testing.assert_frame_equal(_without_clocks(a), _without_clocks(b))
        with np.load(a / "params.npz") as pa, np.load(b / "params.npz") as pb:
            assert sorted(pa.files) == sorted(pb.files)
            for name in pa.files:
                np.testing.assert_array_equal(pa[name], pb[name], err_msg=f"{rid}: {name}")
        ta, tb = read_json(a / "train.json"), read_json(b / "train.json")
        assert (ta["status"], ta["diverged_epoch"], ta["epochs_completed"]) == (
            tb["status"], tb["diverged_epoch"], tb["epochs_completed"])
