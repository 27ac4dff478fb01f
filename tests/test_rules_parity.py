"""The JAX and PyTorch twins of BP, FA, DFA and DRTP give the same updates (float64).

Both frameworks get the same no-bias MLP (6-5-4-3, softmax cross-entropy averaged over the
minibatch), the same weights, the same fixed feedback matrices (drawn by the PyTorch rule's
``init``, handed to the JAX rule in its layout) and the same batches. Checked: one update
(pseudo-gradients and loss) and five steps of plain SGD (``optax.sgd`` against ``torch.optim.SGD``),
to 1e-9 relative.

Layouts: PyTorch W_l is (out, in), the JAX kernel is W_lᵀ (in, out). FA's B_l has the kernel's
(in, out) layout in both; DFA's B_l is (n_l, C) in both; PyTorch DRTP's B_l is (C, n_l), the
transpose of the JAX one. The JAX DRTP's hidden signal y* B_lᵀ carries no 1/B (Frenkel's code),
so the PyTorch rule runs with ``hidden_reduction="sum"``; its default, the PEPITA code's "mean",
differs by exactly that factor on hidden layers (checked too).
"""
from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch

from impls.rules import backprop as jax_backprop
from impls.rules import dfa as jax_dfa
from impls.rules import drtp as jax_drtp
from impls.rules import fa as jax_fa
from impls.rules_torch import backprop as torch_backprop
from impls.rules_torch import dfa as torch_dfa
from impls.rules_torch import drtp as torch_drtp
from impls.rules_torch import fa as torch_fa
from impls.rules_torch import set_grads

SIZES = (6, 5, 4, 3)
BATCH = 8
RULES = ("bp", "fa", "dfa", "drtp")
ACTIVATIONS = {"relu": jax.nn.relu, "tanh": jnp.tanh}
RTOL, ATOL = 1e-9, 1e-12
LR, STEPS = 0.2, 5


def _torch_net(seed: int = 0):
    """Stacked (R = 1) weights W_l (1, out, in) and batches x (1, B, d), one-hot t (1, B, C)."""
    g = torch.Generator().manual_seed(seed)
    weights = [((torch.rand(1, o, i, generator=g, dtype=torch.float64) * 2 - 1) / i ** 0.5)
               for i, o in zip(SIZES[:-1], SIZES[1:])]
    batches = []
    for _ in range(STEPS):
        x = torch.randn(1, BATCH, SIZES[0], generator=g, dtype=torch.float64)
        t = torch.nn.functional.one_hot(torch.randint(0, SIZES[-1], (1, BATCH), generator=g), SIZES[-1])
        batches.append((x, t.to(torch.float64)))
    return weights, batches


def _mean_ce(z, y):
    return -jnp.mean(jnp.sum(y * jax.nn.log_softmax(z), axis=-1))


def _jax_forward(activation, kernels, x, feedback=None, local=False):
    """z and the hidden outputs; FA layers (``feedback``) via ``fa_dense``, ``local``: inputs stop_gradient-ed."""
    f = ACTIVATIONS[activation]
    h, hs = x, []
    for l, k in enumerate(kernels):
        inp = jax.lax.stop_gradient(h) if (local and l > 0) else h
        a = inp @ k if feedback is None else jax_fa.fa_dense(inp, k, jnp.zeros(k.shape[1], k.dtype), feedback[l])
        if l == len(kernels) - 1:
            return a, hs
        h = f(a)
        hs.append(h)


def _twins(rule: str, activation: str, weights):
    """(jax rule, jax rule state, torch rule, torch rule state) with the same feedback matrices."""
    hidden = list(SIZES[1:-1])
    if rule == "bp":
        t_rule = torch_backprop.backprop(activation)
        j_rule = jax_backprop.backprop(lambda p, x, y: _mean_ce(_jax_forward(activation, p, x)[0], y))
        return j_rule, (), t_rule, ()
    if rule == "fa":
        t_rule = torch_fa.feedback_alignment(activation)
        t_state = t_rule.init(weights, torch.Generator().manual_seed(1))
        # the first kernel's B never matters (no cotangent to x is used); zeros there
        b = [jnp.zeros((SIZES[0], SIZES[1]))] + [jnp.asarray(m[0].numpy()) for m in t_state[1:]]

        def forward(params, x, key, feedback):
            return _jax_forward(activation, params, x, feedback)[0], {}

        shapes = [(i, o) for i, o in zip(SIZES[:-1], SIZES[1:])]
        return jax_fa.feedback_alignment(forward, _mean_ce, shapes), jax_dfa.FeedbackState(tuple(b)), t_rule, t_state

    def local_forward(params, x, key):
        z, hs = _jax_forward(activation, params, x, local=True)
        return z, hs, {}

    if rule == "dfa":
        t_rule = torch_dfa.direct_feedback_alignment(activation)
        t_state = t_rule.init(weights, torch.Generator().manual_seed(2))
        b = [jnp.asarray(m[0].numpy()) for m in t_state[:-1]]
        j_rule = jax_dfa.direct_feedback_alignment(local_forward, _mean_ce, hidden, SIZES[-1])
        return j_rule, jax_dfa.FeedbackState(tuple(b)), t_rule, t_state
    t_rule = torch_drtp.direct_random_target_projection(activation, hidden_reduction="sum")
    t_state = t_rule.init(weights, torch.Generator().manual_seed(3))
    b = [jnp.asarray(m[0].numpy().T) for m in t_state[:-1]]
    j_rule = jax_drtp.direct_random_target_projection(local_forward, _mean_ce, hidden, SIZES[-1])
    return j_rule, jax_dfa.FeedbackState(tuple(b)), t_rule, t_state


def _as_kernels(weights):
    return [jnp.asarray(w[0].numpy().T) for w in weights]


def _assert_same(torch_tensors, jax_kernels, what):
    for l, (t, k) in enumerate(zip(torch_tensors, jax_kernels)):
        np.testing.assert_allclose(t[0].numpy().T, np.asarray(k), rtol=RTOL, atol=ATOL, err_msg=f"{what}, layer {l}")


@pytest.mark.parametrize("activation", list(ACTIVATIONS))
@pytest.mark.parametrize("rule", RULES)
def test_one_update_is_the_same(rule, activation):
    with jax.enable_x64(True):
        weights, batches = _torch_net()
        j_rule, j_state, t_rule, t_state = _twins(rule, activation, weights)
        x, t = batches[0]
        t_grads, _, t_aux = t_rule.estimate(weights, t_state, x, t)
        j_grads, _, j_aux = j_rule.estimate(_as_kernels(weights), j_state, jnp.asarray(x[0].numpy()),
                                            jnp.asarray(t[0].numpy()), jax.random.PRNGKey(0))
        assert all(g.dtype == jnp.float64 for g in j_grads)
        _assert_same(t_grads, j_grads, f"{rule}/{activation} pseudo-gradient")
        np.testing.assert_allclose(float(t_aux["loss"][0]), float(j_aux["loss"]), rtol=RTOL)
        assert max(float(g.abs().max()) for g in t_grads[:-1]) > 1e-3  # the hidden layers do learn


@pytest.mark.parametrize("rule", RULES)
def test_a_few_sgd_steps_are_the_same(rule):
    with jax.enable_x64(True):
        weights, batches = _torch_net(seed=4)
        weights = [w.clone() for w in weights]
        j_rule, j_state, t_rule, t_state = _twins(rule, "relu", weights)
        kernels = _as_kernels(weights)
        opt_t = torch.optim.SGD(weights, lr=LR)
        opt_j = optax.sgd(LR)
        opt_state = opt_j.init(kernels)
        step_j = jax.jit(partial(j_rule.estimate, state=j_state, key=jax.random.PRNGKey(0)))
        for x, t in batches:
            grads, _, _ = t_rule.estimate(weights, t_state, x, t)
            set_grads(weights, grads)
            opt_t.step()
            j_grads = step_j(kernels, x=jnp.asarray(x[0].numpy()), y=jnp.asarray(t[0].numpy()))[0]
            updates, opt_state = opt_j.update(j_grads, opt_state)
            kernels = optax.apply_updates(kernels, updates)
        _assert_same(weights, kernels, f"{rule} after {STEPS} SGD steps")
        moved = max(float((w - w0).abs().max()) for w, w0 in zip(weights, _torch_net(seed=4)[0]))
        assert moved > 1e-3


def test_drtp_hidden_reductions_differ_by_the_batch_size():
    weights, batches = _torch_net()
    x, t = batches[0]
    mean_rule = torch_drtp.direct_random_target_projection()
    sum_rule = torch_drtp.direct_random_target_projection(hidden_reduction="sum")
    feedback = mean_rule.init(weights, torch.Generator().manual_seed(3))
    g_mean = mean_rule.estimate(weights, feedback, x, t)[0]
    g_sum = sum_rule.estimate(weights, feedback, x, t)[0]
    for l in range(len(weights) - 1):
        torch.testing.assert_close(g_sum[l], BATCH * g_mean[l], rtol=1e-12, atol=0)
    torch.testing.assert_close(g_sum[-1], g_mean[-1], rtol=0, atol=0)


def test_torch_rules_agree_with_pseudo_grads_over_the_batch():
    """The rule objects are ``pseudo_grads`` / B, so the PEPITA loop's numbers are the same as theirs."""
    weights, batches = _torch_net()
    x, t = batches[0]
    fb_fa = torch_fa.feedback_alignment().init(weights, torch.Generator().manual_seed(1))
    fb_dfa = torch_dfa.direct_feedback_alignment().init(weights, torch.Generator().manual_seed(2))
    fb_drtp = torch_drtp.direct_random_target_projection().init(weights, torch.Generator().manual_seed(3))
    cases = [(torch_backprop.backprop(), (), torch_backprop.pseudo_grads(weights, x, t)[0]),
             (torch_fa.feedback_alignment(), fb_fa, torch_fa.pseudo_grads(weights, x, t, fb_fa)[0]),
             (torch_dfa.direct_feedback_alignment(), fb_dfa, torch_dfa.pseudo_grads(weights, x, t, fb_dfa)[0]),
             (torch_drtp.direct_random_target_projection(), fb_drtp, torch_drtp.pseudo_grads(weights, x, t, fb_drtp)[0])]
    for rule, state, summed in cases:
        for g, s in zip(rule.estimate(weights, state, x, t)[0], summed):
            torch.testing.assert_close(g, s / BATCH, rtol=0, atol=0)
