"""A two_routes smoke figure rendered through the TFDS loader: Snakemake in a copy of the repo with
``data.loader: tfds`` and the session's TFDS data dir (conftest ``tfds_dir``, digits built offline).
Skipped, with the reason, where the optional TFDS extra is absent; `make test` installs it."""
from __future__ import annotations

import json

import pandas as pd
import pytest
import yaml

from tests.conftest import TFDS_MISSING, run_snakemake

pytest.importorskip("tensorflow_datasets", reason=TFDS_MISSING)

FIGURE = "fig_two_routes_noise"   # 2 small batches (SA, noise variance 0 and 1e-2), ResNet-8 on digits


@pytest.mark.e2e
def test_smoke_figure_renders_through_tfds(workdir, tfds_dir):
    config = {"data": {"loader": "tfds", "tfds_dir": str(tfds_dir)}, "papers": ["two_routes"],
              "train_jobs": {"smoke": {"batches": 1, "threads": 1}}}   # only this figure's batches, not the paper's
    (workdir / "tfds.yaml").write_text(yaml.safe_dump(config))
    done = run_snakemake(workdir, "--cores", "2", FIGURE, "--configfile", "tfds.yaml")
    assert done.returncode == 0, done.stderr[-5000:]
    meta = json.loads((workdir / "resources" / "datasets" / "digits.json").read_text())
    assert meta["source"].startswith("TFDS creditbench_digits/1.0.0 (array_record)")
    table = pd.read_csv(workdir / "results" / "two_routes" / f"{FIGURE}.csv")
    assert set(table["status"]) == {"ok"} and (workdir / "results" / "two_routes" / f"{FIGURE}.png").stat().st_size > 0
    for run in table["run_id"].unique():
        spec = json.loads((workdir / "results" / "two_routes" / "runs" / run / "spec.json").read_text())
        assert spec["dataset"] == "digits" and spec["data"]["loader"] == "tfds"
