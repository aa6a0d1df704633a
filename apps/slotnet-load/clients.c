/*
 * What each kind of client does, request by request:
 *
 *   poller    [rr_connect] then GET path, read the reply, close (RST by
 *             default), think interval_ms, again; keep-alive if asked
 *   api       rr_connect, then its paths in turn on one keep-alive connection
 *   uploader  POST rr_upload with crc32, then GET rr_download and compare
 *   slowloris connect, then nothing, or one byte of a never-ending request
 *             every trickle_ms; connect again when dropped
 *   storm     count clients that all start together every interval_ms
 *   browser   GET the page, then its assets over up to `parallel` keep-alive
 *             connections (one actor each); served when the last is in
 *   blackhole GET a reply, and once some of it is in, cut its link (SIGUSR1
 *             to the emulator on its path); stay silent for hold_ms
 *
 * A client's next step is always started from its timer, never from inside
 * the handler of the previous reply, so nothing recurses however the
 * server answers (a refused connect fails inside the call).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "clients.h"

#define CAP_SIZE 65536u          /* captured reply body, for JSON checks */
#define FAIL_PAUSE_US 100000u    /* at least this long before trying again after a failure */
#define MON_FINAL_US 100000u     /* the final check's /status period (at most) */

static const char slow_request[] = "GET / HTTP/1.1\r\nHost: slow\r\nX-Slow: ";

static uint64_t ms(unsigned v)
{
    return (uint64_t)v * 1000u;
}

/* ---- Timers: a binary min-heap of actors by deadline ------------------- */

static void heap_put(struct load *L, size_t i, struct actor *a)
{
    L->heap[i] = a;
    a->heap_pos = i;
}

static void sift_up(struct load *L, size_t i)
{
    struct actor *a = L->heap[i];
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (L->heap[parent]->deadline <= a->deadline)
            break;
        heap_put(L, i, L->heap[parent]);
        i = parent;
    }
    heap_put(L, i, a);
}

static void sift_down(struct load *L, size_t i)
{
    struct actor *a = L->heap[i];
    for (;;) {
        size_t child = 2 * i + 1;
        if (child >= L->nheap)
            break;
        if (child + 1 < L->nheap && L->heap[child + 1]->deadline < L->heap[child]->deadline)
            child++;
        if (a->deadline <= L->heap[child]->deadline)
            break;
        heap_put(L, i, L->heap[child]);
        i = child;
    }
    heap_put(L, i, a);
}

static void timer_clear(struct load *L, struct actor *a)
{
    if (a->deadline == NO_TIMER)
        return;
    size_t i = a->heap_pos;
    a->deadline = NO_TIMER;
    L->nheap--;
    if (i != L->nheap) {
        struct actor *moved = L->heap[L->nheap];
        heap_put(L, i, moved);
        sift_down(L, i);
        sift_up(L, moved->heap_pos);
    }
}

static void timer_set(struct load *L, struct actor *a, uint64_t t)
{
    timer_clear(L, a);
    a->deadline = t;
    heap_put(L, L->nheap++, a);
    sift_up(L, a->heap_pos);
}

/* ---- Small helpers ----------------------------------------------------- */

static void set_state(struct load *L, struct actor *a, enum astate st)
{
    if (a->g) {
        L->busy -= a->st == A_BUSY;
        L->done -= a->st == A_DONE;
        L->busy += st == A_BUSY;
        L->done += st == A_DONE;
    }
    a->st = st;
}

/* encodeURIComponent: everything but A-Z a-z 0-9 - _ . ! ~ * ' ( ). */
static void url_encode(char *out, size_t len, const char *in)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t o = 0;
    for (; *in && o + 4 < len; in++) {
        unsigned char ch = (unsigned char)*in;
        if ((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
            strchr("-_.!~*'()", ch)) {
            out[o++] = (char)ch;
        } else {
            out[o++] = '%';
            out[o++] = hex[ch >> 4];
            out[o++] = hex[ch & 15];
        }
    }
    out[o] = '\0';
}

/* Local time, as RepRapFirmware's clients send it (no zone, no fraction). */
static void datetime(char *out, size_t len)
{
    time_t t = time(NULL);
    struct tm tm;
    char raw[32];
    if (t == (time_t)-1 || !localtime_r(&t, &tm) ||
        strftime(raw, sizeof raw, "%Y-%m-%dT%H:%M:%S", &tm) == 0)
        strcpy(raw, "2000-01-01T00:00:00");
    url_encode(out, len, raw);
}

/* The request line and headers into a->c.req; returns the length. The
 * bounds on paths and names keep this well inside REQ_MAX. */
static size_t build(struct load *L, struct actor *a, const char *method, const char *target,
                    uint64_t body_len, bool has_body)
{
    char *p = a->c.req;
    size_t at = 0;
    int n = snprintf(p, REQ_MAX,
                     "%s %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: " PROG "\r\nAccept: */*\r\n",
                     method, target, L->net.host);
    at = n > 0 ? (size_t)n : 0;
    if (a->g && a->g->session == SESS_KEY && a->have_session && at < REQ_MAX) {
        n = snprintf(p + at, REQ_MAX - at, "X-Session-Key: %u\r\n", (unsigned)a->key);
        at += n > 0 ? (size_t)n : 0;
    }
    if (has_body && at < REQ_MAX) {
        n = snprintf(p + at, REQ_MAX - at,
                     "Content-Type: application/octet-stream\r\nContent-Length: %llu\r\n",
                     (unsigned long long)body_len);
        at += n > 0 ? (size_t)n : 0;
    }
    if (a->g && a->g->connection_close && at < REQ_MAX) {
        n = snprintf(p + at, REQ_MAX - at, "Connection: close\r\n");
        at += n > 0 ? (size_t)n : 0;
    }
    if (at < REQ_MAX) {
        n = snprintf(p + at, REQ_MAX - at, "\r\n");
        at += n > 0 ? (size_t)n : 0;
    }
    if (at >= REQ_MAX) {
        /* Only an oversized scenario value gets here; scenario.c bounds them. */
        fprintf(stderr, PROG ": internal error: request longer than %d bytes\n", REQ_MAX);
        abort();
    }
    return at;
}

static cJSON *reply_json(const struct conn *c)
{
    if (c->cap_over || c->cap_len == 0)
        return NULL;
    return cJSON_ParseWithLength(c->cap, c->cap_len);
}

/* {"err":0,...}: the rr_ way of saying it worked. */
static bool err_zero(const struct conn *c, cJSON **keep)
{
    cJSON *j = reply_json(c);
    const cJSON *err = cJSON_GetObjectItemCaseSensitive(j, "err");
    bool ok = cJSON_IsNumber(err) && err->valuedouble == 0;
    if (keep && ok)
        *keep = j;
    else
        cJSON_Delete(j);
    return ok;
}

/* Requests of the other clients while the blackhole client is silent. */
static bool in_silence(const struct load *L, const struct actor *a)
{
    const struct blackhole *b = &L->bh;
    return b->cut && a->g->type != G_BLACKHOLE && a->g->type != G_BROWSER &&
           now_us() <= b->t_until;
}

static void record_ok(struct load *L, struct actor *a, uint64_t lat)
{
    if (in_silence(L, a)) {
        L->bh.others_ok++;
        if (lat > L->bh.others_max_us)
            L->bh.others_max_us = lat;
    }
    a->gs->ok++;
    hist_add(&a->gs->lat, lat);
    L->net.iv_ok++;
    if (a->g->type != G_UPLOADER && a->g->type != G_BROWSER && lat > L->net.iv_lat_max)
        L->net.iv_lat_max = lat;
}

static void record_fail(struct load *L, struct actor *a, enum fail_kind k)
{
    if (in_silence(L, a))
        L->bh.others_failed++;
    a->gs->failed++;
    a->gs->fail[k]++;
    L->net.iv_failed++;
}

static void schedule(struct load *L, struct actor *a, uint64_t t)
{
    set_state(L, a, A_WAIT);
    timer_set(L, a, t);
}

static uint64_t pause_after_fail(const struct actor *a)
{
    uint64_t iv = ms(a->g->interval_ms);
    return iv > FAIL_PAUSE_US ? iv : FAIL_PAUSE_US;
}

/* A storm client joins the next burst that has not started yet. */
static void next_burst(struct load *L, struct actor *a, uint64_t now)
{
    uint64_t iv = ms(a->g->interval_ms);
    uint64_t k = a->burst + 1;
    if (now > a->group_t0) {
        uint64_t due = (now - a->group_t0 + iv - 1) / iv;
        if (due > k) {
            a->gs->skipped += due - k;
            k = due;
        }
    }
    a->burst = k;
    schedule(L, a, a->group_t0 + k * iv);
}

/* A browser's next asset for this actor: -1 when none is left for it. */
static int take_asset(struct actor *a)
{
    struct browser *b = a->br;
    if (a->asset >= 0)
        return a->asset; /* a retry */
    if (b->gave_up)
        return -1;
    if (a->main && b->next == 0) {
        b->next = 1;
        return a->asset = 0;
    }
    if (!b->page_done || b->next >= a->g->nassets)
        return -1;
    return a->asset = (int)b->next++;
}

/* One request and its reply that had to cross (for the bound). */
static void need_msg(struct load *L, uint64_t up, uint64_t down)
{
    struct wire *w = &L->needed;
    w->bytes[0] += up;
    w->bytes[1] += down;
    w->segs[0] += wire_segs(&L->net, up);
    w->segs[1] += wire_segs(&L->net, down);
}

/* The needed bytes at this moment: an upload or its check in flight counts
 * what it has moved (its attempt is the one that has to cross). */
static void needed_now(const struct load *L, struct wire *w)
{
    *w = L->needed;
    for (uint32_t i = 1; i < L->nactors; i++) {
        const struct actor *a = &L->actors[i];
        const struct conn *c = &a->c;
        if (a->g->type != G_UPLOADER || a->st != A_BUSY ||
            (a->cur != R_UPLOAD && a->cur != R_DOWNLOAD) || c->st == CS_CLOSED)
            continue;
        uint64_t up = c->req_off + c->body_off, down = c->msg_done ? 0 : c->rx_msg;
        w->bytes[0] += up;
        w->bytes[1] += down;
        w->segs[0] += wire_segs(&L->net, up);
        w->segs[1] += wire_segs(&L->net, down);
    }
}

static void browser_got(struct load *L, struct actor *a, uint64_t now)
{
    struct browser *b = a->br;
    unsigned k = (unsigned)a->asset;
    a->asset = -1;
    a->tries = 0;
    b->done++;
    if (k == 0) {
        /* The page is in: its assets start, over the other connections too. */
        b->page_done = true;
        for (unsigned i = 0; i < b->nhelpers; i++)
            if (b->helpers[i]->st == A_WAIT && b->helpers[i]->deadline == NO_TIMER) {
                b->helpers[i]->st = A_WAIT;
                timer_set(L, b->helpers[i], now);
            }
    }
    if (b->done == a->g->nassets && !b->t_served) {
        b->t_served = now;
        a->gs->served++;
        L->served++;
        if (L->served == L->nbrowsers) {
            L->all_served_at = now;
            load_wire_now(L, &L->wire_at_served);
            needed_now(L, &L->needed_at_served);
        }
    }
}

/* The blackhole client's link goes silent: SIGUSR1 to the emulator on its
 * path (its --usr1 both cuts both directions), or, without one, the cut is
 * the emulator's own schedule and this only marks the moment. */
static void bh_cut(struct load *L, struct actor *a, uint64_t now)
{
    struct blackhole *b = &L->bh;
    b->cut = true;
    b->t_cut = now;
    b->t_until = now + ms(a->g->hold_ms);
    b->before = a->c.rx_msg;
    if (L->bh_pid > 0) {
        b->signalled = kill(L->bh_pid, SIGUSR1) == 0;
        if (!b->signalled)
            fprintf(stderr, PROG ": blackhole: cannot signal %d: %s\n", (int)L->bh_pid,
                    strerror(errno));
    }
    timer_set(L, a, b->t_until);
}

static void finish(struct load *L, struct actor *a)
{
    timer_clear(L, a);
    if (a->cur == R_HOLD && a->c.st == CS_HOLD && a->gs->sl_open > 0)
        a->gs->sl_open--;
    if (conn_open(&a->c))
        conn_close(&L->net, &a->c, a->g->close_rst);
    a->cur = R_NONE;
    set_state(L, a, A_DONE);
}

static void handle(struct load *L, struct actor *a, enum io r, uint64_t now);

/* Sends c->req as built, on the open connection or a new one. */
static void send_built(struct load *L, struct actor *a, size_t len, const struct body_gen *body,
                       uint64_t body_len, uint64_t now)
{
    set_state(L, a, A_BUSY);
    timer_set(L, a, now + ms(a->g->timeout_ms));
    handle(L, a, conn_request(&L->net, &a->c, len, body, body_len, now), now);
}

static void start_login(struct load *L, struct actor *a, uint64_t now)
{
    char pw[400], when[96], target[PATH_LEN + 600];
    url_encode(pw, sizeof pw, L->sc->password);
    datetime(when, sizeof when);
    snprintf(target, sizeof target, "/rr_connect?password=%s&time=%s%s", pw, when,
             a->g->session == SESS_KEY ? "&sessionKey=yes" : "");
    a->cur = R_LOGIN;
    send_built(L, a, build(L, a, "GET", target, 0, false), NULL, 0, now);
}

static void upload_name(const struct actor *a, char *out, size_t len)
{
    /* "{n}" in the pattern becomes the client's number. */
    const char *pat = a->g->upload_name;
    const char *hole = strstr(pat, "{n}");
    if (hole)
        snprintf(out, len, "%.*s%u%s", (int)(hole - pat), pat, a->num, hole + 3);
    else
        snprintf(out, len, "%s", pat);
}

static void start_upload(struct load *L, struct actor *a, uint64_t now)
{
    char name[PATH_LEN + 16], enc[3 * sizeof name], when[96], target[sizeof enc + 200];
    upload_name(a, name, sizeof name);
    url_encode(enc, sizeof enc, name);
    datetime(when, sizeof when);
    body_set_tag(&a->body, a->idx, a->uploads);
    a->up_crc = body_crc(&a->body);
    a->uploads++;
    /* crc32 as RepRapFirmware's clients send it: lowercase hex, no padding. */
    snprintf(target, sizeof target, "/rr_upload?name=%s&time=%s&crc32=%x", enc, when,
             (unsigned)a->up_crc);
    a->cur = R_UPLOAD;
    send_built(L, a, build(L, a, "POST", target, a->body.size, true), &a->body, a->body.size,
               now);
}

static void start_download(struct load *L, struct actor *a, uint64_t now)
{
    char name[PATH_LEN + 16], enc[3 * sizeof name], target[sizeof enc + 32];
    upload_name(a, name, sizeof name);
    url_encode(enc, sizeof enc, name);
    snprintf(target, sizeof target, "/rr_download?name=%s", enc);
    a->cur = R_DOWNLOAD;
    a->c.crc_on = true;
    send_built(L, a, build(L, a, "GET", target, 0, false), NULL, 0, now);
}

static void start_hold(struct load *L, struct actor *a, uint64_t now)
{
    a->cur = R_HOLD;
    a->trickle_pos = 0;
    set_state(L, a, A_BUSY);
    timer_set(L, a, now + ms(a->g->timeout_ms)); /* for the connect */
    handle(L, a, conn_connect(&L->net, &a->c, true, now), now);
}

/* The next step of a client's cycle, from its timer. */
static void start_next(struct load *L, struct actor *a, uint64_t now)
{
    const struct group_cfg *g = a->g;
    a->retried = false;
    a->t_start = now;
    a->c.crc_on = false;
    /* After the duration, only an accepted upload's check still runs. */
    if (L->phase != PH_RUN && !a->next_download) {
        finish(L, a);
        return;
    }
    switch (g->type) {
    case G_SLOWLORIS:
        start_hold(L, a, now);
        return;
    case G_STORM:
        if (g->npaths == 0) {
            a->cur = R_CONNECT;
            set_state(L, a, A_BUSY);
            timer_set(L, a, now + ms(g->timeout_ms));
            handle(L, a, conn_connect(&L->net, &a->c, false, now), now);
            return;
        }
        break;
    case G_UPLOADER:
        if (a->next_download) {
            start_download(L, a, now);
            return;
        }
        if (g->uploads && a->uploads >= g->uploads) {
            finish(L, a);
            return;
        }
        break;
    case G_POLLER:
    case G_API:
        if (g->max_requests && a->requests >= g->max_requests) {
            finish(L, a);
            return;
        }
        break;
    case G_BROWSER: {
        int k = take_asset(a);
        if (k < 0) {
            finish(L, a);
            return;
        }
        if (k == 0 && a->tries == 0)
            a->br->t_start = now;
        a->cur = R_PATH;
        a->c.crc_on = true; /* checked against the file --write-assets wrote */
        send_built(L, a, build(L, a, "GET", g->assets[k].path, 0, false), NULL, 0, now);
        return;
    }
    case G_BLACKHOLE:
        if (a->requests > 0) {
            finish(L, a);
            return;
        }
        L->bh.requested = true;
        L->bh.t_request = now;
        break;
    }
    if (g->session != SESS_NONE && !a->have_session) {
        start_login(L, a, now);
        return;
    }
    if (g->type == G_UPLOADER) {
        start_upload(L, a, now);
        return;
    }
    a->cur = R_PATH;
    send_built(L, a, build(L, a, "GET", g->paths[a->step], 0, false), NULL, 0, now);
}

/* Where a client goes after a request, done or failed. */
static void after(struct load *L, struct actor *a, bool ok, uint64_t now)
{
    const struct group_cfg *g = a->g;
    enum req was = a->cur;
    a->cur = R_NONE;
    if (was == R_LOGIN) {
        schedule(L, a, ok ? now : now + pause_after_fail(a));
        return;
    }
    if (was == R_UPLOAD && ok && g->verify_download) {
        a->next_download = true;
        schedule(L, a, now);
        return;
    }
    if (was == R_PATH || was == R_CONNECT) {
        a->requests++;
        a->step = (a->step + 1) % (g->npaths ? g->npaths : 1);
    }
    if (g->type == G_STORM) {
        next_burst(L, a, now);
        return;
    }
    if (g->type == G_BROWSER) {
        if (!ok && a->asset >= 0) {
            if (++a->tries > g->max_retries) {
                a->br->gave_up = true; /* this browser is never served */
                a->gs->gave_up++;
                a->asset = -1;
            } else {
                a->gs->retries++;
            }
        }
        schedule(L, a, ok ? now : now + ms(g->retry_ms));
        return;
    }
    schedule(L, a, now + (ok ? ms(g->interval_ms) : pause_after_fail(a)));
}

static bool check_login(struct actor *a)
{
    cJSON *j = NULL;
    if (!err_zero(&a->c, &j))
        return false;
    const cJSON *key = cJSON_GetObjectItemCaseSensitive(j, "sessionKey");
    a->key = cJSON_IsNumber(key) && key->valuedouble >= 0 && key->valuedouble <= 4294967295.0
                 ? (uint32_t)key->valuedouble
                 : 0;
    cJSON_Delete(j);
    a->have_session = true;
    a->gs->logins++;
    return true;
}

static void on_reply(struct load *L, struct actor *a, uint64_t now)
{
    const struct group_cfg *g = a->g;
    struct conn *c = &a->c;
    uint64_t lat = now - a->t_start;
    unsigned st = c->status;
    bool is2xx = st >= 200 && st < 300;
    bool ok = false;
    enum fail_kind fk = F_STATUS;

    switch (a->cur) {
    case R_LOGIN:
        ok = st == 200 && check_login(a);
        fk = st == 200 ? F_REPLY : F_STATUS;
        break;
    case R_PATH:
        ok = is2xx;
        if (ok && g->type == G_BROWSER) {
            ok = st == 200 && c->rx_body == scaled_size(L->sc, g->assets[a->asset].size);
            if (ok && c->rx_crc != L->asset_crc[a->gs - L->gs][a->asset]) {
                ok = false; /* the right size, not the file's bytes */
                a->gs->content_bad++;
            }
            fk = st == 200 ? F_REPLY : F_STATUS;
            if (ok) {
                need_msg(L, c->req_len, c->rx_last);
                browser_got(L, a, now);
            }
        }
        if (ok && g->check_json && !c->cap_over) {
            cJSON *j = reply_json(c);
            ok = j != NULL;
            fk = F_REPLY;
            cJSON_Delete(j);
        }
        break;
    case R_UPLOAD:
        ok = st == 200 && err_zero(c, NULL);
        fk = st == 200 ? F_REPLY : F_STATUS;
        if (ok) {
            need_msg(L, c->req_len + c->body_len, c->rx_last);
            a->gs->up_ok++;
            a->gs->up_bytes += a->body.size;
            a->gs->up_us += lat;
            if (!g->verify_download)
                a->gs->up_verified++; /* the server compared our crc32 */
        } else {
            a->gs->up_failed++;
        }
        break;
    case R_DOWNLOAD:
        a->next_download = false;
        a->tries = 0;
        ok = st == 200 && c->rx_body == a->body.size && c->rx_crc == a->up_crc;
        fk = st == 200 ? F_REPLY : F_STATUS;
        if (ok) {
            need_msg(L, c->req_len, c->rx_last);
            a->gs->up_verified++;
            a->gs->down_bytes += c->rx_body;
            a->gs->down_us += lat;
        } else if (st == 200) {
            a->gs->up_bad++;
        } else {
            a->gs->up_failed++;
        }
        break;
    default:
        return;
    }
    if (st == 401 || st == 403)
        a->have_session = false; /* log in again, as DWC does */
    if (ok)
        record_ok(L, a, lat);
    else
        record_fail(L, a, fk);
    if (!ok && a->cur == R_LOGIN)
        a->gs->logins_failed++;
    if (conn_open(c) && !(c->keep_alive && g->keepalive))
        conn_close(&L->net, c, g->close_rst);
    after(L, a, ok, now);
}

static void on_fail(struct load *L, struct actor *a, enum fail_kind k, uint64_t now)
{
    struct conn *c = &a->c;
    if (a->cur == R_HOLD) {
        /* A slowloris that could not connect: not a request, try again. */
        conn_close(&L->net, c, true);
        a->cur = R_NONE;
        if (a->g->reconnect && L->phase == PH_RUN)
            schedule(L, a, now + ms(a->g->reconnect_ms));
        else
            finish(L, a);
        return;
    }
    /* A keep-alive connection the server closed just as we reused it (it
     * closes idle ones when others wait): nothing of the reply came, so
     * send again on a new connection, once, as browsers do. */
    if ((k == F_CLOSED || k == F_RESET) && c->reused && !c->any_rx && !a->retried &&
        a->cur != R_UPLOAD) {
        a->retried = true;
        a->gs->stale_retries++;
        conn_close(&L->net, c, true);
        handle(L, a, conn_request(&L->net, c, c->req_len, c->body, c->body_len, now), now);
        return;
    }
    /* An upload or its check that the server refused or reset before any
     * of the reply (its wait queue full): asked again, if the group allows. */
    if ((a->cur == R_UPLOAD || a->cur == R_DOWNLOAD) && !c->any_rx &&
        (k == F_REFUSED || k == F_RESET || k == F_CLOSED || k == F_CONNECT) &&
        a->tries < a->g->max_retries && L->phase != PH_END) {
        a->tries++;
        a->gs->retries++;
        record_fail(L, a, k);
        if (a->cur == R_UPLOAD)
            a->uploads--; /* the same upload again */
        conn_close(&L->net, c, true);
        a->cur = R_NONE;
        schedule(L, a, now + ms(a->g->retry_ms));
        return;
    }
    record_fail(L, a, k);
    if (a->cur == R_LOGIN)
        a->gs->logins_failed++;
    if (a->cur == R_UPLOAD || a->cur == R_DOWNLOAD)
        a->gs->up_failed++;
    if (a->cur == R_DOWNLOAD)
        a->next_download = false;
    conn_close(&L->net, c, true);
    after(L, a, false, now);
}

static void hold_dropped(struct load *L, struct actor *a, uint64_t now)
{
    a->gs->sl_dropped++;
    if (a->gs->sl_open > 0)
        a->gs->sl_open--;
    if (conn_open(&a->c))
        conn_close(&L->net, &a->c, true);
    a->cur = R_NONE;
    if (a->g->reconnect && L->phase == PH_RUN)
        schedule(L, a, now + ms(a->g->reconnect_ms));
    else
        finish(L, a);
}

static void trickle(struct load *L, struct actor *a, uint64_t now)
{
    size_t n = sizeof slow_request - 1;
    char byte = a->trickle_pos < n ? slow_request[a->trickle_pos] : 'a';
    a->trickle_pos++;
    if (!conn_trickle(&a->c, byte)) {
        hold_dropped(L, a, now);
        return;
    }
    timer_set(L, a, now + ms(a->g->trickle_ms));
}

static void handle(struct load *L, struct actor *a, enum io r, uint64_t now)
{
    switch (r) {
    case IO_PENDING:
        return;
    case IO_CONNECTED:
        if (a->cur == R_CONNECT) {
            record_ok(L, a, now - a->t_start);
            conn_close(&L->net, &a->c, true);
            after(L, a, true, now);
        } else if (a->cur == R_HOLD) {
            a->gs->sl_open++;
            if (a->gs->sl_open > a->gs->sl_peak)
                a->gs->sl_peak = a->gs->sl_open;
            if (a->g->trickle)
                trickle(L, a, now);
            else
                timer_clear(L, a); /* held until the end, or until dropped */
        }
        return;
    case IO_DONE:
        on_reply(L, a, now);
        return;
    case IO_FAILED:
        on_fail(L, a, a->c.fail, now);
        return;
    case IO_CLOSED_IDLE:
        if (a->cur == R_HOLD)
            hold_dropped(L, a, now);
        /* else an idle keep-alive connection went away: the next request
         * opens a new one */
        return;
    }
}

/* A client's timer: its next step, a request's timeout, or a trickle. */
static void actor_timer(struct load *L, struct actor *a, uint64_t now)
{
    if (a->st == A_WAIT) {
        start_next(L, a, now);
        return;
    }
    if (a->st != A_BUSY)
        return;
    if (a->cur == R_HOLD) {
        if (a->c.st == CS_CONNECTING) {
            a->gs->connect_errors++;
            on_fail(L, a, F_TIMEOUT, now);
        } else if (a->g->trickle) {
            trickle(L, a, now);
        }
        return;
    }
    if (a->g->type == G_BLACKHOLE && L->bh.cut) {
        /* The silence is over: drop the connection (into the void) and
         * give the path back. */
        if (L->bh.signalled)
            (void)kill(L->bh_pid, SIGUSR1);
        a->requests++;
        finish(L, a);
        return;
    }
    /* Transfers time out when they stop moving, not when they are long. */
    uint64_t idle_limit = a->c.t_progress + ms(a->g->timeout_ms);
    if ((a->cur == R_UPLOAD || a->cur == R_DOWNLOAD || a->g->type == G_BROWSER) &&
        now < idle_limit) {
        timer_set(L, a, idle_limit);
        return;
    }
    on_fail(L, a, F_TIMEOUT, now);
}

/* ---- The /status monitor ----------------------------------------------- */

/* The blackhole client's slot, snapshot by snapshot, by the server's clock:
 * open, then close-pending, then gone (freed, or given to another). */
static void bh_watch(struct load *L, const struct status_snap *s, uint64_t at)
{
    struct blackhole *b = &L->bh;
    if (!b->remote[0] || !s->has_uptime || b->gone)
        return;
    uint64_t u = s->uptime_ms;
    if (s->watched_state == SS_CONNECTED || s->watched_state == SS_OTHER_END_CLOSED) {
        b->seen_open = true;
        b->last_open_u = u;
    } else if (s->watched_state == SS_CLOSE_PENDING) {
        if (!b->seen_cp) {
            b->seen_cp = true;
            b->first_cp_u = u;
            b->cp_seen_at = at;
        }
        b->last_cp_u = u;
        b->timeouts_before = s->closed_timeout;
        b->have_timeouts_before = s->has_closed_timeout;
    } else if (b->seen_open || b->seen_cp) {
        b->gone = true;
        b->gone_u = u;
        b->timeouts_after = s->closed_timeout;
    }
}

/* The result of a /status request: keep the snapshot, plan the next. */
static void mon_result(struct load *L, struct actor *a, enum io r, uint64_t now)
{
    /* A keep-alive connection the server closed as we reused it: once more
     * on a new one (as for the clients). */
    while (r == IO_FAILED && a->c.reused && !a->c.any_rx && !a->retried) {
        a->retried = true;
        conn_close(&L->net, &a->c, true);
        r = conn_request(&L->net, &a->c, a->c.req_len, NULL, 0, now);
    }
    if (r == IO_PENDING)
        return;
    if (r == IO_DONE) {
        struct status_snap s;
        if (a->c.status == 200 && !a->c.cap_over &&
            status_parse(a->c.cap, a->c.cap_len, a->c.local_port,
                         L->bh.remote[0] ? L->bh.remote : NULL, &s)) {
            if (!L->mon.available)
                L->mon.first = s;
            L->mon.snap = s;
            L->mon.snap_at = a->t_start; /* the server's state is from after this */
            L->mon.available = true;
            bh_watch(L, &s, a->t_start);
        } else if (!L->mon.available) {
            L->mon.enabled = false; /* no /status we understand: stop asking */
        } else {
            L->mon.failures++;
        }
        if (!a->c.keep_alive)
            conn_close(&L->net, &a->c, false);
    } else {
        L->mon.failures++; /* the server is busy; try at the next tick */
        if (conn_open(&a->c))
            conn_close(&L->net, &a->c, true);
    }
    a->st = A_WAIT;
    a->cur = R_NONE;
    uint64_t next = a->t_start + L->mon.interval_us;
    if (L->mon.enabled)
        timer_set(L, a, next > now ? next : now);
    else
        timer_clear(L, a);
}

static void mon_request(struct load *L, struct actor *a, uint64_t now)
{
    a->cur = R_PATH;
    a->t_start = now;
    a->retried = false;
    a->st = A_BUSY;
    timer_set(L, a, now + ms(L->sc->status_timeout_ms));
    size_t len = build(L, a, "GET", L->sc->status_path, 0, false);
    mon_result(L, a, conn_request(&L->net, &a->c, len, NULL, 0, now), now);
}

static void mon_event(struct load *L, struct actor *a, uint32_t events, uint64_t now)
{
    enum io r = conn_io(&L->net, &a->c, events, now);
    if (r == IO_CLOSED_IDLE || a->st != A_BUSY)
        return; /* the idle connection went away; the next request opens one */
    mon_result(L, a, r, now);
}

static void mon_timer(struct load *L, struct actor *a, uint64_t now)
{
    if (!L->mon.enabled)
        return;
    if (a->st == A_BUSY) { /* no reply in time */
        L->mon.failures++;
        conn_close(&L->net, &a->c, true);
        a->st = A_WAIT;
        a->cur = R_NONE;
    }
    mon_request(L, a, now);
}

bool monitor_all_free(const struct load *L)
{
    const struct status_snap *s = &L->mon.snap;
    return s->valid && s->by_state[SS_FREE] + (s->own_seen ? 1u : 0u) == s->nslots;
}

void monitor_final(struct load *L, uint64_t now)
{
    struct actor *m = &L->actors[0];
    if (L->mon.interval_us > MON_FINAL_US)
        L->mon.interval_us = MON_FINAL_US;
    if (L->mon.enabled && m->st != A_BUSY)
        timer_set(L, m, now);
}

void monitor_stop(struct load *L)
{
    struct actor *m = &L->actors[0];
    timer_clear(L, m);
    if (conn_open(&m->c))
        conn_close(&L->net, &m->c, false);
    m->st = A_DONE;
}

/* ---- The blackhole client ---------------------------------------------- */

static void bh_event(struct load *L, struct actor *a, enum io r, uint64_t now)
{
    struct blackhole *b = &L->bh;
    struct conn *c = &a->c;
    if (!b->remote[0] && c->fd >= 0 && c->local_port) {
        struct sockaddr_in sa;
        socklen_t len = sizeof sa;
        char ip[INET_ADDRSTRLEN];
        if (getsockname(c->fd, (struct sockaddr *)&sa, &len) == 0 && sa.sin_family == AF_INET &&
            inet_ntop(AF_INET, &sa.sin_addr, ip, sizeof ip))
            snprintf(b->remote, sizeof b->remote, "%s:%u", ip, c->local_port);
    }
    if (b->cut) {
        /* Silent: whatever still arrives means the link was not. */
        if (c->rx_msg > b->before)
            b->after = c->rx_msg - b->before;
        if (r == IO_DONE || r == IO_FAILED || r == IO_CLOSED_IDLE) {
            if (conn_open(c))
                conn_close(&L->net, c, true);
        }
        return; /* the timer ends the silence */
    }
    if (r == IO_PENDING && c->rx_msg >= a->g->silence_after && a->cur == R_PATH) {
        bh_cut(L, a, now);
        return;
    }
    handle(L, a, r, now);
}

void load_wire_now(const struct load *L, struct wire *w)
{
    *w = L->net.wire;
    for (uint32_t i = 0; i < L->nactors; i++) {
        uint64_t segs[2];
        conn_partial_segs(&L->net, &L->actors[i].c, segs);
        w->segs[0] += segs[0];
        w->segs[1] += segs[1];
    }
}

/* ---- The loop's entry points ------------------------------------------- */

void load_event(struct load *L, uint64_t key, uint32_t events, uint64_t now)
{
    uint32_t idx = (uint32_t)(key >> 32);
    uint32_t gen = (uint32_t)key;
    if (idx >= L->nactors)
        return;
    struct actor *a = &L->actors[idx];
    /* An event for a socket closed earlier in this batch. */
    if (a->c.fd < 0 || a->c.gen != gen)
        return;
    if (idx == 0) {
        mon_event(L, a, events, now);
        return;
    }
    enum io r = conn_io(&L->net, &a->c, events, now);
    if (a->g->type == G_BLACKHOLE) {
        bh_event(L, a, r, now);
        return;
    }
    if (r == IO_CLOSED_IDLE && a->cur != R_HOLD)
        return; /* an idle keep-alive connection closed by the server */
    handle(L, a, r, now);
}

uint64_t load_timers(struct load *L, uint64_t now)
{
    /* Bounded: a timer set for now by a handler waits for the next round. */
    size_t budget = L->nheap + 1;
    while (L->nheap > 0 && L->heap[0]->deadline <= now && budget-- > 0) {
        struct actor *a = L->heap[0];
        timer_clear(L, a);
        if (a->idx == 0)
            mon_timer(L, a, now);
        else
            actor_timer(L, a, now);
    }
    return L->nheap > 0 ? L->heap[0]->deadline : NO_TIMER;
}

void load_start(struct load *L, uint64_t now)
{
    uint64_t rng = L->sc->seed * 0x9e3779b97f4a7c15ull + 1;
    L->t0 = now;
    for (uint32_t i = 1; i < L->nactors; i++) {
        struct actor *a = &L->actors[i];
        const struct group_cfg *g = a->g;
        a->group_t0 = now + ms(g->start_ms);
        uint64_t first = a->group_t0;
        if (g->type == G_BROWSER && !a->main) {
            set_state(L, a, A_WAIT); /* woken when its page is in */
            continue;
        }
        /* Spread the first requests over one interval, as tabs opened at
         * different moments would be; storms start together by design. */
        if (g->type != G_STORM && g->interval_ms > 0) {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            first += rng % ms(g->interval_ms);
        }
        schedule(L, a, first);
    }
    if (L->mon.enabled)
        timer_set(L, &L->actors[0], now);
}

void load_stop(struct load *L, uint64_t now)
{
    (void)now;
    for (uint32_t i = 1; i < L->nactors; i++) {
        struct actor *a = &L->actors[i];
        if (a->st == A_WAIT && !a->next_download)
            finish(L, a);
        else if (a->st == A_BUSY && a->cur == R_HOLD)
            finish(L, a);
    }
}

void load_cut(struct load *L, uint64_t now)
{
    (void)now;
    for (uint32_t i = 1; i < L->nactors; i++) {
        struct actor *a = &L->actors[i];
        if (a->st == A_DONE)
            continue;
        if (a->st == A_BUSY) {
            if (a->cur == R_UPLOAD || a->cur == R_DOWNLOAD)
                a->gs->up_cut++;
            else
                a->gs->cut++;
            /* Cut off, like a browser tab closed mid-transfer. */
            if (conn_open(&a->c))
                conn_close(&L->net, &a->c, true);
        }
        finish(L, a);
    }
}

bool load_init(struct load *L, const struct scenario *sc)
{
    unsigned n = 1, nbr = 0;
    for (unsigned gi = 0; gi < sc->ngroups; gi++) {
        const struct group_cfg *g = &sc->groups[gi];
        n += g->type == G_BROWSER ? g->count * g->parallel : g->count;
        nbr += g->type == G_BROWSER ? g->count : 0;
    }
    L->nbrowsers = nbr;
    L->browsers = nbr ? calloc(nbr, sizeof *L->browsers) : NULL;
    L->sc = sc;
    L->nactors = n;
    L->actors = calloc(n, sizeof *L->actors);
    L->heap = calloc(n, sizeof *L->heap);
    L->caps = calloc(n, CAP_SIZE); /* pages are touched only if used */
    unsigned uploaders = 0;
    for (unsigned gi = 0; gi < sc->ngroups; gi++)
        if (sc->groups[gi].type == G_UPLOADER)
            uploaders += sc->groups[gi].count;
    L->chunks = uploaders ? malloc((size_t)uploaders * CHUNK) : NULL;
    if (!L->actors || !L->heap || !L->caps || (uploaders && !L->chunks) ||
        (nbr && !L->browsers)) {
        fprintf(stderr, PROG ": out of memory\n");
        return false;
    }

    struct actor *m = &L->actors[0];
    m->idx = 0;
    m->deadline = NO_TIMER;
    conn_init(&m->c, 0, &L->mon.gs, L->caps, CAP_SIZE);
    L->mon.enabled = sc->status_enabled;
    L->mon.interval_us = ms(sc->status_interval_ms);
    m->c.netns = L->status_ns;
    m->c.count_wire = L->status_ns < 0; /* over the link, it is load too */

    uint32_t idx = 1;
    unsigned up_num = 0, br_num = 0;
    for (unsigned gi = 0; gi < sc->ngroups; gi++) {
        const struct group_cfg *g = &sc->groups[gi];
        uint32_t stream_crc = 0;
        uint64_t seed = sc->seed * 1000003u + gi;
        uint64_t up_size = g->type == G_UPLOADER ? scaled_size(sc, g->size) : 0;
        if (g->type == G_UPLOADER && up_size > BODY_TAG)
            stream_crc = body_stream_crc(seed, up_size - BODY_TAG);
        unsigned per = g->type == G_BROWSER ? g->parallel : 1;
        for (unsigned k = 0; g->type == G_BROWSER && k < g->nassets; k++)
            L->asset_crc[gi][k] = asset_crc(asset_seed(gi, k), scaled_size(sc, g->assets[k].size));
        if (g->type == G_BROWSER)
            L->needed.conns += (uint64_t)g->count * (per < g->nassets ? per : g->nassets);
        if (g->type == G_UPLOADER)
            L->needed.conns += g->count;
        for (unsigned k = 0; k < g->count * per; k++, idx++) {
            struct actor *a = &L->actors[idx];
            a->idx = idx;
            a->g = g;
            a->gs = &L->gs[gi];
            a->num = k / per;
            a->deadline = NO_TIMER;
            a->st = A_WAIT;
            a->asset = -1;
            /* Browsers check bodies by CRC (crc_on), the blackhole client not at all: no capture. */
            bool cap = g->type != G_SLOWLORIS && g->type != G_BROWSER && g->type != G_BLACKHOLE;
            conn_init(&a->c, idx, &L->gs[gi], cap ? L->caps + (size_t)idx * CAP_SIZE : NULL,
                      CAP_SIZE);
            a->c.netns = L->group_ns[gi];
            a->c.count_wire = true;
            if (g->type == G_BROWSER) {
                struct browser *b = &L->browsers[br_num + k / per];
                a->br = b;
                a->main = k % per == 0;
                if (!a->main)
                    b->helpers[b->nhelpers++] = a;
            }
            if (g->type == G_BLACKHOLE)
                L->bh.a = a;
            if (g->type == G_UPLOADER) {
                a->num = up_num;
                a->c.chunk = L->chunks + (size_t)up_num * CHUNK;
                up_num++;
                a->body.seed = seed;
                a->body.size = up_size;
                a->body.stream_crc = stream_crc;
            }
        }
        if (g->type == G_BROWSER)
            br_num += g->count;
    }
    return true;
}

void load_free(struct load *L)
{
    for (uint32_t i = 0; i < L->nactors; i++)
        if (conn_open(&L->actors[i].c))
            conn_close(&L->net, &L->actors[i].c, true);
    free(L->actors);
    free(L->heap);
    free(L->caps);
    free(L->chunks);
    free(L->browsers);
    L->browsers = NULL;
    L->actors = NULL;
    L->heap = NULL;
    L->caps = NULL;
    L->chunks = NULL;
}
