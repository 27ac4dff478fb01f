"""Training speed of a bpfree conv batch on the current JAX backend: today's ops and run loop beside the
former ones, side by side in one process.

    python benchmarks/bench_bpfree_conv.py [--rules bp fa dfa] [--runs 2] [--steps 40] [--repeats 3] [--out F.json]

The cpu-scale conv net of tab_bpfree_dfa (Fashion-MNIST-shaped random data, 16c5-3p2-32c5-3p2 then FC 500-500,
tanh, sigmoid + BCE, RMSprop, batch 64), ``--runs`` runs per batch, through the compiled epoch a train job runs
(``impls.bpfree.compiled.CompiledBatch.train_epoch``: one ``lax.scan`` over ``--steps`` steps). Four variants:

- ``lax ops, vmap``: the convolution and max pooling of ``jax.lax`` differentiated by JAX, runs vmapped (the
  code before ``impls.common.jax_conv``);
- ``lax ops, loop``: the same ops, runs looped (``impls.common.jax_state.over_runs``);
- ``jax_conv ops, vmap``: ``impls.common.jax_conv`` ops, runs vmapped (the accelerator default);
- ``jax_conv ops, loop``: ``impls.common.jax_conv`` ops, runs looped (the CPU default).

Compilation is excluded (one warm-up epoch per variant); variants are timed in interleaved rounds and the
median taken, so a shared machine's load biases every variant alike. Reports wall and process CPU seconds
per step and the 1-minute load average before and after; numbers depend on the host and its load.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from impls.bpfree import conv
from impls.bpfree.compiled import CompiledBatch
from impls.common import provenance
from impls.common.specs import validate_spec

MODEL = {"arch": "conv", "conv": "16c5-3p2-32c5-3p2", "hidden": [500, 500], "activation": "tanh",
         "output": "sigmoid_bce", "scaler": "minmax", "weight_init": "zero_hidden", "feedback_init": "uniform"}
BATCH = 64


def lax_conv2d(x, w, b):
    return jax.lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")) + b


def lax_max_pool(x, size, stride):
    return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, size, size, 1), (1, stride, stride, 1), "VALID")


@contextlib.contextmanager
def lax_ops():
    """bpfree's conv layers built from the plain lax primitives while compiling (traced once, kept after)."""
    saved = conv.conv2d, conv.max_pool
    conv.conv2d, conv.max_pool = lax_conv2d, lax_max_pool
    try:
        yield
    finally:
        conv.conv2d, conv.max_pool = saved


def program(rule: str, steps: int, sequential: bool) -> CompiledBatch:
    spec = validate_spec({"paper": "bpfree", "rule": rule, "dataset": "fashion_mnist", "seed": 0, "epochs": 1,
                          "batch_size": BATCH, "scale": "cpu", "model": MODEL,
                          "hparams": {"lr": 1e-4, "optimizer": "rmsprop"}})
    rng = np.random.default_rng(0)
    n = steps * BATCH
    arrays = {"x_train": rng.uniform(0, 1, (n, 784)).astype(np.float32), "y_train": rng.integers(0, 10, n),
              "x_test": rng.uniform(0, 1, (BATCH, 784)).astype(np.float32), "y_test": rng.integers(0, 10, BATCH),
              "n_classes": 10, "image_shape": (28, 28, 1)}
    return CompiledBatch(spec, arrays, sequential_runs=sequential)


VARIANTS = {"lax ops, vmap": (True, False), "lax ops, loop": (True, True),
            "jax_conv ops, vmap": (False, False), "jax_conv ops, loop": (False, True)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rules", nargs="+", default=["bp", "fa", "dfa"])
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    load_before = os.getloadavg()[0]
    seeds, lrs = np.arange(args.runs), np.full(args.runs, 1e-4)
    cases = {}
    for rule in args.rules:
        for variant, (reference, sequential) in VARIANTS.items():
            with lax_ops() if reference else contextlib.nullcontext():
                p = program(rule, args.steps, sequential)
                state, keys = p.init(seeds, lrs)
                state, _ = p.train_epoch(state, keys, 0)              # compile + warm-up (traces the ops)
                jax.block_until_ready(state)
            cases[(rule, variant)] = [p, keys, state, [], []]
    for r in range(args.repeats):
        for case in cases.values():
            p, keys, state, walls, cpus = case
            w0, c0 = time.perf_counter(), time.process_time()
            case[2], out = p.train_epoch(state, keys, r + 1)
            jax.block_until_ready(out)
            walls.append((time.perf_counter() - w0) / args.steps)
            cpus.append((time.process_time() - c0) / args.steps)
    load_after = os.getloadavg()[0]
    rows = []
    for (rule, variant), (_, _, _, walls, cpus) in cases.items():
        rows.append({"rule": rule, "variant": variant, "wall_s_per_step": float(np.median(walls)),
                     "cpu_s_per_step": float(np.median(cpus))})
    print(f"| rule | variant | wall s/step | CPU s/step | vs lax ops, vmap |  (batch {BATCH}, {args.runs} runs, "
          f"load {load_before:.2f} -> {load_after:.2f})")
    print("|---|---|---|---|---|")
    for row in rows:
        base = next(r for r in rows if r["rule"] == row["rule"] and r["variant"] == "lax ops, vmap")
        print(f"| {row['rule']} | {row['variant']} | {row['wall_s_per_step']:.3f} | {row['cpu_s_per_step']:.3f} | "
              f"{base['wall_s_per_step'] / row['wall_s_per_step']:.1f}x |")
    doc = {"net": MODEL["conv"] + " + FC 500-500", "batch": BATCH, "runs": args.runs, "steps": args.steps,
           "repeats": args.repeats, "load_before": load_before, "load_after": load_after, "rows": rows,
           "provenance": provenance.record(provenance.jax_device())}
    if args.out:
        with open(args.out, "w") as f:
            json.dump(doc, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
