/*
 * slotnet host: a client of the link protocol (docs/link-protocol.md) whose
 * calls mirror the core's (slotnet.h), so that an application runs against
 * an in-process core or against slotnetd on the other end of a link with
 * the same code: sn_read becomes sn_host_read, sn_poll sn_host_poll, and so
 * on, with the same arguments, the same SN_E* results and the same events.
 *
 * Every call that needs the device is one synchronous request/reply (a
 * write of more than 2048 bytes is several). A request whose reply does not
 * come in time is sent again with the same sequence number, which the
 * device answers with its kept reply instead of acting twice: every call
 * takes effect exactly once, or the link is lost. Events are raised only from
 * inside sn_host_poll(), computed by comparing successive network-status
 * replies (bitmaps and per-slot handles) with the host's mirror of the
 * table. All memory is allocated by sn_host_open(); nothing after.
 *
 * Not thread-safe: one thread owns an sn_host, as one owns an sn_core.
 */
#ifndef SLOTNET_HOST_H
#define SLOTNET_HOST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../slotnet.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sn_host sn_host;

/* As sn_event_fn, from inside sn_host_poll() only. The callee may call any
 * sn_host_ function except sn_host_poll(), sn_host_wait() and
 * sn_host_shutdown(). info for SN_EV_FREED is an sn_free_reason the host
 * infers: SN_FREED_GRACEFUL after the host's own close (the link does not
 * say whether the drain ended by FIN, peer or timeout), SN_FREED_IDLE for a
 * connection that vanished without one. A slot a handler changes (connect,
 * close, terminate, write) is left alone for the rest of the pass, whose
 * network status predates the change; sn_host_next_timeout() is then 0 so
 * the next pass comes at once and raises what is due (CONNECTED, ...). */
typedef void (*sn_host_event_fn)(sn_host *h, sn_id id, sn_event ev, int info, void *user);

typedef struct sn_host_config {
    /* One attempt's wait for its reply, default 250; on a serial line plus
     * twice the time the request and the longest reply it allows take at
     * the line's rate (10 bits a byte). */
    uint32_t timeout_ms;
    uint8_t resends;           /* extra attempts of any request after a timeout, default 2 */
    uint32_t write_poll_ms;    /* sn_host_next_timeout() while a short write waits, default 10 */
    sn_host_event_fn on_event; /* optional */
    void *user;
} sn_host_config;

void sn_host_config_default(sn_host_config *cfg);

/*
 * Opens the link and checks it (null request, then network status, which
 * gives the slot count). target:
 *   "unix:PATH"             a UNIX stream socket slotnetd listens on
 *                           (a target without a prefix is a path)
 *   "serial:DEVICE[,BAUD]"  a serial line, raw, 8N1 (default 115200)
 *   "exec:COMMAND"          runs COMMAND with /bin/sh -c, its stdin and
 *                           stdout on a socket pair (give the daemon
 *                           --link stdio); it is ended by sn_host_shutdown
 * A UNIX socket that is not there yet or refuses is tried again for one
 * timeout_ms (a daemon just started). SN_EINVAL for a bad target or config,
 * SN_EIO when the link cannot be opened, nothing answers, or the device
 * answers the opening null with a version error (it does not speak link
 * version 1), SN_ENOMEM; sn_host_open_error() then says which.
 */
int sn_host_open(sn_host **out, const char *target, const sn_host_config *cfg);

/* Why the last failed sn_host_open() or sn_host_reopen() of the calling
 * thread failed, one line without a newline ("" if none did). */
const char *sn_host_open_error(void);

/* Terminates every connection the mirror holds, stops the listeners this
 * host started (as sn_core_shutdown does to its own), closes the link and
 * frees h. With the link down, only the last two. */
void sn_host_shutdown(sn_host *h);

/* After the link is lost (every call returns SN_EIO), opens the same
 * target again and repeats the listens this host made (to a daemon that
 * kept them, an update that changes nothing). The mirror is kept: the next
 * sn_host_poll() raises FREED for connections that did not survive (all of
 * them when exec: started a new daemon) and ACCEPTED for ones it has not
 * seen. The same happens without a reopen when the device says (network
 * status epoch) that it gave up on this host after its grace period and
 * reset every connection and stopped every listener: the poll that sees it
 * makes the listens again and raises FREED for every connection held. */
int sn_host_reopen(sn_host *h);

/* True while the link works. */
bool sn_host_link_up(const sn_host *h);

/* ---- The core's calls, over the link ----------------------------------- */

/* One network-status request, then the events it shows. 0, or SN_EIO when
 * the link is lost. now_ms is accepted for symmetry with sn_poll(). */
int sn_host_poll(sn_host *h, uint32_t now_ms);

/* How long the caller may sleep in sn_host_wait() (<= max_ms): 0 when an
 * attention byte is pending, write_poll_ms while a short write waits for
 * WRITABLE, else max_ms (the device's attention byte wakes the wait). */
uint32_t sn_host_next_timeout(const sn_host *h, uint32_t now_ms, uint32_t max_ms);

/* Sleeps on the link until the device sends its attention byte, ms pass,
 * or a signal arrives. 1 woken by the link, 0 otherwise, SN_EIO once the
 * link is lost. */
int sn_host_wait(sn_host *h, uint32_t ms);

int sn_host_listen(sn_host *h, const sn_endpoint *local, uint8_t protocol, uint8_t max_conns,
                   uint32_t idle_ms);
int sn_host_connect(sn_host *h, const sn_endpoint *remote, uint8_t protocol, uint32_t idle_ms,
                    sn_id *out);
/* At most SN_LINK_DATA_MAX (2048) bytes per call: one read request. */
int sn_host_read(sn_host *h, sn_id id, void *buf, size_t len);
/* As many 2048-byte write requests as it takes, until the device accepts
 * less than it was given; returns the bytes accepted. SN_WRITE_PUSH and
 * SN_WRITE_CLOSE_AFTER go with the last piece. */
int sn_host_write(sn_host *h, sn_id id, const void *buf, size_t len, unsigned flags);
/* As sn_close: 0. A slot the device frees at once (reset or aborted) is
 * free in the mirror on return, and no FREED follows; otherwise it is
 * close-pending and FREED comes when the device frees it. */
int sn_host_close(sn_host *h, sn_id id);
/* As sn_terminate: the slot is free in the mirror on return; no FREED. */
int sn_host_terminate(sn_host *h, sn_id id);

/* A get-status request; id is the mirror's handle for the slot. */
int sn_host_slot_status_get(sn_host *h, unsigned index, sn_slot_status *st);
/* From the mirror, as of the last sn_host_poll() and the host's own calls. */
sn_id sn_host_slot_id(const sn_host *h, unsigned index);
sn_state sn_host_slot_state(const sn_host *h, unsigned index);
unsigned sn_host_slot_count(const sn_host *h);

/* The device core's counters as last fetched; backlog_now and backlog_peak
 * are refreshed by every sn_host_poll(). */
const sn_stats *sn_host_stats_get(const sn_host *h);
/* Fetches all of them now (one statistics request). */
int sn_host_stats_fetch(sn_host *h);

/* The device's sn_report() text into buf (always terminated), paged with
 * diagnostics requests. Returns the length of the whole report, like
 * snprintf, or 0 when the link fails. */
size_t sn_host_report(sn_host *h, char *buf, size_t len);

/* ---- The link's own figures -------------------------------------------- */

typedef struct sn_host_link_stats {
    uint64_t requests;      /* requests made (a resend is not another) */
    uint64_t resends;       /* attempts after a timeout or a version-error reply */
    uint64_t timeouts;      /* attempts that got no reply in time */
    uint64_t failed;        /* requests that got no reply at all (the link was lost) */
    uint64_t frame_errors;  /* replies dropped: CRC, oversize, truncated, version;
                             * and version-error replies (-19) after the opening null */
    uint64_t garbage;       /* bytes skipped outside frames (attention excluded) */
    uint64_t stale_replies; /* good replies that did not echo the request's seq,
                             * command and slot (late answers to an earlier attempt) */
    uint64_t attention;     /* attention bytes from the device */
    uint64_t polls;         /* sn_host_poll() passes that reached the device */
    uint64_t reopens;
    uint64_t losses;        /* times the link was lost */
    uint64_t epochs;        /* times the device said it dropped this host's table */
    uint32_t device_turn_us; /* the device loop's longest turn, as of the last stats fetch */
    /* Round trip of every answered request, first send to reply, in us. */
    uint64_t rtt_count;
    uint32_t rtt_p50_us, rtt_p99_us, rtt_max_us;
} sn_host_link_stats;

void sn_host_link_stats_get(const sn_host *h, sn_host_link_stats *out);

#ifdef __cplusplus
}
#endif

#endif /* SLOTNET_HOST_H */
