/*
 * lwIP backend (Debian liblwip 2.1.x): see include/slotnet/lwip.h.
 *
 * Two threads touch lwIP: the caller's (every op, and wait(), which feeds
 * received frames to lwIP) and lwIP's tcpip thread (timers). Both hold the
 * core lock while they do, so the records below, which lwIP's callbacks
 * write, are only ever read or written under that lock. Ops take it for
 * their own duration; the lock is not recursive and nothing here nests.
 *
 * Ownership of a pcb, which the err callback and tcp_close decide:
 * - A record's pcb is ours from accept/connect until close(), abort(), or
 *   lwIP's err callback (after which lwIP has freed it: r->pcb = NULL,
 *   never touched again).
 * - close() and abort() clear arg and callbacks before tcp_close/tcp_abort,
 *   and forget the pcb at once: after tcp_close lwIP may free it silently
 *   (LAST_ACK acked, TIME_WAIT expired), and tcp_abort calls err itself.
 *
 * err_t is translated to SN_E* here and nowhere else.
 */
#define _GNU_SOURCE /* lwIP's arch.h wants SSIZE_MAX from <limits.h> */

#include "slotnet/lwip.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <linux/if.h>
#include <linux/if_tun.h>

#include "lwip/etharp.h"
#include "lwip/ethip6.h"
#include "lwip/init.h"
#include "lwip/netif.h"
#include "lwip/pbuf.h"
#include "lwip/priv/tcp_priv.h"
#include "lwip/tcp.h"
#include "lwip/tcpip.h"
#include "netif/ethernet.h"

enum { LR_FREE, LR_CONN };

typedef struct lrec lrec;
typedef struct llsn llsn;

struct lrec {
    uint8_t kind;        /* LR_* */
    bool closed;         /* close() or abort() called: only release() may follow */
    bool queued;         /* in a listener's accept queue, not yet the core's */
    bool connecting;     /* outgoing connect not yet resolved */
    bool want_out;       /* a send came up short: report the next sent callback */
    bool corked;         /* bytes written without push and not yet output */
    uint32_t flags;      /* SN_BF_* */
    int error;           /* SN_E* behind SN_BF_FAILED / SN_BF_RESET */
    struct tcp_pcb *pcb; /* NULL once closed, aborted or freed by lwIP */
    /* Received and unread: pbufs linked through ->next, the first rx_off
     * bytes of rx_head already read. rx_bytes is ours: a pbuf's tot_len is
     * 16 bits and a full window is 65535 bytes. */
    struct pbuf *rx_head, *rx_tail;
    uint32_t rx_off, rx_bytes;
    sn_endpoint local, remote;
    sn_lwip *be;
    lrec *next; /* free list */
};

struct llsn {
    bool used, paused;
    struct tcp_pcb *pcb; /* the listen pcb */
    lrec **q;            /* accept queue: cfg.accept_queue entries, a ring */
    unsigned qhead, qcount;
    int refused; /* SN_EMFILE/SN_ENOMEM: a connection was turned away since the last accept() */
    sn_lwip *be;
};

struct sn_lwip {
    sn_lwip_config cfg;
    char tap[IFNAMSIZ];
    int tapfd, efd;
    bool tap_dead;    /* the TAP failed (deleted?): no longer polled */
    bool tap_dead_told; /* wait() returned SN_EIO for it once */
    bool nif_added;
    bool in_input;    /* callbacks now run inside our own wait(): no eventfd needed */
    uint32_t ev_seq;  /* bumped by every callback that recorded something */
    struct netif nif;
    lrec *conns;      /* cfg.max_handles */
    llsn *lsns;       /* cfg.max_listeners */
    lrec **qmem;
    lrec *free_conns;
    unsigned conns_used, lsns_used;
    uint8_t *frame;   /* one received frame */
    uint8_t *txframe; /* one frame out, when a pbuf chain is too long for writev */
    size_t frame_cap;
    sn_lwip_stats st;
    struct pollfd *xfds; /* the app's own descriptors (sn_lwip_set_extra_fds) */
    unsigned nx;
};

#define LOCK() LOCK_TCPIP_CORE()
#define UNLOCK() UNLOCK_TCPIP_CORE()

/* ---- Helpers ------------------------------------------------------------ */

static int xlate(err_t e)
{
    switch (e) {
    case ERR_OK:
        return 0;
    case ERR_MEM:
    case ERR_BUF:
        return SN_ENOMEM;
    case ERR_TIMEOUT:
        return SN_ETIMEDOUT;
    case ERR_RTE:
        return SN_EUNREACH;
    case ERR_INPROGRESS:
    case ERR_WOULDBLOCK:
        return SN_EAGAIN;
    case ERR_USE:
        return SN_EADDRINUSE;
    case ERR_ABRT:
    case ERR_RST:
        return SN_ECONNRESET;
    case ERR_CLSD:
        return SN_ECLOSED;
    case ERR_VAL:
    case ERR_ARG:
        return SN_EINVAL;
    default: /* ERR_CONN, ERR_IF, ERR_ISCONN, ERR_ALREADY */
        return SN_EIO;
    }
}

static void to_ip(uint32_t host, ip_addr_t *ip) { ip_addr_set_ip4_u32(ip, lwip_htonl(host)); }

static uint32_t from_ip(const ip_addr_t *ip) { return lwip_ntohl(ip_addr_get_ip4_u32(ip)); }

static void pcb_endpoints(const struct tcp_pcb *pcb, sn_endpoint *local, sn_endpoint *remote)
{
    if (local)
        *local = (sn_endpoint){from_ip(&pcb->local_ip), pcb->local_port};
    if (remote)
        *remote = (sn_endpoint){from_ip(&pcb->remote_ip), pcb->remote_port};
}

/* A callback recorded something: end the caller's wait. Inside our own
 * frame input the wait sees ev_seq move; from the tcpip thread it needs the
 * eventfd. */
static void note(sn_lwip *be)
{
    be->ev_seq++;
    if (!be->in_input) {
        uint64_t one = 1;
        (void)!write(be->efd, &one, sizeof one);
    }
}

/* The TAP is gone or down (POLLERR, EBADFD, EIO...): stop polling it,
 * count it, and let the next wait() say SN_EIO once. Core lock held. */
static void tap_fail(sn_lwip *be, int err)
{
    be->st.tap_errors++;
    if (be->tap_dead)
        return;
    be->tap_dead = true;
    be->st.tap_dead = 1;
    be->st.tap_errno = err;
    note(be);
}

static lrec *conn_of(void *ch)
{
    lrec *r = ch;
    return (r && r->kind == LR_CONN) ? r : NULL;
}

/* The record behind ch, not yet closed: 0, SN_EINVAL or SN_ESTATE. */
static int open_conn(void *ch, lrec **out)
{
    lrec *r = conn_of(ch);
    *out = r;
    if (!r)
        return SN_EINVAL;
    return r->closed ? SN_ESTATE : 0;
}

static llsn *lsn_of(sn_lwip *be, void *lh)
{
    llsn *l = lh;
    if (!l || l < be->lsns || l >= be->lsns + be->cfg.max_listeners || !l->used)
        return NULL;
    return l;
}

static lrec *conn_take(sn_lwip *be)
{
    lrec *r = be->free_conns;
    if (!r)
        return NULL;
    be->free_conns = r->next;
    *r = (lrec){.kind = LR_CONN, .be = be};
    be->conns_used++;
    return r;
}

static void rx_free(lrec *r)
{
    struct pbuf *p = r->rx_head;
    while (p) {
        struct pbuf *n = p->next;
        p->next = NULL; /* the link held n's reference: it is ours now */
        pbuf_free(p);
        p = n;
    }
    r->rx_head = r->rx_tail = NULL;
    r->rx_off = r->rx_bytes = 0;
}

static void conn_put(sn_lwip *be, lrec *r)
{
    rx_free(r);
    *r = (lrec){.kind = LR_FREE, .be = be, .next = be->free_conns};
    be->free_conns = r;
    be->conns_used--;
}

/* Window credit for bytes the app consumed; tcp_recved takes 16 bits. */
static void recved(struct tcp_pcb *pcb, uint32_t n)
{
    while (pcb && n > 0) {
        u16_t k = (u16_t)(n > 0xffffu ? 0xffffu : n);
        tcp_recved(pcb, k);
        n -= k;
    }
}

static void detach(struct tcp_pcb *pcb)
{
    tcp_arg(pcb, NULL);
    tcp_recv(pcb, NULL);
    tcp_sent(pcb, NULL);
    tcp_err(pcb, NULL);
}

static void pcb_gone(lrec *r)
{
    r->pcb = NULL;
    r->be->st.pcbs_held--;
}

/* RST now; the pcb is freed by tcp_abort, with no callback to us. */
static void abort_pcb(lrec *r)
{
    if (r->pcb) {
        struct tcp_pcb *pcb = r->pcb;
        detach(pcb);
        pcb_gone(r);
        tcp_abort(pcb);
    }
}

/* ---- lwIP callbacks: core lock held; record only ------------------------ */

static err_t cb_recv(void *arg, struct tcp_pcb *pcb, struct pbuf *p, err_t err)
{
    lrec *r = arg;
    (void)err; /* 2.1 only ever passes ERR_OK */
    if (!r) {  /* cannot happen (callbacks are cleared with arg); lwIP's default */
        if (p) {
            tcp_recved(pcb, p->tot_len);
            pbuf_free(p);
        }
        return ERR_OK;
    }
    if (!p) {
        r->flags |= SN_BF_PEER_FIN | SN_BF_READABLE;
    } else {
        struct pbuf *last = p;
        while (last->next)
            last = last->next;
        if (r->rx_tail)
            r->rx_tail->next = p;
        else
            r->rx_head = p;
        r->rx_tail = last;
        r->rx_bytes += p->tot_len;
        r->flags |= SN_BF_READABLE;
    }
    note(r->be);
    return ERR_OK;
}

static err_t cb_sent(void *arg, struct tcp_pcb *pcb, u16_t len)
{
    lrec *r = arg;
    (void)pcb;
    (void)len;
    if (r) {
        if (r->want_out) {
            r->want_out = false;
            r->flags |= SN_BF_WRITABLE;
        }
        note(r->be); /* a draining close may be done now */
    }
    return ERR_OK;
}

/* The pcb is already freed when this is called: never touch it. */
static void cb_err(void *arg, err_t err)
{
    lrec *r = arg;
    if (!r)
        return;
    pcb_gone(r);
    if (r->connecting) {
        r->connecting = false;
        r->flags |= SN_BF_FAILED;
        r->error = err == ERR_RST ? SN_ECONNREFUSED : err == ERR_ABRT ? SN_ETIMEDOUT : xlate(err);
    } else if (!(r->flags & SN_BF_RESET)) {
        r->flags |= SN_BF_RESET | SN_BF_READABLE;
        /* ERR_ABRT comes from lwIP's timers: retransmissions or keepalive gave up. */
        r->error = err == ERR_ABRT ? SN_ETIMEDOUT : err == ERR_CLSD ? SN_ECLOSED : SN_ECONNRESET;
    }
    note(r->be);
}

static err_t cb_connected(void *arg, struct tcp_pcb *pcb, err_t err)
{
    lrec *r = arg;
    (void)err;
    if (!r)
        return ERR_OK;
    r->connecting = false;
    r->flags |= SN_BF_CONNECTED;
    pcb_endpoints(pcb, &r->local, NULL);
    if (r->want_out) {
        r->want_out = false;
        r->flags |= SN_BF_WRITABLE;
    }
    note(r->be);
    return ERR_OK;
}

static void attach(lrec *r, struct tcp_pcb *pcb)
{
    r->pcb = pcb;
    r->be->st.pcbs_held++;
    tcp_arg(pcb, r);
    tcp_recv(pcb, cb_recv);
    tcp_sent(pcb, cb_sent);
    tcp_err(pcb, cb_err);
    tcp_nagle_disable(pcb); /* push means now */
}

/*
 * A handshake completed on a listener (the new pcb inherited the listener's
 * arg). lwIP queues nothing: what we do not take here is reset, so take it
 * into the listener's bounded queue, paused or not, as a kernel's accept
 * queue would; reset it when that queue is full or max_conns pcbs are held.
 */
/* pcbs on our address that close() handed to lwIP (no arg: neither ours
 * nor a listener's handshake) and that lwIP still runs (FIN_WAIT, CLOSING,
 * LAST_ACK; TIME_WAIT pcbs are on their own list and not counted). Core
 * lock held; a walk of the active list, once per accepted connection. */
static unsigned closing_pcbs(sn_lwip *be)
{
    unsigned n = 0;
    uint32_t me = lwip_htonl(be->cfg.addr);
    for (struct tcp_pcb *p = tcp_active_pcbs; p; p = p->next)
        if (!p->callback_arg && ip_addr_get_ip4_u32(&p->local_ip) == me)
            n++;
    be->st.pcbs_closing = n;
    return n;
}

static err_t cb_accept(void *arg, struct tcp_pcb *newpcb, err_t err)
{
    llsn *l = arg;
    if (err != ERR_OK || !newpcb || !l)
        return ERR_VAL;
    sn_lwip *be = l->be;
    int refuse = 0;
    if (l->qcount >= be->cfg.accept_queue) {
        be->st.accept_queue_full++;
        refuse = SN_EAGAIN;
    } else if (be->st.pcbs_held >= be->cfg.max_conns) {
        refuse = SN_EMFILE;
    } else if (!be->free_conns) {
        refuse = SN_ENOMEM;
    } else if (closing_pcbs(be) >= be->cfg.max_closing) {
        be->st.accept_over_closing++;
        refuse = SN_EMFILE;
    }
    if (refuse) {
        if (refuse != SN_EAGAIN) {
            be->st.accept_over_max++;
            l->refused = refuse;
            if (!l->paused)
                note(be); /* let the core see it and pause */
        }
        tcp_abort(newpcb); /* no err callback set yet: none runs */
        return ERR_ABRT;
    }
    lrec *r = conn_take(be);
    attach(r, newpcb);
    pcb_endpoints(newpcb, &r->local, &r->remote);
    r->queued = true;
    l->q[(l->qhead + l->qcount++) % be->cfg.accept_queue] = r;
    if (!l->paused)
        note(be);
    return ERR_OK;
}

/* ---- The TAP netif ------------------------------------------------------ */

static int tap_open(const char *name)
{
    int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0)
        return -1;
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    memcpy(ifr.ifr_name, name, strnlen(name, IFNAMSIZ - 1)); /* zero-padded by the memset */
    ifr.ifr_flags = IFF_TAP | IFF_NO_PI;
    if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
        int e = errno;
        (void)close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

/* One frame out, called under the core lock from either thread. A full
 * TAP queue drops the frame; TCP retransmits. */
static err_t tap_linkoutput(struct netif *nif, struct pbuf *p)
{
    sn_lwip *be = nif->state;
    struct iovec iov[16];
    int n = 0;
    bool flat = false;
    for (struct pbuf *q = p; q; q = q->next) {
        if (n == 16) { /* a long chain (none expected: TX_SINGLE_PBUF) */
            flat = true;
            break;
        }
        if (q->len > 0)
            iov[n++] = (struct iovec){.iov_base = q->payload, .iov_len = q->len};
    }
    if (flat && p->tot_len <= be->frame_cap) {
        (void)pbuf_copy_partial(p, be->txframe, p->tot_len, 0);
        iov[0] = (struct iovec){.iov_base = be->txframe, .iov_len = p->tot_len};
        n = 1;
        flat = false;
    }
    ssize_t w = (be->tap_dead || flat) ? -1 : writev(be->tapfd, iov, n);
    if (w != (ssize_t)p->tot_len) {
        if (w < 0 && !be->tap_dead && !flat && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR &&
            errno != ENOBUFS)
            tap_fail(be, errno); /* EBADFD, EIO, ENXIO...: the TAP is down or gone */
        be->st.tx_dropped++;
        return ERR_IF;
    }
    be->st.tx_frames++;
    return ERR_OK;
}

static err_t tap_netif_init(struct netif *nif)
{
    sn_lwip *be = nif->state;
    nif->name[0] = 's';
    nif->name[1] = 'n';
    nif->output = etharp_output;
#if LWIP_IPV6
    nif->output_ip6 = ethip6_output;
#endif
    nif->linkoutput = tap_linkoutput;
    nif->mtu = be->cfg.mtu;
    nif->hwaddr_len = 6;
    memcpy(nif->hwaddr, be->cfg.mac, 6);
    nif->flags = NETIF_FLAG_BROADCAST | NETIF_FLAG_ETHARP | NETIF_FLAG_ETHERNET | NETIF_FLAG_IGMP;
    netif_set_link_up(nif);
    return ERR_OK;
}

/* Frames waiting on the TAP into lwIP, as PBUF_RAM (never PBUF_POOL: see
 * the header). Core lock held. */
static void tap_input(sn_lwip *be)
{
    for (unsigned i = 0; i < be->cfg.rx_frames && !be->tap_dead; i++) {
        ssize_t n = read(be->tapfd, be->frame, be->frame_cap);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                tap_fail(be, errno);
            break;
        }
        if (n < 14 || n > 0xffff)
            continue;
        struct pbuf *p = pbuf_alloc(PBUF_RAW, (u16_t)n, PBUF_RAM);
        if (!p) {
            be->st.rx_dropped++;
            continue;
        }
        (void)pbuf_take(p, be->frame, (u16_t)n);
        be->st.rx_frames++;
        be->in_input = true;
        if (be->nif.input(p, &be->nif) != ERR_OK)
            pbuf_free(p);
        be->in_input = false;
    }
}

/* Transmit what writes without push left queued: they coalesce until the
 * loop is about to sleep, never longer. */
static void flush_corked(sn_lwip *be)
{
    for (unsigned i = 0; i < be->cfg.max_handles; i++) {
        lrec *r = &be->conns[i];
        if (r->kind == LR_CONN && r->corked && r->pcb) {
            (void)tcp_output(r->pcb);
            r->corked = false;
        }
    }
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

/*
 * Sleep on the TAP and the eventfd. Frames are handed to lwIP here; the wait
 * ends once a callback recorded something (or the time is up), not on every
 * frame: a pure ACK that changes nothing for the core does not wake it.
 */
static int op_wait(void *vbe, uint32_t timeout_ms)
{
    sn_lwip *be = vbe;
    LOCK();
    flush_corked(be);
    bool told = be->tap_dead && !be->tap_dead_told;
    if (told)
        be->tap_dead_told = true;
    UNLOCK();
    if (told)
        return SN_EIO;
    uint64_t deadline = mono_us() / 1000u + timeout_ms;
    int tmo = timeout_ms > INT_MAX ? INT_MAX : (int)timeout_ms;
    struct pollfd p[2 + SN_LWIP_EXTRA_MAX];
    for (unsigned i = 0; i < be->nx; i++)
        be->xfds[i].revents = 0;
    for (;;) {
        p[0] = (struct pollfd){.fd = be->efd, .events = POLLIN};
        p[1] = (struct pollfd){.fd = be->tap_dead ? -1 : be->tapfd, .events = POLLIN};
        for (unsigned i = 0; i < be->nx; i++) /* poll ignores a negative fd */
            p[2 + i] = (struct pollfd){.fd = be->xfds[i].fd, .events = be->xfds[i].events};
        int rc = poll(p, (nfds_t)(2 + be->nx), tmo);
        if (rc < 0)
            return errno == EINTR ? 0 : SN_EIO;
        if (rc == 0)
            return 0;
        bool ev = false;
        for (unsigned i = 0; i < be->nx; i++) {
            be->xfds[i].revents = p[2 + i].revents;
            ev = ev || p[2 + i].revents != 0;
        }
        if (p[0].revents & POLLIN) {
            uint64_t v;
            (void)!read(be->efd, &v, sizeof v);
            ev = true;
        }
        if (p[1].revents) {
            LOCK();
            uint32_t seq = be->ev_seq;
            if (p[1].revents & (POLLERR | POLLHUP | POLLNVAL))
                tap_fail(be, EIO);
            else
                tap_input(be);
            ev = ev || seq != be->ev_seq || be->tap_dead;
            bool dead_now = be->tap_dead && !be->tap_dead_told;
            if (dead_now)
                be->tap_dead_told = true;
            UNLOCK();
            if (dead_now)
                return SN_EIO;
        }
        if (ev)
            return rc;
        uint64_t now = mono_us() / 1000u;
        if (now >= deadline)
            return 0;
        tmo = (int)(deadline - now > INT_MAX ? INT_MAX : deadline - now);
    }
}

static int op_listen(void *vbe, const sn_endpoint *local, void **lh)
{
    sn_lwip *be = vbe;
    if (!local || !lh || (local->addr != 0 && local->addr != be->cfg.addr))
        return SN_EINVAL;
    llsn *l = NULL;
    for (unsigned i = 0; i < be->cfg.max_listeners && !l; i++)
        if (!be->lsns[i].used)
            l = &be->lsns[i];
    if (!l)
        return SN_ENOSPC;
    LOCK();
    struct tcp_pcb *pcb = tcp_new_ip_type(IPADDR_TYPE_V4);
    if (!pcb) {
        UNLOCK();
        return SN_ENOMEM;
    }
    ip_set_option(pcb, SOF_REUSEADDR); /* lwIP's own TIME_WAIT pcbs must not block a restart */
    ip_addr_t ip;
    to_ip(local->addr, &ip);
    err_t e = tcp_bind(pcb, &ip, local->port);
    struct tcp_pcb *lp = e == ERR_OK ? tcp_listen_with_backlog_and_err(pcb, TCP_DEFAULT_LISTEN_BACKLOG, &e) : NULL;
    if (!lp) {
        (void)tcp_close(pcb); /* still ours: listen() failed or was not tried */
        UNLOCK();
        return e == ERR_OK ? SN_ENOMEM : xlate(e);
    }
    unsigned qi = (unsigned)(l - be->lsns);
    *l = (llsn){.used = true, .pcb = lp, .q = be->qmem + (size_t)qi * be->cfg.accept_queue, .be = be};
    tcp_arg(lp, l);
    tcp_accept(lp, cb_accept);
    UNLOCK();
    be->lsns_used++;
    *lh = l;
    return 0;
}

static void op_unlisten(void *vbe, void *lh)
{
    sn_lwip *be = vbe;
    llsn *l = lsn_of(be, lh);
    if (!l)
        return;
    LOCK();
    while (l->qcount > 0) {
        lrec *r = l->q[l->qhead];
        l->qhead = (l->qhead + 1) % be->cfg.accept_queue;
        l->qcount--;
        abort_pcb(r);
        conn_put(be, r);
    }
    tcp_arg(l->pcb, NULL);
    tcp_accept(l->pcb, NULL);
    (void)tcp_close(l->pcb); /* a listen pcb always closes */
    UNLOCK();
    *l = (llsn){0};
    be->lsns_used--;
}

static void op_listen_pause(void *vbe, void *lh, bool paused)
{
    sn_lwip *be = vbe;
    LOCK();
    llsn *l = lsn_of(be, lh);
    if (l)
        l->paused = paused; /* the queue still fills; only the wake-ups stop */
    UNLOCK();
}

static int op_accept(void *vbe, void *lh, void **ch, sn_endpoint *local, sn_endpoint *remote)
{
    sn_lwip *be = vbe;
    llsn *l = lsn_of(be, lh);
    if (!l || !ch)
        return SN_EINVAL;
    LOCK();
    while (l->qcount > 0) {
        lrec *r = l->q[l->qhead];
        l->qhead = (l->qhead + 1) % be->cfg.accept_queue;
        l->qcount--;
        r->queued = false;
        /* Reset while it waited, nothing to read: gone, as ECONNABORTED is. */
        if (!r->pcb && r->rx_bytes == 0) {
            conn_put(be, r);
            continue;
        }
        UNLOCK();
        if (local)
            *local = r->local;
        if (remote)
            *remote = r->remote;
        *ch = r;
        return 0;
    }
    int rc = l->refused ? l->refused : SN_EAGAIN;
    l->refused = 0;
    UNLOCK();
    return rc;
}

static int op_connect(void *vbe, const sn_endpoint *remote, void **ch, sn_endpoint *local)
{
    sn_lwip *be = vbe;
    if (!remote || !ch)
        return SN_EINVAL;
    LOCK();
    if (be->st.pcbs_held >= be->cfg.max_conns) {
        UNLOCK();
        return SN_EMFILE;
    }
    struct tcp_pcb *pcb = be->free_conns ? tcp_new_ip_type(IPADDR_TYPE_V4) : NULL;
    if (!pcb) {
        UNLOCK();
        return SN_ENOMEM;
    }
    lrec *r = conn_take(be);
    attach(r, pcb);
    r->connecting = true;
    ip_addr_t ip;
    to_ip(remote->addr, &ip);
    err_t e = tcp_connect(pcb, &ip, remote->port, cb_connected);
    if (e != ERR_OK) {
        abort_pcb(r); /* never connected: frees it, sends nothing */
        conn_put(be, r);
        UNLOCK();
        return xlate(e);
    }
    pcb_endpoints(pcb, &r->local, &r->remote);
    if (local)
        *local = r->local;
    UNLOCK();
    *ch = r;
    return 0;
}

static void op_conn_state(void *be, void *ch, sn_bconn_state *st)
{
    (void)be;
    if (!st)
        return;
    LOCK();
    lrec *r = conn_of(ch);
    st->flags = r ? r->flags : SN_BF_ERROR;
    st->error = r ? r->error : SN_EINVAL;
    UNLOCK();
}

static int op_recv(void *be, void *ch, void *buf, size_t len)
{
    (void)be;
    if (!buf && len)
        return SN_EINVAL;
    LOCK();
    lrec *r;
    int rc = open_conn(ch, &r);
    if (rc == 0 && (r->flags & SN_BF_FAILED))
        rc = r->error;
    if (rc < 0 || len == 0) {
        UNLOCK();
        return rc;
    }
    if (len > INT_MAX)
        len = INT_MAX;
    uint8_t *out = buf;
    size_t n = 0;
    while (n < len && r->rx_head) {
        struct pbuf *p = r->rx_head;
        size_t k = p->len - r->rx_off;
        if (k > len - n)
            k = len - n;
        memcpy(out + n, (const uint8_t *)p->payload + r->rx_off, k);
        n += k;
        r->rx_off += (uint32_t)k;
        if (r->rx_off == p->len) {
            r->rx_head = p->next;
            if (!r->rx_head)
                r->rx_tail = NULL;
            p->next = NULL;
            pbuf_free(p);
            r->rx_off = 0;
        }
    }
    r->rx_bytes -= (uint32_t)n;
    recved(r->pcb, (uint32_t)n);
    if (r->rx_bytes == 0)
        r->flags &= ~SN_BF_READABLE;
    if (n > 0)
        rc = (int)n;
    else if (r->flags & SN_BF_RESET)
        rc = r->error; /* don't turn a reset into EOF */
    else if (r->flags & SN_BF_PEER_FIN)
        rc = SN_ECLOSED;
    UNLOCK();
    return rc;
}

static void short_send(lrec *r)
{
    r->want_out = true;
    r->flags &= ~SN_BF_WRITABLE;
}

/* What tcp_write takes now: send buffer space, 16 bits, and none once the
 * segment queue is full (tcp_write would say ERR_MEM with space left). */
static size_t send_room(const struct tcp_pcb *pcb)
{
    /* A write of n bytes takes up to n / mss + 1 segments (it may top up
     * the last unsent one first): keep one in reserve for that. */
    long segs = (long)TCP_SND_QUEUELEN - (long)tcp_sndqueuelen(pcb) - 1;
    if (segs <= 0)
        return 0;
    size_t room = (size_t)segs * (size_t)(pcb->mss ? pcb->mss : 536);
    size_t buf = tcp_sndbuf(pcb);
    return room < buf ? room : buf;
}

static int op_send(void *be, void *ch, const void *buf, size_t len, bool push)
{
    (void)be;
    if (!buf && len)
        return SN_EINVAL;
    LOCK();
    lrec *r;
    int rc = open_conn(ch, &r);
    if (rc == 0 && (r->flags & (SN_BF_FAILED | SN_BF_RESET)))
        rc = r->error;
    if (rc == 0 && !r->pcb)
        rc = SN_ECONNRESET;
    if (rc < 0) {
        UNLOCK();
        return rc;
    }
    struct tcp_pcb *pcb = r->pcb;
    size_t n = r->connecting ? 0 : send_room(pcb);
    if (n > len)
        n = len;
    if (n > 0) {
        err_t e = tcp_write(pcb, buf, (u16_t)n, (u8_t)(TCP_WRITE_FLAG_COPY | (push ? 0 : TCP_WRITE_FLAG_MORE)));
        if (e == ERR_MEM) {
            /* Out of segments or memory: the sent callback or the core's
             * retry timer resumes it. Flush so something is in flight. */
            short_send(r);
            (void)tcp_output(pcb);
            r->corked = false;
            UNLOCK();
            return SN_ENOMEM;
        }
        if (e != ERR_OK) {
            UNLOCK();
            return xlate(e);
        }
    }
    if (n < len)
        short_send(r);
    if (push || (n < len && r->corked)) {
        (void)tcp_output(pcb);
        r->corked = false;
    } else if (n > 0) {
        r->corked = true;
    }
    UNLOCK();
    return (int)n;
}

static int op_tx_queued(void *be, void *ch, uint32_t *unsent, uint32_t *unacked)
{
    (void)be;
    LOCK();
    lrec *r;
    int rc = open_conn(ch, &r);
    if (rc == 0 && !r->pcb)
        rc = r->error ? r->error : SN_ECONNRESET;
    if (rc < 0) {
        UNLOCK();
        return rc;
    }
    struct tcp_pcb *pcb = r->pcb;
    /* A tail written without push, with nothing else to clock it out: send
     * it now, whoever counts (a draining close) wants it gone. */
    if (pcb->snd_lbb != pcb->snd_nxt) {
        (void)tcp_output(pcb);
        r->corked = false;
    }
    if (unsent)
        *unsent = pcb->snd_lbb - pcb->snd_nxt;
    if (unacked)
        *unacked = pcb->snd_nxt - pcb->lastack;
    UNLOCK();
    return 0;
}

static int op_rx_avail(void *be, void *ch)
{
    (void)be;
    LOCK();
    lrec *r;
    int rc = open_conn(ch, &r);
    if (rc == 0)
        rc = r->rx_bytes > INT_MAX ? INT_MAX : (int)r->rx_bytes;
    UNLOCK();
    return rc;
}

static int op_tx_space(void *be, void *ch)
{
    (void)be;
    LOCK();
    lrec *r;
    int rc = open_conn(ch, &r);
    if (rc == 0)
        rc = (!r->pcb || r->connecting) ? 0 : (int)send_room(r->pcb);
    UNLOCK();
    return rc;
}

/*
 * Unread input is dropped and acknowledged first: tcp_close with data not
 * given back through tcp_recved sends RST, not FIN. Then the pcb is lwIP's.
 */
static void op_close(void *vbe, void *ch)
{
    (void)vbe;
    LOCK();
    lrec *r = conn_of(ch);
    if (r && !r->closed) {
        r->closed = true;
        recved(r->pcb, r->rx_bytes);
        rx_free(r);
        if (r->pcb) {
            struct tcp_pcb *pcb = r->pcb;
            detach(pcb);
            if (tcp_close(pcb) == ERR_OK)
                pcb_gone(r);
            else
                abort_pcb(r); /* still ours when tcp_close fails */
        }
        r->want_out = r->corked = false;
    }
    UNLOCK();
}

static void op_abort(void *vbe, void *ch)
{
    (void)vbe;
    LOCK();
    lrec *r = conn_of(ch);
    if (r && !r->closed) {
        r->closed = true;
        abort_pcb(r);
        rx_free(r);
        r->want_out = r->corked = false;
    }
    UNLOCK();
}

static void op_release(void *vbe, void *ch)
{
    sn_lwip *be = vbe;
    LOCK();
    lrec *r = conn_of(ch);
    if (r && !r->queued) {
        abort_pcb(r);
        conn_put(be, r);
    }
    UNLOCK();
}

static const struct sn_backend_ops lwip_ops = {
    .name = "lwip",
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

static pthread_once_t tcpip_once = PTHREAD_ONCE_INIT;

static void tcpip_ready(void *arg) { sys_sem_signal((sys_sem_t *)arg); }

/* lwIP's tcpip thread: started once per process, never stopped (lwIP has
 * no API for that). */
static void tcpip_start(void)
{
    sys_sem_t sem;
    if (sys_sem_new(&sem, 0) != ERR_OK)
        abort();
    /* The thread inherits this mask: it must not take the app's signals
     * (a SIGINT it took would not cut the app's wait short). */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    tcpip_init(tcpip_ready, &sem);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    sys_sem_wait(&sem);
    sys_sem_free(&sem);
}

void sn_lwip_config_default(sn_lwip_config *cfg)
{
    *cfg = (sn_lwip_config){
        .tap = "sntap0",
        .addr = 0x0a000002u, /* 10.0.0.2 */
        .netmask = 0xffffff00u,
        .mtu = 1500,
        .max_handles = SN_DEFAULT_SLOTS + SN_DEFAULT_BACKLOG_MAX + SN_DEFAULT_RELEASE_QUEUE,
        .max_listeners = SN_MAX_LISTENERS,
        .accept_queue = 16,
        .rx_frames = 256,
    };
}

int sn_lwip_create(sn_lwip **out, const sn_lwip_config *cfg)
{
    if (!out || !cfg || !cfg->tap || !cfg->tap[0] || strlen(cfg->tap) >= IFNAMSIZ || cfg->addr == 0 ||
        cfg->max_handles == 0 || cfg->max_handles > 65536 || cfg->max_listeners > 255 ||
        cfg->accept_queue > 4096 || (cfg->mtu != 0 && (cfg->mtu < 576 || cfg->mtu > 9000)))
        return SN_EINVAL;
    sn_lwip *be = calloc(1, sizeof *be);
    if (!be)
        return SN_ENOMEM;
    be->cfg = *cfg;
    be->tapfd = be->efd = -1;
    memcpy(be->tap, cfg->tap, strlen(cfg->tap)); /* < IFNAMSIZ, checked above; calloc'd */
    be->cfg.tap = be->tap;
    if (!be->cfg.mtu)
        be->cfg.mtu = 1500;
    if (!be->cfg.netmask)
        be->cfg.netmask = 0xffffff00u;
    if (!be->cfg.max_conns || be->cfg.max_conns > be->cfg.max_handles)
        be->cfg.max_conns = be->cfg.max_handles;
    if (!be->cfg.accept_queue)
        be->cfg.accept_queue = 16;
    if (!be->cfg.rx_frames)
        be->cfg.rx_frames = 256;
    if (!be->cfg.max_listeners)
        be->cfg.max_listeners = SN_MAX_LISTENERS;
    if (!be->cfg.max_closing)
        be->cfg.max_closing = be->cfg.max_conns > UINT_MAX / 2 ? UINT_MAX : 2 * be->cfg.max_conns;
    static const uint8_t zero[6];
    if (memcmp(be->cfg.mac, zero, 6) == 0) {
        /* Locally administered, unicast, and unique per address. */
        uint8_t mac[6] = {0x02, 0x00, (uint8_t)(cfg->addr >> 24), (uint8_t)(cfg->addr >> 16),
                          (uint8_t)(cfg->addr >> 8), (uint8_t)cfg->addr};
        memcpy(be->cfg.mac, mac, 6);
    }
    unsigned nl = be->cfg.max_listeners;
    be->frame_cap = (size_t)be->cfg.mtu + 18u; /* Ethernet header and a VLAN tag */
    be->conns = calloc(be->cfg.max_handles, sizeof *be->conns);
    be->lsns = calloc(nl, sizeof *be->lsns);
    be->qmem = calloc((size_t)nl * be->cfg.accept_queue, sizeof *be->qmem);
    be->frame = malloc(be->frame_cap);
    be->txframe = malloc(be->frame_cap);
    be->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (!be->conns || !be->lsns || !be->qmem || !be->frame || !be->txframe || be->efd < 0) {
        sn_lwip_destroy(be);
        return SN_ENOMEM;
    }
    for (unsigned i = be->cfg.max_handles; i-- > 0;)
        be->conns[i] = (lrec){.kind = LR_FREE, .be = be, .next = i + 1 < be->cfg.max_handles ? &be->conns[i + 1] : NULL};
    be->free_conns = &be->conns[0];
    be->tapfd = tap_open(be->tap);
    if (be->tapfd < 0) {
        int e = errno; /* the caller's message says why */
        sn_lwip_destroy(be);
        errno = e;
        return SN_EIO;
    }

    (void)pthread_once(&tcpip_once, tcpip_start);
    ip4_addr_t ip, mask, gw;
    ip4_addr_set_u32(&ip, lwip_htonl(cfg->addr));
    ip4_addr_set_u32(&mask, lwip_htonl(be->cfg.netmask));
    ip4_addr_set_u32(&gw, lwip_htonl(cfg->gateway));
    LOCK();
    be->nif_added = netif_add(&be->nif, &ip, &mask, &gw, be, tap_netif_init, ethernet_input) != NULL;
    if (be->nif_added) {
        if (!netif_default)
            netif_set_default(&be->nif);
        netif_set_up(&be->nif);
    }
    UNLOCK();
    if (!be->nif_added) {
        sn_lwip_destroy(be);
        return SN_EIO;
    }
    *out = be;
    return 0;
}

void sn_lwip_destroy(sn_lwip *be)
{
    if (!be)
        return;
    if (be->nif_added) {
        LOCK();
        for (unsigned i = 0; i < be->cfg.max_handles; i++) {
            lrec *r = &be->conns[i];
            if (r->kind == LR_CONN) {
                abort_pcb(r);
                rx_free(r);
            }
        }
        for (unsigned i = 0; i < be->cfg.max_listeners; i++) {
            llsn *l = &be->lsns[i];
            if (l->used) {
                tcp_arg(l->pcb, NULL);
                tcp_accept(l->pcb, NULL);
                (void)tcp_close(l->pcb);
            }
        }
        /* Also aborts, with RST, the pcbs lwIP still runs on our address
         * (closed by us, in FIN_WAIT or LAST_ACK): none outlives the netif.
         * TIME_WAIT pcbs stay until lwIP's timer ends them. */
        netif_remove(&be->nif);
        UNLOCK();
    }
    if (be->tapfd >= 0)
        (void)close(be->tapfd);
    if (be->efd >= 0)
        (void)close(be->efd);
    free(be->conns);
    free(be->lsns);
    free(be->qmem);
    free(be->frame);
    free(be->txframe);
    free(be);
}

sn_backend sn_lwip_backend(sn_lwip *be) { return (sn_backend){.ops = &lwip_ops, .ctx = be}; }

unsigned sn_lwip_handles_in_use(const sn_lwip *be) { return be ? be->conns_used + be->lsns_used : 0; }

void sn_lwip_stats_get(sn_lwip *be, sn_lwip_stats *st)
{
    if (!be || !st)
        return;
    LOCK();
    (void)closing_pcbs(be); /* refreshes st.pcbs_closing */
    *st = be->st;
    UNLOCK();
}

int sn_lwip_set_extra_fds(sn_lwip *be, struct pollfd *fds, unsigned n)
{
    if (!be || n > SN_LWIP_EXTRA_MAX || (n > 0 && !fds))
        return SN_EINVAL;
    be->xfds = n > 0 ? fds : NULL;
    be->nx = n;
    return SN_OK;
}
