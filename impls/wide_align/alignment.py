"""Alignment score between BP's weight change and its NTK prediction (papers/wide_align/README.md, "Alignment score"),
with a control.

For a hidden conv layer with kernel change ΔW (C_out, C_in, 3, 3), stride s and input shape
(C_in, S, S), A is the conv with kernel ΔW (TF 'SAME' padding) and G = AᵀA / C_out its
input-space Gram operator (Aᵀ the exact transposed conv). With ΔW = W_BP(t) − W(0) and
ΔW̃ = W̃(t) − W(0) (W̃ accumulates the Align-zero direction driven by BP's error):

    score = ⟨G, G̃⟩_F / (‖G‖_F ‖G̃‖_F)

Estimator (the original's): ``draws`` times, a probe batch n of 100 N(0, 1) tensors (shared by G
and G̃); a = Gn / mean|Gn|, b = G̃n / mean|G̃n|; S_ab += mean over the batch of Σ a⊙b (likewise
S_aa, S_bb); draws with a NaN are skipped; score = S_ab / √(S_aa S_bb). Since E[nᵀGG̃n] =
tr(GG̃) = ⟨G, G̃⟩_F for symmetric G, G̃, it approaches the exact cosine (tested on a 1x1 conv).

Shuffled control: every entry of W_BP(t) (not ΔW) is permuted at random, W(0) subtracted, and the
result scored against ΔW̃. Its chance level depends on the layer's shape (high for a 1-channel
first layer, low for wide hidden layers; tested), so scores are read against it, never against 0.

Caller: impls.wide_align.evaluate (evaluate stage), from align_snapshots.npz.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from impls.wide_align.models import same_pad

PROBE_BATCH = 100


def _pad_amounts(size: int, stride: int, k: int):
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + k - size, 0)
    return total // 2, total - total // 2


def gram_apply(dw: torch.Tensor, n: torch.Tensor, stride: int) -> torch.Tensor:
    """G n = Aᵀ A n / C_out for probes n (P, C_in, S, S)."""
    k, size = dw.shape[-1], n.shape[-1]
    an = F.conv2d(same_pad(n, stride, k), dw, stride=stride)
    before, after = _pad_amounts(size, stride, k)
    padded = (n.shape[0], n.shape[1], size + before + after, size + before + after)
    back = torch.nn.grad.conv2d_input(padded, dw, an, stride=stride)
    return back[..., before:before + size, before:before + size] / dw.shape[0]


def score(dw, dwt, c_in: int, size: int, stride: int, generator: torch.Generator, draws: int = 100,
          probe_batch: int = PROBE_BATCH) -> float:
    """The Gaussian-probe estimate of cos(G, G̃) (see module docstring)."""
    dw, dwt = torch.as_tensor(dw, dtype=torch.float64), torch.as_tensor(dwt, dtype=torch.float64)
    s_ab = s_aa = s_bb = 0.0
    for _ in range(draws):
        n = torch.randn(probe_batch, c_in, size, size, generator=generator, dtype=torch.float64)
        a, b = gram_apply(dw, n, stride), gram_apply(dwt, n, stride)
        a, b = a / a.abs().mean(), b / b.abs().mean()
        ab, aa, bb = ((a * b).flatten(1).sum(1).mean().item(), (a * a).flatten(1).sum(1).mean().item(),
                      (b * b).flatten(1).sum(1).mean().item())
        if not all(math.isfinite(v) for v in (ab, aa, bb)):
            continue
        s_ab, s_aa, s_bb = s_ab + ab, s_aa + aa, s_bb + bb
    return s_ab / math.sqrt(s_aa * s_bb) if s_aa > 0 and s_bb > 0 else float("nan")


def gram_matrix(dw, c_in: int, size: int, stride: int) -> torch.Tensor:
    """G as an explicit (C_in S², C_in S²) matrix (small layers; tests)."""
    dw = torch.as_tensor(dw, dtype=torch.float64)
    d = c_in * size * size
    eye = torch.eye(d, dtype=torch.float64).reshape(d, c_in, size, size)
    return gram_apply(dw, eye, stride).reshape(d, d)


def exact_cosine(dw, dwt, c_in: int, size: int, stride: int) -> float:
    g, gt = gram_matrix(dw, c_in, size, stride), gram_matrix(dwt, c_in, size, stride)
    return float((g * gt).sum() / (g.norm() * gt.norm()))


def shuffled_change(w_bp, w0, generator: torch.Generator) -> torch.Tensor:
    """Control: a random permutation of every entry of W_BP(t), minus W(0)."""
    w_bp = torch.as_tensor(w_bp, dtype=torch.float64)
    perm = torch.randperm(w_bp.numel(), generator=generator)
    return w_bp.flatten()[perm].reshape(w_bp.shape) - torch.as_tensor(w0, dtype=torch.float64)
