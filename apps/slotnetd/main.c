/*
 * slotnetd: the co-processor daemon. It runs the slotnet core on the POSIX
 * backend (or the lwIP backend on a TAP device: --backend lwip) and serves
 * its slots to one host program at a time over the framed link protocol
 * (docs/link-protocol.md), on a UNIX socket, a serial line or stdin/stdout.
 *
 * One loop, bounded work per turn: read what the host sent, handle at most
 * --max-requests-per-turn requests (each reply written without blocking;
 * the next request waits until the reply is out), sn_poll, maybe the
 * attention byte, the host-gone policy, then one wait over the network and
 * the link together (sn_posix_set_extra_fds, sn_lwip_set_extra_fds). A host
 * that reads slowly only stalls its own link; connections keep being
 * accepted, served and timed out.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "appnet.h"
#include "slotnet/backend.h"
#include "slotnet/device.h"
#include "transport.h"

#define PROG "slotnetd"
#define MAX_MS 86400000ul /* a day: keeps every deadline far inside the 2^31 wrap */
#define MAX_BACKLOG 256ul
#define DEFAULT_LINK "unix:slotnetd.sock"
#define DEFAULT_GRACE_MS 5000u
#define DEFAULT_MAX_REQUESTS 8u
#define REOPEN_MS 1000u /* serial: how often a hung-up device is tried again */
#define IDLE_WAIT_MS 1000u

struct options {
    const char *link;
    unsigned slots;
    unsigned backlog;
    uint32_t backlog_timeout_ms;
    uint32_t close_timeout_ms;
    unsigned connect_retries;
    uint32_t connect_base_ms;
    uint32_t connect_timeout_ms;
    uint32_t peer_block_ms;
    uint32_t grace_ms;
    uint32_t host_timeout_ms;
    unsigned max_requests;
    struct appnet_opts net; /* --backend, --poll, --tap, --addr, --gw */
};

struct daemon {
    struct options o;
    struct xport x;
    sn_core *core;
    const sn_backend_ops *ops;
    void *be;
    sn_link_device dev;
    FILE *log;
    char name[160];

    bool host;              /* a host is on the link */
    bool grace;             /* the host left; its connections wait for it */
    uint32_t grace_end;
    uint32_t last_request_ms;
    uint64_t seen_requests; /* dev.count.requests at the last look */
    uint32_t reopen_at;     /* serial, device closed: next attempt */
    bool reopen_logged;
    bool budget_hit;        /* requests are left over for the next turn */
    bool stdin_done;        /* stdio: the host can never come back */
    bool relink;            /* the link's descriptors changed: tell the backend */

    uint8_t rbuf[4096];
    size_t rlen;
    struct pollfd pfd[3]; /* listener, host read, host write (stdio only) */

    uint64_t hosts, refused, turns, turns_over_1ms, policy_resets;
    uint64_t log_dropped;   /* log lines that could not be written at once */
};

const char appnet_prog[] = PROG;

static volatile sig_atomic_t stop_signal;

static void on_signal(int sig) { stop_signal = sig; }

/* One log line, never waiting: the log may be a pipe or terminal nobody
 * drains. The line is written with one write() only when poll() says the
 * descriptor takes it now (a pipe then has a free page: a line of at most
 * PIPE_BUF bytes cannot block); else it is dropped and counted, and the next
 * line written says how many went missing (also in the diagnostics). */
static void logf_(struct daemon *d, const char *fmt, ...)
{
    char line[512];
    const size_t room = sizeof line - 1; /* the newline */
    int k = snprintf(line, room, PROG ": ");
    size_t n = k > 0 ? (size_t)k : 0;
    va_list ap;
    va_start(ap, fmt);
    k = vsnprintf(line + n, room - n, fmt, ap);
    va_end(ap);
    n += k > 0 ? (size_t)k : 0;
    if (n > room - 1)
        n = room - 1; /* cut to fit */
    if (d->log_dropped > 0) {
        k = snprintf(line + n, room - n, " (%llu earlier log lines dropped)",
                     (unsigned long long)d->log_dropped);
        n += k > 0 ? (size_t)k : 0;
        if (n > room - 1)
            n = room - 1;
    }
    line[n++] = '\n';
    struct pollfd p = {.fd = fileno(d->log), .events = POLLOUT};
    if (poll(&p, 1, 0) == 1 && (p.revents & POLLOUT) && write(p.fd, line, n) == (ssize_t)n)
        d->log_dropped = 0;
    else
        d->log_dropped++;
}

/* ---- Options ------------------------------------------------------------ */

static void usage(FILE *f)
{
    fprintf(f,
            "Usage: " PROG " [options]\n"
            "Serves the slotnet core's connection slots to one host program at a time\n"
            "over the framed link protocol (docs/link-protocol.md).\n"
            "\n"
            "  --link SPEC                the host link (default " DEFAULT_LINK "):\n"
            "                               unix:PATH            UNIX socket, mode 0600, one\n"
            "                                                    host at a time\n"
            "                               serial:DEVICE[,BAUD] serial line or pseudo-terminal,\n"
            "                                                    raw mode (default 115200 baud)\n"
            "                               stdio                requests on stdin, replies on\n"
            "                                                    stdout, log on stderr\n"
            "  --slots N                  connection slots, 1..%u (default %d)\n"
            "  --backlog N                connections that may wait for a free slot,\n"
            "                             0..%lu (default %d)\n"
            "  --backlog-timeout-ms MS    a waiting connection older than this is reset\n"
            "                             (default %d)\n"
            "  --close-timeout-ms MS      a closing connection gets this long to deliver its\n"
            "                             data, then is reset (default %d)\n"
            "  --connect-retries N        outgoing connects: retries after the first\n"
            "                             attempt, 0..%d (default %d)\n"
            "  --connect-base-ms MS       ...backoff base, %d..%d (default %d)\n"
            "  --connect-timeout-ms MS    ...one attempt's limit (default %d)\n"
            "  --peer-block-ms MS         ...a peer whose last retry failed is refused this\n"
            "                             long (default %d)\n"
            "  --grace-ms MS              when the host goes away its connections are kept\n"
            "                             this long for it; then every connection is reset\n"
            "                             and every listener stopped (default %u)\n"
            "  --host-timeout-ms MS       serial: a host that sends no request this long\n"
            "                             counts as gone; 0 = never (default 0)\n"
            "  --max-requests-per-turn N  requests handled per loop turn before the core\n"
            "                             is polled again, 1..1024 (default %u)\n"
            "  --backend NAME             the network stack: posix (kernel sockets, epoll),\n"
            "                             poll (the same with poll()), or lwip (lwIP on a\n"
            "                             TAP device; needs CAP_NET_ADMIN and /dev/net/tun)\n"
            "                             (default posix)\n"
            "  --poll                     the same as --backend poll\n"
            "  --tap NAME                 lwip: the TAP device to attach to, created if\n"
            "                             missing (default sntap0)\n"
            "  --addr A.B.C.D/NN          lwip: the stack's own address and prefix length;\n"
            "                             listeners and outgoing connections use it\n"
            "                             (default 10.0.0.2/24)\n"
            "  --gw A.B.C.D               lwip: the default gateway (default none)\n"
            "  -h, --help                 show this help and exit\n"
            "\n"
            "Times are in milliseconds, at most %lu. SIGINT or SIGTERM stops the daemon\n"
            "cleanly (connections reset, the socket file removed). Exit status: 0 stopped\n"
            "by a signal (or stdio: stdin closed), 1 runtime error (e.g. TAP not\n"
            "available, no lwIP in this build), 2 bad options.\n",
            SN_LINK_SLOTS_MAX, SN_DEFAULT_SLOTS, MAX_BACKLOG, SN_DEFAULT_BACKLOG_MAX,
            SN_DEFAULT_BACKLOG_TIMEOUT_MS, SN_DEFAULT_CLOSE_TIMEOUT_MS, SN_CONNECT_RETRIES_MAX,
            SN_DEFAULT_CONNECT_RETRIES, SN_CONNECT_BASE_MIN_MS, SN_CONNECT_BASE_MAX_MS,
            SN_DEFAULT_CONNECT_BASE_MS, SN_DEFAULT_CONNECT_TIMEOUT_MS, SN_DEFAULT_PEER_BLOCK_MS,
            DEFAULT_GRACE_MS, DEFAULT_MAX_REQUESTS, MAX_MS);
}

static void parse_options(int argc, char **argv, struct options *o)
{
    enum {
        OPT_LINK = 256,
        OPT_SLOTS,
        OPT_BACKLOG,
        OPT_BACKLOG_TIMEOUT,
        OPT_CLOSE_TIMEOUT,
        OPT_CONNECT_RETRIES,
        OPT_CONNECT_BASE,
        OPT_CONNECT_TIMEOUT,
        OPT_PEER_BLOCK,
        OPT_GRACE,
        OPT_HOST_TIMEOUT,
        OPT_MAX_REQUESTS,
    };
    static const struct option longopts[] = {
        {"link", required_argument, NULL, OPT_LINK},
        {"slots", required_argument, NULL, OPT_SLOTS},
        {"backlog", required_argument, NULL, OPT_BACKLOG},
        {"backlog-timeout-ms", required_argument, NULL, OPT_BACKLOG_TIMEOUT},
        {"close-timeout-ms", required_argument, NULL, OPT_CLOSE_TIMEOUT},
        {"connect-retries", required_argument, NULL, OPT_CONNECT_RETRIES},
        {"connect-base-ms", required_argument, NULL, OPT_CONNECT_BASE},
        {"connect-timeout-ms", required_argument, NULL, OPT_CONNECT_TIMEOUT},
        {"peer-block-ms", required_argument, NULL, OPT_PEER_BLOCK},
        {"grace-ms", required_argument, NULL, OPT_GRACE},
        {"host-timeout-ms", required_argument, NULL, OPT_HOST_TIMEOUT},
        {"max-requests-per-turn", required_argument, NULL, OPT_MAX_REQUESTS},
        APPNET_LONGOPT_POLL,
        APPNET_LONGOPT_BACKEND,
        APPNET_LONGOPT_TAP,
        APPNET_LONGOPT_ADDR,
        APPNET_LONGOPT_GW,
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    *o = (struct options){
        .link = DEFAULT_LINK,
        .slots = SN_DEFAULT_SLOTS,
        .backlog = SN_DEFAULT_BACKLOG_MAX,
        .backlog_timeout_ms = SN_DEFAULT_BACKLOG_TIMEOUT_MS,
        .close_timeout_ms = SN_DEFAULT_CLOSE_TIMEOUT_MS,
        .connect_retries = SN_DEFAULT_CONNECT_RETRIES,
        .connect_base_ms = SN_DEFAULT_CONNECT_BASE_MS,
        .connect_timeout_ms = SN_DEFAULT_CONNECT_TIMEOUT_MS,
        .peer_block_ms = SN_DEFAULT_PEER_BLOCK_MS,
        .grace_ms = DEFAULT_GRACE_MS,
        .max_requests = DEFAULT_MAX_REQUESTS,
    };
    appnet_opts_default(&o->net);
    int c;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (c) {
        case OPT_LINK:
            o->link = optarg;
            break;
        case OPT_SLOTS:
            o->slots = (unsigned)appnet_number_arg("--slots", optarg, 1, SN_LINK_SLOTS_MAX);
            break;
        case OPT_BACKLOG:
            o->backlog = (unsigned)appnet_number_arg("--backlog", optarg, 0, MAX_BACKLOG);
            break;
        case OPT_BACKLOG_TIMEOUT:
            o->backlog_timeout_ms =
                (uint32_t)appnet_number_arg("--backlog-timeout-ms", optarg, 1, MAX_MS);
            break;
        case OPT_CLOSE_TIMEOUT:
            o->close_timeout_ms =
                (uint32_t)appnet_number_arg("--close-timeout-ms", optarg, 1, MAX_MS);
            break;
        case OPT_CONNECT_RETRIES:
            o->connect_retries = (unsigned)appnet_number_arg("--connect-retries", optarg, 0,
                                                             SN_CONNECT_RETRIES_MAX);
            break;
        case OPT_CONNECT_BASE:
            o->connect_base_ms = (uint32_t)appnet_number_arg(
                "--connect-base-ms", optarg, SN_CONNECT_BASE_MIN_MS, SN_CONNECT_BASE_MAX_MS);
            break;
        case OPT_CONNECT_TIMEOUT:
            o->connect_timeout_ms =
                (uint32_t)appnet_number_arg("--connect-timeout-ms", optarg, 1, MAX_MS);
            break;
        case OPT_PEER_BLOCK:
            o->peer_block_ms = (uint32_t)appnet_number_arg("--peer-block-ms", optarg, 0, MAX_MS);
            break;
        case OPT_GRACE:
            o->grace_ms = (uint32_t)appnet_number_arg("--grace-ms", optarg, 0, MAX_MS);
            break;
        case OPT_HOST_TIMEOUT:
            o->host_timeout_ms =
                (uint32_t)appnet_number_arg("--host-timeout-ms", optarg, 0, MAX_MS);
            break;
        case OPT_MAX_REQUESTS:
            o->max_requests =
                (unsigned)appnet_number_arg("--max-requests-per-turn", optarg, 1, 1024);
            break;
        case 'h':
            usage(stdout);
            exit(0);
        default: /* --backend, --poll, --tap, --addr, --gw */
            if (!appnet_option(&o->net, c, optarg))
                appnet_try_help(); /* getopt_long has said what was wrong */
        }
    }
    appnet_no_operands(argc, argv);
    appnet_check_options(&o->net);
}

/* ---- The backend ---------------------------------------------------------- */

static const char *backend_desc(const struct appnet_opts *n, char *buf, size_t len)
{
    if (n->backend != APPNET_LWIP)
        return appnet_backend_name(n);
    struct in_addr a = {.s_addr = htonl(n->lwip_addr)};
    char host[INET_ADDRSTRLEN];
    inet_ntop(AF_INET, &a, host, sizeof host);
    snprintf(buf, len, "lwip %s on TAP %s", host, n->tap);
    return buf;
}

/* ---- Host arrival and departure -------------------------------------------- */

static unsigned open_slots(const sn_core *core)
{
    unsigned n = 0;
    for (unsigned i = 0; i < sn_slot_count(core); i++)
        n += sn_slot_state(core, i) != SN_FREE;
    return n;
}

static void host_arrived(struct daemon *d, uint32_t now, const char *how)
{
    d->host = true;
    d->hosts++;
    d->last_request_ms = now;
    d->seen_requests = d->dev.count.requests;
    if (d->grace) {
        d->grace = false;
        logf_(d, "host connected (%s) within the grace period: %u connections kept", how,
              open_slots(d->core));
    } else {
        logf_(d, "host connected (%s)", how);
    }
}

/* link_up: the link stayed (a quiet serial host timed out): what it was
 * shown is kept, so the attention byte still tells it what changed, and
 * only the replay cache is forgotten (the next host may be another one). */
static void host_gone(struct daemon *d, uint32_t now, const char *why, bool link_up)
{
    if (!d->host)
        return;
    d->host = false;
    if (link_up) {
        sn_dev_forget_replay(&d->dev);
    } else {
        d->rlen = 0;
        d->budget_hit = false;
        sn_dev_reset(&d->dev);
    }
    d->grace = true;
    d->grace_end = now + d->o.grace_ms;
    logf_(d, "host gone (%s): %u connections kept for %u ms", why, open_slots(d->core),
          (unsigned)d->o.grace_ms);
}

/* The link itself is gone (not just a quiet host). */
static void link_lost(struct daemon *d, uint32_t now, const char *why)
{
    xport_drop(&d->x);
    d->relink = true;
    if (d->x.kind == XP_STDIO) { /* nobody can reconnect to our stdin */
        d->host = false;
        d->stdin_done = true;
        return;
    }
    host_gone(d, now, why, false);
    if (d->x.kind == XP_SERIAL) {
        d->reopen_at = now + REOPEN_MS;
        d->reopen_logged = false;
    }
}

static void policy(struct daemon *d, uint32_t now)
{
    if (d->grace && !d->host && sn_time_reached(now, d->grace_end)) {
        d->grace = false;
        unsigned lsn = 0;
        unsigned n = sn_dev_stop_all(&d->dev, &lsn); /* a new epoch */
        d->policy_resets += n;
        logf_(d, "no host for %u ms: reset %u connections, stopped %u listeners; epoch %u",
              (unsigned)d->o.grace_ms, n, lsn, (unsigned)d->dev.epoch);
    }
    if (d->x.kind == XP_SERIAL && d->host && d->o.host_timeout_ms > 0 &&
        sn_time_reached(now, d->last_request_ms + d->o.host_timeout_ms)) {
        char why[64];
        snprintf(why, sizeof why, "no request for %u ms", (unsigned)d->o.host_timeout_ms);
        host_gone(d, now, why, true);
    }
    if (d->x.kind == XP_SERIAL && d->x.rfd < 0 && sn_time_reached(now, d->reopen_at)) {
        if (xport_reopen(&d->x)) {
            /* Not a host yet: only its first good request is (the grace
             * period runs on until then). */
            d->relink = true;
            sn_dev_reset(&d->dev);
            logf_(d, "%s reopened; the host is back with its next request", d->x.path);
        } else {
            if (!d->reopen_logged)
                logf_(d, "cannot reopen %s yet: %s; trying every %u ms", d->x.path,
                      strerror(errno), REOPEN_MS);
            d->reopen_logged = true;
            d->reopen_at = now + REOPEN_MS;
        }
    }
}

/* ---- The link ------------------------------------------------------------- */

/* Writes what the device has for the host; true when nothing is left. */
static bool flush_output(struct daemon *d, uint32_t now)
{
    const uint8_t *p;
    size_t n;
    while ((n = sn_dev_output(&d->dev, &p)) > 0) {
        ssize_t w = xport_write(&d->x, p, n);
        if (w < 0) {
            link_lost(d, now, "write failed");
            return true;
        }
        if (w == 0)
            return false;
        sn_dev_sent(&d->dev, (size_t)w);
    }
    return true;
}

static void accept_hosts(struct daemon *d, uint32_t now)
{
    for (int i = 0; i < 4; i++) { /* bounded: a flood of hosts cannot hold the loop */
        int r = xport_accept(&d->x);
        if (r == 0)
            return;
        if (r < 0) {
            d->refused++;
            logf_(d, "refused a second host: one is connected");
            continue;
        }
        sn_dev_reset(&d->dev);
        d->rlen = 0;
        d->relink = true;
        host_arrived(d, now, "unix socket");
    }
}

static void serve_link(struct daemon *d, uint32_t now)
{
    if (d->x.kind == XP_UNIX && (d->pfd[0].revents & POLLIN))
        accept_hosts(d, now);
    if (d->x.rfd < 0)
        return;
    short rev = d->pfd[1].revents;
    /* Level-triggered: data not read now is reported again by the next wait. */
    if (d->rlen < sizeof d->rbuf && (rev & (POLLIN | POLLHUP | POLLERR))) {
        ssize_t r = xport_read(&d->x, d->rbuf + d->rlen, sizeof d->rbuf - d->rlen);
        if (r < 0) {
            link_lost(d, now, d->x.kind == XP_UNIX ? "disconnected" : "end of file or hangup");
            return;
        }
        d->rlen += (size_t)r;
    } else if (d->rlen == sizeof d->rbuf && (rev & (POLLHUP | POLLERR))) {
        /* Nothing can be read into a full buffer; a hangup must not spin us. */
        link_lost(d, now, "hangup");
        return;
    }
    d->budget_hit = false;
    for (unsigned handled = 0;;) {
        if (!flush_output(d, now) || d->x.rfd < 0)
            return;
        if (handled >= d->o.max_requests) {
            d->budget_hit = true;
            return;
        }
        size_t used = sn_dev_feed(&d->dev, d->rbuf, d->rlen, now);
        memmove(d->rbuf, d->rbuf + used, d->rlen - used);
        d->rlen -= used;
        const uint8_t *p;
        if (sn_dev_output(&d->dev, &p) == 0)
            break;
        handled++;
    }
    if (d->dev.count.requests != d->seen_requests) {
        d->seen_requests = d->dev.count.requests;
        d->last_request_ms = now;
        if (!d->host) /* serial: a host that timed out is back */
            host_arrived(d, now, "request");
    }
    if (d->rlen == 0) { /* every byte received is fed: a silence may be a gap */
        (void)sn_dev_flush_gap(&d->dev, now);
        flush_output(d, now);
    }
}

/* What the loop waits for on the link next turn. */
static void arm(struct daemon *d)
{
    const uint8_t *p;
    bool out = sn_dev_output(&d->dev, &p) > 0;
    bool in = d->rlen < sizeof d->rbuf;
    d->pfd[0] = (struct pollfd){.fd = d->x.lfd, .events = POLLIN};
    d->pfd[1] = (struct pollfd){.fd = d->x.rfd, .events = in ? POLLIN : 0};
    d->pfd[2] = (struct pollfd){.fd = -1};
    if (d->x.wfd == d->x.rfd)
        d->pfd[1].events = (short)(d->pfd[1].events | (out ? POLLOUT : 0));
    else if (d->x.wfd >= 0 && out)
        d->pfd[2] = (struct pollfd){.fd = d->x.wfd, .events = POLLOUT};
}

/* ---- Diagnostics -------------------------------------------------------- */

static size_t diag_extra(char *buf, size_t len, void *user)
{
    struct daemon *d = user;
    const sn_dev_counters *c = &d->dev.count;
    int n = snprintf(buf, len,
                     "slotnetd: link %s hosts %llu refused %llu requests %llu error-replies %llu "
                     "crc %llu oversize %llu truncated %llu version %llu garbage %llu "
                     "attention %llu turns %llu longest-turn %uus turns-over-1ms %llu "
                     "grace-resets %llu epoch %u replays %llu version-noise %llu yields %llu "
                     "log-dropped %llu\n",
                     d->name, (unsigned long long)d->hosts, (unsigned long long)d->refused,
                     (unsigned long long)c->requests, (unsigned long long)c->error_replies,
                     (unsigned long long)c->crc_errors, (unsigned long long)c->oversize,
                     (unsigned long long)c->truncated, (unsigned long long)c->version_errors,
                     (unsigned long long)d->dev.dec.garbage, (unsigned long long)c->attention,
                     (unsigned long long)d->turns, (unsigned)d->dev.longest_turn_us,
                     (unsigned long long)d->turns_over_1ms, (unsigned long long)d->policy_resets,
                     (unsigned)d->dev.epoch, (unsigned long long)c->replays,
                     (unsigned long long)c->version_noise, (unsigned long long)c->yields,
                     (unsigned long long)d->log_dropped);
    return n > 0 ? (size_t)n : 0;
}

static uint64_t mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static void count_turn(struct daemon *d, uint64_t us)
{
    uint32_t t = us > UINT32_MAX ? UINT32_MAX : (uint32_t)us;
    d->turns++;
    if (t > 1000)
        d->turns_over_1ms++;
    sn_dev_note_turn(&d->dev, t);
}

static void install_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sigemptyset(&sa.sa_mask);
    sa.sa_handler = on_signal;
    /* No SA_RESTART: the signal must cut the wait short. */
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sa.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &sa, NULL); /* a host gone mid-write is an error code */
}

static uint32_t min_u32(uint32_t a, uint32_t b) { return a < b ? a : b; }

static uint32_t until(uint32_t now, uint32_t deadline)
{
    return sn_time_reached(now, deadline) ? 0 : deadline - now;
}

int main(int argc, char **argv)
{
    static struct daemon d; /* static: the device holds a few KiB of buffers */
    char err[320];

    parse_options(argc, argv, &d.o);
    if (!xport_parse(d.o.link, &d.x, err, sizeof err))
        appnet_bad_option("--link", err, d.o.link);
    d.log = d.x.kind == XP_STDIO ? stderr : stdout;
    xport_name(&d.x, d.name, sizeof d.name);
    install_signals();

    sn_config cfg;
    sn_config_default(&cfg);
    cfg.slots = (uint8_t)d.o.slots;
    cfg.backlog_max = (uint16_t)d.o.backlog;
    cfg.backlog_timeout_ms = d.o.backlog_timeout_ms;
    cfg.close_timeout_ms = d.o.close_timeout_ms;
    cfg.connect_retries = (uint8_t)d.o.connect_retries;
    cfg.connect_base_ms = d.o.connect_base_ms;
    cfg.connect_timeout_ms = d.o.connect_timeout_ms;
    cfg.peer_block_ms = d.o.peer_block_ms;
    cfg.on_event = sn_dev_on_event;
    cfg.user = &d.dev;
    size_t core_len = sn_core_size(&cfg);
    if (core_len == 0) {
        fprintf(stderr, PROG ": the core refuses this configuration (see --help)\n");
        return 2;
    }

    int rc = 1;
    void *core_mem = malloc(core_len);
    if (core_mem == NULL) {
        fprintf(stderr, PROG ": out of memory\n");
        return 1;
    }
    sn_backend be;
    rc = appnet_start_backend(&d.o.net, d.o.slots + d.o.backlog + cfg.release_queue, &be);
    if (rc != 0)
        goto out;
    rc = 1;
    int e;
    d.ops = be.ops;
    d.be = be.ctx;
    e = sn_core_init(&d.core, core_mem, core_len, &cfg, be);
    if (e < 0) {
        fprintf(stderr, PROG ": core: %s\n", sn_strerror(e));
        rc = e == SN_EINVAL ? 2 : 1;
        goto out;
    }
    if (sn_dev_init(&d.dev, d.core) < 0) { /* --slots is checked; this is a backstop */
        fprintf(stderr, PROG ": the link serves at most %u slots\n", SN_LINK_SLOTS_MAX);
        rc = 2;
        goto out;
    }
    sn_dev_set_diag(&d.dev, diag_extra, &d);
    if (!xport_open(&d.x, err, sizeof err)) {
        fprintf(stderr, PROG ": %s\n", err);
        goto out;
    }
    appnet_set_extra_fds(d.pfd, 3);

    uint32_t now = d.ops->now_ms(d.be);
    char desc[64];
    fprintf(d.log, PROG ": serving %u slots on %s (%s), link protocol %u\n", d.o.slots, d.name,
            backend_desc(&d.o.net, desc, sizeof desc), SN_LINK_VERSION);
    fflush(d.log);
    if (d.x.kind != XP_UNIX)
        host_arrived(&d, now, d.x.kind == XP_STDIO ? "stdio" : "device opened");

    uint64_t woke = mono_us();
    while (!stop_signal && !d.stdin_done) {
        now = d.ops->now_ms(d.be);
        serve_link(&d, now);
        sn_poll(d.core, now);
        /* While the link is up, also with the host counted as gone: a quiet
         * host sleeping on the link must wake to what changed. */
        if (d.x.rfd >= 0 && sn_dev_attention(&d.dev))
            flush_output(&d, now);
        policy(&d, now);
        if (d.stdin_done)
            break;

        uint32_t t = sn_next_timeout(d.core, now, IDLE_WAIT_MS);
        if (d.x.rfd >= 0) /* the partial-frame gap, the host gone or not */
            t = sn_dev_next_timeout(&d.dev, now, t);
        if (d.grace)
            t = min_u32(t, until(now, d.grace_end));
        if (d.x.kind == XP_SERIAL && d.x.rfd < 0)
            t = min_u32(t, until(now, d.reopen_at));
        if (d.x.kind == XP_SERIAL && d.host && d.o.host_timeout_ms > 0)
            t = min_u32(t, until(now, d.last_request_ms + d.o.host_timeout_ms));
        if (d.budget_hit)
            t = 0;
        arm(&d);
        if (d.relink) { /* epoll forgets a closed descriptor, even if its number returns */
            appnet_set_extra_fds(d.pfd, 3);
            d.relink = false;
        }
        count_turn(&d, mono_us() - woke);
        d.ops->wait(d.be, t);
        woke = mono_us();
    }

    if (stop_signal)
        logf_(&d, "stopped by %s", stop_signal == SIGTERM ? "SIGTERM" : "SIGINT");
    else
        logf_(&d, "stdin closed: the host cannot come back; stopping");
    rc = 0;
out:
    if (d.core)
        sn_core_shutdown(d.core);
    appnet_stop_backend();
    xport_close(&d.x);
    free(core_mem);
    return rc;
}
