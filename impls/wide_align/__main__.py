"""``python -m impls.wide_align train|evaluate BATCH_JSON`` (see impls.common.cli).

``evaluate`` also adds the validation-split reductions (``final_val_acc``, ``best_val_acc``) to
each run's final.json and, for runs whose spec has ``hparams.score_epochs``, computes the
alignment score and its shuffled control from the saved snapshots (impls.wide_align.alignment),
writing alignment.csv beside final.json.
"""
from __future__ import annotations

import sys

from impls.common.cli import main


def train_batch(job, options):
    """Imports torch only when training."""
    from impls.wide_align.train import train_batch as train

    return train(job, options)


def _option(args, name, default=None):
    return args[args.index(name) + 1] if name in args else default


if __name__ == "__main__":
    code = main(train_batch, framework="torch")
    argv = sys.argv[1:]
    if code == 0 and argv[:1] == ["evaluate"]:
        from impls.wide_align.evaluate import evaluate_extras

        evaluate_extras(argv[1], _option(argv, "--results-dir"))
    sys.exit(code)
