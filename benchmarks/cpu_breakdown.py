"""Where the CPU-seconds of a smoke DAG go, by kind of process.

Reads the JSON lines that benchmarks/cpu_profile/sitecustomize.py wrote (one per Python process)
and prints, per kind, the number of processes, their user+system CPU-seconds and the median per
process; `--json OUT` also writes the table. Kinds: the Snakemake scheduler, Snakemake's own job
subprocesses (`run:` rules), `impls.<paper> <command>` CLIs (train, evaluate, run, ...), the
workflow's scripts (aggregate, plot, figure, scorecard), dataset preparation, and anything else.

    python benchmarks/cpu_breakdown.py /tmp/cpu.jsonl [--json out.json]
"""
import argparse
import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path


def kind_of(argv):
    """A short name for what a process was, from its argv."""
    if not argv:
        return "other"
    program = Path(argv[0])
    if program.name == "snakemake" or argv[0].endswith("snakemake/__main__.py"):
        return "snakemake job subprocess" if "--target-jobs" in argv else "snakemake scheduler"
    if program.name == "__main__.py" and program.parent.parent.name == "impls":
        command = argv[1] if len(argv) > 1 else "?"
        return f"impls.{program.parent.name} {command}"
    if program.parent.name == "datasets" or "datasets" in program.name:
        return "dataset"
    for script in ("aggregate", "plot", "figure", "scorecard"):
        if program.name.endswith(f".{script}.py") or program.name == f"{script}.py":
            return f"script {script}"
    return "other: " + program.name


def breakdown(rows):
    by_kind = defaultdict(list)
    for row in rows:
        by_kind[kind_of(row["argv"])].append(row["user_s"] + row["sys_s"])
    table = [
        {"kind": kind, "processes": len(cpu), "cpu_s": round(sum(cpu), 1),
         "median_cpu_s": round(statistics.median(cpu), 2)}
        for kind, cpu in by_kind.items()
    ]
    return sorted(table, key=lambda r: -r["cpu_s"])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("log", type=Path, help="JSON lines of benchmarks/cpu_profile/sitecustomize.py")
    parser.add_argument("--json", type=Path, help="also write the table here")
    args = parser.parse_args(argv)
    rows = [json.loads(line) for line in args.log.read_text().splitlines() if line.strip()]
    if not rows:
        sys.exit(f"error: {args.log} has no process records (was PYTHONPATH set to benchmarks/cpu_profile?)")
    table = breakdown(rows)
    total = sum(r["cpu_s"] for r in table)
    print(f"{'kind':<34} {'procs':>6} {'CPU-s':>8} {'median':>7} {'share':>6}")
    for r in table:
        print(f"{r['kind']:<34} {r['processes']:>6} {r['cpu_s']:>8.1f} {r['median_cpu_s']:>7.2f}"
              f" {100 * r['cpu_s'] / total:>5.1f}%")
    print(f"{'all Python processes':<34} {len(rows):>6} {total:>8.1f}")
    if args.json:
        args.json.write_text(json.dumps({"total_cpu_s": round(total, 1), "kinds": table}, indent=1) + "\n")


if __name__ == "__main__":
    main()
