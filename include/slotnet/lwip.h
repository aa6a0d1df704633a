/*
 * lwIP backend: Debian's liblwip (2.1.x, threaded, core locking) on a TAP
 * device of our own, the raw TCP API driven from the caller's loop.
 *
 * Threads and locking:
 * - lwIP's tcpip thread runs its timers (retransmission, keepalive, ARP);
 *   the caller's thread runs everything else. Every op takes the core lock
 *   (LOCK_TCPIP_CORE) for its own duration and never across a wait.
 * - Frames are read from the TAP descriptor in wait(), in the caller's
 *   thread, and handed to lwIP under the lock; nothing reads in a thread.
 * - lwIP's callbacks (recv, sent, err, accept, connected) only record
 *   flags and data on the connection's record, and wake wait() through an
 *   eventfd when they run on the tcpip thread. They never call the core.
 *
 * What the core sees, as with the POSIX backend:
 * - READABLE when pbufs arrived (cleared once recv() empties the queue),
 *   PEER_FIN, RESET with error (SN_ECONNRESET, SN_ETIMEDOUT...), WRITABLE
 *   only after a short or refused send, CONNECTED / FAILED for connects.
 * - tx_queued() counts from the pcb's sequence numbers (unsent = snd_lbb -
 *   snd_nxt, unacked = snd_nxt - lastack) and transmits a coalesced tail.
 * - close() discards unread input (acknowledging it, so lwIP sends FIN and
 *   not RST), calls tcp_close() and lets go of the pcb at once: after
 *   tcp_close lwIP may free it with no callback. The core calls close() on
 *   the graceful path only once tx_queued() reported the queues empty.
 * - accept(): lwIP has no accept queue, so each listener keeps a bounded
 *   one here. A connection that finds it full, or finds max_conns pcbs
 *   already held, is reset at once; the latter is the EMFILE analogue and
 *   the next accept() reports SN_EMFILE (no record left: SN_ENOMEM).
 * - pcbs handed to lwIP by close() (FIN_WAIT, CLOSING, LAST_ACK, then
 *   TIME_WAIT) are lwIP's: they no longer count against max_conns. So that
 *   a peer that never acknowledges our FIN cannot pile them up without
 *   bound, accept counts them (a walk of lwIP's active list, on our
 *   address, under the lock) and resets a new connection once max_closing
 *   of them exist (SN_EMFILE on the next accept(), accept_over_closing).
 * - A TAP that fails (deleted or downed: POLLERR/POLLHUP on it, or read or
 *   write failing with EBADFD, EIO and the like) is no longer polled: the
 *   backend is deaf from then on. It is counted (stats tap_errors, tap_dead,
 *   tap_errno) and the next wait() returns SN_EIO, once; later waits only
 *   sleep. The app should log it and stop or recreate the backend.
 *
 * Allocation: unlike the other backends, this one is the documented
 * exception to "no allocation after init". Debian's liblwip is built with
 * MEMP_MEM_MALLOC (and MEM_LIBC_MALLOC), so every pcb, segment and pbuf
 * lwIP takes at run time comes from malloc(); our own records, queues and
 * frame buffers are still allocated in sn_lwip_create() only.
 *
 * Debian's liblwip must not receive through its own tapif (its PBUF_POOL
 * size disagrees with its pbuf_alloc: frames over ~592 bytes overflow the
 * heap); this backend allocates every received frame as PBUF_RAM.
 */
#ifndef SLOTNET_LWIP_H
#define SLOTNET_LWIP_H

#include <poll.h>

#include "backend.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sn_lwip sn_lwip;

typedef struct sn_lwip_config {
    const char *tap;        /* TAP device to attach to (created if missing), e.g. "sntap0" */
    uint32_t addr;          /* our IPv4 address, host byte order (10.0.0.2 is 0x0a000002) */
    uint32_t netmask;       /* default 255.255.255.0 */
    uint32_t gateway;       /* 0: none */
    uint8_t mac[6];         /* all zero: 02:00 followed by the address, so instances differ */
    uint16_t mtu;           /* default 1500 */
    unsigned max_handles;   /* connection records: slots + backlog + release queue */
    unsigned max_conns;     /* pcbs held at once (accept queues, slots, backlog); 0 = max_handles */
    unsigned max_listeners; /* 0 = default SN_MAX_LISTENERS */
    unsigned accept_queue;  /* handshaken connections each listener holds for accept(), default 16 */
    unsigned rx_frames;     /* frames one wait() hands to lwIP at most, default 256 */
    unsigned max_closing;   /* closed pcbs lwIP still runs before accepts are refused; 0 = 2 * max_conns */
} sn_lwip_config;

void sn_lwip_config_default(sn_lwip_config *cfg);

/*
 * Starts lwIP's tcpip thread on first use (once per process; it is never
 * stopped; every signal is blocked in it, so SIGINT and the like reach the
 * app's threads), opens the TAP and adds the netif. Allocates here only.
 * SN_EIO when the TAP cannot be opened (no /dev/net/tun, no permission),
 * with errno still telling why.
 */
int sn_lwip_create(sn_lwip **out, const sn_lwip_config *cfg);
/* Resets every connection it holds, removes the netif, closes the TAP. */
void sn_lwip_destroy(sn_lwip *be);
sn_backend sn_lwip_backend(sn_lwip *be);

/* Records and listeners in use (for leak checks in tests). */
unsigned sn_lwip_handles_in_use(const sn_lwip *be);

typedef struct sn_lwip_stats {
    uint32_t rx_frames, tx_frames;  /* through the TAP */
    uint32_t rx_dropped, tx_dropped; /* no pbuf / write failed */
    uint32_t accept_queue_full;     /* connections reset: the listener's queue was full */
    uint32_t accept_over_max;       /* ...max_conns pcbs were held, or no record was free */
    uint32_t pcbs_held;             /* now */
    uint32_t accept_over_closing;   /* connections reset: max_closing closed pcbs were still in lwIP */
    uint32_t pcbs_closing;          /* now: closed by us, still run by lwIP (not TIME_WAIT) */
    uint32_t tap_errors;            /* TAP failures seen (POLLERR/HUP, read/write EIO, EBADFD...) */
    uint32_t tap_dead;              /* 1: the TAP failed and is no longer polled (wait() said SN_EIO) */
    int32_t tap_errno;              /* errno of the first failure (EIO for POLLERR/POLLHUP) */
} sn_lwip_stats;

void sn_lwip_stats_get(sn_lwip *be, sn_lwip_stats *st);

/*
 * Descriptors of the app's own (a daemon's host link) that wait() watches
 * too, as sn_posix_set_extra_fds does: the caller owns fds[n]; before each
 * wait() it sets .fd (-1: unused) and .events (POLLIN, POLLOUT, POLLRDHUP);
 * wait() clears .revents and sets what poll() reports (POLLHUP, POLLERR and
 * POLLNVAL included), and returns as soon as any of them has something.
 * Level-triggered (wait() is poll() underneath, so a closed and reused
 * descriptor number needs no new call). NULL, 0 removes them.
 */
#define SN_LWIP_EXTRA_MAX 4
int sn_lwip_set_extra_fds(sn_lwip *be, struct pollfd *fds, unsigned n);

#ifdef __cplusplus
}
#endif

#endif /* SLOTNET_LWIP_H */
