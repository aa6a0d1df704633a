/*
 * HTTP/1.1 on one slot: read a request, parse it with http_parser, answer
 * with sn_write as send space allows, then either wait for the next request
 * (keep-alive) or let the core close the slot.
 *
 * A connection is in one phase at a time:
 *   PH_READ    read and parse; a complete request starts a response
 *   PH_UPLOAD  an rr_upload body: read, parse (http_parser counts the
 *              Content-Length) and hand each piece to upload.c
 *   PH_FINISH  the body is in (or the upload failed), and the writer and
 *              the worker are done with it; nothing is read until
 *              upload_poll() has the reply ready
 *   PH_WRITE   write the response; input stays unread (it waits in the
 *              stack, and pipelined bytes we already hold wait in in[])
 *   PH_CLOSING sn_close/CLOSE_AFTER/sn_terminate issued; wait for FREED
 * Every event is checked against the slot's current sn_id first, so nothing
 * left over from a freed connection ever touches the next one.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "web.h"

/* An idle keep-alive connection is closed for a waiting one only after
 * this long without a request (see web_tick). */
#define REUSE_MIN_IDLE_MS 50u

/* A request still incomplete this long after its first byte may be ended
 * (408) for a waiting connection, before its header deadline: a browser
 * sends its headers in one go, so this is a trickle, or a link too bad to
 * serve anyway (see web_tick). */
#define REUSE_MIN_PARTIAL_MS 1000u

/* Requests one connection may have answered in one turn before the others
 * get theirs; a client pipelining as fast as it reads would otherwise keep
 * the loop to itself. The rest waits for web_resume(). */
#define REQUESTS_PER_TURN 8u

/* Body bytes one connection may move in one turn, either way (an upload
 * read, a response written), so the other slots get theirs between its
 * pieces. Over the link every 2 KiB is a round trip of some 50 us: there a
 * turn's share is smaller, to keep a turn near a millisecond. */
#define BYTES_PER_TURN (256u * 1024u)
#define LINK_BYTES_PER_TURN (32u * 1024u)

static size_t turn_bytes(const struct web *w)
{
    return web_net_is_link(w) ? LINK_BYTES_PER_TURN : BYTES_PER_TURN;
}

/* ---- Parser callbacks -------------------------------------------------- */

static int on_url(http_parser *p, const char *at, size_t len)
{
    struct conn *c = p->data;
    /* Fragments of one URL are adjacent in in[]: we feed in[] in order. */
    if (c->url_len == 0)
        c->url_off = (size_t)(at - c->in);
    c->url_len += len;
    return 0;
}

/* A header is complete: keep what the rr_ API needs. Its name and value
 * are still in in[] (nothing moves until the response is out). */
static void header_done(struct conn *c)
{
    const char *name = c->in + c->hf_off;
    const char *v = c->in + c->hv_off;
    size_t n = c->hv_len;
    while (n > 0 && (v[n - 1] == ' ' || v[n - 1] == '\t'))
        n--;
    if (c->hf_len == 13 && strncasecmp(name, "X-Session-Key", 13) == 0) {
        /* Decimal, as the client sends it; anything else matches no session. */
        uint64_t key = 0;
        bool bad = n == 0 || n > 10;
        for (size_t i = 0; i < n && !bad; i++) {
            bad = v[i] < '0' || v[i] > '9';
            key = key * 10 + (uint64_t)(v[i] & 0x0f);
        }
        c->key_bad = bad || key > UINT32_MAX;
        c->key = c->key_bad ? 0 : (uint32_t)key;
    } else if (c->hf_len == 6 && strncasecmp(name, "Expect", 6) == 0) {
        c->expect_continue = n == 12 && strncasecmp(v, "100-continue", 12) == 0;
    }
}

static int on_header_field(http_parser *p, const char *at, size_t len)
{
    struct conn *c = p->data;
    size_t off = (size_t)(at - c->in);
    if (c->in_value)
        header_done(c);
    /* A new name, unless this continues the one before (adjacent bytes):
     * a header with an empty value may never call on_header_value. */
    if (c->in_value || c->hf_len == 0 || c->hf_off + c->hf_len != off) {
        c->hf_off = off;
        c->hf_len = 0;
        c->hv_len = 0;
    }
    c->in_value = false;
    c->hf_len += len;
    return 0;
}

static int on_header_value(http_parser *p, const char *at, size_t len)
{
    struct conn *c = p->data;
    if (!c->in_value) {
        c->hv_off = (size_t)(at - c->in);
        c->hv_len = 0;
        c->in_value = true;
    }
    c->hv_len += len;
    return 0;
}

static int on_headers_complete(http_parser *p)
{
    struct conn *c = p->data;
    if (c->in_value)
        header_done(c);
    c->in_value = false;
    c->headers_done = true;
    /* GET, HEAD and OPTIONS are answered once complete. Anything else
     * stops here: a POST may be an upload, whose body is for upload.c, and
     * the rest get 405 without waiting for a body we would throw away. */
    if (p->method != HTTP_GET && p->method != HTTP_HEAD && p->method != HTTP_OPTIONS)
        http_parser_pause(p, 1);
    return 0;
}

static int on_message_complete(http_parser *p)
{
    struct conn *c = p->data;
    c->msg_done = true;
    /* Stop at the end of this message: any pipelined request behind it
     * stays in in[] until this one has been answered. */
    http_parser_pause(p, 1);
    return 0;
}

static int on_body(http_parser *p, const char *at, size_t len)
{
    struct conn *c = p->data;
    /* Only an upload keeps a body; a GET's is skipped. A failed write
     * stops the parser (HPE_CB_body), and serve() answers. */
    if (c->phase == PH_UPLOAD && c->upload >= 0)
        return upload_body(c->web, c, at, len) ? 0 : 1;
    return 0;
}

static const http_parser_settings parser_settings = {
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

/* ---- Connection record ------------------------------------------------- */

/* Lets go of what a response or an upload holds: the file being streamed,
 * and an unfinished upload's temp file (deleted: nothing is left behind). */
static void drop_file(struct conn *c)
{
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    c->file_left = 0;
    if (c->upload >= 0)
        upload_abort(c->web, c);
}

/* Ready for the next request; keeps in[] (pipelined bytes). */
static void request_reset(struct conn *c)
{
    http_parser_init(&c->parser, HTTP_REQUEST);
    c->parser.data = c;
    c->url_off = c->url_len = 0;
    c->hf_off = c->hf_len = c->hv_off = c->hv_len = 0;
    c->in_value = false;
    c->headers_done = c->msg_done = false;
    c->req_close = false;
    c->expect_continue = false;
    c->key_bad = false;
    c->key = 0;
    c->out_len = c->out_off = 0;
    c->close_after = false;
    drop_file(c);
}

static void conn_start(struct conn *c, sn_id id, uint32_t now)
{
    c->id = id;
    c->phase = PH_READ;
    c->last_active = now;
    c->peer_known = false;
    c->in_len = c->fed = 0;
    c->peer_closed = false;
    c->resume = false;
    request_reset(c);
}

/* sn_terminate, and sn_close of a reset connection, free the slot inside
 * the call, and no SN_EV_FREED need follow: let go of the record here. A
 * late FREED for the old id then fails the id check like any leftover. */
static void forget_if_freed(struct web *w, struct conn *c, sn_id id)
{
    if (id != SN_ID_NONE && c->id == id && web_net_slot_id(w, sn_id_index(id)) != id) {
        drop_file(c);
        c->phase = PH_CLOSING;
        c->id = SN_ID_NONE;
    }
}

/* State first, then the call, in case the core reports back from inside it. */
static void conn_close(struct web *w, struct conn *c)
{
    sn_id id = c->id;
    drop_file(c);
    c->phase = PH_CLOSING;
    web_net_close(w, id);
    forget_if_freed(w, c, id);
}

void web_conn_terminate(struct web *w, struct conn *c)
{
    sn_id id = c->id;
    drop_file(c);
    c->phase = PH_CLOSING;
    web_net_terminate(w, id);
    forget_if_freed(w, c, id);
}

/* ---- Responses --------------------------------------------------------- */

/* Refills out[] from the file. False when the file ended early or failed:
 * the Content-Length already sent can no longer be kept. */
static bool refill(struct conn *c)
{
    size_t want = c->file_left < OUT_SIZE ? (size_t)c->file_left : OUT_SIZE;
    ssize_t n;
    do
        n = read(c->fd, c->out, want);
    while (n < 0 && errno == EINTR);
    if (n <= 0)
        return false;
    c->out_off = 0;
    c->out_len = (size_t)n;
    c->file_left -= (uint64_t)n;
    return true;
}

/* The response is out: drop the answered request, keep any pipelined
 * bytes behind it, and read the next one. */
static void next_request(struct conn *c)
{
    size_t rest = c->in_len - c->fed;
    memmove(c->in, c->in + c->fed, rest);
    c->in_len = rest;
    c->fed = 0;
    /* Bytes held back start their clock when their turn comes. */
    c->req_first = c->web->now;
    request_reset(c);
    c->phase = PH_READ;
}

/* Writes as much as the core takes. True once the whole response is out
 * and the connection stays open; false while it waits for SN_EV_WRITABLE,
 * has had its turn's share (*moved, web_resume continues) or is closing. */
static bool pump(struct web *w, struct conn *c, size_t *moved)
{
    while (c->phase == PH_WRITE) {
        if (c->out_off == c->out_len) {
            if (c->file_left > 0) {
                if (!refill(c)) {
                    web_conn_terminate(w, c); /* a reset beats a silently short body */
                    return false;
                }
                continue;
            }
            return true;
        }
        bool last = c->file_left == 0;
        unsigned flags = 0;
        if (last)
            flags = SN_WRITE_PUSH | (c->close_after ? SN_WRITE_CLOSE_AFTER : 0u);
        if (*moved >= turn_bytes(w)) {
            c->resume = true;
            return false;
        }
        size_t want = c->out_len - c->out_off;
        int n = web_net_write(w, c->id, c->out + c->out_off, want, flags);
        if (n == SN_EAGAIN || n == SN_ENOMEM)
            n = 0; /* documented as never fatal; same as a full buffer */
        if (n < 0) {
            conn_close(w, c); /* peer gone or slot broken: nothing more to say */
            return false;
        }
        if (n > 0)
            c->last_active = w->now;
        c->out_off += (size_t)n;
        *moved += (size_t)n;
        if ((size_t)n < want)
            return false; /* the rest goes on SN_EV_WRITABLE */
        if (last && c->close_after) {
            /* All of a CLOSE_AFTER write was taken: the core closes now. */
            drop_file(c);
            c->phase = PH_CLOSING;
            return false;
        }
    }
    return false;
}

static void format_date(char *buf, size_t len)
{
    time_t t = time(NULL);
    struct tm tm;
    if (t == (time_t)-1 || !gmtime_r(&t, &tm) ||
        strftime(buf, len, "%a, %d %b %Y %H:%M:%S GMT", &tm) == 0)
        buf[0] = '\0';
}

void web_respond(struct web *w, struct conn *c, unsigned status, const char *type,
                 const char *extra, uint64_t length, size_t body_len)
{
    bool head = c->headers_done && c->parser.method == HTTP_HEAD;
    /* A body left unread (a refused POST) cannot be told from the next
     * request: such a response ends the connection. */
    bool close = c->req_close || !c->msg_done;
    char date[64];
    char hdr[HDR_ROOM];
    char clen[40] = "";

    /* A 204 carries no Content-Length (RFC 9110); everything else does, so
     * keep-alive never depends on a close to end a body. */
    if (status != 204)
        snprintf(clen, sizeof clen, "Content-Length: %" PRIu64 "\r\n", length);
    format_date(date, sizeof date);
    int h = snprintf(hdr, sizeof hdr,
                     "HTTP/1.1 %u %s\r\n"
                     "%s%s%s"
                     "Server: slotnet-web\r\n"
                     "%s%s%s"
                     "%s"
                     "%s"
                     "%s"
                     "\r\n",
                     status, http_status_str((enum http_status)status), date[0] ? "Date: " : "",
                     date, date[0] ? "\r\n" : "", type ? "Content-Type: " : "", type ? type : "",
                     type ? "\r\n" : "", clen, extra ? extra : "",
                     close ? "Connection: close\r\n" : "");
    if (h < 0 || (size_t)h >= sizeof hdr) {
        /* Only a caller bug gets here (extra is bounded by its callers). */
        web_conn_terminate(w, c);
        return;
    }
    memcpy(c->out + HDR_ROOM - (size_t)h, hdr, (size_t)h);
    c->out_off = HDR_ROOM - (size_t)h;
    c->out_len = HDR_ROOM + (head ? 0 : body_len);
    if (head)
        drop_file(c);
    else if (c->fd >= 0)
        c->file_left = length;
    c->close_after = close;
    c->phase = PH_WRITE;
    c->last_active = w->now;
}

void web_respond_text(struct web *w, struct conn *c, unsigned status, const char *extra)
{
    int n = snprintf(c->out + HDR_ROOM, BODY_CAP, "%u %s\n", status,
                     http_status_str((enum http_status)status));
    size_t len = n > 0 ? (size_t)n : 0;
    web_respond(w, c, status, "text/plain; charset=utf-8", extra, len, len);
}

/* An error that ends the connection: what follows in the stream cannot be
 * trusted to be a request. */
static void respond_fatal(struct web *w, struct conn *c, unsigned status, const char *extra)
{
    c->req_close = true;
    web_respond_text(w, c, status, extra);
}

/*
 * Tabs that poll together get one snapshot per loop pass: the document is
 * built for the first of them and copied for the rest, so eight pollers in
 * one pass cost one build, not eight.
 */
static void respond_status(struct web *w, struct conn *c)
{
    static char snap[BODY_CAP];
    static size_t snap_len;
    static uint32_t snap_pass, snap_requests;
    uint32_t pass = web_net_passes(w);
    size_t len;
    if (snap_len > 0 && pass == snap_pass && w->requests - snap_requests < 64u) {
        len = snap_len;
        memcpy(c->out + HDR_ROOM, snap, len);
    } else {
        len = status_json(w, c->out + HDR_ROOM, BODY_CAP);
        if (len == 0) {
            web_respond_text(w, c, 500, NULL);
            return;
        }
        memcpy(snap, c->out + HDR_ROOM, len);
        snap_len = len;
        snap_pass = pass;
        snap_requests = w->requests;
    }
    web_respond(w, c, 200, "application/json", "Cache-Control: no-store\r\n", len, len);
}

static void respond_file(struct web *w, struct conn *c, const char *path, size_t path_len)
{
    uint64_t size = 0;
    const char *type = NULL;
    int fd = -1;

    switch (file_open(w, path, path_len, &fd, &size, &type)) {
    case FILE_OK:
        c->fd = fd;
        /* Revalidate every time: the page is served by a device whose
         * firmware (and so its files) can change under the browser. */
        web_respond(w, c, 200, type, "Cache-Control: no-cache\r\n", size, 0);
        return;
    case FILE_REDIRECT: {
        char extra[700];
        if (path_len > 512) {
            web_respond_text(w, c, 414, NULL);
            return;
        }
        /* One leading slash only: "//name/" would be read as another host. */
        while (path_len > 1 && path[1] == '/') {
            path++;
            path_len--;
        }
        snprintf(extra, sizeof extra, "Location: %.*s/\r\n", (int)path_len, path);
        web_respond_text(w, c, 301, extra);
        return;
    }
    case FILE_FORBIDDEN:
        web_respond_text(w, c, 403, NULL);
        return;
    case FILE_NOT_FOUND:
        web_respond_text(w, c, 404, NULL);
        return;
    case FILE_ERROR:
        break;
    }
    web_respond_text(w, c, 500, NULL);
}

/* A complete GET/HEAD/OPTIONS in in[0..fed), or the headers of another
 * method (the parser paused before any body). */
static void handle_request(struct web *w, struct conn *c)
{
    http_parser *p = &c->parser;
    w->requests++;
    if (p->http_major != 1) {
        respond_fatal(w, c, 505, NULL);
        return;
    }
    /* HTTP/1.0 always closes, even when it asks for keep-alive: simpler,
     * and such clients are rare. An upgrade we do not speak closes too, so
     * its next bytes are never taken for a request. */
    c->req_close = p->http_minor == 0 || !http_should_keep_alive(p) || p->upgrade;

    struct http_parser_url u;
    http_parser_url_init(&u);
    if (http_parser_parse_url(c->in + c->url_off, c->url_len, 0, &u) != 0 ||
        !(u.field_set & (1u << UF_PATH))) {
        respond_fatal(w, c, 400, NULL);
        return;
    }
    const char *path = c->in + c->url_off + u.field_data[UF_PATH].off;
    size_t path_len = u.field_data[UF_PATH].len;
    const char *query = "";
    size_t query_len = 0;
    if (u.field_set & (1u << UF_QUERY)) {
        query = c->in + c->url_off + u.field_data[UF_QUERY].off;
        query_len = u.field_data[UF_QUERY].len;
    }

    if (rr_is_rr(path, path_len)) {
        rr_handle(w, c, path, path_len, query, query_len);
        return;
    }
    if (p->method == HTTP_OPTIONS) {
        /* Cross-origin preflight, as RRF answers it (see rr.c). */
        rr_handle(w, c, path, path_len, query, query_len);
        return;
    }
    if (!c->msg_done) {
        web_respond_text(w, c, 405, "Allow: GET, HEAD, OPTIONS\r\n");
        return;
    }
    static const char status_path[] = "/status";
    if (path_len == sizeof status_path - 1 && memcmp(path, status_path, path_len) == 0)
        respond_status(w, c);
    else
        respond_file(w, c, path, path_len);
}

/* http_parser calls both "BREW /" and binary noise an invalid method. A
 * well-formed method we do not know is 501; anything else is 400. */
static bool looks_like_method(const struct conn *c)
{
    size_t i = 0;
    while (i < c->in_len && ((c->in[i] >= 'A' && c->in[i] <= 'Z') || c->in[i] == '-' ||
                             c->in[i] == '_'))
        i++;
    return i > 0 && (i == c->in_len || c->in[i] == ' ');
}

/* Runs the parser over in[fed..in_len) and acts on what it found. */
static void parse(struct web *w, struct conn *c)
{
    size_t avail = c->in_len - c->fed;
    size_t used = http_parser_execute(&c->parser, &parser_settings, c->in + c->fed, avail);
    c->fed += used;

    enum http_errno err = HTTP_PARSER_ERRNO(&c->parser);
    if (err == HPE_PAUSED) {
        handle_request(w, c);
        return;
    }
    if (err == HPE_INVALID_METHOD) {
        respond_fatal(w, c, looks_like_method(c) ? 501 : 400, NULL);
        return;
    }
    if (err != HPE_OK || used != avail) {
        respond_fatal(w, c, 400, NULL);
        return;
    }
    if (c->in_len == IN_SIZE) {
        /* Full and still no complete request: it can never fit. */
        respond_fatal(w, c, c->headers_done ? 413 : 431, NULL);
        return;
    }
}

/* Reads into buf. Returns the count (> 0), 0 when more comes with
 * SN_EV_READABLE, or -1 once the peer has gone (closed, reset or broken):
 * the connection is then closing, and a partial request or an unfinished
 * upload (its temp file deleted by drop_file) dies with it. */
static int read_some(struct web *w, struct conn *c, char *buf, size_t len)
{
    int n = web_net_read(w, c->id, buf, len);
    if (n > 0) {
        c->last_active = w->now;
        return n;
    }
    if (n == 0 && !c->peer_closed)
        return 0;
    if (n == SN_ECLOSED)
        c->peer_closed = true;
    conn_close(w, c);
    return -1;
}

/* One turn of an upload: feed the parser what we hold (on_body copies it
 * for the writer), then read more, up to turn_bytes(). The headers
 * are dealt with, so in[] is reused from the start for the body. Each piece
 * parsed is handed to the writer at once; with none of the upload's buffers
 * free the connection is left unread until one comes back (upload_poll). */
static void upload_turn(struct web *w, struct conn *c)
{
    size_t moved = 0;
    while (c->phase == PH_UPLOAD) {
        if (moved >= turn_bytes(w)) {
            c->resume = true; /* more may wait; web_resume continues */
            return;
        }
        if (!upload_ready(w, c))
            return; /* backpressure: no busy loop, the writer's return wakes it */
        if (c->fed < c->in_len) {
            size_t avail = c->in_len - c->fed; /* at most IN_SIZE: fits a buffer */
            size_t used =
                http_parser_execute(&c->parser, &parser_settings, c->in + c->fed, avail);
            c->fed += used;
            enum http_errno err = HTTP_PARSER_ERRNO(&c->parser);
            if (err == HPE_PAUSED && c->msg_done) {
                upload_finish(w, c); /* responds once it is written */
                return;
            }
            if (err != HPE_OK) {
                /* The file write failed (HPE_CB_body) or the stream is
                 * broken: the rest of the body cannot be skipped reliably. */
                c->req_close = true;
                upload_fail(w, c);
                return;
            }
            upload_flush(w, c);
            continue;
        }
        /* Body bytes go through one shared buffer the size of an upload
         * buffer, and never past the body's end, so nothing of a following
         * request is read here. */
        static char body[UPLOAD_BUF_SIZE];
        c->in_len = c->fed = 0;
        size_t want = sizeof body;
        if (c->parser.content_length < want)
            want = (size_t)c->parser.content_length;
        if (want == 0)
            want = 1; /* let the parser see the end */
        int n = read_some(w, c, body, want);
        if (n <= 0)
            return; /* wait for data, or closing: nobody is left to answer */
        moved += (size_t)n;
        size_t used = http_parser_execute(&c->parser, &parser_settings, body, (size_t)n);
        enum http_errno err = HTTP_PARSER_ERRNO(&c->parser);
        if (err == HPE_PAUSED && c->msg_done && used == (size_t)n) {
            upload_finish(w, c); /* responds once it is written */
            return;
        }
        if (err != HPE_OK || used != (size_t)n) {
            c->req_close = true;
            upload_fail(w, c);
            return;
        }
        upload_flush(w, c);
    }
}

/*
 * Moves one connection as far as it can go now: write what is pending,
 * then read, parse and answer requests one after another, until it waits
 * for the network, closes, or has had its turn. A loop, not recursion: a
 * long pipeline must not grow the stack.
 */
static void serve(struct web *w, struct conn *c)
{
    unsigned answered = 0;
    size_t written = 0;
    c->resume = false;
    for (;;) {
        if (c->phase == PH_WRITE) {
            if (!pump(w, c, &written))
                return;
            next_request(c);
            if (++answered == REQUESTS_PER_TURN) {
                c->resume = true;
                return;
            }
            continue;
        }
        if (c->phase == PH_UPLOAD) {
            upload_turn(w, c);
            if (c->phase == PH_UPLOAD)
                return; /* waiting for data, or had its turn */
            continue;
        }
        if (c->phase != PH_READ)
            return;
        if (c->fed < c->in_len) {
            parse(w, c);
            continue;
        }
        int n = read_some(w, c, c->in + c->in_len, IN_SIZE - c->in_len);
        if (n <= 0)
            return;
        if (c->in_len == 0)
            c->req_first = w->now; /* the header deadline counts from here */
        c->in_len += (size_t)n;
    }
}

void web_serve(struct web *w, struct conn *c)
{
    if (c->id != SN_ID_NONE && c->phase != PH_CLOSING)
        serve(w, c);
}

/* ---- Core events ------------------------------------------------------- */

void web_on_event(sn_core *core, sn_id id, sn_event ev, int info, void *user)
{
    struct web *w = user;
    unsigned i = sn_id_index(id);
    (void)info;
    if (i >= w->nconns)
        return;
    struct conn *c = &w->conns[i];

    if (ev == SN_EV_ACCEPTED) {
        conn_start(c, id, w->now);
        serve(w, c); /* the request may already be waiting */
        return;
    }
    if (c->id != id)
        return; /* about a connection we no longer have */

    switch (ev) {
    case SN_EV_READABLE:
        /* While writing, input waits: the core may keep saying READABLE,
         * and a write attempt per poll pass would be busywork. */
        if (c->phase == PH_READ || c->phase == PH_UPLOAD)
            serve(w, c);
        break;
    case SN_EV_WRITABLE:
        if (c->phase == PH_WRITE)
            serve(w, c);
        break;
    case SN_EV_PEER_CLOSED:
        /* Half-close: a response in flight still goes out; reading after
         * it sees SN_ECLOSED and closes. */
        c->peer_closed = true;
        serve(w, c);
        break;
    case SN_EV_ABORTED:
        web_conn_terminate(w, c); /* acknowledges the abort; FREED follows */
        break;
    case SN_EV_FREED:
        /* Idle timeout or a close that ended: an upload still running here
         * is abandoned by drop_file. */
        drop_file(c);
        c->phase = PH_CLOSING;
        c->id = SN_ID_NONE;
        break;
    default:
        break; /* connect events: we never connect out */
    }
    (void)core;
}

/* Some of a request is in, and more is awaited (one held back for
 * web_resume is complete, not partial). */
static bool partial(const struct conn *c)
{
    return c->phase == PH_READ && c->in_len > 0 && !c->resume;
}

/* 408 and close: the request took too long to arrive. */
static void end_slow_request(struct web *w, struct conn *c)
{
    respond_fatal(w, c, 408, NULL);
    serve(w, c);
}

static bool idle_for_reuse(const struct web *w, const struct conn *c)
{
    return c->id != SN_ID_NONE && c->phase == PH_READ && c->in_len == 0 &&
           sn_time_reached(w->now, c->last_active + REUSE_MIN_IDLE_MS);
}

/* Over the link the queue is not known: taken as delivered. */
static bool delivered(struct web *w, const struct conn *c)
{
    uint32_t unsent, unacked;
    int rc = web_net_tx_queued(w, c->id, &unsent, &unacked);
    return rc == SN_EINVAL || (rc == SN_OK && unsent == 0 && unacked == 0);
}

void web_tick(struct web *w)
{
    uint32_t backlog = web_net_backlog_now(w);
    unsigned closing = 0;
    struct conn *idle = NULL, *slow = NULL;
    for (unsigned i = 0; i < w->nconns; i++) {
        struct conn *c = &w->conns[i];
        forget_if_freed(w, c, c->id);
        if (c->id == SN_ID_NONE)
            continue;
        /* The header deadline counts from a request's first byte, not
         * from the last: a slowloris trickle resets the idle timer with
         * every byte, and would hold its slot for ever. */
        if (partial(c) && sn_time_reached(w->now, c->req_first + w->header_timeout_ms)) {
            end_slow_request(w, c);
            if (c->id == SN_ID_NONE)
                continue;
        }
        if (c->phase == PH_CLOSING)
            closing++;
        else if (idle_for_reuse(w, c))
            continue; /* chosen below, only when a connection waits */
        else if (partial(c) && sn_time_reached(w->now, c->req_first + REUSE_MIN_PARTIAL_MS) &&
                 (!slow || sn_time_after(slow->req_first, c->req_first)))
            slow = c;
    }
    if (backlog == 0 || closing >= backlog)
        return;
    /* On a slow link a response sits in the send buffer long after the app
     * wrote it; closing that connection would throw it away at the close
     * timeout (the client then fetches it all again). Idle means delivered. */
    for (unsigned i = 0; i < w->nconns; i++) {
        struct conn *c = &w->conns[i];
        if (idle_for_reuse(w, c) && (!idle || sn_time_after(idle->last_active, c->last_active)) &&
            delivered(w, c))
            idle = c;
    }
    /* Like nginx reusing keep-alive connections when short of them: a
     * connection waits for a slot while another sits idle between
     * requests. Close the longest idle one, unless enough are closing
     * already to take the waiting ones. A connection that answered a
     * moment ago is spared: its client is likely sending the next request
     * right now, and would see it dropped (browsers retry, but why race).
     * With none idle, the request that has been trickling in the longest
     * goes: past its deadline it is gone already (above), and a second in
     * it is no browser's, while the waiting connection may well be. */
    if (idle)
        conn_close(w, idle);
    else if (slow)
        end_slow_request(w, slow);
}

bool web_resume(struct web *w)
{
    bool more = false;
    for (unsigned i = 0; i < w->nconns; i++) {
        struct conn *c = &w->conns[i];
        if (!c->resume)
            continue;
        if (c->id != SN_ID_NONE && c->phase != PH_CLOSING)
            serve(w, c);
        else
            c->resume = false;
        more |= c->resume;
    }
    return more;
}

void web_conns_init(struct web *w)
{
    for (unsigned i = 0; i < w->nconns; i++) {
        struct conn *c = &w->conns[i];
        c->web = w;
        c->id = SN_ID_NONE;
        c->phase = PH_CLOSING;
        c->resume = false;
        c->fd = -1;
        c->file_left = 0;
        c->upload = -1;
    }
}

void web_release_files(struct web *w)
{
    for (unsigned i = 0; i < w->nconns; i++)
        drop_file(&w->conns[i]);
}
