#!/usr/bin/env bash
# tests/rxe/vm.sh — run a command as root inside a throw-away VM that has soft-RoCE (rdma_rxe).
#
# usage: tests/rxe/vm.sh [--build DIR] [-- COMMAND...]
#   With no COMMAND, runs the project's RDMA checks: tests/rxe/guest.sh DIR (DIR defaults to
#   build/, configured and compiled here first if it has no test binaries).
#   The exit status is the guest command's (255: the VM itself failed; 124: timed out; 77:
#   the VM cannot be set up here: packages or the kernel could not be installed/downloaded).
#
# The VM: the stock Debian kernel (linux-image-amd64, unpacked, never installed), a busybox
# initramfs, QEMU with TCG (portable; works where /dev/kvm is missing or a nested layer that a
# stock kernel hangs under), no NIC. The host's / is mounted read-only over 9p with a tmpfs
# overlay on top, so the guest runs the host's binaries and libraries at the same paths; a
# second 9p share carries the command in and the exit status out. Before the command runs,
# the guest loads rdma_rxe + rdma_ucm and creates rxe0 on a dummy interface with an IPv4
# address (192.0.2.1/24 on dummy0): rdma_cm does not work on a device bound to lo.
#
# Environment:
#   DEED_RXE_WORK     cache for the kernel and initramfs (default ~/.cache/deed-rxe)
#   DEED_RXE_TIMEOUT  seconds before the VM is killed (default 900)
#   DEED_RXE_MEM      guest memory in MiB (default 3072)   DEED_RXE_SMP  guest CPUs (default 2)
#   DEED_RXE_ACCEL    tcg (default) or kvm
#   DEED_SKIP_DEPS=1  do not apt-get install missing host packages
# Host packages (installed with apt-get when missing, as tools/deps.sh does): qemu-system-x86,
# busybox-static, cpio, xz-utils, kmod, rdma-core, ibverbs-providers, libibverbs-dev,
# librdmacm-dev, libucx-dev (the guest uses the host's userspace through the 9p root).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
work=${DEED_RXE_WORK:-${HOME:-/tmp}/.cache/deed-rxe}
build=build
say() { echo "[rxe $(date +%T)] $*" >&2; }
die() { say "error: $*"; exit 255; }
cannot() { say "cannot set up the VM here: $*"; exit 77; }

while [ $# -gt 0 ]; do
    case "$1" in
    --build) build=${2:?--build needs a directory}; shift 2 ;;
    --) shift; break ;;
    -h | --help) sed -n '2,28p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument '$1' (see --help)" ;;
    esac
done
case "$build" in /*) ;; *) build=$root/$build ;; esac
mkdir -p "$work"

# ---- 1. host packages ------------------------------------------------------------------------
pkgs=(qemu-system-x86 busybox-static cpio xz-utils kmod rdma-core ibverbs-providers
    libibverbs-dev librdmacm-dev libucx-dev)
missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    [ "${DEED_SKIP_DEPS:-0}" = 1 ] && cannot "missing packages: ${missing[*]}"
    [ "$(id -u)" = 0 ] || cannot "missing packages (${missing[*]}) and not root to install them"
    say "apt-get install ${missing[*]}"
    { apt-get update -qq >/dev/null &&
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            "${missing[@]}" >/dev/null; } || cannot "apt-get install ${missing[*]} failed"
fi

# ---- 2. the build to test ----------------------------------------------------------------------
if [ $# -eq 0 ]; then
    if [ ! -x "$build/tests/test_verbs" ] || [ ! -x "$build/tools/deedrun" ]; then
        say "building $build"
        [ -f "$build/build.ninja" ] || meson setup "$build" "$root" -Dwerror=true >/dev/null
        ninja -C "$build" >/dev/null
    fi
    set -- /bin/sh "$root/tests/rxe/guest.sh" "$build"
fi

# ---- 3. kernel and modules (unpacked into the cache) -----------------------------------------
if [ ! -s "$work/kver" ]; then
    apt-cache show linux-image-amd64 >/dev/null 2>&1 || apt-get update -qq || true
    kpkg=$(apt-cache depends linux-image-amd64 2>/dev/null |
        awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
    [ -n "$kpkg" ] || cannot "no package behind linux-image-amd64 in the apt sources"
    say "downloading $kpkg"
    rm -rf "$work/kernel" "$work"/*.deb
    (cd "$work" && apt-get download -qq -o APT::Sandbox::User=root "$kpkg") ||
        cannot "apt-get download $kpkg failed"
    dpkg-deb -x "$work"/linux-image-*.deb "$work/kernel"
    rm -f "$work"/*.deb
    kv=$(ls "$work/kernel/lib/modules")
    depmod -b "$work/kernel" "$kv"
    # An uncompressed ELF vmlinux boots straight through PVH (no real-mode BIOS path and no xz
    # decompression under TCG: seconds saved per boot). xz complains about the trailer.
    z=$work/kernel/boot/vmlinuz-$kv
    off=$(LC_ALL=C grep -obUaP '\xfd7zXZ\x00' "$z" | LC_ALL=C cut -d: -f1 | sed -n 1p)
    if [ -n "$off" ]; then
        tail -c +$((off + 1)) "$z" | xz -dc >"$work/vmlinux" 2>/dev/null || true
    fi
    echo "$kv" >"$work/kver"
    rm -f "$work/initrd.gz"
fi
kv=$(cat "$work/kver")
mods=$work/kernel/lib/modules/$kv
kimg=$work/kernel/boot/vmlinuz-$kv
if [ -s "$work/vmlinux" ] && [ "$(head -c4 "$work/vmlinux" | tail -c3)" = ELF ]; then
    kimg=$work/vmlinux
fi

# ---- 4. initramfs: busybox, the modules for the 9p root, init --------------------------------
boot_mods=(virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci netfs
    fscache 9pnet 9pnet_virtio 9p overlay)
# rebuilt when missing or when tests/rxe/init.sh changed
if [ ! -s "$work/initrd.gz" ] || ! cmp -s "$root/tests/rxe/init.sh" "$work/initramfs/init"; then
    say "building the initramfs"
    ir=$work/initramfs
    rm -rf "$ir"
    mkdir -p "$ir/bin" "$ir/mods"
    cp /bin/busybox "$ir/bin/"
    for m in "${boot_mods[@]}"; do
        f=$(modprobe -d "$work/kernel" -S "$kv" --show-depends "$m" |
            awk -v m="/$m.ko" '$1 == "insmod" && index($2, m) {print $2}' | tail -n 1)
        [ -n "$f" ] || die "module $m not found in $kv"
        case "$f" in
        *.xz) xz -dc "$f" >"$ir/mods/$m.ko" ;;
        *.zst) zstd -qdc "$f" >"$ir/mods/$m.ko" ;;
        *) cp "$f" "$ir/mods/$m.ko" ;;
        esac
    done
    cp "$root/tests/rxe/init.sh" "$ir/init"
    printf '%s\n' "${boot_mods[@]}" >"$ir/mods/order"
    chmod +x "$ir/init"
    (cd "$ir" && find . | cpio -o -H newc 2>/dev/null | gzip -1 >"$work/initrd.gz")
fi

# ---- 5. boot, run, collect -----------------------------------------------------------------
job=$(mktemp -d "$work/job.XXXXXX")
trap 'rm -rf "$job"' EXIT
{
    printf 'cd %q 2>/dev/null || cd /\n' "$PWD"
    echo 'export RXE_IP=192.0.2.1 DEED_RXE_GUEST=1'
    printf '%q ' "$@"
    echo
} >"$job/cmd"
# shellcheck disable=SC2054 # the commas are qemu's
case ${DEED_RXE_ACCEL:-tcg} in
kvm) accel=(-enable-kvm -cpu host) ;;
tcg) accel=(-accel tcg,thread=multi -cpu max) ;;
*) die "DEED_RXE_ACCEL='$DEED_RXE_ACCEL' is invalid (allowed: tcg, kvm)" ;;
esac
say "booting Debian $kv (${accel[*]}, ${DEED_RXE_SMP:-2} CPUs, ${DEED_RXE_MEM:-3072} MiB)"
t0=$(date +%s)
set +e
timeout -k 5 "${DEED_RXE_TIMEOUT:-900}" qemu-system-x86_64 "${accel[@]}" -M pc \
    -smp "${DEED_RXE_SMP:-2}" -m "${DEED_RXE_MEM:-3072}" \
    -nodefaults -display none -no-reboot -monitor none -serial stdio -nic none \
    -kernel "$kimg" -initrd "$work/initrd.gz" \
    -append "console=ttyS0 quiet loglevel=3 panic=-1 mitigations=off tsc=reliable no_timer_check rxe.mods=$mods" \
    -virtfs local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap \
    -virtfs "local,path=$job,mount_tag=job,security_model=none" \
    -device isa-debug-exit,iobase=0xf4,iosize=0x04 </dev/null
q=$?
set -e
# the guest writes its status to the job share before powering off: no file = the VM failed
if [ -s "$job/rc" ]; then
    rc=$(cat "$job/rc")
elif [ $q = 124 ]; then
    rc=124
    say "the VM timed out after ${DEED_RXE_TIMEOUT:-900} s"
else
    rc=255
fi
say "guest exit status $rc (qemu $q) after $(($(date +%s) - t0)) s"
exit "$rc"
