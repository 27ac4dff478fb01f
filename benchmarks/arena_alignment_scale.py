"""How large the Two Routes regularisers act on each layer of the arena's nets, at initialisation.

The Two Routes primitives (``impls.two_routes.primitives``) take the batch mean of a sum over every other
axis, as that paper's code does. On a conv layer the sum runs over every output position, so the input
statistic they see, Σ = E[Σ_positions p pᵀ] over the layer's input patches p, grows with the feature map's
area and with the input's second moment. With each rule's default coefficients
(``impls.two_routes.rules``) this prints, per layer of the figure's net:

- WM, R = α·decay + β·amp, ∂R/∂B = 2αB − βΣWᵀ: the fixed point B* = (β / 2α) ΣWᵀ, as ‖B*‖ / ‖W‖. Plain
  SGD moves B towards it by the fraction 2α·lr of the gap per step. Where the ratio is in the hundreds, B
  outgrows W long before it gets there and the error sent down through B grows layer by layer.
- AA, R = α·sparse + β·amp, quadratic in B with Hessian 2αΣ: plain SGD on B is stable only for
  lr < 2 / λ_max(2αΣ) = 1 / (α λ_max(Σ)).
- IA, R = α·amp + β·null + γ·decay, quadratic in B through β·null = β·E‖BWx‖², Hessian 2β(WΣWᵀ ⊗ I):
  plain SGD on B is stable only for lr < 1 / (β λ_max(WΣWᵀ)) (γ·decay adds 2γ, left out here).

Both limits come from a power iteration on the term's gradient, B ↦ ∂term/∂B, which is linear in B.

The weights are a run's initial draw (``impls.arena.nets``, ``--seed``), the inputs the first ``--n``
training examples of the dataset, prepared as the arena prepares them (``impls.arena.data``); the nets
are those of the ``--scale`` specs of tab_arena_conv and tab_arena_leaderboard (papers/arena/paper.yaml).

``--trace RULE`` then trains that rule's conv contender (``impls.arena.jax_conv_rules``) with plain SGD at
``--lr`` on the arena's minibatches of epoch 1 (``impls.arena.data.epoch_order``) and prints the loss,
‖K_l‖, ‖B_l‖ and the norm of K_1's update direction every 50 steps, until the loss turns non-finite or
``--steps`` have run.

    .venv/bin/python benchmarks/arena_alignment_scale.py --npz resources/datasets/fashion_mnist.npz \\
        [--scale cpu] [--n 512] [--seed 0] [--trace wm --lr 0.001 --steps 860] [--out f.json]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

POWER_ITERATIONS = 60


def wm_fixed_point_ratio(x, kf, geo, alpha: float, beta: float) -> float:
    """‖B*‖ / ‖W‖ for WM's B* = (β / 2α) ΣWᵀ = −(β / 2α) ∂amp/∂B (amp is linear in B)."""
    import jax
    import jax.numpy as jnp

    from impls.two_routes import primitives as P

    sigma_wt = -jax.grad(lambda kb: P.amp(x, kf, kb, geo))(jnp.zeros_like(kf))
    return float(beta / (2 * alpha) * jnp.linalg.norm(sigma_wt) / jnp.linalg.norm(kf))


def max_stable_lr(x, kf, geo, term: str, coefficient: float, seed: int = 0) -> float:
    """2 / λ_max(coefficient · ∂²term/∂B²): the largest plain-SGD rate at which a term that is quadratic in B
    (sparse: Hessian 2Σ; null: 2 WΣWᵀ) does not blow B up."""
    import jax
    import jax.numpy as jnp

    from impls.two_routes import primitives as P

    # linear in B: H·B (x and W are arguments, not constants, so that XLA does not fold their convolutions)
    hessian_times = jax.jit(jax.grad(lambda kb, x, kf: P.PRIMITIVES[term](x, kf, kb, geo)))
    v, lam = jax.random.normal(jax.random.PRNGKey(seed), kf.shape), 0.0
    for _ in range(POWER_ITERATIONS):
        w = hessian_times(v, x, kf)
        lam = float(jnp.linalg.norm(w) / jnp.linalg.norm(v))
        v = w / jnp.linalg.norm(w)
    return 2.0 / (coefficient * lam)


def layer_rows(net_name: str, x, kernels, geometries, activation) -> list[dict]:
    """One row per layer: its input shape, WM's ‖B*‖/‖W‖, AA's and IA's largest stable rates (default coefficients)."""
    from impls.two_routes.rules import rule_for_spec

    wm, aa, ia = (rule_for_spec(name, {}).terms for name in ("wm", "aa", "ia"))
    rows, h = [], x
    for l, (k, geo) in enumerate(zip(kernels, geometries)):
        if geo.kind == "dense" and h.ndim > 2:
            h = h.reshape(h.shape[0], -1)
        rows.append({"net": net_name, "layer": l + 1, "kind": geo.kind, "input_shape": list(h.shape[1:]),
                     "wm_fixed_point_over_w": wm_fixed_point_ratio(h, k, geo, wm["decay"], wm["amp"]),
                     "aa_max_stable_lr": max_stable_lr(h, k, geo, "sparse", aa["sparse"]),
                     "ia_max_stable_lr": max_stable_lr(h, k, geo, "null", ia["null"])})
        h = activation(geo.fwd(h, k))
    return rows


def conv_net(spec: dict, data):
    """(model options, the data as images, the ConvNet) of a tab_arena_conv spec, as the arena builds them."""
    from impls.arena import data as arena_data
    from impls.arena import nets, options

    model = options.resolved_model(spec)
    images = arena_data.as_images(data, f"dataset {spec['dataset']}")
    net = nets.ConvNet(tuple(images.image_shape), tuple(model["channels"]), tuple(model["strides"]),
                       images.n_classes)
    return model, images, net


def conv_rows(spec: dict, data, seed: int, n: int) -> list[dict]:
    import jax.numpy as jnp

    from impls.arena import nets
    from impls.arena.jax_rules import ACT
    from impls.two_routes.primitives import DENSE, Geometry

    model, images, net = conv_net(spec, data)
    kernels = [jnp.asarray(k) for k in nets.conv_weights(seed, net)]
    geometries = [Geometry("conv", s, "SAME") for s in net.strides] + [DENSE]
    name = "conv " + "-".join(map(str, net.channels))
    return layer_rows(name, jnp.asarray(images.x_train[:n]), kernels, geometries, ACT[model["activation"]])


def mlp_rows(spec: dict, data, seed: int, n: int) -> list[dict]:
    import jax.numpy as jnp

    from impls.arena import nets, options
    from impls.arena.jax_rules import ACT
    from impls.two_routes.primitives import DENSE

    model = options.resolved_model(spec)
    sizes = nets.layer_sizes(data.in_dim, model["hidden"], data.n_classes)
    kernels = [jnp.asarray(w) for w in nets.initial_weights(seed, sizes)]
    return layer_rows("MLP " + "-".join(map(str, sizes)), jnp.asarray(data.x_train[:n]), kernels,
                      [DENSE] * len(kernels), ACT[model["activation"]])


def trace(rule: str, spec: dict, data, seed: int, lr: float, steps: int, every: int = 50) -> list[dict]:
    """Plain SGD on the conv contender ``rule`` (two_routes rules: params {"kf": [...], "kb": [...]})."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from impls.arena import data as arena_data
    from impls.arena import jax_conv_rules, options

    model, images, net = conv_net(spec, data)
    contender = jax_conv_rules.build(rule, net, model["activation"], options.resolved_hparams(spec))
    params, state = contender.init(seed)

    @jax.jit
    def step(params, state, x, y):
        grads, state, loss = contender.estimate(params, state, x, y, jax.random.PRNGKey(seed))
        return jax.tree_util.tree_map(lambda p, g: p - lr * g, params, grads), state, loss, grads

    norms = lambda ks: [round(float(jnp.linalg.norm(k)), 3) for k in ks]   # noqa: E731
    order, batch, rows = arena_data.epoch_order(seed, 1, len(images.x_train)), int(spec["batch_size"]), []
    for t in range(min(steps, len(order) // batch)):
        i = order[t * batch:(t + 1) * batch]
        params, state, loss, grads = step(params, state, jnp.asarray(images.x_train[i]), jnp.asarray(images.y_train[i]))
        if t % every == 0 or not np.isfinite(float(loss)):
            rows.append({"step": t, "loss": float(loss), "norm_K": norms(params["kf"]), "norm_B": norms(params["kb"]),
                         "norm_grad_K1": norms(grads["kf"][:1])[0]})
            print(rows[-1], flush=True)
            if not np.isfinite(float(loss)):
                break
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--npz", type=Path, required=True,
                        help="a dataset cache, e.g. resources/datasets/fashion_mnist.npz")
    parser.add_argument("--scale", default="cpu", choices=["smoke", "cpu", "paper"])
    parser.add_argument("--n", type=int, default=512, help="training examples that estimate Σ")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--trace", choices=["wm", "ia", "sa", "aa", "kp", "kp_equal_leak"],
                        help="train this Two Routes rule on the conv net and print its norms")
    parser.add_argument("--lr", type=float, default=0.001)
    parser.add_argument("--steps", type=int, default=860, help="at most one epoch")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    if not args.npz.exists():
        parser.error(f"--npz {args.npz}: no such file (build it with the dataset rule, e.g. "
                     f"snakemake --cores 1 resources/datasets/fashion_mnist.npz)")
    from benchmarks.bench_arena import figure_specs
    from impls.arena import data as arena_data

    rows, specs = [], {}
    for figure, rows_of in (("tab_arena_conv", conv_rows), ("tab_arena_leaderboard", mlp_rows)):
        specs[figure] = {**next(iter(figure_specs(figure, args.scale).values())), "dataset": args.npz.stem}
        data = arena_data.load(specs[figure], args.npz.parent)
        rows += rows_of(specs[figure], data, args.seed, args.n)
    print(f"{'net':<22} {'layer':>5} {'input':>14} {'WM |B*|/|W|':>12} {'AA lr max':>10} {'IA lr max':>10}")
    for r in rows:
        shape = "x".join(map(str, r["input_shape"]))
        print(f"{r['net']:<22} {r['layer']:>5} {shape:>14} {r['wm_fixed_point_over_w']:>12.1f} "
              f"{r['aa_max_stable_lr']:>10.3g} {r['ia_max_stable_lr']:>10.3g}")
    traced = []
    if args.trace:
        spec = specs["tab_arena_conv"]
        print(f"{args.trace} on the conv net, plain SGD at lr {args.lr}, seed {args.seed}:")
        traced = trace(args.trace, spec, arena_data.load(spec, args.npz.parent), args.seed, args.lr, args.steps)
    if args.out:
        args.out.write_text(json.dumps({"npz": str(args.npz), "scale": args.scale, "n": args.n, "seed": args.seed,
                                        "rows": rows, "trace": {"rule": args.trace, "lr": args.lr, "steps": traced}},
                                       indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
