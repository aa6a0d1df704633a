/*
 * The RepRapFirmware HTTP API (rr_*), as Duet Web Control's connector uses
 * it (see ../shared/reference/rrf-http-api.md): sessions, the object model,
 * codes and their replies, uploads and the file endpoints.
 *
 * Sessions are (client IP, X-Session-Key) pairs in a table of 8; each
 * expires after the session timeout without a request (an upload's data
 * counts). With --password, every request but rr_connect needs a session or
 * gets 401; without one, a request quietly gets an IP-only session, as RRF
 * does. There is no printer behind this: codes go into a small queue, run
 * on the next loop turn and produce short replies.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "web.h"

/* Every rr_ reply: never cached, usable cross-origin (DWC may be served
 * from elsewhere), as RRF sends them. */
#define RR_HEADERS                                                                            \
    "Cache-Control: no-cache, no-store, must-revalidate\r\n"                                   \
    "Access-Control-Allow-Origin: *\r\n"

/* RRF keeps a reply until every session has read it or it is this old. */
#define REPLY_KEEP_MS 8000u

/* Decoded parameters: one request is handled at a time, so one set of
 * buffers serves all (static: no allocation, no big stack frames). */
static char arg_buf[IN_SIZE];

/* ---- Responses --------------------------------------------------------- */

void rr_respond_json(struct web *w, struct conn *c, size_t len)
{
    web_respond(w, c, 200, "application/json", RR_HEADERS, len, len);
}

void rr_respond_err(struct web *w, struct conn *c, int err)
{
    int n = snprintf(c->out + HDR_ROOM, BODY_CAP, "{\"err\":%d}", err);
    rr_respond_json(w, c, n > 0 ? (size_t)n : 0);
}

void rr_respond_empty(struct web *w, struct conn *c, unsigned status)
{
    web_respond(w, c, status, NULL, RR_HEADERS, 0, 0);
}

/* ---- Query arguments --------------------------------------------------- */

int rr_arg(const struct rr_req *r, const char *key, char *out, size_t cap)
{
    const char *q = r->query;
    const char *end = q + r->query_len;
    size_t klen = strlen(key);
    while (q < end) {
        const char *amp = memchr(q, '&', (size_t)(end - q));
        if (!amp)
            amp = end;
        const char *eq = memchr(q, '=', (size_t)(amp - q));
        size_t nlen = (size_t)((eq ? eq : amp) - q);
        if (nlen == klen && memcmp(q, key, klen) == 0) {
            const char *v = eq ? eq + 1 : amp;
            if (!percent_decode(v, (size_t)(amp - v), out, cap))
                return -2;
            size_t len = strlen(out);
            return len > INT32_MAX ? -2 : (int)len;
        }
        q = amp + 1;
    }
    if (cap > 0)
        out[0] = '\0';
    return -1;
}

bool rr_arg_yes(const struct rr_req *r, const char *key)
{
    char v[8];
    return rr_arg(r, key, v, sizeof v) == 3 && strcmp(v, "yes") == 0;
}

/* ---- Sessions ---------------------------------------------------------- */

static bool session_expired(struct web *w, int i)
{
    const struct session *s = &w->sessions[i];
    return !upload_holds_session(w, i) &&
           sn_time_reached(w->now, s->last + w->session_timeout_ms);
}

/* Expiry is checked when the table is used, not on a timer: nothing else
 * needs to know. */
static void session_sweep(struct web *w)
{
    for (int i = 0; i < MAX_SESSIONS; i++)
        if (w->sessions[i].used && session_expired(w, i))
            w->sessions[i].used = false;
}

static int session_find(struct web *w, uint32_t ip, uint32_t key)
{
    session_sweep(w);
    for (int i = 0; i < MAX_SESSIONS; i++) {
        const struct session *s = &w->sessions[i];
        if (s->used && s->ip == ip && s->key == key)
            return i;
    }
    return -1;
}

static int session_new(struct web *w, uint32_t ip, uint32_t key)
{
    session_sweep(w);
    for (int i = 0; i < MAX_SESSIONS; i++) {
        struct session *s = &w->sessions[i];
        if (s->used)
            continue;
        /* A new session starts reading replies from now on. */
        *s = (struct session){.used = true, .ip = ip, .key = key, .last = w->now,
                              .reply_pos = w->reply_base + w->reply_len};
        return i;
    }
    return -1;
}

static bool key_in_use(const struct web *w, uint32_t key)
{
    for (int i = 0; i < MAX_SESSIONS; i++)
        if (w->sessions[i].used && w->sessions[i].key == key)
            return true;
    return false;
}

/* Random, nonzero and unique. getrandom() does not block (GRND_NONBLOCK)
 * and does not fail once the kernel's pool is up, long before a server
 * starts; the fallback (weak, but still nonzero and unique) is only there
 * so that a failure cannot stop logins. */
static uint32_t new_key(const struct web *w)
{
    static uint32_t fallback;
    uint32_t k = 0;
    do {
        if (getrandom(&k, sizeof k, GRND_NONBLOCK) != (ssize_t)sizeof k) {
            fallback = fallback * 1103515245u + 12345u + w->now + (uint32_t)getpid();
            k = fallback ^ (uint32_t)time(NULL);
        }
    } while (k == 0 || key_in_use(w, k));
    return k;
}

static uint32_t peer_ip(struct web *w, struct conn *c)
{
    if (!c->peer_known) {
        sn_slot_status st;
        if (web_net_slot_status_get(w, sn_id_index(c->id), &st) == 0) {
            c->peer_addr = st.remote.addr;
            c->peer_known = true;
        }
    }
    return c->peer_addr;
}

/* ---- Replies to codes -------------------------------------------------- */

/* Adds one code's output (maybe empty) to the shared reply and bumps
 * seqs.reply, which tells every client to fetch it. */
static void reply_add(struct web *w, const char *text)
{
    uint64_t end = w->reply_base + w->reply_len;
    bool all_read = true;
    for (int i = 0; i < MAX_SESSIONS; i++)
        if (w->sessions[i].used && w->sessions[i].reply_pos < end)
            all_read = false;
    if (all_read || sn_time_reached(w->now, w->reply_time + REPLY_KEEP_MS)) {
        w->reply_base = end; /* start afresh */
        w->reply_len = 0;
    }
    size_t n = strlen(text);
    if (n > 0) {
        size_t need = n + 1; /* each output ends its line */
        if (need > REPLY_SIZE) {
            text += need - REPLY_SIZE;
            n = REPLY_SIZE - 1;
            need = REPLY_SIZE;
        }
        if (w->reply_len + need > REPLY_SIZE) { /* drop the oldest */
            size_t drop = w->reply_len + need - REPLY_SIZE;
            memmove(w->reply, w->reply + drop, w->reply_len - drop);
            w->reply_len -= drop;
            w->reply_base += drop;
        }
        memcpy(w->reply + w->reply_len, text, n);
        w->reply[w->reply_len + n] = '\n';
        w->reply_len += need;
    }
    w->reply_time = w->now;
    model_bump(w, SEQ_REPLY);
}

static void do_reply(struct web *w, struct conn *c, const struct rr_req *r)
{
    size_t from = 0;
    if (r->session >= 0) {
        struct session *s = &w->sessions[r->session];
        if (s->reply_pos > w->reply_base)
            from = (size_t)(s->reply_pos - w->reply_base);
        if (from > w->reply_len)
            from = w->reply_len;
        s->reply_pos = w->reply_base + w->reply_len;
    }
    size_t len = w->reply_len - from;
    memcpy(c->out + HDR_ROOM, w->reply + from, len); /* REPLY_SIZE < BODY_CAP */
    web_respond(w, c, 200, "text/plain; charset=utf-8", RR_HEADERS, len, len);
}

/* ---- Codes ------------------------------------------------------------- */

/* The value of parameter letter p in a code line: "quoted" ("" is a
 * quote) or up to the next space. False when absent. */
static bool code_param(const char *line, char p, char *out, size_t cap)
{
    const char *s = line;
    while ((s = strchr(s + 1, p)) != NULL) {
        if (s[-1] != ' ')
            continue;
        s++;
        size_t o = 0;
        if (*s == '"') {
            for (s++; *s && o + 1 < cap; s++) {
                if (*s == '"' && s[1] != '"')
                    break;
                if (*s == '"')
                    s++;
                out[o++] = *s;
            }
        } else {
            while (*s && *s != ' ' && o + 1 < cap)
                out[o++] = *s++;
        }
        out[o] = '\0';
        return true;
    }
    return false;
}

/* What one code says. No printer: nothing moves, nothing heats. */
static void run_code(struct web *w, const char *line, char *out, size_t cap)
{
    char letter = (char)toupper((unsigned char)line[0]);
    char *end;
    long num = strtol(line + 1, &end, 10);
    out[0] = '\0';
    if ((letter != 'G' && letter != 'M' && letter != 'T') || end == line + 1 ||
        (*end != '\0' && *end != ' ' && *end != '.')) {
        snprintf(out, cap, "Error: Bad command: %s", line);
        return;
    }
    if (letter != 'M') {
        snprintf(out, cap, "ok");
        return;
    }
    char text[128];
    switch (num) {
    case 115:
        snprintf(out, cap,
                 "FIRMWARE_NAME: slotnet-web FIRMWARE_VERSION: 0.1 ELECTRONICS: none "
                 "(no printer attached)");
        break;
    case 117: { /* M117 message: shown as state.displayMessage */
        const char *msg = *end == ' ' ? end + 1 : end;
        size_t n = strlen(msg);
        if (n >= 2 && msg[0] == '"' && msg[n - 1] == '"') {
            msg++;
            n -= 2;
        }
        snprintf(w->display_message, sizeof w->display_message, "%.*s", (int)n, msg);
        model_bump(w, SEQ_STATE);
        break;
    }
    case 118: /* M118 S"text": echo */
        if (code_param(line, 'S', text, sizeof text))
            snprintf(out, cap, "%s", text);
        break;
    case 550: /* M550 P"name": the machine's name */
        if (code_param(line, 'P', text, sizeof text) && text[0]) {
            snprintf(w->machine_name, sizeof w->machine_name, "%.*s",
                     (int)(sizeof w->machine_name - 1), text);
            model_bump(w, SEQ_NETWORK);
        } else {
            snprintf(out, cap, "Machine name: %s", w->machine_name);
        }
        break;
    case 122: {
        const sn_stats *st = web_net_stats(w);
        snprintf(out, cap,
                 "=== Diagnostics ===\nslotnet-web, %u slots\n"
                 "Connections accepted %u, rejected %u, idle timeouts %u\n"
                 "Longest poll pass %u us, loop turn %u us, close %u us\n"
                 "Requests %u, uploads ok %u, failed %u, active %u",
                 web_net_slot_count(w), st->accepted, st->rejected, st->idle_timeouts,
                 st->longest_poll_us, w->longest_turn_us, st->longest_close_us, w->requests,
                 w->uploads_ok, w->uploads_failed, upload_active(w));
        break;
    }
    case 999:
        snprintf(out, cap, "ok");
        break;
    default:
        snprintf(out, cap, "Warning: M%ld is not supported (no printer attached)", num);
        break;
    }
}

/* Runs every queued line. The queue is at most GCODE_QUEUE bytes, so this
 * is bounded; each code's reply is added separately. */
static void run_queue(struct web *w)
{
    char out[512];
    char *p = w->gq;
    char *end = w->gq + w->gq_len;
    while (p < end) {
        char *nl = memchr(p, '\n', (size_t)(end - p));
        *nl = '\0'; /* rr_gcode ends every queued line with '\n' */
        char *semi = strchr(p, ';'); /* a comment runs to the end of the line */
        if (semi)
            *semi = '\0';
        while (*p == ' ' || *p == '\t' || *p == '\r')
            p++;
        size_t n = strlen(p);
        while (n > 0 && (p[n - 1] == ' ' || p[n - 1] == '\t' || p[n - 1] == '\r'))
            p[--n] = '\0';
        if (n > 0) {
            run_code(w, p, out, sizeof out);
            reply_add(w, out);
        }
        p = nl + 1;
    }
    w->gq_len = 0;
}

static void do_gcode(struct web *w, struct conn *c, const struct rr_req *r)
{
    int n = rr_arg(r, "gcode", arg_buf, sizeof arg_buf);
    size_t free_space = GCODE_QUEUE - w->gq_len;
    int len = n < 0 ? 0 : n;
    if (n == -2 || (size_t)len + 1 >= free_space) {
        /* Never "buff":0 for an accepted code: refuse what would fill it. */
        rr_respond_err(w, c, 1);
        return;
    }
    if (len > 0) {
        memcpy(w->gq + w->gq_len, arg_buf, (size_t)len);
        w->gq_len += (size_t)len;
        w->gq[w->gq_len++] = '\n';
    }
    int k = snprintf(c->out + HDR_ROOM, BODY_CAP, "{\"buff\":%zu}", GCODE_QUEUE - w->gq_len);
    rr_respond_json(w, c, (size_t)k);
}

/* ---- Endpoints --------------------------------------------------------- */

static void do_connect(struct web *w, struct conn *c, const struct rr_req *r, uint32_t ip)
{
    char pw[256];
    int n = rr_arg(r, "password", pw, sizeof pw);
    if (w->password && (n < 0 || strcmp(pw, w->password) != 0)) {
        rr_respond_err(w, c, 1);
        return;
    }
    bool want_key = rr_arg_yes(r, "sessionKey");
    int s = want_key ? -1 : session_find(w, ip, 0);
    uint32_t key = want_key ? new_key(w) : 0;
    if (s < 0)
        s = session_new(w, ip, key);
    if (s < 0) {
        rr_respond_err(w, c, 2); /* no free session */
        return;
    }
    w->sessions[s].last = w->now;
    int k;
    /* No "isEmulated": the client refuses an emulated endpoint. */
    if (want_key)
        k = snprintf(c->out + HDR_ROOM, BODY_CAP,
                     "{\"err\":0,\"sessionTimeout\":%u,\"boardType\":\"slotnet\","
                     "\"apiLevel\":2,\"sessionKey\":%u}",
                     w->session_timeout_ms, key);
    else
        k = snprintf(c->out + HDR_ROOM, BODY_CAP,
                     "{\"err\":0,\"sessionTimeout\":%u,\"boardType\":\"slotnet\","
                     "\"apiLevel\":2}",
                     w->session_timeout_ms);
    rr_respond_json(w, c, (size_t)k);
}

static void do_disconnect(struct web *w, struct conn *c, const struct rr_req *r)
{
    if (r->session < 0 || upload_holds_session(w, r->session)) {
        rr_respond_err(w, c, 1);
        return;
    }
    w->sessions[r->session].used = false;
    rr_respond_err(w, c, 0);
}

static void do_model(struct web *w, struct conn *c, const struct rr_req *r)
{
    static char key[512], flags[64];
    if (rr_arg(r, "key", key, sizeof key) == -2 || rr_arg(r, "flags", flags, sizeof flags) == -2) {
        web_respond_text(w, c, 400, RR_HEADERS);
        return;
    }
    size_t len = model_reply(w, key, flags, c->out + HDR_ROOM, BODY_CAP);
    if (len == 0) {
        rr_respond_empty(w, c, 503);
        return;
    }
    rr_respond_json(w, c, len);
}

/* "YYYY-MM-DDTHH:MM:SS", local time, as the client sends it. */
static bool parse_datetime(const char *s, int64_t *out)
{
    struct tm tm;
    int used = 0;
    memset(&tm, 0, sizeof tm);
    if (sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d%n", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
               &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &used) != 6 ||
        s[used] != '\0')
        return false;
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    tm.tm_isdst = -1;
    time_t t = mktime(&tm);
    if (t == (time_t)-1)
        return false;
    *out = (int64_t)t;
    return true;
}

/* 1-8 hex digits, any case, no "0x" (the client sends no padding). */
static bool parse_crc(const char *s, uint32_t *out)
{
    size_t n = strlen(s);
    if (n == 0 || n > 8 || strspn(s, "0123456789abcdefABCDEF") != n)
        return false;
    *out = (uint32_t)strtoul(s, NULL, 16);
    return true;
}

static void do_upload(struct web *w, struct conn *c, const struct rr_req *r)
{
    static char rel[PATH_MAX];
    char time_text[32], crc_text[16];
    int64_t mtime = 0;
    uint32_t crc = 0;

    if (c->parser.method != HTTP_POST) {
        rr_respond_err(w, c, w->last_upload_err); /* GET: the last result */
        return;
    }
    if (c->parser.content_length == ULLONG_MAX) {
        web_respond_text(w, c, 411, RR_HEADERS); /* RRF refuses uploads without it */
        return;
    }
    if (c->parser.content_length > w->upload_max) {
        web_respond_text(w, c, 413, RR_HEADERS);
        return;
    }
    int crc_rc = rr_arg(r, "crc32", crc_text, sizeof crc_text);
    bool have_crc = crc_rc != -1;
    if (rr_arg(r, "name", arg_buf, sizeof arg_buf) <= 0 ||
        vol_parse(arg_buf, rel, sizeof rel) != VOL_OK || rel[0] == '\0' || vol_reserved(rel) ||
        (have_crc && (crc_rc < 0 || !parse_crc(crc_text, &crc)))) {
        w->last_upload_err = 1;
        rr_respond_err(w, c, 1);
        return;
    }
    /* A time we cannot read is not worth losing the upload over. */
    bool have_time = rr_arg(r, "time", time_text, sizeof time_text) > 0 &&
                     parse_datetime(time_text, &mtime);
    upload_start(w, c, rel, r->session, have_crc, crc, have_time, mtime);
}

static void do_options(struct web *w, struct conn *c)
{
    web_respond(w, c, 204, NULL,
                "Access-Control-Allow-Origin: *\r\n"
                "Access-Control-Allow-Headers: Content-Type, X-Session-Key\r\n"
                "Access-Control-Allow-Methods: GET, POST, OPTIONS\r\n",
                0, 0);
}

typedef void (*rr_fn)(struct web *w, struct conn *c, const struct rr_req *r);

static const struct endpoint {
    const char *name;
    rr_fn fn;
    bool post;     /* takes POST as well as GET */
    bool readonly; /* HEAD allowed: GET changes nothing (rr_reply marks output read) */
} endpoints[] = {
    {"/rr_connect", NULL, false, false}, /* no session needed: see rr_handle */
    {"/rr_disconnect", do_disconnect, false, false},
    {"/rr_model", do_model, false, true},
    {"/rr_gcode", do_gcode, false, false},
    {"/rr_reply", do_reply, false, false},
    {"/rr_upload", do_upload, true, true},
    {"/rr_download", rr_download, false, true},
    {"/rr_filelist", rr_filelist, false, true},
    {"/rr_fileinfo", rr_fileinfo, false, true},
    {"/rr_delete", rr_delete, false, false},
    {"/rr_mkdir", rr_mkdir, false, false},
    {"/rr_move", rr_move, false, false},
};

bool rr_is_rr(const char *path, size_t len)
{
    return len >= 4 && memcmp(path, "/rr_", 4) == 0;
}

void rr_handle(struct web *w, struct conn *c, const char *path, size_t path_len,
               const char *query, size_t query_len)
{
    enum http_method m = (enum http_method)c->parser.method;
    struct rr_req r = {.query = query, .query_len = query_len, .session = -1};
    if (m == HTTP_OPTIONS) {
        do_options(w, c);
        return;
    }
    const struct endpoint *ep = NULL;
    for (size_t i = 0; i < sizeof endpoints / sizeof endpoints[0]; i++)
        if (strlen(endpoints[i].name) == path_len &&
            memcmp(endpoints[i].name, path, path_len) == 0)
            ep = &endpoints[i];
    if (!ep) {
        web_respond_text(w, c, 404, RR_HEADERS);
        return;
    }
    if (!(m == HTTP_GET || (m == HTTP_HEAD && ep->readonly) || (m == HTTP_POST && ep->post))) {
        web_respond_text(w, c, 405,
                         ep->post       ? "Allow: GET, HEAD, POST, OPTIONS\r\n"
                         : ep->readonly ? "Allow: GET, HEAD, OPTIONS\r\n"
                                        : "Allow: GET, OPTIONS\r\n");
        return;
    }

    uint32_t ip = peer_ip(w, c);
    if (!ep->fn) {
        do_connect(w, c, &r, ip);
        return;
    }
    r.session = c->key_bad ? -1 : session_find(w, ip, c->key);
    if (r.session < 0 && w->password) {
        /* The client logs in again and repeats the request. */
        web_respond_text(w, c, 401, RR_HEADERS);
        return;
    }
    if (r.session < 0) {
        /* No password: an IP-only session, made quietly (it may not fit;
         * then the request runs without one). */
        r.session = session_find(w, ip, 0);
        if (r.session < 0)
            r.session = session_new(w, ip, 0);
    }
    if (r.session >= 0)
        w->sessions[r.session].last = w->now;
    ep->fn(w, c, &r);
}

void rr_volume_changed(struct web *w)
{
    w->vol_changes++;
    model_bump(w, SEQ_VOLUMES);
}

void rr_tick(struct web *w)
{
    if (w->gq_len > 0)
        run_queue(w);
    upload_tick(w);
}

void rr_init(struct web *w)
{
    snprintf(w->machine_name, sizeof w->machine_name, "slotnet");
    w->reply_time = w->now;
    for (unsigned i = 0; i < MAX_UPLOADS; i++)
        w->uploads[i].fd = w->uploads[i].dirfd = -1;
}
