"""The nodepert paper's own aggregations and plots (paper.yaml ``aggregate:``/``plot.kind``).

Caller: the generic ``figure`` rule (impls.common.aggregate, then impls.common.plotting), via
``"impls.nodepert.figures:<function>"``. Plot functions take (tidy table, figure) and return a
matplotlib Figure; aggregate functions take (figure, results_dir) and return a DataFrame.

- ``sweep_with_boxes``: depth/width sweeps (paper figures F4/F5): final accuracy vs learning rate, one
  panel per rule and one curve per depth/width, plus the box-plot panel (box over the LR points
  of final_acc per depth/width × rule, points coloured by log10 lr).
- ``rule_boxes``: the Adam figure: box plot of final_acc per rule over its LR grid.
- ``crash_timing_table`` / ``crash_timing_plot``: paper figure F9, first-crash epoch vs learning rate,
  with the three classes (crash; no crash, drawn at the cap; no learning, drawn at 0).
- ``linesearch_table`` / ``linesearch_plot``: paper figure F6.
- ``budget_gap_table`` / ``budget_gap_plot``: the budget-gap figure, conv and FC panels.
- ``crash_dynamics_table`` / ``crash_dynamics_plot``: paper figure F8, the per-minibatch replay.
- ``appendix_plot``: the appendix sweeps, weight decay, linear networks and batch size.

Diverged runs (NaN loss) have no final accuracy: in the curve panels they are an ``x`` in the curve's
colour below the points (``plotting.mark_diverged_below``); they are left out of the boxes and counted in
the box panel's labels.
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
from impls.common import display  # noqa: E402
from impls.common.plotting import (diverged_handle, integer_ticks, log_value_ticks,  # noqa: E402
                                   mark_diverged_below, stamp)
from impls.nodepert import crash  # noqa: E402


def _runs(table: pd.DataFrame) -> pd.DataFrame:
    return table.drop_duplicates("run_id").copy()


def _levels(values) -> list:
    return sorted(pd.unique(values), key=lambda v: (isinstance(v, str), v))


def _factor_level(factor: str, level) -> str:
    """A legend entry for one level of a factor: "hidden layers 2", "width 64"."""
    return f"{display.factor(factor)} {display.level(factor, level)}"


def _legend(ax, diverged: bool, **kwargs) -> None:
    """The axes' legend, with one "diverged" entry when some run on it diverged."""
    handles, labels = ax.get_legend_handles_labels()
    keep = [(h, l) for h, l in zip(handles, labels) if l != "diverged"]
    if diverged:
        keep.append((diverged_handle(), "diverged"))
    if keep:
        ax.legend(*zip(*keep), **kwargs)


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
    bad_lrs, bad_colors = [], []
    for level, color in zip(levels, colors):
        part = sub if level is None else sub[sub[factor] == level]
        ok = part[part["status"] == "ok"].groupby(lr)[y].mean()
        ax.plot(ok.index, ok.values, marker="o", ms=3, color=color,
                label=None if level is None else _factor_level(factor, level))
        bad = part[part["status"] != "ok"]
        bad_lrs += list(bad[lr])
        bad_colors += [color] * len(bad)
    ax.set_xscale("log")
    mark_diverged_below(ax, bad_lrs, bad_colors, legend=False)   # an x in the curve's colour below the points
    log_value_ticks(ax, "x", sub[lr])
    ax.set_xlabel("learning rate")
    _legend(ax, bool((sub["status"] != "ok").any()), fontsize=7)


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
        ax.set_title(display.rule(rule))
        ax.set_ylabel(spec.get("ylabel", y))
    groups = [(f"{display.rule(rule)}, {_factor_level(hue, level)}", runs[(runs[col] == rule) & (runs[hue] == level)])
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
    _box_panel(left, runs, [(display.rule(r), runs[runs[by] == r]) for r in order], y, lr)
    left.set_ylabel(spec.get("ylabel", y))
    for r in order:
        sub = runs[(runs[by] == r) & (runs["status"] == "ok")].sort_values(lr)
        right.plot(sub[lr], sub[y], marker="o", ms=3, label=display.rule(r))
    right.set_xscale("log")
    log_value_ticks(right, "x", runs[lr])
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
        ax.scatter(sub[lr], sub["crash_plot_epoch"], marker=marker, color=color,
                   label=f"{cls.replace('_', ' ')} ({len(sub)})",
                   alpha=0.8)
    ax.axhline(table["epochs_cap"].max(), color="0.6", lw=0.8, ls="--")
    ax.set_xscale("log")
    log_value_ticks(ax, "x", table[lr])
    ax.set_xlabel(spec.get("xlabel", "learning rate"))
    ax.set_ylabel(spec.get("ylabel", "epoch of first crash"))
    integer_ticks(ax, "y")
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
        for rule in ("np", "sgd"):  # per-run summaries, for the line-search claims of paper.yaml
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
                label = display.rule(rule) + ("" if level is None else f", {_factor_level(factor, level)}")
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
    """The performance gap per (rule, dataset, budget) (this project's definition, papers/nodepert/README.md,
    "Metrics").

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


def _panel(spec: Mapping) -> str:
    from impls.nodepert.options import CONV_ARCHS

    return "conv" if spec["model"]["arch"] in CONV_ARCHS else "FC"


def budget_gap_table(figure: Mapping, results_dir) -> pd.DataFrame:
    """Gap vs epoch budget from runs trained to the largest budget, per panel (FC = MLP runs,
    conv = conv-net runs) and dataset: a budget b is the first b epochs of the same run (constant
    learning rate, fixed data order: nothing depends on the total). Budgets = ``plot.budgets`` up
    to the runs' epoch count; each panel's reference is SGD of that panel."""
    curves, caps = {}, {}
    for rid, spec in figure["runs"].items():
        metrics = read_metrics(Path(results_dir) / figure["paper"] / "runs" / rid)
        test = metrics.query("split == 'test' and metric == 'acc'").sort_values("epoch")["value"].to_numpy()
        panel = _panel(spec)
        curves.setdefault(panel, {})[(spec["rule"], spec["dataset"], spec["hparams"]["lr"])] = test
        caps[panel] = max(caps.get(panel, 0), spec["epochs"])
    tables = []
    for panel in sorted(curves, key=lambda p: p != "conv"):           # conv first, as the paper
        budgets = [b for b in figure["plot"].get("budgets", [caps[panel]]) if b <= caps[panel]]
        table = budget_gaps(curves[panel], budgets)
        table.insert(0, "run_id", [f"{panel}-{r}-{d}-b{b}" for r, d, b in
                                   zip(table["rule"], table["dataset"], table["budget"])])
        table.insert(1, "panel", panel)
        tables.append(table)
    table = pd.concat(tables, ignore_index=True)
    table["status"] = "ok"
    return table


def budget_gap_plot(table: pd.DataFrame, figure: Mapping) -> plt.Figure:
    """Gap (points) vs epoch budget (log x), one panel per network family (conv, FC):
    colour = dataset, marker/line style = rule."""
    panels = sorted(table["panel"].unique(), key=lambda p: p != "conv")
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4), squeeze=False)
    datasets = _levels(table["dataset"])
    colors = dict(zip(datasets, plt.cm.tab10(np.arange(len(datasets)))))
    titles = {"conv": "convolutional (conv-base)", "FC": "fully connected"}
    for ax, panel in zip(axes[0], panels):
        for (rule, ds), sub in table[table["panel"] == panel].groupby(["rule", "dataset"]):
            sub = sub.sort_values("budget")
            ax.plot(sub["budget"], sub["gap"], marker="o" if rule == "np" else "s", ls="-" if rule == "np" else "--",
                    color=colors[ds], label=f"{display.rule(rule)}, {display.DATASETS.get(ds, ds)}")
        ax.axhline(0.0, color="0.5", lw=0.7)
        ax.set_xscale("log")
        integer_ticks(ax, "x", table["budget"])
        ax.set_xlabel("epoch budget")
        ax.set_ylabel("gap to SGD's best at the largest budget (points)")
        ax.set_title(titles.get(panel, panel), fontsize=9)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return stamp(fig, figure)


def crash_dynamics_table(figure: Mapping, results_dir) -> pd.DataFrame:
    """One row per replayed update (runs/<id>/replay.csv, impls.nodepert.replay) of every run,
    with its learning rate, training crash class and epoch, ``replay_crash`` (the replay's own test
    accuracy falls more than 25 points below its running maximum) and ``plotted``: the run the
    figure shows -- the lowest learning rate whose replay crashes, else the lowest that crashed in
    training, else the lowest (which run the paper plots is not known; the replay can
    drift from training, README "crash dynamics, replay")."""
    frames, runs = [], []
    for rid, spec in figure["runs"].items():
        run_dir = Path(results_dir) / figure["paper"] / "runs" / rid
        verdict = crash.from_metrics(read_metrics(run_dir), spec["epochs"])
        df = pd.read_csv(run_dir / "replay.csv")
        acc = df["test_acc"].to_numpy()
        replay_crash = bool(acc.size and (acc < np.maximum.accumulate(acc) - crash.DROP).any())
        df.insert(0, "run_id", rid)
        df["lr"], df["seed"] = spec["hparams"]["lr"], spec["seed"]
        df["crash_class"], df["crash_epoch"], df["replay_crash"] = verdict["crash_class"], verdict["crash_epoch"], replay_crash
        frames.append(df)
        runs.append((not replay_crash, verdict["crash_class"] != "crash", spec["hparams"]["lr"], rid))
    table = pd.concat(frames, ignore_index=True)
    table["plotted"] = table["run_id"] == min(runs)[-1]
    table["status"] = "ok"
    return table


def crash_dynamics_plot(table: pd.DataFrame, figure: Mapping) -> plt.Figure:
    """Stacked against fractional epoch, for the plotted run: test accuracy; ‖W‖; ‖ΔW‖ (log) of
    NP, minibatch SGD and the true gradient; ΔMSE of each update on its minibatch."""
    run = table[table["plotted"]].sort_values("step")
    x = run["epoch_frac"]
    fig, axes = plt.subplots(4, 1, figsize=(7, 9), sharex=True)
    axes[0].plot(x, run["test_acc"], color="black")
    axes[0].set_ylabel("test accuracy (%)")
    axes[1].plot(x, run["w_norm"], color="tab:purple")
    axes[1].set_ylabel("‖W‖")
    for name, color in (("np", "tab:red"), ("sgd", "tab:blue"), ("true", "tab:green")):
        axes[2].plot(x, run[f"norm_{name}"], color=color, lw=0.8,
                     label={"np": "node perturbation", "sgd": "minibatch SGD", "true": "true gradient"}[name])
    axes[2].set_yscale("log")
    axes[2].set_ylabel("‖ΔW‖ (not × lr)")
    axes[2].legend(fontsize=7)
    axes[3].plot(x, run["delta_mse"], color="tab:orange", lw=0.8)
    axes[3].axhline(0.0, color="0.5", lw=0.7)
    axes[3].set_ylabel("ΔMSE of the NP step")
    axes[3].set_xlabel("epoch")
    crash_epoch = run["crash_epoch"].iloc[0]
    for ax in axes:
        if pd.notna(crash_epoch):
            ax.axvline(float(crash_epoch), color="0.4", ls=":", lw=0.8)
    status = f"first crash in training at epoch {int(crash_epoch)}" if pd.notna(crash_epoch) else "no crash in training"
    if "replay_crash" in run:
        status += "; the replay crashes" if run["replay_crash"].iloc[0] else "; the replay does not crash"
    axes[0].set_title(f"{display.rule('np')}, lr {run['lr'].iloc[0]:g}, seed {run['seed'].iloc[0]}: {status}", fontsize=9)
    fig.tight_layout()
    return stamp(fig, figure)


def appendix_plot(table: pd.DataFrame, figure: Mapping) -> plt.Figure:
    """Final accuracy vs learning rate, one panel per appendix sweep: weight decay (``*_wd``
    rules), linear networks (``activation`` linear) and batch size at an equal number of updates
    (the other ReLU np/sgd runs, one curve per batch size and rule; y = test accuracy after the
    last epoch, since a 1-epoch run has no 5-epoch window)."""
    runs = _runs(table)
    lr = "lr"
    sweeps = [("weight decay (not scaled by lr)", runs[runs["rule"].str.endswith("_wd")], "final_acc", ["rule"]),
              ("linear networks", runs[runs["activation"] == "linear"], "final_acc", ["rule"]),
              ("batch size, equal updates", runs[~runs["rule"].str.endswith("_wd") & (runs["activation"] != "linear")],
               "final_test_acc", ["rule", "batch_size"])]
    sweeps = [s for s in sweeps if len(s[1])]
    fig, axes = plt.subplots(1, len(sweeps), figsize=(5 * len(sweeps), 4), squeeze=False)
    for ax, (title, sub, y, keys) in zip(axes[0], sweeps):
        bad_lrs, bad_colors = [], []
        for key, part in sub.groupby(keys):
            key = key if isinstance(key, tuple) else (key,)
            ok = part[part["status"] == "ok"].sort_values(lr)
            (line,) = ax.plot(ok[lr], ok[y], marker="o", ms=3, ls="-" if key[0].startswith("np") else "--",
                              label=", ".join(_factor_level(k, v) if k != "rule" else display.rule(v)
                                              for k, v in zip(keys, key)))
            bad = part[part["status"] != "ok"]
            bad_lrs += list(bad[lr])
            bad_colors += [line.get_color()] * len(bad)
        ax.set_xscale("log")
        mark_diverged_below(ax, bad_lrs, bad_colors, legend=False)
        log_value_ticks(ax, "x", sub[lr])
        ax.set_xlabel("learning rate")
        ax.set_ylabel("final test accuracy (%)" if y == "final_acc" else "test accuracy after the last epoch (%)")
        ax.set_title(title, fontsize=9)
        _legend(ax, bool((sub["status"] != "ok").any()), fontsize=7)
    fig.tight_layout()
    return stamp(fig, figure)
