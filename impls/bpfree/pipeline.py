"""The figure-era input pipeline of the Pathak repository at ``a60d5a2`` (papers/bpfree/README.md, deviation 1), in
JAX.

The README figures were made with ``tf.data`` shuffling through a buffer of 128 and
``tf.image.random_brightness(x, 0.2)``; later commits removed the augmentation and grew the
buffer. Both are options of a bpfree run (``hparams.shuffle_buffer``, ``hparams.brightness``);
the default is a full reshuffle every epoch without augmentation.

- ``buffer_shuffle_order``: the order in which ``Dataset.shuffle(buffer)`` emits a dataset kept
  in file order. A buffer holds the next ``buffer`` elements; each output is drawn uniformly from
  it and its slot is refilled with the next element; once the input is exhausted the remaining
  elements are drawn uniformly until none is left. Element i therefore cannot leave before
  output position i − buffer + 1 (a full shuffle has no such bound; tested).
- ``random_brightness``: x + δ with one δ ~ U(−d, d) per example, then clipped to the scaler's
  range (the value range in the original is unknown; we clip to the range the scaler maps
  pixels to: [−1, 1] for ``standard``, [0, 1] for ``minmax``).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

#: pixel range of each scaler that brightness augmentation clips to (zscore has none)
SCALER_RANGE = {"standard": (-1.0, 1.0), "minmax": (0.0, 1.0)}


def buffer_shuffle_order(key: jax.Array, n: int, buffer: int) -> jax.Array:
    """Indices 0..n−1 in the order a shuffle buffer of ``buffer`` elements emits them (int32, (n,))."""
    size = min(int(buffer), n)

    def emit(carry, t):
        slots, upcoming = carry
        held = jnp.minimum(size, n - t)                  # elements currently in the buffer
        j = jax.random.randint(jax.random.fold_in(key, t), (), 0, held)
        out = slots[j]
        refill = upcoming < n
        slots = slots.at[j].set(jnp.where(refill, upcoming, slots[held - 1]))
        return (slots, upcoming + refill.astype(jnp.int32)), out

    init = (jnp.arange(size, dtype=jnp.int32), jnp.asarray(size, jnp.int32))
    _, order = jax.lax.scan(emit, init, jnp.arange(n, dtype=jnp.int32))
    return order


def random_brightness(key: jax.Array, x: jax.Array, max_delta: float, value_range: tuple[float, float]) -> jax.Array:
    """x (B, d) shifted by one δ ~ U(−max_delta, max_delta) per example, clipped to ``value_range``."""
    delta = jax.random.uniform(key, (x.shape[0], 1), x.dtype, -max_delta, max_delta)
    return jnp.clip(x + delta, *value_range)
