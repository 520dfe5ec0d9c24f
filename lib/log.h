/*
 * log.h — the runtime's logging: one line per message on stderr, prefixed with
 * "deed[rank]" and the level. The level is process-wide (the lowest-numbered, i.e. most
 * verbose, of all live contexts wins); messages above it cost one branch.
 *
 * Rule: the function that first detects an error logs it with context; callers propagate.
 */
#ifndef DEED_LOG_H
#define DEED_LOG_H

#include "deed.h"

extern int deed__log_level;

void log_set_level(int level);
void log_set_rank(int rank);
void log_msg(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define LOG_AT(lvl, ...)                                                                     \
    do {                                                                                     \
        if ((lvl) <= deed__log_level)                                                        \
            log_msg((lvl), __VA_ARGS__);                                                     \
    } while (0)
#define log_error(...) LOG_AT(DEED_LOG_ERROR, __VA_ARGS__)
#define log_warn(...) LOG_AT(DEED_LOG_WARN, __VA_ARGS__)
#define log_info(...) LOG_AT(DEED_LOG_INFO, __VA_ARGS__)
#define log_debug(...) LOG_AT(DEED_LOG_DEBUG, __VA_ARGS__)

#endif /* DEED_LOG_H */
