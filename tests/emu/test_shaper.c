/* slotnet-link's timing model (apps/slotnet-link/shaper.c) on a fake clock. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "link.h"

#define MS 1000000LL

static struct sl_pool pool;

static int setup(void **state)
{
    (void)state;
    return sl_pool_init(&pool, 64);
}

static int teardown(void **state)
{
    (void)state;
    assert_int_equal(pool.in_use, 0);
    sl_pool_fini(&pool);
    return 0;
}

static struct sl_frame *frame(uint32_t len)
{
    struct sl_frame *f = sl_pool_get(&pool);
    assert_non_null(f);
    f->len = len;
    return f;
}

static void drain(struct sl_dir *d)
{
    struct sl_frame *f;
    while ((f = sl_dir_pop(d)) != NULL)
        sl_pool_put(&pool, f);
}

/* Admits a frame; a refused one goes straight back to the pool. */
static enum sl_verdict admit(struct sl_dir *d, uint32_t len, int64_t now)
{
    struct sl_frame *f = frame(len);
    enum sl_verdict v = sl_dir_admit(d, f, now);
    if (v != SL_QUEUED)
        sl_pool_put(&pool, f);
    return v;
}

/* Serialisation: back-to-back frames leave len/rate apart, then the delay. */
static void test_rate_and_delay(void **state)
{
    (void)state;
    struct sl_params p = { .rate = 1000, .delay_ms = 50 };
    struct sl_dir d;
    sl_dir_init(&d, &p, 1);
    for (int i = 0; i < 3; i++)
        assert_int_equal(admit(&d, 100, 0), SL_QUEUED);
    /* a frame after the line went idle starts at once */
    assert_int_equal(admit(&d, 100, 1000 * MS), SL_QUEUED);
    int64_t want[4] = { 150 * MS, 250 * MS, 350 * MS, 1150 * MS };
    assert_null(sl_dir_due(&d, 150 * MS - 1));
    for (int i = 0; i < 4; i++) {
        struct sl_frame *f = sl_dir_due(&d, want[i]);
        assert_non_null(f);
        assert_int_equal(f->release_ns, want[i]);
        sl_pool_put(&pool, sl_dir_pop(&d));
    }
    assert_int_equal(d.st.max_wait_ns, 200 * MS);
    assert_int_equal(d.queued, 0);
}

/* The queue limit counts bytes not yet on the line, the partial frame too. */
static void test_queue_limit(void **state)
{
    (void)state;
    struct sl_params p = { .rate = 1000, .queue_bytes = 250 };
    struct sl_dir d;
    sl_dir_init(&d, &p, 1);
    assert_int_equal(admit(&d, 100, 0), SL_QUEUED);
    assert_int_equal(admit(&d, 100, 0), SL_QUEUED);
    assert_int_equal(admit(&d, 100, 0), SL_QUEUE_FULL); /* 300 > 250 */
    assert_int_equal(d.st.queue_drops, 1);
    /* 50 ms later 150 bytes are left: 250 fits exactly */
    assert_int_equal(admit(&d, 100, 50 * MS), SL_QUEUED);
    assert_int_equal(d.st.max_queue_bytes, 250);
    /* a dropped frame takes no line time: the third leaves at 300 ms */
    assert_int_equal(d.tail->release_ns, 300 * MS);
    drain(&d);
}

/* Jitter spreads the delay but never reorders. */
static void test_jitter_keeps_order(void **state)
{
    (void)state;
    struct sl_params p = { .delay_ms = 50, .jitter_ms = 20 };
    struct sl_dir d;
    sl_dir_init(&d, &p, 42);
    int64_t last = 0, lo = INT64_MAX, hi = 0;
    for (int64_t t = 0; t < 2000 * MS; t += MS) {
        assert_int_equal(admit(&d, 60, t), SL_QUEUED);
        struct sl_frame *f = d.tail;
        int64_t transit = f->release_ns - t;
        assert_true(f->release_ns >= last);
        assert_true(transit >= 30 * MS && transit <= 70 * MS);
        lo = transit < lo ? transit : lo;
        hi = transit > hi ? transit : hi;
        last = f->release_ns;
        if (d.queued > 32)
            drain(&d);
    }
    assert_true(hi - lo > 30 * MS); /* it does vary */
    drain(&d);
}

static unsigned lost_of(uint64_t seed, double loss, int n, uint64_t *pattern)
{
    struct sl_params p = { .loss = loss };
    struct sl_dir d;
    sl_dir_init(&d, &p, seed);
    *pattern = 0;
    for (int i = 0; i < n; i++) {
        enum sl_verdict v = admit(&d, 100, i);
        if (v == SL_LOST && i < 64)
            *pattern |= 1ull << i;
        drain(&d);
    }
    assert_int_equal(d.st.frames_in, (uint64_t)n);
    return (unsigned)d.st.lost;
}

/* Loss: about the configured rate, and the same seed loses the same frames. */
static void test_loss(void **state)
{
    (void)state;
    uint64_t a, b, c;
    unsigned la = lost_of(7, 0.2, 10000, &a);
    /* 4 standard deviations of a binomial(10000, 0.2) is 160 */
    assert_true(la > 2000 - 160 && la < 2000 + 160);
    assert_int_equal(lost_of(7, 0.2, 10000, &b), la);
    assert_int_equal(a, b);
    lost_of(8, 0.2, 10000, &c);
    assert_true(a != c);
    assert_int_equal(lost_of(7, 0.0, 1000, &a), 0);
    assert_int_equal(lost_of(7, 1.0, 1000, &a), 1000);
}

/* Windows and the manual switch; frames already queued are left to the
 * release side (main.c drops them if the window is open then). */
static void test_blackhole(void **state)
{
    (void)state;
    struct sl_params p = { .delay_ms = 10 };
    struct sl_dir d;
    sl_dir_init(&d, &p, 1);
    d.win[0] = (struct sl_window){ 100 * MS, 200 * MS };
    d.win[1] = (struct sl_window){ 500 * MS, -1 };
    d.nwin = 2;
    assert_int_equal(admit(&d, 60, 99 * MS), SL_QUEUED);
    assert_true(sl_dir_blackholed(&d, 100 * MS));
    assert_int_equal(admit(&d, 60, 150 * MS), SL_BLACKHOLED);
    assert_int_equal(admit(&d, 60, 200 * MS), SL_QUEUED);
    assert_true(sl_dir_blackholed(&d, 1000000 * MS)); /* never heals */
    assert_int_equal(sl_dir_next_window_edge(&d, 0), 100 * MS);
    assert_int_equal(sl_dir_next_window_edge(&d, 100 * MS), 200 * MS);
    assert_int_equal(sl_dir_next_window_edge(&d, 200 * MS), 500 * MS);
    assert_int_equal(sl_dir_next_window_edge(&d, 500 * MS), -1);
    d.manual_blackhole = true;
    assert_int_equal(admit(&d, 60, 300 * MS), SL_BLACKHOLED);
    assert_int_equal(d.st.blackholed, 2);
    drain(&d);
}

/* The pool never grows: when it is empty, get fails. */
static void test_pool_exhaustion(void **state)
{
    (void)state;
    struct sl_frame *f[64];
    for (int i = 0; i < 64; i++)
        f[i] = frame(1);
    assert_null(sl_pool_get(&pool));
    for (int i = 0; i < 64; i++)
        sl_pool_put(&pool, f[i]);
    assert_int_equal(pool.max_in_use, 64);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_rate_and_delay, setup, teardown),
        cmocka_unit_test_setup_teardown(test_queue_limit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_jitter_keeps_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_loss, setup, teardown),
        cmocka_unit_test_setup_teardown(test_blackhole, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pool_exhaustion, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
