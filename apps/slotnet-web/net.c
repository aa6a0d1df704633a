/*
 * The dispatch between the in-process core and slotnetd over the link.
 * Every function is one switch: the core and the host library take the
 * same arguments and give the same results, so this file is thin on
 * purpose.
 */
#include <stdio.h>
#include <time.h>

#include "slotnet/host.h"
#include "web.h"

/* A lost link is tried again this often. */
#define REOPEN_MS 1000u

/* The link's loss has been logged and its first reopen scheduled. One web
 * per process, so one flag. */
static bool link_loss_noted;

/* Wherever a call finds the link down first (a poll, or a handler's read or
 * write): say so once, and try to reopen it at the next pass. */
static void link_check(struct web *w)
{
    if (w->host == NULL || link_loss_noted || sn_host_link_up(w->host))
        return;
    link_loss_noted = true;
    w->link_retry_at = web_net_now(w);
    fprintf(stderr, "slotnet-web: link to %s lost; reopening every %u ms\n", w->link_target,
            REOPEN_MS);
}

static void host_event(sn_host *h, sn_id id, sn_event ev, int info, void *user)
{
    (void)h;
    web_on_event(NULL, id, ev, info, user); /* the handler never uses its core */
}

int web_net_open_link(struct web *w, const char *target)
{
    sn_host_config cfg;
    sn_host_config_default(&cfg);
    cfg.on_event = host_event;
    cfg.user = w;
    int err = sn_host_open(&w->host, target, &cfg);
    if (err < 0) {
        w->host = NULL;
        fprintf(stderr, "slotnet-web: link: %s\n", sn_host_open_error());
    }
    link_loss_noted = false;
    return err;
}

bool web_net_is_link(const struct web *w) { return w->host != NULL; }

int web_net_listen(struct web *w, const sn_endpoint *local, uint8_t max_conns, uint32_t idle_ms)
{
    if (w->host)
        return sn_host_listen(w->host, local, 0, max_conns, idle_ms);
    return sn_listen(w->core, local, 0, max_conns, idle_ms);
}

/* A link call's result, after noting a link it found lost. */
static int link_result(struct web *w, int r)
{
    if (r == SN_EIO)
        link_check(w);
    return r;
}

int web_net_read(struct web *w, sn_id id, void *buf, size_t len)
{
    return w->host ? link_result(w, sn_host_read(w->host, id, buf, len))
                   : sn_read(w->core, id, buf, len);
}

int web_net_write(struct web *w, sn_id id, const void *buf, size_t len, unsigned flags)
{
    return w->host ? link_result(w, sn_host_write(w->host, id, buf, len, flags))
                   : sn_write(w->core, id, buf, len, flags);
}

int web_net_close(struct web *w, sn_id id)
{
    return w->host ? link_result(w, sn_host_close(w->host, id)) : sn_close(w->core, id);
}

int web_net_terminate(struct web *w, sn_id id)
{
    return w->host ? link_result(w, sn_host_terminate(w->host, id)) : sn_terminate(w->core, id);
}

sn_id web_net_slot_id(const struct web *w, unsigned index)
{
    return w->host ? sn_host_slot_id(w->host, index) : sn_slot_id(w->core, index);
}

sn_state web_net_slot_state(const struct web *w, unsigned index)
{
    return w->host ? sn_host_slot_state(w->host, index) : sn_slot_state(w->core, index);
}

int web_net_slot_status_get(struct web *w, unsigned index, sn_slot_status *st)
{
    return w->host ? link_result(w, sn_host_slot_status_get(w->host, index, st))
                   : sn_slot_status_get(w->core, index, st);
}

/* The link carries no send-queue figures: SN_EINVAL there, "unknown". */
int web_net_tx_queued(struct web *w, sn_id id, uint32_t *unsent, uint32_t *unacked)
{
    return w->host ? SN_EINVAL : sn_slot_tx_queued(w->core, id, unsent, unacked);
}

unsigned web_net_slot_count(const struct web *w)
{
    return w->host ? sn_host_slot_count(w->host) : sn_slot_count(w->core);
}

const sn_stats *web_net_stats(struct web *w)
{
    if (!w->host)
        return sn_stats_get(w->core);
    /* The pass counter moves once per sn_host_poll: one fetch per pass at
     * most, however many /status and M122 requests the pass answers. On a
     * failed fetch the last counters stand. */
    uint32_t pass = web_net_passes(w);
    if (!w->link_stats_valid || w->link_stats_pass != pass) {
        if (sn_host_stats_fetch(w->host) == 0) {
            w->link_stats_valid = true;
            w->link_stats_pass = pass;
        } else {
            link_check(w);
        }
    }
    return sn_host_stats_get(w->host);
}

uint32_t web_net_backlog_now(const struct web *w)
{
    return w->host ? sn_host_stats_get(w->host)->backlog_now : sn_stats_get(w->core)->backlog_now;
}

uint32_t web_net_passes(const struct web *w)
{
    if (!w->host)
        return sn_stats_get(w->core)->poll_passes;
    sn_host_link_stats ls;
    sn_host_link_stats_get(w->host, &ls);
    return (uint32_t)ls.polls;
}

void web_net_poll(struct web *w, uint32_t now)
{
    if (!w->host) {
        sn_poll(w->core, now);
        return;
    }
    if (!sn_host_link_up(w->host)) {
        if (!link_loss_noted) { /* lost where no call of this file saw it */
            link_check(w);
            w->link_retry_at = now;
        }
        if (!sn_time_reached(now, w->link_retry_at))
            return;
        w->link_retry_at = now + REOPEN_MS;
        if (sn_host_reopen(w->host) < 0)
            return;
        link_loss_noted = false;
        fprintf(stderr, "slotnet-web: link to %s open again\n", w->link_target);
    }
    if (sn_host_poll(w->host, now) < 0)
        link_check(w);
}

uint32_t web_net_next_timeout(const struct web *w, uint32_t now, uint32_t max_ms)
{
    return w->host ? sn_host_next_timeout(w->host, now, max_ms)
                   : sn_next_timeout(w->core, now, max_ms);
}

void web_net_wait(struct web *w, uint32_t ms)
{
    if (!w->host) {
        w->ops->wait(w->be, ms);
        return;
    }
    if (sn_host_wait(w->host, ms) == SN_EIO) {
        link_check(w);
        /* No link to sleep on: sleep, and let the next pass reopen it. */
        uint32_t nap = ms < 100u ? ms : 100u;
        struct timespec ts = {0, (long)nap * 1000000L};
        nanosleep(&ts, NULL);
    }
}

uint32_t web_net_now(const struct web *w)
{
    if (!w->host)
        return w->ops->now_ms(w->be);
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint32_t)((uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u);
}

const char *web_net_backend(const struct web *w)
{
    if (w->host)
        return "link";
    return w->ops->name ? w->ops->name : "";
}

void web_net_shutdown(struct web *w)
{
    if (w->host) {
        sn_host_shutdown(w->host);
        w->host = NULL;
        link_loss_noted = false;
    } else if (w->core) {
        sn_core_shutdown(w->core);
    }
}
