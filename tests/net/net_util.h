/*
 * Helpers for the real-socket tests: 127.0.0.1 only, plain client sockets,
 * bounded waits. Every wait has a deadline so a broken build fails instead
 * of hanging.
 */
#ifndef SN_TEST_NET_UTIL_H
#define SN_TEST_NET_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "slotnet/posix.h"

#define NU_LOOPBACK 0x7f000001u

/* Which readiness mechanism the current cmocka group runs against. */
extern bool nu_use_poll;
/* The address clients connect to: 127.0.0.1 unless a test points them at
 * another stack (the lwIP backend behind a TAP). Host byte order. */
extern uint32_t nu_target;

/* Monotonic clock in ms (64-bit, no wrap in tests). */
uint64_t nu_ms(void);
void nu_sleep_ms(unsigned ms);

/* A port that was free a moment ago (bind to 0, read it, close). */
uint16_t nu_free_port(void);

/* Listen through the backend on a free port, retrying if it was taken. */
int nu_backend_listen(const sn_backend_ops *ops, void *ctx, void **lh, uint16_t *port);

/* Blocking connect to nu_target:port; -1 on failure. rcvbuf > 0 sets
 * SO_RCVBUF before connecting (shrinks the window). */
int nu_client(uint16_t port, int rcvbuf);
/* Non-blocking connect started; -1 on failure. */
int nu_client_nb(uint16_t port);
void nu_set_nonblock(int fd);
/* Close with RST (SO_LINGER {1,0}). */
void nu_close_rst(int fd);

/* poll() one fd for events within timeout_ms; returns revents or 0. */
short nu_poll1(int fd, short events, int timeout_ms);

/* Read until EOF, error, len bytes or the deadline. Returns bytes read;
 * *end is 0 on EOF, errno on error, -1 on deadline or buffer full. */
size_t nu_read_all(int fd, void *buf, size_t len, int timeout_ms, int *end);

/* Lowest descriptor number not in use. */
int nu_lowest_free_fd(void);
/* Lower (or restore) the soft RLIMIT_NOFILE; nu_rlimit_restore undoes it. */
int nu_rlimit_set(unsigned long soft);
void nu_rlimit_restore(void);

/* A fixture's end: the descriptor limit restored, every open client fd closed. */
void nu_teardown_clients(int *fd, int n);

/* Deterministic test payload. */
void nu_fill(uint8_t *buf, size_t len, uint32_t seed);

#endif
