/*
 * slotnet-web: a small HTTP/1.1 server on the slotnet core and the POSIX
 * backend (or on slotnetd over the link, net.c), and the RepRapFirmware
 * rr_ API on top of it. One fixed
 * connection record per slot and every table (sessions, uploads, the code
 * queue, the reply buffer) allocated at start; the core's event callback
 * drives everything.
 */
#ifndef SLOTNET_WEB_H
#define SLOTNET_WEB_H

#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#include <http_parser.h>

#include "slotnet.h"
#include "slotnet/backend.h"
#include "slotnet/host.h"

#include "net.h"

/* Per slot: the request must fit in IN_SIZE (headers, and any body we are
 * made to skip); OUT_SIZE holds a response header plus a small body, and is
 * the chunk size when streaming a file in either direction. */
#define IN_SIZE 8192
#define OUT_SIZE 16384
/* The body of an in-memory response starts here in out[]; the header is
 * built afterwards and copied in just before it, so the body never moves. */
#define HDR_ROOM 1024
#define BODY_CAP (OUT_SIZE - HDR_ROOM)

#ifndef PATH_MAX
#define PATH_MAX 4096
#endif
#ifndef NAME_MAX
#define NAME_MAX 255
#endif

/* RRF's numbers: at most 8 sessions, 8 s idle. */
#define MAX_SESSIONS 8
#define DEFAULT_SESSION_TIMEOUT_MS 8000u
/* Uploads streaming at once; one more gets 503. Each holds two descriptors
 * and two names. */
#define MAX_UPLOADS 4
/* Each upload's body goes to its file through this many buffers of its own
 * (allocated at start): the loop fills one, the writer thread (writer.c)
 * writes it. With all of them in flight the loop stops reading that upload. */
#define UPLOAD_BUFS 8
#define UPLOAD_BUF_SIZE (64u * 1024u)
/* Code text waiting to run, and code output waiting to be read. */
#define GCODE_QUEUE 1024
#define REPLY_SIZE 4096

enum phase {
    PH_READ,    /* waiting for (the rest of) a request */
    PH_UPLOAD,  /* a request body is streaming into a file */
    PH_FINISH,  /* the body is in; its upload is being made durable by the
                   worker (finish.c), and the reply waits for it */
    PH_WRITE,   /* a response is going out; input is left unread meanwhile */
    PH_CLOSING, /* sn_close or CLOSE_AFTER issued; only FREED matters now */
};

struct web;

struct conn {
    struct web *web; /* for the parser's callbacks */
    sn_id id; /* SN_ID_NONE when the slot is not ours; compared on every event */
    enum phase phase;
    uint32_t last_active; /* app clock of the last request or response byte */
    uint32_t req_first;   /* app clock of the current request's first byte */
    uint32_t peer_addr;   /* remote IPv4, fetched at the first rr_ request */
    bool peer_known;

    /* Request side. in[0..fed) went through the parser; in[fed..in_len) is
     * the start of a pipelined request (or an upload's body) held back until
     * this one is answered. */
    http_parser parser;
    size_t in_len;
    size_t fed;
    size_t url_off, url_len; /* the request target, inside in[] */
    size_t hf_off, hf_len;   /* the header field being parsed, inside in[] */
    size_t hv_off, hv_len;   /* ...and its value */
    bool in_value;
    bool headers_done;
    bool msg_done;
    bool peer_closed; /* sn_read said SN_ECLOSED or PEER_CLOSED arrived */
    bool resume;      /* had its turn with work left; see web_resume() */
    bool req_close;   /* this request's response ends the connection */
    bool expect_continue;
    bool key_bad;     /* X-Session-Key present but not a number */
    uint32_t key;     /* X-Session-Key, 0 when absent */
    int upload;       /* index in web.uploads while PH_UPLOAD or PH_FINISH, else -1 */

    /* Response side. out[out_off..out_len) is still to be written. */
    size_t out_len, out_off;
    int fd;            /* file being streamed, or -1 */
    uint64_t file_left; /* file bytes not yet read into out[] */
    bool close_after;  /* close once the response is written */

    char in[IN_SIZE];
    char out[OUT_SIZE];
};

struct session {
    bool used;
    uint32_t ip, key; /* key 0: the IP-only session */
    uint32_t last;    /* app clock of its last request */
    uint64_t reply_pos; /* how far into the reply stream it has read */
};

struct upload {
    bool active;
    unsigned conn;      /* index of the connection that feeds it */
    int session;        /* index in web.sessions kept alive by it, or -1 */
    int fd, dirfd;      /* the .part file and the directory holding it */
    char rel[PATH_MAX]; /* target, relative to the storage folder */
    char leaf[NAME_MAX + 1];
    char part[NAME_MAX + 1];
    unsigned dirs_made_from; /* parent levels from here on were created by us */
    unsigned dirs;           /* parent levels in rel */
    uint64_t expected, received, kicked; /* received: bytes taken from the client */
    uint64_t handed;    /* bytes handed to the writer: the next buffer's file offset */
    unsigned free_bufs; /* bit i: buffer i is the loop's and empty */
    int fill;           /* buffer being filled, or -1 */
    size_t fill_len;
    unsigned inflight;  /* buffers with the writer: fd must stay open */
    int werr;           /* first write error, 0: none */
    bool ending;        /* the body is in; checked once no write is in flight */
    bool dropping;      /* failed or abandoned; discarded once no write is in flight */
    bool stalled;       /* its connection stopped reading for want of a buffer */
    uint32_t crc, want_crc;
    bool have_crc, have_time;
    int64_t mtime;
    uint32_t last_data; /* app clock of the last body bytes */
    uint32_t rate_since; /* start of the current rate window */
    uint64_t rate_mark;  /* received at rate_since */
    bool finishing;     /* handed to the worker; fd is its, dirfd only lent */
    bool orphan;        /* ...and its connection went away: no one to answer */
};

/* One upload's durable finish, as the loop hands it to the worker and gets
 * it back (finish.c). Copied in and out of the worker's rings. */
struct finish_job {
    unsigned upload;        /* index in web.uploads, passed back as is */
    int fd;                 /* the .part file: the worker closes it */
    int dirfd;              /* the folder holding it: lent, the loop closes it */
    bool have_time;
    int64_t mtime;
    char part[NAME_MAX + 1];
    char leaf[NAME_MAX + 1];
    int err;                /* result: 0, or the errno of the step that failed */
    uint32_t took_us;       /* result: the worker's time for it */
};

/* A worker thread and its two job rings (jobq.c); the caller fills name,
 * run, size, cap, batch and the ring storage (cap * size bytes each). */
#define JOBQ_MAX_JOB 640
struct jobq {
    const char *name;
    void (*run)(void *job); /* on the worker */
    size_t size;            /* bytes per job, <= JOBQ_MAX_JOB */
    unsigned cap;
    bool batch;             /* SCHED_BATCH: yield the CPU to the loop */
    unsigned char *todo, *done;
    unsigned todo_head, todo_len, done_head, done_len; /* under lock */
    bool stopping;                                     /* under lock */
    pthread_mutex_t lock;
    pthread_cond_t wake;
    pthread_t thread;
    bool running;       /* the loop's own */
    unsigned in_flight; /* submitted, not yet collected: the loop's own */
};
bool jobq_start(struct jobq *q);
bool jobq_submit(struct jobq *q, const void *job);
unsigned jobq_collect(struct jobq *q, void *out, unsigned cap);
void jobq_stop(struct jobq *q); /* runs every submitted job, then joins */

/* One buffer of upload body for the writer (writer.c), and its result. */
struct write_job {
    unsigned upload;   /* index in web.uploads, passed back as is */
    unsigned buf;      /* which of its buffers */
    int fd;            /* the .part file: lent */
    const char *data;  /* the buffer: lent */
    size_t len;
    uint64_t off;      /* file offset of data[0] */
    uint64_t kick_off, kick_len; /* then start write-back of this range (len 0: none) */
    int err;           /* result: 0, or the errno of the failed write */
};

/* The object model's sequence counters: one per top-level key that can
 * change, plus reply and one per volume. */
enum seq {
    SEQ_BOARDS, SEQ_DIRECTORIES, SEQ_FANS, SEQ_GLOBAL, SEQ_HEAT, SEQ_INPUTS, SEQ_JOB,
    SEQ_LEDSTRIPS, SEQ_LIMITS, SEQ_MOVE, SEQ_NETWORK, SEQ_SENSORS, SEQ_SPINDLES, SEQ_STATE,
    SEQ_TOOLS, SEQ_VOLUMES, SEQ_REPLY, SEQ_COUNT
};
#define MODEL_KEYS 16 /* SEQ_BOARDS..SEQ_VOLUMES, in the client's order */

struct web {
    /* In-process: the core and its backend. Link mode (--link): host only,
     * and every call goes through net.c either way. */
    sn_core *core;
    const sn_backend_ops *ops;
    void *be;
    sn_host *host;
    const char *link_target;
    uint32_t link_retry_at;   /* app clock: when a lost link is tried again */
    bool link_stats_valid;    /* the counters were fetched in pass link_stats_pass */
    uint32_t link_stats_pass;
    struct conn *conns;
    unsigned nconns;
    char root[PATH_MAX]; /* realpath of --root, no trailing slash */
    size_t root_len;
    uint32_t now;       /* the loop's clock, refreshed before every sn_poll */
    uint32_t started;   /* clock at start, for uptime_ms */
    uint64_t uptime_ms; /* summed from the clock: never wraps, never falls */
    uint32_t requests;
    uint32_t header_timeout_ms; /* a request's headers must be in this long after its first byte */

    /* Each loop turn's work, from the return of the backend's wait to its
     * next call: what sn_poll's own figures do not see. */
    uint32_t longest_turn_us;
    uint32_t turn_hist[SN_POLL_HIST_BUCKETS]; /* bounds: sn_poll_hist_bound() */

    /* rr_ API */
    int sd_fd;                /* the storage folder (volume 0), O_DIRECTORY */
    char sd[PATH_MAX];        /* its realpath, for messages */
    const char *password;     /* NULL: none, any login is accepted */
    uint32_t session_timeout_ms;
    uint64_t upload_max;
    struct session sessions[MAX_SESSIONS];
    struct upload uploads[MAX_UPLOADS];
    int last_upload_err;      /* GET rr_upload */
    uint32_t uploads_ok, uploads_failed;
    uint64_t upload_bytes;    /* body bytes written into .part files */
    uint32_t longest_finish_us; /* fsync + rename at an upload's end, on the worker */
    char gq[GCODE_QUEUE];     /* queued code lines, each ending in '\n' */
    size_t gq_len;
    char reply[REPLY_SIZE];   /* code output not yet read by everyone */
    size_t reply_len;
    uint64_t reply_base;      /* stream position of reply[0] */
    uint32_t reply_time;
    uint32_t seqs[SEQ_COUNT];
    uint32_t vol_changes;     /* seqs.volChanges[0] */
    char machine_name[64];    /* M550 */
    char display_message[128]; /* M117 */
};

/* http.c */
/* Marks every connection record unused (w->conns and nconns set). */
void web_conns_init(struct web *w);
void web_on_event(sn_core *core, sn_id id, sn_event ev, int info, void *user);
/* Continues connections that stopped after their turn with requests still
 * pending (no event would wake them). True when some still have more, so
 * the loop should not sleep. */
bool web_resume(struct web *w);
/* Once per loop turn: a request past the header deadline gets 408 and its
 * connection closes; then, when others wait for a slot, one idle keep-alive
 * connection (or a slow partial request) is closed to make room. */
void web_tick(struct web *w);
/* Continues c after something outside its events changed it (an upload's
 * finish came back with its reply ready). */
void web_serve(struct web *w, struct conn *c);
/* Closes any file still open and abandons uploads (at shutdown). */
void web_release_files(struct web *w);
/* Starts a response whose body is out[HDR_ROOM..HDR_ROOM+body_len) or the
 * open file c->fd (length bytes). extra is more header lines, each ending
 * in CRLF. HEAD gets the same header, no body. */
void web_respond(struct web *w, struct conn *c, unsigned status, const char *type,
                 const char *extra, uint64_t length, size_t body_len);
/* A short text/plain body naming the status. */
void web_respond_text(struct web *w, struct conn *c, unsigned status, const char *extra);
/* Ends the connection now (RST); for a stream that can no longer be kept. */
void web_conn_terminate(struct web *w, struct conn *c);

/* files.c */
/* Result of mapping a URL path to a file under the root. */
enum file_result { FILE_OK, FILE_NOT_FOUND, FILE_FORBIDDEN, FILE_REDIRECT, FILE_ERROR };
/* path is the URL path (still percent-encoded, starting with '/'). On
 * FILE_OK, *fd is an open regular file of *size bytes and *type its
 * Content-Type. */
enum file_result file_open(const struct web *w, const char *path, size_t path_len, int *fd,
                           uint64_t *size, const char **type);
const char *file_content_type(const char *name);
/* Percent-decodes s[0..len) into out (NUL-terminated; empty on failure). False on a bad
 * escape, an encoded NUL, or no room. */
bool percent_decode(const char *s, size_t len, char *out, size_t cap);

/* json.c: cJSON on a fixed arena, emptied after every document. */
void json_init(void);
/* Forgets every node: the start of a document. */
void json_reset(void);
/* True once an allocation failed since the last reset. */
bool json_exhausted(void);
size_t json_mark(void);
/* Drops everything allocated after mark (only when none of it is linked). */
void json_release(size_t mark);
struct cJSON;
/* Prints item into buf (NUL-terminated) and deletes it; returns the length,
 * or 0 when it did not fit or the arena ran out while it was built. */
size_t json_print(struct cJSON *item, char *buf, size_t len);

/* status.c */
/* Writes the /status JSON into buf; returns its length, or 0 if it did not fit. */
size_t status_json(struct web *w, char *buf, size_t len);

/* rr.c: the RepRapFirmware API. */
/* Sets up the rr_ state once w's options are in. */
void rr_init(struct web *w);
/* True when path names an rr_ endpoint (it then owns the request). */
bool rr_is_rr(const char *path, size_t len);
/* A complete GET/HEAD, or a POST whose headers are in (rr_upload). */
void rr_handle(struct web *w, struct conn *c, const char *path, size_t path_len,
               const char *query, size_t query_len);
/* Runs queued codes and abandons stalled uploads; once per loop turn. */
void rr_tick(struct web *w);
/* {"err":N} */
void rr_respond_err(struct web *w, struct conn *c, int err);
/* A JSON body already in out[HDR_ROOM..HDR_ROOM+len). */
void rr_respond_json(struct web *w, struct conn *c, size_t len);
/* A status with an empty body (503: out of buffers). */
void rr_respond_empty(struct web *w, struct conn *c, unsigned status);
/* Volume 0's content changed: bump seqs.volChanges[0] and seqs.volumes. */
void rr_volume_changed(struct web *w);

/* The query of an rr_ request, and the session it runs in (-1: none). */
struct rr_req {
    const char *query;
    size_t query_len;
    int session;
};
/* Finds key in the query and percent-decodes its value into out; returns
 * the length, -1 when absent, -2 when malformed or longer than cap. */
int rr_arg(const struct rr_req *r, const char *key, char *out, size_t cap);
/* True for "yes" (the client's booleans). */
bool rr_arg_yes(const struct rr_req *r, const char *key);

/* rrfiles.c: the file endpoints on volume 0. */
void rr_download(struct web *w, struct conn *c, const struct rr_req *r);
void rr_filelist(struct web *w, struct conn *c, const struct rr_req *r);
void rr_fileinfo(struct web *w, struct conn *c, const struct rr_req *r);
void rr_delete(struct web *w, struct conn *c, const struct rr_req *r);
void rr_mkdir(struct web *w, struct conn *c, const struct rr_req *r);
void rr_move(struct web *w, struct conn *c, const struct rr_req *r);

/* model.c: the object model for rr_model. */
/* Builds the reply to rr_model into buf; returns its length, or 0 when out
 * of room. */
size_t model_reply(struct web *w, const char *key, const char *flags, char *buf, size_t len);
void model_bump(struct web *w, enum seq s);
/* "YYYY-MM-DDTHH:MM:SS" in local time; false if t cannot be shown. */
bool model_datetime(int64_t t, char *buf, size_t len);

/* vol.c: volume paths confined to the storage folder. */
enum vol_result {
    VOL_OK = 0,
    VOL_BAD = -1,   /* malformed or leaves the folder (.., symlink) */
    VOL_NOVOL = -2, /* a volume other than 0 */
    VOL_NOENT = -3, /* missing, or a parent is not a directory */
    VOL_IO = -4,
};
/* "0:/gcodes/a.g" (decoded) to "gcodes/a.g": no '.', '..' or empty
 * segments; "" is the folder itself. */
#define VOL_DEPTH_MAX 16 /* folders a path may go down */
int vol_parse(const char *in, char *rel, size_t cap);
/* True for names reserved to uploads in flight ("*.part"). */
bool vol_reserved(const char *rel);
/* Opens the directory holding rel's last component and points *leaf at
 * that component (empty for the folder itself). With make, missing parents
 * are created; *made_from (may be NULL) says from which level on. No
 * symlink is followed on the way. */
int vol_open_parent(const struct web *w, const char *rel, int *dirfd, const char **leaf,
                    bool make, unsigned *made_from);
/* Opens rel itself as a directory. */
int vol_open_dir(const struct web *w, const char *rel, int *fd);
/* Parent levels of rel ("a/b/c.g": 2). */
unsigned vol_depth(const char *rel);
/* Removes rel's parent directories from level from on, deepest first,
 * while they are empty (undoing vol_open_parent's make). */
void vol_unmake(const struct web *w, const char *rel, unsigned from);

/* upload.c */
/* Starts streaming c's body (Content-Length bytes, checked by the caller)
 * into rel: on success c is in PH_UPLOAD; otherwise a response has been
 * started. session (or -1) is kept alive by the body's arrival. */
void upload_start(struct web *w, struct conn *c, const char *rel, int session, bool have_crc,
                  uint32_t crc, bool have_time, int64_t mtime);
/* True when c may read up to UPLOAD_BUF_SIZE more body bytes now; false
 * while all its upload's buffers are with the writer (c is served again when
 * one comes back). */
bool upload_ready(struct web *w, struct conn *c);
/* A piece of the body, copied for the writer; false when the upload cannot
 * take it (a write already failed). */
bool upload_body(struct web *w, struct conn *c, const char *data, size_t len);
/* Hands the bytes taken so far to the writer. */
void upload_flush(struct web *w, struct conn *c);
/* The whole body is in: once its writes are done, check it, and hand the
 * durable finish to the worker (c waits in PH_FINISH); a body that fails
 * the check is answered then. */
void upload_finish(struct web *w, struct conn *c);
/* Once per loop turn: written buffers are taken back (stalled uploads
 * read on), and finishes the worker has done are answered (or, with their
 * connection gone, only accounted for). */
void upload_poll(struct web *w);
/* The upload failed while the connection lives on: clean up, {"err":1}
 * (c waits in PH_FINISH while writes are in flight). */
void upload_fail(struct web *w, struct conn *c);
/* Abandons c's upload, if any: temp file and any made parents removed. */
void upload_abort(struct web *w, struct conn *c);
/* Ends uploads whose client sent nothing for the session timeout. */
void upload_tick(struct web *w);
/* True while session index s feeds an upload (it must not expire). */
bool upload_holds_session(const struct web *w, int s);
unsigned upload_active(const struct web *w);

/* finish.c: the worker thread. */
/* Starts it (once, before the loop); false if it could not be made. */
bool finish_start(void);
/* Hands a job over; false only if the worker is not running. */
bool finish_submit(const struct finish_job *j);
/* Takes up to cap finished jobs; cheap (no lock) when none is in flight. */
unsigned finish_collect(struct finish_job *out, unsigned cap);
/* True while a job is with the worker or waits to be collected: the loop
 * must look again soon, since the backend's wait cannot watch the worker. */
bool finish_pending(void);
/* Lets every job submitted complete, then joins the worker (at shutdown). */
void finish_stop(void);

/* writer.c: the thread that writes upload bodies. */
bool writer_start(void);
/* Hands a buffer over; false only if the writer is not running. */
bool writer_submit(const struct write_job *j);
unsigned writer_collect(struct write_job *out, unsigned cap);
/* True while a write is with the writer or waits to be collected. */
bool writer_pending(void);
/* Lets every write submitted complete, then joins the writer. */
void writer_stop(void);

/* A microsecond clock for the app's own figures (wraps in 584 000 years). */
static inline uint64_t web_clock_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

#endif /* SLOTNET_WEB_H */
