"""``python -m impls.nodepert train|evaluate BATCH_JSON`` (see impls.common.cli).

``evaluate`` adds the nodepert analyses to final.json (``impls.nodepert.analyses``): the crash
classification of every run, the line search for runs with ``hparams.linesearch_steps`` and the
per-minibatch crash replay for runs with ``hparams.snapshot_every``.
"""
import sys

from impls.common.cli import Impl, main

IMPL = Impl(framework="jax", program="impls.nodepert.train:Program", evaluate="impls.nodepert.analyses:evaluate")

if __name__ == "__main__":
    sys.exit(main(IMPL))
