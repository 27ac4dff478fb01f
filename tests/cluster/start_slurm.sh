#!/usr/bin/env bash
# Start a real one-node SLURM cluster with accounting on this machine, for CI and developers.
#
#   sudo tests/cluster/start_slurm.sh          # install (if needed), configure, start, wait for the node
#   sudo tests/cluster/stop_slurm.sh           # end exactly the daemons this script started
#   tests/cluster/start_slurm.sh --state       # running | stale (daemons gone, not stopped) | none
#
# As root on Debian/Ubuntu without systemd. Installs slurm-wlm, munge, slurmdbd and mariadb-server
# when missing, then starts, as background daemons it records in $SLURM_CI_DIR/pids:
#   munged -> mariadbd (own data dir, 127.0.0.1:$SLURM_CI_DB_PORT) -> slurmdbd -> slurmctld -> slurmd
# slurm.conf: one node `hostname -s` at 127.0.0.1, CPUs = nproc, RealMemory below free memory,
# select/cons_tres, proctrack/linuxproc, task/none, accounting_storage/slurmdbd, MinJobAge=600,
# cred_expire=20 (a requeued job restarts after 20 s instead of 120 s),
# and one partition `ci`. Accounting holds account `ci` with root (and $SUDO_USER) as users, and
# associations are enforced, so a job with an unknown account is refused as on a real site.
# So `sacct` (the SLURM executor plugin's default status path) reads slurmdbd, as on real clusters.
#
# Environment (all optional):
#   SLURM_CI_DIR      state, spool, logs, database (default /tmp/creditbench-slurm)
#   SLURM_CI_DB_PORT  MariaDB port (default 3307, so a site's own MariaDB on 3306 is left alone)
#   SLURM_CI_ACCOUNT  account to create (default ci)      SLURM_CI_PARTITION  partition (default ci)
#   SLURM_CI_TIMEOUT  seconds to wait for each daemon and for the node to be idle (default 60)
# It writes /etc/slurm/slurm.conf and /etc/slurm/slurmdbd.conf (the paths every slurm command reads);
# an existing slurm.conf not written by this script is kept as slurm.conf.creditbench-backup.
set -euo pipefail

DIR=${SLURM_CI_DIR:-/tmp/creditbench-slurm}
DB_PORT=${SLURM_CI_DB_PORT:-3307}
ACCOUNT=${SLURM_CI_ACCOUNT:-ci}
PARTITION=${SLURM_CI_PARTITION:-ci}
TIMEOUT=${SLURM_CI_TIMEOUT:-60}
CLUSTER=creditbench
ETC=/etc/slurm
MARK="# written by creditbench tests/cluster/start_slurm.sh"
T0=$(date +%s)

log() { echo "[start_slurm +$(( $(date +%s) - T0 ))s] $*"; }
die() { echo "[start_slurm] error: $*" >&2; exit 1; }
# wait_for SECONDS DESCRIPTION COMMAND...: retry COMMAND every 0.5 s until it succeeds
wait_for() {
    local secs=$1 what=$2; shift 2
    local deadline=$(( $(date +%s) + secs ))
    until "$@" >/dev/null 2>&1; do
        [ "$(date +%s)" -lt "$deadline" ] || { echo "[start_slurm] timed out after ${secs}s waiting for $what" >&2; return 1; }
        sleep 0.5
    done
}
on_error() {
    echo "[start_slurm] FAILED; logs follow" >&2
    for f in "$DIR"/log/*.log; do [ -f "$f" ] && { echo "----- $f" >&2; tail -n 40 "$f" >&2; }; done
    echo "[start_slurm] stop what was started with: $(dirname "$0")/stop_slurm.sh" >&2
}
trap on_error ERR

# cluster_state: running (every daemon of $DIR/pids alive), stale (some are gone: a machine or job ended before
# stop_slurm.sh ran; the daemons are started afresh below) or none. `start_slurm.sh --state` prints it.
cluster_state() {
    [ -s "$DIR/pids" ] || { echo none; return; }
    local pid
    while read -r _ pid; do [ -e "/proc/$pid" ] || { echo stale; return; }; done < "$DIR/pids"
    echo running
}
if [ "${1:-}" = --state ]; then cluster_state; exit 0; fi

[ "$(id -u)" -eq 0 ] || die "run as root (it installs packages and starts daemons)"
case $(cluster_state) in
    running) die "a cluster started by this script is already running (pids in $DIR/pids);" \
                 "stop it with stop_slurm.sh" ;;
    stale) log "$DIR/pids lists daemons that are gone (a cluster not stopped by stop_slurm.sh): starting afresh" ;;
esac

# ---- packages ----
need=()
for pair in slurmctld:slurm-wlm slurmd:slurm-wlm munged:munge slurmdbd:slurmdbd mariadbd:mariadb-server sacct:slurm-client; do
    cmd=${pair%%:*}; pkg=${pair#*:}
    command -v "$cmd" >/dev/null 2>&1 || [ -x "/usr/sbin/$cmd" ] || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
    log "installing ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # --no-install-recommends: the recommended plugins (hdf5, influxdb, rrd ...) are not needed here
    apt-get install -y -qq --no-install-recommends slurm-wlm slurm-client munge slurmdbd mariadb-server >/dev/null
    log "installed"
fi
export PATH=/usr/sbin:/sbin:$PATH

mkdir -p "$DIR"/{log,state,spool,run}
: > "$DIR/pids"
chmod 755 "$DIR"
# record NAME PID: stop_slurm.sh ends exactly these, in reverse order
record() { echo "$1 $2" >> "$DIR/pids"; }

HOST=$(hostname -s)
CPUS=$(nproc)
# RealMemory: 80% of available memory in MB (slurmd drains a node that reports less than this)
AVAIL_MB=$(awk '/MemAvailable/ {print int($2 / 1024)}' /proc/meminfo)
REAL_MB=$(( AVAIL_MB * 8 / 10 ))
[ "$REAL_MB" -ge 1000 ] || die "only ${AVAIL_MB} MB memory available"

# ---- munge ----
install -d -o munge -g munge -m 0700 /etc/munge /var/lib/munge /var/log/munge
install -d -o munge -g munge -m 0755 /run/munge
if [ ! -s /etc/munge/munge.key ]; then
    log "creating munge key"
    dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key status=none
fi
chown munge:munge /etc/munge/munge.key
chmod 0400 /etc/munge/munge.key
if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    log "munged already running (not started here, will not be stopped)"
else
    rm -f /run/munge/munged.pid
    # munged daemonises itself and writes its pid file
    runuser -u munge -- /usr/sbin/munged --force --pid-file=/run/munge/munged.pid \
        --log-file="$DIR/log/munged.log" 2>/dev/null \
      || runuser -u munge -- /usr/sbin/munged --force
    wait_for "$TIMEOUT" munged bash -c 'munge -n | unmunge'
    record munged "$(cat /run/munge/munged.pid)"
    log "munged up (pid $(cat /run/munge/munged.pid))"
fi

# ---- MariaDB: a private instance for slurmdbd ----
DB=$DIR/mysql
SOCK=$DIR/run/mysqld.sock
if [ ! -d "$DB/mysql" ]; then
    log "initialising MariaDB data dir $DB"
    mkdir -p "$DB"; chown mysql:mysql "$DB"
    mariadb-install-db --user=mysql --datadir="$DB" --auth-root-authentication-method=socket \
        --skip-test-db > "$DIR/log/mariadb-install.log" 2>&1
fi
chown mysql:mysql "$DIR/run"
mariadbd --no-defaults --user=mysql --datadir="$DB" --bind-address=127.0.0.1 --port="$DB_PORT" \
    --socket="$SOCK" --pid-file="$DIR/run/mariadbd.pid" --log-error="$DIR/log/mariadb.log" \
    --skip-name-resolve --innodb-buffer-pool-size=64M --innodb-log-file-size=48M \
    --innodb-lock-wait-timeout=900 > /dev/null 2>&1 &
record mariadbd $!
wait_for "$TIMEOUT" MariaDB mariadb --no-defaults -S "$SOCK" -u root -e 'select 1'
mariadb --no-defaults -S "$SOCK" -u root <<SQL
CREATE DATABASE IF NOT EXISTS slurm_acct_db;
CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY 'creditbench-ci';
CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY 'creditbench-ci';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';
FLUSH PRIVILEGES;
SQL
log "MariaDB up on 127.0.0.1:$DB_PORT"

# ---- configuration ----
if [ -f $ETC/slurm.conf ] && ! grep -qF "$MARK" $ETC/slurm.conf; then
    cp $ETC/slurm.conf $ETC/slurm.conf.creditbench-backup
    log "kept the existing slurm.conf as slurm.conf.creditbench-backup"
fi
mkdir -p $ETC
cat > $ETC/slurmdbd.conf <<EOF
$MARK
AuthType=auth/munge
DbdHost=localhost
DbdAddr=127.0.0.1
SlurmUser=root
DebugLevel=info
LogFile=$DIR/log/slurmdbd.log
PidFile=$DIR/run/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=slurm
StoragePass=creditbench-ci
StorageLoc=slurm_acct_db
EOF
chmod 600 $ETC/slurmdbd.conf

cat > $ETC/slurm.conf <<EOF
$MARK
ClusterName=$CLUSTER
SlurmctldHost=$HOST(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
# job credentials live 20 s (default 120 s); a requeued job waits that long before it starts again,
# which the preemption test of ci_slurm.sh would otherwise spend idle
AuthInfo=cred_expire=20
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/run/slurmctld.pid
SlurmdPidFile=$DIR/run/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
SchedulerType=sched/backfill
MpiDefault=none
ReturnToService=2
# keep finished jobs in slurmctld for 10 minutes (squeue/scontrol still see them)
MinJobAge=600
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
KillWait=10
# accounting: sacct reads slurmdbd, as on real clusters
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStorageEnforce=associations
# sacct shows the plugin's --comment (rule_<rule>_wildcards_...)
AccountingStoreFlags=job_comment
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=30
JobCompType=jobcomp/none
NodeName=$HOST NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$REAL_MB State=UNKNOWN
PartitionName=$PARTITION Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
EOF
chmod 644 $ETC/slurm.conf
log "wrote $ETC/slurm.conf (node $HOST, CPUs=$CPUS, RealMemory=$REAL_MB MB)"

# ---- slurmdbd ----
slurmdbd -D > "$DIR/log/slurmdbd.out" 2>&1 &
record slurmdbd $!
wait_for "$TIMEOUT" slurmdbd sacctmgr -n list cluster
log "slurmdbd up"
sacctmgr -i add cluster "$CLUSTER" >/dev/null 2>&1 || true
sacctmgr -i add account "$ACCOUNT" Cluster="$CLUSTER" Description=creditbench-ci Organization=creditbench >/dev/null 2>&1 || true
for user in root ${SUDO_USER:-}; do
    sacctmgr -i add user "$user" Account="$ACCOUNT" DefaultAccount="$ACCOUNT" Cluster="$CLUSTER" >/dev/null 2>&1 || true
done
sacctmgr -n -P list assoc cluster="$CLUSTER" user=root format=account | grep -qx "$ACCOUNT" \
    || die "accounting has no association root/$ACCOUNT"

# ---- slurmctld, slurmd ----
# state (job ids, queue) is recovered from $DIR/state on a restart, so job ids never repeat in sacct
slurmctld -D > "$DIR/log/slurmctld.out" 2>&1 &
record slurmctld $!
wait_for "$TIMEOUT" slurmctld scontrol ping
slurmd -D > "$DIR/log/slurmd.out" 2>&1 &
record slurmd $!
log "slurmctld and slurmd started; waiting for node $HOST to be idle"
wait_for "$TIMEOUT" "node $HOST idle" bash -c "sinfo -h -n '$HOST' -o %t | grep -qx idle"
sinfo
log "cluster up in $(( $(date +%s) - T0 ))s; pids in $DIR/pids; account=$ACCOUNT partition=$PARTITION"
