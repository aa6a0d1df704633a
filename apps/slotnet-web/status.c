/*
 * GET /status: the slot table and every counter, as JSON.
 *
 * Browser tabs poll this several times a second, so it must be cheap and
 * must not touch the heap: cJSON allocates a node per value, so its hooks
 * point at a fixed arena that is emptied after every document, and the text
 * is printed straight into the slot's output buffer.
 */
#include <stdalign.h>
#include <stdio.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "web.h"

/* 32 slots x ~10 values x (node + key) is about 30 KiB; twice that for room. */
static alignas(max_align_t) unsigned char arena[64 * 1024];
static size_t arena_used;
static bool arena_exhausted;

static void *arena_alloc(size_t n)
{
    size_t need = (n + (alignof(max_align_t) - 1)) & ~(alignof(max_align_t) - 1);
    if (need < n || need > sizeof arena - arena_used) {
        arena_exhausted = true;
        return NULL;
    }
    void *p = arena + arena_used;
    arena_used += need;
    return p;
}

static void arena_free(void *p)
{
    (void)p; /* the whole arena is dropped after each document */
}

void status_init(void)
{
    cJSON_Hooks hooks = {.malloc_fn = arena_alloc, .free_fn = arena_free};
    cJSON_InitHooks(&hooks);
}

/* Every field of sn_stats, in order. The assertion below trips when the
 * struct grows, so a new counter cannot silently go missing here. */
#define STATS_FIELDS(X)                                                                       \
    X(accepted) X(rejected) X(closed_graceful) X(closed_peer) X(closed_timeout)              \
    X(reset_by_peer) X(peer_closed) X(idle_timeouts) X(terminated) X(aborted) X(connects)     \
    X(connect_retries) X(connect_failures) X(releases) X(releases_forced) X(emfile_events)     \
    X(accept_errors) X(write_retryable) X(poll_passes) X(longest_poll_us) X(longest_close_us) \
    X(backlog_now) X(backlog_peak)

#define COUNT_FIELD_(name) +1
_Static_assert(sizeof(sn_stats) == (0 STATS_FIELDS(COUNT_FIELD_) + SN_POLL_HIST_BUCKETS) *
                                       sizeof(uint32_t),
               "sn_stats changed: update STATS_FIELDS in status.c");
#undef COUNT_FIELD_

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
    int err = sn_slot_status_get(w->core, i, &st);
    if (err < 0) {
        cJSON_AddStringToObject(s, "state", sn_state_name(sn_slot_state(w->core, i)));
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
    cJSON_AddNumberToObject(s, "last_error", st.last_error);
    if (st.last_error != 0)
        cJSON_AddStringToObject(s, "error", sn_strerror(st.last_error));
}

size_t status_json(struct web *w, char *buf, size_t len)
{
    arena_used = 0;
    arena_exhausted = false;

    cJSON *root = cJSON_CreateObject();
    cJSON *slots = cJSON_AddArrayToObject(root, "slots");
    unsigned n = sn_slot_count(w->core);
    for (unsigned i = 0; i < n; i++)
        add_slot(slots, w, i);

    cJSON *counters = cJSON_AddObjectToObject(root, "counters");
    const sn_stats *stats = sn_stats_get(w->core);
#define ADD_FIELD_(name) cJSON_AddNumberToObject(counters, #name, stats->name);
    STATS_FIELDS(ADD_FIELD_)
#undef ADD_FIELD_
    cJSON *hist = cJSON_AddArrayToObject(root, "poll_hist");
    for (unsigned b = 0; hist && b < SN_POLL_HIST_BUCKETS; b++) {
        cJSON *e = cJSON_CreateObject();
        uint32_t bound = sn_poll_hist_bound(b);
        if (bound == UINT32_MAX)
            cJSON_AddNullToObject(e, "le_us");
        else
            cJSON_AddNumberToObject(e, "le_us", bound);
        cJSON_AddNumberToObject(e, "passes", stats->poll_hist[b]);
        cJSON_AddItemToArray(hist, e);
    }

    cJSON_AddNumberToObject(root, "uptime_ms", (uint32_t)(w->now - w->started));
    cJSON_AddNumberToObject(root, "requests", w->requests);
    cJSON_AddStringToObject(root, "backend", w->ops->name ? w->ops->name : "");

    size_t out = 0;
    int cap = len > INT32_MAX ? INT32_MAX : (int)len;
    if (root && !arena_exhausted && cJSON_PrintPreallocated(root, buf, cap, 0))
        out = strlen(buf);
    cJSON_Delete(root);
    arena_used = 0;
    return out;
}
