/*
 * appnet: what slotnet-web and slotnetd share around the core. The option
 * helpers (numbers, IPv4 addresses, the one "expected ..., got ..." message
 * and exit status 2), the --backend/--poll/--tap/--addr/--gw options, and
 * the backend behind the core: POSIX (epoll or poll) or lwIP on a TAP.
 *
 * Messages start with appnet_prog, which each program defines as its name.
 */
#ifndef APPNET_H
#define APPNET_H

#include <poll.h>
#include <stdbool.h>
#include <stdint.h>

#include "slotnet.h"

extern const char appnet_prog[];

/* ---- Option helpers -------------------------------------------------------- */

/* "PROG: OPT: expected WANT, got 'GOT' (see --help)", exit 2. */
_Noreturn void appnet_bad_option(const char *opt, const char *want, const char *got);

/* After getopt_long's own message: "Try 'PROG --help'.", exit 2. */
_Noreturn void appnet_try_help(void);

/* After the options: an operand left over exits 2. */
void appnet_no_operands(int argc, char **argv);

/* Decimal digits only: no sign, no spaces, no suffix, no overflow. */
bool appnet_parse_ullong(const char *s, unsigned long long min, unsigned long long max,
                         unsigned long long *out);
bool appnet_parse_ulong(const char *s, unsigned long min, unsigned long max,
                        unsigned long *out);

/* A number min..max, or appnet_bad_option. */
unsigned long appnet_number_arg(const char *opt, const char *s, unsigned long min,
                                unsigned long max);

/* A.B.C.D, host byte order. */
bool appnet_parse_ipv4(const char *s, uint32_t *out);

/* ---- The backend options ----------------------------------------------------- */

enum appnet_kind { APPNET_EPOLL, APPNET_POLL, APPNET_LWIP };

struct appnet_opts {
    enum appnet_kind backend;
    /* --backend lwip: the TAP and the stack's own address */
    const char *tap;
    uint32_t lwip_addr, lwip_mask, lwip_gw;
    const char *lwip_opt; /* the first lwIP option given, to refuse it without lwip */
};

/* getopt_long values of the shared options; far above the programs' own. */
enum {
    APPNET_OPT_POLL = 0x1000,
    APPNET_OPT_BACKEND,
    APPNET_OPT_TAP,
    APPNET_OPT_ADDR,
    APPNET_OPT_GW,
};

/* Each program keeps these entries where its longopts had them: getopt's
 * "ambiguous" message lists the candidates in table order. */
#define APPNET_LONGOPT_POLL {"poll", no_argument, NULL, APPNET_OPT_POLL}
#define APPNET_LONGOPT_BACKEND {"backend", required_argument, NULL, APPNET_OPT_BACKEND}
#define APPNET_LONGOPT_TAP {"tap", required_argument, NULL, APPNET_OPT_TAP}
#define APPNET_LONGOPT_ADDR {"addr", required_argument, NULL, APPNET_OPT_ADDR}
#define APPNET_LONGOPT_GW {"gw", required_argument, NULL, APPNET_OPT_GW}

/* posix, sntap0, 10.0.0.2/24, no gateway. */
void appnet_opts_default(struct appnet_opts *n);

/* getopt_long's value opt with its argument: false when opt is not one of
 * the APPNET_OPT_ values; a bad argument exits 2. */
bool appnet_option(struct appnet_opts *n, int opt, const char *arg);

/* After getopt: an lwIP option without --backend lwip exits 2. */
void appnet_check_options(const struct appnet_opts *n);

/* "lwip", "poll" or "epoll". */
const char *appnet_backend_name(const struct appnet_opts *n);

/* ---- The backend ------------------------------------------------------------- */

/* Without lwIP in this build, --backend lwip is refused here: 1 after the
 * reason on stderr; else 0. */
int appnet_check_build(const struct appnet_opts *n);

/* Creates the backend for handles descriptors. 0, or the exit status after
 * a one-line reason on stderr. One backend per process. */
int appnet_start_backend(const struct appnet_opts *n, unsigned handles, sn_backend *be);

/* fds[n] (the caller's) into the backend's wait, each turn's revents with it. */
void appnet_set_extra_fds(struct pollfd *fds, unsigned n);

/* The lwIP counters, one line on stdout; nothing for the POSIX backend. */
void appnet_print_lwip_stats(void);

/* Destroys the backend, if any. */
void appnet_stop_backend(void);

#endif
