/*
 * slotnet link: the framed request/response protocol between a host program
 * and the co-processor (slotnetd). The wire format is specified in
 * docs/link-protocol.md; this is its codec. No I/O, no allocation: frames are
 * encoded into caller buffers and decoded by a state machine that lives in
 * caller memory and is fed byte chunks of any size.
 */
#ifndef SLOTNET_LINK_H
#define SLOTNET_LINK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- Wire constants ---------------------------------------------------- */

#define SN_LINK_VERSION 1u        /* header byte 0; bumped on any layout change */
#define SN_LINK_SYNC0 0xA5u       /* first byte of every frame */
#define SN_LINK_SYNC_REQ 0x3Cu    /* second byte: host -> device */
#define SN_LINK_SYNC_REP 0xC3u    /* second byte: device -> host */
#define SN_LINK_SYNC_LEN 2u
#define SN_LINK_HDR_LEN 12u
#define SN_LINK_CRC_LEN 4u
#define SN_LINK_DATA_MAX 2048u    /* data bytes in one frame, as in the seed */
#define SN_LINK_OVERHEAD (SN_LINK_SYNC_LEN + SN_LINK_HDR_LEN + SN_LINK_CRC_LEN)
#define SN_LINK_FRAME_MAX (SN_LINK_OVERHEAD + SN_LINK_DATA_MAX)
#define SN_LINK_GAP_MS 100u       /* a partial frame idle this long is dropped */

/* Commands (the seed's numbers; 10..26 were its WiFi commands, unused here). */
enum {
    SN_LINK_CMD_NULL = 0,       /* no-op; checks the link and the version */
    SN_LINK_CMD_ABORT = 1,      /* sn_terminate */
    SN_LINK_CMD_CLOSE = 2,      /* sn_close */
    SN_LINK_CMD_CREATE = 3,     /* sn_connect */
    SN_LINK_CMD_READ = 4,       /* sn_read */
    SN_LINK_CMD_WRITE = 5,      /* sn_write */
    SN_LINK_CMD_STATUS = 6,     /* slot status + bitmaps */
    SN_LINK_CMD_LISTEN = 7,     /* sn_listen */
    SN_LINK_CMD_NET_STATUS = 9, /* table-wide status */
    SN_LINK_CMD_DIAG = 32,      /* sn_report text, paged */
    SN_LINK_CMD_STATS = 33,     /* sn_stats counters */
};

/* Request flags (the seed's, and the same bits as sn_write's flags). */
#define SN_LINK_F_CLOSE_AFTER 0x01u
#define SN_LINK_F_PUSH 0x02u
#define SN_LINK_F_MASK 0x03u   /* the flags byte's other 6 bits carry seq */

/* Request sequence numbers: 1..63 in the flags byte's upper bits, echoed
 * in the reply. A device replays its last reply, without acting again, to
 * a request with the same nonzero seq, command and slot as the last one, so a
 * host can resend anything after a lost reply. 0: no sequence, no replay. */
#define SN_LINK_SEQ_MAX 63u

/* Reply status byte. */
#define SN_LINK_ST_UP 0x01u        /* the core is running */
#define SN_LINK_ST_ATTENTION 0x02u /* some slot is readable, other-end-closed or aborted */

/* Slot byte when a request names no slot. */
#define SN_LINK_SLOT_NONE 0xFFu

/*
 * Error codes carried in a reply's response and returned by this codec.
 * -1, -8 and -11 are the seed's; the others map slotnet's SN_E* codes
 * one to one, then the link's own frame errors.
 */
#define SN_LINK_ERRNO_MAP(X)                                                   \
    X(E_UNKNOWN_CMD, -1, "unknown command")                                    \
    X(E_STALE, -2, "stale or unknown slot handle")                             \
    X(E_STATE, -3, "not allowed in the slot's state")                          \
    X(E_AGAIN, -4, "would block; try again")                                   \
    X(E_NOMEM, -5, "network stack out of memory; try again")                   \
    X(E_CONNRESET, -6, "connection reset")                                     \
    X(E_CONNREFUSED, -7, "connection refused")                                 \
    X(E_BUSY, -8, "busy: no free slot")                                        \
    X(E_TIMEDOUT, -9, "timed out")                                             \
    X(E_MFILE, -10, "out of file descriptors")                                 \
    X(E_PARAM, -11, "bad parameter")                                           \
    X(E_CLOSED, -12, "peer closed the connection")                             \
    X(E_BLOCKED, -13, "peer blocked after repeated connect failures")          \
    X(E_ADDRINUSE, -14, "address in use")                                      \
    X(E_NOENT, -15, "no such listener")                                        \
    X(E_NOSPC, -16, "table full")                                              \
    X(E_UNREACH, -17, "network unreachable")                                   \
    X(E_IO, -18, "internal error")                                             \
    X(E_VERSION, -19, "protocol version mismatch")                             \
    X(E_CRC, -20, "frame checksum mismatch")                                   \
    X(E_OVERSIZE, -21, "frame data longer than 2048 bytes")                    \
    X(E_TRUNCATED, -22, "frame truncated")

enum {
#define SN_LINK_X_(name, code, text) SN_LINK_##name = (code),
    SN_LINK_ERRNO_MAP(SN_LINK_X_)
#undef SN_LINK_X_
};

const char *sn_link_strerror(int err); /* never NULL */

/* slotnet SN_E* code (or 0) -> link code, and back. Frame errors and
 * unknown codes map to SN_EIO; unknown command maps to SN_EINVAL. */
int sn_link_err_from_core(int sn_err);
int sn_link_err_to_core(int link_err);

/* zlib's CRC-32; pass 0 to start, the previous value to continue. */
uint32_t sn_link_crc32(uint32_t crc, const void *data, size_t len);

/* ---- Frames ------------------------------------------------------------ */

typedef enum sn_link_kind {
    SN_LINK_REQUEST = 1, /* host -> device */
    SN_LINK_REPLY = 2,   /* device -> host */
} sn_link_kind;

/* One frame, either kind; fields marked for the other kind are ignored on
 * encode and zero on decode. */
typedef struct sn_link_frame {
    sn_link_kind kind;
    uint8_t version;     /* set by decode (and on SN_LINK_E_VERSION); encode writes SN_LINK_VERSION */
    uint8_t command;     /* request; echoed in the reply */
    uint8_t slot;        /* request; echoed in the reply (create: the new slot) */
    uint8_t flags;       /* request: SN_LINK_F_* */
    uint8_t seq;         /* request: 0..SN_LINK_SEQ_MAX; echoed in the reply */
    uint16_t space;      /* request: most data bytes the host takes in the reply */
    uint32_t param;      /* request: command parameter */
    uint8_t status;      /* reply: SN_LINK_ST_* */
    int32_t response;    /* reply: result, negative SN_LINK_E_* on error */
    uint16_t len;        /* data bytes */
    const uint8_t *data; /* len bytes; decode: valid until the next feed */
    bool rescan;         /* decode (frames and rejected candidates): the candidate did
                          * not begin at a clean position (at the start, right after
                          * a good frame, or at the first byte fed after
                          * sn_link_dec_flush()) but after skipped bytes or inside
                          * a rejected candidate's bytes: a version error there is
                          * noise, never answered with -19. Ignored by encode. */
} sn_link_frame;

/* Writes f (and its len data bytes) as one complete frame into out. Returns
 * the frame's length, SN_LINK_E_OVERSIZE when len > SN_LINK_DATA_MAX, or
 * SN_LINK_E_PARAM when cap is too small or f is malformed. */
int sn_link_encode(const sn_link_frame *f, void *out, size_t cap);

/* ---- Incremental decoder ---------------------------------------------- */

typedef struct sn_link_decoder {
    unsigned accept;   /* bit mask of sn_link_kind values to accept */
    size_t have;       /* bytes buffered in buf, from a candidate frame's start */
    size_t emitted;    /* length of the frame handed out last, dropped on the next call */
    uint64_t garbage;  /* bytes skipped while looking for a frame */
    uint64_t attention; /* ...of which SN_LINK_ATTENTION bytes (rescans included) */
    uint64_t frames;   /* good frames emitted */
    uint64_t errors;   /* candidate frames rejected */
    bool clean;        /* the scan position (buf[0], or the next input byte when
                        * nothing is buffered) is a clean frame start */
    bool after_gap;    /* flushed: the next input byte follows a silence */
    uint8_t buf[SN_LINK_FRAME_MAX];
} sn_link_decoder;

/* accept: SN_LINK_REQUEST, SN_LINK_REPLY or both (ORed). */
void sn_link_dec_init(sn_link_decoder *d, unsigned accept);

/*
 * Feeds up to len bytes of in. Consumes input only up to the end of the
 * first complete or rejected frame and sets *used to the bytes consumed.
 * Returns
 *   1  a frame is in *out (its data points into d: use it before the next call);
 *   0  all input consumed, no frame complete yet;
 *   <0 a candidate frame was rejected (SN_LINK_E_VERSION, _OVERSIZE, _CRC;
 *      out->kind and out->version say what was seen); the decoder has
 *      already resynchronised: call again with the rest of the input.
 * Bytes buffered from a rejected frame are scanned again, so a good frame
 * hidden behind a false start is not lost. Call with len 0 to drain frames
 * still buffered (after an error or sn_link_dec_flush()).
 */
int sn_link_dec_feed(sn_link_decoder *d, const void *in, size_t len, size_t *used,
                     sn_link_frame *out);

/* True while bytes beyond the last frame handed out are buffered: part of a
 * frame (the caller times the gap) or frames to drain with a len 0 feed. */
static inline bool sn_link_dec_partial(const sn_link_decoder *d) { return d->have > d->emitted; }

/* Drops a partial frame (no byte for SN_LINK_GAP_MS). Returns
 * SN_LINK_E_TRUNCATED if one was dropped, else 0. Frames buffered behind its
 * start are kept: call sn_link_dec_feed(d, NULL, 0, ...) until it returns 0.
 * Either way the link was silent: once those are scanned, the next byte fed
 * starts a clean candidate (frame.rescan false), so a caller may also call it
 * with nothing partial when input resumes after a silence. */
int sn_link_dec_flush(sn_link_decoder *d);

/* ---- Payloads ---------------------------------------------------------- */

/* Create and listen request data (8 bytes). addr in host order
 * (127.0.0.1 is 0x7f000001); on the wire as 4 octets in dotted order. */
#define SN_LINK_ARGS_LEN 8u
typedef struct sn_link_args {
    uint32_t addr;     /* create: remote; listen: local, 0 = any */
    uint16_t port;
    uint8_t protocol;
    uint8_t max_conns; /* listen: 0 stops the listener; create: 0 */
} sn_link_args;

void sn_link_args_encode(const sn_link_args *a, uint8_t out[SN_LINK_ARGS_LEN]);
int sn_link_args_decode(const uint8_t *in, size_t len, sn_link_args *a);

/* The link serves at most 16 slots: the status reply's bitmaps are the
 * seed's 16 bits. */
#define SN_LINK_SLOTS_MAX 16u

/* Get-status reply data: the seed's 20 bytes. readable and write_space
 * saturate at 65535. */
#define SN_LINK_STATUS_LEN 20u
typedef struct sn_link_status {
    uint8_t state;         /* sn_state wire value */
    uint8_t slot;
    uint8_t protocol;
    int8_t last_error;     /* SN_LINK_E_* why it aborted or failed, else 0 */
    uint16_t local_port;
    uint16_t remote_port;
    uint32_t remote_addr;  /* host order */
    uint32_t readable;
    uint32_t write_space;
    uint16_t connected;    /* bit i: slot i connected */
    uint16_t closed;       /* bit i: slot i other-end-closed or aborted */
} sn_link_status;

void sn_link_status_encode(const sn_link_status *s, uint8_t out[SN_LINK_STATUS_LEN]);
/* SN_LINK_E_PARAM if len is not SN_LINK_STATUS_LEN or state is not a state. */
int sn_link_status_decode(const uint8_t *in, size_t len, sn_link_status *s);

/* Network-status reply data: a 20-byte table-wide part, then each slot's
 * handle (u32, 0 when free), so one request tells the host what changed. */
#define SN_LINK_NET_STATUS_LEN 20u
#define SN_LINK_NET_STATUS_SIZE(slots) (SN_LINK_NET_STATUS_LEN + 4u * (slots))
typedef struct sn_link_net_status {
    uint8_t slots;         /* 1..SN_LINK_SLOTS_MAX */
    uint8_t epoch;         /* +1 (mod 256) each time the device dropped the host's
                            * connections and listeners (its grace expired) */
    uint16_t data_max;     /* SN_LINK_DATA_MAX */
    uint16_t backlog_now;
    uint16_t backlog_peak;
    uint16_t in_use;       /* bit i: slot i not free */
    uint16_t connected;    /* bit i: connected */
    uint16_t closed;       /* bit i: other-end-closed or aborted */
    uint16_t readable;     /* bit i: bytes wait to be read */
    uint16_t writable;     /* bit i: connected or other-end-closed, and a write would take bytes */
    uint16_t aborted;      /* bit i: aborted (needs an abort or close to acknowledge) */
    uint32_t handle[SN_LINK_SLOTS_MAX];
} sn_link_net_status;

/* out holds SN_LINK_NET_STATUS_SIZE(s->slots) bytes; returns that length. */
size_t sn_link_net_status_encode(const sn_link_net_status *s, uint8_t *out);
/* SN_LINK_E_PARAM unless len matches the slot count it carries. */
int sn_link_net_status_decode(const uint8_t *in, size_t len, sn_link_net_status *s);

/* Statistics reply data: every sn_stats field as a u32, in the order of
 * struct sn_stats (poll_hist last). */
#define SN_LINK_STATS_FIELDS 34u
#define SN_LINK_STATS_LEN (4u * SN_LINK_STATS_FIELDS)

/* The statistics reply data: the 33 fields of struct sn_stats (slotnet.h,
 * SN_STATS_FIELDS, then poll_hist), then a 34th, the device loop's longest
 * turn in microseconds. */
struct sn_stats;
void sn_link_stats_encode(const struct sn_stats *s, uint32_t device_turn_us,
                          uint8_t out[SN_LINK_STATS_LEN]);
/* SN_LINK_E_PARAM if len is not SN_LINK_STATS_LEN. device_turn_us may be NULL. */
int sn_link_stats_decode(const uint8_t *in, size_t len, struct sn_stats *s,
                         uint32_t *device_turn_us);

/* The attention byte: sent by the device outside any frame, at most once
 * between two requests, when what the last network status showed has
 * changed (the seed's "ready" line). Receivers that ignore it see garbage,
 * which the decoder skips. */
#define SN_LINK_ATTENTION 0x21u

/* Little-endian helpers, exported for the daemon and host library. */
static inline void sn_link_put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}
static inline void sn_link_put32(uint8_t *p, uint32_t v)
{
    sn_link_put16(p, (uint16_t)v);
    sn_link_put16(p + 2, (uint16_t)(v >> 16));
}
/* A count for a 16-bit field: "at least 65535" rather than wrapping. */
static inline uint16_t sn_link_sat16(uint32_t v) { return v > 0xFFFFu ? 0xFFFFu : (uint16_t)v; }
static inline uint16_t sn_link_get16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
static inline uint32_t sn_link_get32(const uint8_t *p)
{
    return (uint32_t)sn_link_get16(p) | ((uint32_t)sn_link_get16(p + 2) << 16);
}

#ifdef __cplusplus
}
#endif

#endif /* SLOTNET_LINK_H */
