"""aggregate: the runs of one figure -> one tidy table (results/<paper>/<figure>.csv).

Caller: workflow/scripts/aggregate.py (the ``aggregate`` rule).
Returns/writes: one row per (run, epoch, split, metric) with the figure's factors as columns
(``hparams.lr`` becomes ``lr``), the run's ``status`` (ok|diverged) and ``diverged_epoch``.
Diverged runs are kept: figures show them rather than silently dropping them.
"""
from __future__ import annotations

import io
from pathlib import Path
from typing import Mapping

import pandas as pd

from impls.common.io import atomic_write_text, read_json
from impls.common.metrics import read_metrics
from impls.common.specs import get_dotted


def column_name(factor: str) -> str:
    return factor.split(".")[-1]


def figure_table(figure: Mapping, results_dir: str | Path) -> pd.DataFrame:
    """Tidy metrics of every run of ``figure`` (the ``figure_params`` of figures.smk)."""
    results_dir = Path(results_dir)
    frames = []
    for rid, spec in figure["runs"].items():
        run_dir = results_dir / figure["paper"] / "runs" / rid
        final = read_json(run_dir / "final.json")
        df = read_metrics(run_dir)
        df.insert(0, "run_id", rid)
        for factor in figure["factors"]:
            df[column_name(factor)] = get_dotted(spec, factor)
        df["status"] = final["status"]
        df["diverged_epoch"] = final.get("diverged_epoch")
        df["final_acc"] = final["final"].get("final_acc")
        frames.append(df)
    return pd.concat(frames, ignore_index=True)


def write_figure_table(figure: Mapping, results_dir: str | Path, out: str | Path) -> pd.DataFrame:
    table = figure_table(figure, results_dir)
    buffer = io.StringIO()
    table.to_csv(buffer, index=False, float_format="%.9g")
    atomic_write_text(out, buffer.getvalue())
    return table
