/* The link codec: frame encoding, the incremental decoder, payload layouts.
 * See docs/link-protocol.md for the wire format. */
#include "slotnet/link.h"

#include <string.h>
#include <zlib.h>

#include "slotnet.h"

/* ---- Errors ------------------------------------------------------------ */

const char *sn_link_strerror(int err)
{
    switch (err) {
    case 0:
        return "ok";
#define SN_LINK_X_(name, code, text)                                           \
    case code:                                                                 \
        return text;
        SN_LINK_ERRNO_MAP(SN_LINK_X_)
#undef SN_LINK_X_
    default:
        return "unknown link error";
    }
}

/* Both tables are written out rather than computed so that renumbering one
 * side can never silently shift the other. */
int sn_link_err_from_core(int e)
{
    switch (e) {
    case SN_OK: return 0;
    case SN_EINVAL: return SN_LINK_E_PARAM;
    case SN_EBUSY: return SN_LINK_E_BUSY;
    case SN_ESTALE: return SN_LINK_E_STALE;
    case SN_ESTATE: return SN_LINK_E_STATE;
    case SN_EAGAIN: return SN_LINK_E_AGAIN;
    case SN_ENOMEM: return SN_LINK_E_NOMEM;
    case SN_ECONNRESET: return SN_LINK_E_CONNRESET;
    case SN_ECONNREFUSED: return SN_LINK_E_CONNREFUSED;
    case SN_ETIMEDOUT: return SN_LINK_E_TIMEDOUT;
    case SN_EMFILE: return SN_LINK_E_MFILE;
    case SN_ECLOSED: return SN_LINK_E_CLOSED;
    case SN_EBLOCKED: return SN_LINK_E_BLOCKED;
    case SN_EADDRINUSE: return SN_LINK_E_ADDRINUSE;
    case SN_ENOENT: return SN_LINK_E_NOENT;
    case SN_ENOSPC: return SN_LINK_E_NOSPC;
    case SN_EUNREACH: return SN_LINK_E_UNREACH;
    default: return SN_LINK_E_IO;
    }
}

int sn_link_err_to_core(int e)
{
    switch (e) {
    case 0: return SN_OK;
    case SN_LINK_E_UNKNOWN_CMD: return SN_EINVAL;
    case SN_LINK_E_PARAM: return SN_EINVAL;
    case SN_LINK_E_BUSY: return SN_EBUSY;
    case SN_LINK_E_STALE: return SN_ESTALE;
    case SN_LINK_E_STATE: return SN_ESTATE;
    case SN_LINK_E_AGAIN: return SN_EAGAIN;
    case SN_LINK_E_NOMEM: return SN_ENOMEM;
    case SN_LINK_E_CONNRESET: return SN_ECONNRESET;
    case SN_LINK_E_CONNREFUSED: return SN_ECONNREFUSED;
    case SN_LINK_E_TIMEDOUT: return SN_ETIMEDOUT;
    case SN_LINK_E_MFILE: return SN_EMFILE;
    case SN_LINK_E_CLOSED: return SN_ECLOSED;
    case SN_LINK_E_BLOCKED: return SN_EBLOCKED;
    case SN_LINK_E_ADDRINUSE: return SN_EADDRINUSE;
    case SN_LINK_E_NOENT: return SN_ENOENT;
    case SN_LINK_E_NOSPC: return SN_ENOSPC;
    case SN_LINK_E_UNREACH: return SN_EUNREACH;
    default: return SN_EIO;
    }
}

/* ---- CRC-32 ------------------------------------------------------------ */

/* zlib's table-driven CRC-32 (the same one every other language ships). */
uint32_t sn_link_crc32(uint32_t crc, const void *data, size_t len)
{
    const Bytef *p = data;
    uLong c = crc;
    while (len > 0) { /* zlib takes uInt lengths */
        uInt n = len > 0x40000000u ? 0x40000000u : (uInt)len;
        c = crc32(c, p, n);
        p += n;
        len -= n;
    }
    return (uint32_t)c;
}

/* ---- Encoding ---------------------------------------------------------- */

int sn_link_encode(const sn_link_frame *f, void *out, size_t cap)
{
    if (f == NULL || out == NULL || (f->len > 0 && f->data == NULL))
        return SN_LINK_E_PARAM;
    if (f->kind != SN_LINK_REQUEST && f->kind != SN_LINK_REPLY)
        return SN_LINK_E_PARAM;
    if (f->seq > SN_LINK_SEQ_MAX || (f->kind == SN_LINK_REQUEST && (f->flags & ~SN_LINK_F_MASK)))
        return SN_LINK_E_PARAM;
    if (f->len > SN_LINK_DATA_MAX)
        return SN_LINK_E_OVERSIZE;
    size_t total = SN_LINK_OVERHEAD + f->len;
    if (cap < total)
        return SN_LINK_E_PARAM;

    uint8_t *p = out;
    uint8_t *h = p + SN_LINK_SYNC_LEN;
    p[0] = SN_LINK_SYNC0;
    h[0] = SN_LINK_VERSION;
    if (f->kind == SN_LINK_REQUEST) {
        p[1] = SN_LINK_SYNC_REQ;
        h[1] = f->command;
        h[2] = f->slot;
        h[3] = (uint8_t)((f->flags & SN_LINK_F_MASK) | ((unsigned)f->seq << 2));
        sn_link_put16(h + 4, f->len);
        sn_link_put16(h + 6, f->space);
        sn_link_put32(h + 8, f->param);
    } else {
        p[1] = SN_LINK_SYNC_REP;
        h[1] = f->status;
        h[2] = f->command;
        h[3] = f->slot;
        sn_link_put32(h + 4, (uint32_t)f->response);
        sn_link_put16(h + 8, f->len);
        h[10] = f->seq;
        h[11] = 0; /* reserved */
    }
    if (f->len > 0)
        memcpy(h + SN_LINK_HDR_LEN, f->data, f->len);
    size_t body = SN_LINK_SYNC_LEN + SN_LINK_HDR_LEN + f->len;
    sn_link_put32(p + body, sn_link_crc32(0, p, body));
    return (int)total;
}

/* ---- Decoding ---------------------------------------------------------- */

void sn_link_dec_init(sn_link_decoder *d, unsigned accept)
{
    memset(d, 0, sizeof *d);
    d->accept = accept & (SN_LINK_REQUEST | SN_LINK_REPLY);
    d->clean = true; /* the start of the stream is a frame boundary */
}

/* n bytes at p are skipped as garbage: counted, attention bytes apart. */
static void skipped(sn_link_decoder *d, const uint8_t *p, size_t n)
{
    if (n == 0)
        return;
    d->garbage += n;
    for (size_t i = 0; i < n; i++)
        d->attention += p[i] == SN_LINK_ATTENTION;
    d->clean = false; /* whatever follows skipped bytes is not a frame boundary */
}

static sn_link_kind kind_of(uint8_t sync1)
{
    if (sync1 == SN_LINK_SYNC_REQ)
        return SN_LINK_REQUEST;
    if (sync1 == SN_LINK_SYNC_REP)
        return SN_LINK_REPLY;
    return (sn_link_kind)0;
}

/* Data length field of the buffered header (its position depends on kind). */
static uint16_t hdr_len(const sn_link_decoder *d)
{
    const uint8_t *h = d->buf + SN_LINK_SYNC_LEN;
    return kind_of(d->buf[1]) == SN_LINK_REQUEST ? sn_link_get16(h + 4) : sn_link_get16(h + 8);
}

static void drop(sn_link_decoder *d, size_t n)
{
    memmove(d->buf, d->buf + n, d->have - n);
    d->have -= n;
}

/* Skips buffered bytes up to the next possible frame start. */
static void skip_garbage(sn_link_decoder *d)
{
    size_t i = 0;
    while (i < d->have && d->buf[i] != SN_LINK_SYNC0)
        i++;
    skipped(d, d->buf, i);
    drop(d, i);
}

/* Gives up the candidate at buf[0] but scans the bytes it swallowed again,
 * so a good frame behind a false start is not lost. */
static void resync(sn_link_decoder *d)
{
    skipped(d, d->buf, 1); /* its sync0 */
    drop(d, 1);
    skip_garbage(d);
}

/* The frame handed out last stayed in place for the caller; bytes behind it
 * (buffered by a rescan) are the next candidates. */
static void settle(sn_link_decoder *d)
{
    if (d->emitted > 0) {
        drop(d, d->emitted);
        d->emitted = 0;
        d->clean = true; /* where a good frame ended */
        skip_garbage(d);
    }
}

static void parse(const sn_link_decoder *d, sn_link_frame *f)
{
    const uint8_t *h = d->buf + SN_LINK_SYNC_LEN;
    memset(f, 0, sizeof *f);
    f->kind = kind_of(d->buf[1]);
    f->version = h[0];
    if (f->kind == SN_LINK_REQUEST) {
        f->command = h[1];
        f->slot = h[2];
        f->flags = h[3] & SN_LINK_F_MASK;
        f->seq = (uint8_t)(h[3] >> 2);
        f->len = sn_link_get16(h + 4);
        f->space = sn_link_get16(h + 6);
        f->param = sn_link_get32(h + 8);
    } else {
        f->status = h[1];
        f->command = h[2];
        f->slot = h[3];
        f->response = (int32_t)sn_link_get32(h + 4);
        f->len = sn_link_get16(h + 8);
        f->seq = h[10] & SN_LINK_SEQ_MAX;
    }
    f->data = h + SN_LINK_HDR_LEN;
    f->rescan = !d->clean;
}

int sn_link_dec_feed(sn_link_decoder *d, const void *in, size_t len, size_t *used,
                     sn_link_frame *out)
{
    const uint8_t *src = in;
    size_t pos = 0;
    if (in == NULL)
        len = 0;
    settle(d);

    for (;;) {
        /* Hunt for the first sync byte straight from the input. */
        if (d->have == 0) {
            size_t start = pos;
            if (pos < len && d->after_gap) { /* the first byte after a silence */
                d->after_gap = false;
                d->clean = true;
            }
            while (pos < len && src[pos] != SN_LINK_SYNC0)
                pos++;
            if (pos > start)
                skipped(d, src + start, pos - start);
            if (pos == len)
                break;
            d->buf[d->have++] = src[pos++];
        }
        /* Checks as soon as each byte is there: a false start costs little. */
        if (d->have >= 2 && !(kind_of(d->buf[1]) & d->accept)) {
            resync(d);
            continue;
        }
        if (d->have >= 3 && d->buf[2] != SN_LINK_VERSION) {
            memset(out, 0, sizeof *out);
            out->kind = kind_of(d->buf[1]);
            out->version = d->buf[2];
            out->rescan = !d->clean;
            resync(d);
            d->errors++;
            *used = pos;
            return SN_LINK_E_VERSION;
        }
        size_t need = SN_LINK_SYNC_LEN + SN_LINK_HDR_LEN;
        if (d->have >= need) {
            uint16_t dlen = hdr_len(d);
            if (dlen > SN_LINK_DATA_MAX) {
                parse(d, out);
                out->data = NULL;
                resync(d);
                d->errors++;
                *used = pos;
                return SN_LINK_E_OVERSIZE;
            }
            need += (size_t)dlen + SN_LINK_CRC_LEN;
        } else if (d->have < 3) {
            need = d->have + 1; /* take one byte at a time until the version is checked */
        }
        if (d->have < need) {
            size_t take = need - d->have;
            if (take > len - pos)
                take = len - pos;
            if (take == 0)
                break;
            d->after_gap = false; /* the input extends a candidate begun before it */
            memcpy(d->buf + d->have, src + pos, take);
            d->have += take;
            pos += take;
            continue;
        }
        /* A whole candidate frame. */
        size_t body = need - SN_LINK_CRC_LEN;
        if (sn_link_crc32(0, d->buf, body) != sn_link_get32(d->buf + body)) {
            parse(d, out);
            out->data = NULL;
            resync(d);
            d->errors++;
            *used = pos;
            return SN_LINK_E_CRC;
        }
        parse(d, out);
        d->emitted = need;
        d->frames++;
        *used = pos;
        return 1;
    }
    *used = pos;
    return 0;
}

int sn_link_dec_flush(sn_link_decoder *d)
{
    settle(d);
    d->after_gap = true;
    if (d->have == 0)
        return 0;
    resync(d);
    d->errors++;
    return SN_LINK_E_TRUNCATED;
}
