/*
 * slotnet device: the link protocol's command handler (docs/link-protocol.md),
 * the part of slotnetd that turns request frames into core calls and reply
 * frames. No I/O, no clock, no allocation: the transport (a socket, a serial
 * line, a fuzzer) feeds it the bytes it received and writes out the bytes it
 * produces. Every call does bounded work and none blocks.
 *
 * Strict request/response: once a request's reply is produced, no more input
 * is consumed until the caller has drained that reply (backpressure: a host
 * that reads slowly stalls only its own link, never the core).
 *
 *   sn_dev_feed()       consume received bytes, handle at most one request
 *                       (a resent one gets its reply again: the replay cache)
 *   sn_dev_output()     bytes to send (a reply or the attention byte)
 *   sn_dev_sent()       ...of which n went out
 *   sn_dev_flush_gap()  drop a partial frame idle for SN_LINK_GAP_MS
 *   sn_dev_attention()  after sn_poll(): queue the attention byte if due
 */
#ifndef SLOTNET_DEVICE_H
#define SLOTNET_DEVICE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../slotnet.h"
#include "link.h"

#ifdef __cplusplus
extern "C" {
#endif

/* What the host was last shown of the table: the network-status bitmaps and
 * handles, amended by what later slot replies told it. */
typedef struct sn_dev_view {
    uint16_t in_use, connected, closed, readable, writable, aborted;
    uint8_t epoch; /* network status byte 1, see sn_link_device.epoch */
    uint32_t handle[SN_LINK_SLOTS_MAX];
} sn_dev_view;

typedef struct sn_dev_counters {
    uint64_t requests;       /* good request frames handled */
    uint64_t error_replies;  /* ...answered with a negative response */
    uint64_t version_errors; /* -19 replies */
    uint64_t version_noise;  /* foreign versions found in a rescan: dropped, no reply */
    uint64_t replays;        /* resent requests answered from the replay cache */
    uint64_t yields;         /* sn_dev_feed calls cut short by the rejection budget */
    uint64_t crc_errors;     /* frames dropped: CRC */
    uint64_t oversize;       /* frames dropped: len > 2048 */
    uint64_t truncated;      /* frames dropped: gap */
    uint64_t attention;      /* attention bytes queued */
    uint64_t bytes_in, bytes_out;
} sn_dev_counters;

/* Appends the app's own diagnostics lines (e.g. slotnetd's loop figures) to
 * the report; like snprintf: returns the length it needs. */
typedef size_t (*sn_dev_diag_fn)(char *buf, size_t len, void *user);

/* Rejected candidate frames one sn_dev_feed call examines before it yields
 * (a crafted stream can hold a 2 KiB candidate every few bytes). */
#define SN_DEV_REJECT_BUDGET 16

/* Lives in caller memory; its fields are the handler's own. */
typedef struct sn_link_device {
    sn_core *core;
    unsigned slots;
    sn_link_decoder dec;
    uint32_t last_rx_ms;      /* when input was last consumed (the gap timer) */
    size_t out_len, out_pos;  /* pending output: in out[] (a reply) or aux[] */
    bool out_aux;             /* ...in aux[]: the attention byte or a -19 reply */
    bool events;              /* the core raised an event, or a request changed
                               * part of the view, since the last attention check */
    bool attention_sent;      /* since the last request */
    bool yielded;             /* the last sn_dev_feed stopped on its budget with
                               * buffered candidates left: call again soon */
    uint8_t epoch;            /* network status byte 1: +1 per sn_dev_stop_all */
    /* The replay cache: out[] keeps the last reply to a request, which is sent
     * again, without acting, for the next request when it repeats that one's
     * nonzero seq, command and slot (docs/link-protocol.md, "Sequence numbers"). */
    bool last_valid;
    uint8_t last_seq, last_cmd, last_slot;
    size_t last_len;
    sn_dev_view view;
    sn_dev_counters count;
    uint16_t listen_port[SN_MAX_LISTENERS]; /* listeners the host made; 0 unused */
    uint32_t longest_turn_us; /* the app's longest loop turn, see sn_dev_note_turn */
    sn_dev_diag_fn diag_extra;
    void *diag_user;
    uint8_t out[SN_LINK_FRAME_MAX]; /* the last reply to a request */
    uint8_t aux[SN_LINK_OVERHEAD];  /* the attention byte or a version-error reply */
    uint8_t data[SN_LINK_DATA_MAX]; /* a reply's data, before encoding */
    char report[4096];              /* sn_report for 16 slots needs ~3000 */
} sn_link_device;

/* Binds dev to core. SN_LINK_E_PARAM when the core has more slots than the
 * link serves (SN_LINK_SLOTS_MAX). */
int sn_dev_init(sn_link_device *dev, sn_core *core);

/* A new host (or the old one gone): forgets partial input, pending output,
 * the replay cache and what the host was shown. The core's table and the
 * epoch are untouched. */
void sn_dev_reset(sn_link_device *dev);

/* The host may have changed on a link that stayed up (a quiet serial host
 * timed out): only the replay cache is forgotten, so its next request is
 * carried out even if it repeats the last seq. */
void sn_dev_forget_replay(sn_link_device *dev);

/* Use as the core's sn_config.on_event with user = dev (or call
 * sn_dev_note_event() from your own): any event may change what the host
 * sees, which is all the device needs to know. */
void sn_dev_on_event(sn_core *core, sn_id id, sn_event ev, int info, void *user);
void sn_dev_note_event(sn_link_device *dev);

/*
 * Consumes up to len bytes received from the host and handles at most one
 * complete request (its reply is then in sn_dev_output()). Returns the bytes
 * consumed: fewer than len once a reply is produced, none while output is
 * pending. Call again (len 0 is fine: frames may be buffered) once the
 * output is drained. now_ms times the truncation gap; input after a silence
 * of SN_LINK_GAP_MS starts clean (a version error there is answered).
 *
 * A request with the same nonzero seq, command and slot as the last one
 * answered gets that reply again, byte for byte, and is not carried out.
 * A foreign version is answered with -19 only at a clean position (see
 * sn_link_frame.rescan). After SN_DEV_REJECT_BUDGET rejected candidates the
 * call returns early with dev->yielded set (sn_dev_next_timeout() is then
 * 0): the caller keeps the bytes not consumed and calls again next turn.
 */
size_t sn_dev_feed(sn_link_device *dev, const void *in, size_t len, uint32_t now_ms);

/* Pending output: sets *p and returns its length (0 when none). */
size_t sn_dev_output(const sn_link_device *dev, const uint8_t **p);
/* n bytes of the pending output were sent. */
void sn_dev_sent(sn_link_device *dev, size_t n);

/* True when a request has been produced but not sent, a partial frame is
 * buffered, or the last feed yielded: a request may be in flight. */
bool sn_dev_busy(const sn_link_device *dev);

/* Drops partial frames once no byte has come for SN_LINK_GAP_MS (call it
 * when every received byte has been fed): the first candidate, and those its
 * bytes hold, up to 32 a call (sn_dev_next_timeout() is then 0). Whole
 * frames still buffered are answered first; nothing is dropped while the
 * feed has yielded on its budget. Returns SN_LINK_E_TRUNCATED when one was
 * dropped, else 0. */
int sn_dev_flush_gap(sn_link_device *dev, uint32_t now_ms);

/* Milliseconds until sn_dev_flush_gap() has work (<= max_ms); 0 while the
 * last feed yielded with work left. */
uint32_t sn_dev_next_timeout(const sn_link_device *dev, uint32_t now_ms, uint32_t max_ms);

/* After sn_poll(): queues SN_LINK_ATTENTION when the table differs from what
 * the host was last shown (a bit it did not see set, a handle or the epoch
 * changed), no request is in flight, no output is pending and none was sent
 * since the last request. The check is made after a core event or an
 * answered request. Call it whenever the link is up, also while the app
 * counts the host as gone: a quiet host sleeping on the link must wake.
 * Returns true when it queued one. */
bool sn_dev_attention(sn_link_device *dev);

/* The host is gone for good: every connection is reset and freed
 * (sn_terminate) and every listener the host made is stopped, and the epoch
 * (network status byte 1) goes up by one, so a host that comes back knows to
 * listen again. Returns the connections reset; *listeners (optional) gets
 * the listeners stopped. */
unsigned sn_dev_stop_all(sn_link_device *dev, unsigned *listeners);

void sn_dev_set_diag(sn_link_device *dev, sn_dev_diag_fn fn, void *user);

/* The app's loop turn took us microseconds: the longest is the statistics'
 * last field, so a host can see that the device never stalls. */
void sn_dev_note_turn(sn_link_device *dev, uint32_t us);

#ifdef __cplusplus
}
#endif

#endif /* SLOTNET_DEVICE_H */
