"""Learning rules of the feed-forward net (papers/wide_align/README.md, "Learning rules"): each returns a direction
per parameter.

Notation: live network parameters θ(t) = (W_l, b_l, W_{L+1}, b_{L+1}); frozen initial network
θ(0) ("(0)", never updated, run on the *current* batch with its own activations and batch
statistics); e(t) = ∂ℒ/∂f = 2(f − y)/(N·K) from the live net; h_l post-norm pre-ReLU output of
layer l; the update is ΔW = −η·direction (SGD) or the direction fed to Adam.

- ``bp`` -- backpropagation: d_W = ∂ℒ/∂W for every parameter.
- ``alignzero`` (Boopathy & Fiete 2022, eq. "Align-zero"): d_W = Σ_n (∂f⁽⁰⁾(x_n)/∂W⁽⁰⁾)ᵀ e_n(t),
  the frozen net's gradient weighted by the live error, applied to the live weights (readout too).
  At t = 0 it equals BP (tested).
- ``alignada`` (ibid., "Align-ada"): δ_l⁽⁰⁾ = (∂f⁽⁰⁾/∂h_l⁽⁰⁾)ᵀ e(t) is the live error sent down the
  frozen net to its layer-l output; d_{W_l} = (∂h_l(t)/∂W_l)ᵀ δ_l⁽⁰⁾ with the live input φ(h_{l−1}(t))
  and the live Norm Jacobian -- no live backprop between layers. Readout: the gradient.
- ``alignprop`` (ibid., "Align-prop"): backprop in which every backward transpose W_lᵀ
  (readout included) is replaced by W_l(0)ᵀ; ReLU′, Norm Jacobians and inputs are live.
- ``fa`` -- feedback alignment (Lillicrap et al. 2016): as Align-prop with fixed independent
  N(0, 1) matrices B_l shaped like W_l (readout included), under the same 1/√fan_in. B_l = W_l
  gives BP (tested).
- ``dfa`` -- direct feedback alignment (Nøkland 2016): the gradient at ReLU(h_l) is B_l e for every
  hidden layer (the last included), nothing from layer l + 1; it then passes the live ReLU′, Norm
  and input to W_l. 'full': B_l ∈ ℝ^{(H_l W_l C_l)×K}, std 1/√(H_l W_l C_l); 'pooled' (spec B2):
  B_l ∈ ℝ^{C_l×K}, std 1/√C_l, the gradient B_l e/(H_l W_l) at every position. Readout: gradient.
  The DFA signal and feedback draw live in the shared ``impls.rules_torch.dfa``.
- ``lastlayer``: hidden layers frozen at initialisation; readout: the gradient.

Optimisers: plain SGD (θ ← θ − η d) or Adam (β 0.9, 0.999, ε 1e-8), η per run.

Reference: A. Boopathy, I. Fiete, "How to Train Your Wide Neural Network Without Backprop: An
Input-Weight Alignment Perspective", ICML 2022.
"""
from __future__ import annotations

import math

import torch

from impls.rules_torch import dfa
from impls.wide_align import models

CHAIN_RULES = ("bp", "fa", "alignprop")
LOCAL_RULES = ("dfa", "alignada", "lastlayer")


def needs_frozen(rule: str) -> bool:
    return rule in ("alignzero", "alignada", "alignprop")


def init_feedback(rule: str, shape: models.NetShape, params0_one: dict, generator: torch.Generator,
                  dfa_feedback: str = "full", dtype=torch.float32) -> dict | None:
    """One run's fixed feedback: FA {'w': [B_l], 'v': B}, DFA {'dfa': [B_l]}, else None."""
    if rule == "fa":
        ws = []
        for w in params0_one["w"]:
            b = torch.randn(w.shape, generator=generator, dtype=torch.float64)
            if shape.param == "standard":
                b = b / math.sqrt(9 * w.shape[1])
            ws.append(b.to(dtype))
        v = torch.randn(params0_one["v"].shape, generator=generator, dtype=torch.float64)
        if shape.param == "standard":
            v = v / math.sqrt(shape.width)
        return {"w": ws, "v": v.to(dtype)}
    if rule == "dfa":
        sizes = dfa.conv_feedback_sizes(shape.layer_outputs(), dfa_feedback)
        return {"dfa": dfa.draw_normal_feedback(sizes, shape.n_classes, generator, dtype)}
    return None


def _grads(scalar, tensors):
    out = torch.autograd.grad(scalar, tensors, allow_unused=True)
    return [torch.zeros_like(t) if g is None else g for t, g in zip(tensors, out)]


def _leaves(params: dict) -> dict:
    return models.unflat([p.detach().requires_grad_(True) for p in models.flat(params)], len(params["w"]))


def frozen_signals(params0: dict, x, e, shape, want_hidden: bool):
    """Σ_n (∂f⁽⁰⁾/∂θ⁽⁰⁾)ᵀ e_n (Align-zero direction) or δ_l⁽⁰⁾ = (∂f⁽⁰⁾/∂h_l⁽⁰⁾)ᵀ e (Align-ada)."""
    with torch.enable_grad():
        p0 = _leaves(params0)
        f0, hs0, _ = models.forward(p0, x, shape)
        if want_hidden:
            return _grads((f0 * e).sum(), hs0)
        return _grads((f0 * e).sum(), models.flat(p0))


#: B_l e placed at ReLU(h_l) (the shared DFA's conv signal)
dfa_signal = dfa.conv_signal


def directions(rule: str, params: dict, params0: dict | None, feedback: dict | None, x, y,
               shape: models.NetShape, running: dict | None = None, dfa_mode: str = "full"):
    """``(dirs, f, e)``: one direction per tensor of ``models.flat(params)``, the live output and error."""
    n_layers = len(params["w"])
    if rule == "alignzero":  # the live net only supplies f and e: no graph needed
        with torch.no_grad():
            f = models.forward(params, x, shape, running=running, training=True)[0]
        e = models.error(f, y)
        return frozen_signals(params0, x, e, shape, want_hidden=False), f, e
    with torch.enable_grad():
        live = _leaves(params)
        leaves = models.flat(live)
        fb = None
        if rule == "fa":
            fb = feedback
        elif rule == "alignprop":
            fb = {"w": params0["w"], "v": params0["v"]}
        local = rule in LOCAL_RULES
        f, hs, acts = models.forward(live, x, shape, feedback=fb, local=local, running=running, training=True)
        loss = models.mse(f, y).sum()
        e = models.error(f.detach(), y)
        if rule in CHAIN_RULES:
            return _grads(loss, leaves), f.detach(), e
        surrogate = loss  # reaches v, c only (the readout input is detached in local mode)
        if rule == "alignada":
            deltas = frozen_signals(params0, x, e, shape, want_hidden=True)
            surrogate = surrogate + sum((h * d).sum() for h, d in zip(hs, deltas))
        elif rule == "dfa":
            surrogate = surrogate + dfa.conv_surrogate(acts, feedback["dfa"], e, dfa_mode)
        dirs = _grads(surrogate, leaves)
        if rule == "lastlayer":
            dirs = [torch.zeros_like(d) for d in dirs[:2 * n_layers]] + dirs[2 * n_layers:]
        return dirs, f.detach(), e


class Optimizer:
    """SGD or Adam over stacked tensors with a per-run learning rate ``lr`` (R,)."""

    def __init__(self, kind: str, tensors, lr: torch.Tensor, betas=(0.9, 0.999), eps=1e-8):
        self.kind, self.lr, self.betas, self.eps = kind, lr, betas, eps
        self.step_count = 0
        self.m = [torch.zeros_like(t) for t in tensors] if kind == "adam" else []
        self.v = [torch.zeros_like(t) for t in tensors] if kind == "adam" else []

    def _lr(self, t):
        return self.lr.view(-1, *([1] * (t.dim() - 1)))

    @torch.no_grad()
    def step(self, tensors, dirs) -> None:
        if self.kind == "sgd":
            for t, d in zip(tensors, dirs):
                t.sub_(self._lr(t) * d)
            return
        self.step_count += 1
        b1, b2 = self.betas
        c1, c2 = 1 - b1 ** self.step_count, 1 - b2 ** self.step_count
        for t, d, m, v in zip(tensors, dirs, self.m, self.v):
            m.mul_(b1).add_((1 - b1) * d)
            v.mul_(b2).add_((1 - b2) * d * d)
            t.sub_(self._lr(t) * (m / c1) / (torch.sqrt(v / c2) + self.eps))

    def state_dict(self) -> dict:
        return {"step": self.step_count, "m": self.m, "v": self.v}

    def load_state_dict(self, state: dict) -> None:
        self.step_count, self.m, self.v = state["step"], state["m"], state["v"]
