/*
 * The file endpoints of the rr_ API on volume 0 (the storage folder):
 * rr_download, rr_filelist, rr_fileinfo, rr_delete, rr_mkdir, rr_move.
 *
 * Every path goes through vol.c (confined, no symlink followed) and every
 * final component is opened or changed relative to its parent's descriptor
 * with O_NOFOLLOW / AT_SYMLINK_NOFOLLOW. Directories are read with
 * getdents64 into a buffer on the stack: opendir() would allocate per
 * request.
 */
#define _GNU_SOURCE /* getdents64, renameat2 */

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "web.h"

/* How deep a recursive delete goes; each level holds a descriptor and a
 * directory buffer on the stack. */
#define RM_DEPTH_MAX VOL_DEPTH_MAX
/* rr_fileinfo reads this much from each end of a file, no more. */
#define SCAN_BYTES 4096

/* Decoded names and paths; one request at a time. */
static char name_buf[PATH_MAX];
static char rel_buf[PATH_MAX];
static char rel2_buf[PATH_MAX];

union dirbuf {
    struct dirent64 align;
    char bytes[2048];
};

/* The decoded parameter key as a path on volume 0: VOL_OK with rel set. */
static int arg_path(const struct rr_req *r, const char *key, char *rel)
{
    int n = rr_arg(r, key, name_buf, sizeof name_buf);
    if (n == -1)
        return VOL_NOENT;
    if (n < 0)
        return VOL_BAD;
    return vol_parse(name_buf, rel, PATH_MAX);
}

static bool is_dot(const char *name)
{
    return name[0] == '.' && (name[1] == '\0' || (name[1] == '.' && name[2] == '\0'));
}

/* 'd' or 'f' for what the file list shows, '\0' for what it leaves out
 * (symlinks are never followed, devices and pipes are not files). */
static char entry_kind(int dirfd, const struct dirent64 *d, struct stat *st, bool *have_st)
{
    *have_st = false;
    if (d->d_type == DT_DIR)
        return 'd';
    if (d->d_type == DT_REG)
        return 'f';
    if (d->d_type != DT_UNKNOWN)
        return '\0';
    if (fstatat(dirfd, d->d_name, st, AT_SYMLINK_NOFOLLOW) != 0)
        return '\0';
    *have_st = true;
    return S_ISDIR(st->st_mode) ? 'd' : S_ISREG(st->st_mode) ? 'f' : '\0';
}

/* ---- rr_download ------------------------------------------------------- */

void rr_download(struct web *w, struct conn *c, const struct rr_req *r)
{
    int rc = arg_path(r, "name", rel_buf);
    int dirfd = -1, fd = -1;
    const char *leaf = "";
    if (rc == VOL_OK)
        rc = vol_open_parent(w, rel_buf, &dirfd, &leaf, false, NULL);
    if (rc == VOL_OK) {
        /* O_NONBLOCK so a FIFO cannot stall the loop in open(). */
        fd = leaf[0] ? openat(dirfd, leaf, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC) : -1;
        if (fd < 0 && errno == ELOOP)
            rc = VOL_BAD;
        close(dirfd);
    }
    struct stat st;
    if (fd >= 0 && (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode))) {
        close(fd);
        fd = -1;
    }
    if (fd < 0) {
        /* The reference knows only 404 here; a path that tries to leave the
         * folder is refused outright. */
        web_respond_text(w, c, rc == VOL_BAD ? 403 : 404,
                         "Access-Control-Allow-Origin: *\r\n");
        return;
    }
    c->fd = fd;
    web_respond(w, c, 200, file_content_type(leaf),
                "Cache-Control: no-cache\r\nAccess-Control-Allow-Origin: *\r\n",
                (uint64_t)st.st_size, 0);
}

/* ---- rr_filelist ------------------------------------------------------- */

/* Appends s to buf at *pos if it fits within cap. */
static bool put(char *buf, size_t *pos, size_t cap, const char *s, size_t n)
{
    if (*pos + n >= cap)
        return false;
    memcpy(buf + *pos, s, n);
    *pos += n;
    buf[*pos] = '\0';
    return true;
}

/* Prints item at buf + *pos, then gives the arena back to mark, taken
 * before the item was built; false when out of room. */
static bool put_json(char *buf, size_t *pos, size_t cap, size_t mark, cJSON *item)
{
    size_t n = json_print(item, buf + *pos, cap - *pos);
    json_release(mark);
    *pos += n;
    return n > 0;
}

/* One entry as {"type":..,"name":..,"size":..,"date":..}. */
static cJSON *list_entry(char kind, const char *name, const struct stat *st)
{
    char date[32];
    char type[2] = {kind, '\0'};
    cJSON *e = cJSON_CreateObject();
    cJSON_AddStringToObject(e, "type", type);
    cJSON_AddStringToObject(e, "name", name);
    cJSON_AddNumberToObject(e, "size", kind == 'f' ? (double)st->st_size : 0);
    if (model_datetime((int64_t)st->st_mtime, date, sizeof date))
        cJSON_AddStringToObject(e, "date", date);
    return e;
}

void rr_filelist(struct web *w, struct conn *c, const struct rr_req *r)
{
    /* Room kept at the end for ],"next":N} */
    static const size_t tail = 40;
    char *buf = c->out + HDR_ROOM;
    size_t cap = BODY_CAP, pos = 0;
    char num[24];
    unsigned long first = 0;

    json_reset();
    int rc = arg_path(r, "dir", rel_buf);
    if (rr_arg(r, "first", num, sizeof num) > 0) {
        char *end;
        first = strtoul(num, &end, 10);
        if (*end != '\0' || num[0] == '-')
            rc = VOL_BAD;
    }
    int dirfd = -1;
    if (rc == VOL_OK)
        rc = vol_open_dir(w, rel_buf, &dirfd);

    put(buf, &pos, cap, "{\"dir\":", 7);
    size_t mark = json_mark();
    if (!put_json(buf, &pos, cap - tail, mark, cJSON_CreateString(name_buf))) {
        if (dirfd >= 0)
            close(dirfd);
        rr_respond_empty(w, c, 503);
        return;
    }
    int n = snprintf(num, sizeof num, "%lu", first);
    put(buf, &pos, cap, ",\"first\":", 9);
    put(buf, &pos, cap, num, (size_t)n);
    put(buf, &pos, cap, ",\"files\":[", 10);
    if (rc != VOL_OK) {
        /* err 1: no such volume (or a path we refuse); 2: no such folder.
         * No "next" with an error. */
        put(buf, &pos, cap, rc == VOL_NOENT ? "],\"err\":2}" : "],\"err\":1}", 10);
        rr_respond_json(w, c, pos);
        return;
    }

    /* Entries in directory order (stable while it is unchanged); a page
     * ends when the next entry would not fit, and "next" says where the
     * following one starts. */
    unsigned long index = 0, next = 0;
    bool any = false;
    union dirbuf db;
    ssize_t got;
    while (next == 0 && (got = getdents64(dirfd, db.bytes, sizeof db.bytes)) > 0) {
        for (ssize_t off = 0; off < got && next == 0;) {
            const struct dirent64 *d = (const struct dirent64 *)(db.bytes + off);
            off += d->d_reclen;
            struct stat st;
            bool have_st;
            char kind = is_dot(d->d_name) ? '\0' : entry_kind(dirfd, d, &st, &have_st);
            if (kind == '\0')
                continue;
            if (index++ < first)
                continue;
            if (!have_st && fstatat(dirfd, d->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0)
                continue; /* gone meanwhile */
            size_t before = pos;
            size_t entry_mark = json_mark();
            if ((any && !put(buf, &pos, cap - tail, ",", 1)) ||
                !put_json(buf, &pos, cap - tail, entry_mark, list_entry(kind, d->d_name, &st))) {
                pos = before;
                buf[pos] = '\0';
                next = index - 1;
                if (next == first) { /* not even one entry fits: a broken name */
                    close(dirfd);
                    rr_respond_empty(w, c, 503);
                    return;
                }
                break;
            }
            any = true;
        }
    }
    close(dirfd);
    n = snprintf(num, sizeof num, "%lu", next);
    put(buf, &pos, cap, "],\"next\":", 9);
    put(buf, &pos, cap, num, (size_t)n);
    put(buf, &pos, cap, "}", 1);
    json_reset();
    rr_respond_json(w, c, pos);
}

/* ---- rr_fileinfo ------------------------------------------------------- */

/* Finds needle (lower case) in hay[0..n), ignoring case. */
static const char *find_ci(const char *hay, size_t n, const char *needle)
{
    size_t k = strlen(needle);
    for (size_t i = 0; i + k <= n; i++)
        if (strncasecmp(hay + i, needle, k) == 0)
            return hay + i;
    return NULL;
}

/* Copies the rest of the line after p (trimmed) into out. */
static void rest_of_line(const char *p, const char *end, char *out, size_t cap)
{
    while (p < end && (*p == ' ' || *p == ':' || *p == '='))
        p++;
    size_t n = 0;
    while (p + n < end && p[n] != '\n' && p[n] != '\r' && n + 1 < cap)
        n++;
    while (n > 0 && p[n - 1] == ' ')
        n--;
    memcpy(out, p, n);
    out[n] = '\0';
}

struct gcode_info {
    char generated_by[128];
    double layer_height;
    long layers;
};

/* What slicers write in their comments (Cura at the top, PrusaSlicer and
 * its kin at the bottom). Cheap on purpose: no G-code is parsed. */
static void scan(const char *text, size_t n, struct gcode_info *gi)
{
    /* needle, and which field its value goes to */
    static const struct {
        const char *needle;
        int field; /* 0 generatedBy, 1 layer height, 2 layer count */
    } marks[] = {
        {"generated by", 0},  {"generated with", 0}, {";layer height", 1},
        {"; layer_height", 1}, {";layer_count", 2},
    };
    char val[128];
    const char *end = text + n;
    for (size_t i = 0; i < sizeof marks / sizeof marks[0]; i++) {
        const char *p = find_ci(text, n, marks[i].needle);
        if (!p)
            continue;
        rest_of_line(p + strlen(marks[i].needle), end, val, sizeof val);
        if (marks[i].field == 0 && !gi->generated_by[0])
            snprintf(gi->generated_by, sizeof gi->generated_by, "%s", val);
        else if (marks[i].field == 1 && gi->layer_height == 0)
            gi->layer_height = strtod(val, NULL);
        else if (marks[i].field == 2 && gi->layers == 0)
            gi->layers = strtol(val, NULL, 10);
    }
}

void rr_fileinfo(struct web *w, struct conn *c, const struct rr_req *r)
{
    static char text[SCAN_BYTES];
    int rc = arg_path(r, "name", rel_buf);
    int dirfd = -1, fd = -1;
    const char *leaf = "";
    struct stat st;

    if (rc == VOL_OK && vol_open_parent(w, rel_buf, &dirfd, &leaf, false, NULL) == VOL_OK) {
        if (leaf[0])
            fd = openat(dirfd, leaf, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
        close(dirfd);
    }
    if (fd >= 0 && (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode))) {
        close(fd);
        fd = -1;
    }
    json_reset();
    cJSON *o = cJSON_CreateObject();
    if (fd < 0) {
        /* No name means "the file being printed": there is none here. */
        cJSON_AddNumberToObject(o, "err", 1);
        cJSON_AddStringToObject(o, "fileName", name_buf);
    } else {
        struct gcode_info gi = {.generated_by = ""};
        ssize_t n = pread(fd, text, sizeof text, 0);
        if (n > 0)
            scan(text, (size_t)n, &gi);
        if (st.st_size > (off_t)sizeof text) {
            n = pread(fd, text, sizeof text, st.st_size - (off_t)sizeof text);
            if (n > 0)
                scan(text, (size_t)n, &gi);
        }
        close(fd);
        char date[32];
        cJSON_AddNumberToObject(o, "err", 0);
        cJSON_AddStringToObject(o, "fileName", name_buf);
        cJSON_AddNumberToObject(o, "size", (double)st.st_size);
        if (model_datetime((int64_t)st.st_mtime, date, sizeof date))
            cJSON_AddStringToObject(o, "lastModified", date);
        cJSON_AddNumberToObject(o, "height", 0);
        cJSON_AddNumberToObject(o, "layerHeight", gi.layer_height);
        cJSON_AddNumberToObject(o, "numLayers", (double)gi.layers);
        cJSON_AddArrayToObject(o, "filament");
        cJSON_AddStringToObject(o, "generatedBy", gi.generated_by);
        cJSON_AddArrayToObject(o, "thumbnails");
    }
    size_t len = json_print(o, c->out + HDR_ROOM, BODY_CAP);
    json_reset();
    if (len == 0)
        rr_respond_empty(w, c, 503);
    else
        rr_respond_json(w, c, len);
}

/* ---- rr_delete, rr_mkdir, rr_move -------------------------------------- */

/* Deletes directory name inside dirfd and all it holds, without following
 * a symlink (a link is removed, never its target). */
static bool rm_tree(int dirfd, const char *name, unsigned depth)
{
    if (depth >= RM_DEPTH_MAX)
        return false;
    int fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return false;
    union dirbuf db;
    ssize_t got;
    bool ok = true;
    while (ok && (got = getdents64(fd, db.bytes, sizeof db.bytes)) > 0) {
        for (ssize_t off = 0; off < got && ok;) {
            const struct dirent64 *d = (const struct dirent64 *)(db.bytes + off);
            off += d->d_reclen;
            if (is_dot(d->d_name))
                continue;
            struct stat st;
            bool dir = d->d_type == DT_DIR;
            if (d->d_type == DT_UNKNOWN)
                dir = fstatat(fd, d->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
                      S_ISDIR(st.st_mode);
            ok = dir ? rm_tree(fd, d->d_name, depth + 1) : unlinkat(fd, d->d_name, 0) == 0;
        }
    }
    close(fd);
    return ok && unlinkat(dirfd, name, AT_REMOVEDIR) == 0;
}

/* Opens the parent of the path in parameter key; false (and nothing open)
 * unless it is a real, non-root path whose parent exists. */
static bool open_target(struct web *w, const struct rr_req *r, const char *key, char *rel,
                        int *dirfd, const char **leaf)
{
    if (arg_path(r, key, rel) != VOL_OK || rel[0] == '\0')
        return false;
    return vol_open_parent(w, rel, dirfd, leaf, false, NULL) == VOL_OK;
}

static void respond_done(struct web *w, struct conn *c, bool ok)
{
    if (ok)
        rr_volume_changed(w);
    rr_respond_err(w, c, ok ? 0 : 1);
}

void rr_delete(struct web *w, struct conn *c, const struct rr_req *r)
{
    int dirfd;
    const char *leaf;
    bool ok = false;
    if (open_target(w, r, "name", rel_buf, &dirfd, &leaf)) {
        struct stat st;
        if (fstatat(dirfd, leaf, &st, AT_SYMLINK_NOFOLLOW) == 0) {
            if (!S_ISDIR(st.st_mode))
                ok = unlinkat(dirfd, leaf, 0) == 0;
            else if (rr_arg_yes(r, "recursive"))
                ok = rm_tree(dirfd, leaf, 0);
            else
                ok = unlinkat(dirfd, leaf, AT_REMOVEDIR) == 0;
        }
        close(dirfd);
    }
    respond_done(w, c, ok);
}

void rr_mkdir(struct web *w, struct conn *c, const struct rr_req *r)
{
    int dirfd;
    const char *leaf;
    bool ok = false;
    /* A folder named like an upload's temp file would make that upload
     * fail for good. */
    if (open_target(w, r, "dir", rel_buf, &dirfd, &leaf)) {
        ok = !vol_reserved(rel_buf) && mkdirat(dirfd, leaf, 0755) == 0;
        close(dirfd);
    }
    respond_done(w, c, ok);
}

void rr_move(struct web *w, struct conn *c, const struct rr_req *r)
{
    int from_fd, to_fd;
    const char *from_leaf, *to_leaf;
    bool ok = false;
    bool replace = rr_arg_yes(r, "deleteexisting");
    if (open_target(w, r, "old", rel_buf, &from_fd, &from_leaf)) {
        /* An upload's temp file is neither moved nor moved onto. */
        if (!vol_reserved(rel_buf) && open_target(w, r, "new", rel2_buf, &to_fd, &to_leaf)) {
            if (vol_reserved(rel2_buf)) {
                ok = false;
            } else if (replace) {
                /* Replaces a file (or an empty folder) in one step. */
                ok = renameat(from_fd, from_leaf, to_fd, to_leaf) == 0;
            } else {
                int rc = renameat2(from_fd, from_leaf, to_fd, to_leaf, RENAME_NOREPLACE);
                if (rc != 0 && (errno == EINVAL || errno == ENOSYS)) {
                    /* A file system without NOREPLACE: check, then move. */
                    struct stat st;
                    rc = fstatat(to_fd, to_leaf, &st, AT_SYMLINK_NOFOLLOW) == 0
                             ? -1
                             : renameat(from_fd, from_leaf, to_fd, to_leaf);
                }
                ok = rc == 0;
            }
            close(to_fd);
        }
        close(from_fd);
    }
    respond_done(w, c, ok);
}
