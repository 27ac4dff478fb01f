"""Aggregation and plots of the wide_align figures (named in papers/wide_align/paper.yaml).

Callers: ``impls.common.aggregate.write_figure_table`` (``aggregate: impls.wide_align.figures:...``)
and ``impls.common.plotting.plot_figure`` (``plot.kind: impls.wide_align.figures:...``).

``runs_table``: one row per run -- its resolved factors and final.json reductions: ``val_acc``
(validation split after the last epoch: the number the original printed as "test"),
``final_test_acc`` (official test set), ``best_val_acc``, ``time_epoch``, ``min_train_loss`` /
``min_test_loss`` (Add task). Accuracy-vs-x figures take, per (rule, width, ...), the learning
rate with the best final ``val_acc`` (papers/wide_align/README.md, "Reduction and protocols", [inferred]).
``alignment_table``: one row per (run, scored epoch, layer) with the score and its shuffled control.
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from impls.common.io import read_json  # noqa: E402
from impls.common import display  # noqa: E402
from impls.common.plotting import (DIVERGED_LABEL, categorical_palette, diverged_handle, integer_ticks,  # noqa: E402
                                   log_value_ticks, mark_diverged_below, plain_log_labels, stamp)
from impls.wide_align.options import resolved_hparams, resolved_model  # noqa: E402

RULE_ORDER = ["bp", "bptt", "alignprop", "alignada", "alignzero", "fa", "dfa", "lastlayer", "readout"]
#: Add task chance losses (predict 0.5 everywhere), README "Add task": (train, test) per target kind
ADD_CHANCE = {"causal": (9.2942, 9.2169), "released": (9.3585, 9.3119)}


def _row(spec: Mapping, final: Mapping, rid: str) -> dict:
    hp, model = resolved_hparams(dict(spec)), resolved_model(dict(spec))
    f = final.get("final", {})
    return {"run_id": rid, "rule": spec["rule"], "dataset": spec["dataset"], "arch": model["arch"],
            "width": model["width"], "depth": model.get("depth"), "norm": model.get("norm"),
            "param": model.get("param"),
            "optimizer": hp["optimizer"], "lr": float(hp["lr"]), "seed": spec["seed"], "epochs": spec["epochs"],
            "n_train": spec.get("data", {}).get("n_train"), "batch_size": spec["batch_size"],
            "add_targets": hp["add_targets"], "add_alignada": hp["add_alignada"],
            "status": final["status"], "diverged_epoch": final.get("diverged_epoch"),
            "val_acc": f.get("val_acc"), "best_val_acc": f.get("best_val_acc"), "final_test_acc": f.get("test_acc"),
            "final_train_acc": f.get("train_acc"), "time_epoch": f.get("time_epoch"),
            "min_train_loss": f.get("min_train_loss"), "min_test_loss": f.get("min_test_loss"),
            "wall_time_s": final.get("wall_time_s")}


def runs_table(figure: Mapping, results_dir) -> pd.DataFrame:
    runs_dir = Path(results_dir) / figure["paper"] / "runs"
    rows = [_row(spec, read_json(runs_dir / rid / "final.json"), rid) for rid, spec in figure["runs"].items()]
    return pd.DataFrame(rows)


def alignment_table(figure: Mapping, results_dir) -> pd.DataFrame:
    runs_dir = Path(results_dir) / figure["paper"] / "runs"
    frames = []
    for rid, spec in figure["runs"].items():
        path = runs_dir / rid / "alignment.csv"
        if not path.exists():  # diverged before any scored epoch
            continue
        df = pd.read_csv(path)
        base = _row(spec, read_json(runs_dir / rid / "final.json"), rid)
        for k in ("run_id", "dataset", "width", "depth", "lr", "seed", "status"):
            df[k] = base[k]
        frames.append(df)
    cols = ["run_id", "dataset", "width", "depth", "lr", "seed", "status", "epoch", "layer", "score", "control"]
    return pd.concat(frames, ignore_index=True)[cols] if frames else pd.DataFrame(columns=cols)


def best_lr(table: pd.DataFrame, by, metric: str = "val_acc") -> pd.DataFrame:
    """Per group of ``by`` (seed-averaged), the rows of the lr with the best mean ``metric``."""
    ok = table.copy()
    ok["_m"] = ok[metric].astype(float)
    means = ok.groupby([*by, "lr"], dropna=False)["_m"].mean().reset_index()
    means["_m"] = means["_m"].fillna(-np.inf)
    best = means.loc[means.groupby(list(by), dropna=False)["_m"].idxmax(), [*by, "lr"]]
    return ok.merge(best, on=[*by, "lr"]).drop(columns="_m")


def _hue_order(table: pd.DataFrame) -> list[str]:
    return [display.rule(r) for r in RULE_ORDER if r in set(table["rule"])]


def _panels(table, x, ys, figure, hue="rule", logx=True, col=None, best_by=None, mark_diverged_runs=True):
    data = best_lr(table, best_by) if best_by else table
    data = data.assign(rule=data["rule"].map(display.rule)) if "rule" in data else data
    order = _hue_order(table) if hue == "rule" else sorted(data[hue].dropna().unique())
    palette = categorical_palette(order)
    cols = sorted(data[col].dropna().unique()) if col else [None]
    fig, axes = plt.subplots(len(ys), len(cols), figsize=(4.5 * len(cols), 3.6 * len(ys)), squeeze=False)
    for j, c in enumerate(cols):
        sub = data if c is None else data[data[col] == c]
        for i, (y, label) in enumerate(ys):
            ax = axes[i, j]
            sns.lineplot(data=sub, x=x, y=y, hue=hue, hue_order=order, palette=palette, marker="o", errorbar="sd",
                         ax=ax)
            if logx:
                ax.set_xscale("log", base=2 if x in ("width", "n_train") else 10)
            if x in display.INTEGER_FACTORS:
                integer_ticks(ax, "x", sub[x])
            elif logx:
                log_value_ticks(ax, "x", sub[x])
            # diverged runs have no final accuracy: an x in the rule's colour below the points
            bad = sub[sub["status"] == "diverged"] if mark_diverged_runs else sub.iloc[:0]
            bad = bad.sort_values(hue, key=lambda levels: levels.map(order.index))   # side by side in legend order
            mark_diverged_below(ax, bad[x], [palette[h] for h in bad[hue]], legend=False)
            ax.set_xlabel(display.factor(x))
            ax.set_ylabel(label)
            if c is not None:
                # a panel of one width reads "width 32"; datasets and Add-task variants name themselves
                named = col in ("variant", "dataset")
                ax.set_title(display.level(col, c) if named else f"{display.factor(col)} {display.level(col, c)}")
            if ax.get_legend() is not None:
                handles, labels = ax.get_legend_handles_labels()
                if len(bad):
                    handles, labels = [*handles, diverged_handle()], [*labels, DIVERGED_LABEL]
                ax.legend(handles, labels, fontsize=7, title=display.factor(hue) if hue else None, title_fontsize=7)
    fig.tight_layout()
    return stamp(fig, figure)


ACC = [("val_acc", "val-split accuracy (%)"), ("final_test_acc", "test-set accuracy (%)")]


def width_figure(table: pd.DataFrame, figure: Mapping) -> plt.Figure:
    """Accuracy vs width per rule at the best lr (validation split above, official test set below)."""
    return _panels(table, "width", ACC, figure, col="dataset", best_by=["rule", "width", "dataset", "depth"])


def lr_figure(table: pd.DataFrame, figure: Mapping) -> plt.Figure:
    return _panels(table, "lr", ACC[:1], figure, col="width")


def small_data_figure(table: pd.DataFrame, figure: Mapping) -> plt.Figure:
    return _panels(table, "n_train", ACC[:1], figure, col="width", best_by=["rule", "width", "n_train"])


def time_figure(table: pd.DataFrame, figure: Mapping) -> plt.Figure:
    fig = _panels(table, "width", [("time_epoch", "s per epoch + val pass")], figure,
                  mark_diverged_runs=False)   # a run that diverged still timed its epochs
    fig.axes[0].set_yscale("log")
    plain_log_labels(fig.axes[0].yaxis)   # set_yscale after stamp() resets the labels stamp chose
    return fig


#: legend entry of a run that diverged after its best loss (the point is that best, the loss before divergence)
DIVERGED_LATER_LABEL = "diverged later\n(its best before)"
RING_SIZE = 90      # points²


def add_figure(table: pd.DataFrame, figure: Mapping) -> plt.Figure:
    """Best (minimum over epochs) train and test loss vs hidden units, per rule; dashed: chance. A run that
    diverged keeps its best loss before the divergence (the metric, as in the original code), ringed in black;
    one legend, right of the top-right panel."""
    table = table.copy()
    table["variant"] = np.where(table["add_targets"] == "released", "released targets", "causal targets")
    losses = [("min_train_loss", "best train loss"), ("min_test_loss", "best test loss")]
    fig = _panels(table, "width", losses, figure, col="variant", mark_diverged_runs=False)
    variants = sorted(table["variant"].unique())
    for j, v in enumerate(variants):
        chance = ADD_CHANCE["released" if v == "released targets" else "causal"]
        later = table[(table["variant"] == v) & (table["status"] == "diverged")]
        for i, (y, _) in enumerate(losses):
            ax = fig.axes[i * len(variants) + j]
            ax.axhline(chance[i], ls="--", color="0.5", label="chance")
            ax.scatter(later["width"], later[y], s=RING_SIZE, facecolors="none", edgecolors="black",
                       linewidths=1.2, zorder=6)
            ax.set_yscale("log")
            plain_log_labels(ax.yaxis)      # 9-32 on a log axis: 10, 20, 30, not 2×10¹ (stamp ran before the log)
            ax.get_legend().remove()
    handles, labels = fig.axes[0].get_legend_handles_labels()     # the rules, then chance
    if table["status"].eq("diverged").any():
        handles.append(Line2D([], [], marker="o", markersize=RING_SIZE ** 0.5, markerfacecolor="none",
                              markeredgecolor="black", linestyle="none"))
        labels.append(DIVERGED_LATER_LABEL)
    fig.axes[len(variants) - 1].legend(handles, labels, fontsize=7, title="rule", title_fontsize=7,
                                       loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0)
    return fig


def score_width_figure(table: pd.DataFrame, figure: Mapping) -> plt.Figure:
    """Score (solid) and shuffled control (dashed) per layer vs width at the figure's epoch."""
    epoch = figure["plot"].get("epoch", {}).get(figure["scale"])
    data = table[table["epoch"] == epoch] if epoch is not None else table
    keys = sorted(data.groupby(["dataset", "depth"]).groups) or [(figure["dataset"], None)]
    fig, axes = plt.subplots(1, len(keys), figsize=(5 * len(keys), 3.8), squeeze=False)
    for ax, (ds, depth) in zip(axes[0], keys):
        sub = data[(data["dataset"] == ds) & (data["depth"] == depth)]
        for layer, g in sub.groupby("layer"):
            g = g.sort_values("width")
            line, = ax.plot(g["width"], g["score"], marker="o", label=f"layer {layer}")
            ax.plot(g["width"], g["control"], ls="--", marker=".", color=line.get_color())
        ax.set_xscale("log", base=2)
        ax.set_ylim(-0.05, 1.05)
        integer_ticks(ax, "x", sub["width"])
        ax.set(xlabel="width", ylabel="alignment score (dashed: shuffled control)",
               title=f"{display.DATASETS.get(ds, ds)}, {depth} layers, epoch {epoch}")
        ax.legend(fontsize=7)
    fig.tight_layout()
    return stamp(fig, figure)


def score_time_figure(table: pd.DataFrame, figure: Mapping) -> plt.Figure:
    fig, ax = plt.subplots(figsize=(6, 4))
    for layer, g in table.groupby("layer"):
        g = g.sort_values("epoch")
        line, = ax.plot(g["epoch"], g["score"], marker="o", label=f"layer {layer}")
        ax.plot(g["epoch"], g["control"], ls="--", marker=".", color=line.get_color())
    ax.set_ylim(-0.05, 1.05)
    widths = sorted(table["width"].unique()) if len(table) else []
    integer_ticks(ax, "x")
    ax.set(xlabel="epoch", ylabel="alignment score (dashed: shuffled control)",
           title="width " + ", ".join(str(int(w)) for w in widths))
    ax.legend(fontsize=7)
    fig.tight_layout()
    return stamp(fig, figure)
