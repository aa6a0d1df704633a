/* The slot table: configuration, sizing, handles and their generations. */
#include "th.h"

static void test_config_rejected(void **state)
{
    (void)state;
    sn_sim *sim;
    sn_sim_config scfg;
    sn_sim_config_default(&scfg);
    assert_int_equal(sn_sim_create(&sim, &scfg), 0);
    static uint64_t mem[8192];
    sn_core *core;
    sn_config cfg;

    sn_config_default(&cfg);
    cfg.slots = 0;
    assert_int_equal(sn_core_size(&cfg), 0);
    assert_int_equal(sn_core_init(&core, mem, sizeof mem, &cfg, sn_sim_backend(sim)), SN_EINVAL);
    cfg.slots = SN_MAX_SLOTS + 1;
    assert_int_equal(sn_core_init(&core, mem, sizeof mem, &cfg, sn_sim_backend(sim)), SN_EINVAL);
    sn_config_default(&cfg);
    cfg.close_timeout_ms = 0;
    assert_int_equal(sn_core_init(&core, mem, sizeof mem, &cfg, sn_sim_backend(sim)), SN_EINVAL);
    sn_config_default(&cfg);
    cfg.close_timeout_ms = 0x80000000u; /* beyond the wrap-safe window */
    assert_int_equal(sn_core_init(&core, mem, sizeof mem, &cfg, sn_sim_backend(sim)), SN_EINVAL);
    sn_config_default(&cfg);
    cfg.release_queue = 0;
    assert_int_equal(sn_core_init(&core, mem, sizeof mem, &cfg, sn_sim_backend(sim)), SN_EINVAL);
    sn_config_default(&cfg);
    size_t need = sn_core_size(&cfg);
    assert_int_equal(sn_core_init(&core, mem, need - 1, &cfg, sn_sim_backend(sim)), SN_EINVAL);
    assert_int_equal(sn_core_init(&core, (char *)mem + 4, need, &cfg, sn_sim_backend(sim)),
                     SN_EINVAL); /* misaligned */
    sn_backend none = {NULL, NULL};
    assert_int_equal(sn_core_init(&core, mem, need, &cfg, none), SN_EINVAL);
    assert_int_equal(sn_core_init(&core, mem, need, &cfg, sn_sim_backend(sim)), 0);
    assert_int_equal(sn_slot_count(core), SN_DEFAULT_SLOTS);
    sn_core_shutdown(core);
    sn_sim_destroy(sim);
}

/* Memory grows linearly with the slot count; print the per-slot figure. */
static void test_size_per_slot(void **state)
{
    (void)state;
    sn_config cfg;
    sn_config_default(&cfg);
    cfg.slots = 8;
    size_t s8 = sn_core_size(&cfg);
    cfg.slots = 16;
    size_t s16 = sn_core_size(&cfg);
    cfg.slots = 24;
    size_t s24 = sn_core_size(&cfg);
    assert_true(s16 > s8);
    assert_int_equal(s24 - s16, s16 - s8);
    printf("core state: %zu bytes for 8 slots, %zu bytes per slot\n", s8, (s16 - s8) / 8);
}

/* A handle kept past its connection is refused, even after the slot is
 * reused by the next connection. */
static void test_stale_handle_refused(void **state)
{
    (void)state;
    sn_config cfg;
    sn_config_default(&cfg);
    cfg.slots = 1;
    th h;
    th_init(&h, &cfg, NULL);
    sn_endpoint ep = th_listen(&h, 80, 1, 0);
    sn_id first, second;
    sn_sim_peer p1 = th_client(&h, &ep, SN_SIM_PEER_AUTO_READ, &first);
    assert_int_equal(sn_terminate(h.core, first), 0);
    sn_sim_peer p2 = th_client(&h, &ep, SN_SIM_PEER_AUTO_READ, &second);
    assert_int_equal(sn_id_index(first), sn_id_index(second));
    assert_true(first != second);
    assert_int_equal(sn_write(h.core, first, "x", 1, SN_WRITE_PUSH), SN_ESTALE);
    assert_int_equal(sn_read(h.core, first, NULL, 0), SN_ESTALE);
    assert_int_equal(sn_close(h.core, first), SN_ESTALE);
    assert_int_equal(sn_terminate(h.core, first), SN_ESTALE);
    assert_int_equal(sn_write(h.core, SN_ID_NONE, "x", 1, 0), SN_ESTALE);
    assert_int_equal(sn_write(h.core, second | 0x7fu, "x", 1, 0), SN_ESTALE); /* bad index */
    /* The live connection was not touched by any of that. */
    assert_int_equal(sn_write(h.core, second, "ok", 2, SN_WRITE_PUSH), 2);
    th_run(&h, 30);
    assert_int_equal(th_info(&h, p2).peer_received, 2);
    assert_int_equal(th_info(&h, p1).peer_received, 0);
    assert_true(th_info(&h, p1).reset);
    th_free(&h);
}

/* Bad arguments are refused with a clear code and change nothing. */
static void test_bad_arguments(void **state)
{
    (void)state;
    th h;
    sn_endpoint ep;
    sn_id id;
    th_start_at(&h, &ep, 80, 2, SN_SIM_PEER_AUTO_READ, &id);
    assert_int_equal(sn_write(h.core, id, NULL, 5, 0), SN_EINVAL);
    assert_int_equal(sn_write(h.core, id, "x", 1, 0x80u), SN_EINVAL);
    assert_int_equal(sn_read(h.core, id, NULL, 5), SN_EINVAL);
    sn_endpoint zero = {0, 0};
    assert_int_equal(sn_listen(h.core, &zero, 0, 1, 0), SN_EINVAL);
    assert_int_equal(sn_listen(h.core, NULL, 0, 1, 0), SN_EINVAL);
    sn_id out;
    assert_int_equal(sn_connect(h.core, &zero, 0, 0, &out), SN_EINVAL);
    assert_int_equal(sn_connect(h.core, &ep, 0, 0, NULL), SN_EINVAL);
    sn_endpoint other = {0, 81};
    assert_int_equal(sn_listen(h.core, &other, 0, 0, 0), SN_ENOENT); /* stop what isn't there */
    for (uint16_t port = 100; port < 100 + SN_MAX_LISTENERS - 1; port++) {
        sn_endpoint e = {0, port};
        assert_int_equal(sn_listen(h.core, &e, 0, 1, 0), 0);
    }
    sn_endpoint full = {0, 999};
    assert_int_equal(sn_listen(h.core, &full, 0, 1, 0), SN_ENOSPC);
    assert_int_equal(th_state(&h, id), SN_CONNECTED);
    assert_string_equal(sn_strerror(SN_ESTALE), "stale or unknown slot handle");
    assert_string_equal(sn_strerror(12345), "unknown error");
    th_free(&h);
}

/* Bitmaps and status reflect the table, as the seed's status reply does. */
static void test_bitmaps_and_status(void **state)
{
    (void)state;
    th h;
    th_init(&h, NULL, NULL);
    sn_endpoint ep = th_listen(&h, 80, 8, 0);
    sn_id a, b, c;
    th_client(&h, &ep, SN_SIM_PEER_AUTO_READ, &a);
    sn_sim_peer pb = th_client(&h, &ep, SN_SIM_PEER_AUTO_READ, &b);
    sn_sim_peer pc = th_client(&h, &ep, SN_SIM_PEER_AUTO_READ, &c);
    assert_int_equal(sn_sim_peer_send(h.sim, pc, "hello", 5), 5);
    sn_sim_peer_close(h.sim, pb);
    th_run(&h, 20);
    uint32_t conn, closed;
    sn_bitmaps(h.core, &conn, &closed);
    assert_int_equal(conn, (1u << sn_id_index(a)) | (1u << sn_id_index(c)));
    assert_int_equal(closed, 1u << sn_id_index(b));
    sn_slot_status st;
    assert_int_equal(sn_slot_status_get(h.core, sn_id_index(c), &st), 0);
    assert_int_equal(st.id, c);
    assert_int_equal(st.state, SN_CONNECTED);
    assert_int_equal(st.readable, 5);
    assert_true(st.write_space > 0);
    assert_int_equal(st.local.port, 80);
    assert_int_equal(st.remote.addr, th_info(&h, pc).core_remote.addr);
    assert_int_equal(sn_slot_status_get(h.core, 7, &st), 0);
    assert_int_equal(st.state, SN_FREE);
    assert_int_equal(st.id, SN_ID_NONE);
    assert_int_equal(sn_slot_status_get(h.core, 8, &st), SN_EINVAL);
    th_free(&h);
}

/* A blocked peer is released after peer_block_ms, however long the device
 * runs afterwards: the table never holds a deadline past the wrap window. */
static void test_block_expires_across_wrap(void **state)
{
    (void)state;
    sn_config cfg;
    sn_config_default(&cfg);
    cfg.connect_retries = 0;
    th h;
    th_init(&h, &cfg, NULL);
    sn_endpoint ep = {0x0a000002u, 7100};
    sn_sim_server_config sc = {.mode = SN_SIM_SERVER_REFUSE_SYNC};
    assert_int_equal(sn_sim_server_add(h.sim, &ep, &sc), 0);
    sn_id id;
    assert_int_equal(sn_connect(h.core, &ep, 0, 0, &id), 0);
    th_poll(&h);
    assert_int_equal(th_state(&h, id), SN_ABORTED);
    assert_int_equal(sn_terminate(h.core, id), 0);
    assert_int_equal(sn_connect(h.core, &ep, 0, 0, &id), SN_EBLOCKED);
    /* The core is handed time; the device keeps polling for 25 days. */
    uint32_t t = th_now(&h);
    for (uint32_t day = 0; day <= 25; day++) {
        sn_poll(h.core, t + day * 86400000u);
        if (day == 0)
            assert_int_equal(sn_connect(h.core, &ep, 0, 0, &id), SN_EBLOCKED);
    }
    assert_int_equal(sn_connect(h.core, &ep, 0, 0, &id), 0);
    sn_core_shutdown(h.core);
    sn_sim_destroy(h.sim);
    free(h.mem);
}

/* Release work per pass is bounded by release_max_per_poll. */
static void test_releases_bounded_per_pass(void **state)
{
    (void)state;
    sn_config cfg;
    sn_config_default(&cfg);
    cfg.release_max_per_poll = 2;
    cfg.release_delay_ms = 100;
    th h;
    th_init(&h, &cfg, NULL);
    sn_endpoint ep = th_listen(&h, 80, 8, 0);
    sn_id ids[6];
    for (int i = 0; i < 6; i++)
        th_client(&h, &ep, SN_SIM_PEER_AUTO_READ, &ids[i]);
    for (int i = 0; i < 6; i++)
        assert_int_equal(sn_terminate(h.core, ids[i]), 0);
    th_poll(&h);
    th_run(&h, 99);
    assert_int_equal(sn_stats_get(h.core)->releases, 0);
    unsigned seen[4] = {0};
    for (int pass = 0; pass < 4; pass++) {
        sn_sim_advance(h.sim, 1);
        th_poll(&h);
        seen[pass] = sn_stats_get(h.core)->releases;
    }
    assert_int_equal(seen[0], 2);
    assert_int_equal(seen[1], 4);
    assert_int_equal(seen[2], 6);
    assert_int_equal(seen[3], 6);
    th_free(&h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config_rejected),     cmocka_unit_test(test_size_per_slot),
        cmocka_unit_test(test_stale_handle_refused), cmocka_unit_test(test_bad_arguments),
        cmocka_unit_test(test_bitmaps_and_status),
        cmocka_unit_test(test_block_expires_across_wrap),
        cmocka_unit_test(test_releases_bounded_per_pass),
    };
    return cmocka_run_group_tests_name("unit_slots", tests, NULL, NULL);
}
