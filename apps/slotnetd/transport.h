/* slotnetd's host link transports: a UNIX socket (one host at a time), a
 * serial line or pseudo-terminal, or stdin/stdout. Every descriptor is
 * non-blocking; the daemon's loop waits on them together with the network. */
#ifndef SLOTNETD_TRANSPORT_H
#define SLOTNETD_TRANSPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <sys/types.h>
#include <sys/un.h>

enum xport_kind { XP_UNIX, XP_SERIAL, XP_STDIO };

struct xport {
    enum xport_kind kind;
    char path[sizeof(((struct sockaddr_un *)0)->sun_path)]; /* socket or device */
    unsigned baud;
    int lfd;       /* UNIX: the listening socket */
    int rfd, wfd;  /* the host's link, -1 when none (UNIX, serial: the same fd) */
    bool unlinked; /* the socket file is ours to remove */
    int stdio_flags[2]; /* stdio: stdin's and stdout's flags before, restored at the end */
};

/* "unix:PATH", "serial:DEVICE[,BAUD]" or "stdio". false with a message in
 * err when the spec is bad. */
bool xport_parse(const char *spec, struct xport *x, char *err, size_t errlen);

/* Binds the socket (mode 0600, a stale file replaced) / opens the device /
 * makes stdin and stdout non-blocking. false with a message in err. */
bool xport_open(struct xport *x, char *err, size_t errlen);

/* UNIX: takes one pending connection. Returns 1 when it became the host, 0
 * when none was pending, -1 when it was refused (a host is connected). */
int xport_accept(struct xport *x);

/* Serial: opens the device again after a hangup; false while it cannot. */
bool xport_reopen(struct xport *x);

/* > 0 bytes, 0 nothing now, -1 the host is gone (end of file, hangup, error). */
ssize_t xport_read(struct xport *x, void *buf, size_t len);
ssize_t xport_write(struct xport *x, const void *buf, size_t len);

/* Lets go of the host's descriptors (UNIX: the connection; serial: the device). */
void xport_drop(struct xport *x);

/* Closes everything and removes the socket file. */
void xport_close(struct xport *x);

const char *xport_name(const struct xport *x, char *buf, size_t len);

#endif
