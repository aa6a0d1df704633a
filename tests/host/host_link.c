/*
 * libslotnet-host against the real slotnetd over a UNIX socket (and once
 * over exec: with --link stdio), with real loopback clients and servers:
 * every event the host raises must be what the core would have raised for
 * the same traffic. One case, a fake device made here from the codec,
 * checks what a real one never does: silence, garbage, stale replies.
 *
 * Skipped (77) when slotnetd was not built.
 */
#define _XOPEN_SOURCE 700 /* posix_openpt, for the serial case's pseudo-terminal */
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
#include <termios.h>
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

typedef struct fx fx;
struct fx {
    char dir[64];
    char sock[128];
    pid_t daemon;
    sn_host *h;
    rec_ev ev[MAX_EV];
    unsigned nev;
    int fd[4]; /* clients and servers of the test, closed at teardown */
    /* Called after an event is recorded: a handler that acts on the table. */
    void (*hook)(struct fx *f, sn_id id, sn_event ev);
    sn_id hook_id, hook_out; /* the hook's own business */
    uint16_t hook_port;
};

static void on_event(sn_host *h, sn_id id, sn_event ev, int info, void *user)
{
    fx *f = user;
    (void)h;
    if (f->nev < MAX_EV)
        f->ev[f->nev++] = (rec_ev){id, ev, info};
    if (f->hook)
        f->hook(f, id, ev);
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
    /* The text is made afresh per request, and its counters (and the
     * daemon's own line) move between two reports: only its start, the
     * first slot's line, is the same. */
    assert_true(sn_host_report(f->h, small, sizeof small) > sizeof small);
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

/* ---- Handlers that change the table during a poll ------------------------ */

/* A loopback TCP listener of the test's own (the far end of a connect). */
static int tcp_listener(uint16_t *port)
{
    for (int tries = 0; tries < 5; tries++) {
        *port = nu_free_port();
        int lfd = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(*port),
                                 .sin_addr.s_addr = htonl(NU_LOOPBACK)};
        int one = 1;
        setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind(lfd, (struct sockaddr *)&sa, sizeof sa) == 0 && listen(lfd, 4) == 0)
            return lfd;
        close(lfd);
    }
    fail_msg("no port for a loopback listener");
    return -1;
}

static void connect_on_accept(fx *f, sn_id id, sn_event ev)
{
    if (ev != SN_EV_ACCEPTED || f->hook_out != SN_ID_NONE)
        return;
    f->hook_id = id;
    sn_endpoint remote = {NU_LOOPBACK, f->hook_port};
    assert_int_equal(sn_host_connect(f->h, &remote, 3, 0, &f->hook_out), 0);
}

/* The ACCEPTED handler connects out; the connect takes a slot after the
 * accepted one, which the same pass has not compared yet. Its network
 * status predates the connect: no FREED or ACCEPTED for it, and CONNECTED
 * follows in the next pass. */
static void test_connect_from_handler(void **state)
{
    fx *f = *state;
    f->fd[2] = tcp_listener(&f->hook_port);
    uint16_t port = listen_free(f, 4, 0);
    f->hook = connect_on_accept;
    sn_id a = accept_one(f, port, &f->fd[0]);
    assert_int_equal(a, f->hook_id);
    sn_id c = f->hook_out;
    assert_int_not_equal(c, SN_ID_NONE);
    assert_true(sn_id_index(c) > sn_id_index(a)); /* the case the review found */
    expect_ev(f, c, SN_EV_CONNECTED);
    run_until(f, 100, NULL, NULL);
    assert_int_equal(count_ev(f, c, SN_EV_CONNECTED), 1);
    assert_int_equal(count_ev(f, c, SN_EV_FREED), 0);
    assert_int_equal(count_ev(f, c, SN_EV_ACCEPTED), 0);
    assert_int_equal(count_ev(f, a, SN_EV_FREED), 0);
    assert_int_equal(sn_host_slot_id(f->h, sn_id_index(c)), c);
    assert_int_equal(sn_host_slot_state(f->h, sn_id_index(c)), SN_CONNECTED);
    f->fd[3] = accept(f->fd[2], NULL, NULL);
    assert_true(f->fd[3] >= 0);
}

static void terminate_other_on_readable(fx *f, sn_id id, sn_event ev)
{
    if (ev != SN_EV_READABLE || id != f->hook_id || f->hook_out == SN_ID_NONE)
        return;
    assert_int_equal(sn_host_terminate(f->h, f->hook_out), 0);
    f->hook_out = SN_ID_NONE;
    char buf[16];
    while (sn_host_read(f->h, id, buf, sizeof buf) > 0) {
    }
}

/* slot 0's READABLE handler terminates slot 1, not compared yet in that
 * pass: no second ACCEPTED for it, and no FREED (a terminate raises none). */
static void test_terminate_from_handler(void **state)
{
    fx *f = *state;
    uint16_t port = listen_free(f, 4, 0);
    sn_id a = accept_one(f, port, &f->fd[0]);
    sn_id b = accept_one(f, port, &f->fd[1]);
    assert_true(sn_id_index(a) < sn_id_index(b));
    f->hook_id = a;
    f->hook_out = b;
    f->hook = terminate_other_on_readable;
    assert_int_equal(send(f->fd[0], "x", 1, 0), 1);
    expect_ev(f, a, SN_EV_READABLE);
    assert_int_equal(f->hook_out, SN_ID_NONE); /* the handler ran */
    run_until(f, 200, NULL, NULL);
    assert_int_equal(count_ev(f, b, SN_EV_ACCEPTED), 1);
    assert_int_equal(count_ev(f, b, SN_EV_FREED), 0);
    assert_int_equal(sn_host_slot_id(f->h, sn_id_index(b)), SN_ID_NONE);
    assert_int_equal(sn_host_slot_state(f->h, sn_id_index(b)), SN_FREE);
    char buf[8];
    int end = 0;
    nu_read_all(f->fd[1], buf, sizeof buf, 3000, &end);
    assert_int_equal(end, ECONNRESET);
}

/* ---- Lost replies: resent with the same seq, carried out once ------------ */

struct cont_later {
    pid_t pid;
    unsigned ms;
};

static void *cont_main(void *arg)
{
    const struct cont_later *c = arg;
    nu_sleep_ms(c->ms);
    kill(c->pid, SIGCONT);
    return NULL;
}

/* Stops the daemon; a thread lets it go on after ms. */
static pthread_t stop_daemon_for(fx *f, struct cont_later *c, unsigned ms)
{
    c->pid = f->daemon;
    c->ms = ms;
    assert_int_equal(kill(f->daemon, SIGSTOP), 0);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, cont_main, c), 0);
    return t;
}

/* A read whose first attempt is answered after the host gave up on it: the
 * resend (same seq) is answered from the device's replay cache, the late
 * copy is dropped as stale, and no byte is lost or read twice. */
static void test_read_reply_late(void **state)
{
    fx *f = *state;
    uint16_t port = listen_free(f, 4, 0);
    sn_id id = accept_one(f, port, &f->fd[0]);
    assert_int_equal(send(f->fd[0], "ABCDEFGH", 8, 0), 8);
    expect_ev(f, id, SN_EV_READABLE);
    sn_host_link_stats before, after;
    sn_host_link_stats_get(f->h, &before);

    struct cont_later c;
    pthread_t t = stop_daemon_for(f, &c, 400); /* 250 ms attempts: the second is resent */
    char buf[8];
    assert_int_equal(sn_host_read(f->h, id, buf, 4), 4);
    pthread_join(t, NULL);
    assert_memory_equal(buf, "ABCD", 4);
    assert_int_equal(sn_host_read(f->h, id, buf, 4), 4);
    assert_memory_equal(buf, "EFGH", 4);
    assert_int_equal(sn_host_read(f->h, id, buf, 4), 0);
    assert_true(sn_host_link_up(f->h));
    sn_host_link_stats_get(f->h, &after);
    assert_true(after.timeouts > before.timeouts);
    assert_true(after.resends > before.resends);
    assert_true(after.stale_replies > before.stale_replies); /* the replay's extra copy */
    assert_int_equal(after.failed, 0);
}

/* The same for writes: the client receives the stream exactly once. */
static void test_write_reply_late(void **state)
{
    fx *f = *state;
    uint16_t port = listen_free(f, 4, 0);
    sn_id id = accept_one(f, port, &f->fd[0]);
    sn_host_link_stats before, after;
    sn_host_link_stats_get(f->h, &before);

    struct cont_later c;
    pthread_t t = stop_daemon_for(f, &c, 400);
    assert_int_equal(sn_host_write(f->h, id, "0123456789", 10, SN_WRITE_PUSH), 10);
    pthread_join(t, NULL);
    assert_int_equal(sn_host_write(f->h, id, "abcdef", 6, SN_WRITE_PUSH), 6);
    char buf[64];
    int end = 0;
    assert_int_equal(nu_read_all(f->fd[0], buf, 16, 3000, &end), 16);
    assert_memory_equal(buf, "0123456789abcdef", 16);
    nu_set_nonblock(f->fd[0]);
    nu_sleep_ms(200);
    assert_true(recv(f->fd[0], buf, sizeof buf, 0) < 0); /* nothing twice */
    sn_host_link_stats_get(f->h, &after);
    assert_true(after.resends > before.resends);
    assert_int_equal(after.failed, 0);
    assert_true(sn_host_link_up(f->h));
}

/* ---- A fake device: what slotnetd never sends ----------------------------- */

struct fake {
    int lfd;
    pthread_mutex_t mu;
    unsigned answer;  /* request frames it answers; it is silent after them */
    unsigned seen;
    bool noise;       /* network status: garbage, attention, stale and corrupt first */
    unsigned v19_at;  /* the request frame (1-based) answered -19 instead, 0 none */
    bool v19_null;    /* every null answered -19 */
    uint8_t epoch;    /* network status as the test sets it */
    uint32_t handle0; /* slot 0's handle */
    unsigned listens; /* listen requests carried out */
    unsigned replays; /* resends answered from the replay cache */
    unsigned delay_ms; /* network status answered this late */
    int fd;            /* >= 0: serve this descriptor (a pty) instead of accepting */
    /* The replay cache, as the protocol asks of a device. */
    bool cached;
    uint8_t cseq, ccmd, cslot;
    uint8_t cache[SN_LINK_FRAME_MAX];
    int clen;
};

static void fake_send(int fd, const void *p, size_t n)
{
    if (write(fd, p, n) != (ssize_t)n)
        return;
}

/* A reply echoing req's seq (command may differ: a stale reply). Kept for
 * replay when it answers req. */
static void fake_reply(struct fake *fk, int fd, const sn_link_frame *req, int32_t resp,
                       const void *data, uint16_t len, uint8_t command)
{
    uint8_t out[SN_LINK_FRAME_MAX];
    sn_link_frame f = {.kind = SN_LINK_REPLY, .status = SN_LINK_ST_UP, .command = command,
                       .slot = req->slot, .response = resp, .len = len, .data = data,
                       .seq = req->seq};
    int n = sn_link_encode(&f, out, sizeof out);
    if (n <= 0)
        return;
    if (command == req->command) {
        fk->cached = req->seq != 0;
        fk->cseq = req->seq;
        fk->ccmd = req->command;
        fk->cslot = req->slot;
        memcpy(fk->cache, out, (size_t)n);
        fk->clen = n;
    }
    fake_send(fd, out, (size_t)n);
}

static void fake_version_error(int fd)
{
    uint8_t out[SN_LINK_FRAME_MAX];
    sn_link_frame f = {.kind = SN_LINK_REPLY, .status = SN_LINK_ST_UP,
                       .command = SN_LINK_CMD_NULL, .slot = SN_LINK_SLOT_NONE,
                       .response = SN_LINK_E_VERSION};
    int n = sn_link_encode(&f, out, sizeof out);
    fake_send(fd, out, (size_t)n);
}

static void fake_handle(struct fake *fk, int fd, const sn_link_frame *req)
{
    pthread_mutex_lock(&fk->mu);
    unsigned nth = ++fk->seen;
    if (nth > fk->answer)
        goto out; /* silence */
    if (nth == fk->v19_at || (fk->v19_null && req->command == SN_LINK_CMD_NULL)) {
        fake_version_error(fd); /* the cache stays: -19 is not an answer */
        goto out;
    }
    if (fk->cached && req->seq != 0 && req->seq == fk->cseq && req->command == fk->ccmd &&
        req->slot == fk->cslot) {
        fk->replays++;
        fake_send(fd, fk->cache, (size_t)fk->clen);
        goto out;
    }
    if (req->command == SN_LINK_CMD_NET_STATUS) {
        if (fk->delay_ms)
            nu_sleep_ms(fk->delay_ms);
        if (fk->noise) {
            /* Noise first: garbage, attention, a stale reply, a corrupt
             * frame; then the real reply. */
            static const uint8_t noise[] = {0x00, 0x21, 0x7e, 0xa5, 0x00};
            fake_send(fd, noise, sizeof noise);
            fake_reply(fk, fd, req, 0, NULL, 0, SN_LINK_CMD_READ);
            uint8_t bad[SN_LINK_FRAME_MAX];
            sn_link_frame bf = {.kind = SN_LINK_REPLY, .command = req->command,
                                .slot = req->slot, .seq = req->seq};
            int bn = sn_link_encode(&bf, bad, sizeof bad);
            bad[bn - 1] ^= 0xff;
            fake_send(fd, bad, (size_t)bn);
        }
        sn_link_net_status ns = {.slots = 1, .data_max = SN_LINK_DATA_MAX, .epoch = fk->epoch};
        if (fk->handle0 != 0) {
            ns.in_use = ns.connected = ns.writable = 1;
            ns.handle[0] = fk->handle0;
        }
        uint8_t data[SN_LINK_NET_STATUS_SIZE(1)];
        size_t dl = sn_link_net_status_encode(&ns, data);
        fake_reply(fk, fd, req, 0, data, (uint16_t)dl, req->command);
        if (fk->noise)
            fake_send(fd, "\x21", 1);
    } else {
        if (req->command == SN_LINK_CMD_LISTEN)
            fk->listens++;
        fake_reply(fk, fd, req, 0, NULL, 0, req->command);
    }
out:
    pthread_mutex_unlock(&fk->mu);
}

static void *fake_main(void *arg)
{
    struct fake *fk = arg;
    int fd = fk->fd >= 0 ? fk->fd : accept(fk->lfd, NULL, NULL);
    if (fd < 0)
        return NULL;
    sn_link_decoder dec;
    sn_link_dec_init(&dec, SN_LINK_REQUEST);
    uint8_t in[4096];
    for (;;) {
        ssize_t n = read(fd, in, sizeof in);
        if (n <= 0)
            break;
        size_t pos = 0;
        while (pos < (size_t)n) {
            size_t used;
            sn_link_frame req;
            int r = sn_link_dec_feed(&dec, in + pos, (size_t)n - pos, &used, &req);
            pos += used;
            if (r == 1)
                fake_handle(fk, fd, &req);
        }
    }
    close(fd);
    return NULL;
}

/* A fake device on a fresh socket, served by a thread. */
struct fake_run {
    char dir[64], path[96], target[160];
    pthread_t t;
};

static void fake_start(struct fake *fk, struct fake_run *run)
{
    snprintf(run->dir, sizeof run->dir, "/tmp/sn-fake-XXXXXX");
    assert_non_null(mkdtemp(run->dir));
    snprintf(run->path, sizeof run->path, "%s/f.sock", run->dir);
    snprintf(run->target, sizeof run->target, "unix:%s", run->path);
    pthread_mutex_init(&fk->mu, NULL);
    fk->lfd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", run->path);
    assert_int_equal(bind(fk->lfd, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(listen(fk->lfd, 1), 0);
    assert_int_equal(pthread_create(&run->t, NULL, fake_main, fk), 0);
}

/* After the host closed its end (or never connected: shutdown unblocks). */
static void fake_stop(struct fake *fk, struct fake_run *run)
{
    shutdown(fk->lfd, SHUT_RDWR);
    pthread_join(run->t, NULL);
    close(fk->lfd);
    pthread_mutex_destroy(&fk->mu);
    unlink(run->path);
    rmdir(run->dir);
}

static sn_host_config fake_cfg(fx *f)
{
    sn_host_config cfg;
    sn_host_config_default(&cfg);
    cfg.timeout_ms = 50;
    cfg.resends = 2;
    if (f) {
        cfg.on_event = on_event;
        cfg.user = f;
    }
    return cfg;
}

/* Garbage, attention bytes, a stale and a corrupt reply are counted and
 * skipped; a device that stops answering is resent to, then the link is
 * lost, and every call says SN_EIO. */
static void test_fake_device(void **state)
{
    (void)state;
    struct fake fk = {.answer = 3, .noise = true, .fd = -1};
    struct fake_run run;
    fake_start(&fk, &run);

    sn_host *h;
    sn_host_config cfg = fake_cfg(NULL);
    assert_int_equal(sn_host_open(&h, run.target, &cfg), 0); /* null, network status */
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
    assert_int_equal(ls.losses, 1);
    assert_false(sn_host_link_up(h));
    sn_endpoint ep = {NU_LOOPBACK, 1};
    assert_int_equal(sn_host_listen(h, &ep, 0, 1, 0), SN_EIO);
    sn_host_shutdown(h);
    fake_stop(&fk, &run);
}

/* A version-error reply to anything but the opening null is noise (the
 * device took a corrupted frame for one of another version): counted,
 * the request resent at once, the link stays up. */
static void test_fake_version_noise(void **state)
{
    (void)state;
    struct fake fk = {.answer = 100, .v19_at = 3, .fd = -1}; /* the poll's network status */
    struct fake_run run;
    fake_start(&fk, &run);
    sn_host *h;
    sn_host_config cfg = fake_cfg(NULL);
    assert_int_equal(sn_host_open(&h, run.target, &cfg), 0);
    uint64_t t0 = nu_ms();
    assert_int_equal(sn_host_poll(h, 0), 0);
    assert_true(nu_ms() - t0 < 40); /* resent at once, not after the 50 ms timeout */
    sn_host_link_stats ls;
    sn_host_link_stats_get(h, &ls);
    assert_true(sn_host_link_up(h));
    assert_int_equal(ls.frame_errors, 1);
    assert_int_equal(ls.resends, 1);
    assert_int_equal(ls.timeouts, 0);
    assert_int_equal(ls.failed, 0);
    assert_int_equal(ls.requests, 3);
    assert_int_equal(fk.replays, 0); /* -19 is no answer: the resend was carried out */
    sn_endpoint ep = {NU_LOOPBACK, 1234};
    assert_int_equal(sn_host_listen(h, &ep, 0, 1, 0), 0);
    sn_host_shutdown(h);
    fake_stop(&fk, &run);
}

/* -19 in answer to the opening null: the device does not speak version 1;
 * the open fails and says so. */
static void test_fake_version_open(void **state)
{
    (void)state;
    struct fake fk = {.answer = 100, .v19_null = true, .fd = -1};
    struct fake_run run;
    fake_start(&fk, &run);
    sn_host *h = NULL;
    sn_host_config cfg = fake_cfg(NULL);
    uint64_t t0 = nu_ms();
    assert_int_equal(sn_host_open(&h, run.target, &cfg), SN_EIO);
    assert_true(nu_ms() - t0 < 1000); /* at once, not after the open's patience */
    assert_non_null(strstr(sn_host_open_error(), "version"));
    assert_int_equal(fk.seen, 1);
    fake_stop(&fk, &run);
}

/* The device says (network status epoch) it dropped this host's table:
 * FREED for the connection held, the listen made again. */
static void test_fake_epoch(void **state)
{
    (void)state;
    fx *f = calloc(1, sizeof *f);
    assert_non_null(f);
    struct fake fk = {.answer = 1000, .handle0 = 0x0100u, .fd = -1};
    struct fake_run run;
    fake_start(&fk, &run);
    sn_host_config cfg = fake_cfg(f);
    assert_int_equal(sn_host_open(&f->h, run.target, &cfg), 0);
    sn_endpoint ep = {NU_LOOPBACK, 4321};
    assert_int_equal(sn_host_listen(f->h, &ep, 0, 2, 0), 0);
    assert_int_equal(sn_host_poll(f->h, 0), 0);
    assert_int_equal(count_ev(f, 0x0100u, SN_EV_ACCEPTED), 1);
    assert_int_equal(fk.listens, 1);

    pthread_mutex_lock(&fk.mu);
    fk.epoch = 1;
    fk.handle0 = 0;
    pthread_mutex_unlock(&fk.mu);
    assert_int_equal(sn_host_poll(f->h, 0), 0);
    assert_int_equal(count_ev(f, 0x0100u, SN_EV_FREED), 1);
    assert_int_equal(last_ev(f, SN_EV_FREED)->info, SN_FREED_IDLE);
    assert_int_equal(sn_host_slot_id(f->h, 0), SN_ID_NONE);
    assert_int_equal(fk.listens, 2);
    sn_host_link_stats ls;
    sn_host_link_stats_get(f->h, &ls);
    assert_int_equal(ls.epochs, 1);
    assert_int_equal(sn_host_poll(f->h, 0), 0); /* once: the epoch stands */
    assert_int_equal(fk.listens, 2);
    assert_int_equal(count_ev(f, 0x0100u, SN_EV_FREED), 1);
    sn_host_shutdown(f->h);
    fake_stop(&fk, &run);
    free(f);
}

/* A serial line's reply deadline grows with the frames' time on the wire:
 * at 9600 baud a network status (18 + 18 + 84 bytes) is worth 250 ms more
 * than the 50 ms timeout, so a device answering in 200 ms is not resent to.
 * The line is a pseudo-terminal, the fake device on its master side. */
static void test_fake_serial_rate(void **state)
{
    (void)state;
    int master = posix_openpt(O_RDWR | O_NOCTTY);
    assert_true(master >= 0);
    assert_int_equal(grantpt(master), 0);
    assert_int_equal(unlockpt(master), 0);
    struct termios t;
    assert_int_equal(tcgetattr(master, &t), 0);
    cfmakeraw(&t);
    assert_int_equal(tcsetattr(master, TCSANOW, &t), 0);
    char target[128];
    snprintf(target, sizeof target, "serial:%s,9600", ptsname(master));
    struct fake fk = {.answer = 1000, .delay_ms = 200, .fd = master};
    pthread_mutex_init(&fk.mu, NULL);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, fake_main, &fk), 0);

    sn_host *h;
    sn_host_config cfg = fake_cfg(NULL);
    assert_int_equal(sn_host_open(&h, target, &cfg), 0);
    uint64_t t0 = nu_ms();
    assert_int_equal(sn_host_poll(h, 0), 0);
    assert_true(nu_ms() - t0 >= 190);
    sn_host_link_stats ls;
    sn_host_link_stats_get(h, &ls);
    assert_int_equal(ls.timeouts, 0);
    assert_int_equal(ls.resends, 0);
    sn_host_shutdown(h);
    /* The fake's read sees the slave closed (EIO on Linux) and ends. */
    pthread_join(th, NULL);
    close(master);
    pthread_mutex_destroy(&fk.mu);
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
        cmocka_unit_test_setup_teardown(test_connect_from_handler, setup, teardown),
        cmocka_unit_test_setup_teardown(test_terminate_from_handler, setup, teardown),
        cmocka_unit_test_setup_teardown(test_read_reply_late, setup, teardown),
        cmocka_unit_test_setup_teardown(test_write_reply_late, setup, teardown),
        cmocka_unit_test(test_fake_device),
        cmocka_unit_test(test_fake_version_noise),
        cmocka_unit_test(test_fake_version_open),
        cmocka_unit_test(test_fake_epoch),
        cmocka_unit_test(test_fake_serial_rate),
    };
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
