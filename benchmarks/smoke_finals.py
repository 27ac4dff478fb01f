"""Did a change move any number? Record every run's final metrics, then compare two records.

    python benchmarks/smoke_finals.py record results/ before.json       # after `make run` on the old code
    python benchmarks/smoke_finals.py record results/ after.json        # after `make run` on the new code
    python benchmarks/smoke_finals.py compare before.json after.json    # exit 1 if a run moved

A run is matched by the content of its spec (``spec.json``, canonical JSON) without its
``impl_version``, not by its id or directory: a change that bumps a paper's ``IMPL_VERSION`` (and so
every run id of the paper) is compared run for run with the runs before it. ``compare`` prints the
counts (matched, identical, moved within/outside the tolerance, status changed, only before, only
after), the largest differences, and every run whose status changed or whose final test accuracy
moved by more than ``--tolerance`` points (default 0.5). Metrics that time the machine rather than
the training (``time_*``, e.g. wide_align's seconds per epoch) are left out of the comparison. A
refactor must show no such run.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from impls.common.io import atomic_write_json, read_json  # noqa: E402
from impls.common.specs import canonical_json  # noqa: E402


def record(results: Path) -> dict[str, dict]:
    """canonical spec (less impl_version) -> {paper, run_id, status, diverged_epoch, final} of every evaluated run."""
    out = {}
    for final_path in sorted(results.glob("*/runs/*/final.json")):
        spec_path = final_path.with_name("spec.json")
        if not spec_path.exists():
            continue
        spec, final = read_json(spec_path), read_json(final_path)
        key = canonical_json({k: v for k, v in spec.items() if k != "impl_version"})
        out[key] = {"paper": spec["paper"], "run_id": final["run_id"], "status": final["status"],
                                     "diverged_epoch": final.get("diverged_epoch"), "final": final["final"]}
    return out


def _numbers(final: dict) -> dict[str, float]:
    """The final metrics that depend on the training alone (clock metrics ``time_*`` left out)."""
    return {k: v for k, v in final.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and not k.startswith("time_")}


def compare(before: dict, after: dict, tolerance: float) -> tuple[dict, list[str]]:
    """Counts and the lines describing every run that moved beyond ``tolerance`` or changed status."""
    counts = dict.fromkeys(["matched", "identical", "within_tolerance", "moved", "status_changed",
                            "only_before", "only_after"], 0)
    counts["only_before"] = len(set(before) - set(after))
    counts["only_after"] = len(set(after) - set(before))
    problems, largest = [], []
    for key in sorted(set(before) & set(after)):
        a, b = before[key], after[key]
        counts["matched"] += 1
        if (a["status"], a["diverged_epoch"]) != (b["status"], b["diverged_epoch"]):
            counts["status_changed"] += 1
            problems.append(f"{a['run_id']}: status {a['status']} (diverged {a['diverged_epoch']}) -> "
                            f"{b['status']} (diverged {b['diverged_epoch']})")
            continue
        na, nb = _numbers(a["final"]), _numbers(b["final"])
        if na == nb and set(a["final"]) == set(b["final"]):  # identical up to clock metrics
            counts["identical"] += 1
            continue
        diffs = {k: abs(na[k] - nb[k]) for k in set(na) & set(nb) if math.isfinite(na[k]) and math.isfinite(nb[k])}
        acc = diffs.get("final_acc", 0.0)
        largest.append((acc, a["run_id"], max(diffs.items(), key=lambda kv: kv[1], default=("-", 0.0))))
        if acc > tolerance or set(na) != set(nb):
            counts["moved"] += 1
            problems.append(f"{a['run_id']}: final_acc {na.get('final_acc')} -> {nb.get('final_acc')}"
                            + ("" if set(na) == set(nb) else f"; metrics {sorted(na)} -> {sorted(nb)}"))
        else:
            counts["within_tolerance"] += 1
    counts["largest_final_acc_difference"] = max((x[0] for x in largest), default=0.0)
    counts["largest"] = [f"{rid}: final_acc diff {acc:.4g}, largest metric diff {name} {d:.4g}"
                         for acc, rid, (name, d) in sorted(largest, reverse=True)[:10]]
    return counts, problems


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    rec = sub.add_parser("record", help="write every run's final metrics under RESULTS to OUT")
    rec.add_argument("results", type=Path)
    rec.add_argument("out", type=Path)
    cmp = sub.add_parser("compare", help="compare two records; exit 1 if a run moved or changed status")
    cmp.add_argument("before", type=Path)
    cmp.add_argument("after", type=Path)
    cmp.add_argument("--tolerance", type=float, default=0.5, help="points of final test accuracy (default 0.5)")
    args = parser.parse_args(argv)
    if args.command == "record":
        runs = record(args.results)
        if not runs:
            print(f"error: no evaluated runs (*/runs/*/final.json) under {args.results}", file=sys.stderr)
            return 2
        atomic_write_json(args.out, runs)
        print(f"{len(runs)} runs recorded in {args.out}")
        return 0
    counts, problems = compare(read_json(args.before), read_json(args.after), args.tolerance)
    print(json.dumps(counts, indent=2))
    for line in problems:
        print(f"MOVED {line}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
