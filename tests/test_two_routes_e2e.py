"""End to end: every two_routes target at smoke scale through Snakemake (two_routes enabled via --config)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from impls.common.io import read_json
from tests.conftest import run_snakemake

pytestmark = pytest.mark.e2e

TARGETS = ["tab_two_routes_rules", "fig_two_routes_fixed_points", "fig_two_routes_local", "fig_two_routes_nonlocal",
           "fig_two_routes_angles", "tab_two_routes_accuracy", "fig_two_routes_wm_sensitivity",
           "fig_two_routes_noise"]
CONFIG = ["--config", "papers=[two_routes]"]


def test_every_two_routes_target_renders_at_smoke_scale(workdir):
    dry = run_snakemake(workdir, "-n", *TARGETS, *CONFIG)
    assert dry.returncode == 0, dry.stderr[-3000:]

    done = run_snakemake(workdir, "--cores", "2", *TARGETS, *CONFIG, timeout=1800)
    assert done.returncode == 0, done.stderr[-3000:]
    out = workdir / "results" / "two_routes"
    for target in TARGETS:
        assert (out / f"{target}.png").stat().st_size > 10_000, target
        assert (out / f"{target}.pdf").stat().st_size > 1_000, target

    acc = pd.read_csv(out / "tab_two_routes_accuracy.csv")
    runs = acc.drop_duplicates("run_id")
    assert sorted(runs["rule"]) == sorted(["bp", "fa", "wm", "ia", "sa", "aa", "kp"])
    assert sorted(acc["epoch"].unique()) == [0, 1, 2]
    for rid in runs["run_id"]:
        assert read_json(out / "runs" / rid / "final.json")["status"] == "ok"
    assert runs.set_index("rule")["final_test_acc"]["bp"] > 30   # digits, 2 epochs: BP learns
    assert (runs["final_test_top5"] >= runs["final_test_acc"]).all()

    angles = pd.read_csv(out / "fig_two_routes_angles.csv")
    layer_rows = angles[(angles["split"] == "align") & angles["layer"].notna()]
    assert set(layer_rows["metric"]) == {"weight_angle", "projection_angle", "gradient_angle"}
    assert layer_rows["layer"].nunique() == 10      # stem, 6 block convs, 2 projections, classifier
    bp = layer_rows[layer_rows["rule"] == "bp"]["value"].dropna()
    assert len(bp) and bp.abs().max() < 0.5          # BP: every angle 0
    fa0 = layer_rows[(layer_rows["rule"] == "fa") & (layer_rows["epoch"] == 0) & (layer_rows["metric"] == "weight_angle")]
    assert fa0["value"].min() > 60                   # independent draws: near 90 degrees

    rules = pd.read_csv(out / "tab_two_routes_rules.csv").set_index("rule")
    assert set(rules.index) >= {"bp", "fa", "wm", "ia", "sa", "aa", "kp"}
    assert rules.loc["sa", "measured angle(B, W^T) (deg)"] < 1.0 and rules.loc["sa", "self"] == 2e-3
    assert np.isnan(rules.loc["fa", "measured angle(B, W^T) (deg)"])

    fp = pd.read_csv(out / "fig_two_routes_fixed_points.csv").drop_duplicates("run_id")
    assert len(fp) == 6 and set(fp["inputs"]) == {"white", "data"}
    white = fp[fp["inputs"] == "white"].set_index("rule")
    assert white.loc["sa", "final_fp_error"] < 1e-3 and white.loc["aa", "final_fp_error"] < 1e-3
    assert white.loc["wm", "final_fp_error"] < 0.15
    data = fp[fp["inputs"] == "data"].set_index("rule")
    assert data.loc["wm", "final_angle"] > 20        # real data: B* ∝ ΣWᵀ is not aligned with Wᵀ

    noise = pd.read_csv(out / "fig_two_routes_noise.csv").drop_duplicates("run_id")
    assert sorted(noise["noise_var"].astype(float).unique()) == [0.0, 0.01]
    wm = pd.read_csv(out / "fig_two_routes_wm_sensitivity.csv").drop_duplicates("run_id")
    assert set(wm[wm["rule"] == "wm"]["input_distribution"]) == {"none", "normal"}

    logs = list((workdir / "logs" / "two_routes" / "train").glob("*.log"))
    assert len(logs) == 15     # one train process per configuration

    again = run_snakemake(workdir, "--cores", "2", *TARGETS, *CONFIG)
    assert again.returncode == 0 and "Nothing to be done" in again.stdout + again.stderr
