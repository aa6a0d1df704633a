/* Listeners: per-port limits, the backlog's order and timeout, EMFILE. */
#include "th.h"

/* Which peer each accepted slot belongs to, in accept order. */
static sn_sim_peer accepted_peer(th *h, unsigned nth)
{
    unsigned k = 0;
    for (unsigned i = 0; i < h->nev; i++) {
        if (h->ev[i].ev != SN_EV_ACCEPTED)
            continue;
        if (k++ == nth) {
            sn_slot_status st;
            sn_slot_status_get(h->core, sn_id_index(h->ev[i].id), &st);
            return sn_sim_peer_of(h->sim, &st.local, &st.remote);
        }
    }
    return SN_SIM_PEER_NONE;
}

/* A connection counts against its listener while connected, other-end-
 * closed or close-pending; beyond the limit it waits, and is let in, in
 * arrival order, the moment a slot of that listener frees. */
static void test_limit_and_arrival_order(void **state)
{
    (void)state;
    th h;
    th_init(&h, NULL, NULL);
    sn_endpoint ep = th_listen(&h, 80, 2, 0);
    sn_sim_peer p[5];
    for (int i = 0; i < 5; i++) {
        assert_int_equal(sn_sim_client_connect(h.sim, &ep, &p[i]), 0);
        sn_sim_advance(h.sim, 1); /* distinct arrival times */
    }
    th_run(&h, 20);
    assert_int_equal(th_count(&h, SN_EV_ACCEPTED), 2);
    assert_int_equal(sn_stats_get(h.core)->backlog_now, 3);
    assert_int_equal(accepted_peer(&h, 0), p[0]);
    assert_int_equal(accepted_peer(&h, 1), p[1]);

    /* Close one (other-end-closed still counts), then free it. */
    sn_id first = h.ev[0].id;
    sn_sim_peer_close(h.sim, p[0]);
    th_run(&h, 20);
    assert_int_equal(th_state(&h, first), SN_OTHER_END_CLOSED);
    assert_int_equal(th_count(&h, SN_EV_ACCEPTED), 2);
    assert_int_equal(sn_close(h.core, first), 0);
    th_run(&h, 100);
    assert_int_equal(th_count(&h, SN_EV_ACCEPTED), 3);
    assert_int_equal(accepted_peer(&h, 2), p[2]);
    th_free(&h);
}

/* Another listener's waiting connection does not block this one's. */
static void test_listeners_independent(void **state)
{
    (void)state;
    th h;
    th_init(&h, NULL, NULL);
    sn_endpoint web = th_listen(&h, 80, 1, 0);
    sn_endpoint ftp = th_listen(&h, 21, 1, 0);
    sn_id w1;
    th_client(&h, &web, SN_SIM_PEER_AUTO_READ, &w1);
    sn_sim_peer w2;
    assert_int_equal(sn_sim_client_connect(h.sim, &web, &w2), 0); /* waits: limit 1 */
    th_run(&h, 20);
    sn_id f1;
    th_client(&h, &ftp, SN_SIM_PEER_AUTO_READ, &f1); /* gets a slot at once */
    assert_int_equal(sn_stats_get(h.core)->backlog_now, 1);
    /* Raising the web limit lets the waiting one in without a new arrival. */
    assert_int_equal(sn_listen(h.core, &web, 0, 2, 0), 0);
    th_poll(&h);
    assert_int_equal(sn_stats_get(h.core)->backlog_now, 0);
    assert_int_equal(th_count(&h, SN_EV_ACCEPTED), 3);
    th_free(&h);
}

/* With every slot taken, the backlog waits for the first free slot. */
static void test_backlog_served_on_free(void **state)
{
    (void)state;
    sn_config cfg;
    sn_config_default(&cfg);
    cfg.slots = 2;
    th h;
    th_init(&h, &cfg, NULL);
    sn_endpoint ep = th_listen(&h, 80, 8, 0);
    sn_id a, b;
    th_client(&h, &ep, SN_SIM_PEER_AUTO_READ, &a);
    th_client(&h, &ep, SN_SIM_PEER_AUTO_READ, &b);
    sn_sim_peer waiting;
    assert_int_equal(sn_sim_client_connect(h.sim, &ep, &waiting), 0);
    th_run(&h, 500);
    assert_int_equal(sn_stats_get(h.core)->backlog_now, 1);
    /* A graceful close: the slot frees once delivered, and the waiting
     * connection gets it in the same pass. */
    assert_int_equal(sn_write(h.core, b, "bye", 3, SN_WRITE_PUSH | SN_WRITE_CLOSE_AFTER), 3);
    unsigned acc = th_count(&h, SN_EV_ACCEPTED);
    for (int i = 0; i < 200 && th_state(&h, b) != SN_FREE; i++)
        th_run(&h, 1);
    assert_int_equal(th_state(&h, b), SN_FREE);
    assert_int_equal(th_count(&h, SN_EV_ACCEPTED), acc + 1);
    assert_int_equal(th_last(&h, SN_EV_ACCEPTED)->t, th_last(&h, SN_EV_FREED)->t);
    th_free(&h);
}

/* EMFILE pauses the listener instead of spinning, is counted, and the
 * listener resumes after accept_pause_ms with nothing lost. */
static void test_emfile_pauses_listener(void **state)
{
    (void)state;
    sn_config cfg;
    sn_config_default(&cfg);
    cfg.accept_pause_ms = 100;
    th h;
    th_init(&h, &cfg, NULL);
    sn_endpoint ep = th_listen(&h, 80, 8, 0);
    sn_id live;
    sn_sim_peer lp = th_client(&h, &ep, SN_SIM_PEER_AUTO_READ, &live);
    sn_sim_force(h.sim, SN_SIM_FORCE_ACCEPT_EMFILE, 1);
    sn_sim_peer p;
    assert_int_equal(sn_sim_client_connect(h.sim, &ep, &p), 0);
    th_run(&h, 10);
    assert_int_equal(sn_stats_get(h.core)->emfile_events, 1);
    uint64_t accepts = sn_sim_op_count(h.sim, SN_SIM_OP_ACCEPT);
    th_run(&h, 80); /* paused: not one accept call */
    assert_int_equal(sn_sim_op_count(h.sim, SN_SIM_OP_ACCEPT), accepts);
    assert_true(sn_next_timeout(h.core, th_now(&h), 1000) <= 100);
    /* The live connection kept working meanwhile. */
    assert_int_equal(sn_write(h.core, live, "data", 4, SN_WRITE_PUSH), 4);
    th_run(&h, 40);
    assert_int_equal(th_info(&h, lp).peer_received, 4);
    assert_int_equal(th_count(&h, SN_EV_ACCEPTED), 2); /* resumed and accepted */
    th_free(&h);
}

/* An internal error frees the place under the listener's limit: the
 * waiting connection gets it at once, without the owner's acknowledgement. */
static void test_abort_lets_waiting_in(void **state)
{
    (void)state;
    th h;
    sn_endpoint ep;
    sn_id a;
    sn_sim_peer pa = th_start_at(&h, &ep, 80, 1, SN_SIM_PEER_AUTO_READ, &a);
    sn_sim_peer waiting;
    assert_int_equal(sn_sim_client_connect(h.sim, &ep, &waiting), 0);
    th_run(&h, 20);
    assert_int_equal(sn_stats_get(h.core)->backlog_now, 1);
    assert_int_equal(sn_sim_kill_conn(h.sim, pa, SN_SIM_KILL_ERROR), 0);
    th_run(&h, 2);
    assert_int_equal(th_state(&h, a), SN_ABORTED);
    assert_int_equal(th_count(&h, SN_EV_ACCEPTED), 2);
    assert_int_equal(sn_stats_get(h.core)->backlog_now, 0);
    assert_int_equal(sn_stats_get(h.core)->rejected, 0);
    th_free(&h);
}

/* Accept work per pass is bounded, and shared fairly between listeners. */
static void test_accepts_bounded_and_fair(void **state)
{
    (void)state;
    sn_config cfg;
    sn_config_default(&cfg);
    cfg.slots = 16;
    cfg.backlog_max = 16;
    cfg.max_accepts_per_poll = 2;
    th h;
    th_init(&h, &cfg, NULL);
    sn_endpoint web = th_listen(&h, 80, 16, 0);
    sn_endpoint ftp = th_listen(&h, 21, 16, 0);
    sn_sim_peer p;
    for (int i = 0; i < 10; i++)
        assert_int_equal(sn_sim_client_connect(h.sim, &web, &p), 0);
    assert_int_equal(sn_sim_client_connect(h.sim, &ftp, &p), 0);
    sn_sim_advance(h.sim, 20); /* all eleven are queued now */
    unsigned ftp_at = 0;
    for (unsigned pass = 1; pass <= 6; pass++) {
        th_poll(&h);
        assert_int_equal(th_count(&h, SN_EV_ACCEPTED), pass * 2 > 11 ? 11 : pass * 2);
        for (unsigned i = 0; i < h.nev; i++) {
            sn_slot_status st;
            if (h.ev[i].ev == SN_EV_ACCEPTED &&
                sn_slot_status_get(h.core, sn_id_index(h.ev[i].id), &st) == 0 &&
                st.local.port == 21 && ftp_at == 0)
                ftp_at = pass;
        }
    }
    assert_true(ftp_at >= 1 && ftp_at <= 2); /* not behind all ten web clients */
    th_free(&h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_limit_and_arrival_order),
        cmocka_unit_test(test_listeners_independent),
        cmocka_unit_test(test_backlog_served_on_free),
        cmocka_unit_test(test_emfile_pauses_listener),
        cmocka_unit_test(test_abort_lets_waiting_in),
        cmocka_unit_test(test_accepts_bounded_and_fair),
    };
    return cmocka_run_group_tests_name("unit_listeners", tests, NULL, NULL);
}
