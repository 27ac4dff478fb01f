"""Per-process CPU accounting for benchmarks/profile_smoke_dag.sh (never imported by the project).

Python imports `sitecustomize` at start-up from sys.path; this directory is put on PYTHONPATH only
by the profiling script, so every Python process of the smoke DAG (Snakemake itself, its job
subprocesses, train/evaluate CLIs, aggregate/plot scripts) appends one JSON line at exit to
$CREDITBENCH_CPU_LOG: its argv, user and system CPU-seconds of all its threads (RUSAGE_SELF, so
children are not counted twice), and its wall seconds. A process killed by a signal
writes nothing.
"""
import atexit
import json
import os
import resource
import sys
import time

_LOG = os.environ.get("CREDITBENCH_CPU_LOG")
_START = time.time()


def _record():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    row = {
        "pid": os.getpid(),
        "argv": sys.argv,
        "user_s": round(usage.ru_utime, 3),
        "sys_s": round(usage.ru_stime, 3),
        "wall_s": round(time.time() - _START, 3),
    }
    with open(_LOG, "a") as fh:  # one short write per process: lines do not interleave
        fh.write(json.dumps(row) + "\n")


if _LOG:
    atexit.register(_record)
