"""Snakemake script of the ``plot`` rule: logs to the rule's log, logic in impls.common.plotting."""
import sys

sys.stderr = open(snakemake.log[0], "w")  # noqa: F821 (snakemake is injected)

import pandas as pd  # noqa: E402

from impls.common.plotting import plot_figure  # noqa: E402

table = pd.read_csv(snakemake.input[0])  # noqa: F821
plot_figure(table, snakemake.params.figure, snakemake.output.png, snakemake.output.pdf)  # noqa: F821
