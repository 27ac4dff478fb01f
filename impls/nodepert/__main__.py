"""``python -m impls.nodepert train|evaluate BATCH_JSON`` (see impls.common.cli)."""
import sys

from impls.common.cli import main
from impls.nodepert.train import train_batch

if __name__ == "__main__":
    sys.exit(main(train_batch, framework="jax"))
