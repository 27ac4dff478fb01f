"""The pure parts of benchmarks/bench_arena.py: the run specs it times are the figure's own
(papers/arena/paper.yaml)."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks import bench_arena as bench  # noqa: E402


def test_conv_figure_times_the_conv_net_of_its_cpu_grid_and_only_its_rules():
    mlp, conv = bench.figure_specs("tab_arena_leaderboard"), bench.figure_specs("tab_arena_conv")
    assert mlp["backprop_jax"]["model"]["arch"] == "mlp" and mlp["backprop_jax"]["model"]["hidden"] == [256, 256]
    assert conv["np"]["model"] == {"arch": "conv", "channels": [32, 32, 32], "strides": [1, 2, 1], "activation": "relu"}
    assert {"backprop_jax", "np", "kp_equal_leak"} <= set(conv) and "backprop_torch" not in conv
    assert {spec["dataset"] for spec in conv.values()} == {"fashion_mnist"}
    base_lr = conv["np"]["hparams"]["lr"]
    spec = bench._spec(conv["np"], seed=2, lr=base_lr * 3, dataset="mine")
    assert (spec["seed"], spec["dataset"], spec["hparams"]["lr"]) == (2, "mine", base_lr * 3)
    assert spec["hparams"]["n_val"] == 5000 and spec["batch_size"] == 64
    assert conv["np"]["hparams"]["lr"] == base_lr   # the figure's spec is left as it was


def test_unknown_figure_and_rules_are_named(tmp_path, capsys):
    with pytest.raises(SystemExit, match="--figure fig_nope: not an arena figure"):
        bench.figure_specs("fig_nope")
    npz = tmp_path / "fashion_mnist.npz"
    npz.write_bytes(b"")
    with pytest.raises(SystemExit):
        bench.main(["--npz", str(npz), "--figure", "tab_arena_conv", "--rules", "backprop_torch"])
    assert "not rules of tab_arena_conv: ['backprop_torch']" in capsys.readouterr().err
