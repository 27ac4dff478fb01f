"""two_routes tables and plots (named in papers/two_routes/paper.yaml).

Aggregators ``(figure, results_dir) -> DataFrame`` (caller: impls.common.aggregate):
- :func:`tidy`: tidy metrics of every run; per-layer names ``weight_angle:block_group1_0/conv0`` split into
  ``metric`` + ``layer`` (with ``layer_index``, 0 = stem); spec columns (rule, depth, version, beta,
  input_distribution, noise_var, inputs, ...) on every row; reductions ``final_test_acc``/``final_test_top5``
  (last epoch, NaN when diverged) and ``final_angle``/``final_fp_error`` (fixed-point runs).
- :func:`rules_table`: the rule registry (coefficients per primitive, locality, tie, fixed point) joined with
  the measured final angle and fixed-point error of the white-input fixed-point runs.
Plots ``(table, figure) -> Figure`` (caller: impls.common.plotting).
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping

import numpy as np
import pandas as pd

from impls.common import display
from impls.common.io import read_json
from impls.common.metrics import read_metrics
from impls.common.specs import get_dotted
from impls.two_routes import options

DESCRIBED = ["rule", "seed", "hparams.lr", "model.arch", "model.depth", "model.version", "model.width",
             "hparams.alpha", "hparams.beta", "hparams.input_distribution", "hparams.noise_var", "hparams.inputs"]
FIXED_POINTS = {"bp": "B ≡ Wᵀ", "fa": "B stays at init", "wm": "(β/2α)ΣWᵀ",
                "ia": "(α/2β)ΣWᵀ(WΣWᵀ + (γ/β)I)⁻¹", "sa": "(β/2α)Wᵀ = Wᵀ", "aa": "Wᵀ on the input span",
                "kp": "tracks W (leak mismatch)", "kp_equal_leak": "W − Bᵀ → 0"}


def _value(spec, dotted):
    v = get_dotted(spec, dotted)
    if v is None and dotted.startswith("model."):
        v = options.MODEL_DEFAULTS.get(dotted.split(".", 1)[1])
    if v is None and dotted.startswith("hparams."):
        v = options.HPARAM_DEFAULTS.get(dotted.split(".", 1)[1])
    return "default" if v is None else v


def layer_order(name: str):
    """Network order: stem conv0, blocks by (group, index, conv0 < conv1 < conv2 < proj), classifier last;
    FC nets: dense0, dense1, ..., dense_output."""
    if name == "conv0":
        return (0,)
    if name in ("dense", "dense_output"):
        return (2,)
    if name.startswith("dense") and name[5:].isdigit():
        return (1, int(name[5:]))
    block, layer = name.split("/", 1)
    group, index = (int(v) for v in block.replace("block_group", "").split("_"))
    return (1, group, index, layer)


def tidy(figure: Mapping, results_dir) -> pd.DataFrame:
    results_dir = Path(results_dir)
    frames = []
    for rid, spec in figure["runs"].items():
        run_dir = results_dir / figure["paper"] / "runs" / rid
        final = read_json(run_dir / "final.json")
        df = read_metrics(run_dir)
        parts = df["metric"].str.split(":", n=1, expand=True).reindex(columns=[0, 1])
        df["metric"], df["layer"] = parts[0], parts[1]
        order = {name: i for i, name in enumerate(sorted(df["layer"].dropna().unique(), key=layer_order))}
        df["layer_index"] = df["layer"].map(order)
        df.insert(0, "run_id", rid)
        for dotted in list(dict.fromkeys([*figure["factors"], *DESCRIBED])):
            df[dotted.split(".")[-1]] = _value(spec, dotted)
        df["status"] = final["status"]
        df["diverged_epoch"] = final.get("diverged_epoch")
        ok = final["status"] == "ok"
        last = df[df["epoch"] == df["epoch"].max()]
        for split, metric, col in (("test", "acc", "final_test_acc"), ("test", "top5", "final_test_top5"),
                                   ("align", "angle", "final_angle"), ("align", "fp_error", "final_fp_error")):
            v = last[(last["split"] == split) & (last["metric"] == metric) & last["layer"].isna()]["value"]
            df[col] = float(v.iloc[0]) if ok and len(v) else np.nan
        frames.append(df)
    return pd.concat(frames, ignore_index=True)


def rules_table(figure: Mapping, results_dir) -> pd.DataFrame:
    """One row per rule of the registry: primitive coefficients, tie, locality, fixed point, measured B-only
    final angle and fixed-point error (white inputs; '' for rules without B-only dynamics)."""
    from impls.two_routes.rules import RULES, make_rule

    measured = tidy(figure, results_dir).drop_duplicates("run_id").set_index("rule")
    rows = []
    for name in RULES:
        r = make_rule(name)
        row = {"rule": name, "run_id": measured["run_id"].get(name, ""), "description": options.RULES[name], "locality": r.locality,
               "B gets W's task gradient": r.tie, "backward uses B": r.uses_backward,
               "fixed point of B": FIXED_POINTS[name]}
        for prim in ("decay", "sparse", "amp", "null", "self"):
            row[prim] = r.terms.get(prim, 0.0)
        row["measured angle(B, W^T) (deg)"] = measured["final_angle"].get(name, np.nan)
        row["measured |B-B*|/|B*|"] = measured["final_fp_error"].get(name, np.nan)
        rows.append(row)
    return pd.DataFrame(rows)


# ------------------------------------------------------------------------------- plots

def rules_figure(table: pd.DataFrame, figure: Mapping):
    from impls.common.plotting import stamp, table_axes

    cols = ["rule", "decay", "sparse", "amp", "null", "self", "locality", "B gets W's task gradient",
            "fixed point of B", "measured angle(B, W^T) (deg)", "measured |B-B*|/|B*|"]
    headers = ["rule", "decay", "sparse", "amp", "null", "self", "locality", "B gets W's\ntask gradient",
               "fixed point of B", "measured angle\nB vs Wᵀ (deg)", "measured\n|B − B*| / |B*|"]
    widths = [0.09, 0.055, 0.055, 0.055, 0.055, 0.055, 0.07, 0.08, 0.22, 0.09, 0.09]

    def cell(v):   # booleans as yes/no; no B-only measurement (BP, FA, KP: B has no fixed point of its own) as —
        if isinstance(v, (bool, np.bool_)):
            return "yes" if v else "no"
        if isinstance(v, float):
            return "—" if np.isnan(v) else f"{v:.3g}"
        return str(v)

    cells = [[display.rule(row[0]), *map(cell, row[1:])] for row in table[cols].itertuples(index=False)]
    # the table fills its axes and the figure is as tall as its rows (the header row holds two lines)
    fig, ax = table_axes(16, 0.3 * (len(cells) + 2))
    t = ax.table(cellText=cells, colLabels=headers, colWidths=widths, bbox=[0, 0, 1, 1])
    t.auto_set_font_size(False)
    t.set_fontsize(8)
    return stamp(fig, figure)


def fixed_points_figure(table: pd.DataFrame, figure: Mapping):
    """Angle between B and Wᵀ and distance to the derived fixed point against the step, per rule and
    input kind; a run that diverged ends in a black x at its last finite point."""
    import seaborn as sns
    from matplotlib.ticker import MaxNLocator

    from impls.common.plotting import add_diverged_to_legend, last_finite, mark_diverged, stamp

    data = table[(table["split"] == "align") & table["metric"].isin(["angle", "fp_error"])].copy()
    data["step"] = data["epoch"] * data["run_id"].map(lambda r: _spe(figure, r))
    data["rule"] = data["rule"].map(display.rule)
    grid = sns.relplot(data=data, kind="line", x="step", y="value", hue="rule", style="inputs", col="metric",
                       col_order=["angle", "fp_error"], height=3.5, aspect=1.3, facet_kws={"sharey": False})
    grid.set_titles("")
    any_diverged = False
    for (_, sub), ax, title in zip(grid.facet_data(), grid.axes.flat, ("angle(B, Wᵀ) (deg)", "‖P(B − B*)‖/‖P B*‖")):
        ax.set_ylabel(title)
        ax.xaxis.set_major_locator(MaxNLocator(5))
        if "B*" in title:
            ax.set_yscale("log")
        last = last_finite(sub, "step")
        if len(last):
            mark_diverged(ax, last["step"], last["value"])
            any_diverged = True
    if any_diverged:
        add_diverged_to_legend(grid)
    return stamp(grid.figure, figure)


def _spe(figure, rid):
    return int(_value(figure["runs"][rid], "hparams.steps_per_epoch"))


#: the angle rows of fig_two_routes_angles, top to bottom, with their y labels
ANGLE_ROWS = {"weight_angle": "∠(W, Bᵀ) (deg)", "projection_angle": "∠(Wx, Bᵀx) (deg)",
              "gradient_angle": "∠(Bδ, Wᵀδ) (deg)"}


def angles_figure(table: pd.DataFrame, figure: Mapping):
    """Per-layer angles (rows: ``ANGLE_ROWS``) against the epoch, one column per rule, one line per layer
    coloured from the stem (dark) to the classifier (light) with a colour bar; a run that diverged ends in
    a black x at its last finite point."""
    import matplotlib.pyplot as plt
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    from matplotlib.ticker import MaxNLocator

    from impls.common.plotting import diverged_handle, integer_ticks, mark_diverged, stamp

    data = table[(table["split"] == "align") & table["layer"].notna()].dropna(subset=["value"])
    rules = [r for r in dict.fromkeys(table.drop_duplicates("run_id")["rule"]) if r in set(data["rule"])]
    n_layers = int(data["layer_index"].max()) + 1
    colour = plt.get_cmap("viridis")
    norm = Normalize(0, max(n_layers - 1, 1))
    fig, axes = plt.subplots(len(ANGLE_ROWS), len(rules), figsize=(2.3 * len(rules) + 1.2, 2.1 * len(ANGLE_ROWS)),
                             sharex=True, sharey=True, squeeze=False, layout="constrained")
    top = max(95.0, float(data["value"].max()) + 3)
    diverged = False
    for j, rule in enumerate(rules):
        for i, (metric, ylabel) in enumerate(ANGLE_ROWS.items()):
            ax = axes[i, j]
            sub = data[(data["rule"] == rule) & (data["metric"] == metric)]
            for (run_id, index), line in sub.groupby(["run_id", "layer_index"]):
                line = line.sort_values("epoch")
                ax.plot(line["epoch"], line["value"], color=colour(norm(index)), lw=1, marker="o", ms=2.5)
            ended = sub[sub["status"] == "diverged"].sort_values("epoch").groupby(["run_id", "layer_index"]).tail(1)
            if len(ended):
                mark_diverged(ax, ended["epoch"], ended["value"])
                diverged = True
            ax.set_ylim(-3, top)
            integer_ticks(ax, "x", table["epoch"].dropna().unique())
            if i == 0:
                ax.set_title(display.rule(rule))
            if i == len(ANGLE_ROWS) - 1:
                ax.set_xlabel("epoch")
            if j == 0:
                ax.set_ylabel(ylabel)
    bar = fig.colorbar(ScalarMappable(norm=norm, cmap=colour), ax=axes, fraction=0.02, pad=0.01, aspect=40)
    bar.set_label("layer: 0 = stem conv, %d = classifier" % (n_layers - 1))
    bar.locator = MaxNLocator(integer=True)
    bar.update_ticks()
    if diverged:
        fig.legend(handles=[diverged_handle()], loc="lower right", bbox_to_anchor=(1.0, 1.0), frameon=False)
    return stamp(fig, figure)


#: what R sees as the layer input x (hparams.input_distribution), as the stability table names it
R_INPUT = {"none": "layer input", "normal": "N(0, 1) noise", "uniform": "uniform noise"}


def coefficient_setting(rule: str, used: Mapping[str, float]) -> str:
    """How a run's coefficients relate to the code's defaults: "code default", "code default × k" (every
    coefficient scaled by the same k, so the ratios and hence B's fixed point are kept), "project", or
    "—" for a rule without coefficients (BP, FA)."""
    default = options.DEFAULT_COEFFICIENTS[rule]
    if not default:
        return "—"
    ratios = {round(used[c] / default[c], 12) for c in default}
    if ratios == {1.0}:
        return "code default"
    return f"code default × {ratios.pop():g}" if len(ratios) == 1 else "project"


def stability_table(table: pd.DataFrame, figure: Mapping):
    """fig_two_routes_stability: one row per setting in the grid's order (rule, how its coefficients
    relate to the code's defaults, α/β/γ as used, what R sees as x), final test top-1 over the runs that
    finished, and how many runs diverged and in which epoch; "—" where a column does not apply."""
    from impls.common.plotting import spread_text, stamp, table_axes

    runs = table.drop_duplicates("run_id").set_index("run_id")
    rows: dict[tuple, list[str]] = {}
    for rid, spec in figure["runs"].items():
        rule, hp = spec["rule"], spec.get("hparams", {})
        used = {c: float(hp.get(c) if hp.get(c) is not None else v) for c, v in options.DEFAULT_COEFFICIENTS[rule].items()}
        key = (rule, *(used.get(c) for c in options.COEFFICIENTS), hp.get("input_distribution", "none"))
        rows.setdefault(key, []).append(rid)
    cells = []
    for (rule, *coefficients, r_input), rids in rows.items():
        sub = runs.loc[rids]
        finished = sub["final_test_acc"].dropna()
        diverged = sub[sub["status"] == "diverged"]
        epochs = sorted({int(e) for e in diverged["diverged_epoch"].dropna()})
        cells.append([display.rule(rule), coefficient_setting(rule, dict(zip(options.COEFFICIENTS, coefficients))),
                      *("—" if c is None else f"{c:g}" for c in coefficients),
                      R_INPUT[r_input] if options.DEFAULT_COEFFICIENTS[rule] else "—",
                      spread_text(finished.mean(), finished.std(), len(finished)),
                      f"{len(diverged)} of {len(sub)}" + (f" (epoch {', '.join(map(str, epochs))})" if epochs else "")])
    headers = ["rule", "coefficients", "α", "β", "γ", "R's input x", "final test top-1 (%)", "diverged runs"]
    fig, ax = table_axes(14, 0.28 * (len(cells) + 1))
    ax.table(cellText=cells, colLabels=headers, colWidths=[0.07, 0.17, 0.09, 0.09, 0.09, 0.15, 0.18, 0.16],
             bbox=[0, 0, 1, 1])
    return stamp(fig, figure)


def _lines_with_diverged(ax, runs: pd.DataFrame, x: str, line_of: str, label) -> None:
    """One line of mean ± sd final top-1 against ``x`` per level of ``line_of`` (``label(level)`` in the
    legend); where a level's run diverged (no final accuracy) an x in the line's colour below the points.
    The legend goes below the axes: inside, wherever it was put, it covered lines or marks at cpu scale."""
    from impls.common.plotting import diverged_handle, mark_diverged_below

    xs, colours = [], []
    for level, g in runs.groupby(line_of):
        finished = g.dropna(subset=["final_test_acc"]).groupby(x)["final_test_acc"].agg(["mean", "std"]).reset_index()
        name = label(level) if len(finished) else f"{label(level)} (every run diverged)"   # no line to show
        drawn = ax.errorbar(finished[x], finished["mean"], yerr=finished["std"].fillna(0), marker="o", label=name)
        bad = g[g["status"] == "diverged"][x]
        xs += list(bad)
        colours += [drawn.lines[0].get_color()] * len(bad)
    handles, labels = ax.get_legend_handles_labels()
    if xs:
        mark_diverged_below(ax, xs, colours, legend=False)
        handles, labels = [*handles, diverged_handle()], [*labels, "diverged"]
    # one column: two columns of the panels' long labels ran into the next panel's legend
    ax.legend(handles, labels, fontsize=7, frameon=False, loc="upper center", bbox_to_anchor=(0.5, -0.2))


def wm_sensitivity_figure(table: pd.DataFrame, figure: Mapping):
    """WM's final top-1 against β/α per depth, one line per input of R, BP dashed; settings that diverged
    marked (at the code defaults on the true layer inputs, WM's B outgrows W: fig_two_routes_stability)."""
    import matplotlib.pyplot as plt

    from impls.common.plotting import stamp

    runs = table.drop_duplicates("run_id").copy()
    depths = sorted(runs["depth"].unique())
    fig, axes = plt.subplots(1, len(depths), figsize=(4.5 * len(depths), 3.5), squeeze=False)
    default = options.DEFAULT_COEFFICIENTS["wm"]
    for ax, depth in zip(axes[0], depths):
        sub = runs[runs["depth"] == depth]
        wm = sub[sub["rule"] == "wm"].copy()
        beta, alpha = (wm[c].map(lambda v, c=c: default[c] if v == "default" else float(v)) for c in ("beta", "alpha"))
        wm["ratio"] = beta / alpha
        ax.axhline(sub[sub["rule"] == "bp"]["final_test_acc"].mean(), ls="--", color="k", label="BP")
        _lines_with_diverged(ax, wm, "ratio", "input_distribution", lambda d: f"WM, R sees {R_INPUT[d]}")
        ax.set_xscale("log", base=2)
        ratios = wm["ratio"].dropna()
        if len(ratios):       # half a step of the β grid beyond its ends, so that no marker is cut by the frame
            ax.set_xlim(ratios.min() / 2 ** 0.5, ratios.max() * 2 ** 0.5)
        ax.set_xlabel("β/α")
        ax.set_ylabel("final test top-1 (%)")
        ax.set_title(f"ResNet-{depth}")
    return stamp(fig, figure)


def noise_figure(table: pd.DataFrame, figure: Mapping):
    """Final top-1 against the variance of the noise added to B's updates, one line per rule; a rule's
    noise levels that diverged are marked in its colour."""
    import matplotlib.pyplot as plt

    from impls.common.plotting import stamp

    runs = table.drop_duplicates("run_id").copy()
    runs["noise_var"] = runs["noise_var"].astype(float)
    fig, ax = plt.subplots(figsize=(5, 3.5))
    _lines_with_diverged(ax, runs, "noise_var", "rule", display.rule)
    variances = sorted(runs["noise_var"].unique())
    linthresh = min([v for v in variances if v > 0], default=1e-6)
    ax.set_xscale("symlog", linthresh=linthresh)
    # ticks at the grid's variances, a small margin left of 0 (a variance is never negative) and half a decade
    # right of the largest, so that its marker is not cut by the frame
    ax.set_xticks(variances)
    ax.set_xlim(-0.3 * linthresh, max(max(variances), linthresh) * 10 ** 0.5)
    ax.set_xlabel("update noise variance v (0 = no noise)")
    ax.set_ylabel("final test top-1 (%)")
    return stamp(fig, figure)
