/* slotnetd's transports; see transport.h. */
#define _GNU_SOURCE /* accept4 */
#include "transport.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

static bool nonblock(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    return fl >= 0 && fcntl(fd, F_SETFL, fl | O_NONBLOCK) == 0;
}

static bool fail(char *err, size_t errlen, const char *what, const char *path)
{
    snprintf(err, errlen, "%s %s: %s", what, path, strerror(errno));
    return false;
}

static speed_t speed_of(unsigned baud)
{
    switch (baud) {
    case 9600: return B9600;
    case 19200: return B19200;
    case 38400: return B38400;
    case 57600: return B57600;
    case 115200: return B115200;
    case 230400: return B230400;
    case 460800: return B460800;
    case 500000: return B500000;
    case 921600: return B921600;
    case 1000000: return B1000000;
    case 2000000: return B2000000;
    default: return B0;
    }
}

bool xport_parse(const char *spec, struct xport *x, char *err, size_t errlen)
{
    memset(x, 0, sizeof *x);
    x->lfd = x->rfd = x->wfd = -1;
    x->unlinked = true; /* nothing of ours on disk until bind() */
    x->stdio_flags[0] = x->stdio_flags[1] = -1;
    if (strcmp(spec, "stdio") == 0) {
        x->kind = XP_STDIO;
        return true;
    }
    const char *rest;
    if (strncmp(spec, "unix:", 5) == 0) {
        x->kind = XP_UNIX;
        rest = spec + 5;
    } else if (strncmp(spec, "serial:", 7) == 0) {
        x->kind = XP_SERIAL;
        rest = spec + 7;
        x->baud = 115200;
    } else {
        snprintf(err, errlen, "expected unix:PATH, serial:DEVICE[,BAUD] or stdio");
        return false;
    }
    size_t n = strlen(rest);
    const char *comma = x->kind == XP_SERIAL ? strrchr(rest, ',') : NULL;
    if (comma) {
        char *end;
        errno = 0;
        unsigned long b = strtoul(comma + 1, &end, 10);
        if (comma[1] < '0' || comma[1] > '9' || *end != '\0' || errno != 0 || b > 4000000 ||
            speed_of((unsigned)b) == B0) {
            snprintf(err, errlen, "unsupported baud rate '%s' (9600..2000000, a standard rate)",
                     comma + 1);
            return false;
        }
        x->baud = (unsigned)b;
        n = (size_t)(comma - rest);
    }
    if (n == 0 || n >= sizeof x->path) {
        snprintf(err, errlen, "path empty or longer than %zu bytes", sizeof x->path - 1);
        return false;
    }
    memcpy(x->path, rest, n);
    x->path[n] = '\0';
    return true;
}

/* An existing file at the socket's path: a socket nobody answers on is a
 * leftover of a daemon that died and is removed; anything else is kept. */
static bool clear_stale(const char *path, char *err, size_t errlen)
{
    struct stat st;
    if (lstat(path, &st) != 0)
        return errno == ENOENT ? true : fail(err, errlen, "cannot examine", path);
    if (!S_ISSOCK(st.st_mode)) {
        snprintf(err, errlen, "%s exists and is not a socket; not touching it", path);
        return false;
    }
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return fail(err, errlen, "socket for", path);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    memcpy(sa.sun_path, path, strlen(path) + 1);
    int rc = connect(fd, (struct sockaddr *)&sa, sizeof sa);
    int e = errno;
    close(fd);
    if (rc == 0 || e == EAGAIN || e == EINPROGRESS) {
        snprintf(err, errlen, "%s: another daemon is serving on it", path);
        return false;
    }
    if (unlink(path) != 0 && errno != ENOENT)
        return fail(err, errlen, "cannot remove stale socket", path);
    return true;
}

static bool open_unix(struct xport *x, char *err, size_t errlen)
{
    if (!clear_stale(x->path, err, errlen))
        return false;
    x->lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (x->lfd < 0)
        return fail(err, errlen, "socket for", x->path);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    memcpy(sa.sun_path, x->path, strlen(x->path) + 1);
    /* Created 0600 from the start: no window in which others may connect. */
    mode_t old = umask(0177);
    int rc = bind(x->lfd, (struct sockaddr *)&sa, sizeof sa);
    umask(old);
    if (rc != 0)
        return fail(err, errlen, "cannot bind", x->path);
    x->unlinked = false;
    if (chmod(x->path, 0600) != 0 || listen(x->lfd, 4) != 0)
        return fail(err, errlen, "cannot listen on", x->path);
    return true;
}

static int open_serial(const struct xport *x, char *err, size_t errlen)
{
    int fd = open(x->path, O_RDWR | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) {
        fail(err, errlen, "cannot open", x->path);
        return -1;
    }
    struct termios t;
    if (tcgetattr(fd, &t) != 0) {
        fail(err, errlen, "not a terminal:", x->path);
        close(fd);
        return -1;
    }
    cfmakeraw(&t);
    t.c_cflag |= CLOCAL | CREAD; /* three wires: no modem lines to wait for */
    t.c_cflag &= (tcflag_t)~HUPCL;
    speed_t sp = speed_of(x->baud);
    if (cfsetispeed(&t, sp) != 0 || cfsetospeed(&t, sp) != 0 || tcsetattr(fd, TCSANOW, &t) != 0) {
        fail(err, errlen, "cannot set raw mode on", x->path);
        close(fd);
        return -1;
    }
    return fd;
}

bool xport_open(struct xport *x, char *err, size_t errlen)
{
    switch (x->kind) {
    case XP_UNIX:
        return open_unix(x, err, errlen);
    case XP_SERIAL:
        x->rfd = x->wfd = open_serial(x, err, errlen);
        return x->rfd >= 0;
    case XP_STDIO:
        /* The pipes are shared with whoever started us; non-blocking is what
         * keeps the loop from ever waiting on the host. */
        x->stdio_flags[0] = fcntl(0, F_GETFL);
        x->stdio_flags[1] = fcntl(1, F_GETFL);
        if (!nonblock(0) || !nonblock(1))
            return fail(err, errlen, "cannot make non-blocking:", "stdin/stdout");
        x->rfd = 0;
        x->wfd = 1;
        return true;
    }
    return false;
}

int xport_accept(struct xport *x)
{
    if (x->kind != XP_UNIX || x->lfd < 0)
        return 0;
    int fd = accept4(x->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0)
        return 0;
    if (x->rfd >= 0) {
        close(fd); /* one host at a time */
        return -1;
    }
    x->rfd = x->wfd = fd;
    return 1;
}

bool xport_reopen(struct xport *x)
{
    char err[256];
    if (x->kind != XP_SERIAL || x->rfd >= 0)
        return x->rfd >= 0;
    x->rfd = x->wfd = open_serial(x, err, sizeof err);
    return x->rfd >= 0;
}

ssize_t xport_read(struct xport *x, void *buf, size_t len)
{
    if (x->rfd < 0)
        return -1;
    ssize_t n = read(x->rfd, buf, len);
    if (n > 0)
        return n;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return 0;
    return -1; /* end of file, or EIO: a pseudo-terminal's other side closed */
}

ssize_t xport_write(struct xport *x, const void *buf, size_t len)
{
    if (x->wfd < 0)
        return -1;
    ssize_t n = write(x->wfd, buf, len);
    if (n >= 0)
        return n;
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
        return 0;
    return -1;
}

void xport_drop(struct xport *x)
{
    if (x->kind != XP_STDIO && x->rfd >= 0)
        close(x->rfd);
    x->rfd = x->wfd = -1;
}

void xport_close(struct xport *x)
{
    /* The descriptions are shared with whoever started us (a shell's tty). */
    for (int fd = 0; fd < 2 && x->kind == XP_STDIO; fd++)
        if (x->stdio_flags[fd] >= 0)
            (void)fcntl(fd, F_SETFL, x->stdio_flags[fd]);
    xport_drop(x);
    if (x->lfd >= 0) {
        close(x->lfd);
        x->lfd = -1;
        if (!x->unlinked)
            (void)unlink(x->path);
        x->unlinked = true;
    }
}

const char *xport_name(const struct xport *x, char *buf, size_t len)
{
    switch (x->kind) {
    case XP_UNIX:
        snprintf(buf, len, "unix:%s", x->path);
        break;
    case XP_SERIAL:
        snprintf(buf, len, "serial:%s,%u", x->path, x->baud);
        break;
    case XP_STDIO:
        snprintf(buf, len, "stdio");
        break;
    }
    return buf;
}
