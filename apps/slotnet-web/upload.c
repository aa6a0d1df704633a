/*
 * rr_upload: the body streams into "<name>.part" beside the target while
 * its CRC-32 is computed (zlib's crc32), then is synced and renamed over
 * the target in one step. Any failure - a CRC or length mismatch, a write
 * error, the connection closing, resetting, idling out or its slot being
 * freed, the server stopping - deletes the temp file (and any directory the
 * upload created) and leaves an existing target as it was.
 *
 * Even a write() into the page cache can sleep for milliseconds while the
 * kernel throttles dirty pages, so the loop does none: it copies the body
 * (and its CRC) into one of the upload's fixed buffers and hands it to the
 * writer thread (writer.c). With every buffer in flight the connection is
 * not read (backpressure) until upload_poll() takes one back. An entry's
 * .part descriptor stays open while any of its buffers is with the writer,
 * so a failed or abandoned upload is discarded only once they are all back.
 *
 * The sync and rename wait for the disk, so they run on the worker of
 * finish.c, after the last write came back: the connection waits in
 * PH_FINISH (not read, its session kept) until upload_poll() sees the job
 * back and answers. Once the body is in and its CRC matched, the file lands
 * even if the client goes away meanwhile (the entry is then an orphan,
 * accounted for and freed when the job returns), and a stopping server
 * drains the writer, then joins the worker.
 *
 * The table of uploads is fixed (MAX_UPLOADS); one more gets 503.
 */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <zlib.h>

#include "web.h"

/* Start write-back every this many bytes, without waiting for it, so the
 * fsync at the end has little left to do. */
#define KICK_BYTES (1024u * 1024u)

/* Every upload entry's body buffers, fixed for the process's life. */
static char bufs[MAX_UPLOADS][UPLOAD_BUFS][UPLOAD_BUF_SIZE];

#define ALL_BUFS ((1u << UPLOAD_BUFS) - 1u)

static struct upload *upload_of(struct web *w, const struct conn *c)
{
    return c->upload >= 0 ? &w->uploads[c->upload] : NULL;
}

/* Removes every trace of u and frees its entry; the connection (which
 * must let go of it) keeps running. */
static void discard(struct web *w, struct upload *u)
{
    assert(u->inflight == 0); /* the writer must be done with fd */
    if (u->fd >= 0)
        close(u->fd);
    unlinkat(u->dirfd, u->part, 0);
    close(u->dirfd);
    vol_unmake(w, u->rel, u->dirs_made_from);
    u->fd = u->dirfd = -1;
    u->active = u->finishing = u->orphan = u->ending = u->dropping = false;
    w->last_upload_err = 1;
    w->uploads_failed++;
}

bool upload_holds_session(const struct web *w, int s)
{
    for (unsigned i = 0; i < MAX_UPLOADS; i++)
        if (w->uploads[i].active && w->uploads[i].session == s)
            return true;
    return false;
}

/* Refusals before the body: answered at once; web_respond closes the
 * connection since the body stays unread. */
void upload_start(struct web *w, struct conn *c, const char *rel, int session, bool have_crc,
                  uint32_t crc, bool have_time, int64_t mtime)
{
    struct upload *u = NULL;
    for (unsigned i = 0; i < MAX_UPLOADS; i++) {
        if (w->uploads[i].active && strcmp(w->uploads[i].rel, rel) == 0) {
            /* Two bodies for one temp file: the second would corrupt the first. */
            rr_respond_err(w, c, 1);
            return;
        }
        if (!w->uploads[i].active && !u)
            u = &w->uploads[i];
    }
    if (!u) {
        rr_respond_empty(w, c, 503); /* the client retries after reading rr_reply */
        return;
    }

    int dirfd;
    const char *leaf;
    unsigned made_from;
    if (vol_open_parent(w, rel, &dirfd, &leaf, true, &made_from) != VOL_OK) {
        rr_respond_err(w, c, 1);
        return;
    }
    size_t leaf_len = strlen(leaf);
    struct stat st;
    bool bad = leaf_len == 0 || leaf_len + sizeof ".part" - 1 > NAME_MAX ||
               strlen(rel) >= sizeof u->rel ||
               (fstatat(dirfd, leaf, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode));
    char part[NAME_MAX + 1];
    int fd = -1;
    if (!bad) {
        snprintf(part, sizeof part, "%s.part", leaf);
        /* A stale or planted .part goes first (unlink never follows a
         * symlink); O_EXCL|O_NOFOLLOW then guarantees a fresh file of ours. */
        unlinkat(dirfd, part, 0);
        fd = openat(dirfd, part, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
    }
    if (fd < 0) {
        close(dirfd);
        vol_unmake(w, rel, made_from);
        w->last_upload_err = 1;
        w->uploads_failed++;
        rr_respond_err(w, c, 1);
        return;
    }

    *u = (struct upload){
        .active = true,
        .conn = (unsigned)(c - w->conns),
        .session = session,
        .fd = fd,
        .dirfd = dirfd,
        .dirs_made_from = made_from,
        .expected = c->parser.content_length,
        .crc = (uint32_t)crc32(0L, Z_NULL, 0),
        .want_crc = crc,
        .have_crc = have_crc,
        .have_time = have_time,
        .mtime = mtime,
        .last_data = w->now,
        .rate_since = w->now,
        .free_bufs = ALL_BUFS,
        .fill = -1,
    };
    memcpy(u->rel, rel, strlen(rel) + 1);
    memcpy(u->leaf, leaf, leaf_len + 1);
    memcpy(u->part, part, sizeof part);
    c->upload = (int)(u - w->uploads);
    c->phase = PH_UPLOAD;
    http_parser_pause(&c->parser, 0); /* it paused at the headers; the body is next */

    if (c->expect_continue) {
        /* curl asks before sending a large body. The previous response is
         * all written by now, so 25 bytes fit; if not, the stream would be
         * corrupt, and a reset is the honest answer. */
        static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
        int n = web_net_write(w, c->id, cont, sizeof cont - 1, SN_WRITE_PUSH);
        if (n != (int)(sizeof cont - 1))
            web_conn_terminate(w, c);
    }
}

/* The buffer being filled goes to the writer; false if it could not. */
static bool hand(struct web *w, struct upload *u)
{
    if (u->fill < 0)
        return true;
    unsigned b = (unsigned)u->fill;
    if (u->fill_len == 0)
        return true; /* stays the fill buffer */
    unsigned idx = (unsigned)(u - w->uploads);
    struct write_job j = {
        .upload = idx,
        .buf = b,
        .fd = u->fd,
        .data = bufs[idx][b],
        .len = u->fill_len,
        .off = u->handed,
    };
    u->handed += u->fill_len;
    if (u->handed - u->kicked >= KICK_BYTES) {
        j.kick_off = u->kicked;
        j.kick_len = u->handed - u->kicked;
        u->kicked = u->handed;
    }
    u->fill = -1;
    u->fill_len = 0;
    if (!writer_submit(&j)) {
        u->free_bufs |= 1u << b; /* no writer: only at shutdown */
        if (u->werr == 0)
            u->werr = EIO;
        return false;
    }
    u->inflight++;
    return true;
}

/* Takes a free buffer for filling, if none is being filled. */
static bool take(struct upload *u)
{
    if (u->fill >= 0)
        return true;
    if (u->free_bufs == 0)
        return false;
    unsigned b = 0;
    while (!(u->free_bufs & (1u << b)))
        b++;
    u->free_bufs &= ~(1u << b);
    u->fill = (int)b;
    u->fill_len = 0;
    return true;
}

/* Gives back the buffer being filled, unwritten (the upload is failing). */
static void untake(struct upload *u)
{
    if (u->fill >= 0)
        u->free_bufs |= 1u << (unsigned)u->fill;
    u->fill = -1;
    u->fill_len = 0;
}

bool upload_ready(struct web *w, struct conn *c)
{
    struct upload *u = upload_of(w, c);
    if (!u)
        return true;
    /* The body comes in reads of at most UPLOAD_BUF_SIZE, each handed on
     * after it is parsed: an empty buffer takes the next one whole. */
    if (u->fill >= 0 && u->fill_len > 0)
        (void)hand(w, u);
    if (take(u)) {
        u->stalled = false;
        return true;
    }
    u->stalled = true;
    return false;
}

bool upload_body(struct web *w, struct conn *c, const char *data, size_t len)
{
    struct upload *u = upload_of(w, c);
    if (!u)
        return true;
    if (u->received + len > u->expected || u->received + len > w->upload_max)
        return false; /* the parser counts the length; this only guards it */
    if (u->werr != 0)
        return false; /* disk full or failing: the parser stops here */
    u->crc = (uint32_t)crc32(u->crc, (const Bytef *)data, (uInt)len);
    while (len > 0) {
        if (u->fill >= 0 && u->fill_len == UPLOAD_BUF_SIZE && !hand(w, u))
            return false;
        if (!take(u))
            return false; /* http.c reads no more than a free buffer holds */
        size_t n = UPLOAD_BUF_SIZE - u->fill_len;
        if (n > len)
            n = len;
        memcpy(bufs[u - w->uploads][u->fill] + u->fill_len, data, n);
        u->fill_len += n;
        data += n;
        len -= n;
        u->received += (uint64_t)n;
    }
    u->last_data = w->now;
    /* "Each chunk of an upload in progress also keeps the session alive." */
    if (u->session >= 0 && w->sessions[u->session].used)
        w->sessions[u->session].last = w->now;
    return true;
}

void upload_flush(struct web *w, struct conn *c)
{
    struct upload *u = upload_of(w, c);
    if (u)
        (void)hand(w, u);
}

void upload_fail(struct web *w, struct conn *c)
{
    struct upload *u = upload_of(w, c);
    if (u) {
        untake(u);
        if (u->inflight > 0) {
            /* The reply waits for the writes, so that the .part is gone by
             * the time the client reads {"err":1}. */
            u->dropping = true;
            u->ending = false;
            c->phase = PH_FINISH;
            return;
        }
        discard(w, u);
    }
    c->upload = -1;
    rr_respond_err(w, c, 1);
}

/* The body is in and written: check it, and hand the finish to the worker.
 * Answers c (NULL for an orphan) at once only when the check fails. */
static void conclude(struct web *w, struct upload *u, struct conn *c)
{
    u->ending = false;
    bool ok = u->werr == 0 && u->received == u->expected && u->handed == u->received &&
              (!u->have_crc || u->crc == u->want_crc);
    if (ok) {
        /* Durable before it replaces anything: a power cut must leave the
         * old file or the whole new one. That waits for the disk, so the
         * worker does it; the reply goes out when it is done. */
        struct finish_job j = {
            .upload = (unsigned)(u - w->uploads),
            .fd = u->fd,
            .dirfd = u->dirfd,
            .have_time = u->have_time,
            .mtime = u->mtime,
        };
        memcpy(j.part, u->part, sizeof j.part);
        memcpy(j.leaf, u->leaf, sizeof j.leaf);
        if (finish_submit(&j)) {
            u->fd = -1; /* the worker's now */
            u->finishing = true;
            if (c)
                c->phase = PH_FINISH;
            return;
        }
        /* no worker: only at shutdown */
    }
    discard(w, u);
    if (c) {
        c->upload = -1;
        rr_respond_err(w, c, 1);
    }
}

void upload_finish(struct web *w, struct conn *c)
{
    struct upload *u = upload_of(w, c);
    if (!u) {
        rr_respond_err(w, c, 1);
        return;
    }
    (void)hand(w, u); /* a failure shows in werr */
    untake(u);
    if (u->inflight > 0) {
        u->ending = true; /* concluded when the last write comes back */
        c->phase = PH_FINISH;
        return;
    }
    conclude(w, u, c);
}

/* One finish back from the worker. */
static void finished(struct web *w, const struct finish_job *j)
{
    struct upload *u = &w->uploads[j->upload];
    struct conn *c = u->orphan ? NULL : &w->conns[u->conn];
    if (j->took_us > w->longest_finish_us)
        w->longest_finish_us = j->took_us;
    if (j->err != 0) {
        discard(w, u); /* the .part, and any folder the upload made */
    } else {
        close(u->dirfd);
        u->dirfd = -1;
        u->active = u->finishing = u->orphan = false;
        w->last_upload_err = 0;
        w->uploads_ok++;
        rr_volume_changed(w);
    }
    if (!c)
        return; /* the client went away meanwhile: nobody to tell */
    if (u->session >= 0 && w->sessions[u->session].used)
        w->sessions[u->session].last = w->now; /* the reply is the session's too */
    c->upload = -1;
    rr_respond_err(w, c, j->err != 0);
    web_serve(w, c); /* write it, and go on with any request behind it */
}

/* One buffer back from the writer. */
static void written(struct web *w, const struct write_job *j)
{
    struct upload *u = &w->uploads[j->upload];
    struct conn *c = u->orphan ? NULL : &w->conns[u->conn];
    u->inflight--;
    u->free_bufs |= 1u << j->buf;
    if (j->err != 0) {
        if (u->werr == 0)
            u->werr = j->err;
    } else {
        w->upload_bytes += (uint64_t)j->len;
    }
    /* The stall timer is about the client's silence, not the disk's. */
    u->last_data = w->now;
    if (u->inflight == 0 && u->dropping) {
        discard(w, u);
        if (c) {
            c->upload = -1;
            rr_respond_err(w, c, 1);
            web_serve(w, c);
        }
        return;
    }
    if (u->inflight == 0 && u->ending) {
        conclude(w, u, c);
        if (c)
            web_serve(w, c);
        return;
    }
    if (!c || c->phase != PH_UPLOAD)
        return;
    if (j->err != 0) {
        /* The rest of the body cannot be skipped reliably: close after. */
        c->req_close = true;
        upload_fail(w, c);
        web_serve(w, c);
    } else if (u->stalled) {
        web_serve(w, c); /* a buffer is free again: read on */
    }
}

void upload_poll(struct web *w)
{
    struct write_job writes[MAX_UPLOADS * UPLOAD_BUFS];
    unsigned nw = writer_collect(writes, MAX_UPLOADS * UPLOAD_BUFS);
    for (unsigned i = 0; i < nw; i++)
        written(w, &writes[i]);
    struct finish_job jobs[MAX_UPLOADS];
    unsigned n = finish_collect(jobs, MAX_UPLOADS);
    for (unsigned i = 0; i < n; i++)
        finished(w, &jobs[i]);
}

void upload_abort(struct web *w, struct conn *c)
{
    struct upload *u = upload_of(w, c);
    c->upload = -1;
    if (!u)
        return;
    if (u->finishing) {
        u->orphan = true; /* its body was whole and right: let it land */
    } else if (u->inflight > 0) {
        /* The writer still has its buffers: finish the job once they are
         * back - a whole body (ending) may still land, anything else goes. */
        u->orphan = true;
        if (!u->ending)
            u->dropping = true;
        untake(u);
    } else {
        discard(w, u);
    }
}

/* Below this an upload is a trickle holding one of the few upload entries
 * (a byte now and then keeps it clear of the no-data rule); a 2G link
 * still moves fifty times as much. */
#define UPLOAD_MIN_BYTES_PER_S 1024u

void upload_tick(struct web *w)
{
    for (unsigned i = 0; i < MAX_UPLOADS; i++) {
        struct upload *u = &w->uploads[i];
        if (!u->active || u->finishing || u->orphan || u->ending || u->dropping)
            continue;
        /* RRF gives up after 8 s without data; so do we, after the session
         * timeout (8 s by default), since the session would end too. */
        bool gone = sn_time_reached(w->now, u->last_data + w->session_timeout_ms);
        /* And over each window of that length, at least the minimum rate,
         * unless it was our side (buffers with the writer) that held it. */
        if (!gone && sn_time_reached(w->now, u->rate_since + w->session_timeout_ms)) {
            uint64_t want = (uint64_t)UPLOAD_MIN_BYTES_PER_S * w->session_timeout_ms / 1000u;
            gone = !u->stalled && u->inflight == 0 && u->received - u->rate_mark < want;
            u->rate_since = w->now;
            u->rate_mark = u->received;
        }
        if (gone)
            web_conn_terminate(w, &w->conns[u->conn]); /* drop_file discards it */
    }
}

unsigned upload_active(const struct web *w)
{
    unsigned n = 0;
    for (unsigned i = 0; i < MAX_UPLOADS; i++)
        n += w->uploads[i].active;
    return n;
}
