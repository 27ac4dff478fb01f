"""plot: a figure's tidy table -> PNG + PDF (seaborn), as paper.yaml's ``plot`` block says.

Caller: workflow/scripts/figure.py (the ``figure`` rule).
Every image carries a title naming the paper figure it reproduces and a footer with the
scale, dataset and the git commits that trained its runs and drew it. Diverged runs stay
visible: drawn up to the epoch they diverged, ending in an ``x``, and marked "(diverged)" in the
legend.
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from impls.common import provenance  # noqa: E402
from impls.common.aggregate import column_name, resolve  # noqa: E402
from impls.common.io import atomic_output  # noqa: E402


def _format_level(value) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _select_metric(table: pd.DataFrame, metric: str) -> pd.DataFrame:
    split, name = metric.split("_", 1)
    return table[(table["split"] == split) & (table["metric"] == name)].copy()


def _categorical(data: pd.DataFrame, keys) -> None:
    """Factors used for colour/style/facets become ordered categories with readable labels."""
    for key in filter(None, keys):
        levels = sorted(data[key].unique(), key=lambda v: (isinstance(v, str), v))
        data[key] = pd.Categorical(data[key].map(_format_level), [_format_level(v) for v in levels])


def _mark_diverged_in_legend(data: pd.DataFrame, hue: str | None) -> None:
    if hue:
        diverged = data.groupby(hue, observed=True)["status"].agg(lambda s: (s == "diverged").any())
        data[hue] = data[hue].cat.rename_categories({h: f"{h} (diverged)" for h, d in diverged.items() if d})


def stamp(fig: plt.Figure, figure: Mapping) -> plt.Figure:
    """Title naming the paper figure; footer with target, scale, dataset and the commits that trained
    its runs and made the plot, from ``figure["provenance"]`` (``provenance.figure_record``, which the
    figure job adds); without one the footer names the plotting commit only and says so."""
    fig.suptitle(f"{figure['label']}: {figure['title']}", y=1.02)
    fig.text(0.01, -0.03, f"creditbench {figure['target']} | scale={figure['scale']} | "
             f"dataset={figure['dataset']} | {commits_text(figure)}", fontsize=7, color="0.4")
    return fig


def commits_text(figure: Mapping) -> str:
    record = figure.get("provenance")
    if record is not None:
        return provenance.footer_commits(record)
    return f"plotted at {provenance.short_commit(provenance.git_commit())}; training commits not given"


def _axes_style(grid, spec: Mapping, x: str, y: str) -> None:
    from matplotlib.ticker import MaxNLocator

    for ax in grid.axes.flat:
        if x == "epoch":
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xscale("log" if spec.get("logx") else "linear")
        ax.set_yscale("log" if spec.get("logy") else "linear")
        ax.set_xlabel(spec.get("xlabel", x))
        ax.set_ylabel(spec.get("ylabel", y))


def line_figure(table: pd.DataFrame, figure: Mapping) -> plt.Figure:
    """A per-epoch metric (``y``, e.g. test_acc) against ``x`` (epoch), one line per run."""
    spec = figure["plot"]
    data = _select_metric(table, spec["y"])
    hue, style, col, row = (column_name(spec[k]) if spec.get(k) else None for k in ("hue", "style", "col", "row"))
    _categorical(data, (hue, style, col, row))
    _mark_diverged_in_legend(data, hue)
    import seaborn as sns  # imported where used: 1.3 s of the figure job, which tables do not need

    grid = sns.relplot(data=data, kind="line", x=spec["x"], y="value", hue=hue, style=style, col=col, row=row,
                       markers=False, errorbar=("sd" if data.groupby("run_id").ngroups > 1 else None),
                       height=4, aspect=1.3, facet_kws={"sharey": True})
    for (_, sub), ax in zip(grid.facet_data(), grid.axes.flat):
        last = sub[sub["status"] == "diverged"].sort_values(spec["x"]).groupby("run_id").tail(1)
        ax.scatter(last[spec["x"]], last["value"].fillna(0.0), marker="x", color="black", zorder=5)
    _axes_style(grid, spec, spec["x"], spec["y"])
    return stamp(grid.figure, figure)


def final_figure(table: pd.DataFrame, figure: Mapping) -> plt.Figure:
    """A reduced metric per run (``y``, e.g. final_acc) against a factor (``x``, e.g. lr).

    Seeds are averaged (band = sd). Diverged runs have no final value; they are drawn as black
    ``x`` marks on the x axis so a sweep shows where training blew up.
    """
    spec = figure["plot"]
    x = column_name(spec["x"])
    data = table.drop_duplicates("run_id").copy()
    hue, style, col, row = (column_name(spec[k]) if spec.get(k) else None for k in ("hue", "style", "col", "row"))
    _categorical(data, (hue, style, col, row))
    import seaborn as sns

    grid = sns.relplot(data=data, kind="line", x=x, y=spec["y"], hue=hue, style=style, col=col, row=row,
                       marker="o", errorbar="sd", height=4, aspect=1.3)
    for (_, sub), ax in zip(grid.facet_data(), grid.axes.flat):
        bad = sub[sub["status"] == "diverged"]
        ax.scatter(bad[x], [0.0] * len(bad), marker="x", color="black", zorder=5,
                   label="diverged" if len(bad) else None)
    _axes_style(grid, spec, x, spec["y"])
    return stamp(grid.figure, figure)


def summary_table(table: pd.DataFrame, by, metrics) -> pd.DataFrame:
    """mean ± std over seeds of each reduced metric, one row per combination of ``by``."""
    runs = table.drop_duplicates("run_id")
    grouped = runs.groupby([column_name(b) for b in by], sort=True, dropna=False)   # keep rows a factor does not apply to
    out = grouped[list(metrics)].agg(["mean", "std", "count"])
    out[("runs", "diverged")] = grouped["status"].agg(lambda s: int((s == "diverged").sum()))
    return out


def spread_text(mean: float, sd: float, n: int, mean_format: str = ".3g", sd_format: str = ".2g") -> str:
    """mean ± sd (n=k) over seeds; one seed has no spread to show (its sd is NaN, not 0), and no
    finished run shows a dash. Every table cell of a mean over seeds is written by this function."""
    if n == 0:
        return "—"
    if n == 1:
        return f"{mean:{mean_format}} (n=1)"
    return f"{mean:{mean_format}} ± {sd:{sd_format}} (n={n})"


def _cell(row, metric: str) -> str:
    """A :func:`summary_table` row's cell for ``metric`` (see :func:`spread_text`)."""
    return spread_text(row[(metric, "mean")], row[(metric, "std")], int(row[(metric, "count")]))


def table_figure(table: pd.DataFrame, figure: Mapping) -> plt.Figure:
    """A results table (mean ± std over seeds) rendered as an image for the report."""
    spec = figure["plot"]
    by, metrics = spec.get("by", ["rule"]), spec.get("metrics", ["final_acc"])
    summary = summary_table(table, by, metrics)
    cells = [[*(idx if isinstance(idx, tuple) else (idx,)), *(_cell(row, m) for m in metrics),
              int(row[("runs", "diverged")])] for idx, row in summary.iterrows()]
    fig, ax = plt.subplots(figsize=(2.2 * (len(by) + len(metrics) + 1), 0.4 * len(cells) + 0.8))
    ax.axis("off")
    ax.table(cellText=cells, colLabels=[column_name(b) for b in by] + list(metrics) + ["diverged"], loc="center")
    return stamp(fig, figure)


def save_atomically(fig: plt.Figure, path: str | Path) -> None:
    """Save ``fig`` to ``path`` (format from its suffix) through ``io.atomic_output``."""
    with atomic_output(path) as tmp:
        fig.savefig(tmp, bbox_inches="tight", dpi=150)


PLOTTERS = {"line": line_figure, "final": final_figure, "table": table_figure}


def drawn_tables(fig: plt.Figure) -> list[tuple[list[str], list[list[str]]]]:
    """(header, rows) of every table drawn with ``ax.table(cellText=..., colLabels=...)`` in ``fig``,
    the cell texts exactly as the image shows them (so the HTML and the PNG cannot disagree)."""
    out = []
    for ax in fig.axes:
        for drawn in ax.tables:
            cells = drawn.get_celld()
            columns = sorted({c for _, c in cells})
            grid = [[cells[r, c].get_text().get_text() if (r, c) in cells else "" for c in columns]
                    for r in range(max(r for r, _ in cells) + 1)]
            out.append((grid[0], grid[1:]))
    return out


def table_html(fig: plt.Figure, figure: Mapping) -> str:
    """The tables a tab_* figure draws, as one HTML page for the report (impls.common.html_tables)."""
    from impls.common.html_tables import table_page

    tables = drawn_tables(fig)
    if not tables:
        raise ValueError(f"{figure['target']}: a tab_* figure must draw its table with ax.table(cellText=..., "
                         f"colLabels=...) so the report can show it as HTML; plot kind "
                         f"{figure['plot']['kind']!r} drew none")
    meta = (f"creditbench {figure['target']} | scale={figure['scale']} | dataset={figure['dataset']} "
            f"| the PNG and PDF beside this page draw the same cells")
    return table_page(f"{figure['label']}: {figure['title']}", meta, tables)


def plot_figure(table: pd.DataFrame, figure: Mapping, png: str | Path, pdf: str | Path,
                html: str | Path | None = None) -> None:
    """Draw with a built-in kind or a paper's own ``package.module:function`` (see paper.schema.yaml);
    with ``html`` (tab_* figures), also write the drawn table as an HTML page for the report."""
    kind = figure["plot"]["kind"]
    fig = (PLOTTERS[kind] if kind in PLOTTERS else resolve(kind))(table, figure)
    if html is not None:
        from impls.common.io import atomic_write_text

        atomic_write_text(html, table_html(fig, figure))
    save_atomically(fig, png)
    save_atomically(fig, pdf)
    plt.close(fig)
