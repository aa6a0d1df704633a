/*
 * Test harness: the real core on the simulator backend, stepped one virtual
 * millisecond at a time, with sn_check() after every poll and a log of the
 * events the core raised. Header-only; each test program includes it once.
 */
#ifndef SN_TEST_HARNESS_H
#define SN_TEST_HARNESS_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "slotnet.h"
#include "slotnet/sim.h"

#define TH_MAX_EVENTS 4096

typedef struct th_event {
    sn_id id;
    sn_event ev;
    int info;
    uint32_t t;
} th_event;

typedef struct th th;
typedef void (*th_hook)(th *h, sn_id id, sn_event ev, int info);

struct th {
    sn_sim *sim;
    sn_core *core;
    void *mem;
    sn_config cfg;
    sn_sim_config scfg;
    th_event ev[TH_MAX_EVENTS];
    unsigned nev;
    th_hook hook; /* optional: the "owner" reacting to events */
    void *user;
};

static inline void th_on_event(sn_core *core, sn_id id, sn_event ev, int info, void *user)
{
    th *h = user;
    (void)core;
    if (h->nev < TH_MAX_EVENTS)
        h->ev[h->nev++] = (th_event){id, ev, info, sn_sim_now(h->sim)};
    if (h->hook)
        h->hook(h, id, ev, info);
}

/* cfg/scfg may be NULL for defaults; fix(...) callbacks adjust them first. */
static inline void th_init(th *h, const sn_config *cfg, const sn_sim_config *scfg)
{
    memset(h, 0, sizeof(*h));
    if (cfg)
        h->cfg = *cfg;
    else
        sn_config_default(&h->cfg);
    if (scfg)
        h->scfg = *scfg;
    else
        sn_sim_config_default(&h->scfg);
    h->cfg.on_event = th_on_event;
    h->cfg.user = h;
    assert_int_equal(sn_sim_create(&h->sim, &h->scfg), 0);
    size_t need = sn_core_size(&h->cfg);
    assert_true(need > 0);
    h->mem = aligned_alloc(8, (need + 7u) & ~(size_t)7u);
    assert_non_null(h->mem);
    assert_int_equal(sn_core_init(&h->core, h->mem, need, &h->cfg, sn_sim_backend(h->sim)), 0);
}

static inline void th_check(th *h)
{
    char why[256];
    int rc = sn_check(h->core, why, sizeof why);
    if (rc != 0)
        fail_msg("invariant broken at t=%u: %s", (unsigned)sn_sim_now(h->sim), why);
    const char *m = sn_sim_misuse(h->sim);
    if (m)
        fail_msg("backend misuse: %s", m);
}

static inline uint32_t th_now(th *h) { return sn_sim_now(h->sim); }

/* One pass at the current virtual time. */
static inline void th_poll(th *h)
{
    sn_poll(h->core, sn_sim_now(h->sim));
    th_check(h);
}

/* Run ms milliseconds: a pass, then one millisecond of network, repeated. */
static inline void th_run(th *h, uint32_t ms)
{
    for (uint32_t i = 0; i < ms; i++) {
        th_poll(h);
        sn_sim_advance(h->sim, 1);
    }
    th_poll(h);
}

/* Run until pred(h) holds, at most ms; returns the ms it took, or fails. */
typedef int (*th_pred)(th *h, void *arg);
static inline uint32_t th_run_until(th *h, uint32_t ms, th_pred pred, void *arg)
{
    for (uint32_t i = 0; i <= ms; i++) {
        th_poll(h);
        if (pred(h, arg))
            return i;
        sn_sim_advance(h->sim, 1);
    }
    fail_msg("condition not reached within %u ms", (unsigned)ms);
    return ms;
}

static inline void th_free(th *h)
{
    sn_core_shutdown(h->core);
    const char *m = sn_sim_misuse(h->sim);
    if (m)
        fail_msg("backend misuse: %s", m);
    sn_sim_destroy(h->sim);
    free(h->mem);
    h->sim = NULL;
    h->mem = NULL;
}

static inline unsigned th_count(const th *h, sn_event ev)
{
    unsigned n = 0;
    for (unsigned i = 0; i < h->nev; i++)
        n += h->ev[i].ev == ev;
    return n;
}

/* The latest event of that kind, or NULL. */
static inline const th_event *th_last(const th *h, sn_event ev)
{
    for (unsigned i = h->nev; i-- > 0;)
        if (h->ev[i].ev == ev)
            return &h->ev[i];
    return NULL;
}

static inline int th_pred_event(th *h, void *arg)
{
    return th_count(h, *(sn_event *)arg) > 0;
}

/* A listener on port with the given limit (idle 0 = none). */
static inline sn_endpoint th_listen(th *h, uint16_t port, uint8_t max, uint32_t idle)
{
    sn_endpoint ep = {0, port};
    assert_int_equal(sn_listen(h->core, &ep, 0, max, idle), 0);
    return ep;
}

/* A client that connects and is given a slot; returns its peer, the slot id. */
static inline sn_sim_peer th_client(th *h, const sn_endpoint *ep, sn_sim_peer_mode mode, sn_id *id)
{
    sn_sim_peer p = 0;
    unsigned before = th_count(h, SN_EV_ACCEPTED);
    assert_int_equal(sn_sim_client_connect(h->sim, ep, &p), 0);
    assert_int_equal(sn_sim_peer_set_mode(h->sim, p, mode, 0), 0);
    for (int i = 0; i < 200 && th_count(h, SN_EV_ACCEPTED) == before; i++) {
        th_poll(h);
        if (th_count(h, SN_EV_ACCEPTED) == before)
            sn_sim_advance(h->sim, 1);
    }
    assert_true(th_count(h, SN_EV_ACCEPTED) > before);
    if (id)
        *id = th_last(h, SN_EV_ACCEPTED)->id;
    return p;
}

/* The state of the connection id names: free once its slot moved on. */
static inline sn_state th_state(th *h, sn_id id)
{
    if (sn_slot_id(h->core, sn_id_index(id)) != id)
        return SN_FREE;
    return sn_slot_state(h->core, sn_id_index(id));
}

/* The common start: defaults, a listener on port 80 (4 connections), one
 * client of the given mode in a slot. */
static inline sn_sim_peer th_start(th *h, sn_sim_peer_mode mode, sn_id *id)
{
    th_init(h, NULL, NULL);
    sn_endpoint ep = th_listen(h, 80, 4, 0);
    return th_client(h, &ep, mode, id);
}

/* The same with the listener's port and limit chosen, its endpoint returned. */
static inline sn_sim_peer th_start_at(th *h, sn_endpoint *ep, uint16_t port, uint8_t max,
                                      sn_sim_peer_mode mode, sn_id *id)
{
    th_init(h, NULL, NULL);
    *ep = th_listen(h, port, max, 0);
    return th_client(h, ep, mode, id);
}

static inline int th_pred_free(th *h, void *arg) { return th_state(h, *(sn_id *)arg) == SN_FREE; }

static inline sn_sim_link_info th_info(th *h, sn_sim_peer p)
{
    sn_sim_link_info li;
    assert_int_equal(sn_sim_peer_info(h->sim, p, &li), 0);
    return li;
}


/* Runs a group; with a case name as argument, only that case (ctest runs
 * each on its own), and a name that matches nothing is an error, not a pass. */
static inline int th_main(const char *group, const struct CMUnitTest *tests, size_t n, int argc,
                          char **argv)
{
    if (argc > 1) {
        size_t i = 0;
        while (i < n && strcmp(tests[i].name, argv[1]) != 0)
            i++;
        if (i == n) {
            fprintf(stderr, "no test named %s\n", argv[1]);
            return 2;
        }
        cmocka_set_test_filter(argv[1]);
    }
    return _cmocka_run_group_tests(group, tests, n, NULL, NULL);
}

#endif
