/*
 * slotnet-load: plays many HTTP clients at once against a server on
 * loopback (browsers that poll and reset, API clients, uploaders,
 * slowloris, connect storms), then reports and checks expectations.
 *
 * One thread, one epoll loop. Each simulated client is an "actor" with at
 * most one connection and one timer; the loop moves actors on socket events
 * and on their timers. Nothing blocks, and every loop is bounded by the
 * scenario's duration plus a drain and a grace period.
 */
#ifndef SLOTNET_LOAD_H
#define SLOTNET_LOAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/socket.h>

#include <http_parser.h>

#define PROG "slotnet-load"

#define MAX_GROUPS 16
#define MAX_PATHS 8       /* requests in one client's cycle */
#define MAX_ACTORS 4096   /* every client of every group, plus the monitor */
#define PATH_LEN 512
#define NAME_LEN 64
#define REQ_MAX 4096      /* request line and headers */
#define TICK_US 250000u   /* timeline row and progress line period */
#define MAX_ASSETS 64     /* a browser's page and its assets */
#define ASSET_PATH 160

/* ---- Time -------------------------------------------------------------- */

uint64_t now_us(void); /* CLOCK_MONOTONIC */

/* ---- Scenario ---------------------------------------------------------- */

enum group_type { G_POLLER, G_API, G_UPLOADER, G_SLOWLORIS, G_STORM, G_BROWSER, G_BLACKHOLE };

/* One file of a browser's page: the first is the page itself. */
struct asset {
    char path[ASSET_PATH];
    uint64_t size; /* as written in the scenario, before the scale */
};
enum session_mode { SESS_NONE, SESS_IP, SESS_KEY };

struct group_cfg {
    enum group_type type;
    char name[NAME_LEN];
    unsigned count;
    unsigned start_ms; /* delay before the group's first request */

    /* HTTP clients (poller, api, storm with a request) */
    char paths[MAX_PATHS][PATH_LEN];
    unsigned npaths;
    enum session_mode session; /* rr_connect before the first request */
    bool keepalive;            /* reuse the connection while the server allows */
    bool close_rst;            /* close with RST (SO_LINGER 0) rather than FIN */
    bool connection_close;     /* send Connection: close */
    bool check_json;           /* a 2xx body must parse as JSON */
    unsigned interval_ms;      /* think time after each reply; storm: burst period */
    unsigned timeout_ms;       /* per request; uploads: without progress */
    uint64_t max_requests;     /* per client; 0 = until the duration ends */

    /* uploader */
    uint64_t size;
    uint64_t uploads; /* per client; 0 = until the duration ends */
    bool verify_download;
    char upload_name[PATH_LEN]; /* "{n}" becomes the client's number */

    /* slowloris */
    bool trickle;          /* false: connect and send nothing */
    unsigned trickle_ms;   /* one byte this often */
    bool reconnect;        /* connect again when the server drops us */
    unsigned reconnect_ms;

    /* storm: count connections every interval_ms; npaths == 0: connect only */

    /* browser: assets[0] alone, then the rest over up to `parallel`
     * keep-alive connections; a failed one is fetched again after retry_ms */
    struct asset assets[MAX_ASSETS];
    unsigned nassets;
    unsigned parallel;
    unsigned retry_ms;
    unsigned max_retries; /* per asset */

    /* blackhole: GET paths[0] (size bytes), the link cut after
     * silence_after reply bytes, then silent for hold_ms */
    uint64_t silence_after;
    unsigned hold_ms;

    /* --netns GROUP=NS: this group's sockets are made in NS (its own path) */
    char netns[NAME_LEN];
};

/* What the report assumes of the link between the tool and the server,
 * for the physical bound of a page load. rate 0: not known, no bound. */
struct link_cfg {
    double rate;         /* bytes/s each way, Ethernet header to payload */
    double delay_ms;     /* one way */
    unsigned mss;        /* TCP payload per full segment */
    unsigned overhead;   /* Ethernet + IP + TCP header bytes per segment */
};

enum expect_id {
    E_MAX_FAILED_POLLS,
    E_MAX_FAILED_REQUESTS,
    E_MAX_FAILED_PCT,
    E_MIN_REQUESTS,
    E_UPLOAD_CRC,
    E_ALL_SLOTS_FREE,
    E_MIN_CONN_PER_S,
    E_MIN_REQ_PER_S,
    E_MAX_P99_MS,
    E_MAX_LONGEST_POLL_US,
    E_MIN_UPLOAD_MB_S,
    E_ALL_CLIENTS_SERVED,
    E_MAX_SERVED_RATIO,
    E_BLACKHOLE_RESET_WITHIN_MS,
    E_SERVED_DURING_BLACKHOLE,
    E_COUNT
};

struct expectation {
    bool set;
    double value; /* bools as 0/1 */
};

struct scenario {
    char name[NAME_LEN];
    double duration_s;
    unsigned drain_ms;       /* after the duration, in-flight requests may finish */
    unsigned final_grace_ms; /* then the server gets this long to free its slots */
    bool status_enabled;
    char status_path[PATH_LEN];
    char password[128];
    uint64_t seed;
    struct group_cfg groups[MAX_GROUPS];
    unsigned ngroups;
    struct expectation expect[E_COUNT];
    struct link_cfg link;
    double scale;                /* browser assets and upload sizes times this */
    unsigned status_interval_ms; /* the monitor's period (250) */
    unsigned status_timeout_ms;  /* and its timeout (1000) */
    char status_netns[NAME_LEN]; /* --status-netns: the monitor's sockets there */
    unsigned close_timeout_ms;   /* the server's, for the blackhole check (2000) */
};

/* An asset's or upload's size after the scenario's scale (at least 1). */
uint64_t scaled_size(const struct scenario *sc, uint64_t size);

extern const char *const expect_names[E_COUNT];

/* Reads and checks a scenario file; on error prints why and returns false. */
bool scenario_load(const char *file, struct scenario *sc);
const char *group_type_name(enum group_type t);

/* ---- Statistics -------------------------------------------------------- */

enum fail_kind {
    F_REFUSED,  /* connect refused */
    F_CONNECT,  /* other connect error (no local port, unreachable) */
    F_RESET,    /* reset before any part of the reply */
    F_CLOSED,   /* closed before any part of the reply */
    F_TIMEOUT,  /* no complete reply in time */
    F_STATUS,   /* an HTTP status other than the expected one */
    F_SHORT,    /* reply cut short (closed or reset mid-reply) */
    F_PROTOCOL, /* reply not HTTP */
    F_REPLY,    /* reply well-formed but wrong (JSON, err, CRC) */
    F_COUNT
};
extern const char *const fail_names[F_COUNT];

/* Log-linear latency histogram: 32 sub-buckets per power of two, so a
 * percentile is within about 3 % of the truth, in fixed memory. */
#define HIST_SUB 32u
#define HIST_BUCKETS (HIST_SUB * 40u)
struct hist {
    uint64_t b[HIST_BUCKETS];
    uint64_t n, max;
};
void hist_add(struct hist *h, uint64_t v);
void hist_merge(struct hist *into, const struct hist *from);
uint64_t hist_pct(const struct hist *h, double pct); /* 0 when empty */

struct gstats {
    uint64_t ok, failed, fail[F_COUNT];
    uint64_t ok_run, failed_run; /* at the end of the timed run */
    struct hist lat;             /* microseconds, successful requests */
    uint64_t connects, connects_run, connect_errors;
    uint64_t stale_retries; /* a reused connection was closed under us: resent */
    uint64_t cut;           /* requests still running when the drain ended */
    uint64_t logins, logins_failed; /* rr_connect: accepted, not */
    /* uploader */
    uint64_t up_ok, up_failed, up_verified, up_bad, up_cut;
    uint64_t up_bytes, up_us; /* completed uploads: bytes and time */
    uint64_t down_bytes, down_us;
    /* slowloris */
    uint64_t sl_dropped, sl_open, sl_peak;
    /* storm */
    uint64_t skipped;
    /* browser */
    uint64_t served, retries, gave_up;
    uint64_t content_bad; /* browser replies of the right size, wrong bytes */
};

/* Bytes the tool moved, for the bound: [0] up (sent), [1] down (received). */
struct wire {
    uint64_t bytes[2]; /* HTTP: request line, headers, bodies; reply the same */
    uint64_t segs[2];  /* data segments: each message's bytes / MSS, rounded up */
    uint64_t conns;    /* TCP connections made */
    uint64_t fin_closes, rst_closes;
};

/* ---- Server status (from GET /status) ---------------------------------- */

enum slot_state {
    SS_FREE,
    SS_CONNECTED,
    SS_OTHER_END_CLOSED,
    SS_CLOSE_PENDING,
    SS_CONNECTING,
    SS_ALLOCATED,
    SS_ABORTED,
    SS_OTHER,
    SS_COUNT
};
extern const char *const slot_state_names[SS_COUNT];

struct status_snap {
    bool valid;
    unsigned nslots;
    unsigned by_state[SS_COUNT]; /* excluding the monitor's own slot */
    bool own_seen;               /* the monitor's slot was found and left out */
    bool has_backlog, has_poll_us, has_close_us, has_rejected;
    uint64_t backlog, longest_poll_us, longest_close_us;
    uint64_t rejected; /* connections reset because the wait queue was full */
    bool has_finish_us;
    uint64_t longest_finish_us; /* slotnet-web: an upload's fsync and rename */
    bool has_hist;
    uint64_t passes, slow_passes; /* poll passes in all, and those over 1 ms */
    /* slotnet-web: whole loop turns (sn_poll and the app's work after it) */
    bool has_turn_us, has_turn_hist;
    uint64_t longest_turn_us;
    uint64_t turns, slow_turns; /* loop turns in all, and those over 1 ms */
    /* slotnet-web --link: the round trips to slotnetd, {"link": {...}} */
    bool has_link;
    uint64_t link_p50_us, link_p99_us, link_max_us, link_requests, link_timeouts;
    /* the server's clock, and close timeouts so far */
    bool has_uptime, has_closed_timeout;
    uint64_t uptime_ms, closed_timeout;
    /* the slot whose remote is the watched endpoint (the blackhole client) */
    int watched_state; /* an SS_*, or -1: no slot has it */
};

/* Parses a /status body; own_port is the monitor's local port; watch (or
 * NULL) is an "A.B.C.D:PORT" remote whose slot state goes to watched_state. */
bool status_parse(const char *body, size_t len, unsigned own_port, const char *watch,
                  struct status_snap *s);

/* ---- Timeline ---------------------------------------------------------- */

struct row {
    double t;
    double req_s, conn_s, up_mb_s;
    double lat_max_ms; /* the slowest small request that ended in this row */
    double down_kb_s;  /* reply bytes received, kB/s (10^3) */
    unsigned served;   /* browsers served so far */
    uint64_t others_ok, others_failed; /* requests of groups other than browsers and blackhole */
    uint64_t failures;
    uint64_t open; /* our connections open at the end of the interval */
    struct status_snap st;
};

/* ---- Report ------------------------------------------------------------ */

struct result {
    const struct scenario *sc;
    const char *target;
    double run_s, drain_s;
    struct gstats g[MAX_GROUPS];
    struct gstats total;
    uint64_t failed_polls;
    bool status_available;
    struct status_snap first, final; /* the first and the last /status */
    bool final_valid, slots_free;
    double free_after_s; /* how long after the clients stopped */
    struct row *rows;
    size_t nrows;
    bool interrupted;
    /* browsers: their page loads, and the bound */
    unsigned browsers, served;
    double all_served_s; /* < 0: not all served */
    double *served_s;    /* per browser, < 0 not served */
    struct wire wire_at_served; /* what had crossed when the last was served */
    struct wire needed_at_served; /* what had to cross by then (the bound's) */
    struct wire wire_total;
    /* blackhole */
    bool bh_present, bh_cut, bh_reset_seen, bh_timeout_counted;
    double bh_request_s, bh_cut_s, bh_silent_until_s;
    uint64_t bh_bytes_before, bh_bytes_after, bh_size;
    double bh_close_ms, bh_close_lo_ms, bh_close_hi_ms; /* pending to free, by the server's clock */
    double bh_cp_seen_s;   /* when close-pending was first seen (tool clock) */
    uint64_t bh_others_ok, bh_others_failed;
    double bh_others_max_ms;
    char bh_remote[48];
    bool bh_signalled;
    /* expectations, filled by report_check */
    bool exp_pass[E_COUNT];
    bool exp_skipped[E_COUNT];
    double exp_got[E_COUNT];
    bool pass;
};

/* The physical bound of the page loads: what crossed the link until the
 * last browser was served, on the wire, over the rate, plus the round trips
 * no byte can avoid. valid false without a link rate or with a browser unserved. */
struct page_bound {
    bool valid;
    double wire[2];   /* bytes that had to cross, [0] up, [1] down */
    double http[2];   /* of which HTTP bytes */
    double moved[2];  /* bytes that did cross (counted as wire) */
    double waste[2];  /* moved - wire: failed attempts, refused retries, extra conns */
    double waste_conns; /* connections made beyond those needed */
    double line_s;    /* the busier direction's bytes / rate */
    double rtt_s;     /* 2 x delay */
    unsigned rtts;    /* round trips added: handshake and request */
    double bound_s, ratio;
};
void page_bound(const struct result *r, struct page_bound *b);

void report_check(struct result *r);
void report_print(FILE *f, const struct result *r);
bool report_json(const char *file, const struct result *r);
bool report_csv(const char *file, const struct result *r);
/* Writes PREFIX.gp, runs gnuplot for PREFIX.png and PREFIX.svg. False
 * only on a real error; a missing gnuplot is reported and skipped. */
bool report_plot(const char *prefix, const char *csv, const struct result *r);

double mb_per_s(uint64_t bytes, uint64_t us);

#endif /* SLOTNET_LOAD_H */
