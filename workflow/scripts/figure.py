"""Snakemake script of the ``figure`` and ``table`` rules: the figure's tidy table (impls.common.aggregate), then
its plot (impls.common.plotting) from that CSV, in one process; logs to the rule's log."""
import sys

sys.stderr = open(snakemake.log[0], "w")  # noqa: F821 (snakemake is injected)

import pandas as pd  # noqa: E402

from impls.common.aggregate import write_figure_table  # noqa: E402
from impls.common.plotting import plot_figure  # noqa: E402

out = snakemake.output  # noqa: F821
table = write_figure_table(snakemake.params.figure, snakemake.params.results, out.csv)  # noqa: F821
print(f"{len(table)} rows from {table['run_id'].nunique()} runs", file=sys.stderr)
# plotted from the CSV as written, so the figure shows exactly what the table holds; a tab_* figure
# (rule ``table``) also writes the drawn table as HTML
plot_figure(pd.read_csv(out.csv), snakemake.params.figure, out.png, out.pdf, html=out.get("html"))  # noqa: F821
