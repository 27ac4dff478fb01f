"""One two_routes run's model, loss and update, and its alignment measurements (papers/two_routes/README.md,
"Objective", "Metrics").

Callers: the programs the common driver trains -- ``impls.two_routes.compiled`` (resident data, runs
stacked on a leading axis and vmapped or mapped over) and ``impls.two_routes.imagenet_program``
(streamed ImageNet, data-parallel over devices) -- and the benchmarks.

Per step (ALGO LOGIC): L = ρ_task·(CE + L2) + ρ_align·Σ_l R_l (both rates 1 unless ``delay_epochs``,
``alternate_step_freq`` or ``constant_rate`` say otherwise; R's coefficients follow their schedules:
impls.two_routes.schedules); gradients of L by the layers' pseudogradients (W) and R (B); + ρ_task·wd·W on
forward kernels and the FC bias; Nesterov momentum 0.9 with
linear warm-up and ×0.1 steps; NoisyOptimizer adds lr_t·ξ, ξ ~ N(0, v), to B (or to everything).

Alignment (``Trainer.alignment``): per-layer angles on one batch with BN in training mode: weight_angle
∠(K_f, K_b), projection_angle ∠(Wx, Bᵀx) and gradient_angle ∠(Bδ, Wᵀδ) for the CE error δ.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from impls.two_routes import models, options, schedules
from impls.two_routes.layers import angle_from_stats
from impls.two_routes.projections import RegularizerOptions
from impls.two_routes.rules import rule_for_spec


def lr_shape(t, steps_per_epoch: int, hp: dict):
    """Multiplier of the peak lr at global step t: linear warm-up from 0, then ×0.1 at each decay epoch;
    the epoch is shifted by ``delay_epochs`` and every milestone stretched ×(k+1) by ``alternate_step_freq``
    (impls.two_routes.schedules)."""
    e, stretch = schedules.lr_epoch_and_stretch(t, steps_per_epoch, hp)
    warm = hp["warmup_epochs"] * stretch
    ramp = jnp.where(warm > 0, jnp.minimum(e / jnp.maximum(warm, 1e-9), 1.0), 1.0)
    drops = (sum((e >= float(d) * stretch).astype(jnp.float32) for d in hp["decay_epochs"])
             if hp["decay_epochs"] else 0.0)
    return ramp * 0.1 ** drops


def _path_keys(path):
    return [getattr(p, "key", str(p)) for p in path]


def decay_mask(params):
    """True on forward kernels and the classifier bias (README "Objective": not BN, not B)."""
    return jax.tree_util.tree_map_with_path(
        lambda p, _: _path_keys(p)[-1] == "kernel" or _path_keys(p)[-2:] == ["dense", "bias"], params)


def backward_mask(params):
    return jax.tree_util.tree_map_with_path(lambda p, _: _path_keys(p)[-1] == "backward_kernel", params)


class Trainer:
    """Model, loss and one update for one run (vmapped by the callers)."""

    def __init__(self, spec: dict, n_classes: int, steps_per_epoch: int):
        self.hp = options.hparams(spec)
        self.rule = rule_for_spec(spec["rule"], self.hp)
        dist = None if self.hp["input_distribution"] == "none" else self.hp["input_distribution"]
        mcfg = options.model_config(spec)
        reg = RegularizerOptions(**{k: bool(self.hp[k]) for k in options.REGULARIZER_FLAGS})
        self.model = models.build(mcfg, n_classes, models.LayerOptions(self.rule, False, dist, self.hp["input_stddev"],
                                                                      reg))
        self.probe_model = models.build(mcfg, n_classes, models.LayerOptions(self.rule, True, dist,
                                                                            self.hp["input_stddev"], reg))
        self.n_classes = n_classes
        self.steps_per_epoch = steps_per_epoch
        self.train_epochs = float(spec.get("epochs", 1))
        defaults = options.schedule_keys()
        self.scheduled = any(self.hp[k] != d for k, d in defaults.items())   # static: else R is summed as sown
        self.tx = optax.trace(decay=self.hp["momentum"], nesterov=True)

    def init(self, key, x):
        var = self.model.init({"params": key}, x[:1], train=False)
        params = var["params"]
        opt = {"fwd": self.tx.init(params), "bwd": self.tx.init(params)}
        return {"params": params, "batch_stats": var.get("batch_stats", {}), "opt": opt}   # FC: no BN

    def probes(self, key, x):
        return self.probe_model.init({"params": key}, x[:1], train=False)["probes"]

    def loss(self, params, batch_stats, x, labels, key, t=0, rates=(1.0, 1.0)):
        """ρ_task·CE + ρ_align·Σ_l R_l at update t, R's coefficients scheduled (impls.two_routes.schedules)."""
        collection = "primitives" if self.scheduled else "losses"
        out, mut = self.model.apply({"params": params, "batch_stats": batch_stats}, x, train=True,
                                    mutable=["batch_stats", collection], rngs={"noise": key})
        ce = optax.softmax_cross_entropy_with_integer_labels(out, labels).mean()
        if self.scheduled:
            coefs = self.rule.term_coefficients(t, self.steps_per_epoch, self.train_epochs, self.hp)
            reg = self.rule.weighted(_sum_by_term(mut.get("primitives", {})), coefs) if self.rule.terms else 0.0
            reg = jnp.asarray(reg, jnp.float32)
        else:
            reg = sum(jax.tree_util.tree_leaves(mut.get("losses", {})), jnp.zeros(()))
        return rates[0] * ce + rates[1] * reg, (ce, reg, out, mut.get("batch_stats", {}))

    def step(self, state, lr, t, key, x, labels):
        """One update of one run; returns (state, {loss, R, acc})."""
        hp = self.hp
        k_r, k_noise = jax.random.split(key)
        rho_task, rho_align = schedules.rates(t, self.steps_per_epoch, hp)
        grads, (ce, reg, out, new_stats) = jax.grad(self.loss, has_aux=True)(
            state["params"], state["batch_stats"], x, labels, k_r, t, (rho_task, rho_align))
        params = state["params"]
        dmask, bmask = decay_mask(params), backward_mask(params)
        wd = rho_task * hp["wd"]                          # L2 is part of the task loss (README "Objective")
        grads = jax.tree_util.tree_map(lambda g, p, m: g + wd * p if m else g, grads, params, dmask)
        lr_t = lr * lr_shape(t, self.steps_per_epoch, hp)
        fwd_dir, opt_f = self.tx.update(grads, state["opt"]["fwd"])
        opt_b = state["opt"]["bwd"]
        if hp["optimizer_split"] == "separate":
            bwd_dir, opt_b = self.tx.update(grads, opt_b)
            new = jax.tree_util.tree_map(lambda p, f, b, m: p - (hp["b_lr"] * b if m else lr_t * f),
                                         params, fwd_dir, bwd_dir, bmask)
        else:
            new = jax.tree_util.tree_map(lambda p, f: p - lr_t * f, params, fwd_dir)
        if hp["noise_var"] > 0:
            only_b = hp["noise_target"] == "backward" or self.rule.tie
            leaves, treedef = jax.tree_util.tree_flatten(new)
            keys = jax.random.split(k_noise, len(leaves))
            masks = jax.tree_util.tree_leaves(bmask)
            sd = jnp.sqrt(hp["noise_var"])
            leaves = [p + (lr_t * sd * jax.random.normal(k, p.shape, p.dtype) if (m or not only_b) else 0.0)
                      for p, k, m in zip(leaves, keys, masks)]
            new = jax.tree_util.tree_unflatten(treedef, leaves)
        acc = 100.0 * jnp.mean(jnp.argmax(out, -1) == labels)
        state = {"params": new, "batch_stats": new_stats, "opt": {"fwd": opt_f, "bwd": opt_b}}
        return state, {"loss": ce, "R": reg, "acc": acc}

    def alignment(self, params, batch_stats, probes, x, labels, key):
        """Per-layer {weight_angle, projection_angle, gradient_angle} (degrees) on one batch."""
        def task(pr):
            out, mut = self.probe_model.apply({"params": params, "batch_stats": batch_stats, "probes": pr}, x,
                                              train=True, mutable=["batch_stats", "metrics", "losses"],
                                              rngs={"noise": key})
            return optax.softmax_cross_entropy_with_integer_labels(out, labels).mean(), mut["metrics"]

        stats, mets = jax.grad(task, has_aux=True)(probes)
        out = {}
        for path, v in jax.tree_util.tree_flatten_with_path(mets)[0]:
            keys = [p.key for p in path if hasattr(p, "key")]        # drop sow's tuple index
            name = [k for k in keys if k not in ("weight_angle", "projection_angle")]
            kind = [k for k in keys if k in ("weight_angle", "projection_angle")][0]
            out[f"{kind}:{'/'.join(name)}"] = v
        for path, s in jax.tree_util.tree_flatten_with_path(stats)[0]:
            out[f"gradient_angle:{'/'.join(_path_keys(path)[:-1])}"] = angle_from_stats(s)
        return out

    def evaluate_chunk(self, params, batch_stats, x):
        return self.model.apply({"params": params, "batch_stats": batch_stats}, x, train=False)


def _sum_by_term(primitives) -> dict:
    """{term: Σ over layers} of the ``primitives`` collection ({layer...: {term: (value,)}})."""
    out = {}
    for path, v in jax.tree_util.tree_flatten_with_path(primitives)[0]:
        term = [p.key for p in path if hasattr(p, "key")][-1]
        out[term] = out.get(term, 0.0) + v
    return out


def topk_correct(logits, labels, k):
    top = jnp.argsort(logits, axis=-1)[..., ::-1][..., :k]
    return jnp.any(top == labels[..., None], axis=-1).astype(jnp.float32)

