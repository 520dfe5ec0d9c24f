#!/bin/sh
# tests/rxe/guest.sh — the RDMA checks run inside the soft-RoCE VM (tests/rxe/vm.sh runs it
# there; outside a VM it needs an RDMA device with rdma_cm and an IPv4 address).
#
# usage: tests/rxe/guest.sh BUILD_DIR
#
#   1. test_verbs, the verbs transport's own Check suite, with DEED_TEST_REQUIRE_VERBS=1 (a
#      missing device fails instead of skipping), with the default settings and again with
#      2 credits per peer and no inline data (flow control under pressure);
#   2. the multi-rank scenarios below, each once on the verbs transport (DEED_TRANSPORT=verbs)
#      and once on UCX over rc_verbs (UCX_TLS=rc_verbs,ud_verbs,self on rxe0:1), judged as
#      test_multirank / test_fault judge them: deedrun exit 0, "[0] SCN: PASS", every
#      surviving rank "finalized", no "] error: " line from the runtime;
#        remote_tasks   (4 ranks) 20,000 small tasks (message traffic, credits)
#        large_objects  (2 ranks) objects of 1 KiB .. 64 MiB read byte for byte
#        borrower_chain (4 ranks) a ref borrowed 0 -> 1 -> 2 -> 3, kept beyond its task
#        random_dag     (4 ranks) 10,000 tasks, objects up to 2 MiB, results verified
#        (every multirank scenario ends with GC to zero: objects and store bytes on EVERY rank)
#        fanout         (4 ranks) rank 2 killed (deedrun --kill 2@tasks=200) mid fan-out
#        chain          (3 ranks) rank 1 SIGKILLs itself; the lost 8 MiB links are rebuilt
#        owner_died     (3 ranks) rank 1 killed: gets of its objects fail with OWNER_DIED
#      In the fault scenarios the victim must be "killed by signal 9" and, on verbs, the
#      transport itself must report the death ("verbs transport: rank R is unreachable").
# Prints one "rxe: PASS|FAIL ..." line per check and a summary; exits 1 if anything failed.
set -u
b=${1:?usage: guest.sh BUILD_DIR}
case "$b" in /*) ;; *) b=$PWD/$b ;; esac
deedrun=$b/tools/deedrun
out=$(mktemp -d /tmp/deed-rxe-XXXXXX)
pass=0
fail=0
failed=""

result() { # NAME OK SECONDS LOG
    if [ "$2" = 1 ]; then
        pass=$((pass + 1))
        echo "rxe: PASS $1 ($3 s)"
        # the evidence: 64 MiB byte for byte, GC to zero per rank, the death seen
        grep -E '67108864 bytes made on rank 1, read|: gc rank|transport: rank [0-9]+ is unreachable|killed by signal|: PASS' \
            "$4" | sed 's/^/    /'
    else
        fail=$((fail + 1))
        failed="$failed $1"
        echo "rxe: FAIL $1 ($3 s); its output:"
        sed 's/^/    /' "$4"
    fi
}

# scenario TRANSPORT PROG NRANKS SCN VICTIM [deedrun options...]
scenario() {
    tr=$1 prog=$2 n=$3 scn=$4 victim=$5
    shift 5
    log=$out/$scn.$tr.log
    t0=$(date +%s)
    (
        export DEED_PIN=0 DEED_WORKERS=4 DEED_STORE_SIZE=256M DEED_HEARTBEAT_TIMEOUT_MS=10000
        export DEED_LOG=info
        if [ "$tr" = verbs ]; then
            export DEED_TRANSPORT=verbs
        else
            export DEED_TRANSPORT=ucx UCX_TLS=rc_verbs,ud_verbs,self UCX_NET_DEVICES=rxe0:1
            export UCX_UD_ETH_DGID_CHECK=n
        fi
        exec timeout -k 10 240 "$deedrun" -n "$n" --timeout 120 "$@" "$b/tests/$prog" --rank "$scn"
    ) >"$log" 2>&1
    st=$?
    ok=1
    [ $st = 0 ] || { ok=0; echo "deedrun exit status $st" >>"$log"; }
    grep -q "^\[0\] $scn: PASS" "$log" || ok=0
    r=0
    while [ $r -lt "$n" ]; do
        if [ $r != "$victim" ]; then
            grep -q "^\[$r\] $scn: rank $r finalized" "$log" || ok=0
        fi
        r=$((r + 1))
    done
    if grep -q '\] error: ' "$log"; then
        ok=0
        echo "(the runtime logged an error)" >>"$log"
    fi
    if [ "$victim" != -1 ]; then
        grep -q "deedrun: rank $victim killed by signal 9" "$log" || ok=0
        if [ "$tr" = verbs ] &&
            ! grep -q "verbs transport: rank $victim is unreachable" "$log"; then
            ok=0
            echo "(the verbs transport did not report rank $victim's death)" >>"$log"
        fi
    fi
    result "$scn over $tr ($n ranks)" $ok $(($(date +%s) - t0)) "$log"
}

echo "rxe: kernel $(uname -r); RDMA links:"
rdma link show | sed 's/^/    /'

# test_verbs NAME [VAR=VALUE...]: the transport's Check suite, in an environment
test_verbs() {
    name=$1
    shift
    t0=$(date +%s)
    if env "$@" DEED_TEST_REQUIRE_VERBS=1 CK_DEFAULT_TIMEOUT=300 DEED_LOG=warn \
        timeout -k 10 400 "$b/tests/test_verbs" >"$out/test_verbs.log" 2>&1; then
        ok=1
    else
        ok=0
    fi
    grep -E '^[0-9]+%: Checks|^test_verbs: rxe' "$out/test_verbs.log" | sed 's/^/    /'
    result "$name" "$ok" $(($(date +%s) - t0)) "$out/test_verbs.log"
}
test_verbs "test_verbs (transport level)"
# 2 credits per peer and no inline data: every few messages wait for credits
test_verbs "test_verbs with DEED_VERBS_CREDITS=2 DEED_VERBS_INLINE=0" \
    DEED_VERBS_CREDITS=2 DEED_VERBS_INLINE=0

for tr in verbs ucx; do
    scenario "$tr" test_multirank 4 remote_tasks -1
    scenario "$tr" test_multirank 2 large_objects -1
    scenario "$tr" test_multirank 4 borrower_chain -1
    scenario "$tr" test_multirank 4 random_dag -1
    scenario "$tr" test_fault 4 fanout 2 --kill 2@tasks=200
    scenario "$tr" test_fault 3 chain 1 --keep-going
    scenario "$tr" test_fault 3 owner_died 1 --keep-going
done

echo "rxe: $pass passed, $fail failed${failed:+:$failed}"
rm -rf "$out"
[ $fail = 0 ]
