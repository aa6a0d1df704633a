/*
 * The timing model of one direction, and the frame pool.
 *
 * A frame that arrives at `now` is given its release time at once:
 *
 *   start   = max(now, line_free)          waits for the line (the queue)
 *   line_free = start + len / rate         serialisation at the line rate
 *   release = line_free + delay ± jitter   propagation
 *   release = max(release, last_release)   a link does not reorder
 *
 * so one FIFO per direction is enough, and the bytes waiting for the line
 * are (line_free - now) * rate: the queue limit needs no bookkeeping.
 * Without a rate nothing waits for the line, so a queue limit would do
 * nothing: main.c refuses --queue without --rate. The pool is shared;
 * main.c lets each direction hold half of it at most.
 */
#include <stdlib.h>

#include "link.h"

#define NS_PER_S 1000000000LL
#define NS_PER_MS 1000000LL

int sl_pool_init(struct sl_pool *p, uint32_t frames)
{
    p->slab = calloc(frames, sizeof *p->slab);
    if (!p->slab)
        return -1;
    p->size = frames;
    p->in_use = p->max_in_use = 0;
    p->free = NULL;
    for (uint32_t i = frames; i-- > 0;) {
        p->slab[i].next = p->free;
        p->free = &p->slab[i];
    }
    return 0;
}

void sl_pool_fini(struct sl_pool *p)
{
    free(p->slab);
    p->slab = p->free = NULL;
}

struct sl_frame *sl_pool_get(struct sl_pool *p)
{
    struct sl_frame *f = p->free;
    if (!f)
        return NULL;
    p->free = f->next;
    f->next = NULL;
    if (++p->in_use > p->max_in_use)
        p->max_in_use = p->in_use;
    return f;
}

void sl_pool_put(struct sl_pool *p, struct sl_frame *f)
{
    f->next = p->free;
    p->free = f;
    p->in_use--;
}

uint64_t sl_rand(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

void sl_dir_init(struct sl_dir *d, const struct sl_params *p, uint64_t seed)
{
    *d = (struct sl_dir){ .p = *p, .rng = seed };
    d->line_free_ns = d->last_release_ns = INT64_MIN;
}

bool sl_dir_blackholed(const struct sl_dir *d, int64_t now)
{
    if (d->manual_blackhole)
        return true;
    for (unsigned i = 0; i < d->nwin; i++)
        if (now >= d->win[i].start_ns && (d->win[i].end_ns < 0 || now < d->win[i].end_ns))
            return true;
    return false;
}

int64_t sl_dir_next_window_edge(const struct sl_dir *d, int64_t now)
{
    int64_t next = -1;
    for (unsigned i = 0; i < d->nwin; i++) {
        int64_t e[2] = { d->win[i].start_ns, d->win[i].end_ns };
        for (int k = 0; k < 2; k++)
            if (e[k] > now && (next < 0 || e[k] < next))
                next = e[k];
    }
    return next;
}

static double uniform01(uint64_t *rng) { return (double)(sl_rand(rng) >> 11) * 0x1.0p-53; }

enum sl_verdict sl_dir_admit(struct sl_dir *d, struct sl_frame *f, int64_t now)
{
    struct sl_stats *st = &d->st;
    st->frames_in++;
    st->bytes_in += f->len;
    f->arrive_ns = now;
    if (sl_dir_blackholed(d, now)) {
        st->blackholed++;
        return SL_BLACKHOLED;
    }

    int64_t start = d->line_free_ns > now ? d->line_free_ns : now;
    int64_t line_ns = 0;
    if (d->p.rate) {
        /* Bytes still to serialise, the partly sent frame included. Double:
         * seconds of backlog times a high rate overflows 64 bits in ns. */
        double backlog = (double)(start - now) * (double)d->p.rate / (double)NS_PER_S;
        double want = backlog + (double)f->len;
        if (d->p.queue_bytes && want > (double)d->p.queue_bytes) {
            st->queue_drops++;
            return SL_QUEUE_FULL;
        }
        if (want > (double)st->max_queue_bytes)
            st->max_queue_bytes = (uint32_t)want;
        line_ns = (int64_t)((uint64_t)f->len * (uint64_t)NS_PER_S / d->p.rate);
    }
    d->line_free_ns = start + line_ns;
    if (start - now > st->max_wait_ns)
        st->max_wait_ns = start - now;

    /* Lost after its line time, as a frame corrupted on the air: loss
     * does not free capacity. */
    if (d->p.loss > 0 && uniform01(&d->rng) < d->p.loss) {
        st->lost++;
        return SL_LOST;
    }

    int64_t delay = (int64_t)d->p.delay_ms * NS_PER_MS;
    if (d->p.jitter_ms) {
        uint64_t span = 2u * (uint64_t)d->p.jitter_ms * (uint64_t)NS_PER_MS + 1u;
        delay += (int64_t)(sl_rand(&d->rng) % span) - (int64_t)d->p.jitter_ms * NS_PER_MS;
        if (delay < 0)
            delay = 0;
    }
    int64_t release = d->line_free_ns + delay;
    if (release < d->last_release_ns)
        release = d->last_release_ns; /* jitter never reorders */
    d->last_release_ns = release;
    f->release_ns = release;

    f->next = NULL;
    if (d->tail)
        d->tail->next = f;
    else
        d->head = f;
    d->tail = f;
    d->queued++;
    return SL_QUEUED;
}

struct sl_frame *sl_dir_due(const struct sl_dir *d, int64_t now)
{
    return d->head && d->head->release_ns <= now ? d->head : NULL;
}

struct sl_frame *sl_dir_pop(struct sl_dir *d)
{
    struct sl_frame *f = d->head;
    if (!f)
        return NULL;
    d->head = f->next;
    if (!d->head)
        d->tail = NULL;
    f->next = NULL;
    d->queued--;
    return f;
}
