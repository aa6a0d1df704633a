/*
 * cJSON on a fixed arena. Browser tabs poll /status and rr_model several
 * times a second, so a reply must not touch the heap: cJSON allocates a node
 * per value, so its hooks point at this arena, which is emptied after every
 * document, and the text is printed straight into the slot's output buffer.
 */
#include <stdalign.h>
#include <stdint.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "web.h"

/* 32 slots x ~10 values x (node + key) is about 30 KiB for /status; the
 * object model is smaller. Twice that for room. */
static alignas(max_align_t) unsigned char arena[64 * 1024];
static size_t arena_used;
static bool arena_out;

static void *arena_alloc(size_t n)
{
    size_t need = (n + (alignof(max_align_t) - 1)) & ~(alignof(max_align_t) - 1);
    if (need < n || need > sizeof arena - arena_used) {
        arena_out = true;
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

void json_init(void)
{
    cJSON_Hooks hooks = {.malloc_fn = arena_alloc, .free_fn = arena_free};
    cJSON_InitHooks(&hooks);
}

void json_reset(void)
{
    arena_used = 0;
    arena_out = false;
}

bool json_exhausted(void)
{
    return arena_out;
}

size_t json_mark(void)
{
    return arena_used;
}

void json_release(size_t mark)
{
    if (mark <= arena_used) {
        arena_used = mark;
        arena_out = false; /* what ran out was given back */
    }
}

size_t json_print(cJSON *item, char *buf, size_t len)
{
    size_t out = 0;
    /* cJSON may guess the size a few bytes short: keep 5 spare, as its
     * documentation asks, so a fit is never a near miss. */
    int cap = len > INT32_MAX ? INT32_MAX : (int)len;
    if (item && !arena_out && len > 5 && cJSON_PrintPreallocated(item, buf, cap - 5, 0))
        out = strlen(buf);
    cJSON_Delete(item);
    return out;
}
