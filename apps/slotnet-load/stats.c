/*
 * Latency histograms and the server's /status, read.
 */
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "load.h"

const char *const fail_names[F_COUNT] = {
    [F_REFUSED] = "refused", [F_CONNECT] = "connect", [F_RESET] = "reset",
    [F_CLOSED] = "closed",   [F_TIMEOUT] = "timeout", [F_STATUS] = "status",
    [F_SHORT] = "short",     [F_PROTOCOL] = "protocol", [F_REPLY] = "reply",
};

/* The names slotnet's sn_state_name() gives, in /status. */
const char *const slot_state_names[SS_COUNT] = {
    [SS_FREE] = "free",
    [SS_CONNECTED] = "connected",
    [SS_OTHER_END_CLOSED] = "other-end-closed",
    [SS_CLOSE_PENDING] = "close-pending",
    [SS_CONNECTING] = "connecting",
    [SS_ALLOCATED] = "allocated",
    [SS_ABORTED] = "aborted",
    [SS_OTHER] = "other",
};

/* ---- Histogram --------------------------------------------------------- */

/* Values below HIST_SUB have a bucket each; above, each power of two is cut
 * into HIST_SUB equal parts. */
static unsigned bucket_of(uint64_t v)
{
    if (v < HIST_SUB)
        return (unsigned)v;
    unsigned e = 63u - (unsigned)__builtin_clzll(v); /* >= 5 */
    unsigned sub = (unsigned)(v >> (e - 5)) & (HIST_SUB - 1);
    unsigned b = (e - 4) * HIST_SUB + sub;
    return b < HIST_BUCKETS ? b : HIST_BUCKETS - 1;
}

/* The largest value that falls in bucket b. */
static uint64_t bucket_top(unsigned b)
{
    if (b < HIST_SUB)
        return b;
    unsigned e = b / HIST_SUB + 4;
    uint64_t sub = b % HIST_SUB;
    uint64_t low = (HIST_SUB + sub) << (e - 5);
    return low + ((uint64_t)1 << (e - 5)) - 1;
}

void hist_add(struct hist *h, uint64_t v)
{
    h->b[bucket_of(v)]++;
    h->n++;
    if (v > h->max)
        h->max = v;
}

void hist_merge(struct hist *into, const struct hist *from)
{
    for (unsigned i = 0; i < HIST_BUCKETS; i++)
        into->b[i] += from->b[i];
    into->n += from->n;
    if (from->max > into->max)
        into->max = from->max;
}

uint64_t hist_pct(const struct hist *h, double pct)
{
    if (h->n == 0)
        return 0;
    uint64_t rank = (uint64_t)(pct / 100.0 * (double)h->n + 0.999999);
    if (rank < 1)
        rank = 1;
    uint64_t seen = 0;
    for (unsigned i = 0; i < HIST_BUCKETS; i++) {
        seen += h->b[i];
        if (seen >= rank) {
            uint64_t top = bucket_top(i);
            return top < h->max ? top : h->max;
        }
    }
    return h->max;
}

double mb_per_s(uint64_t bytes, uint64_t us)
{
    return us ? (double)bytes / (double)us : 0.0; /* bytes per microsecond = MB/s */
}

/* ---- /status ----------------------------------------------------------- */

static bool number(const cJSON *obj, const char *key, uint64_t *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!cJSON_IsNumber(v) || v->valuedouble < 0)
        return false;
    *out = (uint64_t)v->valuedouble;
    return true;
}

/* "127.0.0.1:40312" or "[::1]:40312": the port after the last colon. */
static unsigned remote_port(const cJSON *slot)
{
    const cJSON *r = cJSON_GetObjectItemCaseSensitive(slot, "remote");
    if (!cJSON_IsString(r))
        return 0;
    const char *colon = strrchr(r->valuestring, ':');
    if (!colon)
        return 0;
    char *end;
    unsigned long p = strtoul(colon + 1, &end, 10);
    return *end == '\0' && p <= 65535 ? (unsigned)p : 0;
}

/* A histogram [{"le_us": bound or null, "<what>": n}, ...]: the total, and
 * those over 1 ms. False when absent or malformed. */
static bool hist_over_1ms(const cJSON *hist, const char *what, uint64_t *all, uint64_t *slow)
{
    const cJSON *b;
    *all = *slow = 0;
    if (!cJSON_IsArray(hist))
        return false;
    cJSON_ArrayForEach(b, hist)
    {
        uint64_t n = 0, le = 0;
        const cJSON *bound = cJSON_GetObjectItemCaseSensitive(b, "le_us");
        if (!number(b, what, &n))
            return false;
        *all += n;
        if (cJSON_IsNull(bound) || (number(b, "le_us", &le) && le > 1000))
            *slow += n;
    }
    return true;
}

bool status_parse(const char *body, size_t len, unsigned own_port, const char *watch,
                  struct status_snap *s)
{
    memset(s, 0, sizeof *s);
    s->watched_state = -1;
    cJSON *root = cJSON_ParseWithLength(body, len);
    const cJSON *slots = cJSON_GetObjectItemCaseSensitive(root, "slots");
    if (!cJSON_IsArray(slots)) {
        cJSON_Delete(root);
        return false;
    }
    const cJSON *slot;
    cJSON_ArrayForEach(slot, slots)
    {
        const cJSON *st = cJSON_GetObjectItemCaseSensitive(slot, "state");
        unsigned k = SS_OTHER;
        for (unsigned i = 0; cJSON_IsString(st) && i < SS_OTHER; i++)
            if (strcmp(st->valuestring, slot_state_names[i]) == 0)
                k = i;
        s->nslots++;
        const cJSON *rem = cJSON_GetObjectItemCaseSensitive(slot, "remote");
        if (watch && k != SS_FREE && cJSON_IsString(rem) && strcmp(rem->valuestring, watch) == 0)
            s->watched_state = (int)k;
        /* The slot serving this very request is ours, not the load's. */
        if (k != SS_FREE && own_port != 0 && !s->own_seen && remote_port(slot) == own_port) {
            s->own_seen = true;
            continue;
        }
        s->by_state[k]++;
    }
    const cJSON *counters = cJSON_GetObjectItemCaseSensitive(root, "counters");
    s->has_poll_us = number(counters, "longest_poll_us", &s->longest_poll_us);
    s->has_close_us = number(counters, "longest_close_us", &s->longest_close_us);
    s->has_backlog = number(counters, "backlog_now", &s->backlog);
    s->has_rejected = number(counters, "rejected", &s->rejected);
    s->has_closed_timeout = number(counters, "closed_timeout", &s->closed_timeout);
    s->has_uptime = number(root, "uptime_ms", &s->uptime_ms);
    s->has_finish_us = number(root, "longest_upload_finish_us", &s->longest_finish_us);
    s->has_hist = hist_over_1ms(cJSON_GetObjectItemCaseSensitive(root, "poll_hist"), "passes",
                                &s->passes, &s->slow_passes);
    /* slotnet-web's loop turns: {"longest_turn_us": n, "turn_hist": [...]} */
    const cJSON *loop = cJSON_GetObjectItemCaseSensitive(root, "loop");
    s->has_turn_us = number(loop, "longest_turn_us", &s->longest_turn_us);
    s->has_turn_hist = hist_over_1ms(cJSON_GetObjectItemCaseSensitive(loop, "turn_hist"),
                                     "turns", &s->turns, &s->slow_turns);
    /* slotnet-web over the link: its request round trips to slotnetd. */
    const cJSON *link = cJSON_GetObjectItemCaseSensitive(root, "link");
    s->has_link = cJSON_IsObject(link) && number(link, "rtt_p50_us", &s->link_p50_us) &&
                  number(link, "rtt_p99_us", &s->link_p99_us) &&
                  number(link, "rtt_max_us", &s->link_max_us);
    if (s->has_link) {
        number(link, "requests", &s->link_requests);
        number(link, "timeouts", &s->link_timeouts);
    }
    s->valid = true;
    cJSON_Delete(root);
    return true;
}
