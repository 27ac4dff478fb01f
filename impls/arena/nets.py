"""The arena's network and its random draws, in numpy, so that both frameworks start from the same numbers.

Every contender trains the same fully connected net: inputs x ∈ R^D (flattened, standardised with
training-split statistics), hidden layers h_l = f(h_{l−1} W_l) with f = ReLU (``model.activation``),
no biases, and C outputs. Weights are drawn here, per run seed, as W_l ∈ R^{n_{l−1} × n_l}
(row-vector convention) with He-uniform entries U(±√(6 / n_{l−1})) — the initialiser of the
PyTorch FA/PEPITA code — and handed to each rule's own code in its own layout (transposed for the
PyTorch rules and for node perturbation). The fixed feedback matrices of FA, DFA and DRTP are drawn
here too, from each rule's own law (``impls.rules_torch.fa/dfa/drtp``), so the JAX and the PyTorch
twin of a rule train from identical weights and identical feedback and their trajectories can be
compared step by step.

The conv task's net (``ConvNet``) is the node-perturbation paper's ``conv_base`` without biases:
3×3 convolutions ('SAME' padding, NHWC images, HWIO kernels K_l) with the given channels and strides
(default 32, 32, 32 and 1, 2, 1), ReLU after each, then a dense readout W (H_L·W_L·C_L, C) of the
last feature map flattened in (H, W, C) order. Its kernels are drawn the same way, He-uniform with
fan-in k·k·C_in, and so are the conv feedback kernels of FA and the two_routes rules (one per kernel,
the kernel's shape); DFA and DRTP project the error onto every unit of a feature map, their B_l has
H_l·W_l·C_l rows (``ConvNet.unit_sizes``).

Streams: weights from ``default_rng([seed, 0])``, feedback from ``default_rng([seed, 1])``, data order
from ``default_rng([seed, 2])`` (``impls.arena.data.epoch_order``): two rules with the same seed see
the same initial weights and the same minibatches.
"""
from __future__ import annotations

import math
from typing import NamedTuple, Sequence

import numpy as np

WEIGHT_STREAM, FEEDBACK_STREAM, ORDER_STREAM = 0, 1, 2


def layer_sizes(in_dim: int, hidden: Sequence[int], n_classes: int) -> list[int]:
    return [int(in_dim), *map(int, hidden), int(n_classes)]


def he_uniform(rng: np.random.Generator, n_in: int, n_out: int) -> np.ndarray:
    """U(±√(6/n_in)) of shape (n_in, n_out), float32."""
    return he_uniform_kernel(rng, (n_in, n_out))


def he_uniform_kernel(rng: np.random.Generator, shape: Sequence[int]) -> np.ndarray:
    """U(±√(6/fan-in)) of a dense (n_in, n_out) or conv (k, k, C_in, C_out) kernel; fan-in: all but the last axis."""
    limit = math.sqrt(6.0 / math.prod(shape[:-1]))
    return rng.uniform(-limit, limit, tuple(shape)).astype(np.float32)


class ConvNet(NamedTuple):
    """The conv task's net (module docstring): (H, W, C) images, channels and strides of its 3×3 convolutions."""

    image_shape: tuple[int, int, int]
    channels: tuple[int, ...]
    strides: tuple[int, ...]
    n_classes: int
    kernel: int = 3

    def feature_shapes(self) -> list[tuple[int, int, int]]:
        """(H_l, W_l, C_l) after each convolution ('SAME': H_l = ⌈H_{l−1} / stride⌉)."""
        h, w, _ = self.image_shape
        shapes = []
        for c, s in zip(self.channels, self.strides):
            h, w = -(-h // s), -(-w // s)
            shapes.append((h, w, c))
        return shapes

    def kernel_shapes(self) -> list[tuple[int, ...]]:
        """(k, k, C_in, C_out) of every convolution, then (H_L·W_L·C_L, C) of the readout."""
        c_in = [self.image_shape[2], *self.channels[:-1]]
        return ([(self.kernel, self.kernel, a, b) for a, b in zip(c_in, self.channels)]
                + [(math.prod(self.feature_shapes()[-1]), self.n_classes)])

    def unit_sizes(self) -> list[int]:
        """Units per layer as an MLP's ``sizes``: H·W·C of the input and of every feature map, then C."""
        return [math.prod(self.image_shape), *(math.prod(s) for s in self.feature_shapes()), self.n_classes]


def conv_weights(seed: int, net: ConvNet) -> list[np.ndarray]:
    """K_l (k, k, C_in, C_out) of every convolution and the readout W (H·W·C, C) of one run, from the weight stream."""
    rng = np.random.default_rng([seed, WEIGHT_STREAM])
    return [he_uniform_kernel(rng, shape) for shape in net.kernel_shapes()]


def conv_feedback_kernels(seed: int, net: ConvNet) -> list[np.ndarray]:
    """FA's fixed and the two_routes rules' initial backward kernels B_l of the conv net: He-uniform, one per
    kernel, its shape, from the feedback stream (independent of the forward kernels)."""
    rng = np.random.default_rng([seed, FEEDBACK_STREAM])
    return [he_uniform_kernel(rng, shape) for shape in net.kernel_shapes()]


def initial_weights(seed: int, sizes: Sequence[int]) -> list[np.ndarray]:
    """W_l (n_{l−1}, n_l) of one run; depends only on the seed and the sizes, never on the rule."""
    rng = np.random.default_rng([seed, WEIGHT_STREAM])
    return [he_uniform(rng, n_in, n_out) for n_in, n_out in zip(sizes[:-1], sizes[1:])]


def feedback_matrices(rule: str, seed: int, sizes: Sequence[int]) -> list[np.ndarray]:
    """The fixed feedback of FA, DFA or DRTP (``rule`` without its framework suffix), float32, JAX layout:

    - ``fa``:   B_l (n_{l−1}, n_l) for every layer, U(±√(6/n_{l−1})) (the first is never used: no error
      goes to the input);
    - ``dfa``:  B_l (n_l, C) for every hidden layer, U(±1/√n_l);
    - ``drtp``: B_l (n_l, C) for every hidden layer, U(±√(6/n_l)).
    The PyTorch twins take the same numbers (``impls.arena.torch_rules.feedback_for_torch``).
    """
    rng = np.random.default_rng([seed, FEEDBACK_STREAM])
    n_classes, hidden = sizes[-1], sizes[1:-1]
    if rule == "fa":
        return [he_uniform(rng, n_in, n_out) for n_in, n_out in zip(sizes[:-1], sizes[1:])]
    if rule == "dfa":
        return [rng.uniform(-1.0, 1.0, (n, n_classes)).astype(np.float32) / np.float32(math.sqrt(n)) for n in hidden]
    if rule == "drtp":
        return [(rng.uniform(-1.0, 1.0, (n, n_classes)) * math.sqrt(6.0 / n)).astype(np.float32) for n in hidden]
    raise ValueError(f"no fixed feedback for rule {rule!r}; rules with one: fa, dfa, drtp")


def backward_weights(seed: int, sizes: Sequence[int]) -> list[np.ndarray]:
    """The initial backward kernels B_l (n_{l−1}, n_l) of the two_routes rules: drawn like the forward
    weights (He-uniform), independently of them (the feedback stream)."""
    rng = np.random.default_rng([seed, FEEDBACK_STREAM])
    return [he_uniform(rng, n_in, n_out) for n_in, n_out in zip(sizes[:-1], sizes[1:])]


def cosine(a: Sequence[np.ndarray], b: Sequence[np.ndarray]) -> float:
    """cos(a, b) of two lists of arrays taken as one flat vector each (NaN if either is zero)."""
    va = np.concatenate([np.ravel(np.asarray(x, np.float64)) for x in a])
    vb = np.concatenate([np.ravel(np.asarray(x, np.float64)) for x in b])
    denom = np.linalg.norm(va) * np.linalg.norm(vb)
    return float(va @ vb / denom) if denom > 0 else float("nan")
