"""The Add task's stacked runs (one RNN with a leading run axis) equal the same runs trained alone."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from impls.common import driver
from impls.common import specs as speclib
from impls.common.cli import BatchJob, TrainOptions
from impls.common.io import read_json
from impls.wide_align import add_task

torch.set_num_threads(1)
_BATCHES = itertools.count()


def train(tmp_path, specs, dtype=torch.float32, stacked=None) -> list[dict]:
    """Train ``specs`` as one batch through the common driver; per run its history (every metric the
    program returned, up to its last recorded epoch, at full precision), final parameters and divergence."""
    batch_dir = tmp_path / f"batch{next(_BATCHES)}"
    ids = tuple(f"run{i}" for i in range(len(specs)))
    job = BatchJob("wide_align", batch_dir.name, batch_dir, ids, tuple(specs), tuple(batch_dir / i for i in ids))
    made, rows = [], []

    class Recording(add_task.AddProgram):
        def evaluate(self):
            rows.append(super().evaluate())
            return rows[-1]

        def train_epoch(self, progress):
            rows.append(super().train_epoch(progress))
            return rows[-1]

    def make(job, options):
        made.append(Recording(list(job.specs), dtype, stacked))
        return made[0]

    driver.train(job, TrainOptions(tmp_path, 10.0, "cpu"), make)
    out = []
    for i, run_dir in enumerate(job.run_dirs):
        record = read_json(run_dir / "train.json")
        last = record["epochs_completed"]
        history = {k: np.array([row[k][i] for row in rows[:last + 1] if k in row]) for k in ("train_loss", "test_loss")}
        out.append({"history": history, "params": made[0].run_params(i), "diverged": record["diverged_epoch"]})
    return out


def add_spec(rule, lr, seed=99, width=8, epochs=3, **hp):
    return speclib.validate_spec(dict(paper="wide_align", rule=rule, model={"arch": "rnn", "width": width},
                                      dataset="digits", hparams={"lr": lr, **hp}, seed=seed, epochs=epochs,
                                      batch_size=50, scale="smoke"))


@pytest.mark.parametrize("rule,hp", [("bptt", {}), ("alignzero", {}), ("alignada", {}), ("readout", {}),
                                     ("alignada", {"add_alignada": "released", "add_targets": "released"})])
def test_stacked_runs_equal_runs_alone(tmp_path, rule, hp):
    """float64: equal to ~1e-12 (in float32 the 100-step backward through time amplifies the rounding of
    batched vs single matmuls to ~1e-3 relative on the tiny initial-state gradients; losses agree to 2e-5)."""
    specs = [add_spec(rule, lr, seed=seed, **hp) for lr, seed in ((1e-3, 99), (4e-3, 100), (2e-3, 99))]
    together = train(tmp_path, specs, dtype=torch.float64)
    for spec, got in zip(specs, together):
        alone = train(tmp_path, [spec], dtype=torch.float64)[0]
        assert got["diverged"] is None and alone["diverged"] is None
        for key in ("train_loss", "test_loss"):
            np.testing.assert_allclose(got["history"][key], alone["history"][key], rtol=1e-12)
        for name in add_task.NAMES:
            torch.testing.assert_close(got["params"][name], alone["params"][name], rtol=1e-9, atol=1e-15)
    single = train(tmp_path, specs[1:2], stacked=True)[0]["history"]["train_loss"]
    np.testing.assert_allclose(single, train(tmp_path, specs[1:2])[0]["history"]["train_loss"], rtol=2e-5)


def test_a_diverging_run_stops_alone_and_leaves_its_batch_mates_untouched(tmp_path):
    specs = [add_spec("bptt", 1e-3, epochs=4), add_spec("bptt", 1.0, epochs=4)]
    together = train(tmp_path, specs)
    alone = [train(tmp_path, [s])[0] for s in specs]
    assert alone[1]["diverged"] is not None and together[1]["diverged"] == alone[1]["diverged"]
    assert len(together[1]["history"]["train_loss"]) == len(alone[1]["history"]["train_loss"])
    assert together[0]["diverged"] is None
    np.testing.assert_allclose(together[0]["history"]["train_loss"], alone[0]["history"]["train_loss"], rtol=2e-5)


def test_a_batch_of_add_runs_trains_stacked_through_the_cli(tmp_path):
    import json
    import os
    import subprocess
    import sys

    import pandas as pd

    from tests.conftest import REPO

    specs = [add_spec("alignzero", lr, epochs=2) for lr in (1e-3, 2e-3)]
    runs = {speclib.run_id(s): s for s in specs}
    batch = tmp_path / "wide_align" / "batches" / "b" / "batch.json"
    batch.parent.mkdir(parents=True)
    batch.write_text(json.dumps({"paper": "wide_align", "batch_id": "b", "runs": runs}))
    done = subprocess.run([sys.executable, "-m", "impls.wide_align", "train", str(batch), "--datasets-dir",
                           str(tmp_path), "--platform", "cpu"], cwd=REPO, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    for rid, spec in runs.items():
        run = tmp_path / "wide_align" / "runs" / rid
        record = json.loads((run / "train.json").read_text())
        assert record["stacked"] and record["runs_in_batch"] == 2 and record["status"] == "ok"
        loss = pd.read_csv(run / "metrics.csv").query("split == 'train' and metric == 'loss'")["value"].to_numpy()
        np.testing.assert_allclose(loss, train(tmp_path, [spec])[0]["history"]["train_loss"], rtol=2e-5)


def test_a_killed_add_batch_resumes_to_identical_metrics_and_parameters(tmp_path):
    import json
    import os
    import subprocess
    import sys

    import pandas as pd

    from tests.conftest import REPO

    specs = [add_spec("alignada", lr, seed=seed, epochs=3) for lr, seed in ((1e-3, 99), (2e-3, 100))]
    runs = {speclib.run_id(s): s for s in specs}

    def cli(root, **env):
        batch = root / "wide_align" / "batches" / "b" / "batch.json"
        batch.parent.mkdir(parents=True, exist_ok=True)
        batch.write_text(json.dumps({"paper": "wide_align", "batch_id": "b", "runs": runs}))
        return batch, subprocess.run(
            [sys.executable, "-m", "impls.wide_align", "train", str(batch), "--datasets-dir", str(tmp_path),
             "--platform", "cpu", "--checkpoint-minutes", "0"], cwd=REPO, capture_output=True, text=True, timeout=300,
            env={**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", **env})

    assert cli(tmp_path / "a")[1].returncode == 0
    batch, killed = cli(tmp_path / "b", CREDITBENCH_KILL_AFTER_EPOCH="1")
    assert killed.returncode != 0 and (batch.parent / "checkpoint.npz").exists()
    _, resumed = cli(tmp_path / "b")
    assert resumed.returncode == 0 and "resumed from checkpoint at epoch 1" in resumed.stderr, resumed.stderr[-2000:]
    assert not (batch.parent / "checkpoint.npz").exists()
    for rid in runs:
        a, b = (tmp_path / root / "wide_align" / "runs" / rid for root in ("a", "b"))
        ma, mb = (pd.read_csv(d / "metrics.csv").query("split != 'time'").reset_index(drop=True) for d in (a, b))
        pd.testing.assert_frame_equal(ma, mb, check_exact=True)
        pa, pb = np.load(a / "params.npz"), np.load(b / "params.npz")
        assert pa.files == list(add_task.NAMES) and all(np.array_equal(pa[k], pb[k]) for k in pa.files)
