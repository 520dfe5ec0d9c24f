/*
 * local.h — the "local" transport: one-rank jobs, no network. Registration is bookkeeping
 * and a get from rank 0 is a memcpy.
 */
#ifndef DEED_TP_LOCAL_H
#define DEED_TP_LOCAL_H

#include "transport.h"

extern const struct tp_ops tp_local_ops;

#endif /* DEED_TP_LOCAL_H */
