/* SPDX-License-Identifier: Apache-2.0 */
/* Persistent emits for absent peers, kept in a JetStream stream until the peer joins. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <nats/nats.h>
#include <uthash.h>

#include "log.h"
#include "subject.h"
#include "offline.h"
#include "pblimit.h"

#define STREAM_NAME "MESHSIG_OFFLINE"

typedef enum { JOB_STORE, JOB_FETCH, JOB_PURGE } job_kind_t;

typedef struct job {
    struct job *next;
    job_kind_t kind;
    char *ns, *peer;
    char subject[200];
    uint8_t *data; /* store: packed Emit; fetch result: packed Emit */
    size_t len;
    char msg_id[40];
    uint64_t seq; /* purge: up to and including */
    int expect;   /* fetch: the subject is known to hold messages */
} job_t;

/* Subjects known to hold messages, so a join reads the stream only when it must. */
typedef struct known {
    char *subject;
    UT_hash_handle hh;
} known_t;

struct ms_offline {
    known_t *known; /* guarded by lock */
    int known_loaded;
    ms_offline_config_t cfg;
    natsConnection *nc;
    jsCtx *js;
    int ready;
    pthread_t thread;
    int started;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    job_t *jobs, *jobs_tail;       /* to the worker */
    job_t *results, *results_tail; /* back to the loop: fetched emits, then a purge marker */
    int stop;
    void (*wake)(void *);
    void *wake_ud;
};

static void subject_for(const ms_offline_t *o, const char *ns, const char *peer, char *out,
                        size_t cap)
{
    ms_subject_offline(out, cap, o->cfg.prefix, ns, peer);
}

static void known_add(ms_offline_t *o, const char *subject)
{
    known_t *k;
    HASH_FIND_STR(o->known, subject, k);
    if (k)
        return;
    k = calloc(1, sizeof(*k));
    if (!k || !(k->subject = strdup(subject))) {
        free(k);
        return;
    }
    HASH_ADD_KEYPTR(hh, o->known, k->subject, strlen(k->subject), k);
}

static void known_del(ms_offline_t *o, const char *subject)
{
    known_t *k;
    HASH_FIND_STR(o->known, subject, k);
    if (k) {
        HASH_DEL(o->known, k);
        free(k->subject);
        free(k);
    }
}

static void job_free(job_t *j)
{
    if (!j)
        return;
    free(j->ns);
    free(j->peer);
    free(j->data);
    free(j);
}

static void push(job_t **head, job_t **tail, job_t *j)
{
    j->next = NULL;
    if (*tail)
        (*tail)->next = j;
    else
        *head = j;
    *tail = j;
}

static int ensure_stream(ms_offline_t *o)
{
    if (o->ready)
        return 1;
    if (!o->js && natsConnection_JetStream(&o->js, o->nc, NULL) != NATS_OK)
        return 0;
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
    /* Which peers have messages waiting, from before a restart too. */
    jsOptions jo;
    jsOptions_Init(&jo);
    char filter[200];
    ms_subject_offline_any(filter, sizeof(filter), o->cfg.prefix);
    jo.Stream.Info.SubjectsFilter = filter;
    si = NULL;
    if (js_GetStreamInfo(&si, o->js, STREAM_NAME, &jo, &ec) == NATS_OK && si) {
        pthread_mutex_lock(&o->lock);
        if (si->State.Subjects)
            for (int i = 0; i < si->State.Subjects->Count; i++)
                known_add(o, si->State.Subjects->List[i].Subject);
        o->known_loaded = 1;
        pthread_mutex_unlock(&o->lock);
    }
    jsStreamInfo_Destroy(si);
    o->ready = 1;
    ms_info("offline stream %s ready (%ld messages per peer, %ld s)", STREAM_NAME, o->cfg.max_msgs,
            o->cfg.max_age_s);
    return 1;
}

static void do_store(ms_offline_t *o, job_t *j)
{
    jsPubOptions po;
    jsPubOptions_Init(&po);
    po.MsgId = j->msg_id; /* a retried store is deduplicated by the server */
    jsPubAck *pa = NULL;
    jsErrCode ec = 0;
    natsStatus s = js_Publish(&pa, o->js, j->subject, j->data, (int)j->len, &po, &ec);
    jsPubAck_Destroy(pa);
    if (s != NATS_OK)
        ms_error("persistent emit for %s/%s not stored: %s", j->ns, j->peer, natsStatus_GetText(s));
}

/* About 30 s of attempts in all, each waiting FETCH_WAIT_MS at most. */
#define FETCH_ATTEMPTS 13
#define FETCH_WAIT_MS 2000

static int fetch_stopping(ms_offline_t *o)
{
    pthread_mutex_lock(&o->lock);
    int stop = o->stop;
    pthread_mutex_unlock(&o->lock);
    return stop;
}

/* Reads every message on the peer's subject and hands them to the loop. */
static void do_fetch(ms_offline_t *o, job_t *j)
{
    natsSubscription *sub = NULL;
    jsSubOptions so;
    jsSubOptions_Init(&so);
    so.Stream = STREAM_NAME;
    so.Ordered = true;
    so.Config.DeliverPolicy = js_DeliverAll;
    jsErrCode ec = 0;
    natsStatus s = NATS_ERR;
    /* When a NATS node dies, the stream may have no leader for 4-8 s
     * (nats-server 2.9), and for some seconds more a new consumer may still be
     * placed on the dead node, so creating it times out: retry, since the peer
     * joined only once. A healthy creation takes milliseconds. */
    jsOptions jo;
    jsOptions_Init(&jo);
    jo.Wait = FETCH_WAIT_MS;
    for (int attempt = 0; attempt < FETCH_ATTEMPTS && !fetch_stopping(o); attempt++) {
        if (attempt)
            usleep(250000);
        if ((s = js_SubscribeSync(&sub, o->js, j->subject, &jo, &so, &ec)) == NATS_OK)
            break;
        ms_warn("offline messages for %s/%s not readable yet: %s (%d)", j->ns, j->peer,
                natsStatus_GetText(s), (int)ec);
    }
    if (s != NATS_OK) {
        ms_error("cannot read offline messages for %s/%s: %s (%d); kept for its next join", j->ns,
                 j->peer, natsStatus_GetText(s), (int)ec);
        /* worth_fetching dropped the subject: without it no later join would look. */
        pthread_mutex_lock(&o->lock);
        known_add(o, j->subject);
        pthread_mutex_unlock(&o->lock);
        return;
    }
    job_t *batch = NULL, *tail = NULL;
    uint64_t last = 0;
    for (int i = 0; i < 100000; i++) {
        natsMsg *m = NULL;
        /* An empty subject has no first message: the short wait ends the loop.
         * One known to hold messages gets longer: a consumer created just after
         * a NATS node died may take seconds to deliver its first message. */
        if (natsSubscription_NextMsg(&m, sub, i == 0 && !j->expect ? 300 : 2000) != NATS_OK)
            break;
        jsMsgMetaData *meta = NULL;
        uint64_t pending = 0;
        if (natsMsg_GetMetaData(&meta, m) == NATS_OK) {
            last = meta->Sequence.Stream;
            pending = meta->NumPending;
            jsMsgMetaData_Destroy(meta);
        }
        job_t *r = calloc(1, sizeof(*r));
        if (r && (r->data = malloc((size_t)natsMsg_GetDataLength(m) + 1))) {
            r->kind = JOB_FETCH;
            r->ns = strdup(j->ns);
            r->peer = strdup(j->peer);
            r->len = (size_t)natsMsg_GetDataLength(m);
            memcpy(r->data, natsMsg_GetData(m), r->len);
            push(&batch, &tail, r);
        } else {
            job_free(r);
        }
        natsMsg_Destroy(m);
        if (pending == 0)
            break;
    }
    natsSubscription_Unsubscribe(sub);
    natsSubscription_Destroy(sub);
    if (!batch && j->expect) {
        /* Stored but not read: keep looking on the next join instead of
         * stranding the messages until a restart. */
        ms_warn("offline messages for %s/%s stored but not delivered; kept for its next join",
                j->ns, j->peer);
        pthread_mutex_lock(&o->lock);
        known_add(o, j->subject);
        pthread_mutex_unlock(&o->lock);
    }
    if (!batch)
        return;
    /* A purge marker after the batch: the loop queues it once delivered. */
    job_t *p = calloc(1, sizeof(*p));
    if (p) {
        p->kind = JOB_PURGE;
        snprintf(p->subject, sizeof(p->subject), "%s", j->subject);
        p->seq = last;
        push(&batch, &tail, p);
    }
    pthread_mutex_lock(&o->lock);
    for (job_t *r = batch, *n; r; r = n) {
        n = r->next;
        push(&o->results, &o->results_tail, r);
    }
    pthread_mutex_unlock(&o->lock);
    if (o->wake)
        o->wake(o->wake_ud);
}

static void do_purge(ms_offline_t *o, job_t *j)
{
    jsOptions jo;
    jsOptions_Init(&jo);
    jo.Stream.Purge.Subject = j->subject;
    jo.Stream.Purge.Sequence = j->seq + 1; /* up to, not including */
    jsErrCode ec = 0;
    if (js_PurgeStream(o->js, STREAM_NAME, &jo, &ec) != NATS_OK)
        ms_warn("offline messages on %s not purged; they may be delivered again (deduplicated "
                "by msgId)",
                j->subject);
}

/* Once the subject list is loaded, a fetch for a peer with nothing stored is
 * skipped (joins racing the start-up load queue such fetches). */
static int worth_fetching(ms_offline_t *o, job_t *j)
{
    pthread_mutex_lock(&o->lock);
    known_t *k = NULL;
    HASH_FIND_STR(o->known, j->subject, k);
    int yes = k || !o->known_loaded;
    j->expect = k != NULL;
    if (k)
        known_del(o, j->subject);
    pthread_mutex_unlock(&o->lock);
    return yes;
}

static void *worker(void *arg)
{
    ms_offline_t *o = arg;
    ensure_stream(o); /* loads the subject list before the first join needs it */
    for (;;) {
        pthread_mutex_lock(&o->lock);
        while (!o->jobs && !o->stop)
            pthread_cond_wait(&o->cond, &o->lock);
        if (o->stop && !o->jobs) {
            pthread_mutex_unlock(&o->lock);
            return NULL;
        }
        job_t *j = o->jobs;
        o->jobs = j->next;
        if (!o->jobs)
            o->jobs_tail = NULL;
        int stopping = o->stop;
        pthread_mutex_unlock(&o->lock);
        /* Stopping: stores are finished (they are the only durable work);
         * fetches and purges are for sessions that are going away anyway. */
        if (stopping && j->kind != JOB_STORE) {
            job_free(j);
            continue;
        }
        if (j->kind == JOB_FETCH && o->ready && !worth_fetching(o, j)) {
            job_free(j);
            continue;
        }
        if (ensure_stream(o)) {
            if (j->kind == JOB_STORE)
                do_store(o, j);
            else if (j->kind == JOB_FETCH)
                do_fetch(o, j);
            else
                do_purge(o, j);
        } else if (j->kind == JOB_STORE) {
            ms_error("persistent emit for %s/%s lost: JetStream unavailable", j->ns, j->peer);
        }
        job_free(j);
    }
}

static void enqueue(ms_offline_t *o, job_t *j)
{
    pthread_mutex_lock(&o->lock);
    push(&o->jobs, &o->jobs_tail, j);
    pthread_cond_signal(&o->cond);
    pthread_mutex_unlock(&o->lock);
}

ms_err_t ms_offline_create(const ms_offline_config_t *cfg, void (*wake)(void *), void *ud,
                           ms_offline_t **out)
{
    ms_offline_t *o = calloc(1, sizeof(*o));
    if (!o)
        return MS_ERR_NOMEM;
    o->cfg = *cfg;
    o->wake = wake;
    o->wake_ud = ud;
    pthread_mutex_init(&o->lock, NULL);
    pthread_cond_init(&o->cond, NULL);
    natsOptions *opts = NULL;
    ms_err_t err = MS_ERR_BUS;
    if (natsOptions_Create(&opts) != NATS_OK)
        goto fail;
    char *urls = strdup(cfg->nats_urls);
    const char *list[32];
    int n = 0;
    for (char *save = NULL, *t = urls ? strtok_r(urls, ",", &save) : NULL; t && n < 32;
         t = strtok_r(NULL, ",", &save))
        list[n++] = t;
    natsOptions_SetServers(opts, list, n);
    free(urls);
    natsOptions_SetName(opts, "meshsig-offline");
    natsOptions_SetMaxReconnect(opts, -1);
    natsOptions_SetReconnectWait(opts, 250);
    natsOptions_SetRetryOnFailedConnect(opts, true, NULL, NULL);
    natsStatus s = natsConnection_Connect(&o->nc, opts);
    natsOptions_Destroy(opts);
    if (s != NATS_OK && s != NATS_NOT_YET_CONNECTED)
        goto fail;
    if (pthread_create(&o->thread, NULL, worker, o) != 0)
        goto fail;
    o->started = 1;
    *out = o;
    return MS_OK;
fail:
    ms_offline_destroy(o);
    return err;
}

void ms_offline_destroy(ms_offline_t *o)
{
    if (!o)
        return;
    if (o->started) {
        pthread_mutex_lock(&o->lock);
        o->stop = 1;
        pthread_cond_signal(&o->cond);
        pthread_mutex_unlock(&o->lock);
        pthread_join(o->thread, NULL);
    }
    for (job_t *j = o->jobs, *n; j; j = n) {
        n = j->next;
        job_free(j);
    }
    for (job_t *j = o->results, *n; j; j = n) {
        n = j->next;
        job_free(j);
    }
    known_t *k, *tmp;
    HASH_ITER(hh, o->known, k, tmp)
    {
        HASH_DEL(o->known, k);
        free(k->subject);
        free(k);
    }
    jsCtx_Destroy(o->js);
    if (o->nc) {
        natsConnection_Close(o->nc);
        natsConnection_Destroy(o->nc);
    }
    pthread_cond_destroy(&o->cond);
    pthread_mutex_destroy(&o->lock);
    free(o);
}

ms_err_t ms_offline_store(ms_offline_t *o, const char *ns, const char *peer,
                          const Meshsig__V1__Emit *emit, int requeue)
{
    job_t *j = calloc(1, sizeof(*j));
    if (!j)
        return MS_ERR_NOMEM;
    j->kind = JOB_STORE;
    j->ns = strdup(ns);
    j->peer = strdup(peer);
    j->len = meshsig__v1__emit__get_packed_size(emit);
    j->data = malloc(j->len ? j->len : 1);
    if (!j->ns || !j->peer || !j->data) {
        job_free(j);
        return MS_ERR_NOMEM;
    }
    meshsig__v1__emit__pack(emit, j->data);
    /* A requeued message gets a fresh dedup id: its first store is still in
     * the server's duplicate window although it was purged. */
    if (requeue)
        snprintf(j->msg_id, sizeof(j->msg_id), "%.24s:%x", emit->msg_id, (unsigned)rand());
    else
        snprintf(j->msg_id, sizeof(j->msg_id), "%s", emit->msg_id);
    subject_for(o, ns, peer, j->subject, sizeof(j->subject));
    pthread_mutex_lock(&o->lock);
    known_add(o, j->subject);
    pthread_mutex_unlock(&o->lock);
    enqueue(o, j);
    return MS_OK;
}

void ms_offline_fetch(ms_offline_t *o, const char *ns, const char *peer)
{
    char subject[200];
    subject_for(o, ns, peer, subject, sizeof(subject));
    pthread_mutex_lock(&o->lock);
    known_t *k = NULL;
    HASH_FIND_STR(o->known, subject, k);
    /* Before the stream's subject list is loaded, every join has to look.
     * The worker consumes the entry when it fetches (worth_fetching). */
    int look = k || !o->known_loaded;
    pthread_mutex_unlock(&o->lock);
    if (!look)
        return;
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

void ms_offline_drain(ms_offline_t *o,
                      void (*deliver)(const char *ns, const char *peer,
                                      const Meshsig__V1__Emit *emit, void *ud),
                      void *ud)
{
    pthread_mutex_lock(&o->lock);
    job_t *r = o->results;
    o->results = o->results_tail = NULL;
    pthread_mutex_unlock(&o->lock);
    while (r) {
        job_t *n = r->next;
        if (r->kind == JOB_PURGE) {
            enqueue(o, r); /* delivered: now the stream may forget them */
        } else {
            Meshsig__V1__Emit *e = (Meshsig__V1__Emit *)ms_pblimit_unpack(
                &meshsig__v1__emit__descriptor, r->data, r->len, &ms_pblimit_bus, NULL, 0);
            if (e) {
                deliver(r->ns, r->peer, e, ud);
                meshsig__v1__emit__free_unpacked(e, NULL);
            }
            job_free(r);
        }
        r = n;
    }
}

int ms_offline_ready(ms_offline_t *o)
{
    return o && o->ready;
}
