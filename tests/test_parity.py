"""benchmarks/parity.py: the per-epoch comparison of ours against the original code over seeds."""
import math
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.parity import compare, markdown  # noqa: E402


def test_difference_and_standard_error_per_epoch():
    rows = compare({0: [80.0, 84.0], 1: [82.0, 86.0]}, {0: [81.0, 80.0], 1: [81.0, 80.0], 2: [81.0, 80.0]})
    first, second = rows
    assert first["diff"] == pytest.approx(0.0) and first["ours_sd"] == pytest.approx(math.sqrt(2))
    assert first["se"] == pytest.approx(1.0)  # sqrt(2/2 + 0/3)
    assert first["verdict"] == "within 2 SE"
    assert second["diff"] == pytest.approx(5.0) and second["verdict"] == "differs (5.0 SE)"


def test_epochs_limited_to_the_shorter_side_and_one_seed_has_no_error():
    rows = compare({0: [1.0, 2.0, 3.0]}, {0: [1.0, 2.0], 1: [1.5, 2.5]})
    assert [r["epoch"] for r in rows] == [1, 2]
    assert math.isnan(rows[0]["se"]) and rows[0]["verdict"].startswith("one seed")
    assert "±" not in markdown(rows, "acc").splitlines()[2].split("|")[2]


def test_deterministic_sides_identical_or_differ():
    assert compare({0: [1.0], 1: [1.0]}, {0: [1.0], 1: [1.0]})[0]["verdict"] == "identical"
    assert compare({0: [1.0], 1: [1.0]}, {0: [2.0], 1: [2.0]})[0]["verdict"].startswith("differs")


def test_empty_side_is_an_error():
    with pytest.raises(ValueError, match="at least one seed"):
        compare({}, {0: [1.0]})
