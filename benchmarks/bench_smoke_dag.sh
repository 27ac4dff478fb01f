#!/usr/bin/env bash
# Wall time, CPU-seconds and where they go, of the whole smoke DAG run the way `make run` runs it
# (goal: <= 300 s wall and <= 480 CPU-s on 2 idle cores).
#
# Copies the repo's tracked and untracked, not ignored files (`git ls-files -co --exclude-standard`:
# no results/, resources/, .snakemake/, so nothing is cached) into a fresh temp dir, runs
# `$VENV/bin/snakemake --cores $CORES $TARGETS` there and prints: wall seconds, user+system
# CPU-seconds of the whole process tree (bash `time`), the load average before and after, and the
# CPU-seconds per kind of Python process (benchmarks/cpu_breakdown.py; each Python process records
# its own CPU use through benchmarks/cpu_profile/sitecustomize.py). Exits with snakemake's status.
# The checkout itself is never touched.
#
#   VENV=/tmp/venv1 benchmarks/bench_smoke_dag.sh          # VENV defaults to .venv, CORES to 2
#   TARGETS=nodepert_all ...  times one paper's smoke DAG instead of `all` (default: all)
#   OUT=bench.json ...        also writes the numbers as JSON
#   KEEP=1 ...  keeps the temp dir (its path is printed) for inspecting logs/ and results/
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${VENV:-.venv}"
[[ "$venv" = /* ]] || venv="$repo/$venv"
cores="${CORES:-2}"
targets="${TARGETS:-all}"
snakemake="$venv/bin/snakemake"
if [[ ! -x "$snakemake" ]]; then
    echo "error: $snakemake not found; set VENV to a virtualenv with the project installed" >&2
    exit 2
fi

work="$(mktemp -d "${TMPDIR:-/tmp}/creditbench-smoke.XXXXXX")"
if [[ -z "${KEEP:-}" ]]; then trap 'rm -rf "$work"' EXIT; fi
(cd "$repo" && git ls-files -co --exclude-standard -z | while IFS= read -r -d '' f; do
    [[ -e "$f" ]] && printf '%s\0' "$f"; done | xargs -0 cp --parents -t "$work")
commit="$(cd "$repo" && git rev-parse --short HEAD)$(cd "$repo" && git diff --quiet HEAD || echo +changes)"
echo "smoke DAG of $commit in $work ($(cd "$work" && find . -type f | wc -l) files), snakemake --cores $cores $targets"

cpu_log="$work/cpu.jsonl"
load_before="$(cut -d' ' -f1-3 /proc/loadavg)"
TIMEFORMAT='%R %U %S'
set +e
{ time (cd "$work" && PATH="$venv/bin:$PATH" CREDITBENCH_CPU_LOG="$cpu_log" \
    PYTHONPATH="$work/benchmarks/cpu_profile${PYTHONPATH:+:$PYTHONPATH}" \
    "$snakemake" --cores "$cores" $targets > "$work/snakemake.log" 2>&1) ; } 2> "$work/time.txt"
status=$?
set -e
load_after="$(cut -d' ' -f1-3 /proc/loadavg)"
read -r wall user sys < <(tail -n 1 "$work/time.txt")
cpu=$(awk -v u="$user" -v s="$sys" 'BEGIN { printf "%.1f", u + s }')
jobs=$(grep -c '^localrule\|^rule ' "$work/snakemake.log" || true)

if [[ $status -ne 0 ]]; then
    tail -n 30 "$work/snakemake.log" >&2
    echo "smoke DAG FAILED (exit $status) after ${wall} s" >&2
    exit $status
fi
echo "smoke DAG ($targets) OK: ${wall} s wall, ${cpu} CPU-s (user ${user} + sys ${sys}) on $cores cores," \
     "$jobs jobs; load average before: $load_before, after: $load_after"
echo "(goal for all: <= 300 s wall, <= 480 CPU-s on 2 idle cores)"
"$venv/bin/python" "$repo/benchmarks/cpu_breakdown.py" "$cpu_log" ${OUT:+--json "$work/breakdown.json"}
if [[ -n "${OUT:-}" ]]; then
    "$venv/bin/python" - "$OUT" "$work/breakdown.json" <<PY
import json, sys
out, breakdown = sys.argv[1], json.load(open(sys.argv[2]))
json.dump({"commit": "$commit", "targets": "$targets", "cores": $cores, "wall_s": $wall,
           "cpu_s": $cpu, "user_s": $user, "sys_s": $sys, "jobs": $jobs,
           "load_before": "$load_before", "load_after": "$load_after",
           "python_processes": breakdown}, open(out, "w"), indent=1)
PY
    echo "wrote $OUT"
fi
