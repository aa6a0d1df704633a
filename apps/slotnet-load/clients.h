/*
 * The simulated clients ("actors") and the /status monitor, and the loop
 * state they share. Each actor has one connection and one timer.
 */
#ifndef SLOTNET_LOAD_CLIENTS_H
#define SLOTNET_LOAD_CLIENTS_H

#include <sys/types.h>

#include "conn.h"

#define NO_TIMER UINT64_MAX

enum astate { A_WAIT, A_BUSY, A_DONE };
enum req { R_NONE, R_LOGIN, R_PATH, R_UPLOAD, R_DOWNLOAD, R_CONNECT, R_HOLD };

/* One browser: a page and its assets, fetched by `parallel` actors. */
struct browser {
    unsigned next;   /* the next asset no actor has taken */
    unsigned done;   /* assets fully received */
    bool page_done;  /* assets[0] is in: the others may start */
    bool gave_up;    /* an asset failed max_retries times */
    uint64_t t_start, t_served; /* t_served 0: not yet */
    struct actor *helpers[MAX_ASSETS];
    unsigned nhelpers;
};

/* The blackhole client's story, for the report. */
struct blackhole {
    struct actor *a;
    char remote[48];   /* its endpoint as the server sees it: A.B.C.D:PORT */
    uint64_t t_request, t_cut, t_until;
    uint64_t before, after; /* reply bytes before and after the cut */
    bool cut, signalled, requested;
    /* from /status, by the server's clock (uptime_ms) */
    bool seen_open, seen_cp, gone;
    uint64_t last_open_u, first_cp_u, last_cp_u, gone_u;
    uint64_t cp_seen_at;    /* tool clock of the first close-pending snapshot */
    uint64_t timeouts_before, timeouts_after;
    bool have_timeouts_before;
    /* the other clients while it was silent */
    uint64_t others_ok, others_failed, others_max_us;
};

struct actor {
    uint32_t idx;
    const struct group_cfg *g; /* NULL for the monitor */
    struct gstats *gs;
    unsigned num; /* its number within the group (uploaders: among all uploaders) */
    struct conn c;
    uint64_t deadline; /* NO_TIMER when none */
    size_t heap_pos;
    enum astate st;
    enum req cur;
    unsigned step; /* next of the group's paths */
    bool have_session;
    uint32_t key;
    uint64_t requests; /* finished requests (path ones), for max_requests */
    uint64_t t_start;  /* when the current request began (connect included) */
    bool retried;      /* the current request was resent once already */
    /* uploader */
    struct body_gen body;
    uint64_t uploads; /* started */
    uint32_t up_crc;
    bool next_download; /* the upload was accepted: verify it next */
    /* slowloris */
    size_t trickle_pos;
    /* storm, and the first start of every client */
    uint64_t group_t0;
    uint64_t burst; /* the storm burst this client last joined */
    /* browser */
    struct browser *br;
    int asset;      /* being fetched, -1 none */
    unsigned tries; /* failures of that asset */
    bool main;      /* fetches the page, then wakes the helpers */
};

struct monitor {
    bool enabled;   /* the scenario wants /status and it has not been refused */
    bool available; /* a /status reply parsed at least once */
    struct status_snap snap;
    struct status_snap first; /* the first one, for counters' differences */
    uint64_t interval_us;
    uint64_t failures;
    uint64_t snap_at; /* when the request that brought snap was sent */
    struct gstats gs; /* its own, kept out of the totals */
};

enum phase { PH_RUN, PH_DRAIN, PH_FINAL, PH_END };

struct load {
    struct net net;
    const struct scenario *sc;
    struct actor *actors; /* [0] is the monitor */
    uint32_t nactors;
    struct actor **heap;
    size_t nheap;
    enum phase phase;
    unsigned busy, done; /* actors (not the monitor) in A_BUSY, A_DONE */
    uint64_t t0;
    struct gstats gs[MAX_GROUPS];
    struct monitor mon;
    char *caps; /* capture buffers, one per actor */
    uint8_t *chunks;
    /* browsers */
    struct browser *browsers;
    unsigned nbrowsers, served;
    uint64_t all_served_at; /* 0: not yet */
    struct wire wire_at_served;
    /* What had to be moved: each browser asset's successful request and
     * reply, the upload and its check (the in-flight attempt counted as it
     * stands), one connection per browser connection needed and per
     * uploader; no closes. Snapshot at all served. */
    struct wire needed, needed_at_served;
    /* CRC-32 of each browser asset as --write-assets writes it */
    uint32_t asset_crc[MAX_GROUPS][MAX_ASSETS];
    /* blackhole */
    struct blackhole bh;
    pid_t bh_pid;  /* --blackhole-pid: SIGUSR1 there cuts the client's link */
    int group_ns[MAX_GROUPS]; /* --netns: fds, -1 none */
    int status_ns;
};

/* Sets up every actor (the scenario's clients and the monitor). */
bool load_init(struct load *L, const struct scenario *sc);
void load_free(struct load *L);
/* Starts the groups (each at its start_ms) and the monitor. */
void load_start(struct load *L, uint64_t now);
/* Dispatches one epoll event. */
void load_event(struct load *L, uint64_t key, uint32_t events, uint64_t now);
/* Runs every timer due at now; returns the next deadline (NO_TIMER if none). */
uint64_t load_timers(struct load *L, uint64_t now);
/* The duration is over: no new requests; idle clients and slowloris stop. */
void load_stop(struct load *L, uint64_t now);
/* The drain is over: whatever is still busy is cut off (RST). */
void load_cut(struct load *L, uint64_t now);
/* After the clients: poll /status quickly for the final check. */
void monitor_final(struct load *L, uint64_t now);
/* True when the last snapshot shows every slot free (but ours). */
bool monitor_all_free(const struct load *L);
void monitor_stop(struct load *L);
/* The wire counters with the transfers in flight counted as segments. */
void load_wire_now(const struct load *L, struct wire *w);

#endif /* SLOTNET_LOAD_CLIENTS_H */
