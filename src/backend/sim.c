/*
 * The simulator backend (see slotnet/sim.h for the model).
 *
 * Internally time is a 64-bit count of milliseconds since creation (t); the
 * 32-bit wrapping clock the core sees is start_ms + t. Nothing in here needs
 * wrap-safe comparisons, so the sim cannot hide wrap bugs of its own.
 *
 * Every connection is a link with two ends: e[0] is the core's side, e[1]
 * the peer's. Each end is a sender (a ring holding unacked + unsent bytes,
 * addressed by 64-bit stream offsets) and a receiver (a ring of received,
 * unread bytes). Segments and ACKs in flight sit in small FIFOs on the
 * sending end, stamped with their arrival time.
 *
 * A link is processed only at the milliseconds where something is due
 * (its wake time); every API call that touches a link wakes it on the next
 * millisecond. Processing is idempotent, so waking too often is harmless;
 * link_wake() must only never answer later than the next due event.
 */
#include "slotnet/sim.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NEVER UINT64_MAX
#define SEGQ 64 /* segments in flight per direction; 2 kept for FIN/RST */
#define ACKQ 8  /* ACKs in flight per direction; merged when full */
#define MAX_LINKS 4095u
#define PEER_IDX_BITS 12u
#define PEER_GEN_MASK 0xfffffu
#define MSG_LEN 256

enum { SEG_FIN = 1, SEG_RST = 2 };
enum { PH_FREE, PH_SYN, PH_OPEN, PH_REFUSED, PH_DEAD };
enum { KILL_NONE, KILL_STACK, KILL_ERROR };
enum { H_CONN = 0, H_LISTENER = 1 };

typedef struct seg {
    uint64_t off;
    uint64_t at;
    uint32_t len;
    uint8_t flags;
} seg;

typedef struct ackseg {
    uint64_t off;
    uint64_t at;
} ackseg;

typedef struct sim_end {
    /* sender: [s_acked, s_tx) unacked, [s_tx, s_top) unsent;
     * s_deliv <= s_tx is what has reached the other end */
    uint8_t *sbuf;
    uint32_t scap;
    uint64_t s_acked, s_deliv, s_tx, s_top;
    uint64_t push_off;   /* everything below was pushed */
    uint64_t hold_since; /* when the oldest held (unpushed) byte came */
    bool fin_queued, fin_sent, rst_sent;
    seg segq[SEGQ];
    unsigned seg_head, seg_n;
    /* receiver: [r_read, r_top) buffered; rcv_nxt counts dropped bytes too */
    uint8_t *rbuf;
    uint32_t rcap;
    uint64_t r_read, r_top, rcv_nxt;
    bool fin_rcvd, rst_rcvd, discarding;
    bool ack_armed;
    uint64_t ack_due;
    ackseg ackq[ACKQ]; /* ACKs this end sends */
    unsigned ack_head, ack_n;
} sim_end;

typedef struct sim_link {
    bool used;
    bool incoming;
    uint8_t phase;
    uint8_t kill;
    int kill_err; /* what a KILL_STACK connection reports: reset or timeout */
    uint8_t mode;
    uint8_t reset_by;
    uint16_t idx;
    uint32_t pgen;
    uint64_t hgen;
    sim_end e[2];
    uint64_t syn_at, est_at, fail_at;
    bool core_est, peer_est, failed, fail_sync_pending;
    int fail_err;
    bool handed, queued, closed, aborted, released, peer_released, reset;
    bool peer_closed;
    uint32_t expect;
    uint64_t browser_rst_at;
    bool want_writable, writable;
    uint64_t enomem_until;
    uint64_t fault_at;
    uint64_t wake;
    int listener;
    int server;
    uint32_t close_calls, abort_calls, release_calls, release_ms;
    uint64_t core_sent, peer_received, peer_read, core_acked;
    uint64_t peer_sent, core_received, core_read, core_discarded;
    uint32_t core_tx_hash, peer_rx_hash;
    sn_endpoint core_local, core_remote;
} sim_link;

typedef struct sim_listener {
    bool used;
    bool paused;
    uint64_t gen;
    sn_endpoint ep;
    uint16_t *q; /* link indices, FIFO */
    unsigned head, n;
} sim_listener;

typedef struct sim_server {
    bool used;
    sn_endpoint ep;
    sn_sim_server_config sc;
    sn_sim_peer *q; /* accepted peers not yet taken by the test */
    unsigned head, n;
} sim_server;

struct sn_sim {
    sn_sim_config cfg;
    sn_sim_faults faults;
    uint64_t rng;
    uint64_t t;
    uint32_t us_extra;
    uint64_t wake_min;
    bool io;
    uint64_t hgen_next;
    uint64_t clients;
    uint32_t ephemeral;
    uint32_t force[SN_SIM_FORCE_COUNT_];
    sim_link *links;
    uint16_t *free_links;
    unsigned free_n;
    unsigned links_hi; /* links[0..links_hi) have ever been used */
    sim_listener *listeners;
    sim_server *servers;
    uint32_t *rlog;
    uint64_t trace_hash;
    sn_sim_stats st;
    char misuse[MSG_LEN];
    sn_backend_ops ops;
};

/* ---- Small helpers ----------------------------------------------------- */

uint64_t sn_sim_rand(uint64_t *state)
{
    /* splitmix64 */
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

uint32_t sn_sim_rand_below(uint64_t *state, uint32_t n)
{
    if (n == 0)
        return 0;
    return (uint32_t)(((sn_sim_rand(state) >> 32) * (uint64_t)n) >> 32);
}

static uint64_t min64(uint64_t a, uint64_t b) { return a < b ? a : b; }

static bool chance(sn_sim *s, uint32_t ppm)
{
    return ppm != 0 && sn_sim_rand_below(&s->rng, 1000000u) < ppm;
}

static uint32_t fnv32(uint32_t h, const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 16777619u;
    }
    return h;
}

static uint32_t now32(const sn_sim *s) { return (uint32_t)(s->cfg.start_ms + s->t); }

static void tr(sn_sim *s, const char *what, uint64_t a, uint64_t b, int64_t c)
{
    uint64_t w[4] = {s->t, a, b, (uint64_t)c};
    uint64_t h = s->trace_hash;
    for (const char *p = what; *p; p++) {
        h ^= (uint8_t)*p;
        h *= 0x100000001b3ull;
    }
    for (int i = 0; i < 4; i++) {
        for (int k = 0; k < 8; k++) {
            h ^= (uint8_t)(w[i] >> (8 * k));
            h *= 0x100000001b3ull;
        }
    }
    s->trace_hash = h;
    if (s->cfg.trace)
        fprintf(stderr, "sim %10u %-14s %llu %llu %lld\n", now32(s), what, (unsigned long long)a,
                (unsigned long long)b, (long long)c);
}

static void misuse(sn_sim *s, sn_sim_op op, const void *h, const char *fmt, ...)
{
    char text[160];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    s->st.misuse++;
    tr(s, "MISUSE", (uint64_t)op, (uint64_t)(uintptr_t)h, 0);
    if (s->misuse[0] == '\0')
        snprintf(s->misuse, sizeof s->misuse, "t=%u %s(%#llx): %s", now32(s), sn_sim_op_name(op),
                 (unsigned long long)(uintptr_t)h, text);
    if (s->cfg.misuse_fatal) {
        fprintf(stderr, "sn_sim: backend misuse at t=%u: %s(%#llx): %s\n", now32(s),
                sn_sim_op_name(op), (unsigned long long)(uintptr_t)h, text);
        abort();
    }
}

static void op_enter(sn_sim *s, sn_sim_op op)
{
    s->st.ops[op]++;
    s->us_extra += s->cfg.op_cost_us;
    if (s->us_extra > 999)
        s->us_extra = 999;
}

static void touch(sn_sim *s, sim_link *L)
{
    L->wake = s->t + 1;
    if (L->wake < s->wake_min)
        s->wake_min = L->wake;
}

static void ring_put(uint8_t *ring, uint32_t cap, uint64_t off, const uint8_t *src, size_t n)
{
    size_t pos = (size_t)(off % cap);
    size_t first = n < cap - pos ? n : cap - pos;
    memcpy(ring + pos, src, first);
    if (n > first)
        memcpy(ring, src + first, n - first);
}

static void ring_get(const uint8_t *ring, uint32_t cap, uint64_t off, uint8_t *dst, size_t n)
{
    size_t pos = (size_t)(off % cap);
    size_t first = n < cap - pos ? n : cap - pos;
    memcpy(dst, ring + pos, first);
    if (n > first)
        memcpy(dst + first, ring, n - first);
}

/* Hash ring bytes without copying them out. */
static uint32_t ring_hash(uint32_t h, const uint8_t *ring, uint32_t cap, uint64_t off, size_t n)
{
    size_t pos = (size_t)(off % cap);
    size_t first = n < cap - pos ? n : cap - pos;
    h = fnv32(h, ring + pos, first);
    if (n > first)
        h = fnv32(h, ring, n - first);
    return h;
}

/* ---- Handles and ids --------------------------------------------------- */

static void *make_handle(uint64_t gen, unsigned kind, unsigned idx)
{
    uint64_t v = (gen << 16) | ((uint64_t)kind << 15) | (uint64_t)(idx + 1u);
    return (void *)(uintptr_t)v;
}

static bool split_handle(const void *h, unsigned *kind, unsigned *idx, uint64_t *gen)
{
    uint64_t v = (uint64_t)(uintptr_t)h;
    unsigned i = (unsigned)(v & 0x7fffu);
    if (i == 0)
        return false;
    *idx = i - 1u;
    *kind = (unsigned)((v >> 15) & 1u);
    *gen = v >> 16;
    return true;
}

static uint64_t gen_mask(void)
{
    /* handles keep as many generation bits as a pointer holds */
    return sizeof(uintptr_t) >= 8 ? (UINT64_MAX >> 16) : 0xffffu;
}

static sim_link *peer_link(const sn_sim *s, sn_sim_peer p)
{
    unsigned i = p & ((1u << PEER_IDX_BITS) - 1u);
    if (i == 0 || i > s->cfg.max_links)
        return NULL;
    sim_link *L = &s->links[i - 1u];
    if (!L->used || L->peer_released || (L->pgen & PEER_GEN_MASK) != (p >> PEER_IDX_BITS))
        return NULL;
    return L;
}

static sn_sim_peer peer_id(const sim_link *L)
{
    return ((L->pgen & PEER_GEN_MASK) << PEER_IDX_BITS) | (uint32_t)(L->idx + 1u);
}

/* The link behind a core handle, or NULL after reporting misuse. */
static sim_link *conn_of(sn_sim *s, void *ch, sn_sim_op op, bool after_close_ok)
{
    unsigned kind, idx;
    uint64_t gen;
    if (!split_handle(ch, &kind, &idx, &gen) || kind != H_CONN || idx >= s->cfg.max_links) {
        misuse(s, op, ch, "not a connection handle of this sim");
        return NULL;
    }
    sim_link *L = &s->links[idx];
    if (!L->used || !L->handed || L->hgen != gen || L->released) {
        misuse(s, op, ch, "handle already released (use after free)");
        return NULL;
    }
    if (!after_close_ok && (L->closed || L->aborted)) {
        misuse(s, op, ch, "connection already %s: only release() is allowed",
               L->closed ? "closed" : "aborted");
        return NULL;
    }
    return L;
}

static sim_listener *listener_of(sn_sim *s, void *lh, sn_sim_op op)
{
    unsigned kind, idx;
    uint64_t gen;
    if (!split_handle(lh, &kind, &idx, &gen) || kind != H_LISTENER || idx >= s->cfg.max_listeners) {
        misuse(s, op, lh, "not a listener handle of this sim");
        return NULL;
    }
    sim_listener *l = &s->listeners[idx];
    if (!l->used || l->gen != gen) {
        misuse(s, op, lh, "listener already stopped (use after free)");
        return NULL;
    }
    return l;
}

/* ---- Links ------------------------------------------------------------- */

static uint32_t end_ack_delay(const sn_sim *s, int side)
{
    return side == 0 ? 0 : s->cfg.ack_delay_ms;
}

static bool auto_reads(const sim_link *L)
{
    return L->mode == SN_SIM_PEER_AUTO_READ || L->mode == SN_SIM_PEER_NO_ACK ||
           L->mode == SN_SIM_PEER_BROWSER;
}

static bool fault_applies(const sim_link *L)
{
    return L->phase == PH_OPEN && !L->reset && (L->queued || (L->handed && !L->released)) &&
           !L->aborted;
}

static void draw_fault(sn_sim *s, sim_link *L)
{
    uint64_t total = (uint64_t)s->faults.reset_peer_ppm + s->faults.stack_abort_ppm +
                     s->faults.internal_error_ppm;
    L->fault_at = NEVER;
    if (total == 0 || !fault_applies(L))
        return;
    uint64_t mean = 1000000u / total;
    if (mean == 0)
        mean = 1;
    uint64_t span = 2 * mean > UINT32_MAX ? UINT32_MAX : 2 * mean;
    L->fault_at = s->t + 1 + sn_sim_rand_below(&s->rng, (uint32_t)span);
}

static sim_link *link_alloc(sn_sim *s)
{
    if (s->free_n == 0)
        return NULL;
    uint16_t i = s->free_links[--s->free_n];
    sim_link *L = &s->links[i];
    /* keep buffers, generation and index; clear the rest */
    sim_end e0 = L->e[0], e1 = L->e[1];
    uint32_t pgen = L->pgen + 1u;
    memset(L, 0, sizeof *L);
    L->idx = i;
    L->pgen = pgen;
    L->used = true;
    for (int k = 0; k < 2; k++) {
        sim_end *src = k ? &e1 : &e0;
        sim_end *e = &L->e[k];
        e->sbuf = src->sbuf;
        e->scap = src->scap;
        e->rbuf = src->rbuf;
        e->rcap = src->rcap;
    }
    L->syn_at = L->est_at = L->fail_at = NEVER;
    L->browser_rst_at = NEVER;
    L->fault_at = NEVER;
    L->listener = -1;
    L->server = -1;
    L->core_tx_hash = L->peer_rx_hash = 2166136261u;
    L->mode = SN_SIM_PEER_MANUAL;
    if ((unsigned)i + 1u > s->links_hi)
        s->links_hi = (unsigned)i + 1u;
    s->st.links_in_use++;
    s->st.links_created++;
    touch(s, L);
    return L;
}

static void link_maybe_free(sn_sim *s, sim_link *L)
{
    if (!L->used || !L->peer_released || L->queued || (L->handed && !L->released) ||
        (L->incoming && L->phase == PH_SYN))
        return;
    tr(s, "link-free", L->idx, 0, 0);
    L->used = false;
    L->phase = PH_FREE;
    s->free_links[s->free_n++] = L->idx;
    s->st.links_in_use--;
}

static void seg_push(sn_sim *s, sim_end *X, uint64_t off, uint32_t len, uint8_t flags)
{
    /* callers keep room: data leaves 2 entries, FIN 1, RST may take the last */
    if (X->seg_n == SEGQ)
        return;
    seg *g = &X->segq[(X->seg_head + X->seg_n) % SEGQ];
    g->off = off;
    g->len = len;
    g->flags = flags;
    g->at = s->t + s->cfg.latency_ms;
    X->seg_n++;
}

static void ack_push(sn_sim *s, sim_end *Y)
{
    uint64_t at = s->t + s->cfg.latency_ms;
    if (Y->ack_n == ACKQ) {
        ackseg *last = &Y->ackq[(Y->ack_head + Y->ack_n - 1) % ACKQ];
        last->off = Y->rcv_nxt;
        last->at = at;
        return;
    }
    ackseg *a = &Y->ackq[(Y->ack_head + Y->ack_n) % ACKQ];
    a->off = Y->rcv_nxt;
    a->at = at;
    Y->ack_n++;
}

/* Side `side` sends RST: its queued data is dropped, what is already on the
 * wire still arrives, then the RST. */
static void send_rst(sn_sim *s, sim_link *L, int side, sn_sim_by by)
{
    sim_end *X = &L->e[side];
    if (X->rst_sent || X->rst_rcvd)
        return;
    X->rst_sent = true;
    X->s_top = X->s_tx;
    X->s_acked = X->s_tx;
    X->push_off = X->s_tx;
    X->ack_armed = false;
    X->discarding = true;
    bool on_wire = side == 1 ? L->peer_est : (L->incoming ? L->core_est : L->phase == PH_OPEN);
    if (on_wire)
        seg_push(s, X, X->s_tx, 0, SEG_RST);
    if (!L->reset) {
        L->reset = true;
        L->reset_by = (uint8_t)by;
    }
    L->fault_at = NEVER;
    tr(s, "rst", L->idx, (uint64_t)side, (int64_t)by);
    touch(s, L);
}

static void got_rst(sn_sim *s, sim_link *L, int side)
{
    sim_end *Y = &L->e[side];
    Y->rst_rcvd = true;
    Y->s_top = Y->s_tx;
    Y->s_acked = Y->s_tx;
    Y->push_off = Y->s_tx;
    Y->seg_n = 0;
    Y->ack_n = 0;
    Y->ack_armed = false;
    if (s->cfg.rst_discards_rx)
        Y->r_read = Y->r_top;
    if (side == 0)
        s->io = true;
    L->fault_at = NEVER;
    L->browser_rst_at = NEVER;
    tr(s, "rst-rcvd", L->idx, (uint64_t)side, 0);
}

static uint64_t window(const sim_link *L, int side)
{
    const sim_end *X = &L->e[side];
    const sim_end *Y = &L->e[1 - side];
    if (Y->rst_sent || Y->rst_rcvd)
        return 0;
    if (Y->discarding)
        return UINT32_MAX;
    uint64_t used = (Y->r_top - Y->r_read) + (X->s_tx - X->s_deliv);
    return used >= Y->rcap ? 0 : Y->rcap - used;
}

static bool side_open(const sim_link *L, int side)
{
    const sim_end *X = &L->e[side];
    if (X->rst_sent || X->rst_rcvd || L->phase != PH_OPEN)
        return false;
    return side == 0 ? L->core_est : L->peer_est;
}

static bool held(const sim_end *X)
{
    uint64_t base = X->push_off > X->s_tx ? X->push_off : X->s_tx;
    return X->s_top > base;
}

static bool flush_now(const sn_sim *s, const sim_end *X)
{
    /* a full send buffer goes out too: nothing more can join it (lwIP's
     * Nagle check sends when tcp_sndbuf() is 0) */
    return X->push_off > X->s_tx || X->fin_queued || X->s_top - X->s_acked >= X->scap ||
           (held(X) && s->t >= X->hold_since + s->cfg.coalesce_ms);
}

static bool can_transmit(const sn_sim *s, const sim_link *L, int side)
{
    const sim_end *X = &L->e[side];
    if (!side_open(L, side))
        return false;
    uint64_t unsent = X->s_top - X->s_tx;
    if (unsent > 0 && X->seg_n < SEGQ - 2) {
        uint64_t win = window(L, side);
        uint64_t len = min64(min64(unsent, win), s->cfg.mss);
        if (len > 0 && (len == s->cfg.mss || flush_now(s, X)))
            return true;
    }
    return X->fin_queued && !X->fin_sent && unsent == 0 && X->seg_n < SEGQ - 1;
}

static void transmit(sn_sim *s, sim_link *L, int side)
{
    sim_end *X = &L->e[side];
    if (!side_open(L, side))
        return;
    if (held(X) && s->t >= X->hold_since + s->cfg.coalesce_ms)
        X->push_off = X->s_top; /* the coalescing timer ran out */
    uint64_t budget = s->cfg.rate;
    while (budget > 0 && X->seg_n < SEGQ - 2) {
        uint64_t unsent = X->s_top - X->s_tx;
        uint64_t win = window(L, side);
        uint64_t len = min64(min64(min64(unsent, win), s->cfg.mss), budget);
        if (len == 0)
            break;
        if (len < s->cfg.mss && !flush_now(s, X))
            break;
        seg_push(s, X, X->s_tx, (uint32_t)len, 0);
        X->s_tx += len;
        budget -= len;
    }
    if (X->fin_queued && !X->fin_sent && X->s_tx == X->s_top && X->seg_n < SEGQ - 1) {
        seg_push(s, X, X->s_tx, 0, SEG_FIN);
        X->fin_sent = true;
        tr(s, "fin", L->idx, (uint64_t)side, 0);
    }
}

static void arm_ack(sn_sim *s, sim_link *L, int side)
{
    sim_end *Y = &L->e[side];
    if (side == 1 && L->mode == SN_SIM_PEER_NO_ACK)
        return;
    if (!Y->ack_armed) {
        Y->ack_armed = true;
        Y->ack_due = s->t + end_ack_delay(s, side);
    }
}

static void deliver(sn_sim *s, sim_link *L, int side)
{
    sim_end *X = &L->e[side];
    sim_end *Y = &L->e[1 - side];
    int to = 1 - side;
    while (X->seg_n > 0 && X->segq[X->seg_head].at <= s->t) {
        seg g = X->segq[X->seg_head];
        X->seg_head = (X->seg_head + 1) % SEGQ;
        X->seg_n--;
        if (Y->rst_sent || Y->rst_rcvd)
            continue; /* the receiver is gone */
        if (g.flags & SEG_RST) {
            got_rst(s, L, to);
            return;
        }
        if (g.len > 0) {
            X->s_deliv = g.off + g.len;
            Y->rcv_nxt += g.len;
            if (Y->discarding) {
                if (to == 0)
                    L->core_discarded += g.len;
            } else {
                uint8_t tmp[512];
                uint64_t done = 0;
                while (done < g.len) {
                    size_t n = (size_t)min64(sizeof tmp, g.len - done);
                    ring_get(X->sbuf, X->scap, g.off + done, tmp, n);
                    ring_put(Y->rbuf, Y->rcap, Y->r_top + done, tmp, n);
                    done += n;
                }
                if (to == 1) {
                    L->peer_rx_hash = ring_hash(L->peer_rx_hash, Y->rbuf, Y->rcap, Y->r_top, g.len);
                    L->peer_received += g.len;
                    s->st.bytes_to_peers += g.len;
                } else {
                    L->core_received += g.len;
                    s->st.bytes_to_core += g.len;
                }
                Y->r_top += g.len;
            }
            if (to == 0)
                s->io = true;
            arm_ack(s, L, to);
            tr(s, "deliver", L->idx, (uint64_t)to, (int64_t)g.len);
        }
        if (g.flags & SEG_FIN) {
            Y->fin_rcvd = true;
            if (to == 0)
                s->io = true;
            tr(s, "fin-rcvd", L->idx, (uint64_t)to, 0);
        }
    }
}

static void deliver_acks(sn_sim *s, sim_link *L, int side)
{
    /* ACKs sent by `side` reach the other end */
    sim_end *Y = &L->e[side];
    sim_end *X = &L->e[1 - side];
    while (Y->ack_n > 0 && Y->ackq[Y->ack_head].at <= s->t) {
        ackseg a = Y->ackq[Y->ack_head];
        Y->ack_head = (Y->ack_head + 1) % ACKQ;
        Y->ack_n--;
        if (X->rst_sent || X->rst_rcvd)
            continue;
        if (a.off > X->s_acked && a.off <= X->s_tx) {
            X->s_acked = a.off;
            if (side == 1) {
                L->core_acked = a.off;
                s->io = true;
            }
        }
    }
}

static void handshake(sn_sim *s, sim_link *L)
{
    if (L->phase == PH_SYN && L->syn_at <= s->t) {
        if (L->incoming) {
            /* the SYN reaches the core's listener */
            sim_listener *l = NULL;
            for (unsigned i = 0; i < s->cfg.max_listeners; i++) {
                sim_listener *c = &s->listeners[i];
                if (c->used && c->ep.port == L->core_local.port &&
                    (c->ep.addr == 0 || L->core_local.addr == 0 || c->ep.addr == L->core_local.addr)) {
                    l = c;
                    break;
                }
            }
            if (l == NULL || l->n >= s->cfg.accept_queue) {
                L->phase = PH_REFUSED;
                L->reset = true;
                L->reset_by = SN_SIM_BY_NETWORK;
                tr(s, "refused", L->idx, l != NULL, 0);
            } else {
                L->phase = PH_OPEN;
                L->core_est = L->peer_est = true;
                L->queued = true;
                L->listener = (int)(l - s->listeners);
                L->core_local.addr = l->ep.addr ? l->ep.addr : s->cfg.local_addr;
                l->q[(l->head + l->n) % s->cfg.accept_queue] = L->idx;
                l->n++;
                s->io = true;
                draw_fault(s, L);
                tr(s, "queued", L->idx, (uint64_t)L->listener, l->n);
            }
        } else {
            sim_server *sv = NULL;
            for (unsigned i = 0; i < s->cfg.max_servers; i++) {
                sim_server *c = &s->servers[i];
                if (c->used && c->ep.port == L->core_remote.port && c->ep.addr == L->core_remote.addr) {
                    sv = c;
                    break;
                }
            }
            sn_sim_server_mode m = sv ? sv->sc.mode : SN_SIM_SERVER_REFUSE;
            if (L->fail_sync_pending) /* forced or drawn refusal */
                m = SN_SIM_SERVER_REFUSE;
            if (m == SN_SIM_SERVER_ACCEPT) {
                L->phase = PH_OPEN;
                L->peer_est = true;
                L->est_at = s->t + s->cfg.latency_ms;
                L->mode = (uint8_t)sv->sc.peer_mode;
                L->expect = sv->sc.expect;
                L->server = (int)(sv - s->servers);
                if (sv->sc.detach || sv->n >= s->cfg.server_queue) {
                    L->peer_released = true;
                } else {
                    sv->q[(sv->head + sv->n) % s->cfg.server_queue] = peer_id(L);
                    sv->n++;
                }
                tr(s, "srv-accept", L->idx, 0, 0);
            } else if (m == SN_SIM_SERVER_HANG) {
                L->phase = PH_DEAD;
                tr(s, "srv-hang", L->idx, 0, 0);
            } else {
                L->phase = PH_REFUSED;
                L->fail_at = s->t + s->cfg.latency_ms;
                L->fail_err = SN_ECONNREFUSED;
                L->peer_released = true; /* nothing on the far side */
                tr(s, "srv-refuse", L->idx, 0, 0);
            }
        }
    }
    if (!L->incoming && !L->core_est && L->est_at <= s->t && L->phase == PH_OPEN) {
        L->core_est = true;
        L->writable = true;
        s->io = true;
        draw_fault(s, L);
        tr(s, "connected", L->idx, 0, 0);
    }
    if (!L->failed && L->fail_at <= s->t) {
        L->failed = true;
        s->io = true;
        tr(s, "connect-fail", L->idx, 0, L->fail_err);
    }
}

static void fire_fault(sn_sim *s, sim_link *L)
{
    uint32_t a = s->faults.reset_peer_ppm, b = s->faults.stack_abort_ppm,
             c = s->faults.internal_error_ppm;
    uint32_t total = a + b + c;
    L->fault_at = NEVER;
    if (total == 0)
        return;
    uint32_t r = sn_sim_rand_below(&s->rng, total);
    s->st.faults++;
    if (r < a) {
        send_rst(s, L, 1, SN_SIM_BY_PEER);
    } else if (r < a + b || L->closed || L->queued) {
        L->kill = KILL_STACK;
        send_rst(s, L, 0, SN_SIM_BY_STACK);
        s->io = true;
    } else {
        L->kill = KILL_ERROR;
        send_rst(s, L, 0, SN_SIM_BY_ERROR);
        s->io = true;
    }
    tr(s, "fault", L->idx, r, 0);
}

static uint32_t core_space(const sim_link *L)
{
    const sim_end *X = &L->e[0];
    uint64_t q = X->s_top - X->s_acked;
    return q >= X->scap ? 0 : (uint32_t)(X->scap - q);
}

static uint64_t link_wake(const sn_sim *s, const sim_link *L)
{
    uint64_t w = NEVER;
    if (L->phase == PH_SYN)
        w = min64(w, L->syn_at);
    if (!L->core_est && L->phase == PH_OPEN)
        w = min64(w, L->est_at);
    if (!L->failed)
        w = min64(w, L->fail_at);
    for (int k = 0; k < 2; k++) {
        const sim_end *X = &L->e[k];
        if (X->seg_n)
            w = min64(w, X->segq[X->seg_head].at);
        if (X->ack_n)
            w = min64(w, X->ackq[X->ack_head].at);
        if (X->ack_armed)
            w = min64(w, X->ack_due);
        if (can_transmit(s, L, k))
            w = min64(w, s->t + 1);
        else if (side_open(L, k) && held(X))
            w = min64(w, X->hold_since + s->cfg.coalesce_ms);
    }
    if (auto_reads(L) && L->e[1].r_top > L->e[1].r_read)
        w = min64(w, s->t + 1);
    w = min64(w, L->browser_rst_at);
    w = min64(w, L->fault_at);
    if (L->want_writable && side_open(L, 0) && !L->closed && core_space(L) > 0)
        w = min64(w, L->enomem_until > s->t ? L->enomem_until : s->t + 1);
    return w > s->t ? w : s->t + 1;
}

static void process(sn_sim *s, sim_link *L)
{
    handshake(s, L);
    deliver(s, L, 0);
    deliver(s, L, 1);
    deliver_acks(s, L, 0);
    deliver_acks(s, L, 1);

    sim_end *P = &L->e[1];
    if (auto_reads(L) && P->r_top > P->r_read) {
        L->peer_read += P->r_top - P->r_read;
        P->r_read = P->r_top;
    }
    if (L->mode == SN_SIM_PEER_BROWSER && L->browser_rst_at == NEVER && !P->rst_sent &&
        !P->rst_rcvd && L->peer_est &&
        ((L->expect ? L->peer_received >= L->expect : L->peer_received > 0) || P->fin_rcvd))
        L->browser_rst_at = s->t + s->cfg.browser_rst_ms;
    if (L->browser_rst_at <= s->t) {
        L->browser_rst_at = NEVER;
        send_rst(s, L, 1, SN_SIM_BY_PEER); /* cancels the delayed ACK */
    }

    for (int k = 0; k < 2; k++) {
        sim_end *Y = &L->e[k];
        if (Y->ack_armed && Y->ack_due <= s->t) {
            Y->ack_armed = false;
            if (!Y->rst_sent && !Y->rst_rcvd)
                ack_push(s, Y);
        }
    }
    transmit(s, L, 0);
    transmit(s, L, 1);

    if (L->fault_at <= s->t) {
        if (fault_applies(L))
            fire_fault(s, L);
        else
            L->fault_at = NEVER;
    }
    if (L->want_writable && L->enomem_until <= s->t && side_open(L, 0) && !L->closed &&
        core_space(L) > 0) {
        L->want_writable = false;
        L->writable = true;
        s->io = true;
    }
    L->wake = link_wake(s, L);
    link_maybe_free(s, L);
}

static void step(sn_sim *s)
{
    s->t++;
    s->us_extra = 0;
    if (s->wake_min > s->t && !s->cfg.step_all)
        return;
    uint64_t m = NEVER;
    for (unsigned i = 0; i < s->links_hi; i++) {
        sim_link *L = &s->links[i];
        if (!L->used)
            continue;
        if (L->wake <= s->t || s->cfg.step_all)
            process(s, L);
        if (L->used)
            m = min64(m, L->wake);
    }
    s->wake_min = m;
}

/* ---- The ops table ----------------------------------------------------- */

static uint32_t op_now_ms(void *be)
{
    sn_sim *s = be;
    op_enter(s, SN_SIM_OP_NOW_MS);
    return now32(s);
}

static uint32_t op_clock_us(void *be)
{
    sn_sim *s = be;
    op_enter(s, SN_SIM_OP_CLOCK_US);
    return (uint32_t)((s->cfg.start_ms + s->t) * 1000u + s->us_extra);
}

static int op_wait(void *be, uint32_t timeout_ms)
{
    sn_sim *s = be;
    op_enter(s, SN_SIM_OP_WAIT);
    uint32_t n = timeout_ms ? timeout_ms : 1;
    s->io = false;
    for (uint32_t i = 0; i < n; i++) {
        step(s);
        if (s->cfg.wake_on_io && s->io)
            break;
    }
    return 0;
}

static int op_listen(void *be, const sn_endpoint *local, void **lh)
{
    sn_sim *s = be;
    op_enter(s, SN_SIM_OP_LISTEN);
    if (local == NULL || lh == NULL || local->port == 0)
        return SN_EINVAL;
    int free_i = -1;
    for (unsigned i = 0; i < s->cfg.max_listeners; i++) {
        sim_listener *l = &s->listeners[i];
        if (l->used && l->ep.port == local->port &&
            (l->ep.addr == 0 || local->addr == 0 || l->ep.addr == local->addr)) {
            tr(s, "listen", local->port, 0, SN_EADDRINUSE);
            return SN_EADDRINUSE;
        }
        if (!l->used && free_i < 0)
            free_i = (int)i;
    }
    if (free_i < 0) {
        tr(s, "listen", local->port, 0, SN_ENOSPC);
        return SN_ENOSPC;
    }
    sim_listener *l = &s->listeners[free_i];
    l->used = true;
    l->paused = false;
    l->gen = ++s->hgen_next & gen_mask();
    l->ep = *local;
    l->head = l->n = 0;
    s->st.listeners_in_use++;
    *lh = make_handle(l->gen, H_LISTENER, (unsigned)free_i);
    tr(s, "listen", local->port, (uint64_t)free_i, 0);
    return 0;
}

static void op_unlisten(void *be, void *lh)
{
    sn_sim *s = be;
    op_enter(s, SN_SIM_OP_UNLISTEN);
    sim_listener *l = listener_of(s, lh, SN_SIM_OP_UNLISTEN);
    if (l == NULL)
        return;
    /* connections nobody accepted are reset */
    while (l->n > 0) {
        sim_link *L = &s->links[l->q[l->head]];
        l->head = (l->head + 1) % s->cfg.accept_queue;
        l->n--;
        L->queued = false;
        send_rst(s, L, 0, SN_SIM_BY_NETWORK);
        link_maybe_free(s, L);
    }
    l->used = false;
    s->st.listeners_in_use--;
    tr(s, "unlisten", l->ep.port, 0, 0);
}

static void op_listen_pause(void *be, void *lh, bool paused)
{
    sn_sim *s = be;
    op_enter(s, SN_SIM_OP_LISTEN_PAUSE);
    sim_listener *l = listener_of(s, lh, SN_SIM_OP_LISTEN_PAUSE);
    if (l == NULL)
        return;
    l->paused = paused;
    tr(s, "pause", l->ep.port, paused, 0);
}

static int op_accept(void *be, void *lh, void **ch, sn_endpoint *local, sn_endpoint *remote)
{
    sn_sim *s = be;
    op_enter(s, SN_SIM_OP_ACCEPT);
    sim_listener *l = listener_of(s, lh, SN_SIM_OP_ACCEPT);
    if (l == NULL)
        return SN_ESTALE;
    if (ch == NULL)
        return SN_EINVAL;
    if (l->n == 0)
        return SN_EAGAIN;
    sim_link *L = &s->links[l->q[l->head]];
    if (s->force[SN_SIM_FORCE_ACCEPT_EMFILE] ||
        (!s->force[SN_SIM_FORCE_ACCEPT_FAIL] && chance(s, s->faults.accept_emfile_ppm))) {
        if (s->force[SN_SIM_FORCE_ACCEPT_EMFILE])
            s->force[SN_SIM_FORCE_ACCEPT_EMFILE]--;
        s->st.faults++;
        tr(s, "accept", l->ep.port, 0, SN_EMFILE);
        return SN_EMFILE;
    }
    bool forced_fail = s->force[SN_SIM_FORCE_ACCEPT_FAIL] > 0;
    if (forced_fail || chance(s, s->faults.accept_fail_ppm)) {
        s->st.faults++;
        if (forced_fail) {
            s->force[SN_SIM_FORCE_ACCEPT_FAIL]--;
        } else if (sn_sim_rand_below(&s->rng, 2)) {
            /* the stack could not set the connection up: dropped with RST */
            l->head = (l->head + 1) % s->cfg.accept_queue;
            l->n--;
            L->queued = false;
            send_rst(s, L, 0, SN_SIM_BY_NETWORK);
            tr(s, "accept", l->ep.port, L->idx, SN_EIO);
            link_maybe_free(s, L);
            return SN_EIO;
        }
        tr(s, "accept", l->ep.port, 0, SN_ENOMEM);
        return SN_ENOMEM;
    }
    l->head = (l->head + 1) % s->cfg.accept_queue;
    l->n--;
    L->queued = false;
    L->handed = true;
    L->hgen = ++s->hgen_next & gen_mask();
    L->writable = true;
    s->st.handles_in_use++;
    s->st.handles_created++;
    *ch = make_handle(L->hgen, H_CONN, L->idx);
    if (local)
        *local = L->core_local;
    if (remote)
        *remote = L->core_remote;
    touch(s, L);
    tr(s, "accept", l->ep.port, L->idx, 0);
    return 0;
}

static int op_connect(void *be, const sn_endpoint *remote, void **ch, sn_endpoint *local)
{
    sn_sim *s = be;
    op_enter(s, SN_SIM_OP_CONNECT);
    if (remote == NULL || ch == NULL)
        return SN_EINVAL;
    sim_server *sv = NULL;
    for (unsigned i = 0; i < s->cfg.max_servers; i++) {
        sim_server *c = &s->servers[i];
        if (c->used && c->ep.port == remote->port && c->ep.addr == remote->addr) {
            sv = c;
            break;
        }
    }
    bool refuse = false, hang = false;
    if (s->force[SN_SIM_FORCE_CONNECT_REFUSE]) {
        s->force[SN_SIM_FORCE_CONNECT_REFUSE]--;
        s->st.faults++;
        refuse = true;
    } else if (s->force[SN_SIM_FORCE_CONNECT_HANG]) {
        s->force[SN_SIM_FORCE_CONNECT_HANG]--;
        s->st.faults++;
        hang = true;
    } else if (chance(s, s->faults.connect_refuse_ppm)) {
        s->st.faults++;
        if (sn_sim_rand_below(&s->rng, 2)) {
            tr(s, "connect", remote->port, 0, SN_ECONNREFUSED);
            return SN_ECONNREFUSED;
        }
        refuse = true;
    } else if (chance(s, s->faults.connect_hang_ppm)) {
        s->st.faults++;
        hang = true;
    }
    if (!refuse && !hang && sv) {
        if (sv->sc.mode == SN_SIM_SERVER_REFUSE_SYNC) {
            tr(s, "connect", remote->port, 0, SN_ECONNREFUSED);
            return SN_ECONNREFUSED;
        }
        if (sv->sc.mode == SN_SIM_SERVER_UNREACH_SYNC) {
            tr(s, "connect", remote->port, 0, SN_EUNREACH);
            return SN_EUNREACH;
        }
    }
    sim_link *L = link_alloc(s);
    if (L == NULL) {
        tr(s, "connect", remote->port, 0, SN_EMFILE);
        return SN_EMFILE;
    }
    L->incoming = false;
    L->phase = hang ? PH_DEAD : PH_SYN;
    L->syn_at = s->t + s->cfg.latency_ms;
    L->fail_sync_pending = refuse;
    L->handed = true;
    L->hgen = ++s->hgen_next & gen_mask();
    L->core_remote = *remote;
    L->core_local.addr = s->cfg.local_addr;
    L->core_local.port = (uint16_t)(49152u + (s->ephemeral++ % 16384u));
    s->st.handles_in_use++;
    s->st.handles_created++;
    *ch = make_handle(L->hgen, H_CONN, L->idx);
    if (local)
        *local = L->core_local;
    tr(s, "connect", remote->port, L->idx, hang ? 1 : 0);
    return 0;
}

static void op_conn_state(void *be, void *ch, sn_bconn_state *st)
{
    sn_sim *s = be;
    op_enter(s, SN_SIM_OP_CONN_STATE);
    sim_link *L = conn_of(s, ch, SN_SIM_OP_CONN_STATE, false);
    if (st == NULL)
        return;
    st->flags = 0;
    st->error = 0;
    if (L == NULL) {
        st->flags = SN_BF_ERROR;
        st->error = SN_ESTALE;
        return;
    }
    const sim_end *E = &L->e[0];
    if (!L->incoming && L->core_est)
        st->flags |= SN_BF_CONNECTED;
    if (L->failed) {
        st->flags |= SN_BF_FAILED;
        st->error = L->fail_err;
    }
    if (E->r_top > E->r_read || E->fin_rcvd || E->rst_rcvd || L->kill != KILL_NONE)
        st->flags |= SN_BF_READABLE;
    if (L->writable)
        st->flags |= SN_BF_WRITABLE;
    if (E->fin_rcvd)
        st->flags |= SN_BF_PEER_FIN;
    if (E->rst_rcvd || L->kill == KILL_STACK) {
        st->flags |= SN_BF_RESET;
        st->error = L->kill == KILL_STACK && L->kill_err ? L->kill_err : SN_ECONNRESET;
    }
    if (L->kill == KILL_ERROR) {
        st->flags |= SN_BF_ERROR;
        st->error = SN_EIO;
    }
}

/* Take up to len received bytes out of one end's receive ring. */
static size_t take_rx(sim_end *E, void *buf, size_t len)
{
    uint64_t avail = E->r_top - E->r_read;
    if (avail == 0 || len == 0)
        return 0;
    size_t n = (size_t)min64(avail, len);
    if (n > INT32_MAX)
        n = INT32_MAX;
    ring_get(E->rbuf, E->rcap, E->r_read, buf, n);
    E->r_read += n;
    return n;
}

static int op_recv(void *be, void *ch, void *buf, size_t len)
{
    sn_sim *s = be;
    op_enter(s, SN_SIM_OP_RECV);
    sim_link *L = conn_of(s, ch, SN_SIM_OP_RECV, false);
    if (L == NULL)
        return SN_ESTALE;
    sim_end *E = &L->e[0];
    size_t n = take_rx(E, buf, len);
    if (n > 0) {
        L->core_read += n;
        touch(s, L); /* the window opened */
        tr(s, "recv", L->idx, 0, (int64_t)n);
        return (int)n;
    }
    int rc = 0;
    if (L->kill == KILL_ERROR)
        rc = SN_EIO;
    else if (L->kill == KILL_STACK && L->kill_err)
        rc = L->kill_err;
    else if (E->rst_rcvd || L->kill == KILL_STACK)
        rc = SN_ECONNRESET;
    else if (E->fin_rcvd)
        rc = SN_ECLOSED;
    else if (s->force[SN_SIM_FORCE_RECV_TIMEOUT]) {
        s->force[SN_SIM_FORCE_RECV_TIMEOUT]--;
        s->st.faults++;
        rc = SN_ETIMEDOUT; /* a netconn-style receive timeout: nothing arrived */
    }
    tr(s, "recv", L->idx, 0, rc);
    return rc;
}

static int op_send(void *be, void *ch, const void *buf, size_t len, bool push)
{
    sn_sim *s = be;
    op_enter(s, SN_SIM_OP_SEND);
    sim_link *L = conn_of(s, ch, SN_SIM_OP_SEND, false);
    if (L == NULL)
        return SN_ESTALE;
    sim_end *X = &L->e[0];
    int rc;
    if (L->kill == KILL_ERROR)
        rc = SN_EIO;
    else if (L->kill == KILL_STACK && L->kill_err)
        rc = L->kill_err;
    else if (X->rst_rcvd || X->rst_sent || L->kill == KILL_STACK)
        rc = SN_ECONNRESET;
    else if (!L->core_est)
        rc = SN_ESTATE;
    else if (len == 0) {
        if (push && X->s_top > X->s_tx) {
            X->push_off = X->s_top; /* a bare push flushes what is held */
            touch(s, L);
        }
        rc = 0;
    } else if (s->force[SN_SIM_FORCE_SEND_ENOMEM] || chance(s, s->faults.send_enomem_ppm)) {
        if (s->force[SN_SIM_FORCE_SEND_ENOMEM])
            s->force[SN_SIM_FORCE_SEND_ENOMEM]--;
        s->st.faults++;
        L->writable = false;
        L->want_writable = true;
        L->enomem_until = s->t + 1 + sn_sim_rand_below(&s->rng, 20);
        touch(s, L);
        rc = SN_ENOMEM;
    } else {
        uint32_t space = core_space(L);
        size_t n = len < space ? len : space;
        if (n > INT32_MAX)
            n = INT32_MAX;
        bool forced = s->force[SN_SIM_FORCE_SEND_PARTIAL] > 0;
        if (n >= 2 && (forced || chance(s, s->faults.send_partial_ppm))) {
            if (forced) {
                s->force[SN_SIM_FORCE_SEND_PARTIAL]--;
                n = n / 2;
            } else {
                n = 1 + sn_sim_rand_below(&s->rng, (uint32_t)(n - 1));
            }
            s->st.faults++;
        }
        if (n > 0) {
            bool had_held = held(X);
            ring_put(X->sbuf, X->scap, X->s_top, buf, n);
            L->core_tx_hash = fnv32(L->core_tx_hash, buf, n);
            X->s_top += n;
            L->core_sent += n;
            if (push)
                X->push_off = X->s_top;
            else if (!had_held)
                X->hold_since = s->t;
        }
        if (n < len) {
            L->writable = false;
            L->want_writable = true;
        }
        touch(s, L);
        rc = (int)n;
    }
    tr(s, push ? "send-push" : "send", L->idx, len, rc);
    return rc;
}

static int op_tx_queued(void *be, void *ch, uint32_t *unsent, uint32_t *unacked)
{
    sn_sim *s = be;
    op_enter(s, SN_SIM_OP_TX_QUEUED);
    sim_link *L = conn_of(s, ch, SN_SIM_OP_TX_QUEUED, false);
    if (L == NULL)
        return SN_ESTALE;
    const sim_end *X = &L->e[0];
    if (unsent)
        *unsent = (uint32_t)(X->s_top - X->s_tx);
    if (unacked)
        *unacked = (uint32_t)(X->s_tx - X->s_acked);
    return 0;
}

static int op_rx_avail(void *be, void *ch)
{
    sn_sim *s = be;
    op_enter(s, SN_SIM_OP_RX_AVAIL);
    sim_link *L = conn_of(s, ch, SN_SIM_OP_RX_AVAIL, false);
    if (L == NULL)
        return SN_ESTALE;
    uint64_t n = L->e[0].r_top - L->e[0].r_read;
    return n > INT32_MAX ? INT32_MAX : (int)n;
}

static int op_tx_space(void *be, void *ch)
{
    sn_sim *s = be;
    op_enter(s, SN_SIM_OP_TX_SPACE);
    sim_link *L = conn_of(s, ch, SN_SIM_OP_TX_SPACE, false);
    if (L == NULL)
        return SN_ESTALE;
    if (L->kill == KILL_ERROR)
        return SN_EIO;
    if (L->e[0].rst_rcvd || L->e[0].rst_sent || L->kill == KILL_STACK)
        return SN_ECONNRESET;
    if (!L->core_est)
        return 0;
    return (int)core_space(L);
}

static void op_close(void *be, void *ch)
{
    sn_sim *s = be;
    op_enter(s, SN_SIM_OP_CLOSE);
    sim_link *L = conn_of(s, ch, SN_SIM_OP_CLOSE, false);
    if (L == NULL)
        return;
    sim_end *X = &L->e[0];
    L->closed = true;
    L->close_calls++;
    L->core_discarded += X->r_top - X->r_read;
    X->r_read = X->r_top;
    X->discarding = true;
    L->want_writable = false;
    if (!X->rst_sent && !X->rst_rcvd) {
        if (L->core_est) {
            X->fin_queued = true;
            X->push_off = X->s_top;
        } else if (L->phase == PH_OPEN) {
            /* the far side already answered the SYN: nothing to FIN yet */
            send_rst(s, L, 0, SN_SIM_BY_CORE);
        } else {
            L->phase = PH_DEAD; /* an attempt still on its way: abandoned */
            L->peer_released = true;
        }
    }
    touch(s, L);
    tr(s, "close", L->idx, X->s_top - X->s_tx, (int64_t)(X->s_tx - X->s_acked));
}

static void op_abort(void *be, void *ch)
{
    sn_sim *s = be;
    op_enter(s, SN_SIM_OP_ABORT);
    sim_link *L = conn_of(s, ch, SN_SIM_OP_ABORT, false);
    if (L == NULL)
        return;
    L->aborted = true;
    L->abort_calls++;
    L->want_writable = false;
    if (L->phase == PH_SYN || L->phase == PH_DEAD) {
        L->phase = PH_DEAD;
        L->peer_released = true;
    } else if (L->phase == PH_REFUSED) {
        /* nothing left to reset */
    } else {
        send_rst(s, L, 0, SN_SIM_BY_CORE);
    }
    touch(s, L);
    tr(s, "abort", L->idx, 0, 0);
}

static void op_release(void *be, void *ch)
{
    sn_sim *s = be;
    op_enter(s, SN_SIM_OP_RELEASE);
    sim_link *L = conn_of(s, ch, SN_SIM_OP_RELEASE, true);
    if (L == NULL)
        return;
    if (!L->closed && !L->aborted) {
        misuse(s, SN_SIM_OP_RELEASE, ch, "released without close() or abort() first");
        L->aborted = true;
        send_rst(s, L, 0, SN_SIM_BY_CORE);
    }
    L->released = true;
    L->release_calls++;
    L->release_ms = now32(s);
    L->fault_at = NEVER;
    if (s->cfg.release_log)
        s->rlog[s->st.handles_released % s->cfg.release_log] = now32(s);
    s->st.handles_released++;
    s->st.handles_in_use--;
    touch(s, L);
    tr(s, "release", L->idx, 0, 0);
    link_maybe_free(s, L);
}

/* ---- Creation ---------------------------------------------------------- */

void sn_sim_config_default(sn_sim_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->seed = 1;
    cfg->start_ms = UINT32_MAX - 10000u;
    cfg->max_links = 64;
    cfg->max_listeners = SN_MAX_LISTENERS;
    cfg->max_servers = 8;
    cfg->accept_queue = 16;
    cfg->server_queue = 16;
    cfg->sndbuf = 5840; /* lwIP's TCP_SND_BUF on the ESP: 4 * 1460 */
    cfg->rcvbuf = 5840;
    cfg->peer_sndbuf = 16384;
    cfg->peer_rcvbuf = 16384;
    cfg->mss = 1460;
    cfg->latency_ms = 5;
    cfg->rate = 1460;
    cfg->coalesce_ms = 200;
    cfg->ack_delay_ms = 40;
    cfg->browser_rst_ms = 5;
    cfg->op_cost_us = 1;
    cfg->local_addr = 0x0a000001u;  /* 10.0.0.1 */
    cfg->client_addr = 0x0a010001u; /* 10.1.0.1 */
    cfg->release_log = 256;
    cfg->misuse_fatal = true;
}

int sn_sim_create(sn_sim **out, const sn_sim_config *cfg)
{
    if (out == NULL || cfg == NULL)
        return SN_EINVAL;
    *out = NULL;
    if (cfg->max_links < 1 || cfg->max_links > MAX_LINKS || cfg->max_listeners < 1 ||
        cfg->max_listeners > 0x7fffu || cfg->accept_queue < 1 || cfg->server_queue < 1 ||
        cfg->sndbuf < 1 || cfg->rcvbuf < 1 || cfg->peer_sndbuf < 1 || cfg->peer_rcvbuf < 1 ||
        cfg->mss < 1 || cfg->latency_ms < 1 || cfg->rate < 1)
        return SN_EINVAL;

    size_t per_link = (size_t)cfg->sndbuf + cfg->rcvbuf + cfg->peer_sndbuf + cfg->peer_rcvbuf;
    size_t sz = sizeof(sn_sim) + cfg->max_links * (sizeof(sim_link) + sizeof(uint16_t) + per_link) +
                cfg->max_listeners * (sizeof(sim_listener) + cfg->accept_queue * sizeof(uint16_t)) +
                cfg->max_servers * (sizeof(sim_server) + cfg->server_queue * sizeof(sn_sim_peer)) +
                (size_t)cfg->release_log * sizeof(uint32_t) + 64;
    uint8_t *mem = calloc(1, sz);
    if (mem == NULL)
        return SN_ENOMEM;
    sn_sim *s = (sn_sim *)(void *)mem;
    size_t at = (sizeof(sn_sim) + 15u) & ~(size_t)15u;
    s->links = (sim_link *)(void *)(mem + at);
    at += cfg->max_links * sizeof(sim_link);
    s->listeners = (sim_listener *)(void *)(mem + at);
    at += cfg->max_listeners * sizeof(sim_listener);
    s->servers = (sim_server *)(void *)(mem + at);
    at += cfg->max_servers * sizeof(sim_server);
    s->rlog = (uint32_t *)(void *)(mem + at);
    at += (size_t)cfg->release_log * sizeof(uint32_t);
    for (unsigned i = 0; i < cfg->max_servers; i++) {
        s->servers[i].q = (sn_sim_peer *)(void *)(mem + at);
        at += cfg->server_queue * sizeof(sn_sim_peer);
    }
    s->free_links = (uint16_t *)(void *)(mem + at);
    at += cfg->max_links * sizeof(uint16_t);
    for (unsigned i = 0; i < cfg->max_listeners; i++) {
        s->listeners[i].q = (uint16_t *)(void *)(mem + at);
        at += cfg->accept_queue * sizeof(uint16_t);
    }
    for (unsigned i = 0; i < cfg->max_links; i++) {
        sim_link *L = &s->links[i];
        L->idx = (uint16_t)i;
        L->e[0].sbuf = mem + at;
        L->e[0].scap = cfg->sndbuf;
        at += cfg->sndbuf;
        L->e[0].rbuf = mem + at;
        L->e[0].rcap = cfg->rcvbuf;
        at += cfg->rcvbuf;
        L->e[1].sbuf = mem + at;
        L->e[1].scap = cfg->peer_sndbuf;
        at += cfg->peer_sndbuf;
        L->e[1].rbuf = mem + at;
        L->e[1].rcap = cfg->peer_rcvbuf;
        at += cfg->peer_rcvbuf;
    }
    /* hand out low indices first */
    for (unsigned i = 0; i < cfg->max_links; i++)
        s->free_links[i] = (uint16_t)(cfg->max_links - 1u - i);
    s->free_n = cfg->max_links;

    s->cfg = *cfg;
    s->faults = cfg->faults;
    s->rng = cfg->seed;
    s->wake_min = NEVER;
    s->trace_hash = 0xcbf29ce484222325ull;

    s->ops.name = "sim";
    s->ops.now_ms = op_now_ms;
    s->ops.clock_us = op_clock_us;
    s->ops.wait = op_wait;
    s->ops.listen = op_listen;
    s->ops.unlisten = op_unlisten;
    s->ops.listen_pause = op_listen_pause;
    s->ops.accept = op_accept;
    s->ops.connect = op_connect;
    s->ops.conn_state = op_conn_state;
    s->ops.recv = op_recv;
    s->ops.send = op_send;
    s->ops.tx_queued = op_tx_queued;
    s->ops.rx_avail = op_rx_avail;
    s->ops.tx_space = op_tx_space;
    s->ops.close = op_close;
    s->ops.abort = op_abort;
    s->ops.release = op_release;
    *out = s;
    return 0;
}

void sn_sim_destroy(sn_sim *sim) { free(sim); }

sn_backend sn_sim_backend(sn_sim *sim)
{
    sn_backend be = {&sim->ops, sim};
    return be;
}

/* ---- Time and faults --------------------------------------------------- */

uint32_t sn_sim_now(const sn_sim *sim) { return now32(sim); }

uint64_t sn_sim_elapsed_ms(const sn_sim *sim) { return sim->t; }

void sn_sim_advance(sn_sim *sim, uint32_t ms)
{
    for (uint32_t i = 0; i < ms; i++)
        step(sim);
}

void sn_sim_set_faults(sn_sim *sim, const sn_sim_faults *f)
{
    sim->faults = *f;
    for (unsigned i = 0; i < sim->links_hi; i++) {
        sim_link *L = &sim->links[i];
        if (L->used) {
            draw_fault(sim, L);
            touch(sim, L);
        }
    }
    tr(sim, "set-faults", 0, 0, 0);
}

void sn_sim_force(sn_sim *sim, sn_sim_force_kind kind, uint32_t count)
{
    if ((unsigned)kind < SN_SIM_FORCE_COUNT_)
        sim->force[kind] = count;
}

int sn_sim_kill_conn(sn_sim *sim, sn_sim_peer p, sn_sim_kill how)
{
    sim_link *L = peer_link(sim, p);
    if (L == NULL)
        return SN_ESTALE;
    if (L->reset || L->phase != PH_OPEN)
        return SN_ESTATE;
    sim->st.faults++;
    switch (how) {
    case SN_SIM_KILL_PEER_RST:
        send_rst(sim, L, 1, SN_SIM_BY_PEER);
        break;
    case SN_SIM_KILL_STACK_ABORT:
        L->kill = KILL_STACK;
        send_rst(sim, L, 0, SN_SIM_BY_STACK);
        break;
    case SN_SIM_KILL_ERROR:
        L->kill = KILL_ERROR;
        send_rst(sim, L, 0, SN_SIM_BY_ERROR);
        break;
    case SN_SIM_KILL_TIMEOUT:
        L->kill = KILL_STACK;
        L->kill_err = SN_ETIMEDOUT;
        send_rst(sim, L, 0, SN_SIM_BY_STACK);
        break;
    default:
        return SN_EINVAL;
    }
    sim->io = true;
    return 0;
}

/* ---- Clients and servers ----------------------------------------------- */

int sn_sim_client_connect(sn_sim *sim, const sn_endpoint *dst, sn_sim_peer *out)
{
    if (dst == NULL || out == NULL)
        return SN_EINVAL;
    sim_link *L = link_alloc(sim);
    if (L == NULL)
        return SN_ENOSPC;
    L->incoming = true;
    L->phase = PH_SYN;
    L->syn_at = sim->t + sim->cfg.latency_ms;
    L->core_local = *dst;
    uint64_t n = sim->clients++;
    L->core_remote.addr = sim->cfg.client_addr + (uint32_t)(n / 60000u);
    L->core_remote.port = (uint16_t)(1024u + n % 60000u);
    *out = peer_id(L);
    tr(sim, "client", L->idx, dst->port, 0);
    return 0;
}

static sim_server *server_at(sn_sim *sim, const sn_endpoint *ep)
{
    for (unsigned i = 0; i < sim->cfg.max_servers; i++) {
        sim_server *c = &sim->servers[i];
        if (c->used && c->ep.port == ep->port && c->ep.addr == ep->addr)
            return c;
    }
    return NULL;
}

int sn_sim_server_add(sn_sim *sim, const sn_endpoint *ep, const sn_sim_server_config *sc)
{
    if (ep == NULL || sc == NULL)
        return SN_EINVAL;
    sim_server *sv = server_at(sim, ep);
    for (unsigned i = 0; sv == NULL && i < sim->cfg.max_servers; i++)
        if (!sim->servers[i].used)
            sv = &sim->servers[i];
    if (sv == NULL)
        return SN_ENOSPC;
    if (!sv->used) {
        sv->head = sv->n = 0;
    }
    sv->used = true;
    sv->ep = *ep;
    sv->sc = *sc;
    tr(sim, "server-add", ep->port, (uint64_t)sc->mode, 0);
    return 0;
}

int sn_sim_server_remove(sn_sim *sim, const sn_endpoint *ep)
{
    sim_server *sv = ep ? server_at(sim, ep) : NULL;
    if (sv == NULL)
        return SN_ENOENT;
    /* peers it accepted and nobody took are released to run on their own */
    while (sv->n > 0) {
        sim_link *L = peer_link(sim, sv->q[sv->head]);
        sv->head = (sv->head + 1) % sim->cfg.server_queue;
        sv->n--;
        if (L) {
            L->peer_released = true;
            link_maybe_free(sim, L);
        }
    }
    sv->used = false;
    return 0;
}

int sn_sim_server_accept(sn_sim *sim, const sn_endpoint *ep, sn_sim_peer *out)
{
    sim_server *sv = ep ? server_at(sim, ep) : NULL;
    if (sv == NULL || out == NULL)
        return SN_ENOENT;
    while (sv->n > 0) {
        sn_sim_peer p = sv->q[sv->head];
        sv->head = (sv->head + 1) % sim->cfg.server_queue;
        sv->n--;
        if (peer_link(sim, p)) {
            *out = p;
            return 0;
        }
    }
    return SN_EAGAIN;
}

/* ---- Peers ------------------------------------------------------------- */

int sn_sim_peer_set_mode(sn_sim *sim, sn_sim_peer p, sn_sim_peer_mode mode, uint32_t expect)
{
    sim_link *L = peer_link(sim, p);
    if (L == NULL)
        return SN_ESTALE;
    if ((unsigned)mode > SN_SIM_PEER_BROWSER)
        return SN_EINVAL;
    bool was_silent = L->mode == SN_SIM_PEER_NO_ACK;
    L->mode = (uint8_t)mode;
    L->expect = expect;
    if (mode == SN_SIM_PEER_NO_ACK)
        L->e[1].ack_armed = false;
    else if (was_silent && L->e[1].rcv_nxt > 0 && !L->e[1].rst_sent && !L->e[1].rst_rcvd)
        arm_ack(sim, L, 1); /* acknowledge everything received so far */
    touch(sim, L);
    return 0;
}

int sn_sim_peer_send(sn_sim *sim, sn_sim_peer p, const void *buf, size_t len)
{
    sim_link *L = peer_link(sim, p);
    if (L == NULL)
        return SN_ESTALE;
    sim_end *X = &L->e[1];
    if (L->phase == PH_REFUSED && !L->peer_est)
        return SN_ECONNREFUSED;
    if (X->rst_sent || X->rst_rcvd)
        return SN_ECONNRESET;
    if (L->peer_closed)
        return SN_ECLOSED;
    uint64_t q = X->s_top - X->s_acked;
    size_t space = q >= X->scap ? 0 : (size_t)(X->scap - q);
    size_t n = len < space ? len : space;
    if (n > INT32_MAX)
        n = INT32_MAX;
    if (n > 0) {
        ring_put(X->sbuf, X->scap, X->s_top, buf, n);
        X->s_top += n;
        X->push_off = X->s_top;
        L->peer_sent += n;
        touch(sim, L);
    }
    tr(sim, "peer-send", L->idx, len, (int64_t)n);
    return (int)n;
}

int sn_sim_peer_read(sn_sim *sim, sn_sim_peer p, void *buf, size_t len)
{
    sim_link *L = peer_link(sim, p);
    if (L == NULL)
        return SN_ESTALE;
    sim_end *Y = &L->e[1];
    size_t n = take_rx(Y, buf, len);
    if (n > 0) {
        L->peer_read += n;
        touch(sim, L);
        tr(sim, "peer-read", L->idx, len, (int64_t)n);
        return (int)n;
    }
    if (L->phase == PH_REFUSED && !L->peer_est)
        return SN_ECONNREFUSED;
    if (Y->rst_rcvd || Y->rst_sent)
        return SN_ECONNRESET;
    if (Y->fin_rcvd)
        return SN_ECLOSED;
    return 0;
}

int sn_sim_peer_avail(const sn_sim *sim, sn_sim_peer p)
{
    const sim_link *L = peer_link(sim, p);
    if (L == NULL)
        return SN_ESTALE;
    uint64_t n = L->e[1].r_top - L->e[1].r_read;
    return n > INT32_MAX ? INT32_MAX : (int)n;
}

int sn_sim_peer_close(sn_sim *sim, sn_sim_peer p)
{
    sim_link *L = peer_link(sim, p);
    if (L == NULL)
        return SN_ESTALE;
    sim_end *X = &L->e[1];
    if (L->peer_closed)
        return 0;
    L->peer_closed = true;
    if (!X->rst_sent && !X->rst_rcvd) {
        X->fin_queued = true;
        X->push_off = X->s_top;
    }
    touch(sim, L);
    tr(sim, "peer-close", L->idx, 0, 0);
    return 0;
}

int sn_sim_peer_reset(sn_sim *sim, sn_sim_peer p)
{
    sim_link *L = peer_link(sim, p);
    if (L == NULL)
        return SN_ESTALE;
    if (L->phase == PH_SYN) {
        /* reset before the SYN even arrived: the attempt just vanishes */
        L->phase = PH_DEAD;
        L->reset = true;
        L->reset_by = SN_SIM_BY_PEER;
        L->e[1].rst_sent = true;
        tr(sim, "peer-reset", L->idx, 1, 0);
        return 0;
    }
    send_rst(sim, L, 1, SN_SIM_BY_PEER);
    return 0;
}

int sn_sim_peer_release(sn_sim *sim, sn_sim_peer p)
{
    sim_link *L = peer_link(sim, p);
    if (L == NULL)
        return SN_ESTALE;
    L->peer_released = true;
    tr(sim, "peer-release", L->idx, 0, 0);
    link_maybe_free(sim, L);
    if (L->used)
        touch(sim, L);
    return 0;
}

int sn_sim_peer_info(const sn_sim *sim, sn_sim_peer p, sn_sim_link_info *out)
{
    const sim_link *L = peer_link(sim, p);
    if (L == NULL || out == NULL)
        return SN_ESTALE;
    memset(out, 0, sizeof *out);
    const sim_end *X = &L->e[0];
    out->incoming = L->incoming;
    out->established = L->core_est || L->peer_est;
    out->refused = L->phase == PH_REFUSED;
    out->handed = L->handed;
    out->closed = L->closed;
    out->aborted = L->aborted;
    out->released = L->released;
    out->peer_saw_fin = L->e[1].fin_rcvd;
    out->core_saw_fin = L->e[0].fin_rcvd;
    out->peer_closed = L->peer_closed;
    out->reset = L->reset;
    out->reset_by = (sn_sim_by)L->reset_by;
    out->mode = (sn_sim_peer_mode)L->mode;
    out->close_calls = L->close_calls;
    out->abort_calls = L->abort_calls;
    out->release_calls = L->release_calls;
    out->unsent = (uint32_t)(X->s_top - X->s_tx);
    out->unacked = (uint32_t)(X->s_tx - X->s_acked);
    out->release_ms = L->release_ms;
    out->core_sent = L->core_sent;
    out->peer_received = L->peer_received;
    out->peer_read = L->peer_read;
    out->core_acked = L->core_acked;
    out->peer_sent = L->peer_sent;
    out->core_received = L->core_received;
    out->core_read = L->core_read;
    out->core_discarded = L->core_discarded;
    out->core_tx_hash = L->core_tx_hash;
    out->peer_rx_hash = L->peer_rx_hash;
    out->core_local = L->core_local;
    out->core_remote = L->core_remote;
    return 0;
}

sn_sim_peer sn_sim_peer_of(const sn_sim *sim, const sn_endpoint *core_local,
                           const sn_endpoint *core_remote)
{
    if (core_local == NULL || core_remote == NULL)
        return SN_SIM_PEER_NONE;
    for (unsigned i = 0; i < sim->links_hi; i++) {
        const sim_link *L = &sim->links[i];
        if (!L->used || L->peer_released)
            continue;
        if (L->core_remote.addr == core_remote->addr && L->core_remote.port == core_remote->port &&
            L->core_local.port == core_local->port &&
            (L->core_local.addr == core_local->addr || core_local->addr == 0 ||
             L->core_local.addr == 0))
            return peer_id(L);
    }
    return SN_SIM_PEER_NONE;
}

sn_sim_peer sn_sim_peer_of_handle(const sn_sim *sim, const void *ch)
{
    unsigned kind, idx;
    uint64_t gen;
    if (!split_handle(ch, &kind, &idx, &gen) || kind != H_CONN || idx >= sim->cfg.max_links)
        return SN_SIM_PEER_NONE;
    const sim_link *L = &sim->links[idx];
    if (!L->used || !L->handed || L->hgen != gen || L->peer_released)
        return SN_SIM_PEER_NONE;
    return peer_id(L);
}

/* ---- Accounting -------------------------------------------------------- */

const char *sn_sim_op_name(sn_sim_op op)
{
    static const char *const names[SN_SIM_OP_COUNT_] = {
        "now_ms", "clock_us", "wait", "listen", "unlisten", "listen_pause",
        "accept", "connect", "conn_state", "recv", "send", "tx_queued",
        "rx_avail", "tx_space", "close", "abort", "release",
    };
    return (unsigned)op < SN_SIM_OP_COUNT_ ? names[op] : "?";
}

void sn_sim_stats_get(const sn_sim *sim, sn_sim_stats *out) { *out = sim->st; }

uint64_t sn_sim_op_count(const sn_sim *sim, sn_sim_op op)
{
    return (unsigned)op < SN_SIM_OP_COUNT_ ? sim->st.ops[op] : 0;
}

size_t sn_sim_release_log(const sn_sim *sim, uint32_t *times, size_t max)
{
    uint64_t total = sim->st.handles_released;
    uint64_t kept = total < sim->cfg.release_log ? total : sim->cfg.release_log;
    size_t n = 0;
    for (uint64_t i = total - kept; i < total && n < max; i++)
        times[n++] = sim->rlog[i % sim->cfg.release_log];
    return n;
}

const char *sn_sim_misuse(const sn_sim *sim) { return sim->misuse[0] ? sim->misuse : NULL; }

uint64_t sn_sim_trace_hash(const sn_sim *sim) { return sim->trace_hash; }
