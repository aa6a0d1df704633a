/*
 * A small RRF object model for rr_model: enough for Duet Web Control's
 * connector (seqs, state.upTime, job, limits, move.axes) and a UI that has
 * something to show, with no printer behind it. Built on json.c's arena per
 * request; nothing is kept but the counters in struct web.
 *
 * Flags: "f" (live fields only) gives the small tree the client polls every
 * 250 ms; "a<N>" starts an array at element N. Depth ("d"), nulls ("n"),
 * verbose ("v") and obsolete ("o") are accepted and ignored: this model is
 * shallow and always includes its nulls.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "web.h"

/* The client's order of the top-level keys (enum seq follows it). */
static const char *const seq_names[SEQ_COUNT] = {
    "boards", "directories", "fans",  "global",   "heat",     "inputs", "job",
    "ledStrips", "limits",   "move",  "network",  "sensors",  "spindles", "state",
    "tools",  "volumes",     "reply",
};

void model_bump(struct web *w, enum seq s)
{
    w->seqs[s]++;
}

bool model_datetime(int64_t t, char *buf, size_t len)
{
    time_t tt = (time_t)t;
    struct tm tm;
    return localtime_r(&tt, &tm) && strftime(buf, len, "%Y-%m-%dT%H:%M:%S", &tm) > 0;
}

static cJSON *seqs(struct web *w, bool live)
{
    (void)live;
    cJSON *o = cJSON_CreateObject();
    for (int i = 0; i < SEQ_COUNT; i++)
        cJSON_AddNumberToObject(o, seq_names[i], w->seqs[i]);
    cJSON *vc = cJSON_AddArrayToObject(o, "volChanges");
    cJSON_AddItemToArray(vc, cJSON_CreateNumber(w->vol_changes));
    return o;
}

static cJSON *empty_array(struct web *w, bool live)
{
    (void)w;
    (void)live;
    return cJSON_CreateArray();
}

static cJSON *boards(struct web *w, bool live)
{
    (void)w;
    cJSON *a = cJSON_CreateArray();
    cJSON *b = cJSON_CreateObject();
    cJSON_AddItemToArray(a, b);
    if (!live) {
        cJSON_AddStringToObject(b, "firmwareName", "slotnet-web");
        cJSON_AddStringToObject(b, "firmwareVersion", "0.1");
        cJSON_AddStringToObject(b, "name", "slotnet-web (no printer)");
        cJSON_AddStringToObject(b, "shortName", "slotnet");
    }
    cJSON_AddStringToObject(b, "state", "running");
    return a;
}

static cJSON *directories(struct web *w, bool live)
{
    (void)w;
    (void)live;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "filaments", "0:/filaments/");
    cJSON_AddStringToObject(o, "firmware", "0:/firmware/");
    cJSON_AddStringToObject(o, "gCodes", "0:/gcodes/");
    cJSON_AddStringToObject(o, "macros", "0:/macros/");
    cJSON_AddStringToObject(o, "menu", "0:/menu/");
    cJSON_AddStringToObject(o, "system", "0:/sys/");
    cJSON_AddStringToObject(o, "web", "0:/www/");
    return o;
}

static cJSON *global(struct web *w, bool live)
{
    (void)w;
    (void)live;
    return cJSON_CreateObject();
}

static cJSON *heat(struct web *w, bool live)
{
    (void)w;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddArrayToObject(o, "bedHeaters");
    cJSON_AddArrayToObject(o, "chamberHeaters");
    cJSON_AddArrayToObject(o, "heaters");
    if (!live) {
        cJSON_AddNumberToObject(o, "coldExtrudeTemperature", 160);
        cJSON_AddNumberToObject(o, "coldRetractTemperature", 90);
    }
    return o;
}

static cJSON *job(struct web *w, bool live)
{
    (void)w;
    (void)live; /* all of it is live, and small */
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNullToObject(o, "build");
    cJSON_AddNullToObject(o, "duration");
    cJSON *f = cJSON_AddObjectToObject(o, "file");
    cJSON_AddNullToObject(f, "fileName");
    cJSON_AddNumberToObject(f, "size", 0);
    cJSON_AddArrayToObject(f, "filament");
    cJSON_AddArrayToObject(f, "thumbnails");
    cJSON_AddNullToObject(o, "filePosition");
    cJSON_AddNullToObject(o, "lastDuration");
    cJSON_AddNullToObject(o, "lastFileName");
    cJSON_AddNullToObject(o, "layer");
    cJSON_AddNullToObject(o, "layerTime");
    cJSON_AddArrayToObject(o, "layers");
    cJSON_AddNullToObject(o, "pauseDuration");
    cJSON_AddNullToObject(o, "rawExtrusion");
    cJSON *t = cJSON_AddObjectToObject(o, "timesLeft");
    cJSON_AddNullToObject(t, "filament");
    cJSON_AddNullToObject(t, "file");
    cJSON_AddNullToObject(t, "slicer");
    cJSON_AddNullToObject(o, "warmUpDuration");
    return o;
}

static cJSON *limits(struct web *w, bool live)
{
    (void)w;
    (void)live;
    /* No reportedAxes: the client then assumes 9, and our 3 axes are fewer,
     * so it never needs move.axes in pages. */
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "axes", 3);
    cJSON_AddNumberToObject(o, "axesPlusExtruders", 3);
    cJSON_AddNumberToObject(o, "boards", 1);
    cJSON_AddNumberToObject(o, "extruders", 0);
    cJSON_AddNumberToObject(o, "fans", 0);
    cJSON_AddNumberToObject(o, "heaters", 0);
    cJSON_AddNumberToObject(o, "tools", 0);
    cJSON_AddNumberToObject(o, "volumes", 1);
    return o;
}

static cJSON *move(struct web *w, bool live)
{
    (void)w;
    static const char letters[] = "XYZ";
    cJSON *o = cJSON_CreateObject();
    cJSON *axes = cJSON_AddArrayToObject(o, "axes");
    for (int i = 0; letters[i]; i++) {
        cJSON *a = cJSON_CreateObject();
        cJSON_AddItemToArray(axes, a);
        char letter[2] = {letters[i], '\0'};
        cJSON_AddStringToObject(a, "letter", letter);
        cJSON_AddFalseToObject(a, "homed");
        cJSON_AddNumberToObject(a, "machinePosition", 0);
        cJSON_AddNumberToObject(a, "userPosition", 0);
        if (!live) {
            cJSON_AddNumberToObject(a, "min", 0);
            cJSON_AddNumberToObject(a, "max", i == 2 ? 180 : 200);
            cJSON_AddTrueToObject(a, "visible");
        }
    }
    cJSON_AddArrayToObject(o, "extruders");
    if (!live) {
        cJSON *k = cJSON_AddObjectToObject(o, "kinematics");
        cJSON_AddStringToObject(k, "name", "cartesian");
    }
    cJSON *cm = cJSON_AddObjectToObject(o, "currentMove");
    cJSON_AddNumberToObject(cm, "requestedSpeed", 0);
    cJSON_AddNumberToObject(cm, "topSpeed", 0);
    return o;
}

static cJSON *network(struct web *w, bool live)
{
    (void)live;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "name", w->machine_name);
    cJSON_AddStringToObject(o, "hostname", "slotnet");
    cJSON_AddArrayToObject(o, "interfaces");
    return o;
}

static cJSON *sensors(struct web *w, bool live)
{
    (void)w;
    (void)live;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddArrayToObject(o, "analog");
    cJSON_AddArrayToObject(o, "endstops");
    cJSON_AddArrayToObject(o, "filamentMonitors");
    cJSON_AddArrayToObject(o, "gpIn");
    cJSON_AddArrayToObject(o, "probes");
    return o;
}

static cJSON *state(struct web *w, bool live)
{
    char now[32];
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "currentTool", -1);
    cJSON_AddStringToObject(o, "displayMessage", w->display_message);
    cJSON_AddNumberToObject(o, "msUpTime", (double)(w->uptime_ms % 1000));
    cJSON_AddNumberToObject(o, "nextTool", -1);
    cJSON_AddNumberToObject(o, "previousTool", -1);
    cJSON_AddStringToObject(o, "status", "idle");
    if (model_datetime((int64_t)time(NULL), now, sizeof now))
        cJSON_AddStringToObject(o, "time", now);
    else
        cJSON_AddNullToObject(o, "time");
    /* Whole seconds from a 64-bit sum of clock steps: never falls. */
    cJSON_AddNumberToObject(o, "upTime", (double)(w->uptime_ms / 1000));
    if (!live) {
        cJSON_AddStringToObject(o, "logLevel", "off");
        cJSON_AddStringToObject(o, "machineMode", "FFF");
        cJSON_AddArrayToObject(o, "gpOut");
        cJSON_AddArrayToObject(o, "restorePoints");
    }
    return o;
}

static cJSON *volumes(struct web *w, bool live)
{
    cJSON *a = cJSON_CreateArray();
    cJSON *v = cJSON_CreateObject();
    cJSON_AddItemToArray(a, v);
    struct statvfs sv;
    bool known = fstatvfs(w->sd_fd, &sv) == 0;
    if (known) {
        cJSON_AddNumberToObject(v, "freeSpace", (double)sv.f_bavail * (double)sv.f_frsize);
        cJSON_AddNumberToObject(v, "totalSpace", (double)sv.f_blocks * (double)sv.f_frsize);
    }
    cJSON_AddTrueToObject(v, "mounted");
    if (!live) {
        cJSON_AddStringToObject(v, "path", "0:/");
        cJSON_AddStringToObject(v, "name", "storage folder");
    }
    return a;
}

typedef cJSON *(*builder)(struct web *w, bool live);

/* In the order of seq_names; the live tree holds those marked. */
static const struct {
    builder fn;
    bool live;
} builders[MODEL_KEYS] = {
    {boards, false},      {directories, false}, {empty_array, false}, {global, false},
    {heat, false},        {empty_array, false}, {job, true},          {empty_array, false},
    {limits, false},      {move, true},         {network, false},     {sensors, false},
    {empty_array, false}, {state, true},        {empty_array, false}, {volumes, false},
};

static cJSON *build_key(struct web *w, const char *name, size_t len, bool live)
{
    if (len == 4 && memcmp(name, "seqs", 4) == 0)
        return seqs(w, live);
    for (int i = 0; i < MODEL_KEYS; i++)
        if (strlen(seq_names[i]) == len && memcmp(seq_names[i], name, len) == 0)
            return builders[i].fn(w, live);
    return NULL;
}

static cJSON *build_root(struct web *w, bool live)
{
    cJSON *o = cJSON_CreateObject();
    for (int i = 0; i < MODEL_KEYS; i++)
        if (!live || builders[i].live)
            cJSON_AddItemToObject(o, seq_names[i], builders[i].fn(w, live));
    cJSON_AddItemToObject(o, "seqs", seqs(w, live));
    return o;
}

/* Reads "[N]" after a key segment; false if malformed. */
static bool segment_index(const char **p, const char *end, long *idx)
{
    char *stop;
    if (*p >= end || **p != '[')
        return false;
    *idx = strtol(*p + 1, &stop, 10);
    if (stop == *p + 1 || stop >= end || *stop != ']' || *idx < 0)
        return false;
    *p = stop + 1;
    return true;
}

/*
 * Resolves a key such as "state.upTime", "move.axes" or "move.axes[1].letter"
 * to a detached item (NULL when there is no such thing).
 */
static cJSON *select_key(struct web *w, const char *key, bool live)
{
    const char *end = key + strlen(key);
    const char *p = key;
    cJSON *cur = NULL, *parent = NULL;
    while (p < end) {
        const char *seg = p;
        while (p < end && *p != '.' && *p != '[')
            p++;
        size_t len = (size_t)(p - seg);
        if (len == 0)
            return NULL;
        if (!cur) {
            cur = build_key(w, seg, len, live);
            if (!cur && live) /* not a live key: the full one has it */
                cur = build_key(w, seg, len, false);
        } else {
            cJSON *child = NULL;
            parent = cur;
            cJSON_ArrayForEach(child, cur) {
                if (child->string && strlen(child->string) == len &&
                    memcmp(child->string, seg, len) == 0)
                    break;
            }
            cur = child;
        }
        while (cur && p < end && *p == '[') {
            long idx;
            if (!segment_index(&p, end, &idx) || !cJSON_IsArray(cur) || idx > INT32_MAX)
                return NULL;
            parent = cur;
            cur = cJSON_GetArrayItem(cur, (int)idx);
        }
        if (!cur)
            return NULL;
        if (p < end && *p != '.')
            return NULL;
        if (p < end)
            p++;
    }
    /* Unlink it from the tree it came from (the rest is arena garbage). */
    return parent ? cJSON_DetachItemViaPointer(parent, cur) : cur;
}

size_t model_reply(struct web *w, const char *key, const char *flags, char *buf, size_t len)
{
    json_reset();
    bool live = strchr(flags, 'f') != NULL;
    long skip = 0;
    const char *a = strchr(flags, 'a');
    if (a)
        skip = strtol(a + 1, NULL, 10);

    cJSON *result = key[0] ? select_key(w, key, live) : build_root(w, live);
    if (result && cJSON_IsArray(result)) {
        for (long i = 0; i < skip && cJSON_GetArraySize(result) > 0; i++)
            cJSON_DeleteItemFromArray(result, 0);
    }
    cJSON *reply = cJSON_CreateObject();
    cJSON_AddStringToObject(reply, "key", key);
    cJSON_AddStringToObject(reply, "flags", flags);
    cJSON_AddItemToObject(reply, "result", result ? result : cJSON_CreateNull());
    size_t out = json_print(reply, buf, len);
    json_reset();
    return out;
}
