/*
 * The link's transports: a UNIX stream socket, a raw serial line, or a
 * child process on a socket pair. Each ends as one non-blocking descriptor
 * carrying the byte stream; framing is host.c's business.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "host_int.h"
#include "slotnet.h"

static bool prefixed(const char *s, const char *p, const char **rest)
{
    size_t n = strlen(p);
    if (strncmp(s, p, n) != 0)
        return false;
    *rest = s + n;
    return true;
}

static int set_nonblock(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    return fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0 ? -1 : 0;
}

static int open_unix(const char *path, unsigned patience_ms, int *fd)
{
    struct sockaddr_un sa;
    memset(&sa, 0, sizeof sa);
    sa.sun_family = AF_UNIX;
    if (path[0] == '\0' || strlen(path) >= sizeof sa.sun_path)
        return SN_EINVAL;
    memcpy(sa.sun_path, path, strlen(path) + 1);
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (s < 0)
            return SN_EIO;
        /* Blocking connect: a local socket answers at once or not at all. */
        int rc;
        do
            rc = connect(s, (const struct sockaddr *)&sa, sizeof sa);
        while (rc < 0 && errno == EINTR);
        if (rc == 0 && set_nonblock(s) == 0) {
            *fd = s;
            return 0;
        }
        int e = errno;
        close(s);
        errno = e;
        /* Not there yet, or not listening yet: a daemon starting. */
        if (rc == 0 || (e != ENOENT && e != ECONNREFUSED))
            return SN_EIO;
        struct timespec t;
        clock_gettime(CLOCK_MONOTONIC, &t);
        long waited_ms = (t.tv_sec - t0.tv_sec) * 1000L + (t.tv_nsec - t0.tv_nsec) / 1000000L;
        if (waited_ms >= (long)patience_ms)
            return SN_EIO;
        struct timespec nap = {0, 10 * 1000 * 1000};
        nanosleep(&nap, NULL);
        errno = e;
    }
}

static speed_t baud_of(unsigned long b)
{
    static const struct {
        unsigned long baud;
        speed_t speed;
    } table[] = {
        {9600, B9600},     {19200, B19200},   {38400, B38400},   {57600, B57600},
        {115200, B115200}, {230400, B230400}, {460800, B460800}, {921600, B921600},
        {1000000, B1000000}, {2000000, B2000000}, {3000000, B3000000}, {4000000, B4000000},
    };
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++)
        if (table[i].baud == b)
            return table[i].speed;
    return B0;
}

static int open_serial(const char *spec, int *fd, unsigned long *baud_out)
{
    char dev[256];
    const char *comma = strrchr(spec, ',');
    size_t dlen = comma ? (size_t)(comma - spec) : strlen(spec);
    unsigned long baud = 115200;
    if (dlen == 0 || dlen >= sizeof dev)
        return SN_EINVAL;
    memcpy(dev, spec, dlen);
    dev[dlen] = '\0';
    if (comma) {
        char *end;
        errno = 0;
        baud = strtoul(comma + 1, &end, 10);
        if (errno != 0 || *end != '\0' || comma[1] == '\0')
            return SN_EINVAL;
    }
    speed_t speed = baud_of(baud);
    if (speed == B0)
        return SN_EINVAL;

    int s = open(dev, O_RDWR | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
    if (s < 0)
        return SN_EIO;
    int e;
    /* Raw 8N1, no flow control, no echo, no line discipline: the frames
     * are binary and carry their own sync and CRC. */
    struct termios t;
    if (tcgetattr(s, &t) != 0) {
        e = errno;
        close(s);
        errno = e;
        return SN_EIO;
    }
    cfmakeraw(&t);
    t.c_cflag |= CLOCAL | CREAD;
    t.c_cflag &= (tcflag_t)~(CSTOPB | PARENB | CRTSCTS);
    t.c_iflag &= (tcflag_t)~(IXON | IXOFF | IXANY);
    t.c_cc[VMIN] = 0;
    t.c_cc[VTIME] = 0;
    if (cfsetispeed(&t, speed) != 0 || cfsetospeed(&t, speed) != 0 ||
        tcsetattr(s, TCSANOW, &t) != 0) {
        e = errno;
        close(s);
        errno = e;
        return SN_EIO;
    }
    tcflush(s, TCIOFLUSH); /* whatever was on the line before us is not ours */
    *fd = s;
    *baud_out = baud;
    return 0;
}

static int open_exec(const char *cmd, int *fd, pid_t *child)
{
    int sv[2];
    if (cmd[0] == '\0')
        return SN_EINVAL;
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
        return SN_EIO;
    pid_t pid = fork();
    if (pid < 0) {
        close(sv[0]);
        close(sv[1]);
        return SN_EIO;
    }
    if (pid == 0) {
        /* Its own process group, so a terminal's ^C reaches the host, which
         * ends the daemon in order, and so the whole group can be ended. */
        setpgid(0, 0);
        if (dup2(sv[1], 0) < 0 || dup2(sv[1], 1) < 0)
            _exit(127);
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    setpgid(pid, pid); /* as the child does: whichever runs first */
    close(sv[1]);
    if (set_nonblock(sv[0]) < 0) {
        close(sv[0]);
        sn__host_tr_close(-1, pid);
        return SN_EIO;
    }
    *fd = sv[0];
    *child = pid;
    return 0;
}

int sn__host_tr_open(const char *target, unsigned patience_ms, int *fd, bool *is_socket,
                     pid_t *child, unsigned long *baud)
{
    const char *rest;
    *fd = -1;
    *child = 0;
    *is_socket = true;
    *baud = 0;
    if (prefixed(target, "unix:", &rest))
        return open_unix(rest, patience_ms, fd);
    if (prefixed(target, "exec:", &rest))
        return open_exec(rest, fd, child);
    if (prefixed(target, "serial:", &rest)) {
        *is_socket = false;
        return open_serial(rest, fd, baud);
    }
    return open_unix(target, patience_ms, fd);
}

/* Waits up to ms for the child to exit; true once it is reaped. */
static bool reap(pid_t pid, unsigned ms)
{
    for (unsigned waited = 0;; waited += 10) {
        pid_t r = waitpid(pid, NULL, WNOHANG);
        if (r == pid || (r < 0 && errno == ECHILD))
            return true;
        if (waited >= ms)
            return false;
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
}

void sn__host_tr_close(int fd, pid_t child)
{
    if (fd >= 0)
        close(fd);
    if (child <= 0)
        return;
    /* End of file on its stdin is the daemon's cue to stop; then signals
     * to its group (the shell and what it started), nothing wider. */
    if (reap(child, 2000))
        return;
    kill(-child, SIGTERM);
    if (reap(child, 2000))
        return;
    kill(-child, SIGKILL);
    reap(child, 2000);
}
