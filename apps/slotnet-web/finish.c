/*
 * The durable end of an upload - fsync the file, rename it over the target,
 * fsync the folder - on one worker thread, so that the loop never waits for
 * the disk (that wait was up to ~200 ms for 16 MiB on ext4, a stall of every
 * slot at once).
 *
 * The loop and the worker share only the two rings below, and only under
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

struct ring {
    struct finish_job job[MAX_UPLOADS];
    unsigned head, len;
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wake = PTHREAD_COND_INITIALIZER;
static struct ring todo, done; /* under lock */
static bool stopping;          /* under lock */

/* For the tests only: the worker waits this long before each job, so that
 * the window in which a finish is pending (client gone, SIGINT, a session
 * past its timeout) can be hit every time. Read once, before the thread
 * starts; from the environment, so it shows in no option list. */
static unsigned test_delay_ms;

/* The loop's own: not shared with the worker. */
static pthread_t worker;
static bool running;
static unsigned in_flight; /* submitted and not yet collected */

static bool ring_put(struct ring *r, const struct finish_job *j)
{
    if (r->len == MAX_UPLOADS)
        return false;
    r->job[(r->head + r->len) % MAX_UPLOADS] = *j;
    r->len++;
    return true;
}

static void ring_take(struct ring *r, struct finish_job *j)
{
    *j = r->job[r->head];
    r->head = (r->head + 1) % MAX_UPLOADS;
    r->len--;
}

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

static void *work(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&lock);
    for (;;) {
        while (todo.len == 0 && !stopping)
            pthread_cond_wait(&wake, &lock);
        if (todo.len == 0)
            break; /* stopping, and every job submitted is done */
        struct finish_job j;
        ring_take(&todo, &j);
        pthread_mutex_unlock(&lock);
        run(&j);
        pthread_mutex_lock(&lock);
        /* Cannot fail: a job comes back to the ring it left room in. */
        (void)ring_put(&done, &j);
    }
    pthread_mutex_unlock(&lock);
    return NULL;
}

bool finish_start(void)
{
    const char *delay = getenv("SLOTNET_WEB_TEST_FINISH_DELAY_MS");
    if (delay)
        test_delay_ms = (unsigned)strtoul(delay, NULL, 10) % 60000u;
    /* The worker takes no signals: SIGINT must reach the loop, whose wait
     * it cuts short. The mask is inherited at creation, then restored. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    int rc = pthread_create(&worker, NULL, work, NULL);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) {
        fprintf(stderr, "slotnet-web: cannot start the upload worker: %s\n", strerror(rc));
        return false;
    }
    running = true;
    return true;
}

bool finish_submit(const struct finish_job *j)
{
    if (!running)
        return false;
    pthread_mutex_lock(&lock);
    bool ok = ring_put(&todo, j);
    if (ok)
        pthread_cond_signal(&wake);
    pthread_mutex_unlock(&lock);
    if (ok)
        in_flight++;
    return ok;
}

unsigned finish_collect(struct finish_job *out, unsigned cap)
{
    if (in_flight == 0)
        return 0; /* the usual case: no lock taken */
    unsigned n = 0;
    pthread_mutex_lock(&lock);
    while (n < cap && done.len > 0)
        ring_take(&done, &out[n++]);
    pthread_mutex_unlock(&lock);
    in_flight -= n;
    return n;
}

bool finish_pending(void)
{
    return in_flight > 0;
}

void finish_stop(void)
{
    if (!running)
        return;
    pthread_mutex_lock(&lock);
    stopping = true;
    pthread_cond_signal(&wake);
    pthread_mutex_unlock(&lock);
    /* Every submitted job completes first: nothing is left half-done. */
    pthread_join(worker, NULL);
    running = false;
}
