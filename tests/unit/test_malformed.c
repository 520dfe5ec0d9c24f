/*
 * test_malformed.c — a malformed message between ranks is dropped and logged, and the job
 * goes on: rank 1 injects hostile batches straight into the real transport (bad magic,
 * unknown message type, truncated task push, lying lengths, a reply (full and compact) for a
 * task that does not exist, a truncated compact reply, a batch claiming another sender,
 * random bytes), then rank 0 runs tasks on rank 1
 * and checks the results and its msgs_dropped counter.
 *
 * The binary is its own rank program: `--rank` runs the SPMD side under deedrun.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "deed.h"
#include "rankjob.h"
#include "rt.h"
#include "transport.h"
#include "wire.h"

static int square(deed_task_t *t, const deed_arg_t *a, uint32_t n)
{
    long x = *(const long *)a[0].data, y = x * x;
    return deed_task_return(t, 0, &y, sizeof(y));
}
DEED_REGISTER(square)

/* Send raw bytes to rank `dst` as the combiner (the transport is driven by one thread). */
static void inject(struct rt *rt, uint32_t dst, const void *p, size_t n)
{
    while (atomic_exchange(&rt->combiner, 1))
        ;
    struct iovec iov = {(void *)p, n};
    rt->tp_ops->am_send(rt->tp, dst, &iov, 1);
    atomic_store(&rt->combiner, 0);
}

static int hostile(struct rt *rt)
{
    struct wbuf b;
    int sent = 0;
    wbuf_init(&b);
    /* 1. bad magic */
    uint8_t junk[64];
    memset(junk, 0x5a, sizeof(junk));
    inject(rt, 0, junk, sizeof(junk)), sent++;
    /* 2. unknown message type in a valid batch */
    wire_batch_begin(&b, rt->rank, 0);
    wire_msg_begin(&b, 999);
    wbuf_u32(&b, 42);
    wire_msg_end(&b);
    wire_batch_end(&b, 0, 1);
    inject(rt, 0, b.data, b.len), sent++;
    /* 3. truncated task push */
    wire_batch_begin(&b, rt->rank, 0);
    wire_msg_begin(&b, WT_TASK_PUSH);
    wbuf_u64(&b, 1);
    wire_msg_end(&b);
    wire_batch_end(&b, 0, 1);
    inject(rt, 0, b.data, b.len), sent++;
    /* 4. a task push whose argument blob claims more bytes than the message has */
    wire_batch_begin(&b, rt->rank, 0);
    wire_msg_begin(&b, WT_TASK_PUSH);
    wbuf_u64(&b, 7);
    wbuf_u64(&b, 7);
    wbuf_u64(&b, deed_task_id("square"));
    wbuf_u32(&b, 0);
    wbuf_u16(&b, 1);
    wbuf_u16(&b, 1);
    wbuf_u8(&b, 1);
    wbuf_u32(&b, 1u << 20); /* 1 MiB promised, 3 bytes present */
    wbuf_put(&b, "abc", 3);
    wire_msg_end(&b);
    wire_batch_end(&b, 0, 1);
    inject(rt, 0, b.data, b.len), sent++;
    /* 5. a reply for a task nobody pushed */
    wire_batch_begin(&b, rt->rank, 0);
    wire_msg_begin(&b, WT_TASK_REPLY);
    wbuf_u64(&b, 0x1234);
    wbuf_u64(&b, 0x5678);
    wbuf_u32(&b, 0);
    wbuf_u32(&b, 0);
    wbuf_blob(&b, NULL, 0);
    wbuf_u16(&b, 0);
    wbuf_u32(&b, 0);
    wire_msg_end(&b);
    wire_batch_end(&b, 0, 1);
    inject(rt, 0, b.data, b.len), sent++;
    /* 6. a batch that claims to come from another rank */
    wire_batch_begin(&b, 0, 0);
    wire_msg_begin(&b, WT_LEASE_RETURN);
    wbuf_u32(&b, 1);
    wire_msg_end(&b);
    wire_batch_end(&b, 0, 1);
    inject(rt, 0, b.data, b.len), sent++;
    /* 7. a batch whose message length overruns it */
    wire_batch_begin(&b, rt->rank, 0);
    wire_msg_begin(&b, WT_LOCATE);
    wbuf_u32(&b, 1);
    wire_msg_end(&b);
    wire_batch_end(&b, 0, 1);
    b.data[WIRE_BATCH_HDR + 2] = 0xff; /* length field of the message */
    inject(rt, 0, b.data, b.len), sent++;
    /* 8. a compact reply (TASK_DONE) for a task nobody pushed */
    wire_batch_begin(&b, rt->rank, 0);
    wire_msg_begin(&b, WT_TASK_DONE);
    wbuf_u64(&b, 0x1234);
    wbuf_u64(&b, 0x5678);
    wbuf_u16(&b, 1);
    wbuf_blob(&b, "12345678", 8);
    wire_msg_end(&b);
    wire_batch_end(&b, 0, 1);
    inject(rt, 0, b.data, b.len), sent++;
    /* 9. a TASK_DONE cut short (no room for its id) */
    wire_batch_begin(&b, rt->rank, 0);
    wire_msg_begin(&b, WT_TASK_DONE);
    wbuf_u64(&b, 0x1234);
    wire_msg_end(&b);
    wire_batch_end(&b, 0, 1);
    inject(rt, 0, b.data, b.len), sent++;
    /* 10. random bytes behind a valid header prefix */
    srand(7);
    for (int i = 0; i < 20; i++) {
        uint8_t r[128];
        wire_batch_begin(&b, rt->rank, 0);
        wire_batch_end(&b, 0, 1);
        memcpy(r, b.data, WIRE_BATCH_HDR);
        for (size_t j = WIRE_BATCH_HDR; j < sizeof(r); j++)
            r[j] = (uint8_t)rand();
        r[6] = 3; /* claims 3 messages */
        inject(rt, 0, r, sizeof(r)), sent++;
    }
    wbuf_free(&b);
    return sent;
}

static int rank_main(void)
{
    deed_ctx_t *ctx;
    deed_status_t rc = deed_init(NULL, &ctx);
    if (rc != DEED_OK) {
        fprintf(stderr, "deed_init: %s\n", deed_strerror(rc));
        return 2;
    }
    int fail = 0;
    if (deed_rank(ctx) == 1) {
        deed_status_t e;
        struct rt *rt = ctx_rt(ctx, &e);
        printf("injected %d hostile batches\n", hostile(rt));
        fflush(stdout);
    }
    if (deed_rank(ctx) == 0) {
        usleep(300000); /* let the garbage arrive first */
        deed_submit_opts_t o = DEED_SUBMIT_OPTS_INIT;
        o.rank = 1;
        for (long i = 0; i < 200; i++) {
            deed_arg_in_t a = DEED_VAL(&i, sizeof(i));
            deed_ref_t r;
            long y = -1;
            if (deed_submit_opts(ctx, deed_task_id("square"), &a, 1, &r, 1, &o) != DEED_OK ||
                deed_get_copy(ctx, r, &y, sizeof(y), NULL, 10 * 1000000) != DEED_OK ||
                y != i * i)
                fail++;
            deed_ref_release(ctx, r);
        }
        deed_stats_t st = {.size = sizeof(st)};
        deed_stats(ctx, &st);
        printf("after the garbage: %d wrong results, %llu messages dropped\n", fail,
               (unsigned long long)st.msgs_dropped);
        if (st.msgs_dropped < 9)
            fail++;
    }
    deed_finalize(ctx);
    return fail ? 1 : 0;
}

static void check_job(const char *tls)
{
    static char out[1 << 20];
    setenv("DEED_LOG", "warn", 1);
    int rc = rankjob_run(tls, 2, "", out, sizeof(out));
    ck_assert_msg(rc == 0, "job failed (exit %d):\n%s", rc, out);
    ck_assert_msg(strstr(out, "injected 29 hostile batches"), "no injection:\n%s", out);
    ck_assert_msg(strstr(out, "after the garbage: 0 wrong results"), "wrong results:\n%s", out);
    ck_assert_msg(strstr(out, "dropping a malformed"), "nothing was logged:\n%s", out);
}

START_TEST(malformed_messages_are_dropped_shm)
{
    check_job("posix,sysv,cma,self");
}
END_TEST

START_TEST(malformed_messages_are_dropped_tcp)
{
    check_job("tcp,self");
}
END_TEST

static Suite *make_suite(void)
{
    Suite *s = suite_create("malformed");
    TCase *tc = tcase_create("net");
    tcase_set_timeout(tc, 240);
    tcase_add_test(tc, malformed_messages_are_dropped_shm);
    tcase_add_test(tc, malformed_messages_are_dropped_tcp);
    suite_add_tcase(s, tc);
    return s;
}

int main(int argc, char **argv)
{
    return rankjob_main(argc, argv, rank_main, make_suite);
}
