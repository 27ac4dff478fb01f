"""Local losses on the test set (``local_loss`` is also logged on test batches, except for DFA)."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from impls.bpfree import models
from impls.bpfree.rules import local_losses, local_losses_per_example
from impls.bpfree.compiled import CompiledBatch, load_arrays
from tests.test_bpfree_train import spec

jax.config.update("jax_default_matmul_precision", "highest")


@pytest.mark.parametrize("rule", ["drtp", "cce", "mse"])
def test_per_example_local_losses_average_to_the_tracker(rule):
    cfg = models.Config(5, (6, 4), 3, scaler="minmax")
    params, state = models.init(jax.random.PRNGKey(0), cfg)
    x = jax.random.normal(jax.random.PRNGKey(1), (7, 5))
    y = jax.nn.one_hot(jnp.arange(7) % 3, 3)
    z, hs, _ = models.apply(params, state, x, None, cfg, train=False)
    B = [jax.random.normal(jax.random.PRNGKey(2 + i), (h.shape[1], 3)) for i, h in enumerate(hs)]
    per = local_losses_per_example(rule, cfg, hs, y, B)
    assert [v.shape for v in per] == [(7,), (7,)]
    for v, mean in zip(per, local_losses(rule, cfg, hs, z, y, B)):
        np.testing.assert_allclose(v.mean(), mean, rtol=1e-6)
    with pytest.raises(ValueError, match="not 'dfa'"):
        local_losses_per_example("dfa", cfg, hs, y, B)


def test_test_set_local_losses_use_eval_mode_and_the_whole_test_set(datasets_dir):
    s = spec("cce", trackers=["local_loss"], batchnorm=True, dropout=0.3, hidden=[16, 12])
    program = CompiledBatch(s, load_arrays(s, datasets_dir))
    assert program.test_tracker_names() == ["test_localloss_l1", "test_localloss_l2"]
    assert {"test_localloss_l1", "train_localloss_l2"} <= set(program.metric_names())
    state, keys = program.init(np.array([0, 1]), np.array([1e-3, 1e-2]))
    state, _ = program.train_epoch(state, keys, 0)
    got = program.evaluate(state)
    arrays = load_arrays(s, datasets_dir)
    x, y = jnp.asarray(arrays["x_test"]), jax.nn.one_hot(arrays["y_test"], arrays["n_classes"])
    assert len(x) == 497   # digits: the whole test set, padded to one chunk of 1000 inside evaluate (mask)
    for run in range(2):
        pick = lambda tree: jax.tree_util.tree_map(lambda a: a[run], tree)  # noqa: E731
        z, hs, _ = models.apply(pick(state["params"]), pick(state["model"]), x, None, program.cfg, train=False)
        expected = local_losses("cce", program.cfg, hs, z, y, pick(state["rule"]).B)
        for layer, value in enumerate(expected, start=1):
            np.testing.assert_allclose(got[f"test_localloss_l{layer}"][run], value, rtol=1e-5)


def test_dfa_records_no_test_local_loss(datasets_dir):
    s = spec("dfa", trackers="all")
    program = CompiledBatch(s, load_arrays(s, datasets_dir))
    assert program.test_tracker_names() == []
    assert "train_localloss_l1" in program.metric_names()
    assert not any(name.startswith("test_localloss") for name in program.metric_names())
