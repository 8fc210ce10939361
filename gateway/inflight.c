/* SPDX-License-Identifier: Apache-2.0 */
/* Client requests in flight to a shard's owner, kept until answered and sent again to a new owner.
 *
 * A request goes to the shard subject fire-and-forget; the owner answers on
 * this gateway's subject. While the shard changes hands a request can fall
 * into a gap: the old owner has released the lease (SIGTERM hand-off) or died
 * (kill -9), the new one has not claimed it yet, and every coordinator drops
 * what is not its own; or the old owner dropped the requests it held for a
 * rebuild. The client would then wait for an answer that never comes.
 *
 * So every client request with an id that goes to the owner is kept here (its
 * packed bytes) until a message carrying that id comes back for the session.
 * Each carries the owner epoch this gateway knew for the shard when it was
 * sent, and resend=1. When the gateway learns a newer epoch for the shard (a
 * batch from the new owner, or its ResyncRequest, after this gateway's
 * report), every kept request of the shard sent at an older epoch is sent
 * again, in the order they were first sent, stamped with the new epoch.
 *
 * Exactly once. The owner drops a request with resend=1 stamped with an epoch
 * older than its own (cluster.c): its gateway sends it again, in order, once it
 * learns the new epoch, so the new owner applies only the copy sent again.
 * What the old owner applied it also answered, and those answers reach the
 * gateway before the new epoch does: an owner writes its output out before it
 * releases a lease (cluster.c release), and the new owner's first message
 * comes after its claim, which comes after that release. A kill -9 leaves one
 * gap: a request the dying owner applied whose answer was still in its
 * process is applied again by the new owner (at least once there).
 *
 * No answer. A request (or its answer) can also be lost with no change of
 * owner: after a NATS node loss the gateway and the owner reconnect to
 * different nodes, and until the route between them has carried the owner's
 * subscription, nats-server drops what the gateway publishes for want of
 * interest (the answer's way back has the same gap). So a kept request with
 * no answer is sent again, unchanged but for its attempt number, after
 * RETRY_FIRST_US, then after twice as long each time up to RETRY_MAX_US;
 * after MAX_TRIES copies with no answer the client gets UNAVAILABLE, saying
 * the request may have been applied (never a silent drop). The owner applies
 * a request once per (gateway, session, client id) and answers a copy with
 * the answer it gave (coordinator/dedupe.c), or, while it is still working on
 * it (an answer that waits for another peer), with Delivery.received: the
 * copies then stop until the shard changes hands. Both name the copy's req_id
 * (Delivery.req_id): a client may use an id again once answered, and the answer
 * to an old request's copy can come after the new request went out under that
 * id; it neither answers nor marks the new one (before, the client got the old
 * answer as the new request's and the new request was forgotten: no copies, not
 * sent again to a new owner). nats-server's no-responders
 * status is no signal for this: every coordinator subscribes to every shard
 * subject, so another coordinator on the gateway's node is interest enough,
 * and the message is lost to the owner all the same.
 *
 * Only to an owner that applies copies once. The owner's messages carry its bus version
 * (GatewayBatch, ResyncRequest): a copy goes only to an owner whose version at the shard's
 * newest epoch is known to be bus 1.1 or later (MS_BUS_COPIES_ONCE). A 1.0 owner (a rolling
 * upgrade done in the wrong order: gateways before coordinators) ignores attempt, epoch and
 * resend and applies every copy; so does any owner the gateway has not heard from at that
 * epoch yet. For those no copy is sent, neither for want of an answer nor to a new owner: the
 * request goes once, and without an answer its client gets the same UNAVAILABLE at the same
 * time, saying it may have been applied (at most once instead of twice).
 *
 * Bounded: MAX_PER_SESSION per session and MAX_TOTAL per gateway; a request
 * over either is not sent but answered UNAVAILABLE at once (retryable), so it
 * too gets exactly one answer (a client at the default rate of 200 a second
 * reaches 1024 after five seconds without an owner). A request unanswered for
 * MAX_AGE_US is forgotten (the client's own timeout has long passed). Service
 * thread only. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "log.h"
#include "subject.h"
#include "uthash_keyed.h"

#define MAX_PER_SESSION 1024
#define MAX_TOTAL (256u * 1024u)
#define ID_MAX 256 /* longer client ids are not kept */
#define KEY_MAX (ID_MAX + 24)
#define MAX_AGE_US (130u * 1000000u) /* the longest request timeout (120 s) and a margin */
/* Copies of an unanswered request at 0.5, 1.5, 3.5 and 7.5 s, UNAVAILABLE at 11.5 s: within the
 * JS SDK's default requestTimeoutMs (15 s), and after a takeover's (a lease of 1.2 s). */
#define RETRY_FIRST_US (500u * 1000u)
#define RETRY_MAX_US (4u * 1000000u)
#define MAX_TRIES 4

typedef struct inflight {
    UT_hash_handle hh;              /* gw->inflight.by_key: "<session>:<client id>" */
    struct inflight *prev, *next;   /* send order, whole gateway */
    struct inflight *sprev, *snext; /* this session's */
    struct per_session *ps;
    uint64_t epoch;   /* the epoch it was last sent at */
    uint64_t sent_us; /* first sent: the lists are in this order */
    uint64_t next_us; /* when to send a copy if no answer came by then */
    uint64_t req;     /* its req_id's counter ("<gateway id>/<req>"), the same in every copy */
    uint32_t shard;
    uint8_t tries;    /* copies sent at this epoch for want of an answer */
    uint8_t received; /* the owner has it and answers later: no copies until a new epoch */
    uint8_t
        withheld; /* a copy was not sent (an owner of bus 1.0): none is, ever; give_up says so */
    size_t len;
    char *key;
    uint8_t data[];
} inflight_t;

/* The requests of one session, only for sessions that have some. */
typedef struct per_session {
    UT_hash_handle hh; /* by session id */
    uint64_t session;
    inflight_t *head;
    size_t n;
} per_session_t;

struct ms_gw_inflight {
    inflight_t *by_key;
    per_session_t *sessions;
    inflight_t *head, *tail;
    size_t n;        /* kept requests, all sessions */
    uint64_t *known; /* per shard: the newest owner epoch seen */
    uint32_t *ver;   /* per shard: the bus version of that epoch's owner (0: not heard from) */
    uint32_t n_shards;
};

/* "<session>:<client id>" (cut at cap - 1), by hand: once per request and once per answer. */
static size_t make_key(char *buf, size_t cap, uint64_t session, const char *cid)
{
    char digits[20];
    size_t n = 0, k = 0;
    for (uint64_t v = session; v || !n; v /= 10)
        digits[n++] = (char)('0' + v % 10);
    while (n)
        buf[k++] = digits[--n];
    buf[k++] = ':';
    size_t cl = strlen(cid);
    if (cl > cap - 1 - k)
        cl = cap - 1 - k;
    memcpy(buf + k, cid, cl);
    k += cl;
    buf[k] = '\0';
    return k;
}

ms_err_t ms_gw_inflight_init(ms_gateway_t *gw)
{
    ms_gw_inflight_t *f = calloc(1, sizeof(*f));
    if (!f || !(f->known = calloc((size_t)gw->cfg->shards, sizeof(*f->known))) ||
        !(f->ver = calloc((size_t)gw->cfg->shards, sizeof(*f->ver)))) {
        if (f)
            free(f->known);
        free(f);
        return MS_ERR_NOMEM;
    }
    f->n_shards = (uint32_t)gw->cfg->shards;
    gw->inflight = f;
    return MS_OK;
}

static void unlink_free(ms_gw_inflight_t *f, inflight_t *e)
{
    HASH_DEL(f->by_key, e);
    if (e->prev)
        e->prev->next = e->next;
    else
        f->head = e->next;
    if (e->next)
        e->next->prev = e->prev;
    else
        f->tail = e->prev;
    per_session_t *ps = e->ps;
    if (e->sprev)
        e->sprev->snext = e->snext;
    else
        ps->head = e->snext;
    if (e->snext)
        e->snext->sprev = e->sprev;
    f->n--;
    if (--ps->n == 0) {
        HASH_DEL(f->sessions, ps);
        free(ps);
    }
    free(e->key);
    free(e);
}

void ms_gw_inflight_cleanup(ms_gateway_t *gw)
{
    ms_gw_inflight_t *f = gw->inflight;
    if (!f)
        return;
    while (f->head)
        unlink_free(f, f->head);
    free(f->known);
    free(f->ver);
    free(f);
    gw->inflight = NULL;
}

uint64_t ms_gw_inflight_epoch(const ms_gateway_t *gw, uint32_t shard)
{
    const ms_gw_inflight_t *f = gw->inflight;
    return f && shard < f->n_shards ? f->known[shard] : 0;
}

int ms_gw_inflight_room(ms_gateway_t *gw, const ms_session_t *s, const char *cid)
{
    ms_gw_inflight_t *f = gw->inflight;
    if (!f || !cid || !*cid || strlen(cid) > ID_MAX)
        return 0;
    per_session_t *ps;
    HASH_FIND(hh, f->sessions, &s->id, sizeof(s->id), ps);
    if ((ps && ps->n >= MAX_PER_SESSION) || f->n >= MAX_TOTAL)
        return -1;
    char key[KEY_MAX];
    size_t kl = make_key(key, sizeof(key), s->id, cid);
    inflight_t *e;
    HASH_FIND(hh, f->by_key, key, kl, e);
    return !e; /* an id reused while in flight: its answers cannot be told apart */
}

void ms_gw_inflight_add(ms_gateway_t *gw, const ms_session_t *s, const char *cid,
                        const uint8_t *data, size_t len, uint64_t epoch, uint64_t req)
{
    ms_gw_inflight_t *f = gw->inflight;
    char key[KEY_MAX];
    size_t kl = make_key(key, sizeof(key), s->id, cid);
    inflight_t *e = malloc(sizeof(*e) + len);
    per_session_t *ps;
    HASH_FIND(hh, f->sessions, &s->id, sizeof(s->id), ps);
    if (!ps && (ps = calloc(1, sizeof(*ps)))) {
        ps->session = s->id;
        HASH_ADD(hh, f->sessions, session, sizeof(ps->session), ps);
    }
    if (!e || !ps || !(e->key = malloc(kl + 1))) {
        /* The owner drops it at a newer epoch, and nothing sends it again. */
        ms_warn("out of memory keeping a request of session %llu for a new owner",
                (unsigned long long)s->id);
        free(e);
        if (ps && !ps->n) {
            HASH_DEL(f->sessions, ps);
            free(ps);
        }
        return;
    }
    memcpy(e->key, key, kl + 1);
    e->ps = ps;
    e->epoch = epoch;
    e->req = req;
    e->sent_us = ms_clock_mono_us();
    e->next_us = e->sent_us + RETRY_FIRST_US;
    e->tries = 0;
    e->received = 0;
    e->withheld = 0;
    e->shard = s->shard;
    e->len = len;
    memcpy(e->data, data, len);
    e->next = NULL;
    e->prev = f->tail;
    if (f->tail)
        f->tail->next = e;
    else
        f->head = e;
    f->tail = e;
    e->sprev = NULL;
    e->snext = ps->head;
    if (ps->head)
        ps->head->sprev = e;
    ps->head = e;
    ps->n++;
    f->n++;
    HASH_ADD_KEYPTR(hh, f->by_key, e->key, kl, e);
}

static inflight_t *find(ms_gw_inflight_t *f, const ms_session_t *s, const char *id)
{
    if (!f || !f->by_key || strlen(id) > ID_MAX)
        return NULL;
    char key[KEY_MAX];
    size_t kl = make_key(key, sizeof(key), s->id, id);
    inflight_t *e;
    HASH_FIND(hh, f->by_key, key, kl, e);
    return e;
}

/* Whether req_id ("<gateway id>/<counter>", from a copy's answer) names e's request; any
 * request with the id when there is none (an owner that does not say) or it is not one of ours. */
static int is_req(const inflight_t *e, const char *req_id)
{
    const char *slash = req_id ? strrchr(req_id, '/') : NULL;
    if (!slash || !slash[1])
        return 1;
    uint64_t v = 0;
    for (const char *p = slash + 1; *p; p++) {
        if (*p < '0' || *p > '9' || v > (UINT64_MAX - 9) / 10)
            return 1;
        v = v * 10 + (uint64_t)(*p - '0');
    }
    return v == e->req;
}

int ms_gw_inflight_answered(ms_gateway_t *gw, const ms_session_t *s, const char *id,
                            const char *req_id)
{
    inflight_t *e = find(gw->inflight, s, id);
    if (!e || !is_req(e, req_id))
        return 0; /* not kept, or kept for a newer request with the same id */
    unlink_free(gw->inflight, e);
    return 1;
}

void ms_gw_inflight_received(ms_gateway_t *gw, const ms_session_t *s, const char *id,
                             const char *req_id)
{
    inflight_t *e = find(gw->inflight, s, id);
    if (e && is_req(e, req_id))
        e->received = 1;
}

void ms_gw_inflight_forget(ms_gateway_t *gw, const ms_session_t *s)
{
    ms_gw_inflight_t *f = gw->inflight;
    if (!f || !f->sessions)
        return;
    per_session_t *ps;
    HASH_FIND(hh, f->sessions, &s->id, sizeof(s->id), ps);
    while (ps) {
        /* The last one frees ps. */
        int last = ps->n == 1;
        unlink_free(f, ps->head);
        if (last)
            break;
    }
}

/* Publishes e's request again, stamped with epoch and attempt. */
static ms_err_t send_copy(ms_gateway_t *gw, inflight_t *e, uint64_t epoch, uint32_t attempt)
{
    Meshsig__Bus__ShardRequest *req = meshsig__bus__shard_request__unpack(NULL, e->len, e->data);
    if (!req)
        return MS_ERR_INVAL;
    req->epoch = epoch;
    req->attempt = attempt;
    size_t len = meshsig__bus__shard_request__get_packed_size(req);
    uint8_t *buf = malloc(len ? len : 1);
    ms_err_t err = MS_ERR_NOMEM;
    if (buf) {
        char subj[160];
        ms_subject_shard(subj, sizeof(subj), gw->cfg->prefix, e->shard);
        meshsig__bus__shard_request__pack(req, buf);
        err = ms_bus_publish(gw->bus, subj, NULL, buf, len);
    }
    free(buf);
    meshsig__bus__shard_request__free_unpacked(req, NULL);
    return err;
}

void ms_gw_inflight_new_epoch(ms_gateway_t *gw, uint32_t shard, uint64_t epoch,
                              uint32_t bus_version)
{
    ms_gw_inflight_t *f = gw->inflight;
    if (!f || shard >= f->n_shards || epoch < f->known[shard])
        return;
    if (epoch == f->known[shard]) {
        /* The same owner (one per epoch); the first message from it at this epoch may come
         * after a ResyncRequest that named it, or after none at epoch 0. */
        if (epoch)
            f->ver[shard] = bus_version;
        return;
    }
    f->known[shard] = epoch;
    f->ver[shard] = bus_version;
    if (!ms_busver_copies_once(bus_version)) {
        /* An owner that would apply a copy of what it may have had already: the kept requests
         * stay unsent, on their schedule (ms_gw_inflight_sweep answers them UNAVAILABLE). */
        size_t kept = 0;
        for (inflight_t *e = f->head; e; e = e->next)
            if (e->shard == shard && e->epoch < epoch) {
                e->withheld = 1;
                kept++;
            }
        if (kept) {
            char v[16];
            ms_busver_str(bus_version, v, sizeof(v));
            ms_warn("shard %u has a new owner (epoch %llu) of bus %s, which applies every copy "
                    "of a request: %zu unanswered requests not sent again (upgrade coordinators "
                    "before gateways)",
                    shard, (unsigned long long)epoch, v, kept);
        }
        return;
    }
    size_t n = 0, failed = 0;
    uint64_t now = ms_clock_mono_us();
    for (inflight_t *e = f->head; e; e = e->next) {
        /* One withheld before may have been applied by a 1.0 owner: at most once. */
        if (e->shard != shard || e->epoch >= epoch || e->withheld)
            continue;
        /* A new owner: copies and their limit start again. */
        e->tries = 0;
        e->received = 0;
        e->next_us = now + RETRY_FIRST_US;
        if (send_copy(gw, e, epoch, 0) == MS_OK) {
            e->epoch = epoch;
            n++;
        } else {
            failed++;
        }
    }
    gw->n_resent += n;
    if (n || failed)
        ms_info("shard %u has a new owner (epoch %llu): %zu unanswered requests sent again%s",
                shard, (unsigned long long)epoch, n, failed ? ", some could not be" : "");
}

/* The request gets UNAVAILABLE (its session still has it) and is forgotten. */
static void give_up(ms_gateway_t *gw, ms_gw_inflight_t *f, inflight_t *e, const char *why)
{
    ms_session_t *s = ms_gw_session_find(gw, e->ps->session);
    const char *cid = strchr(e->key, ':') + 1;
    gw->n_inflight_gave_up++;
    if (s)
        ms_gw_send_error(gw, s, cid, ERR(UNAVAILABLE),
                         "%s from the namespace's owner; the request may or may not have been "
                         "applied",
                         why);
    unlink_free(f, e);
}

void ms_gw_inflight_sweep(ms_gateway_t *gw, uint64_t now_us)
{
    ms_gw_inflight_t *f = gw->inflight;
    if (!f)
        return;
    /* Send order is age order: the oldest are at the head. */
    while (f->head && now_us - f->head->sent_us > MAX_AGE_US)
        give_up(gw, f, f->head, "no answer within 130 s");
    /* Only requests older than RETRY_FIRST_US can be due. */
    for (inflight_t *e = f->head, *next; e && now_us - e->sent_us >= RETRY_FIRST_US; e = next) {
        next = e->next;
        if (e->received || e->next_us > now_us)
            continue;
        int may_copy = ms_busver_copies_once(f->ver[e->shard]);
        if (e->tries >= MAX_TRIES) {
            give_up(gw, f, e,
                    e->withheld ? "no answer within 11.5 s (copies withheld: the owner is not "
                                  "known to apply a copy once)"
                                : "no answer to 5 copies in 11.5 s");
            continue;
        }
        e->tries++;
        uint64_t delay = (uint64_t)RETRY_FIRST_US << e->tries;
        e->next_us = now_us + (delay < RETRY_MAX_US ? delay : RETRY_MAX_US);
        if (!may_copy || e->withheld) {
            /* The same schedule, so the same UNAVAILABLE at the same time, without the copy. */
            e->withheld = 1;
            gw->n_inflight_withheld++;
            continue;
        }
        /* At the newest epoch known: one that could not be sent at its new epoch goes now. */
        if (f->known[e->shard] > e->epoch)
            e->epoch = f->known[e->shard];
        if (send_copy(gw, e, e->epoch, e->tries) == MS_OK)
            gw->n_inflight_retried++;
    }
}
