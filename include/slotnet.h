/*
 * slotnet: a fixed table of TCP connection slots that never stalls.
 *
 * The core (this API) does no I/O and reads no clock. A backend (POSIX
 * sockets, lwIP, the simulator) moves the bytes; the caller hands the core
 * the time on every sn_poll(). Everything is sized at sn_core_init() from
 * memory the caller provides; nothing is allocated afterwards.
 *
 * Errors are 0 or a negative SN_E* code; sn_strerror() names them.
 * Times are 32-bit millisecond counters that wrap; compare them only with
 * sn_time_after()/sn_time_reached().
 */
#ifndef SLOTNET_H
#define SLOTNET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "slotnet/opt.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- Errors ------------------------------------------------------------ */

#define SN_ERRNO_MAP(X)                                                        \
    X(EINVAL, -1, "invalid argument")                                          \
    X(EBUSY, -2, "no free slot")                                               \
    X(ESTALE, -3, "stale or unknown slot handle")                              \
    X(ESTATE, -4, "not allowed in the slot's state")                          \
    X(EAGAIN, -5, "would block; try again")                                    \
    X(ENOMEM, -6, "network stack out of memory; try again")                    \
    X(ECONNRESET, -7, "connection reset")                                      \
    X(ECONNREFUSED, -8, "connection refused")                                  \
    X(ETIMEDOUT, -9, "timed out")                                              \
    X(EMFILE, -10, "out of file descriptors")                                  \
    X(ECLOSED, -11, "peer closed the connection")                              \
    X(EBLOCKED, -12, "peer blocked after repeated connect failures")           \
    X(EADDRINUSE, -13, "address in use")                                       \
    X(ENOENT, -14, "no such listener")                                         \
    X(ENOSPC, -15, "table full")                                               \
    X(EUNREACH, -16, "network unreachable")                                    \
    X(EIO, -17, "internal backend error")

enum {
    SN_OK = 0,
#define SN_X_(name, code, text) SN_##name = (code),
    SN_ERRNO_MAP(SN_X_)
#undef SN_X_
};

/* A short English text for any SN_E* code (and for 0). Never NULL. */
const char *sn_strerror(int err);

/* ---- Time -------------------------------------------------------------- */

/* True when a is later than b, across the 32-bit wrap (within 2^31 ms). */
static inline bool sn_time_after(uint32_t a, uint32_t b) { return (int32_t)(a - b) > 0; }
/* True when now has reached deadline. */
static inline bool sn_time_reached(uint32_t now, uint32_t deadline) { return (int32_t)(now - deadline) >= 0; }

/* ---- Slots ------------------------------------------------------------- */

/*
 * A slot handle: slot index in the low 8 bits, the slot's generation above.
 * The generation moves on every time a slot is freed, so a handle kept past
 * its connection is refused with SN_ESTALE instead of acting on the next one.
 * 0 is never a valid handle.
 */
typedef uint32_t sn_id;
#define SN_ID_NONE 0u
static inline unsigned sn_id_index(sn_id id) { return (unsigned)(id & 0xffu); }

/*
 * Slot states. The values are the seed protocol's wire values (6 was its
 * unused closeReady).
 *
 *            sn_connect                  attempt fails, retry due later
 *   FREE ------------> ALLOCATED <----------------------+
 *    ^ ^                  |  attempt starts             |
 *    | |                  v                             |
 *    | |              CONNECTING ----------------------+
 *    | |                  | connected        last attempt fails
 *    | | accept           v                       |
 *    | +-----------> CONNECTED ---- internal error --> ABORTED --+
 *    |                 |   |                                     |
 *    |  peer FIN/RST,  |   | sn_close                            |
 *    |  input drained  v   v                                     |
 *    |   OTHER_END_CLOSED -> CLOSE_PENDING                       |
 *    |         |                |  drained (FIN) / peer gone /   |
 *    |         |                |  timeout (RST)                 |
 *    +---------+----------------+--------------------------------+
 *      sn_terminate, idle timeout, close of a reset connection,
 *      acknowledged abort: always back to FREE, never to ABORTED
 *
 * FROM              -> TO                 [by]
 * FREE              -> ALLOCATED          [sn_connect]
 * FREE              -> CONNECTED          [sn_poll: accept or backlog]
 * ALLOCATED         -> CONNECTING         [sn_connect, sn_poll: retry due]
 * ALLOCATED         -> ABORTED            [sn_poll: last attempt failed]
 * CONNECTING        -> ALLOCATED          [sn_poll: attempt failed, retry]
 * CONNECTING        -> CONNECTED          [sn_poll: backend connected]
 * CONNECTING        -> ABORTED            [sn_poll: last attempt failed]
 * CONNECTED         -> OTHER_END_CLOSED   [sn_poll, sn_read, sn_write: peer gone]
 * CONNECTED         -> CLOSE_PENDING      [sn_close, sn_write CLOSE_AFTER]
 * CONNECTED         -> ABORTED            [sn_read, sn_write, sn_poll: internal error]
 * OTHER_END_CLOSED  -> CLOSE_PENDING      [sn_close]
 * OTHER_END_CLOSED  -> ABORTED            [sn_write: internal error]
 * any but FREE      -> FREE               [sn_terminate, idle timeout;
 *                                          CLOSE_PENDING: sn_poll drained,
 *                                          peer gone or timed out]
 *
 * Invariants (checked by sn_check() after every simulator step):
 * - FREE: no backend handle, no listener, not counted anywhere.
 * - ALLOCATED: no backend handle; a retry time is set.
 * - CONNECTING: a handle; the attempt started within connect_timeout_ms.
 * - CONNECTED, OTHER_END_CLOSED, CLOSE_PENDING: a handle; counted against
 *   its listener, if it has one (each listener's count equals its slots).
 * - CLOSE_PENDING: closing began no more than close_timeout_ms ago.
 * - ABORTED: no handle (already reset); waits for the owner.
 */
typedef enum sn_state {
    SN_FREE = 0,
    SN_CONNECTING = 1,
    SN_CONNECTED = 2,
    SN_OTHER_END_CLOSED = 3,
    SN_ABORTED = 4,
    SN_CLOSE_PENDING = 5,
    SN_ALLOCATED = 7,
} sn_state;

const char *sn_state_name(sn_state st); /* "free", "connecting", ... */

/* An IPv4 endpoint; addr in host byte order (127.0.0.1 is 0x7f000001). */
typedef struct sn_endpoint {
    uint32_t addr;
    uint16_t port;
} sn_endpoint;

/* ---- Events ------------------------------------------------------------ */

typedef enum sn_event {
    SN_EV_ACCEPTED,       /* a listener's connection got a slot */
    SN_EV_CONNECTED,      /* an outgoing connect completed */
    SN_EV_CONNECT_RETRY,  /* an attempt failed; info = error; retry scheduled */
    SN_EV_CONNECT_FAILED, /* last attempt failed; info = error; slot is aborted */
    SN_EV_READABLE,       /* data may be read: read until sn_read() returns 0; what
                             is left unread is reported again at the next pass */
    SN_EV_WRITABLE,       /* send space opened up after a short write */
    SN_EV_PEER_CLOSED,    /* slot became other-end-closed */
    SN_EV_ABORTED,        /* internal error; info = error; acknowledge with sn_terminate */
    SN_EV_FREED,          /* the core freed the slot on its own; info = sn_free_reason.
                             Not raised for sn_terminate() or sn_close() of a reset or
                             aborted slot: the caller freed it and knows. */
} sn_event;

typedef enum sn_free_reason {
    SN_FREED_GRACEFUL,   /* close: everything delivered, then FIN */
    SN_FREED_PEER,       /* close: peer closed or reset while draining */
    SN_FREED_TIMEOUT,    /* close: drain timed out, RST */
    SN_FREED_IDLE,       /* idle timeout, RST */
} sn_free_reason;

typedef struct sn_core sn_core;

/*
 * Called from inside sn_poll() (never from a backend callback). The callee
 * may call any sn_ function, including sn_close() and sn_terminate() on id,
 * except sn_poll() and sn_core_shutdown().
 */
typedef void (*sn_event_fn)(sn_core *core, sn_id id, sn_event ev, int info, void *user);

/* ---- Configuration ----------------------------------------------------- */

typedef struct sn_config {
    uint8_t slots;                 /* 1..SN_MAX_SLOTS, default 8 */
    uint16_t backlog_max;          /* connections waiting for a slot, all listeners */
    uint32_t backlog_timeout_ms;   /* a waiting connection older than this is reset */
    uint32_t close_timeout_ms;     /* close waits this long for delivery, then RST */
    uint32_t drain_poll_ms;        /* sn_next_timeout() while a close drains */
    uint16_t max_accepts_per_poll; /* bounds accept work in one pass */
    uint32_t accept_pause_ms;      /* listener pause after EMFILE or another accept failure */
    uint8_t connect_retries;       /* retries after the first attempt, <= 10 */
    uint32_t connect_base_ms;      /* backoff base, 50..60000: base, 2b, 4b, 8b, 8b... */
    uint32_t connect_timeout_ms;   /* one attempt's limit */
    uint32_t peer_block_ms;        /* peer refused this long after the last retry */
    uint8_t peer_block_entries;    /* how many blocked peers are remembered */
    uint32_t release_delay_ms;     /* backend resources released this long after */
    uint32_t release_spacing_ms;   /* ...and at least this long after the previous one */
    uint16_t release_max_per_poll; /* releases in one pass */
    uint16_t release_queue;        /* queue capacity; when full the oldest goes early */
    sn_event_fn on_event;          /* optional */
    void *user;                    /* passed to on_event */
} sn_config;

/* Fills cfg with the defaults of slotnet/opt.h. */
void sn_config_default(sn_config *cfg);

/* ---- Backend ----------------------------------------------------------- */

typedef struct sn_backend_ops sn_backend_ops; /* see slotnet/backend.h */
typedef struct sn_backend {
    const sn_backend_ops *ops;
    void *ctx;
} sn_backend;

/* ---- Life cycle -------------------------------------------------------- */

/* Bytes of memory sn_core_init() needs for cfg (0 if cfg is invalid). */
size_t sn_core_size(const sn_config *cfg);

/* Builds a core in mem (len >= sn_core_size(cfg), 8-byte aligned). Invalid
 * or out-of-range config values give SN_EINVAL; retry and backoff values are
 * clamped to the documented ranges instead. */
int sn_core_init(sn_core **out, void *mem, size_t len, const sn_config *cfg, sn_backend be);

/* Resets every connection, stops every listener, releases every backend
 * resource at once. The memory may be reused afterwards. */
void sn_core_shutdown(sn_core *core);

/*
 * One pass: picks up backend events, advances every slot's state and timers,
 * accepts from listeners, releases queued resources. Bounded work, never
 * blocks. now is the caller's millisecond clock.
 */
void sn_poll(sn_core *core, uint32_t now_ms);

/* Milliseconds until the core next needs a poll with no I/O (<= max_ms). */
uint32_t sn_next_timeout(const sn_core *core, uint32_t now_ms, uint32_t max_ms);

/* ---- Listeners --------------------------------------------------------- */

/*
 * Listen on local (addr 0 = any). A connection counts against max_conns while
 * connected, other-end-closed or close-pending. idle_ms = 0 means no idle
 * timeout. Idle: nothing read or written for idle_ms, and the peer no longer
 * taking what is queued (no less queued than at the previous deadline).
 * Calling again for the same port updates protocol, limit and idle time;
 * max_conns = 0 stops the listener (its waiting connections are reset, its
 * live ones run on).
 */
int sn_listen(sn_core *core, const sn_endpoint *local, uint8_t protocol, uint8_t max_conns,
              uint32_t idle_ms);

/* ---- Connections ------------------------------------------------------- */

/*
 * Reserve a slot and connect to remote without blocking; retries with backoff.
 * SN_EBUSY when no slot is free, SN_EBLOCKED while the peer is blocked.
 * Completion arrives as SN_EV_CONNECTED or, after the last retry,
 * SN_EV_CONNECT_FAILED with the slot aborted.
 */
int sn_connect(sn_core *core, const sn_endpoint *remote, uint8_t protocol, uint32_t idle_ms,
               sn_id *out);

/*
 * Read up to len buffered bytes. Returns the count, 0 when nothing is
 * buffered yet, SN_ECLOSED (peer closed) or SN_ECONNRESET (reset) once
 * nothing is left (the slot is then other-end-closed), or another negative
 * error (an internal one leaves the slot aborted).
 */
int sn_read(sn_core *core, sn_id id, void *buf, size_t len);

#define SN_WRITE_CLOSE_AFTER 0x01u /* close once all of this write is accepted */
#define SN_WRITE_PUSH 0x02u        /* send now; otherwise bytes may be coalesced */

/*
 * Write up to len bytes. Returns exactly how many were accepted (maybe fewer,
 * maybe 0: try again after SN_EV_WRITABLE), or a negative error. Out of
 * buffer or memory is never fatal. A connection found gone (reset, stack
 * abort, retransmission timeout) gives SN_ECONNRESET and leaves the slot
 * other-end-closed. len is capped at INT32_MAX.
 */
int sn_write(sn_core *core, sn_id id, const void *buf, size_t len, unsigned flags);

/*
 * Close gracefully. Constant time, never blocks: the slot turns close-pending
 * and sn_poll() frees it once the data is delivered (FIN), the peer has gone,
 * or close_timeout_ms has passed (RST). On an aborted slot, acknowledges it.
 */
int sn_close(sn_core *core, sn_id id);

/* Reset the connection (RST) and free the slot now. Acknowledges an abort. */
int sn_terminate(sn_core *core, sn_id id);

/* ---- Status and statistics -------------------------------------------- */

typedef struct sn_slot_status {
    sn_id id; /* SN_ID_NONE when free */
    sn_state state;
    uint8_t protocol;
    sn_endpoint local;
    sn_endpoint remote;
    uint32_t readable;    /* bytes buffered for sn_read */
    uint32_t write_space; /* bytes sn_write would take now */
    int last_error;       /* why it aborted or failed, else 0 */
} sn_slot_status;

/* Status of slot number index (0..slots-1). Queries the backend. */
int sn_slot_status_get(sn_core *core, unsigned index, sn_slot_status *st);

/* Bytes written to id and not yet sent, and sent but not yet acknowledged
 * by the peer: 0 and 0 once everything is delivered. Queries the backend
 * (which may first send a held-back tail), so call it when the answer
 * matters, not for every slot on every pass. */
int sn_slot_tx_queued(sn_core *core, sn_id id, uint32_t *unsent, uint32_t *unacked);

/* Current handle of slot index (SN_ID_NONE when free). */
sn_id sn_slot_id(const sn_core *core, unsigned index);
sn_state sn_slot_state(const sn_core *core, unsigned index);
unsigned sn_slot_count(const sn_core *core);

/* Bit i set: slot i is connected / is other-end-closed or aborted. */
void sn_bitmaps(const sn_core *core, uint32_t *connected, uint32_t *closed_or_aborted);

#define SN_POLL_HIST_BUCKETS 10

typedef struct sn_stats {
    uint32_t accepted;          /* connections given a slot from a listener */
    uint32_t rejected;          /* reset from the backlog: full, timed out, listener stopped */
    uint32_t closed_graceful;   /* closes that delivered everything, then FIN */
    uint32_t closed_peer;       /* closes ended early by the peer */
    uint32_t closed_timeout;    /* closes that timed out and reset */
    uint32_t reset_by_peer;     /* connected slots the peer reset */
    uint32_t peer_closed;       /* connected slots the peer closed (FIN) */
    uint32_t idle_timeouts;     /* slots reset for idleness */
    uint32_t terminated;        /* sn_terminate calls that freed a slot */
    uint32_t aborted;           /* slots moved to aborted by internal errors */
    uint32_t connects;          /* outgoing connects that completed */
    uint32_t connect_retries;   /* attempts after a failure */
    uint32_t connect_failures;  /* connects that failed for good */
    uint32_t releases;          /* backend resources released */
    uint32_t releases_forced;   /* ...early, because the queue was full */
    uint32_t emfile_events;     /* accepts that hit EMFILE/ENFILE */
    uint32_t accept_errors;     /* other accept failures */
    uint32_t write_retryable;   /* writes that met would-block or out-of-memory */
    uint32_t poll_passes;
    uint32_t longest_poll_us;   /* needs the backend's clock_us; else 0 */
    uint32_t longest_close_us;  /* longest sn_close() call or backend close/abort call */
    uint32_t backlog_now;       /* connections waiting for a slot */
    uint32_t backlog_peak;
    uint32_t poll_hist[SN_POLL_HIST_BUCKETS]; /* passes by duration, see sn_poll_hist_bound() */
} sn_stats;

/* X(name) for each scalar field of sn_stats, in order (poll_hist, last, is
 * not in it): one list for the link's statistics payload and the JSON. */
#define SN_STATS_FIELDS(X)                                                                    \
    X(accepted) X(rejected) X(closed_graceful) X(closed_peer) X(closed_timeout)              \
    X(reset_by_peer) X(peer_closed) X(idle_timeouts) X(terminated) X(aborted) X(connects)     \
    X(connect_retries) X(connect_failures) X(releases) X(releases_forced) X(emfile_events)     \
    X(accept_errors) X(write_retryable) X(poll_passes) X(longest_poll_us) X(longest_close_us) \
    X(backlog_now) X(backlog_peak)
#define SN_STATS_COUNT_(name) +1
/* How many scalar fields SN_STATS_FIELDS lists. */
#define SN_STATS_SCALARS (0 SN_STATS_FIELDS(SN_STATS_COUNT_))
#ifndef __cplusplus
_Static_assert(sizeof(sn_stats) == (SN_STATS_SCALARS + SN_POLL_HIST_BUCKETS) * sizeof(uint32_t),
               "sn_stats changed: update SN_STATS_FIELDS");
#endif

/* Upper bound in microseconds of poll_hist bucket i (a pass of d us counts in
 * the first bucket whose bound is >= d); UINT32_MAX for the last bucket. */
uint32_t sn_poll_hist_bound(unsigned i);

const sn_stats *sn_stats_get(const sn_core *core);

/* One line per slot ("slot 3 close-pending proto 0 127.0.0.1:80 <- ...") and a
 * line of counters, into buf (always terminated). Returns the length the
 * whole report needs, like snprintf. */
size_t sn_report(sn_core *core, char *buf, size_t len);

/* Checks every invariant of the state machine; 0 when they hold, else
 * SN_EIO with a description in why. Meant for tests and debug builds. */
int sn_check(const sn_core *core, char *why, size_t len);

#ifdef __cplusplus
}
#endif

#endif /* SLOTNET_H */
