/*
 * An endpoint of the emulated link: where frames of one side come from and
 * go to. Spec "KIND:IFNAME[@NETNS]":
 *
 *   tap:NAME@NS  attach to (or create) TAP NAME in namespace NS and own it:
 *                what the kernel there sends, we read; what we write, the
 *                kernel there receives. A plain TAP (no IFF_VNET_HDR) hands
 *                over complete checksums and no GSO frames.
 *   pkt:NAME@NS  an AF_PACKET socket on interface NAME: for a TAP that
 *                another process (the lwIP stack) holds, whose netdev shows
 *                that process's writes as received frames and sends ours to
 *                it, or for a veth end (then turn tx checksumming off on the
 *                kernel's side: --txcsum-off, see docs/lwip-notes.md §3.11).
 *
 * NS is a name under /var/run/netns (ip netns) or a path such as
 * /proc/PID/ns/net; without @NS, the emulator's own namespace.
 */
#ifndef SLOTNET_LINK_ENDPOINT_H
#define SLOTNET_LINK_ENDPOINT_H

#include <net/if.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

enum sl_ep_kind { SL_EP_TAP, SL_EP_PKT };

struct sl_endpoint {
    enum sl_ep_kind kind;
    char ifname[IFNAMSIZ];
    char netns[256];
    int fd;
    bool blocked; /* the last write met EAGAIN: wait for EPOLLOUT */
};

/* recv flags */
#define SL_RX_OVERSIZE 1u
#define SL_RX_CSUM_PARTIAL 2u

int sl_ep_parse(struct sl_endpoint *ep, const char *spec);
/* Opens it (and sets the interface up). 0, or -1 with a message in err. */
int sl_ep_open(struct sl_endpoint *ep, char *err, size_t errlen);
void sl_ep_close(struct sl_endpoint *ep);
/* One frame into buf: its length, 0 when there is nothing to read, -1 on
 * an error (errno). Frames to skip (our own, outgoing) read as 0 with
 * *skipped set so the caller keeps reading. */
ssize_t sl_ep_recv(struct sl_endpoint *ep, unsigned char *buf, size_t cap, unsigned *flags,
                   bool *skipped);
/* 0 sent, -EAGAIN full (try on EPOLLOUT), other -errno: the frame is lost. */
int sl_ep_send(struct sl_endpoint *ep, const unsigned char *buf, size_t len);

/* What `ethtool -K IF tx off` does (SIOCETHTOOL, ETHTOOL_STXCSUM 0); spec
 * "IFNAME[@NETNS]". */
int sl_txcsum_off(const char *spec, char *err, size_t errlen);

#endif
