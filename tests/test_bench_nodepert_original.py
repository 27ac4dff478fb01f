"""benchmarks/bench_nodepert_original.py: its pieces (the IDX reader it takes from impls.common.datasets, data
stand-in, comparisons, float64 reference estimate), without a checkout of the original."""
import gzip
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks import bench_nodepert_original as bench  # noqa: E402


def write_idx(path: Path, array: np.ndarray, dtype_code: int = 0x08, gz: bool = True) -> Path:
    header = bytes([0, 0, dtype_code, array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    data = header + array.astype(np.uint8).tobytes()
    (gzip.open if gz else open)(path, "wb").write(data)
    return path


def test_read_idx_round_trip_gz_and_plain(tmp_path):
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    assert np.array_equal(bench.read_idx(write_idx(tmp_path / "x.gz", images)), images)
    labels = np.array([3, 1, 4], np.uint8)
    assert np.array_equal(bench.read_idx(write_idx(tmp_path / "y", labels, gz=False)), labels)


def test_read_idx_rejects_bad_files(tmp_path):
    bad = tmp_path / "bad"
    bad.write_bytes(b"\x01\x02\x08\x01" + (3).to_bytes(4, "big") + b"abc")
    with pytest.raises(ValueError, match="magic"):
        bench.read_idx(bad)
    with pytest.raises(ValueError, match="unsigned byte"):
        bench.read_idx(write_idx(tmp_path / "f.gz", np.zeros(3), dtype_code=0x0D))
    short = tmp_path / "short"
    short.write_bytes(b"\x00\x00\x08\x01" + (5).to_bytes(4, "big") + b"abc")
    with pytest.raises(ValueError, match="declares shape"):
        bench.read_idx(short)


def raw_dataset(n_train=400, n_test=200, seed=0):
    rng = np.random.default_rng(seed)
    return {"x_train": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
            "y_train": rng.integers(0, 10, n_train, dtype=np.uint8),
            "x_test": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
            "y_test": rng.integers(0, 10, n_test, dtype=np.uint8)}


def test_prepare_arrays_uses_full_train_statistics_and_first_images():
    raw = raw_dataset()
    arrays = bench.prepare_arrays(raw, 200, 100, 100)
    full = raw["x_train"].astype(np.float64)
    assert arrays["mean"] == pytest.approx(full.mean()) and arrays["std"] == pytest.approx(full.std())
    expected = ((raw["x_train"][:200].reshape(200, -1) - full.mean()) / full.std()).astype(np.float32)
    assert arrays["x_train"].dtype == np.float32 and np.allclose(arrays["x_train"], expected)
    assert np.array_equal(arrays["y_test"], raw["y_test"][:100])
    # the subset is not standardised on its own statistics: its mean is not exactly 0
    assert abs(float(arrays["x_train"].mean())) > 1e-4


@pytest.mark.parametrize("n_train,n_test,batch", [(250, 100, 50), (200, 150, 100), (300, 100, 200), (0, 100, 100),
                                                  (500, 100, 100)])
def test_prepare_arrays_rejects_partial_minibatches_and_sizes_out_of_range(n_train, n_test, batch):
    with pytest.raises(ValueError):
        bench.prepare_arrays(raw_dataset(), n_train, n_test, batch)


def test_original_data_serves_file_order_minibatches_one_hot():
    arrays = bench.prepare_arrays(raw_dataset(), 400, 200, 100)
    data = bench.OriginalData(arrays)
    batches = list(data.get_data_batches(100, data.trainsplit))
    assert len(batches) == 4 and data.num_pixels == 784 and data.num_classes == 10
    assert np.array_equal(np.concatenate([x for x, _ in batches]), arrays["x_train"])
    y = np.concatenate([y for _, y in batches])
    assert y.shape == (400, 10) and np.array_equal(y.argmax(1), arrays["y_train"]) and np.all(y.sum(1) == 1)
    assert len(list(data.get_data_batches(100, "test[:100%]"))) == 2
    with pytest.raises(ValueError, match="serves"):
        next(data.get_data_batches(100, "train[:10%]"))
    with pytest.raises(ValueError, match="whole minibatches"):
        next(data.get_data_batches(300, "train[:100%]"))


def test_agreement_identical_scaled_and_mismatched():
    rng = np.random.default_rng(1)
    ours = [{"w": rng.normal(size=(3, 4)), "b": rng.normal(size=3)}, {"w": rng.normal(size=(2, 3)), "b": np.zeros(2)}]
    same = bench.agreement(ours, [(g["w"], g["b"]) for g in ours])
    assert same["max_rel_diff"] == 0.0 and same["cosine"] == pytest.approx(1.0) and same["norm_ratio"] == pytest.approx(1.0)
    half = bench.agreement(ours, [(2 * g["w"], 2 * g["b"]) for g in ours])
    assert half["norm_ratio"] == pytest.approx(0.5) and half["cosine"] == pytest.approx(1.0)
    assert half["layers"][0]["w_max_rel_diff"] == pytest.approx(0.5)
    flipped = bench.agreement(ours, [(-g["w"], -g["b"]) for g in ours])
    assert flipped["cosine"] == pytest.approx(-1.0)
    with pytest.raises(ValueError, match="layers"):
        bench.agreement(ours, [(ours[0]["w"], ours[0]["b"])])
    with pytest.raises(ValueError, match="shape"):
        bench.agreement(ours[:1], [(ours[0]["w"].T, ours[0]["b"])])


def test_shared_noise_takes_the_one_row_and_rejects_per_example_noise():
    xi = np.tile(np.arange(5.0), (4, 1))
    assert np.array_equal(bench.shared_noise([xi])[0], np.arange(5.0))
    xi[2, 0] = 9.0
    with pytest.raises(ValueError, match="layer 0"):
        bench.shared_noise([xi])


def tiny_problem(seed=0, batch=8, sizes=(6, 5, 4, 3)):
    import jax
    from impls.nodepert import models
    params = models.init_mlp(jax.random.PRNGKey(seed), list(sizes))
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(batch, sizes[0])).astype(np.float32)
    y = bench.one_hot(rng.integers(0, sizes[-1], batch), sizes[-1])
    return params, x, y, rng


@pytest.mark.parametrize("batch_scalar", [False, True])
def test_float64_reference_matches_our_estimator_where_float32_is_exact_enough(batch_scalar):
    """With σ = 0.05 the loss differences are large against float32 rounding, so our float32 estimator
    and the float64 reference must agree closely; a sign, scale or presynaptic-activity error would not."""
    import jax
    from impls.nodepert import rules
    params, x, y, rng = tiny_problem()
    sigma = 0.05
    noise = [(sigma * rng.normal(size=p["b"].shape)).astype(np.float32) for p in params]
    estimate = jax.jit(rules.estimate_with_noise, static_argnames=("sigma", "batch_scalar"))  # one compile, not one per op
    ours, _ = estimate(params, x, y, noise, sigma=sigma, batch_scalar=batch_scalar)
    ref = bench.np_estimate_float64(params, x, y, noise, sigma, batch_scalar=batch_scalar)
    result = bench.agreement(ours, bench.as_pairs(ref))
    assert result["max_rel_diff"] < 1e-4 and result["cosine"] > 1 - 1e-8


def test_float64_reference_per_example_differs_from_batch_scalar():
    params, x, y, rng = tiny_problem(seed=3)
    sigma = 1e-3
    noise = [sigma * rng.normal(size=p["b"].shape) for p in params]
    per_example = bench.np_estimate_float64(params, x, y, noise, sigma)
    scalar = bench.np_estimate_float64(params, x, y, noise, sigma, batch_scalar=True)
    # the bias estimates are both multiples of ξ (same direction per layer), the weight estimates are not
    assert bench.agreement(per_example, bench.as_pairs(scalar))["cosine"] < 0.999


def test_summarise_drops_epoch_zero_and_flags_differences():
    ours = {("np", 0.01): {0: [10.0, 50.0, 60.0], 1: [11.0, 52.0, 62.0]}}
    original = {("np", 0.01): {0: [9.0, 51.0, 70.0], 1: [10.0, 53.0, 71.0]}}
    (s,) = bench.summarise(ours, original)
    assert [r["epoch"] for r in s["rows"]] == [1, 2]
    assert s["rows"][0]["verdict"] == "within 2 SE" and s["rows"][1]["verdict"].startswith("differs")
    assert s["epoch0"]["diff"] == pytest.approx(1.0) and s["epoch0"]["epoch"] == 0
    assert not s["all_within_2se"] and s["max_diff_over_se"] > 2


def test_settings_and_spec_of_our_side():
    assert bench.settings(["np", "sgd"], [1e-3, 1e-2]) == [("np", 1e-3), ("np", 1e-2), ("sgd", 1e-3), ("sgd", 1e-2)]
    spec = bench.our_spec("np", [500, 500], 100, 3, 1e-2)
    from impls.common.specs import validate_spec
    validate_spec(spec)  # a run spec our impl accepts (common schema, nodepert's options)
    assert spec["hparams"] == {"lr": 1e-2, "sigma": bench.SIGMA} and spec["model"]["hidden"] == [500, 500]
    assert "sigma" not in bench.our_spec("sgd", [10], 100, 1, 0.1)["hparams"]


def test_cli_rejects_bad_options_before_touching_the_original(tmp_path):
    with pytest.raises(SystemExit):
        bench.main(["--original", str(tmp_path), "--seeds", "0"])
    with pytest.raises(SystemExit):
        bench.main(["--original", str(tmp_path), "--epochs", "0"])
    with pytest.raises(SystemExit, match="lacks"):
        bench.main(["--original", str(tmp_path), "--data", str(tmp_path)])
