/*
 * libFuzzer harness: slotnetd's command handler (src/link/device.c) on a
 * simulator-backed core (include/slotnet/sim.h), driven as a host and a
 * network would drive it.
 *
 * Input: byte 0 picks the slot count (1..16) and byte 1 the sim's seed;
 * then records, each an op byte and its operands (missing bytes read 0):
 *   op % 12:
 *    0-2  a request built from the input and encoded with sn_link_encode,
 *         so the fuzzer gets past the CRC: command (mostly a known one),
 *         slot, flags and seq (one byte: bits 0-1 flags, 2-7 seq), param
 *         (0, the slot's handle, a stale one, or raw), space, data (args
 *         for create/listen on a few ports, else bytes)
 *    3    the last request built, sent again byte for byte (a host's resend
 *         after a lost reply); a new one when there is none
 *    4    raw bytes
 *    5    a request with one byte flipped (CRC, version, len, sync)
 *    6    the first part of a request only
 *    7    the sim advances 1..64 ms; sn_poll; the gap flush; attention
 *    8    peers: a client connects to a port, or sends, reads, closes,
 *         resets; a remote server for outgoing connects appears
 *    9    the host drains only part of the output (a slow host)
 *   10    the host goes away: sn_dev_stop_all, sn_dev_reset
 *   11    a header with len > 2048
 * Bytes the device does not take yet (a reply is pending) wait in a queue,
 * like a socket buffer.
 *
 * After every step, abort() unless:
 *   - sn_check() holds and the sim saw no misuse;
 *   - everything the device sent decodes as replies (no CRC, version or
 *     size error) and the only bytes between frames are attention bytes;
 *   - each reply answers, in order, the request a twin decoder fed the same
 *     bytes found (command, slot and seq echoed; a version error only for a
 *     foreign version at a clean position, frame.rescan false, never for one
 *     found in a rescan), with len <= that request's space and 2048, no data
 *     with an error, and data of the documented size for status, network
 *     status, statistics, create and read;
 *   - a request repeating the last one's nonzero seq, command and slot gets
 *     the byte-identical reply (the replay cache), never a new one;
 *   - no attention byte while a request is in flight or twice between two
 *     requests; after sn_dev_stop_all every slot is free;
 *   - while the host is idle (nothing queued, in flight or pending) and no
 *     attention byte went out since its last request, a table that differs
 *     from what the host was last shown (recomputed here from the core)
 *     brings the attention byte within 2 time steps;
 *   - sn_dev_feed yields on its budget without losing bytes: everything sent
 *     is consumed and answered in the end.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "slotnet/device.h"
#include "slotnet/sim.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                           \
    do {                                                                                      \
        if (!(cond)) {                                                                        \
            fprintf(stderr, "fuzz_device: invariant failed at %s:%d: %s\n", __FILE__,        \
                    __LINE__, #cond);                                                         \
            abort();                                                                          \
        }                                                                                     \
    } while (0)

#define MAX_PEERS 32
#define QUEUE_MAX 16384
#define EXPECT_MAX 256
#define MAX_RECORDS 400

static const uint16_t ports[] = {80, 81, 8080, 9000};
static const uint8_t known_cmds[] = {0, 1, 2, 3, 4, 5, 6, 7, 9, 32, 33};
#define REMOTE_ADDR 0x0a000002u

typedef struct expect {
    uint8_t command, slot, seq; /* a version error: command 0, slot 0xFF */
    uint16_t space;
    bool version_error;
    bool replay;                /* a resend: the last reply again, byte for byte */
} expect;

typedef struct harness {
    const uint8_t *in;
    size_t len, pos;
    sn_sim *sim;
    sn_core *core;
    void *core_mem;
    sn_link_device dev;
    unsigned slots;

    uint8_t queue[QUEUE_MAX]; /* host -> device bytes not taken yet */
    size_t qlen;
    sn_link_decoder twin;     /* what the device's decoder sees */
    expect exp[EXPECT_MAX];
    size_t nexp;
    bool exp_overflow;

    sn_link_decoder host;     /* device -> host */
    uint64_t attention_seen;
    unsigned owed;            /* time steps an attention byte has been due */

    /* The replay model: the last request the twin found, and the bytes of
     * the reply the host got for it. */
    bool last_valid;
    uint8_t last_seq, last_cmd, last_slot;
    uint8_t last_reply[SN_LINK_FRAME_MAX];
    size_t last_reply_len;
    uint8_t last_frame[SN_LINK_FRAME_MAX]; /* the last request built, for op 3 */
    size_t last_frame_len;

    sn_sim_peer peers[MAX_PEERS];
    unsigned npeers;
} harness;

static uint8_t byte(harness *h) { return h->pos < h->len ? h->in[h->pos++] : 0; }

static uint16_t u16(harness *h)
{
    uint16_t lo = byte(h);
    return (uint16_t)(lo | (uint16_t)byte(h) << 8);
}

static uint32_t u32(harness *h)
{
    uint32_t lo = u16(h);
    return lo | (uint32_t)u16(h) << 16;
}

static void check_core(harness *h)
{
    char why[256];
    if (sn_check(h->core, why, sizeof why) != 0) {
        fprintf(stderr, "fuzz_device: sn_check: %s\n", why);
        abort();
    }
    CHECK(sn_sim_misuse(h->sim) == NULL);
}

/* ---- The host's side: replies against expectations -------------------- */

static void expect_push(harness *h, expect e)
{
    if (h->nexp == EXPECT_MAX) {
        h->exp_overflow = true; /* cannot happen while replies are drained in order */
        return;
    }
    h->exp[h->nexp++] = e;
}

static void check_reply(harness *h, const sn_link_frame *f)
{
    CHECK(f->kind == SN_LINK_REPLY && f->version == SN_LINK_VERSION);
    CHECK(f->status & SN_LINK_ST_UP);
    CHECK((f->status & ~(SN_LINK_ST_UP | SN_LINK_ST_ATTENTION)) == 0);
    CHECK(f->len <= SN_LINK_DATA_MAX);
    CHECK(h->nexp > 0 || h->exp_overflow);
    if (h->nexp == 0)
        return;
    expect e = h->exp[0];
    memmove(h->exp, h->exp + 1, (h->nexp - 1) * sizeof h->exp[0]);
    h->nexp--;
    if (e.version_error) {
        CHECK(f->command == 0 && f->slot == SN_LINK_SLOT_NONE);
        CHECK(f->response == SN_LINK_E_VERSION && f->len == 0 && f->seq == 0);
        return;
    }
    /* The reply's bytes: in the host decoder's buffer while it is handed out. */
    const uint8_t *raw = h->host.buf;
    size_t rawlen = h->host.emitted;
    CHECK(rawlen == SN_LINK_OVERHEAD + f->len);
    if (e.replay) {
        CHECK(h->last_reply_len > 0);
        CHECK(rawlen == h->last_reply_len && memcmp(raw, h->last_reply, rawlen) == 0);
        return;
    }
    memcpy(h->last_reply, raw, rawlen);
    h->last_reply_len = rawlen;
    CHECK(f->seq == e.seq);
    CHECK(f->command == e.command);
    CHECK(f->len <= e.space);
    if (f->response < 0) {
        CHECK(f->len == 0);
        CHECK(f->response >= SN_LINK_E_IO); /* only codes a reply may carry */
        CHECK(f->slot == e.slot);
        return;
    }
    switch (f->command) {
    case SN_LINK_CMD_CREATE:
        CHECK(f->len == 4 && f->slot == f->response && f->response < (int32_t)h->slots);
        CHECK(sn_id_index(sn_link_get32(f->data)) == f->slot);
        break;
    case SN_LINK_CMD_STATUS: {
        sn_link_status st;
        CHECK(f->slot == e.slot && f->response == 0);
        CHECK(sn_link_status_decode(f->data, f->len, &st) == 0 && st.slot == e.slot);
        break;
    }
    case SN_LINK_CMD_NET_STATUS: {
        sn_link_net_status ns;
        CHECK(f->response == 0);
        CHECK(sn_link_net_status_decode(f->data, f->len, &ns) == 0 && ns.slots == h->slots);
        for (unsigned i = 0; i < ns.slots; i++)
            CHECK(ns.handle[i] == 0 || sn_id_index(ns.handle[i]) == i);
        CHECK((ns.connected & ~ns.in_use) == 0 && (ns.aborted & ~ns.closed) == 0);
        break;
    }
    case SN_LINK_CMD_STATS:
        CHECK(f->response == 0 && f->len == SN_LINK_STATS_LEN);
        break;
    case SN_LINK_CMD_READ:
        CHECK(f->slot == e.slot && f->response == f->len && f->len <= e.space);
        break;
    case SN_LINK_CMD_DIAG:
        CHECK(f->len <= (uint32_t)f->response);
        break;
    case SN_LINK_CMD_CLOSE:
        CHECK(f->slot == e.slot && (f->response == 0 || f->response == 1) && f->len == 0);
        break;
    case SN_LINK_CMD_WRITE:
        CHECK(f->slot == e.slot && f->len == 0);
        break;
    default:
        CHECK(f->slot == e.slot && f->response == 0 && f->len == 0);
        break;
    }
}

/* Takes up to max bytes of the device's output (a host reading its socket). */
static void drain(harness *h, size_t max)
{
    const uint8_t *p;
    size_t n = sn_dev_output(&h->dev, &p);
    if (n > max)
        n = max;
    if (n == 0)
        return;
    /* The attention byte is the whole output when it is queued (never a
     * reply's length), so it can be told apart here. */
    if (h->dev.out_len == 1) {
        CHECK(p[0] == SN_LINK_ATTENTION && h->dev.out_aux);
        h->attention_seen++;
    }
    size_t pos = 0;
    while (pos < n) {
        size_t used = 0;
        sn_link_frame f;
        int r = sn_link_dec_feed(&h->host, p + pos, n - pos, &used, &f);
        CHECK(r >= 0);
        pos += used;
        if (r == 1)
            check_reply(h, &f);
        else
            break;
    }
    /* Between frames the device sends nothing but attention bytes. */
    CHECK(h->host.garbage == h->attention_seen);
    CHECK(h->host.attention == h->attention_seen);
    sn_dev_sent(&h->dev, n);
}

/* ---- The device's side -------------------------------------------------- */

/* Feeds the twin the bytes the device consumed: it finds the same requests. */
static void twin_feed(harness *h, const uint8_t *p, size_t n)
{
    size_t pos = 0;
    for (int guard = 0; guard < 100000; guard++) {
        size_t used = 0;
        sn_link_frame f;
        int r = sn_link_dec_feed(&h->twin, n ? p + pos : NULL, n - pos, &used, &f);
        pos += used;
        if (r == 1) {
            bool resend = h->last_valid && f.seq != 0 && f.seq == h->last_seq &&
                          f.command == h->last_cmd && f.slot == h->last_slot;
            expect_push(h, (expect){.command = f.command, .slot = f.slot, .seq = f.seq,
                                    .space = f.space, .replay = resend});
            if (!resend) {
                h->last_valid = f.seq != 0;
                h->last_seq = f.seq;
                h->last_cmd = f.command;
                h->last_slot = f.slot;
            }
        } else if (r == SN_LINK_E_VERSION && !f.rescan) {
            expect_push(h, (expect){.version_error = true});
        } else if (r == 0 && pos == n)
            return;
    }
    CHECK(0 && "twin decoder made no progress");
}

static uint32_t now(harness *h) { return sn_sim_now(h->sim); }

/* Offers the queued bytes to the device; a host that reads fully drains the
 * output between requests. */
static void pump(harness *h, bool drain_all)
{
    for (int guard = 0; guard < 8192; guard++) {
        if (drain_all)
            drain(h, SIZE_MAX);
        /* Input after a silence starts clean in the device: the same mark
         * for the twin (both have nothing buffered then). */
        const uint8_t *p;
        if (h->qlen > 0 && sn_dev_output(&h->dev, &p) == 0 &&
            !sn_link_dec_partial(&h->dev.dec) &&
            sn_time_reached(now(h), h->dev.last_rx_ms + SN_LINK_GAP_MS)) {
            CHECK(!sn_link_dec_partial(&h->twin));
            CHECK(sn_link_dec_flush(&h->twin) == 0);
        }
        size_t used = sn_dev_feed(&h->dev, h->queue, h->qlen, now(h));
        CHECK(used <= h->qlen);
        twin_feed(h, h->queue, used);
        memmove(h->queue, h->queue + used, h->qlen - used);
        h->qlen -= used;
        bool pending = sn_dev_output(&h->dev, &p) > 0;
        if (!drain_all)
            return;
        if (!pending && !h->dev.yielded) /* a yield: more next turn */
            return;
    }
    CHECK(0 && "pump made no progress");
}

static void send_bytes(harness *h, const uint8_t *p, size_t n)
{
    if (n > QUEUE_MAX - h->qlen)
        n = QUEUE_MAX - h->qlen; /* a full socket buffer: the rest is not sent */
    memcpy(h->queue + h->qlen, p, n);
    h->qlen += n;
    pump(h, true);
}

/* ---- Records ------------------------------------------------------------ */

static uint32_t param_for(harness *h, uint8_t slot)
{
    uint8_t mode = byte(h) & 3;
    sn_id cur = slot < h->slots ? sn_slot_id(h->core, slot) : SN_ID_NONE;
    switch (mode) {
    case 0: return 0;
    case 1: return cur;
    case 2: return cur + 0x100u; /* another generation: stale */
    default: return u32(h);
    }
}

static size_t build_request(harness *h, uint8_t *out, size_t cap)
{
    uint8_t sel = byte(h);
    uint8_t cmd = sel < 240 ? known_cmds[sel % sizeof known_cmds] : byte(h);
    uint8_t s = byte(h);
    uint8_t slot = s < 200 ? (uint8_t)(s % (h->slots + 1)) : s;
    uint8_t buf[SN_LINK_DATA_MAX];
    sn_link_frame f = {.kind = SN_LINK_REQUEST, .command = cmd, .slot = slot};
    uint8_t fs = byte(h);
    f.flags = fs & SN_LINK_F_MASK;
    f.seq = (uint8_t)(fs >> 2);
    f.param = param_for(h, slot);
    uint8_t sp = byte(h);
    f.space = sp < 128 ? (uint16_t)(SN_LINK_DATA_MAX - (sp & 7)) : u16(h);
    if (cmd == SN_LINK_CMD_CREATE || cmd == SN_LINK_CMD_LISTEN) {
        sn_link_args a = {
            .addr = (byte(h) & 1) ? REMOTE_ADDR : 0,
            .port = ports[byte(h) % 4],
            .protocol = byte(h),
            .max_conns = (uint8_t)(byte(h) % 5),
        };
        sn_link_args_encode(&a, buf);
        f.len = (byte(h) & 7) ? SN_LINK_ARGS_LEN : (uint16_t)(byte(h) % 10);
        if (cmd == SN_LINK_CMD_LISTEN || cmd == SN_LINK_CMD_CREATE)
            f.param %= 5000; /* an idle timeout the core takes */
    } else {
        uint8_t l = byte(h);
        f.len = l < 200 ? (cmd == SN_LINK_CMD_WRITE ? l : 0) : (uint16_t)(u16(h) % 2049);
        for (size_t i = 0; i < f.len; i++)
            buf[i] = (uint8_t)(i * 31u + l);
    }
    if (cmd == SN_LINK_CMD_DIAG)
        f.param &= 0xFFFu;
    f.data = buf;
    int n = sn_link_encode(&f, out, cap);
    CHECK(n > 0);
    memcpy(h->last_frame, out, (size_t)n);
    h->last_frame_len = (size_t)n;
    return (size_t)n;
}

static void peer_op(harness *h)
{
    uint8_t op = byte(h) % 6;
    uint8_t k = byte(h);
    sn_sim_peer p = h->npeers ? h->peers[k % h->npeers] : SN_SIM_PEER_NONE;
    uint8_t buf[512];
    switch (op) {
    case 0: {
        sn_endpoint dst = {.addr = 0, .port = ports[k % 4]};
        sn_sim_peer np;
        if (h->npeers < MAX_PEERS && sn_sim_client_connect(h->sim, &dst, &np) == 0)
            h->peers[h->npeers++] = np;
        break;
    }
    case 1:
        if (p) {
            size_t n = byte(h) * 4u;
            memset(buf, 'x', sizeof buf);
            (void)sn_sim_peer_send(h->sim, p, buf, n < sizeof buf ? n : sizeof buf);
        }
        break;
    case 2:
        if (p)
            (void)sn_sim_peer_read(h->sim, p, buf, sizeof buf);
        break;
    case 3:
        if (p)
            (void)sn_sim_peer_close(h->sim, p);
        break;
    case 4:
        if (p)
            (void)sn_sim_peer_reset(h->sim, p);
        break;
    default: {
        sn_endpoint ep = {.addr = REMOTE_ADDR, .port = ports[k % 4]};
        sn_sim_server_config sc = {
            .mode = (sn_sim_server_mode)(byte(h) % 5),
            .peer_mode = SN_SIM_PEER_AUTO_READ,
            .detach = true,
        };
        (void)sn_sim_server_add(h->sim, &ep, &sc);
        break;
    }
    }
}

/* The gap flush, seen by the twin at the same point of the stream. */
static void gap(harness *h)
{
    if (h->qlen != 0) /* only once every byte received has been fed */
        return;
    uint64_t before = h->dev.count.truncated;
    int r = sn_dev_flush_gap(&h->dev, now(h));
    uint64_t drops = h->dev.count.truncated - before;
    CHECK((r < 0) == (drops > 0) && drops <= 32);
    for (uint64_t i = 0; i < drops; i++) {
        CHECK(sn_link_dec_flush(&h->twin) == SN_LINK_E_TRUNCATED);
        twin_feed(h, NULL, 0);
    }
}

/* The table now against what the host was last shown (h->dev.view),
 * recomputed from the core: a bit newly set, a handle or the epoch changed. */
static bool news(harness *h)
{
    const sn_dev_view *v = &h->dev.view;
    if (v->epoch != h->dev.epoch)
        return true;
    for (unsigned i = 0; i < h->slots; i++) {
        sn_slot_status st;
        uint16_t b = (uint16_t)(1u << i);
        bool used = sn_slot_status_get(h->core, i, &st) == 0 && st.state != SN_FREE;
        uint32_t handle = used ? st.id : 0;
        if (handle != v->handle[i])
            return true;
        if (!used)
            continue;
        bool open = st.state == SN_CONNECTED || st.state == SN_OTHER_END_CLOSED;
        if (!(v->in_use & b) ||
            (st.state == SN_CONNECTED && !(v->connected & b)) ||
            ((st.state == SN_OTHER_END_CLOSED || st.state == SN_ABORTED) && !(v->closed & b)) ||
            (st.state == SN_ABORTED && !(v->aborted & b)) ||
            (open && st.readable > 0 && !(v->readable & b)) ||
            (open && st.write_space > 0 && !(v->writable & b)))
            return true;
    }
    return false;
}

static void step_time(harness *h)
{
    uint32_t ms = 1u + byte(h) % 64u;
    sn_sim_advance(h->sim, ms);
    sn_poll(h->core, now(h));
    check_core(h);
    gap(h);
    pump(h, false);
    bool busy = sn_dev_busy(&h->dev);
    bool sent_before = h->dev.attention_sent;
    if (sn_dev_attention(&h->dev)) {
        CHECK(!busy && !sent_before); /* never inside a request, once between two */
        const uint8_t *p;
        CHECK(sn_dev_output(&h->dev, &p) == 1 && p[0] == SN_LINK_ATTENTION);
    }
    drain(h, SIZE_MAX);
    /* Something the host has not seen, while it is idle and owed a byte:
     * the attention byte must not be late. */
    const uint8_t *p;
    bool idle = h->qlen == 0 && !sn_dev_busy(&h->dev) && sn_dev_output(&h->dev, &p) == 0 &&
                !h->dev.yielded;
    if (idle && !h->dev.attention_sent && news(h))
        h->owed++;
    else
        h->owed = 0;
    CHECK(h->owed <= 2);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static harness h;
    memset(&h, 0, sizeof h);
    h.in = data;
    h.len = size;
    h.slots = 1u + byte(&h) % SN_LINK_SLOTS_MAX;

    sn_sim_config sc;
    sn_sim_config_default(&sc);
    sc.seed = byte(&h);
    sc.max_links = 64;
    if (sn_sim_create(&h.sim, &sc) != 0)
        return 0;
    sn_config cfg;
    sn_config_default(&cfg);
    cfg.slots = (uint8_t)h.slots;
    cfg.connect_base_ms = 50;
    cfg.connect_retries = 2;
    cfg.connect_timeout_ms = 200;
    cfg.close_timeout_ms = 300;
    cfg.on_event = sn_dev_on_event;
    cfg.user = &h.dev;
    size_t need = sn_core_size(&cfg);
    h.core_mem = malloc(need);
    CHECK(h.core_mem != NULL);
    CHECK(sn_core_init(&h.core, h.core_mem, need, &cfg, sn_sim_backend(h.sim)) == 0);
    CHECK(sn_dev_init(&h.dev, h.core) == 0);
    sn_link_dec_init(&h.twin, SN_LINK_REQUEST);
    sn_link_dec_init(&h.host, SN_LINK_REPLY);

    uint8_t frame[SN_LINK_FRAME_MAX];
    for (int rec = 0; rec < MAX_RECORDS && h.pos < h.len; rec++) {
        uint8_t op = byte(&h) % 12;
        switch (op) {
        case 0: case 1: case 2:
            send_bytes(&h, frame, build_request(&h, frame, sizeof frame));
            break;
        case 3:
            if (h.last_frame_len > 0) {
                memcpy(frame, h.last_frame, h.last_frame_len);
                send_bytes(&h, frame, h.last_frame_len);
            } else {
                send_bytes(&h, frame, build_request(&h, frame, sizeof frame));
            }
            break;
        case 4: {
            size_t n = byte(&h) % 64u;
            if (n > h.len - h.pos)
                n = h.len - h.pos;
            send_bytes(&h, h.in + h.pos, n);
            h.pos += n;
            break;
        }
        case 5: {
            size_t n = build_request(&h, frame, sizeof frame);
            size_t at = u16(&h) % n;
            frame[at] ^= (uint8_t)(1u << (byte(&h) & 7));
            send_bytes(&h, frame, n);
            break;
        }
        case 6: {
            size_t n = build_request(&h, frame, sizeof frame);
            send_bytes(&h, frame, 1 + byte(&h) % (n - 1));
            break;
        }
        case 7:
            step_time(&h);
            break;
        case 8:
            peer_op(&h);
            break;
        case 9:
            drain(&h, byte(&h) % 32u);
            pump(&h, false);
            break;
        case 10: {
            drain(&h, SIZE_MAX);
            sn_dev_stop_all(&h.dev, NULL);
            for (unsigned i = 0; i < h.slots; i++)
                CHECK(sn_slot_state(h.core, i) == SN_FREE);
            /* A new host: what is queued or half-decoded is lost with the old. */
            sn_dev_reset(&h.dev);
            h.qlen = 0;
            h.nexp = 0;
            sn_link_dec_init(&h.twin, SN_LINK_REQUEST);
            sn_link_dec_init(&h.host, SN_LINK_REPLY);
            h.attention_seen = 0;
            h.last_valid = false; /* the device forgets its replay cache */
            h.owed = 0;
            break;
        }
        default: {
            uint8_t hdr[SN_LINK_SYNC_LEN + SN_LINK_HDR_LEN] = {SN_LINK_SYNC0, SN_LINK_SYNC_REQ,
                                                               SN_LINK_VERSION, byte(&h)};
            sn_link_put16(hdr + 6, (uint16_t)(SN_LINK_DATA_MAX + 1u + u16(&h) % 60000u));
            send_bytes(&h, hdr, sizeof hdr);
            break;
        }
        }
        check_core(&h);
    }
    /* The end: time passes so every gap and close resolves; all is answered.
     * 70 rounds of 32 drops cover a whole frame buffer of false starts. */
    for (int i = 0; i < 80; i++) {
        if (i >= 8 && h.qlen == 0 && !sn_link_dec_partial(&h.dev.dec))
            break;
        drain(&h, SIZE_MAX);
        pump(&h, true);
        sn_sim_advance(h.sim, 64);
        sn_poll(h.core, now(&h));
        gap(&h);
        check_core(&h);
    }
    drain(&h, SIZE_MAX);
    pump(&h, true);
    drain(&h, SIZE_MAX);
    CHECK(h.qlen == 0 && !sn_link_dec_partial(&h.dev.dec));
    CHECK(h.nexp == 0 || h.exp_overflow);

    sn_core_shutdown(h.core);
    CHECK(sn_sim_misuse(h.sim) == NULL);
    free(h.core_mem);
    sn_sim_destroy(h.sim);
    return 0;
}
