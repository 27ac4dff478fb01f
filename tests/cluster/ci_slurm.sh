#!/usr/bin/env bash
# CI step: run figures' smoke DAGs through a real one-node SLURM cluster with profiles/slurm, and prove it.
#
#   tests/cluster/ci_slurm.sh [TARGET ...]      (as root; after `make test` created .venv)
#
# TARGETs default to fig_nodepert_lr (JAX) and fig_pepita_curves (PyTorch). Steps:
#   1. start the cluster (start_slurm.sh; stopped again on exit by stop_slurm.sh, whatever happens)
#   2. pytest tests/cluster: profile + overlay submit correct sbatch requests; a wrong account is refused
#   3. the targets at scale=smoke in two scratch copies of the repo: locally (--cores 2; or the copy
#      CI_SLURM_LOCAL_DIR where they were built already) and through SLURM (--profile profiles/slurm --profile tests/cluster/profile); then check_slurm_run.py:
#      sacct lists the train jobs COMPLETED (the only rule submitted; at smoke scale one job per paper
#      trains and evaluates all of its batches), every final.json records the SLURM job id of its train
#      job, and each target's CSV is identical in both copies
#   4. preemption (skip with CI_SLURM_PREEMPT=0): one cpu-scale nodepert train job (one batch: at cpu
#      scale the job id is the batch id; fig_nodepert_appendix's SGD with weight decay, 5 runs of
#      784-500-500-10 on Fashion-MNIST, 10 epochs, checkpoint every epoch) is killed
#      mid-training with `scancel --signal=TERM` (snakemake resubmits it: restart-times) and its successor
#      is requeued with `scontrol requeue` (SLURM reruns it); each time training resumes from the
#      checkpoint, and the job completes the training and the evaluation of the batch
# On failure it prints the snakemake, SLURM job, slurmctld and slurmd logs.
#
# Environment: SNAKEMAKE (default .venv/bin/snakemake; its python runs the checks), CI_SLURM_SCRATCH
# (default a new /tmp/creditbench-ci-slurm.XXXX), CI_SLURM_DAG_TIMEOUT (s, default 1200) and
# CI_SLURM_PREEMPT_TIMEOUT (s, default 1500) bound each snakemake call, CI_SLURM_LOCAL_DIR (a repo copy
# where the targets were built locally at smoke scale, e.g. make test's smoke DAG: used as the reference
# instead of a local run), CI_SLURM_KEEP_CLUSTER=1 leaves
# the cluster running, CI_SLURM_DAG=0 skips steps 2-3, CI_SLURM_PREEMPT=0 skips step 4, CI_SLURM_LOCK_WAIT
# (s, default 3000) bounds the wait for another run of this script on the same machine.
set -euo pipefail
cd "$(dirname "$0")/../.."
REPO=$PWD
HERE=$REPO/tests/cluster
SNAKEMAKE=$(realpath "${SNAKEMAKE:-.venv/bin/snakemake}")
PY=$(dirname "$SNAKEMAKE")/python
SCRATCH=${CI_SLURM_SCRATCH:-$(mktemp -d /tmp/creditbench-ci-slurm.XXXX)}
DAG_TIMEOUT=${CI_SLURM_DAG_TIMEOUT:-1200}
PREEMPT_TIMEOUT=${CI_SLURM_PREEMPT_TIMEOUT:-1500}
SLURM_DIR=${SLURM_CI_DIR:-/tmp/creditbench-slurm}
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(fig_nodepert_lr fig_pepita_curves)
T0=$(date +%s)
log() { echo "[ci_slurm +$(( $(date +%s) - T0 ))s] $*"; }

[ -x "$SNAKEMAKE" ] || { echo "error: $SNAKEMAKE missing (run make test or make venv first)" >&2; exit 1; }

# papers of the targets (fig_<paper>_<name>, longest paper id first: two_routes, wide_align)
PAPERS=$("$PY" - "${TARGETS[@]}" <<'EOF'
import re, sys
from pathlib import Path
papers = sorted((p.name for p in Path("papers").iterdir() if p.is_dir()), key=len, reverse=True)
found = []
for t in sys.argv[1:]:
    p = next((p for p in papers if re.match(rf"(fig|tab)_{p}_", t)), None)
    if p is None:
        sys.exit(f"error: no paper for target {t}")
    found.append(p) if p not in found else None
print(",".join(found))
EOF
)
CONFIG=(scale=smoke platform=cpu "papers=[$PAPERS]")
SLURM_PROFILE=(--profile profiles/slurm --profile tests/cluster/profile)

show_logs() {
    echo "================ ci_slurm FAILED: logs ================" >&2
    for f in "$SCRATCH"/*.log; do [ -f "$f" ] && { echo "----- $f (last 60 lines)"; tail -n 60 "$f"; }; done >&2
    find "$SCRATCH"/slurm/logs "$SCRATCH"/preempt/logs -name '*.log' 2>/dev/null | sort | while read -r f; do
        echo "----- $f (last 30 lines)"; tail -n 30 "$f"
    done >&2
    for f in "$SLURM_DIR"/log/slurmctld.log "$SLURM_DIR"/log/slurmd.log "$SLURM_DIR"/log/slurmdbd.log; do
        [ -f "$f" ] && { echo "----- $f (last 80 lines)"; tail -n 80 "$f"; }
    done >&2
    command -v sinfo >/dev/null && { sinfo; squeue; sacct -X -a -S "$(date -d @"$T0" +%FT%T)" -o JobID,JobName%40,State,ExitCode,Comment%60; } >&2 2>&1 || true
}
cleanup() {
    rc=$?
    set +e          # a failing command while printing the logs must not end the cleanup before stop_slurm.sh
    [ $rc -eq 0 ] || show_logs
    if [ "$STARTED" = 1 ] && [ "${CI_SLURM_KEEP_CLUSTER:-0}" != 1 ]; then bash "$HERE/stop_slurm.sh" || true; fi
    log "exit $rc (scratch copies in $SCRATCH)"
    exit $rc
}
trap cleanup EXIT
# a TERM from an outer `timeout` still runs cleanup (logs, stop_slurm.sh)
trap 'exit 143' TERM INT
STARTED=0

copy_repo() {  # same selection as tests/conftest.py copy_repo: tracked + untracked-not-ignored files
    mkdir -p "$1"
    # --ignore-failed-read: a tracked file deleted in the work tree is listed by git but absent
    git ls-files -co --exclude-standard -z | tar --null --ignore-failed-read -T - -cf - 2>/dev/null | tar -xf - -C "$1"
    [ -f "$1/Snakefile" ] || { echo "error: copying the repo to $1 failed" >&2; return 1; }
}

# ---- 1. cluster ----
STARTED=0
# Two runs of this script on one machine would share /etc/slurm, the daemons' ports and $SLURM_DIR (one would
# stop the cluster under the other): the second waits for the first. The daemons do not inherit the lock (9>&-).
exec 9> "$SLURM_DIR.lock"
if ! flock -n 9; then
    log "another ci_slurm.sh run holds $SLURM_DIR.lock: waiting for it to end (at most ${CI_SLURM_LOCK_WAIT:-3000}s)"
    flock -w "${CI_SLURM_LOCK_WAIT:-3000}" 9 || { echo "error: $SLURM_DIR.lock still held" >&2; exit 1; }
    log "lock acquired"
fi
STATE=$(bash "$HERE/start_slurm.sh" --state)
if [ "$STATE" = running ] && scontrol ping 2>/dev/null | grep -q UP; then
    log "reusing the cluster already started by start_slurm.sh (left running)"
elif [ "$STATE" = running ]; then
    echo "error: the daemons of a cluster that start_slurm.sh started run (pids in $SLURM_DIR/pids), but slurmctld" \
         "does not answer \`scontrol ping\`: stop them with tests/cluster/stop_slurm.sh" >&2
    exit 1
else
    log "starting the cluster"
    STARTED=1
    bash "$HERE/start_slurm.sh" 9>&-
    log "cluster up"
fi
export SLURM_CI_ACCOUNT=${SLURM_CI_ACCOUNT:-ci} SLURM_CI_PARTITION=${SLURM_CI_PARTITION:-ci}

if [ "${CI_SLURM_DAG:-1}" != 0 ]; then
# ---- 2. profile checks on the live cluster ----
log "pytest tests/cluster"
CREDITBENCH_SLURM_CLUSTER=1 "$PY" -m pytest -q tests/cluster -p no:cacheprovider

# ---- 3. the smoke DAG, locally and through SLURM ----
log "targets: ${TARGETS[*]} (papers: $PAPERS)"
copy_repo "$SCRATCH/slurm"
LOCAL=${CI_SLURM_LOCAL_DIR:-}
if [ -n "$LOCAL" ]; then
    # the smoke DAG that make test built locally (CREDITBENCH_SMOKE_DAG_DIR, .ci/run) is the reference
    for t in "${TARGETS[@]}"; do
        ls "$LOCAL"/results/*/"$t.csv" >/dev/null 2>&1 \
            || { echo "error: CI_SLURM_LOCAL_DIR=$LOCAL has no results/<paper>/$t.csv" >&2; exit 1; }
    done
    log "local reference: $LOCAL (a smoke run with default config)"
else
    LOCAL=$SCRATCH/local
    copy_repo "$LOCAL"
    # the local reference run goes first, so that it does not compete with the SLURM jobs for the CPUs
    log "local reference run (--cores 2)"
    ( cd "$LOCAL" && timeout -k 30 "$DAG_TIMEOUT" "$SNAKEMAKE" --cores 2 \
        "${TARGETS[@]}" --config "${CONFIG[@]}" > "$SCRATCH/local.log" 2>&1 )
    log "local run done"
fi
SINCE=$(date +%FT%T)
log "SLURM run: snakemake ${SLURM_PROFILE[*]} ${TARGETS[*]} --config ${CONFIG[*]}"
t=$(date +%s)
( cd "$SCRATCH/slurm" && timeout -k 30 "$DAG_TIMEOUT" "$SNAKEMAKE" "${SLURM_PROFILE[@]}" \
    "${TARGETS[@]}" --config "${CONFIG[@]}" > "$SCRATCH/slurm.log" 2>&1 )
log "SLURM run done in $(( $(date +%s) - t ))s"
grep -E "Using profile|Job .* has been submitted with SLURM jobid" "$SCRATCH/slurm.log" | head -n 40 || true
"$PY" "$HERE/check_slurm_run.py" dag --slurm-dir "$SCRATCH/slurm" --local-dir "$LOCAL" \
    --since "$SINCE" "${TARGETS[@]}"
fi

# ---- 4. preemption: a train job is killed mid-training twice and resumes from its checkpoint each time ----
#  a) `scancel --signal=TERM --full`: SIGTERM to the job's processes, what SLURM sends at preemption or at
#     the time limit; the job ends FAILED, the plugin sees it via sacct and snakemake resubmits it
#     (restart-times of profiles/slurm); the new job resumes from the last checkpoint.
#  b) `scontrol requeue` of the resubmitted job, what SLURM does to jobs preempted with PreemptMode=REQUEUE:
#     the same job id runs again (the plugin leaves it to SLURM) and resumes from the checkpoint.
# (A plain `scancel` is not used: sacct reports "CANCELLED by <uid>", which plugin 2.8.0 does not
#  recognise as an end state, so snakemake would wait for that job forever; see profiles/README.md.)
wait_log() {  # wait_log REGEX SECONDS: until the train log matches REGEX (snakemake must still run)
    local deadline=$(( $(date +%s) + $2 ))
    until [ -f "$TLOG" ] && grep -qE "$1" "$TLOG"; do
        kill -0 $SMK 2>/dev/null || { echo "error: snakemake ended while waiting for /$1/ in $TLOG" >&2; return 1; }
        [ "$(date +%s)" -lt "$deadline" ] || { echo "error: timed out waiting for /$1/ in $TLOG" >&2; return 1; }
        sleep 1
    done
}
running_train_job() { squeue -h -t R -o "%i %k" | awk '/rule_train/ {print $1; exit}'; }
epoch_regex_from() {  # epochs >= $1 in the "epoch N/$EPOCHS" progress lines
    "$PY" -c "import sys; n, e = map(int, sys.argv[1:]); print('epoch (' + '|'.join(str(i) for i in range(n, e + 1)) + ')/')" \
        "$1" "$EPOCHS"
}
if [ "${CI_SLURM_PREEMPT:-1}" != 0 ]; then
    copy_repo "$SCRATCH/preempt"
    cd "$SCRATCH/preempt"
    PCONFIG=(scale=cpu platform=cpu "papers=[nodepert]" checkpoint_minutes=0)
    # one train job of fig_nodepert_appendix at cpu scale (one batch: SGD with weight decay, 5 runs x 10 epochs
    # of Fashion-MNIST); its output is the job file, and at cpu scale (config train_jobs: 1 batch per job)
    # job id == batch id
    JOBFILE=$("$SNAKEMAKE" --cores 1 -n fig_nodepert_appendix --config "${PCONFIG[@]}" 2>/dev/null \
        | grep -oE 'results/nodepert/jobs/sgd_wd-[^ ,/]+\.json' | sort | tail -n 1)
    [ -n "$JOBFILE" ] || { echo "error: no train job found for the preemption test" >&2; exit 1; }
    JOBID=$(basename "$JOBFILE" .json)
    BDIR=results/nodepert/batches/$JOBID
    [ -f "$BDIR/batch.json" ] || { echo "error: $BDIR/batch.json missing: is train job $JOBID not one batch?" >&2; exit 1; }
    TLOG=logs/nodepert/train/$JOBID.log
    EPOCHS=$("$PY" -c "import json, sys; print(max(r['epochs'] for r in json.load(open(sys.argv[1]))['runs'].values()))" \
        "$BDIR/batch.json")
    [ "$EPOCHS" -ge 7 ] || { echo "error: $BDIR trains $EPOCHS epochs; the preemption test needs at least 7" >&2; exit 1; }
    log "preemption test on $JOBFILE (dataset prepared on the login node first)"
    "$SNAKEMAKE" --cores 1 resources/datasets/fashion_mnist.npz --config "${PCONFIG[@]}" \
        > "$SCRATCH/preempt-dataset.log" 2>&1
    PSINCE=$(date +%FT%T)
    timeout -k 30 "$PREEMPT_TIMEOUT" "$SNAKEMAKE" "${SLURM_PROFILE[@]}" "$JOBFILE" --config "${PCONFIG[@]}" \
        > "$SCRATCH/preempt.log" 2>&1 &
    SMK=$!
    # a) after 2 checkpointed epochs
    wait_log "$(epoch_regex_from 2)" 900
    JOB1=$(running_train_job)
    [ -n "$JOB1" ] || { echo "error: no running train job found" >&2; exit 1; }
    log "a) SIGTERM to train job $JOB1 at: $(grep -E 'epoch [0-9]+/' "$TLOG" | tail -n 1)"
    scancel --signal=TERM --full "$JOB1"
    wait_log "resumed from checkpoint at epoch" 600
    RESUMED1=$(grep -oE "resumed from checkpoint at epoch [0-9]+" "$TLOG" | grep -oE "[0-9]+$")
    JOB2=$(running_train_job)
    log "a) resubmitted as job $JOB2: resumed from checkpoint at epoch $RESUMED1"
    # b) two epochs later
    wait_log "$(epoch_regex_from $(( RESUMED1 + 2 )))" 900
    log "b) scontrol requeue of job $JOB2 at: $(grep -E 'epoch [0-9]+/' "$TLOG" | tail -n 1)"
    scontrol requeue "$JOB2"
    # the requeued job starts again after SLURM's requeue delay (BeginTime: AuthInfo cred_expire, 20 s in
    # start_slurm.sh's slurm.conf; 120 s by default)
    wait_log "resumed from checkpoint at epoch ($(seq -s '|' $(( RESUMED1 + 1 )) "$EPOCHS"))" 900
    RESUMED2=$(grep -oE "resumed from checkpoint at epoch [0-9]+" "$TLOG" | grep -oE "[0-9]+$")
    log "b) job $JOB2 requeued by SLURM: resumed from checkpoint at epoch $RESUMED2"
    wait $SMK || { echo "error: snakemake did not complete the train job after the interruptions" >&2; exit 1; }
    log "snakemake done; last lines of the train log:"
    tail -n 2 "$TLOG"
    "$PY" "$HERE/check_slurm_run.py" preempt --log "$TLOG" --failed "$JOB1" --requeued "$JOB2" \
        --batch-dir "$BDIR" --job-file "$JOBFILE" --since "$PSINCE"
    cd "$REPO"
fi
log "all SLURM checks passed"
