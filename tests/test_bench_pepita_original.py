"""The pure parts of benchmarks/bench_pepita_original.py (no checkout of the original needed)."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks import bench_pepita_original as bench  # noqa: E402
from impls.common.errors import SpecError  # noqa: E402


def test_original_lists_are_float64_columns_of_pixels_over_255_and_one_hot_targets():
    x = np.array([[[0, 255], [51, 102]], [[255, 0], [0, 1]]], dtype=np.uint8)
    xs, ts = bench.original_lists(x, np.array([3, 0]), n_classes=4)
    assert len(xs) == len(ts) == 2
    assert xs[0].shape == (4, 1) and xs[0].dtype == np.float64
    np.testing.assert_array_equal(xs[0][:, 0], [0.0, 1.0, 0.2, 0.4])
    np.testing.assert_array_equal(xs[1][:, 0], np.array([255, 0, 0, 1]) / 255.0)
    assert ts[0].shape == (4, 1)
    np.testing.assert_array_equal(ts[0][:, 0], [0, 0, 0, 1])
    np.testing.assert_array_equal(ts[1][:, 0], [1, 0, 0, 0])


@pytest.mark.parametrize("labels, message", [(np.array([0]), "2 images but 1 labels"),
                                             (np.array([0, 10]), "labels must lie in 0..9")])
def test_original_lists_refuse_mismatched_or_out_of_range_labels(labels, message):
    with pytest.raises(ValueError, match=message):
        bench.original_lists(np.zeros((2, 3, 3), np.uint8), labels)


def test_ours_set_parses_numbers_booleans_and_strings_and_refuses_a_missing_value():
    assert bench.parse_sets(["shuffle=compose", "F_scale=0.1", "erin_sign=true", "decay_epochs=[2, 4]"]) == {
        "shuffle": "compose", "F_scale": 0.1, "erin_sign": True, "decay_epochs": [2, 4]}
    with pytest.raises(ValueError, match="KEY=VALUE"):
        bench.parse_sets(["dtype"])


def test_curves_that_start_before_training_are_labelled_from_epoch_0():
    rows = bench.relabel_from_zero(bench.compare({0: [90.0, 95.0], 1: [91.0, 96.0]}, {0: [90.5, 95.5], 1: [90.5, 96.5]}))
    assert [r["epoch"] for r in rows] == [0, 1]
    assert rows[0]["diff"] == pytest.approx(0.0) and rows[1]["diff"] == pytest.approx(-0.5)


def test_a_folder_without_the_original_code_is_refused_by_name(tmp_path):
    with pytest.raises(SystemExit, match="has no functions.py/utils.py"):
        bench.load_original(tmp_path)


def test_missing_idx_files_are_named(tmp_path):
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(b"")
    with pytest.raises(SystemExit, match="lacks train-labels-idx1-ubyte.gz"):
        bench.main(["--original", str(tmp_path), "--data", str(tmp_path)])


def test_the_matched_ours_spec_carries_the_original_semantics_and_the_extra_hparams():
    args = bench.argparse.Namespace(lr=0.1, keep=0.9, epochs=5, batch_size=64, n_train=10000)
    spec = bench.ours_spec(args, 3, {"shuffle": "compose", "dtype": "float64"})
    assert spec["seed"] == 3 and spec["data"] == {"n_train": 10000} and spec["model"]["hidden"] == [1024]
    assert spec["hparams"] == {"lr": 0.1, "keep": 0.9, "double_mask": True, "carry_remainder": True,
                               "decay_epochs": [60, 90], "shuffle": "compose", "dtype": "float64"}
    with pytest.raises(SpecError, match="'hparams.shuffle'"):
        bench.ours_spec(args, 0, {"shuffle": "sometimes"})


def test_the_original_permutation_composed_over_epochs_is_what_ours_compose_shuffle_visits():
    """The original re-shuffles its current list with random_state=0 every epoch; ours' ``shuffle: compose``
    with that permutation visits the same order in every epoch."""
    from sklearn.utils import shuffle

    from impls.pepita.stacked import composed_order

    n = 50
    perm = bench.original_permutation(n)
    assert sorted(perm.tolist()) == list(range(n)) and perm.tolist() != list(range(n))
    current = list(range(n))
    for epoch in (1, 2, 3):
        current = shuffle(current, random_state=0)
        np.testing.assert_array_equal(composed_order(torch.from_numpy(perm), epoch).numpy(), current)
