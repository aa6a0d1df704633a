/*
 * Volume paths ("0:/gcodes/a.g") confined to the storage folder (--sd).
 *
 * Two fences. The text: no ".." segment, no backslash, no control bytes;
 * "." and empty segments are dropped and a leading '/' means the volume's
 * root, so an absolute path cannot name anything outside. The walk: every
 * directory is opened relative to the one before with O_NOFOLLOW, starting
 * from the folder's descriptor, so no symlink is ever followed on the way
 * and nothing swapped in between a check and a use can lead out (the walk
 * is the check). Callers open the last component with O_NOFOLLOW too. A
 * symlink inside the folder is therefore not followed even when it points
 * inside: a printer's SD card has none, and it keeps the rule simple.
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "web.h"

int vol_parse(const char *in, char *rel, size_t cap)
{
    const char *p = in;
    size_t i = 0;
    while (p[i] >= '0' && p[i] <= '9')
        i++;
    if (i > 0 && p[i] == ':') {
        if (i != 1 || p[0] != '0')
            return VOL_NOVOL; /* only volume 0 (the folder) exists */
        p += i + 1;
    }
    size_t o = 0;
    unsigned depth = 0;
    while (*p) {
        while (*p == '/')
            p++;
        if (!*p)
            break;
        const char *slash = strchr(p, '/');
        size_t n = slash ? (size_t)(slash - p) : strlen(p);
        if (n == 2 && p[0] == '.' && p[1] == '.')
            return VOL_BAD;
        if (n > NAME_MAX)
            return VOL_BAD;
        for (size_t k = 0; k < n; k++)
            if ((unsigned char)p[k] < 0x20 || p[k] == '\\' || p[k] == 0x7f)
                return VOL_BAD;
        if (!(n == 1 && p[0] == '.')) {
            /* Bounded depth: every walk over a path (make, unmake, delete)
             * stays a handful of calls on the loop. */
            if (o + 1 + n + 1 > cap || ++depth > VOL_DEPTH_MAX)
                return VOL_BAD;
            if (o > 0)
                rel[o++] = '/';
            memcpy(rel + o, p, n);
            o += n;
        }
        p += n;
    }
    if (cap == 0)
        return VOL_BAD;
    rel[o] = '\0';
    return VOL_OK;
}

bool vol_reserved(const char *rel)
{
    /* "<name>.part" is an upload's temp file: an upload or a move that names
     * one could overwrite another upload's data mid-flight. */
    size_t n = strlen(rel);
    return n >= 5 && strcmp(rel + n - 5, ".part") == 0;
}

unsigned vol_depth(const char *rel)
{
    unsigned n = 0;
    for (; *rel; rel++)
        n += *rel == '/';
    return n;
}

/* Why an openat() of name inside dirfd failed, in our terms. */
static int open_error(int dirfd, const char *name, int err)
{
    struct stat st;
    if (err == ELOOP)
        return VOL_BAD; /* a symlink where a directory was wanted */
    if (err == ENOTDIR) {
        if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK(st.st_mode))
            return VOL_BAD;
        return VOL_NOENT;
    }
    if (err == ENOENT || err == ENAMETOOLONG)
        return VOL_NOENT;
    if (err == EACCES || err == EPERM)
        return VOL_BAD;
    return VOL_IO;
}

static int open_subdir(int dirfd, const char *name)
{
    return openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
}

int vol_open_parent(const struct web *w, const char *rel, int *dirfd, const char **leaf,
                    bool make, unsigned *made_from)
{
    char comp[NAME_MAX + 1];
    unsigned level = 0;
    const char *p = rel;
    int fd = open_subdir(w->sd_fd, ".");
    if (fd < 0)
        return VOL_IO;
    if (made_from)
        *made_from = vol_depth(rel); /* nothing made yet */
    for (;;) {
        const char *slash = strchr(p, '/');
        if (!slash)
            break;
        size_t n = (size_t)(slash - p);
        memcpy(comp, p, n); /* vol_parse bounded n by NAME_MAX */
        comp[n] = '\0';
        int next = open_subdir(fd, comp);
        if (next < 0 && errno == ENOENT && make) {
            if (mkdirat(fd, comp, 0755) == 0) {
                if (made_from && *made_from > level)
                    *made_from = level;
                next = open_subdir(fd, comp);
            } else if (errno == EEXIST) {
                next = open_subdir(fd, comp); /* made by someone else meanwhile */
            }
        }
        if (next < 0) {
            int err = open_error(fd, comp, errno);
            close(fd);
            return err;
        }
        close(fd);
        fd = next;
        level++;
        p = slash + 1;
    }
    *dirfd = fd;
    *leaf = p;
    return VOL_OK;
}

int vol_open_dir(const struct web *w, const char *rel, int *out)
{
    int dirfd;
    const char *leaf;
    if (rel[0] == '\0') {
        *out = open_subdir(w->sd_fd, ".");
        return *out >= 0 ? VOL_OK : VOL_IO;
    }
    int rc = vol_open_parent(w, rel, &dirfd, &leaf, false, NULL);
    if (rc != VOL_OK)
        return rc;
    *out = open_subdir(dirfd, leaf);
    if (*out < 0)
        rc = open_error(dirfd, leaf, errno);
    close(dirfd);
    return rc;
}

void vol_unmake(const struct web *w, const char *rel, unsigned from)
{
    char prefix[PATH_MAX];
    size_t len = strlen(rel);
    if (len >= sizeof prefix)
        return;
    memcpy(prefix, rel, len + 1);
    /* Cut rel back one level at a time: "a/b/c.g" -> "a/b" -> "a". */
    for (unsigned d = vol_depth(rel); d > from; d--) {
        char *slash = strrchr(prefix, '/');
        if (!slash)
            return;
        *slash = '\0';
        int dirfd;
        const char *leaf;
        if (vol_open_parent(w, prefix, &dirfd, &leaf, false, NULL) != VOL_OK)
            return;
        int rc = unlinkat(dirfd, leaf, AT_REMOVEDIR);
        close(dirfd);
        if (rc != 0)
            return; /* not empty: someone else put something there */
    }
}
