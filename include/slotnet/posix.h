/*
 * POSIX sockets backend: non-blocking sockets, epoll on Linux (edge
 * triggered) or poll() (interest masks emulate edges; built and tested on
 * Linux too). Handles come from a pool sized at creation.
 *
 * What the core sees:
 * - READABLE on new input, cleared when recv() finds the buffer empty or
 *   reads short; WRITABLE only after a send() came up short; PEER_FIN;
 *   RESET with error (SN_ECONNRESET, SN_ETIMEDOUT...); CONNECTED / FAILED
 *   for outgoing connects.
 * - tx_queued() also transmits a coalesced (push=false) tail when nothing
 *   else is in flight, so a draining close never waits on the probe timer.
 * - tx_space() is an estimate: SO_SNDBUF / 2 less SIOCOUTQ.
 * - accept() resets what it cannot take (pool empty: SN_ENOMEM; out of
 *   descriptors: SN_EMFILE, the queue shed via a reserve descriptor).
 * One thread owns a backend; nothing here locks.
 */
#ifndef SLOTNET_POSIX_H
#define SLOTNET_POSIX_H

#include <poll.h>

#include "backend.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sn_posix sn_posix;

typedef struct sn_posix_config {
    unsigned max_handles;   /* connections alive at once: slots + backlog + release queue */
    unsigned max_listeners; /* default SN_MAX_LISTENERS */
    int listen_backlog;     /* the kernel's accept queue, default 64 */
    bool use_poll;          /* poll() instead of epoll */
    unsigned drain_max;     /* bytes of unread input close() discards before FIN, default 65536 */
    unsigned sndbuf;        /* SO_SNDBUF of each connection, default 65536 (what a close may
                               have to drain); 0 leaves the kernel's autotuning */
} sn_posix_config;

void sn_posix_config_default(sn_posix_config *cfg);

/* Allocates once, here; nothing afterwards. */
int sn_posix_create(sn_posix **out, const sn_posix_config *cfg);
/* Closes every descriptor it still holds and frees the backend. */
void sn_posix_destroy(sn_posix *be);
sn_backend sn_posix_backend(sn_posix *be);

/* How many handles are in use (for leak checks in tests). */
unsigned sn_posix_handles_in_use(const sn_posix *be);

/*
 * Descriptors of the app's own (a daemon's host link) that wait() watches
 * too, so one wait covers the network and the app. The caller owns fds[n]:
 * before each wait() it sets .fd (-1: unused) and .events (POLLIN, POLLOUT,
 * POLLRDHUP); wait() sets .revents (POLLHUP and POLLERR included).
 * Level-triggered in both modes; a descriptor epoll cannot watch (a regular
 * file) reports what it asked for at once, as poll() would. Call again after
 * closing one of them: epoll forgets a closed descriptor, and a reused
 * number would otherwise go unwatched. NULL, 0 removes them.
 */
#define SN_POSIX_EXTRA_MAX 4
int sn_posix_set_extra_fds(sn_posix *be, struct pollfd *fds, unsigned n);

#ifdef __cplusplus
}
#endif

#endif /* SLOTNET_POSIX_H */
