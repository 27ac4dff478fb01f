"""Snakemake script of the ``figure`` and ``table`` rules: the figure's tidy table (impls.common.aggregate), its
provenance record (impls.common.provenance: what trained its runs, what made it), then its plot
(impls.common.plotting) from that CSV with the record's commits in the footer, in one process; a tab_*
figure (rule ``table``) also writes the drawn table as HTML. Logs to the rule's log."""
import sys
from pathlib import Path

sys.stderr = open(snakemake.log[0], "w")  # noqa: F821 (snakemake is injected)
# impls/ of this checkout, importable also in the rule's conda env (which has no editable install)
sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1]))  # noqa: F821

import pandas as pd  # noqa: E402

from impls.common.aggregate import figure_finals, write_figure_table  # noqa: E402
from impls.common.io import atomic_write_json  # noqa: E402
from impls.common.plotting import plot_figure  # noqa: E402
from impls.common.provenance import figure_record  # noqa: E402

out = snakemake.output  # noqa: F821
figure, results = snakemake.params.figure, snakemake.params.results  # noqa: F821
table = write_figure_table(figure, results, out.csv)
print(f"{len(table)} rows from {len(figure['runs'])} runs", file=sys.stderr)
record = figure_record(figure, figure_finals(figure, results))
atomic_write_json(out.record, record)
# plotted from the CSV as written, so the figure shows exactly what the table holds
plot_figure(pd.read_csv(out.csv), {**figure, "provenance": record}, out.png, out.pdf, html=out.get("html"))
