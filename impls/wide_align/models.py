"""The paper's all-conv net (papers/wide_align/README.md, "Network and data conventions"), stacked over R runs as
grouped convolutions.

Layer l (3x3, width w, stride s_l, TF "SAME" padding):

    z_l = conv(φ(h_{l−1}), W_l) / √(9·C_in) + b_l        (NTK; 'standard': no 1/√(9·C_in))
    h_l = Norm(z_l)                                       φ = identity on the image, ReLU otherwise
    f   = W_{L+1}ᵀ · avgpool(ReLU(h_L)) / √w + b_{L+1}    (NTK; 'standard': no 1/√w)

Norm 'batch' (the original): every (channel, row, col) unit is normalised over the batch axis
only, (z − mean)/√(biased var + 1e-6), no affine parameters, batch statistics at evaluation too.
Norm 'bn' (named variant): a standard 2-D batch norm -- per-channel statistics over (batch, rows,
cols), running averages (momentum 0.1) at evaluation -- without γ/β, so every rule updates the
same parameters. 'none': no normalisation.

NTK parameterisation: every weight N(0, 1), biases 0; 'standard': W_l ~ N(0, 1/(9·C_in)),
readout N(0, 1/w), biases 0.

Stacking: the R runs of a batch are the R groups of a grouped convolution; activations are
(B, R·C, H, W) and parameters carry a leading run axis R. Runs never mix (tested through the
per-run equality of BP with a single-run net).

Speed on CPU (benchmarks/bench_wide_align.py): activations and kernels are channels-last in memory
(oneDNN's native layout; its conv backward ran ~2x faster than on NCHW here), the NTK factor scales
the kernel instead of the conv output, the bias is added by the conv, and the batch-axis norm is
PyTorch's fused batch norm on a (B, H·W·C, 1, 1) view (see ``batch_axis_norm``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

EPS = 1e-6
BN_MOMENTUM = 0.1


@dataclass(frozen=True)
class NetShape:
    c_in: int
    size: int            # input height = width
    width: int
    strides: tuple[int, ...]
    n_classes: int
    norm: str = "batch"
    param: str = "ntk"

    def layer_inputs(self) -> list[tuple[int, int]]:
        """(channels, size) of the input of every hidden conv layer."""
        out, c, s = [], self.c_in, self.size
        for stride in self.strides:
            out.append((c, s))
            c, s = self.width, math.ceil(s / stride)
        return out

    def layer_outputs(self) -> list[tuple[int, int]]:
        return [(self.width, math.ceil(s / st)) for (_, s), st in zip(self.layer_inputs(), self.strides)]


def same_amounts(size: int, stride: int, k: int = 3) -> tuple[int, int]:
    """(before, after) of TensorFlow 'SAME' padding for one spatial axis."""
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + k - size, 0)
    return total // 2, total - total // 2


def same_pad(x: torch.Tensor, stride: int, k: int = 3) -> torch.Tensor:
    """TensorFlow 'SAME' padding: total max((out−1)·s + k − in, 0), the smaller half before."""
    size = x.shape[-1]
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + k - size, 0)
    before = total // 2
    return F.pad(x, (before, total - before, before, total - before))


def init_params(shape: NetShape, generator: torch.Generator, dtype=torch.float32) -> dict:
    """One run's parameters: w[l] (C_out, C_in, 3, 3), b[l] (C_out,), v (w, K), c (K,)."""
    ws, bs = [], []
    for c_in, _ in shape.layer_inputs():
        w = torch.randn(shape.width, c_in, 3, 3, generator=generator, dtype=torch.float64)
        if shape.param == "standard":
            w = w / math.sqrt(9 * c_in)
        ws.append(w.to(dtype))
        bs.append(torch.zeros(shape.width, dtype=dtype))
    v = torch.randn(shape.width, shape.n_classes, generator=generator, dtype=torch.float64)
    if shape.param == "standard":
        v = v / math.sqrt(shape.width)
    return {"w": ws, "b": bs, "v": v.to(dtype), "c": torch.zeros(shape.n_classes, dtype=dtype)}


def stack_params(per_run: list[dict]) -> dict:
    return {"w": [torch.stack(x) for x in zip(*(p["w"] for p in per_run))],
            "b": [torch.stack(x) for x in zip(*(p["b"] for p in per_run))],
            "v": torch.stack([p["v"] for p in per_run]), "c": torch.stack([p["c"] for p in per_run])}


def flat(params: dict) -> list[torch.Tensor]:
    """Parameters in a fixed order: w_1..w_L, b_1..b_L, v, c."""
    return [*params["w"], *params["b"], params["v"], params["c"]]


def unflat(tensors, n_layers: int) -> dict:
    t = list(tensors)
    return {"w": t[:n_layers], "b": t[n_layers:2 * n_layers], "v": t[2 * n_layers], "c": t[2 * n_layers + 1]}


class FeedbackConv(torch.autograd.Function):
    """Grouped conv whose input-gradient uses a feedback kernel B instead of W (FA / Align-prop).

    Forward: conv(x, W) + b. Backward: ∂/∂x = convᵀ(g, B), ∂/∂W and ∂/∂b the true gradients.
    With B = W it is the ordinary conv (tested).
    """

    @staticmethod
    def forward(ctx, x, w, b, fb, stride, groups, padding=0):
        ctx.save_for_backward(x, w, fb)
        ctx.stride, ctx.groups, ctx.padding = stride, groups, padding
        return F.conv2d(x, w, b, stride=stride, groups=groups, padding=padding)

    @staticmethod
    def backward(ctx, g):
        x, w, fb = ctx.saved_tensors
        gx = gw = gb = None
        if ctx.needs_input_grad[0]:
            gx = torch.nn.grad.conv2d_input(x.shape, fb, g, stride=ctx.stride, groups=ctx.groups, padding=ctx.padding)
        if ctx.needs_input_grad[1]:
            gw = torch.nn.grad.conv2d_weight(x, w.shape, g, stride=ctx.stride, groups=ctx.groups, padding=ctx.padding)
        if ctx.needs_input_grad[2]:
            gb = g.sum((0, 2, 3))
        return gx, gw, gb, None, None, None, None


class FeedbackReadout(torch.autograd.Function):
    """f = p·v per run (p (R,B,w), v (R,w,K)); ∂/∂p uses the feedback matrix B (R,w,K) instead of v."""

    @staticmethod
    def forward(ctx, p, v, fb):
        ctx.save_for_backward(p, fb)
        return torch.matmul(p, v)

    @staticmethod
    def backward(ctx, g):
        p, fb = ctx.saved_tensors
        gp = torch.matmul(g, fb.transpose(-1, -2)) if ctx.needs_input_grad[0] else None
        gv = torch.matmul(p.transpose(-1, -2), g) if ctx.needs_input_grad[1] else None
        return gp, gv, None


def batch_axis_norm(z: torch.Tensor) -> torch.Tensor:
    """y = (z − mean_B z)/√(var_B z + ε) for every (channel, row, col) unit, over the batch axis only.

    Runs as PyTorch's fused batch norm on the view (B, H·W·C, 1, 1), in which each unit is a
    "channel" whose statistics are taken over the batch axis alone: one kernel for the statistics
    and one for the output forward, one fused backward (the exact gradient through mean and biased
    variance; tested against autograd of the formula). For channels-last z the view is free.
    """
    b, c, h, w = z.shape
    y = F.batch_norm(z.permute(0, 2, 3, 1).reshape(b, h * w * c, 1, 1), None, None, training=True, eps=EPS)
    return y.view(b, h, w, c).permute(0, 3, 1, 2)


def normalise(z: torch.Tensor, norm: str, running: dict | None, layer: int, training: bool) -> torch.Tensor:
    """Norm of z (B, R·C, H, W); see the module docstring. ``running`` holds 'bn' statistics."""
    if norm == "none":
        return z
    if norm == "batch":
        return batch_axis_norm(z)
    # 'bn': per-channel over (batch, rows, cols)
    if training or running is None:
        mean = z.mean((0, 2, 3), keepdim=True)
        var = z.var((0, 2, 3), unbiased=False, keepdim=True)
        if training and running is not None:
            with torch.no_grad():
                n = z.shape[0] * z.shape[2] * z.shape[3]
                running["mean"][layer].mul_(1 - BN_MOMENTUM).add_(BN_MOMENTUM * mean.flatten())
                running["var"][layer].mul_(1 - BN_MOMENTUM).add_(BN_MOMENTUM * var.flatten() * n / max(n - 1, 1))
    else:
        mean = running["mean"][layer].view(1, -1, 1, 1)
        var = running["var"][layer].view(1, -1, 1, 1)
    return (z - mean) / torch.sqrt(var + EPS)


def init_running(shape: NetShape, n_runs: int, device) -> dict:
    n = len(shape.strides)
    return {"mean": [torch.zeros(n_runs * shape.width, device=device) for _ in range(n)],
            "var": [torch.ones(n_runs * shape.width, device=device) for _ in range(n)]}


def forward(params: dict, x: torch.Tensor, shape: NetShape, *, feedback: dict | None = None, local: bool = False,
            running: dict | None = None, training: bool = True):
    """Stacked forward pass.

    ``x`` (B, C_in, H, W) shared by every run, or (B, R·C_in, H, W). Returns ``(f, hs, acts)``:
    f (R, B, K); hs[l] = h_l (post-norm, pre-ReLU), acts[l] = ReLU(h_l), each (B, R·w, H_l, W_l).
    ``feedback`` (FA / Align-prop): {'w': [B_l (R, C_out, C_in, 3, 3)], 'v': (R, w, K)} used for
    the input-gradients. ``local``: each layer's input (and the readout's) is detached, so a
    backward pass reaches only the parameters of the layer it starts at (DFA, Align-ada, last-layer).
    """
    r = params["v"].shape[0]
    a = x if x.shape[1] == r * shape.c_in else x.repeat(1, r, 1, 1)
    a = a.contiguous(memory_format=torch.channels_last)  # oneDNN's native layout: ~2x faster conv backward
    hs, acts = [], []
    for l, (w, b, stride) in enumerate(zip(params["w"], params["b"], shape.strides)):
        c_out, c_in = w.shape[1], w.shape[2]
        a_in = a.detach() if local else a
        before, after = same_amounts(a_in.shape[-1], stride)
        pad = before  # symmetric 'SAME' padding goes to the conv itself (no padded copy)
        if before != after:
            a_in, pad = F.pad(a_in, (before, after, before, after)), 0
        # NTK's 1/√(9·C_in) scales the (small) kernel, not the (large) output; the bias rides in the conv
        scale = 1 / math.sqrt(9 * c_in) if shape.param == "ntk" else 1.0
        wf = (w.reshape(r * c_out, c_in, 3, 3) * scale).contiguous(memory_format=torch.channels_last)
        if feedback is not None:
            fb = (feedback["w"][l].reshape(r * c_out, c_in, 3, 3) * scale).contiguous(memory_format=torch.channels_last)
            z = FeedbackConv.apply(a_in, wf, b.reshape(-1), fb, stride, r, pad)
        else:
            z = F.conv2d(a_in, wf, b.reshape(-1), stride=stride, groups=r, padding=pad)
        # a 1-channel input is ambiguous, and PyTorch then returns NCHW: make the layer's output channels-last
        z = z.contiguous(memory_format=torch.channels_last)
        h = normalise(z, shape.norm, running, l, training)
        a = torch.relu(h)
        hs.append(h)
        acts.append(a)
    pooled = a.mean((2, 3)).reshape(a.shape[0], r, shape.width).transpose(0, 1)  # (R, B, w)
    if local:
        pooled = pooled.detach()
    if feedback is not None:
        f = FeedbackReadout.apply(pooled, params["v"], feedback["v"])
    else:
        f = torch.matmul(pooled, params["v"])
    if shape.param == "ntk":
        f = f / math.sqrt(shape.width)
    return f + params["c"][:, None, :], hs, acts


def mse(f: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-run loss (1/(N·K)) Σ (f − y)², shape (R,)."""
    return ((f - y) ** 2).mean((-2, -1))


def error(f: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """e_n = ∂ℒ/∂f_n = 2(f_n − y_n)/(N·K), (R, B, K)."""
    return 2.0 * (f - y) / (f.shape[-2] * f.shape[-1])
