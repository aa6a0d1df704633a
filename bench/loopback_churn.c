/*
 * Loopback churn: browser-like clients (connect, request, read the reply,
 * close with RST) against slotnet (core + POSIX backend, 8 slots) and, in
 * the same run, against a bare epoll server that does the same work with no
 * slot table. Prints connections/s of each, their ratio, latency p50/p99,
 * and slotnet's longest poll pass. A figure, not a pass/fail test.
 *
 *   bench/loopback_churn [--requests N] [--clients N] [--slots N]
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "slotnet.h"
#include "slotnet/posix.h"

static const char reply[] = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok";
static const char request[] = "GET /status HTTP/1.1\r\nHost: x\r\n\r\n";

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static uint16_t free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof sa;
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0 ||
        getsockname(fd, (struct sockaddr *)&sa, &len) < 0) {
        perror("bind");
        exit(1);
    }
    close(fd);
    return ntohs(sa.sin_port);
}

/* ---- Clients ----------------------------------------------------------- */

typedef struct run {
    uint16_t port;
    atomic_int left;
    atomic_int failed;
    double *lat; /* seconds per request */
    atomic_int nlat;
} run;

static void *client(void *arg)
{
    run *r = arg;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(r->port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    char buf[512];
    while (atomic_fetch_sub(&r->left, 1) > 0) {
        double t0 = now_s();
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        struct timeval tv = {5, 0};
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        bool ok = connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0 &&
                  send(fd, request, sizeof request - 1, MSG_NOSIGNAL) == (ssize_t)(sizeof request - 1);
        size_t got = 0;
        while (ok && got < sizeof reply - 1) {
            ssize_t n = recv(fd, buf, sizeof buf, 0);
            if (n <= 0)
                break;
            got += (size_t)n;
        }
        ok = ok && got == sizeof reply - 1;
        struct linger lg = {1, 0}; /* like a browser: RST once the reply is read */
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
        close(fd);
        if (!ok)
            atomic_fetch_add(&r->failed, 1);
        else
            r->lat[atomic_fetch_add(&r->nlat, 1)] = now_s() - t0;
    }
    return NULL;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

typedef struct result {
    double cps, p50, p99;
    int failed;
} result;

static result drive(uint16_t port, int requests, int clients)
{
    run r = {.port = port};
    atomic_store(&r.left, requests);
    r.lat = calloc((size_t)requests, sizeof(double));
    pthread_t th[64];
    double t0 = now_s();
    for (int i = 0; i < clients; i++)
        pthread_create(&th[i], NULL, client, &r);
    for (int i = 0; i < clients; i++)
        pthread_join(th[i], NULL);
    double dt = now_s() - t0;
    int n = atomic_load(&r.nlat);
    qsort(r.lat, (size_t)n, sizeof(double), cmp_d);
    result res = {.cps = n / dt, .failed = atomic_load(&r.failed)};
    if (n > 0) {
        res.p50 = r.lat[n / 2] * 1e3;
        res.p99 = r.lat[(size_t)((double)n * 0.99)] * 1e3;
    }
    free(r.lat);
    return res;
}

/* ---- slotnet server ---------------------------------------------------- */

typedef struct sn_srv {
    sn_core *core;
    sn_backend be;
    atomic_bool stop;
    unsigned got[SN_MAX_SLOTS];
} sn_srv;

static void on_event(sn_core *core, sn_id id, sn_event ev, int info, void *user)
{
    sn_srv *s = user;
    (void)info;
    unsigned i = sn_id_index(id);
    if (ev == SN_EV_ACCEPTED)
        s->got[i] = 0;
    if (ev == SN_EV_READABLE || ev == SN_EV_PEER_CLOSED) {
        char buf[512];
        int n;
        while ((n = sn_read(core, id, buf, sizeof buf)) > 0)
            s->got[i] += (unsigned)n;
        if (s->got[i] >= sizeof request - 1) {
            s->got[i] = 0;
            sn_write(core, id, reply, sizeof reply - 1, SN_WRITE_PUSH | SN_WRITE_CLOSE_AFTER);
        } else if (n < 0) {
            sn_close(core, id);
        }
    }
}

static void *sn_loop(void *arg)
{
    sn_srv *s = arg;
    while (!atomic_load(&s->stop)) {
        uint32_t now = s->be.ops->now_ms(s->be.ctx);
        sn_poll(s->core, now);
        s->be.ops->wait(s->be.ctx, sn_next_timeout(s->core, now, 20));
    }
    return NULL;
}

/* ---- the peer: bare epoll, no slot table ------------------------------- */

typedef struct bare {
    int lfd, ep;
    atomic_bool stop;
} bare;

static void *bare_loop(void *arg)
{
    bare *b = arg;
    struct epoll_event evs[64];
    while (!atomic_load(&b->stop)) {
        int n = epoll_wait(b->ep, evs, 64, 20);
        for (int i = 0; i < n; i++) {
            int fd = evs[i].data.fd;
            if (fd == b->lfd) {
                int c;
                while ((c = accept4(b->lfd, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
                    struct epoll_event ev = {.events = EPOLLIN, .data.fd = c};
                    epoll_ctl(b->ep, EPOLL_CTL_ADD, c, &ev);
                }
                continue;
            }
            char buf[512];
            ssize_t r = recv(fd, buf, sizeof buf, 0);
            if (r > 0)
                (void)!send(fd, reply, sizeof reply - 1, MSG_NOSIGNAL);
            close(fd); /* one request per connection, as the clients do */
        }
    }
    return NULL;
}

int main(int argc, char **argv)
{
    int requests = 20000, clients = 4, slots = 8;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--requests"))
            requests = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--clients"))
            clients = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--slots"))
            slots = atoi(argv[i + 1]);
        else {
            fprintf(stderr, "usage: %s [--requests N] [--clients N] [--slots N]\n", argv[0]);
            return 2;
        }
    }
    if (requests < 1 || clients < 1 || clients > 64 || slots < 1 || slots > SN_MAX_SLOTS) {
        fprintf(stderr, "bad arguments\n");
        return 2;
    }

    /* slotnet */
    sn_posix *px;
    sn_posix_config pc;
    sn_posix_config_default(&pc);
    pc.max_handles = 256;
    if (sn_posix_create(&px, &pc) != 0)
        return 1;
    static sn_srv srv;
    srv.be = sn_posix_backend(px);
    sn_config cfg;
    sn_config_default(&cfg);
    cfg.slots = (uint8_t)slots;
    cfg.backlog_max = 64;
    cfg.on_event = on_event;
    cfg.user = &srv;
    void *mem = aligned_alloc(8, (sn_core_size(&cfg) + 7) & ~(size_t)7);
    if (sn_core_init(&srv.core, mem, sn_core_size(&cfg), &cfg, srv.be) != 0)
        return 1;
    sn_endpoint ep = {0x7f000001u, free_port()};
    if (sn_listen(srv.core, &ep, 0, (uint8_t)slots, 5000) != 0)
        return 1;
    pthread_t t;
    pthread_create(&t, NULL, sn_loop, &srv);
    drive(ep.port, requests / 10 + 1, clients); /* warm-up */
    result a = drive(ep.port, requests, clients);
    atomic_store(&srv.stop, true);
    pthread_join(t, NULL);
    const sn_stats *st = sn_stats_get(srv.core);
    uint32_t longest = st->longest_poll_us;
    unsigned busy = 0;
    for (unsigned i = 0; i < sn_slot_count(srv.core); i++)
        busy += sn_slot_state(srv.core, i) != SN_FREE;
    sn_core_shutdown(srv.core);
    sn_posix_destroy(px);
    free(mem);

    /* the peer */
    static bare b;
    b.lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    int one = 1;
    setsockopt(b.lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    uint16_t bport = free_port();
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(bport),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (bind(b.lfd, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(b.lfd, 64) < 0)
        return 1;
    b.ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = b.lfd};
    epoll_ctl(b.ep, EPOLL_CTL_ADD, b.lfd, &ev);
    pthread_create(&t, NULL, bare_loop, &b);
    drive(bport, requests / 10 + 1, clients);
    result p = drive(bport, requests, clients);
    atomic_store(&b.stop, true);
    pthread_join(t, NULL);
    close(b.lfd);
    close(b.ep);

    printf("loopback churn: %d requests, %d clients, RST close\n", requests, clients);
    printf("  slotnet (%d slots): %8.0f conn/s  p50 %.3f ms  p99 %.3f ms  failed %d  "
           "longest poll %u us  slots busy at end %u\n",
           slots, a.cps, a.p50, a.p99, a.failed, longest, busy);
    printf("  bare epoll peer:   %8.0f conn/s  p50 %.3f ms  p99 %.3f ms  failed %d\n", p.cps, p.p50,
           p.p99, p.failed);
    printf("  ratio slotnet/peer: conn/s %.2f  p99 %.2f\n", a.cps / p.cps, a.p99 / p.p99);
    return a.failed || p.failed ? 1 : 0;
}
