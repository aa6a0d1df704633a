/*
 * The simulator checked on its own, through its ops table, without the core:
 * delivery, unsent/unacked accounting, FIN and RST both ways, coalescing vs
 * push, outgoing connects, faults, misuse detection, replay determinism and
 * the clock wrap.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "slotnet/sim.h"

#define PORT 80

typedef struct fixture {
    sn_sim *sim;
    sn_backend be;
    const sn_backend_ops *ops;
    void *lh;
} fixture;

static fixture fx_make(const sn_sim_config *cfg)
{
    fixture f;
    memset(&f, 0, sizeof f);
    assert_int_equal(sn_sim_create(&f.sim, cfg), 0);
    f.be = sn_sim_backend(f.sim);
    f.ops = f.be.ops;
    sn_endpoint ep = {0, PORT};
    assert_int_equal(f.ops->listen(f.be.ctx, &ep, &f.lh), 0);
    return f;
}

static fixture fx_default(void)
{
    sn_sim_config cfg;
    sn_sim_config_default(&cfg);
    return fx_make(&cfg);
}

/* A client connects and the core side accepts it. */
static void *connect_accept(fixture *f, sn_sim_peer *p)
{
    sn_endpoint dst = {0, PORT};
    assert_int_equal(sn_sim_client_connect(f->sim, &dst, p), 0);
    void *ch = NULL;
    sn_endpoint local, remote;
    assert_int_equal(f->ops->accept(f->be.ctx, f->lh, &ch, &local, &remote), SN_EAGAIN);
    sn_sim_advance(f->sim, 10);
    assert_int_equal(f->ops->accept(f->be.ctx, f->lh, &ch, &local, &remote), 0);
    assert_non_null(ch);
    assert_int_equal(local.port, PORT);
    assert_int_equal(sn_sim_peer_of(f->sim, &local, &remote), *p);
    assert_int_equal(sn_sim_peer_of_handle(f->sim, ch), *p);
    return ch;
}

static uint32_t flags_of(fixture *f, void *ch, int *err)
{
    sn_bconn_state st;
    f->ops->conn_state(f->be.ctx, ch, &st);
    if (err)
        *err = st.error;
    return st.flags;
}

static void finish(fixture *f, void *ch, bool abort_it)
{
    if (abort_it)
        f->ops->abort(f->be.ctx, ch);
    else
        f->ops->close(f->be.ctx, ch);
    f->ops->release(f->be.ctx, ch);
}

static void test_delivery_both_ways(void **state)
{
    (void)state;
    fixture f = fx_default();
    sn_sim_peer p;
    void *ch = connect_accept(&f, &p);

    assert_int_equal(sn_sim_peer_send(f.sim, p, "hello", 5), 5);
    char buf[64];
    assert_int_equal(f.ops->recv(f.be.ctx, ch, buf, sizeof buf), 0);
    sn_sim_advance(f.sim, 5); /* sent on the next ms, then 5 ms of latency */
    assert_int_equal(f.ops->rx_avail(f.be.ctx, ch), 0);
    sn_sim_advance(f.sim, 1);
    assert_int_equal(f.ops->rx_avail(f.be.ctx, ch), 5);
    assert_true(flags_of(&f, ch, NULL) & SN_BF_READABLE);
    assert_int_equal(f.ops->recv(f.be.ctx, ch, buf, sizeof buf), 5);
    assert_memory_equal(buf, "hello", 5);

    assert_int_equal(f.ops->send(f.be.ctx, ch, "world!", 6, true), 6);
    sn_sim_advance(f.sim, 10);
    assert_int_equal(sn_sim_peer_read(f.sim, p, buf, sizeof buf), 6);
    assert_memory_equal(buf, "world!", 6);

    sn_sim_link_info li;
    assert_int_equal(sn_sim_peer_info(f.sim, p, &li), 0);
    assert_true(li.incoming);
    assert_int_equal(li.core_sent, 6);
    assert_int_equal(li.peer_received, 6);
    assert_int_equal(li.peer_read, 6);
    assert_int_equal(li.peer_sent, 5);
    assert_int_equal(li.core_read, 5);
    assert_int_equal(li.core_tx_hash, li.peer_rx_hash);

    finish(&f, ch, false);
    sn_sim_destroy(f.sim);
}

static void test_accept_order_and_full_queue(void **state)
{
    (void)state;
    sn_sim_config cfg;
    sn_sim_config_default(&cfg);
    cfg.accept_queue = 3;
    fixture f = fx_make(&cfg);
    sn_endpoint dst = {0, PORT};
    sn_sim_peer p[4];
    for (int i = 0; i < 4; i++) {
        assert_int_equal(sn_sim_client_connect(f.sim, &dst, &p[i]), 0);
        sn_sim_advance(f.sim, 1);
    }
    sn_sim_advance(f.sim, 10);
    char c;
    assert_int_equal(sn_sim_peer_read(f.sim, p[3], &c, 1), SN_ECONNREFUSED);
    for (int i = 0; i < 3; i++) {
        void *ch;
        sn_endpoint local, remote;
        assert_int_equal(f.ops->accept(f.be.ctx, f.lh, &ch, &local, &remote), 0);
        assert_int_equal(sn_sim_peer_of_handle(f.sim, ch), p[i]);
        finish(&f, ch, true);
    }
    void *ch;
    assert_int_equal(f.ops->accept(f.be.ctx, f.lh, &ch, NULL, NULL), SN_EAGAIN);
    /* no listener: refused */
    sn_endpoint other = {0, 81};
    sn_sim_peer q;
    assert_int_equal(sn_sim_client_connect(f.sim, &other, &q), 0);
    sn_sim_advance(f.sim, 20);
    assert_int_equal(sn_sim_peer_send(f.sim, q, "x", 1), SN_ECONNREFUSED);
    sn_sim_destroy(f.sim);
}

static void test_unsent_when_peer_never_reads(void **state)
{
    (void)state;
    sn_sim_config cfg;
    sn_sim_config_default(&cfg);
    cfg.peer_rcvbuf = 2000;
    cfg.sndbuf = 5000;
    fixture f = fx_make(&cfg);
    sn_sim_peer p;
    void *ch = connect_accept(&f, &p); /* MANUAL: the test never reads */
    static uint8_t data[5000];
    assert_int_equal(f.ops->send(f.be.ctx, ch, data, sizeof data, true), 5000);
    assert_int_equal(f.ops->tx_space(f.be.ctx, ch), 0);
    sn_sim_advance(f.sim, 500);
    uint32_t unsent = 0, unacked = 0;
    assert_int_equal(f.ops->tx_queued(f.be.ctx, ch, &unsent, &unacked), 0);
    assert_int_equal(unsent, 3000);
    assert_int_equal(unacked, 0); /* the 2000 delivered were acknowledged */
    assert_int_equal(f.ops->tx_space(f.be.ctx, ch), 2000);
    /* the peer reads: the window opens and everything drains */
    char buf[4096];
    int total = 0;
    for (int i = 0; i < 100; i++) {
        int n = sn_sim_peer_read(f.sim, p, buf, sizeof buf);
        assert_true(n >= 0);
        total += n;
        sn_sim_advance(f.sim, 10);
    }
    assert_int_equal(total, 5000);
    assert_int_equal(f.ops->tx_queued(f.be.ctx, ch, &unsent, &unacked), 0);
    assert_int_equal(unsent, 0);
    assert_int_equal(unacked, 0);
    finish(&f, ch, false);
    sn_sim_destroy(f.sim);
}

static void test_unacked_when_peer_never_acks(void **state)
{
    (void)state;
    fixture f = fx_default();
    sn_sim_peer p;
    void *ch = connect_accept(&f, &p);
    assert_int_equal(sn_sim_peer_set_mode(f.sim, p, SN_SIM_PEER_NO_ACK, 0), 0);
    assert_int_equal(f.ops->send(f.be.ctx, ch, "abcdef", 6, true), 6);
    sn_sim_advance(f.sim, 3000);
    uint32_t unsent = 9, unacked = 0;
    assert_int_equal(f.ops->tx_queued(f.be.ctx, ch, &unsent, &unacked), 0);
    assert_int_equal(unsent, 0);
    assert_int_equal(unacked, 6);
    sn_sim_link_info li;
    sn_sim_peer_info(f.sim, p, &li);
    assert_int_equal(li.peer_read, 6);
    assert_int_equal(li.core_acked, 0);
    finish(&f, ch, false);
    sn_sim_destroy(f.sim);
}

static void test_ack_timing(void **state)
{
    (void)state;
    sn_sim_config cfg;
    sn_sim_config_default(&cfg);
    cfg.latency_ms = 10;
    cfg.ack_delay_ms = 30;
    fixture f = fx_make(&cfg);
    sn_sim_peer p;
    void *ch = connect_accept(&f, &p);
    sn_sim_advance(f.sim, 10);
    assert_int_equal(f.ops->send(f.be.ctx, ch, "x", 1, true), 1);
    uint32_t unsent, unacked;
    f.ops->tx_queued(f.be.ctx, ch, &unsent, &unacked);
    assert_int_equal(unsent, 1);
    sn_sim_advance(f.sim, 1); /* transmitted */
    f.ops->tx_queued(f.be.ctx, ch, &unsent, &unacked);
    assert_int_equal(unsent, 0);
    assert_int_equal(unacked, 1);
    sn_sim_advance(f.sim, 48); /* 1 + 10 + 30 + 10 = 51 */
    f.ops->tx_queued(f.be.ctx, ch, &unsent, &unacked);
    assert_int_equal(unacked, 1);
    sn_sim_advance(f.sim, 2);
    f.ops->tx_queued(f.be.ctx, ch, &unsent, &unacked);
    assert_int_equal(unacked, 0);
    finish(&f, ch, false);
    sn_sim_destroy(f.sim);
}

static void test_coalescing_and_push(void **state)
{
    (void)state;
    fixture f = fx_default();
    sn_sim_peer p;
    void *ch = connect_accept(&f, &p);
    uint32_t unsent, unacked;
    /* unpushed: held up to 200 ms */
    assert_int_equal(f.ops->send(f.be.ctx, ch, "0123456789", 10, false), 10);
    sn_sim_advance(f.sim, 150);
    f.ops->tx_queued(f.be.ctx, ch, &unsent, &unacked);
    assert_int_equal(unsent, 10);
    assert_int_equal(sn_sim_peer_avail(f.sim, p), 0);
    sn_sim_advance(f.sim, 60);
    f.ops->tx_queued(f.be.ctx, ch, &unsent, &unacked);
    assert_int_equal(unsent, 0);
    sn_sim_advance(f.sim, 10);
    assert_int_equal(sn_sim_peer_avail(f.sim, p), 10);
    /* a push flushes what is held at once */
    assert_int_equal(f.ops->send(f.be.ctx, ch, "abc", 3, false), 3);
    sn_sim_advance(f.sim, 20);
    f.ops->tx_queued(f.be.ctx, ch, &unsent, &unacked);
    assert_int_equal(unsent, 3);
    assert_int_equal(f.ops->send(f.be.ctx, ch, "de", 2, true), 2);
    sn_sim_advance(f.sim, 1);
    f.ops->tx_queued(f.be.ctx, ch, &unsent, &unacked);
    assert_int_equal(unsent, 0);
    sn_sim_advance(f.sim, 5);
    assert_int_equal(sn_sim_peer_avail(f.sim, p), 15);
    /* a full segment goes without a push */
    static uint8_t big[1460];
    assert_int_equal(f.ops->send(f.be.ctx, ch, big, sizeof big, false), 1460);
    sn_sim_advance(f.sim, 1);
    f.ops->tx_queued(f.be.ctx, ch, &unsent, &unacked);
    assert_int_equal(unsent, 0);
    /* close flushes too */
    assert_int_equal(f.ops->send(f.be.ctx, ch, "z", 1, false), 1);
    f.ops->close(f.be.ctx, ch);
    sn_sim_advance(f.sim, 10);
    char buf[2000];
    int n = sn_sim_peer_read(f.sim, p, buf, sizeof buf);
    assert_int_equal(n, 15 + 1460 + 1);
    assert_int_equal(sn_sim_peer_read(f.sim, p, buf, sizeof buf), SN_ECLOSED);
    f.ops->release(f.be.ctx, ch);
    sn_sim_destroy(f.sim);
}

static void test_fin_both_ways(void **state)
{
    (void)state;
    fixture f = fx_default();
    sn_sim_peer p;
    void *ch = connect_accept(&f, &p);
    assert_int_equal(sn_sim_peer_send(f.sim, p, "req", 3), 3);
    assert_int_equal(sn_sim_peer_close(f.sim, p), 0);
    assert_int_equal(sn_sim_peer_send(f.sim, p, "x", 1), SN_ECLOSED);
    sn_sim_advance(f.sim, 10);
    uint32_t fl = flags_of(&f, ch, NULL);
    assert_true(fl & SN_BF_PEER_FIN);
    assert_false(fl & SN_BF_RESET);
    char buf[16];
    assert_int_equal(f.ops->recv(f.be.ctx, ch, buf, sizeof buf), 3);
    assert_int_equal(f.ops->recv(f.be.ctx, ch, buf, sizeof buf), SN_ECLOSED);
    /* half-closed: the core can still answer */
    assert_int_equal(f.ops->send(f.be.ctx, ch, "resp", 4, true), 4);
    f.ops->close(f.be.ctx, ch);
    sn_sim_advance(f.sim, 20);
    assert_int_equal(sn_sim_peer_read(f.sim, p, buf, sizeof buf), 4);
    assert_int_equal(sn_sim_peer_read(f.sim, p, buf, sizeof buf), SN_ECLOSED);
    sn_sim_link_info li;
    sn_sim_peer_info(f.sim, p, &li);
    assert_true(li.peer_saw_fin);
    assert_true(li.core_saw_fin);
    assert_false(li.reset);
    assert_int_equal(li.close_calls, 1);
    f.ops->release(f.be.ctx, ch);
    assert_int_equal(sn_sim_peer_release(f.sim, p), 0);
    assert_int_equal(sn_sim_peer_info(f.sim, p, &li), SN_ESTALE);
    sn_sim_stats st;
    sn_sim_stats_get(f.sim, &st);
    assert_int_equal(st.links_in_use, 0);
    assert_int_equal(st.handles_in_use, 0);
    sn_sim_destroy(f.sim);
}

static void test_close_discards_input(void **state)
{
    (void)state;
    fixture f = fx_default();
    sn_sim_peer p;
    void *ch = connect_accept(&f, &p);
    assert_int_equal(sn_sim_peer_send(f.sim, p, "unread", 6), 6);
    sn_sim_advance(f.sim, 10);
    f.ops->close(f.be.ctx, ch);
    assert_int_equal(sn_sim_peer_send(f.sim, p, "late", 4), 4);
    sn_sim_advance(f.sim, 100);
    sn_sim_link_info li;
    sn_sim_peer_info(f.sim, p, &li);
    assert_int_equal(li.core_discarded, 10);
    assert_false(li.reset);
    assert_true(li.peer_saw_fin);
    f.ops->release(f.be.ctx, ch);
    sn_sim_destroy(f.sim);
}

static void test_rst_both_ways(void **state)
{
    (void)state;
    fixture f = fx_default();
    sn_sim_peer p, q;
    void *ch = connect_accept(&f, &p);
    void *ch2 = connect_accept(&f, &q);
    char buf[16];

    /* the peer resets: data already delivered stays readable (lwIP) */
    assert_int_equal(sn_sim_peer_send(f.sim, p, "ab", 2), 2);
    sn_sim_advance(f.sim, 10);
    assert_int_equal(sn_sim_peer_reset(f.sim, p), 0);
    assert_int_equal(sn_sim_peer_send(f.sim, p, "c", 1), SN_ECONNRESET);
    sn_sim_advance(f.sim, 10);
    int err;
    uint32_t fl = flags_of(&f, ch, &err);
    assert_true(fl & SN_BF_RESET);
    assert_int_equal(err, SN_ECONNRESET);
    assert_int_equal(f.ops->recv(f.be.ctx, ch, buf, sizeof buf), 2);
    assert_int_equal(f.ops->recv(f.be.ctx, ch, buf, sizeof buf), SN_ECONNRESET);
    assert_int_equal(f.ops->send(f.be.ctx, ch, "x", 1, true), SN_ECONNRESET);
    uint32_t unsent = 1, unacked = 1;
    assert_int_equal(f.ops->tx_queued(f.be.ctx, ch, &unsent, &unacked), 0);
    assert_int_equal(unsent + unacked, 0);
    sn_sim_link_info li;
    sn_sim_peer_info(f.sim, p, &li);
    assert_true(li.reset);
    assert_int_equal(li.reset_by, SN_SIM_BY_PEER);
    finish(&f, ch, true);

    /* the core aborts: unsent data is dropped, the peer sees RST */
    sn_sim_peer_set_mode(f.sim, q, SN_SIM_PEER_MANUAL, 0);
    assert_int_equal(f.ops->send(f.be.ctx, ch2, "lost", 4, false), 4);
    f.ops->abort(f.be.ctx, ch2);
    sn_sim_advance(f.sim, 300);
    assert_int_equal(sn_sim_peer_read(f.sim, q, buf, sizeof buf), SN_ECONNRESET);
    sn_sim_peer_info(f.sim, q, &li);
    assert_int_equal(li.reset_by, SN_SIM_BY_CORE);
    assert_int_equal(li.peer_received, 0);
    assert_int_equal(li.abort_calls, 1);
    f.ops->release(f.be.ctx, ch2);
    sn_sim_destroy(f.sim);
}

static void test_rst_discards_rx_option(void **state)
{
    (void)state;
    sn_sim_config cfg;
    sn_sim_config_default(&cfg);
    cfg.rst_discards_rx = true;
    fixture f = fx_make(&cfg);
    sn_sim_peer p;
    void *ch = connect_accept(&f, &p);
    sn_sim_peer_send(f.sim, p, "ab", 2);
    sn_sim_advance(f.sim, 10);
    sn_sim_peer_reset(f.sim, p);
    sn_sim_advance(f.sim, 10);
    char buf[4];
    assert_int_equal(f.ops->recv(f.be.ctx, ch, buf, sizeof buf), SN_ECONNRESET);
    finish(&f, ch, true);
    sn_sim_destroy(f.sim);
}

static void test_browser_resets_before_ack(void **state)
{
    (void)state;
    fixture f = fx_default();
    sn_sim_peer p;
    void *ch = connect_accept(&f, &p);
    assert_int_equal(sn_sim_peer_set_mode(f.sim, p, SN_SIM_PEER_BROWSER, 100), 0);
    static uint8_t resp[100];
    assert_int_equal(f.ops->send(f.be.ctx, ch, resp, sizeof resp, true), 100);
    f.ops->close(f.be.ctx, ch); /* the seed: RRF closes right after the response */
    sn_sim_advance(f.sim, 7);   /* transmitted at +1, delivered at +6 */
    sn_sim_link_info li;
    sn_sim_peer_info(f.sim, p, &li);
    assert_int_equal(li.peer_received, 100);
    assert_int_equal(li.unsent, 0);
    assert_int_equal(li.unacked, 100); /* the ACK is delayed... */
    sn_sim_advance(f.sim, 100);
    sn_sim_peer_info(f.sim, p, &li);
    assert_true(li.reset); /* ...and the RST preempts it */
    assert_int_equal(li.reset_by, SN_SIM_BY_PEER);
    assert_int_equal(li.core_acked, 0);
    assert_int_equal(li.peer_read, 100);
    f.ops->release(f.be.ctx, ch);
    sn_sim_destroy(f.sim);
}

static void test_outgoing_connects(void **state)
{
    (void)state;
    fixture f = fx_default();
    sn_endpoint acc = {0x0a000002u, 5555}, ref = {0x0a000003u, 5555}, hang = {0x0a000004u, 5555},
                sync = {0x0a000005u, 5555}, none = {0x0a000006u, 5555};
    sn_sim_server_config sc = {SN_SIM_SERVER_ACCEPT, SN_SIM_PEER_AUTO_READ, 0, false};
    assert_int_equal(sn_sim_server_add(f.sim, &acc, &sc), 0);
    sc.mode = SN_SIM_SERVER_REFUSE;
    sn_sim_server_add(f.sim, &ref, &sc);
    sc.mode = SN_SIM_SERVER_HANG;
    sn_sim_server_add(f.sim, &hang, &sc);
    sc.mode = SN_SIM_SERVER_REFUSE_SYNC;
    sn_sim_server_add(f.sim, &sync, &sc);

    void *c1, *c2, *c3, *c4 = NULL, *c5;
    sn_endpoint local;
    assert_int_equal(f.ops->connect(f.be.ctx, &acc, &c1, &local), 0);
    assert_int_equal(local.addr, 0x0a000001u);
    assert_int_equal(f.ops->connect(f.be.ctx, &ref, &c2, NULL), 0);
    assert_int_equal(f.ops->connect(f.be.ctx, &hang, &c3, NULL), 0);
    assert_int_equal(f.ops->connect(f.be.ctx, &sync, &c4, NULL), SN_ECONNREFUSED);
    assert_null(c4);
    assert_int_equal(f.ops->connect(f.be.ctx, &none, &c5, NULL), 0);
    assert_int_equal(f.ops->send(f.be.ctx, c1, "x", 1, true), SN_ESTATE);
    sn_sim_advance(f.sim, 9);
    assert_int_equal(flags_of(&f, c1, NULL) & SN_BF_CONNECTED, 0);
    sn_sim_advance(f.sim, 1); /* 2 x latency */
    assert_true(flags_of(&f, c1, NULL) & SN_BF_CONNECTED);
    assert_true(flags_of(&f, c1, NULL) & SN_BF_WRITABLE);
    int err;
    assert_true(flags_of(&f, c2, &err) & SN_BF_FAILED);
    assert_int_equal(err, SN_ECONNREFUSED);
    assert_true(flags_of(&f, c5, &err) & SN_BF_FAILED);
    sn_sim_advance(f.sim, 60000);
    assert_int_equal(flags_of(&f, c3, NULL), 0); /* never answered */

    sn_sim_peer sp;
    assert_int_equal(sn_sim_server_accept(f.sim, &acc, &sp), 0);
    assert_int_equal(sn_sim_server_accept(f.sim, &acc, &sp), SN_EAGAIN);
    assert_int_equal(sn_sim_server_accept(f.sim, &acc, &sp) == 0, 0);
    assert_int_equal(f.ops->send(f.be.ctx, c1, "ping", 4, true), 4);
    sn_sim_advance(f.sim, 20);
    sn_sim_link_info li;
    assert_int_equal(sn_sim_peer_info(f.sim, sn_sim_peer_of_handle(f.sim, c1), &li), 0);
    assert_false(li.incoming);
    assert_int_equal(li.peer_read, 4);
    finish(&f, c1, false);
    finish(&f, c2, true);
    finish(&f, c3, true);
    finish(&f, c5, true);
    sn_sim_stats st;
    sn_sim_stats_get(f.sim, &st);
    assert_int_equal(st.handles_in_use, 0);
    assert_int_equal(st.handles_created, 4);
    sn_sim_destroy(f.sim);
}

static void test_forced_faults(void **state)
{
    (void)state;
    fixture f = fx_default();
    sn_sim_peer p;
    void *ch = connect_accept(&f, &p);
    static uint8_t data[1000];

    sn_sim_force(f.sim, SN_SIM_FORCE_SEND_ENOMEM, 1);
    assert_int_equal(f.ops->send(f.be.ctx, ch, data, 100, true), SN_ENOMEM);
    assert_false(flags_of(&f, ch, NULL) & SN_BF_WRITABLE);
    sn_sim_advance(f.sim, 25);
    assert_true(flags_of(&f, ch, NULL) & SN_BF_WRITABLE);

    sn_sim_force(f.sim, SN_SIM_FORCE_SEND_PARTIAL, 1);
    assert_int_equal(f.ops->send(f.be.ctx, ch, data, 1000, true), 500);
    assert_false(flags_of(&f, ch, NULL) & SN_BF_WRITABLE);
    sn_sim_advance(f.sim, 1);
    assert_true(flags_of(&f, ch, NULL) & SN_BF_WRITABLE); /* space was there */

    sn_endpoint dst = {0, PORT};
    sn_sim_peer q;
    sn_sim_client_connect(f.sim, &dst, &q);
    sn_sim_advance(f.sim, 10);
    void *c2;
    sn_sim_force(f.sim, SN_SIM_FORCE_ACCEPT_EMFILE, 1);
    assert_int_equal(f.ops->accept(f.be.ctx, f.lh, &c2, NULL, NULL), SN_EMFILE);
    sn_sim_force(f.sim, SN_SIM_FORCE_ACCEPT_FAIL, 1);
    assert_int_equal(f.ops->accept(f.be.ctx, f.lh, &c2, NULL, NULL), SN_ENOMEM);
    assert_int_equal(f.ops->accept(f.be.ctx, f.lh, &c2, NULL, NULL), 0);

    /* a stack abort looks like a reset; an internal error like an error */
    int err;
    assert_int_equal(sn_sim_kill_conn(f.sim, p, SN_SIM_KILL_STACK_ABORT), 0);
    uint32_t fl = flags_of(&f, ch, &err);
    assert_true(fl & SN_BF_RESET);
    assert_false(fl & SN_BF_ERROR);
    assert_int_equal(err, SN_ECONNRESET);
    assert_int_equal(sn_sim_kill_conn(f.sim, q, SN_SIM_KILL_ERROR), 0);
    fl = flags_of(&f, c2, &err);
    assert_true(fl & SN_BF_ERROR);
    assert_int_equal(err, SN_EIO);
    assert_int_equal(f.ops->send(f.be.ctx, c2, data, 1, true), SN_EIO);
    sn_sim_advance(f.sim, 10);
    char buf[8];
    assert_int_equal(sn_sim_peer_read(f.sim, q, buf, sizeof buf), SN_ECONNRESET);
    sn_sim_link_info li;
    sn_sim_peer_info(f.sim, p, &li);
    assert_int_equal(li.reset_by, SN_SIM_BY_STACK);
    sn_sim_peer_info(f.sim, q, &li);
    assert_int_equal(li.reset_by, SN_SIM_BY_ERROR);

    sn_endpoint srv = {0x0a000009u, 1};
    sn_sim_server_config sc = {SN_SIM_SERVER_ACCEPT, SN_SIM_PEER_AUTO_READ, 0, true};
    sn_sim_server_add(f.sim, &srv, &sc);
    void *c3, *c4;
    sn_sim_force(f.sim, SN_SIM_FORCE_CONNECT_REFUSE, 1);
    assert_int_equal(f.ops->connect(f.be.ctx, &srv, &c3, NULL), 0);
    sn_sim_force(f.sim, SN_SIM_FORCE_CONNECT_HANG, 1);
    assert_int_equal(f.ops->connect(f.be.ctx, &srv, &c4, NULL), 0);
    sn_sim_advance(f.sim, 1000);
    assert_true(flags_of(&f, c3, &err) & SN_BF_FAILED);
    assert_int_equal(flags_of(&f, c4, &err), 0);

    finish(&f, ch, true);
    finish(&f, c2, true);
    finish(&f, c3, true);
    finish(&f, c4, true);
    sn_sim_stats st;
    sn_sim_stats_get(f.sim, &st);
    assert_int_equal(st.faults, 8);
    sn_sim_destroy(f.sim);
}

static void test_misuse_detected(void **state)
{
    (void)state;
    sn_sim_config cfg;
    sn_sim_config_default(&cfg);
    cfg.misuse_fatal = false;
    fixture f = fx_make(&cfg);
    sn_sim_peer p;
    void *ch = connect_accept(&f, &p);
    assert_null(sn_sim_misuse(f.sim));
    f.ops->close(f.be.ctx, ch);
    /* only release() may follow close() */
    assert_int_equal(f.ops->send(f.be.ctx, ch, "x", 1, true), SN_ESTALE);
    assert_non_null(sn_sim_misuse(f.sim));
    assert_non_null(strstr(sn_sim_misuse(f.sim), "send"));
    f.ops->release(f.be.ctx, ch);
    /* anything after release() is a use after free */
    char buf[4];
    assert_int_equal(f.ops->recv(f.be.ctx, ch, buf, sizeof buf), SN_ESTALE);
    f.ops->release(f.be.ctx, ch);
    sn_sim_stats st;
    sn_sim_stats_get(f.sim, &st);
    assert_int_equal(st.misuse, 3);
    assert_int_equal(st.handles_released, 1);

    /* release without close/abort, double close, a made-up handle */
    void *c2 = connect_accept(&f, &p);
    f.ops->release(f.be.ctx, c2);
    void *c3 = connect_accept(&f, &p);
    f.ops->abort(f.be.ctx, c3);
    f.ops->close(f.be.ctx, c3);
    f.ops->release(f.be.ctx, c3);
    f.ops->release(f.be.ctx, (void *)(uintptr_t)0x12345);
    f.ops->unlisten(f.be.ctx, f.lh);
    f.ops->unlisten(f.be.ctx, f.lh);
    sn_sim_stats_get(f.sim, &st);
    assert_int_equal(st.misuse, 7);
    sn_sim_destroy(f.sim);
}

static void test_op_counts_and_release_log(void **state)
{
    (void)state;
    fixture f = fx_default();
    void *ch[3];
    sn_sim_peer p;
    for (int i = 0; i < 3; i++)
        ch[i] = connect_accept(&f, &p);
    uint32_t t0 = sn_sim_now(f.sim);
    for (int i = 0; i < 3; i++) {
        f.ops->close(f.be.ctx, ch[i]);
        f.ops->release(f.be.ctx, ch[i]);
        f.ops->wait(f.be.ctx, 250);
    }
    uint32_t times[8];
    assert_int_equal(sn_sim_release_log(f.sim, times, 8), 3);
    for (int i = 0; i < 3; i++)
        assert_int_equal((uint32_t)(times[i] - t0), (uint32_t)(250 * i));
    assert_int_equal(sn_sim_op_count(f.sim, SN_SIM_OP_CLOSE), 3);
    assert_int_equal(sn_sim_op_count(f.sim, SN_SIM_OP_RELEASE), 3);
    assert_int_equal(sn_sim_op_count(f.sim, SN_SIM_OP_WAIT), 3);
    assert_int_equal(sn_sim_op_count(f.sim, SN_SIM_OP_ACCEPT), 6);
    assert_int_equal(sn_sim_op_count(f.sim, SN_SIM_OP_ABORT), 0);
    assert_string_equal(sn_sim_op_name(SN_SIM_OP_TX_QUEUED), "tx_queued");
    sn_sim_destroy(f.sim);
}

static void test_clock_wrap(void **state)
{
    (void)state;
    fixture f = fx_default();
    assert_int_equal(f.ops->now_ms(f.be.ctx), UINT32_MAX - 10000u);
    uint32_t us0 = f.ops->clock_us(f.be.ctx);
    f.ops->wait(f.be.ctx, 10000);
    assert_int_equal(f.ops->now_ms(f.be.ctx), UINT32_MAX);
    f.ops->wait(f.be.ctx, 0); /* at least 1 ms */
    assert_int_equal(f.ops->now_ms(f.be.ctx), 0);
    assert_int_equal(sn_sim_elapsed_ms(f.sim), 10001);
    uint32_t us1 = f.ops->clock_us(f.be.ctx);
    /* virtual µs: 1000 per ms, plus op_cost_us per op call within a ms */
    assert_true((uint32_t)(us1 - us0) > 10000990u && (uint32_t)(us1 - us0) < 10001010u);
    /* a connection keeps working across the wrap */
    sn_sim_peer p;
    void *ch = connect_accept(&f, &p);
    assert_int_equal(f.ops->send(f.be.ctx, ch, "wrap", 4, true), 4);
    sn_sim_advance(f.sim, 100);
    assert_int_equal(sn_sim_peer_avail(f.sim, p), 4);
    finish(&f, ch, false);
    sn_sim_destroy(f.sim);

    sn_sim_config cfg;
    sn_sim_config_default(&cfg);
    cfg.start_ms = 1234;
    sn_sim *s;
    assert_int_equal(sn_sim_create(&s, &cfg), 0);
    assert_int_equal(sn_sim_now(s), 1234);
    sn_sim_destroy(s);
}

static void test_wake_on_io(void **state)
{
    (void)state;
    sn_sim_config cfg;
    sn_sim_config_default(&cfg);
    cfg.wake_on_io = true;
    fixture f = fx_make(&cfg);
    sn_endpoint dst = {0, PORT};
    sn_sim_peer p;
    sn_sim_client_connect(f.sim, &dst, &p);
    f.ops->wait(f.be.ctx, 1000);
    assert_int_equal(sn_sim_elapsed_ms(f.sim), 5); /* the SYN arrived */
    sn_sim_destroy(f.sim);
}

/* A random workload with faults, run twice: the same trace both times. */
static uint64_t scenario(uint64_t seed, bool step_all)
{
    sn_sim_config cfg;
    sn_sim_config_default(&cfg);
    cfg.seed = seed;
    cfg.step_all = step_all;
    cfg.faults.reset_peer_ppm = 200;
    cfg.faults.stack_abort_ppm = 200;
    cfg.faults.internal_error_ppm = 100;
    cfg.faults.send_partial_ppm = 100000;
    cfg.faults.send_enomem_ppm = 50000;
    cfg.faults.accept_fail_ppm = 50000;
    cfg.faults.accept_emfile_ppm = 50000;
    fixture f = fx_make(&cfg);
    uint64_t rng = seed ^ 0x5eedu;
    sn_endpoint dst = {0, PORT};
    void *h[16] = {0};
    static uint8_t data[3000];
    for (int step = 0; step < 3000; step++) {
        uint32_t r = sn_sim_rand_below(&rng, 100);
        if (r < 5) {
            sn_sim_peer p;
            if (sn_sim_client_connect(f.sim, &dst, &p) == 0) {
                sn_sim_peer_set_mode(f.sim, p, (sn_sim_peer_mode)sn_sim_rand_below(&rng, 4), 500);
                sn_sim_peer_send(f.sim, p, data, sn_sim_rand_below(&rng, 3000));
                if (sn_sim_rand_below(&rng, 2))
                    sn_sim_peer_close(f.sim, p);
                sn_sim_peer_release(f.sim, p);
            }
        }
        for (int i = 0; i < 16; i++) {
            if (h[i] == NULL) {
                void *ch;
                if (f.ops->accept(f.be.ctx, f.lh, &ch, NULL, NULL) == 0)
                    h[i] = ch;
                continue;
            }
            sn_bconn_state st;
            f.ops->conn_state(f.be.ctx, h[i], &st);
            char buf[512];
            (void)f.ops->recv(f.be.ctx, h[i], buf, sizeof buf);
            (void)f.ops->send(f.be.ctx, h[i], data, sn_sim_rand_below(&rng, 2000),
                              sn_sim_rand_below(&rng, 2) != 0);
            if ((st.flags & (SN_BF_RESET | SN_BF_ERROR)) || sn_sim_rand_below(&rng, 50) == 0) {
                finish(&f, h[i], (st.flags & (SN_BF_RESET | SN_BF_ERROR)) != 0);
                h[i] = NULL;
            }
        }
        f.ops->wait(f.be.ctx, 1 + sn_sim_rand_below(&rng, 10));
    }
    uint64_t hash = sn_sim_trace_hash(f.sim);
    sn_sim_stats st;
    sn_sim_stats_get(f.sim, &st);
    assert_true(st.faults > 10);
    assert_true(st.handles_created > 50);
    sn_sim_destroy(f.sim);
    return hash;
}

static void test_replay_determinism(void **state)
{
    (void)state;
    uint64_t a = scenario(42, false), b = scenario(42, false), c = scenario(43, false);
    assert_true(a == b);
    assert_true(a != c);
    /* the sim only visits a connection when something is due: visiting every
     * connection every millisecond must not change a thing */
    assert_true(scenario(42, true) == a);
    assert_true(scenario(43, true) == c);
}

static void test_bad_config(void **state)
{
    (void)state;
    sn_sim_config cfg;
    sn_sim_config_default(&cfg);
    cfg.latency_ms = 0;
    sn_sim *s;
    assert_int_equal(sn_sim_create(&s, &cfg), SN_EINVAL);
    sn_sim_config_default(&cfg);
    cfg.max_links = 5000;
    assert_int_equal(sn_sim_create(&s, &cfg), SN_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_delivery_both_ways),
        cmocka_unit_test(test_accept_order_and_full_queue),
        cmocka_unit_test(test_unsent_when_peer_never_reads),
        cmocka_unit_test(test_unacked_when_peer_never_acks),
        cmocka_unit_test(test_ack_timing),
        cmocka_unit_test(test_coalescing_and_push),
        cmocka_unit_test(test_fin_both_ways),
        cmocka_unit_test(test_close_discards_input),
        cmocka_unit_test(test_rst_both_ways),
        cmocka_unit_test(test_rst_discards_rx_option),
        cmocka_unit_test(test_browser_resets_before_ack),
        cmocka_unit_test(test_outgoing_connects),
        cmocka_unit_test(test_forced_faults),
        cmocka_unit_test(test_misuse_detected),
        cmocka_unit_test(test_op_counts_and_release_log),
        cmocka_unit_test(test_clock_wrap),
        cmocka_unit_test(test_wake_on_io),
        cmocka_unit_test(test_replay_determinism),
        cmocka_unit_test(test_bad_config),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
