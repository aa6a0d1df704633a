/*
 * The end of a run: expectations checked, the report as text and JSON,
 * the timeline as CSV.
 */
#include <errno.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "load.h"

/* Latency headline: the clients whose requests are small (pollers, API
 * clients, storms). Uploads are measured in MB/s instead; mixing their
 * seconds into a p99 would only hide what the pollers see. */
static void headline(const struct result *r, struct hist *h)
{
    memset(h, 0, sizeof *h);
    for (unsigned i = 0; i < r->sc->ngroups; i++)
        if (r->sc->groups[i].type != G_UPLOADER && r->sc->groups[i].type != G_SLOWLORIS &&
            r->sc->groups[i].type != G_BROWSER && r->sc->groups[i].type != G_BLACKHOLE)
            hist_merge(h, &r->g[i].lat);
}

static bool has_type(const struct result *r, enum group_type t)
{
    for (unsigned i = 0; i < r->sc->ngroups; i++)
        if (r->sc->groups[i].type == t)
            return true;
    return false;
}

static double per_s(uint64_t n, double s)
{
    return s > 0 ? (double)n / s : 0.0;
}

/*
 * What the bound counts, per direction (up: the tool's, down: the server's):
 * the bytes that had to cross until the last browser was served, not those
 * that did: each browser asset's one successful request and its reply
 * (status line, headers, body), the upload and its check download (an
 * attempt in flight counted as it stands); overhead bytes per data segment,
 * a segment per MSS of each message (rounded up); a pure ACK (overhead
 * bytes) for every two data segments the other way; and per connection
 * needed (a browser's parallel ones, capped at its assets; one per
 * uploader) a SYN each way (overhead + 8 bytes of options) and the
 * handshake's last ACK up. No closes: none has to precede the last byte.
 * The /status monitor is not counted (run it off the link, --status-netns).
 * What else moved (failed or reset attempts' partial replies, refused
 * retries' handshakes, closes, more connections) is the waste, reported
 * apart: it is part of what the ratio measures, as are retransmissions, ARP
 * and idle gaps. Line time: the busier direction over the rate (the
 * emulator counts from the Ethernet header to the end of the payload).
 * Plus two round trips: a connection's handshake and its first request,
 * before which no reply byte can flow.
 */
static void wire_bytes(const struct wire *w, const struct link_cfg *lk, double out[2])
{
    double oh = lk->overhead, syn = oh + 8, rst = 54;
    for (int d = 0; d < 2; d++)
        out[d] = (double)w->bytes[d] + (double)w->segs[d] * oh + (double)w->conns * syn +
                 (double)w->fin_closes * 2 * oh +
                 (double)((w->segs[1 - d] + 1) / 2) * oh; /* ACKs of the other way */
    out[0] += (double)w->conns * oh + (double)w->rst_closes * rst;
}

void page_bound(const struct result *r, struct page_bound *b)
{
    memset(b, 0, sizeof *b);
    const struct link_cfg *lk = &r->sc->link;
    const struct wire *need = &r->needed_at_served;
    if (lk->rate <= 0 || r->browsers == 0 || r->all_served_s < 0)
        return;
    wire_bytes(need, lk, b->wire);
    wire_bytes(&r->wire_at_served, lk, b->moved);
    for (int d = 0; d < 2; d++) {
        b->http[d] = (double)need->bytes[d];
        b->waste[d] = b->moved[d] - b->wire[d];
    }
    b->waste_conns = (double)r->wire_at_served.conns - (double)need->conns;
    b->line_s = (b->wire[0] > b->wire[1] ? b->wire[0] : b->wire[1]) / lk->rate;
    b->rtt_s = 2 * lk->delay_ms / 1000.0;
    b->rtts = 2;
    b->bound_s = b->line_s + b->rtts * b->rtt_s;
    b->ratio = b->bound_s > 0 ? r->all_served_s / b->bound_s : 0;
    b->valid = true;
}

static bool upload_verdict(const struct result *r)
{
    const struct gstats *t = &r->total;
    return t->up_verified >= 1 && t->up_bad == 0 && t->up_failed == 0;
}

void report_check(struct result *r)
{
    struct hist h;
    headline(r, &h);
    const struct gstats *t = &r->total;
    r->pass = true;
    for (int id = 0; id < E_COUNT; id++) {
        const struct expectation *e = &r->sc->expect[id];
        bool pass = true, skipped = false;
        double got = 0;
        if (!e->set)
            continue;
        switch ((enum expect_id)id) {
        case E_MAX_FAILED_POLLS:
            got = (double)r->failed_polls;
            pass = got <= e->value;
            break;
        case E_MAX_FAILED_REQUESTS:
            got = (double)t->failed;
            pass = got <= e->value;
            break;
        case E_MAX_FAILED_PCT:
            got = t->ok + t->failed ? 100.0 * (double)t->failed / (double)(t->ok + t->failed) : 0;
            pass = got <= e->value;
            break;
        case E_MIN_REQUESTS:
            got = (double)t->ok;
            pass = got >= e->value;
            break;
        case E_UPLOAD_CRC:
            got = (double)t->up_verified;
            pass = upload_verdict(r);
            break;
        case E_ALL_SLOTS_FREE:
            /* A server without /status cannot be asked; one that had it and
             * stopped answering fails. */
            skipped = !r->status_available;
            got = r->slots_free ? 1 : 0;
            pass = skipped || (r->final_valid && r->slots_free);
            break;
        case E_MIN_CONN_PER_S:
            got = per_s(t->connects_run, r->run_s);
            pass = got >= e->value;
            break;
        case E_MIN_REQ_PER_S:
            got = per_s(t->ok_run, r->run_s);
            pass = got >= e->value;
            break;
        case E_MAX_P99_MS:
            got = (double)hist_pct(&h, 99) / 1000.0;
            pass = h.n > 0 && got <= e->value;
            break;
        case E_MAX_LONGEST_POLL_US:
            skipped = !r->final.valid || !r->final.has_poll_us;
            got = skipped ? 0 : (double)r->final.longest_poll_us;
            pass = skipped || got <= e->value;
            break;
        case E_MIN_UPLOAD_MB_S:
            got = mb_per_s(t->up_bytes, t->up_us);
            pass = t->up_ok > 0 && got >= e->value;
            break;
        case E_ALL_CLIENTS_SERVED:
            got = r->served;
            pass = r->browsers > 0 && r->served == r->browsers;
            break;
        case E_MAX_SERVED_RATIO: {
            struct page_bound b;
            page_bound(r, &b);
            got = b.ratio;
            pass = b.valid && b.ratio <= e->value;
            break;
        }
        case E_BLACKHOLE_RESET_WITHIN_MS:
            got = r->bh_reset_seen ? r->bh_close_ms - (double)r->sc->close_timeout_ms : -1;
            pass = r->bh_cut && r->bh_reset_seen && r->bh_timeout_counted &&
                   r->bh_bytes_after == 0 &&
                   (got < 0 ? -got : got) <= e->value;
            break;
        case E_SERVED_DURING_BLACKHOLE:
            got = (double)r->bh_others_ok;
            pass = r->bh_cut && r->bh_others_ok > 0 && r->bh_others_failed == 0;
            break;
        case E_COUNT:
            break;
        }
        r->exp_got[id] = got;
        r->exp_pass[id] = pass;
        r->exp_skipped[id] = skipped;
        if (!pass)
            r->pass = false;
    }
}

static void fail_list(FILE *f, const struct gstats *g)
{
    bool any = false;
    for (int k = 0; k < F_COUNT; k++)
        if (g->fail[k]) {
            fprintf(f, "%s %s %llu", any ? "," : "", fail_names[k],
                    (unsigned long long)g->fail[k]);
            any = true;
        }
    if (!any)
        fprintf(f, " none");
}

static void lat3(FILE *f, const struct hist *h)
{
    if (h->n == 0) {
        fprintf(f, "p50 -  p99 -  max -");
        return;
    }
    fprintf(f, "p50 %.2f ms  p99 %.2f ms  max %.2f ms", (double)hist_pct(h, 50) / 1000.0,
            (double)hist_pct(h, 99) / 1000.0, (double)h->max / 1000.0);
}

static const char *want_text(int id, const struct expectation *e, char *buf, size_t len)
{
    switch ((enum expect_id)id) {
    case E_UPLOAD_CRC:
    case E_ALL_SLOTS_FREE:
    case E_ALL_CLIENTS_SERVED:
    case E_SERVED_DURING_BLACKHOLE:
        snprintf(buf, len, "true");
        break;
    case E_BLACKHOLE_RESET_WITHIN_MS:
        snprintf(buf, len, "+-%g", e->value);
        break;
    case E_MIN_REQUESTS:
    case E_MIN_CONN_PER_S:
    case E_MIN_REQ_PER_S:
    case E_MIN_UPLOAD_MB_S:
        snprintf(buf, len, ">= %g", e->value);
        break;
    default:
        snprintf(buf, len, "<= %g", e->value);
        break;
    }
    return buf;
}

void report_print(FILE *f, const struct result *r)
{
    const struct scenario *sc = r->sc;
    const struct gstats *t = &r->total;
    struct hist h;
    headline(r, &h);

    fprintf(f, "\n" PROG ": %s against %s: %.1f s run, %.1f s drain%s\n", sc->name, r->target,
            r->run_s, r->drain_s, r->interrupted ? " (interrupted)" : "");
    fprintf(f, "requests     %llu ok, %llu failed (%.1f ok/s)", (unsigned long long)t->ok,
            (unsigned long long)t->failed, per_s(t->ok_run, r->run_s));
    if (t->stale_retries)
        fprintf(f, "; %llu resent after a keep-alive close", (unsigned long long)t->stale_retries);
    if (t->cut)
        fprintf(f, "; %llu cut at the end", (unsigned long long)t->cut);
    fprintf(f, "\n  failures  ");
    fail_list(f, t);
    fprintf(f, "\n");
    for (unsigned i = 0; i < sc->ngroups; i++) {
        const struct group_cfg *g = &sc->groups[i];
        const struct gstats *s = &r->g[i];
        fprintf(f, "  %-12s %-9s x%-3u ", g->name, group_type_name(g->type), g->count);
        if (g->type == G_SLOWLORIS) {
            fprintf(f, "connects %llu, dropped by the server %llu, peak open %llu\n",
                    (unsigned long long)s->connects, (unsigned long long)s->sl_dropped,
                    (unsigned long long)s->sl_peak);
            continue;
        }
        fprintf(f, "ok %llu  failed %llu  ", (unsigned long long)s->ok,
                (unsigned long long)s->failed);
        lat3(f, &s->lat);
        if (s->failed) {
            fprintf(f, "  [");
            fail_list(f, s);
            if (s->logins_failed)
                fprintf(f, "; %llu of them rr_connect", (unsigned long long)s->logins_failed);
            fprintf(f, " ]");
        }
        if (s->skipped)
            fprintf(f, "  (%llu bursts missed)", (unsigned long long)s->skipped);
        fprintf(f, "\n");
    }
    fprintf(f, "latency      ");
    lat3(f, &h);
    fprintf(f, "  (pollers, API clients, storms; connect included)\n");
    fprintf(f, "connections  %llu opened, %.1f/s\n", (unsigned long long)t->connects,
            per_s(t->connects_run, r->run_s));
    if (has_type(r, G_UPLOADER)) {
        fprintf(f, "upload       %llu done, %.1f MB in all, %.1f MB/s", (unsigned long long)t->up_ok,
                (double)t->up_bytes / 1e6, mb_per_s(t->up_bytes, t->up_us));
        if (t->down_us)
            fprintf(f, " (download %.1f MB/s)", mb_per_s(t->down_bytes, t->down_us));
        fprintf(f, "\n  CRC       %s: %llu verified, %llu mismatched, %llu failed, %llu cut at the end\n",
                upload_verdict(r) ? "verified" : "NOT verified", (unsigned long long)t->up_verified,
                (unsigned long long)t->up_bad, (unsigned long long)t->up_failed,
                (unsigned long long)t->up_cut);
    }
    if (r->browsers) {
        double first = -1;
        for (unsigned i = 0; i < r->browsers; i++)
            if (r->served_s[i] >= 0 && (first < 0 || r->served_s[i] < first))
                first = r->served_s[i];
        fprintf(f, "pages        %u of %u browsers served", r->served, r->browsers);
        if (r->all_served_s >= 0)
            fprintf(f, "; all served at %.1f s (the first at %.1f s)", r->all_served_s, first);
        fprintf(f, "; %llu requests retried, %llu given up; %llu bodies of the wrong content\n",
                (unsigned long long)t->retries, (unsigned long long)t->gave_up,
                (unsigned long long)t->content_bad);
        struct page_bound b;
        page_bound(r, &b);
        const struct link_cfg *lk = &sc->link;
        if (lk->rate <= 0)
            fprintf(f, "  bound     - (no link rate: --link-rate or the scenario's \"link\")\n");
        else if (!b.valid)
            fprintf(f, "  bound     - (not every browser was served)\n");
        else {
            fprintf(f, "  bound     %.1f s = line time %.1f s + %u round trips of %.3f s "
                       "(handshake, request)\n",
                    b.bound_s, b.line_s, b.rtts, b.rtt_s);
            fprintf(f, "            on the wire: down %.3f MB (HTTP %.3f MB), up %.3f MB (HTTP "
                       "%.3f MB) at %.0f B/s each way; MSS %u, %u header bytes a segment\n",
                    b.wire[1] / 1e6, b.http[1] / 1e6, b.wire[0] / 1e6, b.http[0] / 1e6, lk->rate,
                    lk->mss, lk->overhead);
            fprintf(f, "  waste     down %.3f MB, up %.3f MB, %+.0f connections beyond the "
                       "needed %llu (moved: down %.3f MB, up %.3f MB; not in the bound)\n",
                    b.waste[1] / 1e6, b.waste[0] / 1e6, b.waste_conns,
                    (unsigned long long)r->needed_at_served.conns, b.moved[1] / 1e6,
                    b.moved[0] / 1e6);
            fprintf(f, "  ratio     %.2f (all served / bound)\n", b.ratio);
        }
    }
    if (r->bh_present) {
        fprintf(f, "blackhole    ");
        if (!r->bh_cut)
            fprintf(f, "link NOT cut (the reply %s)\n",
                    r->bh_request_s < 0 ? "was never asked for" : "did not arrive in part");
        else {
            fprintf(f, "%s cut at %.2f s after %llu bytes of the reply (a %llu-byte body; asked at %.2f s), "
                       "silent until %.2f s; %llu bytes came after the cut\n",
                    r->bh_remote, r->bh_cut_s, (unsigned long long)r->bh_bytes_before,
                    (unsigned long long)r->bh_size, r->bh_request_s, r->bh_silent_until_s,
                    (unsigned long long)r->bh_bytes_after);
            if (!r->bh_signalled)
                fprintf(f, "             (no --blackhole-pid: the cut is the emulator's schedule)\n");
        }
        if (r->bh_reset_seen)
            fprintf(f, "  close     close-pending to reset %.0f ms by the server's clock (between "
                       "%.0f and %.0f), configured %u ms; close timeouts counted: %s\n",
                    r->bh_close_ms, r->bh_close_lo_ms, r->bh_close_hi_ms, sc->close_timeout_ms,
                    r->bh_timeout_counted ? "yes" : "NO");
        else
            fprintf(f, "  close     the slot was NOT seen going from close-pending to free\n");
        fprintf(f, "  others    while silent: %llu requests served, %llu failed, slowest %.0f ms\n",
                (unsigned long long)r->bh_others_ok, (unsigned long long)r->bh_others_failed,
                r->bh_others_max_ms);
    }
    if (!r->status_available) {
        fprintf(f, "server       no /status: slots and server timings unknown\n");
    } else {
        fprintf(f, "server       longest poll pass ");
        if (r->final.valid && r->final.has_poll_us)
            fprintf(f, "%llu us", (unsigned long long)r->final.longest_poll_us);
        else
            fprintf(f, "-");
        if (r->final.valid && r->final.has_turn_us)
            fprintf(f, ", longest loop turn %llu us",
                    (unsigned long long)r->final.longest_turn_us);
        fprintf(f, ", longest close call ");
        if (r->final.valid && r->final.has_close_us)
            fprintf(f, "%llu us", (unsigned long long)r->final.longest_close_us);
        else
            fprintf(f, "-");
        fprintf(f, " (since the server started%s)\n",
                r->final_valid ? "" : "; from the last /status that answered");
        if (r->final.valid && r->final.has_finish_us)
            fprintf(f, "             longest upload finish (fsync and rename) %llu us\n",
                    (unsigned long long)r->final.longest_finish_us);
        if (r->final.valid && r->final.has_hist && r->first.has_hist)
            fprintf(f, "             poll passes over 1 ms during the run: %llu of %llu\n",
                    (unsigned long long)(r->final.slow_passes - r->first.slow_passes),
                    (unsigned long long)(r->final.passes - r->first.passes));
        if (r->final.valid && r->final.has_turn_hist && r->first.has_turn_hist)
            fprintf(f, "             loop turns over 1 ms during the run: %llu of %llu\n",
                    (unsigned long long)(r->final.slow_turns - r->first.slow_turns),
                    (unsigned long long)(r->final.turns - r->first.turns));
        if (r->final.valid && r->final.has_link)
            fprintf(f, "             link round trip p50 %llu us  p99 %llu us  max %llu us "
                       "(%llu requests, %llu timed out)\n",
                    (unsigned long long)r->final.link_p50_us,
                    (unsigned long long)r->final.link_p99_us,
                    (unsigned long long)r->final.link_max_us,
                    (unsigned long long)r->final.link_requests,
                    (unsigned long long)r->final.link_timeouts);
        if (r->final.valid && r->final.has_rejected && r->first.has_rejected)
            fprintf(f, "             %llu connections reset by the server with its wait queue full\n",
                    (unsigned long long)(r->final.rejected - r->first.rejected));
        if (!r->final_valid)
            fprintf(f, "slots        unknown at the end: /status did not answer\n");
        else if (r->slots_free)
            fprintf(f, "slots        all free at the end, %.2f s after the clients stopped (%u "
                       "slots%s)\n",
                    r->free_after_s, r->final.nslots,
                    r->final.own_seen ? ", one of them answering that /status" : "");
        else {
            fprintf(f, "slots        NOT all free %.1f s after the clients stopped:",
                    r->free_after_s);
            for (int k = 0; k < SS_COUNT; k++)
                if (r->final.by_state[k])
                    fprintf(f, " %s %u", slot_state_names[k], r->final.by_state[k]);
            fprintf(f, "\n");
        }
    }
    bool any = false;
    for (int id = 0; id < E_COUNT; id++) {
        const struct expectation *e = &sc->expect[id];
        if (!e->set)
            continue;
        char want[48];
        fprintf(f, "%-12s %-22s %-10s got %-10g %s\n", any ? "" : "expect", expect_names[id],
                want_text(id, e, want, sizeof want), r->exp_got[id],
                r->exp_skipped[id] ? "SKIP" : r->exp_pass[id] ? "PASS" : "FAIL");
        any = true;
    }
    fprintf(f, "result       %s\n", r->pass ? "PASS" : "FAIL");
}

/* ---- JSON -------------------------------------------------------------- */

static void add_fail_obj(cJSON *obj, const struct gstats *g)
{
    cJSON *fo = cJSON_AddObjectToObject(obj, "failures");
    for (int k = 0; k < F_COUNT; k++)
        cJSON_AddNumberToObject(fo, fail_names[k], (double)g->fail[k]);
}

static void add_lat(cJSON *obj, const struct hist *h)
{
    cJSON *l = cJSON_AddObjectToObject(obj, "latency_ms");
    cJSON_AddNumberToObject(l, "count", (double)h->n);
    cJSON_AddNumberToObject(l, "p50", (double)hist_pct(h, 50) / 1000.0);
    cJSON_AddNumberToObject(l, "p99", (double)hist_pct(h, 99) / 1000.0);
    cJSON_AddNumberToObject(l, "max", (double)h->max / 1000.0);
}

/* key: v, or null when the server did not say. */
static void add_maybe(cJSON *obj, const char *key, bool have, double v)
{
    if (have)
        cJSON_AddNumberToObject(obj, key, v);
    else
        cJSON_AddNullToObject(obj, key);
}

static cJSON *build_json(const struct result *r)
{
    const struct scenario *sc = r->sc;
    const struct gstats *t = &r->total;
    struct hist h;
    headline(r, &h);

    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "scenario", sc->name);
    cJSON_AddStringToObject(root, "target", r->target);
    cJSON_AddNumberToObject(root, "run_s", r->run_s);
    cJSON_AddNumberToObject(root, "drain_s", r->drain_s);
    cJSON_AddBoolToObject(root, "interrupted", r->interrupted);

    cJSON *req = cJSON_AddObjectToObject(root, "requests");
    cJSON_AddNumberToObject(req, "ok", (double)t->ok);
    cJSON_AddNumberToObject(req, "failed", (double)t->failed);
    cJSON_AddNumberToObject(req, "failed_polls", (double)r->failed_polls);
    cJSON_AddNumberToObject(req, "per_s", per_s(t->ok_run, r->run_s));
    cJSON_AddNumberToObject(req, "resent_after_keepalive_close", (double)t->stale_retries);
    cJSON_AddNumberToObject(req, "cut_at_end", (double)t->cut);
    add_fail_obj(req, t);
    add_lat(root, &h);

    cJSON *conn = cJSON_AddObjectToObject(root, "connections");
    cJSON_AddNumberToObject(conn, "opened", (double)t->connects);
    cJSON_AddNumberToObject(conn, "per_s", per_s(t->connects_run, r->run_s));
    cJSON_AddNumberToObject(conn, "connect_errors", (double)t->connect_errors);

    if (has_type(r, G_UPLOADER)) {
        cJSON *up = cJSON_AddObjectToObject(root, "upload");
        cJSON_AddNumberToObject(up, "done", (double)t->up_ok);
        cJSON_AddNumberToObject(up, "verified", (double)t->up_verified);
        cJSON_AddNumberToObject(up, "crc_mismatch", (double)t->up_bad);
        cJSON_AddNumberToObject(up, "failed", (double)t->up_failed);
        cJSON_AddNumberToObject(up, "cut_at_end", (double)t->up_cut);
        cJSON_AddNumberToObject(up, "bytes", (double)t->up_bytes);
        cJSON_AddNumberToObject(up, "mb_s", mb_per_s(t->up_bytes, t->up_us));
        cJSON_AddNumberToObject(up, "download_mb_s", mb_per_s(t->down_bytes, t->down_us));
        cJSON_AddBoolToObject(up, "crc_verified", upload_verdict(r));
    } else {
        cJSON_AddNullToObject(root, "upload");
    }

    if (r->browsers) {
        cJSON *pg = cJSON_AddObjectToObject(root, "pages");
        cJSON_AddNumberToObject(pg, "browsers", r->browsers);
        cJSON_AddNumberToObject(pg, "served", r->served);
        add_maybe(pg, "all_served_s", r->all_served_s >= 0, r->all_served_s);
        cJSON *ss = cJSON_AddArrayToObject(pg, "served_s");
        for (unsigned i = 0; i < r->browsers; i++)
            cJSON_AddItemToArray(ss, r->served_s[i] >= 0 ? cJSON_CreateNumber(r->served_s[i])
                                                         : cJSON_CreateNull());
        cJSON_AddNumberToObject(pg, "retries", (double)t->retries);
        cJSON_AddNumberToObject(pg, "content_mismatch", (double)t->content_bad);
        cJSON_AddNumberToObject(pg, "gave_up", (double)t->gave_up);
        cJSON_AddNumberToObject(pg, "scale", sc->scale);
        const struct link_cfg *lk = &sc->link;
        cJSON *lo = cJSON_AddObjectToObject(pg, "link");
        cJSON_AddNumberToObject(lo, "rate", lk->rate);
        cJSON_AddNumberToObject(lo, "delay_ms", lk->delay_ms);
        cJSON_AddNumberToObject(lo, "mss", lk->mss);
        cJSON_AddNumberToObject(lo, "overhead", lk->overhead);
        struct page_bound b;
        page_bound(r, &b);
        if (b.valid) {
            cJSON *bo = cJSON_AddObjectToObject(pg, "bound");
            cJSON_AddNumberToObject(bo, "bound_s", b.bound_s);
            cJSON_AddNumberToObject(bo, "line_s", b.line_s);
            cJSON_AddNumberToObject(bo, "round_trips", b.rtts);
            cJSON_AddNumberToObject(bo, "rtt_s", b.rtt_s);
            cJSON_AddNumberToObject(bo, "wire_down_bytes", b.wire[1]);
            cJSON_AddNumberToObject(bo, "wire_up_bytes", b.wire[0]);
            cJSON_AddNumberToObject(bo, "http_down_bytes", b.http[1]);
            cJSON_AddNumberToObject(bo, "http_up_bytes", b.http[0]);
            const struct wire *n = &r->needed_at_served, *w = &r->wire_at_served;
            cJSON_AddNumberToObject(bo, "segments_down", (double)n->segs[1]);
            cJSON_AddNumberToObject(bo, "segments_up", (double)n->segs[0]);
            cJSON_AddNumberToObject(bo, "connections", (double)n->conns);
            /* what did cross, beyond what had to: not in the bound */
            cJSON *wa = cJSON_AddObjectToObject(pg, "waste");
            cJSON_AddNumberToObject(wa, "down_bytes", b.waste[1]);
            cJSON_AddNumberToObject(wa, "up_bytes", b.waste[0]);
            cJSON_AddNumberToObject(wa, "connections", b.waste_conns);
            cJSON_AddNumberToObject(wa, "moved_down_bytes", b.moved[1]);
            cJSON_AddNumberToObject(wa, "moved_up_bytes", b.moved[0]);
            cJSON_AddNumberToObject(wa, "moved_http_down_bytes", (double)w->bytes[1]);
            cJSON_AddNumberToObject(wa, "moved_http_up_bytes", (double)w->bytes[0]);
            cJSON_AddNumberToObject(wa, "connections_made", (double)w->conns);
            cJSON_AddNumberToObject(wa, "fin_closes", (double)w->fin_closes);
            cJSON_AddNumberToObject(wa, "rst_closes", (double)w->rst_closes);
            cJSON_AddNumberToObject(pg, "ratio", b.ratio);
        } else {
            cJSON_AddNullToObject(pg, "bound");
            cJSON_AddNullToObject(pg, "ratio");
        }
    } else {
        cJSON_AddNullToObject(root, "pages");
    }
    if (r->bh_present) {
        cJSON *bh = cJSON_AddObjectToObject(root, "blackhole");
        cJSON_AddStringToObject(bh, "client", r->bh_remote);
        cJSON_AddBoolToObject(bh, "cut", r->bh_cut);
        cJSON_AddBoolToObject(bh, "cut_by_signal", r->bh_signalled);
        add_maybe(bh, "request_s", r->bh_request_s >= 0, r->bh_request_s);
        add_maybe(bh, "cut_s", r->bh_cut, r->bh_cut_s);
        add_maybe(bh, "silent_until_s", r->bh_cut, r->bh_silent_until_s);
        cJSON_AddNumberToObject(bh, "reply_bytes", (double)r->bh_size);
        cJSON_AddNumberToObject(bh, "bytes_before_cut", (double)r->bh_bytes_before);
        cJSON_AddNumberToObject(bh, "bytes_after_cut", (double)r->bh_bytes_after);
        cJSON_AddBoolToObject(bh, "reset_seen", r->bh_reset_seen);
        add_maybe(bh, "close_pending_seen_s", r->bh_cp_seen_s >= 0, r->bh_cp_seen_s);
        add_maybe(bh, "close_to_reset_ms", r->bh_reset_seen, r->bh_close_ms);
        add_maybe(bh, "close_to_reset_min_ms", r->bh_reset_seen, r->bh_close_lo_ms);
        add_maybe(bh, "close_to_reset_max_ms", r->bh_reset_seen, r->bh_close_hi_ms);
        cJSON_AddNumberToObject(bh, "close_timeout_ms", sc->close_timeout_ms);
        cJSON_AddBoolToObject(bh, "closed_timeout_counted", r->bh_timeout_counted);
        cJSON_AddNumberToObject(bh, "others_ok", (double)r->bh_others_ok);
        cJSON_AddNumberToObject(bh, "others_failed", (double)r->bh_others_failed);
        cJSON_AddNumberToObject(bh, "others_max_ms", r->bh_others_max_ms);
    } else {
        cJSON_AddNullToObject(root, "blackhole");
    }

    cJSON *srv = cJSON_AddObjectToObject(root, "server");
    cJSON_AddBoolToObject(srv, "status_available", r->status_available);
    const struct status_snap *fin = &r->final, *first = &r->first;
    add_maybe(srv, "longest_poll_us", fin->valid && fin->has_poll_us,
              (double)fin->longest_poll_us);
    add_maybe(srv, "longest_turn_us", fin->valid && fin->has_turn_us,
              (double)fin->longest_turn_us);
    add_maybe(srv, "longest_close_us", fin->valid && fin->has_close_us,
              (double)fin->longest_close_us);
    add_maybe(srv, "longest_upload_finish_us", fin->valid && fin->has_finish_us,
              (double)fin->longest_finish_us);
    /* counts during the run: the last /status less the first */
    bool passes = fin->valid && fin->has_hist && first->has_hist;
    add_maybe(srv, "poll_passes", passes, (double)(fin->passes - first->passes));
    add_maybe(srv, "poll_passes_over_1ms", passes, (double)(fin->slow_passes - first->slow_passes));
    bool turns = fin->valid && fin->has_turn_hist && first->has_turn_hist;
    add_maybe(srv, "loop_turns", turns, (double)(fin->turns - first->turns));
    add_maybe(srv, "loop_turns_over_1ms", turns, (double)(fin->slow_turns - first->slow_turns));
    add_maybe(srv, "rejected_during_run", fin->valid && fin->has_rejected && first->has_rejected,
              (double)(fin->rejected - first->rejected));
    /* The server's round trips to slotnetd, when it runs over the link. */
    if (fin->valid && fin->has_link) {
        cJSON *link = cJSON_AddObjectToObject(srv, "link");
        cJSON_AddNumberToObject(link, "rtt_p50_us", (double)fin->link_p50_us);
        cJSON_AddNumberToObject(link, "rtt_p99_us", (double)fin->link_p99_us);
        cJSON_AddNumberToObject(link, "rtt_max_us", (double)fin->link_max_us);
        cJSON_AddNumberToObject(link, "requests", (double)fin->link_requests);
        cJSON_AddNumberToObject(link, "timeouts", (double)fin->link_timeouts);
    } else {
        cJSON_AddNullToObject(srv, "link");
    }
    if (r->final_valid) {
        cJSON_AddNumberToObject(srv, "slots", r->final.nslots);
        cJSON_AddBoolToObject(srv, "slots_free_at_end", r->slots_free);
        cJSON_AddNumberToObject(srv, "free_after_s", r->free_after_s);
        cJSON *st = cJSON_AddObjectToObject(srv, "slots_at_end");
        for (int k = 0; k < SS_COUNT; k++)
            cJSON_AddNumberToObject(st, slot_state_names[k], r->final.by_state[k]);
    } else {
        cJSON_AddNullToObject(srv, "slots");
        cJSON_AddNullToObject(srv, "slots_free_at_end");
    }

    cJSON *groups = cJSON_AddArrayToObject(root, "groups");
    for (unsigned i = 0; i < sc->ngroups; i++) {
        const struct group_cfg *g = &sc->groups[i];
        const struct gstats *s = &r->g[i];
        cJSON *o = cJSON_CreateObject();
        cJSON_AddItemToArray(groups, o);
        cJSON_AddStringToObject(o, "name", g->name);
        cJSON_AddStringToObject(o, "type", group_type_name(g->type));
        cJSON_AddNumberToObject(o, "clients", g->count);
        cJSON_AddNumberToObject(o, "ok", (double)s->ok);
        cJSON_AddNumberToObject(o, "failed", (double)s->failed);
        cJSON_AddNumberToObject(o, "connections", (double)s->connects);
        cJSON_AddNumberToObject(o, "logins", (double)s->logins);
        cJSON_AddNumberToObject(o, "logins_failed", (double)s->logins_failed);
        add_fail_obj(o, s);
        add_lat(o, &s->lat);
        if (g->type == G_SLOWLORIS) {
            cJSON_AddNumberToObject(o, "dropped_by_server", (double)s->sl_dropped);
            cJSON_AddNumberToObject(o, "peak_open", (double)s->sl_peak);
        }
        if (g->type == G_STORM)
            cJSON_AddNumberToObject(o, "bursts_missed", (double)s->skipped);
    }

    cJSON *exps = cJSON_AddArrayToObject(root, "expectations");
    for (int id = 0; id < E_COUNT; id++) {
        if (!sc->expect[id].set)
            continue;
        cJSON *o = cJSON_CreateObject();
        cJSON_AddItemToArray(exps, o);
        cJSON_AddStringToObject(o, "name", expect_names[id]);
        cJSON_AddNumberToObject(o, "want", sc->expect[id].value);
        cJSON_AddNumberToObject(o, "got", r->exp_got[id]);
        cJSON_AddBoolToObject(o, "pass", r->exp_pass[id]);
        cJSON_AddBoolToObject(o, "skipped", r->exp_skipped[id]);
    }
    cJSON_AddBoolToObject(root, "pass", r->pass);
    return root;
}

bool report_json(const char *file, const struct result *r)
{
    cJSON *root = build_json(r);
    char *text = root ? cJSON_Print(root) : NULL;
    cJSON_Delete(root);
    if (!text) {
        fprintf(stderr, PROG ": out of memory writing the JSON report\n");
        return false;
    }
    FILE *f = fopen(file, "w");
    bool ok = f && fputs(text, f) >= 0 && fputc('\n', f) != EOF;
    if (f && fclose(f) != 0)
        ok = false;
    if (!ok)
        fprintf(stderr, PROG ": %s: %s\n", file, strerror(errno));
    cJSON_free(text);
    return ok;
}

/* ---- CSV --------------------------------------------------------------- */

bool report_csv(const char *file, const struct result *r)
{
    FILE *f = fopen(file, "w");
    if (!f) {
        fprintf(stderr, PROG ": %s: %s\n", file, strerror(errno));
        return false;
    }
    /* Link round trips as three more columns, only for a server on the
     * link: the columns the plot reads stay where they are. */
    bool link = r->final.valid && r->final.has_link;
    fprintf(f, "t_s,req_per_s,conn_per_s,failures,upload_mb_s,open_conns,slots_free,"
               "slots_connected,slots_other_end_closed,slots_close_pending,slots_other,"
               "slots_monitor,backlog,lat_max_ms,down_kb_s,browsers_served%s\n",
            link ? ",link_rtt_p50_us,link_rtt_p99_us,link_rtt_max_us" : "");
    for (size_t i = 0; i < r->nrows; i++) {
        const struct row *w = &r->rows[i];
        fprintf(f, "%.2f,%.1f,%.1f,%llu,%.2f,%llu", w->t, w->req_s, w->conn_s,
                (unsigned long long)w->failures, w->up_mb_s, (unsigned long long)w->open);
        const struct status_snap *s = &w->st;
        if (s->valid) {
            unsigned other = s->by_state[SS_CONNECTING] + s->by_state[SS_ALLOCATED] +
                             s->by_state[SS_ABORTED] + s->by_state[SS_OTHER];
            fprintf(f, ",%u,%u,%u,%u,%u,%u,", s->by_state[SS_FREE], s->by_state[SS_CONNECTED],
                    s->by_state[SS_OTHER_END_CLOSED], s->by_state[SS_CLOSE_PENDING], other,
                    s->own_seen ? 1u : 0u);
            if (s->has_backlog)
                fprintf(f, "%llu", (unsigned long long)s->backlog);
        } else {
            fprintf(f, ",,,,,,,");
        }
        fprintf(f, ",%.2f,%.2f,%u", w->lat_max_ms, w->down_kb_s, w->served);
        if (link && s->valid && s->has_link)
            fprintf(f, ",%llu,%llu,%llu", (unsigned long long)s->link_p50_us,
                    (unsigned long long)s->link_p99_us, (unsigned long long)s->link_max_us);
        else if (link)
            fprintf(f, ",,,");
        fprintf(f, "\n");
    }
    bool ok = !ferror(f);
    if (fclose(f) != 0)
        ok = false;
    if (!ok)
        fprintf(stderr, PROG ": %s: write error\n", file);
    return ok;
}
