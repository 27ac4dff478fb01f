"""Throughput of each bpfree rule relative to BP on 784-500x5-10 (issue 5, Performance).

``python -m impls.bpfree.bench [--runs 2] [--steps 20] [--repeats 3] [--out FILE.json]``

Synthetic Fashion-MNIST-shaped data (784 inputs, 10 classes), batch 128, Adam, tanh, the
same vectorised epoch a train job compiles (``CompiledBatch.train_epoch``), ``--runs`` runs
per batch. Compilation is excluded (one warm-up epoch); rules are timed in interleaved rounds
and the median taken, so a machine shared with other jobs biases every rule alike.
Reports samples/s (examples x runs per second) and the ratio to BP.
"""
from __future__ import annotations

import argparse
import sys
import time

import jax
import numpy as np

from impls.bpfree.compiled import CompiledBatch
from impls.common import provenance
from impls.common.specs import validate_spec

CASES = [("bp", []), ("dfa", []), ("drtp", []), ("cce", []), ("mse", []), ("fa", []), ("dfa", "all")]


def program(rule: str, trackers, steps: int, batch: int = 128) -> CompiledBatch:
    hp = {"lr": 1e-4} if rule in ("bp", "fa") else {"lr": 1e-4, "trackers": trackers}
    spec = validate_spec({"paper": "bpfree", "rule": rule, "dataset": "fashion_mnist", "seed": 0, "epochs": 1,
                          "batch_size": batch, "scale": "cpu", "hparams": hp,
                          "model": {"arch": "mlp", "hidden": [500] * 5, "activation": "tanh"}})
    rng = np.random.default_rng(0)
    n = steps * batch
    arrays = {"x_train": rng.uniform(-1, 1, (n, 784)).astype(np.float32), "y_train": rng.integers(0, 10, n),
              "x_test": rng.uniform(-1, 1, (batch, 784)).astype(np.float32), "y_test": rng.integers(0, 10, batch),
              "n_classes": 10}
    return CompiledBatch(spec, arrays)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    seeds, lrs = np.arange(args.runs), np.full(args.runs, 1e-4)
    progs, states = {}, {}
    for rule, trackers in CASES:
        name = rule + ("+trackers" if trackers else "")
        p = program(rule, trackers, args.steps)
        state, keys = p.init(seeds, lrs)
        state, _ = p.train_epoch(state, keys, 0)                   # compile + warm-up
        jax.block_until_ready(state)
        progs[name], states[name] = (p, keys), state
    times = {name: [] for name in progs}
    for r in range(args.repeats):
        for name, (p, keys) in progs.items():
            t0 = time.perf_counter()
            states[name], out = p.train_epoch(states[name], keys, r + 1)
            jax.block_until_ready(out)
            times[name].append(time.perf_counter() - t0)
    samples = args.steps * 128 * args.runs
    result = {name: {"samples_per_s": samples / float(np.median(t)), "epoch_s_median": float(np.median(t))}
              for name, t in times.items()}
    for name in result:
        result[name]["relative_to_bp"] = result[name]["samples_per_s"] / result["bp"]["samples_per_s"]
        print(f"{name:14s} {result[name]['samples_per_s']:10.0f} samples/s  x{result[name]['relative_to_bp']:.2f} vs bp",
              file=sys.stderr)
    doc = {"net": "784-500x5-10 tanh", "batch": 128, "runs_vectorised": args.runs, "steps": args.steps,
           "repeats": args.repeats, "results": result, "provenance": provenance.record(provenance.jax_device())}
    if args.out:
        from impls.common.io import atomic_write_json
        atomic_write_json(args.out, doc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
