"""Fully connected networks of the node-perturbation paper (papers/nodepert/README.md, "Networks and loss" and
"Initialisation, data and training loop").

[D] + [width] x n_hl + [10]; ReLU hidden units (or identity for the ``linear`` variant),
sigmoid output (identity when linear), per-example loss L_i = (1/10) Σ_k (ŷ_ik − y_ik)².
Weights are stored as the original does, W_l of shape (out, in): a_l = W_l h_{l−1} + b_l.
Init: W ~ N(0, 2/(fan_in + fan_out)) (Glorot normal), b = 0.
"""
from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp

Params = list  # [{"w": (out, in), "b": (out,)}, ...]


def layer_sizes(in_dim: int, hidden: Sequence[int], n_classes: int = 10) -> list[int]:
    return [in_dim, *hidden, n_classes]


def init_mlp(key: jax.Array, sizes: Sequence[int]) -> Params:
    """Glorot-normal weights, zero biases. Depends only on ``key`` and ``sizes``."""
    keys = jax.random.split(key, len(sizes) - 1)
    params = []
    for k, fan_in, fan_out in zip(keys, sizes[:-1], sizes[1:]):
        std = jnp.sqrt(2.0 / (fan_in + fan_out))
        params.append({"w": std * jax.random.normal(k, (fan_out, fan_in), jnp.float32),
                       "b": jnp.zeros((fan_out,), jnp.float32)})
    return params


def _hidden_fn(activation: str):
    return jax.nn.relu if activation == "relu" else (lambda a: a)


def _output_fn(activation: str):
    return jax.nn.sigmoid if activation == "relu" else (lambda a: a)


def forward(params: Params, x: jax.Array, noise: Sequence[jax.Array] | None = None,
            activation: str = "relu", first_preact: jax.Array | None = None):
    """Run the MLP on ``x`` (B, D), adding ``noise[l]`` to layer l's pre-activation.

    Returns ``(output, layer_inputs, first_preact)``: layer_inputs[l] is h_{l−1}, the input
    that layer l saw (h_0 = x); ``first_preact`` is W_1 x + b_1 before noise, which a
    noisy pass on the same ``x`` can reuse instead of recomputing it.
    """
    hidden_fn, output_fn = _hidden_fn(activation), _output_fn(activation)
    h, inputs, a0 = x, [], None
    last = len(params) - 1
    for l, layer in enumerate(params):
        inputs.append(h)
        if l == 0 and first_preact is not None:
            a = first_preact
        else:
            a = h @ layer["w"].T + layer["b"]
        if l == 0:
            a0 = a
        if noise is not None:
            a = a + noise[l]
        h = output_fn(a) if l == last else hidden_fn(a)
    return h, inputs, a0


def per_example_loss(output: jax.Array, y_onehot: jax.Array) -> jax.Array:
    """L_i = (1/K) Σ_k (ŷ_ik − y_ik)², shape (B,)."""
    return jnp.mean((output - y_onehot) ** 2, axis=-1)


def mean_loss(params: Params, x: jax.Array, y_onehot: jax.Array, activation: str = "relu") -> jax.Array:
    return per_example_loss(forward(params, x, activation=activation)[0], y_onehot).mean()
