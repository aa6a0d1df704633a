/* Names, error texts and the per-slot report. No I/O: text goes to a buffer. */
#include <stdarg.h>
#include <stdio.h>

#include "core.h"

const char *sn_strerror(int err)
{
    switch (err) {
    case SN_OK:
        return "no error";
#define SN_X_(name, code, text)                                                                    \
    case SN_##name:                                                                                \
        return text;
        SN_ERRNO_MAP(SN_X_)
#undef SN_X_
    default:
        return "unknown error";
    }
}

const char *sn_state_name(sn_state st)
{
    switch (st) {
    case SN_FREE:
        return "free";
    case SN_ALLOCATED:
        return "allocated";
    case SN_CONNECTING:
        return "connecting";
    case SN_CONNECTED:
        return "connected";
    case SN_OTHER_END_CLOSED:
        return "other-end-closed";
    case SN_CLOSE_PENDING:
        return "close-pending";
    case SN_ABORTED:
        return "aborted";
    }
    return "invalid";
}

/* snprintf into a running buffer; keeps counting past the end like snprintf. */
static void put(char *buf, size_t len, size_t *at, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    size_t room = *at < len ? len - *at : 0;
    int n = vsnprintf(room ? buf + *at : NULL, room, fmt, ap);
    va_end(ap);
    if (n > 0)
        *at += (size_t)n;
}

static void put_ep(char *buf, size_t len, size_t *at, const sn_endpoint *ep)
{
    put(buf, len, at, "%u.%u.%u.%u:%u", (unsigned)(ep->addr >> 24), (unsigned)(ep->addr >> 16) & 255u,
        (unsigned)(ep->addr >> 8) & 255u, (unsigned)ep->addr & 255u, (unsigned)ep->port);
}

size_t sn_report(sn_core *core, char *buf, size_t len)
{
    size_t at = 0;
    if (buf && len)
        buf[0] = '\0';
    if (core == NULL)
        return 0;
    for (unsigned i = 0; i < core->cfg.slots; i++) {
        sn_slot_status st;
        sn_slot_status_get(core, i, &st);
        put(buf, len, &at, "slot %u %-16s", i, sn_state_name(st.state));
        if (st.state != SN_FREE) {
            put(buf, len, &at, " proto %u ", (unsigned)st.protocol);
            put_ep(buf, len, &at, &st.local);
            put(buf, len, &at, " <-> ");
            put_ep(buf, len, &at, &st.remote);
            put(buf, len, &at, " rx %u tx %u", (unsigned)st.readable, (unsigned)st.write_space);
            if (st.last_error)
                put(buf, len, &at, " error %s", sn_strerror(st.last_error));
        }
        put(buf, len, &at, "\n");
    }
    const sn_stats *c = &core->stats;
    put(buf, len, &at,
        "accepted %u rejected %u graceful %u peer %u timeout %u reset-by-peer %u idle %u "
        "terminated %u aborted %u connects %u retries %u connect-failures %u releases %u "
        "forced %u emfile %u backlog %u/%u longest-poll %uus longest-close %uus\n",
        c->accepted, c->rejected, c->closed_graceful, c->closed_peer, c->closed_timeout,
        c->reset_by_peer, c->idle_timeouts, c->terminated, c->aborted, c->connects,
        c->connect_retries, c->connect_failures, c->releases, c->releases_forced, c->emfile_events,
        c->backlog_now, c->backlog_peak, c->longest_poll_us, c->longest_close_us);
    if (buf && len)
        buf[at < len ? at : len - 1] = '\0';
    return at;
}
