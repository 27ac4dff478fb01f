"""Gradient estimators of the node-perturbation paper: ``np`` (paper-era), its variants, ``sgd``.

Node perturbation (papers/nodepert/README.md, "The node-perturbation estimate"; Mehta et al., "On the limitations of
perturbation based methods for training deep networks", code countzerozzz/nodepert at de296eb). Per update, on one
minibatch of B examples:

1. clean pass:  L_i = L(f(x_i; θ), y_i)
2. noisy pass:  ã_l = W_l h̃_{l−1} + b_l + ξ_l,  ξ_l ~ N(0, σ² I) on every layer, output included
3. δL_i = L_i(noisy) − L_i(clean)                                   (per example)
4. g_{W_l} = (1/B) Σ_i (δL_i / σ²) ξ_l h̃_{l−1,i}ᵀ,   g_{b_l} = (1/B) Σ_i (δL_i / σ²) ξ_l

``np``: one ξ_l per layer per update, shared by every example of the minibatch (so
g_{W_l} = ξ_l (Σ_i c_i h̃_{l−1,i})ᵀ with c_i = δL_i/(Bσ²): a rank-one update).
``np_indep_noise``: an independent ξ_{l,i} per example (g_{W_l} = Σ_i c_i ξ_{l,i} h̃_{l−1,i}ᵀ).
Presynaptic activity h̃ is taken from the noisy pass. Both estimators are unbiased to first
order in σ: E[g] = ∇_θ (1/B) Σ_i L_i.
``np_clean_pre``: as ``np`` with the clean presynaptic activity h_{l−1} in place of h̃_{l−1}.
``np_batch_scalar`` (2023 HEAD, not the paper): one scalar δL = mean_i δL_i,
g_{W_l} = (δL/σ²) ξ_l (mean_i h̃_{l−1,i})ᵀ, g_{b_l} = (δL/σ²) ξ_l.

``sgd``: the exact minibatch gradient of the same loss (``impls.rules.backprop``).
All rules feed an optax optimiser (``impls.nodepert.compiled.make_optimizer``): the paper uses
plain SGD (θ ← θ − lr·g); the ``*_wd`` and ``*_adam`` rules share these estimators and differ
only in the optimiser.
"""
from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp

from impls.nodepert import models
from impls.nodepert.options import estimator_name
from impls.rules import LearningRule, stateless_init
from impls.rules.backprop import backprop


def estimate_with_noise(params, x, y, noise, sigma: float, activation: str = "relu",
                        presynaptic: str = "noisy", batch_scalar: bool = False):
    """The node-perturbation estimate for given noise, plus the clean minibatch loss.

    ``noise[l]`` has shape (out_l,) (shared across the minibatch) or (B, out_l) (per example).
    ``presynaptic``: "noisy" (the paper: h̃ from the noisy pass) or "clean" (``np_clean_pre``).
    ``batch_scalar``: use the batch-mean δL and batch-mean h̃ (``np_batch_scalar``; shared noise only).
    """
    batch = x.shape[0]
    clean_out, clean_inputs, first_preact = models.forward(params, x, activation=activation)
    noisy_out, noisy_inputs, _ = models.forward(params, x, noise, activation, first_preact)
    clean_loss = models.per_example_loss(clean_out, y)
    delta = models.per_example_loss(noisy_out, y) - clean_loss
    inputs = noisy_inputs if presynaptic == "noisy" else clean_inputs
    if batch_scalar:
        scale = delta.mean() / sigma ** 2
        return ([{"w": scale * jnp.outer(xi, h.mean(0)), "b": scale * xi} for xi, h in zip(noise, inputs)],
                clean_loss.mean())
    coef = delta / (batch * sigma ** 2)                          # c_i, shape (B,)
    grads = []
    for xi, h in zip(noise, inputs):
        if xi.ndim == 1:                                          # shared: rank-one update
            grads.append({"w": jnp.outer(xi, coef @ h), "b": xi * coef.sum()})
        else:
            weighted = coef[:, None] * xi                         # (B, out)
            grads.append({"w": weighted.T @ h, "b": weighted.sum(0)})
    return grads, clean_loss.mean()


def draw_noise(key, params, sigma: float, batch: int, shared_noise: bool):
    """ξ_l ~ N(0, σ² I) for every layer (output included): (out_l,) if shared, else (B, out_l)."""
    keys = jax.random.split(key, len(params))
    return [sigma * jax.random.normal(k, ((layer["b"].shape[0],) if shared_noise else
                                          (batch, layer["b"].shape[0])), jnp.float32)
            for k, layer in zip(keys, params)]


def node_perturbation(sigma: float, shared_noise: bool = True, activation: str = "relu",
                      presynaptic: str = "noisy", batch_scalar: bool = False) -> LearningRule:
    """Node-perturbation estimator for ``models.forward`` MLPs.

    Args:
      sigma: standard deviation of the pre-activation noise (1e-4 for FC nets in the paper).
      shared_noise: True = one noise vector per layer shared across the minibatch (``np``);
        False = independent noise per example (``np_indep_noise``).
      activation: "relu" (sigmoid output) or "linear".
      presynaptic: "noisy" (paper) or "clean" (``np_clean_pre``).
      batch_scalar: scalar batch δL and batch-mean activity (``np_batch_scalar``).
    """

    def estimate(params, state, x, y, key):
        # sigma = 1e-4 is below TF32 rounding: both passes at full float32 whatever the
        # process-wide default (papers/nodepert/README.md, "Numerical precision"; benchmarks/np_precision.py measures
        # the difference)
        with jax.default_matmul_precision("highest"):
            noise = draw_noise(key, params, sigma, x.shape[0], shared_noise)
            grads, loss = estimate_with_noise(params, x, y, noise, sigma, activation, presynaptic, batch_scalar)
        return grads, state, {"loss": loss}

    return LearningRule(init=stateless_init, estimate=estimate)


def make_rule(name: str, hparams: dict, activation: str = "relu") -> LearningRule:
    """The gradient estimator of the rule a run spec names (see ``impls.nodepert.options.RULES``).

    ``np_adam``/``np_wd`` use the ``np`` estimator, ``sgd_adam``/``sgd_wd`` the exact gradient;
    their optimiser is ``impls.nodepert.compiled.make_optimizer``'s business.
    """
    base = estimator_name(name)
    if base == "sgd":
        return backprop(partial(models.mean_loss, activation=activation))
    variants = {"np": {}, "np_indep_noise": {"shared_noise": False}, "np_clean_pre": {"presynaptic": "clean"},
                "np_batch_scalar": {"batch_scalar": True}}
    if base in variants:
        return node_perturbation(float(hparams["sigma"]), activation=activation, **variants[base])
    raise ValueError(f"unknown nodepert rule {name!r}")
