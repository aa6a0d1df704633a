/*
 * slotnet compile-time options.
 *
 * Define any of these before including <slotnet.h> (or in a file named by
 * SN_OPT_USER, included first) to override the defaults. Run-time limits
 * (slot count, timeouts, queue sizes) live in sn_config; the values here are
 * upper bounds and the defaults sn_config_default() hands out.
 */
#ifndef SLOTNET_OPT_H
#define SLOTNET_OPT_H

#ifdef SN_OPT_USER
#include SN_OPT_USER
#endif

/* Hard upper bounds: the bitmaps in sn_bitmaps are 32 bits wide. */
#ifndef SN_MAX_SLOTS
#define SN_MAX_SLOTS 32
#endif
#ifndef SN_MAX_LISTENERS
#define SN_MAX_LISTENERS 8
#endif

/* Defaults for sn_config_default(). */
#ifndef SN_DEFAULT_SLOTS
#define SN_DEFAULT_SLOTS 8              /* the seed's MaxConnections */
#endif
#ifndef SN_DEFAULT_CLOSE_TIMEOUT_MS
#define SN_DEFAULT_CLOSE_TIMEOUT_MS 2000 /* the seed's MaxSendWaitTime */
#endif
#ifndef SN_DEFAULT_BACKLOG_MAX
#define SN_DEFAULT_BACKLOG_MAX 8        /* the seed's listen backlog */
#endif
#ifndef SN_DEFAULT_BACKLOG_TIMEOUT_MS
#define SN_DEFAULT_BACKLOG_TIMEOUT_MS 3000
#endif
#ifndef SN_DEFAULT_CONNECT_RETRIES
#define SN_DEFAULT_CONNECT_RETRIES 5    /* painlessMesh: 6 attempts */
#endif
#ifndef SN_DEFAULT_CONNECT_BASE_MS
#define SN_DEFAULT_CONNECT_BASE_MS 1000
#endif
#ifndef SN_DEFAULT_CONNECT_TIMEOUT_MS
#define SN_DEFAULT_CONNECT_TIMEOUT_MS 5000
#endif
#ifndef SN_DEFAULT_PEER_BLOCK_MS
#define SN_DEFAULT_PEER_BLOCK_MS 60000  /* painlessMesh blocks a peer 60 s */
#endif
#ifndef SN_DEFAULT_PEER_BLOCK_ENTRIES
#define SN_DEFAULT_PEER_BLOCK_ENTRIES 8
#endif
#ifndef SN_DEFAULT_RELEASE_DELAY_MS
#define SN_DEFAULT_RELEASE_DELAY_MS 0
#endif
#ifndef SN_DEFAULT_RELEASE_SPACING_MS
#define SN_DEFAULT_RELEASE_SPACING_MS 0
#endif
#ifndef SN_DEFAULT_RELEASE_MAX_PER_POLL
#define SN_DEFAULT_RELEASE_MAX_PER_POLL 8
#endif
#ifndef SN_DEFAULT_RELEASE_QUEUE
#define SN_DEFAULT_RELEASE_QUEUE 32
#endif
#ifndef SN_DEFAULT_ACCEPT_PAUSE_MS
#define SN_DEFAULT_ACCEPT_PAUSE_MS 100  /* after EMFILE; nginx uses 500 */
#endif
#ifndef SN_DEFAULT_DRAIN_POLL_MS
#define SN_DEFAULT_DRAIN_POLL_MS 1      /* poll period while a close drains */
#endif
#ifndef SN_DEFAULT_MAX_ACCEPTS_PER_POLL
#define SN_DEFAULT_MAX_ACCEPTS_PER_POLL 16
#endif

/* Retry policy clamps (painlessMesh's). */
#define SN_CONNECT_RETRIES_MAX 10
#define SN_CONNECT_BASE_MIN_MS 50
#define SN_CONNECT_BASE_MAX_MS 60000

#if SN_MAX_SLOTS < 1 || SN_MAX_SLOTS > 32
#error "SN_MAX_SLOTS must be 1..32 (status bitmaps are 32 bits)"
#endif
#if SN_DEFAULT_SLOTS < 1 || SN_DEFAULT_SLOTS > SN_MAX_SLOTS
#error "SN_DEFAULT_SLOTS must be 1..SN_MAX_SLOTS"
#endif
#if SN_MAX_LISTENERS < 1 || SN_MAX_LISTENERS > 255
#error "SN_MAX_LISTENERS must be 1..255"
#endif
#if SN_DEFAULT_CONNECT_RETRIES > SN_CONNECT_RETRIES_MAX
#error "SN_DEFAULT_CONNECT_RETRIES exceeds SN_CONNECT_RETRIES_MAX"
#endif
#if SN_DEFAULT_CONNECT_BASE_MS < SN_CONNECT_BASE_MIN_MS || SN_DEFAULT_CONNECT_BASE_MS > SN_CONNECT_BASE_MAX_MS
#error "SN_DEFAULT_CONNECT_BASE_MS out of 50..60000"
#endif
#if SN_DEFAULT_RELEASE_QUEUE < 1 || SN_DEFAULT_RELEASE_MAX_PER_POLL < 1
#error "the release queue needs room and must release at least one entry per poll"
#endif

#endif /* SLOTNET_OPT_H */
