/*
 * deedrun — start the N ranks of a deed job on this host.
 *
 *   deedrun -n N [--bind core|numa|none] [--report-bindings] [--timeout S] [--grace S]
 *           [--keep-going] [--kill R@MS|R@tasks=N]... [--] prog [args...]
 *
 * Generates a fresh random job key, serves the rendezvous (lib/rendezvous.c) on 127.0.0.1,
 * starts the ranks with DEED_RANK, DEED_NRANKS, DEED_JOB_KEY, DEED_RENDEZVOUS,
 * DEED_LOCAL_RANK and DEED_LOCAL_NRANKS in their environment (bound with hwloc when --bind
 * is given, within deedrun's own binding; the placement is topo_place, lib/topo.h, the same
 * function deed-info shows), prints their output line by line prefixed
 * with "[rank] " (stderr lines to stderr), forwards SIGINT and SIGTERM to them, and reports
 * every rank that failed. When a rank fails, the others get --grace seconds to end by
 * themselves, then SIGTERM, then SIGKILL 3 s later.
 *
 * --keep-going (or DEED_KEEP_GOING=1): a rank other than 0 that fails does not stop the
 * others, and the rendezvous runs in fault-tolerant mode (rdv_set_tolerant: the failed rank
 * is removed from the bootstrap rounds, so the survivors' barriers still complete). Only
 * rank 0 failing (it hosts the job's membership) stops the others as above. Every failed
 * rank is reported at the end with the time it ended.
 *
 * --kill R@MS (fault injection, repeatable): SIGKILL rank R MS milliseconds after it
 * started. --kill R@tasks=N: set DEED_FAULT_KILL_AFTER_TASKS=N in rank R's environment
 * only (the runtime kills its own process after N task bodies; the other ranks get the
 * variable removed). A --kill of a rank other than 0 implies --keep-going.
 *
 * Exit status: 0 when every rank exited 0; else the first failing rank's exit code (128 +
 * signal number when it was killed by a signal); with --keep-going, rank 0's exit status
 * (computed the same way) whatever the other ranks did; 2 for usage errors; 1 when deedrun
 * itself failed.
 *
 * Single-threaded: one poll loop over a self-pipe (signals), the ranks' output pipes and the
 * rendezvous' sockets.
 */
#include <errno.h>
#include <fcntl.h>
#include <hwloc.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bootstrap.h"
#include "deed.h"
#include "log.h"
#include "rendezvous.h"
#include "topo.h"

#define LINE_MAX_BYTES (64 * 1024) /* a longer line is cut into pieces */
#define KILL_AFTER_TERM_MS 3000
#define DRAIN_MS 1000              /* after the last rank ended, wait this long for EOF */
#define FAULT_TASKS_ENV "DEED_FAULT_KILL_AFTER_TASKS"
#define KILL_SYNTAX "--kill expects RANK@MS or RANK@tasks=N"

struct stream {
    int fd;      /* read end, -1 once closed */
    int out;     /* STDOUT_FILENO or STDERR_FILENO */
    char *buf;
    size_t len;
};

struct rank {
    pid_t pid;
    bool done;
    int status;
    bool stopped_by_us; /* we sent SIGTERM/SIGKILL after another rank failed */
    bool injected;      /* we sent the SIGKILL of a --kill R@MS */
    uint64_t started_ms, ended_ms;
    struct stream s[2];
};

/* One --kill: SIGKILL rank at started + ms, or (tasks) the runtime's own kill after n
 * task bodies. */
struct kill_spec {
    uint32_t rank;
    bool tasks;
    bool fired;
    uint64_t ms;
    char n[24]; /* tasks: the value of DEED_FAULT_KILL_AFTER_TASKS */
};

struct opts {
    uint32_t n;
    enum topo_bind bind;
    bool bind_default; /* no --bind given: failing to place the ranks is only a warning */
    bool report_bindings;
    const char *timeout; /* DEED_BOOT_TIMEOUT for the ranks */
    double grace;
    bool keep_going;
    struct kill_spec *kills;
    size_t nkills;
    char **argv;
};

static int sig_w = -1;

static void usage(FILE *f)
{
    fprintf(f,
            "usage: deedrun -n N [options] [--] program [arguments...]\n"
            "\n"
            "Start N ranks of a deed job on this host, serve their bootstrap, print their\n"
            "output prefixed with \"[rank] \", and exit 0 only if every rank exited 0.\n"
            "\n"
            "options:\n"
            "  -n N              number of ranks (a positive integer)\n"
            "  --bind MODE       bind each rank before it starts: core (default: rank r gets\n"
            "                    its share of the cores; round robin when there are\n"
            "                    more ranks than cores), numa (rank r gets its share of\n"
            "                    the NUMA nodes; node r mod the number of nodes when there\n"
            "                    are more ranks than nodes) or none; within deedrun's own\n"
            "                    binding.\n"
            "                    deed-info -n N --bind MODE shows the plan\n"
            "  --report-bindings print each rank's cpuset and store NUMA node to stderr\n"
            "  --timeout S       bootstrap timeout of the ranks in seconds (sets\n"
            "                    DEED_BOOT_TIMEOUT; default 30)\n"
            "  --grace S         when a rank fails, seconds the others get to end by\n"
            "                    themselves before they are terminated (default 5)\n"
            "  --keep-going      a rank other than 0 that dies or exits non-zero does not\n"
            "                    stop the job: the others go on (the bootstrap rendezvous\n"
            "                    drops the dead rank from its barriers), every failure is\n"
            "                    reported at the end, and the exit status is rank 0's.\n"
            "                    Rank 0 failing still stops the others. Also enabled by\n"
            "                    DEED_KEEP_GOING=1\n"
            "  --kill R@MS       fault injection: SIGKILL rank R MS milliseconds after it\n"
            "                    starts (repeatable)\n"
            "  --kill R@tasks=N  fault injection: rank R gets DEED_FAULT_KILL_AFTER_TASKS=N\n"
            "                    (the runtime kills that rank after N task bodies); any\n"
            "                    --kill of a rank other than 0 implies --keep-going\n"
            "  -h, --help        this message\n"
            "\n"
            "Each rank gets DEED_RANK, DEED_NRANKS, DEED_LOCAL_RANK, DEED_LOCAL_NRANKS,\n"
            "DEED_JOB_KEY (a fresh random key) and DEED_RENDEZVOUS in its environment.\n"
            "SIGINT and SIGTERM sent to deedrun are forwarded to every rank.\n");
}

static void die_usage(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die_usage(const char *fmt, ...)
{
    va_list ap;

    fputs("deedrun: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputs("\ntry 'deedrun --help'\n", stderr);
    exit(2);
}

static bool parse_seconds(const char *s, double *out)
{
    char *end;
    double v;

    if (!s || !*s)
        return false;
    errno = 0;
    v = strtod(s, &end);
    if (errno || *end || !(v >= 0) || v > 86400.0 * 7)
        return false;
    *out = v;
    return true;
}

/* A decimal number without sign or spaces, at most max. */
static bool parse_uint(const char *s, uint64_t max, uint64_t *out)
{
    char *end;
    unsigned long long v;

    if (!s || *s < '0' || *s > '9')
        return false;
    errno = 0;
    v = strtoull(s, &end, 10);
    if (errno || *end || v > max)
        return false;
    *out = v;
    return true;
}

/* "R@MS" or "R@tasks=N" (the rank is checked against -n later). */
static void parse_kill(const char *v, struct opts *o)
{
    const char *at = v ? strchr(v, '@') : NULL;
    char rank[24];
    uint64_t r, x;
    struct kill_spec *ks, k;

    memset(&k, 0, sizeof(k));
    if (!at || (size_t)(at - v) >= sizeof(rank))
        die_usage(KILL_SYNTAX "%s%s%s", v ? ", not '" : "", v ? v : "", v ? "'" : "");
    memcpy(rank, v, (size_t)(at - v));
    rank[at - v] = '\0';
    if (!parse_uint(rank, RDV_MAX_NRANKS, &r))
        die_usage(KILL_SYNTAX ", not '%s' (the rank is not a number)", v);
    k.rank = (uint32_t)r;
    if (strncmp(at + 1, "tasks=", 6) == 0) {
        if (!parse_uint(at + 7, UINT32_MAX, &x) || x == 0)
            die_usage(KILL_SYNTAX ", not '%s' (N: a positive number of tasks)", v);
        k.tasks = true;
        snprintf(k.n, sizeof(k.n), "%llu", (unsigned long long)x);
    } else {
        if (!parse_uint(at + 1, 86400000ull * 7, &x))
            die_usage(KILL_SYNTAX ", not '%s' (MS: milliseconds after the rank starts)", v);
        k.ms = x;
    }
    for (size_t i = 0; i < o->nkills; i++)
        if (o->kills[i].rank == k.rank && o->kills[i].tasks && k.tasks)
            die_usage("--kill %u@tasks= is given twice", k.rank);
    ks = realloc(o->kills, (o->nkills + 1) * sizeof(*ks));
    if (!ks) {
        fprintf(stderr, "deedrun: out of memory\n");
        exit(1);
    }
    o->kills = ks;
    o->kills[o->nkills++] = k;
}

/* Option value: "--opt V", "--opt=V" or, for -n, "-nV". */
static const char *opt_value(int argc, char **argv, int *i, const char *name)
{
    const char *a = argv[*i];
    size_t l = strlen(name);

    if (a[l] == '=')
        return a + l + 1;
    if (a[l] != '\0')
        return a + l; /* -n4 */
    if (*i + 1 >= argc)
        return NULL;
    return argv[++*i];
}

static void parse_opts(int argc, char **argv, struct opts *o)
{
    int i;
    bool have_n = false;
    const char *env_kg = getenv("DEED_KEEP_GOING");

    memset(o, 0, sizeof(*o));
    o->grace = 5.0;
    /* ranks get their share of the cores unless told otherwise: unbound ranks pinned their
     * workers to the same cores and floated their other threads over them (a one-worker
     * remote round trip was 1.75 us or ~70 us from run to run; bound: 1.75 us every time) */
    o->bind = TOPO_BIND_CORE;
    o->bind_default = true;
    o->keep_going = env_kg && *env_kg && strcmp(env_kg, "0") != 0;
    for (i = 1; i < argc; i++) {
        const char *a = argv[i], *v;

        if (strcmp(a, "--") == 0) {
            i++;
            break;
        }
        if (a[0] != '-' || a[1] == '\0')
            break;
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(stdout);
            exit(0);
        }
        if (strncmp(a, "-n", 2) == 0 && (a[2] == '\0' || a[2] == '=' || (a[2] >= '0' && a[2] <= '9') || a[2] == '-')) {
            char *end;
            unsigned long long n;
            v = opt_value(argc, argv, &i, "-n");
            errno = 0;
            n = v && *v >= '0' && *v <= '9' ? strtoull(v, &end, 10) : 0;
            if (!v || !*v || *v < '0' || *v > '9' || errno || *end || n == 0 ||
                n > RDV_MAX_NRANKS)
                die_usage("-n needs a positive integer (at most %u)%s%s%s", RDV_MAX_NRANKS,
                          v ? ", not '" : "", v ? v : "", v ? "'" : "");
            o->n = (uint32_t)n;
            have_n = true;
        } else if (strncmp(a, "--bind", 6) == 0 && (a[6] == '\0' || a[6] == '=')) {
            v = opt_value(argc, argv, &i, "--bind");
            o->bind_default = false;
            if (v && strcmp(v, "none") == 0)
                o->bind = TOPO_BIND_NONE;
            else if (v && strcmp(v, "core") == 0)
                o->bind = TOPO_BIND_CORE;
            else if (v && strcmp(v, "numa") == 0)
                o->bind = TOPO_BIND_NUMA;
            else
                die_usage("--bind needs none, core or numa%s%s%s", v ? ", not '" : "",
                          v ? v : "", v ? "'" : "");
        } else if (strcmp(a, "--report-bindings") == 0) {
            o->report_bindings = true;
        } else if (strncmp(a, "--timeout", 9) == 0 && (a[9] == '\0' || a[9] == '=')) {
            double t;
            v = opt_value(argc, argv, &i, "--timeout");
            if (!parse_seconds(v, &t) || t <= 0)
                die_usage("--timeout needs a positive number of seconds%s%s%s",
                          v ? ", not '" : "", v ? v : "", v ? "'" : "");
            o->timeout = v;
        } else if (strncmp(a, "--grace", 7) == 0 && (a[7] == '\0' || a[7] == '=')) {
            v = opt_value(argc, argv, &i, "--grace");
            if (!parse_seconds(v, &o->grace))
                die_usage("--grace needs a number of seconds (0 or more)%s%s%s",
                          v ? ", not '" : "", v ? v : "", v ? "'" : "");
        } else if (strcmp(a, "--keep-going") == 0) {
            o->keep_going = true;
        } else if (strncmp(a, "--kill", 6) == 0 && (a[6] == '\0' || a[6] == '=')) {
            parse_kill(opt_value(argc, argv, &i, "--kill"), o);
        } else {
            die_usage("unknown option '%s'", a);
        }
    }
    if (!have_n)
        die_usage("-n N is required (the number of ranks)");
    for (size_t k = 0; k < o->nkills; k++) {
        if (o->kills[k].rank >= o->n)
            die_usage("--kill: rank %u is out of range (the job has %u ranks: 0 to %u)",
                      o->kills[k].rank, o->n, o->n - 1);
        if (o->kills[k].rank != 0)
            o->keep_going = true;
    }
    if (i >= argc)
        die_usage("no program to run");
    o->argv = argv + i;
}

static uint64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void write_all(int fd, const char *p, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n > 0) {
            p += n;
            len -= (size_t)n;
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else if (n < 0 && errno == EAGAIN) {
            struct pollfd pf = {.fd = fd, .events = POLLOUT};
            poll(&pf, 1, 100);
        } else {
            return; /* output closed: drop */
        }
    }
}

/* Print one line (without its newline) with the rank prefix, in one write. */
static void emit_line(uint32_t rank, int out, const char *line, size_t len)
{
    char prefix[24];
    int pl = snprintf(prefix, sizeof(prefix), "[%u] ", rank);
    char *buf = malloc((size_t)pl + len + 1);

    if (!buf) {
        write_all(out, prefix, (size_t)pl);
        write_all(out, line, len);
        write_all(out, "\n", 1);
        return;
    }
    memcpy(buf, prefix, (size_t)pl);
    memcpy(buf + pl, line, len);
    buf[(size_t)pl + len] = '\n';
    write_all(out, buf, (size_t)pl + len + 1);
    free(buf);
}

/* Read what is available; print complete lines. Returns false at EOF/error (closed). */
static bool stream_read(uint32_t rank, struct stream *s)
{
    char tmp[16384];
    ssize_t n = read(s->fd, tmp, sizeof(tmp));

    if (n < 0 && (errno == EINTR || errno == EAGAIN))
        return true;
    if (n <= 0) {
        if (s->len)
            emit_line(rank, s->out, s->buf, s->len);
        s->len = 0;
        close(s->fd);
        s->fd = -1;
        return false;
    }
    for (ssize_t i = 0; i < n; i++) {
        if (tmp[i] == '\n' || s->len == LINE_MAX_BYTES) {
            emit_line(rank, s->out, s->buf, s->len);
            s->len = 0;
            if (tmp[i] == '\n')
                continue;
        }
        s->buf[s->len++] = tmp[i];
    }
    return true;
}

static void on_signal(int sig, siginfo_t *si, void *uc)
{
    int saved = errno;
    /* si_code <= 0: sent by a process (kill, sigqueue); > 0 (SI_KERNEL): e.g. the terminal,
     * which already signalled the whole foreground process group, ranks included. */
    unsigned char rec[2] = {(unsigned char)sig, (unsigned char)(si && si->si_code <= 0)};
    ssize_t w = write(sig_w, rec, sizeof(rec));

    (void)w;
    (void)uc;
    errno = saved;
}

static void signal_ranks(struct rank *ranks, uint32_t n, int sig, bool mark)
{
    for (uint32_t r = 0; r < n; r++)
        if (!ranks[r].done && ranks[r].pid > 0) {
            kill(ranks[r].pid, sig);
            if (mark)
                ranks[r].stopped_by_us = true;
        }
}

static void make_key(uint8_t key[16])
{
    size_t got = 0;

    while (got < 16) {
        ssize_t n = getrandom(key + got, 16 - got, 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            fprintf(stderr, "deedrun: getrandom failed: %s\n", strerror(errno));
            exit(1);
        }
        got += (size_t)n;
    }
}

static void set_log_level(void)
{
    static const char *names[] = {"error", "warn", "info", "debug"};
    const char *s = getenv("DEED_LOG");

    if (!s)
        return;
    for (int i = 0; i < 4; i++)
        if (strcasecmp(s, names[i]) == 0)
            log_set_level(i);
}

/* In the child, between fork and exec: never returns. */
static void start_rank(const struct opts *o, uint32_t r, int out_w, int err_w, const char *key,
                       const char *rdv_addr, hwloc_topology_t topo, hwloc_const_cpuset_t set)
{
    char buf[32];
    sigset_t none;
    struct sigaction dfl;

    memset(&dfl, 0, sizeof(dfl));
    dfl.sa_handler = SIG_DFL;
    sigaction(SIGINT, &dfl, NULL);
    sigaction(SIGTERM, &dfl, NULL);
    sigaction(SIGCHLD, &dfl, NULL);
    sigaction(SIGPIPE, &dfl, NULL);
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);

    if (dup2(out_w, STDOUT_FILENO) < 0 || dup2(err_w, STDERR_FILENO) < 0)
        _exit(127);
    if (r != 0) {
        int fd = open("/dev/null", O_RDONLY);
        if (fd >= 0 && fd != STDIN_FILENO) {
            dup2(fd, STDIN_FILENO);
            close(fd);
        }
    }
    snprintf(buf, sizeof(buf), "%u", r);
    setenv("DEED_RANK", buf, 1);
    setenv("DEED_LOCAL_RANK", buf, 1);
    snprintf(buf, sizeof(buf), "%u", o->n);
    setenv("DEED_NRANKS", buf, 1);
    setenv("DEED_LOCAL_NRANKS", buf, 1);
    setenv("DEED_JOB_KEY", key, 1);
    setenv("DEED_RENDEZVOUS", rdv_addr, 1);
    unsetenv("DEED_BOOTSTRAP");
    if (o->timeout)
        setenv("DEED_BOOT_TIMEOUT", o->timeout, 1);
    for (size_t k = 0; k < o->nkills; k++) {
        if (!o->kills[k].tasks)
            continue;
        /* any --kill R@tasks: the variable is for rank R only */
        unsetenv(FAULT_TASKS_ENV);
        for (size_t j = 0; j < o->nkills; j++)
            if (o->kills[j].tasks && o->kills[j].rank == r)
                setenv(FAULT_TASKS_ENV, o->kills[j].n, 1);
        break;
    }
    if (topo && set && hwloc_set_cpubind(topo, set, HWLOC_CPUBIND_PROCESS) < 0) {
        char *str = NULL;
        hwloc_bitmap_asprintf(&str, set);
        fprintf(stderr, "deedrun: warning: cannot bind rank %u to cpuset %s: %s\n", r,
                str ? str : "?", strerror(errno));
        free(str);
    }
    execvp(o->argv[0], o->argv);
    fprintf(stderr, "deedrun: cannot run %s: %s\n", o->argv[0], strerror(errno));
    _exit(127);
}

/* The cpuset of every rank (topo_place over deedrun's own binding), printed to stderr with
 * --report-bindings. 0, or -1 after printing why. */
static int place_ranks(const struct opts *o, struct topo *t, hwloc_bitmap_t **sets_out)
{
    hwloc_bitmap_t *sets;

    if (topo_open(t) != DEED_OK) {
        fprintf(stderr, "deedrun: cannot load the hwloc topology of this machine\n");
        return -1;
    }
    sets = calloc(o->n, sizeof(*sets));
    if (!sets) {
        fprintf(stderr, "deedrun: out of memory\n");
        return -1;
    }
    *sets_out = sets;
    for (uint32_t r = 0; r < o->n; r++) {
        struct topo_place_in in = {.cpuset = t->cpuset, .bind = o->bind, .local_rank = r,
                                   .local_nranks = o->n, .nworkers = 0, .nic = t->nic};
        struct topo_placement p;
        char *str = NULL;

        if (topo_place(t->topology, &in, &p) != DEED_OK ||
            !(sets[r] = hwloc_bitmap_dup(p.rank_cpuset))) {
            fprintf(stderr, "deedrun: cannot compute the --bind %s placement of rank %u on "
                            "this machine\n", topo_bind_str(o->bind), r);
            topo_place_free(&p);
            return -1;
        }
        if (o->report_bindings) {
            hwloc_bitmap_list_asprintf(&str, p.rank_cpuset);
            fprintf(stderr, "deedrun: rank %u: --bind %s: PUs %s (%u core%s), store on NUMA "
                            "node %d%s%s\n", r, topo_bind_str(o->bind), str ? str : "?",
                    p.ncores, p.ncores == 1 ? "" : "s", p.store_node, p.nic[0] ? ", NIC " : "",
                    p.nic);
            free(str);
        }
        topo_place_free(&p);
    }
    return 0;
}

static void raise_fd_limit(void)
{
    struct rlimit rl;

    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

int main(int argc, char **argv)
{
    struct opts o;
    uint8_t key[16];
    char keyhex[33], rdv_addr[64];
    struct rdv *rdv = NULL;
    uint16_t port = 0;
    int sigp[2];
    struct sigaction sa;
    sigset_t block, old;
    struct rank *ranks;
    struct topo topo = {0};
    hwloc_bitmap_t *sets = NULL;
    struct pollfd *fds;
    size_t fds_cap;
    uint32_t live, first_fail = UINT32_MAX, stop_cause = UINT32_MAX;
    uint64_t term_at = 0, kill_at = 0, drain_until = 0, t0;
    bool termed = false, killed = false;
    int exit_code = 0, rc;

    parse_opts(argc, argv, &o);
    set_log_level();
    raise_fd_limit();

    make_key(key);
    for (int i = 0; i < 16; i++)
        snprintf(keyhex + 2 * i, 3, "%02x", key[i]);
    if (rdv_create("127.0.0.1", 0, o.n, key, &rdv, &port) != DEED_OK) {
        fprintf(stderr, "deedrun: cannot start the rendezvous server on 127.0.0.1\n");
        return 1;
    }
    memset(key, 0, sizeof(key));
    snprintf(rdv_addr, sizeof(rdv_addr), "127.0.0.1:%u", (unsigned)port);
    /* keep-going: a dead rank other than 0 leaves the bootstrap rounds, not the whole job */
    rdv_set_tolerant(rdv, o.keep_going);

    if ((o.bind != TOPO_BIND_NONE || o.report_bindings) && place_ranks(&o, &topo, &sets) != 0) {
        if (!o.bind_default || o.report_bindings)
            return 1;
        fprintf(stderr, "deedrun: warning: the ranks run unbound (the default --bind core "
                        "failed; --bind none silences this)\n");
        o.bind = TOPO_BIND_NONE;
    }

    if (pipe2(sigp, O_CLOEXEC | O_NONBLOCK) < 0) {
        fprintf(stderr, "deedrun: pipe: %s\n", strerror(errno));
        return 1;
    }
    sig_w = sigp[1];
    memset(&sa, 0, sizeof(sa));
    sa.sa_sigaction = on_signal;
    sa.sa_flags = SA_SIGINFO | SA_RESTART | SA_NOCLDSTOP;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGCHLD, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    ranks = calloc(o.n, sizeof(*ranks));
    if (!ranks) {
        fprintf(stderr, "deedrun: out of memory\n");
        return 1;
    }
    sigemptyset(&block);
    sigaddset(&block, SIGINT);
    sigaddset(&block, SIGTERM);
    sigaddset(&block, SIGCHLD);
    t0 = now_ms();
    for (uint32_t r = 0; r < o.n; r++) {
        int po[2], pe[2];
        pid_t pid;

        if (pipe2(po, O_CLOEXEC) < 0 || pipe2(pe, O_CLOEXEC) < 0) {
            fprintf(stderr, "deedrun: cannot create the output pipes of rank %u: %s\n", r,
                    strerror(errno));
            signal_ranks(ranks, r, SIGKILL, true);
            return 1;
        }
        ranks[r].s[0].buf = malloc(LINE_MAX_BYTES);
        ranks[r].s[1].buf = malloc(LINE_MAX_BYTES);
        if (!ranks[r].s[0].buf || !ranks[r].s[1].buf) {
            fprintf(stderr, "deedrun: out of memory\n");
            signal_ranks(ranks, r, SIGKILL, true);
            return 1;
        }
        sigprocmask(SIG_BLOCK, &block, &old);
        pid = fork();
        if (pid == 0)
            start_rank(&o, r, po[1], pe[1], keyhex, rdv_addr, topo.topology,
                       sets && o.bind != TOPO_BIND_NONE ? sets[r] : NULL);
        sigprocmask(SIG_SETMASK, &old, NULL);
        if (pid < 0) {
            fprintf(stderr, "deedrun: cannot start rank %u: fork: %s\n", r, strerror(errno));
            signal_ranks(ranks, r, SIGKILL, true);
            return 1;
        }
        close(po[1]);
        close(pe[1]);
        fcntl(po[0], F_SETFL, O_NONBLOCK);
        fcntl(pe[0], F_SETFL, O_NONBLOCK);
        ranks[r].pid = pid;
        ranks[r].started_ms = now_ms();
        ranks[r].s[0].fd = po[0];
        ranks[r].s[0].out = STDOUT_FILENO;
        ranks[r].s[1].fd = pe[0];
        ranks[r].s[1].out = STDERR_FILENO;
    }
    memset(keyhex, 0, sizeof(keyhex));
    live = o.n;

    fds_cap = 1 + 2 * (size_t)o.n + (size_t)rdv_nfds(rdv) + 16;
    fds = malloc(fds_cap * sizeof(*fds));
    if (!fds) {
        fprintf(stderr, "deedrun: out of memory\n");
        signal_ranks(ranks, o.n, SIGKILL, true);
        return 1;
    }

    for (;;) {
        size_t nf = 0, nstreams = 0;
        int rdv_first, rdv_n, timeout = 1000;
        uint64_t now = now_ms(), next = now + 1000;

        /* deadlines */
        if (term_at && !termed && now >= term_at) {
            signal_ranks(ranks, o.n, SIGTERM, true);
            termed = true;
            kill_at = now + KILL_AFTER_TERM_MS;
        }
        if (kill_at && !killed && now >= kill_at) {
            signal_ranks(ranks, o.n, SIGKILL, true);
            killed = true;
        }
        for (size_t k = 0; k < o.nkills; k++) {
            struct kill_spec *ks = &o.kills[k];
            struct rank *rk = &ranks[ks->rank];
            if (ks->tasks || ks->fired)
                continue;
            if (rk->done) {
                ks->fired = true; /* it ended first */
            } else if (now >= rk->started_ms + ks->ms) {
                kill(rk->pid, SIGKILL);
                rk->injected = true;
                ks->fired = true;
            } else if (rk->started_ms + ks->ms < next) {
                next = rk->started_ms + ks->ms;
            }
        }
        for (uint32_t r = 0; r < o.n; r++)
            nstreams += (ranks[r].s[0].fd >= 0) + (ranks[r].s[1].fd >= 0);
        if (live == 0) {
            if (!drain_until)
                drain_until = now + DRAIN_MS;
            if (nstreams == 0 || now >= drain_until)
                break;
        }

        if (fds_cap < 1 + 2 * (size_t)o.n + (size_t)rdv_nfds(rdv)) {
            fds_cap = 1 + 2 * (size_t)o.n + (size_t)rdv_nfds(rdv) + 16;
            struct pollfd *nfds = realloc(fds, fds_cap * sizeof(*fds));
            if (!nfds) {
                fprintf(stderr, "deedrun: out of memory\n");
                signal_ranks(ranks, o.n, SIGKILL, true);
                return 1;
            }
            fds = nfds;
        }
        fds[nf++] = (struct pollfd){.fd = sigp[0], .events = POLLIN};
        for (uint32_t r = 0; r < o.n; r++)
            for (int k = 0; k < 2; k++)
                if (ranks[r].s[k].fd >= 0)
                    fds[nf++] = (struct pollfd){.fd = ranks[r].s[k].fd, .events = POLLIN};
        rdv_first = (int)nf;
        rdv_n = rdv_pollfds(rdv, fds + nf, (int)(fds_cap - nf));
        nf += (size_t)rdv_n;

        if (term_at && !termed && term_at < next)
            next = term_at;
        if (kill_at && !killed && kill_at < next)
            next = kill_at;
        if (drain_until && drain_until < next)
            next = drain_until;
        timeout = next > now ? (int)(next - now) : 0;
        rc = poll(fds, nf, timeout);
        if (rc < 0 && errno != EINTR) {
            fprintf(stderr, "deedrun: poll: %s\n", strerror(errno));
            signal_ranks(ranks, o.n, SIGKILL, true);
            return 1;
        }
        if (rc <= 0)
            continue;

        /* signals */
        if (fds[0].revents) {
            unsigned char rec[64];
            ssize_t n;
            while ((n = read(sigp[0], rec, sizeof(rec))) > 0) {
                for (ssize_t i = 0; i + 1 < n; i += 2) {
                    int sig = rec[i];
                    if (sig == SIGCHLD)
                        continue;
                    if (rec[i + 1]) /* from a process: pass it on */
                        signal_ranks(ranks, o.n, sig, false);
                    if (!term_at) /* then make sure the job ends */
                        term_at = now_ms() + (uint64_t)(o.grace * 1000.0);
                }
            }
        }
        /* children (always: a SIGCHLD record may have been lost to a full pipe) */
        for (;;) {
            int st;
            pid_t pid = waitpid(-1, &st, WNOHANG);
            if (pid <= 0)
                break;
            for (uint32_t r = 0; r < o.n; r++) {
                if (ranks[r].pid != pid || ranks[r].done)
                    continue;
                ranks[r].done = true;
                ranks[r].status = st;
                ranks[r].ended_ms = now_ms();
                live--;
                bool ok = WIFEXITED(st) && WEXITSTATUS(st) == 0;
                if (ok)
                    continue;
                if (first_fail == UINT32_MAX) {
                    first_fail = r;
                    if (!o.keep_going)
                        exit_code = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
                }
                /* keep-going: only rank 0 (the job's membership) stops the others */
                if (stop_cause == UINT32_MAX && (!o.keep_going || r == 0)) {
                    stop_cause = r;
                    if (!term_at && live > 0)
                        term_at = now_ms() + (uint64_t)(o.grace * 1000.0);
                }
                /* the rendezvous learns now even if the rank never connected, so nobody
                 * waits for it in a round */
                {
                    char what[64];
                    if (WIFEXITED(st))
                        snprintf(what, sizeof(what), "exited with code %d", WEXITSTATUS(st));
                    else
                        snprintf(what, sizeof(what), "was killed by signal %d",
                                 WIFSIGNALED(st) ? WTERMSIG(st) : 0);
                    rdv_rank_lost(rdv, r, what);
                }
            }
        }
        /* output */
        for (size_t k = 1; k < (size_t)rdv_first; k++) {
            if (!fds[k].revents)
                continue;
            for (uint32_t r = 0; r < o.n; r++)
                for (int j = 0; j < 2; j++)
                    if (ranks[r].s[j].fd == fds[k].fd) {
                        /* read until EAGAIN or EOF, bounded */
                        for (int it = 0; it < 16 && ranks[r].s[j].fd >= 0; it++) {
                            int before = ranks[r].s[j].fd;
                            if (!stream_read(r, &ranks[r].s[j]))
                                break;
                            struct pollfd pf = {.fd = before, .events = POLLIN};
                            if (poll(&pf, 1, 0) <= 0)
                                break;
                        }
                        goto next_fd;
                    }
        next_fd:;
        }
        /* rendezvous */
        if (rdv_poll(rdv, fds + rdv_first, rdv_n) != DEED_OK)
            fprintf(stderr, "deedrun: warning: the rendezvous server failed\n");
    }

    /* report (keep-going: with the time each rank ended, since the job went on) */
    for (uint32_t r = 0; r < o.n; r++) {
        int st = ranks[r].status;
        char why[128] = "", at[48] = "";

        if (!ranks[r].done || (WIFEXITED(st) && WEXITSTATUS(st) == 0))
            continue;
        if (ranks[r].stopped_by_us && stop_cause != UINT32_MAX && stop_cause != r)
            snprintf(why, sizeof(why), " (stopped by deedrun after rank %u failed)", stop_cause);
        else if (ranks[r].stopped_by_us)
            snprintf(why, sizeof(why), " (stopped by deedrun)");
        else if (ranks[r].injected && WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL)
            snprintf(why, sizeof(why), " (injected by --kill)");
        if (o.keep_going)
            snprintf(at, sizeof(at), " at %.3f s", (double)(ranks[r].ended_ms - t0) / 1000.0);
        if (WIFEXITED(st))
            fprintf(stderr, "deedrun: rank %u exited with code %d%s%s\n", r, WEXITSTATUS(st), at,
                    why);
        else if (WIFSIGNALED(st))
            fprintf(stderr, "deedrun: rank %u killed by signal %d (%s)%s%s\n", r, WTERMSIG(st),
                    strsignal(WTERMSIG(st)), at, why);
    }
    if (o.keep_going) {
        /* the job's result is rank 0's: a fault-tolerant job that recovered succeeded */
        int st = ranks[0].status;
        exit_code = !ranks[0].done         ? 1
                    : WIFEXITED(st)        ? WEXITSTATUS(st)
                    : WIFSIGNALED(st)      ? 128 + WTERMSIG(st)
                                           : 1;
    }
    if (first_fail == UINT32_MAX && rdv_failed(rdv) > 0)
        log_warn("rendezvous: %u rank(s) left the bootstrap without finalizing",
                 rdv_failed(rdv));

    for (uint32_t r = 0; r < o.n; r++) {
        for (int j = 0; j < 2; j++) {
            if (ranks[r].s[j].fd >= 0)
                close(ranks[r].s[j].fd);
            free(ranks[r].s[j].buf);
        }
    }
    free(ranks);
    free(fds);
    free(o.kills);
    if (sets) {
        for (uint32_t r = 0; r < o.n; r++)
            hwloc_bitmap_free(sets[r]);
        free(sets);
    }
    topo_close(&topo);
    rdv_destroy(rdv);
    close(sigp[0]);
    close(sigp[1]);
    return exit_code;
}
