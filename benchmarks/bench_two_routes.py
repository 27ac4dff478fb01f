"""Training throughput (images/s) of a ResNet per two_routes rule, relative to BP, on the current JAX backend.

    python benchmarks/bench_two_routes.py [--depth 18] [--width 8] [--size 32] [--batch 32] [--steps 20]
    python benchmarks/bench_two_routes.py --cpu-grid [--depth 8] [--width 8] [--runs 1 2] [--steps 8] [--vmap]

Default: one jitted update (impls.two_routes.trainer.Trainer.step: forward, pseudogradient backward, the rule's
regulariser and its gradient, weight decay, Nesterov) is compiled per rule, warmed up twice, then timed over
``--steps`` steps (median of 3 repeats), ImageNet stem, 3 channels.

``--cpu-grid``: the shapes of the cpu grid of papers/two_routes/paper.yaml (CIFAR stem, v1, 32×32×1, batch 128)
through the compiled epoch a train job runs (impls.two_routes.compiled.CompiledBatch.train_epoch: one ``lax.scan`` over
``--steps`` steps of a batch of ``--runs`` runs on random data), compiled and run once, then timed over 2 epochs
(best of 2); images/s counts every run's images. ``--vmap`` vmaps the runs (the accelerator path) instead of
looping over them (the CPU default). Prints a markdown table; numbers depend on the host and its load.
"""
from __future__ import annotations

import argparse
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from impls.two_routes.compiled import CompiledBatch
from impls.two_routes.trainer import Trainer

RULES = ["bp", "fa", "sa", "kp", "aa", "wm", "ia"]


def spec_for(rule, args):
    return {"paper": "two_routes", "rule": rule, "dataset": "digits", "seed": 0, "epochs": 1,
            "batch_size": args.batch, "scale": "smoke",
            "model": {"arch": "resnet", "stem": "imagenet", "depth": args.depth, "width": args.width},
            "hparams": {"lr": 0.1, "warmup_epochs": 0.0, "decay_epochs": []}}


def cpu_grid_spec(rule, args):
    return {"paper": "two_routes", "rule": rule, "dataset": "fashion_mnist", "seed": 0, "epochs": 5,
            "batch_size": 128, "scale": "cpu",
            "model": {"arch": "resnet", "stem": "cifar", "depth": args.depth, "width": args.width, "version": 1},
            "hparams": {"lr": 0.1, "warmup_epochs": 1.0, "decay_epochs": [2.5, 3.75]}}


def bench(rule, args):
    trainer = Trainer(spec_for(rule, args), 10, 100)
    x = jax.random.normal(jax.random.PRNGKey(1), (args.batch, args.size, args.size, 3))
    y = jnp.arange(args.batch) % 10
    state = jax.jit(lambda k: trainer.init(k, x[:1]))(jax.random.PRNGKey(0))
    step = jax.jit(trainer.step, donate_argnums=(0,))
    t0 = time.perf_counter()
    state, out = step(state, jnp.float32(0.1), jnp.uint32(0), jax.random.PRNGKey(2), x, y)
    jax.block_until_ready(out)
    compile_s = time.perf_counter() - t0
    state, out = step(state, jnp.float32(0.1), jnp.uint32(1), jax.random.PRNGKey(2), x, y)
    jax.block_until_ready(out)
    rates = []
    for _ in range(3):
        t0 = time.perf_counter()
        for t in range(args.steps):
            state, out = step(state, jnp.float32(0.1), jnp.uint32(t), jax.random.PRNGKey(2), x, y)
        jax.block_until_ready(out)
        rates.append(args.steps * args.batch / (time.perf_counter() - t0))
    return float(np.median(rates)), compile_s


def bench_epoch(rule, runs, args):
    """images/s (all runs) of CompiledBatch.train_epoch and the seconds of its first call (compile + 1 epoch)."""
    rng = np.random.default_rng(0)
    n = 128 * args.steps
    arrays = {"x_train": rng.normal(size=(n, 32, 32, 1)).astype(np.float32),
              "y_train": rng.integers(0, 10, n).astype(np.int32),
              "x_test": rng.normal(size=(10, 32, 32, 1)).astype(np.float32),
              "y_test": rng.integers(0, 10, 10).astype(np.int32), "n_classes": 10}
    program = CompiledBatch(cpu_grid_spec(rule, args), arrays, sequential_runs=False if args.vmap else None)
    state, keys = program.init(list(range(runs)), [0.1] * runs)
    t0 = time.perf_counter()
    state, out = program.train_epoch(state, keys, 0)
    jax.block_until_ready(out)
    first = time.perf_counter() - t0
    rates = []
    for epoch in (1, 2):
        t0 = time.perf_counter()
        state, out = program.train_epoch(state, keys, epoch)
        jax.block_until_ready(out)
        rates.append(runs * n / (time.perf_counter() - t0))
    return max(rates), first


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--depth", type=int, default=None, help="default 18 (8 with --cpu-grid)")
    p.add_argument("--width", type=int, default=8)
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--steps", type=int, default=None, help="timed steps (default 20; 8 per epoch with --cpu-grid)")
    p.add_argument("--rules", nargs="*", default=None, help="default: all (bp fa sa kp with --cpu-grid)")
    p.add_argument("--cpu-grid", action="store_true", help="cpu-grid shapes through CompiledBatch.train_epoch")
    p.add_argument("--runs", type=int, nargs="*", default=[1, 2], help="--cpu-grid: runs per batch")
    p.add_argument("--vmap", action="store_true", help="--cpu-grid: vmap the runs instead of looping over them")
    args = p.parse_args()
    if args.cpu_grid:
        args.depth, args.steps = args.depth or 8, args.steps or 8
        rules = args.rules or ["bp", "fa", "sa", "kp"]
        print(f"ResNet-{args.depth} (CIFAR stem, v1, width {args.width}), 32x32x1, batch 128, {args.steps} "
              f"steps/epoch, runs {'vmapped' if args.vmap else 'per backend default'}, backend "
              f"{jax.default_backend()}, load average {os.getloadavg()[0]:.1f}")
        print("| rule | runs | images/s (all runs) | images/s per run | compile + 1st epoch (s) |\n"
              "|---|---|---|---|---|")
        for r in rules:
            for runs in args.runs:
                rate, first = bench_epoch(r, runs, args)
                print(f"| {r} | {runs} | {rate:.0f} | {rate / runs:.0f} | {first:.1f} |", flush=True)
        print(f"load average at the end {os.getloadavg()[0]:.1f}")
        return
    args.depth, args.steps = args.depth or 18, args.steps or 20
    rules = args.rules or RULES
    print(f"ResNet-{args.depth} (ImageNet stem, width {args.width}), {args.size}x{args.size}x3, batch {args.batch}, "
          f"backend {jax.default_backend()} ({jax.devices()[0].device_kind}), {args.steps} steps x 3 repeats")
    results = {r: bench(r, args) for r in rules}
    base = results.get("bp", (None,))[0]
    print("| rule | images/s | relative to BP | compile (s) |\n|---|---|---|---|")
    for r, (rate, comp) in results.items():
        rel = f"{rate / base:.2f}" if base else "-"
        print(f"| {r} | {rate:.1f} | {rel} | {comp:.1f} |")


if __name__ == "__main__":
    main()
