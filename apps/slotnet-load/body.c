/*
 * Upload bodies: deterministic, random-looking (so no layer can compress
 * or dedupe them), generated at any offset without state, and with a CRC
 * known before the first byte is sent (rr_upload wants it in the query).
 */
#include <string.h>

#include <zlib.h>

#include "conn.h"

/* splitmix64: one 64-bit word of the stream per index. */
static uint64_t mix(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

/* Stream bytes [off, off+len), little-endian words. */
static void stream_fill(uint64_t seed, uint64_t off, uint8_t *dst, size_t len)
{
    size_t i = 0;
    while (i < len) {
        uint64_t at = off + i;
        uint64_t w = mix(seed + at / 8);
        unsigned b = (unsigned)(at % 8);
        for (; b < 8 && i < len; b++, i++)
            dst[i] = (uint8_t)(w >> (8 * b));
    }
}

/* zlib's length arguments are uInt/z_off_t: feed it in chunks. */
static uint32_t crc_update(uint32_t crc, const uint8_t *p, size_t len)
{
    return (uint32_t)crc32(crc, p, (uInt)len);
}

uint32_t body_stream_crc(uint64_t seed, uint64_t len)
{
    static uint8_t buf[CHUNK];
    uint32_t crc = crc_update(0, NULL, 0);
    for (uint64_t off = 0; off < len;) {
        size_t n = len - off < CHUNK ? (size_t)(len - off) : CHUNK;
        stream_fill(seed, off, buf, n);
        crc = crc_update(crc, buf, n);
        off += n;
    }
    return crc;
}

void body_set_tag(struct body_gen *b, uint32_t client, uint64_t upload)
{
    memcpy(b->tag, "SNLD", 4);
    for (unsigned i = 0; i < 4; i++)
        b->tag[4 + i] = (uint8_t)(client >> (8 * i));
    for (unsigned i = 0; i < 8; i++)
        b->tag[8 + i] = (uint8_t)(upload >> (8 * i));
}

uint32_t body_crc(const struct body_gen *b)
{
    size_t tag_len = b->size < BODY_TAG ? (size_t)b->size : BODY_TAG;
    uint32_t crc = crc_update(crc_update(0, NULL, 0), b->tag, tag_len);
    if (b->size <= BODY_TAG)
        return crc;
    /* CRC(tag || stream) from the two parts, without touching the stream. */
    return (uint32_t)crc32_combine(crc, b->stream_crc, (z_off_t)(b->size - BODY_TAG));
}

void body_fill(const struct body_gen *b, uint64_t off, uint8_t *dst, size_t len)
{
    while (len > 0 && off < BODY_TAG) {
        *dst++ = b->tag[off++];
        len--;
    }
    if (len > 0)
        stream_fill(b->seed, off - BODY_TAG, dst, len);
}

uint64_t asset_seed(unsigned group, unsigned asset)
{
    return group * 1000u + asset;
}

void asset_gen_init(struct asset_gen *g, uint64_t seed)
{
    g->x = seed * 0x9e3779b97f4a7c15ull + 0x1234567u;
}

void asset_gen_fill(struct asset_gen *g, uint8_t *dst, size_t len)
{
    for (size_t i = 0; i < len; i += 8) {
        g->x ^= g->x >> 12;
        g->x ^= g->x << 25;
        g->x ^= g->x >> 27;
        uint64_t v = g->x * 0x2545f4914f6cdd1dull;
        memcpy(dst + i, &v, len - i < 8 ? len - i : 8);
    }
}

uint32_t asset_crc(uint64_t seed, uint64_t size)
{
    static uint8_t buf[65536];
    struct asset_gen g;
    asset_gen_init(&g, seed);
    uint32_t crc = crc_update(0, NULL, 0);
    for (uint64_t left = size; left > 0;) {
        size_t n = left < sizeof buf ? (size_t)left : sizeof buf;
        asset_gen_fill(&g, buf, n);
        crc = crc_update(crc, buf, n);
        left -= n;
    }
    return crc;
}
