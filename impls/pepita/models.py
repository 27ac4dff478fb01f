"""The PEPITA networks (papers/pepita/README.md, "The algorithm as implemented"), as stacks of R independent runs (one
per seed).

FC: d_in → hidden… → C, no biases, hidden ReLU with inverted dropout, softmax output.
Weights W_l (R, out, in), He-uniform U(±√(6/fan_in)) (the code's ``he_uniform``).

Conv (``Net1conv1fcXL``): Conv2d(c_in → channels, k×k, stride 1, no padding, no bias) → ReLU
→ MaxPool pool×pool → flatten → Linear(→ C, no bias) → softmax. PyTorch's default init,
U(±1/√fan_in) for both layers (the code's ``--w_init`` flag is not applied there). The conv
weight is stored unfolded, (R, channels, c_in·k·k), and the convolution is a batched matmul
over ``F.unfold`` patches, so the per-position PEPITA update is one einsum (no Python loop
over positions).

F (the fixed projection of the error onto the input): (R, d_in, C),
U(−1, 1)·√(6/d_in)·F_scale, with d_in = c_in·H·W for both architectures.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as tnf

from impls.rules_torch import mlp_forward


def uniform(shape, limit: float, generator: torch.Generator, dtype=torch.float32) -> torch.Tensor:
    """U(−limit, limit), drawn in float64 so that float32 and float64 runs share their draws."""
    return ((torch.rand(*shape, generator=generator, dtype=torch.float64) * 2 - 1) * limit).to(dtype)


def init_fc(sizes, generator, dtype=torch.float32) -> list[torch.Tensor]:
    """One run's He-uniform weights [(n_1, n_0), (n_2, n_1), ...]."""
    return [uniform((n_out, n_in), math.sqrt(6.0 / n_in), generator, dtype) for n_in, n_out in zip(sizes[:-1], sizes[1:])]


def init_F(d_in: int, n_classes: int, scale: float, generator, dtype=torch.float32, law: str = "he") -> torch.Tensor:
    """One run's F (d_in, C) = U(−1, 1)·√(6/d_in)·scale (the original's), or U(−1, 1)·scale/√C (``law='nok'``)."""
    limit = math.sqrt(6.0 / d_in) if law == "he" else 1.0 / math.sqrt(n_classes)
    return uniform((d_in, n_classes), limit, generator, dtype) * scale


@dataclass(frozen=True)
class ConvShape:
    """Geometry of the one-conv-layer net for an input (c_in, H, W)."""

    c_in: int
    height: int
    width: int
    channels: int
    kernel: int
    pool: int
    n_classes: int

    @property
    def out_hw(self) -> tuple[int, int]:
        return self.height - self.kernel + 1, self.width - self.kernel + 1

    @property
    def positions(self) -> int:
        """P: conv output positions (576 for MNIST 5×5, 784 for CIFAR)."""
        h, w = self.out_hw
        return h * w

    @property
    def features(self) -> int:
        h, w = self.out_hw
        return self.channels * (h // self.pool) * (w // self.pool)

    @property
    def patch(self) -> int:
        return self.c_in * self.kernel * self.kernel


def init_conv(shape: ConvShape, generator, dtype=torch.float32) -> list[torch.Tensor]:
    """One run's [conv (channels, c_in·k·k), linear (C, features)], PyTorch default init."""
    return [uniform((shape.channels, shape.patch), 1.0 / math.sqrt(shape.patch), generator, dtype),
            uniform((shape.n_classes, shape.features), 1.0 / math.sqrt(shape.features), generator, dtype)]


def unfold(x: torch.Tensor, shape: ConvShape) -> torch.Tensor:
    """(R, B, c_in, H, W) images -> (R, B, c_in·k·k, P) patches."""
    r, b = x.shape[:2]
    cols = tnf.unfold(x.reshape(r * b, shape.c_in, shape.height, shape.width), shape.kernel)
    return cols.view(r, b, shape.patch, shape.positions)


def conv_pre(w_conv: torch.Tensor, patches: torch.Tensor) -> torch.Tensor:
    """Conv pre-activations (R, B, channels, P) from stacked weights and patches."""
    return torch.matmul(w_conv.unsqueeze(1), patches)


def pool_flatten(h: torch.Tensor, shape: ConvShape) -> torch.Tensor:
    """(R, B, channels, P) -> max-pooled and flattened (R, B, features)."""
    r, b = h.shape[:2]
    oh, ow = shape.out_hw
    pooled = tnf.max_pool2d(h.reshape(r * b, shape.channels, oh, ow), shape.pool)
    return pooled.reshape(r, b, shape.features)


def conv_forward(weights, x, shape: ConvShape):
    """``(y, patches, a, feat, logits)`` of the conv net on images x (R, B, c_in, H, W)."""
    patches = unfold(x, shape)
    a = conv_pre(weights[0], patches)
    feat = pool_flatten(torch.relu(a), shape)
    logits = torch.matmul(feat, weights[1].transpose(-1, -2))
    return torch.softmax(logits, -1), patches, a, feat, logits


def fc_forward(weights, x, masks=None, first_pre=None, activation: str = "relu"):
    """``(y, hs, pre)``; see ``impls.rules_torch.mlp_forward``."""
    return mlp_forward(weights, x, masks, first_pre, activation)


def alignment(weights, F: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Angle in degrees between vec F and vec (W_L⋯W_1)ᵀ (README "Metrics"), and ‖W_1‖_F, per run (R,)."""
    prod = weights[0].transpose(-1, -2).to(torch.float64)  # (R, d_in, n_1)
    for w in weights[1:]:
        prod = torch.matmul(prod, w.transpose(-1, -2).to(torch.float64))
    f = F.to(torch.float64).flatten(1)
    p = prod.flatten(1)
    cos = (f * p).sum(1) / (f.norm(dim=1) * p.norm(dim=1))
    angle = torch.rad2deg(torch.arccos(cos.clamp(-1.0, 1.0)))
    return angle, weights[0].to(torch.float64).flatten(1).norm(dim=1)
