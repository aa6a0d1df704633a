/*
 * The deferred release queue (painlessMesh's serialized deletion, done
 * generally): backend resources of finished connections are released from
 * sn_poll(), never inside a stack callback, each no sooner than
 * release_delay_ms after it was queued and no sooner than
 * release_spacing_ms after the previous release, at most
 * release_max_per_poll per pass.
 *
 * The spacing is kept between actual releases, not chained through planned
 * ones: a chain of planned times drifts ever further ahead under churn. The
 * queue is a fixed ring; when it is full the oldest entry is released early
 * and counted, because holding slots hostage to the queue would recreate
 * the seed's stall.
 */
#include "core.h"

static void release_head(sn_core *core)
{
    sn_release *r = &core->rq[core->rq_head];
    void *ch = r->ch;
    r->ch = NULL;
    core->rq_head = (uint16_t)((core->rq_head + 1u) % core->cfg.release_queue);
    core->rq_count--;
    core->stats.releases++;
    core->rq_last = core->now;
    core->rq_has_last = true;
    core->be.ops->release(core->be.ctx, ch);
}

void sn__release_enqueue(sn_core *core, void *ch)
{
    if (ch == NULL)
        return;
    if (core->rq_count == core->cfg.release_queue) {
        core->stats.releases_forced++;
        release_head(core);
    }
    unsigned tail = ((unsigned)core->rq_head + core->rq_count) % core->cfg.release_queue;
    core->rq[tail].ch = ch;
    core->rq[tail].due = core->now + core->cfg.release_delay_ms;
    core->rq_count++;
}

uint32_t sn__release_next(const sn_core *core)
{
    uint32_t due = core->rq[core->rq_head].due;
    if (core->rq_has_last) {
        uint32_t spaced = core->rq_last + core->cfg.release_spacing_ms;
        if (sn_time_after(spaced, due))
            due = spaced;
    }
    return due;
}

void sn__release_run(sn_core *core)
{
    unsigned n = 0;
    while (core->rq_count > 0 && n < core->cfg.release_max_per_poll &&
           sn_time_reached(core->now, sn__release_next(core))) {
        release_head(core);
        n++;
    }
    /* Forget a spacing anchor that lies behind us, so a comparison against
     * it can never span more than half the clock. */
    if (core->rq_has_last &&
        sn_time_reached(core->now, core->rq_last + core->cfg.release_spacing_ms) &&
        core->rq_count == 0)
        core->rq_has_last = false;
}

void sn__release_all(sn_core *core)
{
    while (core->rq_count > 0)
        release_head(core);
    core->rq_has_last = false;
}
