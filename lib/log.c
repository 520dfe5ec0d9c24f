/*
 * log.c — stderr logging for the runtime (see log.h). Owns the process-wide log level and
 * the rank prefix; each message is formatted into one buffer and written with one write()
 * so lines from several threads and ranks do not interleave.
 */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <unistd.h>

int deed__log_level = DEED_LOG_WARN;
static int log_rank = -1;

void log_set_level(int level)
{
    deed__log_level = level;
}

void log_set_rank(int rank)
{
    log_rank = rank;
}

void log_msg(int level, const char *fmt, ...)
{
    static const char *names[] = {"error", "warn", "info", "debug"};
    char buf[1024];
    int n;
    va_list ap;

    if (level < 0 || level > DEED_LOG_DEBUG)
        level = DEED_LOG_ERROR;
    if (log_rank >= 0)
        n = snprintf(buf, sizeof(buf), "deed[%d] %s: ", log_rank, names[level]);
    else
        n = snprintf(buf, sizeof(buf), "deed %s: ", names[level]);
    va_start(ap, fmt);
    n += vsnprintf(buf + n, sizeof(buf) - (size_t)n - 1, fmt, ap);
    va_end(ap);
    if (n > (int)sizeof(buf) - 2)
        n = (int)sizeof(buf) - 2;
    buf[n++] = '\n';
    ssize_t w = write(STDERR_FILENO, buf, (size_t)n);
    (void)w;
}
