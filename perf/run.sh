#!/usr/bin/env bash
# perf/run.sh — build (if needed) and run the local benchmark; prints its JSON lines.
#
# usage: perf/run.sh [build-dir] [bench_local options...]
#   build-dir  meson build directory (default: build); configured here if it does not exist
#   options    passed to bench_local, e.g. --quick (see bench_local --help)
#
# The DEED_* environment applies to the benchmark's first configuration.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${1:-build}
[ $# -gt 0 ] && shift
case "$build" in /*) ;; *) build="$root/$build" ;; esac

if [ ! -f "$build/build.ninja" ]; then
    meson setup "$build" "$root" --buildtype=debugoptimized >&2
fi
ninja -C "$build" perf/bench_local >&2

"$build/perf/bench_local" "$@"
