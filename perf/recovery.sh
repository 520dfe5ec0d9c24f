#!/usr/bin/env bash
# perf/recovery.sh — the recovery benchmark: completion time of a chain of tasks with a rank
# killed halfway, over the same chain without the kill; and failure-detection latency.
#
# usage: perf/recovery.sh [build-dir] [--quick]
#   build-dir  meson build directory (default: build); configured here if it does not exist
#   --quick    short chains, one repetition (a smoke run)
#
# For each UCX_TLS in {shared memory: posix,sysv,cma,self; tcp: tcp,self} it runs, in this
# invocation (see perf/bench_recovery.c for what each run measures):
#   (a) chains of TASKS tasks (default 40) of d = 10 ms and 100 ms, with small (8 B) and
#       large (8 MiB) links, placement alternating between ranks 1 and 2, rank 0 keeping the
#       history: REPS runs (default 3) of `deedrun -n 3 bench_recovery ...` (no failure),
#       then REPS of the same command as `deedrun -n 3 --keep-going --kill 2@MS ...`, where
#       MS aims at the middle of the first task at or after the chain's middle that runs on
#       rank 2 (task index k = TASKS/2, made odd), from the no-failure runs' medians:
#       start_ms + (k + 0.5) x chain_s / TASKS (start_ms: from the process's start, which is
#       where deedrun's --kill clock starts, to the first submit). So rank 2 dies halfway
#       through the chain, in the middle of one of its tasks, which has to run again. Then
#       the same for large links all placed on rank 2 (placement "victim": its death loses
#       every link so far, which lineage has to re-create one after another);
#   (b) `deedrun -n 5 --keep-going bench_recovery --mode detect`: ranks 4..1 are killed in
#       turn and rank 0 times until its membership declares each dead; over tcp also with
#       --own-host (every rank its own host name: no pidfds, the transport's error path).
# and prints JSON lines on stdout (everything else goes to stderr):
#   {"bench":"recovery","metric":"completion_ratio","value":with/without,"d_ms":..,
#    "object":"small|large","with_failure_s":..,"without_s":..,"retried":..,"reconstructed":..,
#    "target":1.3,"pass":..,...}
#       value = median of the with-failure times / median of the no-failure times (seconds
#       from the first submit until rank 0 read back and verified every link); "ratios" =
#       each with-failure time over the median no-failure time; "retried"/"reconstructed" = rank 0's tasks_retried and
#       reconstructions in the median with-failure run; "kill_ms" = the --kill time;
#       "failed_runs" = runs with the failure that failed or were stuck (over 4x the time
#       without plus 20 s; they are left out of the ratio and make the exit status 1);
#       "ranks_dead_runs" = ranks declared dead in each run (1 unless the failure took
#       another rank down); "dead_at_frac" = when rank 0 saw the death, as a fraction of the no-failure chain
#       time (median run); "retried_runs"/"reconstructed_runs" = those counts in every
#       completed run; "killed" = whether rank 2 died before the chain ended in every run. The target
#       (<= 1.3x) applies at d = 100 ms; lines for d = 10 ms carry "target":null,"pass":null.
#   {"bench":"recovery","metric":"detection_latency","value":ms,"unit":"ms","tls":..,
#    "detector":"pidfd|transport",...} (median of the samples), and one
#    "detection_latency_sample" line per killed rank.
#
# Environment: DEED_STORE_SIZE defaults to 1G here; TASKS and REPS override the counts;
# other DEED_* variables pass through.
# Exit status: 0 when every run produced its lines (targets missed do not count), else 1.
set -uo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=build
quick=0
for a in "$@"; do
    case "$a" in
    --quick) quick=1 ;;
    -h | --help)
        sed -n '2,/^set -uo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
        exit 0
        ;;
    -*) echo "recovery.sh: unknown option $a (try --help)" >&2; exit 2 ;;
    *) build=$a ;;
    esac
done
case "$build" in /*) ;; *) build="$root/$build" ;; esac

if ! command -v python3 >/dev/null; then
    echo "recovery.sh: python3 not found" >&2
    exit 1
fi
if [ ! -f "$build/build.ninja" ]; then
    meson setup "$build" "$root" --buildtype=debugoptimized >&2 || exit 1
fi
ninja -C "$build" perf/bench_recovery tools/deedrun >&2 || exit 1

export DEED_STORE_SIZE=${DEED_STORE_SIZE:-1G}
if [ $quick = 1 ]; then
    tasks=${TASKS:-12} reps=${REPS:-1}
else
    tasks=${TASKS:-40} reps=${REPS:-3}
fi
deedrun=$build/tools/deedrun
bench=$build/perf/bench_recovery

tmp=$(mktemp -d "${TMPDIR:-/tmp}/deed-recovery.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
status=0

# run OUT DEEDRUN-ARGS... -- BENCH-ARGS...: rank 0's JSON lines to OUT, the rest to stderr
run() {
    local out=$1 rc
    shift
    local dargs=()
    while [ "$1" != "--" ]; do dargs+=("$1"); shift; done
    shift
    echo "recovery.sh: UCX_TLS=$UCX_TLS: deedrun ${dargs[*]} bench_recovery $*" >&2
    timeout "${limit:-300}" "$deedrun" "${dargs[@]}" "$bench" "$@" >"$tmp/run.out"
    rc=$?
    : >"$out"
    while IFS= read -r line; do
        case "$line" in
        "[0] {"*) printf '%s\n' "${line#\[0\] }" >>"$out" ;;
        *) printf '%s\n' "$line" >&2 ;;
        esac
    done <"$tmp/run.out"
    if [ $rc -ne 0 ]; then
        echo "recovery.sh: deedrun ${dargs[*]} bench_recovery $* (UCX_TLS=$UCX_TLS) failed" \
            "with status $rc$([ $rc = 124 ] && echo " (timed out after ${limit:-300} s)")" >&2
        return 1
    fi
    return 0
}

# field FILE KEY: the value of KEY in the chain_time line of FILE
field() {
    python3 -c 'import json, sys
for l in open(sys.argv[1]):
    o = json.loads(l)
    if o.get("metric") == "chain_time":
        print(o[sys.argv[2]]); break
else:
    sys.exit(1)' "$1" "$2"
}

# chain D SIZE PLACEMENT: REPS runs without failure, then REPS with rank 2 killed halfway
# (aimed with the medians of the runs without failure), then the ratio line
chain() {
    local d=$1 size=$2 place=$3 i kill_ms
    local args=(--tasks "$tasks" --d-ms "$d" --size "$size" --placement "$place")
    : >"$tmp/base.all"
    : >"$tmp/fail.all"
    for i in $(seq "$reps"); do
        run "$tmp/base" -n 3 -- "${args[@]}" || return 1
        grep '"metric":"chain_time"' "$tmp/base" >>"$tmp/base.all" || return 1
    done
    # the middle of the first task at or after the chain's middle that runs on rank 2 (odd
    # 0-based index under alternate placement), counted from the start of rank 2's process
    kill_ms=$(python3 -c 'import json, statistics, sys
b = [json.loads(l) for l in open(sys.argv[1])]
n = b[0]["tasks"]
k = n // 2
if sys.argv[2] == "alternate" and k % 2 == 0:
    k += 1
per = statistics.median(o["chain_s"] for o in b) / n
print(int(round(statistics.median(o["start_ms"] for o in b) + (k + 0.5) * per * 1000)))' \
        "$tmp/base.all" "$place") || return 1
    # a run with the failure that takes over 4x the no-failure time plus 20 s is stuck
    local limit
    limit=$(python3 -c 'import json, statistics, sys
print(int(20 + 4 * statistics.median(json.loads(l)["value"] + json.loads(l)["start_ms"] / 1e3
                                     for l in open(sys.argv[1]))))' "$tmp/base.all")
    local failed=0
    for i in $(seq "$reps"); do
        if limit=$limit run "$tmp/fail" -n 3 --keep-going --kill "2@$kill_ms" -- "${args[@]}" &&
            grep '"metric":"chain_time"' "$tmp/fail" >>"$tmp/fail.all"; then
            continue
        fi
        failed=$((failed + 1))
    done
    python3 -c 'import json, sys
b = [json.loads(l) for l in open(sys.argv[1])]
f = [json.loads(l) for l in open(sys.argv[2])]
if not f or not all(o["ok"] for o in b + f):
    sys.exit("recovery.sh: no chain with the failure completed, or one was not verified")
for i, y in enumerate(f):
    print(json.dumps({"base": b[i], "fail": y, "kill_ms": int(sys.argv[3]),
                      "failed_runs": int(sys.argv[4])}))' \
        "$tmp/base.all" "$tmp/fail.all" "$kill_ms" "$failed" >"$tmp/pairs" || return 1
    python3 - "$tmp/pairs" "$UCX_TLS" "$tmp/base.all" <<'EOF'
import json, statistics, sys
pairs = [json.loads(l) for l in open(sys.argv[1])]
tls = sys.argv[2]
bases = [json.loads(l) for l in open(sys.argv[3])]
without = statistics.median(o["value"] for o in bases)
with_f = statistics.median(p["fail"]["value"] for p in pairs)
# the with-failure run whose time is the median (lower median for even counts)
runs = sorted(pairs, key=lambda p: p["fail"]["value"])
mid = runs[(len(runs) - 1) // 2]
f = mid["fail"]
ratio = with_f / without
d = f["d_ms"]
target = 1.3 if d >= 100 else None
o = {"bench": "recovery", "metric": "completion_ratio", "value": round(ratio, 4),
     "unit": "x", "d_ms": d, "object": f["object"], "with_failure_s": round(with_f, 4),
     "without_s": round(without, 4), "retried": f["retried"],
     "reconstructed": f["reconstructed"], "target": target,
     "pass": (ratio <= target) if target is not None else None,
     "tasks": f["tasks"], "size": f["size"], "placement": f["placement"],
     "ratios": [round(p["fail"]["value"] / without, 4) for p in pairs],
     "kill_ms": mid["kill_ms"],
     "dead_at_frac": round(f["dead_at_s"] / statistics.median(o["chain_s"] for o in bases),
                           3) if f["dead_at_s"] >= 0 else None,
     "retried_runs": [p["fail"]["retried"] for p in pairs],
     "reconstructed_runs": [p["fail"]["reconstructed"] for p in pairs],
     "killed": all(p["fail"]["ranks_dead"] >= 1 for p in pairs),
     "ranks_dead_runs": [p["fail"]["ranks_dead"] for p in pairs],
     "failed_runs": pairs[0]["failed_runs"],
     "history_s": round(f["history_s"], 4), "workers": f["workers"], "reps": len(pairs),
     "tls": tls}
print(json.dumps(o, separators=(",", ":")))
if any(p["fail"]["ranks_dead"] > 1 for p in pairs):
    print("recovery.sh: another rank died besides rank 2 (d = %g ms, %s): see the log above"
          % (d, f["object"]), file=sys.stderr)
if o["failed_runs"]:
    print("recovery.sh: %d run(s) with the failure did not complete (d = %g ms, %s); the "
          "ratio uses the others" % (o["failed_runs"], d, f["object"]), file=sys.stderr)
    sys.exit(1)
if not o["killed"]:
    print("recovery.sh: rank 2 was not killed during every chain (d = %g ms, %s)" % (d, f["object"]),
          file=sys.stderr)
EOF
}

for tls in posix,sysv,cma,self tcp,self; do
    export UCX_TLS=$tls
    for d in 10 100; do
        for size in 8 8M; do
            chain "$d" "$size" alternate || status=1
        done
    done
    chain 100 8M victim || status=1

    detectors=(pidfd)
    [ "$tls" = tcp,self ] && detectors+=(transport)
    for det in "${detectors[@]}"; do
        extra=()
        [ "$det" = transport ] && extra=(--own-host)
        if run "$tmp/detect" -n 5 --keep-going -- --mode detect "${extra[@]}"; then
            cat "$tmp/detect"
            grep -q '"metric":"detection_latency"' "$tmp/detect" || status=1
        else
            status=1
        fi
    done
done
exit $status
