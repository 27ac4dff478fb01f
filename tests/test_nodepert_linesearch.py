"""The line-search analysis (papers/nodepert/README.md, "Figure protocols") against a direct computation, and the
warm-up's stop-at-threshold in the train loop."""
import json

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

from impls.common import specs as speclib
from impls.common.io import read_json
from impls.nodepert import models
from impls.nodepert.linesearch import line_search, params_from_npz, summarise
from impls.nodepert.rules import make_rule
from tests.test_nodepert_train import make_specs, train_and_evaluate


def test_line_search_matches_a_direct_loop():
    key = jax.random.PRNGKey(0)
    params = models.init_mlp(key, [6, 5, 3])
    x = jax.random.normal(jax.random.fold_in(key, 1), (3, 4, 6))          # 3 minibatches of 4
    y = jax.nn.one_hot(jax.random.randint(jax.random.fold_in(key, 2), (3, 4), 0, 3), 3)
    etas = np.array([1e-3, 1e-1, 1.0, 10.0], np.float32)
    noise_key = jax.random.PRNGKey(5)
    got = line_search(params, x, y, 1e-2, etas, noise_key)
    for rule in ("np", "sgd"):
        est = make_rule(rule, {"sigma": 1e-2})
        expected = np.zeros(len(etas))
        for b in range(3):
            g = est.estimate(params, (), x[b], y[b], jax.random.fold_in(noise_key, jnp.uint32(b)))[0]
            base = float(models.mean_loss(params, x[b], y[b]))
            for k, eta in enumerate(etas):
                stepped = jax.tree_util.tree_map(lambda p, d: p - eta * d, params, g)
                expected[k] += (float(models.mean_loss(stepped, x[b], y[b])) - base) / 3
        # float32 losses near 0.3 are rounded to ~2e-8; ΔL is a difference of two of them
        np.testing.assert_allclose(got[rule], expected, rtol=1e-4, atol=1e-7)
    # a small exact-gradient step lowers the loss: ΔL ≈ −η |g|² < 0
    assert got["sgd"][0] < 0


def test_summary_finds_minimum_and_zero_crossing():
    etas = np.array([0.1, 0.2, 0.4, 0.8, 1.6])
    out = summarise(etas, np.array([-1e-4, -3e-4, -2e-4, 1e-4, 5e-3]))
    assert out == {"min_delta_loss": -3e-4, "argmin_step": 0.2, "positive_from_step": 0.8}
    assert summarise(etas, -np.ones(5))["positive_from_step"] is None


def test_warmup_stops_at_the_threshold_and_evaluate_writes_the_line_search(tmp_path, datasets_dir):
    runs = make_specs("sgd", lrs=(0.1,), epochs=60)
    (rid, spec), = runs.items()
    spec["hparams"].update(stop_at_test_acc=50.0, linesearch_steps=6, linesearch_batches=2)
    spec = speclib.validate_spec(spec)
    runs = {speclib.run_id(spec): spec}
    results = train_and_evaluate(tmp_path, runs, datasets_dir)
    (rid,) = runs
    run = results / "runs" / rid
    metrics = pd.read_csv(run / "metrics.csv").query("split == 'test' and metric == 'acc'").sort_values("epoch")
    stop = int(metrics["epoch"].iloc[-1])
    assert metrics["value"].iloc[-1] > 50.0 and (metrics["value"].iloc[:-1] <= 50.0).all() and stop < 60
    assert read_json(run / "train.json")["stopped_epoch"] == stop
    table = pd.read_csv(run / "linesearch.csv")
    assert sorted(table["rule"].unique()) == ["np", "sgd"] and len(table) == 12
    final = read_json(run / "final.json")
    assert final["linesearch"]["batches"] == 2
    assert final["linesearch"]["sgd"]["min_delta_loss"] == pytest.approx(table.query("rule == 'sgd'")["delta_loss"].min())
    params = params_from_npz(run / "params.npz", [64, 32, 32, 10])
    assert [p["w"].shape for p in params] == [(32, 64), (32, 32), (10, 32)]
    assert json.loads((run / "spec.json").read_text())["hparams"]["stop_at_test_acc"] == 50.0
