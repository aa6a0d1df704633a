/*
 * libFuzzer harness: the link frame decoder (src/link/frame.c) and the
 * payload decoders (src/link/payload.c).
 *
 * Input: two control bytes, then the byte stream.
 *   byte 0, bits 0-1  accept mask: 0 and 3 both kinds, 1 requests, 2 replies
 *           bit 2     call sn_link_dec_flush between some chunks
 *           bits 3-7  chunking style (mixed with byte 1)
 *   byte 1            seed of the chunk sizes and flush points
 *
 * The stream is fed in chunks (sizes 0..all of it, from the seed), every
 * frame handed out is checked, sn_link_dec_flush is called at points, and
 * the decoder is drained with len-0 feeds. A violated invariant abort()s:
 *   - used <= len; ret 0 only once the chunk is all consumed; only the
 *     documented return values; bounded calls (no loop without progress);
 *   - byte conservation: every byte fed is skipped (d.garbage), part of a
 *     frame handed out, or still buffered; counters match the returns;
 *   - a frame handed out re-encodes (sn_link_encode) to exactly the stream
 *     bytes it was decoded from (a reply's reserved field aside);
 *   - attention bytes: d.attention counts exactly the 0x21 bytes skipped
 *     (those of the stream outside the frames handed out);
 *   - frame.rescan is false exactly for a frame at the stream's start or
 *     right behind the previous frame (no flushes), whatever the chunking;
 *   - payloads of the right length decode, and re-encode to their bytes;
 *   - without flushes, the frames and errors found do not depend on the
 *     chunking: a second decoder fed the whole stream at once must agree.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "slotnet.h"
#include "slotnet/link.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                           \
    do {                                                                                      \
        if (!(cond)) {                                                                        \
            fprintf(stderr, "fuzz_link_decoder: invariant failed at %s:%d: %s\n", __FILE__,   \
                    __LINE__, #cond);                                                         \
            abort();                                                                          \
        }                                                                                     \
    } while (0)

/* One result of the decoder, where it happened in the stream. */
typedef struct event {
    int ret;         /* 1 or a negative error */
    uint64_t at;     /* frames: start offset; errors: garbage count after it */
    uint32_t len;    /* frames: length */
    bool rescan;     /* frame.rescan as decoded */
} event;

typedef struct run {
    sn_link_decoder d;
    const uint8_t *stream; /* everything fed so far is stream[0..fed) */
    uint64_t fed;
    uint64_t frame_bytes;  /* bytes of frames handed out (they stay in d until the next call) */
    uint64_t frames, errors;
    uint64_t calls, budget;
    event *ev;
    size_t nev, cap;
} run;

static uint64_t rng_next(uint64_t *s)
{
    /* splitmix64 */
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static void record(run *r, int ret, uint64_t at, uint32_t len, bool rescan)
{
    if (r->nev < r->cap)
        r->ev[r->nev++] = (event){ret, at, len, rescan};
}

static void check_conservation(const run *r)
{
    const sn_link_decoder *d = &r->d;
    CHECK(d->emitted <= d->have);
    CHECK(d->have <= sizeof d->buf);
    CHECK(r->fed == d->garbage + r->frame_bytes + (d->have - d->emitted));
    CHECK(d->attention <= d->garbage);
    CHECK(d->frames == r->frames);
    CHECK(d->errors == r->errors);
}

/* Payload decoders on whatever a frame carries; round trips when they accept. */
static void check_payloads(const sn_link_frame *f)
{
    uint8_t buf[SN_LINK_NET_STATUS_SIZE(SN_LINK_SLOTS_MAX)];

    sn_link_status st;
    int rc = sn_link_status_decode(f->data, f->len, &st);
    CHECK(rc == 0 || rc == SN_LINK_E_PARAM);
    CHECK((rc == 0) ==
          (f->len == SN_LINK_STATUS_LEN && f->data[0] <= 7 && f->data[0] != 6));
    if (rc == 0) {
        sn_link_status_encode(&st, buf);
        CHECK(memcmp(buf, f->data, SN_LINK_STATUS_LEN) == 0);
    }

    sn_link_net_status ns;
    rc = sn_link_net_status_decode(f->data, f->len, &ns);
    CHECK(rc == 0 || rc == SN_LINK_E_PARAM);
    CHECK((rc == 0) == (f->len >= SN_LINK_NET_STATUS_LEN && f->data[0] >= 1 &&
                        f->data[0] <= SN_LINK_SLOTS_MAX &&
                        f->len == SN_LINK_NET_STATUS_SIZE(f->data[0])));
    if (rc == 0) {
        CHECK(ns.slots == f->data[0]);
        CHECK(sn_link_net_status_encode(&ns, buf) == f->len);
        CHECK(ns.epoch == f->data[1]); /* byte 1: the device's epoch */
        CHECK(memcmp(buf, f->data, f->len) == 0);
    }

    sn_link_args a;
    rc = sn_link_args_decode(f->data, f->len, &a);
    CHECK(rc == 0 || rc == SN_LINK_E_PARAM);
    CHECK((rc == 0) == (f->len == SN_LINK_ARGS_LEN));
    if (rc == 0) {
        sn_link_args_encode(&a, buf);
        CHECK(memcmp(buf, f->data, SN_LINK_ARGS_LEN) == 0);
    }

    sn_stats sx;
    uint32_t turn;
    uint8_t sbuf[SN_LINK_STATS_LEN];
    rc = sn_link_stats_decode(f->data, f->len, &sx, &turn);
    CHECK(rc == 0 || rc == SN_LINK_E_PARAM);
    CHECK((rc == 0) == (f->len == SN_LINK_STATS_LEN));
    if (rc == 0) {
        sn_link_stats_encode(&sx, turn, sbuf);
        CHECK(memcmp(sbuf, f->data, SN_LINK_STATS_LEN) == 0);
    }

    /* Codes carried in a reply: both maps must be total. */
    if (f->kind == SN_LINK_REPLY) {
        CHECK(sn_link_strerror(f->response) != NULL);
        (void)sn_link_err_to_core(f->response);
        (void)sn_link_err_from_core(f->response);
    }
}

/* A frame was handed out: it must be the stream's bytes at its place. */
static void check_frame(run *r, const sn_link_frame *f)
{
    static uint8_t enc[SN_LINK_FRAME_MAX];
    const sn_link_decoder *d = &r->d;
    CHECK(f->version == SN_LINK_VERSION);
    CHECK(f->kind == SN_LINK_REQUEST || f->kind == SN_LINK_REPLY);
    CHECK((unsigned)f->kind & d->accept);
    CHECK(f->len <= SN_LINK_DATA_MAX);
    CHECK(f->len == 0 || f->data != NULL);
    size_t n = SN_LINK_OVERHEAD + f->len;
    CHECK(d->emitted == n);

    /* Every byte dropped so far lies before the frame. */
    uint64_t start = d->garbage + r->frame_bytes;
    CHECK(start + n <= r->fed);
    const uint8_t *src = r->stream + start;

    CHECK(f->seq <= SN_LINK_SEQ_MAX);
    CHECK(f->kind == SN_LINK_REPLY || (f->flags & ~SN_LINK_F_MASK) == 0);
    int len = sn_link_encode(f, enc, sizeof enc);
    CHECK(len == (int)n);
    /* A reply's seq byte (frame offset 12) keeps 6 bits and its reserved
     * byte (13) is sent as 0: with anything else there, all but those two
     * bytes and the CRC over them must match. */
    if (f->kind == SN_LINK_REPLY && ((src[12] & ~SN_LINK_SEQ_MAX) != 0 || src[13] != 0)) {
        CHECK(memcmp(enc, src, 12) == 0);
        CHECK(enc[12] == (src[12] & SN_LINK_SEQ_MAX) && enc[13] == 0);
        CHECK(memcmp(enc + 14, src + 14, f->len) == 0);
    } else {
        CHECK(memcmp(enc, src, n) == 0);
    }
    /* The encoder refuses a buffer one byte short, and oversize data. */
    CHECK(sn_link_encode(f, enc, n - 1) == SN_LINK_E_PARAM);

    check_payloads(f);
    record(r, 1, start, (uint32_t)n, f->rescan);
    r->frame_bytes += n;
    r->frames++;
}

/* Feeds in[0..len) until all of it is consumed, acting on every result. */
static void feed(run *r, const uint8_t *in, size_t len)
{
    size_t pos = 0;
    bool nullptr_ok = len == 0;
    static const uint8_t none[1];
    if (in == NULL && (r->calls & 2))
        in = none; /* a length-0 feed with a valid pointer, too */
    for (;;) {
        CHECK(++r->calls <= r->budget);
        size_t used = (size_t)-1;
        sn_link_frame f;
        memset(&f, 0xAB, sizeof f);
        /* The length-0 drain is also tried with a NULL pointer. */
        const uint8_t *p = in == NULL || (nullptr_ok && (r->calls & 1)) ? NULL : in + pos;
        int ret = sn_link_dec_feed(&r->d, p, len - pos, &used, &f);
        CHECK(used <= len - pos);
        pos += used;
        r->fed += used;
        if (ret == 1) {
            check_frame(r, &f);
            check_conservation(r);
            continue;
        }
        if (ret == 0) {
            CHECK(pos == len);
            check_conservation(r);
            return;
        }
        CHECK(ret == SN_LINK_E_VERSION || ret == SN_LINK_E_OVERSIZE || ret == SN_LINK_E_CRC);
        CHECK(f.kind == SN_LINK_REQUEST || f.kind == SN_LINK_REPLY);
        CHECK((unsigned)f.kind & r->d.accept);
        if (ret == SN_LINK_E_VERSION)
            CHECK(f.version != SN_LINK_VERSION);
        else
            CHECK(f.version == SN_LINK_VERSION && f.data == NULL);
        if (ret == SN_LINK_E_OVERSIZE)
            CHECK(f.len > SN_LINK_DATA_MAX);
        if (ret == SN_LINK_E_CRC)
            CHECK(f.len <= SN_LINK_DATA_MAX);
        r->errors++;
        record(r, ret, r->d.garbage, 0, f.rescan);
        check_conservation(r);
    }
}

/* Drops a partial frame and drains what is buffered behind it. */
static void flush(run *r)
{
    bool partial = sn_link_dec_partial(&r->d);
    int rc = sn_link_dec_flush(&r->d);
    CHECK(rc == 0 || rc == SN_LINK_E_TRUNCATED);
    /* A frame handed out last is not partial; anything beyond it is. */
    CHECK((rc == SN_LINK_E_TRUNCATED) == partial);
    if (rc != 0) {
        r->errors++;
        record(r, rc, r->d.garbage, 0, false);
    }
    check_conservation(r);
    feed(r, NULL, 0);
}

static void run_init(run *r, unsigned accept, const uint8_t *stream, size_t len, event *ev,
                     size_t cap)
{
    memset(r, 0, sizeof *r);
    sn_link_dec_init(&r->d, accept);
    CHECK(r->d.accept == accept && r->d.have == 0 && !sn_link_dec_partial(&r->d));
    r->stream = stream;
    r->ev = ev;
    r->cap = cap;
    /* Each call with a result drops at least one byte for good (a frame 18,
     * a rejected candidate its sync byte); each other call ends a chunk. */
    r->budget = 4 * (uint64_t)len + 1000;
}

/* Ends the stream: flush and drain until nothing is buffered. */
static void finish(run *r, size_t total)
{
    for (int i = 0; sn_link_dec_partial(&r->d); i++) {
        CHECK(i <= (int)SN_LINK_FRAME_MAX + 1);
        flush(r);
    }
    CHECK(r->fed == total);
    /* Only the last frame handed out may still sit in the buffer. */
    CHECK(r->d.have == r->d.emitted);
    check_conservation(r);
    CHECK(sn_link_dec_flush(&r->d) == 0);
    CHECK(r->d.have == 0);
    /* Every attention byte of the stream is counted, but those inside frames. */
    uint64_t att = 0;
    for (size_t i = 0; i < total; i++)
        att += r->stream[i] == SN_LINK_ATTENTION;
    for (size_t k = 0; k < r->nev; k++)
        if (r->ev[k].ret == 1)
            for (uint32_t i = 0; i < r->ev[k].len; i++)
                att -= r->stream[r->ev[k].at + i] == SN_LINK_ATTENTION;
    CHECK(r->nev < r->cap); /* every event recorded */
    CHECK(r->d.attention == att);
}

/* No flushes: a frame is clean exactly at the start or right behind the
 * previous frame. */
static void check_rescan(const run *r)
{
    uint64_t prev_end = 0;
    for (size_t k = 0; k < r->nev; k++) {
        const event *e = &r->ev[k];
        if (e->ret != 1)
            continue;
        CHECK(e->rescan == (e->at != prev_end));
        prev_end = e->at + e->len;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    unsigned accept = data[0] & 3u;
    if (accept == 0)
        accept = SN_LINK_REQUEST | SN_LINK_REPLY;
    bool flushes = (data[0] & 4u) != 0;
    unsigned style = data[0] >> 3;
    uint64_t seed = ((uint64_t)style << 8) | data[1];
    const uint8_t *stream = data + 2;
    size_t len = size - 2;

    size_t cap = len + 16;
    event *ev = malloc(2 * cap * sizeof *ev);
    CHECK(ev != NULL);
    static run a, b; /* the decoder holds a 2 KiB buffer: keep it off the stack */

    /* Chunked, maybe with flushes. */
    run_init(&a, accept, stream, len, ev, cap);
    size_t pos = 0;
    while (pos < len) {
        uint64_t x = rng_next(&seed);
        size_t n;
        switch ((x >> 8) % 8) {
        case 0: n = 0; break;                         /* an empty feed */
        case 1: n = 1; break;                         /* byte by byte */
        case 2: case 3: n = (size_t)(x >> 16) % 16; break;
        case 4: case 5: n = (size_t)(x >> 16) % 300; break;
        case 6: n = (size_t)(x >> 16) % (SN_LINK_FRAME_MAX + 64); break;
        default: n = len - pos; break;                /* the rest at once */
        }
        if (style == 0)
            n = len - pos; /* one chunk */
        else if (style == 1)
            n = 1;
        if (n > len - pos)
            n = len - pos;
        feed(&a, stream + pos, n);
        pos += n;
        if (flushes && (x & 7) == 0)
            flush(&a);
    }
    finish(&a, len);

    /* Without flushes the chunking must not matter: the whole stream at once. */
    if (!flushes) {
        run_init(&b, accept, stream, len, ev + cap, cap);
        feed(&b, stream, len);
        finish(&b, len);
        CHECK(a.nev == b.nev);
        for (size_t i = 0; i < a.nev; i++)
            CHECK(a.ev[i].ret == b.ev[i].ret && a.ev[i].at == b.ev[i].at &&
                  a.ev[i].len == b.ev[i].len && a.ev[i].rescan == b.ev[i].rescan);
        CHECK(a.d.garbage == b.d.garbage && a.d.frames == b.d.frames &&
              a.d.errors == b.d.errors && a.d.attention == b.d.attention);
        check_rescan(&b);
    }
    free(ev);
    return 0;
}
