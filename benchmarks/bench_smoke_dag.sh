#!/usr/bin/env bash
# Wall time of the whole smoke DAG, run the way `make run` runs it (goal: < 3 min on 2 cores).
#
# Copies the repo's tracked and untracked, not ignored files (`git ls-files -co --exclude-standard`:
# no results/, resources/, .snakemake/, so nothing is cached) into a fresh temp dir, runs
# `$VENV/bin/snakemake --cores $CORES all` there, prints the wall time, and exits with
# snakemake's status. The checkout itself is never touched.
#
#   VENV=/tmp/venv1 benchmarks/bench_smoke_dag.sh          # VENV defaults to .venv, CORES to 2
#   TARGETS=nodepert_all ...  times one paper's smoke DAG instead of `all` (default: all)
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
echo "smoke DAG in $work ($(cd "$work" && find . -type f | wc -l) files), snakemake --cores $cores $targets"

start=$(date +%s.%N)
set +e
(cd "$work" && PATH="$venv/bin:$PATH" "$snakemake" --cores "$cores" $targets)
status=$?
set -e
end=$(date +%s.%N)
wall=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.1f", b - a }')

if [[ $status -eq 0 ]]; then
    echo "smoke DAG ($targets) OK: wall time ${wall} s on $cores cores (goals: all < 180 s, nodepert_all < 60 s)"
else
    echo "smoke DAG FAILED (exit $status) after ${wall} s" >&2
fi
exit $status
