"""aggregate + plot: every built-in plot kind renders from a tidy table, diverged runs included."""
import numpy as np
import pandas as pd
import pytest

from impls.common.plotting import plot_figure, summary_table


def fake_table(diverged_lr=1.0):
    rows = []
    for rule in ("np", "sgd"):
        for lr in (0.01, 0.1, 1.0):
            for seed in (0, 1):
                bad = lr == diverged_lr and rule == "np"
                rid = f"{rule}-{lr}-{seed}"
                last = 1 if bad else 3
                for epoch in range(last + 1):
                    acc = np.nan if bad and epoch == last else 10 + 20 * epoch * lr + seed
                    rows.append(dict(run_id=rid, epoch=epoch, split="test", metric="acc", value=acc, rule=rule,
                                     lr=lr, seed=seed, status="diverged" if bad else "ok",
                                     final_acc=None if bad else 10 + 60 * lr + seed))
    return pd.DataFrame(rows)


FIGURE = {"paper": "nodepert", "target": "fig_nodepert_test", "label": "Fig. X", "title": "test",
          "scale": "smoke", "dataset": "digits"}


@pytest.mark.parametrize("plot", [
    {"kind": "line", "x": "epoch", "y": "test_acc", "hue": "hparams.lr", "style": "rule"},
    {"kind": "line", "x": "epoch", "y": "test_acc", "hue": "hparams.lr", "col": "rule"},
    {"kind": "final", "x": "hparams.lr", "y": "final_acc", "hue": "rule", "logx": True},
    {"kind": "table", "by": ["rule", "hparams.lr"], "metrics": ["final_acc"]},
    {"kind": "impls.common.plotting:line_figure", "x": "epoch", "y": "test_acc", "hue": "hparams.lr"},
], ids=["line", "line-facets", "final", "table", "module-function"])
def test_every_plot_kind_renders(tmp_path, plot):
    plot_figure(fake_table(), {**FIGURE, "plot": plot}, tmp_path / "f.png", tmp_path / "f.pdf")
    assert (tmp_path / "f.png").stat().st_size > 5_000 and (tmp_path / "f.pdf").stat().st_size > 1_000
    assert not list(tmp_path.glob(".tmp-*"))  # atomic writes leave no temporaries


def test_summary_table_is_mean_and_std_over_seeds():
    summary = summary_table(fake_table(), ["rule", "hparams.lr"], ["final_acc"])
    row = summary.loc[("sgd", 0.1)]
    assert row[("final_acc", "mean")] == pytest.approx(10 + 6 + 0.5)
    assert row[("final_acc", "std")] == pytest.approx(np.std([0, 1], ddof=1))
    assert summary.loc[("np", 1.0)][("runs", "diverged")] == 2


def test_table_cells_show_no_spread_for_one_seed_and_a_dash_when_no_run_finished():
    from impls.common.plotting import _cell
    summary = summary_table(pd.DataFrame({
        "run_id": ["a", "b", "c", "d"], "rule": ["bp", "bp", "fa", "aa"], "final_acc": [90.0, 92.0, 54.3, np.nan],
        "status": ["ok", "ok", "ok", "diverged"]}), ["rule"], ["final_acc"])
    cells = {rule: _cell(row, "final_acc") for rule, row in summary.iterrows()}
    assert cells == {"bp": "91 ± 1.4 (n=2)", "fa": "54.3 (n=1)", "aa": "—"}
