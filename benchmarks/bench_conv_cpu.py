"""Training speed of the JAX conv nets on the current backend (bpfree's and nodepert's): today's ops and run loop
beside the former ones, side by side in one process.

    python benchmarks/bench_conv_cpu.py [--cases bpfree:bp bpfree:fa bpfree:dfa nodepert:np nodepert:sgd]
                                        [--runs 2] [--steps 20] [--repeats 3] [--out F.json]

Nets (Fashion-MNIST-shaped random data, ``--runs`` runs per batch), through the compiled epoch a train job runs
(``CompiledBatch.train_epoch``: one ``lax.scan`` over ``--steps`` steps):

- ``bpfree``: the cpu conv rows of tab_bpfree_dfa (16c5-3p2-32c5-3p2 then FC 500-500, tanh, sigmoid + BCE,
  RMSprop, batch 64);
- ``nodepert``: All-CNN-A at a quarter of its channels, as fig_nodepert_conv at cpu scale (ReLU, sigmoid + MSE,
  SGD, batch 100; NP with σ = 1e-5).

Four variants each:

- ``lax ops, vmap``: ``jax.lax`` convolution (and bpfree's ``reduce_window`` max pool) differentiated by JAX,
  runs vmapped (the code before ``impls.common.jax_conv``);
- ``lax ops, loop``: the same ops, runs looped (``impls.common.jax_state.over_runs``);
- ``jax_conv ops, vmap``: ``impls.common.jax_conv`` ops, runs vmapped (the accelerator default);
- ``jax_conv ops, loop``: ``impls.common.jax_conv`` ops, runs looped (the CPU default).

Compilation is excluded (one warm-up epoch per variant; nodepert's module, which sets JAX's default matmul
precision to "highest" for the whole process, is imported first, so nothing is compiled again later);
variants are timed in interleaved rounds and the median taken, so a shared machine's load biases every
variant alike. Reports wall and process CPU seconds
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

from impls.bpfree import conv as bpfree_conv
from impls.common import provenance
from impls.common.specs import validate_spec
from impls.nodepert import compiled as nodepert_compiled   # sets JAX's default matmul precision for the process:
# imported before anything compiles, so that no program is traced again (outside ``lax_ops``) when it changes
from impls.nodepert import convnets

DIMS = ("NHWC", "HWIO", "NHWC")


def lax_conv2d(x, w, b):
    return jax.lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=DIMS) + b


def lax_max_pool(x, size, stride):
    return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, size, size, 1), (1, stride, stride, 1), "VALID")


def lax_conv(x, k, stride=1, padding=None, precision=None):
    return jax.lax.conv_general_dilated(x, k, (stride, stride), padding, dimension_numbers=DIMS, precision=precision)


@contextlib.contextmanager
def lax_ops():
    """The conv layers built from the plain lax primitives while compiling (traced once, kept after)."""
    saved = bpfree_conv.conv2d, bpfree_conv.max_pool, convnets.conv
    bpfree_conv.conv2d, bpfree_conv.max_pool, convnets.conv = lax_conv2d, lax_max_pool, lax_conv
    try:
        yield
    finally:
        bpfree_conv.conv2d, bpfree_conv.max_pool, convnets.conv = saved


def _arrays(n: int, n_test: int) -> dict:
    rng = np.random.default_rng(0)
    return {"x_train": rng.uniform(0, 1, (n, 784)).astype(np.float32), "y_train": rng.integers(0, 10, n),
            "x_test": rng.uniform(0, 1, (n_test, 784)).astype(np.float32), "y_test": rng.integers(0, 10, n_test),
            "n_classes": 10, "image_shape": (28, 28, 1)}


def bpfree_batch(rule: str, steps: int, runs: int, sequential: bool):
    from impls.bpfree.compiled import CompiledBatch

    spec = validate_spec({"paper": "bpfree", "rule": rule, "dataset": "fashion_mnist", "seed": 0, "epochs": 1,
                          "batch_size": 64, "scale": "cpu", "hparams": {"lr": 1e-4, "optimizer": "rmsprop"},
                          "model": {"arch": "conv", "conv": "16c5-3p2-32c5-3p2", "hidden": [500, 500],
                                    "activation": "tanh", "output": "sigmoid_bce", "scaler": "minmax",
                                    "weight_init": "zero_hidden", "feedback_init": "uniform"}})
    program = CompiledBatch(spec, _arrays(steps * 64, 64), sequential_runs=sequential)
    state, keys = program.init(np.arange(runs), np.full(runs, 1e-4))
    return lambda state, epoch: program.train_epoch(state, keys, epoch), state


def nodepert_batch(rule: str, steps: int, runs: int, sequential: bool):
    hparams = {"sigma": 1e-5, "lr": 5e-5} if rule == "np" else {"lr": 5e-3}
    spec = validate_spec({"paper": "nodepert", "rule": rule, "dataset": "fashion_mnist", "seed": 0, "epochs": 1,
                          "batch_size": 100, "scale": "cpu", "hparams": hparams,
                          "model": {"arch": "allcnn_a", "activation": "relu", "channel_scale": 0.25}})
    program = nodepert_compiled.CompiledBatch(spec, _arrays(steps * 100, 100),
                                                sequential_runs=sequential)
    params, states, keys = program.init(np.arange(runs), np.full(runs, hparams["lr"]))

    def epoch(state, t):
        params, states, loss = program.train_epoch(*state, keys, t)
        return (params, states), loss

    return epoch, (params, states)


BATCHES = {"bpfree": bpfree_batch, "nodepert": nodepert_batch}


VARIANTS = {"lax ops, vmap": (True, False), "lax ops, loop": (True, True),
            "jax_conv ops, vmap": (False, False), "jax_conv ops, loop": (False, True)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", default=["bpfree:bp", "bpfree:fa", "bpfree:dfa", "nodepert:np",
                                                        "nodepert:sgd"], help="paper:rule")
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    load_before = os.getloadavg()[0]
    timed = {}
    for case in args.cases:
        paper, rule = case.split(":")
        for variant, (reference, sequential) in VARIANTS.items():
            with lax_ops() if reference else contextlib.nullcontext():
                epoch, state = BATCHES[paper](rule, args.steps, args.runs, sequential)
                state, _ = epoch(state, 0)                       # compile + warm-up (traces the ops)
                jax.block_until_ready(state)
            timed[(case, variant)] = [epoch, state, [], []]
    for r in range(args.repeats):
        for entry in timed.values():
            epoch, state, walls, cpus = entry
            w0, c0 = time.perf_counter(), time.process_time()
            entry[1], out = epoch(state, r + 1)
            jax.block_until_ready(out)
            walls.append((time.perf_counter() - w0) / args.steps)
            cpus.append((time.process_time() - c0) / args.steps)
    load_after = os.getloadavg()[0]
    rows = [{"case": case, "variant": variant, "wall_s_per_step": float(np.median(walls)),
             "cpu_s_per_step": float(np.median(cpus))} for (case, variant), (_, _, walls, cpus) in timed.items()]
    print(f"{args.runs} runs per batch, {args.steps} steps, load {load_before:.2f} -> {load_after:.2f}")
    print("| case | variant | wall s/step | CPU s/step | speed-up (wall / CPU) vs lax ops, vmap |")
    print("|---|---|---|---|---|")
    for row in rows:
        base = next(r for r in rows if r["case"] == row["case"] and r["variant"] == "lax ops, vmap")
        print(f"| {row['case']} | {row['variant']} | {row['wall_s_per_step']:.3f} | {row['cpu_s_per_step']:.3f} | "
              f"{base['wall_s_per_step'] / row['wall_s_per_step']:.1f}x / "
              f"{base['cpu_s_per_step'] / row['cpu_s_per_step']:.1f}x |")
    doc = {"runs": args.runs, "steps": args.steps, "repeats": args.repeats, "load_before": load_before,
           "load_after": load_after, "rows": rows, "provenance": provenance.record(provenance.jax_device())}
    if args.out:
        with open(args.out, "w") as f:
            json.dump(doc, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
