#!/usr/bin/env python3
"""perf/callgrind_count.py — instructions per task from pairs of callgrind runs.

usage: callgrind_count.py PATH N1 N2 DIR1 DIR2 [DIR1 DIR2 ...]
Each (DIR1, DIR2) pair is one repetition: the callgrind output files (cg.*, one per rank) of
a run with N1 tasks and of one with N2 tasks. Prints one JSON line (see perf/callgrind.sh):
value = median over the repetitions of
    ((total - idle)(N2) - (total - idle)(N1)) / (N2 - N1)
where idle is the self cost of the functions in which threads wait or poll for work (IDLE):
how much of it there is depends on timing, not on the work. "with_idle" keeps it.
"""
import json
import os
import re
import statistics
import subprocess
import sys

IDLE = re.compile(r"^(sched_idle_wait|work_visible|loop_sleep|loop_main|epoll_wait|epoll_pwait|"
                  r"clock_gettime.*|__pthread_(en|dis)able_asynccancel|sched_yield|"
                  r"ucp_worker_progress|uct_\w*progress\w*|ucs_callbackq\w*|ucs_arbiter\w*|"
                  r"ucx_progress|usleep|__GI___clock_nanosleep|__nanosleep|futex_wait\w*)$")
LINE = re.compile(r"\s*([\d,]+) \(\s*[\d.]+%\)\s+(\S.*)$")


def costs(d):
    """(total, idle) instructions over the callgrind files of one run."""
    tot = idle = 0
    files = sorted(f for f in os.listdir(d) if f.startswith("cg."))
    if not files:
        sys.exit("callgrind_count.py: no callgrind output in %s" % d)
    for f in files:
        out = subprocess.run(["callgrind_annotate", "--auto=no", "--threshold=100",
                              os.path.join(d, f)], stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, text=True, check=True).stdout
        seen = False
        for line in out.splitlines():
            m = LINE.match(line)
            if not m:
                continue
            v, name = int(m.group(1).replace(",", "")), m.group(2)
            if name.startswith("PROGRAM TOTALS"):
                tot += v
                seen = True
                continue
            fn = name.split(" [")[0].rsplit(":", 1)[-1].strip()
            if IDLE.match(fn):
                idle += v
        if not seen:
            sys.exit("callgrind_count.py: no PROGRAM TOTALS in %s/%s" % (d, f))
    return tot, idle, len(files)


def main(argv):
    if len(argv) < 6 or (len(argv) - 4) % 2:
        sys.exit(__doc__.split("\n")[2])
    path, n1, n2 = argv[1], int(argv[2]), int(argv[3])
    busy, total, ranks = [], [], 1
    for d1, d2 in zip(argv[4::2], argv[5::2]):
        (t1, i1, ranks), (t2, i2, _) = costs(d1), costs(d2)
        total.append((t2 - t1) / (n2 - n1))
        busy.append(((t2 - i2) - (t1 - i1)) / (n2 - n1))
    o = {"bench": "callgrind", "metric": "instructions_per_task",
         "value": round(statistics.median(busy), 1), "unit": "instr/task", "path": path,
         "with_idle": round(statistics.median(total), 1), "min": round(min(busy), 1),
         "max": round(max(busy), 1), "reps": len(busy), "tasks": [n1, n2], "ranks": ranks,
         "workers": 1, "spin_us": 0}
    print(json.dumps(o, separators=(",", ":")))


if __name__ == "__main__":
    main(sys.argv)
