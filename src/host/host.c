/*
 * libslotnet-host: the core's API over the link (docs/link-protocol.md).
 *
 * Requests are strictly one at a time: encode, send, read until the reply
 * that echoes the request's seq, command and slot (create: any slot), or
 * the attempt's timeout. Every request gets a new seq (1..63, never 0) and
 * is resent, the identical frame with the same seq, after a timeout: the
 * device replays its last reply for a repeated seq instead of acting again,
 * so a read, a write or a create takes effect exactly once however many
 * replies are lost. Replies that echo another seq (a late answer to an
 * attempt already answered) are dropped and counted. A request that is never
 * answered, end of file, or a version mismatch in answer to the opening null
 * loses the link: from then on every call returns SN_EIO until
 * sn_host_reopen(). A version-error reply at any other time is a frame error
 * (noise the device took for a frame): it is counted and the request is
 * resent at once.
 *
 * Events come from the difference between successive network statuses
 * and the mirror of the table kept here (one record per slot).
 */
#include "slotnet/host.h"

#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "host_int.h"
#include "slotnet/link.h"

#define DEFAULT_TIMEOUT_MS 250u
#define DEFAULT_RESENDS 2u
#define DEFAULT_WRITE_POLL_MS 10u
/* The first request after opening waits this long in all: an exec: daemon
 * (or one under a sanitizer) takes a moment to start. */
#define OPEN_PATIENCE_MS 5000u
#define TARGET_MAX 512

/* Round-trip histogram: 16 linear buckets below 16 us, then 16 per power
 * of two up to 2^32 us: about 6 % resolution, fixed memory. */
#define HIST_SUB 16u
#define HIST_SUB_BITS 4u
#define HIST_N (HIST_SUB + (32u - HIST_SUB_BITS) * HIST_SUB)

/* The host's view of one slot. */
struct hslot {
    sn_id handle;     /* SN_ID_NONE: free */
    sn_state state;   /* derived from the bitmaps and the host's own calls */
    bool connecting;  /* created here; CONNECTED or CONNECT_FAILED not yet raised */
    bool closing;     /* closed here (or CLOSE_AFTER): close-pending until it vanishes */
    bool peer_closed; /* PEER_CLOSED raised */
    bool aborted;     /* ABORTED or CONNECT_FAILED raised */
    bool want_write;  /* a short write waits for WRITABLE */
    /* A connection that vanished unseen: a create got this slot while the
     * mirror still held it. Its FREED comes first in the next poll. */
    sn_id gone;
    int gone_why;
};

struct hlisten {
    bool used;
    sn_endpoint local;
    uint8_t protocol, max_conns;
    uint32_t idle_ms;
};

struct sn_host {
    sn_host_config cfg;
    char target[TARGET_MAX];
    int fd;
    bool sock;
    pid_t child;
    unsigned long baud;  /* serial: the line's rate (the reply deadline grows with it); else 0 */
    bool up;
    bool in_poll;
    bool attention;      /* an attention byte came after the last network status
                          * (or the last poll left slots to look at again) */
    bool opening;        /* the opening null is in flight */
    bool version_error;  /* the device answered the opening null in another version */
    uint8_t version_seen;
    uint8_t epoch;       /* network status epoch as last seen */
    uint16_t touched;    /* slots the host acted on during this poll pass */
    unsigned nslots;
    struct hslot slot[SN_LINK_SLOTS_MAX];
    struct hlisten listeners[SN_MAX_LISTENERS];
    sn_stats stats;
    sn_host_link_stats ls;
    uint64_t hist[HIST_N];

    /* The request in flight and its reply. */
    bool waiting, got;
    bool nudge; /* a version-error reply: resend now rather than at the timeout */
    uint8_t seq; /* the last request's; the next is seq % 63 + 1 */
    uint8_t want_seq, want_cmd, want_slot;
    bool any_slot; /* create: the reply names the slot it got */
    int32_t response;
    uint16_t rlen;
    uint8_t rdata[SN_LINK_DATA_MAX];

    sn_link_decoder dec;
    uint8_t tx[SN_LINK_FRAME_MAX];
    uint8_t rx[4096];
};

/* Why the last sn_host_open() or sn_host_reopen() of this thread failed. */
static _Thread_local char open_why[256];

static void set_why(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(open_why, sizeof open_why, fmt, ap);
    va_end(ap);
}

const char *sn_host_open_error(void) { return open_why; }

static uint64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}
/* ---- Round-trip histogram ---------------------------------------------- */

static unsigned hist_index(uint32_t v)
{
    if (v < HIST_SUB)
        return v;
    unsigned e = 31u - (unsigned)__builtin_clz(v); /* >= HIST_SUB_BITS */
    return HIST_SUB + (e - HIST_SUB_BITS) * HIST_SUB + ((v >> (e - HIST_SUB_BITS)) & (HIST_SUB - 1));
}

static uint32_t hist_upper(unsigned i)
{
    if (i < HIST_SUB)
        return i;
    unsigned e = HIST_SUB_BITS + (i - HIST_SUB) / HIST_SUB;
    uint64_t lower = (uint64_t)(HIST_SUB + (i - HIST_SUB) % HIST_SUB) << (e - HIST_SUB_BITS);
    uint64_t upper = lower + ((uint64_t)1 << (e - HIST_SUB_BITS)) - 1;
    return upper > UINT32_MAX ? UINT32_MAX : (uint32_t)upper;
}

static void hist_add(sn_host *h, uint64_t us)
{
    uint32_t v = us > UINT32_MAX ? UINT32_MAX : (uint32_t)us;
    h->hist[hist_index(v)]++;
    h->ls.rtt_count++;
    if (v > h->ls.rtt_max_us)
        h->ls.rtt_max_us = v;
}

/* The smallest bucket bound with at least pct % of the samples at or below
 * it, never above the largest sample. */
static uint32_t hist_pct(const sn_host *h, unsigned pct)
{
    if (h->ls.rtt_count == 0)
        return 0;
    uint64_t rank = (h->ls.rtt_count * pct + 99) / 100, seen = 0;
    if (rank == 0)
        rank = 1;
    for (unsigned i = 0; i < HIST_N; i++) {
        seen += h->hist[i];
        if (seen >= rank) {
            uint32_t u = hist_upper(i);
            return u < h->ls.rtt_max_us ? u : h->ls.rtt_max_us;
        }
    }
    return h->ls.rtt_max_us;
}

/* ---- Bytes in ------------------------------------------------------------ */

static int lost(sn_host *h)
{
    if (h->up)
        h->ls.losses++;
    h->up = false;
    h->waiting = false;
    return SN_EIO;
}

/* A version error (a -19 reply, or a reply in another version found at a
 * clean frame start): the end of the link in answer to the opening null,
 * else noise to count. A foreign version found while rescanning a rejected
 * candidate's bytes is noise and counted as the frame error it is. */
static void version_noise(sn_host *h, uint8_t version, bool reply_19)
{
    if (h->waiting && !h->got && h->opening) {
        h->version_error = true;
        h->version_seen = version;
        return;
    }
    h->ls.frame_errors++;
    /* The device dropped a frame it could not read, maybe the request:
     * resend it now (the seq makes that safe) instead of at the timeout. */
    if (reply_19 && h->waiting && !h->got)
        h->nudge = true;
}

/* A good reply: the one awaited, or a stale one to drop. */
static void take_frame(sn_host *h, const sn_link_frame *f)
{
    if (f->command == SN_LINK_CMD_NULL && f->slot == SN_LINK_SLOT_NONE &&
        f->response == SN_LINK_E_VERSION) {
        version_noise(h, f->version, true);
        return;
    }
    if (!h->waiting || h->got || f->seq != h->want_seq || f->command != h->want_cmd ||
        (!h->any_slot && f->slot != h->want_slot)) {
        h->ls.stale_replies++;
        return;
    }
    h->got = true;
    h->response = f->response;
    h->rlen = f->len <= sizeof h->rdata ? f->len : (uint16_t)sizeof h->rdata;
    memcpy(h->rdata, f->data, h->rlen);
    /* Attention bytes before this reply are about what it already shows. */
    if (f->command == SN_LINK_CMD_NET_STATUS)
        h->attention = false;
}

/* Feeds received bytes to the decoder, which counts the attention bytes
 * among those it skips (between frames, or inside a rejected candidate). */
static void feed(sn_host *h, const uint8_t *p, size_t n)
{
    size_t pos = 0;
    for (;;) {
        uint64_t att = h->dec.attention;
        size_t used = 0;
        sn_link_frame f;
        int r = sn_link_dec_feed(&h->dec, pos < n ? p + pos : NULL, n - pos, &used, &f);
        pos += used;
        /* Skipped before the frame this call ends with, so before its reply. */
        if (h->dec.attention != att) {
            h->ls.attention += h->dec.attention - att;
            h->attention = true;
        }
        if (r == 1) {
            take_frame(h, &f);
        } else if (r == SN_LINK_E_VERSION && !f.rescan) {
            version_noise(h, f.version, false);
        } else if (r < 0) {
            h->ls.frame_errors++;
        } else if (pos >= n) {
            return; /* everything consumed, nothing more buffered to drain */
        }
    }
}

/* Reads whatever the descriptor has, without waiting. 0, or SN_EIO at end
 * of file or on an error. */
static int pump_in(sn_host *h)
{
    for (;;) {
        ssize_t n = read(h->fd, h->rx, sizeof h->rx);
        if (n > 0) {
            feed(h, h->rx, (size_t)n);
            if ((size_t)n < sizeof h->rx)
                return 0; /* drained: spare the call that would say EAGAIN */
            continue;
        }
        if (n == 0)
            return h->sock ? SN_EIO : 0; /* a tty with nothing to read also says 0 */
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return 0;
        return SN_EIO;
    }
}

/* Waits for the descriptor up to deadline (us); revents, 0 at the
 * deadline, -1 on an error. A signal ends the wait early with 0 when
 * interruptible, else the wait goes on. */
static int wait_fd(sn_host *h, short events, uint64_t deadline, bool interruptible)
{
    for (;;) {
        uint64_t t = now_us();
        if (t >= deadline)
            return 0;
        uint64_t left = deadline - t;
        struct pollfd pfd = {h->fd, events, 0};
        int ms = (int)((left + 999) / 1000);
        int r = poll(&pfd, 1, ms);
        if (r > 0)
            return pfd.revents;
        if (r == 0)
            continue; /* the deadline check above decides */
        if (errno != EINTR)
            return -1;
        if (interruptible)
            return 0;
    }
}

static int write_all(sn_host *h, const uint8_t *p, size_t n, uint64_t deadline)
{
    while (n > 0) {
        ssize_t w = h->sock ? send(h->fd, p, n, MSG_NOSIGNAL) : write(h->fd, p, n);
        if (w > 0) {
            p += w;
            n -= (size_t)w;
            continue;
        }
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            int r = wait_fd(h, POLLOUT, deadline, false);
            if (r <= 0 || (r & (POLLERR | POLLNVAL)))
                return SN_EIO;
            continue;
        }
        return SN_EIO;
    }
    return 0;
}

/* ---- Requests ------------------------------------------------------------ */

struct req {
    uint8_t cmd, slot, flags;
    uint32_t param;
    const void *data;
    uint16_t len, space;
    unsigned attempts; /* 0: 1 + the config's resends */
};

/* One attempt's wait for its reply: the configured timeout, plus on a
 * serial line twice the time the request and the longest reply it allows
 * take on the wire (10 bits a byte: 8N1). At 9600 baud a 2 KiB read is
 * 4.3 s of it; on a socket nothing. */
static uint64_t reply_wait_us(const sn_host *h, size_t req_bytes, uint16_t space)
{
    uint64_t us = (uint64_t)h->cfg.timeout_ms * 1000u;
    if (h->baud > 0) {
        uint64_t bytes = (uint64_t)req_bytes + SN_LINK_OVERHEAD + space;
        us += bytes * 10u * 2u * 1000000u / h->baud;
    }
    return us;
}

/*
 * One request and its reply. 0 with the reply in h->response/rdata/rlen;
 * SN_EIO when the link is lost (or was already): no reply after every
 * attempt, end of file, or a version mismatch answering the opening null.
 */
static int transact(sn_host *h, const struct req *q)
{
    if (!h->up)
        return SN_EIO;
    /* Attention bytes and late replies that came meanwhile. */
    if (pump_in(h) < 0 || h->version_error)
        return lost(h);

    uint8_t seq = (uint8_t)(h->seq % SN_LINK_SEQ_MAX + 1u); /* 1..63, never 0 */
    sn_link_frame f = {
        .kind = SN_LINK_REQUEST,
        .command = q->cmd,
        .slot = q->slot,
        .flags = q->flags,
        .seq = seq,
        .len = q->len,
        .space = q->space,
        .param = q->param,
        .data = q->data,
    };
    int flen = sn_link_encode(&f, h->tx, sizeof h->tx);
    if (flen < 0)
        return SN_EINVAL;

    h->seq = seq;
    h->ls.requests++;
    h->waiting = true;
    h->got = false;
    h->want_seq = seq;
    h->want_cmd = q->cmd;
    h->want_slot = q->slot;
    h->any_slot = q->cmd == SN_LINK_CMD_CREATE;
    unsigned attempts = q->attempts ? q->attempts : 1u + h->cfg.resends;
    uint64_t wait_us = reply_wait_us(h, (size_t)flen, q->space);
    uint64_t t0 = now_us();
    for (unsigned a = 0; a < attempts; a++) {
        if (a > 0)
            h->ls.resends++;
        h->nudge = false;
        /* The same frame every time: the same seq, so the device acts once. */
        uint64_t deadline = now_us() + wait_us;
        if (write_all(h, h->tx, (size_t)flen, deadline) < 0)
            return lost(h);
        bool timed_out = false;
        for (;;) {
            if (pump_in(h) < 0 || h->version_error)
                return lost(h);
            if (h->got) {
                h->waiting = false;
                hist_add(h, now_us() - t0);
                return 0;
            }
            if (h->nudge)
                break;
            int r = wait_fd(h, POLLIN, deadline, false);
            if (r < 0 || (r & (POLLERR | POLLNVAL)))
                return lost(h);
            if (r == 0) {
                timed_out = true;
                break;
            }
            /* POLLHUP: pump_in reads what is left, then sees end of file. */
        }
        if (!timed_out)
            continue;
        h->ls.timeouts++;
        /* A reply cut short blocks nothing (its gap has passed): drop it,
         * and look again at what it swallowed. */
        if (sn_link_dec_partial(&h->dec) && sn_link_dec_flush(&h->dec) < 0) {
            h->ls.frame_errors++;
            feed(h, NULL, 0);
            if (h->version_error)
                return lost(h);
            if (h->got) {
                h->waiting = false;
                hist_add(h, now_us() - t0);
                return 0;
            }
        }
    }
    h->waiting = false;
    h->ls.failed++;
    return lost(h);
}

/* A request whose reply's response is the result: SN_E* or >= 0. */
static int request(sn_host *h, const struct req *q)
{
    int err = transact(h, q);
    if (err < 0)
        return err;
    return h->response < 0 ? sn_link_err_to_core(h->response) : (int)h->response;
}
/* ---- Life cycle ---------------------------------------------------------- */

void sn_host_config_default(sn_host_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->timeout_ms = DEFAULT_TIMEOUT_MS;
    cfg->resends = DEFAULT_RESENDS;
    cfg->write_poll_ms = DEFAULT_WRITE_POLL_MS;
}

static int net_status(sn_host *h, sn_link_net_status *ns)
{
    struct req q = {
        .cmd = SN_LINK_CMD_NET_STATUS,
        .slot = SN_LINK_SLOT_NONE,
        .space = (uint16_t)SN_LINK_NET_STATUS_SIZE(SN_LINK_SLOTS_MAX),
    };
    int r = request(h, &q);
    if (r < 0)
        return r;
    if (sn_link_net_status_decode(h->rdata, h->rlen, ns) != 0) {
        h->ls.frame_errors++;
        return SN_EIO;
    }
    return 0;
}

/* Opens the transport and proves the link: null (the version), then
 * network status (the slot count). patience_ms: how long a UNIX socket
 * nobody listens on yet is tried again. first: the host's first open, whose
 * opening null waits OPEN_PATIENCE_MS in all (as does any open of an exec:
 * target, whose daemon starts anew); a reopen of anything else tries it
 * 1 + resends times like any request, so a caller's reconnect loop is not
 * held for seconds each try while nothing answers. */
static int link_open(sn_host *h, unsigned patience_ms, bool first)
{
    open_why[0] = '\0';
    int err = sn__host_tr_open(h->target, patience_ms, &h->fd, &h->sock, &h->child, &h->baud);
    if (err < 0) {
        set_why("%s: %s", h->target,
                err == SN_EINVAL ? "not a usable link target" : strerror(errno));
        return err;
    }
    sn_link_dec_init(&h->dec, SN_LINK_REPLY);
    h->up = true;
    h->version_error = false;
    h->attention = false;
    h->waiting = false;
    /* The seq runs on across reopens: a device that kept its last reply
     * never takes the new link's first requests for resends. */
    unsigned tries = 1u + h->cfg.resends;
    if (first || h->child > 0) {
        unsigned patient = OPEN_PATIENCE_MS / (h->cfg.timeout_ms ? h->cfg.timeout_ms : 1u);
        if (patient > tries)
            tries = patient;
    }
    struct req q = {.cmd = SN_LINK_CMD_NULL, .slot = SN_LINK_SLOT_NONE, .attempts = tries};
    sn_link_net_status ns;
    h->opening = true;
    err = request(h, &q);
    h->opening = false;
    if (err == 0)
        err = net_status(h, &ns);
    if (err != 0) {
        if (h->version_error && h->version_seen != SN_LINK_VERSION)
            set_why("%s: the device speaks link protocol version %u, not %u", h->target,
                    (unsigned)h->version_seen, SN_LINK_VERSION);
        else if (h->version_error)
            set_why("%s: the device answered the opening null with a version error (-19): "
                    "it does not take link protocol version %u", h->target, SN_LINK_VERSION);
        else if (h->up)
            set_why("%s: malformed reply to the opening requests (%s)", h->target,
                    sn_strerror(err));
        else
            set_why("%s: no answer from a slotnet link device", h->target);
        h->up = false;
        sn__host_tr_close(h->fd, h->child);
        h->fd = -1;
        h->child = 0;
        return err == SN_EINVAL ? SN_EINVAL : SN_EIO;
    }
    h->nslots = ns.slots;
    h->epoch = ns.epoch;
    return 0;
}

static void link_close(sn_host *h)
{
    if (h->fd >= 0 || h->child > 0)
        sn__host_tr_close(h->fd, h->child);
    h->fd = -1;
    h->child = 0;
    h->up = false;
}

int sn_host_open(sn_host **out, const char *target, const sn_host_config *cfg)
{
    if (out == NULL || target == NULL || strlen(target) >= TARGET_MAX || target[0] == '\0') {
        set_why("no link target");
        return SN_EINVAL;
    }
    sn_host_config c;
    if (cfg)
        c = *cfg;
    else
        sn_host_config_default(&c);
    if (c.timeout_ms == 0 || c.timeout_ms > 60000u || c.resends > 100u) {
        set_why("bad link configuration");
        return SN_EINVAL;
    }
    sn_host *h = calloc(1, sizeof *h);
    if (h == NULL) {
        set_why("out of memory");
        return SN_ENOMEM;
    }
    h->cfg = c;
    memcpy(h->target, target, strlen(target) + 1);
    h->fd = -1;
    /* A daemon started just before us may not listen yet: try its socket
     * again for one reply timeout. */
    int err = link_open(h, c.timeout_ms, true);
    if (err < 0) {
        free(h);
        return err;
    }
    *out = h;
    return 0;
}

/* Makes the listens this host made again: to a device that kept them an
 * update that changes nothing, to one that lost or dropped them the same
 * listeners anew. SN_EIO when the link is lost meanwhile. */
static int relisten(sn_host *h)
{
    for (unsigned i = 0; i < SN_MAX_LISTENERS; i++) {
        const struct hlisten *l = &h->listeners[i];
        if (!l->used)
            continue;
        int err = sn_host_listen(h, &l->local, l->protocol, l->max_conns, l->idle_ms);
        if (err == SN_EIO)
            return err;
    }
    return 0;
}

int sn_host_reopen(sn_host *h)
{
    if (h == NULL || h->in_poll)
        return SN_EINVAL;
    link_close(h);
    h->ls.reopens++;
    int err = link_open(h, 0, false);
    if (err < 0)
        return err;
    return relisten(h);
}

bool sn_host_link_up(const sn_host *h) { return h != NULL && h->up; }

/* ---- Slots ---------------------------------------------------------------- */

static void slot_forget(struct hslot *m)
{
    sn_id gone = m->gone;
    int why = m->gone_why;
    memset(m, 0, sizeof *m);
    m->gone = gone; /* still owed its FREED */
    m->gone_why = why;
}

/* Why a connection the mirror held vanished: its own close drained, or
 * something else (idle timeout, reset, a device that dropped it). */
static int vanish_reason(const struct hslot *m)
{
    return m->closing ? SN_FREED_GRACEFUL : SN_FREED_IDLE;
}

/* The host changed slot i (connect, close, terminate, write): during a
 * poll pass, the pass's network status no longer tells the truth about it,
 * so the pass leaves it alone. A read changes nothing the mirror holds. */
static void touch(sn_host *h, unsigned i)
{
    if (h->in_poll && i < SN_LINK_SLOTS_MAX)
        h->touched |= (uint16_t)(1u << i);
}

/* The mirror's slot for id, or SN_ESTALE: an id the host never saw, or one
 * whose slot has moved on, is refused without asking the device. */
/* The slot a caller's handle names, on a live link: SN_EINVAL, SN_EIO or
 * SN_ESTALE otherwise. */
static int slot_of(const sn_host *h, sn_id id, unsigned *idx)
{
    if (h == NULL)
        return SN_EINVAL;
    if (!h->up)
        return SN_EIO;
    unsigned i = sn_id_index(id);
    if (id == SN_ID_NONE || i >= h->nslots || h->slot[i].handle != id)
        return SN_ESTALE;
    *idx = i;
    return 0;
}

/* Abort on slot i (id 0: whatever occupies it). */
static int terminate_slot(sn_host *h, unsigned i, sn_id id)
{
    touch(h, i);
    struct req q = {.cmd = SN_LINK_CMD_ABORT, .slot = (uint8_t)i, .param = id};
    int r = request(h, &q);
    if (r < 0)
        return r;
    slot_forget(&h->slot[i]);
    return 0;
}

void sn_host_shutdown(sn_host *h)
{
    if (h == NULL)
        return;
    /* As sn_core_shutdown does with its own: reset every connection, stop
     * every listener. The daemon outlives this host. */
    for (unsigned i = 0; i < SN_LINK_SLOTS_MAX && h->up; i++)
        if (h->slot[i].handle != SN_ID_NONE)
            terminate_slot(h, i, h->slot[i].handle);
    for (unsigned i = 0; i < SN_MAX_LISTENERS && h->up; i++)
        if (h->listeners[i].used)
            sn_host_listen(h, &h->listeners[i].local, h->listeners[i].protocol, 0, 0);
    link_close(h);
    free(h);
}

int sn_host_listen(sn_host *h, const sn_endpoint *local, uint8_t protocol, uint8_t max_conns,
                   uint32_t idle_ms)
{
    if (h == NULL || local == NULL || local->port == 0)
        return SN_EINVAL;
    uint8_t args[SN_LINK_ARGS_LEN];
    sn_link_args a = {local->addr, local->port, protocol, max_conns};
    sn_link_args_encode(&a, args);
    struct req q = {.cmd = SN_LINK_CMD_LISTEN,
                    .slot = SN_LINK_SLOT_NONE,
                    .param = idle_ms,
                    .data = args,
                    .len = SN_LINK_ARGS_LEN};
    int r = request(h, &q);
    if (r < 0)
        return r;
    /* Remembered so that sn_host_shutdown stops it, as the core would, and
     * so that a reopen or a device that dropped it gets it again. */
    struct hlisten *slot = NULL;
    for (unsigned i = 0; i < SN_MAX_LISTENERS; i++) {
        struct hlisten *l = &h->listeners[i];
        if (l->used && l->local.port == local->port) {
            slot = l;
            break;
        }
        if (!l->used && slot == NULL)
            slot = l;
    }
    if (slot != NULL) {
        slot->used = max_conns != 0;
        slot->local = *local;
        slot->protocol = protocol;
        slot->max_conns = max_conns;
        slot->idle_ms = idle_ms;
    }
    return 0;
}

/* The device gave slot i to a new connection of this host's: whatever the
 * mirror still held there vanished without the host seeing it go, and is
 * owed its FREED (the next poll raises it). */
static void slot_taken(sn_host *h, unsigned i)
{
    struct hslot *m = &h->slot[i];
    if (m->handle != SN_ID_NONE) {
        m->gone = m->handle;
        m->gone_why = vanish_reason(m);
        h->attention = true; /* something for the next poll to raise */
    }
    slot_forget(m);
    touch(h, i);
}

int sn_host_connect(sn_host *h, const sn_endpoint *remote, uint8_t protocol, uint32_t idle_ms,
                    sn_id *out)
{
    if (h == NULL || remote == NULL || remote->port == 0 || out == NULL)
        return SN_EINVAL;
    uint8_t args[SN_LINK_ARGS_LEN];
    sn_link_args a = {remote->addr, remote->port, protocol, 0};
    sn_link_args_encode(&a, args);
    struct req q = {.cmd = SN_LINK_CMD_CREATE,
                    .slot = SN_LINK_SLOT_NONE,
                    .param = idle_ms,
                    .data = args,
                    .len = SN_LINK_ARGS_LEN,
                    .space = 4}; /* resent after a timeout, it still makes one connection */
    int r = request(h, &q);
    if (r < 0)
        return r;
    if ((unsigned)r >= h->nslots || (unsigned)r >= SN_LINK_SLOTS_MAX) {
        /* A slot the host cannot name: if the device did take one, the next
         * poll finds a handle it never made there and raises ACCEPTED for
         * it, so the application sees it and can close it. */
        return SN_EIO;
    }
    sn_id id = h->rlen == 4 ? sn_link_get32(h->rdata) : SN_ID_NONE;
    slot_taken(h, (unsigned)r);
    if (id == SN_ID_NONE || sn_id_index(id) != (unsigned)r) {
        /* The slot is known but not its handle: give it back (abort
         * whatever occupies it, which is the connection just made). */
        terminate_slot(h, (unsigned)r, 0);
        return SN_EIO;
    }
    struct hslot *m = &h->slot[r];
    m->handle = id;
    m->state = SN_CONNECTING;
    m->connecting = true;
    *out = id;
    return 0;
}
int sn_host_read(sn_host *h, sn_id id, void *buf, size_t len)
{
    unsigned i;
    if (buf == NULL && len > 0)
        return SN_EINVAL;
    int err = slot_of(h, id, &i);
    if (err < 0)
        return err;
    if (len == 0)
        return 0; /* the device refuses a read of nothing (it would look like the end) */
    uint16_t space = len < SN_LINK_DATA_MAX ? (uint16_t)len : (uint16_t)SN_LINK_DATA_MAX;
    struct req q = {.cmd = SN_LINK_CMD_READ, .slot = (uint8_t)i, .param = id, .space = space};
    int r = request(h, &q);
    if (r <= 0)
        return r;
    size_t n = (size_t)r;
    if (n > h->rlen)
        n = h->rlen;
    if (n > space)
        n = space;
    memcpy(buf, h->rdata, n);
    return (int)n;
}

int sn_host_write(sn_host *h, sn_id id, const void *buf, size_t len, unsigned flags)
{
    unsigned i;
    if (buf == NULL && len > 0)
        return SN_EINVAL;
    int err = slot_of(h, id, &i);
    if (err < 0)
        return err;
    if (len > INT32_MAX)
        len = INT32_MAX;
    touch(h, i);
    const uint8_t *p = buf;
    size_t done = 0;
    /* Pieces until the device takes less than it is given: a core write
     * takes all the space there is, and so does this. */
    do {
        size_t chunk = len - done < SN_LINK_DATA_MAX ? len - done : SN_LINK_DATA_MAX;
        bool last = done + chunk == len;
        struct req q = {
            .cmd = SN_LINK_CMD_WRITE,
            .slot = (uint8_t)i,
            .flags = last ? (uint8_t)(flags & (SN_LINK_F_CLOSE_AFTER | SN_LINK_F_PUSH)) : 0u,
            .param = id,
            .data = p + done,
            .len = (uint16_t)chunk,
        };
        int r = request(h, &q);
        if (r < 0)
            return done > 0 ? (int)done : r; /* the error shows again on the next call */
        size_t took = (size_t)r < chunk ? (size_t)r : chunk;
        done += took;
        if (took < chunk) {
            h->slot[i].want_write = true;
            return (int)done;
        }
    } while (done < len);
    if (flags & SN_WRITE_CLOSE_AFTER) {
        h->slot[i].closing = true;
        h->slot[i].want_write = false;
        h->slot[i].state = SN_CLOSE_PENDING;
    }
    return (int)done;
}

int sn_host_close(sn_host *h, sn_id id)
{
    unsigned i;
    int err = slot_of(h, id, &i);
    if (err < 0)
        return err;
    touch(h, i);
    struct req q = {.cmd = SN_LINK_CMD_CLOSE, .slot = (uint8_t)i, .param = id};
    int r = request(h, &q);
    if (r < 0)
        return r;
    struct hslot *m = &h->slot[i];
    if (r == 1) {
        slot_forget(m); /* freed at once (reset or aborted): no FREED */
    } else {
        m->closing = true;
        m->want_write = false;
        m->state = SN_CLOSE_PENDING;
    }
    return 0;
}

int sn_host_terminate(sn_host *h, sn_id id)
{
    unsigned i;
    int err = slot_of(h, id, &i);
    if (err < 0)
        return err;
    return terminate_slot(h, i, id);
}

static int slot_status(sn_host *h, unsigned index, sn_link_status *ls)
{
    struct req q = {.cmd = SN_LINK_CMD_STATUS,
                    .slot = (uint8_t)index,
                    .space = SN_LINK_STATUS_LEN};
    int r = request(h, &q);
    if (r < 0)
        return r;
    if (sn_link_status_decode(h->rdata, h->rlen, ls) != 0) {
        h->ls.frame_errors++;
        return SN_EIO;
    }
    return 0;
}

int sn_host_slot_status_get(sn_host *h, unsigned index, sn_slot_status *st)
{
    if (h == NULL || st == NULL || index >= h->nslots)
        return SN_EINVAL;
    sn_link_status ls;
    int err = slot_status(h, index, &ls);
    if (err < 0)
        return err;
    memset(st, 0, sizeof *st);
    st->state = (sn_state)ls.state;
    st->id = st->state == SN_FREE ? SN_ID_NONE : h->slot[index].handle;
    st->protocol = ls.protocol;
    st->local.port = ls.local_port; /* the link carries no local address */
    st->remote.addr = ls.remote_addr;
    st->remote.port = ls.remote_port;
    st->readable = ls.readable;
    st->write_space = ls.write_space;
    st->last_error = ls.last_error != 0 ? sn_link_err_to_core(ls.last_error) : 0;
    return 0;
}

sn_id sn_host_slot_id(const sn_host *h, unsigned index)
{
    return h != NULL && index < h->nslots ? h->slot[index].handle : SN_ID_NONE;
}

sn_state sn_host_slot_state(const sn_host *h, unsigned index)
{
    return h != NULL && index < h->nslots ? h->slot[index].state : SN_FREE;
}

unsigned sn_host_slot_count(const sn_host *h) { return h != NULL ? h->nslots : 0; }

/* ---- Status, statistics, report ---------------------------------------- */

const sn_stats *sn_host_stats_get(const sn_host *h) { return h != NULL ? &h->stats : NULL; }

int sn_host_stats_fetch(sn_host *h)
{
    if (h == NULL)
        return SN_EINVAL;
    struct req q = {.cmd = SN_LINK_CMD_STATS,
                    .slot = SN_LINK_SLOT_NONE,
                    .space = SN_LINK_STATS_LEN};
    int r = request(h, &q);
    if (r < 0)
        return r;
    if (sn_link_stats_decode(h->rdata, h->rlen, &h->stats, &h->ls.device_turn_us) != 0) {
        h->ls.frame_errors++;
        return SN_EIO;
    }
    return 0;
}

size_t sn_host_report(sn_host *h, char *buf, size_t len)
{
    if (h == NULL)
        return 0;
    size_t off = 0, total = 0;
    size_t room = len > 0 ? len - 1 : 0;
    do {
        size_t want = room - off < SN_LINK_DATA_MAX ? room - off : SN_LINK_DATA_MAX;
        struct req q = {.cmd = SN_LINK_CMD_DIAG,
                        .slot = SN_LINK_SLOT_NONE,
                        .param = (uint32_t)off,
                        .space = (uint16_t)want};
        int r = request(h, &q);
        if (r < 0) {
            if (len > 0)
                buf[0] = '\0';
            return 0;
        }
        total = (size_t)r;
        size_t got = h->rlen < want ? h->rlen : want;
        memcpy(buf + off, h->rdata, got);
        off += got;
        if (got == 0)
            break; /* past the end (or the text shrank between pages) */
    } while (off < room && off < total);
    if (len > 0)
        buf[off] = '\0';
    return total;
}

void sn_host_link_stats_get(const sn_host *h, sn_host_link_stats *out)
{
    if (h == NULL || out == NULL)
        return;
    *out = h->ls;
    /* The decoder counts attention bytes among the garbage it skips. */
    out->garbage = h->dec.garbage - h->dec.attention;
    out->rtt_p50_us = hist_pct(h, 50);
    out->rtt_p99_us = hist_pct(h, 99);
}

/* ---- Poll: events from the difference ----------------------------------- */

static void emit(sn_host *h, sn_id id, sn_event ev, int info)
{
    if (h->cfg.on_event)
        h->cfg.on_event(h, id, ev, info, h->cfg.user);
}

/* Why slot i aborted or failed, as an SN_E* code. */
static int last_error(sn_host *h, unsigned i)
{
    sn_link_status ls;
    if (slot_status(h, i, &ls) < 0 || ls.last_error == 0)
        return SN_EIO;
    return sn_link_err_to_core(ls.last_error);
}

/* Compares slot i of ns with the mirror and raises what changed, in the
 * core's order. Stops when a handler closes or frees the slot. */
static void diff_slot(sn_host *h, unsigned i, const sn_link_net_status *ns)
{
    struct hslot *m = &h->slot[i];
    sn_id now = ns->handle[i];
    uint32_t bit = 1u << i;

    if (m->gone != SN_ID_NONE) {
        /* Vanished before a create of this host's took the slot. */
        sn_id old = m->gone;
        m->gone = SN_ID_NONE;
        emit(h, old, SN_EV_FREED, m->gone_why);
        if (h->touched & bit)
            return; /* a handler acted on the slot: look again next pass */
    }
    if (m->handle != SN_ID_NONE && m->handle != now) {
        /* Gone without this host freeing it: its close ended, an idle
         * timeout, or a new daemon behind the link. */
        sn_id old = m->handle;
        int why = vanish_reason(m);
        slot_forget(m);
        emit(h, old, SN_EV_FREED, why);
        if (h->touched & bit)
            return; /* e.g. a handler connected out into this slot meanwhile */
    }
    if (now == SN_ID_NONE)
        return;
    if (m->handle != now) {
        /* Not created here, so a listener's. */
        slot_forget(m);
        m->handle = now;
        m->state = SN_CONNECTED;
        emit(h, now, SN_EV_ACCEPTED, 0);
        if (m->handle != now)
            return;
    }

    bool connected = ns->connected & bit, closed = ns->closed & bit;
    bool aborted = ns->aborted & bit, readable = ns->readable & bit;
    bool writable = ns->writable & bit;

    if (m->closing) {
        m->state = SN_CLOSE_PENDING;
        return; /* only its FREED is still to come */
    }
    if (m->connecting) {
        if (connected || (closed && !aborted)) {
            m->connecting = false;
            m->state = SN_CONNECTED;
            emit(h, now, SN_EV_CONNECTED, 0);
        } else if (aborted) {
            m->connecting = false;
            m->aborted = true;
            m->state = SN_ABORTED;
            emit(h, now, SN_EV_CONNECT_FAILED, last_error(h, i));
        } else {
            return; /* still connecting (or waiting for a retry) */
        }
        if (m->handle != now)
            return;
    }
    m->state = aborted ? SN_ABORTED : connected ? SN_CONNECTED : closed ? SN_OTHER_END_CLOSED
                                                                        : SN_CLOSE_PENDING;
    if (aborted) {
        if (!m->aborted) {
            m->aborted = true;
            emit(h, now, SN_EV_ABORTED, last_error(h, i));
        }
        return;
    }
    if (readable) {
        emit(h, now, SN_EV_READABLE, 0); /* every pass while bytes wait, as the core */
        if (m->handle != now || m->closing)
            return;
    }
    if (closed && !m->peer_closed) {
        m->peer_closed = true;
        emit(h, now, SN_EV_PEER_CLOSED, 0);
        if (m->handle != now || m->closing)
            return;
    }
    /* A peer gone also answers a waiting writer: its next write says so. */
    if (m->want_write && (writable || closed)) {
        m->want_write = false;
        emit(h, now, SN_EV_WRITABLE, 0);
    }
}

/* The device gave up on this host (its grace period ended with the host
 * silent): every connection was reset and every listener stopped. As after
 * a reopen: the listens again, and FREED for every connection held. */
static void device_dropped(sn_host *h)
{
    h->ls.epochs++;
    if (relisten(h) < 0)
        return;
    for (unsigned i = 0; i < SN_LINK_SLOTS_MAX; i++) {
        struct hslot *m = &h->slot[i];
        if (m->gone != SN_ID_NONE) {
            sn_id old = m->gone;
            m->gone = SN_ID_NONE;
            emit(h, old, SN_EV_FREED, m->gone_why);
        }
        if (m->handle != SN_ID_NONE && !(h->touched & (1u << i))) {
            sn_id old = m->handle;
            int why = vanish_reason(m);
            slot_forget(m);
            emit(h, old, SN_EV_FREED, why);
        }
    }
}

int sn_host_poll(sn_host *h, uint32_t now_ms)
{
    (void)now_ms;
    if (h == NULL || h->in_poll)
        return SN_EINVAL;
    if (!h->up)
        return SN_EIO;
    sn_link_net_status ns;
    int err = net_status(h, &ns);
    if (err < 0)
        return err;
    h->ls.polls++;
    h->nslots = ns.slots;
    h->stats.backlog_now = ns.backlog_now;
    h->stats.backlog_peak = ns.backlog_peak;
    h->in_poll = true;
    h->touched = 0;
    if (ns.epoch != h->epoch) {
        h->epoch = ns.epoch;
        device_dropped(h);
    }
    /* Every slot the mirror can hold: a smaller table behind a reopened
     * link reads as handles 0 beyond its end. A slot a handler changed
     * before its turn (connect, close, terminate, write) is not compared
     * with this network status, which predates the change: the next pass,
     * made at once, does it. */
    uint16_t skipped = 0;
    for (unsigned i = 0; i < SN_LINK_SLOTS_MAX && h->up; i++) {
        if (h->touched & (1u << i))
            skipped |= (uint16_t)(1u << i);
        else
            diff_slot(h, i, &ns);
    }
    if (skipped)
        h->attention = true; /* poll again at once for what was left */
    h->in_poll = false;
    return h->up ? 0 : SN_EIO;
}

uint32_t sn_host_next_timeout(const sn_host *h, uint32_t now_ms, uint32_t max_ms)
{
    (void)now_ms;
    if (h == NULL || !h->up)
        return max_ms;
    if (h->attention)
        return 0;
    uint32_t t = max_ms;
    for (unsigned i = 0; i < h->nslots; i++) {
        const struct hslot *m = &h->slot[i];
        /* The device announces write space and connects with its attention
         * byte; this is the net under it. */
        if ((m->want_write || m->connecting) && h->cfg.write_poll_ms < t)
            t = h->cfg.write_poll_ms;
    }
    return t;
}

int sn_host_wait(sn_host *h, uint32_t ms)
{
    if (h == NULL)
        return SN_EINVAL;
    if (!h->up)
        return SN_EIO;
    if (h->attention)
        return 1;
    uint64_t deadline = now_us() + (uint64_t)ms * 1000u;
    for (;;) {
        int r = wait_fd(h, POLLIN, deadline, true);
        if (r < 0 || (r & (POLLERR | POLLNVAL)))
            return lost(h);
        if (r == 0)
            return 0;
        if (pump_in(h) < 0 || h->version_error)
            return lost(h);
        if (h->attention)
            return 1;
        /* Only late replies or noise: keep sleeping. */
    }
}
