/*
 * config.h — defaults, validation and DEED_* environment parsing for deed_config_t.
 * Every rejected value is logged with the field or variable name and what is allowed.
 */
#ifndef DEED_CONFIG_H
#define DEED_CONFIG_H

#include "deed.h"

/* Check every field of a configuration; logs the first bad one. */
deed_status_t config_validate(const deed_config_t *cfg);

/* Parsers shared with other modules (launcher options, transports). Return 0 or -1. */
int config_parse_size(const char *s, uint64_t *out);
int config_parse_bool(const char *s, int *out);

#endif /* DEED_CONFIG_H */
