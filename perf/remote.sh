#!/usr/bin/env bash
# perf/remote.sh — the two-rank benchmark against the UCX limit of the same transports.
#
# usage: perf/remote.sh [build-dir] [--quick]
#   build-dir  meson build directory (default: build); configured here if it does not exist
#   --quick    small counts (a smoke run)
#
# For each UCX_TLS in {shared memory: posix,sysv,cma,self; tcp: tcp,self} it runs, in this
# invocation:
#   (a) ucx_perftest with the same UCX_TLS, server in the background on a free local port,
#       client on localhost: ucp_am_bw with 8-byte messages (message rate), ucp_am_lat with
#       8-byte messages (latency), ucp_get bandwidth at 64K..64M;
#   (b) deedrun -n 2 bench_remote (see perf/bench_remote.c);
# and prints JSON lines on stdout (everything else goes to stderr):
#   bench "ucx_perftest"  the baseline, parsed from ucx_perftest's "Final:" line:
#       ucp_am_bw_msg_rate      overall message rate (msg/s)
#       ucp_am_lat_round_trip   ROUND TRIP in us: ucx_perftest prints half a round trip for
#                               latency tests, so value = 2 x its 50th percentile ("typical");
#                               "mean_round_trip" = 2 x its overall average (noisy: outliers)
#       ucp_get_bandwidth       overall bandwidth in GB/s (1e9 bytes/s; ucx_perftest prints
#                               MB/s meaning MiB/s), one line per size
#   bench "remote"        bench_remote's lines (rank 0's stdout, deedrun's "[0] " removed)
#   bench "ratio"         deed against the baseline, with "target", "cmp", "pass":
#       tasks_per_s_over_am_msg_rate   remote tasks/s (best) / ucp_am_bw msg/s    >= 0.25
#       sync_rtt_over_2_am_rtt_plus_2us  remote sync round trip (mean) /
#                                      (2 x ucp_am_lat round trip (typical) + 2 us)  <= 1.0
#                                      ("p50_ratio": the same with deed's p50)
#       pull_16m_over_get_16m          pull GB/s at 16 MiB (best) / ucp_get GB/s at 16 MiB
#                                      >= 0.9 ("median_ratio": with deed's median)
# Every line carries "tls". ucx_perftest runs without peer error handling (its default);
# deed's UCX transport uses it (see transports/ucx/ucx.c: under it UCX 1.13 drops cma).
#
# Environment: DEED_STORE_SIZE defaults to 1G here; other DEED_* variables pass through.
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
    -*) echo "remote.sh: unknown option $a (try --help)" >&2; exit 2 ;;
    *) build=$a ;;
    esac
done
case "$build" in /*) ;; *) build="$root/$build" ;; esac

for prog in ucx_perftest python3; do
    if ! command -v "$prog" >/dev/null; then
        echo "remote.sh: $prog not found" >&2
        exit 1
    fi
done

if [ ! -f "$build/build.ninja" ]; then
    meson setup "$build" "$root" --buildtype=debugoptimized >&2 || exit 1
fi
ninja -C "$build" perf/bench_remote tools/deedrun >&2 || exit 1

export DEED_STORE_SIZE=${DEED_STORE_SIZE:-1G}

tmp=$(mktemp -d "${TMPDIR:-/tmp}/deed-remote.XXXXXX")
server_pid=""
stop_server() {
    if [ -n "$server_pid" ]; then
        kill "$server_pid" 2>/dev/null
        wait "$server_pid" 2>/dev/null
        server_pid=""
    fi
}
cleanup() {
    stop_server
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Wait until something listens on TCP port $1 (without connecting: the server takes the first
# connection as its client) while process $2 lives.
wait_listen() {
    local hex
    hex=$(printf '%04X' "$1")
    for _ in $(seq 200); do
        if awk -v p=":$hex" '$4 == "0A" && substr($2, length($2) - 4) == p { f = 1 } END { exit !f }' \
            /proc/net/tcp /proc/net/tcp6 2>/dev/null; then
            return 0
        fi
        kill -0 "$2" 2>/dev/null || return 1
        sleep 0.05
    done
    return 1
}

# perftest TEST SIZE ITERS WARMUP: run one ucx_perftest client against a fresh server; print
# the numbers of its "Final:" line (iters p50 avg overall bw_avg bw_overall mr_avg mr_overall).
perftest() {
    local test=$1 size=$2 iters=$3 warm=$4 port out rc
    port=$(free_port) || return 1
    timeout 300 ucx_perftest -p "$port" >"$tmp/server.log" 2>&1 &
    server_pid=$!
    if ! wait_listen "$port" "$server_pid"; then
        echo "remote.sh: ucx_perftest server on port $port did not start:" >&2
        sed 's/^/  /' "$tmp/server.log" >&2
        stop_server
        return 1
    fi
    out=$(timeout 240 ucx_perftest localhost -p "$port" -t "$test" -s "$size" -n "$iters" \
        -w "$warm" 2>&1)
    rc=$?
    stop_server
    local final
    final=$(printf '%s\n' "$out" | awk '$1 == "Final:" { $1 = ""; print }' | tail -1)
    if [ $rc -ne 0 ] || [ -z "$final" ]; then
        echo "remote.sh: ucx_perftest -t $test -s $size (UCX_TLS=$UCX_TLS) failed (status $rc):" >&2
        printf '%s\n' "$out" | tail -20 | sed 's/^/  /' >&2
        return 1
    fi
    echo "$final"
}

emit() { # print a JSON line and keep it for the ratios
    printf '%s\n' "$1"
    printf '%s\n' "$1" >>"$tmp/lines"
}

if [ $quick = 1 ]; then
    bw_iters=200000 lat_iters=20000 get_bytes=$((256 << 20)) bench_args=(--quick)
else
    bw_iters=2000000 lat_iters=30000 get_bytes=$((2 << 30)) bench_args=()
fi
sizes=(65536 262144 1048576 4194304 16777216 67108864)
status=0

for tls in posix,sysv,cma,self tcp,self; do
    export UCX_TLS=$tls
    : >"$tmp/lines"
    echo "remote.sh: UCX_TLS=$tls: ucx_perftest" >&2

    # (a) the transport's limit
    if r=$(perftest ucp_am_bw 8 "$bw_iters" $((bw_iters / 10))); then
        read -r n p50 avg overall bwa bwo mra mro <<<"$r"
        emit "{\"bench\":\"ucx_perftest\",\"metric\":\"ucp_am_bw_msg_rate\",\"value\":$mro,\"unit\":\"msg/s\",\"size\":8,\"tls\":\"$tls\",\"n\":$n}"
    else
        status=1
    fi
    if r=$(perftest ucp_am_lat 8 "$lat_iters" $((lat_iters / 10))); then
        read -r n p50 avg overall bwa bwo mra mro <<<"$r"
        emit "$(python3 -c 'import sys; p50, ov, n, tls = float(sys.argv[1]), float(sys.argv[2]), sys.argv[3], sys.argv[4]
print("{\"bench\":\"ucx_perftest\",\"metric\":\"ucp_am_lat_round_trip\",\"value\":%.4f,\"unit\":\"us\",\"mean_round_trip\":%.4f,\"half_round_trip_p50\":%.4f,\"half_round_trip_mean\":%.4f,\"note\":\"ucx_perftest prints half a round trip; value = 2 x its p50\",\"size\":8,\"tls\":\"%s\",\"n\":%s}" % (2 * p50, 2 * ov, p50, ov, tls, n))' "$p50" "$overall" "$n" "$tls")"
    else
        status=1
    fi
    for s in "${sizes[@]}"; do
        it=$((get_bytes / s))
        [ $it -gt 10000 ] && it=10000
        [ $it -lt 8 ] && it=8
        w=$((it / 10))
        [ $w -lt 2 ] && w=2
        if r=$(perftest ucp_get "$s" "$it" "$w"); then
            read -r n p50 avg overall bwa bwo mra mro <<<"$r"
            emit "$(python3 -c 'import sys; bw, s, n, tls = float(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
print("{\"bench\":\"ucx_perftest\",\"metric\":\"ucp_get_bandwidth\",\"value\":%.3f,\"unit\":\"GB/s\",\"size\":%s,\"tls\":\"%s\",\"n\":%s}" % (bw * 1048576 / 1e9, s, tls, n))' "$bwo" "$s" "$n" "$tls")"
        else
            status=1
        fi
    done

    # (b) deed
    echo "remote.sh: UCX_TLS=$tls: deedrun -n 2 bench_remote ${bench_args[*]}" >&2
    "$build/tools/deedrun" -n 2 "$build/perf/bench_remote" "${bench_args[@]}" >"$tmp/deed.out"
    rc=$?
    while IFS= read -r line; do
        case "$line" in
        "[0] {"*) emit "${line#\[0\] }" ;;
        *) printf '%s\n' "$line" >&2 ;;
        esac
    done <"$tmp/deed.out"
    if [ $rc -ne 0 ]; then
        echo "remote.sh: deedrun -n 2 bench_remote (UCX_TLS=$tls) failed with status $rc" >&2
        status=1
    fi

    # ratios
    python3 - "$tmp/lines" "$tls" <<'EOF' || status=1
import json, sys

lines = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
tls = sys.argv[2]
def find(bench, metric, size=None):
    for o in lines:
        if o["bench"] == bench and o["metric"] == metric and (size is None or o.get("size") == size):
            return o
    return None

def ratio(metric, value, target, cmp, **extra):
    ok = value >= target if cmp == ">=" else value <= target
    o = {"bench": "ratio", "metric": metric, "value": round(value, 4), "unit": "x",
         "target": target, "cmp": cmp, "pass": ok}
    o.update(extra)
    o["tls"] = tls
    print(json.dumps(o, separators=(",", ":")))

missing = []
tps, mr = find("remote", "tasks_per_s_pipelined"), find("ucx_perftest", "ucp_am_bw_msg_rate")
if tps and mr:
    ratio("tasks_per_s_over_am_msg_rate", tps["value"] / mr["value"], 0.25, ">=",
          tasks_per_s=tps["value"], am_msg_rate=mr["value"])
else:
    missing.append("tasks_per_s_over_am_msg_rate")
rt, lat = find("remote", "sync_round_trip"), find("ucx_perftest", "ucp_am_lat_round_trip")
if rt and lat:
    lim = 2 * lat["value"] + 2.0
    ratio("sync_rtt_over_2_am_rtt_plus_2us", rt["value"] / lim, 1.0, "<=",
          p50_ratio=round(rt["p50"] / lim, 4), sync_rtt_us=rt["value"], limit_us=round(lim, 4))
else:
    missing.append("sync_rtt_over_2_am_rtt_plus_2us")
pull, get = find("remote", "pull_bandwidth", 16 << 20), find("ucx_perftest", "ucp_get_bandwidth", 16 << 20)
if pull and get:
    ratio("pull_16m_over_get_16m", pull["value"] / get["value"], 0.9, ">=",
          median_ratio=round(pull["median"] / get["value"], 4), pull_gbs=pull["value"],
          get_gbs=get["value"], size=16 << 20)
else:
    missing.append("pull_16m_over_get_16m")
if missing:
    print("remote.sh: no figures for %s (UCX_TLS=%s)" % (", ".join(missing), tls), file=sys.stderr)
    sys.exit(1)
EOF
done
exit $status
