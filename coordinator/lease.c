/* SPDX-License-Identifier: Apache-2.0 */
/* Shard leases and stored policies in JetStream KV, on the lease's JetStream worker (lease.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <jansson.h>
#include <nats/nats.h>

#include "clock.h"
#include "jsworker.h"
#include "lease.h"
#include "log.h"
#include "natsmsg.h"

#define SHARD_BUCKET "meshsig_shards"
#define POLICY_BUCKET "meshsig_policies"

typedef struct job {
    ms_jsjob_t link; /* first: the worker queues it */
    ms_lease_kind_t kind;
    uint32_t shard;
    uint64_t gen, rev;
    uint64_t since_ms; /* renew: sent_ms of the first failed try from rev, 0: none */
    char *key, *value; /* policy put: namespace and JSON; publish: subject */
    void *data;
    size_t len;
    struct job *batch_next; /* renew: the next renewal of the same batch */
    uint64_t queued_ms;     /* monotonic time it was handed to the worker */
} job_t;

struct ms_lease {
    ms_lease_config_t cfg;
    char *owner;
    ms_jsworker_t *worker;      /* the KV calls run there, in order; its own connection */
    kvStore *shards, *policies; /* worker thread */
    int ready; /* set by the worker; read by the loop for /readyz: a stale answer is harmless */
    uint64_t next_check_ms; /* worker: when a failed claim may next ask whether the bucket exists */
    long wait_ms;           /* bound on each KV call, and on a batch of renewals */
    job_t *renewals, **renewals_tail; /* loop: renewals queued since the last ms_lease_flush */
    natsSubscription *acks; /* worker: the answers to pipelined renewals, on inbox.<batch>.<i> */
    char inbox[64];
    uint64_t batch; /* worker: the current batch of renewals; answers to older ones are late */
    /* Worker: when a KV call last went unanswered within wait_ms. A claim or a settling read
     * queued before then is not tried: it would most likely wait out its own bound too, and the
     * calls queued behind it with it (one thread, in order), while the loop retries it anyway. */
    uint64_t stalled_ms;
    /* Per shard, 1 + the generation of the claim the loop still wants (0: none); the worker
     * skips a queued claim that was withdrawn (ms_lease_cancel_claim). Written by the loop, read
     * by the worker. */
    uint64_t *want;
    /* Worker: when KV last answered a call (a refusal too), monotonic; 0: never. Read by the
     * loop for its heartbeats (ms_lease_silent_ms). */
    uint64_t answered_ms;
    uint64_t n_heard;        /* worker: calls KV answered; a job's results say whether it moved */
    size_t releases_skipped; /* worker: releases not sent after a KV call timed out */
    /* Worker: KV calls made (each write, read and bucket call; a renewal of a batch is one),
     * answered or not; read by the loop for /metrics (ms_lease_kv_calls). */
    uint64_t kv_calls;
    int down_said; /* worker: the lease connection's outage was logged (say_down) */
};

static void job_free(job_t *j)
{
    /* Bounded: a batch holds one renewal per shard. */
    while (j) {
        job_t *next = j->batch_next;
        free(j->key);
        free(j->value);
        free(j->data);
        free(j);
        j = next;
    }
}

void ms_lease_result_free(ms_lease_result_t *r)
{
    if (!r)
        return;
    free(r->owner);
    free(r->key);
    free(r->value);
    free(r);
}

static void post(ms_lease_t *l, ms_lease_result_t *r)
{
    r->link.next = NULL;
    ms_jsworker_post(l->worker, &r->link);
}

/* Worker: a KV call is about to be made. */
static void kv_call(ms_lease_t *l)
{
    __atomic_add_fetch(&l->kv_calls, 1, __ATOMIC_RELAXED);
}

/* Worker: what a job's result tells the loop of the store (kvretry.h): whether it made a KV call
 * since the counts calls0 and heard0 were taken, and whether KV answered one. */
static void say_heard(ms_lease_t *l, ms_lease_result_t *r, uint64_t calls0, uint64_t heard0)
{
    r->tried = __atomic_load_n(&l->kv_calls, __ATOMIC_RELAXED) != calls0;
    r->answered = l->n_heard != heard0;
}

/* Worker: KV answered a call (the connection and JetStream work, whatever the answer). The rule,
 * the same at every call (answered() below): JetStream sent something back, a success or an
 * error of its own (a refused compare-and-set, a missing key or stream: jerr, or an error body
 * on the renewals' inbox). Not: a call that could not be sent (the connection down), ran out
 * its bound, or found no JetStream to answer ("no responders": no jerr, no body). The buckets'
 * opening, where cnats gives no error code, counts only once both are open (ensure_buckets). */
static void heard(ms_lease_t *l)
{
    __atomic_store_n(&l->answered_ms, ms_clock_mono_ms(), __ATOMIC_RELEASE);
    l->n_heard++;
    l->down_said = 0;
}

/* Worker: s and jerr of a KV call, heard() when JetStream answered it (the rule above). */
static natsStatus answered(ms_lease_t *l, natsStatus s, jsErrCode jerr)
{
    if (s == NATS_OK || jerr)
        heard(l);
    return s;
}

/* Worker: a KV call failed at once because the lease connection is down. cnats keeps no write
 * made meanwhile to send on reconnecting (no_reconnect_buffer in ms_lease_create): a renewal or
 * claim sent seconds late could still succeed, and keep our id on a key we no longer serve for
 * another lease, holding the shard from its owner. The call fails like one that timed out, and
 * the loop retries it as it does then. Logged once an outage (heard() ends it). */
static void say_down(ms_lease_t *l)
{
    if (l->down_said)
        return;
    l->down_said = 1;
    ms_warn("lease connection down: KV calls fail at once until it is back; none is kept to be "
            "sent late");
}

/* s, said once when it is the lease connection's being down (say_down). */
static natsStatus refused(ms_lease_t *l, natsStatus s)
{
    if (s == NATS_INSUFFICIENT_BUFFER || s == NATS_NOT_YET_CONNECTED)
        say_down(l);
    return s;
}

static int link_down(ms_lease_t *l)
{
    if (natsConnection_Status(ms_jsworker_conn(l->worker)) == NATS_CONN_STATUS_CONNECTED)
        return 0;
    say_down(l);
    return 1;
}

/* Keys allow only [-/_=.a-zA-Z0-9]: namespace names are stored hex-encoded. */
static void policy_key(const char *ns, char *out, size_t cap)
{
    size_t o = (size_t)snprintf(out, cap, "ns.");
    for (const unsigned char *p = (const unsigned char *)ns; *p && o + 3 < cap; p++)
        o += (size_t)snprintf(out + o, cap - o, "%02x", *p);
}

static char *policy_name(const char *key)
{
    if (strncmp(key, "ns.", 3))
        return NULL;
    size_t n = strlen(key + 3) / 2;
    char *out = malloc(n + 1);
    if (!out)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        unsigned v = 0;
        if (sscanf(key + 3 + 2 * i, "%2x", &v) != 1) {
            free(out);
            return NULL;
        }
        out[i] = (char)v;
    }
    out[n] = '\0';
    return out;
}

static natsStatus open_bucket(ms_lease_t *l, kvStore **out, const char *name, int64_t ttl_ms)
{
    kvConfig kc;
    kvConfig_Init(&kc);
    kc.Bucket = name;
    kc.History = 1;
    kc.TTL = ttl_ms * 1000000LL; /* nanoseconds in cnats 3.4; 0 keeps values forever */
    /* On file storage, leases too: a lease's revision is its shard's epoch, and
     * the gateways drop batches from an epoch older than one they saw. A bucket
     * in memory was gone after a NATS restart; made again, its revisions began
     * at 1 and every new owner's batches were dropped. And the handle to the
     * vanished bucket made every claim fail until another coordinator started
     * (bucket_gone below). */
    kc.StorageType = js_FileStorage;
    /* With one replica a bucket lives on one NATS node: kill -9 that node and
     * every lease and policy is gone until it returns. */
    kc.Replicas = l->cfg.replicas > 1 ? (int)l->cfg.replicas : 1;
    jsCtx *js = ms_jsworker_js(l->worker);
    kv_call(l);
    natsStatus s = js_CreateKeyValue(out, js, &kc);
    if (s != NATS_OK) { /* exists, maybe with another TTL from another version: bind it */
        ms_debug("create bucket %s: %s (%s)", name, natsStatus_GetText(s), nats_GetLastError(NULL));
        kv_call(l);
        s = js_KeyValue(out, js, name);
    }
    return s;
}

/* Hands every stored policy to the loop, once. */
static void load_policies(ms_lease_t *l)
{
    kvKeysList keys;
    memset(&keys, 0, sizeof(keys));
    if (kvStore_Keys(&keys, l->policies, NULL) != NATS_OK)
        return; /* NATS_NOT_FOUND: none stored */
    for (int i = 0; i < keys.Count; i++) {
        kvEntry *e = NULL;
        if (kvStore_Get(&e, l->policies, keys.Keys[i]) != NATS_OK)
            continue;
        ms_lease_result_t *r = calloc(1, sizeof(*r));
        if (r && (r->key = policy_name(keys.Keys[i])) &&
            (r->value = strdup(kvEntry_ValueString(e)))) {
            r->kind = MS_LEASE_POLICY;
            r->ok = 1;
            post(l, r);
        } else {
            ms_lease_result_free(r);
        }
        kvEntry_Destroy(e);
    }
    kvKeysList_Destroy(&keys);
}

static int ensure_buckets(ms_lease_t *l)
{
    if (l->ready)
        return 1;
    if (link_down(l))
        return 0; /* asked again at the next job, once the connection is back */
    natsStatus s = NATS_OK;
    if (!l->shards && (s = open_bucket(l, &l->shards, SHARD_BUCKET, l->cfg.ttl_ms)) != NATS_OK) {
        ms_warn("lease bucket %s not available yet: %s", SHARD_BUCKET, natsStatus_GetText(s));
        return 0;
    }
    if (!l->policies && (s = open_bucket(l, &l->policies, POLICY_BUCKET, 0)) != NATS_OK) {
        ms_warn("policy bucket %s not available yet: %s", POLICY_BUCKET, natsStatus_GetText(s));
        return 0;
    }
    load_policies(l);
    heard(l);
    __atomic_store_n(&l->ready, 1, __ATOMIC_RELEASE);
    ms_info("lease bucket %s ready (lease %ld ms)", SHARD_BUCKET, l->cfg.ttl_ms);
    return 1;
}

/* A claim failed without an answer from the bucket: when the bucket itself is gone (a NATS node
 * that kept it in memory restarted, or an operator deleted it), the handles are dropped so the
 * next job makes it again. Asked at most once a second. */
static void bucket_gone(ms_lease_t *l)
{
    uint64_t now = ms_clock_mono_ms();
    if (now < l->next_check_ms)
        return;
    l->next_check_ms = now + 1000;
    jsStreamInfo *si = NULL;
    jsErrCode jerr = 0;
    kv_call(l);
    natsStatus s =
        js_GetStreamInfo(&si, ms_jsworker_js(l->worker), "KV_" SHARD_BUCKET, NULL, &jerr);
    answered(l, s, jerr);
    jsStreamInfo_Destroy(si);
    if (s != NATS_NOT_FOUND && jerr != JSStreamNotFoundErr)
        return; /* there, or NATS unreachable: nothing to make again */
    ms_warn("lease bucket %s is gone; making it again", SHARD_BUCKET);
    kvStore_Destroy(l->shards);
    l->shards = NULL;
    __atomic_store_n(&l->ready, 0, __ATOMIC_RELEASE);
}

static void shard_key(uint32_t shard, char *out, size_t cap)
{
    snprintf(out, cap, "shard.%u", shard);
}

/* The subject a shard's key is stored and read under (the bucket's stream). */
static void shard_subject(uint32_t shard, char *out, size_t cap)
{
    char key[32];
    shard_key(shard, key, sizeof(key));
    snprintf(out, cap, "$KV." SHARD_BUCKET ".%s", key);
}

/* A KV call that ran out its bound: the calls queued before now are skipped (stalled_ms). */
static natsStatus noted(ms_lease_t *l, natsStatus s)
{
    if (s == NATS_TIMEOUT)
        l->stalled_ms = ms_clock_mono_ms();
    return refused(l, s);
}

/* Whether a claim or read of a job queued at queued_ms is worth a KV call (stalled_ms). */
static int worth_trying(const ms_lease_t *l, uint64_t queued_ms)
{
    return queued_ms > l->stalled_ms;
}

/* The key's last value and revision, read from the stream's leader. Not kvStore_Get: a KV
 * bucket allows direct gets, which any replica answers (a queue group across the nodes), and
 * a node cut off by a partition stays in that group for its peers until their route to it
 * times out (10-30 s): meanwhile every second or third read went there and waited out the KV
 * bound unanswered, one shard after another on this thread (tests/fault/test_partition.py
 * nats: claims and settling reads queued for 20-45 s after the cut). Only the leader answers
 * this request, and it has every write that was acknowledged. NATS_NOT_FOUND: no value. */
static natsStatus read_key(ms_lease_t *l, uint32_t shard, char **value, int *len, uint64_t *rev)
{
    char subj[64];
    shard_subject(shard, subj, sizeof(subj));
    natsMsg *m = NULL;
    jsErrCode jerr = 0;
    kv_call(l);
    natsStatus s =
        js_GetLastMsg(&m, ms_jsworker_js(l->worker), "KV_" SHARD_BUCKET, subj, NULL, &jerr);
    answered(l, s, jerr);
    if (s != NATS_OK)
        return noted(l, jerr == JSNoMessageFoundErr ? NATS_NOT_FOUND : s);
    *len = natsMsg_GetDataLength(m);
    *rev = natsMsg_GetSequence(m);
    if ((*value = malloc((size_t)*len + 1))) {
        memcpy(*value, natsMsg_GetData(m), (size_t)*len);
        (*value)[*len] = '\0';
    } else {
        s = NATS_NO_MEMORY;
    }
    natsMsg_Destroy(m);
    return s;
}

/* The key written with value, only if it has no value (expect_rev 0) or its last revision is
 * expect_rev (compare-and-set). Not kvStore_Create: on a refusal it reads the key (a direct
 * get, read_key says why not) to see whether the last entry is a delete marker, which this
 * bucket never has (a lease is released with an empty value, and one that ran out is gone). */
static natsStatus write_key(ms_lease_t *l, uint32_t shard, const char *value, int len,
                            uint64_t expect_rev, uint64_t *rev)
{
    char subj[64];
    shard_subject(shard, subj, sizeof(subj));
    jsPubOptions po;
    jsPubOptions_Init(&po);
    po.MaxWait = l->wait_ms;
    if (expect_rev)
        po.ExpectLastSubjectSeq = expect_rev;
    else
        po.ExpectNoMessage = true;
    jsPubAck *ack = NULL;
    jsErrCode jerr = 0;
    kv_call(l);
    /* Written, or refused by the stream (another holds the key): both answers. */
    natsStatus s = js_Publish(&ack, ms_jsworker_js(l->worker), subj, value, len, &po, &jerr);
    answered(l, s, jerr);
    if (s == NATS_OK)
        *rev = ack->Sequence;
    jsPubAck_Destroy(ack);
    return noted(l, s);
}

static void do_claim(ms_lease_t *l, job_t *j, ms_lease_result_t *r)
{
    int len = (int)strlen(l->owner);
    r->sent_ms = ms_clock_mono_ms();
    natsStatus s = write_key(l, j->shard, l->owner, len, 0, &r->rev);
    ms_debug("claim of shard %u: create %s in %llu ms (%llu ms queued)", j->shard,
             natsStatus_GetText(s), (unsigned long long)(ms_clock_mono_ms() - r->sent_ms),
             (unsigned long long)(r->sent_ms - j->queued_ms));
    if (s == NATS_OK) {
        r->ok = 1;
        return;
    }
    if (s == NATS_TIMEOUT)
        return; /* maybe written: the next claim finds our id and takes it back */
    /* Taken, or released (empty value): a released lease is taken over with
     * compare-and-set, so two claimers cannot both win it. */
    char *v = NULL;
    int vlen = 0;
    uint64_t last = 0, t = ms_clock_mono_ms();
    s = read_key(l, j->shard, &v, &vlen, &last);
    ms_debug("claim of shard %u: read %s in %llu ms: '%s' revision %llu", j->shard,
             natsStatus_GetText(s), (unsigned long long)(ms_clock_mono_ms() - t), v ? v : "",
             (unsigned long long)last);
    if (s != NATS_OK) {
        if (s != NATS_TIMEOUT)
            bucket_gone(l);
        free(v);
        return;
    }
    /* Our own id: a lease this coordinator let go without releasing it (NATS was gone past
     * its deadline) and nobody took since. Only this coordinator writes its id, and it serves
     * the shard no longer, so the compare-and-set takes it back as a fresh claim instead of
     * waiting for the key to run out. */
    if (vlen == 0 || (vlen == len && !memcmp(v, l->owner, (size_t)len))) {
        r->sent_ms = ms_clock_mono_ms();
        s = write_key(l, j->shard, l->owner, len, last, &r->rev);
        ms_debug("claim of shard %u: update from %llu %s in %llu ms", j->shard,
                 (unsigned long long)last, natsStatus_GetText(s),
                 (unsigned long long)(ms_clock_mono_ms() - r->sent_ms));
        if (s == NATS_OK)
            r->ok = 1;
        free(v);
    } else {
        r->owner = v;
    }
}

/* A renewal that was refused or not answered (s): this write, or an earlier try from j->rev
 * that timed out, may have landed. The key says which. Only this coordinator writes its own
 * id, and only from j->rev while it holds the shard (claims of other shards are other keys),
 * so our id at a newer revision is one of those renewals; it was written after the first of
 * them was sent. Another id at a newer revision was a claim: the lease is gone. A read may
 * come from a leader that lags (one deposed by a partition that has not noticed yet), so an
 * older or missing entry settles nothing. Not read when a KV call timed out since the renewal
 * was queued (stalled_ms): it stays failed, and the loop renews again. */
static void settle_renewal(ms_lease_t *l, job_t *j, ms_lease_result_t *r, const char *why)
{
    uint64_t first = j->since_ms && j->since_ms < r->sent_ms ? j->since_ms : r->sent_ms;
    if (!worth_trying(l, j->queued_ms)) {
        ms_debug("renewal of shard %u %s; not read (a KV call timed out since)", j->shard, why);
        return; /* failed: the loop renews again, and the shard's deadline still holds */
    }
    char *v = NULL;
    int vlen = 0;
    uint64_t rev = 0, t = ms_clock_mono_ms();
    natsStatus s = read_key(l, j->shard, &v, &vlen, &rev);
    ms_debug("renewal of shard %u %s; read %s in %llu ms", j->shard, why, natsStatus_GetText(s),
             (unsigned long long)(ms_clock_mono_ms() - t));
    if (s != NATS_OK) {
        free(v);
        return;
    }
    if (rev > j->rev) {
        if (vlen == (int)strlen(l->owner) && !memcmp(v, l->owner, (size_t)vlen)) {
            r->ok = 1;
            r->rev = rev;
            r->sent_ms = first;
            ms_info("shard %u: renewal unanswered (%s) but written at revision %llu", j->shard, why,
                    (unsigned long long)rev);
        } else {
            r->lost = 1;
        }
    }
    free(v);
}

static void do_renew(ms_lease_t *l, job_t *j, ms_lease_result_t *r)
{
    char key[32];
    shard_key(j->shard, key, sizeof(key));
    r->sent_ms = ms_clock_mono_ms();
    /* The compare-and-set kvStore_Update makes, with the store's error code (a refusal is an
     * answer: heard). */
    natsStatus s = write_key(l, j->shard, l->owner, (int)strlen(l->owner), j->rev, &r->rev);
    if (s == NATS_OK) {
        r->ok = 1;
        return;
    }
    settle_renewal(l, j, r, natsStatus_GetText(s));
}

/* The revision a JetStream publish acknowledgement gives, 0 for anything else (an error, a
 * "no responders" status without a body, another stream). */
static uint64_t ack_revision(natsMsg *m)
{
    int len = natsMsg_GetDataLength(m);
    if (len <= 0)
        return 0;
    json_t *root = json_loadb(natsMsg_GetData(m), (size_t)len, 0, NULL);
    json_t *seq = json_object_get(root, "seq");
    const char *stream = json_string_value(json_object_get(root, "stream"));
    uint64_t rev = 0;
    if (!json_object_get(root, "error") && json_is_integer(seq) && json_integer_value(seq) > 0 &&
        stream && !strcmp(stream, "KV_" SHARD_BUCKET))
        rev = (uint64_t)json_integer_value(seq);
    json_decref(root);
    return rev;
}

/* Hands the results in rs (only those confirmed, if only_ok) to the loop as one chain, with one
 * wake-up, and clears their slots. */
static void post_results(ms_lease_t *l, ms_lease_result_t **rs, size_t n, int only_ok)
{
    ms_lease_result_t *first = NULL, *last = NULL;
    for (size_t i = 0; i < n; i++) {
        if (!rs[i] || (only_ok && !rs[i]->ok))
            continue;
        rs[i]->link.next = NULL;
        if (last)
            last->link.next = &rs[i]->link;
        else
            first = rs[i];
        last = rs[i];
        rs[i] = NULL;
    }
    if (first)
        ms_jsworker_post(l->worker, &first->link);
}

/* The renewals of one cluster tick, pipelined: every compare-and-set goes out before the first
 * answer is awaited, and the answers come back on one subscription. One at a time, each
 * renewal was a round trip through this thread, the client's flusher and reader threads,
 * nats-server and the loop, about a dozen thread wake-ups on both cores for every shard
 * every third of a lease; those bursts were what delayed the signals that met them (bench
 * RESULTS.md, "p99"). The write is the one kvStore_Update makes (a publish to the key's
 * subject with the expected last revision); a renewal refused or not answered within the KV
 * bound is settled by reading the key, as a single one is. */
static void renew_batch(ms_lease_t *l, job_t *head, ms_lease_result_t **rs, size_t n,
                        uint64_t calls0, uint64_t heard0)
{
    natsConnection *nc = ms_jsworker_conn(l->worker);
    if (!l->acks) {
        natsInbox *inbox = NULL;
        char subj[80];
        if (natsInbox_Create(&inbox) == NATS_OK) {
            snprintf(l->inbox, sizeof(l->inbox), "%s", (const char *)inbox);
            snprintf(subj, sizeof(subj), "%s.>", l->inbox);
            if (natsConnection_SubscribeSync(&l->acks, nc, subj) != NATS_OK)
                l->acks = NULL;
        }
        natsInbox_Destroy(inbox);
    }
    uint64_t batch = ++l->batch;
    size_t pending = 0;
    char *answered = calloc(n ? n : 1, 1);
    if (!answered || !l->acks)
        goto settle; /* settled one by one below */
    size_t i = 0;
    for (job_t *j = head; j; j = j->batch_next, i++) {
        char subj[64], reply[112], rev[24];
        shard_subject(j->shard, subj, sizeof(subj));
        snprintf(reply, sizeof(reply), "%s.%llu.%zu", l->inbox, (unsigned long long)batch, i);
        snprintf(rev, sizeof(rev), "%llu", (unsigned long long)j->rev);
        natsMsg *m = NULL;
        rs[i]->sent_ms = ms_clock_mono_ms();
        kv_call(l);
        if (natsMsg_Create(&m, subj, reply, l->owner, (int)strlen(l->owner)) == NATS_OK &&
            natsMsgHeader_Set(m, "Nats-Expected-Last-Subject-Sequence", rev) == NATS_OK &&
            refused(l, natsConnection_PublishMsg(nc, m)) == NATS_OK)
            pending++;
        else
            answered[i] = 2; /* not sent (the connection is down: say_down): settled below */
        ms_natsmsg_free(m);  /* this thread's alone: not cnats's collector (natsmsg.h) */
    }
    size_t sent = pending;
    uint64_t end = ms_clock_mono_ms() + (uint64_t)l->wait_ms;
    /* Bounded by the deadline, and by one answer per renewal sent. */
    while (pending > 0) {
        uint64_t now = ms_clock_mono_ms();
        if (now >= end)
            break;
        natsMsg *m = NULL;
        if (natsSubscription_NextMsg(&m, l->acks, (int64_t)(end - now)) != NATS_OK)
            break; /* timed out, or the connection is closing */
        unsigned long long b = 0;
        size_t k = 0;
        const char *tail = natsMsg_GetSubject(m) + strlen(l->inbox);
        int ours = sscanf(tail, ".%llu.%zu", &b, &k) == 2 && b == batch;
        /* An acknowledgement or a refusal, not "no responders"; of this batch: an older
         * batch's answer may have waited here since before the link went down (a write
         * cnats kept through a reconnect and sent on reconnecting). */
        if (ours && natsMsg_GetDataLength(m) > 0) /* the rule at heard() */
            heard(l);
        if (ours && k < n && !answered[k]) {
            answered[k] = 1;
            pending--;
            uint64_t rev = ack_revision(m);
            if (rev) {
                rs[k]->ok = 1;
                rs[k]->rev = rev;
            }
        } /* else an answer to an earlier batch that gave up on it: settled then */
        ms_natsmsg_free(m);
    }
    if (pending && pending == sent)
        l->stalled_ms = ms_clock_mono_ms(); /* not one answer: the reads below would wait too */
    ms_debug("renewals: %zu of %zu unanswered after %llu ms (%llu ms queued)", pending, n,
             (unsigned long long)(ms_clock_mono_ms() + (uint64_t)l->wait_ms - end),
             (unsigned long long)(end - (uint64_t)l->wait_ms - head->queued_ms));
settle:
    /* The renewals confirmed go to the loop now: the reads below (each up to the KV bound) must
     * not hold them past their shards' deadlines. Each one settled follows on its own. */
    post_results(l, rs, n, 1);
    i = 0;
    for (job_t *j = head; j; j = j->batch_next, i++) {
        if (!rs[i])
            continue;
        if (!answered || !l->acks)
            do_renew(l, j, rs[i]);
        else
            settle_renewal(l, j, rs[i],
                           answered[i] == 1   ? "refused"
                           : answered[i] == 2 ? "not sent"
                                              : "timeout");
        say_heard(l, rs[i], calls0, heard0);
        post(l, rs[i]);
        rs[i] = NULL;
    }
    free(answered);
}

/* A release is not sent once a KV call timed out after it was queued (stalled_ms): at shutdown
 * on a dead lease link each release waited out the KV bound in turn, a third of a lease times
 * the shards held (1.3 s each at a 4 s lease), and shutdown with them. A release only lets the
 * next owner claim before the key runs out; nothing depends on it, as a coordinator killed with
 * -9 never releases either. A key not released keeps our id until a lease after our last write,
 * and is then gone: the next claim is a create-if-absent (or our own compare-and-set over our
 * id, lease.h), never a blind write, so two owners cannot both take it, and the revision it
 * writes is the new epoch, above every epoch we stamped, so a gateway that heard the new owner
 * drops whatever we sent late (fencing). The shard was dropped here before the release was
 * queued (cluster.c, release), so nothing of ours acts on it meanwhile. */
static void do_release(ms_lease_t *l, job_t *j)
{
    if (!worth_trying(l, j->queued_ms)) {
        l->releases_skipped++;
        ms_debug("release of shard %u not sent: a KV call timed out since it was queued; the "
                 "lease runs out on its own",
                 j->shard);
        return;
    }
    uint64_t rev = 0;
    /* An empty value, compare-and-set: if the lease ran out and another took
     * it, this write fails and leaves theirs alone (an answer too: heard). */
    uint64_t t = ms_clock_mono_ms();
    natsStatus s = write_key(l, j->shard, "", 0, j->rev, &rev);
    ms_debug("release of shard %u: %s in %llu ms (%llu ms queued)", j->shard, natsStatus_GetText(s),
             (unsigned long long)(ms_clock_mono_ms() - t), (unsigned long long)(t - j->queued_ms));
}

/* A batch of renewals: one result each, handed to the loop together. */
static void run_renewals(ms_lease_t *l, job_t *head)
{
    uint64_t heard0 = l->n_heard, calls0 = __atomic_load_n(&l->kv_calls, __ATOMIC_RELAXED);
    int ok = ensure_buckets(l);
    size_t n = 0;
    for (job_t *j = head; j; j = j->batch_next)
        n++;
    ms_lease_result_t **rs = calloc(n, sizeof(*rs));
    if (!rs) {
        ms_error("out of memory in the lease worker");
        return; /* the loop's deadlines still stop serving in time */
    }
    size_t i = 0;
    for (job_t *j = head; j; j = j->batch_next, i++) {
        if (!(rs[i] = calloc(1, sizeof(*rs[i])))) {
            ms_error("out of memory in the lease worker");
            goto done;
        }
        rs[i]->kind = MS_LEASE_RENEW;
        rs[i]->shard = j->shard;
        rs[i]->gen = j->gen;
        rs[i]->sent_ms = ms_clock_mono_ms();
    }
    if (ok)
        renew_batch(l, head, rs, n, calls0, heard0);
    for (i = 0; i < n; i++)
        if (rs[i])
            say_heard(l, rs[i], calls0, heard0);
    post_results(l, rs, n, 0); /* what renew_batch did not hand over (no bucket: failed) */
    free(rs);
    return;
done:
    for (i = 0; i < n; i++)
        ms_lease_result_free(rs[i]);
    free(rs);
}

/* The put kvStore_PutString makes (a publish to the key's subject), with the store's error code
 * for heard(). */
static natsStatus put_policy(ms_lease_t *l, const char *key, const char *value)
{
    char subj[700];
    snprintf(subj, sizeof(subj), "$KV." POLICY_BUCKET ".%s", key);
    jsErrCode jerr = 0;
    kv_call(l);
    natsStatus s =
        js_Publish(NULL, ms_jsworker_js(l->worker), subj, value, (int)strlen(value), NULL, &jerr);
    refused(l, s);
    return answered(l, s, jerr);
}

static void run(ms_lease_t *l, job_t *j)
{
    if (j->kind == MS_LEASE_RENEW) {
        run_renewals(l, j);
        return;
    }
    uint64_t heard0 = l->n_heard, calls0 = __atomic_load_n(&l->kv_calls, __ATOMIC_RELAXED);
    int ok = ensure_buckets(l);
    ms_lease_result_t *r = NULL;
    if (j->kind == MS_LEASE_CLAIM) {
        if (!(r = calloc(1, sizeof(*r)))) {
            ms_error("out of memory in the lease worker");
            return;
        }
        r->kind = j->kind;
        r->shard = j->shard;
        r->gen = j->gen;
        r->sent_ms = ms_clock_mono_ms();
    }
    switch (j->kind) {
    case MS_LEASE_CLAIM:
        if (!ok)
            break;
        if (l->want && j->shard < (uint32_t)l->cfg.shards &&
            __atomic_load_n(&l->want[j->shard], __ATOMIC_ACQUIRE) != j->gen + 1) {
            /* The shard is no longer this coordinator's (its owner came back meanwhile):
             * taking it only to hand it straight back would hold it from its owner. */
            ms_debug("claim of shard %u withdrawn before it ran", j->shard);
            break;
        }
        if (!worth_trying(l, j->queued_ms)) {
            ms_debug("claim of shard %u not tried: a KV call timed out after it was queued "
                     "(%llu ms ago)",
                     j->shard, (unsigned long long)(ms_clock_mono_ms() - l->stalled_ms));
            break; /* failed: the loop claims again shortly */
        }
        do_claim(l, j, r);
        break;
    case MS_LEASE_RELEASE:
        if (ok)
            do_release(l, j);
        break;
    case MS_LEASE_POLICY_PUT: {
        char key[600];
        policy_key(j->key, key, sizeof(key));
        if (!ok || put_policy(l, key, j->value) != NATS_OK)
            ms_error("policy of %s not stored in %s", j->key, POLICY_BUCKET);
        break;
    }
    case MS_LEASE_PUBLISH: /* not flushed when refused: the connection is down */
        if (refused(l, natsConnection_Publish(ms_jsworker_conn(l->worker), j->key, j->data,
                                              (int)j->len)) == NATS_OK)
            natsConnection_FlushTimeout(ms_jsworker_conn(l->worker), 500);
        break;
    default:
        break;
    }
    if (r) {
        say_heard(l, r, calls0, heard0);
        post(l, r);
    }
}

/* Worker thread. Every queued job runs, at shutdown too: the releases must reach KV. */
static void run_job(ms_jsworker_t *w, ms_jsjob_t *job, int stopping, void *ud)
{
    (void)w;
    (void)stopping;
    run(ud, (job_t *)job);
    job_free((job_t *)job);
}

/* Worker thread, before the first job: the buckets open now, not at the first claim, so that
 * the first heartbeats already tell whether the lease store answers (ms_lease_silent_ms). */
static void start(ms_jsworker_t *w, void *ud)
{
    (void)w;
    ensure_buckets(ud);
}

/* Worker thread, after the last job: the KV handles go before the connection closes. */
static void finish(ms_jsworker_t *w, void *ud)
{
    ms_lease_t *l = ud;
    (void)w;
    if (l->releases_skipped)
        ms_info("%zu lease releases not sent after a KV call timed out; those leases run out on "
                "their own",
                l->releases_skipped);
    kvStore_Destroy(l->shards);
    kvStore_Destroy(l->policies);
    l->shards = l->policies = NULL;
    natsSubscription_Destroy(l->acks);
    l->acks = NULL;
}

static void free_job(ms_jsjob_t *job)
{
    job_free((job_t *)job);
}

static void free_result(ms_jsjob_t *r)
{
    ms_lease_result_free((ms_lease_result_t *)r);
}

static void submit(ms_lease_t *l, job_t *j)
{
    if (!l) { /* a coordinator built without a lease (fuzz targets): nothing to write to */
        job_free(j);
        return;
    }
    ms_jsworker_submit(l->worker, &j->link);
}

void ms_lease_flush(ms_lease_t *l)
{
    if (!l || !l->renewals)
        return;
    job_t *head = l->renewals;
    l->renewals = NULL;
    l->renewals_tail = &l->renewals;
    submit(l, head);
}

/* Jobs run in the order they are queued: renewals queued before this job go first. */
static void enqueue(ms_lease_t *l, job_t *j)
{
    ms_lease_flush(l);
    submit(l, j);
}

static job_t *job_new(ms_lease_kind_t kind, uint32_t shard, uint64_t gen, uint64_t rev)
{
    job_t *j = calloc(1, sizeof(*j));
    if (!j) {
        ms_error("out of memory queueing a lease job");
        return NULL;
    }
    j->kind = kind;
    j->shard = shard;
    j->gen = gen;
    j->rev = rev;
    j->queued_ms = ms_clock_mono_ms();
    return j;
}

/* A claim or renewal that cannot be queued fails like one that timed out. */
static void queue_or_fail(ms_lease_t *l, ms_lease_kind_t kind, uint32_t shard, uint64_t gen,
                          uint64_t rev)
{
    job_t *j = job_new(kind, shard, gen, rev);
    if (j) {
        enqueue(l, j);
        return;
    }
    ms_lease_result_t *r = l ? calloc(1, sizeof(*r)) : NULL;
    if (!r)
        return; /* the loop's deadlines still stop serving in time */
    r->kind = kind;
    r->shard = shard;
    r->gen = gen;
    post(l, r);
}

void ms_lease_claim(ms_lease_t *l, uint32_t shard, uint64_t gen)
{
    if (l && l->want && shard < (uint32_t)l->cfg.shards)
        __atomic_store_n(&l->want[shard], gen + 1, __ATOMIC_RELEASE);
    queue_or_fail(l, MS_LEASE_CLAIM, shard, gen, 0);
}

void ms_lease_cancel_claim(ms_lease_t *l, uint32_t shard)
{
    if (l && l->want && shard < (uint32_t)l->cfg.shards)
        __atomic_store_n(&l->want[shard], 0, __ATOMIC_RELEASE);
}

void ms_lease_renew(ms_lease_t *l, uint32_t shard, uint64_t gen, uint64_t last_rev,
                    uint64_t since_ms)
{
    job_t *j = job_new(MS_LEASE_RENEW, shard, gen, last_rev);
    if (j && !l) {
        job_free(j);
        return;
    }
    if (j) {
        j->since_ms = since_ms;
        *l->renewals_tail = j;
        l->renewals_tail = &j->batch_next;
        return;
    }
    queue_or_fail(l, MS_LEASE_RENEW, shard, gen, last_rev);
}

void ms_lease_release(ms_lease_t *l, uint32_t shard, uint64_t last_rev)
{
    job_t *j = job_new(MS_LEASE_RELEASE, shard, 0, last_rev);
    if (j)
        enqueue(l, j); /* else the lease simply runs out */
}

void ms_lease_policy_put(ms_lease_t *l, const char *ns, const char *json)
{
    job_t *j = job_new(MS_LEASE_POLICY_PUT, 0, 0, 0);
    if (!j)
        return;
    if (!(j->key = strdup(ns)) || !(j->value = strdup(json))) {
        ms_error("out of memory storing the policy of %s", ns);
        job_free(j);
        return;
    }
    enqueue(l, j);
}

void ms_lease_publish(ms_lease_t *l, const char *subject, const void *data, size_t len)
{
    job_t *j = job_new(MS_LEASE_PUBLISH, 0, 0, 0);
    if (!j)
        return;
    if (!(j->key = strdup(subject)) || !(j->data = malloc(len ? len : 1))) {
        job_free(j);
        return;
    }
    memcpy(j->data, data, len);
    j->len = len;
    enqueue(l, j);
}

ms_lease_result_t *ms_lease_take(ms_lease_t *l)
{
    ms_jsjob_t *first = ms_jsworker_take(l->worker);
    for (ms_jsjob_t *j = first; j; j = j->next)
        ((ms_lease_result_t *)j)->next = (ms_lease_result_t *)j->next;
    return (ms_lease_result_t *)first;
}

uint64_t ms_lease_silent_ms(ms_lease_t *l, uint64_t now_ms)
{
    if (!l)
        return 0; /* no lease store at all (fuzz targets): nothing to wait for */
    uint64_t t = __atomic_load_n(&l->answered_ms, __ATOMIC_ACQUIRE);
    if (!t)
        return MS_LEASE_NEVER_ANSWERED;
    return now_ms > t ? now_ms - t : 0;
}

uint64_t ms_lease_reconnects(ms_lease_t *l)
{
    return l && l->worker ? ms_jsworker_reconnects(l->worker) : 0;
}

void ms_lease_kick(ms_lease_t *l)
{
    if (l)
        ms_jsworker_kick(l->worker);
}

uint64_t ms_lease_kv_calls(ms_lease_t *l)
{
    return l ? __atomic_load_n(&l->kv_calls, __ATOMIC_RELAXED) : 0;
}

int ms_lease_ready(ms_lease_t *l)
{
    return l && __atomic_load_n(&l->ready, __ATOMIC_ACQUIRE);
}

ms_err_t ms_lease_create(const ms_lease_config_t *cfg, void (*wake)(void *), void *ud,
                         ms_lease_t **out)
{
    ms_lease_t *l = calloc(1, sizeof(*l));
    if (!l)
        return MS_ERR_NOMEM;
    l->cfg = *cfg;
    l->renewals_tail = &l->renewals;
    l->wait_ms = cfg->ttl_ms / 3 > 100 ? cfg->ttl_ms / 3 : 100;
    ms_err_t err = MS_ERR_NOMEM;
    if (!(l->owner = strdup(cfg->owner_id)))
        goto fail;
    if (cfg->shards > 0 && !(l->want = calloc((size_t)cfg->shards, sizeof(*l->want))))
        goto fail;
    ms_jsworker_config_t wc = {
        .nats_urls = cfg->nats_urls,
        .auth = cfg->auth,
        .name = "meshsig-lease",
        .reconnect_wait_ms = 100,
        /* Growing to 1 s while the link stays cut past 2 s (tests/integration/
         * test_lease_health.c: fewer connects in a 10 s cut); the bus coming back ends the
         * wait (ms_lease_kick from ms_cluster_tick). */
        .reconnect_max_ms = 1000,
        /* Every call is bounded well below the lease: a renewal that cannot
         * answer in time is a failed renewal. */
        .js_wait_ms = (int)l->wait_ms,
        .no_reconnect_buffer = 1, /* say_down */
        .start = start,
        .run = run_job,
        .finish = finish,
        .free_job = free_job,
        .free_result = free_result,
        .ud = l,
        .wake = wake,
        .wake_ud = ud,
    };
    if ((err = ms_jsworker_create(&wc, &l->worker)) != MS_OK)
        goto fail;
    *out = l;
    return MS_OK;
fail:
    ms_lease_destroy(l);
    return err;
}

void ms_lease_destroy(ms_lease_t *l)
{
    if (!l)
        return;
    /* Runs the jobs still queued (the releases at shutdown), then finish, then
     * closes the connection. */
    if (l->worker)
        ms_lease_flush(l);
    else
        job_free(l->renewals);
    ms_jsworker_destroy(l->worker);
    free(l->want);
    free(l->owner);
    free(l);
}
