/* The device side of the link: request frames in, core calls, reply frames
 * out. See include/slotnet/device.h and docs/link-protocol.md. */
#include "slotnet/device.h"

#include <string.h>

/* ---- What the table looks like now ----------------------------------- */

static uint16_t bit(unsigned i) { return (uint16_t)(1u << i); }

/* Slot i's bits in v (whose other slots are left alone) as st tells them:
 * everything but in_use and the handle. */
static void view_bits(sn_dev_view *v, unsigned i, const sn_slot_status *st)
{
    uint16_t b = bit(i), m = (uint16_t)~b;
    v->connected &= m, v->closed &= m;
    v->readable &= m, v->writable &= m, v->aborted &= m;
    if (st->state == SN_FREE)
        return;
    bool open = st->state == SN_CONNECTED || st->state == SN_OTHER_END_CLOSED;
    if (st->state == SN_CONNECTED)
        v->connected |= b;
    if (st->state == SN_OTHER_END_CLOSED || st->state == SN_ABORTED)
        v->closed |= b;
    if (st->state == SN_ABORTED)
        v->aborted |= b;
    if (open && st->readable > 0)
        v->readable |= b;
    if (open && st->write_space > 0)
        v->writable |= b;
}

/* One rx_avail and one tx_space per open slot: cheap, and only done per
 * reply and per attention check after an event. */
/* Slot i's bits and handle as they are now, in v (whose other slots are
 * left alone). */
static void snapshot_slot(sn_link_device *dev, unsigned i, sn_dev_view *v)
{
    sn_slot_status st;
    if (sn_slot_status_get(dev->core, i, &st) < 0)
        st.state = SN_FREE;
    view_bits(v, i, &st);
    v->in_use &= (uint16_t)~bit(i);
    v->handle[i] = 0;
    if (st.state == SN_FREE)
        return;
    v->in_use |= bit(i);
    v->handle[i] = st.id;
}

static void snapshot(sn_link_device *dev, sn_dev_view *v)
{
    memset(v, 0, sizeof *v);
    v->epoch = dev->epoch;
    for (unsigned i = 0; i < dev->slots; i++)
        snapshot_slot(dev, i, v);
}

/* Something the host has not seen: a bit newly set, or a handle changed.
 * Bits that cleared (the host read, wrote or closed) are no news. */
static bool news(const sn_link_device *dev, const sn_dev_view *cur)
{
    const sn_dev_view *v = &dev->view;
    uint16_t fresh = (uint16_t)((cur->in_use & ~v->in_use) | (cur->connected & ~v->connected) |
                                (cur->closed & ~v->closed) | (cur->readable & ~v->readable) |
                                (cur->writable & ~v->writable) | (cur->aborted & ~v->aborted));
    if (fresh != 0 || cur->epoch != v->epoch)
        return true;
    for (unsigned i = 0; i < dev->slots; i++)
        if (cur->handle[i] != v->handle[i])
            return true;
    return false;
}

/* The host now knows slot i is gone. */
static void view_forget(sn_link_device *dev, unsigned i)
{
    uint16_t m = (uint16_t)~bit(i);
    sn_dev_view *v = &dev->view;
    v->in_use &= m, v->connected &= m, v->closed &= m;
    v->readable &= m, v->writable &= m, v->aborted &= m;
    v->handle[i] = 0;
}

/* ---- Life cycle ------------------------------------------------------- */

int sn_dev_init(sn_link_device *dev, sn_core *core)
{
    if (dev == NULL || core == NULL)
        return SN_LINK_E_PARAM;
    unsigned n = sn_slot_count(core);
    if (n < 1 || n > SN_LINK_SLOTS_MAX)
        return SN_LINK_E_PARAM;
    memset(dev, 0, sizeof *dev);
    dev->core = core;
    dev->slots = n;
    sn_link_dec_init(&dev->dec, SN_LINK_REQUEST);
    return 0;
}

void sn_dev_reset(sn_link_device *dev)
{
    sn_link_dec_init(&dev->dec, SN_LINK_REQUEST);
    dev->out_len = dev->out_pos = 0;
    dev->out_aux = false;
    dev->attention_sent = false;
    dev->yielded = false;
    sn_dev_forget_replay(dev);
    /* A new host has seen nothing: whatever is open is news to it. */
    memset(&dev->view, 0, sizeof dev->view);
    dev->view.epoch = dev->epoch;
    dev->events = true;
}

void sn_dev_forget_replay(sn_link_device *dev)
{
    dev->last_valid = false;
    dev->last_len = 0;
}

void sn_dev_note_event(sn_link_device *dev) { dev->events = true; }

void sn_dev_on_event(sn_core *core, sn_id id, sn_event ev, int info, void *user)
{
    (void)core, (void)id, (void)ev, (void)info;
    if (user != NULL)
        sn_dev_note_event(user);
}

void sn_dev_note_turn(sn_link_device *dev, uint32_t us)
{
    if (us > dev->longest_turn_us)
        dev->longest_turn_us = us;
}

void sn_dev_set_diag(sn_link_device *dev, sn_dev_diag_fn fn, void *user)
{
    dev->diag_extra = fn;
    dev->diag_user = user;
}

/* ---- Replies ---------------------------------------------------------- */

/* Encodes the reply to req into out[] (the replay cache) and makes it the
 * pending output. */
static void reply(sn_link_device *dev, const sn_link_frame *req, uint8_t slot, int32_t response,
                  uint16_t len)
{
    sn_dev_view cur;
    snapshot(dev, &cur);
    sn_link_frame f = {
        .kind = SN_LINK_REPLY,
        .status = (uint8_t)(SN_LINK_ST_UP |
                            ((cur.readable | cur.closed | cur.aborted) ? SN_LINK_ST_ATTENTION : 0)),
        .command = req->command,
        .slot = slot,
        .response = response,
        .len = response < 0 ? 0 : len,
        .seq = req->seq,
        .data = dev->data,
    };
    int n = sn_link_encode(&f, dev->out, sizeof dev->out);
    /* Cannot fail: len <= SN_LINK_DATA_MAX and out holds a whole frame. */
    dev->out_len = n > 0 ? (size_t)n : 0;
    dev->out_pos = 0;
    dev->out_aux = false;
    dev->last_valid = req->seq != 0 && n > 0;
    dev->last_seq = req->seq;
    dev->last_cmd = req->command;
    dev->last_slot = req->slot;
    dev->last_len = dev->out_len;
    if (response < 0)
        dev->count.error_replies++;
}

/* The version-error reply: in aux[], so the replay cache survives it. */
static void version_reply(sn_link_device *dev)
{
    sn_link_frame f = {
        .kind = SN_LINK_REPLY,
        .status = SN_LINK_ST_UP,
        .command = SN_LINK_CMD_NULL,
        .slot = SN_LINK_SLOT_NONE,
        .response = SN_LINK_E_VERSION,
    };
    int n = sn_link_encode(&f, dev->aux, sizeof dev->aux);
    dev->out_len = n > 0 ? (size_t)n : 0;
    dev->out_pos = 0;
    dev->out_aux = true;
    dev->count.version_errors++;
    dev->count.error_replies++;
}

/* The slot a slot command acts on: param 0 is whatever occupies it (none:
 * the core calls it stale), otherwise the handle must be its current one. */
static int target(const sn_link_device *dev, const sn_link_frame *f, sn_id *id)
{
    if (f->slot >= dev->slots)
        return SN_LINK_E_PARAM;
    sn_id cur = sn_slot_id(dev->core, f->slot);
    if (f->param == 0) {
        *id = cur;
        return 0;
    }
    if (sn_id_index(f->param) != f->slot)
        return SN_LINK_E_PARAM;
    if (f->param != cur)
        return SN_LINK_E_STALE;
    *id = f->param;
    return 0;
}

static int32_t core_err(int rc) { return (int32_t)sn_link_err_from_core(rc); }

/* The data length each command takes; -1: any up to SN_LINK_DATA_MAX. */
static int want_len(uint8_t cmd)
{
    switch (cmd) {
    case SN_LINK_CMD_CREATE:
    case SN_LINK_CMD_LISTEN:
        return (int)SN_LINK_ARGS_LEN;
    case SN_LINK_CMD_WRITE:
        return -1;
    default:
        return 0;
    }
}

static bool known(uint8_t cmd)
{
    switch (cmd) {
    case SN_LINK_CMD_NULL:
    case SN_LINK_CMD_ABORT:
    case SN_LINK_CMD_CLOSE:
    case SN_LINK_CMD_CREATE:
    case SN_LINK_CMD_READ:
    case SN_LINK_CMD_WRITE:
    case SN_LINK_CMD_STATUS:
    case SN_LINK_CMD_LISTEN:
    case SN_LINK_CMD_NET_STATUS:
    case SN_LINK_CMD_DIAG:
    case SN_LINK_CMD_STATS:
        return true;
    default:
        return false;
    }
}

static void note_listener(sn_link_device *dev, uint16_t port, bool active)
{
    int slot = -1;
    for (int i = 0; i < SN_MAX_LISTENERS; i++) {
        if (dev->listen_port[i] == port) {
            if (!active)
                dev->listen_port[i] = 0;
            return;
        }
        if (dev->listen_port[i] == 0 && slot < 0)
            slot = i;
    }
    if (active && slot >= 0)
        dev->listen_port[slot] = port;
}

static void do_slot_command(sn_link_device *dev, const sn_link_frame *f)
{
    sn_id id = SN_ID_NONE;
    int rc = target(dev, f, &id);
    if (rc < 0) {
        reply(dev, f, f->slot, rc, 0);
        return;
    }
    unsigned i = f->slot;
    dev->events = true; /* what the host was shown of slot i changes: check it again */
    switch (f->command) {
    case SN_LINK_CMD_ABORT:
        rc = sn_terminate(dev->core, id);
        if (rc == 0)
            view_forget(dev, i);
        reply(dev, f, f->slot, core_err(rc), 0);
        return;
    case SN_LINK_CMD_CLOSE:
        rc = sn_close(dev->core, id);
        if (rc < 0) {
            reply(dev, f, f->slot, core_err(rc), 0);
            return;
        }
        /* 1: freed at once (a reset or aborted slot); 0: draining. */
        if (sn_slot_id(dev->core, i) != id) {
            view_forget(dev, i);
            reply(dev, f, f->slot, 1, 0);
        } else {
            dev->view.connected &= (uint16_t)~bit(i);
            dev->view.closed &= (uint16_t)~bit(i);
            reply(dev, f, f->slot, 0, 0);
        }
        return;
    case SN_LINK_CMD_READ: {
        size_t want = f->space < SN_LINK_DATA_MAX ? f->space : SN_LINK_DATA_MAX;
        if (want == 0) { /* a read of nothing would look like end of stream */
            reply(dev, f, f->slot, SN_LINK_E_PARAM, 0);
            return;
        }
        rc = sn_read(dev->core, id, dev->data, want);
        if (rc >= 0 && (size_t)rc < want)
            dev->view.readable &= (uint16_t)~bit(i); /* the host saw it drained */
        if (rc == SN_ECLOSED || rc == SN_ECONNRESET)
            snapshot_slot(dev, i, &dev->view); /* the host saw the slot's end, as it is */
        reply(dev, f, f->slot, rc < 0 ? core_err(rc) : rc, rc > 0 ? (uint16_t)rc : 0);
        return;
    }
    case SN_LINK_CMD_WRITE: {
        unsigned fl = f->flags & (SN_LINK_F_CLOSE_AFTER | SN_LINK_F_PUSH);
        rc = sn_write(dev->core, id, f->data, f->len, fl);
        if (rc >= 0 && rc < (int)f->len)
            dev->view.writable &= (uint16_t)~bit(i); /* the host saw it full */
        reply(dev, f, f->slot, rc < 0 ? core_err(rc) : rc, 0);
        return;
    }
    default:
        break;
    }
}

static void do_status(sn_link_device *dev, const sn_link_frame *f)
{
    if (f->slot >= dev->slots || f->space < SN_LINK_STATUS_LEN) {
        reply(dev, f, f->slot, SN_LINK_E_PARAM, 0);
        return;
    }
    sn_slot_status st;
    if (sn_slot_status_get(dev->core, f->slot, &st) < 0)
        memset(&st, 0, sizeof st), st.state = SN_FREE;
    uint32_t conn, closed;
    sn_bitmaps(dev->core, &conn, &closed);
    sn_link_status ls = {
        .state = (uint8_t)st.state,
        .slot = f->slot,
        .protocol = st.protocol,
        .last_error = (int8_t)(st.last_error ? sn_link_err_from_core(st.last_error) : 0),
        .local_port = st.local.port,
        .remote_port = st.remote.port,
        .remote_addr = st.remote.addr,
        .readable = st.readable,
        .write_space = st.write_space,
        .connected = (uint16_t)conn,
        .closed = (uint16_t)closed,
    };
    sn_link_status_encode(&ls, dev->data);
    /* The host has now seen this slot (its bits in the bitmaps and its
     * buffers), not the others: hosts read the bitmaps for the slot they
     * asked about, so another slot's change stays news. The handle is not
     * in the reply: in_use and handle stay as they were. */
    view_bits(&dev->view, f->slot, &st);
    dev->events = true; /* the view changed: check it again */
    reply(dev, f, f->slot, 0, SN_LINK_STATUS_LEN);
}

static void do_net_status(sn_link_device *dev, const sn_link_frame *f)
{
    size_t need = SN_LINK_NET_STATUS_SIZE(dev->slots);
    if (f->space < need) {
        reply(dev, f, f->slot, SN_LINK_E_PARAM, 0);
        return;
    }
    sn_dev_view cur;
    snapshot(dev, &cur);
    const sn_stats *s = sn_stats_get(dev->core);
    sn_link_net_status ns = {
        .slots = (uint8_t)dev->slots,
        .epoch = dev->epoch,
        .data_max = SN_LINK_DATA_MAX,
        .backlog_now = sn_link_sat16(s->backlog_now),
        .backlog_peak = sn_link_sat16(s->backlog_peak),
        .in_use = cur.in_use,
        .connected = cur.connected,
        .closed = cur.closed,
        .readable = cur.readable,
        .writable = cur.writable,
        .aborted = cur.aborted,
    };
    memcpy(ns.handle, cur.handle, sizeof ns.handle);
    size_t n = sn_link_net_status_encode(&ns, dev->data);
    dev->view = cur;
    reply(dev, f, f->slot, 0, (uint16_t)n);
}

static void do_diag(sn_link_device *dev, const sn_link_frame *f)
{
    size_t cap = sizeof dev->report;
    size_t n = sn_report(dev->core, dev->report, cap);
    if (n >= cap)
        n = cap - 1; /* never page past what the buffer holds */
    if (dev->diag_extra != NULL) {
        n += dev->diag_extra(dev->report + n, cap - n, dev->diag_user);
        if (n >= cap)
            n = cap - 1;
    }
    size_t off = f->param < n ? f->param : n;
    size_t take = n - off;
    if (take > f->space)
        take = f->space;
    if (take > SN_LINK_DATA_MAX)
        take = SN_LINK_DATA_MAX;
    memcpy(dev->data, dev->report + off, take);
    reply(dev, f, f->slot, (int32_t)n, (uint16_t)take);
}

static void do_args_command(sn_link_device *dev, const sn_link_frame *f)
{
    sn_link_args a;
    (void)sn_link_args_decode(f->data, f->len, &a); /* the length was checked */
    sn_endpoint ep = {.addr = a.addr, .port = a.port};
    if (f->command == SN_LINK_CMD_LISTEN) {
        int rc = sn_listen(dev->core, &ep, a.protocol, a.max_conns, f->param);
        if (rc == 0)
            note_listener(dev, a.port, a.max_conns > 0);
        reply(dev, f, f->slot, core_err(rc), 0);
        return;
    }
    if (f->space < 4) { /* the handle would not fit: refuse before connecting */
        reply(dev, f, f->slot, SN_LINK_E_PARAM, 0);
        return;
    }
    sn_id id;
    int rc = sn_connect(dev->core, &ep, a.protocol, f->param, &id);
    if (rc < 0) {
        reply(dev, f, f->slot, core_err(rc), 0);
        return;
    }
    unsigned i = sn_id_index(id);
    dev->view.handle[i] = id; /* the host learns it from this reply */
    dev->view.in_use |= bit(i);
    dev->events = true; /* the view changed: check it again */
    sn_link_put32(dev->data, id);
    reply(dev, f, (uint8_t)i, (int32_t)i, 4);
}

static void handle(sn_link_device *dev, const sn_link_frame *f)
{
    dev->count.requests++;
    if (!known(f->command)) {
        reply(dev, f, f->slot, SN_LINK_E_UNKNOWN_CMD, 0);
        return;
    }
    int want = want_len(f->command);
    if (want >= 0 && f->len != (unsigned)want) {
        reply(dev, f, f->slot, SN_LINK_E_PARAM, 0);
        return;
    }
    switch (f->command) {
    case SN_LINK_CMD_NULL:
        reply(dev, f, f->slot, 0, 0);
        break;
    case SN_LINK_CMD_ABORT:
    case SN_LINK_CMD_CLOSE:
    case SN_LINK_CMD_READ:
    case SN_LINK_CMD_WRITE:
        do_slot_command(dev, f);
        break;
    case SN_LINK_CMD_CREATE:
    case SN_LINK_CMD_LISTEN:
        do_args_command(dev, f);
        break;
    case SN_LINK_CMD_STATUS:
        do_status(dev, f);
        break;
    case SN_LINK_CMD_NET_STATUS:
        do_net_status(dev, f);
        break;
    case SN_LINK_CMD_DIAG:
        do_diag(dev, f);
        break;
    case SN_LINK_CMD_STATS:
        if (f->space < SN_LINK_STATS_LEN) {
            reply(dev, f, f->slot, SN_LINK_E_PARAM, 0);
            break;
        }
        sn_link_stats_encode(sn_stats_get(dev->core), dev->longest_turn_us, dev->data);
        reply(dev, f, f->slot, 0, SN_LINK_STATS_LEN);
        break;
    default:
        break;
    }
}

/* ---- Input ------------------------------------------------------------ */

/* A resend of the request answered last: the same nonzero seq, command and
 * slot. */
static bool is_resend(const sn_link_device *dev, const sn_link_frame *f)
{
    return dev->last_valid && f->seq != 0 && f->seq == dev->last_seq &&
           f->command == dev->last_cmd && f->slot == dev->last_slot;
}

size_t sn_dev_feed(sn_link_device *dev, const void *in, size_t len, uint32_t now_ms)
{
    const uint8_t *src = in;
    size_t pos = 0;
    unsigned rejected = 0;
    if (src == NULL)
        len = 0;
    if (dev->out_len > 0)
        return 0; /* the host has not taken the last output yet */
    dev->yielded = false;
    /* Input after a silence starts clean: a version error there is a foreign
     * host's frame, not noise. (With a partial frame buffered,
     * sn_dev_flush_gap() drops it and marks the silence itself.) */
    if (len > 0 && dev->out_len == 0 && !sn_link_dec_partial(&dev->dec) &&
        sn_time_reached(now_ms, dev->last_rx_ms + SN_LINK_GAP_MS))
        (void)sn_link_dec_flush(&dev->dec);
    while (dev->out_len == 0) {
        if (rejected >= SN_DEV_REJECT_BUDGET) {
            /* Enough for one turn: the rest (buffered or not consumed) next. */
            dev->yielded = true;
            dev->count.yields++;
            break;
        }
        size_t used = 0;
        sn_link_frame f;
        int r = sn_link_dec_feed(&dev->dec, len ? src + pos : NULL, len - pos, &used, &f);
        pos += used;
        if (used > 0)
            dev->last_rx_ms = now_ms;
        if (r == 0)
            break;
        if (r == 1) {
            /* A request: the host may be told again of what it has not
             * fetched yet, so the view is checked again after it. */
            dev->attention_sent = false;
            dev->events = true;
            if (is_resend(dev, &f)) {
                /* Its reply was lost: the same bytes again, nothing done twice. */
                dev->count.requests++;
                dev->count.replays++;
                dev->out_len = dev->last_len;
                dev->out_pos = 0;
                dev->out_aux = false;
            } else {
                handle(dev, &f);
            }
            break;
        }
        rejected++;
        switch (r) {
        case SN_LINK_E_VERSION:
            /* Nothing after the version can be trusted: answer as null, but
             * only where a frame could begin; inside a rejected candidate's
             * bytes it is noise (a payload's A5 3C xx). */
            if (f.rescan)
                dev->count.version_noise++;
            else
                version_reply(dev);
            break;
        case SN_LINK_E_CRC:
            dev->count.crc_errors++;
            break;
        case SN_LINK_E_OVERSIZE:
            dev->count.oversize++;
            break;
        default:
            break;
        }
    }
    dev->count.bytes_in += pos;
    return pos;
}

bool sn_dev_busy(const sn_link_device *dev)
{
    return dev->out_len > 0 || sn_link_dec_partial(&dev->dec) || dev->yielded;
}

int sn_dev_flush_gap(sn_link_device *dev, uint32_t now_ms)
{
    /* Whole frames buffered behind the last reply are requests, not a gap:
     * they are answered first (found by the fuzzer). */
    (void)sn_dev_feed(dev, NULL, 0, now_ms);
    int r = 0;
    /* No byte came for the gap, so every candidate still buffered is as
     * stale as the first: drop them all without a new wait each (a run of
     * false starts would otherwise stall the link 100 ms apiece; found by
     * the fuzzer), at most 32 a call, the rest at the next. */
    for (int i = 0; i < 32 && dev->out_len == 0 && sn_link_dec_partial(&dev->dec); i++) {
        /* A yielded feed left candidates unexamined (maybe whole frames):
         * they are not stale yet. */
        if (dev->yielded || !sn_time_reached(now_ms, dev->last_rx_ms + SN_LINK_GAP_MS))
            break;
        if (sn_link_dec_flush(&dev->dec) < 0) {
            dev->count.truncated++;
            r = SN_LINK_E_TRUNCATED;
        }
        (void)sn_dev_feed(dev, NULL, 0, now_ms);
    }
    return r;
}

uint32_t sn_dev_next_timeout(const sn_link_device *dev, uint32_t now_ms, uint32_t max_ms)
{
    if (dev->out_len > 0)
        return max_ms;
    if (dev->yielded)
        return 0;
    if (!sn_link_dec_partial(&dev->dec))
        return max_ms;
    uint32_t due = dev->last_rx_ms + SN_LINK_GAP_MS;
    if (sn_time_reached(now_ms, due))
        return 0;
    return due - now_ms < max_ms ? due - now_ms : max_ms;
}

/* ---- Output ----------------------------------------------------------- */

size_t sn_dev_output(const sn_link_device *dev, const uint8_t **p)
{
    *p = (dev->out_aux ? dev->aux : dev->out) + dev->out_pos;
    return dev->out_len - dev->out_pos;
}

void sn_dev_sent(sn_link_device *dev, size_t n)
{
    size_t left = dev->out_len - dev->out_pos;
    if (n > left)
        n = left;
    dev->out_pos += n;
    dev->count.bytes_out += n;
    if (dev->out_pos == dev->out_len) {
        dev->out_len = dev->out_pos = 0;
        dev->out_aux = false;
    }
}

bool sn_dev_attention(sn_link_device *dev)
{
    if (!dev->events || dev->attention_sent || sn_dev_busy(dev))
        return false; /* the events stay noted until the check can be made */
    dev->events = false;
    sn_dev_view cur;
    snapshot(dev, &cur);
    if (!news(dev, &cur))
        return false;
    dev->aux[0] = SN_LINK_ATTENTION;
    dev->out_len = 1;
    dev->out_pos = 0;
    dev->out_aux = true;
    dev->attention_sent = true;
    dev->count.attention++;
    return true;
}

/* ---- Host gone -------------------------------------------------------- */

unsigned sn_dev_stop_all(sn_link_device *dev, unsigned *listeners)
{
    unsigned reset = 0, stopped = 0;
    for (int i = 0; i < SN_MAX_LISTENERS; i++) {
        if (dev->listen_port[i] == 0)
            continue;
        sn_endpoint ep = {.addr = 0, .port = dev->listen_port[i]};
        if (sn_listen(dev->core, &ep, 0, 0, 0) == 0)
            stopped++;
        dev->listen_port[i] = 0;
    }
    for (unsigned i = 0; i < dev->slots; i++) {
        sn_id id = sn_slot_id(dev->core, i);
        if (id != SN_ID_NONE && sn_terminate(dev->core, id) == 0)
            reset++;
    }
    if (listeners != NULL)
        *listeners = stopped;
    /* A new epoch: a host that comes back must listen again, and one that
     * sleeps on the link is told (attention) even if nothing was open. */
    dev->epoch++;
    dev->events = true;
    return reset;
}
