/* Endpoints: TAPs and packet sockets opened inside a network namespace. */
#define _GNU_SOURCE /* setns */
#include "endpoint.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/ethtool.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <linux/if_tun.h>
#include <linux/sockios.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "link.h"

/* Bigger than the default so a burst of a fast sender is not dropped by
 * the socket before the loop gets to it. */
#define PKT_SOCKBUF (4 << 20)

static int split_spec(const char *spec, char *ifname, char *netns, size_t nslen)
{
    const char *at = strchr(spec, '@');
    size_t n = at ? (size_t)(at - spec) : strlen(spec);
    if (n == 0 || n >= IFNAMSIZ)
        return -1;
    memcpy(ifname, spec, n);
    ifname[n] = '\0';
    netns[0] = '\0';
    if (at) {
        if (!at[1] || strlen(at + 1) >= nslen)
            return -1;
        strcpy(netns, at + 1);
    }
    return 0;
}

int sl_ep_parse(struct sl_endpoint *ep, const char *spec)
{
    memset(ep, 0, sizeof *ep);
    ep->fd = -1;
    if (strncmp(spec, "tap:", 4) == 0)
        ep->kind = SL_EP_TAP;
    else if (strncmp(spec, "pkt:", 4) == 0)
        ep->kind = SL_EP_PKT;
    else
        return -1;
    return split_spec(spec + 4, ep->ifname, ep->netns, sizeof ep->netns);
}

/* Switches this (single-threaded) process into ns; a descriptor made
 * meanwhile stays in ns after leave_ns() switches back. */
static int enter_ns(const char *ns, int *saved, char *err, size_t errlen)
{
    *saved = -1;
    if (!ns[0])
        return 0;
    char path[300];
    if (strchr(ns, '/'))
        snprintf(path, sizeof path, "%s", ns);
    else
        snprintf(path, sizeof path, "/var/run/netns/%s", ns);
    int nsfd = open(path, O_RDONLY | O_CLOEXEC);
    if (nsfd < 0) {
        snprintf(err, errlen, "namespace %s: %s", path, strerror(errno));
        return -1;
    }
    *saved = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
    if (*saved < 0 || setns(nsfd, CLONE_NEWNET) < 0) {
        snprintf(err, errlen, "setns %s: %s", path, strerror(errno));
        close(nsfd);
        if (*saved >= 0)
            close(*saved);
        *saved = -1;
        return -1;
    }
    close(nsfd);
    return 0;
}

static void leave_ns(int saved)
{
    if (saved < 0)
        return;
    if (setns(saved, CLONE_NEWNET) < 0)
        perror("slotnet-link: setns back"); /* cannot happen with our own ns fd */
    close(saved);
}

static int set_up(const char *ifname, char *err, size_t errlen)
{
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (s < 0) {
        snprintf(err, errlen, "socket: %s", strerror(errno));
        return -1;
    }
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    snprintf(ifr.ifr_name, sizeof ifr.ifr_name, "%s", ifname);
    int rc = ioctl(s, SIOCGIFFLAGS, &ifr);
    if (rc == 0 && !(ifr.ifr_flags & IFF_UP)) {
        ifr.ifr_flags = (short)(ifr.ifr_flags | IFF_UP);
        rc = ioctl(s, SIOCSIFFLAGS, &ifr);
    }
    if (rc < 0)
        snprintf(err, errlen, "%s: set up: %s", ifname, strerror(errno));
    close(s);
    return rc;
}

static int open_tap(struct sl_endpoint *ep, char *err, size_t errlen)
{
    int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) {
        snprintf(err, errlen, "/dev/net/tun: %s", strerror(errno));
        return -1;
    }
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    snprintf(ifr.ifr_name, sizeof ifr.ifr_name, "%s", ep->ifname);
    ifr.ifr_flags = IFF_TAP | IFF_NO_PI;
    if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
        /* EBUSY: another process holds it (use pkt: for that) */
        snprintf(err, errlen, "TUNSETIFF %s: %s", ep->ifname, strerror(errno));
        close(fd);
        return -1;
    }
    ep->fd = fd;
    return set_up(ep->ifname, err, errlen);
}

static int open_pkt(struct sl_endpoint *ep, char *err, size_t errlen)
{
    unsigned idx = if_nametoindex(ep->ifname);
    if (!idx) {
        snprintf(err, errlen, "%s: %s", ep->ifname, strerror(errno));
        return -1;
    }
    int fd = socket(AF_PACKET, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, htons(ETH_P_ALL));
    if (fd < 0) {
        snprintf(err, errlen, "AF_PACKET socket: %s", strerror(errno));
        return -1;
    }
    ep->fd = fd;
    struct sockaddr_ll sll;
    memset(&sll, 0, sizeof sll);
    sll.sll_family = AF_PACKET;
    sll.sll_protocol = htons(ETH_P_ALL);
    sll.sll_ifindex = (int)idx;
    if (bind(fd, (struct sockaddr *)&sll, sizeof sll) < 0) {
        snprintf(err, errlen, "bind %s: %s", ep->ifname, strerror(errno));
        return -1;
    }
    int one = 1, buf = PKT_SOCKBUF;
    /* tp_status tells us about checksums the kernel left to offload. */
    setsockopt(fd, SOL_PACKET, PACKET_AUXDATA, &one, sizeof one);
    /* Our own and the local stack's transmissions are not traffic to carry
     * (recv also checks PACKET_OUTGOING, for kernels without this). */
    setsockopt(fd, SOL_PACKET, PACKET_IGNORE_OUTGOING, &one, sizeof one);
    setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &buf, sizeof buf);
    setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &buf, sizeof buf);
    /* Frames for any MAC: the far side's, not this interface's. */
    struct packet_mreq mr;
    memset(&mr, 0, sizeof mr);
    mr.mr_ifindex = (int)idx;
    mr.mr_type = PACKET_MR_PROMISC;
    setsockopt(fd, SOL_PACKET, PACKET_ADD_MEMBERSHIP, &mr, sizeof mr);
    if (set_up(ep->ifname, err, errlen) < 0)
        return -1;
    /* Between socket() and bind() it saw every interface: drop that. */
    unsigned char junk[64];
    while (recv(fd, junk, sizeof junk, MSG_TRUNC) >= 0) {
    }
    return 0;
}

int sl_ep_open(struct sl_endpoint *ep, char *err, size_t errlen)
{
    int saved;
    if (enter_ns(ep->netns, &saved, err, errlen) < 0)
        return -1;
    int rc = ep->kind == SL_EP_TAP ? open_tap(ep, err, errlen) : open_pkt(ep, err, errlen);
    leave_ns(saved);
    if (rc < 0)
        sl_ep_close(ep);
    return rc;
}

void sl_ep_close(struct sl_endpoint *ep)
{
    if (ep->fd >= 0)
        close(ep->fd);
    ep->fd = -1;
}

ssize_t sl_ep_recv(struct sl_endpoint *ep, unsigned char *buf, size_t cap, unsigned *flags,
                   bool *skipped)
{
    *flags = 0;
    *skipped = false;
    ssize_t n;
    if (ep->kind == SL_EP_TAP) {
        n = read(ep->fd, buf, cap);
        /* A TAP truncates a frame that does not fit: a full buffer means
         * it was at least that long (legal frames are far shorter). */
        if (n >= (ssize_t)cap)
            *flags |= SL_RX_OVERSIZE;
    } else {
        struct sockaddr_ll from;
        union {
            struct cmsghdr h;
            char b[CMSG_SPACE(sizeof(struct tpacket_auxdata))];
        } cbuf;
        struct iovec iov = { .iov_base = buf, .iov_len = cap };
        struct msghdr m = { .msg_name = &from, .msg_namelen = sizeof from,
                            .msg_iov = &iov, .msg_iovlen = 1,
                            .msg_control = &cbuf, .msg_controllen = sizeof cbuf };
        n = recvmsg(ep->fd, &m, MSG_TRUNC);
        if (n >= 0 && from.sll_pkttype == PACKET_OUTGOING) {
            *skipped = true;
            return 0;
        }
        if (n > (ssize_t)cap)
            *flags |= SL_RX_OVERSIZE;
        for (struct cmsghdr *c = CMSG_FIRSTHDR(&m); n >= 0 && c; c = CMSG_NXTHDR(&m, c)) {
            if (c->cmsg_level == SOL_PACKET && c->cmsg_type == PACKET_AUXDATA) {
                struct tpacket_auxdata aux;
                memcpy(&aux, CMSG_DATA(c), sizeof aux);
                if (aux.tp_status & TP_STATUS_CSUMNOTREADY)
                    *flags |= SL_RX_CSUM_PARTIAL;
            }
        }
    }
    /* ENETDOWN: the interface went down under a packet socket; it is
     * reported once and the link carries on when it is back. */
    if (n < 0)
        return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR || errno == ENETDOWN
                   ? 0
                   : -1;
    if (n == 0) /* an empty read is not a frame; keep reading */
        *skipped = true;
    return n;
}

int sl_ep_send(struct sl_endpoint *ep, const unsigned char *buf, size_t len)
{
    ssize_t n = ep->kind == SL_EP_TAP ? write(ep->fd, buf, len) : send(ep->fd, buf, len, 0);
    if (n < 0)
        return errno == EWOULDBLOCK ? -EAGAIN : -errno;
    return 0;
}

int sl_txcsum_off(const char *spec, char *err, size_t errlen)
{
    char ifname[IFNAMSIZ], netns[256];
    if (split_spec(spec, ifname, netns, sizeof netns) < 0) {
        snprintf(err, errlen, "bad interface %s", spec);
        return -1;
    }
    int saved;
    if (enter_ns(netns, &saved, err, errlen) < 0)
        return -1;
    int rc = -1;
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (s >= 0) {
        struct ethtool_value ev = { .cmd = ETHTOOL_STXCSUM, .data = 0 };
        struct ifreq ifr;
        memset(&ifr, 0, sizeof ifr);
        snprintf(ifr.ifr_name, sizeof ifr.ifr_name, "%s", ifname);
        ifr.ifr_data = (char *)&ev;
        rc = ioctl(s, SIOCETHTOOL, &ifr);
        close(s);
    }
    if (rc < 0)
        snprintf(err, errlen, "%s: tx checksum off: %s", spec, strerror(errno));
    leave_ns(saved);
    return rc;
}
