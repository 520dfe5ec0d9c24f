#!/usr/bin/env bash
# perf/suite.sh — the whole performance suite in one command: deed, Dask and the hardware
# limit side by side, the table printed and written into docs/performance.md.
#
# usage: perf/suite.sh [--quick] [--build DIR] [--out FILE] [--no-docs] [--no-deps]
#   --quick      small counts everywhere (a smoke run, under 2 minutes)
#   --build DIR  meson build directory (default: build-perf; set up here with
#                --buildtype=debugoptimized -Dwerror=true if it does not exist)
#   --out FILE   raw JSON lines (default: perf/results/latest.jsonl; the previous file is
#                kept as previous.jsonl and the report shows instruction-count changes)
#   --no-docs    print the table only; leave docs/performance.md and docs/perf/ alone
#   --no-deps    do not check or install Debian packages
#
# Steps, each with a progress line "[i/N] what ... seconds" on stderr:
#   deps + build; ucx_perftest limits and deed's remote benchmark over shared memory and tcp
#   (perf/remote.sh); bench_local; bench_borrow (2 ranks); bench_scale (P = 1, 2, 4, owners
#   spread and colocated); bench_metg (nodep, stencil); the same workloads on Dask
#   (perf/dask/bench_dask.py, LocalCluster with 2 worker processes x 1 thread);
#   instructions per task under callgrind (perf/callgrind.sh); then perf/report.py.
# A benchmark that is not built (not in perf/meson.build yet) is recorded as "missing" and
# the report says so; a step that fails is recorded as "failed" and the suite goes on.
#
# Output: every JSON line of every step goes to the results file, with deedrun's "[rank] "
# prefix removed (only rank 0's JSON lines are kept), plus {"bench":"suite",...} lines (one
# per step: status and seconds) and one {"bench":"machine",...} line. Everything the
# benchmarks print besides JSON goes to the .log file next to it. Then report.py (run with
# /usr/bin/python3: Debian's matplotlib) prints the markdown table on stdout and writes it
# between <!-- suite:begin --> and <!-- suite:end --> in docs/performance.md, with the
# plots in docs/perf/*.png.
# Exit status: 0 when every step ran (targets missed do not count; missing benchmarks do
# not count), 1 when a step failed, 2 for bad options.
# shellcheck disable=SC2317 # the do_* functions are called through step()
set -uo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build="build-perf"
quick=0
docs=1
deps=1
out=""
while [ $# -gt 0 ]; do
    case "$1" in
    --quick) quick=1 ;;
    --no-docs) docs=0 ;;
    --no-deps) deps=0 ;;
    --build | --out)
        if [ $# -lt 2 ]; then
            echo "suite.sh: $1 needs a value" >&2
            exit 2
        fi
        if [ "$1" = --build ]; then build=$2; else out=$2; fi
        shift
        ;;
    -h | --help)
        sed -n '2,/^# shellcheck/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
        exit 0
        ;;
    *) echo "suite.sh: unknown argument $1 (try --help)" >&2; exit 2 ;;
    esac
    shift
done
case "$build" in /*) ;; *) build="$root/$build" ;; esac
[ -n "$out" ] || out="$root/perf/results/latest.jsonl"
case "$out" in /*) ;; *) out="$PWD/$out" ;; esac
mkdir -p "$(dirname "$out")" || exit 1
log="${out%.jsonl}.log"
prev="$(dirname "$out")/previous.jsonl"
[ -s "$out" ] && mv -f "$out" "$prev"
: >"$out"
: >"$log"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/deed-suite.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

t_suite=$SECONDS
nsteps=9
step_no=0
failed=0
qarg=()
[ $quick = 1 ] && qarg=(--quick)

# record_step NAME STATUS SECONDS [NOTE]
record_step() {
    printf '{"bench":"suite","metric":"step_seconds","value":%d,"unit":"s","step":"%s","status":"%s","note":"%s"}\n' \
        "$3" "$1" "$2" "${4:-}" >>"$out"
}

# step NAME "what it does" FUNCTION: run FUNCTION with stdout into $tmp/step.out, stderr into
# the log; progress line; status ok / failed / missing (the function returns 3).
step() {
    local name=$1 what=$2 fn=$3 t0=$SECONDS rc status
    step_no=$((step_no + 1))
    printf '[%d/%d] %s ... ' "$step_no" "$nsteps" "$what" >&2
    echo "==== [$step_no/$nsteps] $what" >>"$log"
    "$fn" >"$tmp/step.out" 2>>"$log"
    rc=$?
    case $rc in
    0) status=ok ;;
    3) status=missing ;;
    *) status=failed; failed=1 ;;
    esac
    # keep the JSON lines: plain, or rank 0's behind deedrun's "[0] "; the rest to the log
    sed -n 's/^\(\[0\] \)\{0,1\}\({".*}\)[[:space:]]*$/\2/p' "$tmp/step.out" >>"$out"
    grep -v '^\(\[0\] \)\{0,1\}{".*}[[:space:]]*$' "$tmp/step.out" >>"$log" || true
    local dt=$((SECONDS - t0))
    record_step "$name" "$status" "$dt" "$(tr -d '"\\\n' 2>/dev/null <"$tmp/note")"
    rm -f "$tmp/note"
    case $status in
    ok) echo "$dt s" >&2 ;;
    missing) echo "missing ($(cat "$tmp/missing" 2>/dev/null)), $dt s" >&2 ;;
    failed) echo "FAILED (status $rc, see $log), $dt s" >&2 ;;
    esac
}

# need PROG: return 3 (missing) unless the benchmark was built
need() {
    if [ ! -x "$build/$1" ]; then
        echo "$1 not built" >"$tmp/missing"
        echo "$1 not built" >"$tmp/note"
        return 3
    fi
}

deedrun() { "$build/tools/deedrun" "$@"; }

# ---- steps ------------------------------------------------------------------------------

do_setup() {
    if [ "$deps" = 1 ]; then
        # shellcheck source=tools/deps.sh
        . "$root/tools/deps.sh" || return 1
        DEED_PACKAGES+=(python3-distributed python3-matplotlib valgrind ucx-utils)
        deed_deps_ensure >&2 || return 1
    fi
    if [ ! -f "$build/build.ninja" ]; then
        meson setup "$build" "$root" --buildtype=debugoptimized -Dwerror=true >&2 || return 1
    fi
    # build the targets that exist (a benchmark not yet in perf/meson.build is "missing")
    local t targets=()
    for t in tools/deedrun perf/bench_local perf/bench_remote perf/bench_borrow \
        perf/bench_scale perf/bench_metg perf/bench_icount; do
        if ninja -C "$build" -t query "$t" >/dev/null 2>&1; then
            targets+=("$t")
        else
            echo "suite.sh: no build target $t" >&2
        fi
    done
    if ! ninja -C "$build" -j2 "${targets[@]}" >&2; then
        # the tree is shared: someone's half-written file must not stop the suite when the
        # benchmarks were built before
        [ -x "$build/tools/deedrun" ] || return 1
        echo "suite.sh: the build failed; using the binaries already in $build" >&2
        echo "build failed, earlier binaries used" >"$tmp/note"
    fi
    machine_line
}

machine_line() {
    /usr/bin/python3 - "$root" "$build" "$quick" <<'EOF'
import json, os, platform, re, subprocess, sys
root, build, quick = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
def run(*cmd):
    try:
        return subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                              text=True, timeout=20).stdout
    except (OSError, subprocess.SubprocessError):
        return ""
lscpu = dict(l.split(":", 1) for l in run("lscpu").splitlines() if ":" in l)
lscpu = {k.strip(): v.strip() for k, v in lscpu.items()}
mem = 0
for l in open("/proc/meminfo"):
    if l.startswith("MemTotal:"):
        mem = int(l.split()[1]) / (1 << 20)
ucx = re.search(r"(?:Library version:|# Version)\s*([\d.]+)", run("ucx_info", "-v"))
osname = ""
if os.path.exists("/etc/os-release"):
    for l in open("/etc/os-release"):
        if l.startswith("PRETTY_NAME="):
            osname = l.split("=", 1)[1].strip().strip('"')
bt = ""
try:
    opts = json.load(open(os.path.join(build, "meson-info", "intro-buildoptions.json")))
    bt = next(o["value"] for o in opts if o["name"] == "buildtype")
except (OSError, ValueError, StopIteration):
    pass
gcc = run("cc", "--version").splitlines()
print(json.dumps({
    "bench": "machine", "metric": "cpus", "value": os.cpu_count(), "unit": "cpus",
    "model": lscpu.get("Model name", platform.processor()),
    "hypervisor": lscpu.get("Hypervisor vendor", ""),
    "memory_gib": round(mem, 1), "kernel": platform.release(), "os": osname,
    "ucx": ucx.group(1) if ucx else "", "cc": gcc[0] if gcc else "",
    "buildtype": bt, "git": run("git", "-C", root, "describe", "--always", "--dirty").strip(),
    "quick": quick, "date": run("date", "-u", "+%Y-%m-%d %H:%M UTC").strip(),
    "loadavg": open("/proc/loadavg").read().split()[0]}, separators=(",", ":")))
EOF
}

do_remote() {
    need perf/bench_remote || return 3
    "$root/perf/remote.sh" "$build" "${qarg[@]}"
}

do_local() {
    need perf/bench_local || return 3
    "$build/perf/bench_local" "${qarg[@]}"
}

do_borrow() {
    need perf/bench_borrow || return 3
    DEED_STORE_SIZE=${DEED_STORE_SIZE:-512M} deedrun -n 2 "$build/perf/bench_borrow" "${qarg[@]}"
}

do_scale() {
    need perf/bench_scale || return 3
    local p rc=0
    for p in 1 2 4; do
        DEED_STORE_SIZE=${DEED_STORE_SIZE:-256M} deedrun -n "$p" "$build/perf/bench_scale" \
            --owners both "${qarg[@]}" || rc=1
    done
    return "$rc"
}

do_metg() {
    need perf/bench_metg || return 3
    "$build/perf/bench_metg" "${qarg[@]}"
}

do_dask() {
    if ! /usr/bin/python3 -c 'import distributed' 2>/dev/null; then
        echo "python3-distributed not installed" >"$tmp/missing"
        echo "python3-distributed not installed" >"$tmp/note"
        return 3
    fi
    /usr/bin/python3 "$root/perf/dask/bench_dask.py" --workers 2 "${qarg[@]}"
}

do_callgrind() {
    need perf/bench_icount || return 3
    "$root/perf/callgrind.sh" "$build" "${qarg[@]}"
}

do_report() {
    local args=("$out")
    [ -s "$prev" ] && args+=(--previous "$prev")
    if [ "$docs" = 1 ]; then
        args+=(--docs "$root/docs/performance.md" --plots "$root/docs/perf")
    fi
    /usr/bin/python3 "$root/perf/report.py" "${args[@]}" >"$tmp/table.md"
}

mode="full"
[ $quick = 1 ] && mode="quick"
echo "perf/suite.sh: $mode run, build $build, results $out" >&2
step setup "dependencies and build ($(basename "$build"))" do_setup
if [ "$(tail -1 "$out" | grep -c '"status":"failed"')" = 1 ]; then
    echo "perf/suite.sh: setup failed (see $log); stopping" >&2
    exit 1
fi
step remote "ucx_perftest limit + remote tasks and pulls (deed, 2 ranks; shm, tcp)" do_remote
step local "local tasks (deed, 1 rank)" do_local
step borrow "borrowing (deed, 2 ranks, k = 0..8)" do_borrow
step scale "scalability (deed, P = 1, 2, 4; spread, colocated)" do_scale
step metg "METG sweep (deed, nodep, stencil)" do_metg
step dask "the same workloads on Dask (LocalCluster, 2 processes x 1 thread)" do_dask
step callgrind "instructions per task (callgrind; local, remote)" do_callgrind
total=$((SECONDS - t_suite))
printf '{"bench":"suite","metric":"wall_time","value":%d,"unit":"s","mode":"%s"}\n' \
    "$total" "$mode" >>"$out"
step report "report (table, plots)" do_report
cat "$tmp/table.md"
echo "perf/suite.sh: done in $((SECONDS - t_suite)) s; raw lines in $out, log in $log" >&2
[ $docs = 1 ] && echo "perf/suite.sh: wrote docs/performance.md (suite section) and docs/perf/*.png" >&2
exit $failed
