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
    uint32_t handle[SN_LINK_SLOTS_MAX];
} sn_dev_view;

typedef struct sn_dev_counters {
    uint64_t requests;       /* good request frames handled */
    uint64_t error_replies;  /* ...answered with a negative response */
    uint64_t version_errors; /* -19 replies */
    uint64_t crc_errors;     /* frames dropped: CRC */
    uint64_t oversize;       /* frames dropped: len > 2048 */
    uint64_t truncated;      /* frames dropped: gap */
    uint64_t attention;      /* attention bytes queued */
    uint64_t bytes_in, bytes_out;
} sn_dev_counters;

/* Appends the app's own diagnostics lines (e.g. slotnetd's loop figures) to
 * the report; like snprintf: returns the length it needs. */
typedef size_t (*sn_dev_diag_fn)(char *buf, size_t len, void *user);

/* Lives in caller memory; its fields are the handler's own. */
typedef struct sn_link_device {
    sn_core *core;
    unsigned slots;
    sn_link_decoder dec;
    uint32_t last_rx_ms;      /* when input was last consumed (the gap timer) */
    size_t out_len, out_pos;  /* pending output in out[] */
    bool events;              /* the core raised an event since the last check */
    bool attention_sent;      /* since the last request */
    sn_dev_view view;
    sn_dev_counters count;
    uint16_t listen_port[SN_MAX_LISTENERS]; /* listeners the host made; 0 unused */
    uint32_t longest_turn_us; /* the app's longest loop turn, see sn_dev_note_turn */
    sn_dev_diag_fn diag_extra;
    void *diag_user;
    uint8_t out[SN_LINK_FRAME_MAX];
    uint8_t data[SN_LINK_DATA_MAX]; /* a reply's data, before encoding */
    char report[4096];              /* sn_report for 16 slots needs ~3000 */
} sn_link_device;

/* Binds dev to core. SN_LINK_E_PARAM when the core has more slots than the
 * link serves (SN_LINK_SLOTS_MAX). */
int sn_dev_init(sn_link_device *dev, sn_core *core);

/* A new host (or the old one gone): forgets partial input, pending output and
 * what the host was shown. The core's table is untouched. */
void sn_dev_reset(sn_link_device *dev);

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
 * output is drained. now_ms times the truncation gap.
 */
size_t sn_dev_feed(sn_link_device *dev, const void *in, size_t len, uint32_t now_ms);

/* Pending output: sets *p and returns its length (0 when none). */
size_t sn_dev_output(const sn_link_device *dev, const uint8_t **p);
/* n bytes of the pending output were sent. */
void sn_dev_sent(sn_link_device *dev, size_t n);

/* True when a request has been produced but not sent, or a partial frame is
 * buffered: a request is in flight either way. */
bool sn_dev_busy(const sn_link_device *dev);

/* Drops partial frames once no byte has come for SN_LINK_GAP_MS (call it
 * when every received byte has been fed): the first candidate, and those its
 * bytes hold, up to 32 a call (sn_dev_next_timeout() is then 0). Whole
 * frames still buffered are answered first. Returns SN_LINK_E_TRUNCATED when
 * one was dropped, else 0. */
int sn_dev_flush_gap(sn_link_device *dev, uint32_t now_ms);

/* Milliseconds until sn_dev_flush_gap() has work (<= max_ms). */
uint32_t sn_dev_next_timeout(const sn_link_device *dev, uint32_t now_ms, uint32_t max_ms);

/* After sn_poll(): queues SN_LINK_ATTENTION when the table differs from what
 * the host was last shown (a bit it did not see set, or a handle changed),
 * no request is in flight, no output is pending and none was sent since the
 * last request. Returns true when it queued one. */
bool sn_dev_attention(sn_link_device *dev);

/* The host is gone for good: every connection is reset and freed
 * (sn_terminate) and every listener the host made is stopped. Returns the
 * connections reset; *listeners (optional) gets the listeners stopped. */
unsigned sn_dev_stop_all(sn_link_device *dev, unsigned *listeners);

void sn_dev_set_diag(sn_link_device *dev, sn_dev_diag_fn fn, void *user);

/* The app's loop turn took us microseconds: the longest is the statistics'
 * last field, so a host can see that the device never stalls. */
void sn_dev_note_turn(sn_link_device *dev, uint32_t us);

#ifdef __cplusplus
}
#endif

#endif /* SLOTNET_DEVICE_H */
