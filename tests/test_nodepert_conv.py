"""Convolutional node perturbation (impls/nodepert/convnets.py) against closed forms (papers/nodepert/README.md, "The
node-perturbation estimate")."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from impls.nodepert import convnets
from impls.nodepert.convnets import ConvLayer
from tests.run_batches import assert_looped_batch_matches

TINY = (ConvLayer(3, 2, 1), ConvLayer(3, 3, 2))   # 6x6x1 -> 6x6x2 -> 3x3x3 -> dense 27 -> 10
IMAGE = (6, 6, 1)


def _same_pad(size, kernel, stride):
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return out, total // 2


def _np_conv(h, k, stride):
    """'SAME' convolution written as loops over output positions, float64, h (B, H, W, C), k (kh, kw, Ci, Co)."""
    b, size, _, _ = h.shape
    kh = k.shape[0]
    out, lo = _same_pad(size, kh, stride)
    padded = np.zeros((b, size + kh, size + kh, h.shape[3]))
    padded[:, lo:lo + size, lo:lo + size] = h
    y = np.zeros((b, out, out, k.shape[3]))
    for r in range(out):
        for c in range(out):
            patch = padded[:, r * stride:r * stride + kh, c * stride:c * stride + kh, :]   # (B, kh, kw, Ci)
            y[:, r, c] = np.einsum("bijc,ijco->bo", patch, k)
    return y, padded, lo


def _np_forward(params, x, noise=None):
    h, inputs = x, []
    for l, layer in enumerate(params):
        inputs.append(h)
        if l < len(TINY):
            a = _np_conv(h, layer["w"], TINY[l].stride)[0] + layer["b"]
        else:
            a = h.reshape(len(h), -1) @ layer["w"].T + layer["b"]
        if noise is not None:
            a = a + noise[l]
        h = 1 / (1 + np.exp(-a)) if l == len(params) - 1 else np.maximum(a, 0)
    return h, inputs


def _np_loss(params, x, y, noise=None):
    return ((_np_forward(params, x, noise)[0] - y) ** 2).mean(1)


def _np_estimate(params, x, y, noise, sigma):
    """Spec §2.2 conv estimate as explicit sums over examples i, positions p and channels c:
    g_K[u, v, ci, co] = (1/B) Σ_i (δL_i/σ²) Σ_p ξ[p, co] h̃_i[p·s + (u, v) − pad, ci];
    g_b[co] = (1/B) Σ_i (δL_i/σ²) Σ_p ξ[p, co]; dense g_W = (1/B) Σ_i (δL_i/σ²) ξ h̃_iᵀ."""
    delta = _np_loss(params, x, y, noise) - _np_loss(params, x, y)
    _, inputs = _np_forward(params, x, noise)
    coef = delta / (len(x) * sigma ** 2)
    grads = []
    for l, layer in enumerate(params):
        xi = noise[l]
        if l < len(TINY):
            s, k = TINY[l].stride, layer["w"].shape[0]
            _, padded, _ = _np_conv(inputs[l], layer["w"], s)
            gk = np.zeros_like(layer["w"])
            gb = np.zeros_like(layer["b"])
            out = xi.shape[0]
            for i in range(len(x)):
                for r in range(out):
                    for c in range(out):
                        patch = padded[i, r * s:r * s + k, c * s:c * s + k, :]   # (kh, kw, Ci)
                        gk += coef[i] * patch[..., None] * xi[r, c][None, None, None, :]
                        gb += coef[i] * xi[r, c]
            grads.append({"w": gk, "b": gb})
        else:
            h = inputs[l].reshape(len(x), -1)
            grads.append({"w": np.outer(xi, coef @ h), "b": xi * coef.sum()})
    return grads


@pytest.fixture
def tiny():
    params64 = jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64),
                                      convnets.init_convnet(jax.random.PRNGKey(3), TINY, IMAGE))
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4, *IMAGE))
    y = np.eye(10)[rng.integers(0, 10, 4)]
    return params64, x, y, rng


def _f32(tree):
    return jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float32), tree)


def test_noise_has_each_layers_full_output_shape_shared_over_the_batch():
    shapes = convnets.output_shapes(TINY, IMAGE)
    assert shapes == [(6, 6, 2), (3, 3, 3), (10,)]
    shared = convnets.draw_noise(jax.random.PRNGKey(0), shapes, 1e-5, 4, shared_noise=True)
    assert [n.shape for n in shared] == shapes
    indep = convnets.draw_noise(jax.random.PRNGKey(0), shapes, 1e-5, 4, shared_noise=False)
    assert [n.shape for n in indep] == [(4, *s) for s in shapes]
    assert float(jnp.std(shared[0])) == pytest.approx(1e-5, rel=0.3)


def test_conv_estimate_matches_the_closed_form(tiny):
    params, x, y, rng = tiny
    sigma = 0.05  # large so the float32 loss differences are exact; the formula holds for any sigma
    noise = [sigma * rng.normal(size=s) for s in convnets.output_shapes(TINY, IMAGE)]
    expected = _np_estimate(params, x, y, noise, sigma)
    got, loss = convnets.estimate_with_noise(_f32(params), _f32(x), _f32(y), _f32(noise), sigma, TINY)
    for g, e in zip(got, expected):
        assert g["w"].shape == e["w"].shape and g["b"].shape == e["b"].shape
        np.testing.assert_allclose(g["w"], e["w"], rtol=2e-3, atol=2e-5)
        np.testing.assert_allclose(g["b"], e["b"], rtol=2e-3, atol=2e-5)
    np.testing.assert_allclose(loss, _np_loss(params, x, y).mean(), rtol=1e-5)


def test_sgd_rule_is_jax_grad_and_matches_finite_differences(tiny):
    params, x, y, _ = tiny
    rule = convnets.make_conv_rule("sgd", {}, TINY, IMAGE)
    grads, _, aux = rule.estimate(_f32(params), (), _f32(x), _f32(y), None)
    auto = jax.grad(convnets.mean_loss)(_f32(params), _f32(x), _f32(y), TINY)
    for g, a in zip(jax.tree_util.tree_leaves(grads), jax.tree_util.tree_leaves(auto)):
        np.testing.assert_array_equal(g, a)
    # central differences of the float64 loop reference on a few coordinates of every leaf
    rng = np.random.default_rng(1)
    eps = 1e-5
    for l, layer in enumerate(params):
        for name in ("w", "b"):
            for _ in range(3):
                idx = tuple(rng.integers(0, n) for n in layer[name].shape)
                plus = jax.tree_util.tree_map(np.copy, params)
                minus = jax.tree_util.tree_map(np.copy, params)
                plus[l][name][idx] += eps
                minus[l][name][idx] -= eps
                fd = (_np_loss(plus, x, y).mean() - _np_loss(minus, x, y).mean()) / (2 * eps)
                assert float(grads[l][name][idx]) == pytest.approx(fd, rel=2e-3, abs=2e-6)
    assert float(aux["loss"]) == pytest.approx(_np_loss(params, x, y).mean(), rel=1e-5)


def test_conv_np_averaged_over_noise_approaches_the_gradient(tiny):
    # 20,000 noise draws of the shared-noise estimator: cosine with the true gradient > 0.9.
    # (Measured 0.996 with these seeds, 0.978 with 2,000 draws, 0.05 with one; if it flakes,
    # raise the sample count, not the tolerance.)
    params, x, y, _ = tiny
    params, x, y = _f32(params), _f32(x), _f32(y)
    rule = convnets.make_conv_rule("np", {"sigma": 1e-3}, TINY, IMAGE)
    keys = jax.random.split(jax.random.PRNGKey(7), 20_000)
    flat = lambda t: jnp.concatenate([a.ravel() for a in jax.tree_util.tree_leaves(t)])  # noqa: E731
    mean = jax.jit(lambda ks: jax.lax.map(lambda k: flat(rule.estimate(params, (), x, y, k)[0]), ks,
                                          batch_size=1000).mean(0))(keys)
    true = flat(jax.grad(convnets.mean_loss)(params, x, y, TINY))
    cosine = float(mean @ true / (jnp.linalg.norm(mean) * jnp.linalg.norm(true)))
    assert cosine > 0.9, cosine


@pytest.mark.parametrize("arch, image, expected", [
    ("conv_base", (28, 28, 1), 81_546), ("conv_base", (32, 32, 3), 101_322), ("allcnn_a", (32, 32, 3), 1_260_660)])
def test_parameter_counts_match_the_spec(arch, image, expected):
    convs = convnets.layers(arch)
    shapes = jax.eval_shape(lambda k: convnets.init_convnet(k, convs, image), jax.random.PRNGKey(0))
    assert sum(int(np.prod(s.shape)) for s in jax.tree_util.tree_leaves(shapes)) == expected


def test_init_variances_follow_the_spec():
    convs = convnets.layers("conv_base")
    params = convnets.init_convnet(jax.random.PRNGKey(0), convs, (28, 28, 1))
    k = params[1]["w"]                                   # 3x3, 32 -> 32
    assert float(jnp.var(k)) == pytest.approx(2.0 / (9 * 64), rel=0.05)
    assert float(jnp.std(params[1]["b"])) > 0             # conv biases drawn, not zero
    assert params[-1]["w"].shape == (10, 14 * 14 * 32)
    assert float(jnp.var(params[-1]["w"])) == pytest.approx(2.0 / (14 * 14 * 32 + 10), rel=0.05)
    np.testing.assert_array_equal(params[-1]["b"], 0.0)
    quarter = convnets.layers("allcnn_a", 0.25)
    assert [c.channels for c in quarter] == [24, 24, 48, 48, 48, 48, 10]


# --- conv run specs and vectorised conv training ----------------------------------------------

def _conv_spec(**over):
    from impls.common import specs as speclib

    base = {"paper": "nodepert", "rule": "np", "dataset": "digits", "seed": 0, "epochs": 1,
            "model": {"arch": "conv_base", "channel_scale": 0.25}, "batch_size": 100, "scale": "smoke",
            "hparams": {"lr": 1e-3, "sigma": 1e-5}}
    return speclib.deep_merge(base, over)


@pytest.mark.parametrize("overrides, message", [
    ({"model": {"width": 32}}, "key 'model.width' is not used by model.arch 'conv_base'"),
    ({"model": {"channel_scale": 0}}, "key 'model.channel_scale' is 0"),
    ({"rule": "np_clean_pre"}, "model.arch 'conv_base' allows the estimators np, np_indep_noise, sgd"),
    ({"model": {"activation": "linear"}}, "must be 'relu'"),
    ({"hparams": {"snapshot_every": 1, "replay_epochs": 1}}, "needs model.arch 'mlp'"),
])
def test_bad_conv_specs_name_the_key(overrides, message):
    from impls.common import specs as speclib
    from impls.common.errors import SpecError

    with pytest.raises(SpecError) as err:
        speclib.validate_spec(_conv_spec(**overrides))
    assert message in str(err.value)


def test_vectorised_conv_runs_equal_the_same_runs_trained_alone(tmp_path, datasets_dir):
    from impls.common import specs as speclib
    from tests.test_nodepert_train import train_and_evaluate

    specs = [speclib.validate_spec(_conv_spec(rule=rule, hparams={"lr": lr}))
             for rule, lr in (("np", 1e-3), ("np", 5e-3), ("sgd", 0.1))]
    together = train_and_evaluate(tmp_path / "np", {speclib.run_id(s): s for s in specs[:2]}, datasets_dir)
    alone = train_and_evaluate(tmp_path / "alone", {speclib.run_id(specs[1]): specs[1]}, datasets_dir)
    sgd = train_and_evaluate(tmp_path / "sgd", {speclib.run_id(specs[2]): specs[2]}, datasets_dir)
    import pandas as pd

    rid = speclib.run_id(specs[1])
    a, b = (pd.read_csv(r / "runs" / rid / "metrics.csv") for r in (together, alone))
    np.testing.assert_allclose(a["value"], b["value"], rtol=1e-4, atol=1e-4)
    # NP and SGD with one seed start from identical conv weights: identical epoch-0 metrics
    e0 = [pd.read_csv(r / "runs" / speclib.run_id(s) / "metrics.csv").query("epoch == 0")["value"].to_numpy()
          for r, s in ((together, specs[0]), (sgd, specs[2]))]
    np.testing.assert_array_equal(*e0)
    sgd_acc = pd.read_csv(sgd / "runs" / speclib.run_id(specs[2]) / "metrics.csv").query(
        "split == 'test' and metric == 'acc'").sort_values("epoch")["value"].to_numpy()
    assert sgd_acc[-1] > sgd_acc[0]


@pytest.mark.parametrize("rule", ["np", "sgd"])
def test_conv_batch_loops_over_its_runs_on_cpu_each_run_as_alone_and_near_the_vmapped_batch(rule, datasets_dir):
    """XLA:CPU runs vmap's grouped convs slowly, so on CPU a conv batch maps over its runs
    (jax_state.over_runs): each run of a batch of two computes what it computes alone. The vmapped batch
    (accelerators) sums in another order: SGD agrees to float32 rounding; NP divides the loss difference by
    B·σ² = 1e-8 (σ = 1e-5), which turns rounding into ~0.1 % differences in its weights after an epoch.
    MLP batches stay vmapped."""
    import jax

    from impls.common import specs as speclib
    from impls.nodepert.compiled import CompiledBatch, load_arrays

    spec = speclib.validate_spec(_conv_spec(rule=rule, hparams={"lr": 1e-2}))
    arrays = load_arrays(spec, datasets_dir)
    mlp = speclib.validate_spec({**_conv_spec(), "model": {"arch": "mlp", "n_hl": 1, "width": 16}})
    assert CompiledBatch(spec, arrays).sequential
    assert not CompiledBatch(mlp, load_arrays(mlp, datasets_dir)).sequential

    def train(seeds, sequential):
        program = CompiledBatch(spec, arrays, sequential_runs=sequential)
        params, states, keys = program.init(np.array(seeds), np.full(len(seeds), 1e-2))
        params, states, loss = program.train_epoch(params, states, keys, 0)
        return [np.asarray(v) for v in jax.tree_util.tree_leaves((params, loss, program.evaluate(params)))]

    assert_looped_batch_matches(train, tolerance=1e-2 if rule == "np" else 1e-4)
