"""Nøkland's LR halving on plateau and training-error stop (impls.bpfree.schedules), papers/bpfree/README.md
"Source-paper settings"."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from impls.bpfree.schedules import first_stop, lr_factor, lr_halvings, threshold_stop_epochs
from impls.bpfree.train import stop_epochs
from impls.common.checkpointing import KILL_AFTER_EPOCH_ENV
from impls.common import specs as speclib
from impls.common.errors import SpecError
from impls.common.io import read_json
from tests.test_bpfree_train import impl, spec, write_batch

NAN = np.nan


def test_lr_is_halved_after_every_epoch_whose_training_error_did_not_fall():
    # columns are runs; row 0 is the untrained evaluation (never compared)
    history = np.array([[NAN, 90.0],
                        [10.0, 50.0],
                        [8.0, 50.0],     # run 0 falls; run 1 equal -> halve
                        [8.0, 40.0],     # run 0 equal -> halve; run 1 falls
                        [9.0, NAN],      # run 0 rises -> halve; run 1 non-finite -> halve
                        [5.0, 30.0],     # run 0 falls; run 1 vs NaN -> halve
                        [5.5, 20.0]])    # run 0 rises -> halve; run 1 falls
    expected_after = [[0, 0], [0, 0], [0, 1], [1, 1], [2, 2], [2, 3], [3, 3]]
    for t in range(len(history)):
        np.testing.assert_array_equal(lr_halvings(history[:t + 1], True), expected_after[t], err_msg=f"epoch {t}")
    np.testing.assert_allclose(lr_factor(history, True), [0.125, 0.125])
    np.testing.assert_array_equal(lr_halvings(history, False), [0, 0])
    assert lr_factor(history, True).dtype == np.float32


def test_training_error_threshold_stops_at_the_first_epoch_at_or_below_it():
    history = np.array([[0.0, NAN, 50.0],       # epoch 0 is never monitored
                        [1.0, NAN, 40.0],
                        [0.02, 0.005, 30.0],
                        [0.01, 0.0, 20.0],
                        [0.0, 0.0, 10.0]])
    np.testing.assert_array_equal(threshold_stop_epochs(history, 0.01), [3, 2, -1])
    np.testing.assert_array_equal(threshold_stop_epochs(history, None), [-1, -1, -1])
    np.testing.assert_array_equal(threshold_stop_epochs(history[:3], 0.01), [-1, 2, -1])


def test_the_earliest_stop_wins():
    np.testing.assert_array_equal(first_stop(np.array([-1, 4, 2, -1]), np.array([3, -1, 5, -1])), [3, 4, 2, -1])
    hp = {"early_stop_patience": 2, "early_stop_min_delta": 0.0, "stop_train_error": 1.0}
    history = np.array([[NAN, NAN], [5.0, 5.0], [0.5, 6.0], [0.4, 7.0], [0.3, 8.0]])
    np.testing.assert_array_equal(stop_epochs(history, hp), [2, 3])   # threshold; Keras patience 2


def test_options_are_validated():
    with pytest.raises(SpecError, match="hparams.stop_train_error"):
        speclib.validate_spec({**spec("bp", trackers=[]), "hparams": {"lr": 1e-3, "stop_train_error": -1}})
    with pytest.raises(SpecError, match="hparams.lr_halving"):
        speclib.validate_spec({**spec("bp", trackers=[]), "hparams": {"lr": 1e-3, "lr_halving": "yes"}})
    with pytest.raises(SpecError, match="reconstruction"):
        speclib.validate_spec({**spec("dfa", trackers=[], task="reconstruction"),
                               "hparams": {"lr": 1e-3, "lr_halving": True}})


def _nokland(lr, epochs=5):
    s = spec("dfa", lr=lr, epochs=epochs, trackers=[], output="sigmoid_bce", feedback_init="uniform",
             weight_init="zero_hidden", scaler="minmax")
    s["hparams"].update(optimizer="rmsprop", lr_halving=True, stop_train_error=6.0)
    return speclib.validate_spec(s)


def test_halving_and_stop_follow_the_recorded_history_and_survive_a_kill(tmp_path, datasets_dir):
    runs = {speclib.run_id(s): s for s in (_nokland(3e-3), _nokland(0.1))}
    ref = write_batch(tmp_path / "ref" / "results", runs)
    done = impl("train", ref, datasets_dir, checkpoint_minutes=0)
    assert done.returncode == 0, done.stderr
    batch = write_batch(tmp_path / "killed" / "results", runs)
    killed = impl("train", batch, datasets_dir, env={KILL_AFTER_EPOCH_ENV: "2"}, checkpoint_minutes=0)
    assert killed.returncode == -9, killed.stderr
    resumed = impl("train", batch, datasets_dir, checkpoint_minutes=0)
    assert resumed.returncode == 0 and "resumed from checkpoint at epoch 2" in resumed.stderr
    halved = 0
    for rid, s in runs.items():
        run_dir = tmp_path / "ref" / "results" / "bpfree" / "runs" / rid
        text = (run_dir / "metrics.csv").read_text()
        assert text == (tmp_path / "killed" / "results" / "bpfree" / "runs" / rid / "metrics.csv").read_text()
        metrics = pd.read_csv(run_dir / "metrics.csv")
        train = metrics[metrics["split"] == "train"]
        err = train[train["metric"] == "error"].sort_values("epoch")["value"].to_numpy()
        lr = train[train["metric"] == "lr"].set_index("epoch")["value"]
        last = len(err) - 1
        for epoch in range(1, last + 1):      # lr of epoch t = lr₀ · 2^(−halvings of epochs 1..t−1)
            expected = s["hparams"]["lr"] * lr_factor(err[:epoch, None], True)[0]
            np.testing.assert_allclose(lr[epoch], expected, rtol=1e-6)
        halved += int(lr[last] < s["hparams"]["lr"])
        record = read_json(run_dir / "train.json")
        stop = threshold_stop_epochs(err[:, None], 6.0)[0]
        assert record["early_stopped_epoch"] == (stop if stop >= 0 else None)
        assert last == (stop if stop >= 0 else s["epochs"])
    assert halved >= 1   # the large lr bounces at least once
