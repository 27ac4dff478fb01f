"""Data parallelism over hosts (impls.common.host_shards, impls.common.distributed) on the CPU: the
slices each process reads, global batches assembled over forced host devices, and two real JAX processes
joined by jax.distributed on 127.0.0.1 (CPU collectives through gloo)."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from impls.common import distributed, host_shards

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("processes", [1, 2, 4])
def test_processes_read_disjoint_slices_that_make_the_single_host_batches(processes):
    whole, positions = host_shards.train_slices(50, 8, seed=3, epoch=2, process_index=0, process_count=1)
    assert whole.shape == (6, 8) and len(set(whole.ravel())) == 48            # last partial batch dropped
    parts = [host_shards.train_slices(50, 8, 3, 2, p, processes) for p in range(processes)]
    assert np.array_equal(np.concatenate([idx for idx, _ in parts], axis=1), whole)
    assert np.array_equal(np.concatenate([pos for _, pos in parts], axis=1), positions)
    resumed, _ = host_shards.train_slices(50, 8, 3, 2, 0, 1, start_step=4)
    assert np.array_equal(resumed, whole[4:])
    other, _ = host_shards.train_slices(50, 8, 3, 3, 0, 1)
    assert not np.array_equal(other, whole)                                     # a new order each epoch


@pytest.mark.parametrize("processes", [1, 2, 4])
def test_evaluation_slices_hold_every_example_once(processes):
    parts = [host_shards.eval_slices(13, 8, p, processes) for p in range(processes)]
    index = np.concatenate([i for i, _ in parts], axis=1)
    mask = np.concatenate([m for _, m in parts], axis=1)
    assert index.shape == (2, 8) and mask.sum() == 13
    assert np.array_equal(np.sort(index[mask > 0]), np.arange(13))


def test_bad_batch_and_environment_are_named():
    with pytest.raises(ValueError, match="batch_size 6 is not a multiple of the 4 processes"):
        host_shards.train_slices(50, 6, 0, 1, 0, 4)
    with pytest.raises(ValueError, match="needs CREDITBENCH_NUM_PROCESSES, CREDITBENCH_PROCESS_ID too"):
        distributed.settings({"CREDITBENCH_DISTRIBUTED": "1", "CREDITBENCH_COORDINATOR": "127.0.0.1:1"})
    assert distributed.settings({}) is None and distributed.settings({"CREDITBENCH_DISTRIBUTED": "1"}) == {}


#: one process of a data-parallel job: its slices of a dataset whose image i is filled with i, assembled
#: into global arrays; prints the global sums a single process computes over the same batches
STEP = r"""
import json, sys
from impls.common import distributed, host_shards
distributed.initialize_from_env()
import jax, jax.numpy as jnp, numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P
p, n = jax.process_index(), jax.process_count()
mesh = host_shards.global_mesh()
batch, replicated = NamedSharding(mesh, P("data")), NamedSharding(mesh, P())
images = lambda idx: np.broadcast_to(idx[:, None, None].astype(np.float32), (len(idx), 2, 2))
out = {"process": p, "processes": n, "devices": len(jax.devices()), "train": [], "eval": []}
total = jax.jit(lambda x, w: (x.sum(axis=(1, 2)) * w).sum(), out_shardings=replicated)
idx, pos = host_shards.train_slices(20, 8, seed=1, epoch=1, process_index=p, process_count=n)
for step in range(len(idx)):
    x = host_shards.to_global(images(idx[step]), batch)
    assert x.shape == (8, 2, 2)
    out["train"].append(float(total(x, host_shards.to_global(np.ones(len(idx[step]), np.float32), batch))))
idx, mask = host_shards.eval_slices(13, 8, p, n)
for step in range(len(idx)):
    x, m = (host_shards.to_global(a, batch) for a in (images(idx[step]), mask[step]))
    out["eval"].append([float(total(x, m)), float(jax.jit(jnp.sum, out_shardings=replicated)(m))])
print("RESULT", json.dumps(out), flush=True)
"""


def _run(env_extra: dict, timeout: int = 240):
    env = {**os.environ, "PYTHONPATH": str(REPO), **env_extra}
    return subprocess.Popen([sys.executable, "-c", STEP], cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _result(proc, timeout: int = 240) -> dict:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err[-3000:]
    return json.loads(next(line for line in out.splitlines() if line.startswith("RESULT"))[7:])


def _expected() -> dict:
    idx, _ = host_shards.train_slices(20, 8, 1, 1, 0, 1)
    index, mask = host_shards.eval_slices(13, 8, 0, 1)
    return {"train": [4.0 * idx[s].sum() for s in range(len(idx))],
            "eval": [[4.0 * (index[s] * mask[s]).sum(), float(mask[s].sum())] for s in range(len(index))]}


def test_global_batches_over_four_forced_host_devices():
    result = _result(_run({"XLA_FLAGS": "--xla_force_host_platform_device_count=4"}))
    assert result["devices"] == 4 and result["processes"] == 1
    assert {k: result[k] for k in ("train", "eval")} == _expected()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_joined_on_loopback_compute_the_single_host_sums():
    """Two JAX processes of 2 CPU devices each: every process reads only its half of each global batch, yet
    both compute the sums one process computes over whole batches, and the 13 evaluation images are
    counted once (13, not 26)."""
    port = _free_port()
    procs = [_run({"XLA_FLAGS": "--xla_force_host_platform_device_count=2", "CREDITBENCH_DISTRIBUTED": "1",
                   "CREDITBENCH_COORDINATOR": f"127.0.0.1:{port}", "CREDITBENCH_NUM_PROCESSES": "2",
                   "CREDITBENCH_PROCESS_ID": str(p)}) for p in (0, 1)]
    results = [_result(p) for p in procs]
    expected = _expected()
    for p, result in enumerate(results):
        assert (result["process"], result["processes"], result["devices"]) == (p, 2, 4)
        assert {k: result[k] for k in ("train", "eval")} == expected
    assert sum(count for _, count in results[0]["eval"]) == 13
