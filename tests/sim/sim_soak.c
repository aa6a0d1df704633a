/*
 * The simulator soak: the real core on the simulator backend, one random
 * configuration and workload per seed (VOPR-style).
 *
 * Per seed:
 *   safety phase   faults on: clients arrive, send requests, read or not,
 *                  close with FIN or RST; a small server app driven by the
 *                  core's events answers with responses of random sizes,
 *                  sometimes closes or terminates at odd moments, sometimes
 *                  ignores a slot; outgoing connects reach servers that
 *                  accept, refuse or never answer.
 *   liveness phase faults off, no new arrivals, every peer reads and
 *                  finishes, the app winds its connections down: everything
 *                  must converge (all slots free, backlog and release queue
 *                  empty, every sim handle released) within a bound derived
 *                  from the configuration.
 *
 * Checked after every step (exit code per class):
 *   2 invariant  sn_check(); bitmaps; listener limits at accept; stale ids
 *                refused; sn_write never claims more than the stack took;
 *                sn_close of a live slot makes no backend call; close() or
 *                abort() exactly once and release() once per connection
 *   3 leak       sim handles in use == handles the core holds (slots,
 *                backlog, release queue); none left after shutdown
 *   4 stuck      a close-pending slot older than close_timeout_ms
 *   5 lost bytes a connection that was not reset delivered fewer (or other)
 *                bytes than sn_write accepted; a GRACEFUL free before every
 *                byte was acknowledged
 *   6 liveness   no convergence within the bound
 *   7 misuse     an op on a released handle, or after close()/abort()
 *
 * Usage: sim_soak [--seeds N] [--first N] [--seed N] [-v] [--trace] [--step-all]
 *   --seed N     replay exactly one seed (implies -v)
 *   -v           a line per seed, with its trace hash
 *   --trace      every sim event and core event on stderr
 *   --step-all   the sim visits every connection every millisecond; the
 *                trace hashes must equal those of a normal run
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/core.h" /* backlog and release-queue sizes for the leak check */
#include "slotnet.h"
#include "slotnet/sim.h"

enum {
    X_OK = 0,
    X_USAGE = 1,
    X_INVARIANT = 2,
    X_LEAK = 3,
    X_STUCK = 4,
    X_LOST = 5,
    X_LIVENESS = 6,
    X_MISUSE = 7,
};

static const char *class_name(int code)
{
    switch (code) {
    case X_INVARIANT: return "invariant";
    case X_LEAK: return "leak";
    case X_STUCK: return "stuck";
    case X_LOST: return "lost-bytes";
    case X_LIVENESS: return "liveness";
    case X_MISUSE: return "misuse";
    default: return "?";
    }
}

#define MAX_CLIENTS 160
#define MAX_LISTEN 3
#define NSERVERS 6
#define BUFSZ 4096

static uint8_t pattern[65536];

/* A peer driven by the workload: a client of a listener, or the far side of
 * one of the core's outgoing connects. */
enum { P_NONE, P_FIN_AFTER_REQ, P_FIN_AFTER_RESP, P_RST_AT };

typedef struct client {
    bool used;
    bool remote;
    sn_sim_peer peer;
    uint32_t to_send;
    uint64_t send_at;
    uint8_t plan;
    uint64_t rst_at;
    uint32_t read_pm; /* MANUAL mode: chance of reading per step, per mille */
    bool finned;
    bool wait_data;   /* remote: answer only after the core said something */
} client;

/* The app's view of one slot. */
enum { B_NORMAL, B_IGNORE, B_ODD };

typedef struct conn {
    sn_id id;
    bool outgoing;
    sn_sim_peer peer;
    uint8_t behaviour;
    bool connected;
    uint32_t req_seen;
    bool peer_gone;
    bool responding;
    bool responded; /* a response was started (at most one per connection) */
    uint32_t resp_total, resp_sent;
    bool close_after, push;
    uint64_t close_when; /* normal: close this long after the response, if set */
    bool close_due;
    uint64_t written;
    bool closing;
    uint64_t close_t;
    bool close_t_guess;
    uint64_t odd_at;
    bool aborted;
    uint64_t ack_at;
} conn;

typedef struct listener {
    uint16_t port;
    uint8_t max;
    uint32_t idle;
    bool active;
} listener;

typedef struct run {
    uint64_t seed;
    uint64_t rng;
    bool verbose, trace, step_all;
    sn_sim *sim;
    sn_backend be;
    sn_core *core;
    void *mem;
    sn_config cfg;
    sn_sim_config scfg;
    listener ls[MAX_LISTEN];
    unsigned nls;
    sn_endpoint srv[NSERVERS];
    conn conns[SN_MAX_SLOTS];
    client clients[MAX_CLIENTS];
    sn_id stale[8];
    unsigned nstale;
    bool liveness;
    uint32_t arrivals_pm;  /* client arrivals per second */
    uint32_t connect_pm;   /* outgoing connects per step, per mille */
    uint32_t max_dt;
    uint32_t dt_last;
    uint64_t steps;
    int fail;
    char msg[2400];
    uint64_t fail_t;
} run;

/* ---- Helpers ----------------------------------------------------------- */

static uint32_t rnd(run *r, uint32_t n) { return sn_sim_rand_below(&r->rng, n); }
static uint32_t rrange(run *r, uint32_t lo, uint32_t hi) { return lo + rnd(r, hi - lo + 1); }
static bool chance_pm(run *r, uint32_t pm) { return rnd(r, 1000) < pm; }
static uint64_t elapsed(const run *r) { return sn_sim_elapsed_ms(r->sim); }

static void failf(run *r, int code, const char *fmt, ...)
{
    if (r->fail)
        return;
    r->fail = code;
    r->fail_t = elapsed(r);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->msg, sizeof r->msg, fmt, ap);
    va_end(ap);
}

static bool counted_state(sn_state st)
{
    return st == SN_CONNECTED || st == SN_OTHER_END_CLOSED || st == SN_CLOSE_PENDING;
}

static bool holds_handle(sn_state st) { return st == SN_CONNECTING || counted_state(st); }

static void remember_stale(run *r, sn_id id)
{
    r->stale[r->nstale % 8] = id;
    r->nstale++;
}

static conn *conn_of(run *r, sn_id id)
{
    unsigned i = sn_id_index(id);
    if (i >= r->cfg.slots)
        return NULL;
    conn *c = &r->conns[i];
    return c->id == id ? c : NULL;
}

static void check_freed(run *r, conn *c, int why);

/* The app's own sn_close/sn_terminate may free the slot at once; API calls
 * raise no events, so the app forgets the connection itself. */
static void forget_if_freed(run *r, conn *c, sn_id id)
{
    if (c->id == id && sn_slot_id(r->core, sn_id_index(id)) != id) {
        check_freed(r, c, -1);
        remember_stale(r, id);
        memset(c, 0, sizeof *c);
    }
}

/* Note the moment a slot turned close-pending. */
static void note_close(run *r, conn *c)
{
    if (c->closing)
        return;
    if (sn_slot_state(r->core, sn_id_index(c->id)) == SN_CLOSE_PENDING) {
        c->closing = true;
        c->close_t = elapsed(r);
        c->close_t_guess = false;
    }
}

/* sn_close: constant time, and on a live slot not a single backend call. */
static int app_close(run *r, conn *c)
{
    unsigned i = sn_id_index(c->id);
    sn_state before = sn_slot_state(r->core, i);
    sn_sim_stats a, b;
    sn_sim_stats_get(r->sim, &a);
    int rc = sn_close(r->core, c->id);
    sn_sim_stats_get(r->sim, &b);
    sn_state after = sn_slot_state(r->core, i);
    if (rc != SN_OK && rc != SN_ESTALE)
        failf(r, X_INVARIANT, "sn_close(%#x) in %s returned %d", c->id, sn_state_name(before), rc);
    if ((before == SN_CONNECTED || before == SN_OTHER_END_CLOSED) && after == SN_CLOSE_PENDING) {
        for (int op = SN_SIM_OP_LISTEN; op < SN_SIM_OP_COUNT_; op++)
            if (a.ops[op] != b.ops[op])
                failf(r, X_INVARIANT, "sn_close(%#x) called the backend's %s", c->id,
                      sn_sim_op_name((sn_sim_op)op));
    }
    note_close(r, c);
    forget_if_freed(r, c, c->id);
    return rc;
}

static void app_terminate(run *r, conn *c)
{
    sn_id id = c->id;
    int rc = sn_terminate(r->core, id);
    if (rc != SN_OK && rc != SN_ESTALE)
        failf(r, X_INVARIANT, "sn_terminate(%#x) returned %d", id, rc);
    if (rc == SN_OK) {
        /* the handle must be dead at once */
        int w = sn_write(r->core, id, "x", 1, 0);
        if (w != SN_ESTALE)
            failf(r, X_INVARIANT, "sn_write after sn_terminate gave %d, not SN_ESTALE", w);
        forget_if_freed(r, c, id);
    }
}

/* ---- The server app ---------------------------------------------------- */

static void app_write(run *r, conn *c)
{
    while (c->responding && c->resp_sent < c->resp_total && !r->fail) {
        uint32_t left = c->resp_total - c->resp_sent;
        uint32_t chunk = rrange(r, 1, 4096);
        if (chunk > left)
            chunk = left;
        bool last = chunk == left;
        unsigned flags = (c->push || chance_pm(r, 200)) ? SN_WRITE_PUSH : 0;
        if (last && c->close_after)
            flags |= SN_WRITE_CLOSE_AFTER;
        int n = sn_write(r->core, c->id, pattern + (c->resp_sent % 32768u), chunk, flags);
        if (n < 0) {
            c->responding = false; /* reset or aborted: the events tell the rest */
            return;
        }
        if ((uint32_t)n > chunk) {
            failf(r, X_INVARIANT, "sn_write took %d of %u bytes", n, chunk);
            return;
        }
        c->written += (uint32_t)n;
        c->resp_sent += (uint32_t)n;
        if ((uint32_t)n < chunk)
            return; /* wait for SN_EV_WRITABLE */
    }
    if (c->responding && c->resp_sent == c->resp_total) {
        c->responding = false;
        if (c->close_after && c->resp_total > 0) {
            note_close(r, c);
            if (!c->closing)
                failf(r, X_INVARIANT, "write with CLOSE_AFTER taken whole, slot %u is %s",
                      sn_id_index(c->id), sn_state_name(sn_slot_state(r->core, sn_id_index(c->id))));
        } else if (c->close_when == 0) {
            app_close(r, c);
        } else {
            c->close_due = true;
            c->close_when += elapsed(r);
        }
    }
}

static void start_response(run *r, conn *c)
{
    if (c->responded || c->closing || c->behaviour == B_IGNORE)
        return;
    c->responded = true;
    c->responding = true;
    app_write(r, c);
}

static void app_read(run *r, conn *c)
{
    char buf[2048];
    for (int k = 0; k < 64; k++) {
        int n = sn_read(r->core, c->id, buf, rnd(r, 4) == 0 ? 7 : sizeof buf);
        if (n > 0) {
            c->req_seen += (uint32_t)n;
            continue;
        }
        if (n == SN_ECLOSED || n == SN_ECONNRESET)
            c->peer_gone = true;
        break;
    }
}

/* Kick the connection along after an event or a main-loop visit. */
static void app_serve(run *r, conn *c)
{
    if (c->aborted || c->closing || c->behaviour == B_IGNORE)
        return;
    sn_state st = sn_slot_state(r->core, sn_id_index(c->id));
    if (st != SN_CONNECTED && st != SN_OTHER_END_CLOSED)
        return;
    app_read(r, c);
    if (c->outgoing) {
        if (c->peer_gone)
            app_close(r, c);
        return;
    }
    if (c->responding)
        app_write(r, c);
    else if (c->req_seen > 0 || c->peer_gone)
        start_response(r, c);
}

static void setup_conn(run *r, conn *c, sn_id id, bool outgoing)
{
    memset(c, 0, sizeof *c);
    c->id = id;
    c->outgoing = outgoing;
    uint32_t b = rnd(r, 100);
    c->behaviour = r->liveness ? B_NORMAL : b < 75 ? B_NORMAL : b < 85 ? B_IGNORE : B_ODD;
    uint32_t sz = rnd(r, 10);
    c->resp_total = sz < 2 ? 0 : sz < 7 ? rrange(r, 1, 2000) : rrange(r, 2000, 30000);
    c->close_after = chance_pm(r, 500);
    c->push = chance_pm(r, 600);
    c->close_when = chance_pm(r, 300) ? rrange(r, 1, 500) : 0;
    c->odd_at = elapsed(r) + rrange(r, 0, 3000);
}

static void find_peer(run *r, conn *c)
{
    sn_slot_status st;
    if (sn_slot_status_get(r->core, sn_id_index(c->id), &st) != SN_OK || st.id != c->id) {
        failf(r, X_INVARIANT, "status of a new slot %#x unavailable", c->id);
        return;
    }
    c->peer = sn_sim_peer_of(r->sim, &st.local, &st.remote);
}

static void check_freed(run *r, conn *c, int why)
{
    if (c->peer == SN_SIM_PEER_NONE)
        return;
    sn_sim_link_info li;
    if (sn_sim_peer_info(r->sim, c->peer, &li) != 0)
        return;
    if (li.core_sent != c->written)
        failf(r, X_LOST, "slot %u: sn_write accepted %llu bytes, the stack got %llu",
              sn_id_index(c->id), (unsigned long long)c->written,
              (unsigned long long)li.core_sent);
    if (why == SN_FREED_GRACEFUL &&
        (li.core_acked != li.core_sent || li.peer_received != li.core_sent))
        failf(r, X_LOST,
              "slot %u freed GRACEFUL with %llu of %llu bytes acknowledged, %llu delivered",
              sn_id_index(c->id), (unsigned long long)li.core_acked,
              (unsigned long long)li.core_sent, (unsigned long long)li.peer_received);
}

static void on_event(sn_core *core, sn_id id, sn_event ev, int info, void *user)
{
    run *r = user;
    (void)core;
    if (r->fail)
        return;
    unsigned idx = sn_id_index(id);
    if (idx >= r->cfg.slots) {
        failf(r, X_INVARIANT, "event %d for slot index %u out of range", (int)ev, idx);
        return;
    }
    conn *c = &r->conns[idx];
    if (r->trace)
        fprintf(stderr, "soak %10u event %d slot %u id %#x info %d\n", sn_sim_now(r->sim),
                (int)ev, idx, id, info);
    if (ev == SN_EV_ACCEPTED) {
        setup_conn(r, c, id, false);
        find_peer(r, c);
        /* the listener's limit holds for the newcomer too */
        const sn_slot *s = &r->core->slots[idx];
        if (s->listener != SN_NO_LISTENER) {
            unsigned n = 0;
            for (unsigned i = 0; i < r->cfg.slots; i++)
                if (r->core->slots[i].listener == s->listener &&
                    counted_state(sn_slot_state(r->core, i)))
                    n++;
            if (n > r->core->listeners[s->listener].max_conns)
                failf(r, X_INVARIANT, "accepted slot %u puts port %u at %u of max %u", idx,
                      r->core->listeners[s->listener].local.port, n,
                      r->core->listeners[s->listener].max_conns);
        }
        app_serve(r, c);
        return;
    }
    if (c->id != id) {
        failf(r, X_INVARIANT, "event %d for id %#x, but slot %u holds %#x", (int)ev, id, idx, c->id);
        return;
    }
    switch (ev) {
    case SN_EV_CONNECTED:
        c->connected = true;
        find_peer(r, c);
        {
            uint32_t n = rrange(r, 1, 1500);
            int w = sn_write(r->core, id, pattern, n, SN_WRITE_PUSH);
            if (w > 0)
                c->written += (uint32_t)w;
        }
        app_serve(r, c);
        break;
    case SN_EV_CONNECT_RETRY:
        break;
    case SN_EV_CONNECT_FAILED:
    case SN_EV_ABORTED:
        c->aborted = true;
        if (sn_slot_state(r->core, idx) != SN_ABORTED)
            failf(r, X_INVARIANT, "event %d but slot %u is %s", (int)ev, idx,
                  sn_state_name(sn_slot_state(r->core, idx)));
        if (chance_pm(r, 500)) {
            if (chance_pm(r, 500))
                app_terminate(r, c);
            else
                app_close(r, c);
        } else {
            c->ack_at = elapsed(r) + rrange(r, 1, 2000);
        }
        break;
    case SN_EV_READABLE:
    case SN_EV_WRITABLE:
    case SN_EV_PEER_CLOSED:
        if (ev == SN_EV_PEER_CLOSED)
            c->peer_gone = true;
        if (c->behaviour == B_IGNORE)
            break;
        if (ev == SN_EV_WRITABLE && c->responding)
            app_write(r, c);
        else
            app_serve(r, c);
        if (ev == SN_EV_PEER_CLOSED && conn_of(r, id) == c && !c->closing &&
            c->behaviour == B_NORMAL && (info == SN_ECONNRESET || !c->responding)) {
            c->responding = false; /* a reset peer takes no more */
            app_close(r, c);
        }
        break;
    case SN_EV_FREED:
        check_freed(r, c, info);
        remember_stale(r, id);
        memset(c, 0, sizeof *c);
        break;
    default:
        failf(r, X_INVARIANT, "unknown event %d", (int)ev);
    }
}

/* Main-loop visits: odd moves, late acknowledgements, delayed closes. */
static void app_step(run *r)
{
    for (unsigned i = 0; i < r->cfg.slots && !r->fail; i++) {
        conn *c = &r->conns[i];
        if (c->id == SN_ID_NONE)
            continue;
        if (sn_slot_id(r->core, i) != c->id) {
            failf(r, X_INVARIANT, "slot %u holds %#x but the app saw no FREED for %#x", i,
                  sn_slot_id(r->core, i), c->id);
            return;
        }
        sn_state st = sn_slot_state(r->core, i);
        if (c->aborted) {
            if (r->liveness || elapsed(r) >= c->ack_at) {
                if (chance_pm(r, 500))
                    app_terminate(r, c);
                else
                    app_close(r, c);
            }
            continue;
        }
        if (st == SN_ALLOCATED || st == SN_CONNECTING) {
            if (r->liveness && c->behaviour != B_NORMAL)
                app_close(r, c); /* cancel */
            continue;
        }
        if (st == SN_CLOSE_PENDING)
            continue;
        if (c->behaviour == B_ODD && elapsed(r) >= c->odd_at) {
            c->behaviour = B_NORMAL;
            switch (rnd(r, 6)) {
            case 0:
                app_close(r, c);
                break;
            case 1:
                app_terminate(r, c);
                break;
            case 2: {
                sn_id id = c->id;
                app_close(r, c);
                if (c->id == id)
                    app_close(r, c); /* twice: still fine */
                break;
            }
            case 3: {
                char b[3];
                (void)sn_read(r->core, c->id, b, sizeof b);
                break;
            }
            case 4:
                c->close_after = true;
                start_response(r, c);
                break;
            default:
                break;
            }
            continue;
        }
        if (r->liveness && c->behaviour != B_NORMAL) {
            app_close(r, c);
            continue;
        }
        if (c->close_due && elapsed(r) >= c->close_when) {
            c->close_due = false;
            app_close(r, c);
            continue;
        }
        /* winding down: whatever is not mid-response closes; a response
         * that stalls waits on SN_EV_WRITABLE, so a lost event shows */
        if (r->liveness && !c->responding && !c->close_due)
            app_close(r, c);
    }
    /* stale ids stay refused */
    if (r->nstale > 0 && chance_pm(r, 50)) {
        sn_id old = r->stale[rnd(r, r->nstale < 8 ? r->nstale : 8)];
        unsigned i = sn_id_index(old);
        if (sn_slot_id(r->core, i) != old) {
            char b[4];
            int rc = sn_read(r->core, old, b, sizeof b);
            if (rc != SN_ESTALE)
                failf(r, X_INVARIANT, "sn_read on stale id %#x gave %d", old, rc);
            rc = sn_close(r->core, old);
            if (rc != SN_ESTALE)
                failf(r, X_INVARIANT, "sn_close on stale id %#x gave %d", old, rc);
        }
    }
    /* outgoing connects */
    if (!r->liveness && chance_pm(r, r->connect_pm)) {
        unsigned free_n = 0;
        for (unsigned i = 0; i < r->cfg.slots; i++)
            free_n += sn_slot_state(r->core, i) == SN_FREE;
        if (free_n >= 2) {
            sn_id id;
            sn_endpoint ep = r->srv[rnd(r, NSERVERS)];
            int rc = sn_connect(r->core, &ep, 9, chance_pm(r, 500) ? rrange(r, 200, 5000) : 0, &id);
            if (rc == SN_OK)
                setup_conn(r, &r->conns[sn_id_index(id)], id, true);
            else if (rc != SN_EBUSY && rc != SN_EBLOCKED)
                failf(r, X_INVARIANT, "sn_connect gave %d", rc);
        }
    }
    /* listener changes */
    if (!r->liveness && chance_pm(r, 3) && r->nls > 0) {
        listener *l = &r->ls[rnd(r, r->nls)];
        sn_endpoint ep = {0, l->port};
        if (l->active && chance_pm(r, 300)) {
            if (sn_listen(r->core, &ep, 0, 0, 0) != SN_OK)
                failf(r, X_INVARIANT, "stopping port %u failed", l->port);
            l->active = false;
        } else {
            l->max = (uint8_t)rrange(r, 1, r->cfg.slots);
            l->idle = chance_pm(r, 500) ? rrange(r, 300, 8000) : 0;
            int rc = sn_listen(r->core, &ep, 0, l->max, l->idle);
            if (rc != SN_OK)
                failf(r, X_INVARIANT, "sn_listen port %u gave %d", l->port, rc);
            l->active = true;
        }
    }
}

/* ---- The workload's peers ---------------------------------------------- */

static client *client_new(run *r)
{
    for (unsigned i = 0; i < MAX_CLIENTS; i++)
        if (!r->clients[i].used) {
            memset(&r->clients[i], 0, sizeof r->clients[i]);
            r->clients[i].used = true;
            return &r->clients[i];
        }
    return NULL;
}

static void client_plan(run *r, client *cl)
{
    cl->to_send = rnd(r, 4) == 0 ? 0 : rrange(r, 1, 3000);
    cl->send_at = elapsed(r) + rnd(r, 50);
    uint32_t p = rnd(r, 100);
    cl->plan = p < 20 ? P_NONE : p < 45 ? P_FIN_AFTER_REQ : p < 85 ? P_FIN_AFTER_RESP : P_RST_AT;
    cl->rst_at = elapsed(r) + rrange(r, 0, 3000);
    cl->read_pm = rrange(r, 0, 1000);
}

static sn_sim_peer_mode random_mode(run *r)
{
    uint32_t m = rnd(r, 100);
    return m < 30 ? SN_SIM_PEER_MANUAL : m < 75 ? SN_SIM_PEER_AUTO_READ
           : m < 85 ? SN_SIM_PEER_NO_ACK : SN_SIM_PEER_BROWSER;
}

static void arrive(run *r)
{
    client *cl = client_new(r);
    if (cl == NULL)
        return;
    sn_endpoint dst = {0, r->nls ? r->ls[rnd(r, r->nls)].port : 80};
    if (chance_pm(r, 20))
        dst.port = 9; /* nobody listens there */
    if (sn_sim_client_connect(r->sim, &dst, &cl->peer) != 0) {
        cl->used = false;
        return;
    }
    client_plan(r, cl);
    sn_sim_peer_mode m = random_mode(r);
    sn_sim_peer_set_mode(r->sim, cl->peer, m, m == SN_SIM_PEER_BROWSER ? rnd(r, 3000) : 0);
}

static void take_remote_peers(run *r)
{
    sn_sim_peer p;
    while (sn_sim_server_accept(r->sim, &r->srv[0], &p) == 0) {
        client *cl = client_new(r);
        if (cl == NULL) {
            sn_sim_peer_release(r->sim, p);
            continue;
        }
        cl->peer = p;
        cl->remote = true;
        client_plan(r, cl);
        cl->wait_data = chance_pm(r, 700);
        if (cl->plan == P_FIN_AFTER_REQ && chance_pm(r, 500))
            cl->plan = P_FIN_AFTER_RESP;
    }
}

/* Has this peer's conversation ended, and did it go right? */
static bool client_retire(run *r, client *cl)
{
    sn_sim_link_info li;
    if (sn_sim_peer_info(r->sim, cl->peer, &li) != 0) {
        failf(r, X_INVARIANT, "a peer went stale under the workload");
        return true;
    }
    if (!li.handed) {
        if (!li.refused && !li.reset)
            return false; /* still in the accept queue, or on its way */
    } else {
        if (!li.released)
            return false;
        if (!li.reset && !li.peer_saw_fin)
            return false; /* still draining after release */
        if (li.close_calls + li.abort_calls != 1 || li.release_calls != 1)
            failf(r, X_INVARIANT, "connection %u.%u.%u.%u:%u: close() %u, abort() %u, release() %u times",
                  li.core_remote.addr >> 24, (li.core_remote.addr >> 16) & 255,
                  (li.core_remote.addr >> 8) & 255, li.core_remote.addr & 255,
                  li.core_remote.port, li.close_calls, li.abort_calls, li.release_calls);
        if (!li.reset && (li.peer_received != li.core_sent || li.peer_rx_hash != li.core_tx_hash))
            failf(r, X_LOST, "connection to port %u: %llu bytes sent, %llu delivered, not reset",
                  li.core_remote.port, (unsigned long long)li.core_sent,
                  (unsigned long long)li.peer_received);
    }
    sn_sim_peer_release(r->sim, cl->peer);
    cl->used = false;
    return true;
}

static void client_step(run *r, client *cl)
{
    if (client_retire(r, cl))
        return;
    sn_sim_link_info li;
    sn_sim_peer_info(r->sim, cl->peer, &li);
    if (li.reset || li.refused)
        return;
    if (li.mode == SN_SIM_PEER_MANUAL && (r->liveness || chance_pm(r, cl->read_pm))) {
        char buf[BUFSZ];
        while (sn_sim_peer_read(r->sim, cl->peer, buf, sizeof buf) > 0) {
        }
    }
    if (!r->liveness && cl->plan == P_RST_AT && elapsed(r) >= cl->rst_at) {
        sn_sim_peer_reset(r->sim, cl->peer);
        return;
    }
    bool may_send = !cl->remote || !cl->wait_data || li.peer_received > 0;
    if (cl->to_send > 0 && may_send && elapsed(r) >= cl->send_at && !cl->finned) {
        uint32_t n = rrange(r, 1, cl->to_send);
        int k = sn_sim_peer_send(r->sim, cl->peer, pattern, n);
        if (k > 0)
            cl->to_send -= (uint32_t)k;
        cl->send_at = elapsed(r) + rnd(r, 30);
    }
    if (cl->finned || cl->to_send > 0)
        return;
    bool fin = false;
    if (cl->plan == P_FIN_AFTER_REQ)
        fin = !cl->remote || may_send;
    else if (cl->plan == P_FIN_AFTER_RESP)
        fin = li.peer_saw_fin;
    if (r->liveness)
        fin = true;
    if (fin) {
        sn_sim_peer_close(r->sim, cl->peer);
        cl->finned = true;
    }
}

/* ---- Checks ------------------------------------------------------------ */

static void check_step(run *r)
{
    char why[200];
    if (sn_check(r->core, why, sizeof why) != 0) {
        failf(r, X_INVARIANT, "sn_check: %s", why);
        return;
    }
    const char *m = sn_sim_misuse(r->sim);
    if (m) {
        failf(r, X_MISUSE, "%s", m);
        return;
    }
    unsigned held = r->core->bl_count + r->core->rq_count;
    uint32_t want_c = 0, want_x = 0;
    for (unsigned i = 0; i < r->cfg.slots; i++) {
        sn_state st = sn_slot_state(r->core, i);
        held += holds_handle(st);
        if (st == SN_CONNECTED)
            want_c |= 1u << i;
        if (st == SN_OTHER_END_CLOSED || st == SN_ABORTED)
            want_x |= 1u << i;
        conn *c = &r->conns[i];
        if (st == SN_CLOSE_PENDING) {
            if (!c->closing) {
                /* got there without our wrappers seeing it: the earliest it
                 * can have happened is the previous step */
                c->closing = true;
                c->close_t = elapsed(r) - r->dt_last;
                c->close_t_guess = true;
            }
            uint64_t age = elapsed(r) - c->close_t;
            uint64_t limit = r->cfg.close_timeout_ms + (c->close_t_guess ? r->dt_last : 0);
            if (age > limit) {
                failf(r, X_STUCK, "slot %u close-pending for %llu ms, timeout %u ms", i,
                      (unsigned long long)age, r->cfg.close_timeout_ms);
                return;
            }
        }
    }
    uint32_t bc, bx;
    sn_bitmaps(r->core, &bc, &bx);
    if (bc != want_c || bx != want_x)
        failf(r, X_INVARIANT, "bitmaps %#x/%#x, states say %#x/%#x", bc, bx, want_c, want_x);
    sn_sim_stats ss;
    sn_sim_stats_get(r->sim, &ss);
    if (ss.handles_in_use != held)
        failf(r, X_LEAK, "the sim has %u handles out, the core holds %u (slots + backlog %u + "
                         "release queue %u)",
              ss.handles_in_use, held, r->core->bl_count, r->core->rq_count);
}

static bool converged(run *r)
{
    for (unsigned i = 0; i < r->cfg.slots; i++)
        if (sn_slot_state(r->core, i) != SN_FREE)
            return false;
    sn_sim_stats ss;
    sn_sim_stats_get(r->sim, &ss);
    return r->core->bl_count == 0 && r->core->rq_count == 0 && ss.handles_in_use == 0;
}

/* ---- One seed ---------------------------------------------------------- */

static void random_config(run *r)
{
    sn_config *c = &r->cfg;
    sn_config_default(c);
    c->slots = (uint8_t)rrange(r, 1, 16);
    c->backlog_max = (uint16_t)rrange(r, 0, 16);
    c->backlog_timeout_ms = rrange(r, 50, 5000);
    c->close_timeout_ms = rrange(r, 50, 4000);
    c->drain_poll_ms = rrange(r, 1, 50);
    c->max_accepts_per_poll = (uint16_t)rrange(r, 1, 16);
    c->accept_pause_ms = rrange(r, 1, 500);
    c->connect_retries = (uint8_t)rrange(r, 0, 4);
    c->connect_base_ms = rrange(r, 50, 1000);
    c->connect_timeout_ms = rrange(r, 50, 2000);
    c->peer_block_ms = rnd(r, 3) ? rrange(r, 0, 5000) : 0;
    c->peer_block_entries = (uint8_t)rrange(r, 0, 8);
    c->release_delay_ms = rnd(r, 3) ? rrange(r, 0, 1500) : 0;
    c->release_spacing_ms = rnd(r, 3) ? rrange(r, 0, 300) : 0;
    c->release_max_per_poll = (uint16_t)rrange(r, 1, 8);
    c->release_queue = (uint16_t)rrange(r, 1, 32);
    c->on_event = on_event;
    c->user = r;

    sn_sim_config *s = &r->scfg;
    sn_sim_config_default(s);
    s->seed = r->seed;
    if (rnd(r, 4) == 0)
        s->start_ms = sn_sim_rand(&r->rng) & 0xffffffffu;
    s->max_links = 256;
    s->accept_queue = rrange(r, 1, 16);
    s->sndbuf = rrange(r, 500, 8000);
    s->rcvbuf = rrange(r, 500, 8000);
    s->peer_sndbuf = rrange(r, 500, 8192);
    s->peer_rcvbuf = rrange(r, 500, 8192);
    s->mss = rrange(r, 100, 1460);
    s->latency_ms = rrange(r, 1, 60);
    s->rate = rrange(r, 50, 3000);
    s->ack_delay_ms = rrange(r, 0, 200);
    s->browser_rst_ms = rrange(r, 0, 30);
    s->rst_discards_rx = rnd(r, 4) == 0;
    s->misuse_fatal = false;
    s->trace = r->trace;
    s->step_all = r->step_all;
    sn_sim_faults *f = &s->faults;
    f->reset_peer_ppm = rnd(r, 3) ? rrange(r, 0, 300) : 0;
    f->stack_abort_ppm = rnd(r, 3) ? rrange(r, 0, 200) : 0;
    f->internal_error_ppm = rnd(r, 3) ? rrange(r, 0, 100) : 0;
    f->send_partial_ppm = rnd(r, 2) ? rrange(r, 0, 300000) : 0;
    f->send_enomem_ppm = rnd(r, 2) ? rrange(r, 0, 100000) : 0;
    f->accept_fail_ppm = rnd(r, 2) ? rrange(r, 0, 100000) : 0;
    f->accept_emfile_ppm = rnd(r, 2) ? rrange(r, 0, 100000) : 0;
    f->connect_refuse_ppm = rnd(r, 2) ? rrange(r, 0, 300000) : 0;
    f->connect_hang_ppm = rnd(r, 2) ? rrange(r, 0, 200000) : 0;

    r->arrivals_pm = rrange(r, 2000, 80000); /* 2..80 per second */
    r->connect_pm = rnd(r, 3) ? rrange(r, 0, 30) : 0;
    r->max_dt = rrange(r, 1, 30);
}

/* An upper bound on how long winding down may take. */
static uint64_t liveness_bound(const run *r)
{
    const sn_config *c = &r->cfg;
    uint64_t connect = 0;
    for (unsigned n = 0; n <= c->connect_retries; n++)
        connect += c->connect_timeout_ms + 4u * r->scfg.latency_ms +
                   ((uint64_t)c->connect_base_ms << (n < 3 ? n : 3));
    uint64_t handles = (uint64_t)c->slots * (c->connect_retries + 2u) + c->backlog_max +
                       c->release_queue + r->scfg.accept_queue * MAX_LISTEN;
    uint64_t release = c->release_delay_ms + (uint64_t)c->release_spacing_ms * handles;
    /* the biggest response through the smallest window and the slowest link:
     * one window per round trip (with the peer's delayed ACK) */
    const sn_sim_config *s = &r->scfg;
    uint32_t win = s->sndbuf < s->peer_rcvbuf ? s->sndbuf : s->peer_rcvbuf;
    uint64_t rtt = 2u * s->latency_ms + s->ack_delay_ms + 2u + s->mss / s->rate;
    uint64_t transfer = (30000u / win + 2u) * rtt + 30000u / s->rate + s->coalesce_ms +
                        (3000u / s->rcvbuf + 2u) * rtt;
    return connect + c->close_timeout_ms + c->backlog_timeout_ms + c->accept_pause_ms + release +
           transfer + 2000u + 100u * r->max_dt;
}

static uint32_t next_dt(run *r)
{
    uint32_t cap = r->liveness ? 20 : r->max_dt;
    uint32_t t = sn_next_timeout(r->core, sn_sim_now(r->sim), cap);
    uint32_t dt = 1 + rnd(r, cap);
    if (t < dt)
        dt = t;
    return dt ? dt : 1;
}

static void one_step(run *r)
{
    sn_poll(r->core, sn_sim_now(r->sim));
    check_step(r);
    if (r->fail)
        return;
    app_step(r);
    if (!r->liveness) {
        uint64_t want = (uint64_t)r->arrivals_pm * r->dt_last;
        uint32_t n = (uint32_t)(want / 1000000u);
        if (rnd(r, 1000000u) < want % 1000000u)
            n++;
        for (uint32_t i = 0; i < n; i++)
            arrive(r);
    }
    take_remote_peers(r);
    for (unsigned i = 0; i < MAX_CLIENTS && !r->fail; i++)
        if (r->clients[i].used)
            client_step(r, &r->clients[i]);
    check_step(r);
    if (r->fail)
        return;
    r->dt_last = next_dt(r);
    r->be.ops->wait(r->be.ctx, r->dt_last);
    r->steps++;
}

static void begin_liveness(run *r)
{
    r->liveness = true;
    sn_sim_faults none;
    memset(&none, 0, sizeof none);
    sn_sim_set_faults(r->sim, &none);
    for (unsigned i = 0; i < MAX_CLIENTS; i++) {
        client *cl = &r->clients[i];
        if (cl->used) {
            sn_sim_link_info li;
            if (sn_sim_peer_info(r->sim, cl->peer, &li) == 0 && li.mode != SN_SIM_PEER_BROWSER)
                sn_sim_peer_set_mode(r->sim, cl->peer, SN_SIM_PEER_AUTO_READ, 0);
            cl->send_at = elapsed(r);
            cl->wait_data = false;
        }
    }
    /* the remote servers stop misbehaving too, except the one that never answers */
    sn_sim_server_config sc = {SN_SIM_SERVER_ACCEPT, SN_SIM_PEER_AUTO_READ, 0, false};
    sn_sim_server_add(r->sim, &r->srv[0], &sc);
}

typedef struct totals {
    uint64_t steps;
    uint64_t links;
    uint64_t accepted;
    uint64_t virtual_ms;
} totals;

static unsigned active_clients(const run *r)
{
    unsigned n = 0;
    for (unsigned i = 0; i < MAX_CLIENTS; i++)
        n += r->clients[i].used;
    return n;
}

/* Say what did not wind down: the core's slots and queues, or a peer. */
static void liveness_failure(run *r, uint64_t t0, uint64_t bound)
{
    if (converged(r)) {
        for (unsigned i = 0; i < MAX_CLIENTS && !r->fail; i++) {
            client *cl = &r->clients[i];
            if (!cl->used)
                continue;
            sn_sim_link_info li;
            sn_sim_peer_info(r->sim, cl->peer, &li);
            int code = !li.handed ? X_LIVENESS : !li.released ? X_LEAK : X_LOST;
            failf(r, code,
                  "a connection (remote port %u, %s) never finished: %llu sent, %llu delivered, "
                  "FIN %s, reset %s; handed %d established %d closed %d aborted %d released %d "
                  "mode %d",
                  li.core_remote.port, li.incoming ? "incoming" : "outgoing",
                  (unsigned long long)li.core_sent, (unsigned long long)li.peer_received,
                  li.peer_saw_fin ? "seen" : "not seen", li.reset ? "yes" : "no", li.handed,
                  li.established, li.closed, li.aborted, li.released, (int)li.mode);
        }
        return;
    }
    char rep[1024], app[1024];
    size_t n = 0;
    app[0] = '\0';
    for (unsigned i = 0; i < r->cfg.slots && n < sizeof app - 120; i++) {
        const conn *c = &r->conns[i];
        if (sn_slot_state(r->core, i) == SN_FREE)
            continue;
        sn_sim_link_info li;
        memset(&li, 0, sizeof li);
        if (c->peer)
            sn_sim_peer_info(r->sim, c->peer, &li);
        n += (size_t)snprintf(app + n, sizeof app - n,
                              "  app slot %u: %s id %#x behaviour %u responding %d sent %u/%u "
                              "closing %d aborted %d peer_gone %d; link: fin-to-core %d reset %d "
                              "by %d unsent %u unacked %u\n",
                              i, sn_state_name(sn_slot_state(r->core, i)), c->id, c->behaviour,
                              c->responding, c->resp_sent, c->resp_total, c->closing, c->aborted,
                              c->peer_gone, li.core_saw_fin, li.reset, (int)li.reset_by,
                              li.unsent, li.unacked);
    }
    sn_sim_stats ls;
    sn_sim_stats_get(r->sim, &ls);
    const sn_core *k = r->core;
    uint32_t now = sn_sim_now(r->sim);
    n += (size_t)snprintf(app + n, sizeof app - n,
                          "  sim handles out %u; backlog %u; release queue %u (spacing %u ms, "
                          "delay %u ms, capacity %u), head due in %d ms, last release %d ms ago\n",
                          ls.handles_in_use, k->bl_count, k->rq_count, r->cfg.release_spacing_ms,
                          r->cfg.release_delay_ms, r->cfg.release_queue,
                          k->rq_count ? (int)(k->rq[k->rq_head].due - now) : 0,
                          k->rq_has_last ? (int)(now - k->rq_last) : 0);
    sn_report(r->core, rep, sizeof rep);
    failf(r, X_LIVENESS, "not converged %llu ms into the liveness phase (bound %llu):\n%s%s",
          (unsigned long long)(elapsed(r) - t0), (unsigned long long)bound, app, rep);
}

static int run_seed(uint64_t seed, bool verbose, bool trace, bool step_all, totals *tot)
{
    static run R;
    run *r = &R;
    memset(r, 0, sizeof *r);
    r->seed = seed;
    r->rng = seed * 0x9e3779b97f4a7c15ull + 0x5eed;
    r->verbose = verbose;
    r->trace = trace;
    r->step_all = step_all;
    random_config(r);

    if (sn_sim_create(&r->sim, &r->scfg) != 0) {
        fprintf(stderr, "seed %llu: sn_sim_create failed\n", (unsigned long long)seed);
        return X_USAGE;
    }
    r->be = sn_sim_backend(r->sim);
    size_t need = sn_core_size(&r->cfg);
    r->mem = aligned_alloc(8, (need + 7u) & ~(size_t)7u);
    int rc = r->mem ? sn_core_init(&r->core, r->mem, need, &r->cfg, r->be) : SN_ENOMEM;
    if (rc != SN_OK) {
        fprintf(stderr, "seed %llu: sn_core_init gave %d\n", (unsigned long long)seed, rc);
        free(r->mem);
        sn_sim_destroy(r->sim);
        return X_USAGE;
    }

    static const uint16_t ports[MAX_LISTEN] = {80, 21, 23};
    r->nls = rrange(r, 1, MAX_LISTEN);
    for (unsigned i = 0; i < r->nls; i++) {
        listener *l = &r->ls[i];
        l->port = ports[i];
        l->max = (uint8_t)rrange(r, 1, r->cfg.slots);
        l->idle = chance_pm(r, 500) ? rrange(r, 300, 8000) : 0;
        sn_endpoint ep = {0, l->port};
        if (sn_listen(r->core, &ep, (uint8_t)i, l->max, l->idle) != SN_OK)
            failf(r, X_INVARIANT, "sn_listen port %u failed", l->port);
        l->active = true;
    }
    static const sn_sim_server_mode modes[NSERVERS] = {
        SN_SIM_SERVER_ACCEPT, SN_SIM_SERVER_REFUSE, SN_SIM_SERVER_REFUSE_SYNC,
        SN_SIM_SERVER_UNREACH_SYNC, SN_SIM_SERVER_HANG, SN_SIM_SERVER_ACCEPT};
    for (unsigned i = 0; i < NSERVERS; i++) {
        r->srv[i].addr = 0x0a090001u + i;
        r->srv[i].port = 7000;
        if (i == NSERVERS - 1)
            continue; /* the last one has no server at all */
        sn_sim_server_config sc = {modes[i], random_mode(r), 0, false};
        sn_sim_server_add(r->sim, &r->srv[i], &sc);
    }

    uint64_t safety = rrange(r, 3000, 15000);
    while (!r->fail && elapsed(r) < safety)
        one_step(r);

    uint64_t bound = liveness_bound(r);
    uint64_t t0 = elapsed(r);
    if (!r->fail) {
        begin_liveness(r);
        while (!r->fail && !(converged(r) && active_clients(r) == 0)) {
            if (elapsed(r) - t0 > bound) {
                liveness_failure(r, t0, bound);
                break;
            }
            one_step(r);
        }
    }
    uint64_t t1 = elapsed(r);

    sn_sim_stats ss;
    sn_sim_stats_get(r->sim, &ss);
    uint64_t trace_hash = sn_sim_trace_hash(r->sim);
    sn_core_shutdown(r->core);
    sn_sim_stats st2;
    sn_sim_stats_get(r->sim, &st2);
    if (!r->fail && st2.handles_in_use != 0)
        failf(r, X_LEAK, "%u sim handles still out after sn_core_shutdown", st2.handles_in_use);
    if (!r->fail && sn_sim_misuse(r->sim))
        failf(r, X_MISUSE, "%s", sn_sim_misuse(r->sim));

    tot->steps += r->steps;
    tot->links += ss.links_created;
    tot->accepted += ss.handles_created;
    tot->virtual_ms += elapsed(r);
    if (r->fail) {
        printf("FAIL seed=%llu class=%s exit=%d t=%llu step=%llu trace=%016llx: %s\n",
               (unsigned long long)seed, class_name(r->fail), r->fail,
               (unsigned long long)r->fail_t, (unsigned long long)r->steps,
               (unsigned long long)trace_hash, r->msg);
        fflush(stdout);
    } else if (verbose) {
        const sn_stats *cs = sn_stats_get(r->core);
        printf("ok seed=%llu slots=%u steps=%llu virtual=%llums links=%llu accepted=%u "
               "graceful=%u peer=%u timeout=%u idle=%u terminated=%u aborted=%u connects=%u "
               "connect_fail=%u rejected=%u releases=%u forced=%u faults=%llu liveness=%llums/%llums "
               "trace=%016llx\n",
               (unsigned long long)seed, r->cfg.slots, (unsigned long long)r->steps,
               (unsigned long long)elapsed(r), (unsigned long long)ss.links_created,
               cs->accepted, cs->closed_graceful, cs->closed_peer, cs->closed_timeout,
               cs->idle_timeouts, cs->terminated, cs->aborted, cs->connects,
               cs->connect_failures, cs->rejected, cs->releases, cs->releases_forced,
               (unsigned long long)ss.faults, (unsigned long long)(t1 - t0),
               (unsigned long long)bound, (unsigned long long)trace_hash);
    }
    free(r->mem);
    sn_sim_destroy(r->sim);
    return r->fail;
}

static void usage(void)
{
    fprintf(stderr, "usage: sim_soak [--seeds N] [--first N] [--seed N] [-v] [--trace] [--step-all]\n");
}

int main(int argc, char **argv)
{
    uint64_t first = 1, count = 200;
    bool verbose = false, trace = false, step_all = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if ((!strcmp(a, "--seeds") || !strcmp(a, "--first") || !strcmp(a, "--seed")) &&
            i + 1 < argc) {
            char *end;
            unsigned long long v = strtoull(argv[++i], &end, 0);
            if (*end) {
                usage();
                return X_USAGE;
            }
            if (!strcmp(a, "--seeds"))
                count = v;
            else if (!strcmp(a, "--first"))
                first = v;
            else {
                first = v;
                count = 1;
                verbose = true;
            }
        } else if (!strcmp(a, "-v")) {
            verbose = true;
        } else if (!strcmp(a, "--trace")) {
            trace = true;
        } else if (!strcmp(a, "--step-all")) {
            step_all = true;
        } else {
            usage();
            return X_USAGE;
        }
    }
    for (size_t i = 0; i < sizeof pattern; i++)
        pattern[i] = (uint8_t)(i * 131u + (i >> 8));

    struct timespec ts0, ts1;
    clock_gettime(CLOCK_MONOTONIC, &ts0);
    totals tot;
    memset(&tot, 0, sizeof tot);
    int first_fail = 0;
    uint64_t failures = 0;
    for (uint64_t s = first; s < first + count; s++) {
        int rc = run_seed(s, verbose, trace, step_all, &tot);
        if (rc) {
            failures++;
            if (!first_fail)
                first_fail = rc;
        }
    }
    clock_gettime(CLOCK_MONOTONIC, &ts1);
    double wall = (double)(ts1.tv_sec - ts0.tv_sec) + (double)(ts1.tv_nsec - ts0.tv_nsec) / 1e9;
    if (wall <= 0)
        wall = 1e-9;
    printf("sim_soak: seeds %llu..%llu, %llu failed, %llu steps, %llu connections simulated "
           "(%llu handed to the core), %.1f s virtual, %.2f s wall, %.1f seeds/s, "
           "%.0f connections/s of wall time\n",
           (unsigned long long)first, (unsigned long long)(first + count - 1),
           (unsigned long long)failures, (unsigned long long)tot.steps,
           (unsigned long long)tot.links, (unsigned long long)tot.accepted,
           (double)tot.virtual_ms / 1000.0, wall, (double)count / wall,
           (double)tot.links / wall);
    return first_fail;
}
