#include "net_util.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

bool nu_use_poll;
uint32_t nu_target = NU_LOOPBACK;

uint64_t nu_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

void nu_sleep_ms(unsigned ms)
{
    struct timespec ts = {.tv_sec = ms / 1000u, .tv_nsec = (long)(ms % 1000u) * 1000000L};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {
    }
}

static struct sockaddr_in addr_sa(uint32_t addr, uint16_t port)
{
    struct sockaddr_in sa = {.sin_family = AF_INET};
    sa.sin_addr.s_addr = htonl(addr);
    sa.sin_port = htons(port);
    return sa;
}

uint16_t nu_free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return 0;
    struct sockaddr_in sa = addr_sa(NU_LOOPBACK, 0);
    socklen_t len = sizeof sa;
    uint16_t port = 0;
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0 &&
        getsockname(fd, (struct sockaddr *)&sa, &len) == 0)
        port = ntohs(sa.sin_port);
    close(fd);
    return port;
}

int nu_backend_listen(const sn_backend_ops *ops, void *ctx, void **lh, uint16_t *port)
{
    int err = SN_EADDRINUSE;
    for (int i = 0; i < 20 && err == SN_EADDRINUSE; i++) {
        sn_endpoint ep = {.addr = NU_LOOPBACK, .port = nu_free_port()};
        err = ops->listen(ctx, &ep, lh);
        *port = ep.port;
    }
    return err;
}

int nu_client(uint16_t port, int rcvbuf)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    if (rcvbuf > 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
    struct timeval tv = {.tv_sec = 5};
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv); /* bounds connect */
    struct sockaddr_in sa = addr_sa(nu_target, port);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

int nu_client_nb(uint16_t port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in sa = addr_sa(nu_target, port);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0 && errno != EINPROGRESS) {
        close(fd);
        return -1;
    }
    return fd;
}

void nu_set_nonblock(int fd) { fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK); }

void nu_close_rst(int fd)
{
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    close(fd);
}

short nu_poll1(int fd, short events, int timeout_ms)
{
    struct pollfd p = {.fd = fd, .events = events};
    uint64_t end = nu_ms() + (uint64_t)timeout_ms;
    for (;;) {
        int left = (int)(end > nu_ms() ? end - nu_ms() : 0);
        int r = poll(&p, 1, left);
        if (r > 0)
            return p.revents;
        if (r == 0 || errno != EINTR)
            return 0;
    }
}

size_t nu_read_all(int fd, void *buf, size_t len, int timeout_ms, int *end)
{
    uint8_t *p = buf;
    size_t got = 0;
    uint64_t deadline = nu_ms() + (uint64_t)timeout_ms;
    *end = -1;
    while (got < len) {
        uint64_t now = nu_ms();
        if (now >= deadline)
            return got;
        if (!nu_poll1(fd, POLLIN, (int)(deadline - now)))
            continue;
        ssize_t n = recv(fd, p + got, len - got, MSG_DONTWAIT);
        if (n > 0) {
            got += (size_t)n;
        } else if (n == 0) {
            *end = 0;
            return got;
        } else if (errno != EAGAIN && errno != EINTR) {
            *end = errno;
            return got;
        }
    }
    return got;
}

int nu_lowest_free_fd(void)
{
    int fd = dup(0);
    if (fd >= 0)
        close(fd);
    return fd;
}

static struct rlimit saved_rl;
static bool rl_saved;

int nu_rlimit_set(unsigned long soft)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
        return -1;
    if (!rl_saved) {
        saved_rl = rl;
        rl_saved = true;
    }
    rl.rlim_cur = soft;
    return setrlimit(RLIMIT_NOFILE, &rl);
}

void nu_rlimit_restore(void)
{
    if (rl_saved) {
        setrlimit(RLIMIT_NOFILE, &saved_rl);
        rl_saved = false;
    }
}

void nu_fill(uint8_t *buf, size_t len, uint32_t seed)
{
    uint32_t x = seed * 2654435761u + 1u;
    for (size_t i = 0; i < len; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        buf[i] = (uint8_t)x;
    }
}

void nu_teardown_clients(int *fd, int n)
{
    nu_rlimit_restore();
    for (int i = 0; i < n; i++)
        if (fd[i] >= 0)
            close(fd[i]);
}
