"""``python -m impls.pepita train|evaluate BATCH_JSON`` (see impls.common.cli)."""
import sys

from impls.common.cli import main


def train_batch(job, options):
    """Imports torch only when training (``evaluate`` needs no torch)."""
    from impls.pepita.train import train_batch as train

    return train(job, options)


if __name__ == "__main__":
    sys.exit(main(train_batch, framework="torch"))
