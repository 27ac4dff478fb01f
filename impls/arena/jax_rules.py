"""The arena's JAX contenders: each rule's own code (``impls.rules``, ``impls.nodepert``, ``impls.bpfree``,
``impls.two_routes``) wired to the arena's network (``impls.arena.nets``).

A contender is a :class:`JaxContender`: ``init(seed)`` gives one run's parameters and rule state
from the arena's numpy draws; ``estimate(params, state, x, y, key)`` is the rule's pseudo-gradient
(``impls.rules.LearningRule`` contract) and its minibatch loss; ``trainable`` zeroes the updates of
parameters the arena's net does not have (the biases of the nodepert and bpfree models stay at 0,
so every contender trains the same bias-free net); ``logits`` is inference; ``weights`` picks the
forward weight matrices W_l (n_{l−1}, n_l) out of a parameter-shaped tree (parameters or updates);
``bp_grads`` is the exact gradient of the contender's own global loss on W_l, the reference of the
cosine the leaderboard reports.

Losses: softmax cross-entropy on the logits for every contender except node perturbation, whose
code (impls.nodepert) trains sigmoid outputs on the squared error, as the paper does; for LL-cce and
LL-mse the global loss is the output layer's cross-entropy and each hidden layer descends its own
local loss (impls.bpfree.rules.local_loss_rule); the two_routes rules add their layer-wise
regulariser R_l(x_l, W_l, B_l), which trains only the backward kernels B_l.
"""
from __future__ import annotations

from functools import partial
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from impls.arena import nets
from impls.common.errors import SpecError
from impls.rules.backprop import backprop
from impls.rules.dfa import FeedbackState, direct_feedback_alignment
from impls.rules.drtp import direct_random_target_projection
from impls.rules.fa import fa_dense, feedback_alignment

ACT = {"relu": jax.nn.relu, "tanh": jnp.tanh}


class JaxContender(NamedTuple):
    init: Callable[[int], tuple[Any, Any]]
    estimate: Callable[..., tuple[Any, Any, jax.Array]]
    trainable: Callable[[Any], Any]
    logits: Callable[[Any, jax.Array], jax.Array]
    weights: Callable[[Any], list]
    bp_grads: Callable[[Any, jax.Array, jax.Array], list]


def mean_ce(z, y):
    return -jnp.mean(jnp.sum(y * jax.nn.log_softmax(z), axis=-1))


def all_trainable(tree):
    return jax.tree_util.tree_map(lambda _: 1.0, tree)


# ----------------------------------------------------------------------------- shared rules (impls.rules)

def _plain_forward(weights, x, activation):
    h = x
    for l, w in enumerate(weights):
        h = h @ w
        if l < len(weights) - 1:
            h = ACT[activation](h)
    return h


def _plain_bp(activation, weights_of):
    """``bp_grads`` of a contender whose net is ``_plain_forward`` of ``weights_of(params)``."""
    def grads(params, x, y):
        return list(jax.grad(lambda w: mean_ce(_plain_forward(w, x, activation), y))(list(weights_of(params))))
    return grads


def shared(rule: str, sizes, activation: str) -> JaxContender:
    """BP, FA, DFA or DRTP of ``impls.rules`` on the bias-free net: params ``[{"w": W_l}]``."""
    act, last = ACT[activation], len(sizes) - 2
    zeros = [jnp.zeros((n,), jnp.float32) for n in sizes[1:]]

    def forward(p, x, key=None, feedback=None, local=False):
        h, hs = x, []
        for l, layer in enumerate(p):
            inp = jax.lax.stop_gradient(h) if (local and l > 0) else h
            a = inp @ layer["w"] if feedback is None else fa_dense(inp, layer["w"], zeros[l], feedback[l])
            if l == last:
                return a, hs
            h = act(a)
            hs.append(h)

    if rule == "backprop":
        learning = backprop(lambda p, x, y: mean_ce(forward(p, x)[0], y))
    elif rule == "fa":
        learning = feedback_alignment(lambda p, x, key, fb: (forward(p, x, key, fb)[0], {}), mean_ce,
                                      list(zip(sizes[:-1], sizes[1:])))
    else:
        build = direct_feedback_alignment if rule == "dfa" else direct_random_target_projection
        learning = build(lambda p, x, key: (*forward(p, x, key, local=True), {}), mean_ce, list(sizes[1:-1]),
                         sizes[-1])

    def init(seed):
        params = [{"w": jnp.asarray(w)} for w in nets.initial_weights(seed, sizes)]
        state = (FeedbackState(B=tuple(jnp.asarray(b) for b in nets.feedback_matrices(rule, seed, sizes)))
                 if rule != "backprop" else ())
        return params, state

    def estimate(params, state, x, y, key):
        grads, state, aux = learning.estimate(params, state, x, y, key)
        return grads, state, aux["loss"]

    weights = lambda tree: [layer["w"] for layer in tree]   # noqa: E731
    return JaxContender(init, estimate, all_trainable, lambda p, x: forward(p, x)[0], weights,
                        _plain_bp(activation, weights))


# ----------------------------------------------------------------------------- node perturbation

def node_perturbation(rule: str, sizes, activation: str, sigma: float) -> JaxContender:
    """``impls.nodepert.rules.make_rule``: its MLP holds W_l (n_l, n_{l−1}) and biases (kept at 0 here),
    ReLU hidden units, sigmoid outputs and the squared error (the paper's loss)."""
    from impls.nodepert import models
    from impls.nodepert.rules import make_rule

    if activation != "relu":
        raise SpecError(f"arena rule {rule}: node perturbation's code (impls.nodepert) has ReLU hidden units only; "
                        f"model.activation is {activation!r}")
    learning = make_rule(rule, {"sigma": sigma}, activation="relu")

    def init(seed):
        return [{"w": jnp.asarray(w.T), "b": jnp.zeros((w.shape[1],), jnp.float32)}
                for w in nets.initial_weights(seed, sizes)], ()

    def estimate(params, state, x, y, key):
        grads, state, aux = learning.estimate(params, state, x, y, key)
        return grads, state, aux["loss"]

    def bp_grads(params, x, y):
        g = jax.grad(partial(models.mean_loss, activation="relu"))(params, x, y)
        return [layer["w"].T for layer in g]

    return JaxContender(init, estimate, lambda tree: [{"w": 1.0, "b": 0.0} for _ in tree],
                        lambda p, x: models.forward(p, x)[0], lambda tree: [layer["w"].T for layer in tree], bp_grads)


# ----------------------------------------------------------------------------- local losses (bpfree)

def local_losses(rule: str, sizes, activation: str, seed_offset: int = 7) -> JaxContender:
    """LL-cce / LL-mse of ``impls.bpfree.rules``: the bpfree MLP (biases kept at 0), fixed random local
    classifiers B_l (n_l, C) drawn by the rule's own ``init`` (orthogonal) from the run's seed."""
    from impls.bpfree import models
    from impls.bpfree.rules import make_rule

    name = rule.removeprefix("ll_")
    cfg = models.Config(sizes[0], tuple(sizes[1:-1]), sizes[-1], activation=activation)
    model_state = {"bn": []}
    learning = make_rule(name, cfg, model_state)

    def params_of(ws):
        layers = [{"w": jnp.asarray(w), "b": jnp.zeros((w.shape[1],), jnp.float32)} for w in ws]
        return {"hidden": layers[:-1], "out": layers[-1]}

    def init(seed):
        params = params_of(nets.initial_weights(seed, sizes))
        return params, learning.init(params, jax.random.PRNGKey(seed * 1000 + seed_offset))

    def estimate(params, state, x, y, key):
        grads, state, aux = learning.estimate(params, state, x, y, key)
        return grads, state, aux["loss"]

    def logits(params, x):
        return models.apply(params, model_state, x, None, cfg, train=False)[0]

    def weights(tree):
        return [layer["w"] for layer in tree["hidden"]] + [tree["out"]["w"]]

    def bp_grads(params, x, y):
        return weights(jax.grad(lambda p: models.loss(logits(p, x), y, cfg))(params))

    def trainable(tree):
        return {"hidden": [{"w": 1.0, "b": 0.0} for _ in tree["hidden"]], "out": {"w": 1.0, "b": 0.0}}

    return JaxContender(init, estimate, trainable, logits, weights, bp_grads)


# ----------------------------------------------------------------------------- two_routes alignment rules

def alignment(rule: str, sizes, activation: str) -> JaxContender:
    """WM, IA, SA, AA, KP of ``impls.two_routes.rules`` on dense layers ``layers.pg_dense`` (forward
    kernels W_l, backward kernels B_l, both (n_{l−1}, n_l)): the task loss trains W_l (its error goes
    down through B_l) and R_l(x_l, W_l, B_l) trains B_l (KP: B_l also gets W_l's task gradient)."""
    from impls.two_routes import layers
    from impls.two_routes.rules import rule_for_spec

    learning, act, last = rule_for_spec(rule, {}), ACT[activation], len(sizes) - 2

    def objective(p, x, y):
        h, reg = x, 0.0
        for l, (kf, kb) in enumerate(zip(p["kf"], p["kb"])):
            reg = reg + learning.regularizer(jax.lax.stop_gradient(h), jax.lax.stop_gradient(kf), kb)
            h = layers.pg_dense(h, kf, kb, learning.tie)
            if l < last:
                h = act(h)
        loss = mean_ce(h, y)
        return loss + reg, loss

    def init(seed):
        return ({"kf": [jnp.asarray(w) for w in nets.initial_weights(seed, sizes)],
                 "kb": [jnp.asarray(b) for b in nets.backward_weights(seed, sizes)]}, ())

    def estimate(params, state, x, y, key):
        (_, loss), grads = jax.value_and_grad(objective, has_aux=True)(params, x, y)
        return grads, state, loss

    weights = lambda tree: list(tree["kf"])   # noqa: E731
    return JaxContender(init, estimate, all_trainable, lambda p, x: _plain_forward(p["kf"], x, activation),
                        weights, _plain_bp(activation, weights))


def build(rule: str, sizes, activation: str, hparams: dict) -> JaxContender:
    """The JAX contender of arena id ``rule`` (``impls.arena.contenders``) for layer ``sizes``."""
    sizes = [int(s) for s in sizes]
    base = rule.removesuffix("_jax")
    if base in ("backprop", "fa", "dfa", "drtp"):
        return shared(base, sizes, activation)
    if base.startswith("np"):
        return node_perturbation(base, sizes, activation, float(hparams["sigma"]))
    if base in ("ll_cce", "ll_mse"):
        return local_losses(base, sizes, activation)
    if base in ("wm", "ia", "sa", "aa", "kp", "kp_equal_leak"):
        return alignment(base, sizes, activation)
    raise ValueError(f"no JAX contender {rule!r}")


def stack(trees: list) -> Any:
    """Per-run trees -> one tree with a leading run axis."""
    return jax.tree_util.tree_map(lambda *leaves: jnp.stack([jnp.asarray(v) for v in leaves]), *trees)


def as_numpy(tree):
    return jax.tree_util.tree_map(np.asarray, tree)
