"""Pieces every PyTorch program shares: glibc's freed-memory threshold and the device record.

Caller: the PyTorch programs of impls/pepita and impls/wide_align (and
benchmarks/bench_wide_align.py). Checkpoints are not kept here: the common driver saves every
program's state, torch tensors included, in the one checkpoint format (impls.common.checkpoint).
"""
from __future__ import annotations

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
