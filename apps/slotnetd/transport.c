/* slotnetd's transports; see transport.h. */
#define _GNU_SOURCE /* accept4 */
#include "transport.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
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

static void set_addr(struct sockaddr_un *sa, const char *path)
{
    memset(sa, 0, sizeof *sa);
    sa->sun_family = AF_UNIX;
    memcpy(sa->sun_path, path, strlen(path) + 1);
}

/* May the socket file at path be replaced? Yes when there is none, or it is
 * a socket nobody answers on (a leftover of a daemon that died). A live
 * daemon's socket always answers: it appears only once it listens. Anything
 * else is kept. */
static bool replaceable(const char *path, char *err, size_t errlen)
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
    struct sockaddr_un sa;
    set_addr(&sa, path);
    int rc = connect(fd, (struct sockaddr *)&sa, sizeof sa);
    int e = errno;
    close(fd);
    if (rc == 0 || e == EAGAIN || e == EINPROGRESS) {
        snprintf(err, errlen, "%s: another daemon is serving on it", path);
        return false;
    }
    return true;
}

/* The directory of path, locked (flock) while a daemon checks and replaces
 * the socket file, so two daemons starting together cannot both take the
 * same stale file. Best effort: -1 (no lock) when the directory cannot be
 * opened or stays locked for 2 s. */
static int lock_dir(const char *path)
{
    char dir[sizeof(((struct sockaddr_un *)0)->sun_path)];
    const char *slash = strrchr(path, '/');
    if (slash == NULL)
        snprintf(dir, sizeof dir, ".");
    else if (slash == path)
        snprintf(dir, sizeof dir, "/");
    else
        snprintf(dir, sizeof dir, "%.*s", (int)(slash - path), path);
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    for (int i = 0; i < 100; i++) {
        if (flock(fd, LOCK_EX | LOCK_NB) == 0)
            return fd;
        if (errno != EWOULDBLOCK && errno != EINTR)
            break;
        usleep(20000);
    }
    close(fd);
    return -1;
}

/* The socket is bound under a temporary name in the same directory, made
 * 0600, listening, and only then renamed over the final path: no client ever
 * finds a socket file that refuses connections, and a second daemon's check
 * (replaceable) never mistakes a live daemon's socket for a stale one. */
static bool open_unix(struct xport *x, char *err, size_t errlen)
{
    char tmp[sizeof x->path];
    const char *slash = strrchr(x->path, '/');
    int dirlen = slash ? (int)(slash - x->path + 1) : 0;
    int n = snprintf(tmp, sizeof tmp, "%.*s.slotnetd-%ld", dirlen, x->path, (long)getpid());
    if (n < 0 || (size_t)n >= sizeof tmp) {
        snprintf(err, errlen, "%s: path too long for the temporary socket name", x->path);
        return false;
    }
    x->lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (x->lfd < 0)
        return fail(err, errlen, "socket for", x->path);
    struct sockaddr_un sa;
    set_addr(&sa, tmp);
    (void)unlink(tmp); /* a leftover of a daemon with our pid */
    /* Created 0600 from the start: no window in which others may connect. */
    mode_t old = umask(0177);
    int rc = bind(x->lfd, (struct sockaddr *)&sa, sizeof sa);
    umask(old);
    if (rc != 0)
        return fail(err, errlen, "cannot bind", tmp);
    bool ok = false;
    if (chmod(tmp, 0600) != 0 || listen(x->lfd, 4) != 0) {
        fail(err, errlen, "cannot listen on", tmp);
    } else {
        int lk = lock_dir(x->path);
        if (replaceable(x->path, err, errlen)) {
            if (rename(tmp, x->path) == 0)
                ok = true;
            else
                fail(err, errlen, "cannot rename the socket to", x->path);
        }
        if (lk >= 0)
            close(lk); /* releases the lock */
    }
    if (!ok) {
        (void)unlink(tmp);
        return false;
    }
    x->unlinked = false;
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
