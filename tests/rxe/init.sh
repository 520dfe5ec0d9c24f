#!/bin/busybox sh
# shellcheck shell=dash
# tests/rxe/init.sh — /init of the soft-RoCE VM's initramfs (tests/rxe/vm.sh copies it there).
# Mounts the host root (9p, read-only) under a tmpfs overlay, bind-mounts the unpacked Debian
# modules at /usr/lib/modules/$(uname -r), switches root and runs the second stage from there
# (as PID 1 of the real root, so that the kernel's request_module() finds modprobe), which
# sets up soft-RoCE, runs /rxe/cmd, stores its exit status in /rxe/rc and powers off.
/bin/busybox mkdir -p /proc /sys /dev /lower /rw /newroot
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
fail() {
    echo "rxe init: $*"
    printf '\376' | dd of=/dev/port bs=1 seek=244 count=1 2>/dev/null # qemu exits 255
    poweroff -f
}
while read -r m; do insmod "/mods/$m.ko" || fail "insmod $m"; done </mods/order
MODS=
# shellcheck disable=SC2013 # the command line is words, not lines
for x in $(cat /proc/cmdline); do
    case $x in rxe.mods=*) MODS=${x#rxe.mods=} ;; esac
done
KV=$(uname -r)
o=trans=virtio,version=9p2000.L,msize=262144
mount -t 9p -o $o,ro,cache=loose hostroot /lower || fail "mounting the host root"
mount -t tmpfs -o size=1g tmpfs /rw
mkdir -p /rw/u /rw/w
mount -t overlay overlay -o lowerdir=/lower,upperdir=/rw/u,workdir=/rw/w /newroot || fail overlay
for d in proc sys dev run; do mkdir -p /newroot/$d; done
mount -t proc proc /newroot/proc
mount -t sysfs sysfs /newroot/sys
mount -t devtmpfs devtmpfs /newroot/dev
mkdir -p /newroot/dev/pts /newroot/dev/shm
mount -t devpts devpts /newroot/dev/pts
mount -t tmpfs tmpfs /newroot/dev/shm
mount -t tmpfs tmpfs /newroot/run
mkdir -p "/newroot/usr/lib/modules/$KV" /newroot/rxe
mount --bind "/newroot$MODS" "/newroot/usr/lib/modules/$KV" || fail "no modules at $MODS"
mount -t 9p -o $o job /newroot/rxe || fail "mounting the job share"
cat >/newroot/run/stage2 <<'EOF'
#!/bin/sh
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root TERM=dumb
hostname rxe-guest
ulimit -l unlimited
rc=0
{ ip link set lo up && modprobe rdma_rxe && modprobe rdma_ucm && modprobe dummy &&
  ip link add dummy0 type dummy && ip addr add 192.0.2.1/24 dev dummy0 &&
  ip link set dummy0 up && rdma link add rxe0 type rxe netdev dummy0; } || rc=250
# the IPv4-mapped GID appears shortly after the address
for i in $(seq 50); do
    grep -q ':ffff:' /sys/class/infiniband/rxe0/ports/1/gids/1 2>/dev/null && break
    sleep 0.1
done
if [ $rc = 0 ]; then
    /bin/sh /rxe/cmd </dev/null
    rc=$?
else
    echo "rxe guest: setting up soft-RoCE failed"
fi
echo $rc >/rxe/rc
sync
printf "\\$(printf %03o $((rc & 127)))" | dd of=/dev/port bs=1 seek=244 count=1 2>/dev/null
echo o >/proc/sysrq-trigger
sleep 30
EOF
exec switch_root /newroot /bin/sh /run/stage2
