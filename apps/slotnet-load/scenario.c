/*
 * Scenario files: small JSON documents, parsed with cJSON. Every key is
 * checked against the list the tool knows, so a typo is an error rather
 * than a silently ignored setting (and an expectation that never runs).
 */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "load.h"

const char *const expect_names[E_COUNT] = {
    [E_MAX_FAILED_POLLS] = "max_failed_polls",
    [E_MAX_FAILED_REQUESTS] = "max_failed_requests",
    [E_MAX_FAILED_PCT] = "max_failed_pct",
    [E_MIN_REQUESTS] = "min_requests",
    [E_UPLOAD_CRC] = "upload_crc",
    [E_ALL_SLOTS_FREE] = "all_slots_free_at_end",
    [E_MIN_CONN_PER_S] = "min_conn_per_s",
    [E_MIN_REQ_PER_S] = "min_req_per_s",
    [E_MAX_P99_MS] = "max_p99_ms",
    [E_MAX_LONGEST_POLL_US] = "max_longest_poll_us",
    [E_MIN_UPLOAD_MB_S] = "min_upload_mb_s",
    [E_ALL_CLIENTS_SERVED] = "all_clients_served",
    [E_MAX_SERVED_RATIO] = "max_served_ratio",
    [E_BLACKHOLE_RESET_WITHIN_MS] = "blackhole_reset_within_ms",
    [E_SERVED_DURING_BLACKHOLE] = "served_during_blackhole",
};

static const char *const type_names[] = {
    [G_POLLER] = "poller",
    [G_API] = "api",
    [G_UPLOADER] = "uploader",
    [G_SLOWLORIS] = "slowloris",
    [G_STORM] = "storm",
    [G_BROWSER] = "browser",
    [G_BLACKHOLE] = "blackhole",
};

uint64_t scaled_size(const struct scenario *sc, uint64_t size)
{
    double v = (double)size * sc->scale + 0.5;
    return v < 1 ? 1 : (uint64_t)v;
}

const char *group_type_name(enum group_type t)
{
    return type_names[t];
}

/* Where we are in the file, for messages. */
static const char *cur_file;
static char cur_where[96];

static bool fail(const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, PROG ": %s: %s", cur_file, cur_where);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return false;
}

static bool known_keys(const cJSON *obj, const char *const *keys)
{
    for (const cJSON *it = obj->child; it; it = it->next) {
        bool ok = false;
        for (const char *const *k = keys; *k && !ok; k++)
            ok = strcmp(*k, it->string) == 0;
        if (!ok)
            return fail("unknown key \"%s\"", it->string);
    }
    return true;
}

/* Absent keys leave *out alone (the default). */
static bool get_num(const cJSON *obj, const char *key, double min, double max, double *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!v)
        return true;
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble) || v->valuedouble < min ||
        v->valuedouble > max)
        return fail("\"%s\" must be a number %g..%g", key, min, max);
    *out = v->valuedouble;
    return true;
}

static bool get_u64(const cJSON *obj, const char *key, uint64_t min, uint64_t max, uint64_t *out)
{
    double d = (double)*out;
    if (!get_num(obj, key, (double)min, (double)max, &d))
        return false;
    if (d != floor(d))
        return fail("\"%s\" must be a whole number", key);
    *out = (uint64_t)d;
    return true;
}

static bool get_uint(const cJSON *obj, const char *key, unsigned min, unsigned max, unsigned *out)
{
    uint64_t v = *out;
    if (!get_u64(obj, key, min, max, &v))
        return false;
    *out = (unsigned)v;
    return true;
}

static bool get_bool(const cJSON *obj, const char *key, bool *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!v)
        return true;
    if (!cJSON_IsBool(v))
        return fail("\"%s\" must be true or false", key);
    *out = cJSON_IsTrue(v);
    return true;
}

static bool get_str(const cJSON *obj, const char *key, char *out, size_t len)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!v)
        return true;
    if (!cJSON_IsString(v) || strlen(v->valuestring) >= len)
        return fail("\"%s\" must be a string shorter than %zu", key, len);
    strcpy(out, v->valuestring);
    return true;
}

/* A request target goes into the request line as is: it must start with
 * '/' and hold nothing that would end the line or split it. */
static bool check_path(const char *key, const char *p)
{
    if (p[0] != '/')
        return fail("\"%s\": \"%s\" must start with '/'", key, p);
    for (const char *c = p; *c; c++)
        if ((unsigned char)*c <= ' ' || *c == 0x7f)
            return fail("\"%s\": \"%s\" holds a space or control character "
                        "(percent-encode it)",
                        key, p);
    return true;
}

static bool get_paths(const cJSON *g, struct group_cfg *gc)
{
    const cJSON *one = cJSON_GetObjectItemCaseSensitive(g, "path");
    const cJSON *many = cJSON_GetObjectItemCaseSensitive(g, "paths");
    if (one && many)
        return fail("give \"path\" or \"paths\", not both");
    if (one && cJSON_IsNull(one)) {
        gc->npaths = 0; /* storm: connect only */
        return true;
    }
    if (one) {
        gc->npaths = 1;
        return get_str(g, "path", gc->paths[0], PATH_LEN) && check_path("path", gc->paths[0]);
    }
    if (!many)
        return true;
    if (!cJSON_IsArray(many) || cJSON_GetArraySize(many) < 1 ||
        cJSON_GetArraySize(many) > MAX_PATHS)
        return fail("\"paths\" must be an array of 1..%d strings", MAX_PATHS);
    gc->npaths = 0;
    const cJSON *p;
    cJSON_ArrayForEach(p, many)
    {
        if (!cJSON_IsString(p) || strlen(p->valuestring) >= PATH_LEN)
            return fail("\"paths\" must hold strings shorter than %d", PATH_LEN);
        strcpy(gc->paths[gc->npaths], p->valuestring);
        if (!check_path("paths", gc->paths[gc->npaths]))
            return false;
        gc->npaths++;
    }
    return true;
}

static bool get_session(const cJSON *g, struct group_cfg *gc)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(g, "session");
    if (!v)
        return true;
    if (cJSON_IsBool(v)) {
        gc->session = cJSON_IsTrue(v) ? SESS_KEY : SESS_NONE;
        return true;
    }
    if (cJSON_IsString(v)) {
        if (strcmp(v->valuestring, "none") == 0)
            gc->session = SESS_NONE;
        else if (strcmp(v->valuestring, "ip") == 0)
            gc->session = SESS_IP;
        else if (strcmp(v->valuestring, "key") == 0)
            gc->session = SESS_KEY;
        else
            return fail("\"session\" must be \"none\", \"ip\" or \"key\"");
        return true;
    }
    return fail("\"session\" must be \"none\", \"ip\", \"key\" or a boolean");
}

/* A key naming one of two choices; *out is true for the first. */
static bool get_choice(const cJSON *obj, const char *key, const char *first, const char *second,
                       bool *out)
{
    char v[16] = "";
    if (!get_str(obj, key, v, sizeof v))
        return false;
    if (v[0] == '\0')
        return true;
    if (strcmp(v, first) != 0 && strcmp(v, second) != 0)
        return fail("\"%s\" must be \"%s\" or \"%s\"", key, first, second);
    *out = strcmp(v, first) == 0;
    return true;
}

/* Defaults per type: what that kind of client does unless told otherwise. */
static void group_defaults(struct group_cfg *gc, enum group_type t)
{
    memset(gc, 0, sizeof *gc);
    gc->type = t;
    gc->count = 1;
    gc->timeout_ms = 2500; /* DWC: sessionTimeout / 3 */
    gc->interval_ms = 250; /* DWC polls 250 ms after each reply */
    switch (t) {
    case G_POLLER:
        strcpy(gc->paths[0], "/status");
        gc->npaths = 1;
        gc->close_rst = true; /* browsers reset, as in the seed */
        break;
    case G_API:
        strcpy(gc->paths[0], "/rr_model?flags=d99fn");
        strcpy(gc->paths[1], "/rr_gcode?gcode=M115");
        strcpy(gc->paths[2], "/rr_reply");
        gc->npaths = 3;
        gc->session = SESS_KEY;
        gc->keepalive = true;
        break;
    case G_UPLOADER:
        gc->size = 16u << 20;
        gc->verify_download = true;
        gc->keepalive = true;
        gc->timeout_ms = 10000;
        gc->interval_ms = 0;
        gc->retry_ms = 1000;
        gc->max_retries = 0; /* a refused or reset upload or check is a failure */
        strcpy(gc->upload_name, "0:/gcodes/load-{n}.g");
        break;
    case G_SLOWLORIS:
        gc->trickle_ms = 1000;
        gc->reconnect = true;
        gc->reconnect_ms = 100;
        gc->close_rst = true;
        break;
    case G_STORM:
        strcpy(gc->paths[0], "/status");
        gc->npaths = 1;
        gc->count = 16;
        gc->interval_ms = 1000;
        gc->timeout_ms = 3000;
        gc->close_rst = true;
        break;
    case G_BROWSER:
        gc->npaths = 0;
        gc->keepalive = true;
        gc->parallel = 6; /* browsers' connections per host */
        gc->interval_ms = 0;
        gc->timeout_ms = 30000; /* without progress */
        gc->retry_ms = 1000;
        gc->max_retries = 50;
        break;
    case G_BLACKHOLE:
        strcpy(gc->paths[0], "/blackhole.bin");
        gc->npaths = 1;
        gc->size = 24000;
        gc->connection_close = true;
        gc->close_rst = true;
        gc->silence_after = 1;
        gc->hold_ms = 8000;
        gc->timeout_ms = 10000; /* for the connect and the first bytes */
        gc->interval_ms = 0;
        break;
    }
}

/* "assets": [{"path": "/index.html", "size": 1900}, ...]: the page first. */
static bool get_assets(const cJSON *g, struct group_cfg *gc)
{
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(g, "assets");
    if (!a)
        return gc->type != G_BROWSER || fail("a browser needs \"assets\"");
    if (gc->type != G_BROWSER)
        return fail("\"assets\" is for browser groups");
    if (!cJSON_IsArray(a) || cJSON_GetArraySize(a) < 1 || cJSON_GetArraySize(a) > MAX_ASSETS)
        return fail("\"assets\" must be an array of 1..%d {\"path\", \"size\"}", MAX_ASSETS);
    const cJSON *it;
    cJSON_ArrayForEach(it, a)
    {
        struct asset *as = &gc->assets[gc->nassets];
        static const char *const keys[] = {"path", "size", NULL};
        if (!cJSON_IsObject(it) || !known_keys(it, keys))
            return fail("\"assets\" holds objects {\"path\", \"size\"}");
        const cJSON *p = cJSON_GetObjectItemCaseSensitive(it, "path");
        const cJSON *sz = cJSON_GetObjectItemCaseSensitive(it, "size");
        if (!cJSON_IsString(p) || strlen(p->valuestring) >= ASSET_PATH)
            return fail("an asset's \"path\" must be a string shorter than %d", ASSET_PATH);
        strcpy(as->path, p->valuestring);
        if (!check_path("assets", as->path) || strstr(as->path, "/../") || strchr(as->path, '?'))
            return fail("asset \"%s\": a plain file path, please", as->path);
        if (!cJSON_IsNumber(sz) || sz->valuedouble < 1 || sz->valuedouble > 1e12 ||
            sz->valuedouble != floor(sz->valuedouble))
            return fail("asset \"%s\": \"size\" must be a whole number of bytes >= 1",
                        as->path);
        as->size = (uint64_t)sz->valuedouble;
        gc->nassets++;
    }
    return true;
}

static bool parse_group(const cJSON *g, unsigned idx, struct group_cfg *gc)
{
    static const char *const keys[] = {
        "type", "name", "count", "start_ms", "path", "paths", "session", "keepalive", "close",
        "connection_close", "check_json", "interval_ms", "timeout_ms", "max_requests", "size",
        "uploads", "verify_download", "file", "mode", "trickle_ms", "reconnect",
        "reconnect_ms", "comment", "assets", "parallel", "retry_ms", "max_retries",
        "silence_after", "hold_ms", NULL,
    };
    snprintf(cur_where, sizeof cur_where, "groups[%u]: ", idx);
    if (!cJSON_IsObject(g))
        return fail("must be an object");

    const cJSON *type = cJSON_GetObjectItemCaseSensitive(g, "type");
    if (!cJSON_IsString(type))
        return fail("\"type\" is required: poller, api, uploader, slowloris, storm, browser "
                    "or blackhole");
    enum group_type t = G_POLLER;
    bool found = false;
    for (unsigned i = 0; i < sizeof type_names / sizeof type_names[0]; i++)
        if (strcmp(type->valuestring, type_names[i]) == 0) {
            t = (enum group_type)i;
            found = true;
        }
    if (!found)
        return fail("unknown type \"%s\"", type->valuestring);
    group_defaults(gc, t);
    snprintf(gc->name, sizeof gc->name, "%s%u", type_names[t], idx);

    bool ok = known_keys(g, keys) && get_str(g, "name", gc->name, sizeof gc->name) &&
              get_uint(g, "count", 1, MAX_ACTORS - 1, &gc->count) &&
              get_uint(g, "start_ms", 0, 3600000, &gc->start_ms) && get_paths(g, gc) &&
              get_session(g, gc) && get_bool(g, "keepalive", &gc->keepalive) &&
              get_choice(g, "close", "rst", "fin", &gc->close_rst) &&
              get_bool(g, "connection_close", &gc->connection_close) &&
              get_bool(g, "check_json", &gc->check_json) &&
              get_uint(g, "interval_ms", 0, 3600000, &gc->interval_ms) &&
              get_uint(g, "timeout_ms", 1, 3600000, &gc->timeout_ms) &&
              get_u64(g, "max_requests", 0, 1000000000000ull, &gc->max_requests) &&
              get_u64(g, "size", 0, 1ull << 40, &gc->size) &&
              get_u64(g, "uploads", 0, 1000000000ull, &gc->uploads) &&
              get_bool(g, "verify_download", &gc->verify_download) &&
              get_str(g, "file", gc->upload_name, sizeof gc->upload_name) &&
              get_choice(g, "mode", "trickle", "idle", &gc->trickle) &&
              get_uint(g, "trickle_ms", 1, 3600000, &gc->trickle_ms) &&
              get_bool(g, "reconnect", &gc->reconnect) &&
              get_uint(g, "reconnect_ms", 1, 3600000, &gc->reconnect_ms) && get_assets(g, gc) &&
              get_uint(g, "parallel", 1, 64, &gc->parallel) &&
              get_uint(g, "retry_ms", 0, 3600000, &gc->retry_ms) &&
              get_uint(g, "max_retries", 0, 1000000, &gc->max_retries) &&
              get_u64(g, "silence_after", 1, 1ull << 40, &gc->silence_after) &&
              get_uint(g, "hold_ms", 1, 3600000, &gc->hold_ms);
    if (!ok)
        return false;
    if (t == G_BROWSER && gc->parallel > gc->nassets)
        gc->parallel = gc->nassets; /* no more connections than files */
    if (t == G_BLACKHOLE && gc->silence_after > gc->size)
        return fail("\"silence_after\" must be within the reply's \"size\"");

    if (cJSON_GetObjectItemCaseSensitive(g, "mode") && t != G_SLOWLORIS)
        return fail("\"mode\" is for slowloris groups");
    if ((t == G_POLLER || t == G_API) && gc->npaths == 0)
        return fail("a %s needs a \"path\"", type_names[t]);
    if (t == G_STORM && gc->interval_ms == 0)
        return fail("a storm needs \"interval_ms\" > 0 between bursts");
    if (t == G_UPLOADER) {
        /* The file name is percent-encoded into the query; any byte will do,
         * but keep it printable so the report can show it. */
        for (const char *c = gc->upload_name; *c; c++)
            if ((unsigned char)*c < ' ')
                return fail("\"file\" holds a control character");
        if (!gc->upload_name[0])
            return fail("\"file\" must not be empty");
    }
    return true;
}

static bool parse_expect(const cJSON *e, struct scenario *sc)
{
    snprintf(cur_where, sizeof cur_where, "expect: ");
    if (!cJSON_IsObject(e))
        return fail("must be an object");
    for (const cJSON *it = e->child; it; it = it->next) {
        int id = -1;
        for (int i = 0; i < E_COUNT; i++)
            if (strcmp(it->string, expect_names[i]) == 0)
                id = i;
        if (id < 0) {
            fprintf(stderr, PROG ": %s: expect: unknown expectation \"%s\"; known:", cur_file,
                    it->string);
            for (int i = 0; i < E_COUNT; i++)
                fprintf(stderr, " %s", expect_names[i]);
            fputc('\n', stderr);
            return false;
        }
        bool is_bool = id == E_UPLOAD_CRC || id == E_ALL_SLOTS_FREE ||
                       id == E_ALL_CLIENTS_SERVED || id == E_SERVED_DURING_BLACKHOLE;
        if (is_bool) {
            if (!cJSON_IsBool(it))
                return fail("\"%s\" must be true or false", it->string);
            /* false means "not checked": a scenario cannot ask for a bad CRC. */
            sc->expect[id].set = cJSON_IsTrue(it);
            sc->expect[id].value = 1;
        } else {
            if (!cJSON_IsNumber(it) || !isfinite(it->valuedouble) || it->valuedouble < 0)
                return fail("\"%s\" must be a number >= 0", it->string);
            sc->expect[id].set = true;
            sc->expect[id].value = it->valuedouble;
        }
    }
    return true;
}

static char *read_file(const char *file, size_t *len)
{
    FILE *f = fopen(file, "rb");
    if (!f) {
        fprintf(stderr, PROG ": %s: %s\n", file, strerror(errno));
        return NULL;
    }
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    while (buf) {
        n += fread(buf + n, 1, cap - n, f);
        if (n < cap)
            break;
        if (cap >= (1u << 20)) { /* a scenario is a few hundred bytes */
            fprintf(stderr, PROG ": %s: larger than 1 MiB\n", file);
            free(buf);
            buf = NULL;
            break;
        }
        char *bigger = realloc(buf, cap * 2);
        if (!bigger) {
            free(buf);
            buf = NULL;
            break;
        }
        buf = bigger;
        cap *= 2;
    }
    if (buf && ferror(f)) {
        fprintf(stderr, PROG ": %s: read error\n", file);
        free(buf);
        buf = NULL;
    }
    fclose(f);
    *len = n;
    return buf;
}

bool scenario_load(const char *file, struct scenario *sc)
{
    static const char *const keys[] = {
        "name", "description", "comment", "duration_s", "drain_ms", "final_grace_ms",
        "status_path", "password", "seed", "groups", "expect", "link", "scale",
        "status_interval_ms", "status_timeout_ms", "close_timeout_ms", NULL,
    };
    cur_file = file;
    cur_where[0] = '\0';
    memset(sc, 0, sizeof *sc);
    sc->duration_s = 10;
    sc->drain_ms = 5000;
    sc->final_grace_ms = 3000;
    sc->status_enabled = true;
    strcpy(sc->status_path, "/status");
    sc->seed = 1;
    sc->scale = 1;
    sc->status_interval_ms = 250;
    sc->status_timeout_ms = 1000;
    sc->close_timeout_ms = 2000; /* slotnet-web's default */
    sc->link.mss = 1448;         /* 1500 - 20 IP - 20 TCP - 12 timestamps */
    sc->link.overhead = 66;      /* 14 Ethernet + 20 IP + 32 TCP with timestamps */
    /* The name defaults to the file's base name without .json. */
    const char *base = strrchr(file, '/');
    base = base ? base + 1 : file;
    snprintf(sc->name, sizeof sc->name, "%s", base);
    char *dot = strrchr(sc->name, '.');
    if (dot && strcmp(dot, ".json") == 0)
        *dot = '\0';

    size_t len;
    char *text = read_file(file, &len);
    if (!text)
        return false;
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(text, len, &end, 0);
    if (!root) {
        size_t at = end && end >= text ? (size_t)(end - text) : 0;
        size_t line = 1;
        for (size_t i = 0; i < at && i < len; i++)
            line += text[i] == '\n';
        fprintf(stderr, PROG ": %s: not valid JSON (near line %zu)\n", file, line);
        free(text);
        return false;
    }
    free(text);

    bool ok = cJSON_IsObject(root) || fail("the top level must be an object");
    ok = ok && known_keys(root, keys) && get_str(root, "name", sc->name, sizeof sc->name) &&
         get_num(root, "duration_s", 0.1, 86400, &sc->duration_s) &&
         get_uint(root, "drain_ms", 0, 600000, &sc->drain_ms) &&
         get_uint(root, "final_grace_ms", 0, 600000, &sc->final_grace_ms) &&
         get_str(root, "password", sc->password, sizeof sc->password) &&
         get_u64(root, "seed", 0, 9007199254740991ull, &sc->seed) &&
         get_num(root, "scale", 1e-6, 1e6, &sc->scale) &&
         get_uint(root, "status_interval_ms", 10, 60000, &sc->status_interval_ms) &&
         get_uint(root, "status_timeout_ms", 10, 600000, &sc->status_timeout_ms) &&
         get_uint(root, "close_timeout_ms", 1, 86400000, &sc->close_timeout_ms);
    const cJSON *lk = cJSON_GetObjectItemCaseSensitive(root, "link");
    if (ok && lk) {
        static const char *const lkeys[] = {"rate", "delay_ms", "mss", "overhead", "comment", NULL};
        snprintf(cur_where, sizeof cur_where, "link: ");
        ok = (cJSON_IsObject(lk) || fail("must be an object")) && known_keys(lk, lkeys) &&
             get_num(lk, "rate", 0, 1e12, &sc->link.rate) &&
             get_num(lk, "delay_ms", 0, 600000, &sc->link.delay_ms) &&
             get_uint(lk, "mss", 88, 65535, &sc->link.mss) &&
             get_uint(lk, "overhead", 0, 1000, &sc->link.overhead);
        cur_where[0] = '\0';
    }
    if (ok) {
        const cJSON *sp = cJSON_GetObjectItemCaseSensitive(root, "status_path");
        if (sp && cJSON_IsNull(sp))
            sc->status_enabled = false;
        else
            ok = get_str(root, "status_path", sc->status_path, sizeof sc->status_path) &&
                 check_path("status_path", sc->status_path);
    }
    const cJSON *groups = cJSON_GetObjectItemCaseSensitive(root, "groups");
    if (ok && (!cJSON_IsArray(groups) || cJSON_GetArraySize(groups) < 1 ||
               cJSON_GetArraySize(groups) > MAX_GROUPS))
        ok = fail("\"groups\" must be an array of 1..%d client groups", MAX_GROUPS);
    unsigned actors = 0;
    if (ok) {
        const cJSON *g;
        cJSON_ArrayForEach(g, groups)
        {
            if (!parse_group(g, sc->ngroups, &sc->groups[sc->ngroups])) {
                ok = false;
                break;
            }
            actors += sc->groups[sc->ngroups].count;
            sc->ngroups++;
        }
        cur_where[0] = '\0';
        unsigned bh = 0;
        for (unsigned i = 0; i < sc->ngroups; i++) {
            const struct group_cfg *gc = &sc->groups[i];
            if (gc->type == G_BLACKHOLE)
                bh += gc->count;
            if (gc->type == G_BROWSER) /* a connection each */
                actors += gc->count * (gc->parallel - 1);
        }
        if (ok && bh > 1)
            ok = fail("one blackhole client at most (its slot is watched in /status)");
        if (ok && actors > MAX_ACTORS - 1)
            ok = fail("%u clients in all; at most %d", actors, MAX_ACTORS - 1);
    }
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(root, "expect");
    if (ok && e)
        ok = parse_expect(e, sc);
    cJSON_Delete(root);
    return ok;
}
