"""plot: a figure's tidy table -> PNG + PDF (seaborn), as paper.yaml's ``plot`` block says.

Caller: workflow/scripts/figure.py (the ``figure`` rule).
Every image carries a plain title (paper.yaml ``title``: what the figure shows; the working
``label`` with its uncertainty, "number inferred", "recalled", goes to the report caption) and a
footer with the scale, dataset and the git commits that trained its runs and drew it. Legends,
facets and axes use display names (impls.common.display: NP, SGD, Align-ada, "learning rate");
count axes (epoch, width, depth) get integer ticks, a log axis over few swept values a tick at each.
Diverged runs stay visible: a curve is drawn up to its last finite point, which carries a black ``x``;
a final value that does not exist is an ``x`` in its line's colour below the points; the legend has one
"diverged" entry for that mark.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Mapping

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from impls.common import display, provenance  # noqa: E402
from impls.common.aggregate import column_name, resolve  # noqa: E402
from impls.common.io import atomic_output  # noqa: E402


def _select_metric(table: pd.DataFrame, metric: str) -> pd.DataFrame:
    split, name = metric.split("_", 1)
    return table[(table["split"] == split) & (table["metric"] == name)].copy()


def _categorical(data: pd.DataFrame, keys) -> None:
    """Factors used for colour/style/facets become ordered categories of their display names."""
    for key in filter(None, keys):
        levels = sorted(data[key].dropna().unique(), key=lambda v: display.level_order(key, v))
        names = list(dict.fromkeys(display.level(key, v) for v in levels))
        data[key] = pd.Categorical(data[key].map(lambda v: display.level(key, v)), names)


def _display_columns(data: pd.DataFrame, keys) -> tuple[pd.DataFrame, list]:
    """``data`` with the factor columns ``keys`` renamed to their display titles (the legend and
    facet titles seaborn writes), and those titles in the order of ``keys`` (None stays None)."""
    titles = [display.factor(k) if k else None for k in keys]
    return data.rename(columns={k: t for k, t in zip(keys, titles) if k}), titles


DIVERGED_LABEL = "diverged"


def diverged_handle():
    """The legend entry of the diverged mark: a black ``x`` (no line)."""
    from matplotlib.lines import Line2D

    return Line2D([], [], marker="x", color="black", linestyle="none", label=DIVERGED_LABEL)


def mark_diverged(ax, x, y) -> None:
    """Black ``x`` marks at (x, y): where diverged runs ended (last finite point, or the x axis)."""
    ax.scatter(x, y, marker="x", color="black", zorder=5, label=DIVERGED_LABEL)


#: points between the x marks of lines that diverged at the same x, set side by side
DIVERGED_DODGE_PT = 7
#: the band of diverged marks below the points, as a fraction of the data's y range (``make_room_below``)
DIVERGED_BAND = 0.1


def make_room_below(axes, fraction: float = DIVERGED_BAND) -> None:
    """Extend each axes' y range downwards by ``fraction`` of its height (in the axis' own scale, so a log
    axis too) for the band of diverged marks."""
    axes = list(axes)
    limits = [ax.get_ylim() for ax in axes]
    for ax, (lo, hi) in zip(axes, limits):   # shared axes get the same limits more than once
        scale = ax.yaxis.get_transform()
        t_lo, t_hi = scale.transform([lo, hi])
        ax.set_ylim(scale.inverted().transform([t_lo - fraction * (t_hi - t_lo)])[0], hi)


def _widen_for_marks(ax, lo: float, hi: float, reach_pt: float) -> None:
    """Widen the x range (in the axis' own scale) so that marks reaching ``reach_pt`` points either side
    of the x values ``lo`` and ``hi`` stay inside the axes."""
    scale = ax.xaxis.get_transform()
    (t_left, t_right), (t_lo, t_hi) = sorted(scale.transform(ax.get_xlim())), scale.transform([lo, hi])
    width_pt = ax.get_window_extent().width * 72 / ax.figure.dpi
    reach = 1.2 * reach_pt / width_pt * (t_right - t_left)     # 1.2: the widened axis packs more per point
    left, right = min(t_left, t_lo - reach), max(t_right, t_hi + reach)
    if (left, right) != (t_left, t_right):
        ax.set_xlim(*scale.inverted().transform([left, right]))


def scatter_diverged(ax, xs, colors) -> None:
    """An x per diverged run at each of ``xs`` (data coordinates), in a band at the bottom of the axes
    (``make_room_below`` keeps the data out of it), coloured as ``colors`` (one per x: the colour of the
    line the run belongs to). Runs of one colour at one x share a mark; marks of several colours at one x
    are set side by side, so every line that diverged there shows."""
    from matplotlib.colors import to_hex
    from matplotlib.transforms import blended_transform_factory, offset_copy

    marks = pd.DataFrame({"x": list(xs), "color": [to_hex(c) for c in colors]}).drop_duplicates()
    marks["slot"] = marks.groupby("x").cumcount()
    marks["n"] = marks.groupby("x")["x"].transform("size")
    below = blended_transform_factory(ax.transData, ax.transAxes)
    ylim = ax.get_ylim()
    # the x range takes in rates where every run diverged (the lines, drawn from finite values, stop before)
    ax.update_datalim([(x, ylim[0]) for x in marks["x"]], updatey=False)
    ax.autoscale_view(scaley=False)
    _widen_for_marks(ax, marks["x"].min(), marks["x"].max(), (marks["n"].max() - 1) / 2 * DIVERGED_DODGE_PT + 5)
    xlim = ax.get_xlim()
    band_middle = DIVERGED_BAND / (1 + DIVERGED_BAND) / 2          # in axes coordinates
    for (slot, n), part in marks.groupby(["slot", "n"]):
        shift = (slot - (n - 1) / 2) * DIVERGED_DODGE_PT
        ax.scatter(part["x"], [band_middle] * len(part), marker="x", c=list(part["color"]), zorder=5,
                   clip_on=False, gid=DIVERGED_LABEL,
                   transform=offset_copy(below, fig=ax.figure, x=shift, units="points"))
    ax.set_xlim(xlim)
    ax.set_ylim(ylim)


def mark_diverged_below(ax, xs, colors=None, legend: bool = True) -> None:
    """Runs that diverged have no final value to plot: a ``x`` at each of ``xs`` in a band just below the
    lowest point (black, or in ``colors``, one per x: the colour of the line the run belongs to;
    ``scatter_diverged``), the axis extended to make room, and, with ``legend``, "diverged" (a black x)
    in the axes' legend."""
    if not len(xs):
        return
    make_room_below([ax])
    scatter_diverged(ax, xs, list(colors) if colors is not None else ["black"] * len(xs))
    if legend:
        handles, labels = ax.get_legend_handles_labels()
        ax.legend(handles=[*handles, diverged_handle()], labels=[*labels, DIVERGED_LABEL], fontsize=7,
                  loc="best")


def categorical_palette(levels) -> dict:
    """Colour per level, as seaborn picks them by default (the colour cycle, or husl for more levels than
    it has), given explicitly so that marks drawn beside seaborn's lines can use the same colours."""
    import seaborn as sns

    levels = list(levels)
    n_cycle = len(matplotlib.rcParams["axes.prop_cycle"].by_key()["color"])
    colors = sns.color_palette(None if len(levels) <= n_cycle else "husl", len(levels))
    return dict(zip(levels, colors))


def add_diverged_to_legend(grid) -> None:
    """One "diverged" entry at the end of a seaborn grid's figure legend."""
    legend = grid._legend
    if legend is None:
        grid.add_legend(legend_data={DIVERGED_LABEL: diverged_handle()})
        return
    labels = [text.get_text() for text in legend.get_texts()]
    legend_data = dict(zip(labels, legend.legend_handles))
    legend_data[DIVERGED_LABEL] = diverged_handle()
    title = legend.get_title().get_text()
    legend.remove()
    grid._legend = None
    grid.add_legend(legend_data=legend_data, label_order=list(legend_data), title=title or None)


def figure_title(figure: Mapping) -> str:
    """The image title: paper.yaml's ``title``, what the figure shows, in plain words. The working
    ``label`` ("Fig. 1 (number inferred from file names)") is not repeated: its uncertainty belongs
    in the caption (workflow/report/figure.rst) and the scorecard's label column."""
    return figure["title"]


def stamp(fig: plt.Figure, figure: Mapping) -> plt.Figure:
    """Plain title (``figure_title``); lines hidden under others drawn as rims (``reveal_hidden_lines``);
    footer with target, scale, dataset and the commits that trained its runs and made the plot, from
    ``figure["provenance"]`` (``provenance.figure_record``, which the figure job adds); without one the
    footer names the plotting commit only and says so."""
    for ax in fig.axes:
        plain_log_labels(ax.xaxis)
        plain_log_labels(ax.yaxis)
        reveal_hidden_lines(ax)
    fig.suptitle(figure_title(figure), y=1.02)
    # the footer goes below everything drawn (axis labels of a short figure reach below y = 0)
    renderer = fig.canvas.get_renderer()
    lowest = fig.get_tightbbox(renderer).y0 / fig.get_figheight()
    ident = f"creditbench {figure['target']} | scale={figure['scale']} | dataset={figure['dataset']}"
    footer = fig.text(0.01, min(lowest, 0.0) - 0.02, f"{ident} | {commits_text(figure)}", fontsize=7, color="0.4",
                      va="top")
    # wider than a narrow figure, the footer would widen the saved image (bbox "tight") and push the plot left
    if footer.get_window_extent(renderer).x1 > fig.bbox.x1:
        footer.set_text(f"{ident}\n{commits_text(figure)}")
    return fig


def commits_text(figure: Mapping) -> str:
    record = figure.get("provenance")
    if record is not None:
        return provenance.footer_commits(record)
    return f"plotted at {provenance.short_commit(provenance.git_commit())}; training commits not given"


def is_integer_axis(column: str, values) -> bool:
    """Does axis ``column`` count something (epochs, widths, depth, n): a known count factor, or
    every value a whole number?"""
    values = pd.Series(values).dropna()
    if column.rsplit(".", 1)[-1] in display.INTEGER_FACTORS:
        return True
    return bool(len(values)) and pd.api.types.is_numeric_dtype(values) and bool((values % 1 == 0).all())


def integer_ticks(ax, axis: str = "x", values=None) -> None:
    """Integer tick labels on ``ax``'s ``axis`` ("x" or "y"): at the plotted ``values`` when there
    are few of them (depths 8, 18, 34; widths 32, 128, 512 on a log axis, written as integers rather
    than powers of the base), else at whole numbers only (epochs 0..200)."""
    from matplotlib.ticker import FixedLocator, MaxNLocator, NullLocator, StrMethodFormatter

    target = ax.xaxis if axis == "x" else ax.yaxis
    scale = ax.get_xscale() if axis == "x" else ax.get_yscale()
    plotted = pd.Series(values).dropna() if values is not None else pd.Series(dtype=float)
    ticks = sorted({int(v) for v in plotted if v > 0 or scale != "log"})
    if ticks and (scale == "log" or len(ticks) <= FEW_TICKS):
        target.set_major_locator(FixedLocator(ticks))
        target.set_minor_locator(NullLocator())
        target.set_major_formatter(StrMethodFormatter("{x:.0f}"))
    elif scale != "log":
        target.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))


#: a log axis with at most this many distinct values gets a tick at each (``log_value_ticks``)
FEW_LOG_TICKS = 6


def log_value_ticks(ax, axis: str, values, most: int = FEW_LOG_TICKS) -> None:
    """A log ``axis`` ("x" or "y") swept over few values (learning rates 0.1, 0.5, 2, 5, 20) gets a tick
    labelled with each value, written plainly ("0.5", not 5×10⁻¹), instead of one label per decade
    (10⁻¹, 10⁰, 10¹) that names none of them; more than ``most`` values (fewer fit a small panel), a
    linear axis or non-positive values: unchanged."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

    target = ax.xaxis if axis == "x" else ax.yaxis
    ticks = sorted({float(v) for v in pd.Series(values).dropna()})
    if target.get_scale() != "log" or not ticks or ticks[0] <= 0 or len(ticks) > most:
        return
    target.set_major_locator(FixedLocator(ticks))
    target.set_minor_locator(NullLocator())
    target.set_major_formatter(FuncFormatter(lambda v, pos=None: display.short_float(v)))


def plain_log_labels(axis) -> None:
    """A log axis that spans less than two decades (training error 86.6-87.9 %, learning rates 0.5-5)
    gets matplotlib's minor-tick labels 8.7×10¹ or 3×10⁰ 4×10⁰, which overlap; write the same ticks'
    labels as plain numbers (87, 3, 4) instead, decided when the figure is drawn. Axes whose ticks were set otherwise
    (``integer_ticks``) and wider log axes keep their labels. ``stamp`` applies it to every figure."""
    from matplotlib.ticker import LogFormatter, LogFormatterSciNotation

    if axis.get_scale() != "log" or not isinstance(axis.get_major_formatter(), LogFormatter):
        return

    class PlainWithinDecade(LogFormatterSciNotation):
        """matplotlib's choice of which ticks get a label; plain numbers where the axis spans < 2 decades."""

        def __call__(self, x, pos=None):
            label = super().__call__(x, pos)
            lo, hi = sorted(axis.get_view_interval())
            return f"{x:g}" if label and lo > 0 and hi / lo < 100 else label

    base = axis.get_major_formatter()._base
    axis.set_major_formatter(PlainWithinDecade(base))
    axis.set_minor_formatter(PlainWithinDecade(base, labelOnlyBase=False))
    # minor ticks are shorter, so their labels sat nearer the axis than the major ones ("10" below "6")
    name = axis.axis_name
    major, minor = (matplotlib.rcParams[f"{name}tick.{w}.size"] for w in ("major", "minor"))
    axis.set_tick_params(which="minor", pad=matplotlib.rcParams[f"{name}tick.minor.pad"] + major - minor)


#: at most this many distinct values on an integer axis get a tick each
FEW_TICKS = 8


def plain_facet_titles(grid) -> None:
    """Panel titles of a seaborn grid name the level only ("NP", not seaborn's "rule = NP")."""
    rows, cols = len(grid.row_names or []) > 0, len(grid.col_names or []) > 0
    if rows or cols:
        grid.set_titles(template=" | ".join(t for t, on in (("{row_name}", rows), ("{col_name}", cols)) if on))


def _axes_style(grid, spec: Mapping, x: str, y: str, x_values=None) -> None:
    plain_facet_titles(grid)
    for ax in grid.axes.flat:
        ax.set_xscale("log" if spec.get("logx") else "linear")
        ax.set_yscale("log" if spec.get("logy") else "linear")
        if x_values is not None and is_integer_axis(x, x_values):
            integer_ticks(ax, "x", x_values)
        elif x_values is not None and spec.get("logx"):
            log_value_ticks(ax, "x", x_values)
        ax.set_xlabel(spec.get("xlabel", display.factor(x)))
        ax.set_ylabel(spec.get("ylabel", y))


def last_finite(rows: pd.DataFrame, x: str) -> pd.DataFrame:
    """Per diverged run, its last point with a finite value (the run's first point, at 0, if none)."""
    diverged = rows[rows["status"] == "diverged"].sort_values(x)
    finite = diverged.dropna(subset=["value"]).groupby("run_id").tail(1)
    never = diverged[~diverged["run_id"].isin(finite["run_id"])].groupby("run_id").head(1).assign(value=0.0)
    return pd.concat([finite, never])


#: how much wider a line is drawn per later line that covers it (``reveal_hidden_lines``)
HIDDEN_LINE_WIDENING = 1.5


def _screen_points(line) -> dict[float, np.ndarray]:
    """A line's finite points in display pixels, keyed by their x value."""
    xy = np.column_stack([np.asarray(line.get_xdata(), float), np.asarray(line.get_ydata(), float)])
    xy = xy[np.isfinite(xy).all(axis=1)]
    return dict(zip(xy[:, 0], line.get_transform().transform(xy))) if len(xy) else {}


def _covered(low: dict, up: dict, half_width_px: float) -> bool:
    """Whether every screen point of a line (``low``) lies within ``half_width_px`` of another's (``up``) at
    the same x."""
    return bool(low) and set(low) <= set(up) and all(np.hypot(*(low[x] - up[x])) <= half_width_px for x in low)


def reveal_hidden_lines(ax) -> None:
    """A line that lies exactly under lines drawn after it (two learning rates that both stay at chance)
    cannot be seen. Draw it wider, k times ``HIDDEN_LINE_WIDENING`` more for k lines covering it, so its
    colour shows as a rim around theirs."""
    ax.get_xlim(), ax.get_ylim()              # autoscale now, so that data map to their final pixels
    lines = [line for line in ax.get_lines() if len(line.get_xdata())]
    points = [_screen_points(line) for line in lines]
    half_widths = [line.get_linewidth() * ax.figure.dpi / 72 / 2 for line in lines]
    covering = [sum(_covered(points[i], up, half_widths[i]) for up in points[i + 1:]) for i in range(len(lines))]
    for line, k in zip(lines, covering):
        if k:
            line.set_linewidth(line.get_linewidth() * (1 + HIDDEN_LINE_WIDENING * k))
            line.set_markersize(line.get_markersize() * (1 + HIDDEN_LINE_WIDENING * k / 2))


def line_figure(table: pd.DataFrame, figure: Mapping) -> plt.Figure:
    """A per-epoch metric (``y``, e.g. test_acc) against ``x`` (epoch), one line per run."""
    spec = figure["plot"]
    data = _select_metric(table, spec["y"])
    keys = [column_name(spec[k]) if spec.get(k) else None for k in ("hue", "style", "col", "row")]
    _categorical(data, keys)
    data, (hue, style, col, row) = _display_columns(data, keys)
    import seaborn as sns  # imported where used: 1.3 s of the figure job, which tables do not need

    grid = sns.relplot(data=data, kind="line", x=spec["x"], y="value", hue=hue, style=style, col=col, row=row,
                       markers=False, errorbar=("sd" if data.groupby("run_id").ngroups > 1 else None),
                       height=4, aspect=1.3, facet_kws={"sharey": True})
    any_diverged = False
    for (_, sub), ax in zip(grid.facet_data(), grid.axes.flat):
        last = last_finite(sub, spec["x"])
        if len(last):
            mark_diverged(ax, last[spec["x"]], last["value"])
            any_diverged = True
    if any_diverged:
        add_diverged_to_legend(grid)
    _axes_style(grid, spec, spec["x"], spec["y"], data[spec["x"]])
    return stamp(grid.figure, figure)


def _name_levels_that_only_diverged(data: pd.DataFrame, hue: str) -> None:
    """A colour level none of whose runs finished has no line to show, only its x marks; its legend
    entry says so ("IA (every run diverged)")."""
    diverged = data.groupby(hue, observed=True)["status"].agg(lambda s: bool((s == "diverged").all()))
    renames = {level: f"{level} (every run diverged)" for level, only in diverged.items() if only}
    if renames:
        data[hue] = data[hue].cat.rename_categories(lambda level: renames.get(level, level))


def final_figure(table: pd.DataFrame, figure: Mapping) -> plt.Figure:
    """A reduced metric per run (``y``, e.g. final_acc) against a factor (``x``, e.g. lr).

    Seeds are averaged (band = sd). Diverged runs have no final value; each is an ``x`` in its line's
    colour in a band below the lowest point (``scatter_diverged``), so a sweep shows where, and whose,
    training blew up.
    """
    spec = figure["plot"]
    x = column_name(spec["x"])
    data = table.drop_duplicates("run_id").copy()
    keys = [column_name(spec[k]) if spec.get(k) else None for k in ("hue", "style", "col", "row")]
    if keys[1] and data[keys[1]].nunique(dropna=False) < 2:
        keys[1] = None                      # one ResNet version: a legend entry that tells nothing
    _categorical(data, keys)
    data, (hue, style, col, row) = _display_columns(data, keys)
    if hue:
        _name_levels_that_only_diverged(data, hue)
    palette = categorical_palette(data[hue].cat.categories) if hue else None
    import seaborn as sns

    grid = sns.relplot(data=data, kind="line", x=x, y=spec["y"], hue=hue, style=style, col=col, row=row,
                       palette=palette, marker="o", errorbar="sd", height=4, aspect=1.3)
    _axes_style(grid, spec, x, spec["y"], data[x])
    diverged = [(ax, sub[sub["status"] == "diverged"].sort_values(hue or x))   # marks side by side in legend order
                for (_, sub), ax in zip(grid.facet_data(), grid.axes.flat)]
    if any(len(bad) for _, bad in diverged):
        make_room_below(grid.axes.flat)
        for ax, bad in diverged:
            if len(bad):
                scatter_diverged(ax, bad[x], [palette[h] for h in bad[hue]] if hue else ["C0"] * len(bad))
        add_diverged_to_legend(grid)
    return stamp(grid.figure, figure)


def summary_table(table: pd.DataFrame, by, metrics) -> pd.DataFrame:
    """mean ± std over seeds of each reduced metric, one row per combination of ``by``: rules in the order
    the table first names them (the order of paper.yaml's grid, BP first where the paper puts it first), every
    other factor ascending."""
    runs = table.drop_duplicates("run_id")
    columns = [column_name(b) for b in by]
    grouped = runs.groupby(columns, sort=True, dropna=False)   # keep rows a factor does not apply to
    out = grouped[list(metrics)].agg(["mean", "std", "count"])
    out[("runs", "diverged")] = grouped["status"].agg(lambda s: int((s == "diverged").sum()))
    if "rule" in columns:
        rank = {rule: i for i, rule in enumerate(pd.unique(runs["rule"]))}
        keys = out.index.to_frame(index=False)
        keys["rule"] = keys["rule"].map(rank)
        out = out.iloc[keys.sort_values(columns, kind="stable", na_position="last").index]
    return out


def spread_text(mean: float, sd: float, n: int, mean_format: str | None = None, sd_format: str | None = None) -> str:
    """mean ± sd (n=k) over seeds; one seed has no spread to show (its sd is NaN, not 0), and no
    finished run shows a dash. Every table cell of a mean over seeds is written by this function.

    Without formats, the sd keeps two significant digits and the mean is rounded to the sd's last digit
    (12.96 ± 0.11, 11.334 ± 0.028, 91.0 ± 1.4); one seed's value keeps three (13.0, 9.71), trailing zeros
    included, so a cell never looks less precise than its neighbours."""
    if n == 0:
        return "—"
    if n == 1:
        return f"{mean:{mean_format or _fixed_format(mean, 3)}} (n=1)"
    if mean_format is None and sd_format is None and np.isfinite(sd) and sd > 0:
        decimals = max(0, 1 - math.floor(math.log10(sd)))
        mean_format = sd_format = f".{decimals}f"
    return f"{mean:{mean_format or _fixed_format(mean, 3)}} ± {sd:{sd_format or '.2g'}} (n={n})"


def _fixed_format(value: float, digits: int) -> str:
    """A fixed-point format keeping ``digits`` significant digits of ``value`` (none after the point from
    10^digits on; general format for NaN, inf and 0)."""
    if not np.isfinite(value) or value == 0:
        return ".3g"
    return f".{max(0, digits - 1 - math.floor(math.log10(abs(value))))}f"


def _cell(row, metric: str) -> str:
    """A :func:`summary_table` row's cell for ``metric`` (see :func:`spread_text`)."""
    return spread_text(row[(metric, "mean")], row[(metric, "std")], int(row[(metric, "count")]))


def _level_cell(column: str, value) -> str:
    """A factor level as a table cell: its display name (impls.common.display), a dash where the
    factor does not apply to that row (NaN, e.g. a BN flag of a rule without BN)."""
    return "—" if pd.isna(value) else display.level(column, value)


def table_axes(width: float, height: float):
    """(figure, axes) for a table image ``height`` inches tall plus a band for the title: the axes (axis
    off) fills the rest, so a table drawn with ``bbox=[0, 0, 1, 1]`` has no blank band around it and the
    title (``stamp``) is centred over it; the footer goes below (the saved image's tight box takes it in)."""
    title_band = 0.3
    fig, ax = plt.subplots(figsize=(width, height + title_band))
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.0, top=height / (height + title_band))
    ax.axis("off")
    return fig, ax


def table_figure(table: pd.DataFrame, figure: Mapping) -> plt.Figure:
    """A results table (mean ± std over seeds) rendered as an image for the report."""
    spec = figure["plot"]
    by, metrics = spec.get("by", ["rule"]), spec.get("metrics", ["final_acc"])
    summary = summary_table(table, by, metrics)
    columns = [column_name(b) for b in by]
    cells = [[*(_level_cell(c, v) for c, v in zip(columns, idx if isinstance(idx, tuple) else (idx,))),
              *(_cell(row, m) for m in metrics), int(row[("runs", "diverged")])] for idx, row in summary.iterrows()]
    fig, ax = table_axes(2.2 * (len(by) + len(metrics) + 1), 0.28 * (len(cells) + 1))   # as tall as its rows
    ax.table(cellText=cells, colLabels=[display.factor(c) for c in columns] + [display.metric(m) for m in metrics]
             + ["diverged runs"], bbox=[0, 0, 1, 1])
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
    # the heading is the title alone, like an image's; the paper's label, doubts included, is small print
    meta = (f"{figure['paper']}, {figure['label']} | creditbench {figure['target']} | scale={figure['scale']} "
            f"| dataset={figure['dataset']} | the PNG and PDF beside this page draw the same cells")
    return table_page(figure["title"], meta, tables)


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
