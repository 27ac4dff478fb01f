"""Arena tables and figures: the sweep, the choice of learning rate, the leaderboard, curves and cost.

Protocol (papers/arena/README.md): every rule trains at every learning rate of the grid with every
seed. Its learning rate is the one with the best validation accuracy after the last epoch, averaged
over seeds (a rate where a seed diverged counts that seed as 0 %; ties go to the smaller rate); the
test set is never looked at to choose. At that rate the leaderboard reports, over seeds:

- test accuracy after the last epoch, mean ± sd (sample sd; "n" seeds, diverged ones excluded);
- epochs to 90 %: the first epoch ≥ 1 at which the seed-mean test accuracy reaches 90 % of its final value;
- CPU and wall-clock seconds per epoch (``time_cpu_s``, ``time_wall_s``: the process's time for the
  training epoch divided by the runs of the batch, mean over epochs ≥ 2 so JAX's compilation in epoch 1
  is left out; wall time depends on what else the machine ran, CPU time less so) and the peak memory of one
  training step of one run (``step_memory_mb`` of train.json, ``impls.arena.train``), each also divided
  by BP's in the same framework (``cpu_vs_bp``, ``wall_vs_bp``, ``memory_vs_bp``). ``cost_basis``
  says which time the cost figure plots: ``cpu`` when every run trained on the CPU, ``wall`` when any
  trained on an accelerator (there the CPU mostly waits for the device, and its seconds say nothing
  of the rule's cost);
- ``cos_early``, ``cos_mid``, ``cos_late``: the cosine between the rule's update and the exact gradient
  on the probe batch after epoch 1, E/2 and E (``impls.arena.train``);
- ``twin_gap``: for a rule with a twin in the other framework, this rule's test accuracy minus the twin's
  at the same learning rate (both start from identical weights and feedback and agree step by step
  to float32 rounding, tests/test_arena.py; over many epochs at a large rate rounding can grow);
- ``note``: why a rule has no row (diverged at every rate; on the conv task, a rule without conv code and
  why: ``NOT_ON_CONV``), or that the chosen rate is at the edge of the sweep (a wider sweep may do better).
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.transforms import Bbox  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from impls.arena.contenders import BASELINE, CONTENDERS, CONV_EXCLUDED, EXCLUDED, display_name, paper_of  # noqa: E402
from impls.arena.options import cosine_points  # noqa: E402
from impls.common.aggregate import figure_table  # noqa: E402
from impls.common.io import read_json  # noqa: E402
from impls.common.plotting import log_value_ticks, spread_text, stamp  # noqa: E402

#: panels of the learning-curve figure
FAMILIES = {
    "BP and fixed random feedback": ["backprop_jax", "backprop_torch", "fa_jax", "fa_torch", "dfa_jax",
                                     "dfa_torch", "drtp_jax", "drtp_torch"],
    "node perturbation": ["np", "np_indep_noise", "np_clean_pre", "np_batch_scalar"],
    "local losses and PEPITA": ["ll_cce", "ll_mse", "pepita"],
    "learned feedback (Two Routes)": ["wm", "ia", "sa", "aa", "kp", "kp_equal_leak"],
}


#: the note of a leaderboard row for a rule that has no conv code (conv task only), before the reason
NOT_ON_CONV = "no conv code: "

# ----------------------------------------------------------------------------- tables

def runs_table(figure: Mapping, results_dir) -> pd.DataFrame:
    """The generic tidy table (run, epoch, split, metric) plus each run's peak memory and framework."""
    table = figure_table(figure, results_dir)
    runs = Path(results_dir) / figure["paper"] / "runs"
    memory = {rid: read_json(runs / rid / "train.json").get("step_memory_mb") for rid in figure["runs"]}
    table["step_memory_mb"] = table["run_id"].map(memory).astype(float)
    table["framework"] = table["rule"].map(lambda r: CONTENDERS[r].framework)
    table["epochs"] = table["run_id"].map({rid: spec["epochs"] for rid, spec in figure["runs"].items()})
    table["backend"] = table["run_id"].map({rid: _backend(runs / rid) for rid in figure["runs"]})
    return table


def _backend(run_dir: Path) -> str:
    """Where a run trained, as its final.json provenance says (JAX: cpu, gpu, tpu; PyTorch: cpu, cuda)."""
    final = run_dir / "final.json"
    device = (read_json(final).get("provenance") or {}).get("device") or {} if final.exists() else {}
    return str(device.get("backend", "cpu"))


def _series(table: pd.DataFrame, split: str, metric: str) -> pd.DataFrame:
    return table[(table["split"] == split) & (table["metric"] == metric)]


def _after_compilation(per_epoch: pd.Series) -> pd.Series:
    """A per-epoch time series without epoch 1 (where JAX compiles), unless that is all there is."""
    return per_epoch[per_epoch.index >= 2] if (per_epoch.index >= 2).any() else per_epoch


def per_run(table: pd.DataFrame) -> pd.DataFrame:
    """One row per run: rule, lr, seed, status, final validation and test accuracy, CPU s/epoch, memory,
    and the three cosines."""
    last = table.groupby("run_id")["epochs"].first()
    rows = []
    for rid, run in table.groupby("run_id", sort=False):
        epochs, first = int(last[rid]), run.iloc[0]
        at = lambda split, metric, e: _series(run, split, metric).set_index("epoch")["value"].get(e, np.nan)  # noqa: E731
        cpu, wall = (_after_compilation(_series(run, "time", m).set_index("epoch")["value"]) for m in ("cpu_s", "wall_s"))
        ok = first["status"] == "ok"
        early, mid, late = cosine_points(epochs)
        rows.append({"run_id": rid, "rule": first["rule"], "lr": float(first["lr"]), "seed": int(first["seed"]),
                     "framework": first["framework"], "status": first["status"], "epochs": epochs,
                     "val_acc": at("val", "acc", epochs) if ok else np.nan,
                     "test_acc": at("test", "acc", epochs) if ok else np.nan,
                     "cpu_s_per_epoch": float(cpu.mean()) if len(cpu) else np.nan,
                     "wall_s_per_epoch": float(wall.mean()) if len(wall) else np.nan,
                     "step_memory_mb": float(first["step_memory_mb"]),
                     "cos_early": at("probe", "cos_bp", early), "cos_mid": at("probe", "cos_bp", mid),
                     "cos_late": at("probe", "cos_bp", late) if ok else np.nan})
    return pd.DataFrame(rows)


def sweep_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Per rule and lr: validation accuracy (diverged seeds as 0 %) and test accuracy over seeds, and
    ``chosen``: the lr with the best mean validation accuracy (ties: the smaller lr)."""
    runs = runs.assign(val_for_choice=runs["val_acc"].fillna(0.0))
    out = runs.groupby(["rule", "lr"], sort=True).agg(
        val_mean=("val_for_choice", "mean"), val_sd=("val_acc", "std"), test_mean=("test_acc", "mean"),
        test_sd=("test_acc", "std"), seeds=("seed", "size"),
        diverged=("status", lambda s: int((s == "diverged").sum()))).reset_index()
    out["chosen"] = False
    for rule, rows in out.groupby("rule"):
        finished = rows[rows["diverged"] < rows["seeds"]]
        if len(finished):
            best = finished.sort_values(["val_mean", "lr"], ascending=[False, True]).index[0]
            out.loc[best, "chosen"] = True
    out.insert(1, "name", out["rule"].map(display_name))
    return out


def _epochs_to_90(table: pd.DataFrame, run_ids) -> float:
    test = _series(table[table["run_id"].isin(run_ids)], "test", "acc")
    curve = test.groupby("epoch")["value"].mean().sort_index()
    if curve.empty or not np.isfinite(curve.iloc[-1]):
        return np.nan
    reached = curve[(curve.index >= 1) & (curve >= 0.9 * curve.iloc[-1])]
    return float(reached.index[0]) if len(reached) else np.nan


def leaderboard_table(table: pd.DataFrame, without: Mapping[str, str] | None = None) -> pd.DataFrame:
    """The leaderboard (module docstring) from the tidy ``runs_table``: one row per rule, best first; then a
    row for each arena id in ``without`` (id -> why it did not run), its note ``NOT_ON_CONV`` + the reason."""
    runs = per_run(table)
    sweep = sweep_table(runs)
    rows = []
    for rule in sorted(set(runs["rule"]), key=list(CONTENDERS).index):
        chosen = sweep[(sweep["rule"] == rule) & sweep["chosen"]]
        row = {"rule": rule, "name": display_name(rule), "paper": paper_of(rule), "framework": CONTENDERS[rule].framework}
        if chosen.empty:
            rows.append({**row, "lr": np.nan, "note": "diverged at every learning rate"})
            continue
        lr = float(chosen["lr"].iloc[0])
        grid = sorted(set(runs.loc[runs["rule"] == rule, "lr"]))
        edge = (f"the chosen lr is the {'largest' if lr == grid[-1] else 'smallest'} of the sweep: a wider "
                f"sweep may do better") if len(grid) > 1 and lr in (grid[0], grid[-1]) else ""
        at = runs[(runs["rule"] == rule) & (runs["lr"] == lr)]
        done = at[at["status"] == "ok"]
        row.update(lr=lr, val_acc=float(chosen["val_mean"].iloc[0]), test_acc=float(done["test_acc"].mean()),
                   test_sd=float(done["test_acc"].std()), seeds=len(done), diverged_seeds=int(len(at) - len(done)),
                   epochs_to_90=_epochs_to_90(table, done["run_id"]),
                   cpu_s_per_epoch=float(at["cpu_s_per_epoch"].mean()), wall_s_per_epoch=float(at["wall_s_per_epoch"].mean()),
                   step_memory_mb=float(at["step_memory_mb"].mean()),
                   cos_early=float(at["cos_early"].mean()), cos_mid=float(at["cos_mid"].mean()),
                   cos_late=float(done["cos_late"].mean()), note=edge)
        twin = CONTENDERS[rule].twin
        if twin:
            other = runs[(runs["rule"] == twin) & (runs["lr"] == lr) & (runs["status"] == "ok")]
            row["twin_gap"] = row["test_acc"] - float(other["test_acc"].mean()) if len(other) else np.nan
        rows.append(row)
    rows += [{"rule": rule, "name": display_name(rule), "paper": paper_of(rule), "framework": CONTENDERS[rule].framework,
              "lr": np.nan, "note": NOT_ON_CONV + reason} for rule, reason in (without or {}).items()]
    board = pd.DataFrame(rows)
    for column, per in (("cpu_vs_bp", "cpu_s_per_epoch"), ("wall_vs_bp", "wall_s_per_epoch"),
                        ("memory_vs_bp", "step_memory_mb")):
        base = {fw: board.loc[board["rule"] == ref, per] for fw, ref in BASELINE.items()}
        board[column] = [row[per] / float(base[row["framework"]].iloc[0])
                         if len(base[row["framework"]]) and float(base[row["framework"]].iloc[0]) > 0 else np.nan
                         for _, row in board.iterrows()]
    board["cost_basis"] = "cpu" if set(table["backend"]) <= {"cpu"} else "wall"
    order = board["test_acc"].fillna(-1.0).sort_values(ascending=False).index
    columns = ["rule", "name", "paper", "framework", "lr", "val_acc", "test_acc", "test_sd", "seeds", "diverged_seeds",
               "epochs_to_90", "cpu_s_per_epoch", "cpu_vs_bp", "wall_s_per_epoch", "wall_vs_bp", "cost_basis",
               "step_memory_mb", "memory_vs_bp", "cos_early", "cos_mid", "cos_late", "twin_gap", "note"]
    return board.loc[order].reindex(columns=columns).reset_index(drop=True)


# ----------------------------------------------------------------------------- aggregate hooks (paper.yaml)

def leaderboard(figure: Mapping, results_dir) -> pd.DataFrame:
    """``aggregate`` of tab_arena_leaderboard / fig_arena_cost / tab_arena_conv: the leaderboard, one row per
    rule (on the conv task, then the rules without conv code, with the reason)."""
    on_conv = any((spec.get("model") or {}).get("arch") == "conv" for spec in figure["runs"].values())
    return leaderboard_table(runs_table(figure, results_dir), CONV_EXCLUDED if on_conv else None)


def sweep(figure: Mapping, results_dir) -> pd.DataFrame:
    """``aggregate`` of fig_arena_sweep: per rule and learning rate, the sweep and the choice."""
    return sweep_table(per_run(runs_table(figure, results_dir)))


def curves(figure: Mapping, results_dir) -> pd.DataFrame:
    """``aggregate`` of fig_arena_curves: test accuracy per epoch and run at each rule's chosen lr."""
    table = runs_table(figure, results_dir)
    chosen = sweep_table(per_run(table))
    chosen = chosen[chosen["chosen"]][["rule", "lr"]]
    test = _series(table, "test", "acc").merge(chosen, on=["rule", "lr"])
    test = test[test["status"] == "ok"]
    return test[["rule", "lr", "seed", "run_id", "epoch", "value"]].rename(columns={"value": "test_acc"}).assign(
        name=lambda d: d["rule"].map(display_name))


# ----------------------------------------------------------------------------- figures

def _fmt(value, spec: str, missing: str = "—") -> str:
    return missing if value is None or not np.isfinite(value) else format(value, spec)


def leaderboard_figure(table: pd.DataFrame, figure: Mapping) -> plt.Figure:
    """The leaderboard as a drawn table (its HTML twin is written by the workflow's table rule)."""
    wall = "cost_basis" in table and (table["cost_basis"] == "wall").any()   # trained on an accelerator
    first, second = ("wall", "CPU") if wall else ("CPU", "wall")
    header = ["rule", "paper", "lr (†: sweep's edge)", "test acc. (%)", "epochs to 90 %", f"{first} ms/epoch (× BP)",
              "step memory (× BP)", "cos early / mid / late", "twin gap"]
    not_on_conv = table["note"].astype(str).str.startswith(NOT_ON_CONV)
    cells = []
    for _, r in table[~not_on_conv].iterrows():
        if not np.isfinite(r["lr"]):
            cells.append([r["name"], r["paper"], "—", r["note"], "", "", "", "", ""])
            continue
        acc = spread_text(r["test_acc"], r["test_sd"], int(r["seeds"]), ".1f", ".1f")
        if r["diverged_seeds"]:
            acc += f" [{int(r['diverged_seeds'])} div]"
        edge = " †" if isinstance(r["note"], str) and r["note"].startswith("the chosen lr") else ""
        cells.append([r["name"], r["paper"], f"{r['lr']:g}{edge}", acc, _fmt(r["epochs_to_90"], ".0f"),
                      f"{_fmt(1000 * r[f'{first.lower()}_s_per_epoch'], '.3g')} ({_fmt(r[f'{first.lower()}_vs_bp'], '.2f')}; "
                      f"{second} {_fmt(r[f'{second.lower()}_vs_bp'], '.2f')})",
                      f"{_fmt(r['step_memory_mb'], '.3g')} MB ({_fmt(r['memory_vs_bp'], '.2f')})",
                      " / ".join(_fmt(r[c], ".2f") for c in ("cos_early", "cos_mid", "cos_late")),
                      _fmt(r["twin_gap"], "+.2f", "")])
    if not_on_conv.any():   # the conv task: the arena's rules that have no conv code
        excluded = [[r["name"], r["paper"], _wrap(r["note"][len(NOT_ON_CONV):])] for _, r in table[not_on_conv].iterrows()]
        out_header = "arena rule without conv code"
    else:
        excluded = [[key.split(".", 1)[1], key.split(".", 1)[0], _wrap(reason)] for key, reason in EXCLUDED.items()]
        out_header = "registered rule not in the arena"
    heights = [len(cells) + 1, 1.7 * len(excluded) + 1]   # table rows, the wrapped reasons taller
    height = 0.24 * sum(heights) + 1.0
    fig, (ax, ax_out) = plt.subplots(2, 1, figsize=(18, height),
                                     gridspec_kw={"height_ratios": heights, "hspace": 0.06})
    fig.subplots_adjust(left=0.01, right=0.99, top=1 - 0.45 / height, bottom=0.35 / height)   # room for title and footer
    for axis, rows, labels, sizes, align in ((ax, cells, header, None, "right"),
                                             (ax_out, excluded, [out_header, "paper", "why"], [0.14, 0.08, 0.78], "left")):
        axis.axis("off")
        widths = sizes or [0.14, 0.08, 0.08, 0.13, 0.06, 0.12, 0.13, 0.12, 0.06]
        drawn = axis.table(cellText=rows, colLabels=labels, bbox=[0, 0, 1, 1], colWidths=widths, cellLoc=align)
        drawn.auto_set_font_size(False)
        drawn.set_fontsize(8)
        if align == "left":   # a left-aligned cell starts its text a tenth of the cell's width in by default
            for cell in drawn.get_celld().values():
                cell.PAD = 0.02
    return stamp(fig, figure)


def _wrap(text: str, width: int = 140) -> str:
    import textwrap

    return "\n".join(textwrap.wrap(text, width))


def curves_figure(table: pd.DataFrame, figure: Mapping) -> plt.Figure:
    """Mean test accuracy per epoch (band: sd over seeds) of every rule at its chosen lr, by family."""
    families = [(title, [r for r in rules if r in set(table["rule"])]) for title, rules in FAMILIES.items()]
    families = [(t, rules) for t, rules in families if rules]
    fig, axes = plt.subplots(1, len(families), figsize=(4.6 * len(families), 4), sharey=True, squeeze=False)
    reference = table[table["rule"] == BASELINE["jax"]].groupby("epoch")["test_acc"].mean()
    for ax, (title, rules) in zip(axes[0], families):
        if len(reference) and BASELINE["jax"] not in rules:
            ax.plot(reference.index, reference.values, "k--", lw=1, label=f"{display_name(BASELINE['jax'])}")
        for rule in rules:
            sub = table[table["rule"] == rule].groupby("epoch")["test_acc"]
            mean, sd = sub.mean(), sub.std().fillna(0.0)
            lr = table.loc[table["rule"] == rule, "lr"].iloc[0]
            line, = ax.plot(mean.index, mean.values, marker=".", label=f"{display_name(rule)} (lr {lr:g})")
            ax.fill_between(mean.index, mean - sd, mean + sd, color=line.get_color(), alpha=0.15)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("epoch")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.legend(fontsize=7)
    axes[0][0].set_ylabel("test accuracy (%)")
    return stamp(fig, figure)


def cost_figure(table: pd.DataFrame, figure: Mapping) -> plt.Figure:
    """Test accuracy against time per epoch (CPU seconds, or wall-clock seconds for runs trained on an
    accelerator: ``cost_basis``) and against peak memory, both relative to BP."""
    board = table[np.isfinite(table["lr"].astype(float))]
    on_accelerator = "cost_basis" in board and (board["cost_basis"] == "wall").any()
    time_axis = (("wall_vs_bp", "wall-clock s per epoch ÷ BP's (same framework, on the accelerator)")
                 if on_accelerator else ("cpu_vs_bp", "CPU s per epoch ÷ BP's (same framework)"))
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8), sharey=True)
    panels = ((axes[0], *time_axis), (axes[1], "memory_vs_bp", "peak memory of a training step ÷ BP's (same framework)"))
    for ax, column, label in panels:
        for framework, marker in (("jax", "o"), ("torch", "s")):
            sub = board[board["framework"] == framework]
            ax.scatter(sub[column], sub["test_acc"], marker=marker, label="JAX" if framework == "jax" else "PyTorch")
        ax.axvline(1.0, color="grey", lw=0.8, ls=":")
        ax.set_xlabel(label)
        ax.legend(fontsize=8)
    for ax, column, _ in panels:   # names placed once both panels' points have set the shared y range
        ax.set_xlim(ax.get_xlim())
        ax.set_ylim(ax.get_ylim())
        points = board[np.isfinite(board[column].astype(float)) & np.isfinite(board["test_acc"].astype(float))]
        _labels_without_overlap(ax, points[column], points["test_acc"], points["name"])
    axes[0].set_ylabel("test accuracy (%) at the chosen lr")
    return stamp(fig, figure)


def _labels_without_overlap(ax, xs, ys, names, fontsize: int = 6) -> None:
    """Name each point beside it, right of it or else left of it. A name whose text would overlap one
    already placed (or a point), or reach past the panel's side, moves a line down or up at a time
    (0, -1, +1, -2, +2, ... lines, with a thin leader line back to its point) until it is clear; if none
    of 62 places is, it stays right of its point (every point keeps its name)."""
    ax.figure.canvas.draw()   # before a first draw, a text's window extent is a unit box: everything "overlaps"
    renderer = ax.figure.canvas.get_renderer()
    dots = [Bbox.from_bounds(*(ax.transData.transform((x, y)) - 3), 6, 6) for x, y in zip(xs, ys)]
    placed = []
    places = [(side, shift) for shift in [0] + [s for k in range(1, 16) for s in (-k, k)] for side in (1, -1)]
    for x, y, name in sorted(zip(xs, ys, names), key=lambda p: (-p[1], p[0])):
        for side, shift in places:
            text = ax.annotate(name, (x, y), xytext=(4 * side, 2 + 1.3 * fontsize * shift), textcoords="offset points",
                               ha="left" if side > 0 else "right", fontsize=fontsize,
                               arrowprops={"arrowstyle": "-", "lw": 0.4, "color": "0.6"} if shift else None)
            box = _text_box(text, renderer)
            inside = ax.bbox.x0 <= box.x0 and box.x1 <= ax.bbox.x1   # not cut off by the panel's edge
            if inside and not any(box.overlaps(other) for other in placed + dots):
                break
            text.remove()
        else:
            text = ax.annotate(name, (x, y), xytext=(4, 2), textcoords="offset points", fontsize=fontsize)
            box = _text_box(text, renderer)
        placed.append(box)


def _text_box(annotation, renderer):
    """The window extent of an annotation's text alone, not its leader line."""
    from matplotlib.text import Text

    annotation.update_positions(renderer)
    return Text.get_window_extent(annotation, renderer)


def sweep_figure(table: pd.DataFrame, figure: Mapping) -> plt.Figure:
    """Validation accuracy vs learning rate, one small panel per rule; the chosen rate ringed."""
    rules = [r for r in CONTENDERS if r in set(table["rule"])]
    cols = 7
    rows = -(-len(rules) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.3 * cols, 2.1 * rows + 0.6), sharex=True, sharey=True,
                             squeeze=False)
    for ax in axes.flat[len(rules):]:
        ax.axis("off")
    for ax, rule in zip(axes.flat, rules):
        sub = table[table["rule"] == rule].sort_values("lr")
        ax.errorbar(sub["lr"], sub["val_mean"], yerr=sub["val_sd"].fillna(0.0), marker="o", ms=3, lw=1)
        pick = sub[sub["chosen"]]
        ax.scatter(pick["lr"], pick["val_mean"], s=90, facecolors="none", edgecolors="red", zorder=5)
        bad = sub[sub["diverged"] > 0]
        if len(bad):
            ax.scatter(bad["lr"], [0.0] * len(bad), marker="x", color="black", zorder=5)
        ax.set_xscale("log")
        log_value_ticks(ax, "x", table["lr"], most=4)    # the swept rates, where a small panel has room
        ax.set_title(display_name(rule), fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in axes[-1]:
        ax.set_xlabel("learning rate", fontsize=8)
    for ax in axes[:, 0]:
        ax.set_ylabel("val. accuracy (%)", fontsize=8)
    return stamp(fig, figure)
