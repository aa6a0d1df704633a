/*
 * GET /status: the slot table, every counter and the app's own figures,
 * as JSON. Browser tabs poll this several times a second, so it is built on
 * the fixed arena of json.c and printed straight into the slot's buffer.
 */
#include <stdio.h>

#include <cjson/cJSON.h>

#include "web.h"

static void add_endpoint(cJSON *obj, const char *key, const sn_endpoint *ep)
{
    if (ep->addr == 0 && ep->port == 0) {
        cJSON_AddNullToObject(obj, key);
        return;
    }
    char text[sizeof "255.255.255.255:65535"];
    snprintf(text, sizeof text, "%u.%u.%u.%u:%u", (unsigned)(ep->addr >> 24) & 0xffu,
             (unsigned)(ep->addr >> 16) & 0xffu, (unsigned)(ep->addr >> 8) & 0xffu,
             (unsigned)ep->addr & 0xffu, (unsigned)ep->port);
    cJSON_AddStringToObject(obj, key, text);
}

static void add_slot(cJSON *slots, struct web *w, unsigned i)
{
    cJSON *s = cJSON_CreateObject();
    if (!s)
        return;
    cJSON_AddItemToArray(slots, s);
    cJSON_AddNumberToObject(s, "index", i);

    sn_slot_status st;
    int err = web_net_slot_status_get(w, i, &st);
    if (err < 0) {
        cJSON_AddStringToObject(s, "state", sn_state_name(web_net_slot_state(w, i)));
        cJSON_AddStringToObject(s, "error", sn_strerror(err));
        return;
    }
    cJSON_AddNumberToObject(s, "id", st.id);
    cJSON_AddStringToObject(s, "state", sn_state_name(st.state));
    cJSON_AddNumberToObject(s, "protocol", st.protocol);
    add_endpoint(s, "local", &st.local);
    add_endpoint(s, "remote", &st.remote);
    cJSON_AddNumberToObject(s, "readable", st.readable);
    cJSON_AddNumberToObject(s, "write_space", st.write_space);
    uint32_t unsent, unacked;
    if (st.id != SN_ID_NONE && web_net_tx_queued(w, st.id, &unsent, &unacked) == SN_OK) {
        cJSON_AddNumberToObject(s, "unsent", unsent);
        cJSON_AddNumberToObject(s, "unacked", unacked);
    }
    cJSON_AddNumberToObject(s, "last_error", st.last_error);
    if (st.last_error != 0)
        cJSON_AddStringToObject(s, "error", sn_strerror(st.last_error));
}

/* [{"le_us": bound (null for the last), "<what>": n}, ...] on the core's
 * bounds. */
static void add_hist(cJSON *obj, const char *key, const char *what,
                     const uint32_t counts[SN_POLL_HIST_BUCKETS])
{
    cJSON *hist = cJSON_AddArrayToObject(obj, key);
    for (unsigned b = 0; hist && b < SN_POLL_HIST_BUCKETS; b++) {
        cJSON *e = cJSON_CreateObject();
        uint32_t bound = sn_poll_hist_bound(b);
        if (bound == UINT32_MAX)
            cJSON_AddNullToObject(e, "le_us");
        else
            cJSON_AddNumberToObject(e, "le_us", bound);
        cJSON_AddNumberToObject(e, what, counts[b]);
        cJSON_AddItemToArray(hist, e);
    }
}

/* Link mode: the link's own figures, round trips of every request
 * included (the counters above are the daemon's). */
static void add_link(cJSON *root, const struct web *w)
{
    sn_host_link_stats ls;
    sn_host_link_stats_get(w->host, &ls);
    cJSON *l = cJSON_AddObjectToObject(root, "link");
    cJSON_AddStringToObject(l, "target", w->link_target ? w->link_target : "");
    cJSON_AddBoolToObject(l, "up", sn_host_link_up(w->host));
    cJSON_AddNumberToObject(l, "requests", (double)ls.requests);
    cJSON_AddNumberToObject(l, "timeouts", (double)ls.timeouts);
    cJSON_AddNumberToObject(l, "resends", (double)ls.resends);
    cJSON_AddNumberToObject(l, "failed", (double)ls.failed);
    cJSON_AddNumberToObject(l, "frame_errors", (double)ls.frame_errors);
    cJSON_AddNumberToObject(l, "garbage", (double)ls.garbage);
    cJSON_AddNumberToObject(l, "stale_replies", (double)ls.stale_replies);
    cJSON_AddNumberToObject(l, "attention", (double)ls.attention);
    cJSON_AddNumberToObject(l, "polls", (double)ls.polls);
    cJSON_AddNumberToObject(l, "reopens", (double)ls.reopens);
    cJSON_AddNumberToObject(l, "rtt_count", (double)ls.rtt_count);
    cJSON_AddNumberToObject(l, "rtt_p50_us", ls.rtt_p50_us);
    cJSON_AddNumberToObject(l, "rtt_p99_us", ls.rtt_p99_us);
    cJSON_AddNumberToObject(l, "rtt_max_us", ls.rtt_max_us);
    cJSON_AddNumberToObject(l, "device_longest_turn_us", ls.device_turn_us);
}

size_t status_json(struct web *w, char *buf, size_t len)
{
    json_reset();

    cJSON *root = cJSON_CreateObject();
    cJSON *slots = cJSON_AddArrayToObject(root, "slots");
    unsigned n = web_net_slot_count(w);
    for (unsigned i = 0; i < n; i++)
        add_slot(slots, w, i);

    cJSON *counters = cJSON_AddObjectToObject(root, "counters");
    const sn_stats *stats = web_net_stats(w);
#define ADD_FIELD_(name) cJSON_AddNumberToObject(counters, #name, stats->name);
    SN_STATS_FIELDS(ADD_FIELD_)
#undef ADD_FIELD_
    add_hist(root, "poll_hist", "passes", stats->poll_hist);
    /* The loop's own turns: sn_poll and everything the app does after it. */
    cJSON *loop = cJSON_AddObjectToObject(root, "loop");
    cJSON_AddNumberToObject(loop, "longest_turn_us", w->longest_turn_us);
    add_hist(loop, "turn_hist", "turns", w->turn_hist);

    cJSON_AddNumberToObject(root, "uptime_ms", (uint32_t)(w->now - w->started));
    cJSON_AddNumberToObject(root, "requests", w->requests);
    cJSON_AddStringToObject(root, "backend", web_net_backend(w));
    cJSON_AddStringToObject(root, "mode", web_net_is_link(w) ? "link" : "in-process");
    if (web_net_is_link(w))
        add_link(root, w);
    /* The app's own figures: the upload is the job that must not suffer. */
    unsigned sessions = 0;
    for (unsigned i = 0; i < MAX_SESSIONS; i++)
        sessions += w->sessions[i].used;
    cJSON_AddNumberToObject(root, "sessions", sessions);
    cJSON_AddNumberToObject(root, "uploads_active", upload_active(w));
    cJSON_AddNumberToObject(root, "uploads_ok", w->uploads_ok);
    cJSON_AddNumberToObject(root, "uploads_failed", w->uploads_failed);
    cJSON_AddNumberToObject(root, "upload_bytes", (double)w->upload_bytes);
    cJSON_AddNumberToObject(root, "longest_upload_finish_us", w->longest_finish_us);

    size_t out = json_print(root, buf, len);
    json_reset();
    return out;
}
