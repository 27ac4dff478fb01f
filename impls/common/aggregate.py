"""aggregate: the runs of one figure -> one tidy table (results/<paper>/<figure>.csv).

Caller: workflow/scripts/figure.py (the ``figure`` rule).
Returns/writes: one row per (run, epoch, split, metric) with the figure's factors as columns
(``hparams.lr`` becomes ``lr``), the run's ``status`` (ok|diverged), ``diverged_epoch`` and
its reduced metrics (``final_acc``, ``best_test_acc``, ``final_test_acc``, ...).
Diverged runs are kept: figures show them rather than silently dropping them.
"""
from __future__ import annotations

import importlib
import io
from pathlib import Path
from typing import Mapping

import pandas as pd

from impls.common.io import atomic_write_text, read_json
from impls.common.metrics import read_metrics
from impls.common.specs import get_dotted


#: reduced metrics of final.json copied onto every row (see impls.common.metrics.reduce_run)
REDUCED_METRICS = ("final_acc", "best_test_acc", "test_acc", "train_acc", "test_loss", "train_loss")


def column_name(factor: str) -> str:
    return factor.split(".")[-1]


def final_column(key: str) -> str:
    """final.json's ``final[key]`` as a column: final_acc, best_test_acc, final_test_acc, ..."""
    return key if key.startswith(("final", "best")) else f"final_{key}"


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
            value = get_dotted(spec, factor)  # a list level (model.hidden: [500, 500]) becomes "500-500"
            df[column_name(factor)] = "-".join(map(str, value)) if isinstance(value, list) else value
        df["status"] = final["status"]
        df["diverged_epoch"] = final.get("diverged_epoch")
        for key in REDUCED_METRICS:
            df[final_column(key)] = final["final"].get(key)
        frames.append(df)
    return pd.concat(frames, ignore_index=True)


def figure_finals(figure: Mapping, results_dir: str | Path) -> dict[str, dict]:
    """final.json of every run of ``figure``: run id -> content (for the figure's provenance record)."""
    runs = Path(results_dir) / figure["paper"] / "runs"
    return {rid: read_json(runs / rid / "final.json") for rid in figure["runs"]}


def resolve(reference: str):
    """``"package.module:function"`` -> the function (paper-specific aggregators and plots)."""
    module, _, name = reference.partition(":")
    return getattr(importlib.import_module(module), name)


def write_figure_table(figure: Mapping, results_dir: str | Path, out: str | Path) -> pd.DataFrame:
    """The generic tidy table, or the figure's own ``aggregate`` function when paper.yaml names one."""
    builder = resolve(figure["aggregate"]) if figure.get("aggregate") else figure_table
    table = builder(figure, results_dir)
    buffer = io.StringIO()
    table.to_csv(buffer, index=False, float_format="%.9g")
    atomic_write_text(out, buffer.getvalue())
    return table
