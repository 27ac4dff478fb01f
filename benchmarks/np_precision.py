"""Why node perturbation needs full float32 matmuls (papers/nodepert/README.md, "Numerical precision"), measured on
this machine's JAX.

With sigma = 1e-4 the noisy and clean losses differ by ~1e-4 relative, below TF32's input
rounding (~5e-4): on GPUs whose default float32 matmul is TF32, the estimate is corrupted. This
compares, for one Fashion-MNIST-shaped minibatch and the SAME noise, the NP estimate computed
with matmul precision "highest" (what impls/nodepert uses) and "default" (TF32 on A100/H100):
cosine between the two estimates, norm ratio, and each one's cosine with the true gradient
(averaged over noise draws). On a CPU both precisions are float32 and the cosine is 1.

    python benchmarks/np_precision.py [--draws 200] [--out benchmarks/out/np_precision.json]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from impls.nodepert import models  # noqa: E402
from impls.nodepert.rules import draw_noise, estimate_with_noise  # noqa: E402


def flat(tree):
    return jnp.concatenate([leaf.ravel() for leaf in jax.tree_util.tree_leaves(tree)])


def cosine(a, b):
    return float(a @ b / (jnp.linalg.norm(a) * jnp.linalg.norm(b)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--draws", type=int, default=200)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out" / "np_precision.json")
    args = parser.parse_args()
    k_init, k_x, k_y, k_noise = jax.random.split(jax.random.PRNGKey(0), 4)
    params = models.init_mlp(k_init, [784, 500, 500, 10])
    x = jax.random.normal(k_x, (100, 784))
    y = jax.nn.one_hot(jax.random.randint(k_y, (100,), 0, 10), 10)
    sigma = 1e-4
    with jax.default_matmul_precision("highest"):
        true_grad = flat(jax.grad(models.mean_loss)(params, x, y))

    def estimate(key, precision):
        with jax.default_matmul_precision(precision):
            noise = draw_noise(key, params, sigma, 100, shared_noise=True)
            return flat(estimate_with_noise(params, x, y, noise, sigma)[0])

    results = {}
    for precision in ("highest", "default"):
        fn = jax.jit(jax.vmap(lambda k, p=precision: estimate(k, p)))
        results[precision] = fn(jax.random.split(k_noise, args.draws))
    same_noise = [cosine(a, b) for a, b in zip(results["highest"], results["default"])]
    report = {
        "backend": jax.default_backend(), "device": jax.devices()[0].device_kind, "draws": args.draws,
        "cos_highest_vs_default_same_noise_mean": sum(same_noise) / len(same_noise),
        "norm_ratio_default_over_highest": float(jnp.mean(jnp.linalg.norm(results["default"], axis=1)
                                                          / jnp.linalg.norm(results["highest"], axis=1))),
        "cos_with_true_gradient_of_mean_estimate": {
            p: cosine(results[p].mean(0), true_grad) for p in results},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
