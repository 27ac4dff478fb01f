"""Snakemake script of the ``figure`` rule: the figure's tidy table (impls.common.aggregate), then
its plot (impls.common.plotting) from that CSV, in one process; logs to the rule's log."""
import sys
from pathlib import Path

sys.stderr = open(snakemake.log[0], "w")  # noqa: F821 (snakemake is injected)
# impls/ of this checkout, importable also in the rule's conda env (which has no editable install)
sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1]))  # noqa: F821

import pandas as pd  # noqa: E402

from impls.common.aggregate import write_figure_table  # noqa: E402
from impls.common.plotting import plot_figure  # noqa: E402

out = snakemake.output  # noqa: F821
table = write_figure_table(snakemake.params.figure, snakemake.params.results, out.csv)  # noqa: F821
print(f"{len(table)} rows from {table['run_id'].nunique()} runs", file=sys.stderr)
# plotted from the CSV as written, so the figure shows exactly what the table holds
plot_figure(pd.read_csv(out.csv), snakemake.params.figure, out.png, out.pdf)  # noqa: F821
