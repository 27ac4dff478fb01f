"""benchmarks/smoke_finals.py: runs matched by spec content, moved runs reported, exit code."""
from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import REPO

SCRIPT = str(REPO / "benchmarks" / "smoke_finals.py")


def _results(root, runs):
    for rid, (spec, status, acc) in runs.items():
        d = root / spec["paper"] / "runs" / rid
        d.mkdir(parents=True)
        (d / "spec.json").write_text(json.dumps(spec))
        (d / "final.json").write_text(json.dumps({"run_id": rid, "status": status, "diverged_epoch": None,
                                                  "final": {"final_acc": acc, "test_loss": 1.0,
                                                            "time_epoch": len(rid)}}))
    return root


def _run(*args):
    return subprocess.run([sys.executable, SCRIPT, *args], capture_output=True, text=True)


def test_compare_matches_by_spec_and_flags_what_moved(tmp_path):
    a, b, c = ({"paper": "p", "seed": s, "hparams": {"lr": 0.1}, "impl_version": "1"} for s in range(3))
    before = _results(tmp_path / "before", {"x-1": (a, "ok", 50.0), "x-2": (b, "ok", 60.0), "x-3": (c, "ok", 70.0)})
    # other ids (as after a change of naming, or an IMPL_VERSION bump; time_epoch differs): matched by
    # spec all the same
    a, b = ({**spec, "impl_version": "2"} for spec in (a, b))
    after = _results(tmp_path / "after", {"yy-1": (a, "ok", 50.0), "y-2": (b, "ok", 60.3), "y-3": (c, "diverged", None)})
    for name, root in (("before", before), ("after", after)):
        assert _run("record", str(root), str(tmp_path / f"{name}.json")).returncode == 0
    done = _run("compare", str(tmp_path / "before.json"), str(tmp_path / "after.json"))
    assert done.returncode == 1
    counts = json.loads(done.stdout[:done.stdout.index("MOVED")])
    assert counts["matched"] == 3 and counts["identical"] == 1 and counts["within_tolerance"] == 1
    assert counts["status_changed"] == 1 and abs(counts["largest_final_acc_difference"] - 0.3) < 1e-9
    assert "MOVED x-3: status ok" in done.stdout
    strict = _run("compare", str(tmp_path / "before.json"), str(tmp_path / "after.json"), "--tolerance", "0.1")
    assert "MOVED x-2: final_acc 60.0 -> 60.3" in strict.stdout


def test_record_of_an_empty_tree_is_an_error(tmp_path):
    done = _run("record", str(tmp_path), str(tmp_path / "out.json"))
    assert done.returncode == 2 and "no evaluated runs" in done.stderr and not (tmp_path / "out.json").exists()
