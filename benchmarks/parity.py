"""Ours against the original code: the same curves from both sides over seeds, compared epoch by epoch.

Used by the ``bench_<paper>_original.py`` parity scripts. Each side gives, per seed, one value per
epoch (e.g. test accuracy in %); per epoch we report mean ± sd and n per side, the difference of
the means (ours − original), its standard error sqrt(sd_o²/n_o + sd_r²/n_r) and whether the
difference lies within 2 standard errors. With one seed on a side its sd is unknown, so no
standard error is given and the verdict says so (a parity claim needs ≥ 2 seeds per side; the
scripts default to 3).

    from benchmarks.parity import compare, markdown
    rows = compare({0: [81.2, 84.0], 1: [80.9, 84.3], 2: [81.5, 83.8]},
                   {0: [81.0, 84.1], 1: [81.4, 83.9], 2: [80.7, 84.2]})
    print(markdown(rows, "test acc %"))
"""
from __future__ import annotations

import math
from typing import Mapping, Sequence

Curves = Mapping[object, Sequence[float]]


def _mean_sd(values: Sequence[float]) -> tuple[float, float]:
    n = len(values)
    mean = sum(values) / n
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else math.nan
    return mean, sd


def compare(ours: Curves, original: Curves) -> list[dict]:
    """One row per epoch present on both sides (epochs counted from 1, in the order given)."""
    if not ours or not original:
        raise ValueError("compare needs at least one seed on each side")
    epochs = min(min(len(c) for c in ours.values()), min(len(c) for c in original.values()))
    rows = []
    for e in range(epochs):
        o = [float(c[e]) for c in ours.values()]
        r = [float(c[e]) for c in original.values()]
        (mo, so), (mr, sr) = _mean_sd(o), _mean_sd(r)
        se = math.sqrt(so ** 2 / len(o) + sr ** 2 / len(r))
        diff = mo - mr
        if math.isnan(se):
            verdict = "one seed on a side: no standard error"
        elif se == 0.0:
            verdict = "identical" if diff == 0.0 else "differs (no spread on either side)"
        else:
            verdict = "within 2 SE" if abs(diff) <= 2 * se else f"differs ({abs(diff) / se:.1f} SE)"
        rows.append({"epoch": e + 1, "ours_mean": mo, "ours_sd": so, "ours_n": len(o),
                     "original_mean": mr, "original_sd": sr, "original_n": len(r),
                     "diff": diff, "se": se, "verdict": verdict})
    return rows


def _pm(mean: float, sd: float, n: int) -> str:
    return f"{mean:.2f}" + ("" if math.isnan(sd) else f" ± {sd:.2f}") + f" (n={n})"


def markdown(rows: Sequence[Mapping], quantity: str) -> str:
    """The per-epoch comparison as a markdown table (``quantity`` names the compared value)."""
    lines = [f"| epoch | ours: {quantity} | original: {quantity} | ours − original | SE | verdict |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        se = "—" if math.isnan(r["se"]) else f"{r['se']:.2f}"
        lines.append(f"| {r['epoch']} | {_pm(r['ours_mean'], r['ours_sd'], r['ours_n'])} | "
                     f"{_pm(r['original_mean'], r['original_sd'], r['original_n'])} | {r['diff']:+.2f} | {se} | "
                     f"{r['verdict']} |")
    return "\n".join(lines)
