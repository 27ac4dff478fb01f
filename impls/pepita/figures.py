"""Paper-only aggregation and plots of the pepita figures (named in papers/pepita/paper.yaml).

Callers: ``impls.common.aggregate.write_figure_table`` (``aggregate: impls.pepita.figures:...``)
and ``impls.common.plotting.plot_figure`` (``plot.kind: impls.pepita.figures:...``).

``tidy_table`` is the generic tidy table plus the columns every pepita plot groups by, taken
from the *resolved* spec (defaults filled in): rule, arch, dataset, seed, lr, F_scale,
depth, erin_sign and ``condition`` (PEPITA, F = 0, RP k=…). Reduced metrics follow papers/pepita/README.md, "Metrics":
the table reports the accuracy after the last epoch (``final_test_acc``), mean ± population std.
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
import seaborn as sns  # noqa: E402

from impls.common.aggregate import figure_table  # noqa: E402
from impls.common.io import load_npz  # noqa: E402
from impls.common import display  # noqa: E402
from impls.common.plotting import integer_ticks, mark_diverged_below, spread_text, stamp, table_axes  # noqa: E402
from impls.pepita.options import resolved_hparams  # noqa: E402
from impls.pepita.reference import PAPER_TABLE, TUTORIAL_CURVE  # noqa: E402

N_CLASSES = {"cifar100": 100}
RULE_ORDER = ["bp", "fa", "drtp", "pepita"]


# --------------------------------------------------------------------------- tables


def condition(spec: Mapping) -> str:
    hp = resolved_hparams(dict(spec))
    if hp["perturbation"] == "random":
        return f"RP k={hp['rp_k']:g}"
    if hp["F_scale"] == 0:
        return "F = 0"
    if spec["model"].get("activation", "relu") != "relu":
        return f"{spec['rule']} ({spec['model']['activation']})"
    return "PEPITA" if spec["rule"] == "pepita" else spec["rule"]


def run_columns(spec: Mapping) -> dict:
    """Scalar columns describing one run, from its resolved spec."""
    hp = resolved_hparams(dict(spec))
    model = spec["model"]
    return {"rule": spec["rule"], "arch": model["arch"], "dataset": spec["dataset"], "seed": spec["seed"],
            "lr": hp["lr"], "F_scale": hp["F_scale"], "erin_sign": bool(hp["erin_sign"]),
            "depth": len(model.get("hidden", [1024])) if model["arch"] == "fc" else 1,
            "decay_epochs": ",".join(map(str, hp["decay_epochs"])), "epochs": spec["epochs"],
            "condition": condition(spec)}


def tidy_table(figure: Mapping, results_dir) -> pd.DataFrame:
    """The generic tidy table (scalar factors only) plus ``run_columns`` of every run."""
    scalar = [f for f in figure["factors"] if f not in ("seed",) and all(
        not isinstance(_get(spec, f), (list, dict)) for spec in figure["runs"].values())]
    table = figure_table({**figure, "factors": scalar}, results_dir)
    extra = pd.DataFrame([{"run_id": rid, **run_columns(spec)} for rid, spec in figure["runs"].items()])
    table = table.drop(columns=[c for c in extra.columns if c in table.columns and c != "run_id"])
    return table.merge(extra, on="run_id", how="left")


def _get(spec, dotted):
    node = spec
    for key in dotted.split("."):
        if not isinstance(node, Mapping) or key not in node:
            return None
        node = node[key]
    return node


def final_accuracy(table: pd.DataFrame, by=("rule", "arch", "dataset")) -> pd.DataFrame:
    """Accuracy after the last epoch, mean ± population std (numpy default) over seeds."""
    runs = table.drop_duplicates("run_id")
    out = runs.groupby(list(by), sort=False).agg(
        mean=("final_test_acc", lambda s: float(np.mean(s.dropna())) if s.notna().any() else np.nan),
        std=("final_test_acc", lambda s: float(np.std(s.dropna())) if s.notna().any() else np.nan),
        n=("final_test_acc", "size"), diverged=("status", lambda s: int((s == "diverged").sum())))
    return out.reset_index()


# --------------------------------------------------------------------------- slowness


def fit_slowness(points: np.ndarray) -> tuple[float, float]:
    """Fit acc(X) = acc_max·X/(s + X), X = 0…n−1, to ``points`` (chance first); return (acc_max, s).

    acc_max = max(points), fixed (not fitted); s minimises the squared error (README "Metrics": the
    notebook's least-squares fit, here a bracketed golden-section search on log s, which
    finds the same minimum without depending on scipy's initial guess).
    """
    y = np.asarray(points, dtype=np.float64)
    x = np.arange(len(y), dtype=np.float64)
    acc_max = float(np.max(y))

    def sse(log_s: float) -> float:
        s = math.exp(log_s)
        return float(np.sum((acc_max * x / (s + x) - y) ** 2))

    grid = np.linspace(math.log(1e-6), math.log(1e6), 241)
    k = int(np.argmin([sse(v) for v in grid]))
    lo, hi = grid[max(k - 1, 0)], grid[min(k + 1, len(grid) - 1)]
    g = (math.sqrt(5) - 1) / 2
    a, b = hi - g * (hi - lo), lo + g * (hi - lo)
    for _ in range(200):
        if sse(a) < sse(b):
            hi, b = b, a
            a = hi - g * (hi - lo)
        else:
            lo, a = a, b
            b = lo + g * (hi - lo)
    return acc_max, math.exp((lo + hi) / 2)


#: chance plus at least two epochs: with one epoch, acc_max is that epoch's value and the fit puts s at 0
#: whatever the curve (cpu-scale conv nets decay after epoch 2), so s is reported as not determined.
MIN_FIT_POINTS = 3


def fit_epochs(decay_epochs: str, epochs: int) -> int:
    """Points used by the fit: up to the first decay (60 FC, 10 conv at the original's schedules), else all."""
    decays = [int(e) for e in str(decay_epochs).split(",") if e.strip()]
    return min(decays) if decays else epochs + 1


def slowness_table(figure: Mapping, results_dir) -> pd.DataFrame:
    """One row per (rule, arch, dataset, X): the seed-mean curve with chance as X = 0, its fit, s, acc_max."""
    table = tidy_table(figure, results_dir)
    acc = table[(table["split"] == "test") & (table["metric"] == "acc") & (table["epoch"] > 0)]
    rows = []
    for (rule, arch, dataset), sub in acc.groupby(["rule", "arch", "dataset"], sort=False):
        mean = sub.groupby("epoch")["value"].mean().sort_index()
        first = sub.iloc[0]
        n = min(fit_epochs(first["decay_epochs"], int(first["epochs"])), len(mean) + 1)
        chance = 100.0 / N_CLASSES.get(dataset, 10)
        points = np.concatenate([[chance], mean.to_numpy()])[:n]
        if len(points) < MIN_FIT_POINTS or not np.all(np.isfinite(points)):
            acc_max, s = float("nan"), float("nan")
        else:
            acc_max, s = fit_slowness(points)
        for x_, y_ in enumerate(np.concatenate([[chance], mean.to_numpy()])):
            rows.append({"rule": rule, "arch": arch, "dataset": dataset, "X": x_, "acc": y_,
                         "fit": acc_max * x_ / (s + x_) if x_ < n else np.nan, "fitted": x_ < n,
                         "s": s, "acc_max": acc_max, "fit_epochs": n, "seeds": sub["run_id"].nunique(),
                         "run_id": ";".join(sorted(sub["run_id"].unique()))})
    return pd.DataFrame(rows)


def _net(arch: str, dataset: str) -> str:
    return f"{display.level('arch', arch)} net, {display.level('dataset', dataset)}"


def rule_colours(rules) -> dict:
    """rule id -> colour, in the order seaborn gives a ``hue="rule"`` plot (display names sorted), so a rule
    has the same colour in fig_pepita_curves and tab_pepita_slowness."""
    ordered = sorted(dict.fromkeys(rules), key=display.rule)
    return dict(zip(ordered, sns.color_palette(n_colors=len(ordered))))


def slowness_figure(table: pd.DataFrame, figure: Mapping) -> plt.Figure:
    """Per net × dataset a panel of each rule's seed-mean test accuracy (dashed) and its fit (solid) over
    the fitted epochs, and below them the table of s, acc_max and the points fitted. A curve with too few
    points before the first decay (``MIN_FIT_POINTS``) has no fit line and reads "not determined"."""
    from matplotlib.lines import Line2D

    panels = table[["arch", "dataset"]].drop_duplicates().values.tolist()
    colours = rule_colours(table["rule"])
    n_rows = len(table[["arch", "dataset", "rule"]].drop_duplicates())
    fig = plt.figure(figsize=(max(4.5 * len(panels), 10), 4 + 0.25 * (n_rows + 1)))
    grid = fig.add_gridspec(2, len(panels), height_ratios=[4, 0.25 * (n_rows + 1)], hspace=0.3, bottom=0.03)
    cells = []
    for i, (arch, dataset) in enumerate(panels):
        ax = fig.add_subplot(grid[0, i])
        sub = table[(table["arch"] == arch) & (table["dataset"] == dataset)]
        for rule in sorted(sub["rule"].unique(), key=display.rule):
            r = sub[(sub["rule"] == rule) & sub["fitted"]]
            s, amax = r["s"].iloc[0], r["acc_max"].iloc[0]
            points = int(r["fit_epochs"].iloc[0])
            determined = np.isfinite(s)
            label = f"{display.rule(rule)}: s = {s:.3g}" if determined else f"{display.rule(rule)}: s not determined"
            ax.plot(r["X"], r["acc"], "--", color=colours[rule], alpha=0.7, label=None if determined else label)
            if determined:
                ax.plot(r["X"], r["fit"], "-", color=colours[rule], label=label)
            cells.append([display.level("arch", arch), display.level("dataset", dataset), display.rule(rule),
                          f"{s:.3g}" if determined else "not determined", f"{amax:.2f}" if determined else "—",
                          str(points) if determined else f"{points} (too few)"])
        handles, labels = ax.get_legend_handles_labels()
        styles = {"seed-mean data": Line2D([], [], color="0.4", ls="--")}
        if np.isfinite(sub["s"]).any():
            styles["fit"] = Line2D([], [], color="0.4", ls="-")
        ax.legend(handles=[*handles, *styles.values()], labels=[*labels, *styles], fontsize=7)
        ax.set_title(_net(arch, dataset))
        ax.set_xlabel("epoch (0 = chance)")
        ax.set_ylabel("test accuracy (%)")
        integer_ticks(ax, "x", sub["X"])
    ax = fig.add_subplot(grid[1, :])
    ax.axis("off")
    tab = ax.table(cellText=cells, colLabels=["net", "dataset", "rule", "s (epochs)", "acc_max (%)", "points fitted"],
                   bbox=[0, 0, 1, 1])
    tab.auto_set_font_size(False)
    tab.set_fontsize(8)
    return stamp(fig, figure)


# --------------------------------------------------------------------------- accuracy table


def accuracy_table(table: pd.DataFrame, figure: Mapping) -> plt.Figure:
    """Rules × (net, dataset): ours mean ± std (n) after the last epoch, with the paper's cell beside."""
    summary = final_accuracy(table)
    cols = summary[["arch", "dataset"]].drop_duplicates().values.tolist()
    rules = [r for r in RULE_ORDER if r in set(summary["rule"])]
    cells, two_lines = [], False
    for rule in rules:
        row = [display.rule(rule)]
        for arch, dataset in cols:
            hit = summary[(summary["rule"] == rule) & (summary["arch"] == arch) & (summary["dataset"] == dataset)]
            if hit.empty:
                row.append("—")
                continue
            h = hit.iloc[0]
            finished = int(h["n"]) - int(h["diverged"])   # one finished seed: no "± 0.00"
            ours = spread_text(h["mean"], h["std"], finished, ".2f", ".2f") + (
                f", {h['diverged']} of {int(h['n'])} diverged" if h["diverged"] else "")
            paper = PAPER_TABLE.get((rule, arch, dataset))
            two_lines |= paper is not None
            row.append(ours + (f"\npaper {paper[0]:.2f} ± {paper[1]:.2f}" if paper else ""))
        cells.append(row)
    line = 0.45 if two_lines else 0.28       # the table fills the figure: no blank band around it
    fig, ax = table_axes(1.5 + 3.2 * len(cols), line * (len(cells) + 1))
    tab = ax.table(cellText=cells, colLabels=["rule"] + [_net(a, d) for a, d in cols],
                   colWidths=[0.4] + [1.0] * len(cols), bbox=[0, 0, 1, 1])
    tab.auto_set_font_size(False)
    tab.set_fontsize(8)
    return stamp(fig, figure)


# --------------------------------------------------------------------------- alignment


def _band(ax, data: pd.DataFrame, metric: str, hue: str | None = None, max_epoch: int | None = None):
    sub = data[(data["split"] + "_" + data["metric"]) == metric]
    if max_epoch is not None:
        sub = sub[sub["epoch"] <= max_epoch]
    sns.lineplot(data=sub, x="epoch", y="value", hue=hue, errorbar="sd", ax=ax)
    integer_ticks(ax, "x")


def alignment_figure(table: pd.DataFrame, figure: Mapping) -> plt.Figure:
    """(a) test accuracy, (b) angle ∡(F, (W_L⋯W_1)ᵀ) in degrees, (c) ‖W_1‖_F, vs epoch, mean ± sd."""
    max_epoch = figure["plot"].get("max_epoch")
    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    for ax, metric, label in zip(axes, ("test_acc", "weights_angle", "weights_w1norm"),
                                 ("test accuracy (%)", "angle between F and (W₂W₁)ᵀ (deg)", "‖W₁‖_F")):
        _band(ax, table, metric, max_epoch=max_epoch)
        ax.set_ylabel(label)
    axes[1].axhline(90, color="0.6", ls=":")
    fig.tight_layout()  # the third panel's y label clears the second panel's ticks
    return stamp(fig, figure)


# --------------------------------------------------------------------------- tutorial check


def tutorial_figure(table: pd.DataFrame, figure: Mapping) -> plt.Figure:
    """Our seed-mean PEPITA curve (band = sd) against the tutorial's saved CIFAR-10 run."""
    acc = table[(table["split"] == "test") & (table["metric"] == "acc")]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    sns.lineplot(data=acc, x="epoch", y="value", errorbar="sd", ax=ax, label="ours (mean ± sd over seeds)")
    ref = pd.Series(TUTORIAL_CURVE, index=np.arange(1, 101))
    ax.plot(ref.index, ref.values, color="black", lw=1, label="reference (tutorial notebook)")
    mean = acc.groupby("epoch")["value"].mean()
    common = mean.index.intersection(ref.index[ref.index >= 10])
    final = table.drop_duplicates("run_id")["final_test_acc"]
    text = f"ours final {spread_text(final.mean(), final.std(), final.size, '.2f', '.2f')}; reference 52.58"
    if len(common):
        text += f"\nmean |ours - ref| over epochs {common.min()}-{common.max()}: {np.mean(np.abs(mean[common] - ref[common])):.2f}"
    if figure.get("note"):
        text += f"\n{figure['note']}"
    ax.text(0.02, 0.02, text, transform=ax.transAxes, fontsize=8)
    ax.set_xlabel("epoch")
    ax.set_ylabel("test accuracy (%)")
    ax.legend(loc="best", fontsize=8)   # "center right" sat on the reference curve at cpu scale
    return stamp(fig, figure)


# --------------------------------------------------------------------------- conv filters


def filters_table(figure: Mapping, results_dir) -> pd.DataFrame:
    """Learned conv filters of every run: rule, seed, filter, channel, row, col, value."""
    rows = []
    for rid, spec in figure["runs"].items():
        w = load_npz(Path(results_dir) / figure["paper"] / "runs" / rid / "params.npz")["w_0"]
        k = int(spec["model"].get("kernel", 5))
        w = w.reshape(w.shape[0], -1, k, k)
        f, c, i, j = np.meshgrid(*map(np.arange, w.shape), indexing="ij")
        rows.append(pd.DataFrame({"run_id": rid, "rule": spec["rule"], "seed": spec["seed"], "dataset": spec["dataset"],
                                  "filter": f.ravel(), "channel": c.ravel(), "row": i.ravel(), "col": j.ravel(),
                                  "value": w.ravel()}))
    return pd.concat(rows, ignore_index=True)


def filters_figure(table: pd.DataFrame, figure: Mapping) -> plt.Figure:
    """The first seed's filters of each rule, one row of tiles per rule (channel 0)."""
    rules = [r for r in RULE_ORDER if r in set(table["rule"])]
    n_filters = int(table["filter"].max()) + 1
    k = int(table["row"].max()) + 1
    fig, axes = plt.subplots(len(rules), n_filters, figsize=(0.55 * n_filters + 1, 0.7 * len(rules) + 0.6), squeeze=False)
    for r, rule in enumerate(rules):
        sub = table[(table["rule"] == rule) & (table["channel"] == 0)]
        sub = sub[sub["seed"] == sub["seed"].min()]
        for f in range(n_filters):
            img = sub[sub["filter"] == f].sort_values(["row", "col"])["value"].to_numpy().reshape(k, k)
            ax = axes[r][f]
            ax.imshow(img, cmap="gray")
            ax.set_xticks([])
            ax.set_yticks([])
        axes[r][0].set_ylabel(display.rule(rule), rotation=0, ha="right", va="center")
    return stamp(fig, figure)


# --------------------------------------------------------------------------- sweeps


def _mark_diverged_levels(ax, runs: pd.DataFrame, x: str) -> None:
    """A black x on the bottom of a point plot at each level of ``x`` where a run diverged (it has no final
    accuracy, so the point plot shows nothing there), and "diverged" in the legend."""
    levels = sorted(runs[x].unique())   # the point plot's categorical positions 0, 1, ...
    mark_diverged_below(ax, [levels.index(v) for v in runs[runs["status"] == "diverged"][x]])


def sweeps_figure(table: pd.DataFrame, figure: Mapping) -> plt.Figure:
    """Final accuracy vs F scale, vs number of hidden layers, and with the ERINsign switch."""
    runs = table.drop_duplicates("run_id")
    base = runs[(runs["depth"] == 1) & (~runs["erin_sign"])]
    fig, axes = plt.subplots(1, 3, figsize=(13, 4), gridspec_kw={"wspace": 0.35})   # room for each y label
    sns.pointplot(data=base, x="F_scale", y="final_test_acc", errorbar="sd", ax=axes[0])
    axes[0].set_xlabel("F scale (× He-uniform limit)")
    depth = runs[(runs["F_scale"] == 0.05) & (~runs["erin_sign"])]
    sns.pointplot(data=depth, x="depth", y="final_test_acc", errorbar="sd", ax=axes[1])
    axes[1].set_xlabel("hidden layers")
    for ax, data, x in ((axes[0], base, "F_scale"), (axes[1], depth, "depth")):
        _mark_diverged_levels(ax, data, x)
    sign = runs[(runs["depth"] == 1) & (runs["F_scale"] == 0.05)].assign(
        variant=lambda d: np.where(d["erin_sign"], "x + 0.1 F sign(e)", "x + F e"))
    sns.barplot(data=sign, x="variant", y="final_test_acc", errorbar="sd", ax=axes[2])
    for ax in axes:
        ax.set_ylabel("test accuracy after last epoch (%)")
    return stamp(fig, figure)
