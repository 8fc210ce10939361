/* SPDX-License-Identifier: Apache-2.0 */
/* The JetStream worker: a NATS connection and one thread that run blocking JetStream calls in
 * order.
 *
 * JetStream calls (KV, stream publish, stream API) are request/reply. The
 * coordinator's bus connection is read by its libevent loop, so a blocking call
 * made on the loop would wait for a reply only the loop itself can read. A
 * module that needs JetStream (coordinator/lease.c: shard leases and policies in
 * KV; coordinator/offline.c: the stream of stored emits) therefore runs an
 * ms_jsworker: its own connection and JetStream context, and one thread that
 * runs the jobs the loop submits, one at a time, in submission order, and hands
 * results back to the loop with a wake-up.
 *
 * One implementation, one instance per user. Leases and stored emits each get
 * their own worker (thread and connection): a job cannot be interrupted once
 * it runs, and an offline job may block for up to a minute (a store or fetch
 * retrying through a JetStream leader election), while a lease renewal should
 * come back within a third of the lease TTL (400 ms by default) or the shard
 * goes in doubt (coordinator/cluster.c) and stops sending until it does. One thread with priorities
 * would still make a renewal wait for the offline call in progress; two instances of one worker
 * cannot.
 *
 * Jobs and results are the user's structs with an ms_jsjob_t as their first
 * member; the worker only links them. Ownership passes with each call.
 */
#ifndef MS_JSWORKER_H
#define MS_JSWORKER_H

#include <stdint.h>
#include <nats/nats.h>

#include "err.h"
#include "natsauth.h"

typedef struct ms_jsjob {
    struct ms_jsjob *next; /* the worker's link: in the queue, then in a chain of results */
} ms_jsjob_t;

typedef struct ms_jsworker ms_jsworker_t;

typedef struct {
    const char *nats_urls;      /* comma-separated, at most 32 */
    const ms_nats_auth_t *auth; /* NULL: none */
    const char *name;           /* the connection name the server shows (/connz) */
    int reconnect_wait_ms;      /* between reconnect attempts to one server */
    /* > 0: after MS_JSWORKER_RECONNECT_FAST_MS of rounds at reconnect_wait_ms, the wait grows
     * by half at every round of the servers that failed, up to this, each drawn in [wait/2,
     * wait] (ms_jsworker_reconnect_delay), and ms_jsworker_kick ends it; 0: every wait is
     * reconnect_wait_ms. */
    int reconnect_max_ms;
    int js_wait_ms; /* bound on each JetStream call; 0: cnats' default (5 s) */
    /* 1: a publish made while the connection is down fails at once (NATS_INSUFFICIENT_BUFFER)
     * instead of waiting in cnats' reconnect buffer to be sent on reconnecting, seconds later.
     * For writes that must not land late (leases). */
    int no_reconnect_buffer;
    /* Worker thread, once, before the first job (may be NULL). */
    void (*start)(ms_jsworker_t *w, void *ud);
    /* Worker thread: runs job and owns it from here (frees it, or posts it
     * back as a result). stopping: destroy has been called, the job is one that
     * was still queued then; the user decides what must still run. */
    void (*run)(ms_jsworker_t *w, ms_jsjob_t *job, int stopping, void *ud);
    /* Worker thread, once, after the last job: release JetStream handles made on
     * the worker (KV stores, ...) while the connection is still open. May be NULL. */
    void (*finish)(ms_jsworker_t *w, void *ud);
    /* Frees a job, and a result, left over at destroy (may be NULL: free()). */
    void (*free_job)(ms_jsjob_t *job);
    void (*free_result)(ms_jsjob_t *result);
    void *ud; /* for start, run and finish */
    /* Any thread: results are ready. It must be thread-safe. May be NULL. */
    void (*wake)(void *wake_ud);
    void *wake_ud;
} ms_jsworker_config_t;

/* A link cut for this long (a NATS restart, a failover to another node: over by then) is tried
 * again at its reconnect_wait_ms, as cnats would; after it, the wait grows. */
#define MS_JSWORKER_RECONNECT_FAST_MS 2000
/* The wait before reconnect round `attempts` (from 1, the first after the link was lost):
 * base_ms and up to 100 ms of jitter for MS_JSWORKER_RECONNECT_FAST_MS of rounds, then from
 * 2 * base_ms grown by half a round, capped at max_ms, drawn in [wait/2, wait] by rnd so that
 * coordinators cut off together do not come back in step. */
int64_t ms_jsworker_reconnect_delay(int base_ms, int max_ms, int attempts, uint32_t rnd);

/* Connects and starts the thread. The connect blocks until a server accepts
 * it, retrying every reconnect_wait_ms for as long as it takes (refused
 * credentials included): a coordinator does not start without NATS. *out is
 * set before the thread starts, so start() and run() may reach the worker
 * through it. On failure *out is NULL. */
ms_err_t ms_jsworker_create(const ms_jsworker_config_t *cfg, ms_jsworker_t **out);
/* Any thread but the worker's. Runs every job still queued (run sees
 * stopping = 1), then finish, joins the thread, frees the results nobody took
 * and closes the connection. NULL is ignored. */
void ms_jsworker_destroy(ms_jsworker_t *w);
/* The worker's connection and JetStream context, for the worker thread's calls. */
natsConnection *ms_jsworker_conn(ms_jsworker_t *w);
jsCtx *ms_jsworker_js(ms_jsworker_t *w);
/* Any thread: queues job after every job queued before it; the worker owns it. */
void ms_jsworker_submit(ms_jsworker_t *w, ms_jsjob_t *job);
/* Any thread: appends a chain of results (linked by next, NULL-terminated) for
 * the loop, then calls wake once. */
void ms_jsworker_post(ms_jsworker_t *w, ms_jsjob_t *first);
/* Any thread (the loop): every result posted so far, oldest first, linked by
 * next; NULL when there is none. The caller owns them. */
ms_jsjob_t *ms_jsworker_take(ms_jsworker_t *w);
/* Any thread: how often the connection came back after it was lost. */
uint64_t ms_jsworker_reconnects(ms_jsworker_t *w);
/* Any thread: while the connection waits to try reconnecting again (reconnect_max_ms > 0), it
 * tries at once (say, another connection to the same servers is back: they are). */
void ms_jsworker_kick(ms_jsworker_t *w);
/* Whether destroy has been called: long jobs retry less. */
int ms_jsworker_stopping(ms_jsworker_t *w);

#endif
