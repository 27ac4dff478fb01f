"""``python -m impls.bpfree train|evaluate BATCH_JSON`` (see impls.common.cli).

``train`` runs the bpfree program (``impls.bpfree.train.Program``) on the common driver;
``evaluate`` writes the common final.json (bpfree adds no analyses).
"""
import sys

from impls.common.cli import Impl, main

IMPL = Impl(framework="jax", program="impls.bpfree.train:Program")

if __name__ == "__main__":
    sys.exit(main(IMPL))
