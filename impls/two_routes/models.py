"""Flax ResNets whose every conv and dense layer keeps a backward kernel (papers/two_routes/README.md, "Layers with a
backward kernel", "Training protocol at paper scale").

``PGConv`` / ``PGDense`` hold ``kernel`` (K_f) and, unless the rule is BP, ``backward_kernel``
(K_b, same shape, same initializer, independent draw). Their forward uses K_f only; their backward
sends the error down through K_b (impls.two_routes.layers). In training mode each layer sows its
alignment regulariser R_l(x, K_f, K_b) (x and K_f stop-gradient-ed) into the ``losses`` collection;
with ``measure=True`` it sows weight and projection angles into ``metrics`` and exposes a
``probes`` variable whose gradient gives the gradient angle.

Architectures (``ResNet``):
- ``stem="imagenet"``: TPU-style ResNet-v1 18/34 (basic) and 50/101/152 (bottleneck), 7×7/2 stem +
  3×3/2 max-pool, stages of widths w, 2w, 4w, 8w; last BN of each v1 block γ = 0 at init; BN momentum
  0.9 (v1) / 0.997 (v2), eps 1e-5; ``version=2`` is the pre-activation ResNet-v2.
- ``stem="cifar"``: the cpu/smoke ResNet-(6n+2): 3×3 stem, 3 stages of n basic blocks, widths w, 2w, 4w.
Every projection shortcut (1×1 conv + BN) and the classifier also have a backward kernel.
``FC``: the original code's small fully connected net (smoke size: FC 64-32-10, sigmoid hidden units).
Each layer knows the nonlinearity that follows it in the network (``activation``: ReLU after the v1 stem
and every block conv but the last, as in the original), which R uses only with ``activation_forward`` /
``activation_backward`` (impls.two_routes.projections).
Padding is symmetric (k−1)//2 ('same' for stride 1), as PyTorch; the TPU code pads explicitly too.
"""
from __future__ import annotations

from functools import partial
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from impls.two_routes import layers
from impls.two_routes.primitives import Geometry
from impls.two_routes.projections import ACTIVATIONS, Projections, RegularizerOptions
from impls.two_routes.rules import AlignmentRule, input_for_regularizer

CONV_INIT = jax.nn.initializers.variance_scaling(1.0, "fan_in", "truncated_normal")  # TF1 default
FC_INIT = {1: jax.nn.initializers.normal(0.01), 2: jax.nn.initializers.glorot_uniform()}
IMAGENET_DEPTHS = {18: ((2, 2, 2, 2), "basic"), 34: ((3, 4, 6, 3), "basic"), 50: ((3, 4, 6, 3), "bottleneck"),
                   101: ((3, 4, 23, 3), "bottleneck"), 152: ((3, 8, 36, 3), "bottleneck")}


class LayerOptions(NamedTuple):
    """What every layer needs to know besides its shape (static for a compiled step)."""

    rule: AlignmentRule
    measure: bool = False
    input_distribution: str | None = None
    input_stddev: float = 1.0
    regularizer: RegularizerOptions = RegularizerOptions()


class _PGLayer(nn.Module):
    """Sows, in training mode, R_l into ``losses`` (weighted by the rule's static coefficients) and each
    unweighted primitive into ``primitives`` (the trainer weights those by the scheduled coefficients)."""

    def _apply(self, x, kf, geo: Geometry):
        o: LayerOptions = self.opts
        rule = o.rule
        kb = self.param("backward_kernel", self.init_fn, kf.shape) if rule.uses_backward else kf
        if o.measure:
            probe = self.variable("probes", "grad", lambda: jnp.zeros((3,), jnp.float32)).value
            if geo.kind == "dense":
                y = layers.pg_dense_probe(x, kf, kb, probe, rule.tie)
            else:
                y = layers.pg_conv_probe(x, kf, kb, probe, geo.stride, geo.padding, rule.tie)
            xs = jax.lax.stop_gradient(x)
            self.sow("metrics", "weight_angle", layers.angle_deg(kf, kb))
            self.sow("metrics", "projection_angle", layers.angle_deg(geo.fwd(xs, kf), geo.fwd(xs, kb)))
        elif not rule.uses_backward:
            y = geo.fwd(x, kf)                              # BP: ordinary autodiff
        elif geo.kind == "dense":
            y = layers.pg_dense(x, kf, kb, rule.tie)
        else:
            y = layers.pg_conv(x, kf, kb, geo.stride, geo.padding, rule.tie)
        return y, kb

    def _regularize(self, x, kf, kb, geo: Geometry, train: bool, bias=None):
        o: LayerOptions = self.opts
        if not (train and o.rule.terms):
            return
        key = self.make_rng("noise") if o.input_distribution not in (None, "none") else None
        xr = input_for_regularizer(jax.lax.stop_gradient(x), key, o.input_distribution, o.input_stddev)
        bias = None if bias is None else jax.lax.stop_gradient(bias)
        proj = Projections(xr, jax.lax.stop_gradient(kf), kb, geo, bias, self.activation, o.regularizer)
        values = o.rule.primitive_values(proj)
        for term, value in values.items():
            self.sow("primitives", term, value)
        self.sow("losses", "R", o.rule.weighted(values))


class PGConv(_PGLayer):
    features: int
    kernel_size: int
    opts: LayerOptions
    strides: int = 1
    init_fn: Any = CONV_INIT
    activation: str | None = None    # the nonlinearity after this conv in the network (R-only options)

    @nn.compact
    def __call__(self, x, train: bool = True):
        kf = self.param("kernel", self.init_fn, (self.kernel_size, self.kernel_size, x.shape[-1], self.features))
        geo = Geometry("conv", self.strides, None)
        y, kb = self._apply(x, kf, geo)
        self._regularize(x, kf, kb, geo, train)
        return y


class PGDense(_PGLayer):
    features: int
    opts: LayerOptions
    init_fn: Any = FC_INIT[1]
    activation: str | None = None

    @nn.compact
    def __call__(self, x, train: bool = True):
        kf = self.param("kernel", self.init_fn, (x.shape[-1], self.features))
        b = self.param("bias", nn.initializers.zeros, (self.features,))   # before K_b: keeps the init stream
        y, kb = self._apply(x, kf, Geometry("dense"))
        self._regularize(x, kf, kb, Geometry("dense"), train, bias=b)
        return y + b


class Block(nn.Module):
    """Basic (two 3×3) or bottleneck (1×1, 3×3, 1×1 ×4) residual block, v1 (post-act) or v2 (pre-act)."""

    features: int
    strides: int
    kind: str
    version: int
    opts: LayerOptions
    bn: Any

    @nn.compact
    def __call__(self, x, train: bool = True):
        conv = partial(PGConv, opts=self.opts)
        out_features = self.features * (4 if self.kind == "bottleneck" else 1)
        shapes = ([(3, self.features, self.strides), (3, self.features, 1)] if self.kind == "basic" else
                  [(1, self.features, 1), (3, self.features, self.strides), (1, out_features, 1)])
        project = x.shape[-1] != out_features or self.strides != 1
        if self.version == 1:
            shortcut = x
            if project:
                shortcut = self.bn(name="proj_bn")(conv(out_features, 1, strides=self.strides, name="proj")(x, train))
            h = x
            for i, (k, f, s) in enumerate(shapes):
                last = i == len(shapes) - 1
                h = conv(f, k, strides=s, name=f"conv{i}", activation=None if last else "relu")(h, train)
                h = self.bn(name=f"bn{i}", scale_init=nn.initializers.zeros if last else nn.initializers.ones)(h)
                if not last:
                    h = nn.relu(h)
            return nn.relu(h + shortcut)
        pre = nn.relu(self.bn(name="pre_bn")(x))
        shortcut = conv(out_features, 1, strides=self.strides, name="proj")(pre, train) if project else x
        h = pre
        for i, (k, f, s) in enumerate(shapes):
            if i:
                h = nn.relu(self.bn(name=f"bn{i}")(h))
            h = conv(f, k, strides=s, name=f"conv{i}", activation="relu" if i < len(shapes) - 1 else None)(h, train)
        return h + shortcut


class ResNet(nn.Module):
    stage_sizes: tuple
    block: str
    num_classes: int
    opts: LayerOptions
    width: int = 64
    version: int = 1
    stem: str = "imagenet"

    @nn.compact
    def __call__(self, x, train: bool = True):
        momentum = 0.9 if self.version == 1 else 0.997
        bn = partial(nn.BatchNorm, use_running_average=not train, momentum=momentum, epsilon=1e-5)
        conv = partial(PGConv, opts=self.opts)
        stem_act = "relu" if self.version == 1 else None     # v1: BN + ReLU follow the stem conv
        if self.stem == "imagenet":
            x = conv(self.width, 7, strides=2, name="conv0", activation=stem_act)(x, train)
            if self.version == 1:
                x = nn.relu(bn(name="bn0")(x))
            x = nn.max_pool(x, (3, 3), (2, 2), padding=((1, 1), (1, 1)))
        else:
            x = conv(self.width, 3, name="conv0", activation=stem_act)(x, train)
            if self.version == 1:
                x = nn.relu(bn(name="bn0")(x))
        for g, n in enumerate(self.stage_sizes):
            for b in range(n):
                strides = 2 if g > 0 and b == 0 else 1
                x = Block(self.width * 2 ** g, strides, self.block, self.version, self.opts, bn,
                          name=f"block_group{g + 1}_{b}")(x, train)
        if self.version == 2:
            x = nn.relu(bn(name="final_bn")(x))
        x = jnp.mean(x, axis=(1, 2))
        return PGDense(self.num_classes, self.opts, init_fn=FC_INIT[self.version], name="dense")(x, train)


class FC(nn.Module):
    """The original code's small fully connected net (smoke size FC 64-32-10): flattened input,
    hidden PGDense layers with ``activation`` (sigmoid in the original), a linear PGDense classifier
    ``dense_output``; every layer has a backward kernel; kernels Glorot-uniform (TF's dense default)."""

    hidden: tuple
    num_classes: int
    opts: LayerOptions
    activation: str = "sigmoid"

    @nn.compact
    def __call__(self, x, train: bool = True):
        x = x.reshape((x.shape[0], -1))
        init = jax.nn.initializers.glorot_uniform()
        for i, units in enumerate(self.hidden):
            x = PGDense(units, self.opts, init_fn=init, activation=self.activation, name=f"dense{i}")(x, train)
            x = ACTIVATIONS[self.activation](x)
        return PGDense(self.num_classes, self.opts, init_fn=init, name="dense_output")(x, train)


def build(model_cfg: dict, num_classes: int, opts: LayerOptions) -> nn.Module:
    """The net a spec's ``model`` block names: {arch: resnet, depth, version, stem, width} or
    {arch: fc, hidden, activation}."""
    if model_cfg.get("arch") == "fc":
        return FC(tuple(int(h) for h in model_cfg["hidden"]), num_classes, opts, model_cfg["activation"])
    depth, stem = int(model_cfg["depth"]), model_cfg["stem"]
    if stem == "cifar":
        if (depth - 2) % 6:
            raise ValueError(f"cifar ResNet depth must be 6n+2, got {depth}")
        stages, block = ((depth - 2) // 6,) * 3, "basic"
    else:
        stages, block = IMAGENET_DEPTHS[depth]
    return ResNet(stages, block, num_classes, opts, int(model_cfg["width"]), int(model_cfg["version"]), stem)


def layer_names(params) -> list[str]:
    """Short names of the layers with a kernel (conv0, block_group1_0/conv0, ..., dense), in order."""
    flat = jax.tree_util.tree_flatten_with_path(params)[0]
    out = []
    for path, _ in flat:
        keys = [p.key for p in path]
        if keys[-1] == "kernel":
            out.append("/".join(keys[:-1]))
    return out
