/* Internal to the core: the structures behind sn_core. */
#ifndef SN_CORE_INTERNAL_H
#define SN_CORE_INTERNAL_H

#include "slotnet.h"
#include "slotnet/backend.h"

#define SN_NO_LISTENER 0xffu
#define SN_GEN_MASK 0xffffffu
/* Longest time value accepted in a config: keeps every deadline well inside
 * the 2^31 ms window in which wrap-safe comparison is exact. */
#define SN_TIME_MAX 0x3fffffffu

/* sn_slot.flags */
#define SN_SF_PEER_FIN 0x01u   /* peer sent FIN (level, from the backend) */
#define SN_SF_RESET 0x02u      /* connection is gone (RST or stack abort) */
#define SN_SF_WANT_WRITE 0x04u /* a write came up short: report WRITABLE */
#define SN_SF_COUNTED 0x08u    /* peer close/reset already counted in stats */
#define SN_SF_RETRY 0x10u      /* a send met out-of-memory: retry on the next pass */

typedef struct sn_slot {
    void *ch;          /* backend handle, NULL when none */
    uint32_t gen;      /* generation, 1..2^24-1 */
    uint32_t t_mark;   /* ALLOCATED: retry due; CONNECTING: attempt start;
                          CLOSE_PENDING: close start; CONNECTED and
                          OTHER_END_CLOSED: bytes queued at the last idle
                          deadline (SN_TX_UNSEEN after I/O), not a time */
    uint32_t t_active; /* last I/O, for the idle timeout */
    uint32_t idle_ms;
    sn_endpoint local;
    sn_endpoint remote;
    int16_t last_error;
    uint8_t state;
    uint8_t protocol;
    uint8_t listener; /* index, or SN_NO_LISTENER */
    uint8_t flags;
    uint8_t attempt; /* failed connect attempts so far */
} sn_slot;

#define SN_TX_UNSEEN UINT32_MAX

typedef struct sn_listener {
    void *lh;
    sn_endpoint local;
    uint32_t idle_ms;
    uint32_t paused_until;
    uint8_t active;
    uint8_t paused;
    uint8_t protocol;
    uint8_t max_conns;
    uint8_t count; /* slots counted against this listener */
} sn_listener;

/* A connection accepted from the backend that waits for a slot. */
typedef struct sn_pending {
    void *ch;
    uint32_t since;
    sn_endpoint local;
    sn_endpoint remote;
    uint8_t listener;
} sn_pending;

typedef struct sn_release {
    void *ch;
    uint32_t due;
} sn_release;

typedef struct sn_blocked {
    uint32_t addr;
    uint32_t until;
    uint16_t port;
    uint8_t used;
} sn_blocked;

struct sn_core {
    sn_config cfg;
    sn_backend be;
    uint32_t now; /* time of the latest sn_poll */
    sn_stats stats;
    sn_slot *slots;
    sn_listener listeners[SN_MAX_LISTENERS];

    sn_pending *backlog; /* in arrival order */
    uint16_t bl_count;

    sn_release *rq; /* ring */
    uint16_t rq_head;
    uint16_t rq_count;
    uint32_t rq_last; /* time of the latest release */
    bool rq_has_last;

    sn_blocked *blocked;

    uint8_t accept_next; /* listener the next pass accepts from first */
    bool in_poll;
    bool want_serve; /* a slot freed: serve the backlog at the next safe point */
    bool alive;
};

/* release.c */
void sn__release_enqueue(sn_core *core, void *ch);
void sn__release_run(sn_core *core);
uint32_t sn__release_next(const sn_core *core); /* when the head may go */
void sn__release_all(sn_core *core);

#endif
