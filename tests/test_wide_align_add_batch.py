"""The Add task's stacked runs (one RNN with a leading run axis) equal the same runs trained alone."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from impls.common import specs as speclib
from impls.wide_align import add_task

torch.set_num_threads(1)


def add_spec(rule, lr, seed=99, width=8, epochs=3, **hp):
    return speclib.validate_spec(dict(paper="wide_align", rule=rule, model={"arch": "rnn", "width": width},
                                      dataset="digits", hparams={"lr": lr, **hp}, seed=seed, epochs=epochs,
                                      batch_size=50, scale="smoke"))


@pytest.mark.parametrize("rule,hp", [("bptt", {}), ("alignzero", {}), ("alignada", {}), ("readout", {}),
                                     ("alignada", {"add_alignada": "released", "add_targets": "released"})])
def test_stacked_runs_equal_runs_alone(rule, hp):
    """float64: equal to ~1e-12 (in float32 the 100-step backward through time amplifies the rounding of
    batched vs single matmuls to ~1e-3 relative on the tiny initial-state gradients; losses agree to 2e-5)."""
    specs = [add_spec(rule, lr, seed=seed, **hp) for lr, seed in ((1e-3, 99), (4e-3, 100), (2e-3, 99))]
    together = add_task.train_stacked(specs, dtype=torch.float64)
    for spec, got in zip(specs, together):
        alone = add_task.train_one(spec, dtype=torch.float64)
        assert got["diverged"] is None and alone["diverged"] is None
        for key in ("train_loss", "test_loss"):
            np.testing.assert_allclose(got["history"][key], alone["history"][key], rtol=1e-12)
        for name in add_task.NAMES:
            torch.testing.assert_close(got["params"][name], alone["params"][name], rtol=1e-9, atol=1e-15)
    single = add_task.train_stacked(specs[1:2])[0]["history"]["train_loss"]
    np.testing.assert_allclose(single, add_task.train_one(specs[1])["history"]["train_loss"], rtol=2e-5)


def test_a_diverging_run_stops_alone_and_leaves_its_batch_mates_untouched():
    specs = [add_spec("bptt", 1e-3, epochs=4), add_spec("bptt", 1.0, epochs=4)]
    together = add_task.train_stacked(specs)
    alone = [add_task.train_one(s) for s in specs]
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
        np.testing.assert_allclose(loss, add_task.train_one(spec)["history"]["train_loss"], rtol=2e-5)
