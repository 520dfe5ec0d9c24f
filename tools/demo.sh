#!/usr/bin/env bash
# tools/demo.sh — install what is missing, build deed, run the demo job and print its result.
#
# usage: tools/demo.sh [demo arguments...]
#
# Builds build/ (same options as tools/test.sh, so the two share it; an existing build/ is
# reconfigured) with its output kept out of the way unless the build fails, then runs
# build/examples/demo:
#   - through the local launcher, `build/tools/deedrun -n 4`, when that launcher is built;
#   - otherwise directly, as a one-rank job.
#
# Environment: DEED_BUILD (default build) names the build directory; DEED_DEMO_RANKS
# (default 4) the number of ranks given to deedrun; DEED_SKIP_DEPS=1 skips the package check.

set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
# shellcheck source=tools/deps.sh
. tools/deps.sh

build=${DEED_BUILD:-build}
nranks=${DEED_DEMO_RANKS:-4}

deed_deps_ensure

log=$(mktemp "${TMPDIR:-/tmp}/deed-demo-build.XXXXXX")
echo "demo: building $build/ ..."
if ! { deed_configure "$build" "${DEED_BUILD_OPTS[@]}" && meson compile -C "$build"; } \
    >"$log" 2>&1; then
    cat "$log" >&2
    rm -f "$log"
    echo "demo: the build failed (output above)" >&2
    exit 1
fi
rm -f "$log"

demo="$build/examples/demo"
if [ ! -x "$demo" ]; then
    echo "demo: $demo was not built (examples/meson.build should build the 'demo' program)" >&2
    exit 1
fi

# The launcher, once it exists, runs the demo on $nranks local ranks.
launcher="$build/tools/deedrun"
rc=0
if [ -x "$launcher" ]; then
    echo "demo: $launcher -n $nranks $demo${*:+ $*}"
    "$launcher" -n "$nranks" "$demo" "$@" || rc=$?
else
    echo "demo: $demo${*:+ $*} (one rank)"
    "$demo" "$@" || rc=$?
fi
if [ "$rc" -ne 0 ]; then
    echo "demo: FAILED (exit status $rc)" >&2
fi
exit "$rc"
