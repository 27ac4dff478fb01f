"""When the training driver checkpoints, and the fault injection the resume tests use.

Caller: ``impls.common.driver``. At each epoch end the driver asks ``clock.due()``, saves the
batch's checkpoint (``impls.common.checkpoint``) and then calls ``clock.saved(epoch)``.
"""
from __future__ import annotations

import os
import signal
import time

#: fault injection for the resume tests: SIGKILL the process right after the checkpoint of this epoch
KILL_AFTER_EPOCH_ENV = "CREDITBENCH_KILL_AFTER_EPOCH"


class CheckpointClock:
    """Due once ``minutes`` have passed since the last save (0 = at every epoch end)."""

    def __init__(self, minutes: float):
        self.seconds = 60 * minutes
        self.last = time.perf_counter()
        self.kill_after = os.environ.get(KILL_AFTER_EPOCH_ENV)

    def due(self) -> bool:
        return time.perf_counter() - self.last >= self.seconds

    def saved(self, epoch: int) -> None:
        self.last = time.perf_counter()
        if self.kill_after is not None and epoch >= int(self.kill_after):
            os.kill(os.getpid(), signal.SIGKILL)
