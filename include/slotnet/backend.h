/*
 * The backend ops table: what a network stack provides to the core.
 *
 * Rules every backend keeps:
 * - No call blocks. Stack callbacks (lwIP's recv/sent/err) only record
 *   flags on the handle; the core reads them from sn_poll().
 * - A handle (void *) stays valid until release(); after close() or
 *   abort() the core calls nothing but release() on it. release() comes
 *   from the core's release queue, never from inside a stack callback.
 * - Results are 0/counts or negative SN_E* codes: errno and err_t are
 *   translated at the backend's edge.
 */
#ifndef SLOTNET_BACKEND_H
#define SLOTNET_BACKEND_H

#include "../slotnet.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Connection flags reported by conn_state(). Level flags stay set; the
 * READABLE and WRITABLE hints may be cleared by the backend once it has
 * seen the buffer empty / full again. */
#define SN_BF_CONNECTED 0x01u /* outgoing connect completed */
#define SN_BF_FAILED 0x02u    /* outgoing connect failed; error says why */
#define SN_BF_READABLE 0x04u  /* data (or EOF) may be waiting */
#define SN_BF_WRITABLE 0x08u  /* send space became available */
#define SN_BF_PEER_FIN 0x10u  /* peer sent FIN; buffered data may remain */
#define SN_BF_RESET 0x20u     /* peer reset or the stack aborted: connection gone */
#define SN_BF_ERROR 0x40u     /* internal error; error says which */

typedef struct sn_bconn_state {
    uint32_t flags;
    int error;
} sn_bconn_state;

struct sn_backend_ops {
    const char *name;

    /* Clocks, for loops and measurement; the core itself never calls now_ms. */
    uint32_t (*now_ms)(void *be);
    uint32_t (*clock_us)(void *be); /* may be NULL */
    /* Wait for I/O or timeout_ms, whichever first (the sim advances time). */
    int (*wait)(void *be, uint32_t timeout_ms);

    /* Listeners. accept() returns 0 with *ch set, SN_EAGAIN when nothing is
     * pending, SN_EMFILE when out of descriptors, or another error. */
    int (*listen)(void *be, const sn_endpoint *local, void **lh);
    void (*unlisten)(void *be, void *lh);
    void (*listen_pause)(void *be, void *lh, bool paused);
    int (*accept)(void *be, void *lh, void **ch, sn_endpoint *local, sn_endpoint *remote);

    /* Start an outgoing connect; completion shows as SN_BF_CONNECTED or
     * SN_BF_FAILED. A synchronous failure returns the error and no handle. */
    int (*connect)(void *be, const sn_endpoint *remote, void **ch, sn_endpoint *local);

    void (*conn_state)(void *be, void *ch, sn_bconn_state *st);

    /* recv: bytes > 0; 0 when nothing is buffered; SN_ECLOSED at end of
     * stream; SN_ECONNRESET or another error. */
    int (*recv)(void *be, void *ch, void *buf, size_t len);
    /* send: bytes accepted (0 when full); SN_EAGAIN and SN_ENOMEM are
     * retryable; push asks to transmit now instead of coalescing. After a
     * short send or SN_EAGAIN the backend raises SN_BF_WRITABLE once it can
     * take more (after SN_ENOMEM the core retries on its own timer). */
    int (*send)(void *be, void *ch, const void *buf, size_t len, bool push);
    /* Bytes not yet handed to the network and not yet acknowledged. */
    int (*tx_queued)(void *be, void *ch, uint32_t *unsent, uint32_t *unacked);
    int (*rx_avail)(void *be, void *ch);
    int (*tx_space)(void *be, void *ch);

    /* close: discard unread input (so no data-losing RST), then FIN.
     * abort: RST now. Neither blocks; the handle lives until release(). */
    void (*close)(void *be, void *ch);
    void (*abort)(void *be, void *ch);
    void (*release)(void *be, void *ch);
};

#ifdef __cplusplus
}
#endif

#endif /* SLOTNET_BACKEND_H */
