/* Timers and the owner's event handlers: idle timeouts, the poll's wait
 * hint, and handlers that change the table from inside an event. */
#include "th.h"

/* Idle: dropped (RST) after idle_ms without I/O; any I/O restarts it. */
static void test_idle_timeout(void **state)
{
    (void)state;
    th h;
    th_init(&h, NULL, NULL);
    sn_endpoint ep = th_listen(&h, 80, 4, 300);
    sn_id id;
    sn_sim_peer p = th_client(&h, &ep, SN_SIM_PEER_AUTO_READ, &id);
    uint32_t t0 = th_now(&h);
    th_run(&h, 200);
    assert_int_equal(sn_sim_peer_send(h.sim, p, "x", 1), 1);
    th_run(&h, 20);
    uint8_t b;
    assert_int_equal(sn_read(h.core, id, &b, 1), 1); /* activity at t0+220ish */
    uint32_t t1 = th_now(&h);
    uint32_t took = th_run_until(&h, 1000, th_pred_free, &id);
    assert_int_equal(th_now(&h) - t1, 300);
    assert_true(th_now(&h) - t0 > 300);
    (void)took;
    assert_int_equal(th_last(&h, SN_EV_FREED)->info, SN_FREED_IDLE);
    assert_int_equal(sn_stats_get(h.core)->idle_timeouts, 1);
    th_run(&h, 20);
    assert_true(th_info(&h, p).reset);
    th_free(&h);
}

/* A slow reader is not idle: while the peer keeps taking what was written,
 * the idle timer waits, although the owner writes nothing (a full send
 * buffer on a 2G link drains for longer than idle_ms). A peer that stops
 * taking data is dropped at the next deadline. */
static void test_idle_not_while_draining(void **state)
{
    (void)state;
    th h;
    th_init(&h, NULL, NULL);
    sn_endpoint ep = th_listen(&h, 80, 4, 300);
    sn_id id;
    sn_sim_peer p = th_client(&h, &ep, SN_SIM_PEER_MANUAL, &id);
    static uint8_t big[256 * 1024];
    /* Fill the peer's window and our send buffer: the owner then waits. */
    int stuck = 0;
    for (int i = 0; i < 200 && stuck < 10; i++) {
        stuck = sn_write(h.core, id, big, sizeof big, SN_WRITE_PUSH) > 0 ? 0 : stuck + 1;
        th_run(&h, 20);
    }
    assert_int_equal(stuck, 10);
    uint32_t unsent, unacked;
    assert_int_equal(sn_slot_tx_queued(h.core, id, &unsent, &unacked), SN_OK);
    assert_true(unsent + unacked > 0); /* what waits for the peer */
    uint8_t buf[256]; /* 20 x 256 bytes: less than the send buffer holds */
    for (int i = 0; i < 20; i++) { /* 4 s of a slow reader: 13 idle periods */
        th_run(&h, 200);
        assert_true(sn_sim_peer_read(h.sim, p, buf, sizeof buf) > 0);
        assert_int_equal(th_state(&h, id), SN_CONNECTED);
    }
    assert_int_equal(sn_stats_get(h.core)->idle_timeouts, 0);
    uint32_t t1 = th_now(&h);
    th_run_until(&h, 2000, th_pred_free, &id); /* the reader stops */
    assert_true(th_now(&h) - t1 <= 2 * 300 + 20);
    assert_int_equal(th_last(&h, SN_EV_FREED)->info, SN_FREED_IDLE);
    assert_int_equal(sn_stats_get(h.core)->idle_timeouts, 1);
    th_free(&h);
}

/* An owner that never closes an other-end-closed slot does not leak it. */
static void test_idle_reclaims_other_end_closed(void **state)
{
    (void)state;
    th h;
    th_init(&h, NULL, NULL);
    sn_endpoint ep = th_listen(&h, 80, 4, 500);
    sn_id id;
    sn_sim_peer p = th_client(&h, &ep, SN_SIM_PEER_AUTO_READ, &id);
    sn_sim_peer_close(h.sim, p);
    th_run(&h, 20);
    assert_int_equal(th_state(&h, id), SN_OTHER_END_CLOSED);
    th_run_until(&h, 1000, th_pred_free, &id);
    assert_int_equal(sn_stats_get(h.core)->idle_timeouts, 1);
    th_free(&h);
}

/* The wait hint: the next deadline, and the drain period while closing. */
static void test_next_timeout(void **state)
{
    (void)state;
    th h;
    th_init(&h, NULL, NULL);
    assert_int_equal(sn_next_timeout(h.core, th_now(&h), 1000), 1000);
    sn_endpoint ep = th_listen(&h, 80, 4, 700);
    sn_id id;
    th_client(&h, &ep, SN_SIM_PEER_MANUAL, &id);
    th_run(&h, 100);
    uint32_t w = sn_next_timeout(h.core, th_now(&h), 10000);
    assert_in_range(w, 590, 600); /* the idle deadline */
    assert_int_equal(sn_write(h.core, id, "abc", 3, SN_WRITE_PUSH), 3);
    assert_int_equal(sn_close(h.core, id), 0);
    assert_int_equal(sn_next_timeout(h.core, th_now(&h), 10000), h.cfg.drain_poll_ms);
    th_free(&h);
}

/* Handlers that terminate, close, or stop the listener from inside an
 * event leave the table consistent (th_poll checks after every pass). */
static int hook_mode;
static void meddle(th *h, sn_id id, sn_event ev, int info)
{
    (void)info;
    if (ev == SN_EV_ACCEPTED && hook_mode == 0)
        assert_int_equal(sn_terminate(h->core, id), 0);
    if (ev == SN_EV_ACCEPTED && hook_mode == 1)
        assert_int_equal(sn_write(h->core, id, "hi", 2, SN_WRITE_PUSH | SN_WRITE_CLOSE_AFTER), 2);
    if (ev == SN_EV_ACCEPTED && hook_mode == 2) {
        sn_endpoint ep = {0, 80};
        assert_int_equal(sn_listen(h->core, &ep, 0, 0, 0), 0);
    }
    if (ev == SN_EV_READABLE) {
        assert_int_equal(sn_terminate(h->core, id), 0);
        assert_int_equal(sn_read(h->core, id, NULL, 0), SN_ESTALE);
    }
}

static void test_handlers_may_change_the_table(void **state)
{
    (void)state;
    for (hook_mode = 0; hook_mode < 3; hook_mode++) {
        sn_config cfg;
        sn_config_default(&cfg);
        cfg.slots = 2;
        th h;
        th_init(&h, &cfg, NULL);
        h.hook = meddle;
        sn_endpoint ep = th_listen(&h, 80, 2, 0);
        sn_sim_peer p[6];
        for (int i = 0; i < 6; i++) {
            assert_int_equal(sn_sim_client_connect(h.sim, &ep, &p[i]), 0);
            sn_sim_peer_set_mode(h.sim, p[i], SN_SIM_PEER_AUTO_READ, 0);
            sn_sim_peer_send(h.sim, p[i], "req", 3);
        }
        th_run(&h, 500);
        sn_sim_stats ss;
        sn_sim_stats_get(h.sim, &ss);
        unsigned busy = 0;
        for (unsigned i = 0; i < 2; i++)
            busy += sn_slot_state(h.core, i) != SN_FREE;
        /* Every handle the sim gave out is in a slot, waiting, or released. */
        assert_int_equal(ss.handles_in_use, busy + sn_stats_get(h.core)->backlog_now);
        th_free(&h);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_idle_timeout),
        cmocka_unit_test(test_idle_reclaims_other_end_closed),
        cmocka_unit_test(test_idle_not_while_draining),
        cmocka_unit_test(test_next_timeout),
        cmocka_unit_test(test_handlers_may_change_the_table),
    };
    return cmocka_run_group_tests_name("unit_timers", tests, NULL, NULL);
}
