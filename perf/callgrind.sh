#!/usr/bin/env bash
# perf/callgrind.sh — instructions per task, counted by valgrind's callgrind.
#
# usage: perf/callgrind.sh [build-dir] [--quick] [--tasks N]
#   build-dir  meson build directory (default: build); configured here if it does not exist
#   --tasks N  the smaller task count (default 2000; --quick: 500); the larger one is 3 N
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
# Determinism: idle threads must not spin for a time-dependent while, so the runs use
# DEED_SPIN_US=0 (sleep at once), DEED_WORKERS=1 and DEED_PIN=0; the remote runs raise
# DEED_HEARTBEAT_TIMEOUT_MS and DEED_BOOT_TIMEOUT so that ranks slowed down ~50x by valgrind
# are not declared dead, and use shared memory (UCX_TLS=posix,sysv,cma,self).
#
# Output (stdout), one JSON line per path:
#   {"bench":"callgrind","metric":"instructions_per_task","value":I,"unit":"instr/task",
#    "path":"local_pipelined"|"local_sync"|"remote","tasks":[N,3N],"totals":[..],...}
# Exit status: 0 when every path produced its line, else 1.
set -uo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=build
quick=0
tasks=""
while [ $# -gt 0 ]; do
    case "$1" in
    --quick) quick=1 ;;
    --tasks)
        [ $# -ge 2 ] || { echo "callgrind.sh: --tasks needs a value" >&2; exit 2; }
        tasks=$2
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
case "$build" in /*) ;; *) build="$root/$build" ;; esac

if ! command -v valgrind >/dev/null; then
    echo "callgrind.sh: valgrind not found (Debian package: valgrind)" >&2
    exit 1
fi
if [ ! -f "$build/build.ninja" ]; then
    meson setup "$build" "$root" --buildtype=debugoptimized >&2 || exit 1
fi
ninja -C "$build" perf/bench_icount tools/deedrun >&2 || exit 1

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

# total MODE N: print the instruction totals of one run (one number per rank, space-separated)
total() {
    local mode=$1 n=$2 dir="$tmp/$1.$2" rc
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
    echo "callgrind.sh: $path: $n1 and $n2 tasks under callgrind" >&2
    if ! t1=$(total $mode $n1) || ! t2=$(total $mode $n2); then
        status=1
        continue
    fi
    python3 - "$path" "$n1" "$n2" "$t1" "$t2" <<'EOF' || status=1
import json, sys
path, n1, n2 = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
t1 = [int(x) for x in sys.argv[4].split()]
t2 = [int(x) for x in sys.argv[5].split()]
per = (sum(t2) - sum(t1)) / (n2 - n1)
o = {"bench": "callgrind", "metric": "instructions_per_task", "value": round(per, 1),
     "unit": "instr/task", "path": path, "tasks": [n1, n2], "totals": [sum(t1), sum(t2)],
     "workers": 1, "spin_us": 0}
if len(t1) > 1:
    o["per_rank"] = [round((b - a) / (n2 - n1), 1) for a, b in zip(t1, t2)]
    o["tls"] = "posix,sysv,cma,self"
print(json.dumps(o, separators=(",", ":")))
EOF
done
exit $status
