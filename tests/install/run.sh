#!/usr/bin/env bash
# tests/install/run.sh — install-and-link test, called by tools/test.sh.
#
# usage: tests/install/run.sh [BUILD_DIR]     (default: build; must be configured and built)
#
# 1. `meson install --destdir` BUILD_DIR into a temporary directory;
# 2. build tests/install/hello.c the way a user would, from outside the source tree, with
#    nothing but the installed header and `pkg-config --cflags --libs deed` (pointed at the
#    temporary tree through PKG_CONFIG_PATH + PKG_CONFIG_SYSROOT_DIR);
# 3. run it against the installed libdeed (LD_LIBRARY_PATH), check that it loaded that copy
#    and printed "install test ok";
# 4. build and run the example program of README.md the same way, so the README stays true
#    to include/deed.h.
#
# Exits 0 when all of that works. KEEP=1 keeps the temporary directory for a post-mortem.

set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
build=${1:-build}
case "$build" in
/*) ;;
*) build="$root/$build" ;;
esac
cc=${CC:-cc}

fail()
{
    echo "install test FAILED: $*" >&2
    exit 1
}

[ -f "$build/build.ninja" ] || fail "$build is not a configured meson build directory"
command -v pkg-config >/dev/null || fail "pkg-config not found"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/deed-install.XXXXXX")
if [ "${KEEP:-0}" = 1 ]; then
    echo "install test: keeping $tmp"
else
    trap 'rm -rf "$tmp"' EXIT
fi
dest="$tmp/root"

echo "install test: meson install -C $build --destdir $dest"
meson install -C "$build" --destdir "$dest" --quiet || fail "meson install failed"

pc=$(find "$dest" -name deed.pc -path '*/pkgconfig/*' -print -quit)
[ -n "$pc" ] || fail "no deed.pc was installed under $dest"
hdr=$(find "$dest" -name deed.h -print -quit)
[ -n "$hdr" ] || fail "no deed.h was installed under $dest"
lib=$(find "$dest" -name 'libdeed.so*' -print -quit)
[ -n "$lib" ] || fail "no libdeed.so was installed under $dest"
echo "install test: installed $(basename "$pc"), $(basename "$hdr"), $(basename "$lib")"

# pkg-config must find deed only in the temporary tree: the sysroot is prepended to the
# -I/-L paths of deed.pc, whose prefix is the configured one (/usr/local by default).
PKG_CONFIG_PATH=$(dirname "$pc")
export PKG_CONFIG_PATH
export PKG_CONFIG_SYSROOT_DIR="$dest"
flags=$(pkg-config --cflags --libs deed) || fail "pkg-config --cflags --libs deed failed"
echo "install test: pkg-config --cflags --libs deed: $flags"
libdir=$(pkg-config --variable=libdir deed)
libdir="$dest${libdir#"$dest"}"
[ -d "$libdir" ] || fail "libdir $libdir from deed.pc does not exist"

# Build from a directory outside the source tree so nothing but the installed files is seen.
cp "$here/hello.c" "$tmp/hello.c"
(
    cd "$tmp"
    # shellcheck disable=SC2086 # $flags is a list of compiler flags
    "$cc" -std=gnu11 -Wall -Wextra -Werror -o hello hello.c $flags
) || fail "hello.c did not compile/link against the installed deed"

if ! LD_LIBRARY_PATH="$libdir" ldd "$tmp/hello" | grep "$libdir/libdeed" >/dev/null; then
    LD_LIBRARY_PATH="$libdir" ldd "$tmp/hello" >&2 || true
    fail "hello does not load libdeed from $libdir"
fi

rc=0
out=$(cd "$tmp" && LD_LIBRARY_PATH="$libdir" timeout 120 ./hello 2>&1) || rc=$?
if [ "$rc" -ne 0 ]; then
    printf '%s\n' "$out" >&2
    fail "hello exited with status $rc"
fi
printf '%s\n' "$out"
printf '%s\n' "$out" | grep -x "install test ok" >/dev/null || fail "hello did not print 'install test ok'"

# The README's example program (its first ```c block).
readme="$root/README.md"
if [ -f "$readme" ] && grep -q '^```c' "$readme"; then
    awk '/^```c/ { on = 1; next } on && /^```/ { exit } on { print }' "$readme" \
        >"$tmp/readme_example.c"
    (
        cd "$tmp"
        # shellcheck disable=SC2086 # $flags is a list of compiler flags
        "$cc" -std=gnu11 -Wall -Werror -o readme_example readme_example.c $flags
    ) || fail "the example program in README.md did not compile against the installed deed"
    rc=0
    out=$(cd "$tmp" && LD_LIBRARY_PATH="$libdir" timeout 120 ./readme_example 2>&1) || rc=$?
    if [ "$rc" -ne 0 ]; then
        printf '%s\n' "$out" >&2
        fail "the example program in README.md exited with status $rc"
    fi
    echo "install test: README example printed: $out"
fi

echo "install test: passed"
