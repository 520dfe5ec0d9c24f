#!/usr/bin/env bash
# tools/test.sh — the whole test suite, exactly as CI runs it (.ci/run calls this script).
#
# usage: tools/test.sh [--no-asan] [--no-install] [--no-slurm] [--no-rxe] [--]
#                      [meson test arguments...]
#
#   1. installs missing Debian packages (tools/deps.sh; silent when nothing is missing);
#   2. build/       (debugoptimized, -Dwerror=true): configure, compile, meson test;
#   3. build-asan/  (AddressSanitizer + UndefinedBehaviorSanitizer, leak checking on, smaller
#                   stress test): configure, compile, meson test again;
#   4. tests/install/run.sh: install build/ into a temporary prefix and build and run a
#      program against it through pkg-config;
#   5. slurm: slurm/cluster.sh start (a local one-host Slurm cluster; root only), then
#      tests/slurm/run.sh build/ (sbatch, srun with the TCP and PMIx bootstraps, failure
#      cases, mpirun of the MPI example), then slurm/cluster.sh stop (unless it was running
#      before);
#   6. rxe: tests/rxe/vm.sh --build build/ boots a throw-away soft-RoCE VM (QEMU, Debian
#      kernel, rdma_rxe) and runs test_verbs and the multi-rank scenarios over the verbs
#      transport and over UCX rc_verbs in it (a few minutes under TCG). SKIP where the VM
#      cannot be set up (qemu or the kernel package cannot be installed).
#
# Every stage runs even when an earlier one failed (the install test needs build/ to
# compile). The script ends with a summary and exits non-zero if anything failed.
# Existing build directories are reconfigured, never set up from scratch.
#
# Arguments after the options go to both `meson test` runs, e.g.
#   tools/test.sh --no-asan test_store        (one suite, normal build only)
#
# Environment: DEED_BUILD (default build), DEED_BUILD_ASAN (default build-asan) name the
# build directories; DEED_SKIP_DEPS=1 skips the package check.

set -uo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root" || exit 1
# shellcheck source=tools/deps.sh
. tools/deps.sh

usage()
{
    sed -n '2,31p' "$0" | sed 's/^# \{0,1\}//'
}

run_asan=1
run_install=1
run_slurm=1
run_rxe=1
while [ $# -gt 0 ]; do
    case "$1" in
    --no-asan) run_asan=0 ;;
    --no-install) run_install=0 ;;
    --no-slurm) run_slurm=0 ;;
    --no-rxe) run_rxe=0 ;;
    -h | --help)
        usage
        exit 0
        ;;
    --)
        shift
        break
        ;;
    -*)
        # Anything else that looks like an option belongs to meson test.
        break
        ;;
    *) break ;;
    esac
    shift
done
test_args=("$@")

build=${DEED_BUILD:-build}
build_asan=${DEED_BUILD_ASAN:-build-asan}

asan_opts=(--buildtype=debugoptimized -Dwerror=false "-Db_sanitize=address,undefined"
    -Db_lundef=false -Dstress_tasks=200000)
# The sanitizers slow the code down 2-5x: give every test three times its timeout there.
asan_test_opts="--timeout-multiplier 3"
asan_env=(ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
    UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1)

# Summary rows and totals.
summary=()
total_pass=0
total_fail=0
total_skip=0
any_failed=0

banner()
{
    printf '\n==> %s\n' "$*"
}

# record STAGE STATUS DETAIL SECONDS
record()
{
    summary+=("$(printf '%-11s %-5s %-52s %5ss' "$1" "$2" "$3" "$4")")
    if [ "$2" = FAIL ]; then
        any_failed=1
    fi
}

# Count the results of the last `meson test` in DIR: prints "pass fail skip". Reads every
# meson-logs/testlog*.json (a --wrapper or --setup changes the name); the caller removes
# them before running the tests.
count_results()
{
    python3 - "$1"/meson-logs/testlog*.json <<'EOF'
import json, os, sys
p = f = s = 0
for path in sys.argv[1:]:
    if not os.path.isfile(path):
        continue
    with open(path) as fh:
        for line in fh:
            line = line.strip()
            if not line:
                continue
            try:
                r = json.loads(line).get("result", "")
            except ValueError:
                continue
            if r in ("OK", "EXPECTEDFAIL"):
                p += 1
            elif r == "SKIP":
                s += 1
            else:
                f += 1
print(p, f, s)
EOF
}

# build_and_test STAGE DIR "ENV..." "MESON-TEST-OPTIONS..." MESON-SETUP-OPTIONS...
# Returns 0 if DIR compiled (whatever the tests said), 1 if it did not.
build_and_test()
{
    local stage=$1 dir=$2 envs=$3 topts=$4
    shift 4
    local start=$SECONDS rc p f s

    banner "$stage: configure $dir/ ($*)"
    if ! deed_configure "$dir" "$@"; then
        record "$stage" FAIL "meson setup failed ($dir/)" $((SECONDS - start))
        total_fail=$((total_fail + 1))
        return 1
    fi
    banner "$stage: compile $dir/"
    if ! meson compile -C "$dir"; then
        record "$stage" FAIL "compile failed ($dir/)" $((SECONDS - start))
        total_fail=$((total_fail + 1))
        return 1
    fi

    banner "$stage: meson test -C $dir ${envs:+(with $envs)}"
    rm -f "$dir"/meson-logs/testlog*.json
    # shellcheck disable=SC2086 # $envs and $topts are lists of words
    env $envs meson test -C "$dir" --print-errorlogs $topts "${test_args[@]}"
    rc=$?
    read -r p f s < <(count_results "$dir")
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
        f=1 # meson test itself failed (bad arguments, no build, ...)
    fi
    total_pass=$((total_pass + p))
    total_fail=$((total_fail + f))
    total_skip=$((total_skip + s))
    local detail="$p passed, $f failed, $s skipped ($dir/)"
    if [ $((p + f + s)) -eq 0 ]; then
        # A suite that runs nothing is broken (or the test names given match nothing).
        detail="no tests ran ($dir/)"
        total_fail=$((total_fail + 1))
        rc=1
    fi
    if [ "$rc" -ne 0 ] || [ "$f" -ne 0 ]; then
        record "$stage" FAIL "$detail" $((SECONDS - start))
    else
        record "$stage" PASS "$detail" $((SECONDS - start))
    fi
    return 0
}

start_all=$SECONDS

banner "dependencies (tools/deps.sh)"
if deed_deps_ensure; then
    echo "all packages present"
else
    record deps FAIL "could not install the missing packages" 0
    total_fail=$((total_fail + 1))
fi

build_ok=0
if build_and_test build "$build" "" "" "${DEED_BUILD_OPTS[@]}"; then
    build_ok=1
fi

if [ "$run_asan" = 1 ]; then
    build_and_test asan+ubsan "$build_asan" "${asan_env[*]}" "$asan_test_opts" "${asan_opts[@]}"
else
    record asan+ubsan SKIP "--no-asan" 0
fi

if [ "$run_install" = 0 ]; then
    record install SKIP "--no-install" 0
elif [ "$build_ok" = 0 ]; then
    record install SKIP "$build/ did not build" 0
else
    banner "install: tests/install/run.sh $build"
    t=$SECONDS
    if tests/install/run.sh "$build"; then
        record install PASS "install, pkg-config, link, run (+ README example)" $((SECONDS - t))
        total_pass=$((total_pass + 1))
    else
        record install FAIL "see the output above" $((SECONDS - t))
        total_fail=$((total_fail + 1))
    fi
fi

if [ "$run_slurm" = 0 ]; then
    record slurm SKIP "--no-slurm" 0
elif [ "$build_ok" = 0 ]; then
    record slurm SKIP "$build/ did not build" 0
elif [ "$(id -u)" -ne 0 ]; then
    record slurm SKIP "not root (slurm/cluster.sh runs the daemons as root)" 0
else
    banner "slurm: slurm/cluster.sh start; tests/slurm/run.sh $build; slurm/cluster.sh stop"
    t=$SECONDS
    was_up=0
    if slurm/cluster.sh status >/dev/null 2>&1; then
        was_up=1
    fi
    if ! slurm/cluster.sh start; then
        record slurm FAIL "slurm/cluster.sh start failed" $((SECONDS - t))
        total_fail=$((total_fail + 1))
    else
        slurm_log=$(mktemp)
        tests/slurm/run.sh "$build" 2>&1 | tee "$slurm_log"
        rc=${PIPESTATUS[0]}
        read -r p f s < <(sed -n 's/^slurm tests: \([0-9]*\) passed, \([0-9]*\) failed, \([0-9]*\) skipped$/\1 \2 \3/p' "$slurm_log")
        rm -f "$slurm_log"
        p=${p:-0} f=${f:-0} s=${s:-0}
        if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
            f=1 # the script itself failed
        fi
        total_pass=$((total_pass + p))
        total_fail=$((total_fail + f))
        total_skip=$((total_skip + s))
        if [ "$was_up" = 0 ]; then
            slurm/cluster.sh stop
        fi
        if [ "$rc" -ne 0 ] || [ "$f" -ne 0 ]; then
            record slurm FAIL "$p passed, $f failed, $s skipped (tests/slurm/run.sh)" $((SECONDS - t))
        else
            record slurm PASS "$p passed, $f failed, $s skipped (tests/slurm/run.sh)" $((SECONDS - t))
        fi
    fi
fi

if [ "$run_rxe" = 0 ]; then
    record rxe SKIP "--no-rxe" 0
elif [ "$build_ok" = 0 ]; then
    record rxe SKIP "$build/ did not build" 0
else
    banner "rxe: tests/rxe/vm.sh --build $build (soft-RoCE VM: verbs and UCX rc_verbs)"
    t=$SECONDS
    rxe_log=$(mktemp)
    tests/rxe/vm.sh --build "$build" 2>&1 | tee "$rxe_log"
    rc=${PIPESTATUS[0]}
    read -r p f < <(sed -n 's/^rxe: \([0-9]*\) passed, \([0-9]*\) failed.*/\1 \2/p' "$rxe_log")
    rm -f "$rxe_log"
    p=${p:-0} f=${f:-0}
    if [ "$rc" -eq 77 ]; then
        record rxe SKIP "the VM cannot be set up here (see above)" $((SECONDS - t))
        total_skip=$((total_skip + 1))
    else
        if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
            f=1 # the VM itself failed or timed out
        fi
        total_pass=$((total_pass + p))
        total_fail=$((total_fail + f))
        if [ "$rc" -ne 0 ] || [ "$f" -ne 0 ]; then
            record rxe FAIL "$p passed, $f failed (tests/rxe/vm.sh, exit $rc)" $((SECONDS - t))
        else
            record rxe PASS "$p passed, $f failed (tests/rxe/vm.sh)" $((SECONDS - t))
        fi
    fi
fi

printf '\n================================ deed test summary ================================\n'
printf '%s\n' "${summary[@]}"
printf '===================================================================================\n'
if [ "$any_failed" = 1 ]; then
    printf 'FAILED after %ss\n' $((SECONDS - start_all))
else
    printf 'all passed in %ss\n' $((SECONDS - start_all))
fi
printf 'tests: %d passed, %d failed, %d skipped\n' "$total_pass" "$total_fail" "$total_skip"
[ "$any_failed" = 0 ] && [ "$total_fail" = 0 ]
