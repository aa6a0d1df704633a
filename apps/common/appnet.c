/*
 * appnet: the option helpers and the backend slotnet-web and slotnetd share
 * (see appnet.h).
 */
#include "appnet.h"

#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "slotnet/posix.h"
#ifdef SN_HAVE_LWIP
#include "slotnet/lwip.h"
#endif

/* ---- Option helpers -------------------------------------------------------- */

_Noreturn void appnet_try_help(void)
{
    fprintf(stderr, "Try '%s --help'.\n", appnet_prog);
    exit(2);
}

void appnet_no_operands(int argc, char **argv)
{
    if (optind < argc) {
        fprintf(stderr, "%s: unexpected argument '%s' (see --help)\n", appnet_prog,
                argv[optind]);
        exit(2);
    }
}

_Noreturn void appnet_bad_option(const char *opt, const char *want, const char *got)
{
    fprintf(stderr, "%s: %s: expected %s, got '%s' (see --help)\n", appnet_prog, opt, want,
            got);
    exit(2);
}

bool appnet_parse_ullong(const char *s, unsigned long long min, unsigned long long max,
                         unsigned long long *out)
{
    if (*s < '0' || *s > '9')
        return false;
    errno = 0;
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0 || *end != '\0' || v < min || v > max)
        return false;
    *out = v;
    return true;
}

bool appnet_parse_ulong(const char *s, unsigned long min, unsigned long max, unsigned long *out)
{
    unsigned long long v;
    if (!appnet_parse_ullong(s, min, max, &v))
        return false;
    *out = (unsigned long)v;
    return true;
}

unsigned long appnet_number_arg(const char *opt, const char *s, unsigned long min,
                                unsigned long max)
{
    unsigned long v;
    if (!appnet_parse_ulong(s, min, max, &v)) {
        char want[64];
        snprintf(want, sizeof want, "a number %lu..%lu", min, max);
        appnet_bad_option(opt, want, s);
    }
    return v;
}

bool appnet_parse_ipv4(const char *s, uint32_t *out)
{
    struct in_addr a;
    if (inet_pton(AF_INET, s, &a) != 1)
        return false;
    *out = ntohl(a.s_addr);
    return true;
}

/* A.B.C.D/NN (NN 1..30; without /NN, /24). */
static void parse_cidr(const char *opt, const char *s, uint32_t *addr, uint32_t *mask)
{
    static const char want[] = "A.B.C.D/NN (NN 1..30), e.g. 10.0.0.2/24";
    char host[INET_ADDRSTRLEN];
    const char *slash = strchr(s, '/');
    size_t hlen = slash ? (size_t)(slash - s) : strlen(s);
    unsigned long bits = 24;
    if (hlen >= sizeof host || (slash && !appnet_parse_ulong(slash + 1, 1, 30, &bits)))
        appnet_bad_option(opt, want, s);
    memcpy(host, s, hlen);
    host[hlen] = '\0';
    if (!appnet_parse_ipv4(host, addr) || *addr == 0)
        appnet_bad_option(opt, want, s);
    *mask = 0xffffffffu << (32 - bits);
}

/* ---- The backend options ----------------------------------------------------- */

void appnet_opts_default(struct appnet_opts *n)
{
    *n = (struct appnet_opts){
        .backend = APPNET_EPOLL,
        .tap = "sntap0",
        .lwip_addr = 0x0a000002u, /* 10.0.0.2/24 */
        .lwip_mask = 0xffffff00u,
    };
}

bool appnet_option(struct appnet_opts *n, int opt, const char *arg)
{
    switch (opt) {
    case APPNET_OPT_POLL:
        n->backend = APPNET_POLL;
        break;
    case APPNET_OPT_BACKEND:
        if (strcmp(arg, "posix") == 0 || strcmp(arg, "epoll") == 0)
            n->backend = APPNET_EPOLL;
        else if (strcmp(arg, "poll") == 0)
            n->backend = APPNET_POLL;
        else if (strcmp(arg, "lwip") == 0)
            n->backend = APPNET_LWIP;
        else
            appnet_bad_option("--backend", "posix, poll or lwip", arg);
        break;
    case APPNET_OPT_TAP:
        if (arg[0] == '\0' || strlen(arg) >= 16 || strchr(arg, '/'))
            appnet_bad_option("--tap", "an interface name of 1..15 characters", arg);
        n->tap = arg;
        n->lwip_opt = n->lwip_opt ? n->lwip_opt : "--tap";
        break;
    case APPNET_OPT_ADDR:
        parse_cidr("--addr", arg, &n->lwip_addr, &n->lwip_mask);
        n->lwip_opt = n->lwip_opt ? n->lwip_opt : "--addr";
        break;
    case APPNET_OPT_GW:
        if (!appnet_parse_ipv4(arg, &n->lwip_gw))
            appnet_bad_option("--gw", "an IPv4 address A.B.C.D", arg);
        n->lwip_opt = n->lwip_opt ? n->lwip_opt : "--gw";
        break;
    default:
        return false;
    }
    return true;
}

void appnet_check_options(const struct appnet_opts *n)
{
    if (n->lwip_opt && n->backend != APPNET_LWIP) {
        fprintf(stderr, "%s: %s is an option of --backend lwip\n", appnet_prog, n->lwip_opt);
        exit(2);
    }
}

const char *appnet_backend_name(const struct appnet_opts *n)
{
    return n->backend == APPNET_LWIP ? "lwip" : n->backend == APPNET_POLL ? "poll" : "epoll";
}

/* ---- The backend ------------------------------------------------------------- */

static sn_posix *posix_be;
#ifdef SN_HAVE_LWIP
static sn_lwip *lwip_be;
#endif

int appnet_check_build(const struct appnet_opts *n)
{
#ifndef SN_HAVE_LWIP
    if (n->backend == APPNET_LWIP) {
        fprintf(stderr, "%s: --backend lwip: this build has no lwIP backend (liblwip-dev "
                        "was not found when it was configured)\n", appnet_prog);
        return 1;
    }
#else
    (void)n;
#endif
    return 0;
}

int appnet_start_backend(const struct appnet_opts *n, unsigned handles, sn_backend *be)
{
    int err;
    if (n->backend == APPNET_LWIP) {
#ifdef SN_HAVE_LWIP
        sn_lwip_config lcfg;
        sn_lwip_config_default(&lcfg);
        lcfg.tap = n->tap;
        lcfg.addr = n->lwip_addr;
        lcfg.netmask = n->lwip_mask;
        lcfg.gateway = n->lwip_gw;
        lcfg.max_handles = handles;
        err = sn_lwip_create(&lwip_be, &lcfg);
        if (err < 0) {
            lwip_be = NULL;
            if (err == SN_EIO)
                fprintf(stderr, "%s: --backend lwip: cannot open TAP '%s': %s (needs "
                                "CAP_NET_ADMIN and /dev/net/tun)\n",
                        appnet_prog, n->tap, strerror(errno));
            else
                fprintf(stderr, "%s: --backend lwip: %s\n", appnet_prog, sn_strerror(err));
            return err == SN_EINVAL ? 2 : 1;
        }
        *be = sn_lwip_backend(lwip_be);
        return 0;
#else
        return appnet_check_build(n);
#endif
    }
    sn_posix_config pcfg;
    sn_posix_config_default(&pcfg);
    pcfg.max_handles = handles;
    pcfg.use_poll = n->backend == APPNET_POLL;
    err = sn_posix_create(&posix_be, &pcfg);
    if (err < 0) {
        fprintf(stderr, "%s: POSIX backend: %s\n", appnet_prog, sn_strerror(err));
        posix_be = NULL;
        return 1;
    }
    *be = sn_posix_backend(posix_be);
    return 0;
}

void appnet_set_extra_fds(struct pollfd *fds, unsigned n)
{
    if (posix_be)
        (void)sn_posix_set_extra_fds(posix_be, fds, n);
#ifdef SN_HAVE_LWIP
    if (lwip_be)
        (void)sn_lwip_set_extra_fds(lwip_be, fds, n);
#endif
}

void appnet_print_lwip_stats(void)
{
#ifdef SN_HAVE_LWIP
    if (lwip_be) {
        sn_lwip_stats ls;
        sn_lwip_stats_get(lwip_be, &ls);
        printf("%s: lwip: %u frames in, %u out, %u dropped in, %u dropped out, %u reset "
               "with the accept queue full, %u over the connection limit\n",
               appnet_prog, (unsigned)ls.rx_frames, (unsigned)ls.tx_frames,
               (unsigned)ls.rx_dropped, (unsigned)ls.tx_dropped,
               (unsigned)ls.accept_queue_full, (unsigned)ls.accept_over_max);
    }
#endif
}

void appnet_stop_backend(void)
{
    if (posix_be)
        sn_posix_destroy(posix_be);
    posix_be = NULL;
#ifdef SN_HAVE_LWIP
    if (lwip_be)
        sn_lwip_destroy(lwip_be);
    lwip_be = NULL;
#endif
}
