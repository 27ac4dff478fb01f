"""The nodepert figures: crash classifier on synthetic curves and the paper-only plots on fake
tables (every nodepert target is rendered end to end at smoke scale by tests/test_e2e.py)."""
from __future__ import annotations

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from impls.common.plotting import plot_figure
from impls.nodepert.crash import classify


# --- crash / no-learning classifier (papers/nodepert/README.md, "Metrics") ---------------------

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


def test_budget_gap_crash_dynamics_and_appendix_plots_render(tmp_path):
    gaps = pd.DataFrame([{"panel": p, "rule": r, "dataset": "d", "budget": b, "gap": g}
                         for p in ("conv", "FC") for r, g in (("np", 20.0), ("sgd", 1.0)) for b in (1, 5, 20)])
    plot = {"kind": "impls.nodepert.figures:budget_gap_plot", "x": "budget", "y": "gap"}
    plot_figure(gaps, {**FIGURE, "target": "fig_nodepert_g", "plot": plot}, tmp_path / "g.png", tmp_path / "g.pdf")
    steps = np.arange(40)
    dyn = pd.DataFrame({"run_id": "r", "step": steps, "epoch_frac": (steps + 1) / 10, "lr": 0.01, "seed": 0,
                        "test_acc": np.r_[[75.0] * 25, [20.0] * 15], "w_norm": 40.6 + steps * 1e-3,
                        "norm_np": np.r_[[5.0] * 25, [100.0] * 15], "norm_sgd": 0.2, "norm_true": 0.15,
                        "delta_mse": np.r_[[-1e-4] * 25, [0.08] * 15], "crash_epoch": 3, "plotted": True})
    plot = {"kind": "impls.nodepert.figures:crash_dynamics_plot", "x": "epoch_frac"}
    plot_figure(dyn, {**FIGURE, "target": "fig_nodepert_d", "plot": plot}, tmp_path / "d.png", tmp_path / "d.pdf")
    rows = [{"run_id": f"{r}-{a}-{b}-{lr}", "rule": r, "activation": a, "batch_size": b, "lr": lr, "status": "ok",
             "final_acc": 50.0, "final_test_acc": 55.0}
            for r, a, b in (("np_wd", "relu", 100), ("np", "linear", 100), ("np", "relu", 10), ("sgd", "relu", 100))
            for lr in (1e-3, 1e-2)]
    plot = {"kind": "impls.nodepert.figures:appendix_plot", "x": "hparams.lr", "y": "final_acc"}
    plot_figure(pd.DataFrame(rows), {**FIGURE, "target": "fig_nodepert_x", "plot": plot},
                tmp_path / "x.png", tmp_path / "x.pdf")
    assert all((tmp_path / f"{n}.png").stat().st_size > 10_000 for n in "gdx")


# --- budget-gap metric (the project's definition, papers/nodepert/README.md "Metrics") -----------

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


def test_a_diverged_rate_is_marked_in_its_curves_colour_and_the_rates_are_ticked():
    """NP at lr 1 diverged at both depths: one x per curve, each in that curve's colour, side by side below
    the points (they were black marks on top of each other at 0 %), and the three rates are the ticks."""
    from impls.nodepert.figures import sweep_with_boxes
    from tests.test_figures_display import _diverged_marks, _screen_y

    plot = {"kind": "impls.nodepert.figures:sweep_with_boxes", "x": "hparams.lr", "y": "final_acc",
            "hue": "model.n_hl", "col": "rule"}
    fig = sweep_with_boxes(_runs("n_hl", [2, 4]), {**FIGURE, "target": "fig_nodepert_t", "plot": plot})
    (ax,) = [ax for ax in fig.axes if ax.get_title() == "NP"]
    marks = _diverged_marks(ax)
    curves = {matplotlib.colors.to_hex(line.get_color()) for line in ax.lines if len(line.get_xdata())}
    assert [x for x, *_ in marks] == [1.0, 1.0] and {c for *_, c in marks} == curves and len(curves) == 2
    assert abs(marks[0][1] - marks[1][1]) > 3
    lowest = _runs("n_hl", [2, 4]).query("rule == 'np'")["final_acc"].min()
    assert all(y < _screen_y(ax, lowest) for _, _, y, _ in marks)
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0.0001", "0.01", "1"]
    plt.close(fig)
