"""Tests for impls.common.datasets: offline, fast, every output under tmp_path."""
from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path
from urllib.error import URLError

import numpy as np
import pytest

from impls.common import datasets as D

REPO = Path(__file__).resolve().parents[1]
SYSTEM_FASHION_DIR = Path(D.DEFAULT_FASHION_MNIST_DIR)


def _offline(*args, **kwargs):
    raise URLError("offline (test)")


@pytest.fixture()
def no_network(monkeypatch):
    """Make every torchvision download used here fail as it does without internet."""
    import torchvision.datasets.cifar as tv_cifar
    import torchvision.datasets.mnist as tv_mnist

    monkeypatch.setattr(tv_mnist, "download_and_extract_archive", _offline)
    monkeypatch.setattr(tv_cifar, "download_and_extract_archive", _offline)


def _write_idx(path: Path, array: np.ndarray, compress: bool) -> None:
    """Write a uint8 array in IDX format (magic 0x08 = ubyte, then big-endian dims)."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    data = header + array.astype(np.uint8).tobytes()
    if compress:
        path = path.with_name(path.name + ".gz")
        data = gzip.compress(data)
    path.write_bytes(data)


def _fake_idx_dir(directory: Path, compress: bool, n_train: int = 12, n_test: int = 5) -> dict:
    rng = np.random.default_rng(0)
    arrays = {"x_train": rng.integers(0, 256, (n_train, 28, 28)), "y_train": rng.integers(0, 10, n_train),
              "x_test": rng.integers(0, 256, (n_test, 28, 28)), "y_test": rng.integers(0, 10, n_test)}
    directory.mkdir(parents=True, exist_ok=True)
    for key, stem in D.IDX_STEMS.items():
        _write_idx(directory / stem, arrays[key], compress)
    return arrays


# --------------------------------------------------------------------------- digits


def test_digits_round_trip(tmp_path):
    out = tmp_path / "datasets" / "digits.npz"
    meta = D.prepare_dataset("digits", out, download=False)
    ds = D.load_dataset(out)

    assert ds.x_train.shape == (1300, 8, 8) and ds.x_test.shape == (497, 8, 8)
    assert ds.y_train.shape == (1300,) and ds.y_test.shape == (497,)
    assert ds.x_train.dtype == np.uint8 and ds.y_train.dtype == np.int64
    assert ds.x_train.max() == 16 and ds.x_train.min() == 0
    assert ds.num_classes == 10 and ds.image_shape == (8, 8)

    sidecar = json.loads(out.with_suffix(".json").read_text())
    assert sidecar == meta == ds.meta
    assert sidecar["source"] == "scikit-learn load_digits (embedded)"
    assert (sidecar["n_train"], sidecar["n_test"], sidecar["image_shape"]) == (1300, 497, [8, 8])
    assert sidecar["sha256"] == D._sha256(out.read_bytes())
    for key in D.ARRAY_KEYS:
        assert sidecar["arrays"][key]["sha256"] == D._array_sha256(getattr(ds, key))

    with np.load(out, allow_pickle=False) as data:
        assert sorted(data.files) == sorted(D.ARRAY_KEYS)

    from sklearn.datasets import load_digits
    bunch = load_digits()  # split is file order: train first, then test
    np.testing.assert_array_equal(ds.x_test, bunch.images[1300:].astype(np.uint8))
    np.testing.assert_array_equal(ds.y_train, bunch.target[:1300])


def test_prepare_is_deterministic(tmp_path):
    a = D.prepare_dataset("digits", tmp_path / "a.npz")
    b = D.prepare_dataset("digits", tmp_path / "b.npz")
    assert a["sha256"] == b["sha256"]


def test_failed_write_leaves_no_file(tmp_path, monkeypatch):
    def broken(path, data):
        raise OSError("disk full (test)")

    monkeypatch.setattr(D, "atomic_write_bytes", broken)
    with pytest.raises(OSError, match="disk full"):
        D.prepare_dataset("digits", tmp_path / "digits.npz")
    assert list(tmp_path.iterdir()) == []


def test_unknown_name_lists_allowed_names(tmp_path):
    with pytest.raises(ValueError) as info:
        D.prepare_dataset("imagenette", tmp_path / "x.npz")
    message = str(info.value)
    assert "imagenette" in message
    assert all(name in message for name in D.DATASET_NAMES)
    assert list(tmp_path.iterdir()) == []


def test_tampered_npz_is_refused(tmp_path):
    out = tmp_path / "digits.npz"
    D.prepare_dataset("digits", out)
    data = bytearray(out.read_bytes())
    data[len(data) // 2] ^= 0xFF
    out.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="checksum"):
        D.load_dataset(out)


def test_missing_sidecar_and_missing_file(tmp_path):
    out = tmp_path / "digits.npz"
    D.prepare_dataset("digits", out)
    out.with_suffix(".json").unlink()
    with pytest.raises(ValueError, match="sidecar"):
        D.load_dataset(out)
    with pytest.raises(D.DatasetUnavailable, match=r"snakemake --cores 1 .*nothere\.npz"):
        D.load_dataset(tmp_path / "nothere.npz")


# --------------------------------------------------------------------------- preprocessing


def test_standardize_global_uses_train_statistics():
    rng = np.random.default_rng(1)
    x_train = rng.integers(0, 256, (200, 6, 6), dtype=np.uint8)
    x_test = rng.integers(100, 200, (50, 6, 6), dtype=np.uint8)
    s_train, s_test = D.standardize(x_train, x_test, "global")

    assert s_train.dtype == np.float32 and s_train.shape == (200, 36) and s_test.shape == (50, 36)
    assert abs(s_train.mean()) < 1e-5 and abs(s_train.std() - 1) < 1e-5
    mean, std = x_train.astype(np.float64).mean(), x_train.astype(np.float64).std()
    np.testing.assert_allclose(s_test, ((x_test - mean) / std).reshape(50, -1), rtol=1e-5, atol=1e-5)


def test_standardize_per_channel_and_none():
    rng = np.random.default_rng(2)
    x_train = rng.integers(0, 256, (64, 4, 4, 3), dtype=np.uint8)
    x_train[..., 2] //= 4  # channels with different statistics
    s_train, s_test = D.standardize(x_train, x_train[:8], "per_channel")
    assert s_train.shape == (64, 4, 4, 3) and s_train.dtype == np.float32
    np.testing.assert_allclose(s_train.mean(axis=(0, 1, 2)), 0, atol=1e-5)
    np.testing.assert_allclose(s_train.std(axis=(0, 1, 2)), 1, atol=1e-5)
    np.testing.assert_array_equal(s_test, s_train[:8])

    n_train, _ = D.standardize(x_train, x_train, "none")
    assert n_train.dtype == np.float32 and n_train.shape == x_train.shape
    with pytest.raises(ValueError, match="global"):
        D.standardize(x_train, x_train, "zca")


def test_take_subset(tmp_path):
    out = tmp_path / "digits.npz"
    D.prepare_dataset("digits", out)
    ds = D.load_dataset(out)
    sub = D.take_subset(ds, n_train=100, n_test=20)
    assert sub.x_train.shape == (100, 8, 8) and sub.y_test.shape == (20,)
    np.testing.assert_array_equal(sub.x_train, ds.x_train[:100])
    assert (sub.meta["n_train"], sub.meta["n_test"]) == (100, 20)
    assert D.take_subset(ds).x_test.shape == ds.x_test.shape
    with pytest.raises(ValueError, match="n_train"):
        D.take_subset(ds, n_train=5000)


def test_stratified_subset_keeps_class_shares_and_is_seeded(tmp_path):
    out = tmp_path / "digits.npz"
    D.prepare_dataset("digits", out)
    ds = D.load_dataset(out)
    n = int(0.3 * len(ds.y_train))
    sub = D.take_subset(ds, n_train=n, how="stratified", seed=0)
    assert len(sub.y_train) == n and sub.meta["subset"] == "stratified" and sub.meta["subset_seed"] == 0
    full = np.bincount(ds.y_train, minlength=10) * n / len(ds.y_train)
    assert np.abs(np.bincount(sub.y_train, minlength=10) - full).max() < 1.0  # each class within rounding
    again = D.take_subset(ds, n_train=n, how="stratified", seed=0)
    other = D.take_subset(ds, n_train=n, how="stratified", seed=1)
    np.testing.assert_array_equal(sub.x_train, again.x_train)
    assert not np.array_equal(sub.x_train, other.x_train)
    # every picked example is a real training example with its own label
    idx = D.stratified_indices(ds.y_train, n, 0)
    assert len(set(idx)) == n
    np.testing.assert_array_equal(sub.y_train, ds.y_train[idx])
    spec = {"data": {"n_train": n, "subset": "stratified"}}
    np.testing.assert_array_equal(D.subset_for_spec(ds, spec).x_train, sub.x_train)
    with pytest.raises(ValueError, match="subset 'random'"):
        D.take_subset(ds, n_train=n, how="random")


# --------------------------------------------------------------------------- fashion_mnist


@pytest.mark.parametrize("compress", [True, False], ids=["gz", "uncompressed"])
def test_fashion_mnist_from_idx_dir(tmp_path, compress):
    expected = _fake_idx_dir(tmp_path / "idx", compress)
    out = tmp_path / "fm.npz"
    meta = D.prepare_dataset("fashion_mnist", out, fashion_mnist_dir=tmp_path / "idx", download=False)
    ds = D.load_dataset(out)
    assert meta["source"] == f"IDX files in {tmp_path / 'idx'}"
    for key in D.ARRAY_KEYS:
        np.testing.assert_array_equal(getattr(ds, key), expected[key])


def test_fashion_mnist_from_system_package(tmp_path):
    if not SYSTEM_FASHION_DIR.exists():
        pytest.skip(f"{SYSTEM_FASHION_DIR} does not exist (sudo apt-get install dataset-fashion-mnist)")
    out = tmp_path / "fashion_mnist.npz"
    meta = D.prepare_dataset("fashion_mnist", out, download_dir=tmp_path / "dl", download=False)
    ds = D.load_dataset(out)
    assert ds.x_train.shape == (60000, 28, 28) and ds.x_test.shape == (10000, 28, 28)
    assert ds.x_train.dtype == np.uint8 and ds.y_train.dtype == np.int64
    assert meta["num_classes"] == 10 and meta["source"] == f"IDX files in {SYSTEM_FASHION_DIR}"
    assert np.bincount(ds.y_train).tolist() == [6000] * 10  # Fashion-MNIST is balanced
    assert not (tmp_path / "dl").exists()


@pytest.mark.parametrize("download", [False, True], ids=["download-disabled", "offline"])
def test_fashion_mnist_unavailable(tmp_path, monkeypatch, download):
    import torchvision.datasets

    monkeypatch.setattr(torchvision.datasets.FashionMNIST, "download", _offline)
    (tmp_path / "empty").mkdir()
    out = tmp_path / "out" / "fashion_mnist.npz"
    with pytest.raises(D.DatasetUnavailable) as info:
        D.prepare_dataset("fashion_mnist", out, fashion_mnist_dir=tmp_path / "empty",
                          download_dir=tmp_path / "dl", download=download)
    message = str(info.value)
    assert "sudo apt-get install dataset-fashion-mnist" in message
    assert "snakemake --cores 1 resources/datasets/fashion_mnist.npz" in message
    assert "\n" not in message
    assert not (tmp_path / "out").exists()


def test_fashion_mnist_partial_idx_dir_is_unavailable(tmp_path):
    _fake_idx_dir(tmp_path / "idx", compress=True)
    (tmp_path / "idx" / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(D.DatasetUnavailable, match="apt-get install dataset-fashion-mnist"):
        D.prepare_dataset("fashion_mnist", tmp_path / "fm.npz", fashion_mnist_dir=tmp_path / "idx",
                          download_dir=tmp_path / "dl", download=False)


# --------------------------------------------------------------------------- torchvision datasets


@pytest.mark.parametrize("name", ["mnist", "kmnist", "cifar10", "cifar100"])
@pytest.mark.parametrize("download", [True, False], ids=["offline", "download-disabled"])
def test_torchvision_datasets_offline(tmp_path, no_network, name, download):
    out = tmp_path / "out" / f"{name}.npz"
    with pytest.raises(D.DatasetUnavailable) as info:
        D.prepare_dataset(name, out, download_dir=tmp_path / "dl", download=download)
    message = str(info.value)
    assert f"snakemake --cores 1 resources/datasets/{name}.npz" in message
    assert "\n" not in message
    assert not (tmp_path / "out").exists()


def test_torchvision_arrays_are_converted(tmp_path, monkeypatch):
    """CIFAR classes hold numpy HWC images and a label list, MNIST classes torch tensors."""
    import torch
    import torchvision.datasets

    class FakeCIFAR10:
        def __init__(self, root, train, download):
            n = 6 if train else 3
            self.data = np.full((n, 32, 32, 3), 7, dtype=np.uint8)
            self.targets = [i % 10 for i in range(n)]

    class FakeMNIST:
        def __init__(self, root, train, download):
            n = 5 if train else 2
            self.data = torch.zeros((n, 28, 28), dtype=torch.uint8)
            self.targets = torch.arange(n)

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", FakeCIFAR10)
    monkeypatch.setattr(torchvision.datasets, "MNIST", FakeMNIST)
    D.prepare_dataset("cifar10", tmp_path / "cifar10.npz", download_dir=tmp_path / "dl")
    D.prepare_dataset("mnist", tmp_path / "mnist.npz", download_dir=tmp_path / "dl")
    cifar, mnist = D.load_dataset(tmp_path / "cifar10.npz"), D.load_dataset(tmp_path / "mnist.npz")
    assert cifar.x_train.shape == (6, 32, 32, 3) and cifar.x_test.shape == (3, 32, 32, 3)
    assert cifar.y_train.dtype == np.int64 and cifar.meta["source"] == "torchvision download (md5-checked)"
    assert mnist.x_train.shape == (5, 28, 28) and mnist.x_train.dtype == np.uint8
    assert mnist.y_test.tolist() == [0, 1] and mnist.y_test.dtype == np.int64


# --------------------------------------------------------------------------- CLI


def test_cli_prepare_digits(tmp_path, capsys):
    out = tmp_path / "digits.npz"
    assert D.main(["prepare", "digits", str(out)]) == 0
    line = capsys.readouterr().out
    assert line.count("\n") == 1 and str(out) in line and "1300 train" in line
    assert out.exists() and out.with_suffix(".json").exists()


def test_cli_unavailable_exits_2_with_one_line(tmp_path):
    (tmp_path / "empty").mkdir()
    out = tmp_path / "fashion_mnist.npz"
    proc = subprocess.run(
        [sys.executable, "-m", "impls.common.datasets", "prepare", "fashion_mnist", str(out),
         "--fashion-mnist-dir", str(tmp_path / "empty"), "--download-dir", str(tmp_path / "dl"),
         "--no-download"],
        cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert "apt-get install dataset-fashion-mnist" in proc.stderr
    assert not out.exists()
