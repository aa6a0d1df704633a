/* The link codec: every command and reply round trip, arbitrary chunking,
 * resynchronisation after garbage, corrupt, truncated, oversize and
 * foreign-version frames. Random streams are seeded and print their seed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "slotnet.h"
#include "slotnet/link.h"

/* ---- helpers ----------------------------------------------------------- */

static uint32_t rng_next(uint32_t *s)
{
    /* xorshift32: replayable from the printed seed */
    uint32_t x = *s;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    return *s = x;
}

static const uint8_t commands[] = {
    SN_LINK_CMD_NULL,   SN_LINK_CMD_ABORT,  SN_LINK_CMD_CLOSE,      SN_LINK_CMD_CREATE,
    SN_LINK_CMD_READ,   SN_LINK_CMD_WRITE,  SN_LINK_CMD_STATUS,     SN_LINK_CMD_LISTEN,
    SN_LINK_CMD_NET_STATUS, SN_LINK_CMD_DIAG,
};
#define NCMD (sizeof commands / sizeof commands[0])

/* A frame with its own copy of the data. */
typedef struct msg {
    int rc; /* 1 frame, <0 error */
    sn_link_frame f;
    uint8_t data[SN_LINK_DATA_MAX];
} msg;

static void random_frame(uint32_t *s, msg *m, uint16_t max_len)
{
    memset(m, 0, sizeof *m);
    sn_link_frame *f = &m->f;
    f->kind = (rng_next(s) & 1) ? SN_LINK_REQUEST : SN_LINK_REPLY;
    f->command = commands[rng_next(s) % NCMD];
    f->slot = (uint8_t)rng_next(s);
    f->seq = (uint8_t)(rng_next(s) % (SN_LINK_SEQ_MAX + 1));
    if (f->kind == SN_LINK_REQUEST) {
        f->flags = (uint8_t)(rng_next(s) & 3u);
        f->space = (uint16_t)(rng_next(s) % (SN_LINK_DATA_MAX + 1));
        f->param = rng_next(s);
    } else {
        f->status = (uint8_t)(rng_next(s) & 3u);
        f->response = (int32_t)rng_next(s);
    }
    f->len = (uint16_t)(rng_next(s) % ((uint32_t)max_len + 1));
    for (unsigned i = 0; i < f->len; i++)
        m->data[i] = (uint8_t)rng_next(s);
    f->data = m->data;
}

static void assert_same(const msg *want, const msg *got)
{
    assert_int_equal(got->rc, 1);
    assert_int_equal(got->f.kind, want->f.kind);
    assert_int_equal(got->f.version, SN_LINK_VERSION);
    assert_int_equal(got->f.command, want->f.command);
    assert_int_equal(got->f.slot, want->f.slot);
    assert_int_equal(got->f.seq, want->f.seq);
    if (want->f.kind == SN_LINK_REQUEST) {
        assert_int_equal(got->f.flags, want->f.flags);
        assert_int_equal(got->f.space, want->f.space);
        assert_int_equal(got->f.param, want->f.param);
    } else {
        assert_int_equal(got->f.status, want->f.status);
        assert_int_equal(got->f.response, want->f.response);
    }
    assert_int_equal(got->f.len, want->f.len);
    assert_memory_equal(got->data, want->data, want->f.len);
}

/* Feeds len bytes in chunks (sizes from *seed, or 1 byte when seed is NULL)
 * and records every frame and error. Returns how many were recorded. */
static size_t drive(sn_link_decoder *d, const uint8_t *in, size_t len, uint32_t *seed, msg *out,
                    size_t max)
{
    size_t n = 0, pos = 0;
    while (pos < len) {
        size_t chunk = seed ? 1 + rng_next(seed) % 700u : 1;
        if (chunk > len - pos)
            chunk = len - pos;
        /* An exact-size copy: ASan catches any read past what was given. */
        uint8_t *c = malloc(chunk);
        assert_non_null(c);
        memcpy(c, in + pos, chunk);
        size_t off = 0;
        for (;;) {
            size_t used = 99999;
            sn_link_frame f;
            int rc = sn_link_dec_feed(d, c + off, chunk - off, &used, &f);
            assert_true(used <= chunk - off);
            off += used;
            if (rc == 0) {
                assert_int_equal(off, chunk);
                break;
            }
            assert_true(n < max);
            out[n].rc = rc;
            out[n].f = f;
            if (rc == 1)
                memcpy(out[n].data, f.data, f.len);
            out[n].f.data = out[n].data;
            n++;
        }
        free(c);
        pos += chunk;
    }
    return n;
}

static size_t put_frame(uint8_t *buf, size_t at, size_t cap, const msg *m)
{
    int r = sn_link_encode(&m->f, buf + at, cap - at);
    assert_true(r > 0);
    assert_int_equal(r, (int)(SN_LINK_OVERHEAD + m->f.len));
    return at + (size_t)r;
}

#define STREAM_CAP (64u * SN_LINK_FRAME_MAX)
static uint8_t stream[STREAM_CAP];
static msg sent[64], got[128];

/* ---- tests ------------------------------------------------------------- */

/* The CRC is zlib's: its standard check value, so any language's crc32 fits. */
static void test_crc32_is_zlibs(void **state)
{
    (void)state;
    assert_int_equal(sn_link_crc32(0, "123456789", 9), 0xCBF43926u);
    uint32_t part = sn_link_crc32(0, "1234", 4);
    assert_int_equal(sn_link_crc32(part, "56789", 5), 0xCBF43926u);
}

/* Every command as a request and as a good and a failed reply, decoded in one go. */
static void test_round_trip_every_command(void **state)
{
    (void)state;
    for (size_t c = 0; c < NCMD; c++) {
        for (int variant = 0; variant < 3; variant++) {
            msg m;
            memset(&m, 0, sizeof m);
            m.f.command = commands[c];
            m.f.slot = (uint8_t)(c * 3 + 1);
            m.f.seq = (uint8_t)(SN_LINK_SEQ_MAX - c * 5); /* 63 and down: every bit used */
            m.f.len = (uint16_t)(variant == 2 ? 0 : 17 * (c + 1));
            for (unsigned i = 0; i < m.f.len; i++)
                m.data[i] = (uint8_t)(i * 7 + c);
            m.f.data = m.data;
            if (variant == 0) {
                m.f.kind = SN_LINK_REQUEST;
                m.f.flags = (uint8_t)(c & 3u);
                m.f.space = (uint16_t)(100 + c);
                m.f.param = 0x80000000u | (uint32_t)(c << 8) | 0x12u; /* high bit must survive */
            } else {
                m.f.kind = SN_LINK_REPLY;
                m.f.status = SN_LINK_ST_UP;
                m.f.response = variant == 1 ? (int32_t)(1000 + c) : SN_LINK_E_PARAM - (int32_t)c;
            }
            sn_link_decoder d;
            sn_link_dec_init(&d, SN_LINK_REQUEST | SN_LINK_REPLY);
            size_t n = put_frame(stream, 0, STREAM_CAP, &m);
            assert_int_equal(drive(&d, stream, n, NULL, got, 4), 1);
            assert_same(&m, &got[0]);
            assert_int_equal(d.frames, 1);
            assert_int_equal(d.garbage, 0);
            assert_false(got[0].f.rescan);
        }
    }
}

/* seq: the request flags byte's bits 2..7, the reply's byte 10; the encoder
 * refuses seq > 63 and request flags outside their 2 bits. */
static void test_seq_wire(void **state)
{
    (void)state;
    uint8_t b[SN_LINK_FRAME_MAX];
    sn_link_frame f = {.kind = SN_LINK_REQUEST, .command = SN_LINK_CMD_WRITE, .slot = 1,
                       .flags = SN_LINK_F_PUSH, .seq = 45};
    assert_int_equal(sn_link_encode(&f, b, sizeof b), 18);
    assert_int_equal(b[2 + 3], (45 << 2) | SN_LINK_F_PUSH);
    sn_link_decoder d;
    sn_link_dec_init(&d, SN_LINK_REQUEST | SN_LINK_REPLY);
    size_t used;
    sn_link_frame g;
    assert_int_equal(sn_link_dec_feed(&d, b, 18, &used, &g), 1);
    assert_int_equal(g.seq, 45);
    assert_int_equal(g.flags, SN_LINK_F_PUSH);

    sn_link_frame r = {.kind = SN_LINK_REPLY, .command = SN_LINK_CMD_READ, .slot = 1, .seq = 63};
    assert_int_equal(sn_link_encode(&r, b, sizeof b), 18);
    assert_int_equal(b[2 + 10], 63);
    assert_int_equal(b[2 + 11], 0);
    assert_int_equal(sn_link_dec_feed(&d, b, 18, &used, &g), 1);
    assert_int_equal(g.seq, 63);

    f.seq = 64;
    assert_int_equal(sn_link_encode(&f, b, sizeof b), SN_LINK_E_PARAM);
    r.seq = 0xFF;
    assert_int_equal(sn_link_encode(&r, b, sizeof b), SN_LINK_E_PARAM);
    f.seq = 1;
    for (unsigned fl = 4; fl < 256; fl <<= 1) {
        f.flags = (uint8_t)fl;
        assert_int_equal(sn_link_encode(&f, b, sizeof b), SN_LINK_E_PARAM);
    }
    /* A reply's flags field is not on the wire: ignored. */
    r.seq = 0;
    r.flags = 0xFF;
    assert_int_equal(sn_link_encode(&r, b, sizeof b), 18);
}

/* Attention bytes are counted wherever they are skipped: between frames,
 * and inside a rejected candidate's bytes rescanned after it. */
static void test_attention_counter(void **state)
{
    (void)state;
    uint8_t b[256];
    size_t n = 0;
    sn_link_frame f = {.kind = SN_LINK_REPLY, .command = SN_LINK_CMD_NULL, .slot = 0xFF};
    b[n++] = SN_LINK_ATTENTION;
    b[n++] = 'x';
    n += (size_t)sn_link_encode(&f, b + n, sizeof b - n);
    b[n++] = SN_LINK_ATTENTION;
    /* A false start whose header claims 20 data bytes, holding two more
     * attention bytes, cut short by a good frame: a CRC failure, rescanned. */
    size_t bad = n;
    uint8_t data[20];
    memset(data, SN_LINK_ATTENTION, sizeof data);
    data[0] = 'y';
    sn_link_frame fs = {.kind = SN_LINK_REPLY, .command = SN_LINK_CMD_READ, .len = 20,
                        .data = data};
    n += (size_t)sn_link_encode(&fs, b + n, sizeof b - n);
    b[bad + 14 + 20] ^= 0xFF; /* its CRC */
    n += (size_t)sn_link_encode(&f, b + n, sizeof b - n);
    sn_link_decoder d;
    sn_link_dec_init(&d, SN_LINK_REPLY);
    size_t frames = 0, errors = 0, pos = 0;
    for (;;) {
        size_t used;
        sn_link_frame g;
        int r = sn_link_dec_feed(&d, b + pos, n - pos, &used, &g);
        pos += used;
        if (r == 0)
            break;
        if (r == 1)
            frames++;
        else
            errors++;
    }
    assert_int_equal(frames, 2);
    assert_int_equal(errors, 1);
    assert_int_equal(d.attention, 2 + 19);
    assert_int_equal(d.garbage, 2 + 1 + (18 + 20) + 0);
}

/* frame.rescan: false at the start, right after a good frame and at the
 * first byte after a flush; true after skipped bytes and inside a rejected
 * candidate's bytes (a payload's A5 3C 02 is noise there). */
static void test_rescan_flag(void **state)
{
    (void)state;
    uint8_t b[512];
    uint8_t payload[12] = {'a', 'b', SN_LINK_SYNC0, SN_LINK_SYNC_REQ, 2, 0, 0, 0, 0, 0, 0, 0};
    sn_link_frame w = {.kind = SN_LINK_REQUEST, .command = SN_LINK_CMD_WRITE, .slot = 0,
                       .len = sizeof payload, .data = payload, .seq = 3};
    sn_link_frame nul = {.kind = SN_LINK_REQUEST, .command = SN_LINK_CMD_NULL, .slot = 0xFF};
    sn_link_decoder d;
    sn_link_dec_init(&d, SN_LINK_REQUEST);
    size_t used;
    sn_link_frame g;

    /* Two good frames back to back: both clean. */
    size_t n = (size_t)sn_link_encode(&nul, b, sizeof b);
    n += (size_t)sn_link_encode(&w, b + n, sizeof b - n);
    assert_int_equal(sn_link_dec_feed(&d, b, n, &used, &g), 1);
    assert_false(g.rescan);
    assert_int_equal(sn_link_dec_feed(&d, b + used, n - used, &used, &g), 1);
    assert_false(g.rescan);

    /* The write with a data bit flipped: CRC error (clean: it began after a
     * good frame), then the payload's version 2 found in the rescan. */
    n = (size_t)sn_link_encode(&w, b, sizeof b);
    b[14 + 8] ^= 0x10;
    size_t pos = 0;
    assert_int_equal(sn_link_dec_feed(&d, b, n, &used, &g), SN_LINK_E_CRC);
    assert_false(g.rescan);
    pos += used;
    assert_int_equal(sn_link_dec_feed(&d, b + pos, n - pos, &used, &g), SN_LINK_E_VERSION);
    assert_true(g.rescan);
    assert_int_equal(g.version, 2);
    pos += used;
    assert_int_equal(sn_link_dec_feed(&d, b + pos, n - pos, &used, &g), 0);
    /* After noise, a foreign version at a frame's start is noise too... */
    uint8_t v2[18];
    memcpy(v2, b, 3);
    v2[2] = 2;
    assert_int_equal(sn_link_dec_feed(&d, v2, 3, &used, &g), SN_LINK_E_VERSION);
    assert_true(g.rescan);
    /* ...until the link was silent (flush) or a good frame came. */
    assert_int_equal(sn_link_dec_flush(&d), 0);
    assert_int_equal(sn_link_dec_feed(&d, v2, 3, &used, &g), SN_LINK_E_VERSION);
    assert_false(g.rescan);
    n = (size_t)sn_link_encode(&nul, b, sizeof b);
    assert_int_equal(sn_link_dec_feed(&d, b, n, &used, &g), 1);
    assert_true(g.rescan); /* behind the rejected candidate's bytes */
    const uint8_t z = 'z';
    assert_int_equal(sn_link_dec_feed(&d, &z, 1, &used, &g), 0);
    assert_int_equal(sn_link_dec_feed(&d, v2, 3, &used, &g), SN_LINK_E_VERSION);
    assert_true(g.rescan); /* 'z' was skipped before it */
    assert_int_equal(sn_link_dec_feed(&d, b, n, &used, &g), 1);
    assert_int_equal(sn_link_dec_feed(&d, v2, 3, &used, &g), SN_LINK_E_VERSION);
    assert_false(g.rescan); /* right after a good frame */

    /* A partial frame flushed: the bytes it held are rescanned (noise), the
     * first byte after the silence is clean. */
    sn_link_dec_init(&d, SN_LINK_REQUEST);
    n = (size_t)sn_link_encode(&w, b, sizeof b);
    assert_int_equal(sn_link_dec_feed(&d, b, n - 5, &used, &g), 0);
    assert_int_equal(sn_link_dec_flush(&d), SN_LINK_E_TRUNCATED);
    assert_int_equal(sn_link_dec_feed(&d, NULL, 0, &used, &g), SN_LINK_E_VERSION);
    assert_true(g.rescan);
    assert_int_equal(sn_link_dec_feed(&d, NULL, 0, &used, &g), 0);
    assert_int_equal(sn_link_dec_feed(&d, v2, 3, &used, &g), SN_LINK_E_VERSION);
    assert_false(g.rescan);
}

/* Header layout as documented: little-endian, fields at fixed offsets. */
static void test_wire_layout(void **state)
{
    (void)state;
    uint8_t data[3] = {9, 8, 7};
    sn_link_frame f = {.kind = SN_LINK_REQUEST, .command = SN_LINK_CMD_WRITE, .slot = 5,
                       .flags = SN_LINK_F_PUSH | SN_LINK_F_CLOSE_AFTER, .space = 0x0102,
                       .param = 0x0A0B0C0Du, .len = 3, .data = data};
    uint8_t b[SN_LINK_FRAME_MAX];
    int n = sn_link_encode(&f, b, sizeof b);
    assert_int_equal(n, 21);
    uint8_t want_hdr[14] = {0xA5, 0x3C, 1, 5, 5, 3, 3, 0, 0x02, 0x01, 0x0D, 0x0C, 0x0B, 0x0A};
    assert_memory_equal(b, want_hdr, sizeof want_hdr);
    assert_int_equal(sn_link_get32(b + 17), sn_link_crc32(0, b, 17));

    sn_link_frame r = {.kind = SN_LINK_REPLY, .status = 1, .command = 4, .slot = 2,
                       .response = -11};
    n = sn_link_encode(&r, b, sizeof b);
    assert_int_equal(n, 18);
    uint8_t want_rep[14] = {0xA5, 0xC3, 1, 1, 4, 2, 0xF5, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0};
    assert_memory_equal(b, want_rep, sizeof want_rep);
    /* Too small a buffer, a bad kind, too much data. */
    assert_int_equal(sn_link_encode(&r, b, 17), SN_LINK_E_PARAM);
    r.kind = (sn_link_kind)3;
    assert_int_equal(sn_link_encode(&r, b, sizeof b), SN_LINK_E_PARAM);
    r.kind = SN_LINK_REPLY;
    r.len = SN_LINK_DATA_MAX + 1;
    r.data = b;
    assert_int_equal(sn_link_encode(&r, b, sizeof b), SN_LINK_E_OVERSIZE);
}

static size_t random_stream(uint32_t seed, size_t count, bool garbage, size_t *bytes)
{
    uint32_t s = seed;
    size_t at = 0;
    for (size_t i = 0; i < count; i++) {
        if (garbage) {
            /* Random bytes laced with false starts: sync bytes, a sync pair,
             * a sync pair with a good version byte. */
            unsigned g = rng_next(&s) % 40u;
            for (unsigned k = 0; k < g; k++) {
                uint32_t r = rng_next(&s) % 8u;
                stream[at++] = r == 0 ? SN_LINK_SYNC0 : (uint8_t)rng_next(&s);
                if (r == 1) {
                    stream[at++] = SN_LINK_SYNC0;
                    stream[at++] = SN_LINK_SYNC_REQ;
                }
            }
        }
        random_frame(&s, &sent[i], i % 5 == 0 ? SN_LINK_DATA_MAX : 64);
        at = put_frame(stream, at, STREAM_CAP, &sent[i]);
    }
    *bytes = at;
    return count;
}

/* One byte at a time. */
static void test_byte_at_a_time(void **state)
{
    (void)state;
    size_t len;
    size_t count = random_stream(7, 20, false, &len);
    sn_link_decoder d;
    sn_link_dec_init(&d, SN_LINK_REQUEST | SN_LINK_REPLY);
    assert_int_equal(drive(&d, stream, len, NULL, got, 128), count);
    for (size_t i = 0; i < count; i++)
        assert_same(&sent[i], &got[i]);
}

/* Random chunk splits over many seeds; a failure prints the seed to replay. */
static void test_random_chunks(void **state)
{
    (void)state;
    for (uint32_t seed = 1; seed <= 40; seed++) {
        size_t len;
        size_t count = random_stream(seed, 30, false, &len);
        sn_link_decoder d;
        sn_link_dec_init(&d, SN_LINK_REQUEST | SN_LINK_REPLY);
        uint32_t cs = seed * 2654435761u;
        size_t n = drive(&d, stream, len, &cs, got, 128);
        if (n != count)
            fprintf(stderr, "replay: seed %u\n", seed);
        assert_int_equal(n, count);
        for (size_t i = 0; i < count; i++)
            assert_same(&sent[i], &got[i]);
    }
}

/* Garbage before and between frames: every frame still arrives, in order. */
static void test_garbage_resync(void **state)
{
    (void)state;
    for (uint32_t seed = 100; seed < 120; seed++) {
        size_t len;
        size_t count = random_stream(seed, 25, true, &len);
        sn_link_decoder d;
        sn_link_dec_init(&d, SN_LINK_REQUEST | SN_LINK_REPLY);
        uint32_t cs = seed;
        size_t n = drive(&d, stream, len, &cs, got, 128);
        /* The end of the stream is a silence: a false start near it that
         * announced more data than followed is dropped after the gap, and
         * the frames it held are found in its bytes. */
        while (sn_link_dec_partial(&d)) {
            assert_int_equal(sn_link_dec_flush(&d), SN_LINK_E_TRUNCATED);
            for (;;) {
                size_t used;
                sn_link_frame f;
                int rc = sn_link_dec_feed(&d, NULL, 0, &used, &f);
                if (rc == 0)
                    break;
                assert_true(n < 128);
                got[n].rc = rc;
                got[n].f = f;
                if (rc == 1)
                    memcpy(got[n].data, f.data, f.len);
                got[n].f.data = got[n].data;
                n++;
            }
        }
        /* A false start may be reported as an error, never at a frame's cost. */
        size_t j = 0;
        for (size_t i = 0; i < n; i++) {
            if (got[i].rc == 1) {
                if (j >= count)
                    fprintf(stderr, "replay: seed %u\n", seed);
                assert_true(j < count);
                assert_same(&sent[j], &got[i]);
                j++;
            }
        }
        if (j != count)
            fprintf(stderr, "replay: seed %u\n", seed);
        assert_int_equal(j, count);
        assert_true(d.garbage > 0);
        assert_false(sn_link_dec_partial(&d));
    }
}

/* A flipped byte: a CRC error for that frame, the next one is fine. */
static void test_corrupt_byte(void **state)
{
    (void)state;
    uint32_t s = 5;
    msg a, b;
    random_frame(&s, &a, 200);
    a.f.len = 100;
    random_frame(&s, &b, 200);
    size_t end_a = put_frame(stream, 0, STREAM_CAP, &a);
    size_t end = put_frame(stream, end_a, STREAM_CAP, &b);
    /* The command/status byte, then data and CRC bytes (length and version
     * have their own errors). */
    size_t where[16], nw = 0;
    where[nw++] = SN_LINK_SYNC_LEN + 1;
    for (size_t at = SN_LINK_SYNC_LEN + SN_LINK_HDR_LEN; at < end_a && nw < 16; at += 9)
        where[nw++] = at;
    where[nw - 1] = end_a - 1; /* the CRC's last byte */
    for (size_t w = 0; w < nw; w++) {
        size_t at = where[w];
        uint8_t keep = stream[at];
        stream[at] ^= 0x10;
        sn_link_decoder d;
        sn_link_dec_init(&d, SN_LINK_REQUEST | SN_LINK_REPLY);
        size_t n = drive(&d, stream, end, NULL, got, 8);
        stream[at] = keep;
        assert_true(n >= 2);
        assert_int_equal(got[0].rc, SN_LINK_E_CRC);
        assert_int_equal(got[0].f.kind, a.f.kind);
        assert_same(&b, &got[n - 1]);
        assert_int_equal(d.frames, 1);
    }
}

/* A frame cut short, then good frames: the idle flush or the following
 * traffic recovers every good frame. */
static void test_truncated_then_good(void **state)
{
    (void)state;
    uint32_t s = 11;
    msg cut, good[3];
    random_frame(&s, &cut, 10);
    cut.f.len = 300;
    for (unsigned i = 0; i < 300; i++)
        cut.data[i] = (uint8_t)i;
    size_t at = put_frame(stream, 0, STREAM_CAP, &cut);
    at = SN_LINK_SYNC_LEN + SN_LINK_HDR_LEN + 20; /* the rest never comes */
    for (int i = 0; i < 3; i++) {
        random_frame(&s, &good[i], 40);
        at = put_frame(stream, at, STREAM_CAP, &good[i]);
    }

    /* (a) The link goes quiet: the gap timer flushes the partial frame. */
    sn_link_decoder d;
    sn_link_dec_init(&d, SN_LINK_REQUEST | SN_LINK_REPLY);
    size_t n = drive(&d, stream, at, NULL, got, 8);
    assert_int_equal(n, 0); /* swallowed by the cut frame's length so far */
    assert_true(sn_link_dec_partial(&d));
    assert_int_equal(sn_link_dec_flush(&d), SN_LINK_E_TRUNCATED);
    for (int i = 0; i < 3; i++) {
        size_t used;
        sn_link_frame f;
        assert_int_equal(sn_link_dec_feed(&d, NULL, 0, &used, &f), 1);
        assert_int_equal(used, 0);
        got[0].rc = 1;
        got[0].f = f;
        memcpy(got[0].data, f.data, f.len);
        assert_same(&good[i], &got[0]);
    }
    size_t used;
    sn_link_frame f;
    assert_int_equal(sn_link_dec_feed(&d, NULL, 0, &used, &f), 0);
    assert_false(sn_link_dec_partial(&d));
    assert_int_equal(sn_link_dec_flush(&d), 0);

    /* (b) More traffic fills the cut frame's length: CRC error, then rescan. */
    msg more[4];
    for (int i = 0; i < 4; i++) {
        random_frame(&s, &more[i], 200);
        at = put_frame(stream, at, STREAM_CAP, &more[i]);
    }
    sn_link_dec_init(&d, SN_LINK_REQUEST | SN_LINK_REPLY);
    uint32_t cs = 3;
    n = drive(&d, stream, at, &cs, got, 16);
    assert_int_equal(got[0].rc, SN_LINK_E_CRC);
    size_t j = 0;
    for (size_t i = 1; i < n; i++) {
        if (got[i].rc != 1)
            continue;
        assert_same(j < 3 ? &good[j] : &more[j - 3], &got[i]);
        j++;
    }
    assert_int_equal(j, 7);
}

/* A length over 2048 is refused as soon as the header is in. */
static void test_oversize(void **state)
{
    (void)state;
    uint32_t s = 21;
    msg a, b;
    random_frame(&s, &a, 10);
    a.f.kind = SN_LINK_REQUEST;
    random_frame(&s, &b, 10);
    size_t at = put_frame(stream, 0, STREAM_CAP, &a);
    sn_link_put16(stream + SN_LINK_SYNC_LEN + 4, SN_LINK_DATA_MAX + 1);
    /* Only the header of the bad frame, then the good one at once. */
    size_t end = put_frame(stream, SN_LINK_SYNC_LEN + SN_LINK_HDR_LEN, STREAM_CAP, &b);
    (void)at;
    sn_link_decoder d;
    sn_link_dec_init(&d, SN_LINK_REQUEST | SN_LINK_REPLY);
    size_t n = drive(&d, stream, end, NULL, got, 8);
    assert_int_equal(n, 2);
    assert_int_equal(got[0].rc, SN_LINK_E_OVERSIZE);
    assert_int_equal(got[0].f.len, SN_LINK_DATA_MAX + 1);
    assert_int_equal(got[0].f.command, a.f.command);
    assert_same(&b, &got[1]);
}

/* A foreign version: reported with the version seen, then the next frame. */
static void test_wrong_version(void **state)
{
    (void)state;
    uint32_t s = 31;
    msg a, b;
    random_frame(&s, &a, 30);
    random_frame(&s, &b, 30);
    size_t mid = put_frame(stream, 0, STREAM_CAP, &a);
    size_t end = put_frame(stream, mid, STREAM_CAP, &b);
    stream[SN_LINK_SYNC_LEN] = 2;
    sn_link_decoder d;
    sn_link_dec_init(&d, SN_LINK_REQUEST | SN_LINK_REPLY);
    size_t n = drive(&d, stream, end, NULL, got, 8);
    assert_int_equal(n, 2);
    assert_int_equal(got[0].rc, SN_LINK_E_VERSION);
    assert_int_equal(got[0].f.version, 2);
    assert_int_equal(got[0].f.kind, a.f.kind);
    assert_same(&b, &got[1]);
}

/* A decoder for requests skips replies (a pty echoing the host's bytes). */
static void test_kind_filter(void **state)
{
    (void)state;
    msg a, b;
    memset(&a, 0, sizeof a);
    memset(&b, 0, sizeof b);
    a.f.kind = SN_LINK_REPLY;
    a.f.command = SN_LINK_CMD_READ;
    b.f.kind = SN_LINK_REQUEST;
    b.f.command = SN_LINK_CMD_CLOSE;
    b.f.slot = 4;
    size_t mid = put_frame(stream, 0, STREAM_CAP, &a);
    size_t end = put_frame(stream, mid, STREAM_CAP, &b);
    sn_link_decoder d;
    sn_link_dec_init(&d, SN_LINK_REQUEST);
    size_t n = drive(&d, stream, end, NULL, got, 8);
    assert_int_equal(n, 1);
    assert_same(&b, &got[0]);
    assert_int_equal(d.garbage, mid);
}

/* *used stops at the end of a frame: the rest stays with the caller. */
static void test_used_stops_at_frame(void **state)
{
    (void)state;
    msg a, b;
    uint32_t s = 41;
    random_frame(&s, &a, 50);
    random_frame(&s, &b, 50);
    size_t mid = put_frame(stream, 0, STREAM_CAP, &a);
    size_t end = put_frame(stream, mid, STREAM_CAP, &b);
    sn_link_decoder d;
    sn_link_dec_init(&d, SN_LINK_REQUEST | SN_LINK_REPLY);
    size_t used;
    sn_link_frame f;
    assert_int_equal(sn_link_dec_feed(&d, stream, end, &used, &f), 1);
    assert_int_equal(used, mid);
    assert_int_equal(f.len, a.f.len);
    assert_int_equal(sn_link_dec_feed(&d, stream + mid, end - mid, &used, &f), 1);
    assert_int_equal(used, end - mid);
    assert_int_equal(f.command, b.f.command);
}

static void test_payloads(void **state)
{
    (void)state;
    sn_link_args a = {.addr = 0x7f000001u, .port = 8080, .protocol = 3, .max_conns = 4}, a2;
    uint8_t ab[SN_LINK_ARGS_LEN];
    sn_link_args_encode(&a, ab);
    assert_int_equal(ab[0], 127); /* dotted order on the wire */
    assert_int_equal(ab[3], 1);
    assert_int_equal(sn_link_args_decode(ab, sizeof ab, &a2), 0);
    assert_int_equal(a2.addr, a.addr);
    assert_int_equal(a2.port, a.port);
    assert_int_equal(a2.protocol, a.protocol);
    assert_int_equal(a2.max_conns, a.max_conns);
    assert_int_equal(sn_link_args_decode(ab, 7, &a2), SN_LINK_E_PARAM);

    sn_link_status st = {.state = SN_CLOSE_PENDING, .slot = 15, .protocol = 2,
                         .last_error = SN_LINK_E_CONNRESET, .local_port = 80,
                         .remote_port = 51234, .remote_addr = 0xC0A80102u, .readable = 1234,
                         .write_space = 70000, .connected = 0x8001u, .closed = 0x4000u};
    sn_link_status st2;
    uint8_t sb[SN_LINK_STATUS_LEN];
    assert_int_equal(sizeof sb, 20); /* the seed's size, which hosts rely on */
    sn_link_status_encode(&st, sb);
    assert_int_equal(sn_link_status_decode(sb, sizeof sb, &st2), 0);
    assert_int_equal(st2.state, st.state);
    assert_int_equal(st2.slot, st.slot);
    assert_int_equal(st2.protocol, st.protocol);
    assert_int_equal(st2.last_error, st.last_error);
    assert_int_equal(st2.local_port, st.local_port);
    assert_int_equal(st2.remote_port, st.remote_port);
    assert_int_equal(st2.remote_addr, st.remote_addr);
    assert_int_equal(st2.readable, st.readable);
    assert_int_equal(st2.write_space, 0xFFFF); /* saturates, never wraps */
    assert_int_equal(st2.connected, st.connected);
    assert_int_equal(st2.closed, st.closed);
    assert_int_equal(sb[16], 0x01); /* little-endian bitmaps */
    assert_int_equal(sb[17], 0x80);
    assert_int_equal(sn_link_status_decode(sb, sizeof sb - 1, &st2), SN_LINK_E_PARAM);
    sb[0] = 6; /* the seed's unused closeReady */
    assert_int_equal(sn_link_status_decode(sb, sizeof sb, &st2), SN_LINK_E_PARAM);
    sb[0] = SN_ALLOCATED;
    assert_int_equal(sn_link_status_decode(sb, sizeof sb, &st2), 0);
    assert_int_equal(st2.state, SN_ALLOCATED);

    sn_link_net_status ns = {.slots = 3, .epoch = 0xC7, .data_max = SN_LINK_DATA_MAX, .in_use = 0x0007u,
                             .connected = 0x0003u, .closed = 0x0004u, .readable = 0x0001u,
                             .writable = 0x0002u, .aborted = 0x0004u, .backlog_now = 3,
                             .backlog_peak = 9, .handle = {0x101u, 0xFFFFFF01u, 0x2202u}},
                      ns2;
    uint8_t nb[SN_LINK_NET_STATUS_SIZE(SN_LINK_SLOTS_MAX)];
    size_t nlen = sn_link_net_status_encode(&ns, nb);
    assert_int_equal(nlen, 20 + 3 * 4);
    assert_int_equal(sn_link_net_status_decode(nb, nlen, &ns2), 0);
    assert_int_equal(ns2.slots, ns.slots);
    assert_int_equal(nb[1], 0xC7); /* byte 1: the epoch */
    assert_int_equal(ns2.epoch, ns.epoch);
    assert_int_equal(ns2.data_max, ns.data_max);
    assert_int_equal(ns2.in_use, ns.in_use);
    assert_int_equal(ns2.connected, ns.connected);
    assert_int_equal(ns2.closed, ns.closed);
    assert_int_equal(ns2.readable, ns.readable);
    assert_int_equal(ns2.writable, ns.writable);
    assert_int_equal(ns2.aborted, ns.aborted);
    assert_int_equal(ns2.backlog_now, ns.backlog_now);
    assert_int_equal(ns2.backlog_peak, ns.backlog_peak);
    for (unsigned i = 0; i < 3; i++)
        assert_int_equal(ns2.handle[i], ns.handle[i]);
    assert_int_equal(sn_link_net_status_decode(nb, nlen - 1, &ns2), SN_LINK_E_PARAM);
    assert_int_equal(sn_link_net_status_decode(nb, 19, &ns2), SN_LINK_E_PARAM);
    nb[0] = SN_LINK_SLOTS_MAX + 1; /* more slots than the bitmaps hold */
    assert_int_equal(sn_link_net_status_decode(nb, SN_LINK_NET_STATUS_SIZE(SN_LINK_SLOTS_MAX + 1),
                                               &ns2),
                     SN_LINK_E_PARAM);
}

/* Every core error survives the link; the seed's numbers are kept. */
static void test_error_mapping(void **state)
{
    (void)state;
    assert_int_equal(sn_link_err_from_core(SN_EBUSY), -8);
    assert_int_equal(sn_link_err_from_core(SN_EINVAL), -11);
    assert_int_equal(SN_LINK_E_UNKNOWN_CMD, -1);
    for (int e = 0; e >= SN_EIO; e--) {
        int l = sn_link_err_from_core(e);
        assert_true(l <= 0 && l != SN_LINK_E_UNKNOWN_CMD);
        assert_int_equal(sn_link_err_to_core(l), e);
        assert_string_not_equal(sn_link_strerror(l), "unknown link error");
    }
    assert_int_equal(sn_link_err_to_core(SN_LINK_E_CRC), SN_EIO);
    assert_int_equal(sn_link_err_to_core(SN_LINK_E_UNKNOWN_CMD), SN_EINVAL);
    assert_string_equal(sn_link_strerror(-99), "unknown link error");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_crc32_is_zlibs),
        cmocka_unit_test(test_round_trip_every_command),
        cmocka_unit_test(test_wire_layout),
        cmocka_unit_test(test_seq_wire),
        cmocka_unit_test(test_attention_counter),
        cmocka_unit_test(test_rescan_flag),
        cmocka_unit_test(test_byte_at_a_time),
        cmocka_unit_test(test_random_chunks),
        cmocka_unit_test(test_garbage_resync),
        cmocka_unit_test(test_corrupt_byte),
        cmocka_unit_test(test_truncated_then_good),
        cmocka_unit_test(test_oversize),
        cmocka_unit_test(test_wrong_version),
        cmocka_unit_test(test_kind_filter),
        cmocka_unit_test(test_used_stops_at_frame),
        cmocka_unit_test(test_payloads),
        cmocka_unit_test(test_error_mapping),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
