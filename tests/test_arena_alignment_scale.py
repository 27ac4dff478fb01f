"""benchmarks/arena_alignment_scale.py: WM's fixed point and AA's stability limit against closed forms."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks import arena_alignment_scale as scale  # noqa: E402
from impls.two_routes.primitives import DENSE, Geometry  # noqa: E402


def _dense_case(n=4096, d_in=12, d_out=5, seed=0):
    rng = np.random.default_rng(seed)
    x = (rng.normal(size=(n, d_in)) @ rng.normal(size=(d_in, d_in)) / np.sqrt(d_in)).astype(np.float32)
    w = rng.normal(size=(d_in, d_out)).astype(np.float32)
    return x, w, x.T @ x / n


def test_wm_fixed_point_of_a_dense_layer_is_beta_over_two_alpha_sigma_w():
    x, w, sigma = _dense_case()
    expected = 3.0 / (2 * 1.5) * np.linalg.norm(sigma @ w) / np.linalg.norm(w)
    assert scale.wm_fixed_point_ratio(x, w, DENSE, alpha=1.5, beta=3.0) == pytest.approx(expected, rel=1e-4)


def test_wm_fixed_point_is_half_w_under_white_inputs_at_the_default_coefficients():
    x = np.random.default_rng(1).normal(size=(20000, 10)).astype(np.float32)
    w = np.random.default_rng(2).normal(size=(10, 4)).astype(np.float32)
    assert scale.wm_fixed_point_ratio(x, w, DENSE, alpha=1e-3, beta=1e-3) == pytest.approx(0.5, rel=0.05)


def test_aa_stable_rate_of_a_dense_layer_is_one_over_alpha_lambda_max_of_sigma():
    x, w, sigma = _dense_case(seed=3)
    expected = 1.0 / (1e-3 * np.linalg.eigvalsh(sigma).max())
    assert scale.max_stable_lr(x, w, DENSE, "sparse", 1e-3) == pytest.approx(expected, rel=1e-3)


def test_ia_stable_rate_of_a_dense_layer_is_one_over_beta_lambda_max_of_w_sigma_wt():
    x, w, sigma = _dense_case(seed=6)
    expected = 1.0 / (1e-3 * np.linalg.eigvalsh(w.T @ sigma @ w).max())   # K_f = Wᵀ: W Σ Wᵀ = K_fᵀ Σ K_f
    assert scale.max_stable_lr(x, w, DENSE, "null", 1e-3) == pytest.approx(expected, rel=1e-3)


def test_on_a_conv_layer_both_scale_with_the_number_of_output_positions():
    rng = np.random.default_rng(4)
    k = rng.normal(size=(3, 3, 2, 4)).astype(np.float32)
    geo = Geometry("conv", 1, "SAME")
    small, large = (rng.normal(size=(256, s, s, 2)).astype(np.float32) for s in (12, 24))
    wm_small, wm_large = (scale.wm_fixed_point_ratio(x, k, geo, 1e-3, 1e-3) for x in (small, large))
    aa_small, aa_large = (scale.max_stable_lr(x, k, geo, "sparse", 1e-3) for x in (small, large))
    assert wm_large / wm_small == pytest.approx(4.0, rel=0.1)   # 4× the positions: 576 against 144
    assert aa_small / aa_large == pytest.approx(4.0, rel=0.1)


def test_a_missing_dataset_file_is_named(tmp_path, capsys):
    with pytest.raises(SystemExit):
        scale.main(["--npz", str(tmp_path / "fashion_mnist.npz")])
    assert "fashion_mnist.npz: no such file" in capsys.readouterr().err


def _digits_like(n=256, seed=5):
    from impls.arena.data import arena_arrays

    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 8, 8, 1)).astype(np.float32)
    y = rng.integers(0, 10, n)
    return arena_arrays(x, y, x[:32], y[:32], n_val=32, n_classes=10)


def test_trace_trains_the_conv_contender_and_stops_where_the_loss_turns_non_finite():
    from benchmarks.bench_arena import figure_specs

    spec = {**figure_specs("tab_arena_conv", "smoke")["wm"], "dataset": "synthetic"}
    calm = scale.trace("wm", spec, _digits_like(), seed=0, lr=1e-3, steps=4, every=2)
    assert [r["step"] for r in calm] == [0, 2] and all(np.isfinite(r["loss"]) for r in calm)
    assert len(calm[0]["norm_K"]) == len(calm[0]["norm_B"]) == 4   # three convolutions and the readout
    wild = scale.trace("wm", spec, _digits_like(), seed=0, lr=1e4, steps=7, every=100)
    assert not np.isfinite(wild[-1]["loss"]) and wild[-1]["step"] < 6
