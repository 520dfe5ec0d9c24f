/*
 * config.c — deed_config_t defaults, validation and the DEED_* environment (see config.h and
 * the table in deed.h). Owns nothing at run time.
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "log.h"
#include "transport.h"

#define MIN_STORE (1ull << 20)
#define MAX_STORE (1ull << 40)
#define MAX_INLINE (1ull << 20)

DEED_API deed_status_t deed_config_default(deed_config_t *cfg)
{
    if (cfg == NULL)
        return DEED_ERR_INVALID_ARG;
    memset(cfg, 0, sizeof(*cfg));
    cfg->size = sizeof(*cfg);
    cfg->num_workers = 0;
    cfg->max_threads = 4096;
    cfg->spin_us = 50;
    cfg->store_size = 256ull << 20;
    cfg->inline_max = 0; /* auto: the transport's eager limit */
    cfg->stack_size = 8ull << 20;
    cfg->pin_workers = 1;
    cfg->log_level = DEED_LOG_WARN;
    strcpy(cfg->transport, "auto");
    cfg->heartbeat_ms = 200;
    cfg->heartbeat_timeout_ms = 30000;
    cfg->max_retries = 3;
    cfg->lineage_max = 256ull << 20;
    return DEED_OK;
}

int config_parse_size(const char *s, uint64_t *out)
{
    char *end;
    if (s == NULL || !isdigit((unsigned char)*s))
        return -1;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno)
        return -1;
    unsigned shift = 0;
    switch (toupper((unsigned char)*end)) {
    case 0: break;
    case 'K': shift = 10; break;
    case 'M': shift = 20; break;
    case 'G': shift = 30; break;
    case 'T': shift = 40; break;
    default: return -1;
    }
    if (*end) {
        end++;
        if (toupper((unsigned char)*end) == 'B' || toupper((unsigned char)*end) == 'I') {
            if (toupper((unsigned char)*end) == 'I' && toupper((unsigned char)end[1]) == 'B')
                end++;
            end++;
        }
    }
    if (*end != 0 || (shift && v > (~0ull >> shift)))
        return -1;
    *out = (uint64_t)v << shift;
    return 0;
}

int config_parse_bool(const char *s, int *out)
{
    static const char *yes[] = {"1", "yes", "true", "on"}, *no[] = {"0", "no", "false", "off"};
    for (int i = 0; i < 4; i++) {
        if (strcasecmp(s, yes[i]) == 0)
            return *out = 1, 0;
        if (strcasecmp(s, no[i]) == 0)
            return *out = 0, 0;
    }
    return -1;
}

static int range_u64(const char *what, uint64_t v, uint64_t lo, uint64_t hi, const char *allowed)
{
    if (v < lo || v > hi) {
        log_error("%s: %llu is out of range; allowed: %s", what, (unsigned long long)v, allowed);
        return -1;
    }
    return 0;
}

deed_status_t config_validate(const deed_config_t *c)
{
    if (c->size != sizeof(*c)) {
        log_error("deed_config_t.size is %u, expected %zu: fill it with deed_config_default()",
                  c->size, sizeof(*c));
        return DEED_ERR_CONFIG;
    }
    if (range_u64("num_workers (DEED_WORKERS)", c->num_workers, 0, 1024,
                  "0 (one per core) or 1-1024") ||
        range_u64("max_threads (DEED_MAX_THREADS)", c->max_threads, 1, 65536, "1-65536") ||
        range_u64("spin_us (DEED_SPIN_US)", c->spin_us, 0, 1000000, "0-1000000") ||
        range_u64("store_size (DEED_STORE_SIZE)", c->store_size, MIN_STORE, MAX_STORE,
                  "1M-1T, e.g. 256M or 4G") ||
        range_u64("inline_max (DEED_INLINE_MAX)", c->inline_max, 0, MAX_INLINE,
                  "0 (auto) or 1-1M, e.g. 64K") ||
        range_u64("stack_size (DEED_STACK_SIZE)", c->stack_size, 64 << 10, 1ull << 30,
                  "64K-1G") ||
        range_u64("heartbeat_ms (DEED_HEARTBEAT_MS)", c->heartbeat_ms, 10, 60000, "10-60000") ||
        range_u64("max_retries (DEED_MAX_RETRIES)", c->max_retries, 0, 1000, "0-1000") ||
        range_u64("lineage_max (DEED_LINEAGE_MAX)", c->lineage_max, 0, MAX_STORE,
                  "0 (no lineage) or up to 1T, e.g. 256M"))
        return DEED_ERR_CONFIG;
    if (c->num_workers && c->max_threads < c->num_workers) {
        log_error("max_threads (DEED_MAX_THREADS) %u is below num_workers %u", c->max_threads,
                  c->num_workers);
        return DEED_ERR_CONFIG;
    }
    if (c->heartbeat_timeout_ms != 0 &&
        (c->heartbeat_timeout_ms < 100 || c->heartbeat_timeout_ms > 3600000 ||
         c->heartbeat_timeout_ms < 2 * c->heartbeat_ms)) {
        log_error("heartbeat_timeout_ms (DEED_HEARTBEAT_TIMEOUT_MS): %u; allowed: 0 (off) or "
                  "100-3600000 and at least twice heartbeat_ms (%u)",
                  c->heartbeat_timeout_ms, c->heartbeat_ms);
        return DEED_ERR_CONFIG;
    }
    if (c->pin_workers != 0 && c->pin_workers != 1) {
        log_error("pin_workers (DEED_PIN): %d; allowed: 0 or 1", c->pin_workers);
        return DEED_ERR_CONFIG;
    }
    if ((unsigned)c->log_level > DEED_LOG_DEBUG) {
        log_error("log_level (DEED_LOG): %d; allowed: error, warn, info, debug", c->log_level);
        return DEED_ERR_CONFIG;
    }
    if (memchr(c->transport, 0, sizeof(c->transport)) == NULL ||
        (strcmp(c->transport, "auto") != 0 && tp_find(c->transport) == NULL)) {
        log_error("transport (DEED_TRANSPORT): '%.*s' is not built in; allowed: auto, %s",
                  (int)sizeof(c->transport), c->transport, tp_names());
        return DEED_ERR_CONFIG;
    }
    return DEED_OK;
}

static int env_u64(const char *var, uint64_t lo, uint64_t hi, const char *allowed, uint64_t *out,
                   int sizes)
{
    const char *s = getenv(var);
    uint64_t v;
    char *end;
    if (s == NULL)
        return 0;
    if (sizes) {
        if (config_parse_size(s, &v) != 0)
            v = ~0ull;
    } else {
        errno = 0;
        v = isdigit((unsigned char)*s) ? strtoull(s, &end, 10) : ~0ull;
        if (errno || (v != ~0ull && *end))
            v = ~0ull;
    }
    if (v == ~0ull || v < lo || v > hi) {
        log_error("%s='%s' is invalid; allowed: %s", var, s, allowed);
        return -1;
    }
    *out = v;
    return 0;
}

DEED_API deed_status_t deed_config_from_env(deed_config_t *cfg)
{
    deed_config_t c;
    uint64_t v;
    const char *s;

    if (cfg == NULL)
        return DEED_ERR_INVALID_ARG;
    c = *cfg;
    if (c.size != sizeof(c)) {
        log_error("deed_config_from_env: fill the config with deed_config_default() first");
        return DEED_ERR_INVALID_ARG;
    }
#define ENV_FIELD(var, field, lo, hi, allowed, sizes)                                          \
    do {                                                                                     \
        v = c.field;                                                                         \
        if (env_u64(var, lo, hi, allowed, &v, sizes))                                        \
            return DEED_ERR_CONFIG;                                                          \
        c.field = v;                                                                         \
    } while (0)
    ENV_FIELD("DEED_WORKERS", num_workers, 0, 1024, "0 (one per core) or 1-1024", 0);
    ENV_FIELD("DEED_MAX_THREADS", max_threads, 1, 65536, "1-65536", 0);
    ENV_FIELD("DEED_SPIN_US", spin_us, 0, 1000000, "0-1000000 (microseconds)", 0);
    ENV_FIELD("DEED_STORE_SIZE", store_size, MIN_STORE, MAX_STORE,
              "1M-1T with suffix K/M/G/T, e.g. 256M or 4G", 1);
    ENV_FIELD("DEED_INLINE_MAX", inline_max, 0, MAX_INLINE, "0 (auto) or 1-1M with suffix K/M, e.g. 64K", 1);
    ENV_FIELD("DEED_STACK_SIZE", stack_size, 64 << 10, 1ull << 30, "64K-1G, e.g. 8M", 1);
    ENV_FIELD("DEED_HEARTBEAT_MS", heartbeat_ms, 10, 60000, "10-60000 (milliseconds)", 0);
    ENV_FIELD("DEED_HEARTBEAT_TIMEOUT_MS", heartbeat_timeout_ms, 0, 3600000,
              "0 (off) or 100-3600000 (milliseconds)", 0);
    ENV_FIELD("DEED_MAX_RETRIES", max_retries, 0, 1000, "0-1000", 0);
    ENV_FIELD("DEED_LINEAGE_MAX", lineage_max, 0, MAX_STORE, "0 (no lineage) up to 1T, e.g. 256M",
              1);
#undef ENV_FIELD
    if ((s = getenv("DEED_PIN")) != NULL && config_parse_bool(s, &c.pin_workers) != 0) {
        log_error("DEED_PIN='%s' is invalid; allowed: 0/1, yes/no, true/false, on/off", s);
        return DEED_ERR_CONFIG;
    }
    if ((s = getenv("DEED_LOG")) != NULL) {
        static const char *names[] = {"error", "warn", "info", "debug"};
        int lvl = -1;
        for (int i = 0; i < 4; i++)
            if (strcasecmp(s, names[i]) == 0)
                lvl = i;
        if (lvl < 0) {
            log_error("DEED_LOG='%s' is invalid; allowed: error, warn, info, debug", s);
            return DEED_ERR_CONFIG;
        }
        c.log_level = (deed_log_level_t)lvl;
    }
    if ((s = getenv("DEED_TRANSPORT")) != NULL) {
        if (strlen(s) >= sizeof(c.transport) || (strcmp(s, "auto") != 0 && tp_find(s) == NULL)) {
            log_error("DEED_TRANSPORT='%s' is invalid; allowed: auto, %s", s, tp_names());
            return DEED_ERR_CONFIG;
        }
        strcpy(c.transport, s);
    }
    if (c.num_workers && c.max_threads < c.num_workers) {
        log_error("DEED_MAX_THREADS=%u is below DEED_WORKERS=%u", c.max_threads,
                  c.num_workers);
        return DEED_ERR_CONFIG;
    }
    *cfg = c;
    return DEED_OK;
}
