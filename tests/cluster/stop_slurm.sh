#!/usr/bin/env bash
# Stop exactly the daemons tests/cluster/start_slurm.sh started (their PIDs are in $SLURM_CI_DIR/pids),
# newest first: slurmd, slurmctld, slurmdbd, mariadbd, munged. Nothing else is signalled.
#   sudo tests/cluster/stop_slurm.sh            # stop, keep logs and database in $SLURM_CI_DIR
#   sudo tests/cluster/stop_slurm.sh --purge    # stop and delete $SLURM_CI_DIR
set -uo pipefail

DIR=${SLURM_CI_DIR:-/tmp/creditbench-slurm}
PIDS=$DIR/pids
if [ ! -s "$PIDS" ]; then
    echo "[stop_slurm] nothing to stop ($PIDS missing or empty)"
else
    # reverse order of start
    tac "$PIDS" | while read -r name pid; do
        [ -n "$pid" ] || continue
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "[stop_slurm] $name (pid $pid) already gone"
            continue
        fi
        # the pid must still be the daemon we started (not a recycled pid)
        comm=$(cat "/proc/$pid/comm" 2>/dev/null || true)
        case "$comm" in
            "$name"*|slurmctld*|slurmd*|slurmdbd*|mariadbd*|mysqld*|munged*) ;;
            *) echo "[stop_slurm] pid $pid is now '$comm', not $name: left alone"; continue ;;
        esac
        kill -TERM "$pid"
        for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
        if kill -0 "$pid" 2>/dev/null; then
            echo "[stop_slurm] $name (pid $pid) ignored SIGTERM for 30 s; sending SIGKILL"
            kill -KILL "$pid" 2>/dev/null
        fi
        echo "[stop_slurm] stopped $name (pid $pid)"
    done
    : > "$PIDS"
fi
if [ "${1:-}" = "--purge" ]; then
    rm -rf "$DIR"
    echo "[stop_slurm] deleted $DIR"
fi
