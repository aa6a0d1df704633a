/*
 * The durable end of an upload - fsync the file, rename it over the target,
 * fsync the folder - on one worker thread, so that the loop never waits for
 * the disk (that wait was up to ~200 ms for 16 MiB on ext4, a stall of every
 * slot at once).
 *
 * The loop and the worker share only the two rings of a jobq (jobq.c), under
 * the lock: the loop copies a job in (finish_submit), the worker copies it
 * out, works without the lock, and copies the result into the done ring,
 * which the loop empties once per turn (finish_collect). A job's file
 * descriptor belongs to the worker from submit on (it closes it); the
 * folder's descriptor is only borrowed, and the loop must leave both alone
 * until the job comes back. The rings are fixed: at most one job per upload
 * entry is ever in flight, so they cannot overflow.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "web.h"

/* For the tests only: the worker waits this long before each job, so that
 * the window in which a finish is pending (client gone, SIGINT, a session
 * past its timeout) can be hit every time. Read once, before the thread
 * starts; from the environment, so it shows in no option list. */
static unsigned test_delay_ms;

/* The slow part, in the order that makes a power cut leave either the old
 * target or the whole new file: data and mtime on disk, then the rename,
 * then the folder entry on disk. */
static void run(struct finish_job *j)
{
    if (test_delay_ms > 0) {
        struct timespec d = {.tv_sec = test_delay_ms / 1000,
                             .tv_nsec = (long)(test_delay_ms % 1000) * 1000000L};
        while (nanosleep(&d, &d) != 0 && errno == EINTR)
            continue;
    }
    uint64_t t0 = web_clock_us();
    int err = 0;
    if (j->have_time) {
        struct timespec times[2] = {{.tv_nsec = UTIME_OMIT}, {.tv_sec = (time_t)j->mtime}};
        if (futimens(j->fd, times) != 0)
            err = errno;
    }
    if (err == 0 && fsync(j->fd) != 0)
        err = errno;
    if (close(j->fd) != 0 && err == 0)
        err = errno;
    j->fd = -1;
    /* Same folder descriptor on both sides: the rename cannot leave it, and
     * it replaces a symlink named like the target rather than following it. */
    if (err == 0 && renameat(j->dirfd, j->part, j->dirfd, j->leaf) != 0)
        err = errno;
    if (err == 0)
        (void)fsync(j->dirfd); /* the rename itself; nothing to undo if this fails */
    j->err = err;
    uint64_t took = web_clock_us() - t0;
    j->took_us = took > UINT32_MAX ? UINT32_MAX : (uint32_t)took;
}

static void run_job(void *job) { run(job); }
_Static_assert(sizeof(struct finish_job) <= JOBQ_MAX_JOB, "raise JOBQ_MAX_JOB");

static unsigned char todo[MAX_UPLOADS * sizeof(struct finish_job)];
static unsigned char done[MAX_UPLOADS * sizeof(struct finish_job)];
static struct jobq q = {.name = "upload finish", .run = run_job,
                        .size = sizeof(struct finish_job), .cap = MAX_UPLOADS,
                        .todo = todo, .done = done};

bool finish_start(void)
{
    const char *delay = getenv("SLOTNET_WEB_TEST_FINISH_DELAY_MS");
    if (delay)
        test_delay_ms = (unsigned)strtoul(delay, NULL, 10) % 60000u;
    return jobq_start(&q);
}

bool finish_submit(const struct finish_job *j) { return jobq_submit(&q, j); }

unsigned finish_collect(struct finish_job *out, unsigned cap) { return jobq_collect(&q, out, cap); }

bool finish_pending(void) { return q.in_flight > 0; }

void finish_stop(void) { jobq_stop(&q); }
