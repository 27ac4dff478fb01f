"""``python -m impls.wide_align train|evaluate BATCH_JSON`` (see impls.common.cli).

``train`` runs the program ``impls.wide_align.train.make_program`` picks for the batch (conv net on
an in-memory or streamed dataset, or the Add task) on the common driver. ``evaluate`` also adds the
validation-split reductions (``val_acc``, ``best_val_acc``) to each run's final.json and, for
runs whose spec has ``hparams.score_epochs``, computes the alignment score and its shuffled control
from the saved snapshots (impls.wide_align.alignment), writing alignment.csv beside final.json
(``impls.wide_align.evaluate``, the cli's evaluate hook).
"""
import sys

from impls.common.cli import Impl, main

IMPL = Impl(framework="torch", program="impls.wide_align.train:make_program",
            evaluate="impls.wide_align.evaluate:evaluate")

if __name__ == "__main__":
    sys.exit(main(IMPL))
