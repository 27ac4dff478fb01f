"""One table of every registered learning rule (impls/registry.py), the same contract checks on each.

JAX rules (optax style, impls/rules/__init__.py), ``JAX_RULES``: a row is a label ``<registry key>[/<variant>]``
and a builder returning (rule, params, x, y). Checks (one test per row, so each rule compiles
once): pseudo-gradients have the parameters' structure, shapes and dtypes and are finite; the aux
holds a scalar ``loss``; ``vmap`` over runs gives each run's own result; the same inputs and key
give bit-identical outputs. Rules with a fixed-matrix state are built with ``init(params)`` (key 0).

PyTorch rules, ``TORCH_RULES``: a row's builder takes the seeds of R stacked runs and returns
(tensors, estimate) with ``estimate(tensors) -> (directions, loss (R,))``, through the paper's own
entry point (``impls.pepita.rules.compute_grads``, ``impls.wide_align.rules.directions``,
``impls.wide_align.add_task.directions``) or the shared rule object (``impls.rules_torch``).
Checks: directions have the tensors' shapes and dtypes and are finite, the loss is finite per run,
the same seeds give bit-identical results, and R = 2 stacked runs give each run's own result
(the PyTorch counterpart of ``vmap``).

``test_every_registered_rule_has_a_row`` holds the table to the registry: every registered rule
has at least one row (``NOT_RUNNABLE`` would name, with the reason, a rule that cannot run the
contract; it is empty).
"""
from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from impls import registry
from impls.bpfree import models as bp_models
from impls.bpfree import options as bp_options
from impls.bpfree.rules import make_rule as bpfree_rule
from impls.nodepert import convnets as np_convnets
from impls.nodepert import models as np_models
from impls.nodepert import options as np_options
from impls.nodepert.rules import make_rule as nodepert_rule
from impls.pepita import models as pe_models
from impls.pepita import rules as pe_rules
from impls.pepita.options import resolved_hparams as pepita_hparams
from impls.rules import LearningRule, stateless_init
from impls.rules.backprop import backprop
from impls.rules.dfa import direct_feedback_alignment
from impls.rules.drtp import direct_random_target_projection
from impls.rules.fa import fa_dense, feedback_alignment
from impls.rules_torch import backprop as torch_backprop
from impls.rules_torch import cross_entropy
from impls.rules_torch import dfa as torch_dfa
from impls.rules_torch import drtp as torch_drtp
from impls.rules_torch import fa as torch_fa
from impls.two_routes import layers as tr_layers
from impls.two_routes import rules as tr_rules
from impls.wide_align import add_task as wa_add
from impls.wide_align import models as wa_models
from impls.wide_align import rules as wa_rules

N, D, C = 8, 6, 3


def _data(key, target_dim=C, reconstruction=False):
    kx, ky = jax.random.split(key)
    x = jax.random.normal(kx, (N, D), jnp.float32)
    if reconstruction:
        return x, jnp.tanh(x)
    return x, jax.nn.one_hot(jax.random.randint(ky, (N,), 0, target_dim), target_dim)


def _nodepert(name, key):
    params = np_models.init_mlp(key, [D, 5, C])
    x, y = _data(jax.random.fold_in(key, 1))
    return nodepert_rule(name, {"sigma": 0.1}), params, x, y  # large sigma: little cancellation in δL/σ²


def _nodepert_conv(name, key, arch="conv_base"):
    """A conv net of ``arch`` with every hidden channel count scaled to 1/8, on 6x6x1 images."""
    image_shape = (6, 6, 1)
    convs = np_convnets.layers(arch, channel_scale=0.125)
    params = np_convnets.init_convnet(key, convs, image_shape)
    kx, ky = jax.random.split(jax.random.fold_in(key, 1))
    x = jax.random.normal(kx, (N, *image_shape), jnp.float32)
    y = jax.nn.one_hot(jax.random.randint(ky, (N,), 0, np_convnets.N_CLASSES), np_convnets.N_CLASSES)
    return np_convnets.make_conv_rule(name, {"sigma": 0.1}, convs, image_shape), params, x, y


def _shared_backprop(key):
    params = np_models.init_mlp(key, [D, 5, C])
    x, y = _data(jax.random.fold_in(key, 1))
    return backprop(partial(np_models.mean_loss, activation="relu")), params, x, y


def _mlp(key, sizes=(D, 5, 4, C)):
    keys = jax.random.split(key, len(sizes) - 1)
    return [{"w": jax.random.normal(k, (i, o), jnp.float32) / jnp.sqrt(i), "b": jnp.zeros(o, jnp.float32)}
            for k, i, o in zip(keys, sizes[:-1], sizes[1:])]


def _mean_ce(z, y):
    return -jnp.mean(jnp.sum(y * jax.nn.log_softmax(z), axis=-1))


def _shared_jax(name, key):
    """The shared JAX FA/DFA/DRTP on a tanh MLP D-5-4-C (local mode for DFA/DRTP, fa_dense for FA)."""
    params = _mlp(key)
    x, y = _data(jax.random.fold_in(key, 1))

    def forward(p, x, key, feedback=None, local=False):
        h, hs = x, []
        for l, layer in enumerate(p):
            inp = jax.lax.stop_gradient(h) if (local and l > 0) else h
            a = inp @ layer["w"] + layer["b"] if feedback is None else fa_dense(inp, layer["w"], layer["b"], feedback[l])
            if l == len(p) - 1:
                return a, hs
            h = jnp.tanh(a)
            hs.append(h)

    if name == "fa":
        return feedback_alignment(lambda p, x, key, fb: (forward(p, x, key, fb)[0], {}), _mean_ce,
                                  [layer["w"].shape for layer in params]), params, x, y
    build = direct_feedback_alignment if name == "dfa" else direct_random_target_projection
    return build(lambda p, x, key: (*forward(p, x, key, local=True), {}), _mean_ce, [5, 4], C), params, x, y


def _two_routes(name, key):
    """A two_routes rule as a LearningRule on a D-5-C dense net of ``layers.pg_dense`` with forward and
    backward kernels (as impls.two_routes.models wires it): pseudo-gradients of CE + Σ_l R_l(x_l, W_l, B_l)."""
    rule = tr_rules.make_rule(name)
    ks = jax.random.split(key, 4)
    params = {"kf": [jax.random.normal(ks[0], (D, 5)) / jnp.sqrt(D), jax.random.normal(ks[1], (5, C)) / jnp.sqrt(5)],
              "kb": [jax.random.normal(ks[2], (D, 5)) / jnp.sqrt(D), jax.random.normal(ks[3], (5, C)) / jnp.sqrt(5)]}
    x, y = _data(jax.random.fold_in(key, 1))

    def objective(p, x, y):
        h, reg = x, 0.0
        for l, (kf, kb) in enumerate(zip(p["kf"], p["kb"])):
            reg = reg + rule.regularizer(jax.lax.stop_gradient(h), jax.lax.stop_gradient(kf), kb)
            h = tr_layers.pg_dense(h, kf, kb, rule.tie) if rule.uses_backward else h @ kf
            if l == 0:
                h = jax.nn.relu(h)
        loss = _mean_ce(h, y)
        return loss + reg, loss

    def estimate(params, state, x, y, key=None):
        (_, loss), grads = jax.value_and_grad(objective, has_aux=True)(params, x, y)
        return grads, state, {"loss": loss}

    return LearningRule(init=lambda params, key=None: stateless_init(params), estimate=estimate), params, x, y


def _bpfree(name, key, batchnorm=False, activation="tanh", task="classification", dropout=0.0):
    recon = task == "reconstruction"
    cfg = bp_models.Config(D, (5, 4), D if recon else C, task=task, activation=activation, batchnorm=batchnorm,
                           dropout=dropout)
    params, model_state = bp_models.init(key, cfg)
    x, y = _data(jax.random.fold_in(key, 1), reconstruction=recon)
    return bpfree_rule(name, cfg, model_state), params, x, y


def _bpfree_conv(name, key, trained=True):
    # the D = 6 inputs seen as a 2x3 grey image; conv 2c3 ('same') -> 2x3x2 -> FC 4 -> C
    from impls.bpfree import conv
    cfg = bp_models.Config(D, (4,), C, output="sigmoid_bce", conv=conv.parse("2c3"), conv_trained=trained,
                           image_shape=(2, 3, 1))
    params, model_state = bp_models.init(key, cfg)
    x, y = _data(jax.random.fold_in(key, 1))
    return bpfree_rule(name, cfg, model_state), params, x, y


JAX_RULES = {
    "shared.jax.backprop": _shared_backprop,
    **{f"shared.jax.{r}": partial(_shared_jax, r) for r in ("fa", "dfa", "drtp")},
    **{f"nodepert.{r}": partial(_nodepert, r) for r in np_options.RULES},
    **{f"nodepert.{r}/conv": partial(_nodepert_conv, r) for r in np_options.CONV_ESTIMATORS},
    "nodepert.np/conv_allcnn_a": partial(_nodepert_conv, "np", arch="allcnn_a"),
    **{f"bpfree.{r}": partial(_bpfree, r) for r in bp_options.RULES},
    **{f"bpfree.{r}/bn+relu+dropout": partial(_bpfree, r, batchnorm=True, activation="relu", dropout=0.3)
       for r in ("dfa", "drtp", "cce", "fa")},
    **{f"bpfree.{r}/reconstruction": partial(_bpfree, r, task="reconstruction", batchnorm=True)
       for r in ("dfa", "mse")},
    **{f"bpfree.{r}/conv": partial(_bpfree_conv, r) for r in ("bp", "fa", "dfa", "drtp")},
    **{f"bpfree.{r}/conv_frozen": partial(_bpfree_conv, r, trained=False) for r in ("fa", "drtp")},
    **{f"two_routes.{r}": partial(_two_routes, r) for r in tr_rules.RULES},
}


def _grads_of(rule, params, x, y, key):
    state = rule.init(params)
    grads, _, aux = rule.estimate(params, state, x, y, key)
    return grads, aux["loss"]


@pytest.mark.parametrize("name", list(JAX_RULES))
def test_rule_contract(name):
    rule, params, x, y = JAX_RULES[name](jax.random.PRNGKey(0))
    key = jax.random.PRNGKey(7)
    leaves = jax.tree_util.tree_leaves

    # structure, shape, dtype, finiteness; a scalar loss
    jitted = jax.jit(partial(_grads_of, rule))
    grads, loss = jitted(params, x, y, key)
    assert jax.tree_util.tree_structure(grads) == jax.tree_util.tree_structure(params)
    for g, p in zip(leaves(grads), leaves(params)):
        assert g.shape == p.shape and g.dtype == p.dtype
        assert bool(jnp.all(jnp.isfinite(g)))
    assert jnp.shape(loss) == () and bool(jnp.isfinite(loss))

    # the same inputs and key give bit-identical outputs (a fresh trace of the same rule too)
    again = jax.jit(partial(_grads_of, rule))(params, x, y, key)[0]
    for a, b in zip(leaves(grads), leaves(again)):
        np.testing.assert_array_equal(a, b)

    # vmap over two runs (different weights and keys) gives each run's own result
    other = JAX_RULES[name](jax.random.PRNGKey(1))[1]
    stacked = jax.tree_util.tree_map(lambda *a: jnp.stack(a), params, other)
    keys = jnp.stack([key, jax.random.PRNGKey(8)])
    batched = jax.jit(jax.vmap(partial(_grads_of, rule), in_axes=(0, None, None, 0)))(stacked, x, y, keys)[0]
    for i, p in enumerate((params, other)):
        single = jitted(p, x, y, keys[i])[0]
        for s, v in zip(leaves(single), leaves(batched)):
            np.testing.assert_allclose(v[i], s, rtol=1e-4, atol=1e-6)


# ----------------------------------------------------------------------------- PyTorch rules

TORCH_SIZES, TORCH_BATCH = (D, 5, 4, C), N


def _stack_runs(per_run):
    """Per-run lists of tensors (None allowed) -> stacked per position."""
    return [None if parts[0] is None else torch.stack(parts) for parts in zip(*per_run)]


def _torch_fc_run(seed):
    """One run's weights, input, one-hot target and dropout masks (float64)."""
    g = torch.Generator().manual_seed(seed)
    weights = pe_models.init_fc(TORCH_SIZES, g, torch.float64)
    x = torch.rand(TORCH_BATCH, D, generator=g, dtype=torch.float64)
    t = torch.nn.functional.one_hot(torch.randint(0, C, (TORCH_BATCH,), generator=g), C).to(torch.float64)
    masks = [(torch.rand(TORCH_BATCH, n, generator=g) < 0.8).to(torch.float64) / 0.8 for n in TORCH_SIZES[1:-1]]
    return weights, x, t, masks


def _shared_torch(name, seeds):
    """The shared rule object of ``impls.rules_torch`` (feedback drawn per run from the run's seed)."""
    rule = {"backprop": torch_backprop.backprop, "fa": torch_fa.feedback_alignment,
            "dfa": torch_dfa.direct_feedback_alignment, "drtp": torch_drtp.direct_random_target_projection}[name]()
    runs = [_torch_fc_run(s) for s in seeds]
    weights = _stack_runs([r[0] for r in runs])
    x, t = torch.stack([r[1] for r in runs]), torch.stack([r[2] for r in runs])
    masks = _stack_runs([r[3] for r in runs])
    states = [rule.init([w[i:i + 1] for w in weights], torch.Generator().manual_seed(100 + s))
              for i, s in enumerate(seeds)]
    state = () if not states[0] else [None if m[0] is None else torch.cat(m) for m in zip(*states)]

    def estimate(tensors):
        grads, _, aux = rule.estimate(tensors, state, x, t, masks)
        return grads, aux["loss"]

    return weights, estimate


PEPITA_CONV = pe_models.ConvShape(c_in=1, height=6, width=6, channels=2, kernel=3, pool=2, n_classes=C)


def _pepita(name, seeds, arch="fc"):
    """``impls.pepita.rules.compute_grads`` of rule ``name`` on a stacked FC or one-conv-layer net."""
    hp = pepita_hparams({"model": {"arch": arch}, "hparams": {"lr": 0.1}})
    weights, F, feedback, xs, ts, masks = [], [], [], [], [], []
    for s in seeds:
        g = torch.Generator().manual_seed(s)
        if arch == "fc":
            w, x, t, m = _torch_fc_run(s)
            d_in = D
        else:
            w = pe_models.init_conv(PEPITA_CONV, g, torch.float64)
            x = torch.rand(TORCH_BATCH, 1, 6, 6, generator=g, dtype=torch.float64)
            t = torch.nn.functional.one_hot(torch.randint(0, C, (TORCH_BATCH,), generator=g), C).to(torch.float64)
            m, d_in = None, 36
        weights.append(w), xs.append(x), ts.append(t), masks.append(m)
        F.append(pe_models.init_F(d_in, C, hp["F_scale"], g, torch.float64))
        feedback.append(pe_rules.init_feedback(name, arch, w, torch.Generator().manual_seed(100 + s), PEPITA_CONV))
    weights, F, x, t = _stack_runs(weights), torch.stack(F), torch.stack(xs), torch.stack(ts)
    feedback = _stack_runs(feedback) if feedback[0] else []
    masks = _stack_runs(masks) if arch == "fc" else None

    def estimate(tensors):
        grads, y = pe_rules.compute_grads(name, arch, tensors, F, feedback, x, t, masks, hp, PEPITA_CONV)
        return grads, cross_entropy(y, t).mean(-1)

    return weights, estimate


WIDE_SHAPE = wa_models.NetShape(1, 8, 4, (1, 2, 2), C, "batch", "ntk")


def _wide_align(name, seeds):
    """``impls.wide_align.rules.directions`` on a stacked all-conv net (width 4, 8x8 grey images)."""
    per_run = [wa_models.init_params(WIDE_SHAPE, torch.Generator().manual_seed(s)) for s in seeds]
    params = wa_models.stack_params(per_run)
    fbs = [wa_rules.init_feedback(name, WIDE_SHAPE, p, torch.Generator().manual_seed(100 + s)) for p, s in zip(per_run, seeds)]
    feedback = None if fbs[0] is None else {
        k: ([torch.stack(z) for z in zip(*(f[k] for f in fbs))] if isinstance(fbs[0][k], list)
            else torch.stack([f[k] for f in fbs])) for k in fbs[0]}
    x = torch.rand(N, 1, 8, 8, generator=torch.Generator().manual_seed(7))
    y = torch.stack([torch.nn.functional.one_hot(torch.randint(0, C, (N,), generator=torch.Generator().manual_seed(s)),
                                                 C).float() for s in seeds])
    # the frozen initial net: a perturbed copy, so that the Align rules differ from BP
    params0 = {k: ([t * 0.9 for t in v] if isinstance(v, list) else v * 0.9) for k, v in params.items()}
    n_layers = len(params["w"])

    def estimate(tensors):
        live = wa_models.unflat(tensors, n_layers)
        dirs, f, _ = wa_rules.directions(name, live, params0, feedback, x, y, WIDE_SHAPE)
        return dirs, wa_models.mse(f, y)

    return wa_models.flat(params), estimate


def _wide_align_rnn(name, seeds, width=4, steps=6):
    """``impls.wide_align.add_task.directions`` on stacked RNNs (perturbed per seed), 6 time steps."""
    per_run = []
    for s in seeds:
        g = torch.Generator().manual_seed(s)
        p = wa_add.init_params(width)
        per_run.append({k: v + 0.1 * torch.randn(v.shape, generator=g) for k, v in p.items()})
    params = {k: torch.stack([p[k] for p in per_run]) for k in wa_add.NAMES}
    params0 = {k: v * 0.9 for k, v in params.items()}
    g = torch.Generator().manual_seed(7)
    x = torch.bernoulli(torch.full((wa_add.BATCH, steps), 0.5), generator=g)
    y = torch.rand(wa_add.BATCH, steps, generator=g)

    def estimate(tensors):
        return wa_add.directions(name, dict(zip(wa_add.NAMES, tensors)), params0, x, y)

    return [params[k] for k in wa_add.NAMES], estimate


TORCH_RULES = {
    **{f"shared.torch.{r}": partial(_shared_torch, r) for r in ("backprop", "fa", "dfa", "drtp")},
    **{f"pepita.{r}": partial(_pepita, r) for r in ("pepita", "bp", "fa", "drtp")},
    **{f"pepita.{r}/conv": partial(_pepita, r, arch="conv") for r in ("pepita", "bp", "fa", "drtp")},
    **{f"wide_align.{r}": partial(_wide_align, r)
       for r in ("bp", "fa", "dfa", "alignzero", "alignada", "alignprop", "lastlayer")},
    **{f"wide_align.{r}/rnn": partial(_wide_align_rnn, r) for r in ("bptt", "alignzero", "alignada", "readout")},
}


def _run(name, seeds):
    tensors, estimate = TORCH_RULES[name](seeds)
    with torch.no_grad():
        dirs, loss = estimate(tensors)
    return tensors, [d.detach() for d in dirs], loss.detach()


@pytest.mark.parametrize("name", list(TORCH_RULES))
def test_torch_rule_contract(name):
    tensors, dirs, loss = _run(name, (0, 1))

    # structure, shape, dtype, finiteness; a finite loss per run
    assert len(dirs) == len(tensors)
    for d, t in zip(dirs, tensors):
        assert d.shape == t.shape and d.dtype == t.dtype
        assert bool(torch.isfinite(d).all())
    assert loss.shape == (2,) and bool(torch.isfinite(loss).all())
    assert any(float(d.abs().max()) > 0 for d in dirs)

    # the same seeds give bit-identical outputs
    for a, b in zip(dirs, _run(name, (0, 1))[1]):
        torch.testing.assert_close(a, b, rtol=0, atol=0)

    # two stacked runs give each run's own result
    for i, seed in enumerate((0, 1)):
        _, single, single_loss = _run(name, (seed,))
        for s, d in zip(single, dirs):
            torch.testing.assert_close(d[i:i + 1], s, rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(loss[i:i + 1], single_loss, rtol=1e-5, atol=1e-7)


# ----------------------------------------------------------------------------- coverage

#: registry key -> why the rule cannot run the contract (none today: every registered rule has a row)
NOT_RUNNABLE: dict[str, str] = {}


def test_every_registered_rule_has_a_row():
    covered = {label.split("/")[0] for label in (*JAX_RULES, *TORCH_RULES)}
    unknown = covered - set(registry.BY_KEY)
    assert not unknown, f"contract rows of unregistered rules: {sorted(unknown)}"
    missing = set(registry.BY_KEY) - covered - set(NOT_RUNNABLE)
    assert not missing, f"registered rules without a contract row (add one, or say why in NOT_RUNNABLE): {sorted(missing)}"
    for label in JAX_RULES:
        assert registry.BY_KEY[label.split("/")[0]].framework == "jax", label
    for label in TORCH_RULES:
        assert registry.BY_KEY[label.split("/")[0]].framework == "torch", label
