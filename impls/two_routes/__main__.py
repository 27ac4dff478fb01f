"""``python -m impls.two_routes train|evaluate BATCH_JSON`` (see impls.common.cli)."""
import sys

from impls.common.cli import main


def train_batch(job, options):
    """Imported on use, so ``evaluate`` (pure file work) starts without loading JAX."""
    from impls.two_routes.train import train_batch as train

    train(job, options)


if __name__ == "__main__":
    sys.exit(main(train_batch, framework="jax"))
