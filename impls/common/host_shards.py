"""Data parallelism over hosts: which examples each process reads, and the global batches they form.

Callers: ``impls.two_routes.imagenet_tfds`` (which examples to decode on this host) and
``impls.two_routes.imagenet_program`` (the mesh and the global arrays).

- One order per (seed, epoch) for the whole job: a permutation of the training set drawn from
  ``SeedSequence([seed, epoch, ORDER_STREAM])``, cut into global batches of ``batch_size`` (the last,
  partial one dropped). Process p of P reads the p-th contiguous slice of ``batch_size / P`` examples
  of every global batch, so the global batches, and every number computed from them, are the same
  whatever the number of hosts. Each example also keeps its position in the epoch (step · batch_size
  + offset), from which its random augmentation is seeded.
- Evaluation: the examples in file order, in global batches, the last one padded; a padded slot has
  mask 0, so summing masked values over the global batches counts every example exactly once.
- A run can start at any step of an epoch (``start_step``): its batches are those an uninterrupted
  run sees from that step on.

``global_mesh`` is a 1-d mesh ("data") over every device of every process; ``to_global`` assembles
the host-local slices of a batch into one array sharded over it
(``jax.make_array_from_process_local_data``).
"""
from __future__ import annotations

import numpy as np

ORDER_STREAM = 0x0DE7  # keeps the epoch order's random stream apart from others seeded by (seed, epoch)


def local_batch_size(batch_size: int, process_count: int) -> int:
    """The examples one process reads of each global batch."""
    if batch_size % process_count:
        raise ValueError(f"batch_size {batch_size} is not a multiple of the {process_count} processes")
    return batch_size // process_count


def epoch_order(n: int, seed: int, epoch: int) -> np.ndarray:
    """The training set's order in epoch ``epoch`` of the run with ``seed``."""
    return np.random.default_rng(np.random.SeedSequence([seed, epoch, ORDER_STREAM])).permutation(n)


def train_slices(n: int, batch_size: int, seed: int, epoch: int, process_index: int, process_count: int,
                 start_step: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(example indices, positions in the epoch), each (steps - start_step, batch_size / P): what
    process ``process_index`` reads of every global batch from ``start_step`` on."""
    local = local_batch_size(batch_size, process_count)
    steps = n // batch_size
    if not 0 <= start_step <= steps:
        raise ValueError(f"start_step {start_step} is outside 0..{steps} (steps of an epoch)")
    columns = slice(process_index * local, (process_index + 1) * local)
    order = epoch_order(n, seed, epoch)[:steps * batch_size].reshape(steps, batch_size)
    positions = np.arange(steps * batch_size).reshape(steps, batch_size)
    return order[start_step:, columns], positions[start_step:, columns]


def eval_slices(n: int, batch_size: int, process_index: int, process_count: int) -> tuple[np.ndarray, np.ndarray]:
    """(example indices, mask), each (ceil(n / batch_size), batch_size / P): process ``process_index``'s
    slice of every global evaluation batch, in file order; padded slots have index 0 and mask 0."""
    local = local_batch_size(batch_size, process_count)
    steps = -(-n // batch_size)
    padded = np.arange(steps * batch_size)
    columns = slice(process_index * local, (process_index + 1) * local)
    mask = (padded < n).astype(np.float32).reshape(steps, batch_size)[:, columns]
    return np.where(padded < n, padded, 0).reshape(steps, batch_size)[:, columns], mask


def global_mesh():
    """A 1-d mesh, axis "data", over every device of every process."""
    import jax
    from jax.sharding import Mesh

    return Mesh(np.array(jax.devices()), ("data",))


def to_global(local: np.ndarray, sharding):
    """This process's slice of a batch (leading axis) as its part of the global array over ``sharding``."""
    import jax

    return jax.make_array_from_process_local_data(sharding, local)
