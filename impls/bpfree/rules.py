"""The bpfree learning rules: one projection framework for every hidden layer (papers/bpfree/README.md, "Rules" and
"Local learning signals").

For each hidden layer a fixed random B_l (n_l × K; K = C classes, or D inputs for
reconstruction) maps the layer's output h_l (before dropout) to p_l = h_l B_l; a scalar
ℓ_l summed over the batch gives δh_l = ∂ℓ_l/∂h_l, and the layer's pseudo-gradient is the VJP of
h_l with respect to its own parameters only (W_l, b_l and BN γ, β through the training-mode
batch statistics; x_{l−1} held constant). The output layer gets the exact gradient of L.

| rule  | ℓ_l                                           | δh_l                          | code                |
|-------|-----------------------------------------------|-------------------------------|---------------------|
| dfa   | Σ_n ⟨e_n, h_{l,n} B_l⟩, e = ∂L/∂z constant    | e B_lᵀ, e = (ŷ − y)/N         | impls.rules.dfa     |
| drtp  | Σ_n ⟨y_n, h_{l,n} B_l⟩                        | y B_lᵀ                        | impls.rules.drtp    |
| cce   | Σ_n CCE(y_n, softmax(h_{l,n} B_l))            | (softmax(p_l) − y) B_lᵀ       | here                |
| mse   | Σ_n mean_j (y_nj − g(p_l)_nj)²                | (2/K)((g − y) ⊙ g′) B_lᵀ      | here                |
| bp    | —                                             | exact gradient                | here (jax.grad)     |
| fa    | — (B_l replaces W_lᵀ layer by layer)          |                               | impls.rules.fa      |

g = tanh if the scaler is ``standard`` else sigmoid; for reconstruction y is the flattened input.
Conv nets (``arch: conv``): every trained conv layer is one more "hidden layer" here, its h_l the
full flattened conv output (before pooling) and B_l of shape (H_l·W_l·F_l, K)
(:func:`impls.bpfree.models.feedback_sizes`); FA uses :func:`impls.bpfree.conv.fa_conv`.
Every rule's ``estimate`` returns aux with ``loss`` (global, batch mean), ``z`` and ``hs`` (for
accuracy and trackers) and ``model_state`` (new BN running statistics).

References: S. Pathak, Backpropagation-Free Algorithms, Volume 1 (github.com/5aurabhpathak/
backprop-free-algorithms-vol1); A. Nøkland, NeurIPS 2016 (DFA); C. Frenkel, M. Lefebvre, D. Bol,
Front. Neurosci. 15:629892 (2021) (DRTP); T. P. Lillicrap et al., Nat. Commun. 7:13276 (2016) (FA).
"""
from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import optax

from impls.bpfree import models
from impls.rules import LearningRule, stateless_init
from impls.rules.dfa import direct_feedback_alignment, init_feedback
from impls.rules.drtp import direct_random_target_projection
from impls.rules.fa import feedback_alignment


def _forward(cfg, model_state, mode, params, x, key, feedback=None):
    z, hs, new_state = models.apply(params, model_state, x, key, cfg, train=True, mode=mode, feedback=feedback)
    return z, hs, {"z": z, "hs": hs, "model_state": new_state}


def local_target_fn(name: str, cfg: models.Config):
    """ℓ_l per example for the LL rules: (p_l, y) -> (N,)."""
    if name == "cce":
        return optax.softmax_cross_entropy
    g = jnp.tanh if cfg.scaler == "standard" else jax.nn.sigmoid
    return lambda p, y: jnp.mean((y - g(p)) ** 2, axis=-1)


def local_losses(name: str, cfg: models.Config, hs, z, y, feedback) -> list:
    """ℓ_l / N for each hidden layer (the ``local_loss`` tracker), at the given h_l."""
    n = z.shape[0]
    if name == "dfa":
        e = jax.grad(lambda zz: models.loss(zz, y, cfg))(z)
        return [jnp.sum(e * (h @ B)) / n for h, B in zip(hs, feedback)]
    if name == "drtp":
        return [jnp.sum(y * (h @ B)) / n for h, B in zip(hs, feedback)]
    fn = local_target_fn(name, cfg)
    return [fn(h @ B, y).mean() for h, B in zip(hs, feedback)]


#: rules whose local loss is also recorded on the test set (as the original: on test batches too, except for DFA:
#: DFA's ℓ_l needs the batch's output error e, the others only the target)
TEST_LOCAL_LOSS_RULES = ("drtp", "cce", "mse")


def local_losses_per_example(name: str, cfg: models.Config, hs, y, feedback) -> list:
    """ℓ_{l,n} of each example for each hidden layer, (N,) each: drtp ⟨y_n, h_{l,n} B_l⟩, cce/mse the
    local objective of h_{l,n} B_l; their mean over a batch is :func:`local_losses`. Not defined for DFA."""
    if name not in TEST_LOCAL_LOSS_RULES:
        raise ValueError(f"per-example local losses exist for {TEST_LOCAL_LOSS_RULES}, not {name!r}")
    if name == "drtp":
        return [jnp.sum(y * (h @ B), axis=-1) for h, B in zip(hs, feedback)]
    fn = local_target_fn(name, cfg)
    return [fn(h @ B, y) for h, B in zip(hs, feedback)]


def local_loss_rule(name: str, cfg: models.Config, model_state, feedback_init: str) -> LearningRule:
    """LL-cce / LL-mse: descend L (output layer) + Σ_l ℓ_l (each hidden layer, local mode)."""
    shapes = [(n, cfg.out_dim) for n in models.feedback_sizes(cfg)]
    fn = local_target_fn(name, cfg)

    def init(params, key=None):
        del params
        return init_feedback(key, shapes, feedback_init)

    def estimate(params, state, x, y, key=None):
        def objective(p):
            z, hs, aux = _forward(cfg, model_state, "local", p, x, key)
            global_loss = models.loss(z, y, cfg)
            local = sum(fn(h @ jax.lax.stop_gradient(B), y).sum() for h, B in zip(hs, state.B))
            return global_loss + local, (global_loss, aux)

        (_, (loss, aux)), grads = jax.value_and_grad(objective, has_aux=True)(params)
        return grads, state, {"loss": loss, **aux}

    return LearningRule(init=init, estimate=estimate)


def backprop_rule(cfg: models.Config, model_state) -> LearningRule:
    """Exact gradient of the batch-mean global loss (with BN statistics and dropout as in training)."""

    def estimate(params, state, x, y, key=None):
        def objective(p):
            z, _, aux = _forward(cfg, model_state, "bp", p, x, key)
            return models.loss(z, y, cfg), aux

        (loss, aux), grads = jax.value_and_grad(objective, has_aux=True)(params)
        return grads, state, {"loss": loss, **aux}

    return LearningRule(init=lambda params, key=None: stateless_init(params), estimate=estimate)


def make_rule(name: str, cfg: models.Config, model_state, feedback_init: str = "ortho") -> LearningRule:
    """The rule a run spec names (``impls.bpfree.options.RULES``) for the net ``cfg``.

    ``model_state`` (BN running statistics) is closed over: build the rule inside the traced step.
    ``init(params, key=None)`` draws the fixed feedback matrices from ``key``.
    """
    loss_fn = partial(models.loss, cfg=cfg)
    if name == "bp":
        return backprop_rule(cfg, model_state)
    if name == "dfa":
        return direct_feedback_alignment(partial(_forward, cfg, model_state, "local"), loss_fn,
                                         models.feedback_sizes(cfg), cfg.out_dim, feedback_init)
    if name == "drtp":
        return direct_random_target_projection(partial(_forward, cfg, model_state, "local"), loss_fn,
                                               models.feedback_sizes(cfg), cfg.out_dim, feedback_init)
    if name in ("cce", "mse"):
        return local_loss_rule(name, cfg, model_state, feedback_init)
    if name == "fa":
        def forward(params, x, key, feedback):
            z, _, aux = _forward(cfg, model_state, "fa", params, x, key, feedback)
            return z, aux

        return feedback_alignment(forward, loss_fn, models.kernel_shapes(cfg), feedback_init)
    raise ValueError(f"unknown bpfree rule {name!r}")


def feedback_matrices(name: str, state) -> tuple:
    """The B_l of a rule state (empty for bp)."""
    return tuple(state.B) if hasattr(state, "B") else ()
