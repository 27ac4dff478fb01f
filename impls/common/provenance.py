"""What every result records about where it came from: versions, device, git commit, job."""
from __future__ import annotations

import importlib.metadata
import os
import platform
import socket
import subprocess
from functools import lru_cache
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("jax", "jaxlib", "flax", "optax", "torch", "torchvision", "numpy", "snakemake")


@lru_cache(maxsize=1)
def git_commit() -> str:
    """``<sha>`` or ``<sha>-dirty``; ``unknown`` outside a git checkout."""
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True,
                             text=True, check=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO_ROOT,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return f"{sha}-dirty" if dirty else sha
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    return out


def jax_device() -> dict[str, str]:
    import jax

    dev = jax.devices()[0]
    return {"framework": "jax", "backend": jax.default_backend(), "kind": dev.device_kind,
            "count": str(jax.device_count())}


def record(device: dict[str, str]) -> dict:
    """Provenance block stored in train.json and final.json."""
    return {
        "versions": versions(),
        "device": device,
        "git_commit": git_commit(),
        "host": socket.gethostname(),
        "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
    }
