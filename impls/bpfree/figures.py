"""bpfree tables and paper-only plots (named in papers/bpfree/paper.yaml).

Aggregators ``(figure, results_dir) -> DataFrame`` (caller: impls.common.aggregate):

- :func:`tidy`: the generic tidy table, with list-valued factors written as text (hidden [500]*5 ->
  ``500x5``), per-layer metric names split into ``metric`` + ``layer`` (``bpcosine_l3`` -> bpcosine,
  l3), ``conv_trained`` of an MLP as "—" (not applicable) and per-run reductions measured from the
  metrics: ``final_test_error`` / ``final_train_error`` (last epoch), ``last10_test_error`` (mean
  over the last 10 evaluations, Frenkel's tables), ``best_train_error`` and ``best_test_error``
  (best epoch ≥ 1, the keras-tuner trial objective), ``final_test_loss``. Diverged runs keep their
  rows; their final_* are NaN (best_* use the epochs before divergence).
- :func:`best_lr_table`: ``tidy`` restricted, per configuration, to the learning rate with the
  lowest mean ``final_test_error`` over seeds (diverged lrs lose; a configuration whose lrs all
  diverged keeps the lr whose runs lasted longest, so that it is one row of the table too), plus
  ``diverged_lrs``: how many of its lrs diverged.
- :func:`reconstruction_table`: ``tidy`` plus the saved test images and reconstructions
  (split ``sample``; metric ``input`` or ``reconstruction``; ``pixel``, ``sample`` columns).

Plots ``(table, figure) -> Figure`` (caller: impls.common.plotting): :func:`trackers_figure`,
:func:`reconstruction_figure`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping

import numpy as np
import pandas as pd

from impls.bpfree import options
from impls.common import display
from impls.common.aggregate import column_name
from impls.common.io import load_npz, read_json
from impls.common.metrics import read_metrics
from impls.common.specs import get_dotted

LAST_WINDOW = 10
#: the level of a factor that does not apply to a run (conv layers trained, for a net without conv layers)
NOT_APPLICABLE = "—"
#: spec keys written as columns of every bpfree table (defaults filled in)
DESCRIBED = ["rule", "seed", "dataset", "epochs", "hparams.lr", "hparams.optimizer", "hparams.adversarial_eps",
             "model.arch", *(f"model.{k}" for k in options.MODEL_DEFAULTS)]


def format_level(value):
    """Hashable, readable factor levels: [500, 500, 500] -> '500x3', [500, 1000] -> '500-1000';
    an empty string (an MLP's ``conv``) -> 'none' (a CSV round trip would make it NaN, which groupby drops)."""
    if isinstance(value, str) and not value:
        return "none"
    if isinstance(value, list):
        if value and all(isinstance(v, int) for v in value):
            return f"{value[0]}x{len(value)}" if len(set(value)) == 1 and len(value) > 1 else "-".join(map(str, value))
        return "+".join(map(str, value))
    return value


def _default(spec: Mapping, factor: str):
    value = get_dotted(spec, factor)
    if value is None and factor.startswith("model."):
        value = options.MODEL_DEFAULTS.get(factor.split(".", 1)[1])
    if value is None and factor.startswith("hparams."):
        value = options.HPARAM_DEFAULTS.get(factor.split(".", 1)[1])
    return value


def _level(spec: Mapping, factor: str):
    """The table level of ``factor`` for one run; ``model.conv_trained`` of an MLP is :data:`NOT_APPLICABLE`
    (its default, true, would read as "conv layers trained: yes" beside "conv layers: none")."""
    if factor == "model.conv_trained" and _default(spec, "model.arch") != "conv":
        return NOT_APPLICABLE
    return format_level(_default(spec, factor))


def _reductions(df: pd.DataFrame, status: str) -> dict:
    def series(split, metric):
        s = df[(df["split"] == split) & (df["metric"] == metric)].sort_values("epoch")
        return s[s["epoch"] >= 1]["value"].to_numpy()

    out = {}
    for split in ("train", "test"):
        err = series(split, "error")
        finite = err[np.isfinite(err)]
        ok = status == "ok" and len(err) > 0
        out[f"final_{split}_error"] = float(err[-1]) if ok else np.nan
        out[f"best_{split}_error"] = float(finite.min()) if len(finite) else np.nan
    test_err = series("test", "error")
    out["last10_test_error"] = float(test_err[-LAST_WINDOW:].mean()) if status == "ok" and len(test_err) else np.nan
    loss = series("test", "loss")
    out["final_test_loss"] = float(loss[-1]) if status == "ok" and len(loss) else np.nan
    return out


def tidy(figure: Mapping, results_dir: str | Path) -> pd.DataFrame:
    results_dir = Path(results_dir)
    frames = []
    for rid, spec in figure["runs"].items():
        run_dir = results_dir / figure["paper"] / "runs" / rid
        final = read_json(run_dir / "final.json")
        df = read_metrics(run_dir)
        parts = df["metric"].str.extract(r"^(?P<base>.+)_(?P<layer>l\d+|out)$")
        df["layer"] = parts["layer"]
        df["metric"] = parts["base"].fillna(df["metric"])
        df.insert(0, "run_id", rid)
        for factor in figure["factors"]:
            df[column_name(factor)] = _level(spec, factor)
        for factor in DESCRIBED:   # every table can group by these, grid factors or not
            if column_name(factor) not in df:
                df[column_name(factor)] = _level(spec, factor)
        df["status"] = final["status"]
        df["diverged_epoch"] = final.get("diverged_epoch")
        for key, value in _reductions(df, final["status"]).items():
            df[key] = value
        frames.append(df)
    return pd.concat(frames, ignore_index=True)


def longest_lasting_lr(runs: pd.DataFrame):
    """The learning rate of ``runs`` (one configuration whose every lr diverged) whose runs lasted the most
    epochs on average before they diverged; the smallest such lr on a tie."""
    lasted = runs.groupby("lr")["diverged_epoch"].mean()
    return lasted[lasted == lasted.max()].index.min()


def best_lr_table(figure: Mapping, results_dir: str | Path) -> pd.DataFrame:
    table = tidy(figure, results_dir)
    config = [column_name(f) for f in figure["factors"] if column_name(f) not in ("lr", "seed")]
    runs = table.drop_duplicates("run_id")
    keep = []
    for _, group in runs.groupby(config, dropna=False, sort=False):
        by_lr = group.groupby("lr")
        n_diverged = int(by_lr["status"].agg(lambda s: (s == "diverged").any()).sum())
        score = by_lr["final_test_error"].mean()
        best = longest_lasting_lr(group) if score.isna().all() else score.idxmin()
        chosen = group[group["lr"] == best]["run_id"]
        keep.append(pd.DataFrame({"run_id": chosen, "diverged_lrs": n_diverged}))
    kept = pd.concat(keep, ignore_index=True)
    return table.merge(kept, on="run_id")


def reconstruction_table(figure: Mapping, results_dir: str | Path) -> pd.DataFrame:
    table = tidy(figure, results_dir)
    runs = table.drop_duplicates("run_id")
    frames = [table]
    factors = [column_name(f) for f in figure["factors"]]
    first = True
    for _, run in runs.iterrows():
        path = Path(results_dir) / figure["paper"] / "runs" / run["run_id"] / "samples.npz"
        if not path.exists():
            continue
        arrays = load_npz(path)
        kinds = [("reconstruction", arrays["reconstruction"])] + ([("input", arrays["input"])] if first else [])
        first = False
        for kind, images in kinds:
            n, d = images.shape
            rows = pd.DataFrame({"run_id": run["run_id"], "epoch": -1, "split": "sample", "metric": kind,
                                 "sample": np.repeat(np.arange(n), d), "pixel": np.tile(np.arange(d), n),
                                 "value": images.reshape(-1)})
            for col in factors + ["status"]:
                rows[col] = run[col]
            frames.append(rows)
    return pd.concat(frames, ignore_index=True)


# ------------------------------------------------------------------------------- plots


def trackers_figure(table: pd.DataFrame, figure: Mapping):
    """Per-layer local loss, ‖ΔW_l‖ and ‖W_l‖ vs epoch: rows = tracker, columns = rule."""
    import seaborn as sns

    from impls.common.plotting import integer_ticks, plain_facet_titles, stamp

    wanted = {"localloss": "local loss ℓ_l/N", "gradnorm": "‖ΔW_l‖_F", "wnorm": "‖W_l‖_F"}
    data = table[(table["split"] == "train") & table["metric"].isin(list(wanted))].dropna(subset=["value"]).copy()
    data["tracker"] = data["metric"].map(wanted)
    data["rule"] = data["rule"].map(display.rule)
    rows = [v for k, v in wanted.items() if k in set(data["metric"])]
    grid = sns.relplot(data=data, kind="line", x="epoch", y="value", hue="layer", row="tracker", col="rule",
                       errorbar="sd", height=2.8, aspect=1.3, facet_kws={"sharey": False}, row_order=rows)
    plain_facet_titles(grid)
    # norms share a log scale along their row; local losses keep their own: each rule's ℓ_l is a different
    # quantity (DFA ⟨e, h_l B_l⟩ ≈ 0, DRTP ⟨y*, h_l B_l⟩, LL the local classifier's loss)
    for name, axes in zip(rows, grid.axes):
        if not name.startswith("local"):
            for ax in axes:
                ax.set_yscale("log")
                if ax is not axes[0]:
                    ax.sharey(axes[0])
            axes[0].set_autoscaley_on(True)
            axes[0].autoscale_view(scalex=False)   # the limits of the row's data, every panel's
    for ax in grid.axes.flat:
        integer_ticks(ax, "x")   # epochs
    return stamp(grid.figure, figure)


def _image_shape(d: int):
    side = int(round(np.sqrt(d)))
    if side * side == d:
        return (side, side)
    side = int(round(np.sqrt(d / 3)))
    return (side, side, 3)


def reconstruction_figure(table: pd.DataFrame, figure: Mapping):
    """Left: train/test MSE vs epoch per rule (and lr). Right: test images and reconstructions."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    from impls.common.plotting import stamp

    curves = table[(table["metric"] == "loss") & table["split"].isin(["train", "test"])].copy()
    curves["lr"] = curves["lr"].map(display.short_float)
    samples = table[table["split"] == "sample"]
    recon = samples[samples["metric"] == "reconstruction"]
    runs = recon.drop_duplicates("run_id")
    runs = runs.sort_values(["rule", "lr"]).groupby("rule", sort=True).head(1)
    n_img = int(samples["sample"].max()) + 1 if len(samples) else 0
    fig = plt.figure(figsize=(12, 4 + 0.2 * len(runs)))
    outer = fig.add_gridspec(1, 3, width_ratios=[1.3, 0.12, 1])   # the middle column: room for the row names
    left = outer[0].subgridspec(1, 2)
    for i, split in enumerate(("train", "test")):
        ax = fig.add_subplot(left[i])
        shown = curves[curves["split"] == split].assign(rule=lambda d: d["rule"].map(display.rule))
        sns.lineplot(data=shown, x="epoch", y="value", hue="rule", style="lr",
                     errorbar="sd", ax=ax, legend=(i == 1))
        ax.set_yscale("log")
        ax.set_ylabel(f"{split} MSE")
    if n_img:
        right = outer[2].subgridspec(len(runs) + 1, n_img, wspace=0.05, hspace=0.1)
        lo, hi = (-1.0, 1.0) if float(samples["value"].min()) < 0 else (0.0, 1.0)
        rows = [("input", samples[samples["metric"] == "input"])] + [
            (f"{display.rule(r.rule)}\n(lr {r.lr:g})", recon[recon["run_id"] == r.run_id]) for r in runs.itertuples()]
        for i, (name, rows_i) in enumerate(rows):
            for j in range(n_img):
                ax = fig.add_subplot(right[i, j])
                pix = rows_i[rows_i["sample"] == j].sort_values("pixel")["value"].to_numpy()
                img = np.clip((pix - lo) / (hi - lo), 0, 1).reshape(_image_shape(len(pix)))
                ax.imshow(img, cmap="gray" if img.ndim == 2 else None, vmin=0, vmax=1)
                ax.set_xticks([])
                ax.set_yticks([])
                if j == 0:
                    ax.set_ylabel(name, fontsize=7, rotation=0, ha="right")
    return stamp(fig, figure)
