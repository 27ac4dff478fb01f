"""benchmarks/bench_bpfree_original.py: its pure parts (IDX reading, the shared training subset, the
settings check, the comparison tables), without the original code or TensorFlow."""
from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest

from benchmarks import bench_bpfree_original as bench


def _idx(array: np.ndarray) -> bytes:
    return bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()


def test_parse_idx_reads_images_and_labels():
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    labels = np.array([7, 1, 9], np.uint8)
    np.testing.assert_array_equal(bench.parse_idx(_idx(images)), images)
    np.testing.assert_array_equal(bench.parse_idx(_idx(labels)), labels)


@pytest.mark.parametrize("data, message", [
    (b"\x01\x00\x08\x01" + struct.pack(">I", 1) + b"\x00", "magic"),
    (b"\x00\x00\x0d\x01" + struct.pack(">I", 1) + b"\x00\x00\x00\x00", "unsigned byte"),
    (b"\x00\x00\x08\x02" + struct.pack(">I", 3), "truncated"),
    (b"\x00\x00\x08\x01" + struct.pack(">I", 3) + b"\x00\x01", "header says 3"),
])
def test_parse_idx_rejects_bad_files(data, message):
    with pytest.raises(ValueError, match=message):
        bench.parse_idx(data)


def test_load_idx_dir_reads_gz_and_plain_files_and_names_a_missing_one(tmp_path):
    rng = np.random.default_rng(0)
    arrays = {"x_train": rng.integers(0, 256, (6, 28, 28), dtype=np.uint8), "y_train": np.arange(6, dtype=np.uint8),
              "x_test": rng.integers(0, 256, (2, 28, 28), dtype=np.uint8), "y_test": np.array([3, 4], np.uint8)}
    for i, (key, stem) in enumerate(bench.IDX_FILES.items()):
        raw = _idx(arrays[key])
        if i % 2:
            (tmp_path / stem).write_bytes(raw)
        else:
            (tmp_path / f"{stem}.gz").write_bytes(gzip.compress(raw))
    got = bench.load_idx_dir(tmp_path)
    for key in arrays:
        np.testing.assert_array_equal(got[key], arrays[key])
    (tmp_path / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(FileNotFoundError, match="t10k-labels-idx1-ubyte"):
        bench.load_idx_dir(tmp_path)


def test_stratified_subset_keeps_class_shares_file_order_and_is_seeded():
    labels = np.repeat(np.arange(4), [40, 30, 20, 10])
    np.random.default_rng(1).shuffle(labels)
    idx = bench.stratified_subset(labels, 50)
    assert len(idx) == 50 and len(set(idx)) == 50 and (np.diff(idx) > 0).all()
    np.testing.assert_array_equal(np.bincount(labels[idx]), [20, 15, 10, 5])
    np.testing.assert_array_equal(idx, bench.stratified_subset(labels, 50))          # same draw for both sides
    assert not np.array_equal(idx, bench.stratified_subset(labels, 50, seed=1))
    np.testing.assert_array_equal(bench.stratified_subset(labels, None), np.arange(100))
    with pytest.raises(ValueError, match="outside 1..100"):
        bench.stratified_subset(labels, 101)


def test_parse_hidden():
    assert bench.parse_hidden("500-1000-500") == [500, 1000, 500]
    for bad in ("500x2", "500--1", "0"):
        with pytest.raises(ValueError, match="architecture"):
            bench.parse_hidden(bad)


def _result(side, accs, **settings):
    base = {"rules": ["dfa"], "seeds": len(accs), "epochs": 2, "n_train": None, "hidden": [500], "lr": 1e-4,
            "batch": 128, "shuffle_buffer": 4096, "data_sha256": "abc", "probe_hidden": [500, 1000, 500]}
    runs = {"dfa": {str(i): {"test_acc": a, "train_error": [100 - v for v in a]} for i, a in enumerate(accs)}}
    return {"side": side, "settings": {**base, **settings}, "runs": runs}


def test_compare_results_reports_per_epoch_parity_and_a_summary():
    ours = _result("ours", [[80.0, 84.0], [81.0, 85.0], [82.0, 86.0]])
    original = _result("original", [[80.5, 90.0], [81.5, 91.0], [82.5, 92.0]])
    out = bench.compare_results(ours, original)
    rows = out["rules"]["dfa"]["test_acc"]
    assert [r["epoch"] for r in rows] == [1, 2]
    assert rows[0]["diff"] == pytest.approx(-0.5) and rows[0]["verdict"] == "within 2 SE"
    assert rows[1]["diff"] == pytest.approx(-6.0) and rows[1]["verdict"].startswith("differs")
    assert out["rules"]["dfa"]["train_error"][1]["diff"] == pytest.approx(6.0)
    summary = bench.summary_markdown(out)
    assert "| dfa | 3 / 3 | 2 | 85.00 ± 1.00 | 91.00 ± 1.00 | -6.00 ± 0.82 |" in summary
    assert summary.rstrip().endswith("| 1 of 2 |")


def test_compare_results_refuses_different_settings_and_swapped_sides():
    ours = _result("ours", [[80.0], [81.0]])
    with pytest.raises(ValueError, match=r"lr: 0\.0001 vs 0\.001; data_sha256"):
        bench.compare_results(ours, _result("original", [[80.0], [81.0]], lr=1e-3, data_sha256="other"))
    with pytest.raises(ValueError, match="argument order"):
        bench.compare_results(_result("original", [[80.0]]), ours)


def test_relative_error_and_cosine():
    a = np.array([[3.0, 4.0]])
    assert bench.relative_error(a, a) == 0.0
    assert bench.relative_error(a * 1.1, a) == pytest.approx(0.1)
    assert bench.relative_error(np.zeros(2), np.zeros(2)) == 0.0
    with pytest.raises(ValueError, match="shapes differ"):
        bench.relative_error(a, a.T)
    assert bench.cosine(a, 2 * a) == pytest.approx(1.0)
    assert bench.cosine([1.0, 0.0], [0.0, 1.0]) == pytest.approx(0.0)


def test_probe_markdown_lists_the_worst_tensor_per_rule():
    probe = {"rules": {"dfa": {"relative_error": {"hidden1.w": 2e-7, "out.b": 5e-7},
                               "bp_cosine_ours": [0.5, 0.25], "bp_cosine_original": [0.5, 0.25]},
                       "bp": {"relative_error": {"out.w": 1e-7}, "bp_cosine_ours": [1.0], "bp_cosine_original": []}}}
    text = bench.probe_markdown(probe)
    assert "| dfa | 5.00e-07 | 0.50000 / 0.25000 | 0.50000 / 0.25000 |" in text
    assert "| bp | 1.00e-07 | 1.00000 | — |" in text
    assert "no probe" in bench.probe_markdown(None)


def test_a_partial_result_compares_the_rules_both_sides_have_and_names_the_rest():
    ours = _result("ours", [[80.0], [81.0]], rules=["dfa", "bp"])
    original = _result("original", [[80.0], [81.0]], rules=["dfa", "bp"])
    original["runs"]["bp"], original["complete"] = {}, False
    out = bench.compare_results(ours, original)
    assert list(out["rules"]) == ["dfa"] and out["missing"] == ["bp"]
    assert out["complete"] == {"ours": True, "original": False}
    assert "Not compared (no runs yet on one side): bp" in bench.report({**out, "probe": None})


@pytest.mark.parametrize("argv, message", [
    (["ours", "--probe-only"], "--probe-only needs --probe"),
    (["ours", "--hidden", "500x2"], "--hidden: architecture"),
    (["ours", "--seeds", "0"], "--seeds"),
])
def test_the_command_line_refuses_bad_options(tmp_path, capsys, argv, message):
    with pytest.raises(SystemExit):
        bench.main(argv + ["--data", str(tmp_path), "--out", str(tmp_path / "o.json")])
    assert message in capsys.readouterr().err


def _keras_adam_bp_steps(params, x, y, steps, batch, lr=1e-3, b1=0.9, b2=0.999, eps=1e-7):
    """A numpy reference: BP through a tanh net with softmax + mean CCE, Keras' Adam update
    (lr·√(1−β2ᵗ)/(1−β1ᵗ)·m/(√v + ε)); params is [W1, b1, ..., W_out, b_out]."""
    params = [p.astype(np.float64) for p in params]
    m = [np.zeros_like(p) for p in params]
    v = [np.zeros_like(p) for p in params]
    for t in range(1, steps + 1):
        xb, yb = x[(t - 1) * batch:t * batch].astype(np.float64), y[(t - 1) * batch:t * batch]
        hs = [xb]
        for i in range(0, len(params) - 2, 2):
            hs.append(np.tanh(hs[-1] @ params[i] + params[i + 1]))
        z = hs[-1] @ params[-2] + params[-1]
        p = np.exp(z - z.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        delta = (p - yb) / len(xb)
        grads = [None] * len(params)
        for i in range(len(params) - 2, -1, -2):
            grads[i], grads[i + 1] = hs[i // 2].T @ delta, delta.sum(0)
            if i:
                delta = (delta @ params[i].T) * (1 - hs[i // 2] ** 2)
        alpha = lr * np.sqrt(1 - b2 ** t) / (1 - b1 ** t)
        for j, g in enumerate(grads):
            m[j] = b1 * m[j] + (1 - b1) * g
            v[j] = b2 * v[j] + (1 - b2) * g * g
            params[j] = params[j] - alpha * m[j] / (np.sqrt(v[j]) + eps)
    return params


def test_the_trajectory_replay_matches_a_numpy_bp_adam_reference(tmp_path):
    rng = np.random.default_rng(0)
    hidden, batch, steps = [16], 8, 5
    x = rng.uniform(-1, 1, (steps * batch, 784)).astype(np.float32)
    labels = rng.integers(0, 10, steps * batch)
    y = np.eye(10, dtype=np.float32)[labels]
    init = [rng.normal(0, 0.05, (784, 16)).astype(np.float32), np.zeros(16, np.float32),
            rng.normal(0, 0.3, (16, 10)).astype(np.float32), np.zeros(10, np.float32)]
    final = _keras_adam_bp_steps(init, x, y, steps, batch)
    x_test, y_test = x[:20], labels[:20]
    h = np.tanh(x_test @ final[0] + final[1])
    acc = 100.0 * np.mean(np.argmax(h @ final[2] + final[3], -1) == y_test)
    saved = {"steps": np.array(steps), "bp/test_acc": np.array(acc)}
    saved.update({f"bp/init{i}": p for i, p in enumerate(init)})
    saved.update({f"bp/final{i}": p.astype(np.float32) for i, p in enumerate(final)})
    np.savez(tmp_path / "t.trajectory.npz", **saved)
    settings = {"hidden": hidden, "batch": batch, "lr": 1e-3, "rules": ["bp", "dfa"]}   # dfa: not in the npz
    out = bench.ours_trajectory(tmp_path / "t.trajectory.npz", settings, x, labels, x_test, y_test)
    assert list(out["rules"]) == ["bp"] and out["steps"] == steps
    bp = out["rules"]["bp"]
    # kernels to 2e-4; the zero-initialised biases to 3e-3: Keras adds ε to √v before the bias correction,
    # optax after it, which shows where a gradient is within a few ε of zero (bias steps of 5 · lr here)
    err = bp["relative_error"]
    assert err["hidden1.w"] < 2e-4 and err["out.w"] < 2e-4 and max(err.values()) < 3e-3, err
    assert min(bp["relative_change"].values()) > 1e-3   # the steps moved the weights: the check has teeth
    assert bp["test_acc_ours"] == bp["test_acc_original"]
    assert "| bp |" in bench.trajectory_markdown(out)
