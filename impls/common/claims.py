"""The reproduction scorecard: every claim of every paper.yaml against what we measured.

Caller: workflow/scripts/scorecard.py (the ``scorecard`` rule) and tests.
Returns: one row per claim: paper, figure, label, claim, claim scale, paper value, tolerance,
provenance, ours, scale run, verdict. Verdicts:

- ``reproduced`` / ``not reproduced``: a confirmed claim at the scale that was run;
- ``unverified paper number``: measured, but the paper's number is not confirmed (spec tags);
- ``not run at this scale``: the claim is a target at another scale.

A *value* claim (paper scale) compares ``mean over seeds`` of a reduced metric of the selected
runs with the paper's number: reproduced when ``|ours − paper| ≤ tolerance``. A *qualitative*
claim (cpu scale: Fashion-MNIST cannot match MNIST numbers) names an explicit predicate:

- ``close_curves``  a, b, metric, tolerance: max over epochs of |mean_a(e) − mean_b(e)| ≤ tolerance
- ``close``         a, b, metric, tolerance: |mean_a − mean_b| ≤ tolerance (a reduced metric)
- ``increasing``    select, by, metric: the metric's mean rises strictly with ``by``
- ``below``         a, b, metric, margin: mean_a ≤ mean_b − margin
- ``drop_from_peak`` select, metric, min_drop: max over epochs − last value ≥ min_drop
- ``best_over_trend`` select, by, over, metric, trend: per level of ``by``, the best (max) over the
  levels of ``over`` (e.g. learning rates) of the metric's mean over seeds; ``trend: falls`` holds when
  these values never rise along ``by`` and the last is below the first, ``not_falls`` when the last
  is not below the first divided by ``factor`` (optional, default 1: a ratio the claim tolerates,
  e.g. one step of a log grid); a level whose runs all diverged counts as −inf
- ``largest_passing_trend`` select, by, over, metric, threshold, trend: per level of ``by``, the
  largest value of ``over`` whose metric's mean over seeds exceeds ``threshold`` (e.g. the largest
  learning rate still above 50 % accuracy; 0 when none does), with ``trend`` as above
- ``diverged``      select: every selected run ended diverged
- ``curve_at``      select, metric, epoch, min and/or max: the per-epoch mean of a tidy metric (e.g.
  weights_angle) at ``epoch`` lies within [min, max]
- ``columns_above`` select, a, b, margin: in every selected row column a exceeds column b by more
  than ``margin`` (e.g. an alignment score above its shuffled control at every width and layer)

A selection maps factor columns to a value, or to a list of values (any of them).
"""
from __future__ import annotations

import math
from typing import Any, Callable, Mapping

import numpy as np
import pandas as pd

from impls.common.aggregate import column_name

VERDICTS = ("reproduced", "not reproduced", "unverified paper number", "not run at this scale")
COLUMNS = ["paper", "figure", "label", "claim_id", "claim", "claim_scale", "paper_value", "tolerance",
           "provenance", "ours", "scale_run", "verdict"]


def _matches(series: pd.Series, value: Any) -> pd.Series:
    if isinstance(value, (list, tuple)):
        return np.logical_or.reduce([_matches(series, v) for v in value]) if value else series.isna() & False
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        # a factor that does not apply to every run holds text there (e.g. 'default'): never equal to a number
        return np.isclose(pd.to_numeric(series, errors="coerce"), float(value), rtol=1e-9, atol=0.0)
    return series.astype(str) == str(value)


def select(table: pd.DataFrame, where: Mapping[str, Any] | None) -> pd.DataFrame:
    """Rows whose factor columns equal ``where`` (dotted spec keys: ``hparams.lr`` -> ``lr``)."""
    mask = pd.Series(True, index=table.index)
    for key, value in (where or {}).items():
        col = column_name(key)
        if col not in table:
            raise KeyError(f"claim selects on '{key}', but the figure table has no column '{col}'")
        mask &= _matches(table[col], value)
    out = table[mask]
    if out.empty:
        raise LookupError(f"no runs match {dict(where or {})}")
    return out


def reduced(table: pd.DataFrame, where, metric: str) -> pd.Series:
    """One reduced value per run (e.g. final_test_acc); a diverged run counts as NaN."""
    return select(table, where).drop_duplicates("run_id")[metric].astype(float)


def curve(table: pd.DataFrame, where, metric: str) -> pd.Series:
    """Per-epoch mean over the selected runs of a tidy metric such as test_acc."""
    split, name = metric.split("_", 1)
    rows = select(table, where)
    rows = rows[(rows["split"] == split) & (rows["metric"] == name)]
    return rows.groupby("epoch")["value"].mean()


def _mean_std(values: pd.Series) -> str:
    if values.isna().any():
        return f"{int(values.isna().sum())} of {len(values)} runs diverged"
    if len(values) == 1:                     # one run: no spread to show
        return f"{values.mean():.2f} (n=1)"
    return f"{values.mean():.2f} ± {values.std(ddof=1):.2f} (n={len(values)})"


def value_claim(table, claim) -> tuple[str, bool]:
    values = reduced(table, claim.get("select"), claim["metric"])
    ok = not values.isna().any() and abs(values.mean() - float(claim["paper_value"])) <= float(claim["tolerance"])
    return _mean_std(values), bool(ok)


def close_curves(table, p) -> tuple[str, bool]:
    a, b = curve(table, p["a"], p["metric"]), curve(table, p["b"], p["metric"])
    gap = float((a - b).abs().max())
    return f"max |Δ| over epochs = {gap:.2f}", math.isfinite(gap) and gap <= p["tolerance"]


def close(table, p) -> tuple[str, bool]:
    a, b = reduced(table, p["a"], p["metric"]), reduced(table, p["b"], p["metric"])
    gap = abs(a.mean() - b.mean())
    return f"{a.mean():.2f} vs {b.mean():.2f} (|Δ| = {gap:.2f})", bool(gap <= p["tolerance"])


def increasing(table, p) -> tuple[str, bool]:
    runs = select(table, p.get("select")).drop_duplicates("run_id")
    means = runs.groupby(column_name(p["by"]))[p["metric"]].mean().sort_index()
    text = ", ".join(f"{v:.3g}" for v in means)
    return f"{text} (by {column_name(p['by'])})", bool(means.notna().all() and (np.diff(means.to_numpy()) > 0).all())


def below(table, p) -> tuple[str, bool]:
    a, b = reduced(table, p["a"], p["metric"]), reduced(table, p["b"], p["metric"])
    a_mean = a.mean() if not a.isna().any() else -math.inf  # a diverged run is below anything
    return f"{a.mean():.2f} vs {b.mean():.2f}", bool(a_mean <= b.mean() - p["margin"])


def drop_from_peak(table, p) -> tuple[str, bool]:
    c = curve(table, p["select"], p["metric"])
    drop = float(c.max() - c.iloc[-1])
    return f"peak {c.max():.1f} (epoch {int(c.idxmax())}), last {c.iloc[-1]:.1f}: drop {drop:.1f}", drop >= p["min_drop"]


def _trend_holds(values: np.ndarray, trend: str, factor: float = 1.0) -> bool:
    if trend == "falls":
        return bool(len(values) > 1 and (np.diff(values) <= 0).all() and values[-1] < values[0])
    if trend == "not_falls":
        return bool(len(values) > 1 and values[-1] >= values[0] / factor)
    raise KeyError(f"predicate key 'trend' is {trend!r}; allowed: 'falls', 'not_falls'")


def _per_level(table, p) -> tuple[pd.DataFrame, str, str]:
    """Mean over seeds of the metric, indexed by (by, over); diverged runs (NaN) count as −inf."""
    runs = select(table, p.get("select")).drop_duplicates("run_id")
    by, over = column_name(p["by"]), column_name(p["over"])
    values = runs[p["metric"]].astype(float).fillna(-math.inf)
    return values.groupby([runs[by], runs[over]]).mean().rename("value").reset_index(), by, over


def best_over_trend(table, p) -> tuple[str, bool]:
    means, by, over = _per_level(table, p)
    best = means.groupby(by)["value"].max().sort_index()
    at = means.loc[means.groupby(by)["value"].idxmax()].set_index(by)[over]
    text = ", ".join(f"{level}: {v:.1f} @ {at[level]:g}" for level, v in best.items())
    return (f"best {p['metric']} over {over} by {by}: {text}",
            _trend_holds(best.to_numpy(), p["trend"], float(p.get("factor", 1.0))))


def largest_passing_trend(table, p) -> tuple[str, bool]:
    means, by, over = _per_level(table, p)
    passing = means[means["value"] > float(p["threshold"])]
    largest = passing.groupby(by)[over].max().reindex(sorted(means[by].unique())).fillna(0.0)
    text = ", ".join(f"{level}: {v:g}" for level, v in largest.items())
    return (f"largest {over} with {p['metric']} > {p['threshold']} by {by}: {text}",
            _trend_holds(largest.to_numpy(dtype=float), p["trend"], float(p.get("factor", 1.0))))


def diverged(table, p) -> tuple[str, bool]:
    runs = select(table, p["select"]).drop_duplicates("run_id")
    n = int((runs["status"] == "diverged").sum())
    return f"{n} of {len(runs)} runs diverged", bool(n == len(runs))


def curve_at(table, p) -> tuple[str, bool]:
    c = curve(table, p["select"], p["metric"])
    if p["epoch"] not in c.index:
        raise LookupError(f"{p['metric']} has no value at epoch {p['epoch']} (epochs {c.index.min()}-{c.index.max()})")
    v = float(c.loc[p["epoch"]])
    ok = math.isfinite(v) and v >= float(p.get("min", -math.inf)) and v <= float(p.get("max", math.inf))
    return f"{p['metric']} at epoch {p['epoch']}: {v:.2f}", ok


def columns_above(table, p) -> tuple[str, bool]:
    rows = select(table, p.get("select"))
    gap = rows[p["a"]].astype(float) - rows[p["b"]].astype(float)
    return (f"min {p['a']} − {p['b']} = {gap.min():.3f} over {len(rows)} rows",
            bool(gap.notna().all() and (gap > float(p["margin"])).all()))


PREDICATES: dict[str, Callable[[pd.DataFrame, Mapping], tuple[str, bool]]] = {
    "close_curves": close_curves, "close": close, "increasing": increasing, "below": below,
    "drop_from_peak": drop_from_peak, "best_over_trend": best_over_trend,
    "largest_passing_trend": largest_passing_trend, "diverged": diverged, "columns_above": columns_above,
    "curve_at": curve_at,
}


def evaluate_claim(claim: Mapping, table: pd.DataFrame | None, scale: str) -> tuple[str, str]:
    """(ours, verdict) of one claim; ``table`` is its figure's tidy table at ``scale`` (or None)."""
    if claim.get("scale", "paper") != scale or table is None:
        return "", "not run at this scale"
    predicate = claim.get("predicate")
    try:
        ours, ok = PREDICATES[predicate["kind"]](table, predicate) if predicate else value_claim(table, claim)
    except (KeyError, LookupError) as err:
        return f"cannot evaluate: {err}", "not reproduced"
    if not claim["confirmed"]:
        return ours, "unverified paper number"
    return ours, "reproduced" if ok else "not reproduced"


def scorecard(papers: Mapping[str, Mapping], labels: Mapping[str, str], scale: str,
              tables: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """Rows for every claim of every paper (``papers``: paper id -> paper.yaml document)."""
    rows = []
    for paper, doc in papers.items():
        for claim in doc.get("claims", []):
            ours, verdict = evaluate_claim(claim, tables.get(claim["figure"]), scale)
            rows.append({
                "paper": paper, "figure": claim["figure"], "label": labels.get(claim["figure"], ""),
                "claim_id": claim["id"], "claim": claim["claim"], "claim_scale": claim.get("scale", "paper"),
                "paper_value": claim["paper_value"], "tolerance": claim.get("tolerance", ""),
                "provenance": claim["provenance"], "ours": ours, "scale_run": scale, "verdict": verdict})
    return pd.DataFrame(rows, columns=COLUMNS)


#: verdict -> colour of the scorecard's bars and cells (green, red, yellow, grey)
VERDICT_COLOURS = {"reproduced": "#66bb6a", "not reproduced": "#ef5350", "unverified paper number": "#fdd835",
                   "not run at this scale": "#bdbdbd"}


def verdict_counts(card: pd.DataFrame) -> pd.DataFrame:
    """Claims per (paper, claim scale) and verdict: one row per pair, one column per verdict."""
    counts = card.groupby(["paper", "claim_scale", "verdict"], sort=False).size().unstack("verdict", fill_value=0)
    return counts.reindex(columns=list(VERDICTS), fill_value=0)


def render_summary_png(card: pd.DataFrame, path) -> None:
    """The scorecard at a glance: per paper and claim scale, a horizontal bar stacked by verdict
    (the rows themselves are in scorecard.html and scorecard.csv)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    from impls.common.plotting import save_atomically

    counts = verdict_counts(card).iloc[::-1]          # first paper on top
    labels = [f"{paper} · {scale}" for paper, scale in counts.index]
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(counts) + 1.6))
    left = np.zeros(len(counts))
    for verdict in VERDICTS:
        n = counts[verdict].to_numpy()
        bars = ax.barh(labels, n, left=left, color=VERDICT_COLOURS[verdict], label=verdict, edgecolor="white")
        ax.bar_label(bars, labels=[str(k) if k else "" for k in n], label_type="center", fontsize=8)
        left += n
    ax.set_xlabel("claims")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.spines[["top", "right"]].set_visible(False)
    scale = card["scale_run"].iloc[0] if len(card) else "?"
    total = card["verdict"].value_counts()
    ax.set_title(f"Reproduction scorecard, run at scale {scale}: "
                 f"{total.get('reproduced', 0)} of {len(card)} claims reproduced", fontsize=10)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    save_atomically(fig, path)
    plt.close(fig)
