"""Snakemake script of the ``aggregate`` rule: logs to the rule's log, logic in impls.common.aggregate."""
import sys

sys.stderr = open(snakemake.log[0], "w")  # noqa: F821 (snakemake is injected)

from impls.common.aggregate import write_figure_table  # noqa: E402

table = write_figure_table(snakemake.params.figure, snakemake.params.results, snakemake.output[0])  # noqa: F821
print(f"{len(table)} rows from {table['run_id'].nunique()} runs", file=sys.stderr)
