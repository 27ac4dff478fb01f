"""The nodepert figures: crash classifier on synthetic curves, the paper-only plots on fake
tables, and every nodepert figure target rendered end to end at smoke scale."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import yaml

from impls.common.io import read_json
from impls.common.plotting import plot_figure
from impls.nodepert.crash import classify
from tests.conftest import REPO, run_snakemake


# --- crash / no-learning classifier (spec §5) -------------------------------------------------

@pytest.mark.parametrize("curve, cap, expected", [
    # learns, then falls more than 25 points below its running max at epoch 4
    ([10, 60, 75, 74, 40, 45], 5, ("crash", 4, 4)),
    # a drop of exactly 25 points is not a crash (strictly more than 25 below)
    ([10, 60, 75, 50, 70], 4, ("no_crash", None, 4)),
    # noisy but never 25 below the running max: drawn at the cap
    ([10, 50, 80, 60, 79, 56], 500, ("no_crash", None, 500)),
    # never above 25 %: no learning, drawn at 0 (cannot crash)
    ([10, 12, 25, 9, 10], 4, ("no_learning", None, 0)),
    # the first crash counts, not a later one
    ([10, 80, 50, 80, 20], 4, ("crash", 2, 2)),
    # NaN (diverged) counts as 0 %
    ([10, 70, float("nan")], 2, ("crash", 2, 2)),
])
def test_crash_classifier_on_synthetic_curves(curve, cap, expected):
    out = classify(curve, cap)
    assert (out["crash_class"], out["crash_epoch"], out["crash_plot_epoch"]) == expected


def test_no_learning_is_judged_on_the_first_50_epochs():
    late = [10.0] * 51 + [90.0, 95.0]            # learns only after epoch 50: still "no learning"
    assert classify(late, 52)["crash_class"] == "no_learning"
    early = [10.0] * 50 + [30.0, 31.0]           # above 25 % by epoch 50: learned, no crash
    assert classify(early, 51)["crash_class"] == "no_crash"


# --- paper-only plots on fake tables ------------------------------------------------------------

FIGURE = {"paper": "nodepert", "label": "Fig. X", "title": "test", "scale": "smoke", "dataset": "digits"}


def _runs(factor: str, levels, rules=("np", "sgd"), lrs=(1e-4, 1e-2, 1.0), diverged_lr=1.0):
    rows = []
    for rule in rules:
        for level in levels:
            for lr in lrs:
                bad = rule == "np" and lr == diverged_lr
                rows.append({"run_id": f"{rule}-{level}-{lr}", "epoch": 0, "split": "test", "metric": "acc",
                             "value": 10.0, "rule": rule, factor: level, "lr": lr, "seed": 0,
                             "status": "diverged" if bad else "ok",
                             "final_acc": np.nan if bad else 50 + 10 * np.log10(lr) + level % 7})
    return pd.DataFrame(rows)


@pytest.mark.parametrize("factor, levels", [("n_hl", [2, 4, 6]), ("width", [100, 500])])
def test_sweep_with_boxes_renders_with_diverged_runs(tmp_path, factor, levels):
    plot = {"kind": "impls.nodepert.figures:sweep_with_boxes", "x": "hparams.lr", "y": "final_acc",
            "hue": f"model.{factor}", "col": "rule"}
    plot_figure(_runs(factor, levels), {**FIGURE, "target": "fig_nodepert_t", "plot": plot},
                tmp_path / "f.png", tmp_path / "f.pdf")
    assert (tmp_path / "f.png").stat().st_size > 10_000


def test_rule_boxes_and_crash_timing_render(tmp_path):
    table = _runs("n_hl", [2], rules=("np", "sgd", "np_adam", "sgd_adam"))
    plot = {"kind": "impls.nodepert.figures:rule_boxes", "x": "rule", "y": "final_acc", "hue": "hparams.lr"}
    plot_figure(table, {**FIGURE, "target": "fig_nodepert_a", "plot": plot}, tmp_path / "a.png", tmp_path / "a.pdf")
    crash = pd.DataFrame({"lr": [1e-3, 1e-2, 1e-1, 1e-1], "seed": [0, 0, 0, 1], "epochs_cap": 50,
                          "crash_class": ["no_crash", "crash", "no_learning", "crash"],
                          "crash_plot_epoch": [50, 7, 0, 2]})
    plot = {"kind": "impls.nodepert.figures:crash_timing_plot", "x": "hparams.lr"}
    plot_figure(crash, {**FIGURE, "target": "fig_nodepert_c", "plot": plot}, tmp_path / "c.png", tmp_path / "c.pdf")
    assert (tmp_path / "a.png").stat().st_size > 10_000 and (tmp_path / "c.png").stat().st_size > 10_000


# --- every nodepert figure at smoke scale, through Snakemake ------------------------------------

NEW_TARGETS = [t for t in yaml.safe_load((REPO / "papers" / "nodepert" / "paper.yaml").read_text())["figures"]
               if t != "fig_nodepert_lr"]  # fig_nodepert_lr has its own e2e test (test_workflow_e2e.py)


@pytest.mark.e2e
def test_every_nodepert_figure_renders_at_smoke_scale(workdir):
    done = run_snakemake(workdir, "--cores", "2", *NEW_TARGETS)
    assert done.returncode == 0, done.stderr[-3000:]
    out = workdir / "results" / "nodepert"
    for target in NEW_TARGETS:
        assert (out / f"{target}.png").stat().st_size > 10_000, target
        assert (out / f"{target}.pdf").stat().st_size > 1_000, target
    depth = pd.read_csv(out / "fig_nodepert_depth.csv").drop_duplicates("run_id")
    assert sorted(set(zip(depth["rule"], depth["n_hl"]))) == [("np", 2), ("np", 4), ("sgd", 2), ("sgd", 4)]
    assert len(depth) == 12 and set(depth["status"]) == {"ok"}
    width = pd.read_csv(out / "fig_nodepert_width.csv").drop_duplicates("run_id")
    assert sorted(width["width"].unique()) == [16, 64]
    adam = pd.read_csv(out / "fig_nodepert_adam.csv").drop_duplicates("run_id")
    assert sorted(adam["rule"].unique()) == ["np", "np_adam", "sgd", "sgd_adam"]
    crash = pd.read_csv(out / "fig_nodepert_crash_timing.csv")
    assert len(crash) == 3 and set(crash["crash_class"]) <= {"crash", "no_crash", "no_learning"}
    for rid, cls in zip(crash["run_id"], crash["crash_class"]):
        assert read_json(out / "runs" / rid / "final.json")["crash"]["crash_class"] == cls
    lines = pd.read_csv(out / "fig_nodepert_linesearch.csv")
    assert sorted(set(zip(lines["n_hl"], lines["width"]))) == [(1, 16), (1, 32), (2, 32)]
    assert set(lines["rule"]) == {"np", "sgd"} and len(lines) == 3 * 2 * 10  # 10 step sizes at smoke
    for rid in lines["run_id"].unique():
        assert read_json(out / "runs" / rid / "final.json")["linesearch"]["batches"] == 4  # digits: 497 test images
    gaps = pd.read_csv(out / "fig_nodepert_budget_gap.csv")
    assert sorted(zip(gaps["rule"], gaps["budget"])) == [("np", 1), ("np", 2), ("sgd", 1), ("sgd", 2)]
    assert gaps.set_index(["rule", "budget"]).loc[("sgd", 2), "gap"] == 0.0  # the reference itself
    appendix = pd.read_csv(out / "fig_nodepert_appendix.csv").drop_duplicates("run_id")
    assert sorted(zip(appendix["rule"], appendix["activation"])) == [
        ("np", "linear"), ("np_wd", "relu"), ("sgd", "linear"), ("sgd_wd", "relu")]


# --- budget-gap metric (spec §5, project definition) ---------------------------------------------

def test_budget_gap_is_reference_best_minus_best_over_rates_of_a_5_epoch_window():
    from impls.nodepert.figures import budget_gaps, window_mean

    epochs = np.arange(11, dtype=float)
    curves = {
        ("sgd", "d", 0.1): 50 + 4 * epochs,                 # epoch 10: 90; window 6..10 mean = 82
        ("sgd", "d", 0.5): 60 + 2 * epochs,                 # window 6..10 mean = 76
        ("np", "d", 1e-3): 10 + 3 * epochs,                 # window 0..2 mean at b=2: 13
        ("np", "d", 1e-2): np.r_[10, 40, 60, [np.nan] * 8],  # diverged after epoch 2
    }
    assert window_mean(curves[("sgd", "d", 0.1)], 10) == pytest.approx(82.0)
    assert window_mean(curves[("np", "d", 1e-3)], 2) == pytest.approx(13.0)   # epochs 0..2 only
    assert np.isnan(window_mean(curves[("np", "d", 1e-3)], 11))                # past the run's end
    table = budget_gaps(curves, [2, 10]).set_index(["rule", "budget"])
    assert table.loc[("sgd", 10), "gap"] == pytest.approx(0.0)
    assert table.loc[("sgd", 2), "gap"] == pytest.approx(82.0 - max(54.0, 62.0))
    # NP at budget 2: best of 13 (lr 1e-3) and mean(10, 40, 60) = 36.67 (lr 1e-2)
    assert table.loc[("np", 2), "gap"] == pytest.approx(82.0 - 110 / 3)
    # NP at budget 10: the diverged run (NaN) does not count
    assert table.loc[("np", 10), "gap"] == pytest.approx(82.0 - 34.0)
