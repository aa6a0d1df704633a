/* Fixed-layout data of the create/listen requests and the status and
 * statistics replies.
 * Little-endian integers; IPv4 addresses as 4 octets in dotted order. */
#include "slotnet/link.h"

#include "slotnet.h"

#include <string.h>

static void put_addr(uint8_t *p, uint32_t a)
{
    p[0] = (uint8_t)(a >> 24);
    p[1] = (uint8_t)(a >> 16);
    p[2] = (uint8_t)(a >> 8);
    p[3] = (uint8_t)a;
}

static uint32_t get_addr(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

void sn_link_args_encode(const sn_link_args *a, uint8_t out[SN_LINK_ARGS_LEN])
{
    put_addr(out, a->addr);
    sn_link_put16(out + 4, a->port);
    out[6] = a->protocol;
    out[7] = a->max_conns;
}

int sn_link_args_decode(const uint8_t *in, size_t len, sn_link_args *a)
{
    if (in == NULL || len != SN_LINK_ARGS_LEN)
        return SN_LINK_E_PARAM;
    a->addr = get_addr(in);
    a->port = sn_link_get16(in + 4);
    a->protocol = in[6];
    a->max_conns = in[7];
    return 0;
}

void sn_link_status_encode(const sn_link_status *s, uint8_t out[SN_LINK_STATUS_LEN])
{
    out[0] = s->state;
    out[1] = s->slot;
    out[2] = s->protocol;
    out[3] = (uint8_t)s->last_error;
    sn_link_put16(out + 4, s->local_port);
    sn_link_put16(out + 6, s->remote_port);
    put_addr(out + 8, s->remote_addr);
    sn_link_put16(out + 12, sn_link_sat16(s->readable));
    sn_link_put16(out + 14, sn_link_sat16(s->write_space));
    sn_link_put16(out + 16, s->connected);
    sn_link_put16(out + 18, s->closed);
}

int sn_link_status_decode(const uint8_t *in, size_t len, sn_link_status *s)
{
    if (in == NULL || len != SN_LINK_STATUS_LEN)
        return SN_LINK_E_PARAM;
    /* The seed's wire states: 0..5 and 7 (6 was its unused closeReady). */
    if (in[0] > 7 || in[0] == 6)
        return SN_LINK_E_PARAM;
    s->state = in[0];
    s->slot = in[1];
    s->protocol = in[2];
    s->last_error = (int8_t)in[3];
    s->local_port = sn_link_get16(in + 4);
    s->remote_port = sn_link_get16(in + 6);
    s->remote_addr = get_addr(in + 8);
    s->readable = sn_link_get16(in + 12);
    s->write_space = sn_link_get16(in + 14);
    s->connected = sn_link_get16(in + 16);
    s->closed = sn_link_get16(in + 18);
    return 0;
}

size_t sn_link_net_status_encode(const sn_link_net_status *s, uint8_t *out)
{
    unsigned n = s->slots > SN_LINK_SLOTS_MAX ? SN_LINK_SLOTS_MAX : s->slots;
    out[0] = (uint8_t)n;
    out[1] = s->epoch;
    sn_link_put16(out + 2, s->data_max);
    sn_link_put16(out + 4, s->backlog_now);
    sn_link_put16(out + 6, s->backlog_peak);
    sn_link_put16(out + 8, s->in_use);
    sn_link_put16(out + 10, s->connected);
    sn_link_put16(out + 12, s->closed);
    sn_link_put16(out + 14, s->readable);
    sn_link_put16(out + 16, s->writable);
    sn_link_put16(out + 18, s->aborted);
    for (unsigned i = 0; i < n; i++)
        sn_link_put32(out + SN_LINK_NET_STATUS_LEN + 4 * i, s->handle[i]);
    return SN_LINK_NET_STATUS_SIZE(n);
}

int sn_link_net_status_decode(const uint8_t *in, size_t len, sn_link_net_status *s)
{
    if (in == NULL || len < SN_LINK_NET_STATUS_LEN)
        return SN_LINK_E_PARAM;
    if (in[0] < 1 || in[0] > SN_LINK_SLOTS_MAX || len != SN_LINK_NET_STATUS_SIZE(in[0]))
        return SN_LINK_E_PARAM;
    memset(s, 0, sizeof *s);
    s->slots = in[0];
    s->epoch = in[1];
    s->data_max = sn_link_get16(in + 2);
    s->backlog_now = sn_link_get16(in + 4);
    s->backlog_peak = sn_link_get16(in + 6);
    s->in_use = sn_link_get16(in + 8);
    s->connected = sn_link_get16(in + 10);
    s->closed = sn_link_get16(in + 12);
    s->readable = sn_link_get16(in + 14);
    s->writable = sn_link_get16(in + 16);
    s->aborted = sn_link_get16(in + 18);
    for (unsigned i = 0; i < s->slots; i++)
        s->handle[i] = sn_link_get32(in + SN_LINK_NET_STATUS_LEN + 4 * i);
    return 0;
}

_Static_assert(SN_LINK_STATS_FIELDS == SN_STATS_SCALARS + SN_POLL_HIST_BUCKETS + 1,
               "the link's statistics no longer match struct sn_stats");

void sn_link_stats_encode(const sn_stats *s, uint32_t device_turn_us,
                          uint8_t out[SN_LINK_STATS_LEN])
{
    uint8_t *p = out;
#define PUT_FIELD_(name) sn_link_put32(p, s->name), p += 4;
    SN_STATS_FIELDS(PUT_FIELD_)
#undef PUT_FIELD_
    for (unsigned i = 0; i < SN_POLL_HIST_BUCKETS; i++, p += 4)
        sn_link_put32(p, s->poll_hist[i]);
    sn_link_put32(p, device_turn_us);
}

int sn_link_stats_decode(const uint8_t *in, size_t len, sn_stats *s, uint32_t *device_turn_us)
{
    if (in == NULL || len != SN_LINK_STATS_LEN)
        return SN_LINK_E_PARAM;
    const uint8_t *p = in;
#define GET_FIELD_(name) s->name = sn_link_get32(p), p += 4;
    SN_STATS_FIELDS(GET_FIELD_)
#undef GET_FIELD_
    for (unsigned i = 0; i < SN_POLL_HIST_BUCKETS; i++, p += 4)
        s->poll_hist[i] = sn_link_get32(p);
    if (device_turn_us != NULL)
        *device_turn_us = sn_link_get32(p);
    return 0;
}
