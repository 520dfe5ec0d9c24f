#!/usr/bin/env bash
# tests/slurm/run.sh — deed under a real (local) Slurm and under MPI.
#
# usage: tests/slurm/run.sh [BUILD_DIR]     (default build; needs examples/demo in it, and
#                                            examples/mpi_mix when MPI was found)
#
# Needs a running cluster (slurm/cluster.sh start; tools/test.sh's slurm stage starts and
# stops it). Checks, each printing PASS/FAIL/SKIP lines:
#   sbatch     sbatch --wait slurm/deed.sbatch: the demo on 2 ranks, "demo result: OK" on each
#   srun-tcp   srun -n 2 --mpi=none: the "slurm" bootstrap (rendezvous hosted by rank 0)
#   srun-pmix  srun -n 2 --mpi=pmix: the "pmix" bootstrap (SKIP with the reason if Slurm has
#              no PMIx plugin)
#   unreach    rank 1 looks for the rendezvous on a closed port: both ranks fail within
#              DEED_BOOT_TIMEOUT, rank 1's message names the address
#   badkey     rank 1 presents another job key: refused, with the reason
#   nokey      no DEED_JOB_KEY under srun: a clear error
#   mpi        mpirun -n 4 examples/mpi_mix (deed_init_mpi): "mpi_mix result: OK" on each
# Exits non-zero if any check failed.
set -uo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root" || exit 1
build=${1:-build}
demo=$build/examples/demo
mix=$build/examples/mpi_mix
demo_args=(262144 16 12)
tmp=$(mktemp -d /tmp/deed-slurm-test.XXXXXX)
trap 'rm -rf "$tmp"' EXIT

pass=0
fail=0
skip=0
ok()
{
    echo "PASS: $*"
    pass=$((pass + 1))
}
bad()
{
    echo "FAIL: $*"
    fail=$((fail + 1))
}
skipped()
{
    echo "SKIP: $*"
    skip=$((skip + 1))
}
show()
{
    sed 's/^/    | /' "$1" | tail -n 25
}
newkey()
{
    od -An -tx1 -N16 /dev/urandom | tr -d ' \n'
}
# all_ok FILE N PATTERN: each of ranks 0..N-1 printed "R: PATTERN" (srun --label)
all_ok()
{
    local r
    for ((r = 0; r < $2; r++)); do
        grep -q "^ *$r: $3" "$1" || return 1
    done
}

export DEED_STORE_SIZE=256M
unset DEED_RENDEZVOUS DEED_BOOTSTRAP DEED_SLURM_PORT DEED_RANK DEED_NRANKS

if [ ! -x "$demo" ]; then
    bad "setup: $demo is not built"
    echo "slurm tests: $pass passed, $fail failed, $skip skipped"
    exit 1
fi
if ! sinfo -h -o '%T' 2>/dev/null | grep -E 'idle|mixed|allocated' >/dev/null; then
    bad "setup: no usable Slurm node (run slurm/cluster.sh start)"
    echo "slurm tests: $pass passed, $fail failed, $skip skipped"
    exit 1
fi

# ---- sbatch: the template, 2 ranks --------------------------------------------------------
t=$SECONDS
out=$tmp/sbatch.out
if timeout 300 sbatch --wait --quiet --nodes=1 --ntasks-per-node=2 --cpus-per-task=1 \
    --output="$out" slurm/deed.sbatch "$demo" "${demo_args[@]}" >"$tmp/sbatch.log" 2>&1 &&
    all_ok "$out" 2 "demo result: OK"; then
    ok "sbatch slurm/deed.sbatch: demo on 2 ranks, 'demo result: OK' on each ($((SECONDS - t)) s)"
else
    bad "sbatch slurm/deed.sbatch: demo on 2 ranks"
    show "$tmp/sbatch.log"
    [ -f "$out" ] && show "$out"
fi

# ---- srun -n 2, TCP rendezvous hosted by rank 0 -------------------------------------------
t=$SECONDS
out=$tmp/tcp.out
if DEED_JOB_KEY=$(newkey) DEED_LOG=debug timeout 120 srun -n 2 --mpi=none --label \
    "$demo" "${demo_args[@]}" >"$out" 2>&1 &&
    all_ok "$out" 2 "demo result: OK" &&
    grep -q "^ *0: .*slurm: rank 0 hosts the rendezvous of 2 ranks" "$out" &&
    all_ok "$out" 2 "deed.*rank [01] of 2 connected to the rendezvous"; then
    ok "srun -n 2 --mpi=none: 'slurm' bootstrap (rank 0 hosts the rendezvous), demo OK on each ($((SECONDS - t)) s)"
else
    bad "srun -n 2 --mpi=none: 'slurm' bootstrap"
    show "$out"
fi

# ---- srun --mpi=pmix ----------------------------------------------------------------------
t=$SECONDS
out=$tmp/pmix.out
if ! srun --mpi=list 2>&1 | grep -w pmix >/dev/null; then
    skipped "srun --mpi=pmix: this Slurm has no PMIx plugin (srun --mpi=list: $(srun --mpi=list 2>&1 | tr '\n\t' '  '))"
elif DEED_JOB_KEY=$(newkey) DEED_LOG=debug timeout 120 srun -n 2 --mpi=pmix --label \
    "$demo" "${demo_args[@]}" >"$out" 2>&1 &&
    all_ok "$out" 2 "demo result: OK" &&
    all_ok "$out" 2 "deed.*pmix: rank [01] of 2"; then
    ok "srun -n 2 --mpi=pmix: 'pmix' bootstrap, demo OK on each ($((SECONDS - t)) s)"
else
    bad "srun -n 2 --mpi=pmix: 'pmix' bootstrap"
    show "$out"
fi

# ---- a rank that cannot reach the rendezvous ----------------------------------------------
# rank 1 looks on a port where nothing listens; rank 0 hosts the real one and waits for it.
closed=$(python3 -c 'import socket; s = socket.socket(); s.bind(("", 0)); print(s.getsockname()[1])')
t=$SECONDS
out=$tmp/unreach.out
DEED_JOB_KEY=$(newkey) DEED_BOOT_TIMEOUT=3 timeout 60 srun -n 2 --mpi=none --label \
    --kill-on-bad-exit=0 bash -c 'if [ "$SLURM_PROCID" = 1 ]; then export DEED_SLURM_PORT='"$closed"'; fi
        exec "$@"' deed-rank "$demo" 64 2 3 >"$out" 2>&1
rc=$?
el=$((SECONDS - t))
host=$(sinfo -h -o '%N' | sed -n 1p)
if [ "$rc" -ne 0 ] && [ "$rc" -ne 124 ] && [ $el -le 20 ] &&
    grep -q "^ *1: .*cannot connect to the rendezvous at [^ ]*:$closed after 3 s" "$out" &&
    grep -q "^ *0: .*no answer from the rendezvous at .* after 3 s" "$out"; then
    ok "unreachable rendezvous: rank 1 fails after DEED_BOOT_TIMEOUT=3 s naming $(grep -o "rendezvous at [^ ]*:$closed" "$out" | sed -n 1p | cut -d' ' -f3), rank 0 times out too (step exit $rc, $el s)"
else
    bad "unreachable rendezvous (step exit $rc after $el s; want non-zero within 20 s and messages naming the address)"
    show "$out"
fi

# ---- a rank with the wrong job key --------------------------------------------------------
t=$SECONDS
out=$tmp/badkey.out
DEED_JOB_KEY=$(newkey) WRONG_KEY=$(newkey) DEED_BOOT_TIMEOUT=5 timeout 60 srun -n 2 --mpi=none \
    --label --kill-on-bad-exit=0 bash -c 'if [ "$SLURM_PROCID" = 1 ]; then export DEED_JOB_KEY=$WRONG_KEY; fi
        exec "$@"' deed-rank "$demo" 64 2 3 >"$out" 2>&1
rc=$?
el=$((SECONDS - t))
if [ "$rc" -ne 0 ] && [ "$rc" -ne 124 ] && [ $el -le 25 ] &&
    grep -q "^ *1: .*the rendezvous refused this process: wrong job key" "$out" &&
    ! grep -q "demo result: OK" "$out"; then
    ok "wrong job key on rank 1: refused ('$(grep -o "refused this process: wrong job key" "$out" | sed -n 1p)'), step exit $rc in $el s"
else
    bad "wrong job key on rank 1 (step exit $rc after $el s)"
    show "$out"
fi

# ---- no job key ---------------------------------------------------------------------------
out=$tmp/nokey.out
env -u DEED_JOB_KEY timeout 60 srun -n 2 --mpi=none --label --kill-on-bad-exit=0 \
    "$demo" 64 2 3 >"$out" 2>&1
rc=$?
if [ "$rc" -ne 0 ] && all_ok "$out" 2 "deed.*DEED_JOB_KEY is not set: under Slurm"; then
    ok "no DEED_JOB_KEY under srun: every rank says 'DEED_JOB_KEY is not set' (step exit $rc)"
else
    bad "no DEED_JOB_KEY under srun (step exit $rc)"
    show "$out"
fi

# ---- MPI: deed_init_mpi -------------------------------------------------------------------
t=$SECONDS
out=$tmp/mpi.out
if [ ! -x "$mix" ]; then
    if command -v mpicc >/dev/null 2>&1; then
        bad "mpirun -n 4 mpi_mix: $mix is not built although mpicc is here"
    else
        skipped "mpirun -n 4 mpi_mix: no MPI in this build"
    fi
elif env -u DEED_JOB_KEY timeout 120 mpirun --allow-run-as-root --oversubscribe -n 4 \
    "$mix" 32 >"$out" 2>&1 &&
    [ "$(grep -c '^mpi_mix result: OK' "$out")" -eq 4 ] &&
    [ "$(grep -c 'sum of 32 tasks per rank = \([0-9]*\) (expected \1)' "$out")" -eq 4 ]; then
    ok "mpirun -n 4 mpi_mix: MPI_Allreduce + deed tasks on all ranks, 'mpi_mix result: OK' on each ($((SECONDS - t)) s)"
else
    bad "mpirun -n 4 mpi_mix"
    show "$out"
fi

echo "slurm tests: $pass passed, $fail failed, $skip skipped"
[ "$fail" -eq 0 ]
