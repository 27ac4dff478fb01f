"""The TFDS path of the dataset rule (data.loader: tfds) against the default path, on local data only:
the session's TFDS data dir (conftest ``tfds_dir``: digits, and real Fashion-MNIST built offline from
Debian's IDX files) and IDX files written here. Skipped, with the reason, where the optional TFDS extra
is not installed; `make test` installs it."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from impls.common import datasets as D
from impls.common.errors import DatasetUnavailable
from tests.conftest import TFDS_FASHION_EXAMPLES, TFDS_MISSING
from tests.test_datasets import _fake_idx_dir

pytest.importorskip("tensorflow_datasets", reason=TFDS_MISSING)
from impls.common import tfds_data  # noqa: E402  (after the skip: it needs the extra to be useful)

REPO = Path(__file__).resolve().parents[1]


def test_fashion_mnist_through_tfds_equals_the_idx_arrays(tfds_dir):
    """Same images, labels, dtypes and order as the default reader of the same IDX files, so the same
    normalisation and the same shuffles: TFDS keeps the examples in hash order on disk, and the reader
    puts them back in file order."""
    n = TFDS_FASHION_EXAMPLES
    assert not np.array_equal(tfds_data.file_order(n, "train"), np.arange(n))   # the order on disk is not the files'
    arrays, source = tfds_data.load_arrays("fashion_mnist", tfds_dir)
    reference = D._canonical({k: v[:n] for k, v in D._read_idx_dir(D.find_idx_files(Path(D.DEFAULT_FASHION_MNIST_DIR))).items()})
    for key in D.ARRAY_KEYS:
        assert arrays[key].dtype == reference[key].dtype and arrays[key].shape == reference[key].shape, key
        np.testing.assert_array_equal(arrays[key], reference[key], err_msg=key)
    for ours, theirs in zip(D.standardize(arrays["x_train"], arrays["x_test"], "global"),
                            D.standardize(reference["x_train"], reference["x_test"], "global")):
        assert np.array_equal(ours, theirs)
    assert source.startswith("TFDS fashion_mnist/3.0.1 (array_record)")


def test_digits_through_tfds_is_the_same_cache_file(tfds_dir, tmp_path):
    default = D.prepare_dataset("digits", tmp_path / "default" / "digits.npz")
    through = D.prepare_dataset("digits", tmp_path / "tfds" / "digits.npz", loader="tfds", tfds_dir=tfds_dir)
    assert through["sha256"] == default["sha256"] and through["arrays"] == default["arrays"]
    assert through["source"].startswith("TFDS creditbench_digits/1.0.0") and default["source"].startswith("scikit-learn")


def test_missing_tfds_dataset_is_built_from_local_idx_files(tmp_path):
    """ensure_prepared: Fashion-MNIST absent from the TFDS data dir is built there from data.fashion_mnist_dir."""
    expected = _fake_idx_dir(tmp_path / "idx", compress=True)
    meta = D.prepare_dataset("fashion_mnist", tmp_path / "out" / "fashion_mnist.npz", loader="tfds",
                             tfds_dir=tmp_path / "tfds", fashion_mnist_dir=tmp_path / "idx", download=False)
    assert (tmp_path / "tfds" / "fashion_mnist" / "3.0.1").is_dir()
    cached = D.load_dataset(tmp_path / "out" / "fashion_mnist.npz")
    for key in D.ARRAY_KEYS:
        np.testing.assert_array_equal(getattr(cached, key), expected[key])
    assert meta["n_train"] == len(expected["x_train"])


@pytest.mark.parametrize("name, hint", [("mnist", "prepare mnist --data-dir"), ("imagenet", "--manual-dir")])
def test_missing_dataset_stops_with_one_message_naming_the_command(tmp_path, name, hint):
    out = tmp_path / "out" / f"{name}.npz"
    with pytest.raises(DatasetUnavailable, match=f"{name} is not in the TFDS data dir") as err:
        D.prepare_dataset(name, out, loader="tfds", tfds_dir=tmp_path / "tfds", download=False)
    assert hint in str(err.value) and "\n" not in str(err.value)
    assert not out.parent.exists() or not any(out.parent.iterdir())   # nothing written
    done = subprocess.run([sys.executable, "-m", "impls.common.datasets", "prepare", name, str(out), "--loader", "tfds",
                           "--tfds-dir", str(tmp_path / "tfds"), "--no-download"], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 2 and done.stderr.startswith("error: ") and hint in done.stderr


def test_sidecar_records_the_tfds_source(tfds_dir, tmp_path):
    D.prepare_dataset("fashion_mnist", tmp_path / "fashion_mnist.npz", loader="tfds", tfds_dir=tfds_dir)
    meta = json.loads((tmp_path / "fashion_mnist.json").read_text())
    assert meta["n_train"] == meta["n_test"] == TFDS_FASHION_EXAMPLES and meta["image_shape"] == [28, 28]
    assert str(Path(tfds_dir).resolve()) in meta["source"]
