"""two_routes options of the original code (papers/two_routes/README.md, "Options"): coefficient schedules,
delay/alternation/rate decay, R-only switches (activation, bias, standardisation), IA switches and the FC net, each
against a hand computation."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from impls.common import specs
from impls.common.errors import SpecError
from impls.two_routes import fixed_points as fp
from impls.two_routes import models, options, schedules
from impls.two_routes import primitives as P
from impls.two_routes.projections import Projections, RegularizerOptions
from impls.two_routes.rules import RULES, make_rule, rule_for_spec
from impls.two_routes.trainer import Trainer, lr_shape

jax.config.update("jax_default_matmul_precision", "highest")
KEY = jax.random.PRNGKey(0)


def _rand(key, shape, scale=1.0):
    return scale * jax.random.normal(key, shape, jnp.float32)


def _hp(**over):
    return {**options.HPARAM_DEFAULTS, **over}


def _spec(rule="sa", model=None, **hp):
    spec = {"paper": "two_routes", "rule": rule, "dataset": "digits", "seed": 0, "epochs": 2, "batch_size": 8,
            "scale": "smoke", "model": model or {"arch": "fc", "hidden": [6]},
            "hparams": {"lr": 0.1, "warmup_epochs": 0.0, "decay_epochs": [], **hp}}
    return specs.validate_spec(spec)


# ----------------------------------------------------------------------------- coefficient schedules

def test_coefficient_schedule_values_by_hand():
    value = lambda e, **hp: float(schedules.coefficient_value(2.0, jnp.float32(e), 10.0, _hp(**hp), "alpha"))  # noqa: E731
    assert [value(e) for e in (0.0, 5.0, 10.0)] == [2.0, 2.0, 2.0]                     # default: constant
    window = dict(alpha_start=0.2, alpha_stop=0.5)                                        # epochs [2, 5]
    assert [value(e, **window) for e in (1.9, 2.0, 5.0, 5.1)] == [0.0, 2.0, 2.0, 0.0]
    lin = dict(alpha_start=0.2, alpha_schedule_type="linear", alpha_schedule_rate=0.5)
    assert value(6.0, **lin) == pytest.approx(2.0 + 0.5 * 4.0)                            # c₀ + rate·(e − start)
    expo = dict(alpha_schedule_type="exponential", alpha_schedule_rate=-0.1)
    assert value(3.0, **expo) == pytest.approx(2.0 * np.exp(-0.3), rel=1e-6)
    cyc = dict(alpha_schedule_type="linear", alpha_schedule_rate=1.0, alpha_cycle=4.0)    # half period 2
    got = [value(e, **cyc) for e in (0.0, 1.0, 2.0, 3.0, 4.0, 6.0)]                      # c₀ + rate·tri·2
    np.testing.assert_allclose(got, [2.0, 3.0, 4.0, 3.0, 2.0, 4.0], rtol=1e-6)


def test_scheduled_gradient_is_the_closed_form_with_the_step_coefficients():
    rule = make_rule("sa")
    hp = _hp(alpha_schedule_type="linear", alpha_schedule_rate=1e-3, beta_start=0.5)
    k = jax.random.split(KEY, 3)
    x, kf, kb = _rand(k[0], (16, 6)), _rand(k[1], (6, 4)), _rand(k[2], (6, 4))
    for t, (alpha, beta) in {0: (1e-3, 0.0), 15: (1e-3 + 1e-3 * 1.5, 0.0), 20: (1e-3 + 2e-3, 2e-3)}.items():
        coefs = rule.term_coefficients(t, 10, 4.0, hp)           # 10 steps/epoch, 4 epochs: β from epoch 2
        got = jax.grad(lambda b: rule.regularizer(x, kf, b, scheduled=coefs))(kb)
        np.testing.assert_allclose(got, 2 * alpha * kb - beta * kf, rtol=1e-5, atol=1e-7)   # ΔB = 2αB − βWᵀ


def test_fixed_point_run_applies_the_window_at_the_right_steps():
    """Linear layer, W fixed, SA on white inputs, 10 steps/epoch × 4 epochs, α and β non-zero only for
    epochs [2, 3] (start 0.5, stop 0.75): B moves at updates t = 20..30 and nowhere else."""
    rule = make_rule("sa")
    hp = _hp(alpha_start=0.5, alpha_stop=0.75, beta_start=0.5, beta_stop=0.75)
    k = jax.random.split(KEY, 3)
    kf, kb0 = _rand(k[0], (8, 4), 8 ** -0.5), _rand(k[1], (8, 4), 8 ** -0.5)
    at = lambda t: rule.term_coefficients(t, 10, 4.0, hp)   # noqa: E731
    _, logs = fp.simulate(rule, kf, kb0, fp.white_sampler(8, 64), k[2], 40, 20.0, 1, jnp.eye(8), at)
    moved = np.abs(np.diff(np.asarray(logs["norm_ratio"]))) > 0      # entry t: did update t change B?
    assert not moved[:20].any() and moved[20:31].all() and not moved[31:].any()
    assert float(logs["angle"][-1]) < float(logs["angle"][0])


# ----------------------------------------------------------------------------- rates, delay, alternation

def test_rates_for_delay_alternation_and_rate_decay():
    rates = lambda t, **hp: tuple(float(r) for r in schedules.rates(t, 10, _hp(**hp)))  # noqa: E731
    assert rates(0) == rates(999) == (1.0, 1.0)
    assert rates(14, delay_epochs=1.5) == (0.0, 1.0) and rates(15, delay_epochs=1.5) == (1.0, 1.0)
    assert [rates(t, alternate_step_freq=2) for t in range(4)] == [(0.0, 1.0), (1.0, 0.0), (1.0, 0.0), (0.0, 1.0)]
    both = dict(delay_epochs=1.0, alternate_step_freq=1)                 # alignment on during the delay
    assert [rates(t, **both) for t in (1, 9, 10, 11)] == [(0.0, 1.0), (0.0, 1.0), (0.0, 1.0), (1.0, 0.0)]
    decay = dict(constant_rate=False)
    assert [rates(t, **decay)[0] for t in (49, 50, 300, 600, 800)] == pytest.approx([1.0, 1.0, 0.1, 0.01, 0.001])


def test_lr_schedule_is_shifted_by_the_delay_and_stretched_by_alternation():
    hp = _hp(warmup_epochs=1.0, decay_epochs=[3.0])
    shape = lambda t, **over: float(lr_shape(jnp.uint32(t), 10, {**hp, **over}))   # noqa: E731
    assert [shape(t) for t in (0, 5, 10, 29, 30)] == pytest.approx([0.0, 0.5, 1.0, 1.0, 0.1])
    assert [shape(t, delay_epochs=2.0) for t in (0, 19, 25, 30, 49, 50)] == pytest.approx([0, 0, 0.5, 1, 1, 0.1])
    assert [shape(t, alternate_step_freq=1) for t in (10, 20, 59, 60)] == pytest.approx([0.5, 1.0, 1.0, 0.1])


def test_alternating_steps_update_b_then_w():
    """momentum 0, so an update is lr·gradient: SA on the FC net alternates an alignment-only step (t = 0:
    only B moves) and a task-only step (t = 1: only W and biases move)."""
    trainer = Trainer(_spec(momentum=0.0, alternate_step_freq=1), 10, 10)
    x, y = _rand(KEY, (8, 8, 8, 1)), jnp.arange(8) % 10
    state = trainer.init(jax.random.PRNGKey(1), x)
    kinds = lambda tree: {p[-1].key: v for p, v in jax.tree_util.tree_flatten_with_path(tree)[0]}  # noqa: E731

    def changed(before, after):
        b, a = jax.tree_util.tree_flatten_with_path(before)[0], jax.tree_util.tree_leaves(after)
        return {"/".join(k.key for k in path): bool(jnp.any(v != w)) for (path, v), w in zip(b, a)}

    s1, _ = trainer.step(state, jnp.float32(0.1), jnp.uint32(0), KEY, x, y)
    s2, _ = trainer.step(s1, jnp.float32(0.1), jnp.uint32(1), KEY, x, y)
    first, second = changed(state["params"], s1["params"]), changed(s1["params"], s2["params"])
    assert kinds(state["params"]) and all(v == k.endswith("backward_kernel") for k, v in first.items())
    assert all(v == (not k.endswith("backward_kernel")) for k, v in second.items())


# ----------------------------------------------------------------------------- R-only switches

def _np_sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def test_activation_forward_and_backward_on_a_tiny_dense_net_by_hand():
    """FC 5-3-2 (sigmoid hidden), AA with activation_forward/backward and use_bias_forward/backward:
    the sown primitives and ∂amp/∂B of the hidden layer equal a NumPy hand computation."""
    rule = make_rule("aa")
    reg = RegularizerOptions(activation_forward=True, activation_backward=True, use_bias_forward=True,
                             use_bias_backward=True)
    net = models.FC((3,), 2, models.LayerOptions(rule, regularizer=reg), "sigmoid")
    x = _rand(KEY, (4, 5))
    params = net.init({"params": KEY}, x, train=False)["params"]
    params = jax.tree_util.tree_map(lambda v: v + 0.3 * _rand(jax.random.PRNGKey(v.size), v.shape), params)
    _, mut = net.apply({"params": params}, x, train=True, mutable=["primitives"])
    got = {layer: {t: float(v[0]) for t, v in terms.items()} for layer, terms in mut["primitives"].items()}

    xn = np.asarray(x, np.float64)
    p0, p1 = ({k: np.asarray(v, np.float64) for k, v in params[n].items()} for n in ("dense0", "dense_output"))
    fwd0 = _np_sigmoid(xn @ p0["kernel"] + p0["bias"])           # f(Wx + b)
    bwd0 = _np_sigmoid(xn @ p0["backward_kernel"] + p0["bias"])  # f(Bᵀx + b)
    h = fwd0                                                     # the network's hidden activity
    fwd1, bwd1 = h @ p1["kernel"] + p1["bias"], h @ p1["backward_kernel"] + p1["bias"]   # classifier: no f
    expect = {"dense0": {"sparse": (fwd0 ** 2).sum(1).mean() + (bwd0 ** 2).sum(1).mean(),
                         "amp": -(fwd0 * bwd0).sum(1).mean()},
              "dense_output": {"sparse": (fwd1 ** 2).sum(1).mean() + (bwd1 ** 2).sum(1).mean(),
                               "amp": -(fwd1 * bwd1).sum(1).mean()}}
    for layer, terms in expect.items():
        for term, value in terms.items():
            assert got[layer][term] == pytest.approx(value, rel=1e-5), (layer, term)

    # ∂/∂B of amp = −E[f(Wx+b)·f(Bᵀx+b)]: −(1/N) xᵀ (f(Wx+b) ⊙ f'(Bᵀx+b)), f' = f(1 − f)
    kb = params["dense0"]["backward_kernel"]
    proj = lambda b: Projections(x, params["dense0"]["kernel"], b, P.DENSE, params["dense0"]["bias"],  # noqa: E731
                                 "sigmoid", reg)
    grad = jax.grad(lambda b: P.amp_of(proj(b)))(kb)
    np.testing.assert_allclose(grad, -xn.T @ (fwd0 * bwd0 * (1 - bwd0)) / len(xn), rtol=1e-5, atol=1e-7)
    off = jax.grad(lambda b: P.amp_of(Projections(x, params["dense0"]["kernel"], b, P.DENSE)))(kb)
    np.testing.assert_allclose(off, -xn.T @ (xn @ p0["kernel"]) / len(xn), rtol=1e-5, atol=1e-7)  # −ΣWᵀ


def test_resnet_layers_know_the_relu_that_follows_them():
    rule = make_rule("aa")
    model = models.build({"arch": "resnet", "depth": 8, "stem": "cifar", "width": 4, "version": 1}, 10,
                         models.LayerOptions(rule, regularizer=RegularizerOptions(activation_backward=True)))
    x = _rand(KEY, (4, 8, 8, 1))
    var = model.init({"params": KEY}, x, train=False)
    _, mut = model.apply(var, x, train=True, mutable=["batch_stats", "primitives"])
    acts = {}
    for module_path, v in jax.tree_util.tree_flatten_with_path(mut["primitives"])[0]:
        acts["/".join(p.key for p in module_path if hasattr(p, "key"))] = float(v)
    # with f = ReLU on Bᵀx, sparse of the stem differs from the plain value; of the last conv of a block, not
    plain = model.clone(opts=models.LayerOptions(rule)).apply(var, x, train=True, mutable=["batch_stats", "primitives"])[1]
    flat = {"/".join(p.key for p in path if hasattr(p, "key")): float(v)
            for path, v in jax.tree_util.tree_flatten_with_path(plain["primitives"])[0]}
    assert acts["conv0/sparse"] < flat["conv0/sparse"]                                  # relu after the stem
    assert acts["block_group1_0/conv0/sparse"] < flat["block_group1_0/conv0/sparse"]
    assert acts["block_group1_0/conv1/sparse"] == flat["block_group1_0/conv1/sparse"]    # last conv: none
    assert acts["dense/sparse"] == flat["dense/sparse"]


def test_standardisation_switches_by_hand():
    k = jax.random.split(KEY, 3)
    x, kf, kb = _rand(k[0], (6, 5)) + 2.0, _rand(k[1], (5, 3)), _rand(k[2], (5, 3))
    xn, wf, wb = (np.asarray(a, np.float64) for a in (x, kf, kb))

    def center(a):
        return a - a.mean(1, keepdims=True)

    def normalize(a):
        a = center(a)
        return a / np.linalg.norm(a, axis=1, keepdims=True)

    def check(opts, fwd, bwd, frec, brec):
        p = Projections(x, kf, kb, P.DENSE, None, None, RegularizerOptions(**opts))
        for got, want in ((p.forward, fwd), (p.backward, bwd), (p.forward_reconstruction, frec),
                          (p.backward_reconstruction, brec)):
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)

    check({}, xn @ wf, xn @ wb, xn @ wf @ wb.T, xn @ wb @ wf.T)
    xi = normalize(xn)                                             # centre_input then normalize_input
    check({"center_input": True, "normalize_input": True}, xi @ wf, xi @ wb, xi @ wf @ wb.T, xi @ wb @ wf.T)
    xb = xn - xn.mean(0)
    check({"batch_center_backward_input": True}, xn @ wf, xb @ wb, xn @ wf @ wb.T, xb @ wb @ wf.T)
    f, r = xn @ wf, xn @ wf @ wb.T
    check({"center_forward_output": True, "batch_center_forward_output": True}, center(f) - center(f).mean(0),
          xn @ wb, center(r) - center(r).mean(0), xn @ wb @ wf.T)
    b, rb = xn @ wb, xn @ wb @ wf.T
    check({"normalize_forward_output": True, "center_backward_output": True, "normalize_backward_output": True},
          normalize(f), normalize(center(b)), normalize(r), normalize(center(rb)))
    check({"use_bias_forward": True}, xn @ wf, xn @ wb, xn @ wf @ wb.T, xn @ wb @ wf.T)   # no bias given: no-op
    p = Projections(x, kf, kb, P.DENSE, jnp.ones(3), None, RegularizerOptions(use_bias_backward=True))
    np.testing.assert_allclose(p.backward, xn @ wb + 1.0, rtol=1e-5)
    np.testing.assert_allclose(p.forward, xn @ wf, rtol=1e-5)


def test_options_off_give_the_plain_primitives():
    k = jax.random.split(KEY, 3)
    x, kf, kb = _rand(k[0], (7, 5)), _rand(k[1], (5, 3)), _rand(k[2], (5, 3))
    for name in ("wm", "ia", "sa", "aa"):
        rule = make_rule(name)
        via = rule.weighted(rule.primitive_values(Projections(x, kf, kb, P.DENSE, jnp.ones(3), "relu")))
        direct = sum(c * P.PRIMITIVES[t](x, kf, kb) for t, c in rule.terms.items())
        assert float(via) == pytest.approx(float(direct), rel=1e-6)


# ----------------------------------------------------------------------------- IA switches, registry, validation

def test_ia_switches_from_the_spec():
    hp = _hp(use_sparse=True, reconstruction_reversal=True, reconstruction_amp=True, gamma=3e-3)
    rule = rule_for_spec("ia", hp)
    assert rule.terms == {"amp": 2e-3, "null": 1e-3, "sparse": 3e-3} and rule.reversal and rule.reconstruction_amp
    assert rule.coefficients["gamma"] == "sparse"
    assert rule_for_spec("ia", _hp()).terms == make_rule("ia").terms


def test_rule_coefficient_names_and_defaults_agree_with_the_registry():
    assert set(options.DEFAULT_COEFFICIENTS) == set(RULES)
    for name in RULES:
        rule = make_rule(name)
        assert tuple(rule.coefficients) == options.RULE_COEFFICIENTS[name]
        assert {c: rule.terms[term] for c, term in rule.coefficients.items()} == options.DEFAULT_COEFFICIENTS[name]


@pytest.mark.parametrize("override,key", [
    ({"alpha_schedule_type": "cyclic"}, "hparams.alpha_schedule_type"),
    ({"alpha_start": 1.5}, "hparams.alpha_start"),
    ({"beta_start": 0.8, "beta_stop": 0.5}, "hparams.beta_start"),
    ({"alpha_cycle": 0}, "hparams.alpha_cycle"),
    ({"gamma_start": 0.5}, "hparams.gamma_start"),            # SA has no gamma
    ({"delay_epochs": -1}, "hparams.delay_epochs"),
    ({"alternate_step_freq": 0}, "hparams.alternate_step_freq"),
    ({"alternate_step_freq": 1.5}, "hparams.alternate_step_freq"),
    ({"constant_rate": "no"}, "hparams.constant_rate"),
    ({"activation_forward": 1}, "hparams.activation_forward"),
    ({"normalize_input": "yes"}, "hparams.normalize_input"),
    ({"use_sparse": True}, "hparams.use_sparse"),              # IA only
])
def test_bad_option_names_its_key(override, key):
    with pytest.raises(SpecError, match=f"'{key}'"):
        _spec(**override)


@pytest.mark.parametrize("model,key", [
    ({"arch": "fc", "hidden": []}, "model.hidden"),
    ({"arch": "fc", "activation": "gelu"}, "model.activation"),
])
def test_bad_fc_model_names_its_key(model, key):
    with pytest.raises(SpecError, match=f"'{key}'"):
        _spec(model=model)


def test_linear_fixed_point_runs_take_schedules_but_not_task_options():
    linear = {"arch": "linear"}
    _spec(model=linear, alpha_start=0.5)
    with pytest.raises(SpecError, match="'hparams.delay_epochs'"):
        _spec(model=linear, delay_epochs=1.0)


def test_recorded_options_list_every_effective_value():
    rec = options.recorded(_spec(delay_epochs=1.0, activation_backward=True))
    assert rec["hparams"]["delay_epochs"] == 1.0 and rec["hparams"]["activation_backward"] is True
    assert rec["hparams"]["alpha_stop"] == 1.0 and rec["model"]["hidden"] == [6]
    assert {k.split("_")[0] for k in options.schedule_keys()} == {"alpha", "beta", "gamma"}
