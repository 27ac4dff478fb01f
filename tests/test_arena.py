"""The rule arena: every registered rule accounted for, twins that agree step by step, the protocol
(learning rate chosen on validation data, never on test), the leaderboard's columns, and a user's own
data end to end (trained through Snakemake) or refused with one clear message and nothing written.
The arena's smoke targets themselves render in tests/test_e2e.py (arena is in config's papers)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from impls import registry
from impls.arena import contenders, data, nets
from impls.common.errors import SpecError
from tests.conftest import copy_repo, run_snakemake

SIZES = [12, 8, 6, 4]


def test_every_registered_rule_is_a_contender_or_excluded_with_a_reason():
    running = {c.registry_key for c in contenders.CONTENDERS.values()}
    unaccounted = sorted(set(registry.BY_KEY) - running - set(contenders.EXCLUDED))
    assert unaccounted == [], f"registered rules neither in the arena nor excluded with a reason: {unaccounted}"
    assert set(contenders.EXCLUDED) <= set(registry.BY_KEY), "EXCLUDED names a rule the registry does not have"
    assert running <= set(registry.BY_KEY)
    assert not running & set(contenders.EXCLUDED)
    assert all(reason.strip() for reason in contenders.EXCLUDED.values())
    for rule, c in contenders.CONTENDERS.items():   # twins name each other, in the other framework
        if c.twin:
            assert contenders.CONTENDERS[c.twin].twin == rule and contenders.CONTENDERS[c.twin].framework != c.framework


def _batch(seed=0, n=16):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, SIZES[0])).astype(np.float32)
    y = np.eye(SIZES[-1], dtype=np.float32)[rng.integers(0, SIZES[-1], n)]
    return x, y


@pytest.mark.parametrize("rule", ["backprop", "fa", "dfa", "drtp"])
def test_twins_start_equal_and_stay_equal_for_twenty_sgd_steps(rule):
    """The JAX and PyTorch versions of a shared rule, from the arena's numpy draws (same weights, same
    feedback), take the same 20 SGD steps (lr 0.01) on the same minibatches: updates, losses and weights agree."""
    import jax
    import jax.numpy as jnp
    import torch

    from impls.arena import jax_rules, torch_rules

    j = jax_rules.build(f"{rule}_jax", SIZES, "relu", {})
    t = torch_rules.build(f"{rule}_torch", SIZES, "relu", {})
    params, state = j.init(3)
    weights, feedback = t.init([3])
    for step in range(20):
        x, y = _batch(step)
        g_j, _, loss_j = j.estimate(params, state, jnp.asarray(x), jnp.asarray(y), jax.random.PRNGKey(step))
        g_t, loss_t = t.estimate(weights, feedback, torch.from_numpy(x)[None], torch.from_numpy(y)[None])
        for a, b in zip(j.weights(g_j), g_t):
            np.testing.assert_allclose(np.asarray(a), b[0].T.numpy(), rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(float(loss_j), float(loss_t[0]), rtol=1e-5)
        params = jax.tree_util.tree_map(lambda p, g: p - 0.01 * g, params, g_j)
        for w, g in zip(weights, g_t):
            w.sub_(0.01 * g)
    for a, b in zip(j.weights(params), weights):
        np.testing.assert_allclose(np.asarray(a), b[0].T.numpy(), rtol=1e-4, atol=1e-5)


JAX_CONTENDERS = [r for r, c in contenders.CONTENDERS.items() if c.framework == "jax"]
TORCH_CONTENDERS = [r for r, c in contenders.CONTENDERS.items() if c.framework == "torch"]


@pytest.mark.parametrize("rule", JAX_CONTENDERS)
def test_jax_contender_updates_only_the_shared_net_and_bp_is_its_own_reference(rule):
    """Every JAX contender starts from the arena's weights, gives finite updates of the forward weights'
    shapes, leaves the biases of its paper's model at 0, and its exact gradient is BP's on the same net."""
    import jax
    import jax.numpy as jnp

    from impls.arena import jax_rules

    c = jax_rules.build(rule, SIZES, "relu", {"sigma": 1e-3, "lr": 0.1})
    params, state = c.init(5)
    for w, ref in zip(c.weights(params), nets.initial_weights(5, SIZES)):
        np.testing.assert_array_equal(np.asarray(w), ref)
    x, y = (jnp.asarray(a) for a in _batch())
    g, _, loss = c.estimate(params, state, x, y, jax.random.PRNGKey(0))
    masked = jax.tree_util.tree_map(lambda gi, m: gi * m, g, c.trainable(params))
    assert np.isfinite(float(loss))
    for gw, w in zip(c.weights(masked), c.weights(params)):
        assert gw.shape == w.shape and bool(jnp.all(jnp.isfinite(gw)))
    frozen = [m for m in jax.tree_util.tree_leaves(c.trainable(params)) if m == 0.0]
    assert len(frozen) == (len(SIZES) - 1 if rule.startswith(("np", "ll_")) else 0)   # the biases only
    exact = c.bp_grads(params, x, y)
    assert [e.shape for e in exact] == [w.shape for w in c.weights(params)]


def test_backprop_contenders_have_cosine_one_and_fa_less():
    from impls.arena import jax_rules

    x, y = _batch()
    for rule, below_one in (("backprop_jax", False), ("fa_jax", True)):
        c = jax_rules.build(rule, SIZES, "relu", {})
        params, state = c.init(1)
        g, _, _ = c.estimate(params, state, x, y, None)
        cos = nets.cosine(c.weights(g), c.bp_grads(params, x, y))
        assert (cos < 0.999) if below_one else cos == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize("rule", TORCH_CONTENDERS)
def test_torch_contender_gives_finite_updates_of_the_weights_shapes(rule):
    import torch

    from impls.arena import torch_rules

    c = torch_rules.build(rule, SIZES, "relu", {"lr": 0.1})
    weights, state = c.init([0, 1])
    x, y = _batch()
    xs, ys = torch.from_numpy(np.stack([x, x])), torch.from_numpy(np.stack([y, y]))
    grads, loss = c.estimate(weights, state, xs, ys)
    assert [g.shape for g in grads] == [w.shape for w in weights]
    assert all(bool(torch.isfinite(g).all()) for g in grads) and loss.shape == (2,)
    assert not torch.equal(grads[0][0], grads[0][1])   # the two seeds start from different weights


# ----------------------------------------------------------------------------- protocol and leaderboard

def _tidy(rows, backend="cpu"):
    """A tidy table as impls.arena.figures.runs_table returns it, from (rule, lr, seed, status, val, test curve)."""
    out = []
    for rule, lr, seed, status, val, test in rows:
        rid = f"{rule}-{lr}-{seed}"
        epochs = len(test) - 1
        for epoch, acc in enumerate(test):
            out.append({"run_id": rid, "epoch": epoch, "split": "test", "metric": "acc", "value": acc})
            out.append({"run_id": rid, "epoch": epoch, "split": "val", "metric": "acc",
                        "value": val if epoch == epochs else 10.0})
            for clock in ("cpu_s", "wall_s"):
                out.append({"run_id": rid, "epoch": epoch, "split": "time", "metric": clock,
                            "value": 2.0 if rule.startswith("fa") else 1.0})
            out.append({"run_id": rid, "epoch": epoch, "split": "probe", "metric": "cos_bp", "value": 0.5})
        for row in out[-5 * len(test):]:
            row.update(rule=rule, lr=lr, seed=seed, status=status, epochs=epochs, backend=backend,
                       framework=contenders.CONTENDERS[rule].framework, step_memory_mb=3.0 if rule.startswith("fa") else 1.5)
    return pd.DataFrame(out)


def test_the_learning_rate_is_chosen_on_validation_data_never_on_test():
    """lr 0.1 has the better validation accuracy, lr 0.01 the better test accuracy: 0.1 is chosen and its
    test accuracy reported; a seed that diverged counts as 0 % in the choice."""
    from impls.arena.figures import leaderboard_table, per_run, sweep_table

    curve = lambda final: [10.0, final * 0.5, final * 0.95, final]   # noqa: E731
    rows = [("backprop_jax", lr, s, "ok", val, curve(test)) for lr, val, test in ((0.1, 90.0, 80.0), (0.01, 85.0, 95.0))
            for s in (0, 1, 2)]
    rows += [("fa_jax", 0.1, 0, "diverged", np.nan, [10.0, 50.0, np.nan, np.nan])]
    rows += [("fa_jax", 0.1, s, "ok", 99.0, curve(70.0)) for s in (1, 2)]        # mean val (0 + 99 + 99) / 3 = 66
    rows += [("fa_jax", 0.01, s, "ok", 70.0, curve(60.0)) for s in (0, 1, 2)]
    table = _tidy(rows)
    sweep = sweep_table(per_run(table))
    chosen = sweep[sweep["chosen"]].set_index("rule")["lr"]
    assert chosen["backprop_jax"] == 0.1 and chosen["fa_jax"] == 0.01
    board = leaderboard_table(table).set_index("rule")
    assert board.loc["backprop_jax", "test_acc"] == pytest.approx(80.0)
    assert board.loc["backprop_jax", "epochs_to_90"] == 2                # 0.95 * 80 >= 0.9 * 80 first at epoch 2
    assert board.loc["fa_jax", "cpu_vs_bp"] == pytest.approx(2.0) and board.loc["fa_jax", "wall_vs_bp"] == pytest.approx(2.0)
    assert board.loc["fa_jax", "memory_vs_bp"] == pytest.approx(2.0)
    assert list(board.index) == ["backprop_jax", "fa_jax"]              # best test accuracy first


def test_cost_is_cpu_time_on_a_cpu_and_wall_time_on_an_accelerator():
    """On a GPU the process's CPU seconds are mostly waiting for the device: the cost figure then plots
    wall-clock time relative to BP, and the leaderboard says which (cost_basis)."""
    from impls.arena.figures import cost_figure, leaderboard_table

    rows = [(rule, 0.1, s, "ok", 90.0, [10.0, 50.0, 90.0]) for rule in ("backprop_jax", "fa_jax") for s in (0, 1)]
    for backend, basis, label in (("cpu", "cpu", "CPU s per epoch"), ("gpu", "wall", "wall-clock s per epoch")):
        board = leaderboard_table(_tidy(rows, backend))
        assert set(board["cost_basis"]) == {basis}
        fig = cost_figure(board, {"target": "fig_arena_cost", "title": "t", "scale": "smoke", "dataset": "digits"})
        assert fig.axes[0].get_xlabel().startswith(label), fig.axes[0].get_xlabel()


def test_validation_split_is_carved_from_training_data_and_fixed():
    keep, val = data.validation_split(100, 10)
    assert len(val) == 10 and not set(keep) & set(val) and sorted([*keep, *val]) == list(range(100))
    assert np.array_equal(val, data.validation_split(100, 10)[1])
    with pytest.raises(SpecError, match="n_val is 100"):
        data.validation_split(100, 100)


# ----------------------------------------------------------------------------- a user's own data

def _user_arrays(n_train=300, n_test=100, d=20, classes=3, seed=0):
    """A learnable toy task: class means apart in a 20-dimensional space."""
    rng = np.random.default_rng(seed)
    means = rng.normal(0, 3, (classes, d))
    y_train, y_test = rng.integers(0, classes, n_train), rng.integers(0, classes, n_test)
    return {"x_train": (means[y_train] + rng.normal(size=(n_train, d))).astype(np.float32), "y_train": y_train,
            "x_test": (means[y_test] + rng.normal(size=(n_test, d))).astype(np.float32), "y_test": y_test}


BAD_DATA = {
    "missing key": (lambda a: {k: v for k, v in a.items() if k != "y_test"}, "missing y_test"),
    "extra key": (lambda a: {**a, "meta": np.zeros(3)}, "unexpected meta"),
    "label shape": (lambda a: {**a, "y_train": a["y_train"][:-1]}, "y_train has shape"),
    "float labels": (lambda a: {**a, "y_train": a["y_train"].astype(np.float32)}, "y_train has dtype float32"),
    "negative label": (lambda a: {**a, "y_test": a["y_test"] - 1}, "the smallest is -1"),
    "unseen test label": (lambda a: {**a, "y_test": a["y_test"] + 5}, "which y_train never shows"),
    "nan": (lambda a: {**a, "x_train": np.where(np.arange(20) == 3, np.nan, a["x_train"]).astype(np.float32)},
            "x_train holds NaN or infinite values"),
    "feature shape": (lambda a: {**a, "x_test": a["x_test"][:, :5]}, "x_train examples have shape"),
    "string inputs": (lambda a: {**a, "x_test": a["x_test"].astype(str)}, "x_test has dtype"),
}


@pytest.mark.parametrize("case", list(BAD_DATA))
def test_bad_user_data_gets_one_message_naming_the_problem(tmp_path, case):
    change, message = BAD_DATA[case]
    path = tmp_path / "mine.npz"
    np.savez(path, **change(_user_arrays()))
    with pytest.raises(data.ArenaDataError, match=message):
        data.user_dataset_id(path)


def test_bad_user_data_stops_the_workflow_before_anything_is_written(tmp_path):
    root = copy_repo(tmp_path / "repo")
    bad = _user_arrays()
    bad["y_test"] = bad["y_test"] + 5
    np.savez(tmp_path / "bad.npz", **bad)
    done = run_snakemake(root, "--cores", "1", "tab_arena_leaderboard", "--config", "papers=[arena]",
                         f"arena_data={tmp_path / 'bad.npz'}")
    assert done.returncode != 0
    assert "y_test has label" in done.stderr and "which y_train never shows" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (root / "results").exists() and not (root / "resources").exists()


# ----------------------------------------------------------------------------- the conv task

CONV = nets.ConvNet((8, 8, 1), (4, 4, 4), (1, 2, 1), 10)


def _images(seed=0, n=16):
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(n, *CONV.image_shape)).astype(np.float32),
            np.eye(CONV.n_classes, dtype=np.float32)[rng.integers(0, CONV.n_classes, n)])


def test_every_contender_trains_the_conv_net_or_says_why_not():
    assert set(contenders.CONV_CONTENDERS) | set(contenders.CONV_EXCLUDED) == set(contenders.CONTENDERS)
    assert not set(contenders.CONV_CONTENDERS) & set(contenders.CONV_EXCLUDED)
    assert all(reason.strip() for reason in contenders.CONV_EXCLUDED.values())


def test_conv_net_shapes_follow_same_padding_and_the_strides():
    assert CONV.feature_shapes() == [(8, 8, 4), (4, 4, 4), (4, 4, 4)]
    assert CONV.kernel_shapes() == [(3, 3, 1, 4), (3, 3, 4, 4), (3, 3, 4, 4), (64, 10)]
    assert CONV.unit_sizes() == [64, 256, 64, 64, 10]
    odd = nets.ConvNet((7, 7, 3), (2, 5), (2, 2), 3)   # 'SAME': ⌈7/2⌉ = 4, ⌈4/2⌉ = 2
    assert odd.feature_shapes() == [(4, 4, 2), (2, 2, 5)] and odd.kernel_shapes()[-1] == (20, 3)


@pytest.mark.parametrize("rule", contenders.CONV_CONTENDERS)
def test_conv_contender_trains_the_same_conv_net_from_the_arena_weights(rule):
    """Every conv contender starts from the arena's conv weights, computes the same net (NP: the sigmoid of
    its logits, its paper's output), gives finite updates of every kernel's shape, and BP is its reference."""
    import jax
    import jax.numpy as jnp

    from impls.arena import jax_conv_rules

    c = jax_conv_rules.build(rule, CONV, "relu", {"sigma": 1e-5})
    params, state = c.init(2)
    for w, ref in zip(c.weights(params), nets.conv_weights(2, CONV)):
        np.testing.assert_array_equal(np.asarray(w), ref)
    x, y = (jnp.asarray(a) for a in _images())
    plain = jax_conv_rules.plain_forward(c.weights(params), x, CONV, "relu")
    out = c.logits(params, x)
    np.testing.assert_allclose(np.asarray(out), np.asarray(jax.nn.sigmoid(plain) if rule.startswith("np") else plain),
                               rtol=1e-5, atol=1e-6)
    g, _, loss = c.estimate(params, state, x, y, jax.random.PRNGKey(0))
    assert np.isfinite(float(loss))
    assert [u.shape for u in c.weights(g)] == [tuple(s) for s in CONV.kernel_shapes()]
    assert all(bool(jnp.all(jnp.isfinite(u))) and float(jnp.abs(u).max()) > 0 for u in c.weights(g))
    exact = c.bp_grads(params, x, y)
    cos = nets.cosine(c.weights(g), exact)
    assert cos == pytest.approx(1.0, abs=1e-5) if rule == "backprop_jax" else cos < 0.999


@pytest.mark.parametrize("rule", ["np", "np_indep_noise"])
def test_conv_node_perturbation_trains_any_number_of_classes(rule):
    """The conv task on a user's images with 3 classes: node perturbation's readout and its noise have 3 outputs."""
    import jax
    import jax.numpy as jnp

    from impls.arena import jax_conv_rules

    net = nets.ConvNet((6, 6, 1), (2, 3), (1, 2), 3)
    c = jax_conv_rules.build(rule, net, "relu", {"sigma": 1e-5})
    params, state = c.init(0)
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(8, 6, 6, 1)).astype(np.float32))
    y = jnp.asarray(np.eye(3, dtype=np.float32)[rng.integers(0, 3, 8)])
    g, _, loss = c.estimate(params, state, x, y, jax.random.PRNGKey(1))
    assert [u.shape for u in c.weights(g)] == [tuple(s) for s in net.kernel_shapes()] and np.isfinite(float(loss))
    assert c.logits(params, x).shape == (8, 3)


def test_conv_fa_with_feedback_equal_to_the_weights_is_backprop():
    """FA's conv layers send the error down through B_l (strided 'SAME' transposed convolutions): with B_l = K_l
    that is the exact gradient."""
    from impls.arena import jax_conv_rules
    from impls.rules.dfa import FeedbackState

    c = jax_conv_rules.build("fa_jax", CONV, "relu", {})
    params, _ = c.init(4)
    x, y = _images(1)
    g, _, _ = c.estimate(params, FeedbackState(B=tuple(layer["w"] for layer in params)), x, y, None)
    for a, b in zip(c.weights(g), c.bp_grads(params, x, y)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-6)


def test_conv_dfa_projects_the_output_error_onto_every_unit_of_a_feature_map():
    """DFA's update of K_l is the filter gradient of its layer for δh_l = e B_lᵀ reshaped to (N, H_l, W_l, C_l),
    with e = ∂L/∂z (softmax − target, over N) and the layer's input held fixed."""
    import jax
    import jax.numpy as jnp

    from impls.arena import jax_conv_rules

    c = jax_conv_rules.build("dfa_jax", CONV, "relu", {})
    params, state = c.init(6)
    x, y = (jnp.asarray(a) for a in _images(2))
    g, _, _ = c.estimate(params, state, x, y, None)
    kernels = [layer["w"] for layer in params]
    e = (jax.nn.softmax(jax_conv_rules.plain_forward(kernels, x, CONV, "relu")) - y) / len(x)
    h = x
    for l, (k, s, shape) in enumerate(zip(kernels[:-1], CONV.strides, CONV.feature_shapes())):
        layer = lambda k, h=h, s=s: jax.nn.relu(jax_conv_rules._conv(h, k, s))   # noqa: E731
        out, vjp = jax.vjp(layer, k)
        np.testing.assert_allclose(np.asarray(g[l]["w"]), np.asarray(vjp((e @ state.B[l].T).reshape(len(x), *shape))[0]),
                                   rtol=1e-4, atol=1e-6)
        h = out


def test_conv_task_is_refused_for_rules_without_conv_code_and_for_inconsistent_nets():
    from impls.common.specs import validate_spec

    spec = {"paper": "arena", "rule": "backprop_jax", "dataset": "digits", "scale": "smoke", "seed": 0, "epochs": 1,
            "batch_size": 8,
            "model": {"arch": "conv", "channels": [4, 4], "strides": [1, 2]}, "hparams": {"lr": 0.1}}
    validate_spec(spec)
    for change, message in (
            ({"rule": "pepita"}, "arena rule pepita does not train the conv net .*Net1conv1fcXL"),
            ({"rule": "ll_cce"}, "arena rule ll_cce does not train the conv net .*strided convolution"),
            ({"model": {"arch": "conv", "channels": [4, 4], "strides": [1]}}, "2 convolutions but model.strides 1"),
            ({"model": {"arch": "conv", "hidden": [8]}}, "model.hidden sizes an MLP's layers"),
            ({"model": {"arch": "mlp", "channels": [4]}}, "model.channels describes the conv net")):
        with pytest.raises(SpecError, match=message):
            validate_spec({**spec, **change})


def test_conv_task_takes_images_and_np_uses_its_conv_sigma():
    from impls.arena import options

    flat = data.arena_arrays(*(_user_arrays()[k] for k in ("x_train", "y_train", "x_test", "y_test")), n_val=20)
    with pytest.raises(SpecError, match=r"takes images.*shape \(20,\)"):
        data.as_images(flat, "dataset user-x")
    rng = np.random.default_rng(0)
    images = data.as_images(data.arena_arrays(rng.integers(0, 9, (50, 6, 5)), rng.integers(0, 3, 50),
                                              rng.integers(0, 9, (10, 6, 5)), rng.integers(0, 3, 10), n_val=5), "d")
    assert images.x_train.shape == (45, 6, 5, 1) and images.x_test.shape == (10, 6, 5, 1)
    conv = {"model": {"arch": "conv"}, "hparams": {"lr": 0.1}}
    assert options.resolved_hparams(conv)["sigma"] == 1e-5
    assert options.resolved_hparams({"model": {}, "hparams": {"lr": 0.1}})["sigma"] == 1e-4
    assert options.resolved_model(conv)["channels"] == [32, 32, 32]


def test_the_conv_task_is_not_planned_on_user_data_that_are_not_images(tmp_path):
    import yaml

    from impls.common.plan import build_plan
    from tests.conftest import REPO

    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text()) | {"papers": ["arena"], "scale": "smoke"}
    np.savez(tmp_path / "flat.npz", **_user_arrays())
    plan = build_plan({**config, "arena_data": str(tmp_path / "flat.npz")}, REPO)
    assert "tab_arena_conv" not in plan.figures and "tab_arena_leaderboard" in plan.figures
    assert "takes images" in plan.unplanned["tab_arena_conv"] and "(20,)" in plan.unplanned["tab_arena_conv"]
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "images.npz", x_train=rng.integers(0, 9, (300, 6, 6)), y_train=rng.integers(0, 3, 300),
             x_test=rng.integers(0, 9, (50, 6, 6)), y_test=rng.integers(0, 3, 50))
    plan = build_plan({**config, "arena_data": str(tmp_path / "images.npz")}, REPO)
    assert "tab_arena_conv" in plan.figures and not plan.unplanned


def test_a_figure_on_arena_data_says_its_note_describes_the_scale_s_own_dataset(tmp_path):
    import yaml

    from impls.common.plan import build_plan
    from tests.conftest import REPO

    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text()) | {"papers": ["arena"], "scale": "paper"}
    own = build_plan(config, REPO).figures["tab_arena_conv"]
    assert own.dataset == "cifar10" and own.note.startswith("CIFAR-10")
    swapped = build_plan({**config, "arena_data": "fashion_mnist"}, REPO).figures["tab_arena_conv"]
    assert swapped.dataset == "fashion_mnist"
    assert swapped.note == ("trained on fashion_mnist (config arena_data), not the scale's cifar10; "
                            f"the scale's settings: {own.note}")
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "images.npz", x_train=rng.integers(0, 9, (300, 6, 6)), y_train=rng.integers(0, 3, 300),
             x_test=rng.integers(0, 9, (50, 6, 6)), y_test=rng.integers(0, 3, 50))
    mine = build_plan({**config, "arena_data": str(tmp_path / "images.npz")}, REPO).figures["tab_arena_conv"]
    assert mine.note.startswith(f"trained on {tmp_path / 'images.npz'} (user-")


def test_the_arena_trains_on_a_user_supplied_npz(tmp_path):
    """--config arena_data=mine.npz: the dataset is checked and cached as user-<sha12>, every contender trains
    on it, and the leaderboard ranks them; BP learns the toy task."""
    root = copy_repo(tmp_path / "repo")
    np.savez(tmp_path / "mine.npz", **_user_arrays())
    dataset_id = data.user_dataset_id(tmp_path / "mine.npz")
    done = run_snakemake(root, "--cores", "2", "tab_arena_leaderboard", "--config", "papers=[arena]", "seeds=1",
                         f"arena_data={tmp_path / 'mine.npz'}", timeout=1500)
    assert done.returncode == 0, done.stderr[-4000:]
    assert "note: tab_arena_conv is not planned: the conv net (model.arch: conv) takes images" in done.stderr
    assert (root / "resources" / "datasets" / f"{dataset_id}.npz").is_file()
    board = pd.read_csv(root / "results" / "arena" / "tab_arena_leaderboard.csv").set_index("rule")
    assert set(board.index) == set(contenders.CONTENDERS)
    assert board.loc["backprop_jax", "test_acc"] > 80.0
    assert (root / "results" / "arena" / "tab_arena_leaderboard.html").is_file()
    specs = [p.read_text() for p in (root / "results" / "arena" / "runs").glob("*/spec.json")]
    assert specs and all(f'"dataset": "{dataset_id}"' in s for s in specs)


def test_cost_figure_names_every_point_without_overlapping_names():
    """Rules of nearly equal cost and accuracy (a cluster, as DFA, FA and their twins form) each keep a
    name, and no two names overlap."""
    from impls.arena.figures import _text_box, cost_figure

    # the cpu-scale arena's cluster (trained on a GPU), and one rule far off that stretches the axis
    points = {"backprop_jax": ("BP (JAX)", 1.0, 88.8, 1.0), "backprop_torch": ("BP (PyTorch)", 1.0, 88.34, 1.0),
              "kp": ("KP", 0.95, 88.93, 1.68), "kp_equal_leak": ("KP (equal leak)", 1.26, 88.66, 1.68),
              "fa_jax": ("FA (JAX)", 1.37, 85.55, 1.68), "fa_torch": ("FA (PyTorch)", 0.49, 85.46, 1.09),
              "dfa_jax": ("DFA (JAX)", 1.28, 86.12, 1.01), "dfa_torch": ("DFA (PyTorch)", 0.53, 85.95, 1.01),
              "sa": ("SA", 0.73, 85.73, 1.68), "np_indep_noise": ("NP (independent noise)", 7.31, 80.3, 1.09)}
    rules = list(points)
    names = [points[r][0] for r in rules]
    board = pd.DataFrame({"rule": rules, "name": names, "framework": [contenders.CONTENDERS[r].framework for r in rules],
                          "lr": 0.1, "test_acc": [points[r][2] for r in rules], "cpu_vs_bp": [points[r][1] for r in rules],
                          "cost_basis": "cpu", "memory_vs_bp": [points[r][3] for r in rules]})
    fig = cost_figure(board, {"target": "fig_arena_cost", "title": "t", "scale": "smoke", "dataset": "digits"})
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    for ax in fig.axes[:2]:
        texts = [t for t in ax.texts if t.get_text() in names]
        assert sorted(t.get_text() for t in texts) == sorted(names)
        boxes = [_text_box(t, renderer) for t in texts]   # the names, not their leader lines
        overlapping = [(texts[i].get_text(), texts[j].get_text()) for i in range(len(boxes))
                       for j in range(i + 1, len(boxes)) if boxes[i].overlaps(boxes[j])]
        assert not overlapping, overlapping
