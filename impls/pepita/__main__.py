"""``python -m impls.pepita train|evaluate BATCH_JSON`` (see impls.common.cli).

Training imports torch (``impls.pepita.train.Program`` on the common driver); ``evaluate``
needs no torch: pepita adds no analyses to final.json.
"""
import sys

from impls.common.cli import Impl, main

IMPL = Impl(framework="torch", program="impls.pepita.train:Program")

if __name__ == "__main__":
    sys.exit(main(IMPL))
