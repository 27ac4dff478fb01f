"""End to end: every pepita target at smoke scale through Snakemake (pepita enabled via --config)."""
from __future__ import annotations

import pandas as pd
import pytest

from impls.common.io import read_json
from tests.conftest import run_snakemake

pytestmark = pytest.mark.e2e

TARGETS = ["tab_pepita_accuracy", "fig_pepita_curves", "tab_pepita_slowness", "fig_pepita_control",
           "fig_pepita_alignment", "fig_pepita_tutorial_check", "fig_pepita_conv_filters", "fig_pepita_sweeps"]


def test_every_pepita_target_renders_at_smoke_scale(workdir):
    dry = run_snakemake(workdir, "-n", *TARGETS, "--config", "papers=[pepita]")
    assert dry.returncode == 0, dry.stderr[-3000:]

    done = run_snakemake(workdir, "--cores", "2", *TARGETS, "--config", "papers=[pepita]")
    assert done.returncode == 0, done.stderr[-3000:]
    out = workdir / "results" / "pepita"
    for target in TARGETS:
        assert (out / f"{target}.png").stat().st_size > 10_000, target
        assert (out / f"{target}.pdf").stat().st_size > 1_000, target

    table = pd.read_csv(out / "tab_pepita_accuracy.csv")
    runs = table.drop_duplicates("run_id")
    assert sorted(zip(runs["arch"], runs["rule"])) == sorted(
        (a, r) for a in ("fc", "conv") for r in ("pepita", "bp", "fa", "drtp"))
    assert sorted(table["epoch"].unique()) == [0, 1, 2]
    for rid in runs["run_id"]:
        final = read_json(out / "runs" / rid / "final.json")
        assert final["status"] in ("ok", "diverged")
    ok = runs[runs["rule"].isin(["pepita", "bp"]) & (runs["arch"] == "fc")]
    assert (ok["final_test_acc"] > 50).all()  # digits, 2 epochs: both learn

    control = pd.read_csv(out / "fig_pepita_control.csv").drop_duplicates("run_id")
    assert set(control["condition"]) == {"PEPITA", "F = 0", "RP k=0.1", "RP k=1"}
    align = pd.read_csv(out / "fig_pepita_alignment.csv")
    assert {"angle", "w1norm"} <= set(align[align["split"] == "weights"]["metric"])
    slow = pd.read_csv(out / "tab_pepita_slowness.csv")
    assert slow.groupby(["rule", "arch"]).ngroups == 8 and slow["fit_epochs"].eq(3).all()
    filters = pd.read_csv(out / "fig_pepita_conv_filters.csv")
    assert set(filters["rule"]) == {"pepita", "bp"} and filters["filter"].nunique() == 8

    # one train process per configuration, seeds included (batch_over: [seed])
    logs = list((workdir / "logs" / "pepita" / "train").glob("*.log"))
    assert len(logs) == 14 and all("epoch 2/2" in log.read_text() for log in logs)

    again = run_snakemake(workdir, "--cores", "2", *TARGETS, "--config", "papers=[pepita]")
    assert again.returncode == 0 and "Nothing to be done" in again.stdout + again.stderr
