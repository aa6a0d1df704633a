/*
 * slotnet-web: serves static files, a live /status of the slot table and
 * the RepRapFirmware rr_ API, on the slotnet core over the POSIX backend
 * (epoll or poll) or the lwIP backend on a TAP device (--backend lwip), or
 * (--link) on slotnetd's core at the other end of the link protocol.
 *
 * One loop: read the clock, poll the core or the link (which calls
 * web_on_event for everything that happened), then wait for I/O, or the
 * device's attention byte, no longer than the core allows (not at all while a connection has answered its share of a
 * pipeline and has more). Nothing else blocks, and all memory is allocated
 * before the loop. The calls that wait for the disk run on threads made at
 * start: upload body writes (writer.c), and an upload's fsync and rename
 * (finish.c).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "appnet.h"
#include "web.h"

#define PROG "slotnet-web"
#define DEFAULT_IDLE_MS 30000u
#define DEFAULT_HEADER_TIMEOUT_MS 5000u
/* The loop's longest wait while an upload's writes or finish are with a
 * thread: the backend's wait cannot see them, so the loop looks this often. */
#define FINISH_POLL_MS 1u
/* Each waiting connection holds a descriptor: stay well inside the usual
 * limit of 1024. */
#define MAX_BACKLOG 256ul
#define MAX_MS 86400000ul /* a day; keeps every deadline far inside the 2^31 wrap window */
#define DEFAULT_UPLOAD_MAX (1024ull * 1024 * 1024)
#define MAX_UPLOAD_MAX (1ull << 50) /* a PiB: anything larger is a typo */

struct options {
    sn_endpoint listen;
    const char *listen_text;
    unsigned slots;
    unsigned max_conns; /* 0: same as slots */
    uint32_t idle_ms;
    uint32_t close_timeout_ms;
    unsigned backlog;
    uint32_t backlog_timeout_ms;
    const char *root;
    const char *sd;
    uint64_t upload_max;
    const char *password;
    uint32_t session_timeout_ms;
    uint32_t header_timeout_ms;
    struct appnet_opts net; /* --backend, --poll, --tap, --addr, --gw */
    const char *link; /* slotnetd's link target, or NULL: in-process core */
};

const char appnet_prog[] = PROG;

static volatile sig_atomic_t stop_signal;

static void on_signal(int sig)
{
    stop_signal = sig;
}

static void usage(FILE *f)
{
    fprintf(f,
            "Usage: " PROG " [options]\n"
            "Serves the files under --root, the slot table as JSON at /status, and\n"
            "the RepRapFirmware rr_ API (Duet Web Control's) over the folder --sd,\n"
            "over HTTP/1.1 on the slotnet core and its POSIX backend.\n"
            "\n"
            "  --listen ADDR:PORT       IPv4 address and port; 0.0.0.0 = any\n"
            "                           (default 127.0.0.1:8080)\n"
            "  --slots N                connection slots, 1..%d (default %d)\n"
            "  --max-conns N            connections the listener holds at once, 1..slots\n"
            "                           (default: the number of slots)\n"
            "  --idle-ms MS             reset a connection idle this long; 0 = never\n"
            "                           (default %u)\n"
            "  --close-timeout-ms MS    a closing connection gets this long to deliver\n"
            "                           its data, then is reset (default %d)\n"
            "  --backlog N              connections that may wait for a free slot,\n"
            "                           0..%lu (default %d)\n"
            "  --backlog-timeout-ms MS  a waiting connection older than this is reset\n"
            "                           (default %d)\n"
            "  --root DIR               directory of the static files (default www)\n"
            "  --sd DIR                 storage folder, volume 0:/ of the rr_ API; it and\n"
            "                           gcodes/, macros/, sys/ in it are created if\n"
            "                           missing (default sd)\n"
            "  --upload-max BYTES       largest rr_upload body; larger ones get 413\n"
            "                           (default %llu, 1 GiB)\n"
            "  --password PW            rr_connect password; other rr_ requests then\n"
            "                           need a session (401 without). Default: none, and\n"
            "                           any login is accepted\n"
            "  --session-timeout-ms MS  an rr_ session ends this long after its last\n"
            "                           request; a stalled upload is abandoned after it\n"
            "                           too (default %u)\n"
            "  --header-timeout-ms MS   a request whose headers are not all in this long\n"
            "                           after its first byte gets 408 and the connection\n"
            "                           closes (default %u)\n"
            "  --backend NAME           the network stack: posix (kernel sockets, epoll),\n"
            "                           poll (the same with poll()), or lwip (lwIP on a\n"
            "                           TAP device; needs CAP_NET_ADMIN and /dev/net/tun)\n"
            "                           (default posix)\n"
            "  --poll                   the same as --backend poll: poll() instead of epoll\n"
            "  --tap NAME               lwip: the TAP device to attach to, created if\n"
            "                           missing (default sntap0)\n"
            "  --addr A.B.C.D/NN        lwip: the stack's own address and prefix length;\n"
            "                           it listens there on --listen's port, and\n"
            "                           --listen's address is not used (default\n"
            "                           10.0.0.2/24)\n"
            "  --gw A.B.C.D             lwip: the default gateway (default none)\n"
            "  --link TARGET            run on slotnetd's slot table over the link\n"
            "                           protocol instead of an in-process core:\n"
            "                           unix:PATH (slotnetd --link unix:PATH),\n"
            "                           serial:DEVICE[,BAUD], or exec:COMMAND (run\n"
            "                           with /bin/sh -c on a socket pair, e.g.\n"
            "                           'exec:slotnetd --link stdio'). The daemon's\n"
            "                           options set the slots, the backlog and the\n"
            "                           close timeout; --slots, --backlog,\n"
            "                           --backlog-timeout-ms, --close-timeout-ms and\n"
            "                           --poll are then ignored (--backend lwip and the\n"
            "                           lwip options are refused)\n"
            "  -h, --help               show this help and exit\n"
            "\n"
            "Times are in milliseconds, at most %lu. SIGINT or SIGTERM stops the\n"
            "server cleanly. Exit status: 0 stopped by a signal, 1 runtime error\n"
            "(e.g. address in use, TAP not available, no lwIP in this build), 2 bad\n"
            "options.\n",
            SN_MAX_SLOTS, SN_DEFAULT_SLOTS, DEFAULT_IDLE_MS, SN_DEFAULT_CLOSE_TIMEOUT_MS,
            MAX_BACKLOG, SN_DEFAULT_BACKLOG_MAX, SN_DEFAULT_BACKLOG_TIMEOUT_MS,
            DEFAULT_UPLOAD_MAX, DEFAULT_SESSION_TIMEOUT_MS, DEFAULT_HEADER_TIMEOUT_MS, MAX_MS);
}

static void parse_listen(const char *s, sn_endpoint *ep)
{
    const char *colon = strrchr(s, ':');
    char host[INET_ADDRSTRLEN];
    unsigned long port;
    size_t hlen = colon ? (size_t)(colon - s) : 0;

    if (!colon || hlen >= sizeof host || !appnet_parse_ulong(colon + 1, 1, 65535, &port))
        appnet_bad_option("--listen", "IPv4ADDR:PORT, e.g. 127.0.0.1:8080", s);
    memcpy(host, s, hlen);
    host[hlen] = '\0';
    if (!appnet_parse_ipv4(host, &ep->addr))
        appnet_bad_option("--listen", "IPv4ADDR:PORT, e.g. 127.0.0.1:8080", s);
    ep->port = (uint16_t)port;
}

static void parse_options(int argc, char **argv, struct options *o)
{
    enum {
        OPT_LISTEN = 256,
        OPT_SLOTS,
        OPT_MAX_CONNS,
        OPT_IDLE,
        OPT_CLOSE_TIMEOUT,
        OPT_BACKLOG,
        OPT_BACKLOG_TIMEOUT,
        OPT_ROOT,
        OPT_SD,
        OPT_UPLOAD_MAX,
        OPT_PASSWORD,
        OPT_SESSION_TIMEOUT,
        OPT_HEADER_TIMEOUT,
        OPT_LINK,
    };
    static const struct option longopts[] = {
        {"listen", required_argument, NULL, OPT_LISTEN},
        {"slots", required_argument, NULL, OPT_SLOTS},
        {"max-conns", required_argument, NULL, OPT_MAX_CONNS},
        {"idle-ms", required_argument, NULL, OPT_IDLE},
        {"close-timeout-ms", required_argument, NULL, OPT_CLOSE_TIMEOUT},
        {"backlog", required_argument, NULL, OPT_BACKLOG},
        {"backlog-timeout-ms", required_argument, NULL, OPT_BACKLOG_TIMEOUT},
        {"root", required_argument, NULL, OPT_ROOT},
        {"sd", required_argument, NULL, OPT_SD},
        {"upload-max", required_argument, NULL, OPT_UPLOAD_MAX},
        {"password", required_argument, NULL, OPT_PASSWORD},
        {"session-timeout-ms", required_argument, NULL, OPT_SESSION_TIMEOUT},
        {"header-timeout-ms", required_argument, NULL, OPT_HEADER_TIMEOUT},
        APPNET_LONGOPT_POLL,
        {"link", required_argument, NULL, OPT_LINK},
        APPNET_LONGOPT_BACKEND,
        APPNET_LONGOPT_TAP,
        APPNET_LONGOPT_ADDR,
        APPNET_LONGOPT_GW,
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };

    *o = (struct options){
        .listen = {.addr = 0x7f000001u, .port = 8080},
        .listen_text = "127.0.0.1:8080",
        .slots = SN_DEFAULT_SLOTS,
        .idle_ms = DEFAULT_IDLE_MS,
        .close_timeout_ms = SN_DEFAULT_CLOSE_TIMEOUT_MS,
        .backlog = SN_DEFAULT_BACKLOG_MAX,
        .backlog_timeout_ms = SN_DEFAULT_BACKLOG_TIMEOUT_MS,
        .root = "www",
        .sd = "sd",
        .upload_max = DEFAULT_UPLOAD_MAX,
        .session_timeout_ms = DEFAULT_SESSION_TIMEOUT_MS,
        .header_timeout_ms = DEFAULT_HEADER_TIMEOUT_MS,
    };
    appnet_opts_default(&o->net);

    int c;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (c) {
        case OPT_LISTEN:
            parse_listen(optarg, &o->listen);
            o->listen_text = optarg;
            break;
        case OPT_SLOTS:
            o->slots = (unsigned)appnet_number_arg("--slots", optarg, 1, SN_MAX_SLOTS);
            break;
        case OPT_MAX_CONNS:
            o->max_conns = (unsigned)appnet_number_arg("--max-conns", optarg, 1, SN_MAX_SLOTS);
            break;
        case OPT_IDLE:
            o->idle_ms = (uint32_t)appnet_number_arg("--idle-ms", optarg, 0, MAX_MS);
            break;
        case OPT_CLOSE_TIMEOUT:
            o->close_timeout_ms =
                (uint32_t)appnet_number_arg("--close-timeout-ms", optarg, 1, MAX_MS);
            break;
        case OPT_BACKLOG:
            o->backlog = (unsigned)appnet_number_arg("--backlog", optarg, 0, MAX_BACKLOG);
            break;
        case OPT_BACKLOG_TIMEOUT:
            o->backlog_timeout_ms =
                (uint32_t)appnet_number_arg("--backlog-timeout-ms", optarg, 1, MAX_MS);
            break;
        case OPT_ROOT:
            o->root = optarg;
            break;
        case OPT_SD:
            if (optarg[0] == '\0')
                appnet_bad_option("--sd", "a folder", optarg);
            o->sd = optarg;
            break;
        case OPT_UPLOAD_MAX: {
            unsigned long long v;
            if (!appnet_parse_ullong(optarg, 0, MAX_UPLOAD_MAX, &v))
                appnet_bad_option("--upload-max", "a number of bytes", optarg);
            o->upload_max = v;
            break;
        }
        case OPT_PASSWORD:
            /* An empty password is "none": the client always sends one, so
             * there is nothing to tell apart. */
            o->password = optarg[0] ? optarg : NULL;
            break;
        case OPT_SESSION_TIMEOUT:
            o->session_timeout_ms =
                (uint32_t)appnet_number_arg("--session-timeout-ms", optarg, 100, MAX_MS);
            break;
        case OPT_HEADER_TIMEOUT:
            o->header_timeout_ms =
                (uint32_t)appnet_number_arg("--header-timeout-ms", optarg, 100, MAX_MS);
            break;
        case OPT_LINK:
            if (optarg[0] == '\0')
                appnet_bad_option("--link", "unix:PATH, serial:DEVICE[,BAUD] or exec:COMMAND",
                                  optarg);
            o->link = optarg;
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
    if (o->link && o->net.backend == APPNET_LWIP) {
        fprintf(stderr, PROG ": --link and --backend lwip exclude each other (the daemon's "
                        "network is the daemon's: slotnetd --backend lwip)\n");
        exit(2);
    }
    appnet_check_options(&o->net);
    if (o->link)
        return; /* the slot count is the daemon's: checked once it is known */
    if (o->max_conns == 0)
        o->max_conns = o->slots;
    if (o->max_conns > o->slots) {
        fprintf(stderr, PROG ": --max-conns %u is more than --slots %u\n", o->max_conns,
                o->slots);
        exit(2);
    }
}

/* Resolves --root once; file_open() checks every file against it. */
static void set_root(struct web *w, const char *root)
{
    struct stat st;
    if (!realpath(root, w->root) || stat(w->root, &st) != 0 || !S_ISDIR(st.st_mode)) {
        fprintf(stderr, PROG ": --root: '%s' is not a readable directory\n", root);
        exit(2);
    }
    w->root_len = strlen(w->root);
    if (w->root_len == 1) /* "/": keep no trailing slash, so "/x" joins cleanly */
        w->root_len = 0;
    w->root[w->root_len] = '\0';
}

/* Makes the storage folder (and the folders DWC expects in it) if missing,
 * and keeps a descriptor: every rr_ path is opened relative to it. */
static void set_sd(struct web *w, const char *sd)
{
    static const char *const subdirs[] = {"gcodes", "macros", "sys"};
    if (mkdir(sd, 0755) != 0 && errno != EEXIST) {
        fprintf(stderr, PROG ": --sd: cannot create '%s': %s\n", sd, strerror(errno));
        exit(2);
    }
    if (!realpath(sd, w->sd) ||
        (w->sd_fd = open(w->sd, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) {
        fprintf(stderr, PROG ": --sd: '%s' is not a usable folder\n", sd);
        exit(2);
    }
    for (size_t i = 0; i < sizeof subdirs / sizeof subdirs[0]; i++) {
        if (mkdirat(w->sd_fd, subdirs[i], 0755) != 0 && errno != EEXIST) {
            fprintf(stderr, PROG ": --sd: cannot create '%s/%s': %s\n", w->sd, subdirs[i],
                    strerror(errno));
            exit(2);
        }
    }
}

/* One loop turn's work: the longest, and a histogram on the core's bounds. */
static void count_turn(struct web *w, uint64_t us)
{
    uint32_t t = us > UINT32_MAX ? UINT32_MAX : (uint32_t)us;
    if (t > w->longest_turn_us)
        w->longest_turn_us = t;
    unsigned b = 0;
    while (b + 1 < SN_POLL_HIST_BUCKETS && t > sn_poll_hist_bound(b))
        b++;
    w->turn_hist[b]++;
}

static void install_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sigemptyset(&sa.sa_mask);
    sa.sa_handler = on_signal;
    /* No SA_RESTART: the signal must cut the backend's wait short. */
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sa.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &sa, NULL); /* a peer gone mid-write is an error code, not a death */
}

/* The slot table on slotnetd: open the link, size the app to the daemon's
 * table, listen through it. 0, or the exit status. */
static int start_link(struct web *w, struct options *o)
{
    int err = web_net_open_link(w, o->link);
    if (err < 0) {
        fprintf(stderr, PROG ": --link %s: %s\n", o->link,
                err == SN_EINVAL ? "not a usable target" : "no slotnetd answers there");
        return err == SN_EINVAL ? 2 : 1;
    }
    w->link_target = o->link;
    unsigned slots = web_net_slot_count(w);
    if (o->max_conns == 0)
        o->max_conns = slots;
    if (o->max_conns > slots) {
        fprintf(stderr, PROG ": --max-conns %u is more than the daemon's %u slots\n",
                o->max_conns, slots);
        return 2;
    }
    o->slots = slots;
    w->nconns = slots;
    w->conns = calloc(slots, sizeof *w->conns);
    if (!w->conns) {
        fprintf(stderr, PROG ": out of memory\n");
        return 1;
    }
    web_conns_init(w);
    return 0;
}

int main(int argc, char **argv)
{
    struct options o;
    static struct web w; /* static: its root path buffer is not small */
    char lwip_listen[INET_ADDRSTRLEN + 8];

    parse_options(argc, argv, &o);
    if (appnet_check_build(&o.net) != 0)
        return 1;
    if (o.net.backend == APPNET_LWIP) { /* --listen's port on the stack's own address */
        struct in_addr a = {.s_addr = htonl(o.net.lwip_addr)};
        char host[INET_ADDRSTRLEN];
        inet_ntop(AF_INET, &a, host, sizeof host);
        snprintf(lwip_listen, sizeof lwip_listen, "%s:%u", host, (unsigned)o.listen.port);
        o.listen.addr = o.net.lwip_addr;
        o.listen_text = lwip_listen;
    }
    set_root(&w, o.root);
    set_sd(&w, o.sd);
    w.password = o.password;
    w.upload_max = o.upload_max;
    w.session_timeout_ms = o.session_timeout_ms;
    w.header_timeout_ms = o.header_timeout_ms;
    install_signals();
    tzset(); /* file dates are local time, as the client reads them */
    json_init();

    int rc = 1;
    void *core_mem = NULL;
    int err;

    if (o.link) {
        rc = start_link(&w, &o);
        if (rc != 0)
            goto out;
        rc = 1;
    } else {
        sn_config cfg;
        sn_config_default(&cfg);
        cfg.slots = (uint8_t)o.slots;
        cfg.close_timeout_ms = o.close_timeout_ms;
        cfg.backlog_max = (uint16_t)o.backlog;
        cfg.backlog_timeout_ms = o.backlog_timeout_ms;
        cfg.on_event = web_on_event;
        cfg.user = &w;

        size_t core_len = sn_core_size(&cfg);
        if (core_len == 0) {
            fprintf(stderr, PROG ": the core refuses this configuration (see --help)\n");
            return 2;
        }

        /* Everything the server will ever use, allocated here. malloc's
         * alignment covers the core's 8 bytes. */
        core_mem = malloc(core_len);
        w.nconns = o.slots;
        w.conns = calloc(o.slots, sizeof *w.conns);
        if (!core_mem || !w.conns) {
            fprintf(stderr, PROG ": out of memory\n");
            goto out;
        }
        web_conns_init(&w);

        sn_backend be;
        rc = appnet_start_backend(&o.net, o.slots + o.backlog + cfg.release_queue, &be);
        if (rc != 0)
            goto out;
        rc = 1;
        w.ops = be.ops;
        w.be = be.ctx;

        sn_core *core = NULL;
        err = sn_core_init(&core, core_mem, core_len, &cfg, be);
        if (err < 0) {
            fprintf(stderr, PROG ": core: %s\n", sn_strerror(err));
            rc = err == SN_EINVAL ? 2 : 1;
            goto out;
        }
        w.core = core;
    }

    err = web_net_listen(&w, &o.listen, (uint8_t)o.max_conns, o.idle_ms);
    if (err < 0) {
        fprintf(stderr, PROG ": cannot listen on %s: %s\n", o.listen_text, sn_strerror(err));
        goto out;
    }

    if (!finish_start() || !writer_start())
        goto out;
    w.started = w.now = web_net_now(&w);
    rr_init(&w);
    if (o.link)
        printf(PROG ": serving %s on http://%s/ (%u slots on slotnetd over %s), storage %s%s\n",
               w.root_len ? w.root : "/", o.listen_text, o.slots, o.link, w.sd,
               w.password ? ", password set" : "");
    else
        printf(PROG ": serving %s on http://%s/ (%u slots, %s%s%s), storage %s%s\n",
               w.root_len ? w.root : "/", o.listen_text, o.slots, appnet_backend_name(&o.net),
               o.net.backend == APPNET_LWIP ? " on TAP " : "",
               o.net.backend == APPNET_LWIP ? o.net.tap : "", w.sd,
               w.password ? ", password set" : "");
    fflush(stdout);

    uint64_t woke = web_clock_us();
    while (!stop_signal) {
        uint32_t now = web_net_now(&w);
        w.uptime_ms += (uint32_t)(now - w.now);
        w.now = now;
        web_net_poll(&w, now);
        upload_poll(&w); /* before web_resume: an answer may free a pipeline */
        bool more = web_resume(&w);
        web_tick(&w);
        rr_tick(&w);
        if (stop_signal)
            break;
        uint32_t max_wait = finish_pending() || writer_pending() ? FINISH_POLL_MS : 100;
        count_turn(&w, web_clock_us() - woke);
        web_net_wait(&w, more ? 0 : web_net_next_timeout(&w, now, max_wait));
        woke = web_clock_us();
    }

    printf(PROG ": stopped by %s\n", stop_signal == SIGTERM ? "SIGTERM" : "SIGINT");
    appnet_print_lwip_stats();
    rc = 0;
out:;
    /* Queued writes complete first, and a body they complete goes to the
     * worker; its finishes complete before anything is let go of, so a stop
     * never leaves an upload half-written or half-renamed; then they are
     * accounted for (and answered, if the socket still takes it). */
    bool net = w.core || w.host;
    writer_stop();
    if (w.conns && net)
        upload_poll(&w);
    finish_stop();
    if (w.conns && net)
        upload_poll(&w);
    if (w.conns)
        web_release_files(&w);
    web_net_shutdown(&w);
    appnet_stop_backend();
    free(w.conns);
    free(core_mem);
    if (w.sd_fd >= 0)
        close(w.sd_fd);
    return rc;
}
