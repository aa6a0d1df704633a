/*
 * A worker thread fed from the loop through two fixed rings (to do, done)
 * under one lock: the loop hands over a job by value and collects it back,
 * never waiting on what the job does. Used for the upload writes and for
 * the upload finish, the two things that wait for the disk.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "web.h"

static bool ring_put(struct jobq *q, unsigned char *ring, unsigned *head, unsigned *len,
                     const void *job)
{
    if (*len == q->cap)
        return false;
    memcpy(ring + ((*head + *len) % q->cap) * q->size, job, q->size);
    (*len)++;
    return true;
}

static void ring_take(struct jobq *q, const unsigned char *ring, unsigned *head, unsigned *len,
                      void *job)
{
    memcpy(job, ring + *head * q->size, q->size);
    *head = (*head + 1) % q->cap;
    (*len)--;
}

static void *work(void *arg)
{
    struct jobq *q = arg;
#ifdef SCHED_BATCH
    if (q->batch) {
        /* No wakeup preemption: sharing a CPU with the loop, the worker runs
         * while the loop waits instead of cutting into its turns. */
        struct sched_param sp = {.sched_priority = 0};
        (void)pthread_setschedparam(pthread_self(), SCHED_BATCH, &sp);
    }
#endif
    unsigned char job[JOBQ_MAX_JOB];
    pthread_mutex_lock(&q->lock);
    for (;;) {
        while (q->todo_len == 0 && !q->stopping)
            pthread_cond_wait(&q->wake, &q->lock);
        if (q->todo_len == 0)
            break; /* stopping, and every job submitted is done */
        ring_take(q, q->todo, &q->todo_head, &q->todo_len, job);
        pthread_mutex_unlock(&q->lock);
        q->run(job);
        pthread_mutex_lock(&q->lock);
        /* Cannot fail: the job comes back to a ring it left room in. */
        (void)ring_put(q, q->done, &q->done_head, &q->done_len, job);
    }
    pthread_mutex_unlock(&q->lock);
    return NULL;
}

bool jobq_start(struct jobq *q)
{
    if (q->size > JOBQ_MAX_JOB || q->cap == 0)
        return false;
    pthread_mutex_init(&q->lock, NULL);
    pthread_cond_init(&q->wake, NULL);
    /* The worker takes no signals: SIGINT must reach the loop, whose wait it
     * cuts short, and a SIGXFSZ from a write past RLIMIT_FSIZE stays pending
     * here while the write says EFBIG. The mask is inherited, then restored. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    int rc = pthread_create(&q->thread, NULL, work, q);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) {
        fprintf(stderr, "slotnet-web: cannot start the %s thread: %s\n", q->name, strerror(rc));
        return false;
    }
    q->running = true;
    return true;
}

bool jobq_submit(struct jobq *q, const void *job)
{
    if (!q->running)
        return false;
    pthread_mutex_lock(&q->lock);
    bool ok = ring_put(q, q->todo, &q->todo_head, &q->todo_len, job);
    if (ok)
        pthread_cond_signal(&q->wake);
    pthread_mutex_unlock(&q->lock);
    if (ok)
        q->in_flight++;
    return ok;
}

unsigned jobq_collect(struct jobq *q, void *out, unsigned cap)
{
    if (q->in_flight == 0)
        return 0; /* the usual case: no lock taken */
    unsigned n = 0;
    pthread_mutex_lock(&q->lock);
    while (n < cap && q->done_len > 0) {
        ring_take(q, q->done, &q->done_head, &q->done_len, (unsigned char *)out + n * q->size);
        n++;
    }
    pthread_mutex_unlock(&q->lock);
    q->in_flight -= n;
    return n;
}

void jobq_stop(struct jobq *q)
{
    if (!q->running)
        return;
    pthread_mutex_lock(&q->lock);
    q->stopping = true;
    pthread_cond_signal(&q->wake);
    pthread_mutex_unlock(&q->lock);
    /* Every submitted job completes first: nothing is left half-done. */
    pthread_join(q->thread, NULL);
    q->running = false;
}
