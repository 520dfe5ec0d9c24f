/*
 * deedrun — start the N ranks of a deed job on this host.
 *
 *   deedrun -n N [--bind none|core|numa] [--timeout S] [--grace S] [--] prog [args...]
 *
 * Generates a fresh random job key, serves the rendezvous (lib/rendezvous.c) on 127.0.0.1,
 * starts the ranks with DEED_RANK, DEED_NRANKS, DEED_JOB_KEY, DEED_RENDEZVOUS,
 * DEED_LOCAL_RANK and DEED_LOCAL_NRANKS in their environment (bound with hwloc when --bind
 * is given; the placement is boot_place_rank), prints their output line by line prefixed
 * with "[rank] " (stderr lines to stderr), forwards SIGINT and SIGTERM to them, and reports
 * every rank that failed. When a rank fails, the others get --grace seconds to end by
 * themselves, then SIGTERM, then SIGKILL 3 s later.
 *
 * Exit status: 0 when every rank exited 0; else the first failing rank's exit code (128 +
 * signal number when it was killed by a signal); 2 for usage errors; 1 when deedrun itself
 * failed.
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

#define LINE_MAX_BYTES (64 * 1024) /* a longer line is cut into pieces */
#define KILL_AFTER_TERM_MS 3000
#define DRAIN_MS 1000              /* after the last rank ended, wait this long for EOF */

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
    struct stream s[2];
};

struct opts {
    uint32_t n;
    enum boot_bind bind;
    const char *timeout; /* DEED_BOOT_TIMEOUT for the ranks */
    double grace;
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
            "  --bind MODE       bind each rank before it starts: none (default), core (rank\n"
            "                    r gets its share of the cores; round robin when there are\n"
            "                    more ranks than cores) or numa (rank r gets NUMA node\n"
            "                    r mod the number of nodes)\n"
            "  --timeout S       bootstrap timeout of the ranks in seconds (sets\n"
            "                    DEED_BOOT_TIMEOUT; default 30)\n"
            "  --grace S         when a rank fails, seconds the others get to end by\n"
            "                    themselves before they are terminated (default 5)\n"
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

    memset(o, 0, sizeof(*o));
    o->grace = 5.0;
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
            if (v && strcmp(v, "none") == 0)
                o->bind = BOOT_BIND_NONE;
            else if (v && strcmp(v, "core") == 0)
                o->bind = BOOT_BIND_CORE;
            else if (v && strcmp(v, "numa") == 0)
                o->bind = BOOT_BIND_NUMA;
            else
                die_usage("--bind needs none, core or numa%s%s%s", v ? ", not '" : "",
                          v ? v : "", v ? "'" : "");
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
        } else {
            die_usage("unknown option '%s'", a);
        }
    }
    if (!have_n)
        die_usage("-n N is required (the number of ranks)");
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
    hwloc_topology_t topo = NULL;
    hwloc_bitmap_t *sets = NULL;
    struct pollfd *fds;
    size_t fds_cap;
    uint32_t live, first_fail = UINT32_MAX;
    uint64_t term_at = 0, kill_at = 0, drain_until = 0;
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

    if (o.bind != BOOT_BIND_NONE) {
        if (hwloc_topology_init(&topo) < 0 || hwloc_topology_load(topo) < 0) {
            fprintf(stderr, "deedrun: cannot load the hwloc topology: %s\n", strerror(errno));
            return 1;
        }
        sets = calloc(o.n, sizeof(*sets));
        if (!sets) {
            fprintf(stderr, "deedrun: out of memory\n");
            return 1;
        }
        for (uint32_t r = 0; r < o.n; r++) {
            sets[r] = hwloc_bitmap_alloc();
            if (!sets[r] || boot_place_rank(topo, o.bind, r, o.n, sets[r]) != DEED_OK) {
                fprintf(stderr, "deedrun: cannot compute the --bind %s placement of rank %u on "
                                "this machine\n", o.bind == BOOT_BIND_CORE ? "core" : "numa", r);
                return 1;
            }
        }
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
            start_rank(&o, r, po[1], pe[1], keyhex, rdv_addr, topo, sets ? sets[r] : NULL);
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
        uint64_t now = now_ms();

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

        if (term_at && !termed)
            timeout = (int)(term_at > now ? (term_at - now < 1000 ? term_at - now : 1000) : 0);
        else if (kill_at && !killed)
            timeout = (int)(kill_at > now ? (kill_at - now < 1000 ? kill_at - now : 1000) : 0);
        if (drain_until)
            timeout = drain_until > now ? (int)(drain_until - now) : 0;
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
                live--;
                bool ok = WIFEXITED(st) && WEXITSTATUS(st) == 0;
                if (!ok && first_fail == UINT32_MAX) {
                    first_fail = r;
                    exit_code = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
                    if (!term_at && live > 0)
                        term_at = now_ms() + (uint64_t)(o.grace * 1000.0);
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

    /* report */
    for (uint32_t r = 0; r < o.n; r++) {
        int st = ranks[r].status;
        char why[128] = "";

        if (!ranks[r].done || (WIFEXITED(st) && WEXITSTATUS(st) == 0))
            continue;
        if (ranks[r].stopped_by_us && first_fail != UINT32_MAX && first_fail != r)
            snprintf(why, sizeof(why), " (stopped by deedrun after rank %u failed)", first_fail);
        else if (ranks[r].stopped_by_us)
            snprintf(why, sizeof(why), " (stopped by deedrun)");
        if (WIFEXITED(st))
            fprintf(stderr, "deedrun: rank %u exited with code %d%s\n", r, WEXITSTATUS(st), why);
        else if (WIFSIGNALED(st))
            fprintf(stderr, "deedrun: rank %u killed by signal %d (%s)%s\n", r, WTERMSIG(st),
                    strsignal(WTERMSIG(st)), why);
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
    if (sets) {
        for (uint32_t r = 0; r < o.n; r++)
            hwloc_bitmap_free(sets[r]);
        free(sets);
    }
    if (topo)
        hwloc_topology_destroy(topo);
    rdv_destroy(rdv);
    close(sigp[0]);
    close(sigp[1]);
    return exit_code;
}
