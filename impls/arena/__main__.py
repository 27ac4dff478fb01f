"""``python -m impls.arena run|train|evaluate BATCH_JSON`` (see impls.common.cli).

A batch holds the runs of one arena rule, which lives in one framework (``impls.arena.contenders``):
``impls.arena.train.Program`` trains it with the JAX or the PyTorch trainer.
"""
import sys

from impls.common.cli import Impl, main

IMPL = Impl(framework="jax+torch", program="impls.arena.train:Program")

if __name__ == "__main__":
    sys.exit(main(IMPL))
