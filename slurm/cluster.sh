#!/usr/bin/env bash
# slurm/cluster.sh — a real one-host Slurm cluster for tests (slurmctld + slurmd on this
# machine, partition "debug"). A loopback TEST cluster only: it runs with AuthType=auth/none
# and CredType=cred/none, so anyone on the host can submit as anyone. Never use it on a
# machine that other people can log in to.
#
# usage: slurm/cluster.sh install   install Slurm (+ OpenMPI, PMIx) with apt through
#                                   tools/deps.sh (idempotent, quiet when present)
#        slurm/cluster.sh start     install if needed, write the config, start both daemons
#                                   and wait until the node is idle (no-op if already up)
#        slurm/cluster.sh stop      stop both daemons (through their pid files)
#        slurm/cluster.sh status    print the daemons' state and sinfo; exit 1 if not up
#        slurm/cluster.sh wait      wait until the node is idle (DEED_SLURM_WAIT seconds, 60)
#
# Files: the config is /etc/slurm/slurm.conf (written only if absent or written by this
# script: a foreign slurm.conf is never touched, and start then fails). State, spool, pid
# files and logs are under DEED_SLURM_DIR (default /tmp/deed-slurm): log/slurmctld.log and
# log/slurmd.log. Must run as root (the daemons run as root: SlurmUser=root).
set -uo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
dir=${DEED_SLURM_DIR:-/tmp/deed-slurm}
conf_dir=/etc/slurm
conf=$conf_dir/slurm.conf
marker="# written by deed's slurm/cluster.sh (loopback test cluster)"
host=$(hostname -s)
wait_s=${DEED_SLURM_WAIT:-60}

die()
{
    echo "cluster.sh: $*" >&2
    exit 1
}

need_root()
{
    [ "$(id -u)" -eq 0 ] || die "must run as root (the test cluster's daemons run as root)"
}

do_install()
{
    # tools/deps.sh holds the one package list (Slurm, OpenMPI and PMIx are in it)
    # shellcheck source=tools/deps.sh
    . "$root/tools/deps.sh"
    deed_deps_ensure || die "installing the packages failed (tools/deps.sh)"
    for cmd in slurmctld slurmd sinfo srun sbatch scontrol; do
        command -v "$cmd" >/dev/null 2>&1 || die "$cmd is missing after the install"
    done
}

# The memory slurmd sees (MiB): the config must not claim more, or the node is drained.
real_memory()
{
    local m
    m=$(slurmd -C 2>/dev/null | sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' | sed -n 1p)
    if [ -z "$m" ]; then
        m=$(awk '/^MemTotal:/ { print int($2 / 1024) }' /proc/meminfo)
    fi
    echo "${m:-1024}"
}

write_conf()
{
    local cpus mem
    if [ -f "$conf" ] && ! grep -qF "$marker" "$conf"; then
        die "$conf exists and was not written by this script: not touching a real cluster's" \
            "configuration (move it away to use the test cluster)"
    fi
    mkdir -p "$conf_dir" "$dir/state" "$dir/spool" "$dir/log" || die "cannot create $dir"
    cpus=$(nproc)
    mem=$(real_memory)
    cat >"$conf.tmp" <<EOF
$marker
# Do not use outside a test machine: auth/none lets anyone run anything as anyone.
ClusterName=deedtest
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
AuthType=auth/none
CredType=cred/none
SlurmctldPort=6817
SlurmdPort=6818
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/affinity
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
MpiDefault=none
ReturnToService=2
SwitchType=switch/none
JobCompType=jobcomp/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MinJobAge=60
KillWait=5
InactiveLimit=0
SlurmctldTimeout=30
SlurmdTimeout=60
NodeName=$host CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
    mv "$conf.tmp" "$conf" || die "cannot write $conf"
}

# pid of a daemon from its pid file, if that process is alive and is the daemon
daemon_pid()
{
    local name=$1 pid
    pid=$(cat "$dir/$name.pid" 2>/dev/null) || return 1
    [ -n "$pid" ] && [ -r "/proc/$pid/comm" ] && [ "$(cat "/proc/$pid/comm")" = "$name" ] &&
        echo "$pid"
}

node_state()
{
    sinfo -h -n "$host" -o '%T' 2>/dev/null | sed -n 1p
}

do_wait()
{
    local deadline=$((SECONDS + wait_s)) state="" resumed=0
    while [ $SECONDS -lt $deadline ]; do
        state=$(node_state)
        case "$state" in
        idle | mixed | allocated)
            echo "cluster.sh: node $host is $state (partition debug)"
            return 0
            ;;
        down* | drain* | *drain)
            if [ $resumed = 0 ]; then
                scontrol update NodeName="$host" State=RESUME >/dev/null 2>&1
                resumed=1
            fi
            ;;
        esac
        sleep 0.5
    done
    echo "cluster.sh: node $host is not idle after ${wait_s}s (state: '${state:-no answer from slurmctld}')" >&2
    sinfo -R 2>&1 | sed 's/^/  sinfo -R: /' >&2
    for f in slurmctld slurmd; do
        echo "--- last lines of $dir/log/$f.log" >&2
        tail -n 15 "$dir/log/$f.log" 2>/dev/null >&2
    done
    return 1
}

do_start()
{
    need_root
    if ! command -v slurmctld >/dev/null 2>&1 || ! command -v slurmd >/dev/null 2>&1 ||
       ! command -v sinfo >/dev/null 2>&1; then
        do_install
    fi
    if daemon_pid slurmctld >/dev/null && daemon_pid slurmd >/dev/null; then
        do_wait
        return
    fi
    do_stop >/dev/null 2>&1
    write_conf
    # -c: start with no saved jobs (a test cluster); both daemonize and log to $dir/log
    slurmctld -c >>"$dir/log/slurmctld.out" 2>&1 || die "slurmctld failed to start" \
        "(see $dir/log/slurmctld.log and slurmctld.out)"
    slurmd >>"$dir/log/slurmd.out" 2>&1 || die "slurmd failed to start (see $dir/log/slurmd.log)"
    do_wait
}

do_stop()
{
    local pid any=0
    for d in slurmd slurmctld; do
        if pid=$(daemon_pid "$d"); then
            kill "$pid" 2>/dev/null
            any=1
            for _ in $(seq 1 50); do
                [ -d "/proc/$pid" ] || break
                sleep 0.2
            done
            if [ -d "/proc/$pid" ]; then
                kill -9 "$pid" 2>/dev/null
            fi
        fi
        rm -f "$dir/$d.pid"
    done
    if [ $any = 1 ]; then
        echo "cluster.sh: stopped"
    else
        echo "cluster.sh: not running"
    fi
}

do_status()
{
    local ok=0 pid
    for d in slurmctld slurmd; do
        if pid=$(daemon_pid "$d"); then
            echo "$d: running (pid $pid)"
        else
            echo "$d: not running"
            ok=1
        fi
    done
    if [ $ok = 0 ]; then
        sinfo 2>&1
        case "$(node_state)" in
        idle | mixed | allocated) ;;
        *) ok=1 ;;
        esac
    fi
    return $ok
}

case "${1:-}" in
install) need_root; do_install ;;
start) do_start ;;
stop) do_stop ;;
status) do_status ;;
wait) do_wait ;;
*)
    sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
    ;;
esac
