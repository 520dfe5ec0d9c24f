/*
 * transport.c — the table of transports built into libdeed and lookup by name. Owns nothing
 * else: each transport's state lives in its own directory behind its ops table.
 *
 * To add a transport, add its ops table to tp_table and its name to TP_NAMES (both guarded
 * by the same build option), in order of preference.
 */
#include "transport.h"

#include <string.h>

#include "local/local.h"
#ifdef DEED_HAVE_UCX
#include "ucx/ucx.h"
#endif
#ifdef DEED_HAVE_VERBS
#include "verbs/verbs.h"
#endif

static const struct tp_ops *const tp_table[] = {
#ifdef DEED_HAVE_UCX
    &tp_ucx_ops,
#endif
#ifdef DEED_HAVE_VERBS
    &tp_verbs_ops,
#endif
    &tp_local_ops,
};

#if defined(DEED_HAVE_UCX) && defined(DEED_HAVE_VERBS)
#define TP_NAMES "ucx,verbs,local"
#elif defined(DEED_HAVE_UCX)
#define TP_NAMES "ucx,local"
#elif defined(DEED_HAVE_VERBS)
#define TP_NAMES "verbs,local"
#else
#define TP_NAMES "local"
#endif

const struct tp_ops *tp_find(const char *name)
{
    if (!name)
        return NULL;
    for (size_t i = 0; i < sizeof(tp_table) / sizeof(tp_table[0]); i++) {
        if (strcmp(tp_table[i]->name, name) == 0)
            return tp_table[i];
    }
    return NULL;
}

const char *tp_names(void)
{
    return TP_NAMES;
}
