/*
 * slotnet-load: options, the loop and its phases.
 *
 *   RUN    the clients play for the duration (or until every group has
 *          done its bounded count)
 *   DRAIN  no new requests; the ones in flight may finish (an accepted
 *          upload is still downloaded and compared), up to drain_ms
 *   FINAL  the clients are gone; /status is read until every slot is
 *          free, up to final_grace_ms
 *
 * Every phase has a deadline, so the tool always stops by itself.
 */
#define _GNU_SOURCE /* setns */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <sched.h>
#include <sys/stat.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "clients.h"

#define EXIT_EXPECT 1 /* an expectation failed */
#define EXIT_USAGE 2  /* bad options or scenario */
#define EXIT_ERROR 3  /* could not run at all */

struct options {
    const char *scenario;
    const char *target;
    double duration_s; /* 0: the scenario's */
    const char *csv;
    const char *plot;
    const char *json;
    const char *password;
    bool quiet;
    /* the link, for the bound (override the scenario's "link") */
    double link_rate, link_delay_ms, scale;
    unsigned link_mss, link_overhead, close_timeout_ms;
    bool link_rate_set, link_delay_set;
    /* namespaces: a group's own path, the monitor's */
    const char *netns[MAX_GROUPS * 2]; /* "GROUP=NS" */
    unsigned nnetns;
    const char *status_netns;
    long blackhole_pid;
    const char *write_assets;
};

static volatile sig_atomic_t interrupts;

static void on_signal(int sig)
{
    (void)sig;
    interrupts++;
}

uint64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static void usage(FILE *f)
{
    fprintf(f,
            "Usage: " PROG " --scenario FILE --target ADDR:PORT [options]\n"
            "Plays a scenario's clients (pollers, API clients, uploaders, slowloris,\n"
            "connect storms) against an HTTP server on this machine, then reports and\n"
            "checks the scenario's expectations.\n"
            "\n"
            "  --scenario FILE   the scenario (JSON; see scenarios/)\n"
            "  --target ADDR:PORT  the server: 127.0.0.0/8 or [::1] only (this tool\n"
            "                    floods what it targets, so it stays on loopback)\n"
            "  --duration S      override the scenario's duration (seconds)\n"
            "  --csv FILE        the timeline, one row per 250 ms\n"
            "  --plot PREFIX     PREFIX.png and PREFIX.svg via gnuplot (and PREFIX.gp;\n"
            "                    the CSV goes to PREFIX.csv unless --csv is given)\n"
            "  --json FILE       the report as JSON\n"
            "  --password PW     for rr_connect (overrides the scenario's)\n"
            "  --quiet           no progress line, no report on stdout\n"
            "  --link-rate BPS   the link's rate (bytes/s each way; k, M) and\n"
            "  --link-delay MS   one-way delay, for the page-load bound (override the\n"
            "                    scenario's \"link\")\n"
            "  --link-mss N, --link-overhead N  TCP payload and header bytes per\n"
            "                    segment (1448 and 66: Ethernet, IPv4, TCP timestamps)\n"
            "  --scale F         browser asset and upload sizes times F\n"
            "  --close-timeout-ms MS  the server's close timeout (blackhole check)\n"
            "  --netns GROUP=NS  make GROUP's sockets in network namespace NS (its own\n"
            "                    path to the server); repeatable\n"
            "  --status-netns NS  the /status monitor's sockets in NS (off the link)\n"
            "  --blackhole-pid PID  SIGUSR1 to PID cuts the blackhole client's link\n"
            "                    (slotnet-link --usr1 both on that client's path)\n"
            "  --write-assets DIR  write the scenario's files (browser assets at the\n"
            "                    scale, the blackhole reply) under DIR, and exit\n"
            "  -h, --help        this help\n"
            "\n"
            "Targets other than loopback: private IPv4 addresses, and only from a\n"
            "network namespace other than PID 1's (an isolated test network).\n"
            "A progress line is shown on stderr when it is a terminal. SIGINT ends the\n"
            "run early (a second one skips the drain). Exit status: 0 every expectation\n"
            "met, 1 one failed, 2 bad options or scenario, 3 could not run.\n");
}

/* A number option; with k/M suffixes when `units`. Exits on a bad one. */
static double number_opt(const char *name, const char *arg, double min, double max, bool units)
{
    char *end;
    errno = 0;
    double v = strtod(arg, &end);
    if (units && (*end == 'k' || *end == 'K')) {
        v *= 1e3;
        end++;
    } else if (units && *end == 'M') {
        v *= 1e6;
        end++;
    }
    if (errno || end == arg || *end || !isfinite(v) || v < min || v > max) {
        fprintf(stderr, PROG ": %s: expected a number %g..%g, got '%s'\n", name, min, max, arg);
        exit(EXIT_USAGE);
    }
    return v;
}

static void parse_options(int argc, char **argv, struct options *o)
{
    enum {
        O_SCENARIO = 256, O_TARGET, O_DURATION, O_CSV, O_PLOT, O_JSON, O_PASSWORD, O_QUIET,
        O_LINK_RATE, O_LINK_DELAY, O_LINK_MSS, O_LINK_OVERHEAD, O_SCALE, O_CLOSE_TIMEOUT,
        O_NETNS, O_STATUS_NETNS, O_BH_PID, O_WRITE_ASSETS
    };
    static const struct option longopts[] = {
        {"scenario", required_argument, NULL, O_SCENARIO},
        {"target", required_argument, NULL, O_TARGET},
        {"duration", required_argument, NULL, O_DURATION},
        {"csv", required_argument, NULL, O_CSV},
        {"plot", required_argument, NULL, O_PLOT},
        {"json", required_argument, NULL, O_JSON},
        {"password", required_argument, NULL, O_PASSWORD},
        {"quiet", no_argument, NULL, O_QUIET},
        {"link-rate", required_argument, NULL, O_LINK_RATE},
        {"link-delay", required_argument, NULL, O_LINK_DELAY},
        {"link-mss", required_argument, NULL, O_LINK_MSS},
        {"link-overhead", required_argument, NULL, O_LINK_OVERHEAD},
        {"scale", required_argument, NULL, O_SCALE},
        {"close-timeout-ms", required_argument, NULL, O_CLOSE_TIMEOUT},
        {"netns", required_argument, NULL, O_NETNS},
        {"status-netns", required_argument, NULL, O_STATUS_NETNS},
        {"blackhole-pid", required_argument, NULL, O_BH_PID},
        {"write-assets", required_argument, NULL, O_WRITE_ASSETS},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    memset(o, 0, sizeof *o);
    int c;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (c) {
        case O_SCENARIO:
            o->scenario = optarg;
            break;
        case O_TARGET:
            o->target = optarg;
            break;
        case O_DURATION: {
            char *end;
            errno = 0;
            o->duration_s = strtod(optarg, &end);
            if (errno || *end || !isfinite(o->duration_s) || o->duration_s < 0.1 ||
                o->duration_s > 86400) {
                fprintf(stderr, PROG ": --duration: expected seconds 0.1..86400, got '%s'\n",
                        optarg);
                exit(EXIT_USAGE);
            }
            break;
        }
        case O_CSV:
            o->csv = optarg;
            break;
        case O_PLOT:
            o->plot = optarg;
            break;
        case O_JSON:
            o->json = optarg;
            break;
        case O_PASSWORD:
            o->password = optarg;
            break;
        case O_QUIET:
            o->quiet = true;
            break;
        case O_LINK_RATE:
            o->link_rate = number_opt("--link-rate", optarg, 0, 1e12, true);
            o->link_rate_set = true;
            break;
        case O_LINK_DELAY:
            o->link_delay_ms = number_opt("--link-delay", optarg, 0, 600000, false);
            o->link_delay_set = true;
            break;
        case O_LINK_MSS:
            o->link_mss = (unsigned)number_opt("--link-mss", optarg, 88, 65535, false);
            break;
        case O_LINK_OVERHEAD:
            o->link_overhead = (unsigned)number_opt("--link-overhead", optarg, 1, 1000, false);
            break;
        case O_SCALE:
            o->scale = number_opt("--scale", optarg, 1e-6, 1e6, false);
            break;
        case O_CLOSE_TIMEOUT:
            o->close_timeout_ms = (unsigned)number_opt("--close-timeout-ms", optarg, 1, 86400000,
                                                       false);
            break;
        case O_NETNS:
            if (!strchr(optarg, '=') || o->nnetns == sizeof o->netns / sizeof o->netns[0]) {
                fprintf(stderr, PROG ": --netns: expected GROUP=NS, got '%s'\n", optarg);
                exit(EXIT_USAGE);
            }
            o->netns[o->nnetns++] = optarg;
            break;
        case O_STATUS_NETNS:
            o->status_netns = optarg;
            break;
        case O_BH_PID:
            o->blackhole_pid = (long)number_opt("--blackhole-pid", optarg, 2, 4194304, false);
            break;
        case O_WRITE_ASSETS:
            o->write_assets = optarg;
            break;
        case 'h':
            usage(stdout);
            exit(0);
        default:
            fprintf(stderr, "Try '" PROG " --help'.\n");
            exit(EXIT_USAGE);
        }
    }
    if (optind < argc) {
        fprintf(stderr, PROG ": unexpected argument '%s' (see --help)\n", argv[optind]);
        exit(EXIT_USAGE);
    }
    if (o->write_assets && o->scenario)
        return;
    if (!o->scenario || !o->target) {
        fprintf(stderr, PROG ": --scenario and --target are required (see --help)\n");
        exit(EXIT_USAGE);
    }
}

static bool private_v4(uint32_t ip)
{
    return (ip >> 24) == 10 || (ip >> 20) == 0xac1 || (ip >> 16) == 0xc0a8;
}

/* In a network namespace other than init's, or in one `ip netns` made (a
 * test network that reaches nothing else unless someone routed it so). A
 * container may hide PID 1's; the names under /var/run/netns then tell. */
static bool isolated_netns(void)
{
    struct stat self, other;
    if (stat("/proc/self/ns/net", &self) != 0)
        return false;
    if (stat("/proc/1/ns/net", &other) == 0)
        return self.st_ino != other.st_ino || self.st_dev != other.st_dev;
    DIR *d = opendir("/var/run/netns");
    bool named = false;
    for (struct dirent *e; d && !named && (e = readdir(d));) {
        char path[512];
        snprintf(path, sizeof path, "/var/run/netns/%s", e->d_name);
        named = e->d_name[0] != '.' && stat(path, &other) == 0 &&
                self.st_ino == other.st_ino && self.st_dev == other.st_dev;
    }
    if (d)
        closedir(d);
    return named;
}

/* ADDR:PORT or [ADDR]:PORT: loopback, or private in an isolated namespace. */
static bool parse_target(const char *s, struct net *n)
{
    char host[64];
    const char *colon;
    if (s[0] == '[') {
        const char *close = strchr(s, ']');
        if (!close || close[1] != ':' || (size_t)(close - s - 1) >= sizeof host)
            return false;
        memcpy(host, s + 1, (size_t)(close - s - 1));
        host[close - s - 1] = '\0';
        colon = close + 1;
    } else {
        colon = strrchr(s, ':');
        if (!colon || (size_t)(colon - s) >= sizeof host)
            return false;
        memcpy(host, s, (size_t)(colon - s));
        host[colon - s] = '\0';
    }
    char *end;
    errno = 0;
    unsigned long port = strtoul(colon + 1, &end, 10);
    if (errno || *end || colon[1] < '0' || colon[1] > '9' || port == 0 || port > 65535)
        return false;

    memset(&n->addr, 0, sizeof n->addr);
    struct sockaddr_in *a4 = (struct sockaddr_in *)&n->addr;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&n->addr;
    if (inet_pton(AF_INET, host, &a4->sin_addr) == 1) {
        uint32_t ip = ntohl(a4->sin_addr.s_addr);
        if ((ip >> 24) != 127 && !(private_v4(ip) && isolated_netns())) {
            fprintf(stderr, PROG ": refusing %s: only 127.0.0.0/8 and ::1 are allowed, or a "
                            "private address from a network namespace of its own (the tool "
                            "floods its target)\n", host);
            exit(EXIT_USAGE);
        }
        a4->sin_family = AF_INET;
        a4->sin_port = htons((uint16_t)port);
        n->addrlen = sizeof *a4;
    } else if (inet_pton(AF_INET6, host, &a6->sin6_addr) == 1) {
        if (!IN6_IS_ADDR_LOOPBACK(&a6->sin6_addr)) {
            fprintf(stderr, PROG ": refusing %s: only 127.0.0.0/8 and ::1 are allowed "
                            "(the tool floods its target)\n", host);
            exit(EXIT_USAGE);
        }
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons((uint16_t)port);
        n->addrlen = sizeof *a6;
    } else {
        return false;
    }
    snprintf(n->host, sizeof n->host, "%s", s);
    return true;
}

/* Descriptors: one per client plus a few; raise the soft limit if needed. */
static bool enough_fds(unsigned need)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return true;
    if (rl.rlim_cur >= need)
        return true;
    if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < need) {
        fprintf(stderr, PROG ": %u descriptors needed, the limit is %llu\n", need,
                (unsigned long long)rl.rlim_max);
        return false;
    }
    rl.rlim_cur = need;
    return setrlimit(RLIMIT_NOFILE, &rl) == 0;
}

/* mkdir -p for the folders of a file path. */
static bool make_dirs(char *path)
{
    for (char *p = path + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        bool ok = mkdir(path, 0755) == 0 || errno == EEXIST;
        *p = '/';
        if (!ok)
            return false;
    }
    return true;
}

static bool write_file(const char *dir, const char *path, uint64_t size, uint64_t seed)
{
    char name[4096];
    if ((size_t)snprintf(name, sizeof name, "%s%s", dir, path) >= sizeof name || !make_dirs(name)) {
        fprintf(stderr, PROG ": %s%s: %s\n", dir, path, strerror(errno ? errno : ENAMETOOLONG));
        return false;
    }
    FILE *f = fopen(name, "wb");
    if (!f) {
        fprintf(stderr, PROG ": %s: %s\n", name, strerror(errno));
        return false;
    }
    /* Incompressible and deterministic: xorshift64* (body.c; the browsers
     * check each body's CRC against the same stream). */
    struct asset_gen gen;
    asset_gen_init(&gen, seed);
    static uint8_t buf[65536];
    bool ok = true;
    for (uint64_t left = size; left > 0 && ok;) {
        size_t n = left < sizeof buf ? (size_t)left : sizeof buf;
        asset_gen_fill(&gen, buf, n);
        ok = fwrite(buf, 1, n, f) == n;
        left -= n;
    }
    if (fclose(f) != 0 || !ok) {
        fprintf(stderr, PROG ": %s: write error\n", name);
        return false;
    }
    return true;
}

/* --write-assets DIR: the files a scenario fetches, at its scale. */
static int write_assets(const struct scenario *sc, const char *dir)
{
    unsigned n = 0;
    uint64_t bytes = 0;
    for (unsigned g = 0; g < sc->ngroups; g++) {
        const struct group_cfg *gc = &sc->groups[g];
        for (unsigned k = 0; gc->type == G_BROWSER && k < gc->nassets; k++) {
            uint64_t size = scaled_size(sc, gc->assets[k].size);
            if (!write_file(dir, gc->assets[k].path, size, asset_seed(g, k)))
                return EXIT_ERROR;
            n++;
            bytes += size;
        }
        if (gc->type == G_BLACKHOLE) {
            if (!write_file(dir, gc->paths[0], gc->size, asset_seed(g, 999u)))
                return EXIT_ERROR;
            n++;
            bytes += gc->size;
        }
    }
    printf(PROG ": %u files, %llu bytes, under %s\n", n, (unsigned long long)bytes, dir);
    return 0;
}

/* /var/run/netns/NAME (or a path): an fd for setns, or exit. */
static int open_netns(const char *name)
{
    char path[4096];
    snprintf(path, sizeof path, "%s%s", strchr(name, '/') ? "" : "/var/run/netns/", name);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        fprintf(stderr, PROG ": network namespace %s: %s\n", path, strerror(errno));
        exit(EXIT_USAGE);
    }
    return fd;
}

struct timeline {
    struct row *rows;
    size_t n, cap;
    uint64_t last;
};

static void add_row(struct timeline *tl, struct load *L, uint64_t now)
{
    double dt = (double)(now - tl->last) / 1e6;
    tl->last = now;
    if (dt <= 0)
        return;
    if (tl->n == tl->cap) {
        size_t cap = tl->cap ? tl->cap * 2 : 1024;
        struct row *bigger = realloc(tl->rows, cap * sizeof *bigger);
        if (!bigger)
            return; /* the timeline stops growing; the run goes on */
        tl->rows = bigger;
        tl->cap = cap;
    }
    struct row *w = &tl->rows[tl->n++];
    w->t = (double)(now - L->t0) / 1e6;
    w->req_s = (double)L->net.iv_ok / dt;
    w->conn_s = (double)L->net.iv_connects / dt;
    w->up_mb_s = (double)L->net.iv_up_bytes / dt / 1e6;
    w->failures = L->net.iv_failed;
    w->lat_max_ms = (double)L->net.iv_lat_max / 1000.0;
    w->down_kb_s = (double)L->net.iv_rx_bytes / dt / 1e3;
    w->served = L->served;
    L->net.iv_rx_bytes = 0;
    w->open = L->net.open;
    memset(&w->st, 0, sizeof w->st);
    /* A snapshot older than a second says little about this moment. */
    if (L->mon.available && L->mon.snap.valid && now - L->mon.snap_at < 1000000u)
        w->st = L->mon.snap;
    L->net.iv_ok = L->net.iv_connects = L->net.iv_up_bytes = L->net.iv_failed = 0;
    L->net.iv_lat_max = 0;
}

/* One line, rewritten in place; rates over the last second. */
static void progress(const struct timeline *tl, const struct load *L, uint64_t now)
{
    double req = 0, conn = 0, up = 0;
    uint64_t fail = 0;
    size_t k = tl->n < 4 ? tl->n : 4;
    for (size_t i = tl->n - k; i < tl->n; i++) {
        req += tl->rows[i].req_s;
        conn += tl->rows[i].conn_s;
        up += tl->rows[i].up_mb_s;
    }
    if (k) {
        req /= (double)k;
        conn /= (double)k;
        up /= (double)k;
    }
    for (unsigned g = 0; g < L->sc->ngroups; g++)
        fail += L->gs[g].failed;
    static const char *const phase[] = {"", " drain", " final", ""};
    fprintf(stderr, "\r%6.1fs%s  req/s %7.0f  conn/s %7.0f  failed %llu  up %6.1f MB/s  slots ",
            (double)(now - L->t0) / 1e6, phase[L->phase], req, conn, (unsigned long long)fail,
            up);
    const struct status_snap *s = &L->mon.snap;
    if (L->mon.available && s->valid) {
        unsigned other = s->by_state[SS_CONNECTING] + s->by_state[SS_ALLOCATED] +
                         s->by_state[SS_ABORTED] + s->by_state[SS_OTHER];
        fprintf(stderr, "free %u conn %u oec %u cp %u", s->by_state[SS_FREE],
                s->by_state[SS_CONNECTED], s->by_state[SS_OTHER_END_CLOSED],
                s->by_state[SS_CLOSE_PENDING]);
        if (other)
            fprintf(stderr, " other %u", other);
    } else {
        fprintf(stderr, "-");
    }
    fprintf(stderr, "\033[K");
}

static void sum_stats(struct result *r, const struct load *L)
{
    memset(&r->total, 0, sizeof r->total);
    for (unsigned i = 0; i < L->sc->ngroups; i++) {
        const struct gstats *g = &L->gs[i];
        struct gstats *t = &r->total;
        r->g[i] = *g;
        t->ok += g->ok;
        t->failed += g->failed;
        for (int k = 0; k < F_COUNT; k++)
            t->fail[k] += g->fail[k];
        t->ok_run += g->ok_run;
        t->failed_run += g->failed_run;
        hist_merge(&t->lat, &g->lat);
        t->connects += g->connects;
        t->connects_run += g->connects_run;
        t->connect_errors += g->connect_errors;
        t->stale_retries += g->stale_retries;
        t->cut += g->cut;
        t->logins += g->logins;
        t->logins_failed += g->logins_failed;
        t->up_ok += g->up_ok;
        t->up_failed += g->up_failed;
        t->up_verified += g->up_verified;
        t->up_bad += g->up_bad;
        t->up_cut += g->up_cut;
        t->up_bytes += g->up_bytes;
        t->up_us += g->up_us;
        t->down_bytes += g->down_bytes;
        t->down_us += g->down_us;
        t->sl_dropped += g->sl_dropped;
        t->sl_peak += g->sl_peak;
        t->skipped += g->skipped;
        t->served += g->served;
        t->retries += g->retries;
        t->gave_up += g->gave_up;
        t->content_bad += g->content_bad;
        if (L->sc->groups[i].type == G_POLLER)
            r->failed_polls += g->failed;
    }
}

/* Browsers and the blackhole client, into the result. */
static void fill_pages(struct result *r, struct load *L)
{
    r->browsers = L->nbrowsers;
    r->served = L->served;
    r->all_served_s = L->all_served_at ? (double)(L->all_served_at - L->t0) / 1e6 : -1;
    r->served_s = L->nbrowsers ? calloc(L->nbrowsers, sizeof *r->served_s) : NULL;
    for (unsigned i = 0; r->served_s && i < L->nbrowsers; i++)
        r->served_s[i] = L->browsers[i].t_served ? (double)(L->browsers[i].t_served - L->t0) / 1e6
                                                 : -1;
    r->wire_at_served = L->wire_at_served;
    r->needed_at_served = L->needed_at_served;
    load_wire_now(L, &r->wire_total);

    const struct blackhole *b = &L->bh;
    r->bh_present = b->a != NULL;
    if (!r->bh_present)
        return;
    r->bh_cut = b->cut;
    r->bh_signalled = b->signalled;
    snprintf(r->bh_remote, sizeof r->bh_remote, "%s", b->remote);
    r->bh_request_s = b->requested ? (double)(b->t_request - L->t0) / 1e6 : -1;
    r->bh_cut_s = b->cut ? (double)(b->t_cut - L->t0) / 1e6 : -1;
    r->bh_silent_until_s = b->cut ? (double)(b->t_until - L->t0) / 1e6 : -1;
    r->bh_bytes_before = b->before;
    r->bh_bytes_after = b->after;
    r->bh_size = b->a->g->size;
    r->bh_reset_seen = b->seen_cp && b->gone;
    r->bh_cp_seen_s = b->seen_cp ? (double)(b->cp_seen_at - L->t0) / 1e6 : -1;
    if (r->bh_reset_seen) {
        /* The close began after the last snapshot that showed the slot open
         * (or one period before the first close-pending one) and ended
         * after the last close-pending one: the estimate is the middle. */
        double period = (double)L->sc->status_interval_ms;
        double open_u = b->seen_open ? (double)b->last_open_u : (double)b->first_cp_u - period;
        double start = (open_u + (double)b->first_cp_u) / 2;
        double end = ((double)b->last_cp_u + (double)b->gone_u) / 2;
        r->bh_close_ms = end - start;
        r->bh_close_lo_ms = (double)b->last_cp_u - (double)b->first_cp_u;
        r->bh_close_hi_ms = (double)b->gone_u - open_u;
        r->bh_timeout_counted = b->have_timeouts_before && b->timeouts_after > b->timeouts_before;
    }
    r->bh_others_ok = b->others_ok;
    r->bh_others_failed = b->others_failed;
    r->bh_others_max_ms = (double)b->others_max_us / 1000.0;
}

int main(int argc, char **argv)
{
    struct options o;
    static struct scenario sc; /* static: large */
    static struct load L;
    static struct result res;

    parse_options(argc, argv, &o);
    if (o.write_assets) {
        if (!scenario_load(o.scenario, &sc))
            return EXIT_USAGE;
        if (o.scale > 0)
            sc.scale = o.scale;
        return write_assets(&sc, o.write_assets);
    }
    if (!parse_target(o.target, &L.net)) {
        fprintf(stderr, PROG ": --target: expected ADDR:PORT or [ADDR]:PORT, got '%s'\n",
                o.target);
        return EXIT_USAGE;
    }
    if (!scenario_load(o.scenario, &sc))
        return EXIT_USAGE;
    if (o.duration_s > 0)
        sc.duration_s = o.duration_s;
    if (o.password)
        snprintf(sc.password, sizeof sc.password, "%s", o.password);
    if (o.link_rate_set)
        sc.link.rate = o.link_rate;
    if (o.link_delay_set)
        sc.link.delay_ms = o.link_delay_ms;
    if (o.link_mss)
        sc.link.mss = o.link_mss;
    if (o.link_overhead)
        sc.link.overhead = o.link_overhead;
    if (o.scale > 0)
        sc.scale = o.scale;
    if (o.close_timeout_ms)
        sc.close_timeout_ms = o.close_timeout_ms;
    L.net.mss = sc.link.mss;
    L.net.home_ns = -1;
    L.status_ns = -1;
    L.bh_pid = (pid_t)o.blackhole_pid;
    for (unsigned g = 0; g < MAX_GROUPS; g++)
        L.group_ns[g] = -1;
    if (o.nnetns || o.status_netns) {
        L.net.home_ns = open_netns("/proc/self/ns/net");
        if (o.status_netns) {
            L.status_ns = open_netns(o.status_netns);
            snprintf(sc.status_netns, sizeof sc.status_netns, "%s", o.status_netns);
        }
    }
    for (unsigned i = 0; i < o.nnetns; i++) {
        const char *eq = strchr(o.netns[i], '=');
        bool found = false;
        for (unsigned g = 0; g < sc.ngroups; g++)
            if (strlen(sc.groups[g].name) == (size_t)(eq - o.netns[i]) &&
                strncmp(sc.groups[g].name, o.netns[i], (size_t)(eq - o.netns[i])) == 0) {
                L.group_ns[g] = open_netns(eq + 1);
                snprintf(sc.groups[g].netns, sizeof sc.groups[g].netns, "%s", eq + 1);
                found = true;
            }
        if (!found) {
            fprintf(stderr, PROG ": --netns %s: the scenario has no group of that name\n",
                    o.netns[i]);
            return EXIT_USAGE;
        }
    }

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sigemptyset(&sa.sa_mask);
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sa.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &sa, NULL);

    if (!load_init(&L, &sc) || !enough_fds(L.nactors + 64))
        return EXIT_ERROR;
    L.net.ep = epoll_create1(EPOLL_CLOEXEC);
    if (L.net.ep < 0) {
        fprintf(stderr, PROG ": epoll: %s\n", strerror(errno));
        return EXIT_ERROR;
    }
    bool live = !o.quiet && isatty(STDERR_FILENO);
    if (!o.quiet)
        fprintf(stderr, PROG ": %s against %s for %.1f s (%u clients)\n", sc.name, o.target,
                sc.duration_s, L.nactors - 1);

    struct timeline tl = {0};
    uint64_t now = now_us();
    load_start(&L, now);
    tl.last = now;
    uint64_t next_tick = now + TICK_US;
    uint64_t run_end = now + (uint64_t)(sc.duration_s * 1e6);
    uint64_t drain_end = 0, final_start = 0, final_end = 0, stopped_at = 0;
    unsigned clients = L.nactors - 1;
    int seen_interrupts = 0;
    struct epoll_event evs[256];

    L.phase = PH_RUN;
    while (L.phase != PH_END) {
        now = now_us();
        if (interrupts != seen_interrupts) {
            seen_interrupts = interrupts;
            res.interrupted = true;
        }
        if (L.phase == PH_RUN && (now >= run_end || L.done == clients || seen_interrupts)) {
            stopped_at = now;
            for (unsigned g = 0; g < sc.ngroups; g++) {
                L.gs[g].ok_run = L.gs[g].ok;
                L.gs[g].failed_run = L.gs[g].failed;
                L.gs[g].connects_run = L.gs[g].connects;
            }
            L.phase = PH_DRAIN;
            drain_end = now + (uint64_t)sc.drain_ms * 1000u;
            load_stop(&L, now);
        }
        if (L.phase == PH_DRAIN && (L.done == clients || now >= drain_end || seen_interrupts > 1)) {
            load_cut(&L, now);
            L.phase = PH_FINAL;
            final_start = now;
            final_end = now + (uint64_t)sc.final_grace_ms * 1000u;
            monitor_final(&L, now);
        }
        if (L.phase == PH_FINAL) {
            bool fresh = L.mon.available && L.mon.snap_at >= final_start;
            if (!L.mon.enabled || now >= final_end || seen_interrupts > 1 ||
                (fresh && monitor_all_free(&L))) {
                L.phase = PH_END;
                break;
            }
        }

        uint64_t next = load_timers(&L, now);
        now = now_us();
        if (now >= next_tick) {
            add_row(&tl, &L, now);
            if (live)
                progress(&tl, &L, now);
            next_tick += TICK_US;
            if (next_tick <= now)
                next_tick = now + TICK_US;
        }
        uint64_t wake = next_tick;
        if (next < wake)
            wake = next;
        if (L.phase == PH_RUN && run_end < wake)
            wake = run_end;
        if (L.phase == PH_DRAIN && drain_end < wake)
            wake = drain_end;
        if (L.phase == PH_FINAL && final_end < wake)
            wake = final_end;
        int timeout = wake > now ? (int)((wake - now + 999) / 1000) : 0;
        int n = epoll_wait(L.net.ep, evs, (int)(sizeof evs / sizeof evs[0]), timeout);
        if (n < 0 && errno != EINTR) {
            fprintf(stderr, PROG ": epoll_wait: %s\n", strerror(errno));
            return EXIT_ERROR;
        }
        now = now_us();
        for (int i = 0; i < n; i++)
            load_event(&L, evs[i].data.u64, evs[i].events, now);
    }
    now = now_us();
    add_row(&tl, &L, now);
    if (live)
        fprintf(stderr, "\r\033[K");

    res.sc = &sc;
    res.target = o.target;
    res.run_s = (double)(stopped_at - L.t0) / 1e6;
    res.drain_s = (double)(final_start - stopped_at) / 1e6;
    res.status_available = L.mon.available;
    res.first = L.mon.first;
    res.final = L.mon.snap;
    res.final_valid = L.mon.available && L.mon.snap.valid && L.mon.snap_at >= final_start;
    res.slots_free = res.final_valid && monitor_all_free(&L);
    res.free_after_s = res.final_valid ? (double)(L.mon.snap_at - final_start) / 1e6 : 0;
    res.rows = tl.rows;
    res.nrows = tl.n;
    sum_stats(&res, &L);
    fill_pages(&res, &L);
    monitor_stop(&L);
    load_free(&L);
    close(L.net.ep);

    report_check(&res);
    if (!o.quiet)
        report_print(stdout, &res);
    int rc = res.pass ? 0 : EXIT_EXPECT;
    if (o.json && !report_json(o.json, &res))
        rc = EXIT_ERROR;
    char csv_name[4096];
    const char *csv = o.csv;
    if (!csv && o.plot) {
        snprintf(csv_name, sizeof csv_name, "%s.csv", o.plot);
        csv = csv_name;
    }
    if (csv && !report_csv(csv, &res))
        rc = EXIT_ERROR;
    if (o.plot && csv && !report_plot(o.plot, csv, &res))
        rc = rc ? rc : EXIT_ERROR;
    free(tl.rows);
    free(res.served_s);
    return rc;
}
