"""End to end: every wide_align target at smoke scale through Snakemake (enabled via --config)."""
from __future__ import annotations

import pandas as pd
import pytest

from impls.common.io import read_json
from tests.conftest import run_snakemake

pytestmark = pytest.mark.e2e

TARGETS = ["fig_wide_align_score_width", "fig_wide_align_score_time", "fig_wide_align_width", "fig_wide_align_lr",
           "fig_wide_align_standard_param", "fig_wide_align_small_data", "fig_wide_align_prop",
           "fig_wide_align_seeds", "fig_wide_align_time", "fig_wide_align_add", "tab_wide_align_imagenet"]


def test_every_wide_align_target_renders_at_smoke_scale(workdir):
    dry = run_snakemake(workdir, "-n", *TARGETS, "--config", "papers=[wide_align]")
    assert dry.returncode == 0, dry.stderr[-3000:]

    done = run_snakemake(workdir, "--cores", "2", *TARGETS, "--config", "papers=[wide_align]", timeout=1800)
    assert done.returncode == 0, done.stderr[-3000:]
    out = workdir / "results" / "wide_align"
    for target in TARGETS:
        assert (out / f"{target}.png").stat().st_size > 10_000, target
        assert (out / f"{target}.pdf").stat().st_size > 1_000, target

    width = pd.read_csv(out / "fig_wide_align_width.csv")
    assert sorted(width["rule"].unique()) == sorted(["bp", "alignada", "dfa", "alignzero", "fa", "lastlayer"])
    assert set(width["width"]) == {8, 16}
    assert width["val_acc"].notna().all() and width["final_test_acc"].notna().all()
    for rid in width["run_id"]:
        assert read_json(out / "runs" / rid / "final.json")["status"] in ("ok", "diverged")

    score = pd.read_csv(out / "fig_wide_align_score_width.csv")
    assert set(score["width"]) == {8, 16} and set(score["layer"]) == {1, 2, 3}
    assert score["score"].between(-1, 1).all() and score["control"].between(-1, 1).all()
    first = score[(score["layer"] == 1) & (score["epoch"] == 1)]
    assert (first["control"] > 0.5).all()  # the 1-channel first layer's chance level is high (spec §4)

    small = pd.read_csv(out / "fig_wide_align_small_data.csv")
    assert set(small["n_train"]) == {45, 450}
    timing = pd.read_csv(out / "fig_wide_align_time.csv")
    assert (timing["time_epoch"] > 0).all()
    add = pd.read_csv(out / "fig_wide_align_add.csv")
    assert set(add["rule"]) == {"bptt", "alignada", "alignzero", "readout"}
    assert add["min_test_loss"].notna().all() and (add["min_train_loss"] > 0).all()
    seeds = pd.read_csv(out / "fig_wide_align_seeds.csv")
    assert set(seeds["seed"]) == {99, 100}

    # one train process per configuration, seeds and lrs included (batch_over: [seed, hparams.lr])
    logs = list((workdir / "logs" / "wide_align" / "train").glob("*.log"))
    assert len(logs) == 31

    again = run_snakemake(workdir, "--cores", "2", *TARGETS, "--config", "papers=[wide_align]")
    assert again.returncode == 0 and "Nothing to be done" in again.stdout + again.stderr
