"""``python -m impls.bpfree train|evaluate BATCH_JSON`` (see impls.common.cli)."""
import sys

from impls.common.cli import main


def train_batch(job, options):
    """Imported on use, so ``evaluate`` (pure file work) starts without loading JAX."""
    from impls.bpfree.train import train_batch as train

    train(job, options)


if __name__ == "__main__":
    sys.exit(main(train_batch, framework="jax"))
