"""``python -m impls.two_routes train|evaluate BATCH_JSON`` (see impls.common.cli).

The program is chosen from the spec by ``impls.two_routes.train.make_program`` (resident data,
streamed ImageNet or the linear fixed-point runs); ``evaluate`` needs no analyses beyond the common
reduction, so it starts without loading JAX.
"""
import sys

from impls.common.cli import Impl, main

IMPL = Impl(framework="jax", program="impls.two_routes.train:make_program")

if __name__ == "__main__":
    sys.exit(main(IMPL))
