/* SPDX-License-Identifier: Apache-2.0 */
/* Shard leases and stored policies in JetStream KV, on a JetStream worker (DESIGN.md §2).
 *
 * A lease is the key shard.<n> in the bucket meshsig_shards (TTL = the lease
 * duration, History 1) whose value is the owner's id. It is taken with
 * create-if-absent (or compare-and-set over a released, empty value); the
 * revision of that write is the shard's epoch. It is renewed with
 * compare-and-set on the last revision, and released by writing an empty
 * value with compare-and-set, so a coordinator can never erase a lease that
 * another took after its own ran out.
 *
 * A renewal whose answer did not come back (a timeout: the write may or may
 * not have happened) is settled by reading the key: our id at a newer
 * revision means one of our renewals from that revision was written (nobody
 * else writes our id), another id at a newer revision means the lease is lost
 * (cluster.c has the argument for keeping a shard on such a late success).
 *
 * KV calls are request/reply and would block the loop: they run on this
 * module's own instance of the JetStream worker (common/jsworker.h says why
 * leases do not share one with offline.c), on its own NATS connection
 * "meshsig-lease". The loop queues jobs; results come back through
 * ms_lease_take after the wake callback. Jobs run in order.
 */
#ifndef MS_LEASE_H
#define MS_LEASE_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "jsworker.h"
#include "natsauth.h"

typedef struct ms_lease ms_lease_t;

typedef struct {
    const char *nats_urls;
    const ms_nats_auth_t *auth; /* NULL: none */
    const char *owner_id;       /* the value written into leases */
    long ttl_ms;                /* the lease duration (bucket TTL) */
    long replicas;              /* JetStream replicas of the buckets; 0 means 1 */
    long shards;                /* shards 0..shards-1 may be claimed (ms_lease_cancel_claim) */
} ms_lease_config_t;

typedef enum {
    MS_LEASE_CLAIM = 0,
    MS_LEASE_RENEW,
    MS_LEASE_RELEASE,
    MS_LEASE_POLICY_PUT,
    MS_LEASE_POLICY,  /* result only: a stored policy, loaded once the bucket is ready */
    MS_LEASE_PUBLISH, /* publish and flush on the worker's connection */
} ms_lease_kind_t;

typedef struct ms_lease_result {
    ms_jsjob_t link;              /* first: the worker hands it back */
    struct ms_lease_result *next; /* the next result ms_lease_take returned */
    ms_lease_kind_t kind;
    uint32_t shard;
    uint64_t gen; /* the caller's generation of the shard, echoed */
    int ok;
    int lost;          /* renew: another coordinator wrote the key since our revision */
    int tried;         /* claim, renew: a KV call was made for it (skipped, withdrawn: not) */
    int answered;      /* claim, renew: KV answered a call of this job (heard), whatever it said */
    uint64_t rev;      /* claim, renew: the revision written */
    uint64_t sent_ms;  /* monotonic time just before the request went out (for a renewal
                        * settled by a read: that of the first try, the write's lower bound) */
    char *owner;       /* failed claim: the current holder, when known */
    char *key, *value; /* policy: namespace and JSON */
} ms_lease_result_t;

/* wake is called from the worker thread when results are ready (thread-safe). */
ms_err_t ms_lease_create(const ms_lease_config_t *cfg, void (*wake)(void *), void *ud,
                         ms_lease_t **out);
/* Runs the jobs still queued (releases at shutdown, each bounded by the KV
 * timeout; once one KV call timed out, the releases queued before it are not sent and
 * their leases run out on their own), then stops the worker. */
void ms_lease_destroy(ms_lease_t *l);
/* Loop thread. Queue a job; the result comes back with the same shard and gen. */
void ms_lease_claim(ms_lease_t *l, uint32_t shard, uint64_t gen);
/* Loop thread. The claim of shard queued last is no longer wanted: if the worker has not begun
 * it, it fails without a KV call. One it began may still succeed (the loop releases it). */
void ms_lease_cancel_claim(ms_lease_t *l, uint32_t shard);
/* since_ms: the sent_ms of the first failed renewal from last_rev (it may have been
 * written after all), 0 when none failed. Renewals wait for ms_lease_flush (or the next other
 * job), which queues them as one batch: the worker sends them all before it awaits the
 * answers. */
void ms_lease_renew(ms_lease_t *l, uint32_t shard, uint64_t gen, uint64_t last_rev,
                    uint64_t since_ms);
void ms_lease_flush(ms_lease_t *l);
void ms_lease_release(ms_lease_t *l, uint32_t shard, uint64_t last_rev);
void ms_lease_policy_put(ms_lease_t *l, const char *ns, const char *json);
/* Publishes through the worker, after every job queued before it (e.g. the
 * "leaving" heartbeat after the releases at shutdown), and flushes. */
void ms_lease_publish(ms_lease_t *l, const char *subject, const void *data, size_t len);
/* Loop thread. Takes every result so far, oldest first; free each with ms_lease_result_free. */
ms_lease_result_t *ms_lease_take(ms_lease_t *l);
void ms_lease_result_free(ms_lease_result_t *r);
/* How long (ms, monotonic now_ms) KV has not answered a call of this lease worker: since the
 * last one that came back, a refused write or a missing key included (the connection and
 * JetStream work); MS_LEASE_NEVER_ANSWERED before the first. Any thread. */
#define MS_LEASE_NEVER_ANSWERED 4294967295u
uint64_t ms_lease_silent_ms(ms_lease_t *l, uint64_t now_ms);
/* KV calls the worker has made (writes, reads, bucket calls; each renewal of a batch is one),
 * answered or not. Any thread. */
uint64_t ms_lease_kv_calls(ms_lease_t *l);
/* How often the lease connection came back after it was lost. Any thread. */
uint64_t ms_lease_reconnects(ms_lease_t *l);
/* The lease connection, if it waits to try reconnecting (a wait growing to 1 s while it stays
 * cut), tries at once: the bus came back, so the servers are there. Any thread. */
void ms_lease_kick(ms_lease_t *l);
/* Whether both buckets are available. */
int ms_lease_ready(ms_lease_t *l);

#endif
