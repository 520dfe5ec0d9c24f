/*
 * hello.c — a program from outside the source tree, built only against an installed deed
 * (its header and its pkg-config file) by tests/install/run.sh. It checks that the installed
 * header compiles on its own and that libdeed links and runs: init a context, put an object,
 * get it back, compare the bytes, finalize.
 */
#include <deed.h>

#include <stdio.h>
#include <string.h>

#define CHECK(call)                                                                                \
    do {                                                                                           \
        int rc_ = (call);                                                                          \
        if (rc_ != DEED_OK) {                                                                      \
            fprintf(stderr, "hello: %s failed: %s (%d)\n", #call, deed_strerror(rc_), rc_);        \
            return 1;                                                                              \
        }                                                                                          \
    } while (0)

int main(void)
{
    static const char msg[] = "hello from an installed deed";
    char buf[sizeof(msg)] = {0};
    size_t size = 0;
    deed_ctx_t *ctx = NULL;
    deed_ref_t ref = DEED_REF_NULL;

    CHECK(deed_init(NULL, &ctx));
    CHECK(deed_put(ctx, msg, sizeof(msg), &ref));
    CHECK(deed_get_copy(ctx, ref, buf, sizeof(buf), &size, DEED_WAIT_FOREVER));
    if (size != sizeof(msg) || memcmp(buf, msg, sizeof(msg)) != 0) {
        fprintf(stderr, "hello: got %zu bytes \"%.*s\", expected %zu bytes \"%s\"\n", size,
                (int)(size < sizeof(buf) ? size : sizeof(buf)), buf, sizeof(msg), msg);
        return 1;
    }
    CHECK(deed_ref_release(ctx, ref));
    CHECK(deed_finalize(ctx));
    printf("install test ok\n");
    return 0;
}
