/*
 * POSIX sockets backend (Linux): see include/slotnet/posix.h.
 *
 * wait() is the only call that blocks and the only place kernel readiness
 * becomes handle flags; every other op is one or two non-blocking syscalls.
 *
 * Readiness must never spin the caller's loop:
 * - epoll: connections are edge-triggered, so each change is reported once.
 *   Listeners are level-triggered (a pending connection must keep waking the
 *   loop until accepted) and so are taken out of the set while paused.
 * - poll(): level-triggered by nature, so the interest masks emulate edges:
 *   no POLLIN while READABLE is still set, no POLLIN/POLLRDHUP once the FIN
 *   is recorded, POLLOUT only after a short send or while connecting, and a
 *   reset or failed connection is not polled at all (POLLHUP/POLLERR cannot
 *   be masked and would otherwise fire on every call).
 *
 * Errors are translated to SN_E* here and nowhere else.
 */
#define _GNU_SOURCE /* accept4, SOCK_NONBLOCK, MSG_MORE, POLLRDHUP */

#include "slotnet/posix.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <linux/sockios.h> /* SIOCOUTQ, SIOCOUTQNSD */

enum { PH_FREE, PH_CONN, PH_LISTEN };

typedef struct ph {
    int fd;          /* -1 once closed, aborted or free */
    uint8_t kind;    /* PH_* */
    bool connecting; /* outgoing connect not yet resolved */
    bool want_out;   /* a send came up short: report the next writable edge */
    bool paused;     /* listener: out of the interest set */
    bool watched;    /* in the epoll set */
    bool corked;     /* bytes sent with MSG_MORE since the last flush */
    uint32_t flags;  /* SN_BF_* */
    int error;       /* SN_E* behind SN_BF_FAILED / SN_BF_RESET */
    struct ph *next; /* free list */
} ph;

struct sn_posix {
    sn_posix_config cfg;
    int epfd;     /* -1 in poll mode */
    int spare_fd; /* reserve descriptor given up on EMFILE; -1 if none */
    ph *conns;    /* cfg.max_handles */
    ph *lsns;     /* cfg.max_listeners */
    ph *free_conns;
    unsigned conns_used, lsns_used;
    struct pollfd *pfds; /* poll mode: one per handle */
    ph **powner;
    struct epoll_event *evs; /* epoll mode */
    int evcap;
    /* The app's own descriptors (sn_posix_set_extra_fds) and, in epoll mode,
     * what is registered for each. */
    struct pollfd *xfds;
    unsigned nx;
    struct xreg {
        int fd;       /* registered descriptor, -1 none */
        short events; /* its interest */
        bool always;  /* epoll refused it (regular file): always ready */
    } xreg[SN_POSIX_EXTRA_MAX];
};

#define CONN_EVENTS (EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET)
#define DRAIN_CHUNK 2048

/* ---- Helpers ------------------------------------------------------------ */

static int xlate(int e)
{
    switch (e) {
    case EAGAIN:
#if EWOULDBLOCK != EAGAIN
    case EWOULDBLOCK:
#endif
        return SN_EAGAIN;
    case ENOBUFS:
    case ENOMEM:
        return SN_ENOMEM;
    case ECONNRESET:
    case EPIPE:
    case ECONNABORTED:
        return SN_ECONNRESET;
    case ECONNREFUSED:
        return SN_ECONNREFUSED;
    case ETIMEDOUT:
        return SN_ETIMEDOUT;
    case EMFILE:
    case ENFILE:
        return SN_EMFILE;
    case EADDRINUSE:
        return SN_EADDRINUSE;
    case ENETUNREACH:
    case EHOSTUNREACH:
        return SN_EUNREACH;
    default:
        return SN_EIO;
    }
}

static ph *conn_of(void *ch)
{
    ph *h = ch;
    return (h && h->kind == PH_CONN) ? h : NULL;
}

/* The connection behind ch, still open: 0, SN_EINVAL (not one of ours) or
 * SN_ESTATE (closed or aborted, awaiting release). */
static int open_conn(void *ch, ph **out)
{
    ph *h = conn_of(ch);
    *out = h;
    if (!h)
        return SN_EINVAL;
    return h->fd < 0 ? SN_ESTATE : 0;
}

static ph *lsn_of(void *lh)
{
    ph *h = lh;
    return (h && h->kind == PH_LISTEN) ? h : NULL;
}

/* The pending socket error, cleared by reading it. */
static int sock_error(int fd)
{
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
        return errno;
    return err;
}

static void set_int_opt(int fd, int level, int name, int val)
{
    (void)setsockopt(fd, level, name, &val, sizeof val);
}

/* Setting TCP_NODELAY (even when already set) transmits whatever MSG_MORE
 * held back: the kernel pushes pending frames on that setsockopt. */
static void flush_corked(int fd) { set_int_opt(fd, IPPROTO_TCP, TCP_NODELAY, 1); }

/*
 * Every connection: no Nagle (push means now), and a bounded send buffer.
 * Kernel autotuning grows it to megabytes, all of which a close would then
 * have to drain within close_timeout_ms; a device's stack holds tens of KiB.
 */
static void tune(sn_posix *be, int fd)
{
    set_int_opt(fd, IPPROTO_TCP, TCP_NODELAY, 1);
    if (be->cfg.sndbuf > 0 && be->cfg.sndbuf <= INT_MAX)
        set_int_opt(fd, SOL_SOCKET, SO_SNDBUF, (int)be->cfg.sndbuf);
}

/* SO_LINGER {1,0}: close() sends RST and discards the send queue. */
static void close_rst(int fd)
{
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    (void)setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    (void)close(fd);
}

static void to_sa(const sn_endpoint *ep, struct sockaddr_in *sa)
{
    *sa = (struct sockaddr_in){.sin_family = AF_INET};
    sa->sin_addr.s_addr = htonl(ep->addr);
    sa->sin_port = htons(ep->port);
}

static void from_sa(const struct sockaddr_in *sa, sn_endpoint *ep)
{
    ep->addr = ntohl(sa->sin_addr.s_addr);
    ep->port = ntohs(sa->sin_port);
}

static void local_of(int fd, sn_endpoint *ep)
{
    struct sockaddr_in sa = {0};
    socklen_t len = sizeof sa;
    if (getsockname(fd, (struct sockaddr *)&sa, &len) < 0)
        sa = (struct sockaddr_in){0};
    from_sa(&sa, ep);
}

static int open_spare(void) { return open("/dev/null", O_RDONLY | O_CLOEXEC); }

static int watch(sn_posix *be, ph *h, uint32_t events)
{
    if (be->epfd < 0)
        return 0;
    struct epoll_event ev = {.events = events, .data.ptr = h};
    if (epoll_ctl(be->epfd, EPOLL_CTL_ADD, h->fd, &ev) < 0)
        return xlate(errno);
    h->watched = true;
    return 0;
}

static void unwatch(sn_posix *be, ph *h)
{
    if (h->watched) {
        (void)epoll_ctl(be->epfd, EPOLL_CTL_DEL, h->fd, NULL);
        h->watched = false;
    }
}

static ph *conn_take(sn_posix *be, int fd)
{
    ph *h = be->free_conns;
    be->free_conns = h->next;
    *h = (ph){.fd = fd, .kind = PH_CONN};
    be->conns_used++;
    return h;
}

static void conn_put(sn_posix *be, ph *h)
{
    *h = (ph){.fd = -1, .kind = PH_FREE, .next = be->free_conns};
    be->free_conns = h;
    be->conns_used--;
}

/* A connection error seen by recv/send/wait: the connection is gone. */
static int mark_reset(ph *h, int err)
{
    if (!(h->flags & SN_BF_RESET)) {
        h->flags |= SN_BF_RESET;
        h->error = err;
    }
    return h->error;
}

/* ---- Events ------------------------------------------------------------- */

static void conn_event(ph *h, bool in, bool out, bool rdhup, bool bad)
{
    if (h->connecting) {
        if (!out && !bad)
            return;
        int err = sock_error(h->fd);
        h->connecting = false;
        if (err != 0 || bad) {
            h->flags |= SN_BF_FAILED;
            h->error = err ? xlate(err) : SN_EIO;
            return;
        }
        h->flags |= SN_BF_CONNECTED;
    }
    if (in)
        h->flags |= SN_BF_READABLE;
    if (rdhup) /* the FIN itself is something recv must see */
        h->flags |= SN_BF_PEER_FIN | SN_BF_READABLE;
    if (out && h->want_out) {
        h->want_out = false;
        h->flags |= SN_BF_WRITABLE;
    }
    if (bad && !(h->flags & SN_BF_RESET)) {
        int err = sock_error(h->fd);
        mark_reset(h, err ? xlate(err) : SN_ECONNRESET);
    }
}

static short poll_interest(const ph *h)
{
    if (h->connecting)
        return POLLOUT; /* completion shows as writable, failure as POLLERR */
    short ev = 0;
    if (!(h->flags & (SN_BF_READABLE | SN_BF_PEER_FIN)))
        ev |= POLLIN;
    if (!(h->flags & SN_BF_PEER_FIN))
        ev |= POLLRDHUP;
    if (h->want_out)
        ev |= POLLOUT;
    return ev;
}

/* ---- The app's descriptors ---------------------------------------------- */

static uint32_t to_epoll(short ev)
{
    return ((ev & POLLIN) ? EPOLLIN : 0u) | ((ev & POLLOUT) ? EPOLLOUT : 0u) |
           ((ev & POLLRDHUP) ? EPOLLRDHUP : 0u);
}

static short from_epoll(uint32_t e)
{
    return (short)(((e & EPOLLIN) ? POLLIN : 0) | ((e & EPOLLOUT) ? POLLOUT : 0) |
                   ((e & EPOLLRDHUP) ? POLLRDHUP : 0) | ((e & EPOLLERR) ? POLLERR : 0) |
                   ((e & EPOLLHUP) ? POLLHUP : 0));
}

static void xunreg(sn_posix *be, struct xreg *x)
{
    if (x->fd >= 0 && !x->always)
        (void)epoll_ctl(be->epfd, EPOLL_CTL_DEL, x->fd, NULL);
    *x = (struct xreg){.fd = -1};
}

/* Brings the epoll set in line with the caller's fds; true when one of them
 * is ready without waiting. */
static bool xsync_epoll(sn_posix *be)
{
    bool ready = false;
    for (unsigned i = 0; i < be->nx; i++) {
        struct pollfd *p = &be->xfds[i];
        struct xreg *x = &be->xreg[i];
        p->revents = 0;
        if (p->fd != x->fd)
            xunreg(be, x);
        if (p->fd < 0)
            continue;
        if (!x->always && (x->fd < 0 || x->events != p->events)) {
            struct epoll_event ev = {.events = to_epoll(p->events), .data.ptr = x};
            int rc = epoll_ctl(be->epfd, x->fd < 0 ? EPOLL_CTL_ADD : EPOLL_CTL_MOD, p->fd, &ev);
            if (rc < 0 && x->fd >= 0 && errno == ENOENT) /* closed and reopened behind our back */
                rc = epoll_ctl(be->epfd, EPOLL_CTL_ADD, p->fd, &ev);
            x->always = rc < 0 && errno == EPERM;
            x->fd = rc == 0 || x->always ? p->fd : -1;
            x->events = p->events;
            if (rc < 0 && !x->always)
                p->revents = POLLERR; /* e.g. EBADF: tell the app, do not sleep on it */
        }
        if (x->always)
            p->revents = (short)(p->events & (POLLIN | POLLOUT));
        ready = ready || p->revents != 0;
    }
    return ready;
}

static int wait_epoll(sn_posix *be, int tmo)
{
    if (xsync_epoll(be))
        tmo = 0;
    int n = epoll_wait(be->epfd, be->evs, be->evcap, tmo);
    if (n < 0)
        return errno == EINTR ? 0 : SN_EIO;
    for (int i = 0; i < n; i++) {
        void *ptr = be->evs[i].data.ptr;
        uint32_t e = be->evs[i].events;
        if (ptr >= (void *)be->xreg && ptr < (void *)(be->xreg + SN_POSIX_EXTRA_MAX)) {
            unsigned xi = (unsigned)((struct xreg *)ptr - be->xreg);
            if (xi < be->nx)
                be->xfds[xi].revents |= from_epoll(e);
            continue;
        }
        ph *h = ptr;
        /* Listeners need no flag: the core tries accept on every pass. */
        if (h->kind == PH_CONN && h->fd >= 0)
            conn_event(h, e & EPOLLIN, e & EPOLLOUT, e & EPOLLRDHUP, e & (EPOLLERR | EPOLLHUP));
    }
    return n;
}

static int wait_poll(sn_posix *be, int tmo)
{
    nfds_t n = 0;
    for (unsigned i = 0; i < be->cfg.max_listeners; i++) {
        ph *h = &be->lsns[i];
        if (h->kind == PH_LISTEN && h->fd >= 0 && !h->paused) {
            be->pfds[n] = (struct pollfd){.fd = h->fd, .events = POLLIN};
            be->powner[n++] = h;
        }
    }
    for (unsigned i = 0; i < be->cfg.max_handles; i++) {
        ph *h = &be->conns[i];
        if (h->kind != PH_CONN || h->fd < 0 || (h->flags & (SN_BF_RESET | SN_BF_FAILED)))
            continue;
        /* Polled even with no interest left, to see a reset. */
        be->pfds[n] = (struct pollfd){.fd = h->fd, .events = poll_interest(h)};
        be->powner[n++] = h;
    }
    nfds_t xfirst = n;
    for (unsigned i = 0; i < be->nx; i++) {
        be->xfds[i].revents = 0;
        be->pfds[n] = be->xfds[i]; /* poll ignores a negative fd */
        be->powner[n++] = NULL;
    }
    int r = poll(be->pfds, n, tmo);
    if (r < 0)
        return errno == EINTR ? 0 : SN_EIO;
    for (unsigned i = 0; i < be->nx; i++)
        be->xfds[i].revents = be->pfds[xfirst + i].revents;
    for (nfds_t i = 0; i < xfirst && r > 0; i++) {
        short e = be->pfds[i].revents;
        ph *h = be->powner[i];
        if (e && h->kind == PH_CONN)
            conn_event(h, e & POLLIN, e & POLLOUT, e & POLLRDHUP, e & (POLLERR | POLLHUP | POLLNVAL));
    }
    return r;
}

/* ---- Ops ---------------------------------------------------------------- */

static uint64_t mono_us(void)
{
    struct timespec ts;
    (void)clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static uint32_t op_now_ms(void *be)
{
    (void)be;
    return (uint32_t)(mono_us() / 1000u);
}

static uint32_t op_clock_us(void *be)
{
    (void)be;
    return (uint32_t)mono_us();
}

static int op_wait(void *vbe, uint32_t timeout_ms)
{
    sn_posix *be = vbe;
    int tmo = timeout_ms > INT_MAX ? INT_MAX : (int)timeout_ms;
    return be->epfd >= 0 ? wait_epoll(be, tmo) : wait_poll(be, tmo);
}

static int op_listen(void *vbe, const sn_endpoint *local, void **lh)
{
    sn_posix *be = vbe;
    if (!local || !lh)
        return SN_EINVAL;
    ph *h = NULL;
    for (unsigned i = 0; i < be->cfg.max_listeners && !h; i++)
        if (be->lsns[i].kind == PH_FREE)
            h = &be->lsns[i];
    if (!h)
        return SN_ENOSPC;

    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return xlate(errno);
    set_int_opt(fd, SOL_SOCKET, SO_REUSEADDR, 1);
    struct sockaddr_in sa;
    to_sa(local, &sa);
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(fd, be->cfg.listen_backlog) < 0) {
        int err = xlate(errno);
        (void)close(fd);
        return err;
    }
    *h = (ph){.fd = fd, .kind = PH_LISTEN};
    int err = watch(be, h, EPOLLIN); /* level-triggered */
    if (err < 0) {
        (void)close(fd);
        *h = (ph){.fd = -1, .kind = PH_FREE};
        return err;
    }
    be->lsns_used++;
    *lh = h;
    return 0;
}

static void op_unlisten(void *vbe, void *lh)
{
    sn_posix *be = vbe;
    ph *h = lsn_of(lh);
    if (!h)
        return;
    unwatch(be, h);
    (void)close(h->fd);
    *h = (ph){.fd = -1, .kind = PH_FREE};
    be->lsns_used--;
}

static void op_listen_pause(void *vbe, void *lh, bool paused)
{
    sn_posix *be = vbe;
    ph *h = lsn_of(lh);
    if (!h)
        return;
    h->paused = paused;
    /* A level-triggered listener with a connection pending would wake
     * epoll_wait at once on every call: out of the set while paused. */
    if (paused)
        unwatch(be, h);
    else if (!h->watched)
        (void)watch(be, h, EPOLLIN); /* on failure accept() tries again */
}

/*
 * Out of descriptors: the pending connections cannot be accepted, and left
 * in the kernel's queue they rot until the client gives up. Give up the spare
 * descriptor, accept each pending connection into it and reset it, so the
 * clients see a clear RST (libuv's trick), then take the spare back.
 */
static void shed_pending(sn_posix *be, int lfd)
{
    if (be->spare_fd < 0) {
        be->spare_fd = open_spare();
        return;
    }
    (void)close(be->spare_fd);
    be->spare_fd = -1;
    for (int i = 0; i <= be->cfg.listen_backlog; i++) {
        int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            break;
        }
        close_rst(fd);
    }
    be->spare_fd = open_spare();
}

static int op_accept(void *vbe, void *lh, void **ch, sn_endpoint *local, sn_endpoint *remote)
{
    sn_posix *be = vbe;
    ph *l = lsn_of(lh);
    if (!l || !ch)
        return SN_EINVAL;
    if (be->epfd >= 0 && !l->paused && !l->watched)
        (void)watch(be, l, EPOLLIN);
    for (int tries = 0; tries < 8; tries++) {
        struct sockaddr_in ra = {0};
        socklen_t rlen = sizeof ra;
        int fd = accept4(l->fd, (struct sockaddr *)&ra, &rlen, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            int e = errno;
            /* The connection died in the queue, or a network error Linux
             * passes on: the next one may be fine. */
            if (e == EINTR || e == ECONNABORTED || e == EPROTO)
                continue;
            if (e == EMFILE || e == ENFILE) {
                shed_pending(be, l->fd);
                return SN_EMFILE;
            }
            return xlate(e);
        }
        if (!be->free_conns) {
            close_rst(fd); /* tell the client now rather than let it rot */
            return SN_ENOMEM;
        }
        tune(be, fd);
        ph *h = conn_take(be, fd);
        int err = watch(be, h, CONN_EVENTS);
        if (err < 0) {
            close_rst(fd);
            conn_put(be, h);
            return err == SN_EIO ? SN_ENOMEM : err;
        }
        if (local)
            local_of(fd, local);
        if (remote)
            from_sa(&ra, remote);
        *ch = h;
        return 0;
    }
    return SN_EAGAIN;
}

static int op_connect(void *vbe, const sn_endpoint *remote, void **ch, sn_endpoint *local)
{
    sn_posix *be = vbe;
    if (!remote || !ch)
        return SN_EINVAL;
    if (!be->free_conns)
        return SN_ENOMEM;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return xlate(errno);
    tune(be, fd);
    struct sockaddr_in sa;
    to_sa(remote, &sa);
    bool done = connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0;
    /* EINTR on a non-blocking connect: it goes on asynchronously. */
    if (!done && errno != EINPROGRESS && errno != EINTR) {
        int err = xlate(errno);
        (void)close(fd);
        return err;
    }
    ph *h = conn_take(be, fd);
    int err = watch(be, h, CONN_EVENTS);
    if (err < 0) {
        close_rst(fd);
        conn_put(be, h);
        return err == SN_EIO ? SN_ENOMEM : err;
    }
    h->connecting = !done;
    if (done)
        h->flags |= SN_BF_CONNECTED;
    if (local)
        local_of(fd, local);
    *ch = h;
    return 0;
}

static void op_conn_state(void *be, void *ch, sn_bconn_state *st)
{
    (void)be;
    ph *h = conn_of(ch);
    if (!st)
        return;
    st->flags = h ? h->flags : SN_BF_ERROR;
    st->error = h ? h->error : SN_EINVAL;
}

/* A failed recv/send: a dead connection is marked reset for the core. */
static int io_error(ph *h, int e)
{
    int err = xlate(e);
    if (err == SN_ECONNRESET || err == SN_ETIMEDOUT)
        return mark_reset(h, err);
    return err;
}

static int op_recv(void *be, void *ch, void *buf, size_t len)
{
    (void)be;
    if (!buf && len)
        return SN_EINVAL;
    ph *h;
    int err = open_conn(ch, &h);
    if (err < 0)
        return err;
    if (h->flags & SN_BF_FAILED)
        return h->error;
    if (len == 0)
        return 0;
    if (len > INT_MAX)
        len = INT_MAX;
    ssize_t n = recv(h->fd, buf, len, 0);
    if (n > 0) {
        /* A short read emptied the buffer: ask for the next edge. */
        if ((size_t)n < len)
            h->flags &= ~SN_BF_READABLE;
        return (int)n;
    }
    if (n == 0) {
        h->flags |= SN_BF_PEER_FIN;
        /* wait() already took the socket error; don't turn a reset into EOF. */
        return (h->flags & SN_BF_RESET) ? h->error : SN_ECLOSED;
    }
    int e = errno;
    if (e == EAGAIN || e == EWOULDBLOCK) {
        h->flags &= ~SN_BF_READABLE;
        return 0;
    }
    if (e == EINTR)
        return 0;
    return io_error(h, e);
}

static void short_send(ph *h)
{
    h->want_out = true;
    h->flags &= ~SN_BF_WRITABLE;
}

static int op_send(void *be, void *ch, const void *buf, size_t len, bool push)
{
    (void)be;
    if (!buf && len)
        return SN_EINVAL;
    ph *h;
    int err = open_conn(ch, &h);
    if (err < 0)
        return err;
    if (h->flags & (SN_BF_FAILED | SN_BF_RESET))
        return h->error;
    if (len == 0) {
        if (push && h->corked)
            flush_corked(h->fd);
        h->corked = h->corked && !push;
        return 0;
    }
    if (len > INT_MAX)
        len = INT_MAX;
    ssize_t n = send(h->fd, buf, len, MSG_NOSIGNAL | (push ? 0 : MSG_MORE));
    if (n >= 0) {
        h->corked = !push; /* a pushed send flushes what MSG_MORE held too */
        if ((size_t)n < len)
            short_send(h);
        return (int)n;
    }
    int e = errno;
    if (e == EAGAIN || e == EWOULDBLOCK || e == ENOBUFS || e == ENOMEM) {
        short_send(h); /* the next writable edge (or the core's retry) resumes it */
        return e == ENOBUFS || e == ENOMEM ? SN_ENOMEM : 0;
    }
    if (e == EINTR)
        return 0;
    return io_error(h, e);
}

static int op_tx_queued(void *be, void *ch, uint32_t *unsent, uint32_t *unacked)
{
    (void)be;
    ph *h;
    int err = open_conn(ch, &h);
    if (err < 0)
        return err;
    int nsd = 0, outq = 0;
    /* NSD first: it can only shrink meanwhile, so clamping covers the race. */
    if (ioctl(h->fd, SIOCOUTQNSD, &nsd) < 0 || ioctl(h->fd, SIOCOUTQ, &outq) < 0)
        return xlate(errno);
    if (nsd > outq)
        nsd = outq;
    if (nsd < 0)
        nsd = 0;
    /* Unsent bytes with nothing in flight: a coalesced (MSG_MORE) tail that
     * no ACK will push out; only the probe timer would, one RTO (>= 200 ms)
     * later. Whoever is counting (a draining close) wants it gone now. */
    if (nsd > 0 && nsd == outq && h->corked) {
        flush_corked(h->fd);
        h->corked = false;
    }
    if (unsent)
        *unsent = (uint32_t)nsd;
    if (unacked)
        *unacked = (uint32_t)(outq - nsd);
    return 0;
}

static int op_rx_avail(void *be, void *ch)
{
    (void)be;
    ph *h;
    int err = open_conn(ch, &h);
    if (err < 0)
        return err;
    int n = 0;
    if (ioctl(h->fd, FIONREAD, &n) < 0)
        return xlate(errno);
    return n < 0 ? 0 : n;
}

/*
 * Linux reports SO_SNDBUF doubled (the other half pays for its bookkeeping),
 * so half of it is taken as the payload the socket holds, less what SIOCOUTQ
 * says is still queued. An estimate: send() is the authority.
 */
static int op_tx_space(void *be, void *ch)
{
    (void)be;
    ph *h;
    int err = open_conn(ch, &h);
    if (err < 0)
        return err;
    if (h->flags & (SN_BF_FAILED | SN_BF_RESET) || h->connecting)
        return 0;
    int sndbuf = 0, outq = 0;
    socklen_t len = sizeof sndbuf;
    if (getsockopt(h->fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, &len) < 0 ||
        ioctl(h->fd, SIOCOUTQ, &outq) < 0)
        return xlate(errno);
    int space = sndbuf / 2 - outq;
    return space < 0 ? 0 : space;
}

/*
 * close() with unread input makes Linux send RST and drop whatever is still
 * unsent (RFC 2525 2.17): read and discard up to drain_max first, so the
 * peer gets every byte and then the FIN. Past drain_max a peer that keeps
 * sending gets its RST; that bounds the work.
 */
static void op_close(void *vbe, void *ch)
{
    sn_posix *be = vbe;
    ph *h = conn_of(ch);
    if (!h || h->fd < 0)
        return;
    char buf[DRAIN_CHUNK];
    size_t left = be->cfg.drain_max;
    while (left > 0) {
        ssize_t n = recv(h->fd, buf, left < sizeof buf ? left : sizeof buf, 0);
        if (n <= 0)
            break;
        left -= (size_t)n;
    }
    unwatch(be, h);
    (void)close(h->fd);
    h->fd = -1;
    h->want_out = false;
}

static void op_abort(void *vbe, void *ch)
{
    sn_posix *be = vbe;
    ph *h = conn_of(ch);
    if (!h || h->fd < 0)
        return;
    unwatch(be, h);
    close_rst(h->fd);
    h->fd = -1;
    h->want_out = false;
}

static void op_release(void *vbe, void *ch)
{
    sn_posix *be = vbe;
    ph *h = conn_of(ch);
    if (!h)
        return;
    if (h->fd >= 0)
        op_abort(be, h);
    conn_put(be, h);
}

static const struct sn_backend_ops posix_ops = {
    .name = "posix",
    .now_ms = op_now_ms,
    .clock_us = op_clock_us,
    .wait = op_wait,
    .listen = op_listen,
    .unlisten = op_unlisten,
    .listen_pause = op_listen_pause,
    .accept = op_accept,
    .connect = op_connect,
    .conn_state = op_conn_state,
    .recv = op_recv,
    .send = op_send,
    .tx_queued = op_tx_queued,
    .rx_avail = op_rx_avail,
    .tx_space = op_tx_space,
    .close = op_close,
    .abort = op_abort,
    .release = op_release,
};

/* ---- Public ------------------------------------------------------------- */

void sn_posix_config_default(sn_posix_config *cfg)
{
    *cfg = (sn_posix_config){
        .max_handles = SN_DEFAULT_SLOTS + SN_DEFAULT_BACKLOG_MAX + SN_DEFAULT_RELEASE_QUEUE,
        .max_listeners = SN_MAX_LISTENERS,
        .listen_backlog = 64,
        .use_poll = false,
        .drain_max = 65536,
        .sndbuf = 65536,
    };
}

int sn_posix_create(sn_posix **out, const sn_posix_config *cfg)
{
    if (!out || !cfg || cfg->max_handles == 0 || cfg->max_handles > 65536 ||
        cfg->max_listeners > 255)
        return SN_EINVAL;
    sn_posix *be = calloc(1, sizeof *be);
    if (!be)
        return SN_ENOMEM;
    be->cfg = *cfg;
    be->epfd = -1;
    be->spare_fd = -1;
    if (be->cfg.listen_backlog <= 0)
        be->cfg.listen_backlog = 64;
    unsigned total = cfg->max_handles + cfg->max_listeners + SN_POSIX_EXTRA_MAX;
    be->conns = calloc(cfg->max_handles, sizeof *be->conns);
    be->lsns = calloc(cfg->max_listeners ? cfg->max_listeners : 1, sizeof *be->lsns);
    if (cfg->use_poll) {
        be->pfds = calloc(total, sizeof *be->pfds);
        be->powner = calloc(total, sizeof *be->powner);
    } else {
        be->evcap = total < 256 ? (int)total : 256;
        be->evs = calloc((size_t)be->evcap, sizeof *be->evs);
        be->epfd = epoll_create1(EPOLL_CLOEXEC);
    }
    if (!be->conns || !be->lsns || (cfg->use_poll ? !be->pfds || !be->powner : !be->evs || be->epfd < 0)) {
        int err = (!cfg->use_poll && be->evs && be->epfd < 0) ? xlate(errno) : SN_ENOMEM;
        sn_posix_destroy(be);
        return err;
    }
    for (unsigned i = 0; i < cfg->max_listeners; i++)
        be->lsns[i] = (ph){.fd = -1, .kind = PH_FREE};
    for (unsigned i = 0; i < SN_POSIX_EXTRA_MAX; i++)
        be->xreg[i] = (struct xreg){.fd = -1};
    for (unsigned i = cfg->max_handles; i-- > 0;)
        be->conns[i] = (ph){.fd = -1, .kind = PH_FREE, .next = i + 1 < cfg->max_handles ? &be->conns[i + 1] : NULL};
    be->free_conns = &be->conns[0];
    be->spare_fd = open_spare();
    *out = be;
    return 0;
}

void sn_posix_destroy(sn_posix *be)
{
    if (!be)
        return;
    for (unsigned i = 0; be->conns && i < be->cfg.max_handles; i++)
        if (be->conns[i].kind == PH_CONN && be->conns[i].fd >= 0)
            close_rst(be->conns[i].fd);
    for (unsigned i = 0; be->lsns && i < be->cfg.max_listeners; i++)
        if (be->lsns[i].kind == PH_LISTEN)
            (void)close(be->lsns[i].fd);
    if (be->epfd >= 0)
        (void)close(be->epfd);
    if (be->spare_fd >= 0)
        (void)close(be->spare_fd);
    free(be->conns);
    free(be->lsns);
    free(be->pfds);
    free(be->powner);
    free(be->evs);
    free(be);
}

sn_backend sn_posix_backend(sn_posix *be) { return (sn_backend){.ops = &posix_ops, .ctx = be}; }

unsigned sn_posix_handles_in_use(const sn_posix *be) { return be ? be->conns_used + be->lsns_used : 0; }

int sn_posix_set_extra_fds(sn_posix *be, struct pollfd *fds, unsigned n)
{
    if (!be || n > SN_POSIX_EXTRA_MAX || (n > 0 && !fds))
        return SN_EINVAL;
    if (be->epfd >= 0)
        for (unsigned i = 0; i < SN_POSIX_EXTRA_MAX; i++)
            xunreg(be, &be->xreg[i]);
    be->xfds = fds;
    be->nx = n;
    return SN_OK;
}
