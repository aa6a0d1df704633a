/*
 * The app's one door to the slot table: an in-process core on the POSIX or
 * the lwIP backend (the loop waits through the backend's own wait, which is
 * where lwIP reads its TAP), or slotnetd behind a link (--link, libslotnet-host). Both have
 * the same calls, results and events, so the rest of the app does not know
 * which it runs on.
 */
#ifndef SLOTNET_WEB_NET_H
#define SLOTNET_WEB_NET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "slotnet.h"

struct web;

/* Link mode: opens target and routes events to web_on_event. Prints why on
 * failure and returns the sn_host_open() error. */
int web_net_open_link(struct web *w, const char *target);
bool web_net_is_link(const struct web *w);

int web_net_listen(struct web *w, const sn_endpoint *local, uint8_t max_conns, uint32_t idle_ms);
int web_net_read(struct web *w, sn_id id, void *buf, size_t len);
int web_net_write(struct web *w, sn_id id, const void *buf, size_t len, unsigned flags);
int web_net_close(struct web *w, sn_id id);
int web_net_terminate(struct web *w, sn_id id);
sn_id web_net_slot_id(const struct web *w, unsigned index);
sn_state web_net_slot_state(const struct web *w, unsigned index);
int web_net_slot_status_get(struct web *w, unsigned index, sn_slot_status *st);
int web_net_tx_queued(struct web *w, sn_id id, uint32_t *unsent, uint32_t *unacked);
unsigned web_net_slot_count(const struct web *w);

/* Every counter. Link mode: one statistics request, at most once per loop
 * pass (then the copy from earlier in the pass). */
const sn_stats *web_net_stats(struct web *w);
/* Connections waiting for a slot now; cheap in both modes (link: from the
 * pass's network status). */
uint32_t web_net_backlog_now(const struct web *w);
/* Counts loop passes: the core's poll_passes, or the host's own polls. */
uint32_t web_net_passes(const struct web *w);

/* One pass. Link mode: a lost link is reopened, at most once a second. */
void web_net_poll(struct web *w, uint32_t now);
uint32_t web_net_next_timeout(const struct web *w, uint32_t now, uint32_t max_ms);
void web_net_wait(struct web *w, uint32_t ms);
uint32_t web_net_now(const struct web *w);
/* The backend's name ("posix", "lwip"), or "link". */
const char *web_net_backend(const struct web *w);

/* Resets every connection, stops the listener (as sn_core_shutdown does);
 * link mode also closes the link. */
void web_net_shutdown(struct web *w);

#endif /* SLOTNET_WEB_NET_H */
