/*
 * slotnet-link: a user-space link emulator (issue 5). The kernel here has no
 * netem, so Ethernet frames between two endpoints (TAPs or AF_PACKET on an
 * interface, each in its own network namespace) pass through this program,
 * which delays, shapes, loses and blackholes them per direction.
 *
 * Layers:
 * - shaper.c: the timing model of one direction (a FIFO of frames with
 *   release times) and the fixed frame pool. No I/O, no clock: it is handed
 *   `now`, so tests/emu/test_shaper.c drives it with a fake clock.
 * - endpoint.c: opening a TAP or a packet socket inside a namespace, and
 *   moving one frame in or out.
 * - main.c: options and profiles, the epoll loop, signals, statistics.
 *
 * Directions: a2b carries what endpoint A's side sends to B's; by
 * convention A is the client's side and B the server's.
 */
#ifndef SLOTNET_LINK_H
#define SLOTNET_LINK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A frame buffer: Ethernet at MTU 1500 is 1514 bytes (1518 with a VLAN
 * tag); anything longer is a GSO frame or a misconfigured MTU, and is
 * dropped and counted rather than forwarded truncated. */
#define SL_FRAME_CAP 1600u

#define SL_MAX_WINDOWS 8 /* blackhole windows per direction */

struct sl_frame {
    struct sl_frame *next;
    int64_t arrive_ns;
    int64_t release_ns;
    uint32_t len;
    unsigned char data[SL_FRAME_CAP];
};

/* Every frame buffer, allocated once at start and never grown: the
 * forwarding path takes from and returns to this free list only. */
struct sl_pool {
    struct sl_frame *slab;
    struct sl_frame *free;
    uint32_t size, in_use, max_in_use;
};

int sl_pool_init(struct sl_pool *p, uint32_t frames);
void sl_pool_fini(struct sl_pool *p);
struct sl_frame *sl_pool_get(struct sl_pool *p);
void sl_pool_put(struct sl_pool *p, struct sl_frame *f);

/* What a direction does to frames; the profile fills it, options override. */
struct sl_params {
    uint64_t rate;        /* bytes a second of line rate; 0 = unlimited */
    uint32_t queue_bytes; /* bytes waiting for the line at most; 0 = no limit */
    uint32_t delay_ms;    /* one-way propagation delay */
    uint32_t jitter_ms;   /* delay varies uniformly in [delay-jitter, delay+jitter] */
    double loss;          /* probability 0..1 that a frame is lost */
};

struct sl_window {
    int64_t start_ns, end_ns; /* end_ns < 0: never heals */
};

struct sl_stats {
    uint64_t frames_in, bytes_in;   /* read from the source endpoint */
    uint64_t frames_out, bytes_out; /* written to the destination */
    uint64_t queue_drops;           /* the shaper queue was full */
    uint64_t lost;                  /* random loss */
    uint64_t blackholed;            /* dropped on arrival or release in a blackhole */
    uint64_t pool_drops;            /* no free frame buffer */
    uint64_t oversize;              /* longer than SL_FRAME_CAP */
    uint64_t csum_partial;          /* packet socket: checksum left to offload */
    uint64_t write_errors;          /* the destination refused a frame */
    int64_t max_wait_ns;            /* longest wait for the line (queueing) */
    int64_t max_transit_ns;         /* longest arrival-to-write time */
    uint32_t max_queue_bytes;       /* most bytes waiting for the line */
};

struct sl_dir {
    struct sl_params p;
    struct sl_frame *head, *tail; /* release times never decrease along it */
    uint32_t queued;              /* frames in the FIFO */
    int64_t line_free_ns;         /* when the line finishes the last admitted frame */
    int64_t last_release_ns;
    uint64_t rng;
    bool manual_blackhole;        /* toggled by SIGUSR1 */
    unsigned nwin;
    struct sl_window win[SL_MAX_WINDOWS];
    struct sl_stats st;
};

enum sl_verdict { SL_QUEUED, SL_LOST, SL_QUEUE_FULL, SL_BLACKHOLED };

void sl_dir_init(struct sl_dir *d, const struct sl_params *p, uint64_t seed);
bool sl_dir_blackholed(const struct sl_dir *d, int64_t now);
/* Next instant after `now` at which a blackhole window opens or closes; -1: none. */
int64_t sl_dir_next_window_edge(const struct sl_dir *d, int64_t now);
/* Takes a frame that arrived at `now` (len and data set). SL_QUEUED: it
 * is in the FIFO; otherwise the caller returns it to the pool. */
enum sl_verdict sl_dir_admit(struct sl_dir *d, struct sl_frame *f, int64_t now);
/* The head of the FIFO if its release time has come, else NULL. */
struct sl_frame *sl_dir_due(const struct sl_dir *d, int64_t now);
struct sl_frame *sl_dir_pop(struct sl_dir *d);

/* splitmix64: tiny, seedable, good enough for loss and jitter draws. */
uint64_t sl_rand(uint64_t *state);

#endif
