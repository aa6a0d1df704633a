/*
 * One client connection: non-blocking connect, one HTTP/1.1 request at a
 * time (line and headers from a buffer, then an optional generated body,
 * streamed as the socket takes it), the reply parsed with http_parser.
 * Results are returned to the caller; the connection never decides what
 * the client does next.
 */
#ifndef SLOTNET_LOAD_CONN_H
#define SLOTNET_LOAD_CONN_H

#include "load.h"

/* An upload body: a 16-byte tag naming the client and the upload, then a
 * pseudo-random stream that any offset can be generated from. The tag makes
 * each upload differ, so a file left from the previous one fails the check;
 * the stream's CRC is computed once and combined with the tag's. */
#define BODY_TAG 16u
struct body_gen {
    uint64_t seed;
    uint64_t size;
    uint8_t tag[BODY_TAG];
    uint32_t stream_crc; /* CRC-32 of the stream's first size - BODY_TAG bytes */
};
uint32_t body_stream_crc(uint64_t seed, uint64_t len);
void body_set_tag(struct body_gen *b, uint32_t client, uint64_t upload);
uint32_t body_crc(const struct body_gen *b);
void body_fill(const struct body_gen *b, uint64_t off, uint8_t *dst, size_t len);

/* The files --write-assets writes (xorshift64*, seeded by the group and
 * asset): the generator, as a stream, and the CRC-32 of a file's bytes,
 * which the browsers check each reply's body against. */
struct asset_gen {
    uint64_t x;
};
void asset_gen_init(struct asset_gen *g, uint64_t seed);
/* The next len bytes; len a multiple of 8 except at the file's end. */
void asset_gen_fill(struct asset_gen *g, uint8_t *dst, size_t len);
uint32_t asset_crc(uint64_t seed, uint64_t size);
uint64_t asset_seed(unsigned group, unsigned asset); /* 999: the blackhole reply */

/* What the loop shares with every connection. */
struct net {
    int ep;
    struct sockaddr_storage addr;
    socklen_t addrlen;
    char host[80]; /* the Host header: the target as given */
    uint64_t iv_connects, iv_up_bytes, iv_ok, iv_failed; /* since the last timeline row */
    uint64_t iv_lat_max;                                 /* us, small requests only */
    uint64_t iv_rx_bytes;                                /* reply bytes, all clients */
    unsigned open;                                       /* our sockets open now */
    struct wire wire;   /* what crossed the link (connections with count_wire) */
    unsigned mss;       /* for counting segments */
    int home_ns;        /* the tool's own network namespace, -1 if never left */
};

enum cstate { CS_CLOSED, CS_CONNECTING, CS_SENDING, CS_RECEIVING, CS_IDLE, CS_HOLD };

enum io {
    IO_PENDING,     /* nothing to report yet */
    IO_CONNECTED,   /* a connect-only or hold connection is up */
    IO_DONE,        /* a complete reply (see status, keep_alive) */
    IO_FAILED,      /* see fail; the socket is still open: close it */
    IO_CLOSED_IDLE, /* an idle or hold connection was closed by the server; closed here */
};

#define CHUNK 65536u

struct conn {
    int fd;
    uint32_t gen; /* bumped on every open; epoll events carry it */
    uint32_t idx; /* the owner's index, for epoll */
    enum cstate st;
    uint32_t events; /* the epoll mask registered; 0 = not registered */
    bool hold;       /* slowloris: no request; input is read and dropped */
    struct gstats *gs;
    unsigned local_port;

    /* request */
    char req[REQ_MAX];
    size_t req_len, req_off;
    const struct body_gen *body;
    uint64_t body_len, body_off;
    uint8_t *chunk; /* CHUNK bytes, the owner's; only for bodies */
    size_t chunk_len, chunk_off;

    /* reply */
    http_parser p;
    unsigned status;
    bool headers_done, msg_done, keep_alive, any_rx, reused;
    uint64_t rx_body;
    uint64_t rx_last;   /* bytes of the last finished reply (headers included) */
    bool crc_on;
    uint32_t rx_crc;
    char *cap; /* captured body (for JSON), cap_max bytes, the owner's */
    size_t cap_len, cap_max;
    bool cap_over;
    uint64_t t_progress; /* last byte moved either way */
    enum fail_kind fail;

    int netns;          /* make the socket in this namespace (fd), or -1 */
    bool count_wire;    /* its bytes cross the emulated link: count them */
    uint64_t rx_msg;    /* bytes of the current reply received so far */
    bool tx_counted;    /* the current request's segments are counted */
};
/* Segments of a request or reply of len bytes. */
uint64_t wire_segs(const struct net *n, uint64_t len);
/* The current request's and reply's bytes in flight, as segments, for a
 * snapshot mid-transfer. */
void conn_partial_segs(const struct net *n, const struct conn *c, uint64_t segs[2]);

void conn_init(struct conn *c, uint32_t idx, struct gstats *gs, char *cap, size_t cap_max);
/* Sends c->req[0..req_len) (plus body_len bytes of body, if any) on the
 * idle connection, or on a new one. */
enum io conn_request(struct net *n, struct conn *c, size_t req_len, const struct body_gen *body,
                     uint64_t body_len, uint64_t now);
/* Connects and reports IO_CONNECTED; no request. */
enum io conn_connect(struct net *n, struct conn *c, bool hold, uint64_t now);
enum io conn_io(struct net *n, struct conn *c, uint32_t events, uint64_t now);
/* Sends one byte on a hold connection; false if the connection broke. */
bool conn_trickle(struct conn *c, char byte);
void conn_close(struct net *n, struct conn *c, bool rst);
static inline bool conn_open(const struct conn *c)
{
    return c->st != CS_CLOSED;
}

#endif /* SLOTNET_LOAD_CONN_H */
