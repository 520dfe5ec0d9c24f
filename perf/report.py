#!/usr/bin/python3
"""perf/report.py — the performance suite's table and plots from its JSON lines.

usage: /usr/bin/python3 perf/report.py RESULTS.jsonl [--previous FILE] [--docs FILE]
                                       [--plots DIR]
       /usr/bin/python3 perf/report.py --selftest

Reads the lines perf/suite.sh collected (deed's benchmarks, the Dask versions with
"runtime":"dask", ucx_perftest through perf/remote.sh, callgrind counts, the machine and the
steps) and prints a markdown section on stdout: the machine, one table with the absolute
figures for deed, Dask and the hardware limit, the ratios deed/Dask and deed/limit, the
target and pass/fail per row, and what was missing or failed.
  --previous FILE  an earlier results file: instruction counts per task are compared with it
  --docs FILE      also write the section into FILE between the lines <!-- suite:begin -->
                   and <!-- suite:end --> (the rest of the file is kept; the markers are
                   appended, under a heading, if the file has none)
  --plots DIR      also draw PNG plots into DIR (matplotlib, Agg): metg.png (efficiency vs
                   grain, deed and Dask, the 50 % line), borrow.png (rate vs k), scale.png
                   (rate vs ranks); the section links them relative to the docs file
  --selftest       feed synthetic lines through the table and the docs update and check the
                   result (exit status 0 when every check holds)
A benchmark that printed nothing shows as "missing" (or "failed", from the suite's step
lines); the report never stops on a missing figure.
"""
import argparse
import json
import math
import os
import sys
import tempfile

BEGIN, END = "<!-- suite:begin -->", "<!-- suite:end -->"

# Task Bench on one node (METG(50 %) nodep / stencil), for reference (paper figures).
TASK_BENCH = [("MPI", "0.39 µs", "4.6 µs"), ("Charm++", "0.87 µs", "12 µs"),
              ("Realm", "16 µs", "59 µs"), ("PaRSEC", "42 µs", "91 µs"),
              ("StarPU", "395 µs", "648 µs"), ("Dask", "13.9 ms", "186 ms")]


# ---- reading ------------------------------------------------------------------------------

def load(path):
    lines = []
    with open(path) as f:
        for n, l in enumerate(f, 1):
            l = l.strip()
            if not l:
                continue
            try:
                o = json.loads(l)
            except ValueError:
                print("report.py: %s:%d: not JSON, skipped: %.80s" % (path, n, l),
                      file=sys.stderr)
                continue
            if isinstance(o, dict) and "bench" in o:
                lines.append(o)
    return lines


class Results:
    def __init__(self, lines):
        self.lines = lines

    def all(self, bench, metric=None, runtime="deed", **eq):
        out = []
        for o in self.lines:
            if o.get("bench") != bench or (metric is not None and o.get("metric") != metric):
                continue
            if o.get("runtime", "deed") != runtime:
                continue
            if all(o.get(k) == v for k, v in eq.items()):
                out.append(o)
        return out

    def one(self, bench, metric, runtime="deed", pick=None, **eq):
        """The line (the last one; or pick(lines)) or None."""
        xs = [o for o in self.all(bench, metric, runtime, **eq) if num(o.get("value"))]
        if not xs:
            return None
        return pick(xs) if pick else xs[-1]

    def step_status(self, step):
        xs = [o for o in self.lines if o.get("bench") == "suite" and o.get("step") == step]
        return xs[-1].get("status", "ok") if xs else None


def num(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


# ---- formatting ---------------------------------------------------------------------------

def fmt(v, unit=""):
    if not num(v):
        return "—"
    a = abs(v)
    if a >= 100000:
        s = "{:,.0f}".format(v)
    elif a >= 100:
        s = "{:,.0f}".format(v)
    elif a >= 10:
        s = "%.1f" % v
    elif a >= 1:
        s = "%.2f" % v
    elif a == 0:
        s = "0"
    else:
        s = "%.3g" % v
    return s + (" " + unit if unit else "")


def fmt_ratio(r):
    if not num(r):
        return "—"
    if r >= 10:
        return "{:,.0f}×".format(r)
    if r >= 0.01:
        return "%.3g×" % r
    return "1/{:,.0f}".format(1 / r) if r > 0 else "0"


class Row:
    def __init__(self, name, deed=None, dask=None, limit=None, unit="", target="",
                 ok=None, deed_txt=None, dask_txt=None, limit_txt=None, note="",
                 r_dask=None, r_limit=None):
        self.name, self.unit, self.target, self.ok, self.note = name, unit, target, ok, note
        self.deed, self.dask, self.limit = deed, dask, limit
        self.deed_txt = deed_txt if deed_txt is not None else fmt(deed, unit)
        self.dask_txt = dask_txt if dask_txt is not None else fmt(dask, unit)
        self.limit_txt = limit_txt if limit_txt is not None else fmt(limit, unit)
        if r_dask is None and num(deed) and num(dask) and dask:
            r_dask = deed / dask
        if r_limit is None and num(deed) and num(limit) and limit:
            r_limit = deed / limit
        self.r_dask, self.r_limit = r_dask, r_limit

    def cells(self):
        if self.ok is None:
            res = self.note or "—"
        else:
            res = ("**pass**" if self.ok else "**FAIL**") + (" (%s)" % self.note if self.note else "")
        return [self.name, self.deed_txt, self.dask_txt, self.limit_txt, fmt_ratio(self.r_dask),
                fmt_ratio(self.r_limit), self.target or "—", res]


def missing_txt(res, step):
    st = res.step_status(step)
    return "failed" if st == "failed" else "missing"


# ---- the rows -----------------------------------------------------------------------------

def rows_local(res):
    rows = []
    by_workers = lambda xs: max(xs, key=lambda o: o.get("workers", 0))
    d = res.one("local", "tasks_per_s_pipelined", pick=by_workers)
    k = res.one("local", "tasks_per_s_pipelined", "dask")
    w = " (%s workers)" % d.get("workers") if d else ""
    r = Row("empty tasks/s, one node, pipelined" + w, d and d["value"], k and k["value"],
            unit="/s", target="deed ÷ Dask ≥ 1000",
            deed_txt=None if d else missing_txt(res, "local"),
            dask_txt=None if k else missing_txt(res, "dask"), limit_txt="—")
    if num(r.r_dask):
        r.ok = r.r_dask >= 1000
    rows.append(r)
    d = res.one("local", "sync_round_trip", pick=by_workers)
    k = res.one("local", "sync_round_trip", "dask")
    r = Row("synchronous round trip, one node (mean)" + w, d and d["value"], k and k["value"],
            unit="µs", target="deed ÷ Dask ≤ 1/1000",
            deed_txt=None if d else missing_txt(res, "local"),
            dask_txt=None if k else missing_txt(res, "dask"), limit_txt="—")
    if d and num(d.get("p50")):
        r.deed_txt += " (p50 %s)" % fmt(d["p50"])
    if num(r.r_dask):
        r.ok = r.r_dask <= 1e-3
    rows.append(r)
    return rows


TLS_NAMES = [("posix,sysv,cma,self", "shm"), ("tcp,self", "tcp")]


def rows_remote(res):
    rows = []
    tls_seen = [t for t, _ in TLS_NAMES if res.all("remote", tls=t) or
                res.all("ucx_perftest", tls=t)] or [TLS_NAMES[0][0]]
    for tls in tls_seen:
        short = dict(TLS_NAMES).get(tls, tls)
        miss = missing_txt(res, "remote")
        d = res.one("remote", "tasks_per_s_pipelined", tls=tls)
        lim = res.one("ucx_perftest", "ucp_am_bw_msg_rate", tls=tls)
        r = Row("remote empty tasks/s, 2 ranks, %s (limit: ucp_am_bw 8 B msg/s)" % short,
                d and d["value"], None, lim and lim["value"], unit="/s",
                target="deed ÷ limit ≥ 0.25", deed_txt=None if d else miss,
                limit_txt=None if lim else miss, dask_txt="—")
        if num(r.r_limit):
            r.ok = r.r_limit >= 0.25
        rows.append(r)
        d = res.one("remote", "sync_round_trip", tls=tls)
        lat = res.one("ucx_perftest", "ucp_am_lat_round_trip", tls=tls)
        limit = 2 * lat["value"] + 2.0 if lat else None
        r = Row("remote synchronous round trip, %s (limit: 2 × ucp_am_lat RTT + 2 µs)" % short,
                d and d["value"], None, limit, unit="µs", target="deed ÷ limit ≤ 1",
                deed_txt=None if d else miss, limit_txt=None if lat else miss, dask_txt="—")
        if d and num(d.get("p50")):
            r.deed_txt += " (p50 %s)" % fmt(d["p50"])
        if num(r.r_limit):
            r.ok = r.r_limit <= 1.0
        rows.append(r)
        d = res.one("remote", "pull_bandwidth", tls=tls, size=16 << 20)
        get = res.one("ucx_perftest", "ucp_get_bandwidth", tls=tls, size=16 << 20)
        r = Row("pull of a 16 MiB object, %s (limit: ucp_get 16 MiB)" % short,
                d and d["value"], None, get and get["value"], unit="GB/s",
                target="deed ÷ limit ≥ 0.9", deed_txt=None if d else miss,
                limit_txt=None if get else miss, dask_txt="—")
        if num(r.r_limit):
            r.ok = r.r_limit >= 0.9
        rows.append(r)
    return rows


def borrow_rates(res, runtime):
    out = {}
    for o in res.all("borrow", "tasks_per_s", runtime):
        if num(o.get("value")) and isinstance(o.get("k"), int):
            out[o["k"]] = o
    return out


def rows_borrow(res):
    d, k = borrow_rates(res, "deed"), borrow_rates(res, "dask")
    ks = sorted(set(d) | set(k)) or [0, 1, 2, 4, 8]
    rows = []
    for kk in ks:
        dd, dk = d.get(kk), k.get(kk)
        who = "driver submits all" if kk == 0 else "through %d borrower task%s" % (
            kk, "" if kk == 1 else "s")
        r = Row("borrowing: tasks/s reading one 1 MiB object, k = %d (%s)" % (kk, who),
                dd and dd["value"], dk and dk["value"], unit="/s", limit_txt="—",
                deed_txt=None if dd else missing_txt(res, "borrow"),
                dask_txt=None if dk else missing_txt(res, "dask"))
        if kk == 0:
            r.target = "baseline for k ≥ 1"
        else:
            r.target = "rises with k: > k = 0"
            if dd and d.get(0):
                s = dd["value"] / d[0]["value"]
                r.ok, r.note = s > 1.0, "×%.2f over k = 0" % s
        rows.append(r)
    return rows


def rows_scale(res):
    rows = []
    ps = sorted({o.get("ranks") for o in res.all("scale", "tasks_per_s")
                 if isinstance(o.get("ranks"), int)}) or [1, 2, 4]
    dask = {o.get("ranks"): o for o in res.all("scale", "tasks_per_s", "dask")}
    for p in ps:
        sp = res.one("scale", "tasks_per_s", ranks=p, owners="spread")
        co = res.one("scale", "tasks_per_s", ranks=p, owners="colocated")
        dk = dask.get(p)
        if sp or co:
            txt = "%s spread / %s colocated" % (fmt(sp and sp["value"]), fmt(co and co["value"]))
        else:
            txt = missing_txt(res, "scale")
        r = Row("scalability: chained batches + aggregator, P = %d rank%s (Dask: %d worker%s)"
                % (p, "" if p == 1 else "s", p, "" if p == 1 else "s"),
                sp and sp["value"], dk and dk["value"], unit="/s", deed_txt=txt,
                dask_txt=None if dk else ("— (2 workers max)" if p > 2 and res.all(
                    "scale", runtime="dask") else missing_txt(res, "dask")), limit_txt="—")
        if sp and co:
            r.note = "spread ÷ colocated %.2f" % (sp["value"] / co["value"])
        rows.append(r)
    return rows


METG_TARGET = {"nodep": 10.0, "stencil": 20.0}


def metg_value(res, runtime, pat, step, bench="metg"):
    """(value or None, text or None) for one METG(50 %) figure; bench_metg's "found": false
    means no grain reached 50 % (value = the largest grain) or every grain did (value = the
    smallest grain, an upper bound)."""
    xs = res.all(bench, "metg50", runtime, pattern=pat)
    o = res.one(bench, "metg50", runtime, pattern=pat)
    if o is None:
        return None, ("< 50 % at every grain" if xs else missing_txt(res, step))
    if o.get("found", True) is False:
        effs = [e["value"] for e in res.all(bench, "efficiency", runtime, pattern=pat)
                if num(e.get("value"))]
        if effs and min(effs) >= 0.5:
            return o["value"], "≤ " + fmt(o["value"], "µs") + " (50 % at every grain)"
        return None, "> " + fmt(o["value"], "µs") + " (never 50 %)"
    return o["value"], None


def rows_metg(res):
    rows = []
    for pat in ("nodep", "stencil"):
        d, dtxt = metg_value(res, "deed", pat, "metg")
        k, ktxt = metg_value(res, "dask", pat, "dask")
        b, btxt = metg_value(res, "deed", "barrier", "metg", bench="metg_baseline")
        if b is None and btxt in ("missing", "failed"):
            btxt = "—"
        r = Row("METG(50 %%), %s (smallest grain at 50 %% efficiency; limit: plain threads "
                "+ barrier)" % pat, d, k, b, unit="µs",
                target="≤ %g µs" % METG_TARGET[pat], deed_txt=dtxt, dask_txt=ktxt,
                limit_txt=btxt)
        if num(d):
            r.ok = d <= METG_TARGET[pat]
        elif dtxt and dtxt.startswith(">"):
            r.ok = False
        rows.append(r)
    return rows


CG_PATHS = [("local_pipelined", "local, pipelined"), ("local_sync", "local, submit + get"),
            ("remote", "remote, 2 ranks (both counted)")]


def rows_callgrind(res, prev):
    rows = []
    for path, label in CG_PATHS:
        d = res.one("callgrind", "instructions_per_task", path=path)
        p = prev.one("callgrind", "instructions_per_task", path=path) if prev else None
        r = Row("instructions per task (callgrind), %s" % label, d and d["value"],
                unit="instr", deed_txt=None if d else missing_txt(res, "callgrind"),
                dask_txt="—", limit_txt="—", target="no regression")
        if d and num(d.get("min")) and num(d.get("max")) and d.get("reps", 1) > 1:
            r.deed_txt += " (%s..%s in %d runs)" % (fmt(d["min"]), fmt(d["max"]), d["reps"])
        if d and p and (p.get("tasks") != d.get("tasks") or
                        ("with_idle" in p) != ("with_idle" in d)):
            r.note = "previous run not comparable (other task counts)"
        elif d and p:
            ch = d["value"] / p["value"] - 1
            r.note = "%+.1f %% vs previous run" % (100 * ch)
            r.ok = ch <= 0.10
        rows.append(r)
    return rows


# ---- the section --------------------------------------------------------------------------

def table(rows):
    head = ["", "deed", "Dask", "hardware limit", "deed ÷ Dask", "deed ÷ limit", "target",
            "result"]
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        out.append("| " + " | ".join(c.replace("|", "\\|") for c in r.cells()) + " |")
    return "\n".join(out)


def machine_text(res):
    m = res.one("machine", "cpus")
    if not m:
        return "Machine: not recorded."
    parts = ["%s CPUs (%s%s)" % (m.get("value"), m.get("model", "?"),
                                 ", %s guest" % m["hypervisor"] if m.get("hypervisor") else ""),
             "%s GiB memory" % m.get("memory_gib", "?"), m.get("os", ""),
             "kernel %s" % m.get("kernel", "?"), "UCX %s" % (m.get("ucx") or "?"),
             m.get("cc", ""), "build type `%s`" % m.get("buildtype", "?")]
    s = "Machine: " + ", ".join(p for p in parts if p) + "."
    s += " Commit `%s`, %s, load average %s at the start%s." % (
        m.get("git", "?"), m.get("date", "?"), m.get("loadavg", "?"),
        " (**--quick** smoke run: small counts)" if m.get("quick") else "")
    return s


def steps_text(res):
    st = [o for o in res.lines if o.get("bench") == "suite" and o.get("metric") == "step_seconds"]
    wall = res.one("suite", "wall_time")
    if not st:
        return ""
    parts = ["%s %s s%s" % (o.get("step"), o.get("value"),
                            "" if o.get("status") == "ok" else " (**%s**%s)" % (
                                o.get("status"), ": " + o["note"] if o.get("note") else ""))
             for o in st]
    s = "Steps: " + ", ".join(parts) + "."
    if wall:
        s = "Whole run: %s s (`time perf/suite.sh%s`). " % (
            wall["value"], " --quick" if wall.get("mode") == "quick" else "") + s
    return s


def dask_text(res):
    k = next((o for o in res.lines if o.get("runtime") == "dask"), None)
    if not k:
        return "Dask: not run (missing)."
    return ("Dask %s: `distributed.LocalCluster` on this host, worker processes "
            "(processes=True), 2 workers × 1 thread, client in the driver process; the same "
            "workloads (`perf/dask/bench_dask.py`) with task counts scaled down (rates are "
            "rates)." % k.get("dask_version", "?"))


def section(res, prev, plot_links):
    rows = (rows_local(res) + rows_remote(res) + rows_borrow(res) + rows_scale(res) +
            rows_metg(res) + rows_callgrind(res, prev))
    npass = sum(1 for r in rows if r.ok is True)
    nfail = sum(1 for r in rows if r.ok is False)
    out = ["### Latest run of `perf/suite.sh`", "",
           "Generated by `perf/report.py` from `perf/results/latest.jsonl`; do not edit "
           "between the markers.", "", machine_text(res), "", dask_text(res),
           "The hardware limit is `ucx_perftest` with the same `UCX_TLS`, run in the same "
           "command (`perf/remote.sh`).", "", table(rows), "",
           "Targets: %d pass, %d fail; rows without a target are information." % (npass, nfail)]
    st = steps_text(res)
    if st:
        out += ["", st]
    out += ["", "For reference, Task Bench METG(50 %) on one node (nodep / stencil): " +
            ", ".join("%s %s / %s" % t for t in TASK_BENCH) + "."]
    if plot_links:
        out += [""] + ["![%s](%s)" % (alt, link) for alt, link in plot_links]
    return "\n".join(out) + "\n", rows


def replace_section(text, body):
    """text with the part between the markers replaced by body (markers appended if absent)."""
    block = BEGIN + "\n" + body + END
    if BEGIN in text and END in text and text.index(BEGIN) < text.index(END):
        a = text.index(BEGIN)
        b = text.index(END) + len(END)
        return text[:a] + block + text[b:]
    if not text.endswith("\n"):
        text += "\n"
    return text + "\n## The whole suite (`perf/suite.sh`)\n\n" + block + "\n"


# ---- plots --------------------------------------------------------------------------------

def plots(res, outdir):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("report.py: matplotlib not found (Debian: python3-matplotlib); no plots",
              file=sys.stderr)
        return []
    os.makedirs(outdir, exist_ok=True)
    made = []

    fig, ax = plt.subplots(figsize=(7, 4.2))
    any_line = False
    for runtime, style in (("deed", "-"), ("dask", "--")):
        for pat, color in (("nodep", "tab:blue"), ("stencil", "tab:orange")):
            pts = sorted((o["grain_us"], o["value"]) for o in
                         res.all("metg", "efficiency", runtime, pattern=pat)
                         if num(o.get("value")) and num(o.get("grain_us")) and o["grain_us"] > 0)
            if pts:
                ax.plot([p[0] for p in pts], [p[1] for p in pts], style, marker="o",
                        color=color, label="%s %s" % (runtime, pat))
                any_line = True
    pts = sorted((o["grain_us"], o["value"]) for o in
                 res.all("metg_baseline", "efficiency", pattern="barrier")
                 if num(o.get("value")) and num(o.get("grain_us")) and o["grain_us"] > 0)
    if pts and any_line:
        ax.plot([p[0] for p in pts], [p[1] for p in pts], ":", marker=".", color="grey",
                label="threads + barrier (no runtime)")
    if any_line:
        ax.axhline(0.5, color="black", lw=1, ls=":", label="50 %")
        ax.set_xscale("log")
        ax.set_xlabel("task grain (µs)")
        ax.set_ylabel("efficiency")
        ax.set_ylim(0, 1.05)
        ax.set_title("METG: efficiency vs task grain")
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(os.path.join(outdir, "metg.png"), dpi=100)
        made.append(("METG efficiency vs grain", "metg.png"))
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 4))
    any_line = False
    for runtime, style in (("deed", "-o"), ("dask", "--s")):
        rates = borrow_rates(res, runtime)
        if rates:
            ks = sorted(rates)
            ax.plot(ks, [rates[k]["value"] for k in ks], style, label=runtime)
            ax.set_xticks(ks)
            any_line = True
    if any_line:
        ax.set_yscale("log")
        ax.set_xlabel("k (borrower tasks fanning out the readers; 0 = driver)")
        ax.set_ylabel("reader tasks/s")
        ax.set_title("Borrowing: throughput vs k")
        ax.legend()
        fig.tight_layout()
        fig.savefig(os.path.join(outdir, "borrow.png"), dpi=100)
        made.append(("borrowing throughput vs k", "borrow.png"))
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 4))
    any_line = False
    ranks = set()
    for label, runtime, owners, style in (("deed spread", "deed", "spread", "-o"),
                                          ("deed colocated", "deed", "colocated", "-^"),
                                          ("Dask", "dask", None, "--s")):
        eq = {"owners": owners} if owners else {}
        pts = sorted((o["ranks"], o["value"]) for o in
                     res.all("scale", "tasks_per_s", runtime, **eq)
                     if isinstance(o.get("ranks"), int) and num(o.get("value")))
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], style, label=label)
            ranks.update(p[0] for p in pts)
            any_line = True
    if any_line:
        ax.set_xticks(sorted(ranks))
        ax.set_yscale("log")
        ax.set_xlabel("ranks (Dask: workers)")
        ax.set_ylabel("tasks/s")
        ax.set_title("Scalability: chained batches + aggregator")
        ax.legend()
        fig.tight_layout()
        fig.savefig(os.path.join(outdir, "scale.png"), dpi=100)
        made.append(("scalability vs ranks", "scale.png"))
    plt.close(fig)
    return made


# ---- self test ----------------------------------------------------------------------------

def selftest():
    L = [
        {"bench": "machine", "metric": "cpus", "value": 2, "model": "Test CPU", "memory_gib": 8,
         "kernel": "6.1", "ucx": "1.13.1", "git": "abc", "quick": False},
        {"bench": "local", "metric": "tasks_per_s_pipelined", "value": 2000000, "workers": 2},
        {"bench": "local", "metric": "tasks_per_s_pipelined", "value": 3000000, "workers": 1},
        {"bench": "local", "metric": "sync_round_trip", "value": 1.5, "p50": 0.7, "workers": 2},
        {"bench": "local", "metric": "tasks_per_s_pipelined", "value": 500, "runtime": "dask"},
        {"bench": "local", "metric": "sync_round_trip", "value": 11000, "runtime": "dask"},
        {"bench": "ucx_perftest", "metric": "ucp_am_bw_msg_rate", "value": 1e7,
         "tls": "posix,sysv,cma,self"},
        {"bench": "ucx_perftest", "metric": "ucp_am_lat_round_trip", "value": 0.5,
         "tls": "posix,sysv,cma,self"},
        {"bench": "ucx_perftest", "metric": "ucp_get_bandwidth", "value": 8.0,
         "size": 16 << 20, "tls": "posix,sysv,cma,self"},
        {"bench": "remote", "metric": "tasks_per_s_pipelined", "value": 2e6,
         "tls": "posix,sysv,cma,self"},
        {"bench": "remote", "metric": "sync_round_trip", "value": 6.0, "p50": 4.0,
         "tls": "posix,sysv,cma,self"},
        {"bench": "remote", "metric": "pull_bandwidth", "value": 7.6, "size": 16 << 20,
         "tls": "posix,sysv,cma,self"},
        {"bench": "borrow", "metric": "tasks_per_s", "value": 100000, "k": 0},
        {"bench": "borrow", "metric": "tasks_per_s", "value": 150000, "k": 2},
        {"bench": "borrow", "metric": "tasks_per_s", "value": 90000, "k": 8},
        {"bench": "borrow", "metric": "tasks_per_s", "value": 400, "k": 0, "runtime": "dask"},
        {"bench": "metg", "metric": "efficiency", "value": 0.9, "pattern": "nodep",
         "grain_us": 100},
        {"bench": "metg", "metric": "efficiency", "value": 0.3, "pattern": "nodep",
         "grain_us": 1},
        {"bench": "metg", "metric": "metg50", "value": 8.0, "pattern": "nodep"},
        {"bench": "metg", "metric": "efficiency", "value": 0.3, "pattern": "stencil",
         "grain_us": 1000},
        {"bench": "metg", "metric": "metg50", "value": 1000, "pattern": "stencil",
         "found": False},
        {"bench": "metg_baseline", "metric": "metg50", "value": 0.5, "pattern": "barrier"},
        {"bench": "metg", "metric": "metg50", "value": 4000.0, "pattern": "nodep",
         "runtime": "dask"},
        {"bench": "callgrind", "metric": "instructions_per_task", "value": 3400,
         "path": "local_pipelined"},
        {"bench": "callgrind", "metric": "instructions_per_task", "value": 5000,
         "path": "local_sync", "tasks": [2, 6]},
        {"bench": "suite", "metric": "step_seconds", "value": 1, "step": "scale",
         "status": "missing", "note": "perf/bench_scale not built"},
        {"bench": "suite", "metric": "step_seconds", "value": 5, "step": "callgrind",
         "status": "failed"},
    ]
    prev = Results([{"bench": "callgrind", "metric": "instructions_per_task", "value": 3000,
                     "path": "local_pipelined"},
                    {"bench": "callgrind", "metric": "instructions_per_task", "value": 3000,
                     "path": "local_sync", "tasks": [1, 3]}])
    body, rows = section(Results(L), prev, [])
    by = {r.name.split(" (")[0] if not r.name.startswith("borrowing") else r.name: r
          for r in rows}
    fails = []

    def check(cond, what):
        if not cond:
            fails.append(what)

    def row(prefix):
        xs = [r for r in rows if r.name.startswith(prefix)]
        check(len(xs) == 1, "one row starting with %r (got %d)" % (prefix, len(xs)))
        return xs[0] if xs else Row(prefix)

    r = row("empty tasks/s, one node")
    check(r.deed == 2000000, "local rate uses the default (most workers) line")
    check(abs(r.r_dask - 4000) < 1e-9 and r.ok is True, "local rate 4000x Dask passes")
    r = row("synchronous round trip, one node")
    check(r.ok is True and abs(r.r_dask - 1.5 / 11000) < 1e-12 and
          fmt_ratio(r.r_dask) == "1/7,333", "sync round trip 1/7333 of Dask passes")
    check("(p50 0.7)" in r.deed_txt, "sync row shows p50")
    r = row("remote empty tasks/s, 2 ranks, shm")
    check(r.ok is False and abs(r.r_limit - 0.2) < 1e-12, "remote tasks 0.2 of limit fails")
    r = row("remote synchronous round trip, shm")
    check(r.limit == 3.0 and r.ok is False and abs(r.r_limit - 2.0) < 1e-12,
          "remote RTT limit = 2 x 0.5 + 2 us, ratio 2 fails")
    r = row("pull of a 16 MiB object, shm")
    check(r.ok is True and abs(r.r_limit - 0.95) < 1e-12, "pull 0.95 of get passes")
    r = row("borrowing: tasks/s reading one 1 MiB object, k = 2")
    check(r.ok is True and "×1.50" in r.note, "k = 2 rises 1.5x over k = 0")
    r = row("borrowing: tasks/s reading one 1 MiB object, k = 8")
    check(r.ok is False and r.dask_txt == "missing", "k = 8 below k = 0 fails; Dask missing")
    r = row("borrowing: tasks/s reading one 1 MiB object, k = 0")
    check(abs(r.r_dask - 250) < 1e-9, "borrow k = 0 ratio to Dask")
    r = row("scalability: chained batches + aggregator, P = 1")
    check(r.deed_txt == "missing", "scale step reported missing")
    r = row("METG(50 %), nodep")
    check(r.ok is True and abs(r.r_dask - 0.002) < 1e-12, "METG nodep 8 us passes")
    r = row("METG(50 %), stencil")
    check(r.ok is False and r.dask_txt == "missing" and r.deed_txt.startswith("> 1,000 µs"),
          "METG stencil never at 50 % fails")
    check(row("METG(50 %), nodep").limit == 0.5, "METG limit = the threads + barrier figure")
    r = row("instructions per task (callgrind), local, pipelined")
    check(r.ok is False and "+13.3 %" in r.note, "13 % more instructions flagged (> 10 %)")
    r = row("instructions per task (callgrind), local, submit + get")
    check(r.ok is None and "not comparable" in r.note, "other task counts not compared")
    r = row("instructions per task (callgrind), remote")
    check(r.deed_txt == "failed", "failed callgrind step reported failed")
    check("| **FAIL**" in body and "**pass**" in body, "table has pass and FAIL cells")
    check("Test CPU" in body and "UCX 1.13.1" in body, "machine described")
    check("scale 1 s (**missing**: perf/bench_scale not built)" in body, "steps listed")
    for line in body.splitlines():
        if line.startswith("| ") and not line.startswith("| |"):
            check(line.count(" | ") == 7, "8 cells per table row: %r" % line[:60])

    doc = "# title\n\nbefore\n\n%s\nold table\n%s\n\nafter\n" % (BEGIN, END)
    new = replace_section(doc, body)
    check(new.startswith("# title\n\nbefore\n\n" + BEGIN) and new.endswith(END + "\n\nafter\n")
          and "old table" not in new and body in new, "section replaced, the rest kept")
    check(replace_section(new, body) == new, "replacing twice is stable")
    app = replace_section("# t\nx", body)
    check(app.startswith("# t\nx\n") and app.count(BEGIN) == 1 and app.count(END) == 1,
          "markers appended when absent")

    with tempfile.TemporaryDirectory() as d:  # the whole command line, files included
        res_path, docs_path = os.path.join(d, "r.jsonl"), os.path.join(d, "p.md")
        with open(res_path, "w") as f:
            for o in L:
                f.write(json.dumps(o) + "\n")
            f.write("not json\n")
        with open(docs_path, "w") as f:
            f.write(doc)
        rc = main([res_path, "--docs", docs_path, "--plots", os.path.join(d, "plots")],
                   quiet=True)
        text = open(docs_path).read()
        check(rc == 0 and "after" in text and "| empty tasks/s" in text, "main writes docs")
        made = os.listdir(os.path.join(d, "plots")) if os.path.isdir(
            os.path.join(d, "plots")) else []
        try:
            import matplotlib  # noqa: F401
            check({"metg.png", "borrow.png"} <= set(made), "plots drawn: %r" % made)
        except ImportError:
            pass

    for f in fails:
        print("report.py --selftest: FAILED: " + f, file=sys.stderr)
    if not fails:
        print("report.py --selftest: %d rows, all checks passed" % len(rows), file=sys.stderr)
    return 1 if fails else 0


# ---- main ---------------------------------------------------------------------------------

def main(argv=None, quiet=False):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("results", nargs="?", help="JSON lines from perf/suite.sh")
    ap.add_argument("--previous", help="an earlier results file (instruction counts)")
    ap.add_argument("--docs", help="markdown file to update between the suite markers")
    ap.add_argument("--plots", help="directory for the PNG plots")
    ap.add_argument("--selftest", action="store_true", help="check the report on synthetic data")
    a = ap.parse_args(argv)
    if a.selftest:
        return selftest()
    if not a.results:
        ap.error("a results file is required (or --selftest)")
    try:
        res = Results(load(a.results))
        prev = Results(load(a.previous)) if a.previous and os.path.exists(a.previous) else None
    except OSError as e:
        print("report.py: %s" % e, file=sys.stderr)
        return 1
    links = []
    if a.plots:
        made = plots(res, a.plots)
        base = os.path.dirname(os.path.abspath(a.docs)) if a.docs else os.getcwd()
        links = [(alt, os.path.relpath(os.path.join(a.plots, f), base)) for alt, f in made]
    body, _ = section(res, prev, links)
    if not quiet:
        sys.stdout.write(body)
    if a.docs:
        try:
            text = open(a.docs).read() if os.path.exists(a.docs) else "# deed — performance\n"
            with open(a.docs + ".tmp", "w") as f:
                f.write(replace_section(text, body))
            os.replace(a.docs + ".tmp", a.docs)
        except OSError as e:
            print("report.py: writing %s: %s" % (a.docs, e), file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
