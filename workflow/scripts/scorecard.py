"""Snakemake script of the ``scorecard`` rule: logs to the rule's log, logic in impls.common.claims,
the HTML page in impls.common.html_tables."""
import sys
from pathlib import Path

sys.stderr = open(snakemake.log[0], "w")  # noqa: F821 (snakemake is injected)
# impls/ of this checkout, importable also in the rule's conda env (which has no editable install)
sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1]))  # noqa: F821

import pandas as pd  # noqa: E402

from impls.common.claims import render_summary_png, scorecard  # noqa: E402
from impls.common.html_tables import scorecard_page  # noqa: E402
from impls.common.io import atomic_write_text  # noqa: E402

params, out = snakemake.params, snakemake.output  # noqa: F821
tables = {target: pd.read_csv(path) for target, path in zip(params.targets, snakemake.input)}  # noqa: F821
card = scorecard(params.papers, params.labels, params.scale, tables)
atomic_write_text(out.csv, card.to_csv(index=False))
atomic_write_text(out.html, scorecard_page(card))
render_summary_png(card, out.summary)
print(card["verdict"].value_counts().to_string(), file=sys.stderr)
