"""Convolutional front ends of the source-paper tables (papers/bpfree/README.md, "Source-paper settings"; deviations
11-12), NHWC / HWIO.

A conv stack is written as in the papers, one string of ``-``-separated tokens
(pure Python parsing, so the workflow can validate specs without JAX):

- ``<F>c<K>``: convolution with F filters of K×K, stride 1, zero padding (K−1)/2 ("same", K odd),
  bias, then the net's activation: a_l = x_{l−1} ⋆ W_l + b_l, h_l = f(a_l);
- ``<K>p``: K×K max pooling, stride K; ``<K>p<S>``: K×K max pooling, stride S (no padding, floor).

Nøkland's CIFAR net is ``96c5-3p2-128c5-3p2-256c5-3p2`` (then FC 2048-2048), Frenkel's MNIST net
``32c5-2p`` (then FC 1000) and CIFAR-10 net ``64c3-2p-256c3-2p`` (then FC 1000-1000).

Learning signals (DFA/DRTP/LL): the fixed B_l of a conv layer has shape (H_l·W_l·F_l, C) and acts
on the layer's *full* post-activation output h_l (before pooling), flattened row-major:
δh_l = reshape(e B_lᵀ, (N, H_l, W_l, F_l)). The conv layer's pseudo-gradient is then
ΔW_l[i, j, c, f] = Σ_{n,y,x} x̃_{l−1}[n, y+i, x+j, c] δa_l[n, y, x, f] with δa_l = δh_l ⊙ f′(a_l) and
x̃ the zero-padded input; Δb_l = Σ_{n,y,x} δa_l[n, y, x, :].

FA (Lillicrap et al. 2016) on a conv layer: :func:`fa_conv` sends the input cotangent through the
transposed convolution with a fixed random kernel B_l (shape of W_l, stored as (K·K·C_in, F)) in
place of W_l; weight and bias cotangents are exact. With B_l = W_l it is backprop.
"""
from __future__ import annotations

import math
import re
from typing import NamedTuple

_CONV = re.compile(r"^(\d+)c(\d+)$")
_POOL = re.compile(r"^(\d+)p(\d*)$")


class ConvLayer(NamedTuple):
    filters: int
    kernel: int


class PoolLayer(NamedTuple):
    size: int
    stride: int


def parse(text: str) -> tuple:
    """``"32c5-2p"`` -> (ConvLayer(32, 5), PoolLayer(2, 2)); raises ValueError naming the bad token."""
    layers = []
    for token in [t for t in text.split("-") if t] if text else []:
        conv, pool = _CONV.match(token), _POOL.match(token)
        if conv and int(conv[1]) > 0 and int(conv[2]) % 2 == 1:
            layers.append(ConvLayer(int(conv[1]), int(conv[2])))
        elif pool and int(pool[1]) > 0 and (not pool[2] or int(pool[2]) > 0):
            layers.append(PoolLayer(int(pool[1]), int(pool[2] or pool[1])))
        else:
            raise ValueError(f"conv token {token!r}: expected <filters>c<odd kernel> (e.g. 32c5) or "
                             "<size>p[<stride>] (e.g. 2p, 3p2)")
    return tuple(layers)


def output_shapes(layers: tuple, image_shape: tuple[int, int, int]) -> list[tuple[int, int, int]]:
    """(H, W, C) after each layer of ``layers`` applied to an (H, W, C) image."""
    h, w, c = image_shape
    shapes = []
    for layer in layers:
        if isinstance(layer, ConvLayer):
            c = layer.filters
        else:
            h, w = (h - layer.size) // layer.stride + 1, (w - layer.size) // layer.stride + 1
            if h < 1 or w < 1:
                raise ValueError(f"pooling {layer.size}p{layer.stride} leaves no pixels at that depth")
        shapes.append((h, w, c))
    return shapes


def conv_shapes(layers: tuple, image_shape: tuple[int, int, int]) -> list[dict]:
    """Per conv layer: its kernel (K, K, C_in, F) and its output (H, W, F) (where B_l acts)."""
    out, channels = [], image_shape[2]
    for layer, shape in zip(layers, output_shapes(layers, image_shape)):
        if isinstance(layer, ConvLayer):
            out.append({"kernel": (layer.kernel, layer.kernel, channels, layer.filters), "output": shape})
        channels = shape[2]
    return out


def flat_size(layers: tuple, image_shape: tuple[int, int, int]) -> int:
    """Number of features the conv stack hands to the first fully connected layer."""
    return math.prod(output_shapes(layers, image_shape)[-1]) if layers else math.prod(image_shape)


# ----------------------------------------------------------------------------- JAX ops
# imported lazily so that ``parse`` stays usable at workflow-parse time without JAX


def conv2d(x, w, b):
    """'same' convolution, stride 1: (N, H, W, C) ⋆ (K, K, C, F) + b -> (N, H, W, F). Its gradients are
    canonical convolutions (:mod:`impls.common.jax_conv`), fast on XLA:CPU inside an epoch's scan."""
    from impls.common.jax_conv import conv

    return conv(x, w) + b


def max_pool(x, size: int, stride: int):
    """Max over size×size windows with the given stride, no padding (Torch/PyTorch floor mode); gradient to
    each window's first maximum, as ``lax.reduce_window``'s (:func:`impls.common.jax_conv.max_pool`)."""
    from impls.common.jax_conv import max_pool as pool

    return pool(x, size, stride)


def _make_fa_conv():
    import jax
    import jax.numpy as jnp

    @jax.custom_vjp
    def fa_conv(x, w, b, feedback):
        """conv2d(x, w, b); backward sends the cotangent to x through B (reshaped to w's shape), not w."""
        del feedback
        return conv2d(x, w, b)

    def fwd(x, w, b, feedback):
        return conv2d(x, w, b), (x, w, feedback)

    def bwd(res, g):
        x, w, feedback = res
        _, vjp_w = jax.vjp(lambda kernel: conv2d(x, kernel, 0.0), w)
        _, vjp_x = jax.vjp(lambda inp: conv2d(inp, feedback.reshape(w.shape), 0.0), x)
        return vjp_x(g)[0], vjp_w(g)[0], g.sum((0, 1, 2)), jnp.zeros_like(feedback)

    fa_conv.defvjp(fwd, bwd)
    return fa_conv


_FA_CONV = []


def fa_conv(x, w, b, feedback):
    """Feedback-alignment convolution (see the module docstring); ``feedback`` is (K·K·C_in, F)."""
    if not _FA_CONV:
        _FA_CONV.append(_make_fa_conv())
    return _FA_CONV[0](x, w, b, feedback)
