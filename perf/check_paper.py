#!/usr/bin/env python3
"""check_paper.py — run one of the paper benchmarks (bench_borrow, bench_scale, bench_metg)
and check its output: every stdout line (with deedrun's "[rank] " prefix, from rank 0 only,
or without one) must be a JSON object with a string "bench", a string "metric" and a finite
number "value", and the lines the benchmark promises must be there.

usage: check_paper.py borrow|scale|metg PROGRAM [ARGS...]
       check_paper.py --expect-fail TEXT PROGRAM [ARGS...]
  borrow  a tasks_per_s line for each k of 0,1,2,4,8 (value > 0, same "tasks" and "ranks"),
          and a speedup_over_driver line for each k > 0
  scale   tasks_per_s lines for owners spread and colocated (value > 0, "ranks" = "chains"),
          and a spread_over_colocated line
  metg    efficiency lines (0 < value <= 1.5) for nodep, stencil and the barrier baseline;
          a metg50 line for each (value > 0), a metg50_over_baseline for nodep and stencil
Exits non-zero (with the reason) if the program fails, times out or a check fails.
With --expect-fail (the --inject-error self-tests), the program must instead exit with
status 1 and print TEXT on stderr: its own check of the results caught the wrong value.
"""
import json
import math
import re
import subprocess
import sys


def reject_constant(name):
    raise ValueError(f"non-finite number {name}")


def parse(out):
    """The JSON objects of the output, or an error string."""
    objs = []
    for line in out.splitlines():
        m = re.match(r"\[(\d+)\] (.*)$", line)
        if m:
            if m.group(1) != "0":
                return f"a line from rank {m.group(1)}: {line!r}"
            line = m.group(2)
        try:
            obj = json.loads(line, parse_constant=reject_constant)
        except ValueError as e:
            return f"not JSON ({e}): {line!r}"
        v = obj.get("value") if isinstance(obj, dict) else None
        if not (isinstance(obj, dict) and isinstance(obj.get("bench"), str)
                and isinstance(obj.get("metric"), str) and isinstance(v, (int, float))
                and not isinstance(v, bool) and math.isfinite(v)):
            return f"line lacks bench/metric/value: {line!r}"
        objs.append(obj)
    return objs if objs else "no output"


def check_borrow(objs):
    rates = {o["k"]: o for o in objs if o["bench"] == "borrow" and o["metric"] == "tasks_per_s"}
    speed = {o["k"] for o in objs if o["bench"] == "borrow"
             and o["metric"] == "speedup_over_driver"}
    for k in (0, 1, 2, 4, 8):
        if k not in rates:
            return f"no tasks_per_s line for k={k}"
        if rates[k]["value"] <= 0 or rates[k].get("unit") != "tasks/s":
            return f"bad tasks_per_s line for k={k}: {rates[k]}"
        if k and k not in speed:
            return f"no speedup_over_driver line for k={k}"
    if len({(o.get("tasks"), o.get("ranks")) for o in rates.values()}) != 1:
        return "tasks/ranks differ between the k lines"
    return None


def check_scale(objs):
    rates = {o.get("owners"): o for o in objs
             if o["bench"] == "scale" and o["metric"] == "tasks_per_s"}
    for mode in ("spread", "colocated"):
        o = rates.get(mode)
        if o is None:
            return f"no tasks_per_s line for owners={mode}"
        if o["value"] <= 0 or o.get("ranks") != o.get("chains") or not o.get("tasks"):
            return f"bad tasks_per_s line: {o}"
    if not any(o["metric"] == "spread_over_colocated" for o in objs):
        return "no spread_over_colocated line"
    return None


def check_metg(objs):
    for bench, pattern in (("metg", "nodep"), ("metg", "stencil"),
                           ("metg_baseline", "barrier")):
        eff = [o for o in objs if o["bench"] == bench and o["metric"] == "efficiency"
               and o.get("pattern") == pattern]
        if len(eff) < 2:
            return f"fewer than 2 efficiency points for {bench}/{pattern}"
        for o in eff:
            if not 0 < o["value"] <= 1.5 or not o.get("grain_us") or not o.get("tasks"):
                return f"bad efficiency point: {o}"
        m = [o for o in objs if o["bench"] == bench and o["metric"] == "metg50"
             and o.get("pattern") == pattern]
        if len(m) != 1 or m[0]["value"] <= 0 or m[0].get("unit") != "us":
            return f"no (or a bad) metg50 line for {bench}/{pattern}"
        if bench == "metg" and not any(o["metric"] == "metg50_over_baseline"
                                       and o.get("pattern") == pattern for o in objs):
            return f"no metg50_over_baseline line for {pattern}"
    return None


CHECKS = {"borrow": check_borrow, "scale": check_scale, "metg": check_metg}


def expect_fail(text, cmd):
    try:
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              timeout=100)
    except subprocess.TimeoutExpired:
        print("check_paper --expect-fail: timed out", file=sys.stderr)
        return 1
    sys.stdout.write(proc.stdout)
    sys.stderr.write(proc.stderr)
    if proc.returncode != 1 or text not in proc.stderr:
        print(f"check_paper --expect-fail: wanted exit status 1 and {text!r} on stderr, got "
              f"status {proc.returncode}", file=sys.stderr)
        return 1
    print(f"check_paper --expect-fail: the wrong result was caught ({text!r})", file=sys.stderr)
    return 0


def main():
    if len(sys.argv) >= 4 and sys.argv[1] == "--expect-fail":
        return expect_fail(sys.argv[2], sys.argv[3:])
    if len(sys.argv) < 3 or sys.argv[1] not in CHECKS:
        print(__doc__, file=sys.stderr)
        return 2
    name = f"check_paper {sys.argv[1]}"
    try:
        proc = subprocess.run(sys.argv[2:], stdout=subprocess.PIPE, text=True, timeout=100)
    except subprocess.TimeoutExpired:
        print(f"{name}: timed out", file=sys.stderr)
        return 1
    sys.stdout.write(proc.stdout)
    if proc.returncode != 0:
        print(f"{name}: exited with status {proc.returncode}", file=sys.stderr)
        return 1
    objs = parse(proc.stdout)
    err = objs if isinstance(objs, str) else CHECKS[sys.argv[1]](objs)
    if err:
        print(f"{name}: {err}", file=sys.stderr)
        return 1
    print(f"{name}: {len(objs)} lines ok", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
