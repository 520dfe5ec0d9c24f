/*
 * status.c — deed_strerror(), generated from the one status list in deed.h so the text can
 * never drift from the enum.
 */
#include "deed.h"

const char *deed_strerror(int status)
{
    switch (status) {
#define DEED__STATUS_CASE(name, value, text)                                                  \
    case value:                                                                               \
        return text;
        DEED_STATUS_LIST(DEED__STATUS_CASE)
#undef DEED__STATUS_CASE
    default:
        return "unknown status code";
    }
}
