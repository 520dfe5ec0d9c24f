#!/usr/bin/env bash
# tools/deps.sh — the one list of Debian packages deed needs, and the helpers that the other
# tools/*.sh scripts share (install what is missing, configure a build directory).
#
# Run it:     tools/deps.sh           install whatever is missing (as root, or through sudo)
#             tools/deps.sh --check   list what is missing; exit 1 if anything is
#             tools/deps.sh --list    print the package list
# Source it:  . tools/deps.sh         defines deed_deps_ensure and deed_configure
#
# Installing is idempotent and silent when nothing is missing: every package is checked with
# dpkg-query first, and apt-get (update + install) runs only for the missing ones.
# Set DEED_SKIP_DEPS=1 to skip the check (e.g. on a machine without dpkg).
#
# To add a dependency, add it to DEED_PACKAGES below and nowhere else.

DEED_PACKAGES=(
    # toolchain and build system
    build-essential
    pkg-config
    meson
    ninja-build
    # unit tests (Check, which links against subunit)
    check
    libsubunit-dev
    # topology: CPU sets, NUMA binding (library + lstopo for debugging)
    libhwloc-dev
    hwloc
    # UCX transport (library + ucx_info)
    libucx-dev
    ucx-utils
    # verbs transport (ibverbs + rdmacm, providers and tools)
    libibverbs-dev
    librdmacm-dev
    rdma-core
    # memory checking
    valgrind
    # Slurm test cluster (slurm/cluster.sh) and the Slurm / PMIx / MPI bootstraps
    # (tests/slurm/run.sh): slurmctld + slurmd + srun/sbatch, OpenMPI (libdeed_mpi, mpirun),
    # PMIx headers (build-time check of the "pmix" bootstrap)
    slurmctld
    slurmd
    slurm-client
    openmpi-bin
    libopenmpi-dev
    libpmix-dev
)

# The options every normal build directory (build/) is configured with; tools/demo.sh and
# tools/test.sh use the same ones so they never make each other rebuild from scratch.
# shellcheck disable=SC2034 # used by the scripts that source this file
DEED_BUILD_OPTS=(--buildtype=debugoptimized -Dwerror=true)

# Print the packages of DEED_PACKAGES that are not installed, one per line.
deed_deps_missing()
{
    local pkg status
    for pkg in "${DEED_PACKAGES[@]}"; do
        status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null) || status=
        if [ "$status" != "install ok installed" ]; then
            printf '%s\n' "$pkg"
        fi
    done
}

# Install the missing packages with apt-get. Silent (and no apt-get at all) when nothing is
# missing. Returns non-zero if packages are missing and cannot be installed.
deed_deps_ensure()
{
    if [ "${DEED_SKIP_DEPS:-0}" = 1 ]; then
        return 0
    fi
    if ! command -v dpkg-query >/dev/null 2>&1; then
        echo "deps: no dpkg-query here (not Debian?); not checking packages." \
             "Needed (Debian names): ${DEED_PACKAGES[*]}" >&2
        return 0
    fi

    local missing
    missing=$(deed_deps_missing | tr '\n' ' ')
    missing=${missing% }
    if [ -z "$missing" ]; then
        return 0
    fi

    local sudo=()
    if [ "$(id -u)" -ne 0 ]; then
        if command -v sudo >/dev/null 2>&1; then
            sudo=(sudo)
        else
            echo "deps: missing packages: $missing" >&2
            echo "deps: run as root: apt-get update && apt-get install $missing" >&2
            return 1
        fi
    fi

    echo "deps: installing missing packages: $missing"
    # shellcheck disable=SC2086 # $missing is a list of package names
    if ! "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq ||
       ! "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
             apt-get install -y -qq --no-install-recommends -o Dpkg::Use-Pty=0 $missing; then
        echo "deps: apt-get failed while installing: $missing" >&2
        return 1
    fi

    missing=$(deed_deps_missing | tr '\n' ' ')
    if [ -n "$missing" ]; then
        echo "deps: still missing after apt-get: $missing" >&2
        return 1
    fi
    echo "deps: done"
}

# deed_configure DIR [meson options...]
# Configure DIR as a meson build directory of the source tree in the current directory.
# An existing build directory is reconfigured with the given options (so a second run never
# fails on "directory already configured"); a directory whose first setup failed (no
# coredata) is simply set up again.
deed_configure()
{
    local dir=$1
    shift
    if [ -f "$dir/meson-private/coredata.dat" ]; then
        meson setup --reconfigure "$dir" "$@"
    else
        meson setup "$dir" "$@"
    fi
}

# Executed (not sourced): act on the command line.
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    set -euo pipefail
    case "${1:-}" in
    "")
        deed_deps_ensure
        ;;
    --check)
        if ! command -v dpkg-query >/dev/null 2>&1; then
            echo "deps: no dpkg-query here (not Debian?)" >&2
            exit 2
        fi
        missing=$(deed_deps_missing)
        if [ -n "$missing" ]; then
            printf '%s\n' "$missing"
            exit 1
        fi
        ;;
    --list)
        printf '%s\n' "${DEED_PACKAGES[@]}"
        ;;
    -h | --help)
        sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'
        ;;
    *)
        echo "usage: $0 [--check | --list | --help]" >&2
        exit 2
        ;;
    esac
fi
