#!/usr/bin/env python3
"""check_json.py — run a benchmark and check its output: every stdout line must be a JSON
object with a string "bench", a string "metric" and a finite number "value".

usage: check_json.py PROGRAM [ARGS...]
Exits non-zero if the program fails, prints nothing, or prints a line that does not parse.
"""
import json
import math
import subprocess
import sys


def reject_constant(name):
    raise ValueError(f"non-finite number {name}")


def main():
    if len(sys.argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    proc = subprocess.run(sys.argv[1:], stdout=subprocess.PIPE, text=True)
    lines = proc.stdout.splitlines()
    sys.stdout.write(proc.stdout)
    if proc.returncode != 0:
        print(f"check_json: {sys.argv[1]} exited with status {proc.returncode}", file=sys.stderr)
        return 1
    if not lines:
        print("check_json: no output", file=sys.stderr)
        return 1
    benches = set()
    for no, line in enumerate(lines, 1):
        try:
            obj = json.loads(line, parse_constant=reject_constant)
        except ValueError as e:
            print(f"check_json: line {no} is not JSON ({e}): {line!r}", file=sys.stderr)
            return 1
        ok = (isinstance(obj, dict) and isinstance(obj.get("bench"), str)
              and isinstance(obj.get("metric"), str)
              and isinstance(obj.get("value"), (int, float))
              and not isinstance(obj.get("value"), bool)
              and math.isfinite(obj["value"]))
        if not ok:
            print(f"check_json: line {no} lacks bench/metric/value: {line!r}", file=sys.stderr)
            return 1
        benches.add(obj["bench"])
    missing = {"baseline", "local", "ratio"} - benches
    if missing:
        print(f"check_json: no lines for {sorted(missing)}", file=sys.stderr)
        return 1
    print(f"check_json: {len(lines)} lines ok", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
