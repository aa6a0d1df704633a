/*
 * Mapping URL paths to files under --root, without ever leaving it.
 *
 * Two fences: the decoded path may not contain a ".." segment (or NUL or a
 * backslash), and the fully resolved path (realpath: symlinks followed) must
 * still lie under the resolved root. The second fence is what stops a
 * symlink pointing out of the root. A directory inside the root swapped for
 * an outward symlink between realpath() and open() could slip past; that
 * needs write access to the root, which already owns the server.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "web.h"

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

bool percent_decode(const char *s, size_t len, char *out, size_t cap)
{
    size_t o = 0;
    bool ok = cap > 0;
    for (size_t i = 0; ok && i < len; i++) {
        char c = s[i];
        if (c == '%') {
            int hi = i + 2 < len ? hex_value(s[i + 1]) : -1;
            int lo = i + 2 < len ? hex_value(s[i + 2]) : -1;
            c = (char)(hi * 16 + lo);
            i += 2;
            ok = hi >= 0 && lo >= 0;
        }
        ok = ok && c != '\0' && o + 1 < cap;
        if (ok)
            out[o++] = c;
    }
    if (cap > 0)
        out[ok ? o : 0] = '\0'; /* a failed decode leaves an empty string */
    return ok;
}

/* A backslash is a separator on some file systems; nothing here needs one,
 * so refuse it rather than reason about it. */
static bool decode_path(const char *path, size_t len, char *out, size_t cap)
{
    return percent_decode(path, len, out, cap) && !strchr(out, '\\');
}

/* True when some '/'-separated segment of p is exactly "..". */
static bool has_dotdot(const char *p)
{
    while (*p) {
        const char *end = strchr(p, '/');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        if (n == 2 && p[0] == '.' && p[1] == '.')
            return true;
        p += n;
        if (*p == '/')
            p++;
    }
    return false;
}

static const struct {
    const char *ext;
    const char *type;
} types[] = {
    {"html", "text/html; charset=utf-8"},
    {"htm", "text/html; charset=utf-8"},
    {"js", "text/javascript; charset=utf-8"},
    {"mjs", "text/javascript; charset=utf-8"},
    {"css", "text/css; charset=utf-8"},
    {"json", "application/json"},
    {"txt", "text/plain; charset=utf-8"},
    {"xml", "application/xml"},
    {"svg", "image/svg+xml"},
    {"png", "image/png"},
    {"jpg", "image/jpeg"},
    {"jpeg", "image/jpeg"},
    {"gif", "image/gif"},
    {"webp", "image/webp"},
    {"ico", "image/x-icon"},
    {"woff", "font/woff"},
    {"woff2", "font/woff2"},
    {"wasm", "application/wasm"},
    {"pdf", "application/pdf"},
    {"gz", "application/gzip"},
};

const char *file_content_type(const char *name)
{
    const char *slash = strrchr(name, '/');
    const char *dot = strrchr(slash ? slash : name, '.');
    if (dot) {
        for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
            if (strcasecmp(dot + 1, types[i].ext) == 0)
                return types[i].type;
    }
    return "application/octet-stream";
}

static bool under_root(const struct web *w, const char *resolved)
{
    return strncmp(resolved, w->root, w->root_len) == 0 &&
           (resolved[w->root_len] == '/' || resolved[w->root_len] == '\0');
}

enum file_result file_open(const struct web *w, const char *path, size_t path_len, int *fd,
                           uint64_t *size, const char **type)
{
    static const char index_name[] = "index.html";
    char decoded[PATH_MAX];
    char full[PATH_MAX];
    char resolved[PATH_MAX];

    *fd = -1;
    if (path_len == 0 || path[0] != '/')
        return FILE_NOT_FOUND;
    if (!decode_path(path, path_len, decoded, sizeof decoded))
        return FILE_FORBIDDEN;
    if (has_dotdot(decoded))
        return FILE_FORBIDDEN;

    size_t dlen = strlen(decoded);
    bool want_index = decoded[dlen - 1] == '/';
    if (w->root_len + dlen + (want_index ? sizeof index_name : 1) > sizeof full)
        return FILE_NOT_FOUND;
    memcpy(full, w->root, w->root_len);
    memcpy(full + w->root_len, decoded, dlen + 1);
    if (want_index)
        memcpy(full + w->root_len + dlen, index_name, sizeof index_name);

    if (!realpath(full, resolved))
        return errno == EACCES ? FILE_FORBIDDEN : FILE_NOT_FOUND;
    if (!under_root(w, resolved))
        return FILE_FORBIDDEN;

    /* O_NONBLOCK so a FIFO in the root cannot stall the loop in open(). */
    int f = open(resolved, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (f < 0)
        return errno == EACCES ? FILE_FORBIDDEN : FILE_NOT_FOUND;
    struct stat st;
    if (fstat(f, &st) != 0) {
        close(f);
        return FILE_ERROR;
    }
    if (S_ISDIR(st.st_mode)) {
        close(f);
        /* "/sub" names a directory: send the browser to "/sub/" so relative
         * links in its index resolve; "/sub/index.html" being a directory is
         * simply not a file. */
        return want_index ? FILE_NOT_FOUND : FILE_REDIRECT;
    }
    if (!S_ISREG(st.st_mode)) {
        close(f);
        return FILE_FORBIDDEN;
    }
    *fd = f;
    *size = (uint64_t)st.st_size;
    *type = file_content_type(full);
    return FILE_OK;
}
