"""Convolutional networks of the node-perturbation paper and their node-perturbation rule.

Networks (papers/nodepert/README.md, "Networks and loss"; all convolutions 'SAME', ReLU, then a dense readout with a
sigmoid output and the MSE loss L_i = (1/10) Σ_k (ŷ_ik − y_ik)²):

- ``conv_base``: 3 convolutions 3×3·32, strides (1, 2, 1); dense (H/2)(W/2)·32 → 10.
  81,546 parameters on MNIST, 101,322 on CIFAR-10 (tested).
- ``allcnn_a`` (the All-CNN-A variant, ``conv-large`` in the original): 5×5·96 s1, 3×3·96 s2,
  5×5·192 s1, 3×3·192 s2, 3×3·192 s1, 1×1·192 s1, 1×1·10 s1, then dense (H/4)(W/4)·10 → 10.
  1,260,660 parameters on CIFAR-10 (tested). No dropout, no global average pooling.

``model.channel_scale`` multiplies every channel count except the 10-channel class convolution
(cpu scale runs All-CNN-A at a quarter of its channels).

Layouts: images NHWC, kernels HWIO (kh, kw, C_in, C_out), conv biases (C_out,); the dense readout
stores W as (out, in) like the MLPs (a = W h + b) with h the NHWC feature map flattened in
(H, W, C) order.

Init (as the original): kernel ~ N(0, 2/(kh·kw·(C_in + C_out))), bias ~ N(0, same) drawn from an
independent key (the original reuses the kernel's key; either is equally valid); dense readout
Glorot normal with zero bias.

Node perturbation on these networks (``conv_node_perturbation``; Y. Mehta, N. Hiratani,
P. Humphreys, P. E. Latham, T. Lillicrap, "On the limitations of perturbation based methods for
training deep networks", code countzerozzz/nodepert at de296eb; papers/nodepert/README.md, "The node-perturbation
estimate"): per update, on one minibatch of B examples,

1. clean pass → L_i; noisy pass with ã_l = conv(h̃_{l−1}, K_l) + b_l + ξ_l on every layer
   (the dense readout too), ξ_l ~ N(0, σ² I) of the layer's full output shape
   (H_l × W_l × C_l, one value per position and channel), **one ξ_l per layer per update shared
   by every example of the minibatch** (``np``; ``np_indep_noise`` draws one per example);
2. δL_i = L_i(noisy) − L_i(clean), c_i = δL_i / (B σ²);
3. kernel: g_{K_l} = Σ_i c_i ∂/∂K Σ_{c,p} ξ_{l,c,p} conv(h̃_{l−1,i}, K)_{c,p}
   bias:   g_{b_l,c} = Σ_i c_i Σ_p ξ_{l,c,p}
   dense:  g_{W} = Σ_i c_i ξ h̃_iᵀ,  g_b = Σ_i c_i ξ
   with h̃ the noisy pass's presynaptic activity. Each layer's map θ ↦ conv(h, K) + b is linear in
   θ, so the sum above is its vector-Jacobian product with the cotangent c_i ξ_l, which is how it
   is computed (``jax.vjp`` of that one linear layer, not of the loss).
4. θ ← θ − lr·g (plain SGD; σ = 1e-5 for conv nets in the paper).

Both passes run at full float32 precision (``Precision.HIGHEST`` on every convolution and
matmul; papers/nodepert/README.md, "Numerical precision").
"""
from __future__ import annotations

from functools import partial
from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp
from jax import lax

from impls.common.jax_conv import conv
from impls.nodepert.models import per_example_loss
from impls.rules import LearningRule, stateless_init
from impls.rules.backprop import backprop

HIGHEST = lax.Precision.HIGHEST


class ConvLayer(NamedTuple):
    kernel: int
    channels: int
    stride: int


#: (kernel, channels, stride) of each convolution; a dense readout to 10 classes follows
ARCHS: dict[str, tuple[ConvLayer, ...]] = {
    "conv_base": (ConvLayer(3, 32, 1), ConvLayer(3, 32, 2), ConvLayer(3, 32, 1)),
    "allcnn_a": (ConvLayer(5, 96, 1), ConvLayer(3, 96, 2), ConvLayer(5, 192, 1), ConvLayer(3, 192, 2),
                 ConvLayer(3, 192, 1), ConvLayer(1, 192, 1), ConvLayer(1, 10, 1)),
}
N_CLASSES = 10


def layers(arch: str, channel_scale: float = 1.0) -> tuple[ConvLayer, ...]:
    """The convolutions of ``arch`` with every channel count but a 10-channel class layer scaled."""
    return tuple(ConvLayer(c.kernel, c.channels if c.channels == N_CLASSES else max(1, round(c.channels * channel_scale)),
                           c.stride) for c in ARCHS[arch])


def output_shapes(convs: Sequence[ConvLayer], image_shape: Sequence[int],
                  n_classes: int = N_CLASSES) -> list[tuple[int, ...]]:
    """Pre-activation shape of every layer (no batch axis): (H, W, C) per conv, then (n_classes,) (the paper's 10)."""
    h, w = image_shape[:2]
    shapes = []
    for c in convs:
        h, w = -(-h // c.stride), -(-w // c.stride)  # 'SAME' padding
        shapes.append((h, w, c.channels))
    return shapes + [(n_classes,)]


def init_convnet(key: jax.Array, convs: Sequence[ConvLayer], image_shape: Sequence[int]) -> list:
    """Spec §2.5 init; depends only on ``key``, the layers and the image shape (not on the rule)."""
    keys = jax.random.split(key, 2 * len(convs) + 1)
    params, c_in = [], image_shape[2]
    for l, c in enumerate(convs):
        std = jnp.sqrt(2.0 / (c.kernel * c.kernel * (c_in + c.channels)))
        params.append({"w": std * jax.random.normal(keys[2 * l], (c.kernel, c.kernel, c_in, c.channels), jnp.float32),
                       "b": std * jax.random.normal(keys[2 * l + 1], (c.channels,), jnp.float32)})
        c_in = c.channels
    h, w, c = output_shapes(convs, image_shape)[-2]
    fan_in = h * w * c
    std = jnp.sqrt(2.0 / (fan_in + N_CLASSES))
    params.append({"w": std * jax.random.normal(keys[-1], (N_CLASSES, fan_in), jnp.float32),
                   "b": jnp.zeros((N_CLASSES,), jnp.float32)})
    return params


def affine(layer: dict, h: jax.Array, stride: int | None) -> jax.Array:
    """Layer pre-activation without noise: conv(h, K) + b (``stride`` given) or W·flat(h) + b. The conv's
    gradients (the SGD baseline's, and the vjp that gives node perturbation's kernel estimate) are canonical
    convolutions (:mod:`impls.common.jax_conv`), fast on XLA:CPU inside an epoch's scan."""
    if stride is None:
        return jnp.dot(h.reshape(h.shape[0], -1), layer["w"].T, precision=HIGHEST) + layer["b"]
    return conv(h, layer["w"], stride, "SAME", precision=HIGHEST) + layer["b"]


def strides(convs: Sequence[ConvLayer]) -> list[int | None]:
    return [c.stride for c in convs] + [None]


def forward(params, x, convs: Sequence[ConvLayer], noise=None, activation: str = "relu"):
    """``x`` (B, H, W, C) → (sigmoid output (B, 10), layer_inputs). ``noise[l]`` is added to layer
    l's pre-activation: shape = its output shape (shared by the batch) or (B, *shape)."""
    del activation  # conv nets are ReLU + sigmoid output only
    h, inputs = x, []
    ss = strides(convs)
    for l, (layer, s) in enumerate(zip(params, ss)):
        inputs.append(h)
        a = affine(layer, h, s)
        if noise is not None:
            a = a + noise[l]
        h = jax.nn.sigmoid(a) if l == len(params) - 1 else jax.nn.relu(a)
    return h, inputs


def mean_loss(params, x, y_onehot, convs: Sequence[ConvLayer]) -> jax.Array:
    return per_example_loss(forward(params, x, convs)[0], y_onehot).mean()


def draw_noise(key, shapes: Sequence[tuple[int, ...]], sigma: float, batch: int, shared_noise: bool) -> list:
    """ξ_l ~ N(0, σ² I) of layer l's full output shape; (B, *shape) when not shared."""
    keys = jax.random.split(key, len(shapes))
    return [sigma * jax.random.normal(k, tuple(s) if shared_noise else (batch, *s), jnp.float32)
            for k, s in zip(keys, shapes)]


def estimate_with_noise(params, x, y, noise, sigma: float, convs: Sequence[ConvLayer]):
    """The node-perturbation estimate for given noise (module docstring, steps 1-3) and the clean loss."""
    batch = x.shape[0]
    clean_out, _ = forward(params, x, convs)
    noisy_out, noisy_inputs = forward(params, x, convs, noise)
    clean_loss = per_example_loss(clean_out, y)
    coef = (per_example_loss(noisy_out, y) - clean_loss) / (batch * sigma ** 2)  # c_i, (B,)
    grads = []
    for layer, h, xi, s in zip(params, noisy_inputs, noise, strides(convs)):
        cotangent = coef.reshape((batch,) + (1,) * (3 if s is not None else 1)) * xi  # c_i ξ_l, (B, *out)
        _, vjp = jax.vjp(lambda p, h=h, s=s: affine(p, h, s), layer)
        grads.append(vjp(cotangent)[0])
    return grads, clean_loss.mean()


def conv_node_perturbation(sigma: float, convs: Sequence[ConvLayer], image_shape: Sequence[int],
                           shared_noise: bool = True, n_classes: int = N_CLASSES) -> LearningRule:
    """Node perturbation for ``forward`` conv nets (module docstring).

    Args:
      sigma: noise standard deviation (1e-5 for conv nets in the paper).
      convs: the network's convolutions (``layers(arch, channel_scale)``).
      image_shape: (H, W, C) of the inputs, which fixes every layer's noise shape.
      shared_noise: one ξ_l per layer shared by the minibatch (``np``) or one per example
        (``np_indep_noise``).
      n_classes: outputs of the dense readout (the paper's 10; the rule arena's conv task on other data).
    """
    shapes = output_shapes(convs, image_shape, n_classes)

    def estimate(params, state, x, y, key):
        with jax.default_matmul_precision("highest"):
            noise = draw_noise(key, shapes, sigma, x.shape[0], shared_noise)
            grads, loss = estimate_with_noise(params, x, y, noise, sigma, convs)
        return grads, state, {"loss": loss}

    return LearningRule(init=stateless_init, estimate=estimate)


def make_conv_rule(name: str, hparams: dict, convs: Sequence[ConvLayer], image_shape,
                   n_classes: int = N_CLASSES) -> LearningRule:
    """``np``/``np_indep_noise`` (plus the ``_adam``/``_wd`` optimiser variants) or ``sgd``."""
    from impls.nodepert.options import estimator_name

    base = estimator_name(name)
    if base == "sgd":
        return backprop(partial(mean_loss, convs=tuple(convs)))
    if base in ("np", "np_indep_noise"):
        return conv_node_perturbation(float(hparams["sigma"]), tuple(convs), tuple(image_shape),
                                      shared_noise=base == "np", n_classes=n_classes)
    raise ValueError(f"rule {name!r} has no convolutional version")


def n_params(params) -> int:
    return int(sum(p.size for p in jax.tree_util.tree_leaves(params)))

