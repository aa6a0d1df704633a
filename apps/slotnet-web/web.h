/*
 * slotnet-web: a small HTTP/1.1 server on the slotnet core and the POSIX
 * backend. One fixed connection record per slot, allocated at start; the
 * core's event callback drives everything.
 */
#ifndef SLOTNET_WEB_H
#define SLOTNET_WEB_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <http_parser.h>

#include "slotnet.h"
#include "slotnet/backend.h"

/* Per slot: the request must fit in IN_SIZE (headers, and any body we are
 * made to skip); OUT_SIZE holds a response header plus a small body, and is
 * the chunk size when streaming a file. */
#define IN_SIZE 8192
#define OUT_SIZE 16384

#ifndef PATH_MAX
#define PATH_MAX 4096
#endif

enum phase {
    PH_READ,    /* waiting for (the rest of) a request */
    PH_WRITE,   /* a response is going out; input is left unread meanwhile */
    PH_CLOSING, /* sn_close or CLOSE_AFTER issued; only FREED matters now */
};

struct conn {
    sn_id id; /* SN_ID_NONE when the slot is not ours; compared on every event */
    enum phase phase;
    uint32_t last_active; /* app clock of the last request or response byte */

    /* Request side. in[0..fed) went through the parser; in[fed..in_len) is
     * the start of a pipelined request held back until this one is answered. */
    http_parser parser;
    size_t in_len;
    size_t fed;
    size_t url_off, url_len; /* the request target, inside in[] */
    bool headers_done;
    bool msg_done;
    bool peer_closed; /* sn_read said SN_ECLOSED or PEER_CLOSED arrived */
    bool resume;      /* had its turn with work left; see web_resume() */

    /* Response side. out[out_off..out_len) is still to be written. */
    size_t out_len, out_off;
    int fd;            /* file being streamed, or -1 */
    uint64_t file_left; /* file bytes not yet read into out[] */
    bool close_after;  /* close once the response is written */

    char in[IN_SIZE];
    char out[OUT_SIZE];
};

struct web {
    sn_core *core;
    const sn_backend_ops *ops;
    void *be;
    struct conn *conns;
    unsigned nconns;
    char root[PATH_MAX]; /* realpath of --root, no trailing slash */
    size_t root_len;
    uint32_t now;     /* the loop's clock, refreshed before every sn_poll */
    uint32_t started; /* clock at start, for uptime_ms */
    uint32_t requests;
};

/* http.c */
/* Marks every connection record unused (w->conns and nconns set). */
void web_conns_init(struct web *w);
void web_on_event(sn_core *core, sn_id id, sn_event ev, int info, void *user);
/* Continues connections that stopped after their turn with requests still
 * pending (no event would wake them). True when some still have more, so
 * the loop should not sleep. */
bool web_resume(struct web *w);
/* Closes one idle keep-alive connection when others wait for a slot. */
void web_reuse_idle(struct web *w);
/* Closes any file still open (at shutdown). */
void web_release_files(struct web *w);

/* files.c */
/* Result of mapping a URL path to a file under the root. */
enum file_result { FILE_OK, FILE_NOT_FOUND, FILE_FORBIDDEN, FILE_REDIRECT, FILE_ERROR };
/* path is the URL path (still percent-encoded, starting with '/'). On
 * FILE_OK, *fd is an open regular file of *size bytes and *type its
 * Content-Type. */
enum file_result file_open(const struct web *w, const char *path, size_t path_len, int *fd,
                           uint64_t *size, const char **type);

/* status.c */
void status_init(void);
/* Writes the /status JSON into buf; returns its length, or 0 if it did not fit. */
size_t status_json(struct web *w, char *buf, size_t len);

#endif /* SLOTNET_WEB_H */
