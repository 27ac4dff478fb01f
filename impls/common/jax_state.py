"""JAX pieces the JAX programs share: state trees by path, per-run slices, evaluation chunks, vmap or loop over runs.

Caller: the JAX papers' programs (impls/nodepert, impls/bpfree, impls/two_routes) for the
common driver (``impls.common.driver``), which saves what ``by_path`` returns and checks it
against the program's own tree on resume (``impls.common.checkpoint``).
"""
from __future__ import annotations

from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np


def by_path(tree: Any) -> dict[str, np.ndarray]:
    """``{"[0]['w']": leaf, ...}``: every leaf of a pytree under its key path (optax states included)."""
    return {jax.tree_util.keystr(path): np.asarray(leaf)
            for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]}


def from_paths(template: Any, arrays: Mapping[str, np.ndarray]) -> Any:
    """The pytree of ``template``'s structure whose leaf at each key path is ``arrays[path]``."""
    paths, treedef = jax.tree_util.tree_flatten_with_path(template)
    return jax.tree_util.tree_unflatten(treedef, [jnp.asarray(arrays[jax.tree_util.keystr(p)]) for p, _ in paths])


def run_leaves(tree: Any, i: int) -> dict[str, np.ndarray]:
    """Run ``i``'s slice of a run-stacked pytree as ``{"leaf_0": ..., "leaf_1": ...}`` (params.npz)."""
    return {f"leaf_{j}": np.asarray(x[i]) for j, x in enumerate(jax.tree_util.tree_leaves(tree))}


def keep_where(frozen: np.ndarray, new: Any, old: Any) -> Any:
    """Per run: ``old`` where ``frozen`` (stopped runs keep their state), else ``new``."""
    mask = jnp.asarray(frozen)
    return jax.tree_util.tree_map(
        lambda n, o: jnp.where(mask.reshape((-1,) + (1,) * (n.ndim - 1)), o, n), new, old)


def pad_chunks(x: np.ndarray, y: np.ndarray, chunk: int):
    """Pad to a multiple of ``chunk`` and reshape to (n_chunks, chunk, ...), with a validity mask.

    Returns device arrays ``(x, y, mask, n)``; ``n`` is the number of real examples.
    """
    n = len(x)
    total = -(-n // chunk) * chunk
    mask = np.zeros(total, np.float32)
    mask[:n] = 1.0
    xp = np.zeros((total,) + x.shape[1:], np.float32)
    xp[:n] = x
    yp = np.zeros(total, np.int32)
    yp[:n] = y
    shape = (total // chunk, chunk)
    return (jnp.asarray(xp.reshape(shape + x.shape[1:])), jnp.asarray(yp.reshape(shape)),
            jnp.asarray(mask.reshape(shape)), n)


def over_runs(fn, in_axes, sequential: bool):
    """``jax.vmap(fn, in_axes)`` over the leading run axis (every axis 0 or None), or, if ``sequential``, the same
    as a ``lax.map`` over the runs: each run then computes exactly what it computes alone. XLA:CPU runs the
    grouped convolutions that vmap makes of per-run kernels several times slower than a loop over runs
    (two_routes ResNet-8 w8, batch 128, 2 runs: 460 vs 1,100 images/s), so conv nets map on the CPU backend
    (:func:`sequential_runs`)."""
    if not sequential:
        return jax.vmap(fn, in_axes=in_axes)

    def mapped(*args):
        def one(batched):
            it = iter(batched)
            return fn(*[a if ax is None else next(it) for a, ax in zip(args, in_axes)])
        return jax.lax.map(one, [a for a, ax in zip(args, in_axes) if ax is not None])

    return mapped


def sequential_runs(has_conv: bool) -> bool:
    """Whether a batch should loop over its runs (:func:`over_runs`): for conv nets on XLA:CPU."""
    return has_conv and jax.default_backend() == "cpu"
