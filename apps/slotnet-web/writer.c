/*
 * Upload body writes on their own thread. A write() into the page cache is
 * usually a memcpy, but while the kernel throttles dirty pages it sleeps for
 * milliseconds; on the loop that stalled every slot at once.
 *
 * A jobq (jobq.c) of its own, apart from finish.c.s, so that a finish.s fsync
 * (up to ~200 ms) never holds up another upload's writes. The loop fills one
 * of its upload's fixed buffers (upload.c) and submits it; the worker writes
 * it at its offset and hands it back with the result. Jobs are copied in and
 * out of two fixed rings under the lock; the buffer and the descriptor stay
 * the loop's, lent until the job comes back. Each buffer is in flight at most
 * once, so the rings (one slot per buffer) cannot overflow.
 */
#define _GNU_SOURCE /* sync_file_range */

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "web.h"

static void run(struct write_job *j)
{
    const char *p = j->data;
    size_t left = j->len;
    uint64_t off = j->off;
    int err = 0;
    while (left > 0) {
        ssize_t n = pwrite(j->fd, p, left, (off_t)off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            err = n < 0 ? errno : EIO; /* ENOSPC, EFBIG, EIO: the upload fails */
            break;
        }
        p += n;
        left -= (size_t)n;
        off += (uint64_t)n;
    }
    /* Start write-back of what is written so far, without waiting for it,
     * so the fsync at the end has little left to do. */
    if (err == 0 && j->kick_len > 0)
        (void)sync_file_range(j->fd, (off_t)j->kick_off, (off_t)j->kick_len,
                              SYNC_FILE_RANGE_WRITE);
    j->err = err;
}

static void run_job(void *job) { run(job); }
_Static_assert(sizeof(struct write_job) <= JOBQ_MAX_JOB, "raise JOBQ_MAX_JOB");

#define RING_CAP (MAX_UPLOADS * UPLOAD_BUFS)
static unsigned char todo[RING_CAP * sizeof(struct write_job)];
static unsigned char done[RING_CAP * sizeof(struct write_job)];
/* SCHED_BATCH: sharing a CPU with the loop, the writer runs while the loop
 * waits; if the loop kept the CPU, the buffers would run out and it would
 * wait, so the writer cannot starve. */
static struct jobq q = {.name = "upload writer", .run = run_job,
                        .size = sizeof(struct write_job), .cap = RING_CAP, .batch = true,
                        .todo = todo, .done = done};

bool writer_start(void) { return jobq_start(&q); }

bool writer_submit(const struct write_job *j) { return jobq_submit(&q, j); }

unsigned writer_collect(struct write_job *out, unsigned cap) { return jobq_collect(&q, out, cap); }

bool writer_pending(void) { return q.in_flight > 0; }

void writer_stop(void) { jobq_stop(&q); }
