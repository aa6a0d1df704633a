/*
 * Seed 1 (Duet3D WiFiSocketServerRTOS): one test per row of its
 * "Pre-existing Bugs Fixed" table and per closePending bug 1-5. Each drives
 * the real core through a schedule in the simulator and asserts what the
 * peer and the slot table saw.
 */
#include "th.h"

static const uint8_t payload[65536] = {1};

static void fill(uint8_t *b, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; i++)
        b[i] = (uint8_t)(i * 31u + seed);
}

/* Write all of buf, polling between short writes, within ms. */
static void write_all(th *h, sn_id id, const uint8_t *buf, size_t len, unsigned flags, uint32_t ms)
{
    size_t off = 0;
    for (uint32_t t = 0; off < len && t < ms; t++) {
        /* CLOSE_AFTER rides on every call: it acts once a call is taken whole. */
        int n = sn_write(h->core, id, buf + off, len - off, flags);
        assert_true(n >= 0);
        off += (size_t)n;
        if (off < len) {
            th_poll(h);
            sn_sim_advance(h->sim, 1);
        }
    }
    assert_int_equal(off, len);
}

/* Fill a never-reading peer's window and our send buffer. */
static void stuff(th *h, sn_id id)
{
    for (int i = 0; i < 100; i++) {
        sn_write(h->core, id, payload, 8192, SN_WRITE_PUSH);
        th_run(h, 5);
    }
    assert_int_equal(sn_write(h->core, id, payload, 1, SN_WRITE_PUSH), 0);
}

/* ---- Pre-existing bugs ------------------------------------------------- */

/* NETCONN_MORE was inverted: push must flush now, no push may coalesce. */
static void test_row01_push_flushes_now(void **state)
{
    (void)state;
    th h;
    sn_id id;
    sn_sim_peer p = th_start(&h, SN_SIM_PEER_AUTO_READ, &id);

    assert_int_equal(sn_write(h.core, id, payload, 100, 0), 100);
    th_run(&h, 50); /* 10x the latency, well under the 200 ms coalescing */
    assert_int_equal(th_info(&h, p).peer_received, 0);

    assert_int_equal(sn_write(h.core, id, payload, 100, SN_WRITE_PUSH), 100);
    th_run(&h, 2 * h.scfg.latency_ms + 2);
    assert_int_equal(th_info(&h, p).peer_received, 200);
    th_free(&h);
}

/* Write() returned len instead of what was taken: silent data loss. */
static void test_row02_write_returns_accepted_count(void **state)
{
    (void)state;
    th h;
    sn_id id;
    sn_sim_peer p = th_start(&h, SN_SIM_PEER_AUTO_READ, &id);
    uint8_t buf[4000];
    fill(buf, sizeof buf, 7);

    sn_sim_force(h.sim, SN_SIM_FORCE_SEND_PARTIAL, 1);
    int n = sn_write(h.core, id, buf, sizeof buf, SN_WRITE_PUSH);
    assert_true(n > 0 && n < (int)sizeof buf);
    write_all(&h, id, buf + n, sizeof buf - (size_t)n, SN_WRITE_PUSH, 2000);
    th_run(&h, 100);
    sn_sim_link_info li = th_info(&h, p);
    assert_int_equal(li.core_sent, sizeof buf);
    assert_int_equal(li.peer_received, sizeof buf);
    assert_int_equal(li.peer_rx_hash, li.core_tx_hash);
    th_free(&h);
}

/* Write() spun on would-block with nothing written. */
static void test_row03_full_buffer_no_spin(void **state)
{
    (void)state;
    th h;
    sn_id id;
    sn_sim_peer p = th_start(&h, SN_SIM_PEER_MANUAL, &id);

    stuff(&h, id); /* the peer never reads */
    uint64_t sends = sn_sim_op_count(h.sim, SN_SIM_OP_SEND);
    assert_int_equal(sn_write(h.core, id, payload, 4096, SN_WRITE_PUSH), 0);
    assert_int_equal(sn_sim_op_count(h.sim, SN_SIM_OP_SEND), sends + 1); /* one try, no loop */
    assert_int_equal(th_state(&h, id), SN_CONNECTED);

    /* Space opens when the peer reads: the owner hears WRITABLE. */
    unsigned w = th_count(&h, SN_EV_WRITABLE);
    uint8_t sink[8192];
    for (int i = 0; i < 50; i++) {
        sn_sim_peer_read(h.sim, p, sink, sizeof sink);
        th_run(&h, 5);
    }
    assert_true(th_count(&h, SN_EV_WRITABLE) > w);
    assert_true(sn_write(h.core, id, payload, 100, SN_WRITE_PUSH) > 0);
    th_free(&h);
}

/* ERR_MEM was fatal in Write(): connections killed under memory pressure. */
static void test_row04_enomem_is_retryable(void **state)
{
    (void)state;
    th h;
    sn_id id;
    sn_sim_peer p = th_start(&h, SN_SIM_PEER_AUTO_READ, &id);

    sn_sim_force(h.sim, SN_SIM_FORCE_SEND_ENOMEM, 3);
    for (int i = 0; i < 3; i++)
        assert_int_equal(sn_write(h.core, id, payload, 500, SN_WRITE_PUSH), 0);
    th_run(&h, 10);
    assert_int_equal(th_state(&h, id), SN_CONNECTED);
    assert_int_equal(sn_stats_get(h.core)->write_retryable, 3);
    assert_true(th_count(&h, SN_EV_WRITABLE) >= 1); /* told when to try again */
    assert_int_equal(sn_write(h.core, id, payload, 500, SN_WRITE_PUSH), 500);
    th_run(&h, 50);
    assert_int_equal(th_info(&h, p).peer_received, 500);
    th_free(&h);
}

/* ERR_WOULDBLOCK after a partial write fell through to Terminate(). */
static void test_row05_partial_write_keeps_connection(void **state)
{
    (void)state;
    th h;
    sn_id id;
    sn_sim_peer p = th_start(&h, SN_SIM_PEER_AUTO_READ, &id);
    uint8_t buf[20000];
    fill(buf, sizeof buf, 3);

    sn_sim_force(h.sim, SN_SIM_FORCE_SEND_PARTIAL, 2);
    sn_sim_force(h.sim, SN_SIM_FORCE_SEND_ENOMEM, 2);
    write_all(&h, id, buf, sizeof buf, SN_WRITE_PUSH | SN_WRITE_CLOSE_AFTER, 5000);
    assert_int_equal(th_state(&h, id), SN_CLOSE_PENDING);
    th_run(&h, 500);
    sn_sim_link_info li = th_info(&h, p);
    assert_int_equal(li.peer_received, sizeof buf);
    assert_int_equal(li.peer_rx_hash, li.core_tx_hash);
    assert_true(li.peer_saw_fin);
    assert_false(li.reset);
    assert_int_equal(sn_stats_get(h.core)->closed_graceful, 1);
    th_free(&h);
}

/* ERR_ABRT was not recognised: a stack abort must read as other-end-closed. */
static void test_row06_stack_abort_is_other_end_closed(void **state)
{
    (void)state;
    th h;
    sn_id id;
    sn_sim_peer p = th_start(&h, SN_SIM_PEER_AUTO_READ, &id);

    assert_int_equal(sn_sim_kill_conn(h.sim, p, SN_SIM_KILL_STACK_ABORT), 0);
    th_run(&h, 2);
    assert_int_equal(th_state(&h, id), SN_OTHER_END_CLOSED);
    assert_int_equal(th_count(&h, SN_EV_PEER_CLOSED), 1);
    assert_int_equal(th_count(&h, SN_EV_ABORTED), 0);
    assert_int_equal(sn_stats_get(h.core)->aborted, 0);
    /* The owner closes; nothing to drain from a dead connection. */
    assert_int_equal(sn_close(h.core, id), 0);
    th_poll(&h);
    assert_int_equal(th_state(&h, id), SN_FREE);

    /* Retransmissions that time out are the same: gone, not an error, even
     * when a write finds out before the poll does. */
    sn_id id2;
    sn_endpoint ep = {0, 80};
    sn_sim_peer p2 = th_client(&h, &ep, SN_SIM_PEER_AUTO_READ, &id2);
    assert_int_equal(sn_sim_kill_conn(h.sim, p2, SN_SIM_KILL_TIMEOUT), 0);
    assert_int_equal(sn_write(h.core, id2, "late", 4, SN_WRITE_PUSH), SN_ECONNRESET);
    assert_int_equal(th_state(&h, id2), SN_OTHER_END_CLOSED);
    th_run(&h, 2);
    assert_int_equal(th_state(&h, id2), SN_OTHER_END_CLOSED);
    sn_slot_status st;
    sn_slot_status_get(h.core, sn_id_index(id2), &st);
    assert_int_equal(st.last_error, SN_ETIMEDOUT);
    assert_int_equal(sn_stats_get(h.core)->aborted, 0);
    assert_int_equal(sn_close(h.core, id2), 0);
    assert_int_equal(th_state(&h, id2), SN_FREE);
    th_free(&h);
}

/* ERR_TIMEOUT was treated as an error in Poll(): silence is not a failure. */
static void test_row07_silence_is_not_an_error(void **state)
{
    (void)state;
    th h;
    th_init(&h, NULL, NULL);
    sn_endpoint ep = th_listen(&h, 80, 4, 0); /* no idle timeout */
    sn_id id;
    sn_sim_peer p = th_client(&h, &ep, SN_SIM_PEER_AUTO_READ, &id);

    uint8_t buf[16];
    th_run(&h, 10000); /* five times lwIP's 2 s receive timeout */
    sn_sim_force(h.sim, SN_SIM_FORCE_RECV_TIMEOUT, 3); /* the stack says "timed out" */
    for (int i = 0; i < 3; i++)
        assert_int_equal(sn_read(h.core, id, buf, sizeof buf), 0);
    th_run(&h, 10);
    assert_int_equal(th_state(&h, id), SN_CONNECTED);
    assert_int_equal(sn_stats_get(h.core)->aborted, 0);
    assert_int_equal(sn_sim_peer_send(h.sim, p, "ping", 4), 4);
    th_run(&h, 20);
    assert_int_equal(sn_read(h.core, id, buf, sizeof buf), 4);
    assert_memory_equal(buf, "ping", 4);
    th_free(&h);
}

/* Connect() returned true on failure: a failure must read as a failure. */
static void test_row08_connect_failure_reported(void **state)
{
    (void)state;
    sn_config cfg;
    sn_config_default(&cfg);
    cfg.connect_retries = 0;
    th h;
    th_init(&h, &cfg, NULL);
    sn_endpoint refuse = {0x0a000002u, 9000}, refuse_sync = {0x0a000002u, 9001};
    sn_sim_server_config sc = {.mode = SN_SIM_SERVER_REFUSE};
    assert_int_equal(sn_sim_server_add(h.sim, &refuse, &sc), 0);
    sc.mode = SN_SIM_SERVER_REFUSE_SYNC;
    assert_int_equal(sn_sim_server_add(h.sim, &refuse_sync, &sc), 0);

    sn_id a, b;
    assert_int_equal(sn_connect(h.core, &refuse, 1, 0, &a), 0);
    assert_int_equal(sn_connect(h.core, &refuse_sync, 1, 0, &b), 0);
    th_run(&h, 100);
    assert_int_equal(th_count(&h, SN_EV_CONNECTED), 0);
    assert_int_equal(th_count(&h, SN_EV_CONNECT_FAILED), 2);
    assert_int_equal(th_state(&h, a), SN_ABORTED);
    assert_int_equal(th_state(&h, b), SN_ABORTED);
    sn_slot_status st;
    sn_slot_status_get(h.core, sn_id_index(a), &st);
    assert_int_equal(st.last_error, SN_ECONNREFUSED);
    assert_int_equal(sn_stats_get(h.core)->connect_failures, 2);
    /* Writing to a failed connect is refused, not silently accepted. */
    assert_int_equal(sn_write(h.core, a, "x", 1, 0), SN_ESTATE);
    assert_int_equal(sn_terminate(h.core, a), 0);
    assert_int_equal(sn_close(h.core, b), 0); /* close acknowledges too */
    assert_int_equal(th_state(&h, a), SN_FREE);
    assert_int_equal(th_state(&h, b), SN_FREE);
    th_free(&h);
}

/* CanWrite() dereferenced a connection the stack had freed. */
static void test_row09_status_of_dead_connection(void **state)
{
    (void)state;
    th h;
    sn_id id;
    sn_sim_peer p = th_start(&h, SN_SIM_PEER_AUTO_READ, &id);
    assert_int_equal(sn_sim_kill_conn(h.sim, p, SN_SIM_KILL_STACK_ABORT), 0);
    sn_sim_advance(h.sim, 1);
    /* Before any poll has seen the abort: the write reports the reset. */
    assert_int_equal(sn_write(h.core, id, "abc", 3, SN_WRITE_PUSH), SN_ECONNRESET);
    sn_slot_status st;
    assert_int_equal(sn_slot_status_get(h.core, sn_id_index(id), &st), 0);
    assert_int_equal(st.state, SN_OTHER_END_CLOSED);
    assert_int_equal(st.write_space, 0);
    th_run(&h, 5);
    assert_int_equal(sn_close(h.core, id), 0);
    th_free(&h);
}

/* Terminate() notified a listener unconditionally (crash with none). */
static void test_row10_terminate_without_listener(void **state)
{
    (void)state;
    th h;
    th_init(&h, NULL, NULL);
    sn_endpoint srv = {0x0a000002u, 7000};
    sn_sim_server_config sc = {.mode = SN_SIM_SERVER_ACCEPT, .peer_mode = SN_SIM_PEER_AUTO_READ,
                               .detach = true};
    assert_int_equal(sn_sim_server_add(h.sim, &srv, &sc), 0);
    sn_id out;
    assert_int_equal(sn_connect(h.core, &srv, 2, 0, &out), 0);
    sn_event want = SN_EV_CONNECTED;
    th_run_until(&h, 100, th_pred_event, &want);
    assert_int_equal(sn_terminate(h.core, out), 0); /* outgoing: no listener */
    assert_int_equal(th_state(&h, out), SN_FREE);

    /* An accepted one: its terminate lets the waiting connection in at once. */
    sn_endpoint ep = th_listen(&h, 80, 1, 0);
    sn_id first;
    th_client(&h, &ep, SN_SIM_PEER_AUTO_READ, &first);
    sn_sim_peer second;
    assert_int_equal(sn_sim_client_connect(h.sim, &ep, &second), 0);
    th_run(&h, 20);
    assert_int_equal(sn_stats_get(h.core)->backlog_now, 1);
    unsigned acc = th_count(&h, SN_EV_ACCEPTED);
    assert_int_equal(sn_terminate(h.core, first), 0);
    th_poll(&h);
    assert_int_equal(th_count(&h, SN_EV_ACCEPTED), acc + 1);
    assert_int_equal(sn_stats_get(h.core)->backlog_now, 0);
    th_free(&h);
}

/* Allocate() waited forever on a stuck mutex: busy must be an answer. */
static void test_row11_allocate_never_waits(void **state)
{
    (void)state;
    sn_config cfg;
    sn_config_default(&cfg);
    cfg.slots = 2;
    th h;
    th_init(&h, &cfg, NULL);
    sn_endpoint srv = {0x0a000002u, 7000};
    sn_sim_server_config sc = {.mode = SN_SIM_SERVER_HANG};
    assert_int_equal(sn_sim_server_add(h.sim, &srv, &sc), 0);
    sn_id a, b, c;
    assert_int_equal(sn_connect(h.core, &srv, 0, 0, &a), 0);
    srv.port++;
    assert_int_equal(sn_sim_server_add(h.sim, &srv, &sc), 0);
    assert_int_equal(sn_connect(h.core, &srv, 0, 0, &b), 0);
    th_run(&h, 10);
    sn_sim_stats before, after;
    sn_sim_stats_get(h.sim, &before);
    assert_int_equal(sn_connect(h.core, &srv, 0, 0, &c), SN_EBUSY);
    sn_sim_stats_get(h.sim, &after);
    assert_memory_equal(before.ops, after.ops, sizeof before.ops); /* no backend call */
    th_free(&h);
}

/* Listener::Stop() compared a freed pointer. Stopping must leave live
 * connections running and every later close correct. */
static void test_row12_listener_stop_keeps_connections(void **state)
{
    (void)state;
    th h;
    th_init(&h, NULL, NULL);
    sn_endpoint ep = th_listen(&h, 80, 4, 0);
    sn_id a, b;
    sn_sim_peer pa = th_client(&h, &ep, SN_SIM_PEER_AUTO_READ, &a);
    th_client(&h, &ep, SN_SIM_PEER_AUTO_READ, &b);

    assert_int_equal(sn_listen(h.core, &ep, 0, 0, 0), 0); /* max 0 stops it */
    th_run(&h, 5);
    assert_int_equal(sn_write(h.core, a, payload, 300, SN_WRITE_PUSH | SN_WRITE_CLOSE_AFTER), 300);
    assert_int_equal(sn_terminate(h.core, b), 0);
    th_run(&h, 200);
    assert_int_equal(th_state(&h, a), SN_FREE);
    assert_int_equal(th_info(&h, pa).peer_received, 300);
    assert_true(th_info(&h, pa).peer_saw_fin);

    /* A new client finds the port closed. */
    sn_sim_peer late;
    assert_int_equal(sn_sim_client_connect(h.sim, &ep, &late), 0);
    th_run(&h, 30);
    assert_true(th_info(&h, late).refused || th_info(&h, late).reset);
    assert_int_equal(sn_listen(h.core, &ep, 0, 0, 0), SN_ENOENT);
    th_free(&h);
}

/* The FTP listener's connection kept a pointer to its deleted listener. A
 * reused listener entry must not inherit old connections' counts. */
static void test_row13_stopped_listener_entry_reused(void **state)
{
    (void)state;
    th h;
    sn_endpoint ftp;
    sn_id old;
    th_start_at(&h, &ftp, 21, 1, SN_SIM_PEER_AUTO_READ, &old);
    assert_int_equal(sn_listen(h.core, &ftp, 0, 0, 0), 0);
    sn_endpoint data = th_listen(&h, 2121, 2, 0); /* takes the freed entry */
    assert_int_equal(sn_close(h.core, old), 0);
    th_run(&h, 50);
    assert_int_equal(th_state(&h, old), SN_FREE);
    /* The new listener still admits exactly its own limit. */
    sn_id d1, d2;
    th_client(&h, &data, SN_SIM_PEER_AUTO_READ, &d1);
    th_client(&h, &data, SN_SIM_PEER_AUTO_READ, &d2);
    sn_sim_peer third;
    assert_int_equal(sn_sim_client_connect(h.sim, &data, &third), 0);
    th_run(&h, 20);
    assert_int_equal(th_count(&h, SN_EV_ACCEPTED), 3);
    assert_int_equal(sn_stats_get(h.core)->backlog_now, 1);
    th_free(&h);
}

/* Rejected connections were never drained and leaked PCBs in the backlog. */
static void test_row14_rejected_connections_drained(void **state)
{
    (void)state;
    sn_config cfg;
    sn_config_default(&cfg);
    cfg.slots = 2;
    cfg.backlog_max = 2;
    cfg.backlog_timeout_ms = 1000;
    th h;
    th_init(&h, &cfg, NULL);
    sn_endpoint ep = th_listen(&h, 80, 2, 0);
    sn_sim_peer p[6];
    for (int i = 0; i < 6; i++)
        assert_int_equal(sn_sim_client_connect(h.sim, &ep, &p[i]), 0);
    th_run(&h, 20);
    const sn_stats *s = sn_stats_get(h.core);
    assert_int_equal(s->accepted, 2);
    assert_int_equal(s->backlog_now, 2);
    assert_int_equal(s->rejected, 2); /* over the queue limit: reset at once */
    assert_true(th_info(&h, p[4]).reset && th_info(&h, p[5]).reset);
    assert_false(th_info(&h, p[2]).reset);

    th_run(&h, 1000); /* the two waiting ones time out and are reset */
    assert_int_equal(s->rejected, 4);
    assert_int_equal(s->backlog_now, 0);
    assert_true(th_info(&h, p[2]).reset && th_info(&h, p[3]).reset);
    sn_sim_stats ss;
    sn_sim_stats_get(h.sim, &ss);
    assert_int_equal(ss.handles_in_use, 2); /* only the two slots hold one */
    th_free(&h);
}

/* Report() had no name for "allocated". Every state must be named. */
static void test_row15_report_names_every_state(void **state)
{
    (void)state;
    sn_config cfg;
    sn_config_default(&cfg);
    cfg.connect_retries = 3;
    cfg.connect_timeout_ms = 100000;
    th h;
    th_init(&h, &cfg, NULL);
    sn_endpoint ep = th_listen(&h, 80, 8, 0);
    sn_endpoint hang = {0x0a000002u, 1}, refuse = {0x0a000002u, 2};
    sn_sim_server_config sc = {.mode = SN_SIM_SERVER_HANG};
    sn_sim_server_add(h.sim, &hang, &sc);
    sc.mode = SN_SIM_SERVER_REFUSE_SYNC;
    sn_sim_server_add(h.sim, &refuse, &sc);

    sn_id connected, oec, pending, connecting, allocated, aborted;
    th_client(&h, &ep, SN_SIM_PEER_AUTO_READ, &connected);
    sn_sim_peer po = th_client(&h, &ep, SN_SIM_PEER_AUTO_READ, &oec);
    th_client(&h, &ep, SN_SIM_PEER_MANUAL, &pending);
    sn_sim_peer pa = th_client(&h, &ep, SN_SIM_PEER_AUTO_READ, &aborted);
    sn_sim_peer_close(h.sim, po);
    stuff(&h, pending);
    assert_int_equal(sn_close(h.core, pending), 0);
    assert_int_equal(sn_connect(h.core, &hang, 0, 0, &connecting), 0);
    assert_int_equal(sn_connect(h.core, &refuse, 0, 0, &allocated), 0);
    assert_int_equal(sn_sim_kill_conn(h.sim, pa, SN_SIM_KILL_ERROR), 0); /* internal error */
    th_run(&h, 20);

    assert_int_equal(th_state(&h, connected), SN_CONNECTED);
    assert_int_equal(th_state(&h, oec), SN_OTHER_END_CLOSED);
    assert_int_equal(th_state(&h, pending), SN_CLOSE_PENDING);
    assert_int_equal(th_state(&h, connecting), SN_CONNECTING);
    assert_int_equal(th_state(&h, allocated), SN_ALLOCATED);
    assert_int_equal(th_state(&h, aborted), SN_ABORTED);

    char rep[4096];
    size_t n = sn_report(h.core, rep, sizeof rep);
    assert_true(n > 0 && n < sizeof rep);
    const char *names[] = {"free", "allocated", "connecting", "connected", "other-end-closed",
                           "close-pending", "aborted"};
    for (unsigned i = 0; i < sizeof names / sizeof names[0]; i++) {
        char key[40];
        snprintf(key, sizeof key, " %s ", names[i]);
        if (strstr(rep, key) == NULL)
            fail_msg("report lacks state %s:\n%s", names[i], rep);
    }
    assert_null(strstr(rep, "invalid"));
    th_free(&h);
}

/* ---- closePending bugs ------------------------------------------------- */

/* Bug 1: waiting for ACKs a browser's RST cancelled held slots until the
 * stack killed the upload. The slot must free once the RST lands, and the
 * upload beside it must not notice. */
static void test_cp1_browser_rst_frees_slot(void **state)
{
    (void)state;
    sn_sim_config scfg;
    sn_sim_config_default(&scfg);
    scfg.latency_ms = 20;
    th h;
    th_init(&h, NULL, &scfg);
    sn_endpoint ep = th_listen(&h, 80, 8, 0);
    sn_id up;
    sn_sim_peer uploader = th_client(&h, &ep, SN_SIM_PEER_AUTO_READ, &up);
    uint64_t uploaded = 0, read_up = 0;
    uint8_t buf[4096];

    for (int round = 0; round < 30; round++) {
        sn_id web;
        sn_sim_peer browser = th_client(&h, &ep, SN_SIM_PEER_BROWSER, &web);
        assert_int_equal(sn_sim_peer_set_mode(h.sim, browser, SN_SIM_PEER_BROWSER, 1000), 0);
        assert_int_equal(sn_write(h.core, web, payload, 1000, SN_WRITE_PUSH | SN_WRITE_CLOSE_AFTER),
                         1000);
        uint32_t t0 = th_now(&h);
        for (int i = 0; i < 200 && th_state(&h, web) != SN_FREE; i++) {
            int n = sn_sim_peer_send(h.sim, uploader, payload, 1460);
            uploaded += n > 0 ? (uint64_t)n : 0;
            int r;
            while ((r = sn_read(h.core, up, buf, sizeof buf)) > 0)
                read_up += (uint64_t)r;
            th_poll(&h);
            if (th_state(&h, web) != SN_FREE)
                sn_sim_advance(h.sim, 1);
        }
        sn_sim_link_info li = th_info(&h, browser);
        assert_int_equal(th_state(&h, web), SN_FREE);
        assert_true(li.reset && li.reset_by == SN_SIM_BY_PEER);
        assert_int_equal(li.peer_received, 1000);
        /* Freed in the pass that saw the RST: about two trips, never the 2 s timeout. */
        assert_true(th_now(&h) - t0 < 4 * scfg.latency_ms + scfg.browser_rst_ms + 5);
        sn_sim_peer_release(h.sim, browser);
    }
    const sn_stats *s = sn_stats_get(h.core);
    assert_int_equal(s->closed_timeout, 0);
    assert_int_equal(s->closed_peer, 30); /* freed by the RST, never by an ACK */
    assert_int_equal(s->closed_graceful, 0);
    assert_int_equal(th_last(&h, SN_EV_FREED)->info, SN_FREED_PEER);
    assert_int_equal(th_state(&h, up), SN_CONNECTED);
    for (int i = 0; i < 300; i++) { /* let what is in flight arrive */
        int r;
        while ((r = sn_read(h.core, up, buf, sizeof buf)) > 0)
            read_up += (uint64_t)r;
        th_run(&h, 1);
    }
    assert_false(th_info(&h, uploader).reset);
    assert_int_equal(read_up, uploaded);
    th_free(&h);
}

/* Bug 2: Close() called a blocking netconn_shutdown(). Close must make no
 * backend call at all and take no time. */
static void test_cp2_close_makes_no_backend_call(void **state)
{
    (void)state;
    th h;
    sn_id id;
    th_start(&h, SN_SIM_PEER_MANUAL, &id);
    stuff(&h, id);
    sn_sim_stats before, after;
    sn_sim_stats_get(h.sim, &before);
    assert_int_equal(sn_close(h.core, id), 0);
    sn_sim_stats_get(h.sim, &after);
    /* Reading the clock (to measure the call) is all it may do. */
    before.ops[SN_SIM_OP_CLOCK_US] = after.ops[SN_SIM_OP_CLOCK_US];
    assert_memory_equal(before.ops, after.ops, sizeof before.ops);
    assert_int_equal(th_state(&h, id), SN_CLOSE_PENDING);
    th_free(&h);
}

/* Bug 3: no null guards when the stack freed the PCB during closePending. */
static void test_cp3_stack_abort_while_closing(void **state)
{
    (void)state;
    th h;
    sn_id id;
    sn_sim_peer p = th_start(&h, SN_SIM_PEER_MANUAL, &id);
    stuff(&h, id);
    assert_int_equal(sn_close(h.core, id), 0);
    th_run(&h, 100);
    assert_int_equal(th_state(&h, id), SN_CLOSE_PENDING);
    assert_int_equal(sn_sim_kill_conn(h.sim, p, SN_SIM_KILL_STACK_ABORT), 0);
    th_run(&h, 2);
    assert_int_equal(th_state(&h, id), SN_FREE);
    assert_int_equal(sn_stats_get(h.core)->closed_peer, 1);
    th_run(&h, 10);
    assert_true(th_info(&h, p).released); /* handle released; no misuse */
    th_free(&h);
}

/* Bug 4: the close timeout went to aborted, costing the host a round trip.
 * It must reset the peer and free the slot at the timeout. */
static void test_cp4_timeout_frees_with_rst(void **state)
{
    (void)state;
    th h;
    th_init(&h, NULL, NULL);
    sn_endpoint ep = th_listen(&h, 80, 4, 0);
    sn_id id;
    sn_sim_peer p = th_client(&h, &ep, SN_SIM_PEER_MANUAL, &id); /* never reads */
    stuff(&h, id);
    th_poll(&h);
    uint32_t t0 = th_now(&h);
    assert_int_equal(sn_close(h.core, id), 0);
    uint32_t took = th_run_until(&h, 5000, th_pred_free, &id);
    assert_int_equal(took, h.cfg.close_timeout_ms);
    assert_int_equal(th_now(&h) - t0, 2000);
    assert_int_equal(th_count(&h, SN_EV_ABORTED), 0);
    const th_event *fe = th_last(&h, SN_EV_FREED);
    assert_non_null(fe);
    assert_int_equal(fe->info, SN_FREED_TIMEOUT);
    assert_int_equal(sn_stats_get(h.core)->closed_timeout, 1);
    th_run(&h, 20);
    sn_sim_link_info li = th_info(&h, p);
    assert_true(li.reset);
    assert_int_equal(li.reset_by, SN_SIM_BY_CORE);
    th_free(&h);
}

/* Bug 5: closeReady re-entered Close() and blocked again. The real close
 * happens once, from the poll, and the handle is done after it. */
static void test_cp5_one_close_from_poll(void **state)
{
    (void)state;
    th h;
    sn_id id;
    sn_sim_peer p = th_start(&h, SN_SIM_PEER_AUTO_READ, &id);
    uint8_t buf[30000];
    fill(buf, sizeof buf, 9);
    write_all(&h, id, buf, sizeof buf, SN_WRITE_PUSH, 3000);
    assert_int_equal(sn_close(h.core, id), 0);
    assert_int_equal(sn_close(h.core, id), 0); /* again: still just pending */
    assert_int_equal(sn_sim_op_count(h.sim, SN_SIM_OP_CLOSE), 0);
    th_run_until(&h, 3000, th_pred_free, &id);
    assert_int_equal(sn_close(h.core, id), SN_ESTALE); /* the handle is spent */
    th_run(&h, 100);
    sn_sim_link_info li = th_info(&h, p);
    assert_int_equal(li.close_calls, 1);
    assert_int_equal(li.abort_calls, 0);
    assert_int_equal(li.release_calls, 1);
    assert_int_equal(li.peer_received, sizeof buf);
    assert_int_equal(li.peer_rx_hash, li.core_tx_hash);
    assert_true(li.peer_saw_fin);
    assert_int_equal(sn_stats_get(h.core)->closed_graceful, 1);
    th_free(&h);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_row01_push_flushes_now),
        cmocka_unit_test(test_row02_write_returns_accepted_count),
        cmocka_unit_test(test_row03_full_buffer_no_spin),
        cmocka_unit_test(test_row04_enomem_is_retryable),
        cmocka_unit_test(test_row05_partial_write_keeps_connection),
        cmocka_unit_test(test_row06_stack_abort_is_other_end_closed),
        cmocka_unit_test(test_row07_silence_is_not_an_error),
        cmocka_unit_test(test_row08_connect_failure_reported),
        cmocka_unit_test(test_row09_status_of_dead_connection),
        cmocka_unit_test(test_row10_terminate_without_listener),
        cmocka_unit_test(test_row11_allocate_never_waits),
        cmocka_unit_test(test_row12_listener_stop_keeps_connections),
        cmocka_unit_test(test_row13_stopped_listener_entry_reused),
        cmocka_unit_test(test_row14_rejected_connections_drained),
        cmocka_unit_test(test_row15_report_names_every_state),
        cmocka_unit_test(test_cp1_browser_rst_frees_slot),
        cmocka_unit_test(test_cp2_close_makes_no_backend_call),
        cmocka_unit_test(test_cp3_stack_abort_while_closing),
        cmocka_unit_test(test_cp4_timeout_frees_with_rst),
        cmocka_unit_test(test_cp5_one_close_from_poll),
    };
    return th_main("seed_duet", tests, sizeof tests / sizeof tests[0], argc, argv);
}
