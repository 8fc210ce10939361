/* SPDX-License-Identifier: Apache-2.0 */
/* The gateway: lws service thread owning every session, bridged to NATS through a mailbox.
 *
 * Threads (DESIGN.md §8): the libwebsockets service thread owns every session.
 * cnats delivers on its own threads; those only push into the mailbox and call
 * lws_cancel_service(), and the service thread drains the mailbox in
 * LWS_CALLBACK_EVENT_WAIT_CANCELLED. Frames are written only in
 * LWS_CALLBACK_SERVER_WRITEABLE, from a bounded queue, all that is queued
 * (up to WRITE_BATCH bytes) in one write.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <jansson.h>
#include <libwebsockets.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <uthash.h>

#include "auth.h"
#include "bus.h"
#include "busver.h"
#include "bus.pb-c.h"
#include "client.pb-c.h"
#include "codec.h"
#include "evloop.h"
#include "gateway.h"
#include "hash.h"
#include "jsonscan.h"
#include "log.h"
#include "resume.h"
#include "session.h"
#include "version.h"

#define ERR(code) MESHSIG__V1__ERROR_CODE__##code
#define CLOSE_TOO_BIG 1009
#define CLOSE_POLICY 1008
#define CLOSE_GOING_AWAY 1001
#define WRITE_BATCH (32 * 1024) /* bytes of frames per client write */

struct ms_gateway {
    const ms_gw_config_t *cfg;
    char id[96];
    char subject[160]; /* <prefix>.gw.<id>: deliveries and join replies */
    char hb_subject[160];
    char resync_subject[160];
    struct lws_context *ctx;
    ms_evloop_t *loop;                 /* under ctx: libev (epoll) or lws's poll() */
    struct lws_http_mount mounts[3];   /* /healthz, /metrics, then files at / */
    struct lws_protocols protocols[4]; /* the table below with --rx-buffer */
    ms_bus_t *bus;
    ms_mailbox_t *inbox;
    ms_auth_t *auth;
    unsigned char resume_key[32]; /* HMAC-SHA256 key; all zero: resume disabled */
    int resume_on;
    ms_session_t *sessions;                    /* uthash by id */
    ms_ratelimit_rule_t rule_msgs, rule_bytes; /* per session, from the config */
    ms_session_t *by_peer; /* joined sessions by (namespace, peer id): hh_peer */
    size_t n_sessions;
    uint64_t next_session;
    uint64_t next_req;
    uint64_t *epochs; /* highest epoch seen per shard: older batches are fenced off */
    uint64_t started_ms;
    lws_sorted_usec_list_t sul_heartbeat;
    lws_sorted_usec_list_t sul_sweep;
    lws_dll2_owner_t hello_waits, join_waits; /* FIFO deadline lists */
    lws_dll2_owner_t idle, pinged;            /* FIFO liveness lists */
    volatile sig_atomic_t stop;
    int draining; /* SIGTERM: no new sessions, the others told to reconnect elsewhere */
    /* scratch buffers, service thread only */
    char *out;
    size_t out_cap;
    uint8_t *pub;
    size_t pub_cap;
    unsigned char ping[LWS_PRE + 2]; /* "ms": lws reports only pongs with a payload */
    unsigned char *wbuf;             /* frames for one client write */
    size_t wbuf_cap;
    /* relay latency: client frame at one gateway -> delivery at another */
    uint64_t lat_buckets[12]; /* cumulative le= bounds in lat_bounds_us */
    uint64_t lat_count, lat_sum_us;
    uint64_t frame_received_us; /* wall clock of the frame being handled */
    /* counters */
    uint64_t n_in, n_out, n_dropped_epoch, n_dropped_session, n_closed_slow, n_rate_limited;
    uint64_t n_signals_local; /* relayed here between two sessions of this gateway */
    ms_busver_t busver;       /* coordinators of another bus major, refused */
};

static uint64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static uint64_t wall_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static const uint64_t lat_bounds_us[12] = {100,   250,   500,   1000,   2500,   5000,
                                           10000, 25000, 50000, 100000, 250000, 1000000};

/* Wall clocks: exact on one host, off by the clock skew between hosts. */
static void record_latency(ms_gateway_t *gw, uint64_t origin_us)
{
    uint64_t now = wall_us();
    if (!origin_us || now < origin_us)
        return;
    uint64_t d = now - origin_us;
    for (int i = 0; i < 12; i++)
        if (d <= lat_bounds_us[i])
            gw->lat_buckets[i]++;
    gw->lat_count++;
    gw->lat_sum_us += d;
}

static uint64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* ---- writing to clients ------------------------------------------------ */

static void session_close(ms_session_t *s, uint16_t code)
{
    if (s->closing)
        return;
    s->closing = 1;
    s->close_code = code;
    lws_callback_on_writable(s->wsi);
}

/* Queues one encoded message (in the session's encoding) for the client. */
static void queue_frame(ms_gateway_t *gw, ms_session_t *s, const void *data, size_t len)
{
    if (ms_session_queue(s, data, len, s->binary, (size_t)gw->cfg->max_queue) != 0) {
        gw->n_closed_slow++;
        ms_warn("session %llu (%s): outbound queue over %ld bytes; closing the slow reader",
                (unsigned long long)s->id, s->peer_id ? s->peer_id : "-", gw->cfg->max_queue);
        session_close(s, CLOSE_POLICY);
        return;
    }
    gw->n_out++;
    lws_callback_on_writable(s->wsi);
}

/* Encodes msg in the session's encoding and queues it. */
static void send_msg(ms_gateway_t *gw, ms_session_t *s, const Meshsig__V1__ServerMessage *msg)
{
    if (s->closing)
        return;
    size_t len;
    const void *data;
    if (s->binary) {
        len = meshsig__v1__server_message__get_packed_size(msg);
        if (len > gw->out_cap) {
            char *nb = realloc(gw->out, len);
            if (!nb)
                goto fail;
            gw->out = nb;
            gw->out_cap = len;
        }
        meshsig__v1__server_message__pack(msg, (uint8_t *)gw->out);
    } else {
        len = 0;
        if (ms_codec_append_json(&msg->base, &gw->out, &len, &gw->out_cap) != MS_OK)
            goto fail;
    }
    data = gw->out;
    queue_frame(gw, s, data, len);
    return;
fail:
    ms_error("cannot encode a message for session %llu", (unsigned long long)s->id);
}

static void send_error(ms_gateway_t *gw, ms_session_t *s, const char *id,
                       Meshsig__V1__ErrorCode code, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

static void send_error(ms_gateway_t *gw, ms_session_t *s, const char *id,
                       Meshsig__V1__ErrorCode code, const char *fmt, ...)
{
    char text[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    Meshsig__V1__Error e = MESHSIG__V1__ERROR__INIT;
    e.code = code;
    e.message = text;
    Meshsig__V1__ServerMessage m = MESHSIG__V1__SERVER_MESSAGE__INIT;
    m.id = (char *)(id ? id : "");
    m.msg_case = MESHSIG__V1__SERVER_MESSAGE__MSG_ERROR;
    m.error = &e;
    send_msg(gw, s, &m);
}

/* ---- publishing to the owner of a shard -------------------------------- */

static int publish_request(ms_gateway_t *gw, ms_session_t *s, Meshsig__Bus__ShardRequest *req,
                           int with_reply)
{
    char subj[160], rid[128];
    snprintf(rid, sizeof(rid), "%s/%llu", gw->id, (unsigned long long)++gw->next_req);
    req->req_id = rid;
    req->gateway_id = gw->id;
    req->session = s->id;
    req->namespace_ = s->ns;
    req->peer_id = s->peer_id ? s->peer_id : (char *)"";
    req->received_us = gw->frame_received_us;
    req->bus_version = MS_BUS_VERSION;
    size_t len = meshsig__bus__shard_request__get_packed_size(req);
    if (len > gw->pub_cap) {
        uint8_t *nb = realloc(gw->pub, len);
        if (!nb)
            return -1;
        gw->pub = nb;
        gw->pub_cap = len;
    }
    meshsig__bus__shard_request__pack(req, gw->pub);
    if (req->op_case == MESHSIG__BUS__SHARD_REQUEST__OP_JOIN) {
        /* Kept for re-sending: the owner answers a repeated join once. */
        free(s->join_req);
        s->join_req = malloc(len ? len : 1);
        if (s->join_req)
            memcpy(s->join_req, gw->pub, len);
        s->join_req_len = s->join_req ? len : 0;
    }
    ms_bus_subject_shard(subj, sizeof(subj), gw->cfg->prefix, s->shard);
    return ms_bus_publish(gw->bus, subj, with_reply ? gw->subject : NULL, gw->pub, len) == MS_OK
               ? 0
               : -1;
}

static void publish_leave(ms_gateway_t *gw, ms_session_t *s, const char *reason)
{
    Meshsig__Bus__Leave l = MESHSIG__BUS__LEAVE__INIT;
    l.reason = (char *)reason;
    Meshsig__Bus__ShardRequest req = MESHSIG__BUS__SHARD_REQUEST__INIT;
    req.op_case = MESHSIG__BUS__SHARD_REQUEST__OP_LEAVE;
    req.leave = &l;
    if (publish_request(gw, s, &req, 0) != 0)
        ms_warn("leave of %s/%s not published", s->ns, s->peer_id ? s->peer_id : "?");
}

/* ---- deadlines -------------------------------------------------------------- */

static void deadline_arm(ms_gateway_t *gw, ms_session_t *s, lws_dll2_owner_t *list,
                         uint64_t after_us)
{
    lws_dll2_remove(&s->deadline_node);
    s->deadline_us = now_us() + after_us;
    lws_dll2_add_tail(&s->deadline_node, list);
}

static void deadline_cancel(ms_session_t *s)
{
    lws_dll2_remove(&s->deadline_node);
}

/* ---- liveness ----------------------------------------------------------------
 * lws's own idle policy (retry_and_idle_policy) keeps one timer per connection
 * in a sorted list: every new connection walked all of them (a third of the
 * gateway's CPU while 19k clients connected). All sessions share one ping
 * delay, so two FIFO lists stay ordered and every step is O(1). */

static void idle_touch(ms_gateway_t *gw, ms_session_t *s)
{
    s->last_rx_us = now_us();
    lws_dll2_remove(&s->idle_node);
    lws_dll2_add_tail(&s->idle_node, &gw->idle);
}

static void idle_sweep(ms_gateway_t *gw, uint64_t now)
{
    uint64_t ping_us = (uint64_t)gw->cfg->idle_ping_ms * 1000u;
    uint64_t drop_us = (uint64_t)gw->cfg->idle_timeout_ms * 1000u;
    if (!ping_us || !drop_us)
        return;
    for (int n = 0; n < 100000; n++) {
        lws_dll2_t *head = lws_dll2_get_head(&gw->pinged);
        if (!head)
            break;
        ms_session_t *s = lws_container_of(head, ms_session_t, idle_node);
        if (now - s->last_rx_us < drop_us)
            break;
        lws_dll2_remove(&s->idle_node);
        ms_info("session %llu (%s): silent for %ld ms; dropped", (unsigned long long)s->id,
                s->peer_id ? s->peer_id : "-", gw->cfg->idle_timeout_ms);
        lws_set_timeout(s->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
    }
    for (int n = 0; n < 100000; n++) {
        lws_dll2_t *head = lws_dll2_get_head(&gw->idle);
        if (!head)
            break;
        ms_session_t *s = lws_container_of(head, ms_session_t, idle_node);
        if (now - s->last_rx_us < ping_us)
            break;
        lws_dll2_remove(&s->idle_node);
        lws_dll2_add_tail(&s->idle_node, &gw->pinged);
        s->ping_due = 1;
        lws_callback_on_writable(s->wsi);
    }
}

/* ---- the peer index ------------------------------------------------------ */

static uint64_t peer_key(const char *ns, const char *peer)
{
    uint64_t h = ms_fnv1a64(ns, strlen(ns) + 1); /* the NUL separates the two */
    h ^= ms_fnv1a64(peer, strlen(peer));
    return h * 0x9e3779b97f4a7c15ULL;
}

static void peer_index_remove(ms_gateway_t *gw, ms_session_t *s)
{
    if (!s->peer_indexed)
        return;
    HASH_DELETE(hh_peer, gw->by_peer, s);
    s->peer_indexed = 0;
}

/* A session that has just joined. A session still indexed under the same
 * (namespace, peer) holds a peer that was replaced or is closing: it loses
 * its entry. */
static void peer_index_add(ms_gateway_t *gw, ms_session_t *s)
{
    peer_index_remove(gw, s);
    if (!s->ns || !s->peer_id)
        return;
    s->peer_key = peer_key(s->ns, s->peer_id);
    ms_session_t *old;
    HASH_FIND(hh_peer, gw->by_peer, &s->peer_key, sizeof(s->peer_key), old);
    if (old)
        peer_index_remove(gw, old);
    HASH_ADD(hh_peer, gw->by_peer, peer_key, sizeof(s->peer_key), s);
    s->peer_indexed = 1;
}

/* The joined session of this gateway holding peer in ns, or NULL. */
static ms_session_t *peer_index_find(ms_gateway_t *gw, const char *ns, const char *peer)
{
    uint64_t key = peer_key(ns, peer);
    ms_session_t *t;
    HASH_FIND(hh_peer, gw->by_peer, &key, sizeof(key), t);
    if (!t || t->state != MS_SESSION_JOINED || t->closing || strcmp(t->peer_id, peer) ||
        strcmp(t->ns, ns))
        return NULL;
    return t;
}

/* Back to "connected, not joined": after a leave, a refused or timed-out join. */
static void session_reset(ms_gateway_t *gw, ms_session_t *s)
{
    peer_index_remove(gw, s);
    ms_session_forget_peer(s);
    s->state = MS_SESSION_NEW;
    free(s->ns);
    s->ns = NULL;
    free(s->peer_id);
    s->peer_id = NULL;
}

/* ---- hello --------------------------------------------------------------- */

static void on_deadline(ms_gateway_t *gw, ms_session_t *s)
{
    if (s->state == MS_SESSION_NEW && !s->ns) {
        /* The hello deadline: a connection that never says hello. */
        send_error(gw, s, NULL, ERR(BAD_REQUEST), "no hello within %ld ms",
                   gw->cfg->hello_timeout_ms);
        session_close(s, CLOSE_POLICY);
        return;
    }
    if (s->state != MS_SESSION_JOINING)
        return;
    if (now_us() < s->join_deadline_us && s->join_req) {
        /* No answer yet: the request or its answer may have been lost while a
         * shard changed hands. Ask again; the owner dedups on the session. */
        char subj[160];
        ms_bus_subject_shard(subj, sizeof(subj), gw->cfg->prefix, s->shard);
        ms_bus_publish(gw->bus, subj, gw->subject, s->join_req, s->join_req_len);
        deadline_arm(gw, s, &gw->join_waits, LWS_US_PER_SEC);
        return;
    }
    /* Nobody owns the shard (or it is overloaded). The session may try again. */
    send_error(gw, s, s->join_client_id, ERR(UNAVAILABLE),
               "namespace %s is not being served right now; retry", s->ns);
    publish_leave(gw, s, "join timed out"); /* in case the owner answers late */
    session_reset(gw, s);
}

/* The client's latest position, packed, for a takeover's resync report. */
static void keep_position(ms_session_t *s, const Meshsig__V1__Position *pos)
{
    free(s->hello_pos);
    s->hello_pos_len = meshsig__v1__position__get_packed_size(pos);
    if ((s->hello_pos = malloc(s->hello_pos_len ? s->hello_pos_len : 1)))
        meshsig__v1__position__pack(pos, s->hello_pos);
    else
        s->hello_pos_len = 0;
}

static void handle_hello(ms_gateway_t *gw, ms_session_t *s, const char *cid,
                         Meshsig__V1__Hello *hello)
{
    char peer[MS_AUTH_PEER_ID_MAX + 1] = "";
    if (s->state != MS_SESSION_NEW) {
        send_error(gw, s, cid, ERR(ALREADY_JOINED), "this connection has already said hello");
        return;
    }
    if (!*hello->namespace_) {
        send_error(gw, s, cid, ERR(BAD_REQUEST), "hello.namespace is required");
        return;
    }
    int resume = 0;
    if (*hello->resume_token && gw->resume_on) {
        /* A resume token stands in for the hello token: it proves the holder
         * was this peer in this namespace a moment ago. */
        ms_resume_claims_t rc;
        const char *why = NULL;
        if (ms_resume_verify(gw->resume_key, sizeof(gw->resume_key), hello->resume_token,
                             (int64_t)time(NULL), &rc, &why) != MS_OK ||
            strcmp(rc.ns, hello->namespace_)) {
            ms_info("session %llu: resume token rejected (%s)", (unsigned long long)s->id,
                    why ? why : "other namespace");
            send_error(gw, s, cid, ERR(RESUME_FAILED),
                       "invalid or expired resume token; join without it");
            return;
        }
        snprintf(peer, sizeof(peer), "%s", rc.peer_id);
        resume = 1;
    } else if (gw->auth) {
        const char *why = NULL;
        ms_err_t err = ms_auth_verify(gw->auth, hello->token, hello->namespace_,
                                      (int64_t)time(NULL), peer, &why);
        if (err == MS_ERR_FORBIDDEN) {
            send_error(gw, s, cid, ERR(FORBIDDEN), "the token does not allow namespace %s",
                       hello->namespace_);
            return;
        }
        if (err != MS_OK) {
            ms_info("session %llu: token rejected (%s)", (unsigned long long)s->id,
                    why ? why : ms_err_str(err));
            send_error(gw, s, cid, ERR(UNAUTHORIZED), "missing, invalid or expired token");
            return;
        }
        if (*hello->peer_id && strcmp(hello->peer_id, peer) != 0) {
            send_error(gw, s, cid, ERR(FORBIDDEN), "hello.peerId differs from the token's sub");
            return;
        }
    } else {
        snprintf(peer, sizeof(peer), "%s", hello->peer_id);
    }
    free(s->ns);
    s->ns = strdup(hello->namespace_);
    s->peer_id = *peer ? strdup(peer) : NULL;
    free(s->join_client_id);
    s->join_client_id = strdup(cid ? cid : "");
    if (!s->ns || !s->join_client_id) {
        send_error(gw, s, cid, ERR(INTERNAL), "out of memory");
        return;
    }
    s->shard = ms_bus_shard_of(s->ns, (uint32_t)gw->cfg->shards);
    ms_session_forget_peer(s);
    if (hello->position)
        keep_position(s, hello->position);
    if (hello->metadata) {
        s->hello_meta_len = meshsig__v1__struct__get_packed_size(hello->metadata);
        if ((s->hello_meta = malloc(s->hello_meta_len ? s->hello_meta_len : 1)))
            meshsig__v1__struct__pack(hello->metadata, s->hello_meta);
    }

    /* The owner never sees tokens. */
    char *token = hello->token, *resume_token = hello->resume_token;
    hello->token = (char *)"";
    hello->resume_token = (char *)"";
    Meshsig__Bus__Join j = MESHSIG__BUS__JOIN__INIT;
    j.peer_id = peer;
    j.hello = hello;
    j.resume = resume;
    Meshsig__Bus__ShardRequest req = MESHSIG__BUS__SHARD_REQUEST__INIT;
    req.op_case = MESHSIG__BUS__SHARD_REQUEST__OP_JOIN;
    req.join = &j;
    req.client_id = s->join_client_id;
    int rc = publish_request(gw, s, &req, 1);
    hello->token = token;
    hello->resume_token = resume_token;
    if (rc != 0) {
        send_error(gw, s, cid, ERR(UNAVAILABLE), "the message bus is unavailable; retry");
        return;
    }
    s->state = MS_SESSION_JOINING;
    s->join_deadline_us = now_us() + (uint64_t)gw->cfg->join_timeout_ms * 1000u;
    /* Retries every second; a shorter timeout than that is rounded up to the
     * next sweep after the retry, which is within 100 ms. */
    deadline_arm(gw, s, &gw->join_waits, LWS_US_PER_SEC);
}

/* ---- inbound frames ------------------------------------------------------ */

/* Memberships as the client asked for them. The owner may refuse one (a bad
 * name); a resync then offers it again and the owner refuses it again. */
static void track_request(ms_session_t *s, const Meshsig__V1__ClientMessage *cm)
{
    switch (cm->msg_case) {
    case MESHSIG__V1__CLIENT_MESSAGE__MSG_ROOM:
        if (cm->room->op_case == MESHSIG__V1__ROOM__OP_JOIN)
            ms_strset_add(&s->rooms, cm->room->join->room);
        else if (cm->room->op_case == MESHSIG__V1__ROOM__OP_LEAVE)
            ms_strset_remove(&s->rooms, cm->room->leave->room);
        break;
    case MESHSIG__V1__CLIENT_MESSAGE__MSG_SERVICE:
        if (cm->service->op_case == MESHSIG__V1__SERVICE__OP_REGISTER)
            ms_strset_add(&s->services, cm->service->register_->service);
        else if (cm->service->op_case == MESHSIG__V1__SERVICE__OP_UNREGISTER)
            ms_strset_remove(&s->services, cm->service->unregister->service);
        break;
    case MESHSIG__V1__CLIENT_MESSAGE__MSG_TOPIC:
        if (cm->topic->op_case == MESHSIG__V1__TOPIC__OP_SUBSCRIBE)
            ms_strset_add(&s->subscriptions, cm->topic->subscribe->pattern);
        else if (cm->topic->op_case == MESHSIG__V1__TOPIC__OP_UNSUBSCRIBE)
            ms_strset_remove(&s->subscriptions, cm->topic->unsubscribe->pattern);
        break;
    case MESHSIG__V1__CLIENT_MESSAGE__MSG_POSITION:
        keep_position(s, cm->position);
        break;
    default:
        break;
    }
}

/* The client's view of its edges, from the topology events it is sent. */
static void track_delivery(ms_session_t *s, const Meshsig__V1__ServerMessage *m)
{
    if (m->msg_case != MESHSIG__V1__SERVER_MESSAGE__MSG_TOPOLOGY)
        return;
    const Meshsig__V1__Topology *t = m->topology;
    if (t->event_case == MESHSIG__V1__TOPOLOGY__EVENT_CONNECT) {
        ms_strset_add(&s->neighbours, t->connect->peer);
        if (t->connect->role == MESHSIG__V1__ROLE__PARENT) {
            free(s->parent);
            s->parent = strdup(t->connect->peer);
        }
    } else if (t->event_case == MESHSIG__V1__TOPOLOGY__EVENT_DISCONNECT) {
        ms_strset_remove(&s->neighbours, t->disconnect->peer);
        if (s->parent && !strcmp(s->parent, t->disconnect->peer)) {
            free(s->parent);
            s->parent = NULL;
        }
    }
}

/* A signal between two neighbours that are both on this gateway goes straight
 * to the receiver; everything else goes through the shard's owner. Both
 * sessions must hold the edge as the owner told them: the two sides of an
 * edge change in one batch from the owner (one namespace, one shard, one
 * gateway), so they agree whenever a frame is handled. The owner is still
 * the authority: a signal this gateway cannot vouch for (another gateway, a
 * namespace whose policy allows signals to non-neighbours, an edge not yet
 * or no longer known on both sides) takes the owner's path and gets its
 * answer, so nothing is dropped here. */
static ms_session_t *local_neighbour(ms_gateway_t *gw, ms_session_t *s, const char *to)
{
    if (!*to || !s->peer_id || !ms_strset_has(&s->neighbours, to))
        return NULL;
    ms_session_t *t = peer_index_find(gw, s->ns, to);
    if (!t || t == s || !ms_strset_has(&t->neighbours, s->peer_id))
        return NULL;
    return t;
}

static int relay_local_signal(ms_gateway_t *gw, ms_session_t *s, const Meshsig__V1__Signal *sig)
{
    ms_session_t *t = local_neighbour(gw, s, sig->to);
    if (!t)
        return 0;
    Meshsig__V1__Signal out = MESHSIG__V1__SIGNAL__INIT;
    out.from = s->peer_id;
    out.payload = sig->payload;
    Meshsig__V1__ServerMessage sm = MESHSIG__V1__SERVER_MESSAGE__INIT;
    sm.msg_case = MESHSIG__V1__SERVER_MESSAGE__MSG_SIGNAL;
    sm.signal = &out;
    gw->n_signals_local++;
    record_latency(gw, gw->frame_received_us);
    send_msg(gw, t, &sm);
    return 1;
}

/* The same for JSON to JSON, without decoding the payload: a text frame that
 * is exactly {"id"?, "signal": {"to", "from"?, "payload"?}} (any order) has its
 * payload checked by the scanner and copied through. Anything the scanner
 * does not vouch for takes the full decoder, which answers errors. */
typedef struct {
    char to[129];
    const char *payload; /* NULL: none */
    size_t payload_len;
    int seen_id, seen_signal, seen_to, seen_from;
} fast_signal_t;

static int key_is(const char *k, size_t kl, const char *name)
{
    return kl == strlen(name) && !memcmp(k, name, kl);
}

/* A member of "signal": "to" (a plain string), "from" (ignored: ours), "payload". */
static const char *fast_signal_member(void *ud, const char *k, size_t kl, const char *p,
                                      const char *end)
{
    fast_signal_t *fs = ud;
    const char *v;
    size_t vl;
    int esc;
    if (key_is(k, kl, "to") && !fs->seen_to) {
        if (!(p = ms_json_scan_string(p, end, &v, &vl, &esc)) || esc || vl >= sizeof(fs->to))
            return NULL;
        memcpy(fs->to, v, vl);
        fs->to[vl] = '\0';
        fs->seen_to = 1;
        return p;
    }
    if (key_is(k, kl, "from") && !fs->seen_from) {
        fs->seen_from = 1;
        return ms_json_scan_string(p, end, &v, &vl, &esc);
    }
    if (key_is(k, kl, "payload") && !fs->payload) {
        const char *after = ms_json_scan(p, end);
        if (after) {
            fs->payload = p;
            fs->payload_len = (size_t)(after - p);
        }
        return after;
    }
    return NULL;
}

/* A member of the message: "id" (any string) and "signal", nothing else. */
static const char *fast_message_member(void *ud, const char *k, size_t kl, const char *p,
                                       const char *end)
{
    fast_signal_t *fs = ud;
    const char *v;
    size_t vl;
    int esc;
    if (key_is(k, kl, "id") && !fs->seen_id) {
        fs->seen_id = 1;
        return ms_json_scan_string(p, end, &v, &vl, &esc);
    }
    if (key_is(k, kl, "signal") && !fs->seen_signal) {
        fs->seen_signal = 1;
        p = ms_json_scan_object(p, end, fast_signal_member, fs);
        return p && fs->seen_to ? p : NULL;
    }
    return NULL;
}

static int fast_signal_parse(const char *p, size_t len, fast_signal_t *fs)
{
    const char *end = p + len;
    memset(fs, 0, sizeof(*fs));
    p = ms_json_scan_object(ms_json_ws(p, end), end, fast_message_member, fs);
    return p && fs->seen_signal && ms_json_ws(p, end) == end;
}

static int relay_local_json(ms_gateway_t *gw, ms_session_t *s, const char *data, size_t len)
{
    fast_signal_t fs;
    if (!fast_signal_parse(data, len, &fs))
        return 0;
    ms_session_t *t = local_neighbour(gw, s, fs.to);
    if (!t || t->binary)
        return 0;
    if (t->closing)
        return 1; /* as send_msg: nothing more for a closing session */
    /* Peer ids are A-Z a-z 0-9 . _ : @ - (the owner checks): no escaping. */
    static const char head[] = "{\"signal\":{\"from\":\"", mid[] = "\",\"payload\":";
    size_t idl = strlen(s->peer_id);
    size_t need = sizeof(head) + idl + sizeof(mid) + fs.payload_len + 4;
    if (need > gw->out_cap) {
        char *nb = realloc(gw->out, need);
        if (!nb)
            return 0;
        gw->out = nb;
        gw->out_cap = need;
    }
    char *o = gw->out;
    memcpy(o, head, sizeof(head) - 1);
    o += sizeof(head) - 1;
    memcpy(o, s->peer_id, idl);
    o += idl;
    if (fs.payload) {
        memcpy(o, mid, sizeof(mid) - 1);
        o += sizeof(mid) - 1;
        memcpy(o, fs.payload, fs.payload_len);
        o += fs.payload_len;
    } else {
        *o++ = '"';
    }
    *o++ = '}';
    *o++ = '}';
    gw->n_signals_local++;
    record_latency(gw, gw->frame_received_us);
    queue_frame(gw, t, gw->out, (size_t)(o - gw->out));
    return 1;
}

static void handle_message(ms_gateway_t *gw, ms_session_t *s, Meshsig__V1__ClientMessage *cm)
{
    const char *cid = cm->id;
    switch (cm->msg_case) {
    case MESHSIG__V1__CLIENT_MESSAGE__MSG_HELLO:
        handle_hello(gw, s, cid, cm->hello);
        return;
    case MESHSIG__V1__CLIENT_MESSAGE__MSG_PING: {
        Meshsig__V1__Pong p = MESHSIG__V1__PONG__INIT;
        Meshsig__V1__ServerMessage m = MESHSIG__V1__SERVER_MESSAGE__INIT;
        m.id = (char *)cid;
        m.msg_case = MESHSIG__V1__SERVER_MESSAGE__MSG_PONG;
        m.pong = &p;
        send_msg(gw, s, &m);
        return;
    }
    case MESHSIG__V1__CLIENT_MESSAGE__MSG__NOT_SET:
        send_error(gw, s, cid, ERR(BAD_REQUEST), "the message names no type");
        return;
    default:
        break;
    }
    if (s->state != MS_SESSION_JOINED) {
        send_error(gw, s, cid, ERR(NOT_JOINED),
                   s->state == MS_SESSION_JOINING ? "hello is still being answered"
                                                  : "say hello first");
        return;
    }
    if (cm->msg_case == MESHSIG__V1__CLIENT_MESSAGE__MSG_LEAVE) {
        publish_leave(gw, s, "left");
        session_reset(gw, s);
        Meshsig__V1__Ok ok = MESHSIG__V1__OK__INIT;
        Meshsig__V1__ServerMessage m = MESHSIG__V1__SERVER_MESSAGE__INIT;
        m.id = (char *)cid;
        m.msg_case = MESHSIG__V1__SERVER_MESSAGE__MSG_OK;
        m.ok = &ok;
        send_msg(gw, s, &m);
        return;
    }
    if (cm->msg_case == MESHSIG__V1__CLIENT_MESSAGE__MSG_SIGNAL &&
        relay_local_signal(gw, s, cm->signal))
        return;
    track_request(s, cm);
    Meshsig__Bus__ShardRequest req = MESHSIG__BUS__SHARD_REQUEST__INIT;
    req.op_case = MESHSIG__BUS__SHARD_REQUEST__OP_CLIENT;
    req.client = cm;
    req.client_id = (char *)cid;
    if (publish_request(gw, s, &req, 0) != 0)
        send_error(gw, s, cid, ERR(UNAVAILABLE), "the message bus is unavailable; retry");
}

static void handle_frame(ms_gateway_t *gw, ms_session_t *s, const unsigned char *data, size_t len,
                         int binary)
{
    gw->n_in++;
    gw->frame_received_us = wall_us();
    uint64_t now = now_us();
    int over_msgs = !ms_ratelimit_spend(&s->rate_msgs, &gw->rule_msgs, 1, now);
    int over_bytes = !ms_ratelimit_spend(&s->rate_bytes, &gw->rule_bytes, len, now);
    if (over_msgs || over_bytes) {
        gw->n_rate_limited++;
        send_error(gw, s, NULL, ERR(RATE_LIMITED), "over %s per second; message dropped",
                   over_msgs ? "the message rate" : "the byte rate");
        return;
    }
    Meshsig__V1__ClientMessage *cm = NULL;
    if (s->binary) {
        if (!binary) {
            send_error(gw, s, NULL, ERR(BAD_REQUEST), "meshsig.v1.proto takes binary frames only");
            return;
        }
        cm = meshsig__v1__client_message__unpack(NULL, len, data);
        if (!cm) {
            send_error(gw, s, NULL, ERR(BAD_REQUEST), "not a meshsig.v1.ClientMessage");
            return;
        }
    } else {
        if (binary) {
            send_error(gw, s, NULL, ERR(BAD_REQUEST), "meshsig.v1.json takes text frames only");
            return;
        }
        if (s->state == MS_SESSION_JOINED && relay_local_json(gw, s, (const char *)data, len))
            return;
        json_error_t jerr;
        json_t *j = json_loadb((const char *)data, len, JSON_REJECT_DUPLICATES, &jerr);
        if (!j) {
            send_error(gw, s, NULL, ERR(BAD_REQUEST), "malformed JSON at %d:%d: %s", jerr.line,
                       jerr.column, jerr.text);
            return;
        }
        /* Echo the id even when the rest of the message is wrong. */
        json_t *jid = json_is_object(j) ? json_object_get(j, "id") : NULL;
        char idbuf[128] = "";
        if (json_is_string(jid))
            snprintf(idbuf, sizeof(idbuf), "%s", json_string_value(jid));
        ms_codec_error_t cerr = {0};
        ms_err_t err = ms_codec_from_jansson(&meshsig__v1__client_message__descriptor, j,
                                             (ProtobufCMessage **)&cm, &cerr);
        json_decref(j);
        if (err != MS_OK) {
            send_error(gw, s, idbuf,
                       cerr.unknown_top_level ? ERR(UNKNOWN_MESSAGE) : ERR(BAD_REQUEST), "%s",
                       *cerr.message ? cerr.message : ms_err_str(err));
            return;
        }
    }
    handle_message(gw, s, cm);
    meshsig__v1__client_message__free_unpacked(cm, NULL);
}

/* ---- deliveries from coordinators --------------------------------------- */

static uint32_t clamp_u32(long v)
{
    return v <= 0 ? 0 : (unsigned long)v > UINT32_MAX ? UINT32_MAX : (uint32_t)v;
}

static void deliver(ms_gateway_t *gw, const Meshsig__Bus__Delivery *d)
{
    ms_session_t *s;
    uint64_t id = d->session;
    HASH_FIND(hh, gw->sessions, &id, sizeof(id), s);
    if (!s || !d->msg) {
        gw->n_dropped_session++;
        return;
    }
    const Meshsig__V1__ServerMessage *m = d->msg;
    if (s->state == MS_SESSION_JOINING) {
        /* While joining, only the join's answer can arrive. */
        if (m->msg_case == MESHSIG__V1__SERVER_MESSAGE__MSG_WELCOME) {
            deadline_cancel(s);
            ms_session_join_done(s);
            free(s->peer_id);
            s->peer_id = strdup(m->welcome->peer_id);
            s->state = MS_SESSION_JOINED;
            peer_index_add(gw, s);
            Meshsig__V1__Welcome w = *m->welcome;
            w.gateway_id = gw->id;
            /* The limits are this gateway's, so it states them. A client pings
             * every heartbeat_ms and gives up after three silent intervals: the
             * same time after which this gateway drops a silent client. */
            Meshsig__V1__Limits limits = MESHSIG__V1__LIMITS__INIT;
            limits.max_frame_bytes = clamp_u32(gw->cfg->max_frame);
            limits.msgs_per_sec = clamp_u32(gw->cfg->rate_msgs);
            limits.bytes_per_sec = clamp_u32(gw->cfg->rate_bytes);
            limits.max_queue_bytes = clamp_u32(gw->cfg->max_queue);
            w.limits = &limits;
            w.heartbeat_ms = clamp_u32(gw->cfg->idle_timeout_ms / 3);
            char token[MS_RESUME_TOKEN_MAX] = "";
            if (gw->resume_on && s->peer_id &&
                ms_resume_issue(gw->resume_key, sizeof(gw->resume_key), s->peer_id, s->ns,
                                gw->started_ms, (int64_t)time(NULL), gw->cfg->resume_ttl_s, token,
                                sizeof(token)) == MS_OK)
                w.resume_token = token;
            Meshsig__V1__ServerMessage copy = *m;
            copy.welcome = &w;
            send_msg(gw, s, &copy);
            return;
        }
        if (m->msg_case == MESHSIG__V1__SERVER_MESSAGE__MSG_WAITING) {
            /* In line for a full namespace: no join deadline while waiting. */
            deadline_cancel(s);
        }
        if (m->msg_case == MESHSIG__V1__SERVER_MESSAGE__MSG_ERROR) {
            deadline_cancel(s);
            session_reset(gw, s);
        }
    } else if (s->state == MS_SESSION_JOINED &&
               m->msg_case == MESHSIG__V1__SERVER_MESSAGE__MSG_WELCOME) {
        /* The owner answers every copy of a join that was re-sent while its
         * first answer was on the way (e.g. held during a shard rebuild):
         * the client gets one welcome. */
        gw->n_dropped_session++;
        return;
    } else if (s->state != MS_SESSION_JOINED ||
               (*d->peer_id && (!s->peer_id || strcmp(d->peer_id, s->peer_id)))) {
        /* For a peer this session no longer holds. */
        gw->n_dropped_session++;
        return;
    }
    track_delivery(s, m);
    if (m->msg_case == MESHSIG__V1__SERVER_MESSAGE__MSG_SIGNAL)
        record_latency(gw, d->origin_us);
    send_msg(gw, s, m);
    if (d->close_code)
        session_close(s, (uint16_t)d->close_code);
}

/* ---- resync: a new owner asks what we hold for a shard ------------------- */

#define RESYNC_BATCH 200

static void resync_send(ms_gateway_t *gw, const Meshsig__Bus__ResyncRequest *rq,
                        Meshsig__Bus__SessionReport **reps, size_t n, int last)
{
    Meshsig__Bus__ResyncReport rr = MESHSIG__BUS__RESYNC_REPORT__INIT;
    rr.gateway_id = gw->id;
    rr.shard = rq->shard;
    rr.epoch = rq->epoch;
    rr.n_sessions = n;
    rr.sessions = reps;
    rr.last = last;
    rr.bus_version = MS_BUS_VERSION;
    size_t len = meshsig__bus__resync_report__get_packed_size(&rr);
    uint8_t *buf = malloc(len ? len : 1);
    if (!buf) {
        ms_error("out of memory answering a resync of shard %u", rq->shard);
        return;
    }
    meshsig__bus__resync_report__pack(&rr, buf);
    if (ms_bus_publish(gw->bus, rq->reply_to, NULL, buf, len) != MS_OK)
        ms_warn("resync report for shard %u not sent", rq->shard);
    free(buf);
}

static void report_free(Meshsig__Bus__SessionReport *r)
{
    if (r->position)
        meshsig__v1__position__free_unpacked(r->position, NULL);
    if (r->metadata)
        meshsig__v1__struct__free_unpacked(r->metadata, NULL);
}

static void handle_resync(ms_gateway_t *gw, const Meshsig__Bus__ResyncRequest *rq)
{
    if (!*rq->reply_to)
        return;
    if (rq->shards && rq->shards != (uint32_t)gw->cfg->shards)
        ms_warn("coordinator %s uses %u shards, this gateway %ld: fix --shards", rq->coordinator_id,
                rq->shards, gw->cfg->shards);
    Meshsig__Bus__SessionReport reps[RESYNC_BATCH], *ptrs[RESYNC_BATCH];
    size_t n = 0, total = 0;
    ms_session_t *s, *tmp;
    HASH_ITER(hh, gw->sessions, s, tmp)
    {
        if (s->state != MS_SESSION_JOINED || s->shard != rq->shard || !s->peer_id)
            continue;
        Meshsig__Bus__SessionReport *r = &reps[n];
        meshsig__bus__session_report__init(r);
        r->session = s->id;
        r->namespace_ = s->ns;
        r->peer_id = s->peer_id;
        r->position = s->hello_pos
                          ? meshsig__v1__position__unpack(NULL, s->hello_pos_len, s->hello_pos)
                          : NULL;
        r->metadata = s->hello_meta
                          ? meshsig__v1__struct__unpack(NULL, s->hello_meta_len, s->hello_meta)
                          : NULL;
        r->n_neighbours = s->neighbours.n;
        r->neighbours = s->neighbours.v;
        r->parent = s->parent ? s->parent : (char *)"";
        r->n_rooms = s->rooms.n;
        r->rooms = s->rooms.v;
        r->n_services = s->services.n;
        r->services = s->services.v;
        r->n_subscriptions = s->subscriptions.n;
        r->subscriptions = s->subscriptions.v;
        ptrs[n++] = r;
        total++;
        if (n == RESYNC_BATCH) {
            resync_send(gw, rq, ptrs, n, 0);
            for (size_t i = 0; i < n; i++)
                report_free(&reps[i]);
            n = 0;
        }
    }
    resync_send(gw, rq, ptrs, n, 1);
    for (size_t i = 0; i < n; i++)
        report_free(&reps[i]);
    ms_info("resync of shard %u for %s (epoch %llu): %zu sessions reported", rq->shard,
            rq->coordinator_id, (unsigned long long)rq->epoch, total);
}

static void on_bus_msg(natsMsg *msg, void *ud)
{
    ms_gateway_t *gw = ud;
    /* A coordinator of another bus major may mean something else by the same fields. */
    if (!ms_busver_accept(&gw->busver, "coordinator", 0, (const uint8_t *)natsMsg_GetData(msg),
                          (size_t)natsMsg_GetDataLength(msg), now_us() / 1000))
        return;
    if (!strcmp(natsMsg_GetSubject(msg), gw->resync_subject)) {
        Meshsig__Bus__ResyncRequest *rq = meshsig__bus__resync_request__unpack(
            NULL, (size_t)natsMsg_GetDataLength(msg), (const uint8_t *)natsMsg_GetData(msg));
        if (rq) {
            handle_resync(gw, rq);
            meshsig__bus__resync_request__free_unpacked(rq, NULL);
        }
        return;
    }
    Meshsig__Bus__GatewayBatch *b = meshsig__bus__gateway_batch__unpack(
        NULL, (size_t)natsMsg_GetDataLength(msg), (const uint8_t *)natsMsg_GetData(msg));
    if (!b) {
        ms_warn("undecodable batch on %s", natsMsg_GetSubject(msg));
        return;
    }
    if (b->shard < (uint32_t)gw->cfg->shards) {
        /* Fencing: a batch from an older owner of the shard is dropped. */
        if (b->epoch < gw->epochs[b->shard]) {
            gw->n_dropped_epoch += b->n_deliveries;
            goto out;
        }
        gw->epochs[b->shard] = b->epoch;
    }
    for (size_t i = 0; i < b->n_deliveries; i++)
        deliver(gw, b->deliveries[i]);
out:
    meshsig__bus__gateway_batch__free_unpacked(b, NULL);
}

static void wake(void *ud)
{
    ms_gateway_t *gw = ud;
    lws_cancel_service(gw->ctx);
}

/* Every 100 ms: sessions whose hello or join deadline passed, oldest first. */
static void on_sweep(lws_sorted_usec_list_t *sul)
{
    ms_gateway_t *gw = lws_container_of(sul, ms_gateway_t, sul_sweep);
    uint64_t now = now_us();
    lws_dll2_owner_t *lists[] = {&gw->hello_waits, &gw->join_waits};
    for (int l = 0; l < 2; l++) {
        /* Bounded: a re-armed session goes to the tail with a later deadline. */
        for (int n = 0; n < 100000; n++) {
            lws_dll2_t *head = lws_dll2_get_head(lists[l]);
            if (!head)
                break;
            ms_session_t *s = lws_container_of(head, ms_session_t, deadline_node);
            if (s->deadline_us > now)
                break;
            deadline_cancel(s);
            on_deadline(gw, s);
        }
    }
    idle_sweep(gw, now);
    lws_sul_schedule(gw->ctx, 0, &gw->sul_sweep, on_sweep, 100 * LWS_US_PER_MS);
}

static void on_heartbeat(lws_sorted_usec_list_t *sul)
{
    ms_gateway_t *gw = lws_container_of(sul, ms_gateway_t, sul_heartbeat);
    Meshsig__Bus__Heartbeat hb = MESHSIG__BUS__HEARTBEAT__INIT;
    hb.gateway_id = gw->id;
    hb.sessions = (uint32_t)gw->n_sessions;
    hb.started_ms = gw->started_ms;
    hb.bus_refused = gw->busver.refused;
    hb.release = (char *)ms_version();
    hb.bus_version = MS_BUS_VERSION;
    uint8_t buf[256];
    size_t len = meshsig__bus__heartbeat__get_packed_size(&hb);
    if (len <= sizeof(buf)) {
        meshsig__bus__heartbeat__pack(&hb, buf);
        ms_bus_publish(gw->bus, gw->hb_subject, NULL, buf, len);
    }
    lws_sul_schedule(gw->ctx, 0, &gw->sul_heartbeat, on_heartbeat, LWS_US_PER_SEC);
}

/* ---- health and metrics over HTTP -------------------------------------- */

typedef struct {
    char *body;
    size_t len;
    int status;
} http_pss_t;

static char *metrics_text(ms_gateway_t *gw, size_t *len)
{
    size_t queued = 0;
    ms_session_t *s, *tmp;
    HASH_ITER(hh, gw->sessions, s, tmp)
    queued += s->queued;
    char *out = NULL;
    int n = asprintf(
        &out,
        "# TYPE meshsig_gateway_sessions gauge\n"
        "meshsig_gateway_sessions %zu\n"
        "# TYPE meshsig_gateway_queued_bytes gauge\n"
        "meshsig_gateway_queued_bytes %zu\n"
        "# TYPE meshsig_gateway_messages_in_total counter\n"
        "meshsig_gateway_messages_in_total %llu\n"
        "# TYPE meshsig_gateway_messages_out_total counter\n"
        "meshsig_gateway_messages_out_total %llu\n"
        "# TYPE meshsig_gateway_dropped_total counter\n"
        "meshsig_gateway_dropped_total{reason=\"stale_epoch\"} %llu\n"
        "meshsig_gateway_dropped_total{reason=\"no_session\"} %llu\n"
        "meshsig_gateway_dropped_total{reason=\"rate_limited\"} %llu\n"
        "meshsig_gateway_dropped_total{reason=\"inbox_full\"} %zu\n"
        "# TYPE meshsig_gateway_slow_readers_closed_total counter\n"
        "meshsig_gateway_slow_readers_closed_total %llu\n"
        "# HELP meshsig_gateway_signals_local_total signals relayed between two sessions of "
        "this gateway without the shard owner\n"
        "# TYPE meshsig_gateway_signals_local_total counter\n"
        "meshsig_gateway_signals_local_total %llu\n"
        "# TYPE meshsig_nats_reconnects_total counter\n"
        "meshsig_nats_reconnects_total %llu\n"
        "# TYPE meshsig_nats_connected gauge\n"
        "meshsig_nats_connected %d\n",
        gw->n_sessions, queued, (unsigned long long)gw->n_in, (unsigned long long)gw->n_out,
        (unsigned long long)gw->n_dropped_epoch, (unsigned long long)gw->n_dropped_session,
        (unsigned long long)gw->n_rate_limited, ms_mailbox_dropped(gw->inbox),
        (unsigned long long)gw->n_closed_slow, (unsigned long long)gw->n_signals_local,
        (unsigned long long)ms_bus_reconnects(gw->bus), ms_bus_connected(gw->bus));
    if (n < 0)
        return NULL;
    /* The relay latency histogram, appended. */
    char hist[1536];
    size_t hl = (size_t)snprintf(hist, sizeof(hist),
                                 "# HELP meshsig_gateway_relay_latency_seconds signal relay "
                                 "time, client frame in at a gateway to out at this one\n"
                                 "# TYPE meshsig_gateway_relay_latency_seconds histogram\n");
    for (int i = 0; i < 12 && hl < sizeof(hist); i++)
        hl += (size_t)snprintf(hist + hl, sizeof(hist) - hl,
                               "meshsig_gateway_relay_latency_seconds_bucket{le=\"%g\"} %llu\n",
                               (double)lat_bounds_us[i] / 1e6,
                               (unsigned long long)gw->lat_buckets[i]);
    if (hl < sizeof(hist))
        hl += (size_t)snprintf(hist + hl, sizeof(hist) - hl,
                               "meshsig_gateway_relay_latency_seconds_bucket{le=\"+Inf\"} %llu\n"
                               "meshsig_gateway_relay_latency_seconds_sum %g\n"
                               "meshsig_gateway_relay_latency_seconds_count %llu\n",
                               (unsigned long long)gw->lat_count, (double)gw->lat_sum_us / 1e6,
                               (unsigned long long)gw->lat_count);
    char info[768];
    int il = ms_version_metrics(info, sizeof(info));
    if (il > 0 && (size_t)il < sizeof(info))
        il += ms_busver_metrics(&gw->busver, info + il, sizeof(info) - (size_t)il);
    if (il < 0 || (size_t)il >= sizeof(info))
        il = 0;
    char *both = NULL;
    int m = asprintf(&both, "%s%.*s%.*s", out, (int)(hl < sizeof(hist) ? hl : sizeof(hist) - 1),
                     hist, il, info);
    free(out);
    if (m < 0)
        return NULL;
    *len = (size_t)m;
    return both;
}

/* /healthz and /metrics: headers in LWS_CALLBACK_HTTP, the body when writeable. */
static int http_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                         size_t len)
{
    ms_gateway_t *gw = lws_context_user(lws_get_context(wsi));
    http_pss_t *h = user;
    switch (reason) {
    case LWS_CALLBACK_HTTP: {
        char uri[64];
        lws_hdr_copy(wsi, uri, sizeof(uri), WSI_TOKEN_GET_URI);
        const char *ctype = "text/plain";
        if (!strcmp(uri, "/healthz")) {
            /* Draining counts as unhealthy so a load balancer stops sending new clients. */
            h->status = gw->draining ? HTTP_STATUS_SERVICE_UNAVAILABLE : HTTP_STATUS_OK;
            h->body = strdup(gw->draining ? "draining\n" : "ok\n");
            h->len = h->body ? strlen(h->body) : 0;
        } else if (!strcmp(uri, "/metrics")) {
            h->status = HTTP_STATUS_OK;
            h->body = metrics_text(gw, &h->len);
            ctype = "text/plain; version=0.0.4";
        } else {
            return lws_return_http_status(wsi, HTTP_STATUS_NOT_FOUND, NULL) ? -1 : 0;
        }
        if (!h->body)
            return -1;
        unsigned char buf[LWS_PRE + 512], *start = buf + LWS_PRE, *p = start,
                                          *end = buf + sizeof(buf) - 1;
        if (lws_add_http_common_headers(wsi, (unsigned int)h->status, ctype, h->len, &p, end) ||
            lws_add_http_header_by_token(wsi, WSI_TOKEN_HTTP_CACHE_CONTROL,
                                         (const unsigned char *)"no-store", 8, &p, end) ||
            lws_finalize_write_http_header(wsi, start, &p, end))
            return -1;
        lws_callback_on_writable(wsi);
        return 0;
    }
    case LWS_CALLBACK_HTTP_WRITEABLE: {
        if (!h->body)
            return -1;
        unsigned char *buf = malloc(LWS_PRE + h->len);
        if (!buf)
            return -1;
        memcpy(buf + LWS_PRE, h->body, h->len);
        int n = lws_write(wsi, buf + LWS_PRE, h->len, LWS_WRITE_HTTP_FINAL);
        free(buf);
        free(h->body);
        h->body = NULL;
        if (n < 0)
            return -1;
        return lws_http_transaction_completed(wsi) ? -1 : 0;
    }
    case LWS_CALLBACK_CLOSED_HTTP:
    case LWS_CALLBACK_HTTP_DROP_PROTOCOL:
        if (h) {
            free(h->body);
            h->body = NULL;
        }
        return 0;
    default:
        break;
    }
    return lws_callback_http_dummy(wsi, reason, user, in, len);
}

/* ---- lws callback -------------------------------------------------------- */

static int origin_allowed(ms_gateway_t *gw, struct lws *wsi)
{
    const char *list = gw->cfg->origins;
    if (!list || !*list)
        return 1;
    char origin[256];
    if (lws_hdr_copy(wsi, origin, sizeof(origin), WSI_TOKEN_ORIGIN) <= 0)
        return 0; /* an allowlist is set: browsers always send Origin */
    size_t ol = strlen(origin);
    for (const char *p = list; *p;) {
        const char *comma = strchr(p, ',');
        size_t n = comma ? (size_t)(comma - p) : strlen(p);
        if (n == ol && !strncmp(p, origin, n))
            return 1;
        if (n == 1 && *p == '*')
            return 1;
        p += n + (comma ? 1 : 0);
    }
    return 0;
}

static int callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                    size_t len)
{
    struct lws_context *ctx = lws_get_context(wsi);
    ms_gateway_t *gw = ctx ? lws_context_user(ctx) : NULL;
    ms_session_t *s = user;

    switch (reason) {
    case LWS_CALLBACK_EVENT_WAIT_CANCELLED:
        if (gw && gw->inbox)
            ms_mailbox_drain(gw->inbox, on_bus_msg, gw);
        return 0;

    case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION: {
        char uri[64];
        if (lws_hdr_copy(wsi, uri, sizeof(uri), WSI_TOKEN_GET_URI) <= 0 || strcmp(uri, "/ws")) {
            return 1; /* WebSockets live at /ws only */
        }
        if (gw->draining)
            return 1; /* shutting down: clients go to another gateway */
        if (!origin_allowed(gw, wsi)) {
            ms_info("WebSocket refused: origin not allowed");
            return 1;
        }
        return 0;
    }

    case LWS_CALLBACK_ESTABLISHED:
        memset(s, 0, sizeof(*s));
        s->id = ++gw->next_session;
        s->wsi = wsi;
        s->binary = !strcmp(lws_get_protocol(wsi)->name, "meshsig.v1.proto");
        ms_ratelimit_start(&s->rate_msgs, &gw->rule_msgs, now_us());
        ms_ratelimit_start(&s->rate_bytes, &gw->rule_bytes, now_us());
        HASH_ADD(hh, gw->sessions, id, sizeof(s->id), s);
        gw->n_sessions++;
        deadline_arm(gw, s, &gw->hello_waits, (uint64_t)gw->cfg->hello_timeout_ms * 1000u);
        idle_touch(gw, s);
        return 0;

    case LWS_CALLBACK_RECEIVE_PONG:
        if (s && s->id)
            idle_touch(gw, s);
        return 0;

    case LWS_CALLBACK_RECEIVE: {
        if (!s || !s->id)
            return -1;
        if (s->closing)
            return 0;
        idle_touch(gw, s);
        size_t remaining = lws_remaining_packet_payload(wsi);
        int final = lws_is_final_fragment(wsi) && remaining == 0;
        if (s->rx_discard) {
            /* Reading the rest of an oversize message: closing while the client
             * is still sending would turn the close frame into a reset. An
             * endless message is cut off at 16 times the cap. */
            s->rx_discard += len;
            if (s->rx_discard > 16 * (uint64_t)gw->cfg->max_frame)
                return -1;
            if (final)
                session_close(s, CLOSE_TOO_BIG);
            return 0;
        }
        if (s->rx_len + len + remaining > (size_t)gw->cfg->max_frame) {
            ms_info("session %llu: message over %ld bytes; closing with 1009",
                    (unsigned long long)s->id, gw->cfg->max_frame);
            free(s->rx);
            s->rx = NULL;
            s->rx_len = s->rx_cap = 0;
            s->rx_discard = len;
            if (final)
                session_close(s, CLOSE_TOO_BIG);
            return 0;
        }
        if (final && s->rx_len == 0) {
            handle_frame(gw, s, in, len, lws_frame_is_binary(wsi));
            return 0;
        }
        if (s->rx_len + len > s->rx_cap) {
            size_t ncap = s->rx_len + len + remaining;
            unsigned char *nb = realloc(s->rx, ncap);
            if (!nb)
                return -1;
            s->rx = nb;
            s->rx_cap = ncap;
        }
        memcpy(s->rx + s->rx_len, in, len);
        s->rx_len += len;
        if (final) {
            handle_frame(gw, s, s->rx, s->rx_len, lws_frame_is_binary(wsi));
            /* Large buffers are not kept around between messages. */
            free(s->rx);
            s->rx = NULL;
            s->rx_len = s->rx_cap = 0;
        }
        return 0;
    }

    case LWS_CALLBACK_SERVER_WRITEABLE: {
        if (!s || !s->id)
            return 0;
        if (s->ping_due) {
            s->ping_due = 0;
            memcpy(gw->ping + LWS_PRE, "ms", 2);
            if (lws_write(wsi, gw->ping + LWS_PRE, 2, LWS_WRITE_PING) < 0)
                return -1;
            if (s->head)
                lws_callback_on_writable(wsi);
            return 0;
        }
        if (s->head) {
            /* Everything queued (up to WRITE_BATCH bytes) in one send: the
             * frames are framed here and written raw, which lws passes
             * through unchanged (no extensions are enabled on this vhost). */
            ssize_t n = ms_session_take_frames(s, &gw->wbuf, &gw->wbuf_cap, WRITE_BATCH);
            if (n < 0 || lws_write(wsi, gw->wbuf + LWS_PRE, (size_t)n, LWS_WRITE_RAW) < 0)
                return -1;
        }
        if (s->head) {
            lws_callback_on_writable(wsi);
        } else if (s->closing) {
            lws_close_reason(wsi, (enum lws_close_status)s->close_code, NULL, 0);
            return -1;
        }
        return 0;
    }

    case LWS_CALLBACK_CLOSED:
        if (!s || !s->id)
            return 0;
        deadline_cancel(s);
        lws_dll2_remove(&s->idle_node);
        if (s->state != MS_SESSION_NEW && s->ns)
            publish_leave(gw, s, "closed");
        peer_index_remove(gw, s);
        HASH_DEL(gw->sessions, s);
        gw->n_sessions--;
        ms_session_cleanup(s);
        s->id = 0;
        return 0;

    default:
        break;
    }
    return lws_callback_http_dummy(wsi, reason, user, in, len);
}

/* ---- lifecycle ------------------------------------------------------------ */

/* No lws idle policy: without one lws applies its default (ping at 300 s),
 * which costs a sorted timer insert per connection (see idle_sweep). */
static const lws_retry_bo_t no_lws_idle_policy = {.secs_since_valid_hangup = 0};

/* The rx_buffer_size of the two WebSocket protocols is --rx-buffer (set in
 * ms_gw_create, on the gateway's copy of this table). lws allocates that much
 * per connection and keeps it while the connection lives; larger messages
 * arrive in pieces that the session reassembles into one buffer per message
 * (freed after it). It also caps each recv() from the socket, so it trades
 * memory for CPU: in the relay benchmark (~480 B frames, 8 in flight per
 * pair) the gateway relayed ~1.4x more messages per CPU-second with 1 KiB
 * than with 512 B (fewer reads), and at 256 B each frame took three reads;
 * in the idle benchmark 512 B saves ~0.5 kB per connection. */
static const struct lws_protocols protocols[] = {
    /* The first is also the default for clients that name no subprotocol. */
    {"meshsig.v1.json", callback, sizeof(ms_session_t), 1024, 0, NULL, 0},
    {"meshsig.v1.proto", callback, sizeof(ms_session_t), 1024, 1, NULL, 0},
    {"meshsig-http", http_callback, sizeof(http_pss_t), 0, 2, NULL, 0},
    {NULL, NULL, 0, 0, 0, NULL, 0},
};

static void lws_log_bridge(int level, const char *line)
{
    size_t n = strlen(line);
    while (n && (line[n - 1] == '\n' || line[n - 1] == '\r'))
        n--;
    ms_log(level == LLL_ERR ? MS_LOG_ERROR : MS_LOG_WARN, "lws: %.*s", (int)n, line);
}

ms_err_t ms_gw_create(const ms_gw_config_t *cfg, ms_gateway_t **out)
{
    ms_err_t err = MS_ERR_NOMEM;
    ms_gateway_t *gw = calloc(1, sizeof(*gw));
    if (!gw)
        return MS_ERR_NOMEM;
    gw->cfg = cfg;
    gw->started_ms = wall_ms();
    if (cfg->id && *cfg->id) {
        snprintf(gw->id, sizeof(gw->id), "%s", cfg->id);
    } else {
        char host[64] = "host";
        gethostname(host, sizeof(host) - 1);
        snprintf(gw->id, sizeof(gw->id), "gw-%s-%d", host, (int)getpid());
    }
    for (char *p = gw->id; *p; p++)
        if (*p == '.' || *p == '*' || *p == '>' || *p == ' ')
            *p = '-'; /* the id is a NATS subject token */
    ms_bus_subject_gw(gw->subject, sizeof(gw->subject), cfg->prefix, gw->id);
    snprintf(gw->hb_subject, sizeof(gw->hb_subject), "%s.gw.heartbeat", cfg->prefix);
    snprintf(gw->resync_subject, sizeof(gw->resync_subject), "%s.gw.resync", cfg->prefix);
    if (!(gw->epochs = calloc((size_t)cfg->shards, sizeof(*gw->epochs))))
        goto fail;
    if ((err = ms_ratelimit_rule(&gw->rule_msgs, (uint64_t)cfg->rate_msgs,
                                 (uint64_t)cfg->rate_msgs * 2)) != MS_OK ||
        (err = ms_ratelimit_rule(&gw->rule_bytes, (uint64_t)cfg->rate_bytes,
                                 (uint64_t)cfg->rate_bytes * 2)) != MS_OK) {
        ms_error("--rate-msgs or --rate-bytes is out of range");
        goto fail;
    }

    if (!cfg->insecure_dev) {
        ms_auth_config_t ac = {
            .secret = cfg->jwt_secret, .key_file = cfg->jwt_key_file, .leeway_s = -1};
        if (cfg->jwt_alg && ms_auth_alg_parse(cfg->jwt_alg, &ac.alg) != MS_OK) {
            ms_error("--jwt-alg must be HS256, RS256 or ES256");
            err = MS_ERR_INVAL;
            goto fail;
        }
        if ((err = ms_auth_create(&gw->auth, &ac)) != MS_OK) {
            ms_error("cannot set up token verification (--jwt-secret or --jwt-key-file): %s",
                     ms_err_str(err));
            goto fail;
        }
    }

    /* Resume tokens must verify on every gateway, so the key comes from shared
     * configuration: --resume-secret, else derived from the JWT secret, else (dev) fixed. */
    const char *rsrc = cfg->resume_secret && *cfg->resume_secret ? cfg->resume_secret
                       : cfg->jwt_secret && *cfg->jwt_secret     ? cfg->jwt_secret
                       : cfg->insecure_dev                       ? "meshsig-insecure-dev"
                                                                 : NULL;
    if (rsrc) {
        unsigned int klen = 0;
        HMAC(EVP_sha256(), "meshsig-resume-key-v1", 21, (const unsigned char *)rsrc, strlen(rsrc),
             gw->resume_key, &klen);
        gw->resume_on = klen == sizeof(gw->resume_key);
    } else {
        ms_warn("no --resume-secret (and no --jwt-secret to derive it from): clients cannot "
                "resume after a gateway failure");
    }

    char host[128];
    const char *colon = strrchr(cfg->listen, ':');
    if (!colon || (size_t)(colon - cfg->listen) >= sizeof(host)) {
        ms_error("--listen must be HOST:PORT, got '%s'", cfg->listen);
        err = MS_ERR_INVAL;
        goto fail;
    }
    memcpy(host, cfg->listen, (size_t)(colon - cfg->listen));
    host[colon - cfg->listen] = '\0';

    lws_set_log_level(LLL_ERR | LLL_WARN, lws_log_bridge);
    if ((err = ms_evloop_create(cfg->event_lib, &gw->loop)) != MS_OK)
        goto fail;
    struct lws_context_creation_info info;
    memset(&info, 0, sizeof(info));
    info.port = atoi(colon + 1);
    info.iface = *host ? host : NULL;
    memcpy(gw->protocols, protocols, sizeof(protocols));
    gw->protocols[0].rx_buffer_size = gw->protocols[1].rx_buffer_size = (size_t)cfg->rx_buffer;
    info.protocols = gw->protocols;
    info.user = gw;
    info.options = LWS_SERVER_OPTION_VALIDATE_UTF8 | LWS_SERVER_OPTION_DISABLE_IPV6;
    if (host[0] == '[' || strchr(host, ':'))
        info.options &= ~(uint64_t)LWS_SERVER_OPTION_DISABLE_IPV6;
    info.retry_and_idle_policy = &no_lws_idle_policy;
    info.fd_limit_per_thread = 0;
    info.timeout_secs = 10;
    /* Handshakes in flight each hold a header table (~5 KiB: 4 KiB of header
     * data and its index) from the pool; the default pool is as large as the
     * fd limit, so a burst of connections left megabytes of freed tables
     * scattered through the heap under the connections that followed. Further
     * connections are accepted and wait in lws's queue (without being read)
     * until a table is free. A connection still without a complete handshake
     * after timeout_secs_ah_idle is closed, which frees its table: clients
     * that send their headers slowly (a slowloris) can hold up other
     * handshakes by that long, no more, and need --max-handshakes sockets. */
    info.max_http_header_pool = (unsigned short)cfg->max_handshakes;
    info.timeout_secs_ah_idle = 5;
    static const char *const dyn[] = {"/healthz", "/metrics"};
    for (int i = 0; i < 2; i++) {
        gw->mounts[i].mountpoint = dyn[i];
        gw->mounts[i].mountpoint_len = (unsigned char)strlen(dyn[i]);
        gw->mounts[i].origin = "meshsig-http";
        gw->mounts[i].origin_protocol = LWSMPRO_CALLBACK;
        gw->mounts[i].mount_next = &gw->mounts[i + 1];
    }
    gw->mounts[1].mount_next = NULL;
    if (cfg->static_dir && *cfg->static_dir) {
        gw->mounts[1].mount_next = &gw->mounts[2];
        gw->mounts[2].mountpoint = "/";
        gw->mounts[2].mountpoint_len = 1;
        gw->mounts[2].origin = cfg->static_dir;
        gw->mounts[2].def = "index.html";
        gw->mounts[2].origin_protocol = LWSMPRO_FILE;
    }
    info.mounts = &gw->mounts[0];
    ms_evloop_configure(gw->loop, &info);
    gw->ctx = lws_create_context(&info);
    if (!gw->ctx) {
        ms_error("cannot listen on %s", cfg->listen);
        err = MS_ERR_LWS;
        goto fail;
    }

    if ((err = ms_mailbox_create(wake, gw, &gw->inbox)) != MS_OK)
        goto fail;
    ms_bus_opts_t bo = {.urls = cfg->nats_urls, .name = gw->id, .event_base = NULL};
    if ((err = ms_bus_connect(&bo, &gw->bus)) != MS_OK)
        goto fail;
    if ((err = ms_bus_subscribe(gw->bus, gw->subject, NULL, gw->inbox)) != MS_OK ||
        (err = ms_bus_subscribe(gw->bus, gw->resync_subject, NULL, gw->inbox)) != MS_OK) {
        ms_error("cannot subscribe %s", gw->subject);
        goto fail;
    }
    lws_sul_schedule(gw->ctx, 0, &gw->sul_heartbeat, on_heartbeat, 1);
    lws_sul_schedule(gw->ctx, 0, &gw->sul_sweep, on_sweep, 100 * LWS_US_PER_MS);
    ms_info("gateway %s: ws://%s/ws%s%s, event loop %s", gw->id, cfg->listen,
            cfg->static_dir ? ", files from " : "", cfg->static_dir ? cfg->static_dir : "",
            ms_evloop_name(gw->loop));
    *out = gw;
    return MS_OK;
fail:
    ms_gw_destroy(gw);
    return err == MS_OK ? MS_ERR_NOMEM : err;
}

/* Graceful shutdown: every client is told to reconnect elsewhere and closed
 * with 1001 once its queue is written; new connections are refused. Returns
 * when all sessions are gone or after the deadline. */
static void drain(ms_gateway_t *gw, long deadline_ms)
{
    gw->draining = 1;
    ms_info("draining %zu sessions (deadline %ld ms)", gw->n_sessions, deadline_ms);
    ms_session_t *s, *tmp;
    HASH_ITER(hh, gw->sessions, s, tmp)
    {
        Meshsig__V1__Reconnect rc = MESHSIG__V1__RECONNECT__INIT;
        rc.reason = "gateway shutting down; reconnect to another gateway";
        Meshsig__V1__ServerMessage m = MESHSIG__V1__SERVER_MESSAGE__INIT;
        m.msg_case = MESHSIG__V1__SERVER_MESSAGE__MSG_RECONNECT;
        m.reconnect = &rc;
        send_msg(gw, s, &m);
        session_close(s, CLOSE_GOING_AWAY);
    }
    uint64_t end = now_us() + (uint64_t)deadline_ms * 1000u;
    /* Each round ends within 100 ms: the deadline sweep is a timer. */
    while (gw->n_sessions > 0 && now_us() < end)
        if (ms_evloop_run_once(gw->loop, gw->ctx) < 0)
            break;
    if (gw->n_sessions)
        ms_warn("%zu sessions still open at the drain deadline; closing them", gw->n_sessions);
}

ms_err_t ms_gw_run(ms_gateway_t *gw)
{
    while (!gw->stop)
        if (ms_evloop_run_once(gw->loop, gw->ctx) < 0)
            return MS_ERR_LWS;
    drain(gw, gw->cfg->drain_ms);
    return MS_OK;
}

void ms_gw_stop(ms_gateway_t *gw)
{
    gw->stop = 1;
    if (gw->ctx)
        lws_cancel_service(gw->ctx);
}

void ms_gw_destroy(ms_gateway_t *gw)
{
    if (!gw)
        return;
    /* Stop deliveries first (their wake-ups touch the lws context), then close
     * every session: their CLOSED callbacks publish leaves, so the bus stays up
     * until those are flushed. */
    if (gw->bus)
        ms_bus_drain_subscriptions(gw->bus, 2000);
    if (gw->ctx) {
        lws_context_destroy(gw->ctx);
        gw->ctx = NULL;
    }
    ms_evloop_destroy(gw->loop); /* after the context: lws stops its watchers on it */
    if (gw->bus)
        ms_bus_flush(gw->bus, 1000);
    ms_bus_destroy(gw->bus);
    ms_mailbox_destroy(gw->inbox);
    ms_auth_destroy(gw->auth);
    OPENSSL_cleanse(gw->resume_key, sizeof(gw->resume_key));
    free(gw->epochs);
    free(gw->out);
    free(gw->pub);
    free(gw->wbuf);
    free(gw);
}
