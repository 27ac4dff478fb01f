"""The quantities a layer's alignment regulariser is built from, with the original code's R-only options
(Kunin et al. 2020, papers/two_routes/README.md "Options"; flags of neuroailab/Neural-Alignment @ c3ea4f1,
reimplemented, all off by default).

Column notation (impls.two_routes.primitives): x the layer input (held fixed), W forward, B backward, b the
dense layer's bias (held fixed), f the nonlinearity that follows the layer in the network (ReLU for a conv
followed by BN + ReLU, the hidden activation of an FC net, none for the last conv of a block, projection
shortcuts and the classifier). In order, exactly as the original computes them:

    x  ← centre_i(x) (``center_input``), then x ← centre_i(x)/‖centre_i(x)‖ (``normalize_input``)
    x_b = x − mean_batch(x) if ``batch_center_backward_input`` else x
    p_f = Wx   (+ b if ``use_bias_forward``)          p_b = Bᵀx_b (+ b if ``use_bias_backward``)
    p_f ← f(p_f) if ``activation_forward``            p_b ← f(p_b) if ``activation_backward``
    r_f = B p_f   (forward reconstruction)            r_b = Wᵀ p_b  (backward reconstruction)
    (p_f, r_f) ← centre_i / normalise_i / batch-centre (``center_/normalize_/batch_center_forward_output``)
    (p_b, r_b) ← centre_i / normalise_i                (``center_/normalize_backward_output``)

centre_i subtracts each example's mean over all its non-batch axes; normalise_i centres, then divides each
example by its L2 norm (max(‖·‖², 1e-12)^½, as tf.math.l2_normalize). The primitives then read
sparse = E‖p_f‖² + E‖p_b‖², amp = −E[p_f·p_b] (reconstruction: −E[x·r_f]), null = E‖r_f‖² (+ E‖r_b‖²).
With every option off, p_f = Wx, p_b = Bᵀx, r_f = BWx and r_b = WᵀBᵀx.
"""
from __future__ import annotations

from functools import cached_property
from typing import NamedTuple

import jax
import jax.numpy as jnp

ACTIVATIONS = {"relu": jax.nn.relu, "sigmoid": jax.nn.sigmoid, "tanh": jnp.tanh}


class RegularizerOptions(NamedTuple):
    """The R-only switches (all False = the original code's behaviour at its flag defaults, except
    ``use_bias_*``, whose original default is True: see papers/two_routes/README.md)."""

    activation_forward: bool = False
    activation_backward: bool = False
    use_bias_forward: bool = False
    use_bias_backward: bool = False
    center_input: bool = False
    normalize_input: bool = False
    batch_center_backward_input: bool = False
    batch_center_forward_output: bool = False
    center_forward_output: bool = False
    normalize_forward_output: bool = False
    center_backward_output: bool = False
    normalize_backward_output: bool = False


PLAIN = RegularizerOptions()


def center_each(t):
    """Subtract each example's mean over all its non-batch axes."""
    axes = tuple(range(1, t.ndim))
    return t - jnp.mean(t, axis=axes, keepdims=True)


def normalize_each(t):
    """Centre each example, then scale it to unit L2 norm (norm floored at 1e-6)."""
    t = center_each(t)
    axes = tuple(range(1, t.ndim))
    return t * jax.lax.rsqrt(jnp.maximum(jnp.sum(t * t, axis=axes, keepdims=True), 1e-12))


def center_batch(t):
    return t - jnp.mean(t, axis=0, keepdims=True)


class Projections:
    """x, K_f, K_b and the (lazily computed) p_f, p_b, r_f, r_b of the module docstring for one layer."""

    def __init__(self, x, kf, kb, geo, bias=None, activation: str | None = None,
                 opts: RegularizerOptions = PLAIN):
        self.geo, self.kf, self.kb, self.bias, self.opts = geo, kf, kb, bias, opts
        self.act = ACTIVATIONS[activation] if activation else None
        if opts.center_input:
            x = center_each(x)
        if opts.normalize_input:
            x = normalize_each(x)
        self.x = x
        self.x_backward = center_batch(x) if opts.batch_center_backward_input else x

    def _raw(self, forward: bool):
        o = self.opts
        if forward:
            p = self.geo.fwd(self.x, self.kf)
            use_bias, use_act = o.use_bias_forward, o.activation_forward
        else:
            p = self.geo.fwd(self.x_backward, self.kb)
            use_bias, use_act = o.use_bias_backward, o.activation_backward
        if use_bias and self.bias is not None:
            p = p + self.bias
        if use_act and self.act is not None:
            p = self.act(p)
        return p

    def _standardise(self, t, forward: bool):
        o = self.opts
        if forward:
            if o.center_forward_output:
                t = center_each(t)
            if o.normalize_forward_output:
                t = normalize_each(t)
            if o.batch_center_forward_output:
                t = center_batch(t)
        else:
            if o.center_backward_output:
                t = center_each(t)
            if o.normalize_backward_output:
                t = normalize_each(t)
        return t

    @cached_property
    def _raw_forward(self):
        return self._raw(True)

    @cached_property
    def _raw_backward(self):
        return self._raw(False)

    @cached_property
    def forward(self):
        """p_f (= Wx with every option off)."""
        return self._standardise(self._raw_forward, True)

    @cached_property
    def backward(self):
        """p_b (= Bᵀx with every option off)."""
        return self._standardise(self._raw_backward, False)

    @cached_property
    def forward_reconstruction(self):
        """r_f = B p_f (before standardisation of p_f; = BWx with every option off)."""
        return self._standardise(self.geo.bwd(self._raw_forward, self.kb, self.x.shape), True)

    @cached_property
    def backward_reconstruction(self):
        """r_b = Wᵀ p_b (= WᵀBᵀx with every option off)."""
        return self._standardise(self.geo.bwd(self._raw_backward, self.kf, self.x.shape), False)
