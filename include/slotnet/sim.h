/*
 * The simulator backend: a deterministic in-process network with a virtual
 * clock, for tests. It implements every op of sn_backend_ops; the other end
 * of every connection (a "peer": a client of one of the core's listeners,
 * or a remote server's side of one of the core's outgoing connects) is
 * driven by the test through the functions below.
 *
 * Determinism: all randomness comes from one 64-bit seed, and the sim does
 * nothing on its own between calls, so the same seed and the same sequence
 * of calls replay exactly (sn_sim_trace_hash() proves it).
 *
 * Time: one virtual millisecond clock, a 32-bit counter that starts just
 * before the wrap unless told otherwise. The network moves only when time
 * moves: through the backend's wait() or sn_sim_advance(), one step per
 * millisecond.
 *
 * The model of one connection, as the core sees TCP:
 *
 *   core send() -> [ send buffer: unacked | unsent ] --rate, latency--> peer's
 *   receive buffer -> peer application; the peer ACKs what it received
 *   (after its delayed-ACK time) and the ACK takes `latency` to come back.
 *
 *   - tx_space = send buffer capacity - (unsent + unacked).
 *   - Bytes sent without push wait up to coalesce_ms, or until a push, or
 *     until a full segment (mss) is queued, or until the send buffer is full;
 *     push sends everything now (a send() of 0 bytes with push flushes what
 *     is held).
 *   - Transmission stops while the peer's receive window is full (a peer that
 *     never reads keeps the core's unsent > 0); a peer that never ACKs keeps
 *     unacked > 0.
 *   - The same holds in the other direction toward the core (rx_avail).
 *   - FIN travels after the data; RST overtakes nothing already in flight but
 *     discards everything queued behind it.
 *   - After the core's close(), input that still arrives is acknowledged and
 *     dropped (lwIP's behaviour once a netconn is deleted); the connection
 *     keeps draining its send buffer after release() as well, like a TCP PCB
 *     that outlives its netconn.
 *
 * Misuse detection: any op on a handle after release() (or on a handle the
 * sim never gave out), any op other than release() after close()/abort(),
 * and release() of a handle never closed or aborted are reported. By default
 * the sim prints the misuse and calls abort(); with misuse_fatal = false it
 * records a sticky error that sn_sim_misuse() returns.
 *
 * Memory: sn_sim_create() allocates everything once; nothing afterwards.
 */
#ifndef SLOTNET_SIM_H
#define SLOTNET_SIM_H

#include "backend.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sn_sim sn_sim;

/* A peer: the test-driven end of one simulated connection. 0 is never
 * valid; a peer id that has gone stale is refused with SN_ESTALE. */
typedef uint32_t sn_sim_peer;
#define SN_SIM_PEER_NONE 0u

/* ---- Configuration ----------------------------------------------------- */

/*
 * Fault probabilities, all drawn from the seed. _ppm = parts per million.
 * Per-call faults apply to each call of that op; the reset faults are rates
 * per connection per millisecond of virtual time while a connection is open
 * (from the core's side) and the core still holds its handle.
 */
typedef struct sn_sim_faults {
    uint32_t reset_peer_ppm;     /* the peer sends RST                          */
    uint32_t stack_abort_ppm;    /* the stack kills the connection: the core sees
                                    SN_BF_RESET (lwIP's ERR_ABRT), the peer RST */
    uint32_t internal_error_ppm; /* the core sees SN_BF_ERROR, error SN_EIO     */
    uint32_t send_partial_ppm;   /* send() takes fewer bytes than it could      */
    uint32_t send_enomem_ppm;    /* send() fails with SN_ENOMEM (retryable)     */
    uint32_t accept_fail_ppm;    /* accept() fails: SN_ENOMEM (connection stays
                                    queued) or SN_EIO (it is dropped with RST)   */
    uint32_t accept_emfile_ppm;  /* accept() fails with SN_EMFILE               */
    uint32_t connect_refuse_ppm; /* connect() refused: half synchronously
                                    (SN_ECONNREFUSED, no handle), half after the
                                    round trip (SN_BF_FAILED)                   */
    uint32_t connect_hang_ppm;   /* the SYN is lost: the connect never completes */
} sn_sim_faults;

typedef struct sn_sim_config {
    uint64_t seed;
    uint32_t start_ms;        /* the clock's start; default UINT32_MAX - 10000,
                                 so most runs cross the 32-bit wrap            */
    unsigned max_links;       /* simulated connections alive at once, <= 4096 */
    unsigned max_listeners;   /* listening ports, default SN_MAX_LISTENERS     */
    unsigned max_servers;     /* remote servers for outgoing connects          */
    unsigned accept_queue;    /* per listener; a client beyond it is refused   */
    unsigned server_queue;    /* per remote server: accepted peers waiting for
                                 sn_sim_server_accept() (beyond: detached)     */
    uint32_t sndbuf;          /* core-side send buffer, bytes                  */
    uint32_t rcvbuf;          /* core-side receive buffer (the peer's window)  */
    uint32_t peer_sndbuf;     /* peer-side send buffer                         */
    uint32_t peer_rcvbuf;     /* peer-side receive buffer (the core's window)  */
    uint32_t mss;             /* segment size                                  */
    uint32_t latency_ms;      /* one way, >= 1                                 */
    uint32_t rate;            /* bytes per ms per direction per connection     */
    uint32_t coalesce_ms;     /* longest wait of unpushed data, default 200    */
    uint32_t ack_delay_ms;    /* the peers' delayed ACK (the core side ACKs at once) */
    uint32_t browser_rst_ms;  /* a browser peer's RST, this long after its data */
    uint32_t op_cost_us;      /* virtual µs each op call adds to clock_us()    */
    uint32_t local_addr;      /* the core's address (connect's local endpoint) */
    uint32_t client_addr;     /* first client address; clients count up from it */
    uint32_t release_log;     /* release() times remembered (newest kept)      */
    bool rst_discards_rx;     /* a reset connection drops its unread input
                                 (POSIX); default false: readable, then reset (lwIP) */
    bool wake_on_io;          /* wait() returns early when something reaches the
                                 core's side; default false: wait(t) runs all t ms */
    bool misuse_fatal;        /* default true: print and abort() on misuse     */
    bool trace;               /* print every op call and network event to stderr */
    bool step_all;            /* process every connection every ms instead of only
                                 when something is due: slow; the trace must not
                                 change (a check of the sim's own scheduling) */
    sn_sim_faults faults;     /* all 0 by default                              */
} sn_sim_config;

void sn_sim_config_default(sn_sim_config *cfg);

/* Allocates once, here. SN_EINVAL for a bad config, SN_ENOMEM. */
int sn_sim_create(sn_sim **out, const sn_sim_config *cfg);
void sn_sim_destroy(sn_sim *sim);
sn_backend sn_sim_backend(sn_sim *sim);

/* ---- Time and faults --------------------------------------------------- */

uint32_t sn_sim_now(const sn_sim *sim);        /* the backend's now_ms() */
uint64_t sn_sim_elapsed_ms(const sn_sim *sim); /* since creation, never wraps */
/* Step the network ms milliseconds (0 does nothing). */
void sn_sim_advance(sn_sim *sim, uint32_t ms);
/* Replace the fault probabilities (e.g. all 0 for a liveness phase). */
void sn_sim_set_faults(sn_sim *sim, const sn_sim_faults *f);

/* Deterministic one-shot faults for scenario tests: the next `count` calls of
 * the op fail that way, regardless of the probabilities. */
typedef enum sn_sim_force_kind {
    SN_SIM_FORCE_SEND_PARTIAL,   /* send() takes about half of what it could */
    SN_SIM_FORCE_SEND_ENOMEM,    /* send() returns SN_ENOMEM                 */
    SN_SIM_FORCE_ACCEPT_FAIL,    /* accept() returns SN_ENOMEM, conn stays   */
    SN_SIM_FORCE_ACCEPT_EMFILE,  /* accept() returns SN_EMFILE               */
    SN_SIM_FORCE_CONNECT_REFUSE, /* connect() refused after the round trip   */
    SN_SIM_FORCE_CONNECT_HANG,   /* connect() never answered                 */
    SN_SIM_FORCE_RECV_TIMEOUT,   /* recv() with nothing buffered returns
                                    SN_ETIMEDOUT (a netconn receive timeout) */
    SN_SIM_FORCE_COUNT_
} sn_sim_force_kind;
void sn_sim_force(sn_sim *sim, sn_sim_force_kind kind, uint32_t count);

/* Kill one connection now, from the given side. */
typedef enum sn_sim_kill {
    SN_SIM_KILL_PEER_RST,    /* the peer sends RST (same as sn_sim_peer_reset) */
    SN_SIM_KILL_STACK_ABORT, /* core sees SN_BF_RESET + SN_ECONNRESET; peer RST */
    SN_SIM_KILL_ERROR,       /* core sees SN_BF_ERROR + SN_EIO; peer RST       */
    SN_SIM_KILL_TIMEOUT,     /* retransmissions timed out: core sees SN_BF_RESET
                                + SN_ETIMEDOUT, send/recv return SN_ETIMEDOUT */
} sn_sim_kill;
int sn_sim_kill_conn(sn_sim *sim, sn_sim_peer p, sn_sim_kill how);

/* ---- Clients: peers that connect to the core's listeners --------------- */

/*
 * A new client connects to dst (the core's listening endpoint; addr 0 or
 * local_addr). After latency_ms it lands in that listener's accept queue
 * (accept() returns clients in arrival order) or, with no listener or a full
 * queue, is refused. The peer may send at once; bytes leave once connected.
 * SN_ENOSPC when max_links connections are alive.
 */
int sn_sim_client_connect(sn_sim *sim, const sn_endpoint *dst, sn_sim_peer *out);

/* ---- Remote servers: what the core's outgoing connects reach ----------- */

typedef enum sn_sim_server_mode {
    SN_SIM_SERVER_ACCEPT,       /* completes after a round trip               */
    SN_SIM_SERVER_REFUSE,       /* SN_BF_FAILED, SN_ECONNREFUSED after the trip */
    SN_SIM_SERVER_REFUSE_SYNC,  /* connect() itself returns SN_ECONNREFUSED   */
    SN_SIM_SERVER_UNREACH_SYNC, /* connect() itself returns SN_EUNREACH       */
    SN_SIM_SERVER_HANG,         /* never answers: the core's timeout must fire */
} sn_sim_server_mode;

typedef enum sn_sim_peer_mode {
    SN_SIM_PEER_MANUAL,    /* the test reads with sn_sim_peer_read(); a peer
                              that is never read fills its window            */
    SN_SIM_PEER_AUTO_READ, /* reads everything as it arrives                 */
    SN_SIM_PEER_NO_ACK,    /* reads everything, never acknowledges: the core's
                              unacked stays > 0                              */
    SN_SIM_PEER_BROWSER,   /* reads everything, holds its delayed ACK, and once
                              `expect` bytes (or a FIN) arrived sends RST after
                              browser_rst_ms, before ever ACKing (seed Bug 1) */
} sn_sim_peer_mode;

typedef struct sn_sim_server_config {
    sn_sim_server_mode mode;
    sn_sim_peer_mode peer_mode; /* of the peers it accepts          */
    uint32_t expect;            /* for SN_SIM_PEER_BROWSER          */
    bool detach;                /* accepted peers are not queued for
                                   sn_sim_server_accept(); they run by their
                                   mode and are forgotten when done  */
} sn_sim_server_config;

/* Add or replace the server at ep (addr and port must match the connect). A
 * connect to an endpoint without a server is refused after the round trip. */
int sn_sim_server_add(sn_sim *sim, const sn_endpoint *ep, const sn_sim_server_config *sc);
int sn_sim_server_remove(sn_sim *sim, const sn_endpoint *ep);
/* The next peer this server accepted, oldest first; SN_EAGAIN if none. */
int sn_sim_server_accept(sn_sim *sim, const sn_endpoint *ep, sn_sim_peer *out);

/* ---- Peers ------------------------------------------------------------- */

/* Change how a peer behaves (expect: bytes a browser waits for; 0 = any).
 * A peer leaving SN_SIM_PEER_NO_ACK acknowledges what it received. */
int sn_sim_peer_set_mode(sn_sim *sim, sn_sim_peer p, sn_sim_peer_mode mode, uint32_t expect);
/* Queue bytes toward the core; returns how many fit (0 when full), or
 * SN_ECONNRESET / SN_ECLOSED (after sn_sim_peer_close) / SN_ECONNREFUSED. */
int sn_sim_peer_send(sn_sim *sim, sn_sim_peer p, const void *buf, size_t len);
/* Read what arrived: bytes; 0 when nothing yet; SN_ECLOSED once the core's
 * FIN arrived and all is read; SN_ECONNRESET; SN_ECONNREFUSED. */
int sn_sim_peer_read(sn_sim *sim, sn_sim_peer p, void *buf, size_t len);
int sn_sim_peer_avail(const sn_sim *sim, sn_sim_peer p);
/* FIN after the queued bytes (the peer can still read). */
int sn_sim_peer_close(sn_sim *sim, sn_sim_peer p);
/* RST now: queued bytes are dropped. */
int sn_sim_peer_reset(sn_sim *sim, sn_sim_peer p);
/* The test is done with p: the id goes stale. The connection itself goes on
 * by the peer's mode until the core releases its side and nothing is in
 * flight, then its record is reused. */
int sn_sim_peer_release(sn_sim *sim, sn_sim_peer p);

/* Who ended a connection with RST. */
typedef enum sn_sim_by {
    SN_SIM_BY_NONE,
    SN_SIM_BY_PEER,    /* the peer (sn_sim_peer_reset, browser, fault)      */
    SN_SIM_BY_CORE,    /* the core's abort()                                */
    SN_SIM_BY_STACK,   /* an injected stack abort (core sees SN_BF_RESET)   */
    SN_SIM_BY_ERROR,   /* an injected internal error (core sees SN_BF_ERROR) */
    SN_SIM_BY_NETWORK, /* refused, dropped from an accept queue, unlisten   */
} sn_sim_by;

/* Everything the invariant checkers need about one connection. Byte counts
 * are per direction: core -> peer and peer -> core. */
typedef struct sn_sim_link_info {
    bool incoming;       /* a client of a listener; else the core connected */
    bool established;    /* the handshake completed                        */
    bool refused;        /* the connect was refused (or never answered: no) */
    bool handed;         /* the core got a handle (accept or connect)       */
    bool closed;         /* the core called close()                         */
    bool aborted;        /* the core called abort()                         */
    bool released;       /* the core called release()                       */
    bool peer_saw_fin;   /* the core's FIN reached the peer                 */
    bool core_saw_fin;   /* the peer's FIN reached the core's side          */
    bool peer_closed;    /* the peer called sn_sim_peer_close()             */
    bool reset;          /* ended by RST, either way                        */
    sn_sim_by reset_by;
    sn_sim_peer_mode mode;
    uint32_t close_calls, abort_calls, release_calls;
    uint32_t unsent, unacked; /* core side, now                           */
    uint32_t release_ms;      /* when release() came (if released)        */
    uint64_t core_sent;       /* bytes the core's send() accepted          */
    uint64_t peer_received;   /* ...that reached the peer's buffer          */
    uint64_t peer_read;       /* ...that the peer application read          */
    uint64_t core_acked;      /* ...acknowledged back to the core's side    */
    uint64_t peer_sent;       /* bytes the peer queued toward the core      */
    uint64_t core_received;   /* ...that reached the core's receive buffer  */
    uint64_t core_read;       /* ...that the core's recv() returned         */
    uint64_t core_discarded;  /* ...that close() dropped unread, or that came
                                 after close()                              */
    uint32_t core_tx_hash;    /* FNV-1a of the bytes the core sent          */
    uint32_t peer_rx_hash;    /* ...of the bytes that reached the peer       */
    sn_endpoint core_local;   /* as the core sees it                        */
    sn_endpoint core_remote;
} sn_sim_link_info;

int sn_sim_peer_info(const sn_sim *sim, sn_sim_peer p, sn_sim_link_info *out);

/* Find a live (not released by the test) peer by the endpoints the core sees
 * (sn_slot_status_get's local and remote), or by the core's handle.
 * SN_SIM_PEER_NONE when there is none. */
sn_sim_peer sn_sim_peer_of(const sn_sim *sim, const sn_endpoint *core_local,
                           const sn_endpoint *core_remote);
sn_sim_peer sn_sim_peer_of_handle(const sn_sim *sim, const void *ch);

/* ---- Accounting -------------------------------------------------------- */

typedef enum sn_sim_op {
    SN_SIM_OP_NOW_MS,
    SN_SIM_OP_CLOCK_US,
    SN_SIM_OP_WAIT,
    SN_SIM_OP_LISTEN,
    SN_SIM_OP_UNLISTEN,
    SN_SIM_OP_LISTEN_PAUSE,
    SN_SIM_OP_ACCEPT,
    SN_SIM_OP_CONNECT,
    SN_SIM_OP_CONN_STATE,
    SN_SIM_OP_RECV,
    SN_SIM_OP_SEND,
    SN_SIM_OP_TX_QUEUED,
    SN_SIM_OP_RX_AVAIL,
    SN_SIM_OP_TX_SPACE,
    SN_SIM_OP_CLOSE,
    SN_SIM_OP_ABORT,
    SN_SIM_OP_RELEASE,
    SN_SIM_OP_COUNT_
} sn_sim_op;

const char *sn_sim_op_name(sn_sim_op op);

typedef struct sn_sim_stats {
    uint32_t handles_in_use;   /* given to the core, not yet released        */
    uint32_t listeners_in_use;
    uint32_t links_in_use;     /* connection records in use                  */
    uint64_t handles_created;  /* accept() and connect() results             */
    uint64_t handles_released;
    uint64_t links_created;    /* clients + outgoing connects                */
    uint64_t bytes_to_peers, bytes_to_core; /* delivered                     */
    uint64_t faults;           /* faults injected (probabilistic and forced) */
    uint64_t misuse;           /* misuse detections                          */
    uint64_t ops[SN_SIM_OP_COUNT_]; /* calls per op                          */
} sn_sim_stats;

void sn_sim_stats_get(const sn_sim *sim, sn_sim_stats *out);
/* Calls of one op so far (same as the stats). */
uint64_t sn_sim_op_count(const sn_sim *sim, sn_sim_op op);

/* The times (now_ms) of the newest release() calls, oldest first; returns
 * how many were copied. sn_sim_stats.handles_released counts them all. */
size_t sn_sim_release_log(const sn_sim *sim, uint32_t *times, size_t max);

/* NULL while no misuse has been seen; else the first one's description. */
const char *sn_sim_misuse(const sn_sim *sim);

/* A hash of everything that happened (op calls with arguments and results,
 * network events, times): equal for equal seeds and call sequences. */
uint64_t sn_sim_trace_hash(const sn_sim *sim);

/* The sim's PRNG (splitmix64), for tests that want the same kind of
 * replayable randomness. */
uint64_t sn_sim_rand(uint64_t *state);
/* Uniform in 0..n-1 (0 when n is 0). */
uint32_t sn_sim_rand_below(uint64_t *state, uint32_t n);

#ifdef __cplusplus
}
#endif

#endif /* SLOTNET_SIM_H */
