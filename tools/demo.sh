#!/usr/bin/env bash
# tools/demo.sh — install what is missing, build deed, run the demo job and print its result.
#
# usage: tools/demo.sh [demo arguments...]
#
# Configures build/ (same options as tools/test.sh, so the two share it; an existing build/
# is reconfigured) and builds the demo and the launcher, with the output kept out of the way
# unless the build fails, then runs build/examples/demo:
#   - through the local launcher, `build/tools/deedrun -n 4`, when that launcher is built;
#   - otherwise directly, as a one-rank job.
#
# Environment: DEED_BUILD (default build) names the build directory; DEED_DEMO_RANKS
# (default 4) the number of ranks given to deedrun (1: run the demo directly, no launcher);
# DEED_SKIP_DEPS=1 skips the package check.

set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
# shellcheck source=tools/deps.sh
. tools/deps.sh

build=${DEED_BUILD:-build}
nranks=${DEED_DEMO_RANKS:-4}

deed_deps_ensure

# Build only what the demo needs (the library, the demo and the launcher when there is one),
# so a half-finished test elsewhere in the tree does not stop the demo.
log=$(mktemp "${TMPDIR:-/tmp}/deed-demo-build.XXXXXX")
echo "demo: building $build/ ..."
if ! {
    deed_configure "$build" "${DEED_BUILD_OPTS[@]}" &&
        targets=(examples/demo) &&
        if ninja -C "$build" -t targets all 2>/dev/null | grep '^tools/deedrun:' >/dev/null; then
            targets+=(tools/deedrun)
        fi &&
        meson compile -C "$build" "${targets[@]}"
} >"$log" 2>&1; then
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

# The launcher, once it is built, runs the demo on $nranks local ranks.
launcher="$build/tools/deedrun"
rc=0
if [ "$nranks" != 1 ] && [[ " ${targets[*]} " == *" tools/deedrun "* ]] && [ -x "$launcher" ]; then
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
