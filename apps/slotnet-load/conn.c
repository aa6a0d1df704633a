/*
 * Client connections. Level-triggered epoll: a socket is registered for
 * what it waits on now (EPOLLOUT while connecting or sending, EPOLLIN
 * always once connected, so a reset or an early reply is seen even while
 * an upload is still going out).
 */
#define _GNU_SOURCE /* setns */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sched.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <unistd.h>

#include <zlib.h>

#include "conn.h"

/* Per event, at most this much is moved each way before the loop serves
 * the others: a fast download must not starve the pollers' latency. */
#define IO_BUDGET (1u << 20)

static uint8_t rxbuf[CHUNK];

static enum io settle(struct net *n, struct conn *c, enum io res);

/* ---- Parser callbacks -------------------------------------------------- */

static int on_headers_complete(http_parser *p)
{
    struct conn *c = p->data;
    c->headers_done = true;
    c->status = p->status_code;
    return 0;
}

static int on_body(http_parser *p, const char *at, size_t len)
{
    struct conn *c = p->data;
    c->rx_body += len;
    if (c->crc_on)
        c->rx_crc = (uint32_t)crc32(c->rx_crc, (const Bytef *)at, (uInt)len);
    if (c->cap) {
        size_t room = c->cap_max - 1 - c->cap_len;
        size_t n = len < room ? len : room;
        memcpy(c->cap + c->cap_len, at, n);
        c->cap_len += n;
        c->cap[c->cap_len] = '\0';
        if (n < len)
            c->cap_over = true;
    }
    return 0;
}

static int on_message_complete(http_parser *p)
{
    struct conn *c = p->data;
    c->msg_done = true;
    http_parser_pause(p, 1); /* stop exactly at the end of this reply */
    return 0;
}

static const http_parser_settings settings = {
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

/* ---- Helpers ----------------------------------------------------------- */

static void set_events(struct net *n, struct conn *c, uint32_t mask)
{
    if (c->events == mask)
        return;
    struct epoll_event ev = {.events = mask, .data.u64 = ((uint64_t)c->idx << 32) | c->gen};
    /* Can only fail on a bug (bad fd, no memory): the request then times out. */
    (void)epoll_ctl(n->ep, c->events ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, c->fd, &ev);
    c->events = mask;
}

static void reply_reset(struct conn *c)
{
    http_parser_init(&c->p, HTTP_RESPONSE);
    c->p.data = c;
    c->status = 0;
    c->headers_done = c->msg_done = c->keep_alive = c->any_rx = false;
    c->rx_body = 0;
    c->rx_crc = (uint32_t)crc32(0, NULL, 0);
    c->cap_len = 0;
    c->cap_over = false;
    if (c->cap)
        c->cap[0] = '\0';
}

uint64_t wire_segs(const struct net *n, uint64_t len)
{
    unsigned mss = n->mss ? n->mss : 1448;
    return (len + mss - 1) / mss;
}

void conn_partial_segs(const struct net *n, const struct conn *c, uint64_t segs[2])
{
    segs[0] = segs[1] = 0;
    if (!c->count_wire || c->st == CS_CLOSED)
        return;
    if (!c->tx_counted && (c->st == CS_SENDING || c->st == CS_RECEIVING))
        segs[0] = wire_segs(n, c->req_off + c->body_off);
    if (c->rx_msg && !c->msg_done)
        segs[1] = wire_segs(n, c->rx_msg);
}

void conn_init(struct conn *c, uint32_t idx, struct gstats *gs, char *cap, size_t cap_max)
{
    memset(c, 0, sizeof *c);
    c->fd = -1;
    c->netns = -1;
    c->idx = idx;
    c->gs = gs;
    c->cap = cap;
    c->cap_max = cap_max;
    reply_reset(c);
}

void conn_close(struct net *n, struct conn *c, bool rst)
{
    if (c->fd < 0)
        return;
    if (rst) {
        /* Linger 0: close sends RST and frees the socket at once, as a
         * browser does when it drops a connection. */
        struct linger lg = {.l_onoff = 1, .l_linger = 0};
        (void)setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    }
    if (c->count_wire && c->st != CS_CONNECTING) {
        if (rst)
            n->wire.rst_closes++;
        else
            n->wire.fin_closes++;
    }
    close(c->fd); /* also leaves the epoll set: the fd is never dup'ed */
    c->fd = -1;
    c->st = CS_CLOSED;
    c->events = 0;
    n->open--;
}

static enum io failed(struct conn *c, enum fail_kind k)
{
    c->fail = k;
    return IO_FAILED;
}

/* Reply bytes in; IO_DONE at the end of the reply. */
static enum io feed(struct conn *c, const char *buf, size_t len)
{
    while (len > 0) {
        size_t used = http_parser_execute(&c->p, &settings, buf, len);
        enum http_errno err = HTTP_PARSER_ERRNO(&c->p);
        if (err != HPE_OK && err != HPE_PAUSED)
            return failed(c, F_PROTOCOL);
        if (!c->msg_done) {
            if (used != len)
                return failed(c, F_PROTOCOL);
            return IO_PENDING;
        }
        if (c->status >= 100 && c->status < 200) {
            /* An interim reply (100 Continue): the real one follows. */
            buf += used;
            len -= used;
            reply_reset(c);
            c->any_rx = true;
            continue;
        }
        /* Bytes after the reply were never asked for: do not reuse. */
        c->keep_alive = used == len && http_should_keep_alive(&c->p) &&
                        c->req_off == c->req_len && c->body_off == c->body_len;
        return IO_DONE;
    }
    return IO_PENDING;
}

static void rx_done(struct net *n, struct conn *c)
{
    if (c->count_wire && c->rx_msg)
        n->wire.segs[1] += wire_segs(n, c->rx_msg);
    c->rx_last = c->rx_msg;
    c->rx_msg = 0;
}

static enum io receive_(struct net *n, struct conn *c, uint64_t now);

/* Counts a finished reply's segments. */
static enum io receive(struct net *n, struct conn *c, uint64_t now)
{
    enum io res = receive_(n, c, now);
    if (res == IO_DONE)
        rx_done(n, c);
    return res;
}

static enum io receive_(struct net *n, struct conn *c, uint64_t now)
{
    size_t moved = 0;
    while (moved < IO_BUDGET) {
        ssize_t r = recv(c->fd, rxbuf, sizeof rxbuf, 0);
        if (r > 0) {
            c->any_rx = true;
            c->t_progress = now;
            moved += (size_t)r;
            c->rx_msg += (uint64_t)r;
            if (c->count_wire) {
                n->wire.bytes[1] += (uint64_t)r;
                n->iv_rx_bytes += (uint64_t)r;
            }
            enum io res = feed(c, (const char *)rxbuf, (size_t)r);
            if (res != IO_PENDING)
                return res;
            continue;
        }
        if (r == 0) {
            /* The end of a reply delimited by the close, or a cut-off one. */
            http_parser_execute(&c->p, &settings, NULL, 0);
            if (c->msg_done) {
                c->keep_alive = false;
                return IO_DONE;
            }
            return failed(c, c->any_rx ? F_SHORT : F_CLOSED);
        }
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return IO_PENDING;
        return failed(c, c->any_rx ? F_SHORT : F_RESET);
    }
    return IO_PENDING;
}

/* Request bytes out; then wait for the reply. */
static enum io pump(struct net *n, struct conn *c, uint64_t now)
{
    size_t moved = 0;
    while (moved < IO_BUDGET) {
        const void *p;
        size_t len;
        bool is_body = false;
        if (c->req_off < c->req_len) {
            p = c->req + c->req_off;
            len = c->req_len - c->req_off;
        } else if (c->body_off < c->body_len) {
            if (c->chunk_off == c->chunk_len) {
                uint64_t left = c->body_len - c->body_off;
                c->chunk_len = left < CHUNK ? (size_t)left : CHUNK;
                c->chunk_off = 0;
                body_fill(c->body, c->body_off, c->chunk, c->chunk_len);
            }
            p = c->chunk + c->chunk_off;
            len = c->chunk_len - c->chunk_off;
            is_body = true;
        } else {
            if (c->count_wire && !c->tx_counted)
                n->wire.segs[0] += wire_segs(n, c->req_len + c->body_len);
            c->tx_counted = true;
            c->st = CS_RECEIVING;
            set_events(n, c, EPOLLIN | EPOLLRDHUP);
            return IO_PENDING;
        }
        ssize_t r = send(c->fd, p, len, MSG_NOSIGNAL);
        if (r >= 0) {
            size_t s = (size_t)r;
            moved += s;
            c->t_progress = now;
            if (c->count_wire)
                n->wire.bytes[0] += s;
            if (is_body) {
                c->chunk_off += s;
                c->body_off += s;
                n->iv_up_bytes += s;
            } else {
                c->req_off += s;
            }
            continue;
        }
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            set_events(n, c, EPOLLIN | EPOLLOUT | EPOLLRDHUP);
            return IO_PENDING;
        }
        /* The server may have answered and closed before taking all of an
         * upload (413, 401): its reply, if it got here, is the result. */
        enum io res = receive(n, c, now);
        if (res == IO_DONE) {
            c->keep_alive = false;
            return res;
        }
        return failed(c, c->any_rx ? F_SHORT : F_RESET);
    }
    set_events(n, c, EPOLLIN | EPOLLOUT | EPOLLRDHUP);
    return IO_PENDING;
}

static void counted_connect(struct net *n, struct conn *c)
{
    c->gs->connects++;
    if (c->idx != 0) /* the /status monitor (index 0) is not part of the load */
        n->iv_connects++;
    if (c->count_wire)
        n->wire.conns++;
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    c->local_port = 0;
    if (getsockname(c->fd, (struct sockaddr *)&ss, &len) == 0) {
        if (ss.ss_family == AF_INET)
            c->local_port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
        else if (ss.ss_family == AF_INET6)
            c->local_port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    }
}

/* The TCP connection is up: send the request, or report it. */
static enum io connected(struct net *n, struct conn *c, uint64_t now)
{
    counted_connect(n, c);
    c->t_progress = now;
    if (c->hold || c->req_len == 0) {
        c->st = c->hold ? CS_HOLD : CS_IDLE;
        set_events(n, c, EPOLLIN | EPOLLRDHUP);
        return IO_CONNECTED;
    }
    c->st = CS_SENDING;
    return pump(n, c, now);
}

static enum io connect_failed(struct conn *c, int err)
{
    c->gs->connect_errors++;
    return failed(c, err == ECONNREFUSED ? F_REFUSED
                     : err == ECONNRESET ? F_RESET
                                         : F_CONNECT);
}

static enum io open_socket(struct net *n, struct conn *c, uint64_t now)
{
    /* A socket stays in the namespace it was made in: enter the group's
     * for the call, then come home (one thread, so nothing else runs). */
    if (c->netns >= 0 && setns(c->netns, CLONE_NEWNET) != 0) {
        c->gs->connect_errors++;
        return failed(c, F_CONNECT);
    }
    int fd = socket(n->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->netns >= 0 && setns(n->home_ns, CLONE_NEWNET) != 0) {
        fprintf(stderr, PROG ": cannot return to the tool's network namespace: %s\n",
                strerror(errno));
        abort();
    }
    if (fd < 0) {
        c->gs->connect_errors++;
        return failed(c, F_CONNECT); /* out of descriptors */
    }
    int one = 1;
    /* Small requests go out at once, as a browser's do. */
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    c->fd = fd;
    c->gen++;
    c->events = 0;
    c->st = CS_CONNECTING;
    c->t_progress = now;
    n->open++;
    if (connect(fd, (const struct sockaddr *)&n->addr, n->addrlen) == 0)
        return connected(n, c, now);
    if (errno == EINPROGRESS || errno == EINTR) {
        set_events(n, c, EPOLLOUT);
        return IO_PENDING;
    }
    return connect_failed(c, errno);
}

enum io conn_request(struct net *n, struct conn *c, size_t req_len, const struct body_gen *body,
                     uint64_t body_len, uint64_t now)
{
    c->req_len = req_len;
    c->req_off = 0;
    c->body = body;
    c->body_len = body ? body_len : 0;
    c->body_off = 0;
    c->chunk_len = c->chunk_off = 0;
    c->hold = false;
    c->tx_counted = false;
    c->rx_msg = 0;
    reply_reset(c);
    if (c->st == CS_IDLE) {
        c->reused = true;
        c->st = CS_SENDING;
        return settle(n, c, pump(n, c, now));
    }
    c->reused = false;
    return settle(n, c, open_socket(n, c, now));
}

enum io conn_connect(struct net *n, struct conn *c, bool hold, uint64_t now)
{
    c->req_len = c->req_off = 0;
    c->body = NULL;
    c->body_len = c->body_off = 0;
    c->hold = hold;
    c->reused = false;
    c->tx_counted = true;
    c->rx_msg = 0;
    reply_reset(c);
    return open_socket(n, c, now);
}

bool conn_trickle(struct conn *c, char byte)
{
    ssize_t r = send(c->fd, &byte, 1, MSG_NOSIGNAL);
    return r == 1 || (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR));
}

/* Idle and hold connections only expect the server to close them. */
static enum io drain_idle(struct net *n, struct conn *c)
{
    for (unsigned i = 0; i < 64; i++) {
        ssize_t r = recv(c->fd, rxbuf, sizeof rxbuf, 0);
        if (r > 0 && c->st == CS_HOLD)
            continue; /* a 408 or 431 before the close: read and drop */
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return IO_PENDING;
        /* EOF, an error, or bytes nobody asked for: this one is done. */
        conn_close(n, c, r > 0);
        return IO_CLOSED_IDLE;
    }
    return IO_PENDING;
}

/* A reply that leaves the connection reusable: wait idle for the next
 * request, watching for the server closing it meanwhile. */
static enum io settle(struct net *n, struct conn *c, enum io res)
{
    if (res == IO_DONE && c->keep_alive) {
        c->st = CS_IDLE;
        set_events(n, c, EPOLLIN | EPOLLRDHUP);
    }
    return res;
}

static enum io step(struct net *n, struct conn *c, uint32_t events, uint64_t now)
{
    switch (c->st) {
    case CS_CONNECTING: {
        int err = 0;
        socklen_t len = sizeof err;
        if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
            err = errno;
        if (err != 0)
            return connect_failed(c, err);
        if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
            return IO_PENDING;
        return connected(n, c, now);
    }
    case CS_SENDING:
        if (events & (EPOLLIN | EPOLLERR | EPOLLHUP | EPOLLRDHUP)) {
            enum io res = receive(n, c, now);
            if (res != IO_PENDING)
                return res;
        }
        if (events & (EPOLLOUT | EPOLLERR | EPOLLHUP))
            return pump(n, c, now);
        return IO_PENDING;
    case CS_RECEIVING:
        return receive(n, c, now);
    case CS_IDLE:
    case CS_HOLD:
        return drain_idle(n, c);
    case CS_CLOSED:
        break;
    }
    return IO_PENDING;
}

enum io conn_io(struct net *n, struct conn *c, uint32_t events, uint64_t now)
{
    return settle(n, c, step(n, c, events, now));
}
