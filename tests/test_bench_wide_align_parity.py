"""The pure parts of the wide_align parity scripts (benchmarks/bench_wide_align_original.py and
benchmarks/bench_wide_align_parity.py): parsing the original's output, its seed override, reading the
original's JSON and the IDX files. Needs neither the original code nor TensorFlow."""
import gzip
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmarks import bench_wide_align_original as orig  # noqa: E402
from benchmarks import bench_wide_align_parity as parity  # noqa: E402

# what train_kmnist.train prints for a 2-epoch run (name line first), with made-up numbers
PRINTED = ["bench_bp_8", "Time 0.0", "Epoch: 0", "Train set accuracy: 0.5123", "Test set accuracy: 0.6",
           "Epoch: 1", "Train set accuracy: 0.7", "Test set accuracy: 0.7125", "Time 12.5"]


def stamped(lines, dt=1.0):
    return [(i * dt, line) for i, line in enumerate(lines)]


def test_accuracy_curves_reads_train_and_test_lines_in_percent():
    curves = orig.accuracy_curves(stamped(PRINTED), 2)
    assert curves["train_acc"] == pytest.approx([51.23, 70.0])
    assert curves["val_acc"] == pytest.approx([60.0, 71.25])


def test_accuracy_curves_rejects_a_wrong_number_of_epochs():
    with pytest.raises(RuntimeError, match="printed 2 train_acc lines for 3 epochs"):
        orig.accuracy_curves(stamped(PRINTED), 3)
    with pytest.raises(RuntimeError, match="printed 1 val_acc lines"):
        orig.accuracy_curves(stamped([l for l in PRINTED if l != "Test set accuracy: 0.6"]), 2)


def test_stamped_lines_and_epoch_seconds_on_the_printed_output():
    out = orig.StampedLines()
    out.write("\n".join(PRINTED[:4]) + "\n")
    out.write("\n".join(PRINTED[4:]))
    out.write("\n")
    assert [line for _, line in out.lines] == PRINTED
    # Epoch: 0 at t=2, Epoch: 1 at t=5, final Time at t=8
    assert orig.epoch_seconds(stamped(PRINTED)) == pytest.approx([3.0, 3.0])


def test_seeded_numpy_maps_the_original_seed_and_passes_the_rest_through():
    fake = orig.SeededNumpy(np, 123)
    fake.random.seed(99)
    got = (fake.random.normal(size=5), fake.random.permutation(10))
    np.random.seed(123)
    want = (np.random.normal(size=5), np.random.permutation(10))
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])
    assert fake.sqrt is np.sqrt and fake.float32 is np.float32
    # seed 99 reproduces the original's own stream
    same = orig.SeededNumpy(np, 99)
    same.random.seed(99)
    a = same.random.normal(size=3)
    np.random.seed(99)
    np.testing.assert_array_equal(a, np.random.normal(size=3))


def test_seeded_numpy_refuses_other_seeds_and_bad_values():
    with pytest.raises(RuntimeError, match=r"np.random.seed\(7\)"):
        orig.SeededNumpy(np, 1).random.seed(7)
    with pytest.raises(ValueError, match="not a numpy legacy seed"):
        orig.SeededNumpy(np, -1)


def row(rule="bp", lr=1.0, seed=99, width=8, val=(60.0, 70.0, 75.0)):
    return {"rule": rule, "width": width, "lr": lr, "seed": seed, "val_acc": list(val)}


def test_original_curves_groups_by_rule_and_lr_and_cuts_to_the_epochs():
    rows = [row(seed=99), row(seed=100, val=(61, 71, 76)), row(rule="alignada", lr=5, seed=99),
            row(width=64, seed=101)]
    got = parity.original_curves(rows, 8, 2)
    assert got == {("bp", 1.0): {99: [60.0, 70.0], 100: [61.0, 71.0]}, ("alignada", 5.0): {99: [60.0, 70.0]}}


@pytest.mark.parametrize("rows, message", [
    ([{"rule": "bp", "width": 8, "epoch_plus_val_s": 5.0}], "without 'val_acc'"),
    ([row(val=(60.0,))], "fewer than --epochs 2"),
    ([row(), row()], "seed 99 twice"),
])
def test_original_curves_rejects_bad_json(rows, message):
    with pytest.raises(ValueError, match=message):
        parity.original_curves(rows, 8, 2)


def write_idx(path, array, compress=True):
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    (gzip.open if compress else open)(path, "wb").write(header + array.astype(np.uint8).tobytes())


def test_read_idx_images_and_labels(tmp_path):
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    write_idx(tmp_path / "x.gz", images)
    write_idx(tmp_path / "y", np.array([3, 1], np.uint8), compress=False)
    np.testing.assert_array_equal(parity.read_idx(tmp_path / "x.gz"), images)
    np.testing.assert_array_equal(parity.read_idx(tmp_path / "y"), [3, 1])


def test_read_idx_rejects_other_files(tmp_path):
    (tmp_path / "bad").write_bytes(b"\x00\x00\x0d\x01\x00\x00\x00\x01abcd")  # float IDX
    with pytest.raises(ValueError, match="not an unsigned-byte IDX"):
        parity.read_idx(tmp_path / "bad")
    (tmp_path / "short").write_bytes(bytes([0, 0, 8, 1, 0, 0, 0, 5, 1, 2]))
    with pytest.raises(ValueError, match="header says"):
        parity.read_idx(tmp_path / "short")


def test_check_same_data_catches_a_different_order(tmp_path):
    x = np.random.default_rng(0).integers(0, 256, (4, 2, 2)).astype(np.uint8)
    y = np.array([0, 1, 2, 3], np.uint8)
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", x)
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", y)
    np.savez(tmp_path / "same.npz", x_train=x, y_train=y.astype(np.int64))
    parity.check_same_data(tmp_path / "same.npz", tmp_path)
    np.savez(tmp_path / "shuffled.npz", x_train=x[::-1], y_train=y[::-1].astype(np.int64))
    with pytest.raises(SystemExit, match="x_train differs"):
        parity.check_same_data(tmp_path / "shuffled.npz", tmp_path)


def test_parity_cli_needs_the_original_or_its_json():
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks/bench_wide_align_parity.py")],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "--original-json" in proc.stderr


def test_ours_curves_reads_back_the_runs_of_an_earlier_out():
    ours = {("bp", 1.0): {0: [50.0, 60.0, 65.0], 1: [52.0, 61.0, 66.0]}, ("dfa", 5.0): {0: [40.0, 45.0, 47.0]}}
    again = parity.ours_curves(json.loads(json.dumps({"ours_runs": parity.runs_list(ours)}))["ours_runs"], 2)
    assert again == {("bp", 1.0): {0: [50.0, 60.0], 1: [52.0, 61.0]}, ("dfa", 5.0): {0: [40.0, 45.0]}}
    with pytest.raises(ValueError, match="fewer than --epochs 4"):
        parity.ours_curves(parity.runs_list(ours), 4)
