"""Adversarial training with fast-gradient-sign examples (Nøkland 2016's best MNIST results, papers/bpfree/README.md
"Source-paper settings": "MNIST MLP lr 1e-4 + adversarial ε 0.08"; the method is Goodfellow, Shlens & Szegedy, ICLR
2015).

For a training batch (x, y) and ε = ``hparams.adversarial_eps`` > 0:

    x_adv = clip(x + ε · sign(∂L/∂x), range)

- L is the **true** global loss (the same batch-mean loss the run reports), its input gradient taken
  by ``jax.grad`` through the exact network (mode ``bp``) with the step's dropout masks and BN batch
  statistics, whatever the learning rule (spec silent on how dfa-torch gets it under DFA: our choice,
  README deviation). x_adv is a constant (``stop_gradient``) for the update.
- clipped to the scaler's pixel range (minmax [0, 1], standard [−1, 1]; ``pipeline.SCALER_RANGE``);
  not clipped for the unbounded z-score scalers.
- the update mixes clean and adversarial batches as Goodfellow's objective α·J(x) + (1 − α)·J(x_adv)
  with α = ½ (whether dfa-torch mixes in the clean loss is not known: the documented closest):
  the rule's update is ½ (Δ(x) + Δ(x_adv)), each estimated by the run's own rule (BP, FA, DFA, …);
  the adversarial half uses its own dropout key (``fold_in(key, ADV_KEY)``). Training loss/error,
  trackers and BN running statistics come from the clean half.

ε = 0 (the default) is off: the train step is exactly the one without this module.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from impls.bpfree import models, pipeline

#: clean-loss weight α of Goodfellow et al.'s objective α J(x) + (1 − α) J(x_adv)
ALPHA = 0.5
#: fold_in index of the adversarial half's dropout key (derived from the step's dropout key)
ADV_KEY = 1


def input_gradient(params, model_state, x, y, key, cfg: models.Config):
    """∂L/∂x of the true batch-mean loss (exact network, training mode, dropout masks from ``key``)."""
    def loss_of_x(xb):
        z, _, _ = models.apply(params, model_state, xb, key, cfg, train=True, mode="bp")
        return models.loss(z, y, cfg)

    return jax.grad(loss_of_x)(x)


def fgsm(params, model_state, x, y, key, cfg: models.Config, eps: float, scaler: str):
    """x + ε·sign(∂L/∂x), clipped to the scaler's range when it has one; a constant for autodiff."""
    g = input_gradient(params, model_state, x, y, key, cfg)
    x_adv = x + eps * jnp.sign(g)
    bounds = pipeline.SCALER_RANGE.get(scaler)
    if bounds is not None:
        x_adv = jnp.clip(x_adv, *bounds)
    return jax.lax.stop_gradient(x_adv)


def mix(clean, adv):
    """α·clean + (1 − α)·adv, leaf by leaf (the two updates of Goodfellow's objective)."""
    return jax.tree_util.tree_map(lambda c, a: ALPHA * c + (1.0 - ALPHA) * a, clean, adv)
