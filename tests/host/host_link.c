/*
 * libslotnet-host against the real slotnetd over a UNIX socket (and once
 * over exec: with --link stdio), with real loopback clients and servers:
 * every event the host raises must be what the core would have raised for
 * the same traffic. One case, a fake device made here from the codec,
 * checks what a real one never does: silence, garbage, stale replies.
 *
 * Skipped (77) when slotnetd was not built.
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "net_util.h"
#include "slotnet/host.h"
#include "slotnet/link.h"

#ifndef SN_SLOTNETD
#define SN_SLOTNETD ""
#endif

/* ---- The daemon and the host under test -------------------------------- */

#define MAX_EV 512

typedef struct rec_ev {
    sn_id id;
    sn_event ev;
    int info;
} rec_ev;

typedef struct fx {
    char dir[64];
    char sock[128];
    pid_t daemon;
    sn_host *h;
    rec_ev ev[MAX_EV];
    unsigned nev;
    int fd[4]; /* clients and servers of the test, closed at teardown */
} fx;

static void on_event(sn_host *h, sn_id id, sn_event ev, int info, void *user)
{
    fx *f = user;
    (void)h;
    if (f->nev < MAX_EV)
        f->ev[f->nev++] = (rec_ev){id, ev, info};
}

static unsigned count_ev(const fx *f, sn_id id, sn_event ev)
{
    unsigned n = 0;
    for (unsigned i = 0; i < f->nev; i++)
        n += f->ev[i].id == id && f->ev[i].ev == ev;
    return n;
}

static const rec_ev *last_ev(const fx *f, sn_event ev)
{
    for (unsigned i = f->nev; i-- > 0;)
        if (f->ev[i].ev == ev)
            return &f->ev[i];
    return NULL;
}

/* Starts slotnetd on f->sock with extra options; waits for its socket. */
static void start_daemon(fx *f, const char *const *extra)
{
    const char *argv[24];
    unsigned n = 0;
    char link[160];
    snprintf(link, sizeof link, "unix:%s", f->sock);
    argv[n++] = SN_SLOTNETD;
    argv[n++] = "--link";
    argv[n++] = link;
    for (unsigned i = 0; extra && extra[i] && n < 22; i++)
        argv[n++] = extra[i];
    argv[n] = NULL;
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int null = open("/dev/null", O_WRONLY);
        if (null >= 0)
            dup2(null, 1); /* its log; errors still reach stderr */
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    f->daemon = pid;
    struct stat st;
    uint64_t until = nu_ms() + 10000;
    while (stat(f->sock, &st) != 0) {
        if (nu_ms() > until || waitpid(pid, NULL, WNOHANG) == pid)
            fail_msg("slotnetd did not make %s", f->sock);
        nu_sleep_ms(10);
    }
}

static void stop_daemon(fx *f, int sig)
{
    if (f->daemon <= 0)
        return;
    kill(f->daemon, sig);
    waitpid(f->daemon, NULL, 0);
    f->daemon = 0;
}

static const char *const daemon_opts[] = {
    "--slots", "4", "--connect-retries", "0", "--connect-timeout-ms", "2000",
    "--peer-block-ms", "0", NULL,
};

static sn_host_config host_cfg(fx *f)
{
    sn_host_config cfg;
    sn_host_config_default(&cfg);
    cfg.on_event = on_event;
    cfg.user = f;
    return cfg;
}

static int setup(void **state)
{
    if (access(SN_SLOTNETD, X_OK) != 0)
        return -1; /* not reached: main skips first */
    fx *f = calloc(1, sizeof *f);
    assert_non_null(f);
    for (int i = 0; i < 4; i++)
        f->fd[i] = -1;
    snprintf(f->dir, sizeof f->dir, "/tmp/sn-host-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->sock, sizeof f->sock, "%s/d.sock", f->dir);
    start_daemon(f, daemon_opts);
    char target[160];
    snprintf(target, sizeof target, "unix:%s", f->sock);
    sn_host_config cfg = host_cfg(f);
    assert_int_equal(sn_host_open(&f->h, target, &cfg), 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx *f = *state;
    if (f->h)
        sn_host_shutdown(f->h);
    nu_teardown_clients(f->fd, 4);
    stop_daemon(f, SIGTERM);
    unlink(f->sock);
    rmdir(f->dir);
    free(f);
    return 0;
}

/* Polls (sleeping on the link between passes) until pred holds or ms pass. */
typedef bool (*pred_fn)(fx *f, const void *arg);
static bool run_until(fx *f, unsigned ms, pred_fn pred, const void *arg)
{
    uint64_t until = nu_ms() + ms;
    for (;;) {
        uint32_t now = (uint32_t)nu_ms();
        assert_int_equal(sn_host_poll(f->h, now), 0);
        if (pred && pred(f, arg))
            return true;
        if (nu_ms() >= until)
            return false;
        sn_host_wait(f->h, sn_host_next_timeout(f->h, now, 20));
    }
}

struct want {
    sn_id id; /* SN_ID_NONE: any */
    sn_event ev;
};

static bool has_ev(fx *f, const void *arg)
{
    const struct want *w = arg;
    for (unsigned i = 0; i < f->nev; i++)
        if (f->ev[i].ev == w->ev && (w->id == SN_ID_NONE || f->ev[i].id == w->id))
            return true;
    return false;
}

static void expect_ev(fx *f, sn_id id, sn_event ev)
{
    struct want w = {id, ev};
    if (!run_until(f, 3000, has_ev, &w))
        fail_msg("event %d for id %u not raised within 3 s", (int)ev, (unsigned)id);
}

/* A listener on a free port through the link, and a client accepted on it. */
static uint16_t listen_free(fx *f, uint8_t max, uint32_t idle_ms)
{
    for (int tries = 0; tries < 5; tries++) {
        uint16_t port = nu_free_port();
        sn_endpoint ep = {NU_LOOPBACK, port};
        int r = sn_host_listen(f->h, &ep, 0, max, idle_ms);
        if (r == 0)
            return port;
        assert_int_equal(r, SN_EADDRINUSE);
    }
    fail_msg("no free port to listen on");
    return 0;
}

static sn_id accept_one(fx *f, uint16_t port, int *cfd)
{
    unsigned before = f->nev;
    *cfd = nu_client(port, 0);
    assert_true(*cfd >= 0);
    struct want w = {SN_ID_NONE, SN_EV_ACCEPTED};
    for (uint64_t until = nu_ms() + 3000; nu_ms() < until;) {
        run_until(f, 50, has_ev, &w);
        for (unsigned i = before; i < f->nev; i++)
            if (f->ev[i].ev == SN_EV_ACCEPTED)
                return f->ev[i].id;
    }
    fail_msg("no ACCEPTED within 3 s");
    return SN_ID_NONE;
}

static size_t read_host(fx *f, sn_id id, char *buf, size_t want)
{
    size_t got = 0;
    for (uint64_t until = nu_ms() + 3000; got < want && nu_ms() < until;) {
        int n = sn_host_read(f->h, id, buf + got, want - got);
        assert_true(n >= 0);
        got += (size_t)n;
        if (n == 0)
            run_until(f, 20, NULL, NULL);
    }
    return got;
}

/* ---- Cases ---------------------------------------------------------------- */

/* Accept, READABLE, read, write back, PEER_CLOSED on FIN, close: the slot is
 * close-pending and its FREED (graceful) follows once the device frees it,
 * as the core raises it after sn_close of a live connection. */
static void test_accept_read_write_fin(void **state)
{
    fx *f = *state;
    uint16_t port = listen_free(f, 4, 0);
    sn_id id = accept_one(f, port, &f->fd[0]);
    unsigned i = sn_id_index(id);
    assert_int_equal(sn_host_slot_id(f->h, i), id);
    assert_int_equal(sn_host_slot_state(f->h, i), SN_CONNECTED);
    assert_int_equal(count_ev(f, id, SN_EV_ACCEPTED), 1);

    sn_slot_status st;
    assert_int_equal(sn_host_slot_status_get(f->h, i, &st), 0);
    assert_int_equal(st.id, id);
    assert_int_equal(st.state, SN_CONNECTED);
    assert_int_equal(st.local.port, port);
    struct sockaddr_in me;
    socklen_t ml = sizeof me;
    assert_int_equal(getsockname(f->fd[0], (struct sockaddr *)&me, &ml), 0);
    assert_int_equal(st.remote.port, ntohs(me.sin_port));
    assert_int_equal(st.remote.addr, NU_LOOPBACK);

    assert_int_equal(send(f->fd[0], "hello", 5, 0), 5);
    expect_ev(f, id, SN_EV_READABLE);
    char buf[64];
    assert_int_equal(read_host(f, id, buf, 5), 5);
    assert_memory_equal(buf, "hello", 5);
    assert_int_equal(sn_host_read(f->h, id, buf, sizeof buf), 0); /* nothing more yet */

    assert_int_equal(sn_host_write(f->h, id, "world", 5, SN_WRITE_PUSH), 5);
    int end;
    assert_int_equal(nu_read_all(f->fd[0], buf, 5, 3000, &end), 5);
    assert_memory_equal(buf, "world", 5);

    shutdown(f->fd[0], SHUT_WR);
    expect_ev(f, id, SN_EV_PEER_CLOSED);
    assert_int_equal(sn_host_slot_state(f->h, i), SN_OTHER_END_CLOSED);
    assert_int_equal(sn_host_read(f->h, id, buf, sizeof buf), SN_ECLOSED);
    assert_int_equal(count_ev(f, id, SN_EV_FREED), 0);

    assert_int_equal(sn_host_close(f->h, id), 0);
    assert_int_equal(sn_host_slot_state(f->h, i), SN_CLOSE_PENDING);
    expect_ev(f, id, SN_EV_FREED);
    assert_int_equal(count_ev(f, id, SN_EV_FREED), 1);
    assert_int_equal(last_ev(f, SN_EV_FREED)->info, SN_FREED_GRACEFUL);
    assert_int_equal(sn_host_slot_id(f->h, i), SN_ID_NONE);
    assert_int_equal(nu_read_all(f->fd[0], buf, sizeof buf, 3000, &end), 0);
    assert_int_equal(end, 0); /* the client sees our FIN */
}

/* A reset connection closed, and a live one terminated: both are free in
 * the mirror the moment the call returns, and no FREED ever follows. A
 * handle kept past its connection is refused. */
static void test_close_reset_terminate_stale(void **state)
{
    fx *f = *state;
    uint16_t port = listen_free(f, 4, 0);
    sn_id a = accept_one(f, port, &f->fd[0]);
    sn_id b = accept_one(f, port, &f->fd[1]);

    nu_close_rst(f->fd[0]);
    f->fd[0] = -1;
    expect_ev(f, a, SN_EV_PEER_CLOSED);
    assert_int_equal(sn_host_close(f->h, a), 0);
    assert_int_equal(sn_host_slot_id(f->h, sn_id_index(a)), SN_ID_NONE);
    assert_int_equal(sn_host_slot_state(f->h, sn_id_index(a)), SN_FREE);

    assert_int_equal(sn_host_terminate(f->h, b), 0);
    assert_int_equal(sn_host_slot_id(f->h, sn_id_index(b)), SN_ID_NONE);
    char buf[16];
    int end = 0;
    nu_read_all(f->fd[1], buf, sizeof buf, 3000, &end);
    assert_int_equal(end, ECONNRESET);

    run_until(f, 200, NULL, NULL);
    assert_int_equal(count_ev(f, a, SN_EV_FREED), 0);
    assert_int_equal(count_ev(f, b, SN_EV_FREED), 0);

    assert_int_equal(sn_host_read(f->h, b, buf, sizeof buf), SN_ESTALE);
    assert_int_equal(sn_host_write(f->h, b, "x", 1, 0), SN_ESTALE);
    assert_int_equal(sn_host_close(f->h, b), SN_ESTALE);
    assert_int_equal(sn_host_terminate(f->h, a), SN_ESTALE);
    assert_int_equal(sn_host_read(f->h, SN_ID_NONE, buf, sizeof buf), SN_ESTALE);
}

/* The device frees an idle connection on its own: a call with the old
 * handle is refused by the device (stale), and the next poll raises FREED
 * (idle) for it. */
static void test_idle_freed_by_device(void **state)
{
    fx *f = *state;
    uint16_t port = listen_free(f, 4, 150);
    sn_id id = accept_one(f, port, &f->fd[0]);
    nu_sleep_ms(400); /* no poll meanwhile: the mirror still has it */
    assert_int_equal(sn_host_slot_id(f->h, sn_id_index(id)), id);
    char buf[8];
    assert_int_equal(sn_host_read(f->h, id, buf, sizeof buf), SN_ESTALE);
    expect_ev(f, id, SN_EV_FREED);
    assert_int_equal(last_ev(f, SN_EV_FREED)->info, SN_FREED_IDLE);
    assert_int_equal(sn_host_slot_id(f->h, sn_id_index(id)), SN_ID_NONE);
}

/* More than a frame, and more than the socket takes: the write is split
 * into 2 KiB requests and stops short when the device takes less; WRITABLE
 * follows once the client reads, and the bytes arrive whole and in order. */
static void test_large_and_short_write(void **state)
{
    fx *f = *state;
    uint16_t port = listen_free(f, 4, 0);
    int cfd = nu_client(port, 4096);
    assert_true(cfd >= 0);
    f->fd[0] = cfd;
    struct want w = {SN_ID_NONE, SN_EV_ACCEPTED};
    assert_true(run_until(f, 3000, has_ev, &w));
    sn_id id = last_ev(f, SN_EV_ACCEPTED)->id;

    enum { TOTAL = 8 * 1024 * 1024 };
    uint8_t *data = malloc(TOTAL), *back = malloc(TOTAL);
    assert_non_null(data);
    assert_non_null(back);
    nu_fill(data, TOTAL, 7);
    size_t sent = 0;
    int r = sn_host_write(f->h, id, data, 5000, 0);
    assert_int_equal(r, 5000); /* three requests, all taken */
    sent = 5000;
    bool short_seen = false;
    while (sent < TOTAL && !short_seen) {
        r = sn_host_write(f->h, id, data + sent, TOTAL - sent, 0);
        assert_true(r >= 0);
        sent += (size_t)r;
        short_seen = sent < TOTAL;
    }
    assert_true(short_seen); /* 8 MiB do not fit a 4 KiB receive window */
    assert_int_equal(count_ev(f, id, SN_EV_WRITABLE), 0);

    nu_set_nonblock(cfd);
    size_t got = 0;
    uint64_t until = nu_ms() + 20000;
    while (got < TOTAL && nu_ms() < until) {
        ssize_t n = recv(cfd, back + got, TOTAL - got, 0);
        if (n > 0)
            got += (size_t)n;
        uint32_t now = (uint32_t)nu_ms();
        assert_int_equal(sn_host_poll(f->h, now), 0);
        if (sent < TOTAL && count_ev(f, id, SN_EV_WRITABLE) > 0) {
            f->nev = 0; /* count afresh for the next short write */
            r = sn_host_write(f->h, id, data + sent, TOTAL - sent, SN_WRITE_PUSH);
            assert_true(r >= 0);
            sent += (size_t)r;
        }
        if (n <= 0)
            nu_poll1(cfd, POLLIN, 2);
    }
    assert_int_equal(sent, TOTAL);
    assert_int_equal(got, TOTAL);
    assert_memory_equal(back, data, TOTAL);
    free(data);
    free(back);
}

/* Out to a loopback listener: CONNECTED, bytes both ways. */
static void test_connect_out(void **state)
{
    fx *f = *state;
    uint16_t port = nu_free_port();
    int lfd = socket(AF_INET, SOCK_STREAM, 0);
    f->fd[2] = lfd;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port),
                             .sin_addr.s_addr = htonl(NU_LOOPBACK)};
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    assert_int_equal(bind(lfd, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(listen(lfd, 4), 0);

    sn_endpoint remote = {NU_LOOPBACK, port};
    sn_id id = SN_ID_NONE;
    assert_int_equal(sn_host_connect(f->h, &remote, 7, 0, &id), 0);
    assert_int_not_equal(id, SN_ID_NONE);
    assert_int_equal(sn_host_slot_id(f->h, sn_id_index(id)), id);
    expect_ev(f, id, SN_EV_CONNECTED);
    assert_int_equal(count_ev(f, id, SN_EV_ACCEPTED), 0);
    assert_int_equal(sn_host_slot_state(f->h, sn_id_index(id)), SN_CONNECTED);

    int sfd = accept(lfd, NULL, NULL);
    assert_true(sfd >= 0);
    f->fd[3] = sfd;
    assert_int_equal(sn_host_write(f->h, id, "ping", 4, SN_WRITE_PUSH), 4);
    char buf[8];
    int end;
    assert_int_equal(nu_read_all(sfd, buf, 4, 3000, &end), 4);
    assert_memory_equal(buf, "ping", 4);
    assert_int_equal(send(sfd, "pong", 4, 0), 4);
    expect_ev(f, id, SN_EV_READABLE);
    assert_int_equal(read_host(f, id, buf, 4), 4);
    assert_memory_equal(buf, "pong", 4);

    sn_slot_status st;
    assert_int_equal(sn_host_slot_status_get(f->h, sn_id_index(id), &st), 0);
    assert_int_equal(st.protocol, 7);
    assert_int_equal(st.remote.port, port);
    assert_int_equal(sn_host_terminate(f->h, id), 0);
}

/* A closed port: CONNECT_FAILED with the reason (no retries configured),
 * the slot aborted until the host acknowledges it. */
static void test_connect_refused(void **state)
{
    fx *f = *state;
    sn_endpoint remote = {NU_LOOPBACK, nu_free_port()};
    sn_id id = SN_ID_NONE;
    assert_int_equal(sn_host_connect(f->h, &remote, 0, 0, &id), 0);
    expect_ev(f, id, SN_EV_CONNECT_FAILED);
    assert_int_equal(last_ev(f, SN_EV_CONNECT_FAILED)->info, SN_ECONNREFUSED);
    assert_int_equal(count_ev(f, id, SN_EV_CONNECTED), 0);
    assert_int_equal(count_ev(f, id, SN_EV_ABORTED), 0);
    assert_int_equal(sn_host_slot_state(f->h, sn_id_index(id)), SN_ABORTED);
    assert_int_equal(sn_host_terminate(f->h, id), 0);
    assert_int_equal(sn_host_slot_state(f->h, sn_id_index(id)), SN_FREE);
    run_until(f, 100, NULL, NULL);
    assert_int_equal(count_ev(f, id, SN_EV_FREED), 0);
}

/* Every request's round trip is measured; the counters, the report. */
static void test_rtt_stats_report(void **state)
{
    fx *f = *state;
    uint16_t port = listen_free(f, 4, 0);
    sn_id id = accept_one(f, port, &f->fd[0]);
    run_until(f, 50, NULL, NULL);

    sn_host_link_stats ls;
    sn_host_link_stats_get(f->h, &ls);
    assert_true(ls.requests > 5);
    assert_int_equal(ls.rtt_count, ls.requests); /* every one answered and timed */
    assert_int_equal(ls.timeouts, 0);
    assert_int_equal(ls.resends, 0);
    assert_int_equal(ls.frame_errors, 0);
    assert_true(ls.rtt_p50_us > 0);
    assert_true(ls.rtt_p99_us >= ls.rtt_p50_us);
    assert_true(ls.rtt_max_us >= ls.rtt_p99_us);
    assert_true(ls.polls > 0);
    assert_true(ls.attention > 0); /* the accept was announced */

    assert_int_equal(sn_host_stats_fetch(f->h), 0);
    const sn_stats *s = sn_host_stats_get(f->h);
    assert_true(s->accepted >= 1);
    assert_true(s->poll_passes > 0);

    char small[40], big[8192];
    size_t need = sn_host_report(f->h, big, sizeof big);
    assert_true(need > 0 && need < sizeof big);
    assert_int_equal(strlen(big), need);
    assert_non_null(strstr(big, "slot "));
    assert_non_null(strstr(big, "connected"));
    assert_int_equal(sn_host_report(f->h, small, sizeof small), need);
    assert_int_equal(strlen(small), sizeof small - 1);
    assert_memory_equal(small, big, sizeof small - 1);
    (void)id;
}

/* The daemon dies: calls say SN_EIO; a new one on the same path is
 * reopened, and the first poll frees what the old one held. */
static void test_link_lost_and_reopen(void **state)
{
    fx *f = *state;
    uint16_t port = listen_free(f, 4, 0);
    sn_id id = accept_one(f, port, &f->fd[0]);
    stop_daemon(f, SIGKILL);
    unlink(f->sock);
    assert_int_equal(sn_host_poll(f->h, (uint32_t)nu_ms()), SN_EIO);
    assert_false(sn_host_link_up(f->h));
    char buf[8];
    assert_int_equal(sn_host_read(f->h, id, buf, sizeof buf), SN_EIO);
    assert_int_equal(sn_host_wait(f->h, 10), SN_EIO);

    start_daemon(f, daemon_opts);
    assert_int_equal(sn_host_reopen(f->h), 0);
    assert_true(sn_host_link_up(f->h));
    expect_ev(f, id, SN_EV_FREED);
    assert_int_equal(sn_host_slot_id(f->h, sn_id_index(id)), SN_ID_NONE);
    sn_host_link_stats ls;
    sn_host_link_stats_get(f->h, &ls);
    assert_int_equal(ls.reopens, 1);
    /* The listen was made again on the new daemon. */
    sn_id again = accept_one(f, port, &f->fd[1]);
    assert_int_not_equal(again, SN_ID_NONE);
}

/* exec: the daemon as the host's child on a socket pair (--link stdio). */
static void test_exec_transport(void **state)
{
    fx *f = *state;
    sn_host_shutdown(f->h); /* this case opens its own */
    f->h = NULL;
    char target[300];
    snprintf(target, sizeof target, "exec:%s --link stdio --slots 2 2>/dev/null", SN_SLOTNETD);
    sn_host_config cfg = host_cfg(f);
    assert_int_equal(sn_host_open(&f->h, target, &cfg), 0);
    assert_int_equal(sn_host_slot_count(f->h), 2);
    uint16_t port = listen_free(f, 2, 0);
    sn_id id = accept_one(f, port, &f->fd[0]);
    assert_int_equal(send(f->fd[0], "abc", 3, 0), 3);
    expect_ev(f, id, SN_EV_READABLE);
    char buf[8];
    assert_int_equal(read_host(f, id, buf, 3), 3);
    sn_host_link_stats ls;
    sn_host_link_stats_get(f->h, &ls);
    assert_true(ls.rtt_p50_us > 0 && ls.rtt_max_us >= ls.rtt_p50_us);
    uint64_t t0 = nu_ms();
    sn_host_shutdown(f->h); /* end of file on its stdin: the daemon goes */
    f->h = NULL;
    assert_true(nu_ms() - t0 < 3000);
    /* Its connection went with it. */
    int end = 0;
    nu_read_all(f->fd[0], buf, sizeof buf, 3000, &end);
    assert_true(end == 0 || end == ECONNRESET);
}

/* ---- A fake device: what slotnetd never sends ----------------------------- */

struct fake {
    int lfd;
    unsigned answer; /* requests it answers; it is silent after them */
    unsigned seen;
};

static void fake_reply(int fd, const sn_link_frame *req, int32_t resp, const void *data,
                       uint16_t len, uint8_t command)
{
    uint8_t out[SN_LINK_FRAME_MAX];
    sn_link_frame f = {.kind = SN_LINK_REPLY, .status = SN_LINK_ST_UP, .command = command,
                       .slot = req->slot, .response = resp, .len = len, .data = data};
    int n = sn_link_encode(&f, out, sizeof out);
    if (n > 0 && send(fd, out, (size_t)n, MSG_NOSIGNAL) != n)
        return;
}

static void *fake_main(void *arg)
{
    struct fake *fk = arg;
    int fd = accept(fk->lfd, NULL, NULL);
    if (fd < 0)
        return NULL;
    sn_link_decoder dec;
    sn_link_dec_init(&dec, SN_LINK_REQUEST);
    uint8_t in[4096];
    for (;;) {
        ssize_t n = recv(fd, in, sizeof in, 0);
        if (n <= 0)
            break;
        size_t pos = 0;
        while (pos < (size_t)n) {
            size_t used;
            sn_link_frame req;
            int r = sn_link_dec_feed(&dec, in + pos, (size_t)n - pos, &used, &req);
            pos += used;
            if (r != 1)
                continue;
            if (fk->seen++ >= fk->answer)
                continue; /* silence */
            if (req.command == SN_LINK_CMD_NET_STATUS) {
                /* Noise first: garbage, attention, a stale reply, a
                 * corrupt frame; then the real reply. */
                static const uint8_t noise[] = {0x00, 0x21, 0x7e, 0xa5, 0x00};
                send(fd, noise, sizeof noise, MSG_NOSIGNAL);
                fake_reply(fd, &req, 0, NULL, 0, SN_LINK_CMD_READ);
                uint8_t bad[SN_LINK_FRAME_MAX];
                sn_link_frame bf = {.kind = SN_LINK_REPLY, .command = req.command,
                                    .slot = req.slot};
                int bn = sn_link_encode(&bf, bad, sizeof bad);
                bad[bn - 1] ^= 0xff;
                send(fd, bad, (size_t)bn, MSG_NOSIGNAL);
                sn_link_net_status ns = {.slots = 1, .data_max = SN_LINK_DATA_MAX};
                uint8_t data[SN_LINK_NET_STATUS_SIZE(1)];
                size_t dl = sn_link_net_status_encode(&ns, data);
                fake_reply(fd, &req, 0, data, (uint16_t)dl, req.command);
                send(fd, "\x21", 1, MSG_NOSIGNAL);
            } else {
                fake_reply(fd, &req, 0, NULL, 0, req.command);
            }
        }
    }
    close(fd);
    return NULL;
}

/* Garbage, attention bytes, a stale and a corrupt reply are counted and
 * skipped; a device that stops answering is resent to, then the link is
 * lost, and every call says SN_EIO. */
static void test_fake_device(void **state)
{
    (void)state;
    char dir[64] = "/tmp/sn-fake-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[96];
    snprintf(path, sizeof path, "%s/f.sock", dir);
    struct fake fk = {.answer = 3};
    fk.lfd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
    assert_int_equal(bind(fk.lfd, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(listen(fk.lfd, 1), 0);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, fake_main, &fk), 0);

    sn_host *h;
    sn_host_config cfg;
    sn_host_config_default(&cfg);
    cfg.timeout_ms = 50;
    cfg.resends = 2;
    char target[160];
    snprintf(target, sizeof target, "unix:%s", path);
    assert_int_equal(sn_host_open(&h, target, &cfg), 0); /* null, network status */
    assert_int_equal(sn_host_slot_count(h), 1);
    assert_int_equal(sn_host_poll(h, 0), 0); /* the third, then silence */
    assert_int_equal(sn_host_wait(h, 1000), 1); /* the attention byte after the reply */
    assert_int_equal(sn_host_next_timeout(h, 0, 100), 0);

    sn_host_link_stats ls;
    sn_host_link_stats_get(h, &ls);
    assert_int_equal(ls.requests, 3);
    assert_int_equal(ls.stale_replies, 2);
    assert_int_equal(ls.frame_errors, 2);
    assert_int_equal(ls.attention, 4);
    assert_true(ls.garbage >= 4);

    uint64_t t0 = nu_ms();
    assert_int_equal(sn_host_poll(h, 0), SN_EIO);
    uint64_t took = nu_ms() - t0;
    assert_true(took >= 140 && took < 1000); /* three attempts of 50 ms */
    sn_host_link_stats_get(h, &ls);
    assert_int_equal(ls.timeouts, 3);
    assert_int_equal(ls.resends, 2);
    assert_int_equal(ls.failed, 1);
    assert_false(sn_host_link_up(h));
    sn_endpoint ep = {NU_LOOPBACK, 1};
    assert_int_equal(sn_host_listen(h, &ep, 0, 1, 0), SN_EIO);
    sn_host_shutdown(h);

    pthread_join(t, NULL);
    close(fk.lfd);
    unlink(path);
    rmdir(dir);
}

int main(int argc, char **argv)
{
    if (SN_SLOTNETD[0] == '\0' || access(SN_SLOTNETD, X_OK) != 0) {
        printf("SKIP: slotnetd not built (%s)\n", SN_SLOTNETD);
        return 77;
    }
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_accept_read_write_fin, setup, teardown),
        cmocka_unit_test_setup_teardown(test_close_reset_terminate_stale, setup, teardown),
        cmocka_unit_test_setup_teardown(test_idle_freed_by_device, setup, teardown),
        cmocka_unit_test_setup_teardown(test_large_and_short_write, setup, teardown),
        cmocka_unit_test_setup_teardown(test_connect_out, setup, teardown),
        cmocka_unit_test_setup_teardown(test_connect_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rtt_stats_report, setup, teardown),
        cmocka_unit_test_setup_teardown(test_link_lost_and_reopen, setup, teardown),
        cmocka_unit_test_setup_teardown(test_exec_transport, setup, teardown),
        cmocka_unit_test(test_fake_device),
    };
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
