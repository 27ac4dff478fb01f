"""Crash-dynamics replay (impls/nodepert/replay.py): per-minibatch logs against a plain loop, and the
replayed trajectory against the training run it replays."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

from impls.common import specs as speclib
from impls.common.io import read_json
from impls.nodepert import models
from impls.nodepert.replay import replay_steps, replay_window
from impls.nodepert.rules import make_rule
from tests.test_nodepert_train import train_and_evaluate


def test_replay_steps_match_a_plain_python_loop():
    rng = np.random.default_rng(0)
    sizes = [6, 5, 4, 10]
    params = models.init_mlp(jax.random.PRNGKey(1), sizes)
    x_full = jnp.asarray(rng.normal(size=(12, 6)), jnp.float32)
    y_full = jax.nn.one_hot(jnp.asarray(rng.integers(0, 10, 12)), 10)
    xb, yb = x_full.reshape(3, 4, 6), y_full.reshape(3, 4, 10)
    keys = jax.vmap(lambda t: jax.random.fold_in(jax.random.PRNGKey(5), t))(jnp.arange(3, dtype=jnp.uint32))
    rule = make_rule("np", {"sigma": 0.05})  # large sigma: float32 loss differences exact to ~1e-5
    lr = 0.5
    logs = replay_steps(params, lr, rule, xb, yb, x_full, y_full, x_full[:5], y_full[:5], keys)
    assert set(logs) >= {"norm_np", "norm_sgd", "norm_true", "norm_np_l1", "err_np", "cos_sgd", "sign_np",
                         "w_norm", "w_var", "act_l1", "act_l2", "delta_mse", "test_acc"}
    p = params
    for t in range(3):
        g_np = rule.estimate(p, (), xb[t], yb[t], keys[t])[0]
        g_sgd = jax.grad(models.mean_loss)(p, xb[t], yb[t])
        g_true = jax.grad(models.mean_loss)(p, x_full, y_full)
        flat = lambda g: np.concatenate([np.asarray(layer["w"]).ravel() for layer in g])  # noqa: E731
        new = [{"w": a["w"] - lr * g["w"], "b": a["b"] - lr * g["b"]} for a, g in zip(p, g_np)]
        expected = {
            "norm_np": np.linalg.norm(flat(g_np)), "norm_sgd": np.linalg.norm(flat(g_sgd)),
            "norm_true": np.linalg.norm(flat(g_true)), "norm_np_l2": np.linalg.norm(np.asarray(g_np[1]["w"])),
            "err_sgd": np.linalg.norm(flat(g_true) - flat(g_sgd)),
            "cos_np": flat(g_np) @ flat(g_true) / np.linalg.norm(flat(g_np)) / np.linalg.norm(flat(g_true)),
            "sign_sgd": np.mean(np.sign(flat(g_sgd)) == np.sign(flat(g_true))),
            "w_norm": np.linalg.norm(flat(new)), "w_var": np.var(flat(new)),
            "act_l1": np.mean(np.linalg.norm(np.maximum(np.asarray(xb[t]) @ np.asarray(p[0]["w"]).T + np.asarray(p[0]["b"]), 0), axis=1)),
            "delta_mse": float(models.mean_loss(new, xb[t], yb[t]) - models.mean_loss(p, xb[t], yb[t])),
            "test_acc": 100 * np.mean(np.argmax(models.forward(new, x_full[:5])[0], -1) == np.argmax(y_full[:5], -1)),
        }
        for name, value in expected.items():
            assert logs[name][t] == pytest.approx(float(value), rel=1e-4, abs=1e-7), (name, t)
        p = new
    for a, b in zip(jax.tree_util.tree_leaves(logs["params"]), jax.tree_util.tree_leaves(p)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("start, crash, expected", [(25, 26, (26, 30)), (5, None, (6, 10)), (5, 12, (6, 12)),
                                                     (8, None, (9, 10))])
def test_replay_window(start, crash, expected):
    assert replay_window(start, crash, 5, 10 if crash is None else 100) == expected


def test_crash_replay_reproduces_the_training_run(tmp_path, datasets_dir):
    # NP on digits 64-32-32-10, batch 10: at lr 0.17 test accuracy reaches ≈52 % and crashes to
    # ≈10 % at epoch 5; at lr 0.05 it learns slowly without a crash (the replay is forced at the
    # end). Snapshots every 2 epochs, 2 epochs replayed.
    runs = {}
    for lr in (0.05, 0.17):
        s = speclib.validate_spec({
            "paper": "nodepert", "rule": "np", "dataset": "digits", "seed": 0, "epochs": 6,
            "model": {"arch": "mlp", "hidden": [32, 32]}, "batch_size": 10, "scale": "smoke",
            "hparams": {"lr": lr, "sigma": 1e-4, "snapshot_every": 2, "replay_epochs": 2}})
        runs[speclib.run_id(s)] = s
    results = train_and_evaluate(tmp_path, runs, datasets_dir)
    for rid, spec in runs.items():
        final = read_json(results / "runs" / rid / "final.json")
        replay, table = final["replay"], pd.read_csv(results / "runs" / rid / "replay.csv")
        assert len(table) == replay["updates"] == 130 * (replay["last_epoch"] - replay["first_epoch"] + 1)
        assert np.all(np.diff(table["step"]) == 1) and table["epoch_frac"].iloc[-1] == replay["last_epoch"]
        # the replay retraces training exactly (the whole batch is replayed with the training step):
        # its test accuracy at each replayed epoch end is the recorded one, also through the crash
        assert replay["max_abs_test_acc_vs_training"] <= 1e-3, replay
        if final["crash"]["crash_class"] == "crash":
            assert replay["start_epoch"] < final["crash"]["crash_epoch"] <= replay["last_epoch"]
            crashed = replay
        else:
            assert replay["last_epoch"] == 6 and replay["start_epoch"] == 4
            stable = replay
    # the crash shows in the replay: NP's update norm and the one-step loss change spike
    assert crashed["max_norm_np"] > 2 * stable["max_norm_np"] and crashed["max_delta_mse"] > 10 * stable["max_delta_mse"]
