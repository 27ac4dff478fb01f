"""The accelerator a job expects, asserted before any work (no silent CPU fallback), and the
threads and compilation cache a job's framework uses.

Caller: ``impls.common.cli`` before an impl trains or evaluates.
"""
from __future__ import annotations

import functools
import os
from pathlib import Path

PLATFORMS = ("auto", "cpu", "gpu", "tpu")


class BackendMismatch(RuntimeError):
    """The job was asked for an accelerator it cannot see."""


def configure_framework(framework: str, threads: int | None, compile_cache: Path | None) -> None:
    """Set, before JAX or PyTorch is imported, how many CPU threads it may use and where JAX keeps
    its persistent compilation cache. Only environment variables: nothing is imported here.

    ``threads=1`` turns off XLA's multi-threaded Eigen kernels and sets OMP/MKL/OpenBLAS threads to
    1 (PyTorch sizes its intra-op pool from ``OMP_NUM_THREADS``); ``threads=n`` sets those pools
    to n; XLA's own CPU thread pool has no size setting and keeps one thread per core. ``None``
    leaves every framework default. The compilation cache keeps every compiled program (no minimum
    compile time or size), keyed by XLA on the program, its flags, the jax version and the device,
    so a later process with the same shapes loads the executable instead of compiling it again.

    JAX on a GPU normally reserves 75 % of the card's memory when it starts. Train jobs share a
    card (Snakemake runs up to ``--cores`` jobs at once on a workstation; the arena runs JAX and
    PyTorch in one process), so a second job would find no memory left: JAX here allocates what it
    uses (``XLA_PYTHON_CLIENT_PREALLOCATE=false``) unless the environment already says otherwise.
    """
    if "jax" in frameworks(framework):
        os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    if threads is not None:
        if threads < 1:
            raise BackendMismatch(f"--threads must be at least 1, got {threads}")
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            os.environ[var] = str(threads)
        if "jax" in frameworks(framework) and threads == 1:
            flags = os.environ.get("XLA_FLAGS", "")
            if "xla_cpu_multi_thread_eigen" not in flags:
                os.environ["XLA_FLAGS"] = f"{flags} --xla_cpu_multi_thread_eigen=false".strip()
    if compile_cache is not None and "jax" in frameworks(framework):
        os.environ["JAX_COMPILATION_CACHE_DIR"] = str(Path(compile_cache).resolve())
        os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
        os.environ["JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"] = "0"


def frameworks(framework: str) -> tuple[str, ...]:
    """The frameworks of an impl: ``"jax"``, ``"torch"``, or both as ``"jax+torch"`` (the rule arena,
    whose batches are each one rule in its own framework)."""
    return tuple(framework.split("+"))


@functools.cache
def require_platform(framework: str, expected: str) -> str:
    """``require_jax_platform`` and/or ``require_torch_platform`` (each framework of ``framework``),
    once per process; returns the backend name the last one reports."""
    backend = ""
    for name in frameworks(framework):
        backend = require_jax_platform(expected) if name == "jax" else require_torch_platform(expected)
    return backend


def require_jax_platform(expected: str) -> str:
    """Pin JAX to ``expected`` and check it is there; return the backend name in use.

    ``auto`` accepts whatever JAX picks. Anything else fails loudly when that platform is
    missing, e.g. a TPU job scheduled on a CPU-only host or with jax[tpu] not installed.
    """
    if expected not in PLATFORMS:
        raise BackendMismatch(f"platform {expected!r} is not one of {', '.join(PLATFORMS)}")
    import jax

    if expected in ("cpu", "tpu"):
        # pinned, so a missing TPU is an error rather than a silent CPU fallback; "gpu" is not
        # pinned (CUDA and ROCm builds name their platform differently) but checked below
        jax.config.update("jax_platforms", expected)
    try:
        backend = jax.default_backend()
    except RuntimeError as err:
        raise BackendMismatch(
            f"this job must run on platform={expected}, but JAX cannot initialise it ({err}). "
            f"Install the matching jax build (jax[tpu] on a TPU VM, jax[cuda13] on NVIDIA GPUs) "
            f"or run with --config platform=auto to accept the CPU.") from None
    if expected != "auto" and backend != expected:
        raise BackendMismatch(
            f"this job must run on platform={expected}, but JAX's backend is {backend!r} "
            f"({jax.devices()}). Refusing to fall back silently; use --config platform=auto to allow it.")
    return backend


def require_torch_platform(expected: str) -> str:
    """PyTorch twin of ``require_jax_platform``: returns the torch device string to use.

    ``gpu`` needs ``torch.cuda.is_available()``; ``tpu`` is not supported by the PyTorch impls.
    """
    if expected not in PLATFORMS:
        raise BackendMismatch(f"platform {expected!r} is not one of {', '.join(PLATFORMS)}")
    import torch

    if expected == "tpu":
        raise BackendMismatch("platform=tpu: the PyTorch impls run on cpu or gpu only; use a GPU node or platform=cpu")
    if expected == "gpu" and not torch.cuda.is_available():
        raise BackendMismatch("this job must run on platform=gpu, but torch.cuda.is_available() is False "
                              "(no GPU, or a CPU-only torch build). Refusing to fall back silently; "
                              "use --config platform=auto to allow the CPU.")
    if expected == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return "cuda" if expected == "gpu" else "cpu"
