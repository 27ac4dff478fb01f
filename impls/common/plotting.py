"""plot: a figure's tidy table -> PNG + PDF (seaborn), as paper.yaml's ``plot`` block says.

Caller: workflow/scripts/plot.py (the ``plot`` rule).
Every image carries a title naming the paper figure it reproduces and a footer with the
scale, dataset and git commit. Diverged runs stay visible: drawn up to the epoch they
diverged, ending in an ``x``, and marked "(diverged)" in the legend.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Mapping

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from impls.common import provenance  # noqa: E402
from impls.common.aggregate import column_name  # noqa: E402


def _format_level(value) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _select_metric(table: pd.DataFrame, metric: str) -> pd.DataFrame:
    split, name = metric.split("_", 1)
    return table[(table["split"] == split) & (table["metric"] == name)].copy()


def line_figure(table: pd.DataFrame, figure: Mapping) -> plt.Figure:
    spec = figure["plot"]
    data = _select_metric(table, spec["y"])
    hue, style, col = (column_name(spec[k]) if spec.get(k) else None for k in ("hue", "style", "col"))
    for key in filter(None, (hue, style, col)):
        levels = sorted(data[key].unique(), key=lambda v: (isinstance(v, str), v))
        data[key] = pd.Categorical(data[key].map(_format_level), [_format_level(v) for v in levels])
    if hue:
        diverged = data.groupby(hue, observed=True)["status"].agg(lambda s: (s == "diverged").any())
        data[hue] = data[hue].cat.rename_categories(
            {h: f"{h} (diverged)" for h, d in diverged.items() if d})
    grid = sns.relplot(data=data, kind="line", x=spec["x"], y="value", hue=hue, style=style, col=col,
                       markers=False, errorbar=("sd" if data.groupby("run_id").ngroups > 1 else None),
                       height=4, aspect=1.3, facet_kws={"sharey": True})
    for ax in grid.axes.flat:
        last = data[data["status"] == "diverged"].sort_values(spec["x"]).groupby("run_id").tail(1)
        ax.scatter(last[spec["x"]], last["value"].fillna(0.0), marker="x", color="black", zorder=5)
        ax.set_xscale("log" if spec.get("logx") else "linear")
        ax.set_yscale("log" if spec.get("logy") else "linear")
        ax.set_xlabel(spec.get("xlabel", spec["x"]))
        ax.set_ylabel(spec.get("ylabel", spec["y"]))
    fig = grid.figure
    fig.suptitle(f"{figure['label']}: {figure['title']}", y=1.02)
    fig.text(0.01, -0.03, f"creditbench {figure['target']} | scale={figure['scale']} | "
             f"dataset={figure['dataset']} | commit {provenance.git_commit()[:12]}", fontsize=7, color="0.4")
    return fig


def save_atomically(fig: plt.Figure, path: str | Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".tmp-{path.stem}-", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    try:
        fig.savefig(tmp, bbox_inches="tight", dpi=150)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


PLOTTERS = {"line": line_figure}


def plot_figure(table: pd.DataFrame, figure: Mapping, png: str | Path, pdf: str | Path) -> None:
    fig = PLOTTERS[figure["plot"]["kind"]](table, figure)
    save_atomically(fig, png)
    save_atomically(fig, pdf)
    plt.close(fig)
