"""The arena's conv task in JAX: the rules whose papers' code trains convolutions, on the arena's conv net.

The net is ``impls.arena.nets.ConvNet`` (the node-perturbation paper's ``conv_base`` without biases):
a_l = conv(h_{l−1}, K_l) ('SAME', stride s_l), h_l = ReLU(a_l) for the convolutions, then logits
z = flat(h_L) W. Each contender is a :class:`impls.arena.jax_rules.JaxContender` (same contract as
the MLP's), built from its paper's conv code:

- BP (``impls.rules.backprop``): the exact gradient of the cross-entropy.
- FA (Lillicrap et al. 2016): δh_{l−1} = convᵀ(δa_l, B_l) with a fixed random kernel B_l of K_l's shape in
  place of K_l, ΔK_l the exact filter gradient of h_{l−1} and δa_l; the readout as ``impls.rules.fa.fa_dense``.
  The conv layer is ``impls.two_routes.layers.pg_conv`` with its backward kernel held fixed (that
  paper's FA: R = 0, B fixed); the learning rule is ``impls.rules.fa.feedback_alignment``.
- DFA (Nøkland 2016) and DRTP (Frenkel et al. 2021), ``impls.rules.dfa`` / ``impls.rules.drtp``:
  every feature map h_l, flattened to H_l·W_l·C_l units, gets δh_l = e B_lᵀ (DFA, e = ∂L/∂z) or
  y* B_lᵀ (DRTP) with B_l (H_l·W_l·C_l, C), as bpfree's conv code does (``impls.bpfree.conv``).
- NP, NP with independent noise (Mehta et al.): ``impls.nodepert.convnets.make_conv_rule`` on that
  code's own ``conv_base`` forward (its biases held at 0), sigmoid outputs and the squared error, ξ_l
  of every layer's full output shape; σ = 1e-5, the paper's for conv nets (``options.resolved_hparams``).
- WM, IA, SA, AA, KP (Kunin et al. 2020): ``impls.two_routes.layers.pg_conv`` / ``pg_dense`` (δ goes
  down through the backward kernels B_l) and the rule's regulariser R_l(h_{l−1}, K_l, B_l) with the
  conv geometry of the layer (``impls.two_routes.primitives.Geometry``), which trains only B_l.
"""
from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
from jax import lax

from impls.arena import nets
from impls.arena.jax_rules import ACT, JaxContender, all_trainable, mean_ce
from impls.common.jax_conv import conv
from impls.common.errors import SpecError
from impls.rules.backprop import backprop
from impls.rules.dfa import FeedbackState, direct_feedback_alignment
from impls.rules.drtp import direct_random_target_projection
from impls.rules.fa import fa_dense, feedback_alignment

PADDING = "SAME"


def _conv(h, k, stride):
    """'SAME' conv whose gradients XLA:CPU runs fast inside the epoch's scan (:mod:`impls.common.jax_conv`)."""
    return conv(h, k, stride, PADDING)


def _flat(h):
    return h.reshape(h.shape[0], -1)


def plain_forward(kernels, x, net: nets.ConvNet, activation: str):
    """Logits of the conv net with kernels [K_1 … K_L, W]."""
    h = x
    for k, s in zip(kernels[:-1], net.strides):
        h = ACT[activation](_conv(h, k, s))
    return _flat(h) @ kernels[-1]


def _plain_bp(net, activation, weights_of):
    def grads(params, x, y):
        return list(jax.grad(lambda w: mean_ce(plain_forward(w, x, net, activation), y))(list(weights_of(params))))
    return grads


def shared(rule: str, net: nets.ConvNet, activation: str) -> JaxContender:
    """BP, FA, DFA or DRTP (``impls.rules``) on the conv net: params ``[{"w": K_l}, …, {"w": W}]``."""
    from impls.two_routes.layers import pg_conv

    act, units = ACT[activation], net.unit_sizes()
    zero_bias = jnp.zeros((net.n_classes,), jnp.float32)

    def forward(p, x, key=None, feedback=None, local=False):
        h, hs = x, []
        for l, (layer, s) in enumerate(zip(p[:-1], net.strides)):
            inp = lax.stop_gradient(h) if (local and l > 0) else h
            a = _conv(inp, layer["w"], s) if feedback is None else pg_conv(inp, layer["w"], feedback[l], s, PADDING)
            h = act(a)
            hs.append(_flat(h))
        inp = lax.stop_gradient(_flat(h)) if local else _flat(h)
        z = inp @ p[-1]["w"] if feedback is None else fa_dense(inp, p[-1]["w"], zero_bias, feedback[-1])
        return z, hs

    if rule == "backprop":
        learning = backprop(lambda p, x, y: mean_ce(forward(p, x)[0], y))
    elif rule == "fa":
        learning = feedback_alignment(lambda p, x, key, fb: (forward(p, x, key, fb)[0], {}), mean_ce,
                                      net.kernel_shapes())
    else:
        build = direct_feedback_alignment if rule == "dfa" else direct_random_target_projection
        learning = build(lambda p, x, key: (*forward(p, x, key, local=True), {}), mean_ce, units[1:-1], units[-1])

    def init(seed):
        params = [{"w": jnp.asarray(w)} for w in nets.conv_weights(seed, net)]
        if rule == "backprop":
            return params, ()
        feedback = (nets.conv_feedback_kernels(seed, net) if rule == "fa"
                    else nets.feedback_matrices(rule, seed, units))
        return params, FeedbackState(B=tuple(jnp.asarray(b) for b in feedback))

    def estimate(params, state, x, y, key):
        grads, state, aux = learning.estimate(params, state, x, y, key)
        return grads, state, aux["loss"]

    weights = lambda tree: [layer["w"] for layer in tree]   # noqa: E731
    return JaxContender(init, estimate, all_trainable, lambda p, x: forward(p, x)[0], weights,
                        _plain_bp(net, activation, weights))


def node_perturbation(rule: str, net: nets.ConvNet, activation: str, sigma: float) -> JaxContender:
    """``impls.nodepert.convnets``: its conv net holds K_l (HWIO) and a readout W (C, H·W·C) with biases
    (kept at 0 here), ReLU units, sigmoid outputs and the squared error (the paper's loss)."""
    from impls.nodepert import convnets

    if activation != "relu":
        raise SpecError(f"arena rule {rule} on the conv net: node perturbation's conv code (impls.nodepert.convnets) "
                        f"has ReLU units only; model.activation is {activation!r}")
    convs = tuple(convnets.ConvLayer(net.kernel, c, s) for c, s in zip(net.channels, net.strides))
    learning = convnets.make_conv_rule(rule, {"sigma": sigma}, convs, net.image_shape, net.n_classes)

    def init(seed):
        ws = nets.conv_weights(seed, net)
        layers = [{"w": jnp.asarray(w), "b": jnp.zeros((w.shape[-1],), jnp.float32)} for w in ws[:-1]]
        return layers + [{"w": jnp.asarray(ws[-1].T), "b": jnp.zeros((net.n_classes,), jnp.float32)}], ()

    def estimate(params, state, x, y, key):
        grads, state, aux = learning.estimate(params, state, x, y, key)
        return grads, state, aux["loss"]

    def weights(tree):
        return [layer["w"] for layer in tree[:-1]] + [tree[-1]["w"].T]

    def bp_grads(params, x, y):
        return weights(jax.grad(partial(convnets.mean_loss, convs=convs))(params, x, y))

    return JaxContender(init, estimate, lambda tree: [{"w": 1.0, "b": 0.0} for _ in tree],
                        lambda p, x: convnets.forward(p, x, convs)[0], weights, bp_grads)


def alignment(rule: str, net: nets.ConvNet, activation: str) -> JaxContender:
    """WM, IA, SA, AA, KP of ``impls.two_routes.rules`` on ``layers.pg_conv`` and a ``pg_dense`` readout
    (forward kernels K_l, backward kernels B_l of the same shapes): the task loss trains K_l (its error
    goes down through B_l), R_l(h_{l−1}, K_l, B_l) trains B_l (KP: B_l also gets K_l's task gradient)."""
    from impls.two_routes import layers
    from impls.two_routes.primitives import Geometry
    from impls.two_routes.rules import rule_for_spec

    learning, act = rule_for_spec(rule, {}), ACT[activation]

    def objective(p, x, y):
        h, reg = x, 0.0
        for kf, kb, s in zip(p["kf"][:-1], p["kb"][:-1], net.strides):
            reg = reg + learning.regularizer(lax.stop_gradient(h), lax.stop_gradient(kf), kb, Geometry("conv", s, PADDING))
            h = act(layers.pg_conv(h, kf, kb, s, PADDING, learning.tie))
        h = _flat(h)
        reg = reg + learning.regularizer(lax.stop_gradient(h), lax.stop_gradient(p["kf"][-1]), p["kb"][-1])
        loss = mean_ce(layers.pg_dense(h, p["kf"][-1], p["kb"][-1], learning.tie), y)
        return loss + reg, loss

    def init(seed):
        return ({"kf": [jnp.asarray(w) for w in nets.conv_weights(seed, net)],
                 "kb": [jnp.asarray(b) for b in nets.conv_feedback_kernels(seed, net)]}, ())

    def estimate(params, state, x, y, key):
        (_, loss), grads = jax.value_and_grad(objective, has_aux=True)(params, x, y)
        return grads, state, loss

    weights = lambda tree: list(tree["kf"])   # noqa: E731
    return JaxContender(init, estimate, all_trainable, lambda p, x: plain_forward(p["kf"], x, net, activation),
                        weights, _plain_bp(net, activation, weights))


def build(rule: str, net: nets.ConvNet, activation: str, hparams: dict) -> JaxContender:
    """The conv-task contender of arena id ``rule`` (``impls.arena.contenders.CONV_CONTENDERS``)."""
    base = rule.removesuffix("_jax")
    if base in ("backprop", "fa", "dfa", "drtp"):
        return shared(base, net, activation)
    if base in ("np", "np_indep_noise"):
        return node_perturbation(base, net, activation, float(hparams["sigma"]))
    if base in ("wm", "ia", "sa", "aa", "kp", "kp_equal_leak"):
        return alignment(base, net, activation)
    raise ValueError(f"no conv contender {rule!r}")
