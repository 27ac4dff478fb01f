"""Training throughput (images/s) of a ResNet per two_routes rule, relative to BP, on the current JAX backend.

    python benchmarks/bench_two_routes.py [--depth 18] [--width 8] [--size 32] [--batch 32] [--steps 20]

One jitted update (impls.two_routes.train.Trainer.step: forward, pseudogradient backward, the rule's
regulariser and its gradient, weight decay, Nesterov) is compiled per rule, warmed up twice, then timed over
``--steps`` steps (median of 3 repeats). Prints a markdown table; numbers depend on the host and its load.
"""
from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

from impls.two_routes.train import Trainer

RULES = ["bp", "fa", "sa", "kp", "aa", "wm", "ia"]


def spec_for(rule, args):
    return {"paper": "two_routes", "rule": rule, "dataset": "digits", "seed": 0, "epochs": 1,
            "batch_size": args.batch, "scale": "smoke",
            "model": {"arch": "resnet", "stem": "imagenet", "depth": args.depth, "width": args.width},
            "hparams": {"lr": 0.1, "warmup_epochs": 0.0, "decay_epochs": []}}


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


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--depth", type=int, default=18)
    p.add_argument("--width", type=int, default=8)
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--rules", nargs="*", default=RULES)
    args = p.parse_args()
    print(f"ResNet-{args.depth} (ImageNet stem, width {args.width}), {args.size}x{args.size}x3, batch {args.batch}, "
          f"backend {jax.default_backend()} ({jax.devices()[0].device_kind}), {args.steps} steps x 3 repeats")
    results = {r: bench(r, args) for r in args.rules}
    base = results.get("bp", (None,))[0]
    print("| rule | images/s | relative to BP | compile (s) |\n|---|---|---|---|")
    for r, (rate, comp) in results.items():
        rel = f"{rate / base:.2f}" if base else "-"
        print(f"| {r} | {rate:.1f} | {rel} | {comp:.1f} |")


if __name__ == "__main__":
    main()
