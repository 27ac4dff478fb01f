"""Shared check of the JAX programs' batches: looping over runs (CPU) against vmapping them (accelerators)."""
from __future__ import annotations

import numpy as np


def assert_looped_batch_matches(train, tolerance: float) -> None:
    """``train(seeds, sequential)`` trains a batch and returns its run-stacked leaves (states, metrics). Each run
    of a looped batch of two equals the run trained alone (to 1e-6), the vmapped batch agrees to ``tolerance``
    (relative, and absolute times each leaf's largest entry), and the two runs differ."""
    looped, vmapped = train([0, 1], True), train([0, 1], False)
    alone = [train([seed], True) for seed in (0, 1)]
    for i, (a, b) in enumerate(zip(looped, vmapped)):
        for r in (0, 1):
            np.testing.assert_allclose(a[r], alone[r][i][0], rtol=1e-6, atol=1e-6)
        scale = max(float(np.nanmax(np.abs(b))), 1.0)
        np.testing.assert_allclose(a, b, rtol=tolerance, atol=tolerance * scale)
    assert any(not np.array_equal(leaf[0], leaf[1]) for leaf in looped)   # the seeds differ
