/*
 * The slot engine: slot table, state machine, listeners and backlog,
 * outgoing connects with backoff, close-pending drain, idle timeouts.
 *
 * No I/O and no clock reads here: the backend does both. Every transition
 * goes through set_state(), which asserts it is legal (see the diagram above
 * sn_state in slotnet.h). Events reach the owner only from sn_poll(), at
 * points where no other callback is running; API calls never emit events,
 * so an owner's handler never sees a slot change under its feet.
 */
#include <assert.h>
#include <string.h>

#include "core.h"

#define OPS(core) ((core)->be.ops)
#define CTX(core) ((core)->be.ctx)

/* ---- State machine ----------------------------------------------------- */

#define B(s) (1u << (s))
/* legal[from]: bit set for each state `from` may move to. */
static const uint32_t legal[8] = {
    [SN_FREE] = B(SN_ALLOCATED) | B(SN_CONNECTED),
    [SN_ALLOCATED] = B(SN_CONNECTING) | B(SN_ABORTED) | B(SN_FREE),
    [SN_CONNECTING] = B(SN_ALLOCATED) | B(SN_CONNECTED) | B(SN_ABORTED) | B(SN_FREE),
    [SN_CONNECTED] = B(SN_OTHER_END_CLOSED) | B(SN_CLOSE_PENDING) | B(SN_ABORTED) | B(SN_FREE),
    [SN_OTHER_END_CLOSED] = B(SN_CLOSE_PENDING) | B(SN_ABORTED) | B(SN_FREE),
    [SN_CLOSE_PENDING] = B(SN_FREE),
    [SN_ABORTED] = B(SN_FREE),
};

static bool counted(unsigned st)
{
    return st == SN_CONNECTED || st == SN_OTHER_END_CLOSED || st == SN_CLOSE_PENDING;
}

static void set_state(sn_core *core, sn_slot *s, sn_state to)
{
    unsigned from = s->state;
    assert(from < 8 && (legal[from] & B(to)) && "illegal slot transition");
    (void)legal; /* only the assert reads it */
    if (s->listener != SN_NO_LISTENER) {
        sn_listener *l = &core->listeners[s->listener];
        if (counted(from) && !counted(to)) {
            l->count--;
            core->want_serve = true; /* a place under the limit opened */
        } else if (!counted(from) && counted(to)) {
            l->count++;
        }
    }
    s->state = (uint8_t)to;
}

/* ---- Helpers ----------------------------------------------------------- */

static sn_id slot_id(const sn_core *core, const sn_slot *s)
{
    return (sn_id)((s->gen << 8) | (uint32_t)(s - core->slots));
}

static sn_slot *lookup(sn_core *core, sn_id id)
{
    unsigned idx = sn_id_index(id);
    if (core == NULL || !core->alive || idx >= core->cfg.slots)
        return NULL;
    sn_slot *s = &core->slots[idx];
    if (s->state == SN_FREE || s->gen != (id >> 8))
        return NULL;
    return s;
}

/* I/O restarts the idle timer, and forgets the queue seen at its deadline. */
static void mark_active(const sn_core *core, sn_slot *s)
{
    s->t_active = core->now;
    s->t_mark = SN_TX_UNSEEN;
}

static void emit(sn_core *core, sn_slot *s, sn_event ev, int info)
{
    if (core->cfg.on_event)
        core->cfg.on_event(core, slot_id(core, s), ev, info, core->cfg.user);
}

static void emit_id(sn_core *core, sn_id id, sn_event ev, int info)
{
    if (core->cfg.on_event)
        core->cfg.on_event(core, id, ev, info, core->cfg.user);
}

static sn_slot *free_slot(sn_core *core)
{
    for (unsigned i = 0; i < core->cfg.slots; i++)
        if (core->slots[i].state == SN_FREE)
            return &core->slots[i];
    return NULL;
}

static uint32_t clock_us(const sn_core *core)
{
    return OPS(core)->clock_us ? OPS(core)->clock_us(CTX(core)) : 0;
}

static void note_close_time(sn_core *core, uint32_t t0)
{
    uint32_t dt = clock_us(core) - t0;
    if (dt > core->stats.longest_close_us)
        core->stats.longest_close_us = dt;
}

/* Hand a finished backend handle to the release queue. */
static void drop_handle(sn_core *core, void *ch, bool rst)
{
    if (ch == NULL)
        return;
    uint32_t t0 = clock_us(core);
    if (rst)
        OPS(core)->abort(CTX(core), ch);
    else
        OPS(core)->close(CTX(core), ch);
    note_close_time(core, t0);
    sn__release_enqueue(core, ch);
}

/*
 * Free a slot. The handle is closed (FIN) or reset and queued for release;
 * the generation moves on so old handles go stale; the backlog is served at
 * the next safe point of the poll (this may run inside an owner's call).
 */
static void slot_free(sn_core *core, sn_slot *s, bool rst)
{
    drop_handle(core, s->ch, rst);
    s->ch = NULL;
    set_state(core, s, SN_FREE);
    s->listener = SN_NO_LISTENER;
    s->flags = 0;
    s->attempt = 0;
    s->idle_ms = 0;
    s->gen = (s->gen + 1u) & SN_GEN_MASK;
    if (s->gen == 0)
        s->gen = 1;
    core->want_serve = true;
}

/* Free from inside sn_poll, telling the owner why. */
static void slot_free_event(sn_core *core, sn_slot *s, bool rst, sn_free_reason why)
{
    sn_id id = slot_id(core, s);
    slot_free(core, s, rst);
    emit_id(core, id, SN_EV_FREED, (int)why);
}

/* An internal error: reset now, keep the slot until the owner acknowledges. */
static void slot_abort_internal(sn_core *core, sn_slot *s, int err)
{
    drop_handle(core, s->ch, true);
    s->ch = NULL;
    s->last_error = (int16_t)err;
    core->stats.aborted++;
    set_state(core, s, SN_ABORTED);
}

/* The peer is gone or finished: note it once, for the statistics. */
static void note_peer(sn_core *core, sn_slot *s, uint8_t flag)
{
    s->flags |= flag;
    if (!(s->flags & SN_SF_COUNTED) && s->state == SN_CONNECTED) {
        s->flags |= SN_SF_COUNTED;
        if (flag == SN_SF_RESET)
            core->stats.reset_by_peer++;
        else
            core->stats.peer_closed++;
    }
}

/* ---- Outgoing connects ------------------------------------------------- */

static sn_blocked *find_blocked(sn_core *core, const sn_endpoint *ep)
{
    for (unsigned i = 0; i < core->cfg.peer_block_entries; i++) {
        sn_blocked *b = &core->blocked[i];
        if (b->used && b->addr == ep->addr && b->port == ep->port) {
            if (sn_time_reached(core->now, b->until)) {
                b->used = 0; /* expired */
                return NULL;
            }
            return b;
        }
    }
    return NULL;
}

/* Forget expired blocks every pass, so no entry outlives the 2^31 ms in
 * which its deadline compares correctly. */
static void sweep_blocked(sn_core *core)
{
    for (unsigned i = 0; i < core->cfg.peer_block_entries; i++)
        if (core->blocked[i].used && sn_time_reached(core->now, core->blocked[i].until))
            core->blocked[i].used = 0;
}

static void block_peer(sn_core *core, const sn_endpoint *ep)
{
    if (core->cfg.peer_block_ms == 0 || core->cfg.peer_block_entries == 0)
        return;
    sn_blocked *victim = NULL;
    for (unsigned i = 0; i < core->cfg.peer_block_entries; i++) {
        sn_blocked *b = &core->blocked[i];
        if (b->used && b->addr == ep->addr && b->port == ep->port) {
            victim = b;
            break;
        }
        if (!b->used || sn_time_reached(core->now, b->until)) {
            if (victim == NULL || victim->used)
                victim = b;
        } else if (victim == NULL || (victim->used && sn_time_after(victim->until, b->until))) {
            victim = b; /* full: replace the entry that expires first */
        }
    }
    victim->used = 1;
    victim->addr = ep->addr;
    victim->port = ep->port;
    victim->until = core->now + core->cfg.peer_block_ms;
}

/* Backoff before retry n (0-based): base, 2 base, 4 base, then 8 base. */
static uint32_t backoff_ms(const sn_core *core, unsigned n)
{
    return core->cfg.connect_base_ms << (n < 3 ? n : 3);
}

/*
 * One attempt failed. The attempt is claimed here: its handle is reset and
 * queued for release, so a late success on it can never be seen.
 */
static void attempt_failed(sn_core *core, sn_slot *s, int err)
{
    drop_handle(core, s->ch, true);
    s->ch = NULL;
    s->last_error = (int16_t)err;
    if (s->attempt < core->cfg.connect_retries) {
        uint32_t delay = backoff_ms(core, s->attempt);
        s->attempt++;
        s->t_mark = core->now + delay;
        core->stats.connect_retries++;
        if (s->state != SN_ALLOCATED)
            set_state(core, s, SN_ALLOCATED);
        emit(core, s, SN_EV_CONNECT_RETRY, err);
    } else {
        core->stats.connect_failures++;
        block_peer(core, &s->remote);
        set_state(core, s, SN_ABORTED);
        emit(core, s, SN_EV_CONNECT_FAILED, err);
    }
}

static void start_attempt(sn_core *core, sn_slot *s)
{
    void *ch = NULL;
    int rc = OPS(core)->connect(CTX(core), &s->remote, &ch, &s->local);
    if (rc < 0 || ch == NULL) {
        attempt_failed(core, s, rc < 0 ? rc : SN_EIO);
        return;
    }
    s->ch = ch;
    s->t_mark = core->now;
    set_state(core, s, SN_CONNECTING);
}

/* ---- Listeners and the backlog ----------------------------------------- */

static void assign(sn_core *core, sn_slot *s, unsigned li, const sn_pending *p)
{
    sn_listener *l = &core->listeners[li];
    s->ch = p->ch;
    s->local = p->local;
    s->remote = p->remote;
    s->listener = (uint8_t)li;
    s->protocol = l->protocol;
    s->idle_ms = l->idle_ms;
    mark_active(core, s);
    s->flags = 0;
    s->last_error = 0;
    set_state(core, s, SN_CONNECTED);
    core->stats.accepted++;
    emit(core, s, SN_EV_ACCEPTED, 0);
}

static void reject(sn_core *core, void *ch)
{
    drop_handle(core, ch, true);
    core->stats.rejected++;
}

static void backlog_remove(sn_core *core, unsigned i)
{
    memmove(&core->backlog[i], &core->backlog[i + 1],
            (size_t)(core->bl_count - i - 1u) * sizeof(sn_pending));
    core->bl_count--;
    core->stats.backlog_now = core->bl_count;
}

static bool backlog_has(const sn_core *core, unsigned li)
{
    for (unsigned i = 0; i < core->bl_count; i++)
        if (core->backlog[i].listener == li)
            return true;
    return false;
}

/*
 * Give waiting connections the free slots, in arrival order; an entry whose
 * listener is at its limit is passed over, not in the way of other
 * listeners'. Restarts after each ACCEPTED event because the owner may have
 * changed anything from inside it.
 */
static void backlog_serve(sn_core *core)
{
    core->want_serve = false;
restart:
    for (unsigned i = 0; i < core->bl_count; i++) {
        sn_pending p = core->backlog[i];
        sn_listener *l = &core->listeners[p.listener];
        if (l->count >= l->max_conns)
            continue;
        sn_slot *s = free_slot(core);
        if (s == NULL)
            return;
        backlog_remove(core, i);
        assign(core, s, p.listener, &p);
        goto restart;
    }
}

static void backlog_expire(sn_core *core)
{
    /* Arrival order means the oldest is first. */
    while (core->bl_count > 0 &&
           sn_time_reached(core->now, core->backlog[0].since + core->cfg.backlog_timeout_ms)) {
        void *ch = core->backlog[0].ch;
        backlog_remove(core, 0);
        reject(core, ch);
    }
}

static void place(sn_core *core, unsigned li, const sn_pending *p)
{
    sn_listener *l = &core->listeners[li];
    if (!backlog_has(core, li) && l->count < l->max_conns) {
        sn_slot *s = free_slot(core);
        if (s != NULL) {
            assign(core, s, li, p);
            return;
        }
    }
    if (core->bl_count < core->cfg.backlog_max) {
        core->backlog[core->bl_count++] = *p;
        core->stats.backlog_now = core->bl_count;
        if (core->bl_count > core->stats.backlog_peak)
            core->stats.backlog_peak = core->bl_count;
        return;
    }
    reject(core, p->ch);
}

static void accept_all(sn_core *core)
{
    unsigned budget = core->cfg.max_accepts_per_poll;
    /* Start one listener further each pass: a flood on one port must not
     * starve the others of the shared budget. */
    unsigned first = core->accept_next++ % SN_MAX_LISTENERS;
    for (unsigned k = 0; k < SN_MAX_LISTENERS && budget > 0; k++) {
        unsigned li = (first + k) % SN_MAX_LISTENERS;
        sn_listener *l = &core->listeners[li];
        if (!l->active)
            continue;
        if (l->paused) {
            if (!sn_time_reached(core->now, l->paused_until))
                continue;
            l->paused = 0;
            OPS(core)->listen_pause(CTX(core), l->lh, false);
        }
        while (budget > 0 && l->active) {
            sn_pending p = {.since = core->now, .listener = (uint8_t)li};
            int rc = OPS(core)->accept(CTX(core), l->lh, &p.ch, &p.local, &p.remote);
            if (rc == SN_EAGAIN)
                break;
            if (rc < 0 || p.ch == NULL) {
                /* Out of descriptors, memory or handles: pause instead of
                 * spinning on a queue we cannot drain now. */
                if (rc == SN_EMFILE)
                    core->stats.emfile_events++;
                else
                    core->stats.accept_errors++;
                l->paused = 1;
                l->paused_until = core->now + core->cfg.accept_pause_ms;
                OPS(core)->listen_pause(CTX(core), l->lh, true);
                break;
            }
            budget--;
            place(core, li, &p);
        }
    }
}

static sn_listener *find_listener(sn_core *core, uint16_t port, unsigned *index)
{
    for (unsigned i = 0; i < SN_MAX_LISTENERS; i++) {
        if (core->listeners[i].active && core->listeners[i].local.port == port) {
            *index = i;
            return &core->listeners[i];
        }
    }
    return NULL;
}

static void listener_stop(sn_core *core, unsigned li)
{
    sn_listener *l = &core->listeners[li];
    OPS(core)->unlisten(CTX(core), l->lh);
    l->lh = NULL;
    l->active = 0;
    l->count = 0;
    /* Live connections run on without their listener: drop the reference
     * now, so nothing ever reaches a stopped (and perhaps reused) entry. */
    for (unsigned i = 0; i < core->cfg.slots; i++)
        if (core->slots[i].listener == li)
            core->slots[i].listener = SN_NO_LISTENER;
    for (unsigned i = 0; i < core->bl_count;) {
        if (core->backlog[i].listener == li) {
            void *ch = core->backlog[i].ch;
            backlog_remove(core, i);
            reject(core, ch);
        } else {
            i++;
        }
    }
}

int sn_listen(sn_core *core, const sn_endpoint *local, uint8_t protocol, uint8_t max_conns,
              uint32_t idle_ms)
{
    if (core == NULL || !core->alive || local == NULL || local->port == 0 || idle_ms > SN_TIME_MAX)
        return SN_EINVAL;
    unsigned li;
    sn_listener *l = find_listener(core, local->port, &li);
    if (max_conns == 0) {
        if (l == NULL)
            return SN_ENOENT;
        listener_stop(core, li);
        return SN_OK;
    }
    if (l == NULL) {
        for (li = 0; li < SN_MAX_LISTENERS; li++)
            if (!core->listeners[li].active)
                break;
        if (li == SN_MAX_LISTENERS)
            return SN_ENOSPC;
        l = &core->listeners[li];
        void *lh = NULL;
        int rc = OPS(core)->listen(CTX(core), local, &lh);
        if (rc < 0)
            return rc;
        memset(l, 0, sizeof(*l));
        l->lh = lh;
        l->local = *local;
        l->active = 1;
    }
    l->protocol = protocol;
    l->max_conns = max_conns;
    l->idle_ms = idle_ms;
    core->want_serve = true; /* a raised limit may let waiting ones in */
    return SN_OK;
}

/* ---- Per-slot work in sn_poll ------------------------------------------ */

static void poll_connecting(sn_core *core, sn_slot *s)
{
    sn_bconn_state st = {0, 0};
    OPS(core)->conn_state(CTX(core), s->ch, &st);
    if (st.flags & (SN_BF_FAILED | SN_BF_RESET | SN_BF_ERROR)) {
        attempt_failed(core, s, st.error < 0 ? st.error : SN_ECONNREFUSED);
    } else if (st.flags & SN_BF_CONNECTED) {
        mark_active(core, s);
        s->attempt = 0;
        s->last_error = 0;
        core->stats.connects++;
        set_state(core, s, SN_CONNECTED);
        emit(core, s, SN_EV_CONNECTED, 0);
    } else if (sn_time_reached(core->now, s->t_mark + core->cfg.connect_timeout_ms)) {
        attempt_failed(core, s, SN_ETIMEDOUT);
    }
}

static void poll_open(sn_core *core, sn_slot *s)
{
    sn_id id = slot_id(core, s);
    sn_bconn_state st = {0, 0};
    OPS(core)->conn_state(CTX(core), s->ch, &st);
    if (st.flags & SN_BF_ERROR) {
        slot_abort_internal(core, s, st.error < 0 ? st.error : SN_EIO);
        emit(core, s, SN_EV_ABORTED, s->last_error);
        return;
    }
    if (st.flags & SN_BF_RESET)
        note_peer(core, s, SN_SF_RESET);
    if (st.flags & SN_BF_PEER_FIN)
        note_peer(core, s, SN_SF_PEER_FIN);

    if (s->state == SN_CONNECTED && (s->flags & (SN_SF_RESET | SN_SF_PEER_FIN))) {
        /* Other-end-closed only once the input is read (a reset stack may
         * still hold data, as lwIP's pbuf queue does). */
        int avail = OPS(core)->rx_avail(CTX(core), s->ch);
        if (avail <= 0) {
            set_state(core, s, SN_OTHER_END_CLOSED);
            emit(core, s, SN_EV_PEER_CLOSED, (s->flags & SN_SF_RESET) ? SN_ECONNRESET : 0);
        } else {
            emit(core, s, SN_EV_READABLE, 0); /* the rest must be read first */
        }
    } else if (s->state == SN_CONNECTED && (st.flags & SN_BF_READABLE)) {
        emit(core, s, SN_EV_READABLE, 0);
    }
    /* The owner may have closed or freed the slot in its handler. */
    if (lookup(core, id) != s)
        return;
    /* A reset also answers a waiting writer: its next write says so. After
     * an out-of-memory send, the next pass retries whatever the stack says. */
    if ((s->flags & SN_SF_WANT_WRITE) &&
        ((st.flags & (SN_BF_WRITABLE | SN_BF_RESET)) || (s->flags & SN_SF_RETRY)) &&
        (s->state == SN_CONNECTED || s->state == SN_OTHER_END_CLOSED)) {
        s->flags &= (uint8_t)~(SN_SF_WANT_WRITE | SN_SF_RETRY);
        emit(core, s, SN_EV_WRITABLE, 0);
        if (lookup(core, id) != s)
            return;
    }
    if ((s->state == SN_CONNECTED || s->state == SN_OTHER_END_CLOSED) && s->idle_ms != 0 &&
        sn_time_reached(core->now, s->t_active + s->idle_ms)) {
        /* Not idle while the peer still takes what was written: on a slow
         * link a full send buffer drains for longer than idle_ms without
         * the owner writing. Progress is less queued than at the previous
         * deadline, so a peer that stopped acknowledging goes at the next. */
        uint32_t unsent = 0, unacked = 0;
        if (!(s->flags & SN_SF_RESET) &&
            OPS(core)->tx_queued(CTX(core), s->ch, &unsent, &unacked) == SN_OK) {
            uint32_t q = unsent + unacked;
            if (q > 0 && q < s->t_mark) {
                s->t_mark = q;
                s->t_active = core->now;
                return;
            }
        }
        core->stats.idle_timeouts++;
        slot_free_event(core, s, true, SN_FREED_IDLE);
    }
}

/*
 * The close that never blocks, second half: free the slot as soon as the
 * peer is gone, or everything (unsent and unacknowledged) is delivered, or
 * the timeout passes. Always to FREE, never to ABORTED (seed bug 4).
 */
static void poll_close_pending(sn_core *core, sn_slot *s)
{
    sn_bconn_state st = {0, 0};
    OPS(core)->conn_state(CTX(core), s->ch, &st);
    if (st.flags & (SN_BF_RESET | SN_BF_ERROR | SN_BF_PEER_FIN)) {
        core->stats.closed_peer++;
        slot_free_event(core, s, (st.flags & SN_BF_ERROR) != 0, SN_FREED_PEER);
        return;
    }
    uint32_t unsent = 0, unacked = 0;
    int rc = OPS(core)->tx_queued(CTX(core), s->ch, &unsent, &unacked);
    if (rc == 0 && unsent == 0 && unacked == 0) {
        core->stats.closed_graceful++;
        slot_free_event(core, s, false, SN_FREED_GRACEFUL);
    } else if (rc < 0 && rc != SN_EAGAIN) {
        core->stats.closed_peer++; /* the stack no longer knows it */
        slot_free_event(core, s, true, SN_FREED_PEER);
    } else if (sn_time_reached(core->now, s->t_mark + core->cfg.close_timeout_ms)) {
        core->stats.closed_timeout++;
        slot_free_event(core, s, true, SN_FREED_TIMEOUT);
    }
}

static void poll_slot(sn_core *core, sn_slot *s)
{
    switch (s->state) {
    case SN_ALLOCATED:
        /* The first attempt is due at the first pass after sn_connect(),
         * whatever time the owner last saw. */
        if (s->attempt == 0 || sn_time_reached(core->now, s->t_mark))
            start_attempt(core, s);
        break;
    case SN_CONNECTING:
        poll_connecting(core, s);
        break;
    case SN_CONNECTED:
    case SN_OTHER_END_CLOSED:
        poll_open(core, s);
        break;
    case SN_CLOSE_PENDING:
        poll_close_pending(core, s);
        break;
    default: /* FREE, ABORTED: nothing to do until the owner acts */
        break;
    }
}

void sn_poll(sn_core *core, uint32_t now_ms)
{
    assert(core != NULL && core->alive && !core->in_poll);
    if (core == NULL || !core->alive || core->in_poll)
        return;
    uint32_t t0 = clock_us(core);
    core->in_poll = true;
    core->now = now_ms;

    for (unsigned i = 0; i < core->cfg.slots; i++) {
        poll_slot(core, &core->slots[i]);
        if (core->want_serve)
            backlog_serve(core); /* a freed slot goes to the next in line now */
    }
    backlog_expire(core);
    if (core->want_serve)
        backlog_serve(core);
    accept_all(core);
    if (core->want_serve)
        backlog_serve(core);
    sn__release_run(core);
    sweep_blocked(core);

    core->in_poll = false;
    core->stats.poll_passes++;
    if (OPS(core)->clock_us) {
        uint32_t dt = clock_us(core) - t0;
        if (dt > core->stats.longest_poll_us)
            core->stats.longest_poll_us = dt;
        unsigned b = 0;
        while (b + 1 < SN_POLL_HIST_BUCKETS && dt > sn_poll_hist_bound(b))
            b++;
        core->stats.poll_hist[b]++;
    }
}

uint32_t sn_poll_hist_bound(unsigned i)
{
    static const uint32_t bound[SN_POLL_HIST_BUCKETS - 1] = {10,   50,   100,  250,  500,
                                                             1000, 2000, 5000, 10000};
    return i < SN_POLL_HIST_BUCKETS - 1 ? bound[i] : UINT32_MAX;
}

static uint32_t min_wait(uint32_t cur, uint32_t now, uint32_t deadline)
{
    if (sn_time_reached(now, deadline))
        return 0;
    uint32_t d = deadline - now;
    return d < cur ? d : cur;
}

uint32_t sn_next_timeout(const sn_core *core, uint32_t now, uint32_t max_ms)
{
    uint32_t t = max_ms;
    if (core == NULL || !core->alive)
        return t;
    if (core->want_serve)
        return 0;
    for (unsigned i = 0; i < core->cfg.slots; i++) {
        const sn_slot *s = &core->slots[i];
        switch (s->state) {
        case SN_ALLOCATED:
            t = s->attempt == 0 ? 0 : min_wait(t, now, s->t_mark);
            break;
        case SN_CONNECTING:
            t = min_wait(t, now, s->t_mark + core->cfg.connect_timeout_ms);
            break;
        case SN_CONNECTED:
        case SN_OTHER_END_CLOSED:
            if (s->idle_ms)
                t = min_wait(t, now, s->t_active + s->idle_ms);
            if ((s->flags & SN_SF_RETRY) && core->cfg.drain_poll_ms < t)
                t = core->cfg.drain_poll_ms;
            break;
        case SN_CLOSE_PENDING:
            /* The stack raises no event when its queues drain: poll. */
            if (core->cfg.drain_poll_ms < t)
                t = core->cfg.drain_poll_ms;
            t = min_wait(t, now, s->t_mark + core->cfg.close_timeout_ms);
            break;
        default:
            break;
        }
    }
    if (core->bl_count > 0)
        t = min_wait(t, now, core->backlog[0].since + core->cfg.backlog_timeout_ms);
    if (core->rq_count > 0)
        t = min_wait(t, now, sn__release_next(core));
    for (unsigned i = 0; i < SN_MAX_LISTENERS; i++)
        if (core->listeners[i].active && core->listeners[i].paused)
            t = min_wait(t, now, core->listeners[i].paused_until);
    return t;
}

/* ---- Connections: the owner's calls ------------------------------------ */

int sn_connect(sn_core *core, const sn_endpoint *remote, uint8_t protocol, uint32_t idle_ms,
               sn_id *out)
{
    if (core == NULL || !core->alive || remote == NULL || remote->port == 0 || out == NULL ||
        idle_ms > SN_TIME_MAX)
        return SN_EINVAL;
    if (find_blocked(core, remote) != NULL)
        return SN_EBLOCKED;
    sn_slot *s = free_slot(core); /* never waits: busy is an answer */
    if (s == NULL)
        return SN_EBUSY;
    s->remote = *remote;
    s->local = (sn_endpoint){0, 0};
    s->protocol = protocol;
    s->idle_ms = idle_ms;
    s->listener = SN_NO_LISTENER;
    s->flags = 0;
    s->attempt = 0;
    s->last_error = 0;
    s->t_mark = core->now; /* the first attempt starts at the next poll */
    set_state(core, s, SN_ALLOCATED);
    *out = slot_id(core, s);
    return SN_OK;
}

int sn_read(sn_core *core, sn_id id, void *buf, size_t len)
{
    sn_slot *s = lookup(core, id);
    if (s == NULL)
        return SN_ESTALE;
    if (s->state != SN_CONNECTED && s->state != SN_OTHER_END_CLOSED)
        return SN_ESTATE;
    if (buf == NULL && len > 0)
        return SN_EINVAL;
    if (len > INT32_MAX)
        len = INT32_MAX;
    int rc = OPS(core)->recv(CTX(core), s->ch, buf, len);
    if (rc > 0) {
        mark_active(core, s);
        return rc;
    }
    switch (rc) {
    case 0:
    case SN_EAGAIN:
    case SN_ETIMEDOUT: /* a timeout is not an error */
    case SN_ENOMEM:
        if (!(s->flags & (SN_SF_PEER_FIN | SN_SF_RESET)))
            return 0;
        break;
    case SN_ECLOSED:
        note_peer(core, s, SN_SF_PEER_FIN);
        break;
    case SN_ECONNRESET:
        note_peer(core, s, SN_SF_RESET);
        break;
    default:
        slot_abort_internal(core, s, rc);
        return rc;
    }
    if (s->state == SN_CONNECTED)
        set_state(core, s, SN_OTHER_END_CLOSED);
    return (s->flags & SN_SF_RESET) ? SN_ECONNRESET : SN_ECLOSED;
}

/* Errors that mean the connection is gone, not that we failed: the stack
 * aborted it, the peer reset it, or its retransmissions timed out. */
static bool conn_gone(int rc)
{
    return rc == SN_ECONNRESET || rc == SN_ECLOSED || rc == SN_ETIMEDOUT || rc == SN_EUNREACH;
}

static void begin_close(sn_core *core, sn_slot *s)
{
    s->t_mark = core->now;
    set_state(core, s, SN_CLOSE_PENDING);
}

int sn_write(sn_core *core, sn_id id, const void *buf, size_t len, unsigned flags)
{
    sn_slot *s = lookup(core, id);
    if (s == NULL)
        return SN_ESTALE;
    if (s->state != SN_CONNECTED && s->state != SN_OTHER_END_CLOSED)
        return SN_ESTATE;
    if (s->flags & SN_SF_RESET)
        return SN_ECONNRESET;
    if ((buf == NULL && len > 0) || (flags & ~(SN_WRITE_PUSH | SN_WRITE_CLOSE_AFTER)))
        return SN_EINVAL;
    if (len > INT32_MAX)
        len = INT32_MAX;
    /* One call into the stack: no progress means "try later", never a spin. */
    int rc = OPS(core)->send(CTX(core), s->ch, buf, len, (flags & SN_WRITE_PUSH) != 0);
    if (rc == SN_ENOMEM)
        s->flags |= SN_SF_RETRY; /* no event may come: retry from the timer */
    if (rc == SN_EAGAIN || rc == SN_ENOMEM)
        rc = 0;
    if (rc < 0) {
        if (conn_gone(rc)) {
            note_peer(core, s, SN_SF_RESET);
            s->last_error = (int16_t)rc;
            if (s->state == SN_CONNECTED)
                set_state(core, s, SN_OTHER_END_CLOSED);
            return SN_ECONNRESET;
        }
        slot_abort_internal(core, s, rc);
        return rc;
    }
    if (rc > 0) {
        mark_active(core, s);
    }
    if ((size_t)rc < len) {
        s->flags |= SN_SF_WANT_WRITE;
        core->stats.write_retryable++;
    } else if (flags & SN_WRITE_CLOSE_AFTER) {
        begin_close(core, s);
    }
    return rc;
}

static int close_slot(sn_core *core, sn_slot *s, sn_id id);

int sn_close(sn_core *core, sn_id id)
{
    sn_slot *s = lookup(core, id);
    if (s == NULL)
        return SN_ESTALE;
    uint32_t t0 = clock_us(core); /* the seed's close blocked for up to 2 s: measure ours */
    int rc = close_slot(core, s, id);
    note_close_time(core, t0);
    return rc;
}

static int close_slot(sn_core *core, sn_slot *s, sn_id id)
{
    switch (s->state) {
    case SN_CONNECTED:
    case SN_OTHER_END_CLOSED:
        if (s->flags & SN_SF_RESET) {
            slot_free(core, s, false); /* nothing left to deliver */
            return SN_OK;
        }
        begin_close(core, s); /* constant time: sn_poll does the rest */
        return SN_OK;
    case SN_CLOSE_PENDING:
        return SN_OK;
    default: /* allocated, connecting, aborted: cancel or acknowledge */
        return sn_terminate(core, id);
    }
}

int sn_terminate(sn_core *core, sn_id id)
{
    sn_slot *s = lookup(core, id);
    if (s == NULL)
        return SN_ESTALE;
    core->stats.terminated++;
    slot_free(core, s, true);
    return SN_OK;
}

/* ---- Status ------------------------------------------------------------ */

unsigned sn_slot_count(const sn_core *core) { return core ? core->cfg.slots : 0; }

sn_id sn_slot_id(const sn_core *core, unsigned index)
{
    if (core == NULL || index >= core->cfg.slots || core->slots[index].state == SN_FREE)
        return SN_ID_NONE;
    return slot_id(core, &core->slots[index]);
}

sn_state sn_slot_state(const sn_core *core, unsigned index)
{
    if (core == NULL || index >= core->cfg.slots)
        return SN_FREE;
    return (sn_state)core->slots[index].state;
}

int sn_slot_status_get(sn_core *core, unsigned index, sn_slot_status *st)
{
    if (core == NULL || st == NULL || index >= core->cfg.slots)
        return SN_EINVAL;
    const sn_slot *s = &core->slots[index];
    memset(st, 0, sizeof(*st));
    st->state = (sn_state)s->state;
    if (s->state == SN_FREE)
        return SN_OK;
    st->id = slot_id(core, s);
    st->protocol = s->protocol;
    st->local = s->local;
    st->remote = s->remote;
    st->last_error = s->last_error;
    /* Only a live, unreset handle is asked (the seed's CanWrite() crash). */
    if (s->ch != NULL && !(s->flags & SN_SF_RESET) &&
        (s->state == SN_CONNECTED || s->state == SN_OTHER_END_CLOSED)) {
        int r = OPS(core)->rx_avail(CTX(core), s->ch);
        int w = OPS(core)->tx_space(CTX(core), s->ch);
        st->readable = r > 0 ? (uint32_t)r : 0;
        st->write_space = w > 0 ? (uint32_t)w : 0;
    }
    return SN_OK;
}

int sn_slot_tx_queued(sn_core *core, sn_id id, uint32_t *unsent, uint32_t *unacked)
{
    sn_slot *s = lookup(core, id);
    if (s == NULL)
        return SN_ESTALE;
    if (unsent == NULL || unacked == NULL)
        return SN_EINVAL;
    *unsent = *unacked = 0;
    if (s->ch == NULL || (s->flags & SN_SF_RESET))
        return SN_OK; /* nothing can be delivered any more */
    return OPS(core)->tx_queued(CTX(core), s->ch, unsent, unacked);
}

void sn_bitmaps(const sn_core *core, uint32_t *connected, uint32_t *closed_or_aborted)
{
    uint32_t c = 0, x = 0;
    for (unsigned i = 0; core != NULL && i < core->cfg.slots; i++) {
        unsigned st = core->slots[i].state;
        if (st == SN_CONNECTED)
            c |= 1u << i;
        else if (st == SN_OTHER_END_CLOSED || st == SN_ABORTED)
            x |= 1u << i;
    }
    if (connected)
        *connected = c;
    if (closed_or_aborted)
        *closed_or_aborted = x;
}

const sn_stats *sn_stats_get(const sn_core *core) { return core ? &core->stats : NULL; }

/* ---- Life cycle -------------------------------------------------------- */

void sn_config_default(sn_config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->slots = SN_DEFAULT_SLOTS;
    cfg->backlog_max = SN_DEFAULT_BACKLOG_MAX;
    cfg->backlog_timeout_ms = SN_DEFAULT_BACKLOG_TIMEOUT_MS;
    cfg->close_timeout_ms = SN_DEFAULT_CLOSE_TIMEOUT_MS;
    cfg->drain_poll_ms = SN_DEFAULT_DRAIN_POLL_MS;
    cfg->max_accepts_per_poll = SN_DEFAULT_MAX_ACCEPTS_PER_POLL;
    cfg->accept_pause_ms = SN_DEFAULT_ACCEPT_PAUSE_MS;
    cfg->connect_retries = SN_DEFAULT_CONNECT_RETRIES;
    cfg->connect_base_ms = SN_DEFAULT_CONNECT_BASE_MS;
    cfg->connect_timeout_ms = SN_DEFAULT_CONNECT_TIMEOUT_MS;
    cfg->peer_block_ms = SN_DEFAULT_PEER_BLOCK_MS;
    cfg->peer_block_entries = SN_DEFAULT_PEER_BLOCK_ENTRIES;
    cfg->release_delay_ms = SN_DEFAULT_RELEASE_DELAY_MS;
    cfg->release_spacing_ms = SN_DEFAULT_RELEASE_SPACING_MS;
    cfg->release_max_per_poll = SN_DEFAULT_RELEASE_MAX_PER_POLL;
    cfg->release_queue = SN_DEFAULT_RELEASE_QUEUE;
}

static bool config_valid(const sn_config *c)
{
    return c->slots >= 1 && c->slots <= SN_MAX_SLOTS && c->close_timeout_ms >= 1 &&
           c->close_timeout_ms <= SN_TIME_MAX && c->backlog_timeout_ms <= SN_TIME_MAX &&
           c->drain_poll_ms >= 1 && c->drain_poll_ms <= SN_TIME_MAX &&
           c->accept_pause_ms >= 1 && c->accept_pause_ms <= SN_TIME_MAX &&
           c->connect_timeout_ms >= 1 && c->connect_timeout_ms <= SN_TIME_MAX &&
           c->peer_block_ms <= SN_TIME_MAX && c->release_delay_ms <= SN_TIME_MAX &&
           c->release_spacing_ms <= SN_TIME_MAX && c->release_queue >= 1 &&
           c->release_max_per_poll >= 1 && c->max_accepts_per_poll >= 1;
}

#define ALIGN8(n) (((n) + 7u) & ~(size_t)7u)

size_t sn_core_size(const sn_config *cfg)
{
    if (cfg == NULL || !config_valid(cfg))
        return 0;
    return ALIGN8(sizeof(sn_core)) + ALIGN8(cfg->slots * sizeof(sn_slot)) +
           ALIGN8(cfg->backlog_max * sizeof(sn_pending)) +
           ALIGN8(cfg->release_queue * sizeof(sn_release)) +
           ALIGN8(cfg->peer_block_entries * sizeof(sn_blocked));
}

int sn_core_init(sn_core **out, void *mem, size_t len, const sn_config *cfg, sn_backend be)
{
    if (out == NULL || mem == NULL || cfg == NULL || be.ops == NULL || ((uintptr_t)mem & 7u))
        return SN_EINVAL;
    size_t need = sn_core_size(cfg);
    if (need == 0 || len < need)
        return SN_EINVAL;
    const sn_backend_ops *o = be.ops;
    if (!o->listen || !o->unlisten || !o->listen_pause || !o->accept || !o->connect ||
        !o->conn_state || !o->recv || !o->send || !o->tx_queued || !o->rx_avail ||
        !o->tx_space || !o->close || !o->abort || !o->release)
        return SN_EINVAL;
    memset(mem, 0, need);
    unsigned char *p = mem;
    sn_core *core = (sn_core *)(void *)p;
    p += ALIGN8(sizeof(sn_core));
    core->cfg = *cfg;
    /* painlessMesh's clamps: at most 10 retries, base 50..60000 ms. */
    if (core->cfg.connect_retries > SN_CONNECT_RETRIES_MAX)
        core->cfg.connect_retries = SN_CONNECT_RETRIES_MAX;
    if (core->cfg.connect_base_ms < SN_CONNECT_BASE_MIN_MS)
        core->cfg.connect_base_ms = SN_CONNECT_BASE_MIN_MS;
    if (core->cfg.connect_base_ms > SN_CONNECT_BASE_MAX_MS)
        core->cfg.connect_base_ms = SN_CONNECT_BASE_MAX_MS;
    core->be = be;
    core->slots = (sn_slot *)(void *)p;
    p += ALIGN8(cfg->slots * sizeof(sn_slot));
    core->backlog = (sn_pending *)(void *)p;
    p += ALIGN8(cfg->backlog_max * sizeof(sn_pending));
    core->rq = (sn_release *)(void *)p;
    p += ALIGN8(cfg->release_queue * sizeof(sn_release));
    core->blocked = (sn_blocked *)(void *)p;
    for (unsigned i = 0; i < cfg->slots; i++) {
        core->slots[i].gen = 1;
        core->slots[i].listener = SN_NO_LISTENER;
    }
    core->alive = true;
    *out = core;
    return SN_OK;
}

void sn_core_shutdown(sn_core *core)
{
    if (core == NULL || !core->alive)
        return;
    for (unsigned i = 0; i < SN_MAX_LISTENERS; i++)
        if (core->listeners[i].active)
            listener_stop(core, i); /* resets its waiting connections */
    for (unsigned i = 0; i < core->cfg.slots; i++)
        if (core->slots[i].state != SN_FREE)
            slot_free(core, &core->slots[i], true);
    sn__release_all(core);
    core->want_serve = false;
    core->alive = false;
}

/* ---- Invariants -------------------------------------------------------- */

#include <stdio.h>
#define FAIL(...)                                                                                  \
    do {                                                                                           \
        if (why && len)                                                                            \
            snprintf(why, len, __VA_ARGS__);                                                       \
        return SN_EIO;                                                                             \
    } while (0)

static bool handle_seen(const sn_core *core, const void *ch, unsigned upto_slot)
{
    for (unsigned j = 0; j < upto_slot; j++)
        if (core->slots[j].ch == ch)
            return true;
    return false;
}

int sn_check(const sn_core *core, char *why, size_t len)
{
    if (core == NULL || !core->alive)
        FAIL("core not initialised");
    unsigned per_listener[SN_MAX_LISTENERS] = {0};
    for (unsigned i = 0; i < core->cfg.slots; i++) {
        const sn_slot *s = &core->slots[i];
        unsigned st = s->state;
        if (st > 7 || st == 6)
            FAIL("slot %u: bad state %u", i, st);
        if (s->gen == 0 || s->gen > SN_GEN_MASK)
            FAIL("slot %u: bad generation %u", i, (unsigned)s->gen);
        bool needs = st == SN_CONNECTING || counted(st);
        if (needs && s->ch == NULL)
            FAIL("slot %u (%s): no backend handle", i, sn_state_name((sn_state)st));
        if (!needs && s->ch != NULL)
            FAIL("slot %u (%s): holds a backend handle", i, sn_state_name((sn_state)st));
        if (s->ch && handle_seen(core, s->ch, i))
            FAIL("slot %u: handle shared with another slot", i);
        if (st == SN_FREE && s->listener != SN_NO_LISTENER)
            FAIL("slot %u: free but tied to listener %u", i, s->listener);
        if (s->listener != SN_NO_LISTENER) {
            if (s->listener >= SN_MAX_LISTENERS || !core->listeners[s->listener].active)
                FAIL("slot %u: tied to inactive listener %u", i, s->listener);
            if (counted(st))
                per_listener[s->listener]++;
        }
        if (st == SN_CLOSE_PENDING && (uint32_t)(core->now - s->t_mark) > core->cfg.close_timeout_ms)
            FAIL("slot %u: close pending %u ms, past the %u ms timeout", i,
                 (unsigned)(core->now - s->t_mark), (unsigned)core->cfg.close_timeout_ms);
        if (st == SN_CONNECTING &&
            (uint32_t)(core->now - s->t_mark) > core->cfg.connect_timeout_ms)
            FAIL("slot %u: connecting past the connect timeout", i);
    }
    for (unsigned li = 0; li < SN_MAX_LISTENERS; li++) {
        const sn_listener *l = &core->listeners[li];
        if (l->active && l->count != per_listener[li])
            FAIL("listener %u: count %u but %u slots", li, l->count, per_listener[li]);
        if (!l->active && per_listener[li])
            FAIL("stopped listener %u still has slots", li);
    }
    if (core->bl_count > core->cfg.backlog_max)
        FAIL("backlog %u over its limit %u", core->bl_count, core->cfg.backlog_max);
    for (unsigned i = 0; i < core->bl_count; i++) {
        const sn_pending *p = &core->backlog[i];
        if (p->ch == NULL || p->listener >= SN_MAX_LISTENERS || !core->listeners[p->listener].active)
            FAIL("backlog entry %u: no handle or no listener", i);
        if (handle_seen(core, p->ch, core->cfg.slots))
            FAIL("backlog entry %u: handle also in a slot", i);
        if (i > 0 && sn_time_after(core->backlog[i - 1].since, p->since))
            FAIL("backlog out of arrival order at %u", i);
        if ((uint32_t)(core->now - p->since) > core->cfg.backlog_timeout_ms)
            FAIL("backlog entry %u waited past the backlog timeout", i);
    }
    if (core->rq_count > core->cfg.release_queue)
        FAIL("release queue over capacity");
    for (unsigned k = 0; k < core->rq_count; k++) {
        const sn_release *r = &core->rq[(core->rq_head + k) % core->cfg.release_queue];
        if (r->ch == NULL || handle_seen(core, r->ch, core->cfg.slots))
            FAIL("release entry %u: missing handle or still in a slot", k);
        if ((uint32_t)(r->due - core->now) > core->cfg.release_delay_ms &&
            !sn_time_reached(core->now, r->due))
            FAIL("release entry %u due beyond the release delay", k);
        if (k > 0) {
            const sn_release *q = &core->rq[(core->rq_head + k - 1) % core->cfg.release_queue];
            if (sn_time_after(q->due, r->due))
                FAIL("release entries %u,%u out of order", k - 1, k);
        }
    }
    return SN_OK;
}
