"""bpfree conv nets (Nøkland's and Frenkel's CONV rows): shapes, identities, hand computations, specs."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from impls.bpfree import conv, models
from impls.bpfree.rules import make_rule
from impls.bpfree.compiled import scale_inputs
from impls.common import specs as speclib
from impls.common.errors import SpecError
from tests.run_batches import assert_looped_batch_matches
from tests.test_bpfree_rules import _grads

jax.config.update("jax_default_matmul_precision", "highest")
leaves = jax.tree_util.tree_leaves


def _setup(stack="3c3", hidden=(), image=(5, 5, 2), c=3, n=4, trained=True, seed=0):
    cfg = models.Config(int(np.prod(image)), tuple(hidden), c, output="sigmoid_bce", conv=conv.parse(stack),
                        conv_trained=trained, image_shape=image)
    params, state = models.init(jax.random.PRNGKey(seed), cfg)
    params["conv"] = [{**p, "b": 0.1 * jax.random.normal(jax.random.PRNGKey(9 + i), p["b"].shape)}
                      for i, p in enumerate(params["conv"])]
    kx, ky = jax.random.split(jax.random.PRNGKey(seed + 100))
    x = jax.random.normal(kx, (n, cfg.in_dim))
    y = jax.nn.one_hot(jax.random.randint(ky, (n,), 0, c), c)
    return cfg, params, state, x, y



def test_paper_stacks_have_the_papers_shapes():
    nokland = conv.parse("96c5-3p2-128c5-3p2-256c5-3p2")
    assert conv.output_shapes(nokland, (32, 32, 3)) == [(32, 32, 96), (15, 15, 96), (15, 15, 128), (7, 7, 128),
                                                        (7, 7, 256), (3, 3, 256)]
    assert conv.flat_size(nokland, (32, 32, 3)) == 2304
    assert conv.flat_size(conv.parse("32c5-2p"), (28, 28, 1)) == 14 * 14 * 32
    assert conv.flat_size(conv.parse("64c3-2p-256c3-2p"), (32, 32, 3)) == 8 * 8 * 256
    shapes = conv.conv_shapes(conv.parse("64c3-2p-256c3-2p"), (32, 32, 3))
    assert [s["kernel"] for s in shapes] == [(3, 3, 3, 64), (3, 3, 64, 256)]
    for bad in ("32c4", "32x5", "0p", "c5"):
        with pytest.raises(ValueError, match="conv token"):
            conv.parse(bad)


def test_dfa_on_a_conv_layer_with_b_equal_to_output_weights_is_backprop():
    # one conv layer feeding the output layer: BP's δh = e W_outᵀ, DFA's δh = e B_1ᵀ (B_1 on the full
    # flattened conv output), so B_1 = W_out gives backprop for the kernel, bias and output layer
    cfg, params, state, x, y = _setup(stack="3c3", hidden=())
    assert models.feedback_sizes(cfg) == [5 * 5 * 3]
    dfa = _grads("dfa", cfg, params, state, x, y, feedback=[params["out"]["w"]])
    bp = _grads("bp", cfg, params, state, x, y)
    assert float(jnp.linalg.norm(bp["conv"][0]["w"])) > 1e-3
    for a, b in zip(leaves(dfa), leaves(bp)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


def test_fa_with_b_equal_to_every_kernel_is_backprop_through_conv_and_pooling():
    cfg, params, state, x, y = _setup(stack="3c3-2p-4c3", hidden=(5,), image=(6, 6, 2))
    kernels = [p["w"].reshape(-1, p["w"].shape[-1]) for p in params["conv"]]
    kernels += [layer["w"] for layer in params["hidden"]] + [params["out"]["w"]]
    assert [k.shape for k in kernels] == models.kernel_shapes(cfg)
    fa = _grads("fa", cfg, params, state, x, y, feedback=kernels)
    bp = _grads("bp", cfg, params, state, x, y)
    for a, b in zip(leaves(fa), leaves(bp)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    other = _grads("fa", cfg, params, state, x, y, feedback=[0.5 * k + 0.1 for k in kernels])
    assert not np.allclose(other["conv"][0]["w"], bp["conv"][0]["w"])


def _np_conv_same(x, w):
    k = w.shape[0]
    pad = (k - 1) // 2
    xp = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    n, h, wd, _ = x.shape
    out = np.zeros((n, h, wd, w.shape[3]))
    for i in range(k):
        for j in range(k):
            out += np.einsum("nyxc,cf->nyxf", xp[:, i:i + h, j:j + wd, :], w[i, j])
    return out, xp


def test_drtp_conv_update_matches_a_hand_computation():
    # conv 3c3 (tanh) -> 2x2 max pool -> output; DRTP: δh_1 = reshape(y B_1ᵀ) on the full conv output
    cfg, params, state, x, y = _setup(stack="3c3-2p", hidden=(), image=(4, 4, 2), c=2, n=3)
    B = jax.random.normal(jax.random.PRNGKey(5), (4 * 4 * 3, 2))
    got = _grads("drtp", cfg, params, state, x, y, feedback=[B])
    w, b = (np.asarray(params["conv"][0][k], np.float64) for k in ("w", "b"))
    xs = np.asarray(x, np.float64).reshape(3, 4, 4, 2)
    a, xp = _np_conv_same(xs, w)
    h = np.tanh(a + b)
    pooled = h.reshape(3, 2, 2, 2, 2, 3).max(axis=(2, 4)).reshape(3, -1)
    yn = np.asarray(y, np.float64)
    delta_a = (yn @ np.asarray(B, np.float64).T).reshape(h.shape) * (1 - h ** 2)
    expected_w = np.zeros_like(w)
    for i in range(3):
        for j in range(3):
            expected_w[i, j] = np.einsum("nyxc,nyxf->cf", xp[:, i:i + 4, j:j + 4, :], delta_a)
    np.testing.assert_allclose(got["conv"][0]["w"], expected_w, rtol=1e-5, atol=1e-5)  # float32 sums of ~10
    np.testing.assert_allclose(got["conv"][0]["b"], delta_a.sum((0, 1, 2)), rtol=1e-5, atol=1e-6)
    z = pooled @ np.asarray(params["out"]["w"], np.float64) + np.asarray(params["out"]["b"], np.float64)
    e = (1 / (1 + np.exp(-z)) - yn) / (3 * 2)           # BCE on sigmoid, mean over classes and batch
    np.testing.assert_allclose(got["out"]["w"], pooled.T @ e, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("rule", ["bp", "fa", "dfa", "drtp"])
def test_frozen_conv_layers_get_no_update_and_no_signal(rule):
    cfg, params, state, x, y = _setup(stack="3c3-2p", hidden=(4,), image=(4, 4, 2), trained=False)
    assert models.feedback_sizes(cfg) == [4]
    assert float(jnp.abs(params["conv"][0]["w"]).sum()) > 0      # random, not zero
    g = make_rule(rule, cfg, state).init(params)
    grads = make_rule(rule, cfg, state).estimate(params, g, x, y, None)[0]
    assert all(float(jnp.abs(v).sum()) == 0.0 for v in leaves(grads["conv"]))
    assert float(jnp.abs(grads["hidden"][0]["w"]).sum()) > 0


def test_zero_hidden_zeroes_trained_conv_kernels():
    cfg = models.Config(64, (8,), 10, weight_init="zero_hidden", conv=conv.parse("4c3"), image_shape=(8, 8, 1))
    params, _ = models.init(jax.random.PRNGKey(0), cfg)
    assert float(jnp.abs(params["conv"][0]["w"]).sum()) == 0.0
    assert float(jnp.abs(params["out"]["w"]).sum()) > 0.0


def _spec(**model):
    return {"paper": "bpfree", "rule": "dfa", "dataset": "digits", "seed": 0, "epochs": 1, "batch_size": 32,
            "model": {"arch": "conv", "conv": "4c3-2p", "hidden": [16], **model}, "hparams": {"lr": 1e-3},
            "scale": "smoke"}


def test_conv_specs_are_validated():
    speclib.validate_spec(_spec())
    speclib.validate_spec(_spec(hidden=[]))
    cases = [(_spec(conv="4c4"), "model.conv"), (_spec(conv="2p"), "model.conv"),
             (_spec(conv_trained=False, weight_init="zero_hidden"), "zero_hidden"),
             (_spec(batchnorm=True), "model.arch 'conv'"),
             ({**_spec(), "model": {"arch": "mlp", "conv": "4c3", "hidden": [8]}}, "model.conv"),
             ({**_spec(), "hparams": {"lr": 1e-3, "trackers": "all"}}, "trackers")]
    for spec, words in cases:
        with pytest.raises(SpecError, match=words):
            speclib.validate_spec(spec)


def test_zscore_channel_scaler_centres_each_channel():
    rng = np.random.default_rng(0)
    x_train = rng.integers(0, 256, (50, 4, 4, 3)).astype(np.uint8)
    x_train[..., 2] //= 4
    train, test = scale_inputs(x_train, x_train[:5], "zscore_channel", "cifar10")
    per_channel = train.reshape(50, 4, 4, 3)
    np.testing.assert_allclose(per_channel.mean((0, 1, 2)), 0.0, atol=1e-4)
    np.testing.assert_allclose(per_channel.std((0, 1, 2)), 1.0, atol=1e-3)
    assert train.shape == (50, 48) and test.shape == (5, 48)


def test_every_paper_scale_table_claim_selects_its_own_runs():
    # each claim of tab_bpfree_drtp / tab_bpfree_dfa must pick exactly its row's runs (all seeds x lrs) from the
    # table's columns as impls.bpfree.figures writes them (a claim on hidden [500] must not catch conv runs)
    import pandas as pd
    import yaml

    from impls.bpfree.figures import DESCRIBED, _default, format_level
    from impls.common.aggregate import column_name
    from impls.common.claims import select
    from impls.common.plan import build_plan

    config = yaml.safe_load(open("config/config.yaml")) | {"papers": ["bpfree"], "scale": "paper"}
    plan = build_plan(config, ".")
    for target, runs_per_row in (("tab_bpfree_drtp", 30), ("tab_bpfree_dfa", 5)):
        figure = plan.figures[target]
        rows = []
        for rid in figure.run_ids:
            spec = plan.runs[rid]
            row = {column_name(f): format_level(_default(spec, f)) for f in (*figure.factors, *DESCRIBED)}
            rows.append({**row, "run_id": rid})
        table = pd.DataFrame(rows)
        claims = [c for c in plan.papers["bpfree"]["claims"] if c["figure"] == target and "select" in c]
        assert len(claims) >= 6
        picked = {}
        for claim in claims:
            runs = set(select(table, claim["select"])["run_id"])
            assert len(runs) == runs_per_row, (claim["id"], len(runs))
            picked[claim["id"]] = runs
        if target == "tab_bpfree_dfa":   # one claim per row of Nøkland's tables: disjoint, and every run is some row's
            assert sum(map(len, picked.values())) == len(set().union(*picked.values())) == len(figure.run_ids)


@pytest.mark.parametrize("trained", [True, False], ids=["trained", "random"])
def test_conv_batch_trains_on_digits_and_frozen_kernels_stay_put(datasets_dir, trained):
    from impls.bpfree.compiled import CompiledBatch, load_arrays

    spec = speclib.validate_spec({**_spec(conv_trained=trained), "rule": "drtp", "batch_size": 50,
                                  "hparams": {"lr": 1e-2}})
    program = CompiledBatch(spec, load_arrays(spec, datasets_dir))
    assert program.cfg.image_shape == (8, 8, 1)
    state, keys = program.init(np.array([0, 1]), np.array([1e-2, 1e-2]))
    kernels = np.asarray(state["params"]["conv"][0]["w"])
    before = program.evaluate(state)["train_error"]
    for epoch in range(3):
        state, running = program.train_epoch(state, keys, epoch)
    after = program.evaluate(state)["train_error"]
    assert np.all(np.isfinite(np.asarray(running["loss"])))
    assert np.all(np.asarray(after) < np.asarray(before) - 10)
    moved = np.abs(np.asarray(state["params"]["conv"][0]["w"]) - kernels).max()
    assert (moved > 0) == trained


def test_conv_batch_loops_over_its_runs_on_cpu_each_run_as_alone_and_as_vmapped(datasets_dir):
    """XLA:CPU runs vmap's grouped convs slowly, so on CPU a conv batch maps over its runs
    (jax_state.over_runs): each run of a batch of two computes what it computes alone, and the vmapped
    program agrees to float32 rounding. MLP batches stay vmapped."""
    from impls.bpfree.compiled import CompiledBatch, load_arrays

    spec = speclib.validate_spec({**_spec(conv="4c3-3p2"), "rule": "fa", "hparams": {"lr": 1e-2}})
    arrays = load_arrays(spec, datasets_dir)
    mlp = speclib.validate_spec({**_spec(), "model": {"arch": "mlp", "hidden": [16]}})
    assert CompiledBatch(spec, arrays).sequential and not CompiledBatch(mlp, load_arrays(mlp, datasets_dir)).sequential

    def train(seeds, sequential):
        program = CompiledBatch(spec, arrays, sequential_runs=sequential)
        state, keys = program.init(np.array(seeds), np.full(len(seeds), 1e-2))
        state, running = program.train_epoch(state, keys, 0)
        return [np.asarray(v) for v in leaves((state, running, program.evaluate(state)))]

    assert_looped_batch_matches(train, tolerance=1e-4)
