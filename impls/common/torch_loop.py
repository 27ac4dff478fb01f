"""Pieces every PyTorch train loop shares: the device record and the batch checkpoint file.

Caller: ``train_batch`` of impls/pepita and impls/wide_align (PyTorch impls only; JAX impls
save their own state). A checkpoint is one ``torch.save`` of the epoch, the batch's run ids, the
program's ``state_dict()``, the metric history, the divergence epochs and the elapsed time,
written to a temporary file and renamed, so a kill never leaves half a checkpoint.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch


# glibc mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3


def keep_freed_memory(limit_bytes: int = 1 << 30) -> bool:
    """Ask glibc to keep freed blocks up to ``limit_bytes`` in the heap instead of unmapping them.

    A CPU train step allocates and frees activation-sized tensors (tens of MB) dozens of times;
    by default glibc serves each one with a fresh mmap, and the kernel zero-fills every page on
    first touch -- on 2 cores that was a third of a wide_align step (benchmarks/README.md).
    Returns False, changing nothing, where the C library is not glibc (macOS, musl).
    """
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.mallopt(_M_MMAP_THRESHOLD, limit_bytes) and libc.mallopt(_M_TRIM_THRESHOLD, 2 * limit_bytes))
    except (OSError, AttributeError):
        return False


def device_record(device: str) -> dict:
    """What final.json records about the accelerator a torch job ran on."""
    if device == "cuda":
        return {"framework": "torch", "backend": "cuda", "kind": torch.cuda.get_device_name(0),
                "count": str(torch.cuda.device_count())}
    return {"framework": "torch", "backend": "cpu", "kind": "cpu", "count": str(torch.get_num_threads())}


def save_checkpoint(path: Path, job, epoch: int, program, history, diverged, elapsed: float) -> None:
    tmp = path.with_name(f".tmp-{path.name}")
    torch.save({"epoch": epoch, "run_ids": list(job.run_ids), "state": program.state_dict(),
                "history": history, "diverged": diverged, "elapsed": elapsed}, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: Path, job):
    """The batch's checkpoint, or None when there is none or it belongs to other runs."""
    if not path.exists():
        return None
    ckpt = torch.load(path, weights_only=False)
    return ckpt if ckpt["run_ids"] == list(job.run_ids) else None
