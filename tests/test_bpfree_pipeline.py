"""The figure-era input pipeline options of bpfree: tf.data-style shuffle buffer and random brightness."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from impls.bpfree import pipeline
from impls.bpfree.compiled import CompiledBatch, load_arrays
from impls.common import specs as speclib
from impls.common.errors import SpecError


@pytest.mark.parametrize("n, buffer", [(50, 1), (50, 7), (50, 50), (50, 500), (1, 4)])
def test_buffer_shuffle_emits_a_permutation_within_reach_of_the_buffer(n, buffer):
    order = np.asarray(pipeline.buffer_shuffle_order(jax.random.PRNGKey(3), n, buffer))
    assert sorted(order) == list(range(n))
    position = np.argsort(order)
    # element i enters the buffer when i − buffer + 1 elements have left, so it cannot leave before that
    assert (position >= np.arange(n) - min(buffer, n) + 1).all()
    if buffer == 1:
        assert (order == np.arange(n)).all()  # a buffer of one is no shuffle


def test_a_small_buffer_keeps_the_file_order_roughly_and_a_full_one_does_not():
    n = 2000
    small = [np.asarray(pipeline.buffer_shuffle_order(jax.random.PRNGKey(s), n, 16)) for s in range(3)]
    full = np.asarray(pipeline.buffer_shuffle_order(jax.random.PRNGKey(0), n, n))
    pos = lambda o: np.argsort(o)  # noqa: E731
    assert all(np.corrcoef(pos(o), np.arange(n))[0, 1] > 0.99 for o in small)
    assert abs(np.corrcoef(pos(full), np.arange(n))[0, 1]) < 0.1
    assert not (small[0] == small[1]).all()  # a new key (epoch) reshuffles


def test_random_brightness_shifts_each_example_once_and_clips_to_the_range():
    x = jnp.linspace(-1.0, 1.0, 5 * 64).reshape(5, 64) * 0.5  # inside [-0.5, 0.5]: no clipping at delta 0.2
    out = np.asarray(pipeline.random_brightness(jax.random.PRNGKey(0), x, 0.2, (-1.0, 1.0)))
    shift = out - np.asarray(x)
    np.testing.assert_allclose(shift, shift[:, :1].repeat(64, 1), atol=1e-6)   # one δ per example
    assert (np.abs(shift[:, 0]) <= 0.2).all() and np.ptp(shift[:, 0]) > 0
    edge = np.asarray(pipeline.random_brightness(jax.random.PRNGKey(1), jnp.ones((100, 3)), 0.2, (0.0, 1.0)))
    assert edge.max() <= 1.0 and edge.min() >= 0.8 and (edge == 1.0).any()


def spec(**hparams):
    return speclib.validate_spec({
        "paper": "bpfree", "rule": "dfa", "dataset": "digits", "seed": 0, "epochs": 1, "batch_size": 32,
        "model": {"arch": "mlp", "hidden": [16]}, "hparams": {"lr": 1e-3, **hparams}, "scale": "smoke"})


def test_the_options_change_training_and_stay_deterministic(datasets_dir):
    finals = {}
    for name, hp in {"default": {}, "buffer": {"shuffle_buffer": 128}, "bright": {"brightness": 0.2}}.items():
        s = spec(**hp)
        runs = []
        for _ in range(2):
            program = CompiledBatch(s, load_arrays(s, datasets_dir))
            state, keys = program.init(np.array([0]), np.array([1e-3]))
            state, _ = program.train_epoch(state, keys, 0)
            runs.append(np.asarray(state["params"]["out"]["w"]))
        np.testing.assert_array_equal(runs[0], runs[1])
        finals[name] = runs[0]
    assert not np.allclose(finals["default"], finals["buffer"])
    assert not np.allclose(finals["default"], finals["bright"])


@pytest.mark.parametrize("hparams, message", [({"shuffle_buffer": 0}, "'hparams.shuffle_buffer'"),
                                              ({"shuffle_buffer": True}, "'hparams.shuffle_buffer'"),
                                              ({"brightness": -0.1}, "'hparams.brightness'")])
def test_bad_pipeline_options_name_the_key(hparams, message):
    with pytest.raises(SpecError, match=message):
        spec(**hparams)


def test_brightness_is_refused_without_a_bounded_scaler():
    with pytest.raises(SpecError, match="zscore"):
        speclib.validate_spec({**spec(), "model": {"arch": "mlp", "hidden": [16], "scaler": "zscore"},
                               "hparams": {"lr": 1e-3, "brightness": 0.2}})


def test_aligned_init_starts_with_weight_alignment_one(datasets_dir):
    s = speclib.validate_spec({**spec(), "model": {"arch": "mlp", "hidden": [16, 12, 8], "weight_init": "aligned"},
                               "hparams": {"lr": 1e-3, "trackers": ["weight_alignment"]}})
    program = CompiledBatch(s, load_arrays(s, datasets_dir))
    state, _ = program.init(np.array([0, 1]), np.array([1e-3, 1e-3]))
    B = state["rule"].B
    np.testing.assert_allclose(state["params"]["hidden"][1]["w"], B[0] @ np.swapaxes(B[1], 1, 2), rtol=1e-6)
    np.testing.assert_allclose(state["params"]["out"]["w"], B[2])
    run0 = jax.tree_util.tree_map(lambda a: a[0], state)
    out = program._step(run0["params"], run0["opt"], run0["rule"], run0["model"], jax.random.PRNGKey(0),
                        program.x_train[:32], program.y_train[:32])[-1]
    for name in ("walign_l2", "walign_l3", "walign_out"):
        np.testing.assert_allclose(out[name], 1.0, atol=1e-5)
    with pytest.raises(SpecError, match="'model.weight_init' = 'aligned'"):
        speclib.validate_spec({**s, "rule": "bp", "hparams": {"lr": 1e-3}})


# --------------------------------------------------------------------------- early stopping (stage 1)

def test_early_stop_epochs_follows_keras_early_stopping():
    from impls.bpfree.train import early_stop_epochs

    nan = np.nan
    err = np.array([[nan, nan, nan],       # epoch 0: not monitored
                    [10.0, 10.0, 10.0],
                    [9.0, 9.8, 9.0],
                    [9.0, 9.7, 9.0],
                    [9.0, 9.6, 8.0],
                    [8.0, 9.5, 7.0]])
    # min_delta 0: column 0 improves at 1, 2, then waits 1, 2 -> stops at 4 with patience 2;
    # column 2 waits once at 3, improves at 4 (the wait resets) and goes on
    np.testing.assert_array_equal(early_stop_epochs(err, 2, 0.0), [4, -1, -1])
    # min_delta 0.5: column 1's 0.1-point steps are no improvement after epoch 1 -> stops at 3
    np.testing.assert_array_equal(early_stop_epochs(err, 2, 0.5), [4, 3, -1])
    np.testing.assert_array_equal(early_stop_epochs(err, 1, 0.0), [3, -1, 3])
    np.testing.assert_array_equal(early_stop_epochs(err, None, 0.0), [-1, -1, -1])
    np.testing.assert_array_equal(early_stop_epochs(err[:2], 1, 0.0), [-1, -1, -1])  # one epoch: nothing to wait for


def test_a_stopped_run_freezes_while_its_batch_trains_on(tmp_path, datasets_dir):
    """Run B (lr 1e-9: no progress) stops at epoch 2 with patience 1; run A trains on. B's params and
    metrics end at epoch 2 and equal those of a 2-epoch job of the same batch."""
    from tests.test_bpfree_train import impl, write_batch

    def batch_specs(epochs, **hp):
        return [speclib.validate_spec({**spec(), "epochs": epochs, "hparams": {"lr": lr, **hp}})
                for lr in (1e-2, 1e-9)]

    long_specs = batch_specs(4, early_stop_patience=1, early_stop_min_delta=0.5)
    short_specs = batch_specs(2)
    out = {}
    for name, specs in (("long", long_specs), ("short", short_specs)):
        results = tmp_path / name / "results"
        batch = write_batch(results, {speclib.run_id(s): s for s in specs})
        for command in ("train", "evaluate"):
            done = impl(command, batch, datasets_dir)
            assert done.returncode == 0, done.stderr[-2000:]
        out[name] = [results / "bpfree" / "runs" / speclib.run_id(s) for s in specs]

    from impls.common.io import load_npz, read_json
    trained_b, short_b = out["long"][1], out["short"][1]
    record = read_json(trained_b / "train.json")
    assert record["early_stopped_epoch"] == 2 and record["epochs_completed"] == 2
    assert read_json(trained_b / "final.json")["status"] == "ok"
    import pandas as pd
    assert pd.read_csv(trained_b / "metrics.csv")["epoch"].max() == 2
    long_params, short_params = load_npz(trained_b / "params.npz"), load_npz(short_b / "params.npz")
    for key in short_params:
        np.testing.assert_array_equal(long_params[key], short_params[key])
    record_a = read_json(out["long"][0] / "train.json")
    assert record_a["early_stopped_epoch"] is None or record_a["early_stopped_epoch"] > 2
    assert pd.read_csv(out["long"][0] / "metrics.csv")["epoch"].max() == record_a["epochs_completed"] > 2


def test_early_stopping_options_are_validated():
    with pytest.raises(SpecError, match="'hparams.early_stop_patience'"):
        spec(early_stop_patience=0)
    with pytest.raises(SpecError, match="'hparams.early_stop_min_delta'"):
        spec(early_stop_patience=2, early_stop_min_delta=-1)
