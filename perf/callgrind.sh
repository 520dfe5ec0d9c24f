#!/usr/bin/env bash
# perf/callgrind.sh — instructions per task, counted by valgrind's callgrind.
#
# usage: perf/callgrind.sh [build-dir] [--quick] [--tasks N] [--reps R]
#   build-dir  meson build directory (default: build); configured here if it does not exist
#   --tasks N  the smaller task count (default 2000; --quick: 500); the larger one is 3 N
#   --reps R   repetitions of each pair of runs; the median is reported (default 3; --quick 1)
#
# Wall-clock rates move with the load of a shared machine; instruction counts do not, so a
# regression in the task path shows here even on a noisy host (hardware counters are not
# available in this VM, hence valgrind). For each path it runs perf/bench_icount under
# `valgrind --tool=callgrind` with N and with 3N tasks and prints
#     (instructions(3N) - instructions(N)) / 2N
# so start-up, connection set-up and finalize cancel out. Every thread of the process is
# counted (submitting thread, event loop, workers); for the remote path both ranks are
# counted and added (rank 0 submits and waits, rank 1 runs the tasks).
#
# Determinism: a multithreaded runtime is not fully deterministic even under valgrind (which
# thread runs the loop, how many tasks one message batches depends on timing), so
# (1) the self cost of the functions in which threads wait or poll for work (sched_idle_wait,
# work_visible, loop_sleep, epoll_wait, UCX progress, ...: IDLE in perf/callgrind_count.py)
# is subtracted: it counts time, not work ("with_idle" keeps it); (2) each pair of runs is
# repeated and the median is reported, with min and max. Idle threads must also not spin for
# a time-dependent while, so the runs use
# DEED_SPIN_US=0 (sleep at once), DEED_WORKERS=1 and DEED_PIN=0; the remote runs raise
# DEED_HEARTBEAT_TIMEOUT_MS and DEED_BOOT_TIMEOUT so that ranks slowed down ~50x by valgrind
# are not declared dead, and use shared memory (UCX_TLS=posix,sysv,cma,self).
#
# Output (stdout), one JSON line per path:
#   {"bench":"callgrind","metric":"instructions_per_task","value":I,"unit":"instr/task",
#    "path":"local_pipelined"|"local_sync"|"remote","with_idle":..,"min":..,"max":..,
#    "reps":R,"tasks":[N,3N],"ranks":..,...}
# Exit status: 0 when every path produced its line, else 1.
set -uo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=build
quick=0
tasks=""
reps=""
while [ $# -gt 0 ]; do
    case "$1" in
    --quick) quick=1 ;;
    --tasks)
        [ $# -ge 2 ] || { echo "callgrind.sh: --tasks needs a value" >&2; exit 2; }
        tasks=$2
        shift
        ;;
    --reps)
        [ $# -ge 2 ] || { echo "callgrind.sh: --reps needs a value" >&2; exit 2; }
        reps=$2
        shift
        ;;
    -h | --help)
        sed -n '2,/^set -uo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
        exit 0
        ;;
    -*) echo "callgrind.sh: unknown option $1 (try --help)" >&2; exit 2 ;;
    *) build=$1 ;;
    esac
    shift
done
if [ -z "$tasks" ]; then
    tasks=$([ $quick = 1 ] && echo 500 || echo 2000)
fi
case "$tasks" in
'' | *[!0-9]*) echo "callgrind.sh: --tasks must be a positive integer, got '$tasks'" >&2; exit 2 ;;
esac
[ "$tasks" -ge 1 ] || { echo "callgrind.sh: --tasks must be at least 1" >&2; exit 2; }
if [ -z "$reps" ]; then
    reps=$([ $quick = 1 ] && echo 1 || echo 3)
fi
case "$reps" in
'' | *[!0-9]* | 0) echo "callgrind.sh: --reps must be a positive integer, got '$reps'" >&2; exit 2 ;;
esac
case "$build" in /*) ;; *) build="$root/$build" ;; esac

if ! command -v valgrind >/dev/null; then
    echo "callgrind.sh: valgrind not found (Debian package: valgrind)" >&2
    exit 1
fi
if [ ! -f "$build/build.ninja" ]; then
    meson setup "$build" "$root" --buildtype=debugoptimized >&2 || exit 1
fi
if ! ninja -C "$build" perf/bench_icount tools/deedrun >&2; then
    [ -x "$build/perf/bench_icount" ] && [ -x "$build/tools/deedrun" ] || exit 1
    echo "callgrind.sh: the build failed; using the binaries already in $build" >&2
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/deed-callgrind.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

export DEED_SPIN_US=0 DEED_WORKERS=1 DEED_PIN=0
export DEED_HEARTBEAT_TIMEOUT_MS=600000 DEED_BOOT_TIMEOUT=300
export UCX_TLS=posix,sysv,cma,self

icount=$build/perf/bench_icount
deedrun=$build/tools/deedrun
vg=(valgrind --tool=callgrind --dump-instr=no --collect-jumps=no)

# total MODE N TAG: one run under callgrind into $tmp/TAG.N (one cg.* file per rank); print
# the instruction totals (one number per rank)
total() {
    local mode=$1 n=$2 dir="$tmp/$3.$2" rc
    mkdir -p "$dir"
    if [ "$mode" = remote ]; then
        timeout 600 "$deedrun" -n 2 "${vg[@]}" --callgrind-out-file="$dir/cg.%q{DEED_RANK}" \
            "$icount" --mode remote --tasks "$n" >"$dir/out" 2>&1
    else
        timeout 600 "${vg[@]}" --callgrind-out-file="$dir/cg.0" \
            "$icount" --mode "$mode" --tasks "$n" >"$dir/out" 2>&1
    fi
    rc=$?
    # callgrind's own "Collected : N" line per process; [rank] prefixes from deedrun
    local totals
    totals=$(sed -n 's/.*== Collected : \([0-9][0-9]*\).*/\1/p' "$dir/out" | tr '\n' ' ')
    local want=1
    [ "$mode" = remote ] && want=2
    if [ $rc -ne 0 ] || [ "$(wc -w <<<"$totals")" -ne $want ]; then
        echo "callgrind.sh: bench_icount --mode $mode --tasks $n under callgrind failed" \
            "(status $rc); its output:" >&2
        tail -20 "$dir/out" | sed 's/^/  /' >&2
        return 1
    fi
    echo "$totals"
}

status=0
n1=$tasks
n2=$((3 * tasks))
for path in local_pipelined local_sync remote; do
    case $path in
    local_pipelined) mode=pipelined ;;
    local_sync) mode=sync ;;
    remote) mode=remote ;;
    esac
    echo "callgrind.sh: $path: $n1 and $n2 tasks under callgrind, $reps time(s)" >&2
    dirs=()
    for rep in $(seq "$reps"); do
        if ! total "$mode" "$n1" "$path.$rep" >/dev/null ||
            ! total "$mode" "$n2" "$path.$rep" >/dev/null
        then
            dirs=()
            break
        fi
        dirs+=("$tmp/$path.$rep.$n1" "$tmp/$path.$rep.$n2")
    done
    if [ ${#dirs[@]} = 0 ]; then
        status=1
        continue
    fi
    python3 "$root/perf/callgrind_count.py" "$path" "$n1" "$n2" "${dirs[@]}" || status=1
done
exit $status
