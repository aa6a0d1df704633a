/*
 * Seed 2 (painlessMesh): the release queue's spacing timeline, a burst of
 * ten failures, the same across the 32-bit wrap, and "no scheduler"
 * (immediate release); plus the connect retry schedule, the peer block and
 * the one-outcome-per-attempt rule. Failures are real refused connects in
 * the simulator; release times are read from the simulator's release log.
 */
#include "th.h"

static sn_config mesh_config(void)
{
    sn_config cfg;
    sn_config_default(&cfg);
    cfg.slots = 12;
    cfg.connect_retries = 0; /* each connect fails once, for good */
    cfg.peer_block_ms = 0;
    cfg.release_delay_ms = 1000;
    cfg.release_spacing_ms = 250;
    return cfg;
}

static const sn_endpoint refuser = {0x0a000002u, 4000};

/* A connect that the remote refuses after one round trip: the failed
 * attempt's handle is what the release queue must release. */
static sn_id start_failing(th *h)
{
    sn_endpoint ep = refuser;
    sn_sim_server_config sc = {.mode = SN_SIM_SERVER_REFUSE};
    sn_sim_server_add(h->sim, &ep, &sc); /* add or replace */
    sn_id id;
    assert_int_equal(sn_connect(h->core, &ep, 0, 0, &id), 0);
    return id;
}

/* Times of the CONNECT_FAILED events, relative to t0. */
static unsigned failures_since(const th *h, uint32_t t0, uint32_t *at, unsigned max)
{
    unsigned k = 0;
    for (unsigned i = 0; i < h->nev && k < max; i++)
        if (h->ev[i].ev == SN_EV_CONNECT_FAILED)
            at[k++] = h->ev[i].t - t0;
    return k;
}

/* The owner acknowledges every failed connect, freeing its slot. */
static void ack_failed(th *h, sn_id id, sn_event ev, int info)
{
    (void)info;
    if (ev == SN_EV_CONNECT_FAILED)
        assert_int_equal(sn_terminate(h->core, id), 0);
}

/* Release times relative to t0, in order. */
static size_t releases_since(th *h, uint32_t t0, uint32_t *rel, size_t max)
{
    uint32_t log[64];
    size_t n = sn_sim_release_log(h->sim, log, 64);
    size_t k = 0;
    for (size_t i = 0; i < n && k < max; i++)
        rel[k++] = log[i] - t0; /* unsigned difference: wrap-safe */
    return k;
}

static void spacing_timeline(uint32_t start_ms)
{
    sn_config cfg = mesh_config();
    sn_sim_config scfg;
    sn_sim_config_default(&scfg);
    scfg.start_ms = start_ms;
    th h;
    th_init(&h, &cfg, &scfg);
    h.hook = ack_failed;
    uint32_t t0 = th_now(&h);
    start_failing(&h);
    th_run(&h, 10);
    start_failing(&h);
    th_run(&h, 40);
    start_failing(&h);
    th_run(&h, 2000);
    uint32_t f[4], rel[8];
    assert_int_equal(failures_since(&h, t0, f, 4), 3);
    assert_int_equal(f[1] - f[0], 10); /* failures at 0, 10 and 50 ms */
    assert_int_equal(f[2] - f[0], 50);
    assert_int_equal(releases_since(&h, t0 + f[0], rel, 8), 3);
    assert_int_equal(rel[0], 1000);
    assert_int_equal(rel[1], 1250);
    assert_int_equal(rel[2], 1500);
    th_free(&h);
}

/* Failures at t = 0, 10, 50 ms are released at 1000, 1250, 1500 ms. */
static void test_mesh_spacing_timeline(void **state)
{
    (void)state;
    spacing_timeline(1000000u);
}

/* The same schedule with the clock crossing 2^32 in the middle of it. */
static void test_mesh_wraparound(void **state)
{
    (void)state;
    spacing_timeline(UINT32_MAX - 1100u); /* wraps between 1000 and 1250 */
    spacing_timeline(UINT32_MAX - 20u);   /* wraps between the failures */
}

/* Ten failures in one burst: one release every 250 ms, the last at 3250. */
static void test_mesh_burst_of_ten(void **state)
{
    (void)state;
    sn_config cfg = mesh_config();
    th h;
    th_init(&h, &cfg, NULL);
    h.hook = ack_failed;
    uint32_t t0 = th_now(&h);
    for (int i = 0; i < 10; i++)
        start_failing(&h);
    th_run(&h, 4000);
    uint32_t f[16], rel[16];
    assert_int_equal(failures_since(&h, t0, f, 16), 10);
    assert_int_equal(f[9], f[0]); /* one burst, one pass */
    assert_int_equal(releases_since(&h, t0 + f[0], rel, 16), 10);
    for (unsigned i = 0; i < 10; i++)
        assert_int_equal(rel[i], 1000 + 250 * i);
    /* Never two in one pass, never closer than the spacing. */
    for (unsigned i = 1; i < 10; i++)
        assert_true(rel[i] - rel[i - 1] >= 250);
    th_free(&h);
}

/* With no delay and no spacing ("no scheduler"), release is immediate: in
 * the same pass as the failure, still from the poll and not from the stack. */
static void test_mesh_no_scheduler(void **state)
{
    (void)state;
    sn_config cfg = mesh_config();
    cfg.release_delay_ms = 0;
    cfg.release_spacing_ms = 0;
    th h;
    th_init(&h, &cfg, NULL);
    h.hook = ack_failed;
    for (int i = 0; i < 5; i++) {
        start_failing(&h);
        unsigned before = th_count(&h, SN_EV_CONNECT_FAILED);
        for (int ms = 0; ms < 100 && th_count(&h, SN_EV_CONNECT_FAILED) == before; ms++) {
            th_poll(&h);
            if (th_count(&h, SN_EV_CONNECT_FAILED) == before)
                sn_sim_advance(h.sim, 1);
        }
        uint32_t failed_at = th_last(&h, SN_EV_CONNECT_FAILED)->t;
        uint32_t log[8];
        size_t n = sn_sim_release_log(h.sim, log, 8);
        assert_int_equal(n, (size_t)i + 1u);
        assert_int_equal(log[n - 1], failed_at); /* released in the failing pass */
        sn_sim_stats ss;
        sn_sim_stats_get(h.sim, &ss);
        assert_int_equal(ss.handles_in_use, 0);
        th_run(&h, 7);
    }
    th_free(&h);
}

/* A full ring releases its oldest early, and says so. */
static void test_mesh_release_queue_full(void **state)
{
    (void)state;
    sn_config cfg = mesh_config();
    cfg.release_queue = 4;
    th h;
    th_init(&h, &cfg, NULL);
    h.hook = ack_failed;
    for (int i = 0; i < 6; i++)
        start_failing(&h);
    sn_event want = SN_EV_CONNECT_FAILED;
    th_run_until(&h, 100, th_pred_event, &want);
    assert_int_equal(th_count(&h, SN_EV_CONNECT_FAILED), 6);
    const sn_stats *s = sn_stats_get(h.core);
    assert_int_equal(s->releases_forced, 2);
    assert_int_equal(s->releases, 2);
    th_run(&h, 3000);
    assert_int_equal(s->releases, 6);
    sn_sim_stats ss;
    sn_sim_stats_get(h.sim, &ss);
    assert_int_equal(ss.handles_in_use, 0);
    th_free(&h);
}

static int pred_aborted(th *h, void *arg)
{
    return th_state(h, *(sn_id *)arg) == SN_ABORTED;
}

/* 5 retries at 1, 2, 4, 8, 8 s; then the peer is blocked for peer_block_ms. */
static void test_mesh_retry_backoff_and_block(void **state)
{
    (void)state;
    sn_config cfg;
    sn_config_default(&cfg);
    th h;
    th_init(&h, &cfg, NULL);
    sn_endpoint ep = {0x0a000002u, 5555};
    sn_sim_server_config sc = {.mode = SN_SIM_SERVER_REFUSE};
    assert_int_equal(sn_sim_server_add(h.sim, &ep, &sc), 0);
    sn_id id;
    uint32_t t0 = th_now(&h);
    assert_int_equal(sn_connect(h.core, &ep, 0, 0, &id), 0);

    /* Record when each attempt starts (a connect op call). */
    uint32_t starts[8];
    unsigned n = 0;
    uint64_t seen = 0;
    for (uint32_t t = 0; t < 40000 && th_state(&h, id) != SN_ABORTED; t++) {
        th_poll(&h);
        uint64_t c = sn_sim_op_count(h.sim, SN_SIM_OP_CONNECT);
        if (c != seen && n < 8)
            starts[n++] = th_now(&h) - t0;
        seen = c;
        sn_sim_advance(h.sim, 1);
    }
    assert_int_equal(th_state(&h, id), SN_ABORTED);
    assert_int_equal(n, 6);
    /* Attempt i starts exactly its backoff after attempt i-1 was refused. */
    uint32_t expect[6] = {0, 1000, 2000, 4000, 8000, 8000};
    assert_int_equal(starts[0], 0);
    unsigned k = 0;
    for (unsigned i = 0; i < h.nev && k < 5; i++) {
        if (h.ev[i].ev != SN_EV_CONNECT_RETRY)
            continue;
        assert_int_equal(h.ev[i].info, SN_ECONNREFUSED);
        uint32_t failed_at = h.ev[i].t - t0;
        assert_true(failed_at > starts[k]); /* the refusal took its round trip */
        assert_int_equal(starts[k + 1], failed_at + expect[k + 1]);
        k++;
    }
    assert_int_equal(k, 5);
    assert_int_equal(th_count(&h, SN_EV_CONNECT_RETRY), 5);
    assert_int_equal(th_count(&h, SN_EV_CONNECT_FAILED), 1);
    assert_int_equal(th_count(&h, SN_EV_CONNECTED), 0);
    assert_int_equal(sn_stats_get(h.core)->connect_retries, 5);

    /* Blocked for 60 s, then allowed again. */
    assert_int_equal(sn_terminate(h.core, id), 0);
    sn_id again;
    assert_int_equal(sn_connect(h.core, &ep, 0, 0, &again), SN_EBLOCKED);
    th_run(&h, 59000);
    assert_int_equal(sn_connect(h.core, &ep, 0, 0, &again), SN_EBLOCKED);
    th_run(&h, 1100);
    assert_int_equal(sn_connect(h.core, &ep, 0, 0, &again), 0);
    th_free(&h);
}

/* Out-of-range policy is clamped: 50 retries become 10, a 10 ms base 50 ms. */
static void test_mesh_policy_clamped(void **state)
{
    (void)state;
    sn_config cfg;
    sn_config_default(&cfg);
    cfg.connect_retries = 50;
    cfg.connect_base_ms = 10;
    th h;
    th_init(&h, &cfg, NULL);
    sn_endpoint ep = {0x0a000002u, 5556};
    sn_sim_server_config sc = {.mode = SN_SIM_SERVER_REFUSE_SYNC};
    assert_int_equal(sn_sim_server_add(h.sim, &ep, &sc), 0);
    sn_id id;
    uint32_t t0 = th_now(&h);
    assert_int_equal(sn_connect(h.core, &ep, 0, 0, &id), 0);
    th_run_until(&h, 10000, pred_aborted, &id);
    assert_int_equal(sn_sim_op_count(h.sim, SN_SIM_OP_CONNECT), 11);
    /* 50 + 100 + 200 + 7 x 400 ms of backoff. */
    assert_int_equal(th_now(&h) - t0, 50 + 100 + 200 + 7 * 400);
    th_free(&h);
}

/* The error path and the success path never both act on one attempt: an
 * answer that arrives after the attempt timed out is never seen. */
static void test_mesh_late_success_ignored(void **state)
{
    (void)state;
    sn_config cfg;
    sn_config_default(&cfg);
    cfg.connect_timeout_ms = 100;
    cfg.connect_retries = 2;
    cfg.connect_base_ms = 50;
    sn_sim_config scfg;
    sn_sim_config_default(&scfg);
    scfg.latency_ms = 60; /* the SYN-ACK comes back after 120 ms */
    th h;
    th_init(&h, &cfg, &scfg);
    sn_endpoint ep = {0x0a000002u, 6000};
    sn_sim_server_config sc = {.mode = SN_SIM_SERVER_ACCEPT, .peer_mode = SN_SIM_PEER_AUTO_READ,
                               .detach = true};
    assert_int_equal(sn_sim_server_add(h.sim, &ep, &sc), 0);
    sn_id id;
    assert_int_equal(sn_connect(h.core, &ep, 0, 0, &id), 0);
    th_run(&h, 2000);
    assert_int_equal(th_state(&h, id), SN_ABORTED);
    assert_int_equal(th_count(&h, SN_EV_CONNECTED), 0);
    assert_int_equal(th_count(&h, SN_EV_CONNECT_RETRY), 2);
    assert_int_equal(th_count(&h, SN_EV_CONNECT_FAILED), 1);
    assert_int_equal(th_last(&h, SN_EV_CONNECT_FAILED)->info, SN_ETIMEDOUT);
    /* Every attempt's handle was reset and released exactly once. */
    sn_sim_stats ss;
    sn_sim_stats_get(h.sim, &ss);
    assert_int_equal(ss.handles_created, 3);
    assert_int_equal(ss.handles_released, 3);
    th_free(&h);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mesh_spacing_timeline),
        cmocka_unit_test(test_mesh_burst_of_ten),
        cmocka_unit_test(test_mesh_wraparound),
        cmocka_unit_test(test_mesh_no_scheduler),
        cmocka_unit_test(test_mesh_release_queue_full),
        cmocka_unit_test(test_mesh_retry_backoff_and_block),
        cmocka_unit_test(test_mesh_policy_clamped),
        cmocka_unit_test(test_mesh_late_success_ignored),
    };
    return th_main("seed_mesh", tests, sizeof tests / sizeof tests[0], argc, argv);
}
