#!/bin/bash
# deed_info_test.sh — runs deed-info for real: text and JSON output on this machine, the
# placement on a synthetic 4-NUMA machine and on an XML machine with an HCA on NUMA node 1,
# clear errors for bad options, and the plan it shows for `deedrun -n 2 --bind core` being
# what the ranks launched that way see for themselves.
#   deed_info_test.sh DEED_INFO DEEDRUN XML
set -euo pipefail
info=$1 deedrun=$2 xml=$3
unset DEED_WORKERS DEED_VERBS_DEVICE UCX_NET_DEVICES # the defaults: one worker per core, no NIC
fail() { echo "FAIL: $*" >&2; exit 1; }
py=python3
command -v "$py" >/dev/null || py=/usr/bin/python3

# text: every section is there
out=$("$info")
for want in "deed 0." "transports built in:" "local  initializes here" "RDMA devices (libibverbs):" \
            "topology (this machine):" "NUMA node 0:" "placement of this process" "worker"; do
    grep -qF -- "$want" <<<"$out" || fail "deed-info output lacks '$want':
$out"
done
echo "text: ok"

# JSON: one object; checks with python
json() { "$py" -c "import json,sys; d=json.loads(sys.stdin.read()); $1" ; }
out=$("$info" --json)
json 'assert d["deed"].count(".") == 2
assert any(t["name"] == "local" and t["initializes"] for t in d["transports"])
r = d["placement"]["ranks"]; assert len(r) == 1 and len(r[0]["workers"]) == r[0]["cores"] >= 1
assert r[0]["store_numa_node"] in [n["os_index"] for n in d["topology"]["numa_nodes"]]' <<<"$out" \
    || fail "bad JSON from deed-info --json: $out"
echo "json: ok"

# synthetic 4 NUMA nodes, 4 ranks in numa mode: node r each, store on node r
out=$("$info" --synthetic "pack:2 numa:2 core:2 pu:2" -n 4 --bind numa --json)
json 'r = d["placement"]["ranks"]; assert [x["store_numa_node"] for x in r] == [0, 1, 2, 3], r
assert [x["cpuset"] for x in r] == ["0-3", "4-7", "8-11", "12-15"], r
assert all(len(x["workers"]) == 2 for x in r), r' <<<"$out" || fail "synthetic numa plan: $out"
out=$("$info" --synthetic "pack:1 numa:1 core:2 pu:2" --workers 4 --json)
json 'w = d["placement"]["ranks"][0]["workers"]; assert w == ["0", "2", "1", "3"], w' <<<"$out" \
    || fail "SMT siblings after the cores: $out"
echo "synthetic: ok"

# XML with mlx5_0 on NUMA node 1: the store goes there; with 2 numa-bound ranks, each keeps
# its node and only rank 1 is near the HCA
out=$(UCX_NET_DEVICES= DEED_VERBS_DEVICE= "$info" --xml "$xml" --json)
json 'r = d["placement"]["ranks"][0]; assert r["nic"] == "mlx5_0" and r["store_numa_node"] == 1, r
assert {"name": "mlx5_0", "kind": "rdma", "numa_node": 1} in d["topology"]["nics"]' <<<"$out" \
    || fail "XML NIC plan: $out"
out=$("$info" --xml "$xml" -n 2 --bind numa --nic mlx5_0)
grep -qE "rank 1: PUs 4-7 .*store on NUMA node 1: the rank's node nearest the NIC" <<<"$out" \
    || fail "XML numa plan: $out"
grep -qE "rank 0: PUs 0-3 .*store on NUMA node 0" <<<"$out" || fail "XML numa plan: $out"
out=$("$info" --xml "$xml" --nic eth0)
grep -qE "store on NUMA node 0: the rank's node nearest the NIC \(NIC eth0" <<<"$out" \
    || fail "--nic eth0: $out"
echo "xml: ok"

# bad input: exit 2 (usage) or 1 (bad topology) and a message naming the problem
check_err() { # want_rc want_text args...
    local want_rc=$1 want=$2 rc=0 err
    shift 2
    err=$("$info" "$@" 2>&1 >/dev/null) || rc=$?
    [ "$rc" = "$want_rc" ] || fail "deed-info $* exited $rc, not $want_rc"
    grep -qF -- "$want" <<<"$err" || fail "deed-info $* said '$err', not '$want'"
}
out=$("$info" --help)
grep -qF -- "--synthetic DESC" <<<"$out" || fail "deed-info --help: $out"
check_err 2 "--bind needs none, core or numa, not 'foo'" --bind foo
check_err 2 "-n needs an integer from 1" -n 0
check_err 2 "--workers needs an integer" --workers x
check_err 2 "unknown option '--frobnicate'" --frobnicate
check_err 2 "give one" --synthetic "pack:1 core:1" --xml "$xml"
check_err 1 "is not an hwloc synthetic description" --synthetic "bogus:3"
check_err 1 "cannot load it as an hwloc XML topology" --xml /nonexistent/topo.xml
echo "errors: ok"

# what deed-info predicts for deedrun -n 2 --bind core is what each rank sees
plan=$("$info" -n 2 --bind core --json)
seen=$("$deedrun" -n 2 --bind core "$info" --json)
"$py" -c '
import json, sys
plan = json.loads(sys.argv[1])["placement"]["ranks"]
seen = {}
for line in sys.argv[2].splitlines():
    rank, _, rest = line.partition("] ")
    seen[int(rank.strip("["))] = json.loads(rest)["placement"]["ranks"][0]
for r in (0, 1):
    for k in ("cpuset", "store_numa_node", "workers"):
        assert plan[r][k] == seen[r][k], (r, k, plan[r][k], seen[r][k])
print("deedrun ranks see the plan:", [(r, seen[r]["cpuset"]) for r in (0, 1)])
' "$plan" "$seen" || fail "deedrun ranks disagree with deed-info's plan"
# deedrun --report-bindings prints the same cpusets
rep=$("$deedrun" -n 2 --bind core --report-bindings true 2>&1)
"$py" -c '
import json, re, sys
plan = json.loads(sys.argv[1])["placement"]["ranks"]
for r in (0, 1):
    m = re.search(r"deedrun: rank %d: --bind core: PUs (\S+) .*store on NUMA node (-?\d+)" % r, sys.argv[2])
    assert m, sys.argv[2]
    assert (m.group(1), int(m.group(2))) == (plan[r]["cpuset"], plan[r]["store_numa_node"]), m.groups()
' "$plan" "$rep" || fail "deedrun --report-bindings disagrees with deed-info: $rep"
# without --bind, deedrun binds the same way (core is the default)
rep=$("$deedrun" -n 2 --report-bindings true 2>&1)
"$py" -c '
import json, re, sys
plan = json.loads(sys.argv[1])["placement"]["ranks"]
for r in (0, 1):
    m = re.search(r"deedrun: rank %d: --bind core: PUs (\S+) " % r, sys.argv[2])
    assert m, sys.argv[2]
    assert m.group(1) == plan[r]["cpuset"], m.groups()
' "$plan" "$rep" || fail "deedrun without --bind does not bind like --bind core: $rep"
# --bind none: the ranks are not bound, but each knows it shares the node (DEED_LOCAL_*) and
# plans its workers on its core share, not all from core 0
seen=$("$deedrun" -n 2 --bind none "$info" --json)
"$py" -c '
import json, sys
plan = json.loads(sys.argv[1])["placement"]["ranks"]
seen = {}
for line in sys.argv[2].splitlines():
    rank, _, rest = line.partition("] ")
    seen[int(rank.strip("["))] = json.loads(rest)["placement"]["ranks"][0]
for r in (0, 1):
    assert seen[r]["cpuset"] == plan[r]["cpuset"], (r, seen[r]["cpuset"], plan[r]["cpuset"])
    assert seen[r]["workers"] == plan[r]["workers"], (r, seen[r]["workers"], plan[r]["workers"])
print("unbound ranks plan their workers on their shares:", [(r, seen[r]["workers"]) for r in (0, 1)])
' "$plan" "$seen" || fail "unbound deedrun ranks do not plan on their core shares"
echo "PASS"
