/*
 * slotnet-link: forwards Ethernet frames between two endpoints and plays a
 * slow, lossy or broken link between them (see link.h, README.md).
 *
 * One thread: epoll over the two endpoints, a signalfd and a timerfd armed
 * at the next release time (absolute CLOCK_MONOTONIC, so a late wakeup
 * never accumulates into the rate). Frames live in a pool allocated at
 * start; the forwarding path never allocates.
 */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include "endpoint.h"
#include "link.h"

#define NS_PER_MS 1000000LL
#define RX_BATCH 64 /* frames read from one endpoint before releasing again */
#define MAX_TXOFF 4

enum { A2B = 0, B2A = 1 };
static const char *const dir_name[2] = { "a2b", "b2a" };

struct profile {
    const char *name, *what;
    struct sl_params p;
};

/* "2g 50 KB/s, 500 ms" is read as 500 ms one way (RTT 1 s): a GPRS/EDGE
 * round trip is 0.5-1 s and more under load; --delay 250 gives 500 ms RTT. */
static const struct profile profiles[] = {
    { "none", "no shaping, no delay (a plain bridge)", { 0, 0, 0, 0, 0.0 } },
    { "2g", "50 KB/s each way, 500 ms one way (RTT 1 s), queue 64 KB", { 50000, 64000, 500, 0, 0.0 } },
    { "wifi-weak", "250 KB/s, 40 ms +-10 ms one way, 1% loss, queue 64 KB",
      { 250000, 64000, 40, 10, 0.01 } },
    { "lossy", "1 MB/s, 20 ms one way, 5% loss, queue 128 KB", { 1000000, 128000, 20, 0, 0.05 } },
};

struct blackhole_spec {
    int dir; /* A2B, B2A or 2 = both */
    int64_t start_ms, end_ms;
};

static struct {
    struct sl_endpoint ep[2];
    struct sl_dir dir[2];
    struct sl_pool pool;
    uint64_t seed;
    int64_t t0;
    bool bh_reported[2];
    int usr1_dir;
    unsigned char scratch[SL_FRAME_CAP]; /* a frame with no buffer free is read here, dropped */
    char out[4096];
} g;

static int64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static double ms_of(int64_t ns) { return (double)ns / 1e6; }

static void emit(const char *s)
{
    size_t len = strlen(s), off = 0;
    while (off < len) {
        ssize_t n = write(STDOUT_FILENO, s + off, len - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return; /* nobody reads: the link runs on */
        off += (size_t)n;
    }
}

static size_t params_json(char *o, size_t cap, const struct sl_params *p)
{
    int n = snprintf(o, cap,
                     "{\"rate\":%" PRIu64 ",\"queue\":%" PRIu32 ",\"delay_ms\":%" PRIu32
                     ",\"jitter_ms\":%" PRIu32 ",\"loss\":%.4f}",
                     p->rate, p->queue_bytes, p->delay_ms, p->jitter_ms, p->loss);
    return n < 0 ? 0 : (size_t)n;
}

static size_t stats_json(char *o, size_t cap, const struct sl_dir *d)
{
    const struct sl_stats *s = &d->st;
    int n = snprintf(o, cap,
                     "{\"frames_in\":%" PRIu64 ",\"bytes_in\":%" PRIu64 ",\"frames\":%" PRIu64
                     ",\"bytes\":%" PRIu64 ",\"queue_drops\":%" PRIu64 ",\"lost\":%" PRIu64
                     ",\"blackholed\":%" PRIu64 ",\"pool_drops\":%" PRIu64 ",\"oversize\":%" PRIu64
                     ",\"csum_partial\":%" PRIu64 ",\"write_errors\":%" PRIu64
                     ",\"queued\":%" PRIu32 ",\"max_queue_bytes\":%" PRIu32
                     ",\"max_wait_ms\":%.3f,\"max_transit_ms\":%.3f}",
                     s->frames_in, s->bytes_in, s->frames_out, s->bytes_out, s->queue_drops,
                     s->lost, s->blackholed, s->pool_drops, s->oversize, s->csum_partial,
                     s->write_errors, d->queued, s->max_queue_bytes, ms_of(s->max_wait_ns),
                     ms_of(s->max_transit_ns));
    return n < 0 ? 0 : (size_t)n;
}

static void print_stats(int64_t now, const char *why)
{
    char *o = g.out;
    size_t cap = sizeof g.out, n;
    n = (size_t)snprintf(o, cap, "{\"event\":\"stats\",\"why\":\"%s\",\"t_ms\":%.3f,"
                         "\"pool\":%" PRIu32 ",\"pool_max_in_use\":%" PRIu32 ",\"a2b\":",
                         why, ms_of(now - g.t0), g.pool.size, g.pool.max_in_use);
    n += stats_json(o + n, cap - n, &g.dir[A2B]);
    n += (size_t)snprintf(o + n, cap - n, ",\"b2a\":");
    n += stats_json(o + n, cap - n, &g.dir[B2A]);
    snprintf(o + n, cap - n, "}\n");
    emit(o);
}

static void report_blackholes(int64_t now)
{
    for (int i = 0; i < 2; i++) {
        bool on = sl_dir_blackholed(&g.dir[i], now);
        if (on == g.bh_reported[i])
            continue;
        g.bh_reported[i] = on;
        snprintf(g.out, sizeof g.out,
                 "{\"event\":\"blackhole\",\"dir\":\"%s\",\"on\":%s,\"t_ms\":%.3f}\n",
                 dir_name[i], on ? "true" : "false", ms_of(now - g.t0));
        emit(g.out);
    }
}

static void set_out_interest(int ep, int idx, bool want_out)
{
    struct epoll_event ev = { .events = EPOLLIN | (want_out ? EPOLLOUT : 0u),
                              .data.u32 = (uint32_t)idx };
    epoll_ctl(ep, EPOLL_CTL_MOD, g.ep[idx].fd, &ev);
}

/* Writes every frame of direction i whose time has come. */
static void release_due(int epfd, int i, int64_t now)
{
    struct sl_dir *d = &g.dir[i];
    struct sl_endpoint *to = &g.ep[1 - i];
    struct sl_frame *f;
    while (!to->blocked && (f = sl_dir_due(d, now)) != NULL) {
        if (sl_dir_blackholed(d, now)) {
            /* a cut link loses what is on the wire too */
            d->st.blackholed++;
        } else {
            int rc = sl_ep_send(to, f->data, f->len);
            if (rc == -EAGAIN) {
                to->blocked = true;
                set_out_interest(epfd, 1 - i, true);
                return;
            }
            if (rc < 0) {
                d->st.write_errors++;
            } else {
                d->st.frames_out++;
                d->st.bytes_out += f->len;
                if (now - f->arrive_ns > d->st.max_transit_ns)
                    d->st.max_transit_ns = now - f->arrive_ns;
            }
        }
        sl_pool_put(&g.pool, sl_dir_pop(d));
    }
}

/* Reads up to RX_BATCH frames from endpoint i into direction i. */
static int receive(int i)
{
    struct sl_dir *d = &g.dir[i];
    for (int k = 0; k < RX_BATCH; k++) {
        /* Each direction holds half the pool at most: one direction's
         * backlog must not starve the other (its ACKs) of buffers. */
        struct sl_frame *f = d->queued < g.pool.size / 2 ? sl_pool_get(&g.pool) : NULL;
        unsigned char *buf = f ? f->data : g.scratch;
        unsigned flags;
        bool skipped;
        ssize_t n = sl_ep_recv(&g.ep[i], buf, SL_FRAME_CAP, &flags, &skipped);
        if (n <= 0) {
            if (f)
                sl_pool_put(&g.pool, f);
            if (n < 0) {
                fprintf(stderr, "slotnet-link: read %s: %s\n", g.ep[i].ifname, strerror(errno));
                return -1;
            }
            if (skipped)
                continue;
            return 0;
        }
        if ((flags & SL_RX_CSUM_PARTIAL) && d->st.csum_partial++ == 0)
            fprintf(stderr,
                    "slotnet-link: %s: frames with checksums left to offload; the far end "
                    "drops them: turn tx checksumming off on the sending interface "
                    "(--txcsum-off IF@NS)\n",
                    g.ep[i].ifname);
        if (!f || (flags & SL_RX_OVERSIZE)) {
            d->st.frames_in++;
            d->st.bytes_in += (uint64_t)n;
            if (f) {
                d->st.oversize++;
                sl_pool_put(&g.pool, f);
            } else {
                d->st.pool_drops++;
            }
            continue;
        }
        f->len = (uint32_t)n;
        if (sl_dir_admit(d, f, mono_ns()) != SL_QUEUED)
            sl_pool_put(&g.pool, f);
    }
    return 0;
}

static void arm(int tfd, int64_t at)
{
    struct itimerspec its;
    memset(&its, 0, sizeof its);
    if (at >= 0) {
        if (at < 1)
            at = 1; /* 0 would disarm */
        its.it_value.tv_sec = at / 1000000000LL;
        its.it_value.tv_nsec = at % 1000000000LL;
    }
    timerfd_settime(tfd, TFD_TIMER_ABSTIME, &its, NULL);
}

static int64_t earliest(int64_t a, int64_t b) { return a < 0 ? b : (b < 0 || a < b ? a : b); }

static void usage(FILE *o)
{
    fprintf(o,
            "usage: slotnet-link --a KIND:IF[@NETNS] --b KIND:IF[@NETNS] [options]\n"
            "  KIND tap: attach to or create a TAP and own it; pkt: AF_PACKET on an interface\n"
            "  (a TAP another process holds, e.g. the lwIP stack's, or a veth end)\n"
            "  --profile NAME        none (default), 2g, wifi-weak, lossy; options below override\n"
            "  --rate [DIR:]BPS      line rate in bytes/s (k = 1000, M = 1000000); 0 = unlimited\n"
            "  --queue [DIR:]BYTES   bytes waiting for the line at most, tail drop; 0 = no limit\n"
            "  --delay [DIR:]MS      one-way delay\n"
            "  --jitter [DIR:]MS     uniform +-MS on the delay (never reorders)\n"
            "  --loss [DIR:]PCT      random loss in percent (0..100)\n"
            "      DIR is a2b, b2a or both (default both); a2b = from A's side to B's\n"
            "  --blackhole DIR@MS[-MS]  drop DIR from MS after start (until MS); repeatable\n"
            "  --usr1 DIR            SIGUSR1 toggles a blackhole on DIR (default both)\n"
            "  --seed N              seed of loss and jitter (default: time; printed)\n"
            "  --pool N              frame buffers (default 4096; each direction holds half at most)\n"
            "  --txcsum-off IF[@NETNS]  turn tx checksumming off there (ethtool -K IF tx off)\n"
            "  --stats-ms MS         print statistics every MS too (0 = only on SIGUSR2 and exit)\n"
            "  --duration MS         stop after MS\n"
            "Prints JSON lines: ready, blackhole changes, stats (SIGUSR2, --stats-ms, exit).\n"
            "Profiles:\n");
    for (size_t i = 0; i < sizeof profiles / sizeof profiles[0]; i++)
        fprintf(o, "  %-10s %s\n", profiles[i].name, profiles[i].what);
}

static int parse_u64(const char *s, uint64_t max, bool suffixes, uint64_t *out)
{
    char *end;
    errno = 0;
    if (!*s || *s == '-')
        return -1;
    unsigned long long v = strtoull(s, &end, 10);
    uint64_t mul = 1;
    if (suffixes && (*end == 'k' || *end == 'K'))
        mul = 1000, end++;
    else if (suffixes && *end == 'M')
        mul = 1000000, end++;
    if (errno || *end || v > max / mul)
        return -1;
    *out = v * mul;
    return 0;
}

static int parse_dir(const char *s, int *dir)
{
    if (!strcmp(s, "a2b"))
        *dir = A2B;
    else if (!strcmp(s, "b2a"))
        *dir = B2A;
    else if (!strcmp(s, "both"))
        *dir = 2;
    else
        return -1;
    return 0;
}

/* "[DIR:]VALUE" for the per-direction options. */
static const char *split_dir(const char *v, int *dir)
{
    *dir = 2;
    const char *c = strchr(v, ':');
    if (!c)
        return v;
    char d[8];
    size_t n = (size_t)(c - v);
    if (n >= sizeof d)
        return NULL;
    memcpy(d, v, n);
    d[n] = '\0';
    return parse_dir(d, dir) < 0 ? NULL : c + 1;
}

static int parse_blackhole(const char *v, struct blackhole_spec *b)
{
    const char *at = strchr(v, '@');
    if (!at)
        return -1;
    char d[8];
    size_t n = (size_t)(at - v);
    if (n >= sizeof d)
        return -1;
    memcpy(d, v, n);
    d[n] = '\0';
    if (parse_dir(d, &b->dir) < 0)
        return -1;
    char num[32];
    snprintf(num, sizeof num, "%s", at + 1);
    char *dash = strchr(num, '-');
    uint64_t s, e = 0;
    if (dash)
        *dash = '\0';
    if (parse_u64(num, INT32_MAX, false, &s) < 0)
        return -1;
    if (dash && (parse_u64(dash + 1, INT32_MAX, false, &e) < 0 || e <= s))
        return -1;
    b->start_ms = (int64_t)s;
    b->end_ms = dash ? (int64_t)e : -1;
    return 0;
}

int main(int argc, char **argv)
{
    const char *spec[2] = { NULL, NULL }, *txoff[MAX_TXOFF];
    unsigned ntxoff = 0, nbh = 0;
    struct blackhole_spec bh[2 * SL_MAX_WINDOWS];
    struct sl_params par[2] = { profiles[0].p, profiles[0].p };
    bool seeded = false;
    uint64_t pool_frames = 4096, stats_ms = 0, duration_ms = 0;
    g.usr1_dir = 2;

    /* The profile first, so that options override it whatever their order. */
    for (int i = 1; i + 1 < argc; i++) {
        if (strcmp(argv[i], "--profile") != 0)
            continue;
        size_t k;
        for (k = 0; k < sizeof profiles / sizeof profiles[0]; k++)
            if (!strcmp(argv[i + 1], profiles[k].name))
                break;
        if (k == sizeof profiles / sizeof profiles[0]) {
            fprintf(stderr, "slotnet-link: unknown profile %s\n", argv[i + 1]);
            return 2;
        }
        par[0] = par[1] = profiles[k].p;
    }

    for (int i = 1; i < argc; i++) {
        const char *o = argv[i];
        if (!strcmp(o, "-h") || !strcmp(o, "--help")) {
            usage(stdout);
            return 0;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "slotnet-link: %s: missing value (or unknown option)\n", o);
            return 2;
        }
        const char *v = argv[++i];
        int dir = 2;
        const char *val = NULL;
        uint64_t x = 0;
        bool bad = false;
        if (!strcmp(o, "--a") || !strcmp(o, "--b")) {
            spec[o[2] == 'b'] = v;
        } else if (!strcmp(o, "--profile")) {
            /* done above */
        } else if (!strcmp(o, "--rate") || !strcmp(o, "--queue") || !strcmp(o, "--delay") ||
                   !strcmp(o, "--jitter")) {
            bool sizes = !strcmp(o, "--rate") || !strcmp(o, "--queue");
            val = split_dir(v, &dir);
            bad = !val || parse_u64(val, sizes ? (uint64_t)UINT32_MAX * 16 : 3600000, sizes, &x) < 0;
            if (!strcmp(o, "--queue") && x > UINT32_MAX)
                bad = true;
            for (int d = 0; d < 2 && !bad; d++) {
                if (dir != 2 && dir != d)
                    continue;
                if (!strcmp(o, "--rate"))
                    par[d].rate = x;
                else if (!strcmp(o, "--queue"))
                    par[d].queue_bytes = (uint32_t)x;
                else if (!strcmp(o, "--delay"))
                    par[d].delay_ms = (uint32_t)x;
                else
                    par[d].jitter_ms = (uint32_t)x;
            }
        } else if (!strcmp(o, "--loss")) {
            val = split_dir(v, &dir);
            char *end = NULL;
            double pct = val ? strtod(val, &end) : -1.0;
            bad = !val || !*val || *end || !(pct >= 0.0 && pct <= 100.0);
            for (int d = 0; d < 2 && !bad; d++)
                if (dir == 2 || dir == d)
                    par[d].loss = pct / 100.0;
        } else if (!strcmp(o, "--blackhole")) {
            bad = nbh == sizeof bh / sizeof bh[0] || parse_blackhole(v, &bh[nbh]) < 0;
            if (!bad)
                nbh++;
        } else if (!strcmp(o, "--usr1")) {
            bad = parse_dir(v, &g.usr1_dir) < 0;
        } else if (!strcmp(o, "--seed")) {
            bad = parse_u64(v, UINT64_MAX, false, &g.seed) < 0;
            seeded = true;
        } else if (!strcmp(o, "--pool")) {
            bad = parse_u64(v, 1u << 20, false, &pool_frames) < 0 || pool_frames < 16;
        } else if (!strcmp(o, "--txcsum-off")) {
            bad = ntxoff == MAX_TXOFF;
            if (!bad)
                txoff[ntxoff++] = v;
        } else if (!strcmp(o, "--stats-ms")) {
            bad = parse_u64(v, 86400000, false, &stats_ms) < 0;
        } else if (!strcmp(o, "--duration")) {
            bad = parse_u64(v, INT32_MAX, false, &duration_ms) < 0;
        } else {
            fprintf(stderr, "slotnet-link: unknown option %s\n", o);
            usage(stderr);
            return 2;
        }
        if (bad) {
            fprintf(stderr, "slotnet-link: bad value for %s: %s\n", o, v);
            return 2;
        }
    }
    for (int d = 0; d < 2; d++) {
        if (par[d].queue_bytes && !par[d].rate) {
            /* The queue is the bytes waiting for the line: without a line
             * rate nothing waits, so a limit would silently do nothing. */
            fprintf(stderr,
                    "slotnet-link: --queue %" PRIu32 " on %s needs a line rate (--rate); "
                    "set --rate or --queue 0\n",
                    par[d].queue_bytes, d == 0 ? "a2b" : "b2a");
            return 2;
        }
    }
    if (!spec[0] || !spec[1]) {
        usage(stderr);
        return 2;
    }
    for (int i = 0; i < 2; i++) {
        if (sl_ep_parse(&g.ep[i], spec[i]) < 0) {
            fprintf(stderr, "slotnet-link: bad endpoint %s (want tap:IF[@NS] or pkt:IF[@NS])\n",
                    spec[i]);
            return 2;
        }
    }
    if (!seeded)
        g.seed = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);

    char err[512];
    for (unsigned i = 0; i < ntxoff; i++) {
        if (sl_txcsum_off(txoff[i], err, sizeof err) < 0) {
            fprintf(stderr, "slotnet-link: %s\n", err);
            return 1;
        }
    }
    for (int i = 0; i < 2; i++) {
        if (sl_ep_open(&g.ep[i], err, sizeof err) < 0) {
            fprintf(stderr, "slotnet-link: %s\n", err);
            return 1;
        }
    }
    if (sl_pool_init(&g.pool, (uint32_t)pool_frames) < 0) {
        fprintf(stderr, "slotnet-link: no memory for %" PRIu64 " frames\n", pool_frames);
        return 1;
    }

    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGINT);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGHUP);
    sigaddset(&mask, SIGUSR1);
    sigaddset(&mask, SIGUSR2);
    sigprocmask(SIG_BLOCK, &mask, NULL);
    int sfd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
    int tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    int epfd = epoll_create1(EPOLL_CLOEXEC);
    if (sfd < 0 || tfd < 0 || epfd < 0) {
        perror("slotnet-link: setup");
        return 1;
    }
    enum { EV_SIG = 2, EV_TIMER = 3 };
    struct epoll_event ev = { .events = EPOLLIN };
    for (uint32_t i = 0; i < 2; i++) {
        ev.data.u32 = i;
        epoll_ctl(epfd, EPOLL_CTL_ADD, g.ep[i].fd, &ev);
    }
    ev.data.u32 = EV_SIG;
    epoll_ctl(epfd, EPOLL_CTL_ADD, sfd, &ev);
    ev.data.u32 = EV_TIMER;
    epoll_ctl(epfd, EPOLL_CTL_ADD, tfd, &ev);

    uint64_t s = g.seed;
    for (int i = 0; i < 2; i++)
        sl_dir_init(&g.dir[i], &par[i], sl_rand(&s)); /* independent streams */
    g.t0 = mono_ns();
    for (unsigned k = 0; k < nbh; k++) {
        for (int i = 0; i < 2; i++) {
            struct sl_dir *d = &g.dir[i];
            if ((bh[k].dir != 2 && bh[k].dir != i) || d->nwin == SL_MAX_WINDOWS)
                continue;
            d->win[d->nwin].start_ns = g.t0 + bh[k].start_ms * NS_PER_MS;
            d->win[d->nwin].end_ns = bh[k].end_ms < 0 ? -1 : g.t0 + bh[k].end_ms * NS_PER_MS;
            d->nwin++;
        }
    }
    int64_t next_stats = stats_ms ? g.t0 + (int64_t)stats_ms * NS_PER_MS : -1;
    int64_t stop_at = duration_ms ? g.t0 + (int64_t)duration_ms * NS_PER_MS : -1;

    {
        char *o = g.out;
        size_t cap = sizeof g.out;
        size_t n = (size_t)snprintf(o, cap,
                                    "{\"event\":\"ready\",\"t0_mono_ns\":%" PRId64
                                    ",\"seed\":%" PRIu64 ",\"pid\":%ld,\"a\":\"%s\",\"b\":\"%s\",\"a2b\":",
                                    g.t0, g.seed, (long)getpid(), spec[0], spec[1]);
        n += params_json(o + n, cap - n, &par[A2B]);
        n += (size_t)snprintf(o + n, cap - n, ",\"b2a\":");
        n += params_json(o + n, cap - n, &par[B2A]);
        snprintf(o + n, cap - n, "}\n");
        emit(o);
    }

    int rc = 0;
    for (;;) {
        int64_t now = mono_ns();
        release_due(epfd, A2B, now);
        release_due(epfd, B2A, now);
        report_blackholes(now);
        if (next_stats >= 0 && now >= next_stats) {
            print_stats(now, "tick");
            next_stats += (int64_t)stats_ms * NS_PER_MS;
        }
        if (stop_at >= 0 && now >= stop_at)
            break;

        int64_t at = earliest(next_stats, stop_at);
        for (int i = 0; i < 2; i++) {
            if (g.dir[i].head && !g.ep[1 - i].blocked)
                at = earliest(at, g.dir[i].head->release_ns);
            at = earliest(at, sl_dir_next_window_edge(&g.dir[i], now));
        }
        arm(tfd, at);

        struct epoll_event evs[8];
        int n = epoll_wait(epfd, evs, 8, -1);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            perror("slotnet-link: epoll_wait");
            rc = 1;
            break;
        }
        bool stop = false;
        for (int k = 0; k < n; k++) {
            uint32_t id = evs[k].data.u32;
            if (id == EV_TIMER) {
                uint64_t ticks;
                while (read(tfd, &ticks, sizeof ticks) > 0) {
                }
            } else if (id == EV_SIG) {
                struct signalfd_siginfo si;
                while (read(sfd, &si, sizeof si) == (ssize_t)sizeof si) {
                    if (si.ssi_signo == SIGUSR2) {
                        print_stats(mono_ns(), "usr2");
                    } else if (si.ssi_signo == SIGUSR1) {
                        for (int i = 0; i < 2; i++)
                            if (g.usr1_dir == 2 || g.usr1_dir == i)
                                g.dir[i].manual_blackhole = !g.dir[i].manual_blackhole;
                    } else {
                        stop = true;
                    }
                }
            } else {
                if ((evs[k].events & EPOLLOUT) && g.ep[id].blocked) {
                    g.ep[id].blocked = false;
                    set_out_interest(epfd, (int)id, false);
                }
                if ((evs[k].events & (EPOLLIN | EPOLLERR | EPOLLHUP)) && receive((int)id) < 0) {
                    stop = true;
                    rc = 1;
                }
            }
        }
        if (stop)
            break;
    }
    print_stats(mono_ns(), "exit");
    for (int i = 0; i < 2; i++)
        sl_ep_close(&g.ep[i]);
    sl_pool_fini(&g.pool);
    close(epfd);
    close(tfd);
    close(sfd);
    return rc;
}
