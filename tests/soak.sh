#!/usr/bin/env bash
# tests/soak.sh [jobs] [ranks] — fault-tolerance soak: K random DAG jobs (the rank program
# `test_fault --rank soak SEED`: ~2,500 tasks of a seeded random DAG mixing small and 1-8 MiB
# objects, every result compared with a sequential computation in the driver), each started
# by deedrun with a random non-zero rank SIGKILLed at a random time (--kill R@MS). Jobs
# alternate between UCX shared memory and tcp. Prints one line per job and a summary
# "soak: P of K jobs passed"; exits non-zero if any job failed (its log is kept in
# $SOAK_LOGS, default /tmp/deed-soak).
#
# Environment: BUILD (build directory holding tests/test_fault and tools/deedrun; default:
# the first of build-fault, build that has them), SOAK_SEED (first seed; default random),
# SOAK_TLS (shm, tcp or both; default both), SOAK_TIMEOUT (seconds per job; default 180).
set -u
jobs=${1:-20}
ranks=${2:-4}
here=$(cd "$(dirname "$0")/.." && pwd)
if [ -z "${BUILD:-}" ]; then
    for b in build build-fault; do
        if [ -x "$here/$b/tests/test_fault" ] && [ -x "$here/$b/tools/deedrun" ]; then
            BUILD=$here/$b
            break
        fi
    done
fi
if [ -z "${BUILD:-}" ] || [ ! -x "$BUILD/tests/test_fault" ] || [ ! -x "$BUILD/tools/deedrun" ]; then
    echo "soak: no build with tests/test_fault and tools/deedrun (set BUILD)" >&2
    exit 2
fi
if ! [[ $jobs =~ ^[0-9]+$ ]] || [ "$jobs" -lt 1 ] || ! [[ $ranks =~ ^[0-9]+$ ]] || [ "$ranks" -lt 2 ]; then
    echo "usage: $0 [jobs >= 1] [ranks >= 2]" >&2
    exit 2
fi
seed0=${SOAK_SEED:-$(( (RANDOM << 15 | RANDOM) ))}
tlsmode=${SOAK_TLS:-both}
timeout_s=${SOAK_TIMEOUT:-180}
logs=${SOAK_LOGS:-/tmp/deed-soak}
mkdir -p "$logs"
export DEED_PIN=0 DEED_WORKERS=4 DEED_STORE_SIZE=512M DEED_HEARTBEAT_TIMEOUT_MS=10000
export DEED_LOG=${DEED_LOG:-warn} FT_GET_TIMEOUT_S=${FT_GET_TIMEOUT_S:-30}
RANDOM=$seed0
pass=0
t_all=$SECONDS
echo "soak: $jobs jobs of $ranks ranks, seeds from $seed0, build $BUILD"
for ((j = 0; j < jobs; j++)); do
    seed=$((seed0 + j))
    case $tlsmode in
    shm) tls=shm ;;
    tcp) tls=tcp ;;
    *) if ((j % 2)); then tls=tcp; else tls=shm; fi ;;
    esac
    if [ "$tls" = shm ]; then export UCX_TLS=posix,sysv,cma,self; else export UCX_TLS=tcp,self; fi
    victim=$((1 + RANDOM % (ranks - 1)))
    ms=$((300 + RANDOM % 1800))
    log=$logs/job-$seed.log
    t0=$(date +%s.%N)
    timeout -k 10 "$timeout_s" "$BUILD/tools/deedrun" -n "$ranks" --kill "$victim@$ms" \
        "$BUILD/tests/test_fault" --rank soak "$seed" >"$log" 2>&1
    rc=$?
    dt=$(echo "$(date +%s.%N) - $t0" | bc)
    ok=1
    [ $rc -eq 0 ] || ok=0
    grep -q '^\[0\] soak: PASS' "$log" || ok=0
    for ((r = 0; r < ranks; r++)); do
        [ $r -eq $victim ] && continue
        grep -q "^\[$r\] soak: rank $r finalized" "$log" || ok=0
    done
    killed=$(grep -c "deedrun: rank $victim killed by signal 9" "$log")
    stats=$(grep -o 'tasks_retried=[0-9]* reconstructions=[0-9]* ranks_dead=[0-9]*' "$log" | tail -1)
    if [ $ok -eq 1 ]; then
        pass=$((pass + 1))
        verdict=pass
        rm -f "$log"
    else
        verdict="FAIL (exit $rc; log $log)"
    fi
    printf 'soak: job %d seed %d %s --kill %d@%d: %s in %.1f s (victim killed: %s; %s)\n' \
        "$j" "$seed" "$tls" "$victim" "$ms" "$verdict" "$dt" \
        "$([ "$killed" -gt 0 ] && echo yes || echo 'no, it ended first')" "${stats:-no stats}"
done
echo "soak: $pass of $jobs jobs passed ($((SECONDS - t_all)) s)"
[ $pass -eq "$jobs" ]
