#!/usr/bin/python3
"""perf/dask/bench_dask.py — deed's benchmark workloads written for Dask distributed.

Run with Debian's Python (python3-distributed): /usr/bin/python3 perf/dask/bench_dask.py
[--quick] [--workers W] [--only LIST]. The cluster is a distributed.LocalCluster on this
host with worker *processes* (processes=True), W workers (default 2), one thread each,
no dashboard. Every line on stdout is one JSON object with "runtime":"dask" and the same
bench/metric names as deed's benchmarks, so perf/report.py can put them side by side:

  local   tasks_per_s_pipelined  N no-op tasks submitted with client.map (pure=False), then
                                 waited for (deed: bench_local's pipelined windows)
          sync_round_trip        submit one no-op task, .result(), one at a time; mean, p50
                                 (deed: bench_local's sync_round_trip), in us
  borrow  tasks_per_s, k         one 1 MiB object scattered once; N reader tasks taking it
                                 (each sums 8 words at its own offset); k = 0: submitted by the
                                 client; k >= 1: k fan-out tasks each submit their share from
                                 inside a worker with worker_client() (deed: bench_borrow)
  scale   tasks_per_s, ranks     w chains at once on w = 1..W workers; a chain is rounds of
                                 B tasks taking the previous aggregate + one aggregator taking
                                 the B results (deed: bench_scale; "ranks" = workers here,
                                 every task owned by the client: "owners":"client")
  metg    efficiency, grain_us   Task Bench style: width W x steps T tasks, each a compute
                                 loop of grain_us (calibrated iterations, not a timer);
                                 efficiency = W x T x grain / (elapsed x W); patterns nodep
                                 (independent tasks) and stencil (each task takes i-1, i, i+1
                                 of the previous step)
          metg50                 smallest grain with efficiency >= 50 %, log-interpolated, us
Everything else (progress, Dask's own log) goes to stderr. Task counts are scaled down so
the whole run takes a minute or two: rates are rates.
"""
import argparse
import json
import logging
import math
import os
import sys
import time

RUNTIME_FIELDS = {"runtime": "dask"}


def emit(obj):
    obj = dict(obj)
    obj.update(RUNTIME_FIELDS)
    print(json.dumps(obj, separators=(",", ":")), flush=True)


def progress(msg):
    print("bench_dask: " + msg, file=sys.stderr, flush=True)


# ---- task bodies (module level: pickled by reference into the worker processes) ----------

def noop(i):
    return i


def read_words(obj, idx):
    """Sum 8 little-endian 64-bit words of obj at an offset given by idx (like deed's)."""
    words = len(obj) // 8
    off = (idx * 4099) % (words - 8 + 1)
    mv = memoryview(obj)[off * 8:(off + 8) * 8].cast("Q")
    return sum(mv) & 0xFFFFFFFFFFFFFFFF


def fan_out(key, first, count):
    """A borrower: submit `count` readers of the scattered object (named by its key, so that
    Dask hands this task the future and not the 1 MiB of bytes) from inside a task, gather
    their sums."""
    from distributed import Future, worker_client
    with worker_client() as c:
        fobj = Future(key, client=c)
        futs = [c.submit(read_words, fobj, first + i, pure=False) for i in range(count)]
        return sum(c.gather(futs)) & 0xFFFFFFFFFFFFFFFF


def agg(*xs):
    return len(xs)


def batch_task(prev, i):
    return i


def spin(iters):
    """A compute kernel of a fixed number of iterations (the METG grain)."""
    x = 0
    for i in range(iters):
        x += i
    return x


def metg_task(iters, *deps):
    spin(iters)
    return 0


# ---- workloads ----------------------------------------------------------------------------

def bench_local(client, o):
    # pipelined: warm up, then N tasks in one go
    client.gather(client.map(noop, range(100), pure=False))
    best = 0.0
    rates = []
    for _ in range(o.runs):
        t0 = time.perf_counter()
        futs = client.map(noop, range(o.tasks), pure=False)
        client.gather(futs)
        dt = time.perf_counter() - t0
        del futs
        rates.append(o.tasks / dt)
    rates.sort()
    best = rates[-1]
    emit({"bench": "local", "metric": "tasks_per_s_pipelined", "value": round(best, 1),
          "unit": "tasks/s", "median": round(rates[len(rates) // 2], 1), "runs": o.runs,
          "n": o.tasks, "workers": o.workers})

    for i in range(20):
        client.submit(noop, i, pure=False).result()
    lat = []
    for i in range(o.iters):
        t0 = time.perf_counter()
        client.submit(noop, i, pure=False).result()
        lat.append((time.perf_counter() - t0) * 1e6)
    lat.sort()
    emit({"bench": "local", "metric": "sync_round_trip", "value": round(sum(lat) / len(lat), 1),
          "unit": "us", "p50": round(lat[len(lat) // 2], 1),
          "p99": round(lat[min(len(lat) - 1, int(0.99 * len(lat)))], 1),
          "min": round(lat[0], 1), "n": o.iters, "workers": o.workers})


def expected_sum(obj, n, first=0):
    return sum(read_words(obj, first + i) for i in range(n)) & 0xFFFFFFFFFFFFFFFF


def bench_borrow(client, o):
    size = 1 << 20
    obj = os.urandom(size)
    fobj = client.scatter(obj, broadcast=False)  # scattered once
    n = o.borrow_tasks
    want = expected_sum(obj, n)
    rates = {}
    for k in o.ks:
        best = 0.0
        for _ in range(o.runs):
            t0 = time.perf_counter()
            if k == 0:
                futs = [client.submit(read_words, fobj, i, pure=False) for i in range(n)]
                got = sum(client.gather(futs)) & 0xFFFFFFFFFFFFFFFF
            else:
                shares = [(n * j // k, n * (j + 1) // k - n * j // k) for j in range(k)]
                futs = [client.submit(fan_out, fobj.key, f, c, pure=False) for f, c in shares]
                got = sum(client.gather(futs)) & 0xFFFFFFFFFFFFFFFF
            dt = time.perf_counter() - t0
            if got != want:
                raise SystemExit("bench_dask: borrow k=%d: checksum %x, expected %x"
                                 % (k, got, want))
            best = max(best, n / dt)
        rates[k] = best
        emit({"bench": "borrow", "metric": "tasks_per_s", "value": round(best, 1),
              "unit": "tasks/s", "k": k, "tasks": n, "ranks": o.workers, "size": size,
              "runs": o.runs, "workers": o.workers})
    if 0 in rates:
        for k in o.ks:
            if k:
                emit({"bench": "borrow", "metric": "speedup_over_driver",
                      "value": round(rates[k] / rates[0], 3), "unit": "x", "k": k,
                      "tasks": n, "ranks": o.workers})


def bench_scale(cluster, client, o):
    for w in range(1, o.workers + 1):
        cluster.scale(w)
        client.wait_for_workers(w)
        while len(client.scheduler_info()["workers"]) > w:
            time.sleep(0.1)
        batch = o.scale_batch
        rounds = max(1, o.scale_tasks // (batch * w))
        # warm-up round
        client.submit(agg, *[client.submit(batch_task, 0, i, pure=False)
                             for i in range(batch)], pure=False).result()
        # w chains at once (deed: one chain per rank), submitted round-robin by the client
        t0 = time.perf_counter()
        prev = [0] * w
        for r in range(rounds):
            for c in range(w):
                parts = [client.submit(batch_task, prev[c], i, pure=False)
                         for i in range(batch)]
                prev[c] = client.submit(agg, *parts, pure=False)
        got = client.gather(prev)
        dt = time.perf_counter() - t0
        if got != [batch] * w:
            raise SystemExit("bench_dask: scale: aggregators saw %r inputs, expected %d"
                             % (got, batch))
        tasks = w * rounds * (batch + 1)
        emit({"bench": "scale", "metric": "tasks_per_s", "value": round(tasks / dt, 1),
              "unit": "tasks/s", "ranks": w, "owners": "client", "chains": w,
              "tasks": tasks, "batch": batch, "workers": w})
    cluster.scale(o.workers)
    client.wait_for_workers(o.workers)


def calibrate():
    """Iterations of spin() per microsecond, measured where it runs (best of 5)."""
    n = 200000
    best = math.inf
    for _ in range(5):
        t0 = time.perf_counter()
        spin(n)
        best = min(best, time.perf_counter() - t0)
    return n / (best * 1e6)


def metg50(points):
    """Smallest grain with efficiency >= 0.5, interpolated in log(grain) between the last
    point above and the first point below 50 % (points sorted by grain, descending)."""
    pts = sorted(points, reverse=True)
    if not pts or pts[0][1] < 0.5:
        return None
    for (g1, e1), (g2, e2) in zip(pts, pts[1:]):
        if e2 < 0.5 <= e1:
            f = (e1 - 0.5) / (e1 - e2)
            return math.exp(math.log(g1) + f * (math.log(g2) - math.log(g1)))
    return pts[-1][0]  # still >= 50 % at the finest grain tried


def bench_metg(client, o):
    # calibrated in the worker processes (the median of their figures), not in the client
    rates = sorted(client.run(calibrate).values())
    per_us = rates[len(rates) // 2]
    width = o.workers
    emit({"bench": "metg_baseline", "metric": "spin_iters_per_us", "value": round(per_us, 3),
          "unit": "iters/us"})
    for pattern in ("nodep", "stencil"):
        points = []
        for grain in o.grains_us:
            iters = max(1, int(grain * per_us))
            steps = int(max(o.min_steps, min(o.max_steps, o.point_s * 1e6 / grain)))
            # warm-up
            client.gather([client.submit(metg_task, 1, pure=False) for _ in range(width)])
            t0 = time.perf_counter()
            prev = None
            for s in range(steps):
                row = []
                for i in range(width):
                    if pattern == "stencil" and prev is not None:
                        deps = [prev[j] for j in (i - 1, i, i + 1) if 0 <= j < width]
                    else:
                        deps = []
                    row.append(client.submit(metg_task, iters, *deps, pure=False))
                if pattern == "nodep":
                    # nothing connects the steps; keep everything in flight
                    prev = (prev or []) + row
                else:
                    prev = row
            client.gather(prev)
            dt = time.perf_counter() - t0
            eff = (width * steps * grain * 1e-6) / (dt * width)
            points.append((grain, eff))
            emit({"bench": "metg", "metric": "efficiency", "value": round(eff, 4),
                  "unit": "fraction", "pattern": pattern, "grain_us": grain, "width": width,
                  "steps": steps, "elapsed_s": round(dt, 4), "workers": o.workers})
            progress("metg %s grain %g us: efficiency %.3f" % (pattern, grain, eff))
        m = metg50(points)
        line = {"bench": "metg", "metric": "metg50", "value": round(m, 1) if m else None,
                "unit": "us", "pattern": pattern, "workers": o.workers,
                "grains_us": o.grains_us}
        if m is None:
            line["note"] = "efficiency below 50 % at every grain tried"
        emit(line)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="small counts (a smoke run)")
    ap.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    ap.add_argument("--only", default="local,borrow,scale,metg",
                    help="comma-separated subset of local,borrow,scale,metg")
    o = ap.parse_args()
    if o.workers < 1 or o.workers > 64:
        ap.error("--workers must be 1..64")
    only = set(o.only.split(","))
    bad = only - {"local", "borrow", "scale", "metg"}
    if bad:
        ap.error("--only: unknown workload(s) %s; allowed: local, borrow, scale, metg"
                 % ", ".join(sorted(bad)))
    if o.quick:
        o.tasks, o.runs, o.iters = 300, 1, 50
        o.borrow_tasks, o.ks = 100, [0, 1, 2, 4, 8]
        o.scale_tasks, o.scale_batch = 200, 20
        o.grains_us = [100000, 10000, 1000]
        o.min_steps, o.max_steps, o.point_s = 3, 20, 0.3
    else:
        o.tasks, o.runs, o.iters = 2000, 2, 300
        o.borrow_tasks, o.ks = 400, [0, 1, 2, 4, 8]
        o.scale_tasks, o.scale_batch = 1000, 50
        o.grains_us = [100000, 30000, 10000, 3000, 1000, 300]
        o.min_steps, o.max_steps, o.point_s = 4, 100, 1.0

    logging.getLogger("distributed").setLevel(logging.ERROR)
    logging.getLogger("tornado").setLevel(logging.CRITICAL)
    import dask
    import distributed
    from distributed import Client, LocalCluster

    dask.config.set({"distributed.worker.daemon": False,
                     "distributed.admin.tick.limit": "3600s"})
    global RUNTIME_FIELDS
    RUNTIME_FIELDS = {"runtime": "dask", "dask_version": distributed.__version__,
                      "cluster": "LocalCluster(processes=True)", "threads_per_worker": 1}
    t_start = time.perf_counter()
    progress("starting LocalCluster: %d worker processes x 1 thread" % o.workers)
    cluster = LocalCluster(n_workers=o.workers, threads_per_worker=1, processes=True,
                           dashboard_address=None, silence_logs=logging.ERROR)
    client = Client(cluster)
    try:
        client.wait_for_workers(o.workers)
        if "local" in only:
            progress("empty tasks and synchronous round trips")
            bench_local(client, o)
        if "borrow" in only:
            progress("borrowing (k = %s)" % ",".join(map(str, o.ks)))
            bench_borrow(client, o)
        if "metg" in only:
            progress("METG sweep (nodep, stencil)")
            bench_metg(client, o)
        if "scale" in only:  # last: it resizes the cluster
            progress("scalability, 1..%d workers" % o.workers)
            bench_scale(cluster, client, o)
    finally:
        client.close()
        cluster.close()
    progress("done in %.1f s" % (time.perf_counter() - t_start))


if __name__ == "__main__":
    main()
