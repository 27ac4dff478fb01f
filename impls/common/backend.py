"""The accelerator a job expects, asserted before any work (no silent CPU fallback).

Caller: ``impls.common.cli`` before a JAX impl trains or evaluates.
"""
from __future__ import annotations

PLATFORMS = ("auto", "cpu", "gpu", "tpu")


class BackendMismatch(RuntimeError):
    """The job was asked for an accelerator it cannot see."""


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
            f"Install the matching jax build (jax[tpu] on a TPU VM, jax[cuda12] on NVIDIA GPUs) "
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
