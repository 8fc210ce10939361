/* SPDX-License-Identifier: Apache-2.0 */
/* Persistent emits, kept in a JetStream stream until the receiver's gateway has written them. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <jansson.h>
#include <nats/nats.h>
#include <openssl/evp.h>

#include "jsworker.h"
#include "log.h"
#include "offknown.h"
#include "subject.h"
#include "offline.h"
#include "pblimit.h"

#define STREAM_NAME "MESHSIG_OFFLINE"

/* JOB_STORED goes back to the loop: a store's outcome for its sender (and,
 * for a receiver that was present, the emit to deliver). */
typedef enum { JOB_STORE, JOB_FETCH, JOB_DELETE, JOB_LOAD, JOB_STORED } job_kind_t;

/* A job for the worker, or a result back to the loop (a fetched emit, a
 * store's outcome). */
typedef struct job {
    ms_jsjob_t link; /* first: the worker queues it */
    job_kind_t kind;
    char *ns, *peer;
    char *sender, *cid; /* store: who gets the outcome, and its request id (may be NULL) */
    int stored;         /* JOB_STORED: 1 when JetStream acknowledged the store */
    int present;        /* store: the receiver was there; JOB_STORED brings the emit back */
    char subject[200];
    uint8_t *data; /* store: packed Emit; fetch result: packed Emit */
    size_t len;
    char msg_id[40];
    uint64_t seq;       /* the message's stream sequence: stored, fetched, to delete */
    long long first_ms; /* delete: its first attempt (monotonic ms) */
    int attempts;       /* delete: failed attempts so far */
} job_t;

/* What the list of known subjects was loaded under: once any of it changed, notes may have
 * been lost (a reconnect; the subscription's pending limit) and the list is loaded again. */
typedef struct {
    uint64_t reconnects;
    int64_t dropped;
    int connected;
} conn_snap_t;

/* Subjects known to hold messages, so a join reads the stream only when it must
 * (offknown.h). A subject stays known after its messages were delivered (they are deleted
 * one by one as receipts come in) until a fetch finds it empty.
 *
 * Stores made elsewhere (the shard's previous owner still retrying one through a JetStream
 * election, for up to JS_RETRY_MS; any coordinator storing into a subject this one will
 * serve) are learnt from `notes`: a core NATS subscription on the stream's subjects, made on
 * the worker's connection before the list is first loaded, sees every publish into the
 * stream, whoever makes it (a stream's subjects are plain NATS subjects), read in batches
 * (notes_drain). Its cost: every coordinator receives every stored emit's bytes once more,
 * and spends ~18 us of CPU on it (README, "Persistent emit"). Alternatives not taken: a
 * headers-only ordered consumer (an R1 consumer on one node, recreated after that node's
 * loss: notes lost meanwhile) or the stream's RePublish (a stream config change; published by
 * the stream leader after the store, so lost with a leader that dies in between); the old
 * owner telling the new one covers only the shard's previous owner.
 *
 * A note normally arrives before the store it announces is acknowledged: the publish reaches
 * this coordinator's NATS node on its way to the stream, while the acknowledgement waits for
 * the stream (and its replicas) to store it, then travels back to the storing coordinator,
 * which tells the sender, who would tell the addressee, who joins here; and a join first
 * takes the notes that came (want_fetch). Should a join still come first (a note held up on
 * a route or not read off the socket yet), its skipped fetch is remembered for
 * MS_OFFKNOWN_SKIP_MS and made when the note is taken (at the latest the next tick, 50 ms).
 * At start the subscription's interest reaches the other NATS nodes over their routes a few
 * ms after the flush: a store published there meanwhile is missed by the first load and by
 * the notes, but not by the load each shard claim asks for (ms_offline_refresh), which comes
 * later (joins read the stream until it is done). A note lost (the connection broke:
 * reconnects; a slow subscriber: dropped) makes the list stale: it is loaded again, and the
 * skips remembered meanwhile are fetched once their subjects show up in it. Everything
 * acknowledged before a join therefore reaches it. A store still in flight when the join reads
 * the stream (neither acknowledged nor stored) is concurrent with the join: it waits for the
 * peer's next join or resume, as it did before notes. */
struct ms_offline {
    ms_offknown_t known;     /* guarded by lock */
    conn_snap_t load_snap;   /* guarded by lock: under what the list was last loaded */
    natsSubscription *notes; /* guarded by lock (set once, in start; NULL: every join looks) */
    int load_queued;         /* guarded by lock: a JOB_LOAD waits in jobs */
    long long load_at;       /* worker: when the list was last (tried to be) loaded */
    long long delete_logged; /* worker: when a failed delete was last logged */
    ms_offline_config_t cfg;
    ms_jsworker_t *worker; /* the JetStream calls run there, in order; its own connection */
    natsConnection *nc;    /* worker thread: the worker's connection and context (start) */
    jsCtx *js;
    int ready;
    pthread_mutex_t lock;
};

static void subject_for(const ms_offline_t *o, const char *ns, const char *peer, char *out,
                        size_t cap)
{
    ms_subject_offline(out, cap, o->cfg.prefix, ns, peer);
}

static void known_add(ms_offline_t *o, const char *subject)
{
    pthread_mutex_lock(&o->lock);
    ms_offknown_add(&o->known, subject);
    pthread_mutex_unlock(&o->lock);
}

static void job_free(job_t *j)
{
    if (!j)
        return;
    free(j->ns);
    free(j->peer);
    free(j->sender);
    free(j->cid);
    free(j->data);
    free(j);
}

/* Appends j to a chain of results. */
static void push(job_t **head, job_t **tail, job_t *j)
{
    j->link.next = NULL;
    if (*tail)
        (*tail)->link.next = &j->link;
    else
        *head = j;
    *tail = j;
}

static long long mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void job_free(job_t *j);
static void enqueue(ms_offline_t *o, job_t *j);
static void queue_fetch(ms_offline_t *o, const char *ns, const char *peer);

/* Any thread. The connection the notes come on, as it is now. */
static conn_snap_t conn_snap(ms_offline_t *o)
{
    pthread_mutex_lock(&o->lock);
    natsSubscription *sub = o->notes;
    pthread_mutex_unlock(&o->lock);
    conn_snap_t s = {.reconnects = ms_jsworker_reconnects(o->worker), .dropped = -1};
    s.connected = natsConnection_Status(ms_jsworker_conn(o->worker)) == NATS_CONN_STATUS_CONNECTED;
    if (sub)
        natsSubscription_GetDropped(sub, &s.dropped);
    return s;
}

/* Fetches handed back by the list (offknown.h): skipped, their subjects known now. */
static void fetch_skipped(ms_offline_t *o, ms_offknown_skip_t *due)
{
    while (due) {
        ms_offknown_skip_t *n = due->next;
        queue_fetch(o, due->ns, due->peer);
        ms_offknown_skip_free(due);
        due = n;
    }
}

/* Worker thread. Which peers have messages waiting, stored by any coordinator
 * (from before a restart too). Until this succeeds every join looks; without the
 * notes' subscription it never does (nothing would tell of later stores). */
static void load_known(ms_offline_t *o)
{
    o->load_at = mono_ms();
    pthread_mutex_lock(&o->lock);
    uint64_t gen = ms_offknown_load_begin(&o->known);
    int noting = o->notes != NULL;
    pthread_mutex_unlock(&o->lock);
    if (!noting)
        return;
    /* Taken before the read: a note lost after it makes the list stale again. */
    conn_snap_t snap = conn_snap(o);
    jsOptions jo;
    jsOptions_Init(&jo);
    char filter[200];
    ms_subject_offline_any(filter, sizeof(filter), o->cfg.prefix);
    jo.Stream.Info.SubjectsFilter = filter;
    jsStreamInfo *si = NULL;
    jsErrCode ec = 0;
    natsStatus s = js_GetStreamInfo(&si, o->js, STREAM_NAME, &jo, &ec);
    if (s == NATS_OK && si) {
        int n = si->State.Subjects ? si->State.Subjects->Count : 0;
        const char **subjects = n ? calloc((size_t)n, sizeof(*subjects)) : NULL;
        for (int i = 0; subjects && i < n; i++)
            subjects[i] = si->State.Subjects->List[i].Subject;
        int loaded = 0;
        pthread_mutex_lock(&o->lock);
        ms_offknown_skip_t *due = NULL;
        if (!n || subjects) {
            due = ms_offknown_load_end(&o->known, gen, subjects, (size_t)n, (uint64_t)mono_ms(),
                                       &loaded);
            if (loaded)
                o->load_snap = snap;
        }
        pthread_mutex_unlock(&o->lock);
        free(subjects);
        fetch_skipped(o, due);
        if (n && !subjects)
            ms_warn("offline stream %s: list of waiting peers not loaded (out of memory); "
                    "every join looks",
                    STREAM_NAME);
        else if (!loaded)
            ms_debug("offline stream %s: list read while a reload was asked for; joins look "
                     "until it is read again",
                     STREAM_NAME);
    } else {
        ms_warn("offline stream %s: list of waiting peers not loaded (%s, %d); every join looks",
                STREAM_NAME, natsStatus_GetText(s), (int)ec);
    }
    jsStreamInfo_Destroy(si);
}

static int ensure_stream(ms_offline_t *o)
{
    if (o->ready)
        return 1;
    char subj[200];
    ms_subject_offline_any(subj, sizeof(subj), o->cfg.prefix);
    const char *subjects[] = {subj};
    jsStreamConfig sc;
    jsStreamConfig_Init(&sc);
    sc.Name = STREAM_NAME;
    sc.Subjects = subjects;
    sc.SubjectsLen = 1;
    sc.Storage = js_FileStorage;
    /* Stored emits must outlive the NATS node that holds them. */
    sc.Replicas = o->cfg.replicas > 1 ? o->cfg.replicas : 1;
    sc.MaxMsgsPerSubject = o->cfg.max_msgs;
    sc.MaxAge = (int64_t)o->cfg.max_age_s * 1000000000LL;
    sc.Duplicates = 120LL * 1000000000LL;
    jsStreamInfo *si = NULL;
    jsErrCode ec = 0;
    natsStatus s = js_AddStream(&si, o->js, &sc, NULL, &ec);
    if (s != NATS_OK) {
        jsStreamInfo_Destroy(si);
        si = NULL;
        s = js_UpdateStream(&si, o->js, &sc, NULL, &ec);
    }
    jsStreamInfo_Destroy(si);
    if (s != NATS_OK) {
        ms_warn("offline stream %s not available yet: %s (%d)", STREAM_NAME, natsStatus_GetText(s),
                (int)ec);
        return 0;
    }
    load_known(o);
    o->ready = 1;
    ms_info("offline stream %s ready (%ld messages per peer, %ld s)", STREAM_NAME, o->cfg.max_msgs,
            o->cfg.max_age_s);
    return 1;
}

static int fetch_stopping(ms_offline_t *o)
{
    return ms_jsworker_stopping(o->worker);
}

/* When a NATS node dies, the stream (and the JetStream meta group, without
 * which the stream API answers "cluster not available") may have no leader
 * for one or two election timeouts: 4-9 s each in nats-server 2.9, more when
 * a vote splits. Calls that failed are retried for this long. A healthy call
 * takes milliseconds. */
#define JS_RETRY_MS 60000
#define JS_RETRY_WAIT_MS 200
#define JS_CALL_WAIT_MS 2000

/* Whether to try again: before the deadline, and while the coordinator is not
 * stopping (a stopping one still gets a few attempts for its stores). Sleeps
 * between attempts; logs the first failure and then one every 5 s. */
static int retry_again(ms_offline_t *o, long long start, int *attempt, long long *logged,
                       const char *what, const char *who, const char *why)
{
    long long now = mono_ms();
    if (now - *logged >= 5000) {
        ms_warn("%s %s failed (%s); retrying for up to %d s", what, who, why,
                (int)((JS_RETRY_MS - (now - start)) / 1000));
        *logged = now;
    }
    (*attempt)++;
    if (now - start >= JS_RETRY_MS || (fetch_stopping(o) && *attempt >= 3))
        return 0;
    usleep(JS_RETRY_WAIT_MS * 1000);
    return 1;
}

static int do_store(ms_offline_t *o, job_t *j)
{
    j->seq = 0;
    jsPubOptions po;
    jsPubOptions_Init(&po);
    po.MsgId = j->msg_id; /* a retried store is deduplicated by the server */
    po.MaxWait = JS_CALL_WAIT_MS;
    long long start = mono_ms(), logged = start - 5000;
    int attempt = 0, ok = 0;
    char who[300];
    const char *why = "";
    snprintf(who, sizeof(who), "for %s/%s", j->ns, j->peer);
    do {
        if (!ensure_stream(o)) {
            why = "stream not available";
            continue;
        }
        jsPubAck *pa = NULL;
        jsErrCode ec = 0;
        natsStatus s = js_Publish(&pa, o->js, j->subject, j->data, (int)j->len, &po, &ec);
        ok = s == NATS_OK && pa;
        if (ok)
            j->seq = pa->Sequence;
        jsPubAck_Destroy(pa);
        why = natsStatus_GetText(s);
    } while (!ok &&
             retry_again(o, start, &attempt, &logged, "storing a persistent emit", who, why));
    if (ok) {
        /* Again here, in the worker's order: a fetch that ran since the loop
         * added it may have found the subject empty and dropped it. */
        known_add(o, j->subject);
    }
    if (!ok)
        ms_error("persistent emit for %s/%s not stored: %s", j->ns, j->peer, why);
    else if (attempt)
        ms_info("persistent emit for %s/%s stored after %lld ms", j->ns, j->peer,
                mono_ms() - start);
    return ok;
}

typedef enum { GET_FOUND, GET_NONE, GET_RETRY, GET_FAIL } get_result_t;

/* Decodes padded standard base64 (how the JetStream API sends message data). */
static uint8_t *b64_decode(const char *in, size_t *len)
{
    size_t n = strlen(in);
    if (n % 4)
        return NULL;
    uint8_t *out = malloc(n / 4 * 3 + 1);
    int w = out ? EVP_DecodeBlock(out, (const unsigned char *)in, (int)n) : -1;
    if (w < 0) {
        free(out);
        return NULL;
    }
    /* EVP_DecodeBlock counts the padding as zero bytes. */
    for (size_t k = n; k > 0 && in[k - 1] == '='; k--)
        w--;
    *len = (size_t)w;
    return out;
}

/* The first message on j's subject at or after sequence from, read from the
 * stream leader ($JS.API.STREAM.MSG.GET with next_by_subj). Unlike a consumer,
 * which the meta leader places on a random replica (the dead node included,
 * until it is known to be gone), this needs only the stream's own leader, and
 * an answer from it is authoritative. */
static get_result_t get_next(ms_offline_t *o, const job_t *j, uint64_t from, job_t **out,
                             uint64_t *seq, char *why, size_t why_cap)
{
    char api[160];
    snprintf(api, sizeof(api), "$JS.API.STREAM.MSG.GET.%s", STREAM_NAME);
    json_t *req = json_pack("{s:I, s:s}", "seq", (json_int_t)from, "next_by_subj", j->subject);
    char *body = req ? json_dumps(req, JSON_COMPACT) : NULL;
    json_decref(req);
    if (!body) {
        snprintf(why, why_cap, "out of memory");
        return GET_FAIL;
    }
    natsMsg *reply = NULL;
    natsStatus s = natsConnection_RequestString(&reply, o->nc, api, body, JS_CALL_WAIT_MS);
    free(body);
    if (s != NATS_OK) {
        snprintf(why, why_cap, "%s", natsStatus_GetText(s));
        return GET_RETRY;
    }
    get_result_t res = GET_RETRY;
    json_t *root =
        json_loadb(natsMsg_GetData(reply), (size_t)natsMsg_GetDataLength(reply), 0, NULL);
    natsMsg_Destroy(reply);
    json_t *err = json_object_get(root, "error"), *m = json_object_get(root, "message");
    if (!root) {
        snprintf(why, why_cap, "unreadable API reply");
    } else if (err) {
        json_int_t code = json_integer_value(json_object_get(err, "err_code"));
        const char *desc = json_string_value(json_object_get(err, "description"));
        snprintf(why, why_cap, "%s (%lld)", desc ? desc : "error", (long long)code);
        /* 10037: no message found. Anything else (cluster or stream leader not
         * available, 503) passes once the elections are over. */
        res = code == 10037 ? GET_NONE : GET_RETRY;
    } else if (json_is_object(m)) {
        const char *subj = json_string_value(json_object_get(m, "subject"));
        const char *data = json_string_value(json_object_get(m, "data"));
        *seq = (uint64_t)json_integer_value(json_object_get(m, "seq"));
        job_t *r = calloc(1, sizeof(*r));
        if (r && subj && !strcmp(subj, j->subject) && *seq >= from) {
            r->kind = JOB_FETCH;
            r->seq = *seq;
            r->ns = strdup(j->ns);
            r->peer = strdup(j->peer);
            r->data = data ? b64_decode(data, &r->len) : calloc(1, 1);
        }
        if (r && r->ns && r->peer && r->data) {
            *out = r;
            res = GET_FOUND;
        } else {
            snprintf(why, why_cap, "malformed or mismatched message");
            job_free(r);
            res = GET_FAIL;
        }
    } else {
        snprintf(why, why_cap, "API reply without message");
    }
    json_decref(root);
    return res;
}

/* Reads every message on the peer's subject and hands them to the loop, each
 * with its sequence (deleted once the receiver's gateway sends a receipt).
 * The peer joined once: the read retries through a NATS node loss instead of
 * leaving its messages for a later join. */
static void do_fetch(ms_offline_t *o, job_t *j)
{
    job_t *batch = NULL, *tail = NULL;
    uint64_t from = 1;
    long long start = mono_ms(), logged = start - 5000;
    int attempt = 0, complete = 0;
    char why[200] = "", who[300];
    snprintf(who, sizeof(who), "for %s/%s", j->ns, j->peer);
    /* Bounded by the stream's per-subject limit (new messages may land
     * meanwhile, hence the margin) and by the retry deadline. */
    long max_msgs = o->cfg.max_msgs > 0 ? o->cfg.max_msgs : 100000;
    for (long got = 0; got <= 2 * max_msgs;) {
        job_t *r = NULL;
        uint64_t seq = 0;
        get_result_t g = get_next(o, j, from, &r, &seq, why, sizeof(why));
        if (g == GET_FOUND) {
            push(&batch, &tail, r);
            from = seq + 1;
            got++;
            continue;
        }
        if (g == GET_NONE) {
            complete = 1;
            break;
        }
        if (g == GET_FAIL ||
            !retry_again(o, start, &attempt, &logged, "reading offline messages", who, why))
            break;
    }
    if (!complete) {
        ms_error("cannot read (all) offline messages for %s/%s: %s; kept for its next join", j->ns,
                 j->peer, why);
    } else if (attempt) {
        ms_info("offline messages for %s/%s read after %lld ms", j->ns, j->peer, mono_ms() - start);
    }
    /* Found empty: later joins need not look (a store after this fetch adds
     * the subject again, in do_store). Anything else stays known: messages
     * handed to a gateway are deleted only on its receipt, and one that never
     * comes (the gateway died) leaves them for the next join or resume. */
    pthread_mutex_lock(&o->lock);
    if (complete && !batch)
        ms_offknown_drop(&o->known, j->subject, (uint64_t)mono_ms());
    else
        ms_offknown_add(&o->known, j->subject);
    pthread_mutex_unlock(&o->lock);
    if (!batch)
        return;
    ms_jsworker_post(o->worker, &batch->link);
}

/* A delivered message, once its receipt came: deleted by sequence (one that
 * is gone already, deleted after an earlier receipt or aged out, is done).
 * A failed delete goes to the back of the queue instead of retrying in
 * place: it must not hold up the fetches and stores behind it (a delete that
 * failed for a minute after a NATS node's loss kept a joining peer's fetch
 * waiting past the election that would have let it through). Returns 1 when
 * j was queued again (the worker owns it). */
static int do_delete(ms_offline_t *o, job_t *j, int stopping)
{
    long long now = mono_ms();
    if (!j->first_ms)
        j->first_ms = now;
    jsOptions jo;
    jsOptions_Init(&jo);
    jo.Wait = JS_CALL_WAIT_MS;
    jsErrCode ec = 0;
    natsStatus s = js_DeleteMsg(o->js, STREAM_NAME, j->seq, &jo, &ec);
    /* Gone already: nats-server answers a delete of a sequence it does not hold (deleted on
     * an earlier receipt of a copy delivered twice, aged out) with 10043, "sequence not
     * found"; 10037 is kept for servers that would say "no message found". */
    if (s == NATS_OK || ec == JSSequenceNotFoundErr || ec == JSNoMessageFoundErr)
        return 0;
    now = mono_ms();
    j->attempts++;
    if (now - o->delete_logged >= 5000) {
        ms_warn("deleting delivered offline message #%llu failed (%s, %d: %s); tried again after "
                "the jobs queued behind it",
                (unsigned long long)j->seq, natsStatus_GetText(s), (int)ec,
                nats_GetLastError(NULL) ? nats_GetLastError(NULL) : "");
        o->delete_logged = now;
    }
    if (now - j->first_ms >= JS_RETRY_MS || (stopping && j->attempts >= 3)) {
        ms_warn("offline message #%llu not deleted; it may be delivered again (deduplicated by "
                "msgId)",
                (unsigned long long)j->seq);
        return 0;
    }
    usleep(JS_RETRY_WAIT_MS * 1000); /* no busy loop when nothing else waits */
    ms_jsworker_submit(o->worker, &j->link);
    return 1;
}

static void queue_load(ms_offline_t *o)
{
    job_t *j = calloc(1, sizeof(*j));
    if (j) {
        j->kind = JOB_LOAD;
        enqueue(o, j);
        return;
    }
    pthread_mutex_lock(&o->lock);
    o->load_queued = 0; /* the worker retries the load before a fetch */
    pthread_mutex_unlock(&o->lock);
}

/* The list may lack subjects from now on: joins look until a load begun after this ends.
 * Lock held; returns 1 when the caller is to queue that load. */
static int invalidate_locked(ms_offline_t *o)
{
    ms_offknown_invalidate(&o->known);
    int queue = !o->load_queued;
    o->load_queued = 1;
    return queue;
}

/* Notes read at most per call: a burst is taken over several ticks (the loop's 50 ms); one
 * that outgrows the subscription's pending limit makes the list stale (want_fetch). */
#define NOTES_PER_DRAIN 4096

/* Any thread (the loop's tick and joins, the worker's fetches). Takes the notes that came:
 * publishes into the stream, from any coordinator (or anyone); only their subjects matter.
 * A fetch skipped on one of them lately is made now. The subscription is synchronous: a
 * callback one woke a thread of its own for every stored emit (49 us of CPU each against
 * 18 us here, README), where this is read in batches by threads that run anyway. */
static void notes_drain(ms_offline_t *o)
{
    pthread_mutex_lock(&o->lock);
    natsSubscription *sub = o->notes;
    pthread_mutex_unlock(&o->lock);
    natsMsg *msg = NULL;
    for (int n = 0;
         sub && n < NOTES_PER_DRAIN && natsSubscription_NextMsg(&msg, sub, 0) == NATS_OK && msg;
         n++) {
        pthread_mutex_lock(&o->lock);
        ms_offknown_skip_t *due =
            ms_offknown_note(&o->known, natsMsg_GetSubject(msg), (uint64_t)mono_ms());
        pthread_mutex_unlock(&o->lock);
        natsMsg_Destroy(msg);
        msg = NULL;
        fetch_skipped(o, due);
    }
}

/* Loop (a join) or worker (a queued fetch). Whether to read the stream for peer in ns on
 * subject: its subject is known to hold messages, or the list is not loaded, or it is stale
 * (a note may have been lost since it was loaded: reloaded). A skip is remembered, and made
 * after all should a note or load show the subject (offknown.h). */
static int want_fetch(ms_offline_t *o, const char *subject, const char *ns, const char *peer)
{
    notes_drain(o); /* whatever came before this join counts for it */
    conn_snap_t now = conn_snap(o);
    pthread_mutex_lock(&o->lock);
    int load = 0;
    if (ms_offknown_is_loaded(&o->known) &&
        (!now.connected || now.reconnects != o->load_snap.reconnects ||
         now.dropped != o->load_snap.dropped))
        load = invalidate_locked(o);
    int yes = ms_offknown_look(&o->known, subject);
    if (!yes)
        ms_offknown_skipped(&o->known, subject, ns, peer, (uint64_t)mono_ms());
    pthread_mutex_unlock(&o->lock);
    if (load)
        queue_load(o);
    return yes;
}

static int worth_fetching(ms_offline_t *o, job_t *j)
{
    return want_fetch(o, j->subject, j->ns, j->peer);
}

static int known_is_loaded(ms_offline_t *o)
{
    pthread_mutex_lock(&o->lock);
    int loaded = ms_offknown_is_loaded(&o->known);
    pthread_mutex_unlock(&o->lock);
    return loaded;
}

/* Worker thread, before the first load: subscribes to the notes and waits for the server to
 * have it, so that a store the load does not see is noted. Without it (refused) joins always
 * look. */
static void notes_start(ms_offline_t *o)
{
    char subj[200];
    ms_subject_offline_any(subj, sizeof(subj), o->cfg.prefix);
    natsSubscription *sub = NULL;
    natsStatus s = natsConnection_SubscribeSync(&sub, o->nc, subj);
    if (s == NATS_OK) /* bytes bounded; past them notes drop, and the list is reloaded */
        s = natsSubscription_SetPendingLimits(sub, -1, 64 * 1024 * 1024);
    /* Not flushed (the link broke): cnats subscribes again on reconnecting, and the reconnect
     * makes the list stale (want_fetch). */
    if (s == NATS_OK)
        (void)natsConnection_FlushTimeout(o->nc, JS_CALL_WAIT_MS);
    if (s != NATS_OK) {
        ms_warn("offline stream: cannot follow stores on %s (%s); every join reads the stream",
                subj, natsStatus_GetText(s));
        natsSubscription_Destroy(sub);
        return;
    }
    pthread_mutex_lock(&o->lock);
    o->notes = sub;
    pthread_mutex_unlock(&o->lock);
}

/* Worker thread, after the last job, the connection still open. */
static void finish(ms_jsworker_t *w, void *ud)
{
    (void)w;
    ms_offline_t *o = ud;
    pthread_mutex_lock(&o->lock);
    natsSubscription *sub = o->notes;
    o->notes = NULL; /* the loop stopped; nothing reads it from here */
    pthread_mutex_unlock(&o->lock);
    if (sub) {
        natsSubscription_Unsubscribe(sub);
        natsSubscription_Destroy(sub);
    }
}

/* Worker thread, before the first job. */
static void start(ms_jsworker_t *w, void *ud)
{
    ms_offline_t *o = ud;
    o->nc = ms_jsworker_conn(w);
    o->js = ms_jsworker_js(w);
    notes_start(o);
    ensure_stream(o); /* loads the subject list before the first join needs it */
}

static void run_job(ms_jsworker_t *w, ms_jsjob_t *job, int stopping, void *ud)
{
    ms_offline_t *o = ud;
    job_t *j = (job_t *)job;
    /* Stopping: stores are finished (they are the only durable work)
     * and so are deletes of delivered messages (fewer duplicates later);
     * fetches are for sessions that are going away anyway. */
    if (stopping && j->kind != JOB_STORE && j->kind != JOB_DELETE) {
        job_free(j);
        return;
    }
    if (j->kind == JOB_LOAD) {
        pthread_mutex_lock(&o->lock);
        o->load_queued = 0;
        pthread_mutex_unlock(&o->lock);
        int was_ready = o->ready; /* ensure_stream loads it the first time */
        if (ensure_stream(o) && was_ready)
            load_known(o);
        job_free(j);
        return;
    }
    if (j->kind == JOB_FETCH && o->ready && !known_is_loaded(o) && mono_ms() - o->load_at >= 1000)
        load_known(o); /* failed before: try again, at most once a second */
    if (j->kind == JOB_FETCH && o->ready && !worth_fetching(o, j)) {
        job_free(j);
        return;
    }
    if (j->kind == JOB_STORE) {
        int ok = do_store(o, j);
        if (j->sender || j->present) {
            /* The sender's ok waits for JetStream's acknowledgement (and a
             * present receiver's delivery for the store). */
            j->kind = JOB_STORED;
            j->stored = ok;
            if (!j->present) {
                free(j->data);
                j->data = NULL;
            }
            ms_jsworker_post(w, &j->link);
            return;
        }
    } else if (ensure_stream(o)) {
        if (j->kind == JOB_FETCH)
            do_fetch(o, j);
        else if (do_delete(o, j, stopping))
            return;
    }
    job_free(j);
}

static void free_job(ms_jsjob_t *job)
{
    job_free((job_t *)job);
}

static void enqueue(ms_offline_t *o, job_t *j)
{
    ms_jsworker_submit(o->worker, &j->link);
}

ms_err_t ms_offline_create(const ms_offline_config_t *cfg, void (*wake)(void *), void *ud,
                           ms_offline_t **out)
{
    ms_offline_t *o = calloc(1, sizeof(*o));
    if (!o)
        return MS_ERR_NOMEM;
    o->cfg = *cfg;
    ms_offknown_init(&o->known);
    pthread_mutex_init(&o->lock, NULL);
    ms_jsworker_config_t wc = {
        .nats_urls = cfg->nats_urls,
        .auth = cfg->auth,
        .name = "meshsig-offline",
        .reconnect_wait_ms = 250,
        .reconnect_max_ms = 1000, /* growing while the link stays cut (jsworker.h) */
        /* Every call here is retried by the worker itself until it is answered (do_store,
         * do_delete, the fetches: every 200 ms for up to JS_RETRY_MS), so a call made while the
         * link is down is made again within a reconnect wait of its return; nothing needs cnats
         * to keep it. Kept, each try of a store that waited out its 2 s bound during the cut was
         * one more copy sent on reconnecting (3 after a 5 s cut, tests/integration/
         * test_offline_replay.c), deduplicated by msgId only within the stream's 120 s window,
         * and a try made past JS_RETRY_MS would land after its sender was told "not stored". */
        .no_reconnect_buffer = 1,
        .start = start,
        .run = run_job,
        .finish = finish,
        .free_job = free_job,
        .free_result = free_job,
        .ud = o,
        .wake = wake,
        .wake_ud = ud,
    };
    ms_err_t err = ms_jsworker_create(&wc, &o->worker);
    if (err != MS_OK) {
        ms_offline_destroy(o);
        return err;
    }
    *out = o;
    return MS_OK;
}

void ms_offline_destroy(ms_offline_t *o)
{
    if (!o)
        return;
    /* Finishes the stores still queued, stops the thread, closes the connection. */
    ms_jsworker_destroy(o->worker);
    natsSubscription_Destroy(o->notes); /* NULL unless the worker never finished */
    ms_offknown_cleanup(&o->known);
    pthread_mutex_destroy(&o->lock);
    free(o);
}

ms_err_t ms_offline_store(ms_offline_t *o, const char *ns, const char *peer,
                          const Meshsig__V1__Emit *emit, const char *cid, int present)
{
    job_t *j = calloc(1, sizeof(*j));
    if (!j)
        return MS_ERR_NOMEM;
    j->kind = JOB_STORE;
    j->present = present;
    j->ns = strdup(ns);
    j->peer = strdup(peer);
    j->sender = emit->from ? strdup(emit->from) : NULL;
    j->cid = cid && *cid ? strdup(cid) : NULL;
    j->len = meshsig__v1__emit__get_packed_size(emit);
    j->data = malloc(j->len ? j->len : 1);
    if (!j->ns || !j->peer || !j->data || (emit->from && !j->sender) || (cid && *cid && !j->cid)) {
        job_free(j);
        return MS_ERR_NOMEM;
    }
    meshsig__v1__emit__pack(emit, j->data);
    snprintf(j->msg_id, sizeof(j->msg_id), "%s", emit->msg_id);
    subject_for(o, ns, peer, j->subject, sizeof(j->subject));
    pthread_mutex_lock(&o->lock);
    ms_offknown_own_store(&o->known, j->subject);
    pthread_mutex_unlock(&o->lock);
    enqueue(o, j);
    return MS_OK;
}

/* Any thread: a fetch for peer in ns, looked at again by the worker (worth_fetching). */
static void queue_fetch(ms_offline_t *o, const char *ns, const char *peer)
{
    job_t *j = calloc(1, sizeof(*j));
    if (!j)
        return;
    j->kind = JOB_FETCH;
    j->ns = strdup(ns);
    j->peer = strdup(peer);
    if (!j->ns || !j->peer) {
        job_free(j);
        return;
    }
    subject_for(o, ns, peer, j->subject, sizeof(j->subject));
    enqueue(o, j);
}

void ms_offline_fetch(ms_offline_t *o, const char *ns, const char *peer)
{
    char subject[200];
    subject_for(o, ns, peer, subject, sizeof(subject));
    /* Before the stream's subject list is loaded, every join has to look.
     * The worker consumes the entry when it fetches (worth_fetching). */
    if (want_fetch(o, subject, ns, peer))
        queue_fetch(o, ns, peer);
}

void ms_offline_delete(ms_offline_t *o, uint64_t seq)
{
    job_t *j = seq ? calloc(1, sizeof(*j)) : NULL;
    if (!j)
        return; /* out of memory: delivered again later, deduplicated by msgId */
    j->kind = JOB_DELETE;
    j->seq = seq;
    enqueue(o, j);
}

void ms_offline_refresh(ms_offline_t *o)
{
    pthread_mutex_lock(&o->lock);
    /* Joins look until the worker has reloaded the list; a load running now marks nothing
     * loaded (its generation is over). */
    int queue = invalidate_locked(o);
    pthread_mutex_unlock(&o->lock);
    if (queue)
        queue_load(o);
}

void ms_offline_drain(ms_offline_t *o, ms_offline_deliver_fn deliver, ms_offline_stored_fn stored,
                      void *ud)
{
    job_t *r = (job_t *)ms_jsworker_take(o->worker);
    while (r) {
        job_t *n = (job_t *)r->link.next;
        Meshsig__V1__Emit *e =
            r->data ? (Meshsig__V1__Emit *)ms_pblimit_unpack(
                          &meshsig__v1__emit__descriptor, r->data, r->len, &ms_pblimit_bus, NULL, 0)
                    : NULL;
        if (r->data && !e)
            ms_error("offline message for %s/%s unreadable; dropped", r->ns, r->peer);
        if (r->kind == JOB_STORED) {
            stored(r->ns, r->sender, r->cid, r->stored, r->peer, e, r->stored ? r->seq : 0, ud);
        } else if (e && !deliver(r->ns, r->peer, e, r->seq, ud)) {
            /* The peer left, or its shard moved, before delivery: the
             * message stays in the stream for its next join or the new
             * owner's rebuild. Or it was stored for another peer whose
             * subject hashes the same: it stays for that one. */
            char subject[200];
            subject_for(o, r->ns, r->peer, subject, sizeof(subject));
            known_add(o, subject);
        }
        if (e)
            meshsig__v1__emit__free_unpacked(e, NULL);
        job_free(r);
        r = n;
    }
}

void ms_offline_tick(ms_offline_t *o)
{
    notes_drain(o);
}

int ms_offline_ready(ms_offline_t *o)
{
    return o && o->ready;
}
