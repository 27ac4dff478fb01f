"""Fully connected nets of the bpfree paper (papers/bpfree/README.md, "Network"), row-vector convention.

Hidden block l:  a_l = x_{l−1} W_l + b_l  (W_l (in, out), orthogonal gain 1, b_l = 0)
                 → optional BatchNorm (Keras: momentum 0.99, eps 1e-3; bias kept)
                 → h_l = f(a_l) → x_l = Dropout(h_l).
Output:          z = x_L W_out + b_out; ŷ = softmax(z) | sigmoid(z) (classification, per
                 ``output``), tanh(z) (reconstruction, scaler standard) | sigmoid(z) (other scalers).

``apply`` returns the output pre-activation z, every h_l (before dropout: where the local
signals of DFA/DRTP/LL enter) and the new BN running statistics. ``mode``:
``"bp"`` ordinary net; ``"local"`` each hidden layer's input is ``stop_gradient``-ed (nothing
propagates between layers; the output layer still gets its exact gradient); ``"fa"`` dense
layers are :func:`impls.rules.fa.fa_dense` with the given feedback matrices.

``arch: conv`` puts a conv stack (:mod:`impls.bpfree.conv`, e.g. ``32c5-2p``) in front of the
hidden FC layers: the flattened input is reshaped to the dataset's image, each conv layer is
a_l = x_{l−1} ⋆ W_l + b_l, h_l = f(a_l) (kernels orthogonal, or zero under ``zero_hidden``), and
its full output h_l (flattened, before pooling) joins ``hs`` so DFA/DRTP/LL reach it through
B_l of shape (H_l·W_l·F_l, C). With ``conv_trained`` false (Frenkel's "random" rows) the conv
kernels are fixed at their initialisation: no rule updates them and no signal is sent to them.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from impls.bpfree import conv as convlib
from impls.rules.fa import fa_dense

BN_MOMENTUM = 0.99
BN_EPS = 1e-3  # Keras default (Flax's is 1e-5)


class Config(NamedTuple):
    """Static (hashable) description of one net; built from a spec by ``config_from_spec``."""

    in_dim: int
    hidden: tuple[int, ...]
    out_dim: int
    task: str = "classification"
    activation: str = "tanh"
    batchnorm: bool = False
    dropout: float = 0.0
    input_dropout: float = 0.0
    weight_init: str = "ortho"
    scaler: str = "standard"
    output: str = "softmax_cce"
    conv: tuple = ()                 # parsed conv stack (impls.bpfree.conv.parse); () = MLP
    conv_trained: bool = True        # False: conv kernels fixed at initialisation (Frenkel's "random")
    image_shape: tuple = ()          # (H, W, C) of the input image (conv nets only)


def config_from_spec(spec: dict, in_dim: int, n_classes: int, image_shape: tuple = ()) -> Config:
    """``image_shape``: the dataset's image shape ((H, W) or (H, W, C)); needed by conv nets only."""
    from impls.bpfree.options import model_config

    m = model_config(spec)
    out_dim = in_dim if m["task"] == "reconstruction" else n_classes
    layers = convlib.parse(m["conv"]) if spec["model"]["arch"] == "conv" else ()
    image = tuple(image_shape) + ((1,) if len(image_shape) == 2 else ()) if layers else ()
    return Config(in_dim, tuple(m["hidden"]), out_dim, m["task"], m["activation"], bool(m["batchnorm"]),
                  float(m["dropout"]), float(m["input_dropout"]), m["weight_init"], m["scaler"], m["output"],
                  layers, bool(m["conv_trained"]), image)


def relu_ge(a):
    """ReLU with f′(0) = 1 (the original's "x if x ≥ 0 else 0")."""
    return jnp.where(a >= 0, a, 0.0)


ACTIVATIONS = {
    "tanh": jnp.tanh,
    "relu": relu_ge,
    "lrelu": lambda a: jax.nn.leaky_relu(a, 0.2),  # negative slope 0.2 (tf.nn.leaky_relu default)
    "sigmoid": jax.nn.sigmoid,
    "swish": jax.nn.swish,
}


def layer_sizes(cfg: Config) -> list[int]:
    """Widths of the fully connected part: its input (the conv stack's flattened output), hidden, output."""
    first = convlib.flat_size(cfg.conv, cfg.image_shape) if cfg.conv else cfg.in_dim
    return [first, *cfg.hidden, cfg.out_dim]


def conv_layers(cfg: Config) -> list[dict]:
    """Per conv layer: ``kernel`` (K, K, C_in, F) and ``output`` (H, W, F) shapes."""
    return convlib.conv_shapes(cfg.conv, cfg.image_shape) if cfg.conv else []


def kernel_shapes(cfg: Config) -> list[tuple[int, int]]:
    """FA's feedback shapes, one per kernel in forward order: conv kernels as (K·K·C_in, F), then FC (in, out)."""
    sizes = layer_sizes(cfg)
    convs = [(math.prod(c["kernel"][:3]), c["kernel"][3]) for c in conv_layers(cfg)]
    return convs + list(zip(sizes[:-1], sizes[1:]))


def feedback_sizes(cfg: Config) -> list[int]:
    """n_l of every layer that receives a projected signal (DFA/DRTP/LL): trained conv layers
    (H·W·F of their output), then the hidden FC layers."""
    convs = [math.prod(c["output"]) for c in conv_layers(cfg)] if cfg.conv_trained else []
    return convs + list(cfg.hidden)


def init(key: jax.Array, cfg: Config):
    """(params, model_state). params = {"hidden": [{w, b[, gamma, beta]}...], "out": {w, b}}
    (+ ``"conv": [{w (K, K, C_in, F), b}...]`` for conv nets)."""
    sizes = layer_sizes(cfg)
    shapes = list(zip(sizes[:-1], sizes[1:]))
    keys = jax.random.split(key, len(shapes))
    ortho = jax.nn.initializers.orthogonal()
    hidden, bn = [], []
    for k, (n_in, n_out) in zip(keys[:-1], shapes[:-1]):
        w = (jnp.zeros((n_in, n_out), jnp.float32) if cfg.weight_init == "zero_hidden"
             else ortho(k, (n_in, n_out), jnp.float32))
        layer = {"w": w, "b": jnp.zeros((n_out,), jnp.float32)}
        if cfg.batchnorm:
            layer.update(gamma=jnp.ones((n_out,), jnp.float32), beta=jnp.zeros((n_out,), jnp.float32))
            bn.append({"mean": jnp.zeros((n_out,), jnp.float32), "var": jnp.ones((n_out,), jnp.float32)})
        hidden.append(layer)
    out = {"w": ortho(keys[-1], shapes[-1], jnp.float32), "b": jnp.zeros((shapes[-1][1],), jnp.float32)}
    params = {"hidden": hidden, "out": out}
    if cfg.conv:
        params["conv"] = _init_conv(jax.random.fold_in(key, 10_000), cfg)
    return params, {"bn": bn}


def _init_conv(key, cfg: Config) -> list[dict]:
    """Orthogonal kernels (gain 1 over the (K·K·C_in, F) reshaping), zero biases; zero kernels under
    ``zero_hidden`` when they are trained (dfa-torch zero-initialises every hidden layer for FA/DFA)."""
    zero = cfg.weight_init == "zero_hidden" and cfg.conv_trained
    layers = []
    for i, shapes in enumerate(conv_layers(cfg)):
        w = (jnp.zeros(shapes["kernel"], jnp.float32) if zero
             else jax.nn.initializers.orthogonal()(jax.random.fold_in(key, i), shapes["kernel"], jnp.float32))
        layers.append({"w": w, "b": jnp.zeros((shapes["kernel"][3],), jnp.float32)})
    return layers


def _conv_stack(params, x, cfg: Config, mode: str, feedback):
    """Conv front end: -> (flattened features, [h_l flattened] of trained conv layers)."""
    act = ACTIVATIONS[cfg.activation]
    h = x.reshape((x.shape[0],) + cfg.image_shape)
    hs, index = [], 0
    for layer in cfg.conv:
        if isinstance(layer, convlib.PoolLayer):
            h = convlib.max_pool(h, layer.size, layer.stride)
            continue
        p = params["conv"][index]
        if not cfg.conv_trained:
            p = jax.lax.stop_gradient(p)
        inp = jax.lax.stop_gradient(h) if mode == "local" else h
        a = (convlib.fa_conv(inp, p["w"], p["b"], feedback[index]) if mode == "fa"
             else convlib.conv2d(inp, p["w"], p["b"]))
        h = act(a)
        if cfg.conv_trained:
            hs.append(h.reshape(h.shape[0], -1))
        index += 1
    return h.reshape(h.shape[0], -1), hs


def _dropout(x, rate: float, key):
    if rate <= 0.0:
        return x
    keep = jax.random.bernoulli(key, 1.0 - rate, x.shape)
    return jnp.where(keep, x / (1.0 - rate), 0.0)


def _dense(x, layer, feedback):
    if feedback is None:
        return x @ layer["w"] + layer["b"]
    return fa_dense(x, layer["w"], layer["b"], feedback)


def apply(params, state, x, key, cfg: Config, *, train: bool, mode: str = "bp", feedback=None):
    """-> (z, hs, new_state). ``key`` drives dropout (unused when ``train`` is False)."""
    n = len(cfg.hidden)
    keys = jax.random.split(key, n + 1) if key is not None else [None] * (n + 1)
    act = ACTIVATIONS[cfg.activation]
    n_conv = len(params.get("conv", ()))
    fb = list(feedback)[n_conv:] if mode == "fa" else [None] * (n + 1)
    h = _dropout(x, cfg.input_dropout, keys[-1]) if train else x
    hs, new_bn = [], []
    if cfg.conv:
        h, hs = _conv_stack(params, h, cfg, mode, list(feedback)[:n_conv] if mode == "fa" else None)
    for l, layer in enumerate(params["hidden"]):
        inp = jax.lax.stop_gradient(h) if mode == "local" else h
        a = _dense(inp, layer, fb[l])
        if cfg.batchnorm:
            running = state["bn"][l]
            if train:
                mean, var = a.mean(0), a.var(0)
                new_bn.append({"mean": BN_MOMENTUM * running["mean"] + (1 - BN_MOMENTUM) * jax.lax.stop_gradient(mean),
                               "var": BN_MOMENTUM * running["var"] + (1 - BN_MOMENTUM) * jax.lax.stop_gradient(var)})
            else:
                mean, var = running["mean"], running["var"]
                new_bn.append(running)
            a = (a - mean) * jax.lax.rsqrt(var + BN_EPS) * layer["gamma"] + layer["beta"]
        hl = act(a)
        hs.append(hl)
        h = _dropout(hl, cfg.dropout, keys[l]) if train else hl
    inp = jax.lax.stop_gradient(h) if mode == "local" else h
    z = _dense(inp, params["out"], fb[n])
    return z, hs, {"bn": new_bn}


def output_fn(cfg: Config):
    """ŷ = g(z): the output nonlinearity."""
    if cfg.task == "reconstruction":
        return jnp.tanh if cfg.scaler == "standard" else jax.nn.sigmoid
    return jax.nn.softmax if cfg.output == "softmax_cce" else jax.nn.sigmoid


def per_example_loss(z, y, cfg: Config):
    """Global loss per example (N,). y: one-hot (classification) or the flattened input (reconstruction)."""
    if cfg.task == "reconstruction":
        return jnp.mean((output_fn(cfg)(z) - y) ** 2, axis=-1)          # Keras MSE
    if cfg.output == "softmax_cce":
        return optax.softmax_cross_entropy(z, y)                        # CCE on softmax(z)
    return optax.sigmoid_binary_cross_entropy(z, y).mean(-1)           # BCE on sigmoid(z), mean over classes


def loss(z, y, cfg: Config):
    """Batch-mean global loss L."""
    return per_example_loss(z, y, cfg).mean()
