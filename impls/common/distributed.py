"""One JAX job over several processes (the workers of a multi-host TPU slice, or several hosts of a
cluster): ``jax.distributed`` set up from the environment, before JAX starts its backends.

Caller: ``impls.common.cli`` (``python -m impls.<paper> ...``) for the JAX papers, before anything
else touches JAX. Without ``CREDITBENCH_DISTRIBUTED=1`` it does nothing: one process, as always.

- ``CREDITBENCH_DISTRIBUTED=1`` alone: ``jax.distributed.initialize()`` finds the other processes
  itself where the platform tells it (every worker of a Cloud TPU slice, SLURM).
- with ``CREDITBENCH_COORDINATOR=host:port``, ``CREDITBENCH_NUM_PROCESSES=N`` and
  ``CREDITBENCH_PROCESS_ID=i`` (0..N-1): exactly those (any machines, CPU processes on one host in
  the tests). Process 0 serves the coordinator at that address.

CPU collectives between processes go through gloo, set explicitly (JAX 0.10.2 also picks it when
nothing is set; older releases had no CPU collectives across processes by default); it changes nothing
on a TPU or GPU.
"""
from __future__ import annotations

import os
from typing import Mapping

ENV_FLAG = "CREDITBENCH_DISTRIBUTED"
ENV_KEYS = {"coordinator_address": "CREDITBENCH_COORDINATOR", "num_processes": "CREDITBENCH_NUM_PROCESSES",
            "process_id": "CREDITBENCH_PROCESS_ID"}


def settings(environ: Mapping[str, str] = os.environ) -> dict | None:
    """The ``jax.distributed.initialize`` arguments the environment asks for; None when it asks for none.
    A partial set of the three variables is a ValueError naming the missing ones."""
    if environ.get(ENV_FLAG, "") in ("", "0"):
        return None
    given = {arg: environ[var] for arg, var in ENV_KEYS.items() if environ.get(var)}
    if given and len(given) < len(ENV_KEYS):
        missing = [var for arg, var in ENV_KEYS.items() if arg not in given]
        raise ValueError(f"{ENV_FLAG}=1 with {', '.join(ENV_KEYS[a] for a in given)} needs {', '.join(missing)} too")
    for arg in ("num_processes", "process_id"):
        if arg in given:
            given[arg] = int(given[arg])
    return given


def initialize_from_env(environ: Mapping[str, str] = os.environ) -> bool:
    """Join the job the environment describes (``settings``); True if this process is now one of several."""
    kwargs = settings(environ)
    if kwargs is None:
        return False
    import jax

    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(**kwargs)
    return True
