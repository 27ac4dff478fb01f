"""The nodepert paper's own aggregations and plots (paper.yaml ``aggregate:``/``plot.kind``).

Caller: the generic ``aggregate`` and ``plot`` rules (impls.common.aggregate/plotting), via
``"impls.nodepert.figures:<function>"``. Plot functions take (tidy table, figure) and return a
matplotlib Figure; aggregate functions take (figure, results_dir) and return a DataFrame.

- ``sweep_with_boxes``: depth/width sweeps (spec F4/F5): final accuracy vs learning rate, one
  panel per rule and one curve per depth/width, plus the box-plot panel (box over the LR points
  of final_acc per depth/width × rule, points coloured by log10 lr).
- ``rule_boxes``: the Adam figure (spec F11): box plot of final_acc per rule over its LR grid.
- ``crash_timing_table`` / ``crash_timing_plot``: spec F9, first-crash epoch vs learning rate,
  with the three classes (crash; no crash, drawn at the cap; no learning, drawn at 0).

Diverged runs (NaN loss) have no final accuracy: they are drawn as black ``x`` on the x axis of
the curve panels, left out of the boxes, and counted in the box panel's labels.
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from impls.common.aggregate import column_name, figure_table  # noqa: E402
from impls.common.metrics import read_metrics  # noqa: E402
from impls.common.plotting import stamp  # noqa: E402
from impls.nodepert import crash  # noqa: E402


def _runs(table: pd.DataFrame) -> pd.DataFrame:
    return table.drop_duplicates("run_id").copy()


def _levels(values) -> list:
    return sorted(pd.unique(values), key=lambda v: (isinstance(v, str), v))


def _box_panel(ax, runs: pd.DataFrame, groups: list[tuple[str, pd.DataFrame]], y: str, lr: str) -> None:
    """One box per group over its final_acc values, every run drawn as a dot coloured by log10 lr."""
    norm = matplotlib.colors.Normalize(np.log10(runs[lr].min()), np.log10(runs[lr].max()) + 1e-12)
    data, labels = [], []
    for i, (label, sub) in enumerate(groups):
        ok = sub[sub["status"] == "ok"].dropna(subset=[y])
        data.append(ok[y].to_numpy())
        n_bad = int((sub["status"] != "ok").sum())
        labels.append(label + (f"\n({n_bad} diverged)" if n_bad else ""))
        jitter = np.linspace(-0.15, 0.15, len(ok)) if len(ok) > 1 else np.zeros(len(ok))
        ax.scatter(i + 1 + jitter, ok[y], c=np.log10(ok[lr]), cmap="viridis", norm=norm, s=12, zorder=3)
    ax.boxplot(data, showfliers=False, widths=0.5)
    ax.set_xticks(range(1, len(groups) + 1), labels, fontsize=7, rotation=30)
    mappable = matplotlib.cm.ScalarMappable(norm=norm, cmap="viridis")
    ax.figure.colorbar(mappable, ax=ax, label="log10 learning rate")


def _curve_panel(ax, sub: pd.DataFrame, factor: str | None, y: str, lr: str) -> None:
    levels = _levels(sub[factor]) if factor else [None]
    colors = plt.cm.plasma(np.linspace(0.0, 0.85, max(len(levels), 1)))
    for level, color in zip(levels, colors):
        part = sub if level is None else sub[sub[factor] == level]
        ok = part[part["status"] == "ok"].groupby(lr)[y].mean()
        ax.plot(ok.index, ok.values, marker="o", ms=3, color=color,
                label=None if level is None else f"{factor} {level}")
        bad = part[part["status"] != "ok"]
        ax.scatter(bad[lr], np.zeros(len(bad)), marker="x", color="black", zorder=5)
    ax.set_xscale("log")
    ax.set_xlabel("learning rate")
    if factor:
        ax.legend(fontsize=7)


def sweep_with_boxes(table: pd.DataFrame, figure: Mapping) -> plt.Figure:
    """Left: final_acc vs lr per rule (``col``), one curve per ``hue`` (depth or width).
    Right: box plot per hue level × rule of final_acc over the LR points."""
    spec = figure["plot"]
    y, lr = spec.get("y", "final_acc"), column_name(spec.get("x", "hparams.lr"))
    col, hue = column_name(spec.get("col", "rule")), column_name(spec["hue"])
    runs = _runs(table)
    rules = _levels(runs[col])
    fig, axes = plt.subplots(1, len(rules) + 1, figsize=(4.2 * (len(rules) + 1) + 1, 4),
                             gridspec_kw={"width_ratios": [1] * len(rules) + [1.3]})
    for ax, rule in zip(axes, rules):
        _curve_panel(ax, runs[runs[col] == rule], hue, y, lr)
        ax.set_title(f"{rule}")
        ax.set_ylabel(spec.get("ylabel", y))
    groups = [(f"{rule} {hue} {level}", runs[(runs[col] == rule) & (runs[hue] == level)])
              for level in _levels(runs[hue]) for rule in rules]
    _box_panel(axes[-1], runs, groups, y, lr)
    axes[-1].set_ylabel(spec.get("ylabel", y))
    axes[-1].set_title("over learning rates")
    fig.tight_layout()
    return stamp(fig, figure)


def rule_boxes(table: pd.DataFrame, figure: Mapping) -> plt.Figure:
    """Box plot of final_acc per rule (``x``, in the grid's order), each over its own LR grid."""
    spec = figure["plot"]
    y, lr, by = spec.get("y", "final_acc"), column_name(spec.get("hue", "hparams.lr")), column_name(spec.get("x", "rule"))
    runs = _runs(table)
    order = list(dict.fromkeys(runs[by]))
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4), gridspec_kw={"width_ratios": [1.2, 1]})
    _box_panel(left, runs, [(str(r), runs[runs[by] == r]) for r in order], y, lr)
    left.set_ylabel(spec.get("ylabel", y))
    for r in order:
        sub = runs[(runs[by] == r) & (runs["status"] == "ok")].sort_values(lr)
        right.plot(sub[lr], sub[y], marker="o", ms=3, label=str(r))
    right.set_xscale("log")
    right.set_xlabel("learning rate")
    right.set_ylabel(spec.get("ylabel", y))
    right.legend(fontsize=7)
    fig.tight_layout()
    return stamp(fig, figure)


def crash_timing_table(figure: Mapping, results_dir) -> pd.DataFrame:
    """One row per run: factors, status, and the crash classification of its test accuracy."""
    tidy = figure_table(figure, results_dir)
    rows = []
    for rid, spec in figure["runs"].items():
        run = tidy[tidy["run_id"] == rid].iloc[0]
        metrics = read_metrics(Path(results_dir) / figure["paper"] / "runs" / rid)
        verdict = crash.from_metrics(metrics, spec["epochs"])
        rows.append({"run_id": rid, **{column_name(f): run[column_name(f)] for f in figure["factors"]},
                     "status": run["status"], "epochs_cap": spec["epochs"], "best_test_acc": run["best_test_acc"],
                     "crash_class": verdict["crash_class"], "crash_epoch": verdict["crash_epoch"],
                     "crash_plot_epoch": verdict["crash_plot_epoch"]})
    return pd.DataFrame(rows)


CRASH_STYLE = {"crash": ("o", "tab:red"), "no_crash": ("^", "tab:green"), "no_learning": ("v", "tab:gray")}


def crash_timing_plot(table: pd.DataFrame, figure: Mapping) -> plt.Figure:
    """First-crash epoch vs learning rate (log x); no crash at the cap, no learning at 0."""
    spec = figure["plot"]
    lr = column_name(spec.get("x", "hparams.lr"))
    fig, ax = plt.subplots(figsize=(6, 4))
    for cls, (marker, color) in CRASH_STYLE.items():
        sub = table[table["crash_class"] == cls]
        ax.scatter(sub[lr], sub["crash_plot_epoch"], marker=marker, color=color, label=f"{cls} ({len(sub)})",
                   alpha=0.8)
    ax.axhline(table["epochs_cap"].max(), color="0.6", lw=0.8, ls="--")
    ax.set_xscale("log")
    ax.set_xlabel(spec.get("xlabel", "learning rate"))
    ax.set_ylabel(spec.get("ylabel", "epoch of first crash"))
    ax.legend(fontsize=8)
    fig.tight_layout()
    return stamp(fig, figure)


def linesearch_table(figure: Mapping, results_dir) -> pd.DataFrame:
    """One row per (run, rule, step size): the mean one-step loss change (runs/<id>/linesearch.csv),
    with the run's depth/width, the epoch its warm-up stopped, its test accuracy there, and per
    rule the run's minimum ΔL, its step size and the step size from which ΔL is positive
    (``np_min_delta_loss``, ``np_argmin_step``, ``np_positive_from_step``, same for ``sgd_``)."""
    from impls.nodepert.linesearch import summarise  # JAX only for this figure's aggregation

    frames = []
    for rid, spec in figure["runs"].items():
        run_dir = Path(results_dir) / figure["paper"] / "runs" / rid
        df = pd.read_csv(run_dir / "linesearch.csv")
        test = read_metrics(run_dir).query("split == 'test' and metric == 'acc'").sort_values("epoch")
        model = spec["model"]
        df.insert(0, "run_id", rid)
        df["n_hl"], df["width"] = model["n_hl"], model["width"]
        df["warmup_epochs"], df["warmup_test_acc"] = int(test["epoch"].iloc[-1]), float(test["value"].iloc[-1])
        df["threshold"] = spec["hparams"].get("stop_at_test_acc")
        for rule in ("np", "sgd"):  # per-run summaries, for the claims (spec §4 "linesearch")
            for key, value in summarise(*df[df["rule"] == rule][["step_size", "delta_loss"]].to_numpy().T).items():
                df[f"{rule}_{key}"] = value
        frames.append(df)
    return pd.concat(frames, ignore_index=True)


def linesearch_plot(table: pd.DataFrame, figure: Mapping) -> plt.Figure:
    """Mean ΔL after one step vs step size (log x, symlog y): NP solid, SGD dashed; panels = the
    main network (one hidden layer of 500, if in the grid), the width family (one hidden layer)
    and the depth family (two or more hidden layers)."""
    panels = []
    main = table[(table["n_hl"] == 1) & (table["width"] == 500)]
    if len(main):
        panels.append(("one hidden layer of 500", main, None))
    panels.append(("width family (1 hidden layer)", table[table["n_hl"] == 1], "width"))
    panels.append(("depth family", table[table["n_hl"] >= 2], "n_hl"))
    panels = [p for p in panels if len(p[1])]
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4), squeeze=False)
    for ax, (title, sub, factor) in zip(axes[0], panels):
        levels = _levels(sub[factor]) if factor else [None]
        colors = plt.cm.viridis(np.linspace(0.0, 0.85, len(levels)))
        for level, color in zip(levels, colors):
            part = sub if level is None else sub[sub[factor] == level]
            for rule, ls in (("np", "-"), ("sgd", "--")):
                curve = part[part["rule"] == rule].sort_values("step_size")
                label = f"{rule}" + ("" if level is None else f" {factor} {level}")
                ax.plot(curve["step_size"], curve["delta_loss"], ls=ls, color=color, label=label)
        ax.axhline(0.0, color="0.5", lw=0.7)
        ax.set_xscale("log")
        ax.set_yscale("symlog", linthresh=1e-5)
        ax.set_xlabel("step size")
        ax.set_ylabel("mean ΔMSE after one step")
        ax.set_title(title, fontsize=9)
        ax.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    return stamp(fig, figure)


def window_mean(curve: np.ndarray, budget: int, window: int = 5) -> float:
    """Mean test accuracy over the ``window`` evaluations ending at epoch ``budget`` (epochs
    budget−4..budget, epoch 0 included when the budget is shorter); NaN if the run ended earlier."""
    curve = np.asarray(curve, np.float64)
    if budget >= len(curve):
        return float("nan")
    return float(np.mean(curve[max(0, budget - window + 1): budget + 1]))


def budget_gaps(curves: Mapping[tuple, np.ndarray], budgets, reference_rule: str = "sgd") -> pd.DataFrame:
    """The performance gap per (rule, dataset, budget) (spec §5, project definition [inferred]).

    ``curves[(rule, dataset, lr)]`` = test accuracy after each epoch (index 0 = before training).
    A(rule, dataset, b) = max over learning rates of ``window_mean(curve, b)``;
    gap = A(reference_rule, dataset, largest budget) − A(rule, dataset, b). Runs that diverged
    before b (NaN) do not count; a budget no run reached gives NaN.
    """
    budgets = sorted(budgets)
    rows = []
    keys = sorted({(rule, ds) for rule, ds, _ in curves})
    best = {}
    for rule, ds in keys:
        for b in budgets:
            values = [window_mean(c, b) for (r, d, _), c in curves.items() if (r, d) == (rule, ds)]
            values = [v for v in values if np.isfinite(v)]
            best[(rule, ds, b)] = max(values) if values else float("nan")
    for rule, ds in keys:
        ref = best.get((reference_rule, ds, budgets[-1]), float("nan"))
        for b in budgets:
            rows.append({"rule": rule, "dataset": ds, "budget": b, "best_acc": best[(rule, ds, b)],
                         "reference_acc": ref, "gap": ref - best[(rule, ds, b)]})
    return pd.DataFrame(rows)


def budget_gap_table(figure: Mapping, results_dir) -> pd.DataFrame:
    """Gap vs epoch budget from runs trained to the largest budget: a budget b is the first b
    epochs of the same run (constant learning rate, fixed data order: nothing depends on the
    total). Budgets = ``plot.budgets`` up to the runs' epoch count."""
    curves, caps = {}, []
    for rid, spec in figure["runs"].items():
        metrics = read_metrics(Path(results_dir) / figure["paper"] / "runs" / rid)
        test = metrics.query("split == 'test' and metric == 'acc'").sort_values("epoch")["value"].to_numpy()
        curves[(spec["rule"], spec["dataset"], spec["hparams"]["lr"])] = test
        caps.append(spec["epochs"])
    budgets = [b for b in figure["plot"].get("budgets", [max(caps)]) if b <= max(caps)]
    table = budget_gaps(curves, budgets)
    table.insert(0, "run_id", [f"{r}-{d}-b{b}" for r, d, b in zip(table["rule"], table["dataset"], table["budget"])])
    table["panel"] = "FC"
    table["status"] = "ok"
    return table


def budget_gap_plot(table: pd.DataFrame, figure: Mapping) -> plt.Figure:
    """Gap (points) vs epoch budget (log x): colour = dataset, marker/line style = rule."""
    fig, ax = plt.subplots(figsize=(6, 4))
    datasets = _levels(table["dataset"])
    colors = dict(zip(datasets, plt.cm.tab10(np.arange(len(datasets)))))
    for (rule, ds), sub in table.groupby(["rule", "dataset"]):
        sub = sub.sort_values("budget")
        ax.plot(sub["budget"], sub["gap"], marker="o" if rule == "np" else "s", ls="-" if rule == "np" else "--",
                color=colors[ds], label=f"{rule} {ds}")
    ax.axhline(0.0, color="0.5", lw=0.7)
    ax.set_xscale("log")
    ax.set_xlabel("epoch budget")
    ax.set_ylabel("gap to SGD's best at the largest budget (points)")
    ax.set_title("fully connected", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return stamp(fig, figure)
