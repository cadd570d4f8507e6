#!/usr/bin/env bash
# A one-node SLURM cluster on this machine, for `make test-slurm` (docs/gpu-cluster.md, "Testing the profile").
#
#   tools/slurm-local.sh start    install what is missing (Debian packages), configure, start; idempotent
#   tools/slurm-local.sh status   what runs, and the node as SLURM sees it
#   tools/slurm-local.sh stop     stop everything `start` started; nothing is left running
#
# Needs root and a Debian-like system (apt-get). Everything it writes lives in $ALR_SLURM_DIR (default
# /var/tmp/alr-slurm) and /etc/slurm/{slurm,slurmdbd}.conf, which carry a marker line: a configuration
# without that marker is someone else's cluster, and the script refuses to touch it. Accounting runs through
# slurmdbd on a local MariaDB, because the Snakemake SLURM plugin asks `sacct` for job states and
# `sacctmgr` for the account.
set -euo pipefail

STATE=${ALR_SLURM_DIR:-/var/tmp/alr-slurm}
CONF=/etc/slurm/slurm.conf
DBD_CONF=/etc/slurm/slurmdbd.conf
MARK="# written by alr tools/slurm-local.sh"
CLUSTER=alr
ACCOUNT=alr
PARTITION=${ALR_SLURM_PARTITION:-debug}
PACKAGES=(slurm-wlm slurmdbd munge mariadb-server)

die() { echo "slurm-local: $*" >&2; exit 2; }
say() { echo "slurm-local: $*"; }

need_root() { [ "$(id -u)" -eq 0 ] || die "needs root (it installs packages and starts daemons): run it with sudo"; }

install() {
    local missing=()
    for p in "${PACKAGES[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
    [ ${#missing[@]} -eq 0 ] && return
    command -v apt-get >/dev/null || die "apt-get not found: install ${missing[*]} with your package manager"
    say "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

ours() { [ ! -e "$1" ] || head -n 1 "$1" | grep -qxF "$MARK"; }

write_configs() {
    ours "$CONF" || die "$CONF exists and was not written by this script: not touching another cluster"
    ours "$DBD_CONF" || die "$DBD_CONF exists and was not written by this script"
    local host cpus mem
    host=$(hostname -s)
    cpus=$(nproc)
    mem=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 1024 ))  # MiB, 1 GiB left to the system
    mkdir -p /etc/slurm "$STATE"/{spool,state,log}
    cat > "$CONF" <<EOF
$MARK
ClusterName=$CLUSTER
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
ReturnToService=2
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
StateSaveLocation=$STATE/state
SlurmdSpoolDir=$STATE/spool
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
JobAcctGatherType=jobacct_gather/linux
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStorageEnforce=associations
AccountingStoreFlags=job_comment
MinJobAge=600
NodeName=$host CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=$PARTITION Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
    cat > "$DBD_CONF" <<EOF
$MARK
AuthType=auth/munge
DbdHost=localhost
SlurmUser=root
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=root
StorageLoc=alr_slurm_acct
PidFile=$STATE/slurmdbd.pid
LogFile=$STATE/log/slurmdbd.log
EOF
    chmod 600 "$DBD_CONF"
}

wait_for() {  # wait_for SECONDS DESCRIPTION COMMAND...
    local limit=$1 what=$2
    shift 2
    for _ in $(seq "$limit"); do "$@" >/dev/null 2>&1 && return 0; sleep 1; done
    die "$what did not come up in ${limit}s (logs: $STATE/log)"
}

start_munge() {
    [ -s /etc/munge/munge.key ] || { mungekey --create --force 2>/dev/null || create-munge-key -f; }
    pgrep -x munged >/dev/null || { mkdir -p /run/munge && chown munge:munge /run/munge 2>/dev/null || true; \
        su -s /bin/sh munge -c munged 2>/dev/null || munged --force; touch "$STATE/munged.ours"; }
    wait_for 20 munge munge -n
}

start_mariadb() {
    if ! mysqladmin ping >/dev/null 2>&1; then
        mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld
        (mysqld_safe --user=mysql >"$STATE/log/mariadb.log" 2>&1 &)
        touch "$STATE/mariadb.ours"
        wait_for 60 MariaDB mysqladmin ping
    fi
}

start_daemons() {
    pgrep -x slurmdbd >/dev/null || slurmdbd
    wait_for 60 slurmdbd sacctmgr -n list cluster
    sacctmgr -i -Q add cluster "$CLUSTER" >/dev/null 2>&1 || true
    sacctmgr -i -Q add account "$ACCOUNT" cluster="$CLUSTER" description=alr organization=alr >/dev/null 2>&1 || true
    sacctmgr -i -Q add user root account="$ACCOUNT" cluster="$CLUSTER" >/dev/null 2>&1 || true
    pgrep -x slurmctld >/dev/null || slurmctld
    wait_for 60 slurmctld scontrol ping
    pgrep -x slurmd >/dev/null || slurmd
    wait_for 60 "the node" sh -c "sinfo -h -N -o %t | grep -Eq '^(idle|mix|alloc)'"
}

cmd_start() {
    need_root
    install
    write_configs
    start_munge
    start_mariadb
    start_daemons
    say "up: cluster $CLUSTER, partition $PARTITION, account $ACCOUNT, node $(hostname -s) ($(nproc) CPUs)"
}

stop_pid() {  # stop_pid NAME PIDFILE
    local pid
    pid=$(cat "$2" 2>/dev/null || pgrep -x "$1" || true)
    [ -n "$pid" ] || return 0
    kill $pid 2>/dev/null || true
    for _ in $(seq 30); do kill -0 $pid 2>/dev/null || return 0; sleep 1; done
    kill -9 $pid 2>/dev/null || true
}

cmd_stop() {
    need_root
    ours "$CONF" || die "$CONF was not written by this script: not stopping another cluster"
    scancel --user=root 2>/dev/null || true
    stop_pid slurmd "$STATE/slurmd.pid"
    stop_pid slurmctld "$STATE/slurmctld.pid"
    stop_pid slurmdbd "$STATE/slurmdbd.pid"
    if [ -e "$STATE/mariadb.ours" ]; then mysqladmin shutdown 2>/dev/null || true; rm -f "$STATE/mariadb.ours"; fi
    if [ -e "$STATE/munged.ours" ]; then stop_pid munged /run/munge/munged.pid; rm -f "$STATE/munged.ours"; fi
    local left=""
    for d in slurmd slurmctld slurmdbd; do pgrep -x "$d" >/dev/null && left="$left $d"; done
    [ -z "$left" ] || die "still running after stop:$left"
    say "stopped"
}

cmd_status() {
    for d in munged mariadbd slurmdbd slurmctld slurmd; do
        printf '%-10s %s\n' "$d" "$(pgrep -x "$d" >/dev/null && echo running || echo stopped)"
    done
    sinfo 2>/dev/null || true
}

case "${1:-}" in
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    *) die "usage: tools/slurm-local.sh {start|status|stop}" ;;
esac
