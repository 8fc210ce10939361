/* SPDX-License-Identifier: Apache-2.0 */
/* The PeerJS server protocol on the gateway: PeerJS clients use meshsig by changing host and port.
 *
 * A PeerJS client (npm `peerjs` 1.x) builds its URLs from {host, port, path,
 * key}: the WebSocket `<path>peerjs?key=K&id=ID&token=T` and `GET <path>K/id`
 * for a fresh id. Each such WebSocket becomes an ordinary session that joins
 * namespace `peerjs.<K>` as peer ID (the coordinators give those namespaces no
 * topology, signals to any peer and a 5 s hold for absent peers, unless a
 * policy rule says otherwise), so ids are unique across the cluster and two
 * peers on different gateways reach each other through the owner; two on one
 * gateway, session to session (relay.c local_any: the owner's welcome says
 * the namespace lets any peer signal any other). This file only translates at
 * the session's edge:
 *
 *   client -> gateway                      meshsig
 *   {type: OFFER|ANSWER|CANDIDATE|LEAVE|   signal {to: dst, payload: {type, payload}}
 *          EXPIRE, dst, payload}           (request id = dst, so an EXPIRE can name it)
 *   {type: LEAVE} without dst              leave, and the socket is closed
 *   {type: HEARTBEAT}                      liveness only (any frame counts)
 *
 *   meshsig                                gateway -> client
 *   welcome                                {type: OPEN}
 *   signal {from, payload: {type, payload}} {type, src: from, dst: id, payload}
 *   error PEER_NOT_FOUND for request dst   {type: EXPIRE, src: dst, dst: id}
 *   error ID_TAKEN on join                 {type: ID-TAKEN, payload: {msg}} and close
 *   any other error on join                {type: ERROR, payload: {msg}} and close
 *
 * The common frames take a fast path (pjframe.h): OFFER, ANSWER and
 * CANDIDATE to a PeerJS session on this gateway are spliced, the payload's
 * text copied between fixed heads; to a peer elsewhere only the payload is
 * parsed (into the bus message's Value), not the whole frame; a signal from
 * the owner is written from its Value without a jansson tree. Whatever the
 * scan does not vouch for takes the full decoder below, which decides.
 * Once the owner has paired two peers on different gateways (coordinator/
 * pairs.c), their frames go gateway to gateway with the payload's text and
 * type (bus DirectSignal.peerjs_type) and are spliced again at the receiver.
 *
 * The PeerJS token is the client's proof that it owns its id: its hash goes in
 * the join as the claim, and the owner gives a taken id to a join with the same
 * claim (a reconnecting client keeps its id, on any gateway) and refuses any
 * other with ID_TAKEN. When the gateway verifies JWTs, the token must be one
 * (sub = the PeerJS id, namespace claim allowing peerjs.<K>).
 *
 * `GET <path>K/peers` (--peerjs-discovery): the gateway asks the owner of
 * peerjs.<K> with a bus Discover and answers the HTTP request when the owner's
 * PeerList arrives (or 503 after DISCOVERY_TIMEOUT_US).
 *
 * Lws service thread only, like the rest of the gateway.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "bus.h"
#include "codec.h"
#include "internal.h"
#include "log.h"
#include "pjframe.h"
#include "uthash_keyed.h"

#define PEERJS_MAX_KEYS 16
#define PEERJS_KEY_MAX 64
#define CLOSE_NORMAL 1000

/* A GET <path><key>/peers waiting for the owner of peerjs.<key>. */
typedef struct discovery {
    uint64_t n; /* the request number: bus ShardRequest.session and Delivery.session */
    struct lws *wsi;
    ms_gw_http_pss_t *h;
    ms_gateway_t *gw;
    lws_sorted_usec_list_t sul; /* DISCOVERY_TIMEOUT_US */
    UT_hash_handle hh;
} discovery_t;

/* The owner answers in a loop turn; past this it is gone or rebuilding. */
#define DISCOVERY_TIMEOUT_US (3 * LWS_US_PER_SEC)
/* Discoveries waiting at once, per gateway: one HTTP request cannot hold more. */
#define DISCOVERY_MAX_PENDING 256

struct ms_gw_peerjs {
    discovery_t *waiting; /* uthash by n */
    size_t n_waiting;
    uint64_t next_n;
    char ws_path[160];                   /* <path>peerjs */
    char http_path[PEERJS_MAX_KEYS][96]; /* <path><key>, one mount each */
    char keys[PEERJS_MAX_KEYS][PEERJS_KEY_MAX];
    size_t n_keys;
    struct lws_http_mount mounts[PEERJS_MAX_KEYS];
};

ms_err_t ms_gw_peerjs_init(ms_gateway_t *gw)
{
    const char *path = gw->cfg->peerjs_path ? gw->cfg->peerjs_path : "/";
    const char *keys = gw->cfg->peerjs_keys ? gw->cfg->peerjs_keys : "peerjs";
    if (!*keys)
        return MS_OK; /* --peerjs-keys "": no PeerJS endpoint */
    if (*path != '/' || strlen(path) > 64) {
        ms_error("--peerjs-path must start with / and be at most 64 characters");
        return MS_ERR_INVAL;
    }
    ms_gw_peerjs_t *p = calloc(1, sizeof(*p));
    if (!p)
        return MS_ERR_NOMEM;
    size_t pl = strlen(path);
    const char *sep = path[pl - 1] == '/' ? "" : "/";
    snprintf(p->ws_path, sizeof(p->ws_path), "%s%speerjs", path, sep);
    for (const char *k = keys; *k;) {
        const char *comma = strchr(k, ',');
        size_t n = comma ? (size_t)(comma - k) : strlen(k);
        int ok = n > 0 && n < PEERJS_KEY_MAX && p->n_keys < PEERJS_MAX_KEYS;
        for (size_t i = 0; ok && i < n; i++)
            ok = (k[i] >= 'a' && k[i] <= 'z') || (k[i] >= 'A' && k[i] <= 'Z') ||
                 (k[i] >= '0' && k[i] <= '9') || k[i] == '-' || k[i] == '_';
        if (!ok) {
            ms_error("--peerjs-keys: at most %d keys of 1 to %d characters of A-Z a-z 0-9 - _",
                     PEERJS_MAX_KEYS, PEERJS_KEY_MAX - 1);
            free(p);
            return MS_ERR_INVAL;
        }
        char key[PEERJS_KEY_MAX] = "";
        memcpy(key, k, n);
        memcpy(p->keys[p->n_keys], key, n + 1);
        snprintf(p->http_path[p->n_keys], sizeof(p->http_path[0]), "%s%s%s", path, sep, key);
        p->n_keys++;
        k += n + (comma ? 1 : 0);
    }
    gw->peerjs = p;
    ms_info("PeerJS endpoint: WebSocket %s, keys %s", p->ws_path, keys);
    return MS_OK;
}

static void discovery_free(ms_gw_peerjs_t *p, discovery_t *d)
{
    lws_sul_cancel(&d->sul);
    HASH_DEL(p->waiting, d);
    p->n_waiting--;
    d->h->discovery = 0;
    free(d);
}

void ms_gw_peerjs_cleanup(ms_gateway_t *gw)
{
    if (!gw->peerjs)
        return;
    /* After lws_context_destroy, which closed every HTTP connection and so
     * forgot their discoveries; anything left has no timer or pss any more. */
    discovery_t *d, *tmp;
    HASH_ITER(hh, gw->peerjs->waiting, d, tmp)
    {
        HASH_DEL(gw->peerjs->waiting, d);
        free(d);
    }
    free(gw->peerjs);
    gw->peerjs = NULL;
}

const struct lws_http_mount *ms_gw_peerjs_mounts(ms_gateway_t *gw,
                                                 const struct lws_http_mount *next)
{
    ms_gw_peerjs_t *p = gw->peerjs;
    if (!p)
        return next;
    /* <path><key>/id and /peers: longer than "/", so they win over --static-dir. */
    for (size_t i = p->n_keys; i-- > 0;) {
        struct lws_http_mount *m = &p->mounts[i];
        m->mountpoint = p->http_path[i];
        m->mountpoint_len = (unsigned char)strlen(p->http_path[i]);
        m->origin = "meshsig-http";
        m->origin_protocol = LWSMPRO_CALLBACK;
        m->mount_next = next;
        next = m;
    }
    return next;
}

int ms_gw_peerjs_ws_path(ms_gateway_t *gw, const char *uri)
{
    return gw->peerjs && !strcmp(uri, gw->peerjs->ws_path);
}

static int key_known(const ms_gw_peerjs_t *p, const char *key)
{
    for (size_t i = 0; i < p->n_keys; i++)
        if (!strcmp(p->keys[i], key))
            return 1;
    return 0;
}

/* Queues one PeerJS JSON message (steals j). */
static void send_json(ms_gateway_t *gw, ms_session_t *s, json_t *j)
{
    if (!j)
        return;
    char *text = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    if (!text) {
        ms_error("session %llu: cannot encode a PeerJS message", (unsigned long long)s->id);
        return;
    }
    ms_gw_queue_frame(gw, s, text, strlen(text));
    free(text);
}

static void send_error_close(ms_gateway_t *gw, ms_session_t *s, const char *type, const char *msg)
{
    send_json(gw, s, json_pack("{s:s, s:{s:s}}", "type", type, "payload", "msg", msg));
    ms_gw_session_close(s, CLOSE_NORMAL);
}

static const char *urlarg(struct lws *wsi, const char *name, char *buf, int len)
{
    const char *v = lws_get_urlarg_by_name(wsi, name, buf, len);
    return v && *v ? v : NULL;
}

void ms_gw_peerjs_open(ms_gateway_t *gw, ms_session_t *s, struct lws *wsi)
{
    char kb[PEERJS_KEY_MAX + 8], ib[MS_AUTH_PEER_ID_MAX + 8], tb[4096];
    s->peerjs = 1;
    const char *key = urlarg(wsi, "key=", kb, sizeof(kb));
    const char *id = urlarg(wsi, "id=", ib, sizeof(ib));
    const char *token = urlarg(wsi, "token=", tb, sizeof(tb));
    if (!key || !id || !token) {
        send_error_close(gw, s, "ERROR", "No id, token, or key supplied to websocket server");
        return;
    }
    if (!key_known(gw->peerjs, key)) {
        send_error_close(gw, s, "ERROR", "Invalid key provided");
        return;
    }
    char ns[PEERJS_KEY_MAX + 8];
    snprintf(ns, sizeof(ns), "peerjs.%s", key);
    /* The claim: SHA-256 of the token, first 16 bytes. The owner compares
     * claims only; the token itself never leaves this gateway. */
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int dlen = 0;
    if (!EVP_Digest(token, strlen(token), digest, &dlen, EVP_sha256(), NULL) || dlen < 16) {
        send_error_close(gw, s, "ERROR", "internal error");
        return;
    }
    Meshsig__V1__Hello hello = MESHSIG__V1__HELLO__INIT;
    hello.namespace_ = ns;
    hello.peer_id = (char *)id;
    hello.token = gw->auth ? (char *)token : (char *)"";
    ms_gw_hello_claim(gw, s, "", &hello, digest, 16);
}

/* {type, payload} of a signal payload from a PeerJS peer, or NULL. */
static json_t *signal_body(const Meshsig__V1__Value *v)
{
    if (!v)
        return NULL;
    json_t *j = ms_codec_to_jansson(&v->base);
    if (!json_is_object(j) || !json_is_string(json_object_get(j, "type"))) {
        json_decref(j);
        return NULL;
    }
    return j;
}

/* A signal from the owner, written from its Value without a jansson tree;
 * 0: the jansson path decides. */
static int send_signal_fast(ms_gateway_t *gw, ms_session_t *s, const Meshsig__V1__Signal *sig)
{
    size_t len = 0;
    if (!s->peer_id || ms_pjframe_append_signal(&gw->out, &len, &gw->out_cap, sig->from, s->peer_id,
                                                sig->payload) != MS_OK)
        return 0;
    ms_gw_queue_frame(gw, s, gw->out, len);
    return 1;
}

int ms_gw_peerjs_send(ms_gateway_t *gw, ms_session_t *s, const Meshsig__V1__ServerMessage *msg)
{
    if (!s->peerjs)
        return 0;
    if (s->closing)
        return 1;
    switch (msg->msg_case) {
    case MESHSIG__V1__SERVER_MESSAGE__MSG_WELCOME:
        send_json(gw, s, json_pack("{s:s}", "type", "OPEN"));
        break;
    case MESHSIG__V1__SERVER_MESSAGE__MSG_SIGNAL: {
        if (send_signal_fast(gw, s, msg->signal))
            break;
        json_t *body = signal_body(msg->signal->payload);
        if (!body) {
            ms_debug("session %llu: a signal that is not PeerJS's dropped",
                     (unsigned long long)s->id);
            break;
        }
        json_t *out = json_pack("{s:O, s:s, s:s}", "type", json_object_get(body, "type"), "src",
                                msg->signal->from, "dst", s->peer_id ? s->peer_id : "");
        json_t *pl = json_object_get(body, "payload");
        if (out && pl)
            json_object_set(out, "payload", pl);
        json_decref(body);
        send_json(gw, s, out);
        break;
    }
    case MESHSIG__V1__SERVER_MESSAGE__MSG_ERROR: {
        const Meshsig__V1__Error *e = msg->error;
        if (s->state != MS_SESSION_JOINED) {
            /* The join failed (or the hello was refused): PeerJS ends the peer. */
            if (e->code == ERR(ID_TAKEN))
                send_error_close(gw, s, "ID-TAKEN", "ID is taken");
            else
                send_error_close(gw, s, "ERROR", *e->message ? e->message : "refused");
            break;
        }
        if (e->code == ERR(PEER_NOT_FOUND) && msg->id && *msg->id) {
            send_json(gw, s,
                      json_pack("{s:s, s:s, s:s}", "type", "EXPIRE", "src", msg->id, "dst",
                                s->peer_id ? s->peer_id : ""));
            break;
        }
        /* A PeerJS client ends itself on ERROR; a dropped signal is not worth that
         * (REPLACED closes the session with its own close code). */
        ms_debug("session %llu: error %d (%s) not passed to the PeerJS client",
                 (unsigned long long)s->id, (int)e->code, e->message);
        break;
    }
    default:
        break; /* topology, pongs, peer-left: nothing PeerJS knows */
    }
    return 1;
}

/* A scanned signal to a PeerJS session on this gateway: spliced. */
static void relay_local(ms_gateway_t *gw, ms_session_t *s, ms_session_t *t, const ms_pjframe_t *f)
{
    if (t->closing)
        return; /* as ms_gw_send: nothing more for it (and a PeerJS sender hears no ok) */
    /* t holds peer f->dst (the peer index compared them) */
    size_t src_len = strlen(s->peer_id);
    if (ms_gw_out_reserve(gw, ms_pjframe_size_n(f->type_len, src_len, f->dst_len, f->payload_len)))
        return;
    size_t len = ms_pjframe_write_n(gw->out, f->type, f->type_len, s->peer_id, src_len, f->dst,
                                    f->dst_len, f->payload, f->payload_len);
    gw->n_signals_local++;
    ms_gw_record_latency(gw, gw->frame_received_us);
    ms_gw_queue_frame(gw, t, gw->out, len);
}

/* A scanned signal for the owner: the message built here around the payload,
 * which alone is parsed (into the Value the bus carries, common/jsonvalue.h). 0: the full path. */
static int relay_owner(ms_gateway_t *gw, ms_session_t *s, const ms_pjframe_t *f)
{
    ms_pjframe_value_t v;
    if (ms_pjframe_value_init(&v, f) != MS_OK)
        return 0;
    Meshsig__V1__Signal sig = MESHSIG__V1__SIGNAL__INIT;
    sig.to = (char *)f->dst;
    sig.payload = &v.body;
    Meshsig__V1__ClientMessage cm = MESHSIG__V1__CLIENT_MESSAGE__INIT;
    /* LEAVE and EXPIRE to an absent peer are dropped by PeerJS, not expired:
     * without a request id the owner's late PEER_NOT_FOUND names nobody. */
    cm.id = (char *)(f->expires ? f->dst : "");
    cm.msg_case = MESHSIG__V1__CLIENT_MESSAGE__MSG_SIGNAL;
    cm.signal = &sig;
    ms_gw_handle_message(gw, s, &cm);
    ms_pjframe_value_cleanup(&v);
    return 1;
}

/* 1 when the scan vouched for the frame and it was handled. */
static int frame_fast(ms_gateway_t *gw, ms_session_t *s, const char *data, size_t len)
{
    ms_pjframe_t f;
    if (!ms_pjframe_scan(data, len, &f))
        return 0;
    if (f.op == MS_PJFRAME_HEARTBEAT || s->state != MS_SESSION_JOINED)
        return 1; /* liveness only; before the join, as the full path: ignored */
    /* A namespace with a topology (a policy rule for peerjs.<K>) has edges that
     * may lead to other gateways (direct.c): the full path asks there first. */
    if (!s->signal_any || s->neighbours.n || !s->peer_id)
        return 0;
    /* A peer elsewhere that the owner paired with this one (or one that is
     * moving): gateway to gateway, the payload's text as it came (direct.c). */
    if (ms_gw_direct_send_pj(gw, s, &f))
        return 1;
    ms_session_t *t = ms_gw_relay_local(gw, s, f.dst);
    if (t && t->peerjs && !t->binary && t->peer_id) {
        relay_local(gw, s, t, &f);
        return 1;
    }
    if (t)
        return 0; /* a meshsig client in a PeerJS namespace: ms_gw_send translates */
    return relay_owner(gw, s, &f);
}

void ms_gw_peerjs_frame(ms_gateway_t *gw, ms_session_t *s, const unsigned char *data, size_t len)
{
    if (frame_fast(gw, s, (const char *)data, len))
        return;
    json_error_t jerr;
    json_t *j = json_loadb((const char *)data, len, JSON_REJECT_DUPLICATES, &jerr);
    const char *type = json_string_value(json_object_get(j, "type"));
    const char *dst = json_string_value(json_object_get(j, "dst"));
    json_t *cmj = NULL;
    if (!type || !strcmp(type, "HEARTBEAT") || s->state != MS_SESSION_JOINED)
        goto done; /* PeerJS server ignores what it cannot parse, too */
    if (!strcmp(type, "LEAVE") && !dst) {
        /* The client says it is gone (PeerJS: removes the client). */
        ms_gw_publish_leave(gw, s, "left");
        ms_gw_session_reset(gw, s);
        ms_gw_session_close(s, CLOSE_NORMAL);
        goto done;
    }
    if (!dst || (strcmp(type, "OFFER") && strcmp(type, "ANSWER") && strcmp(type, "CANDIDATE") &&
                 strcmp(type, "LEAVE") && strcmp(type, "EXPIRE")))
        goto done;
    json_t *payload = json_object_get(j, "payload");
    /* LEAVE and EXPIRE to an absent peer are dropped by PeerJS, not expired:
     * without a request id the owner's late PEER_NOT_FOUND names nobody. */
    int expires = strcmp(type, "LEAVE") && strcmp(type, "EXPIRE");
    cmj = json_pack("{s:s, s:{s:s, s:{s:s}}}", "id", expires ? dst : "", "signal", "to", dst,
                    "payload", "type", type);
    if (!cmj)
        goto done;
    if (payload)
        json_object_set(json_object_get(json_object_get(cmj, "signal"), "payload"), "payload",
                        payload);
    Meshsig__V1__ClientMessage *cm = NULL;
    ms_codec_error_t cerr = {0};
    if (ms_codec_from_jansson(&meshsig__v1__client_message__descriptor, cmj,
                              (ProtobufCMessage **)&cm, &cerr) != MS_OK) {
        ms_debug("session %llu: PeerJS %s not relayed: %s", (unsigned long long)s->id, type,
                 cerr.message);
        goto done;
    }
    ms_gw_handle_message(gw, s, cm);
    meshsig__v1__client_message__free_unpacked(cm, NULL);
done:
    json_decref(cmj);
    json_decref(j);
}

/* A version 4 UUID, as PeerJS server hands out. */
static int fresh_id(char out[37])
{
    unsigned char b[16];
    if (RAND_bytes(b, sizeof(b)) != 1)
        return -1;
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
    snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0],
             b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13],
             b[14], b[15]);
    return 0;
}

/* The answer is in h: headers and body go out when the connection is writeable. */
static void discovery_answer(discovery_t *d, int status, char *body)
{
    ms_gw_http_pss_t *h = d->h;
    struct lws *wsi = d->wsi;
    h->status = status;
    h->body = body;
    h->len = body ? strlen(body) : 0;
    h->ctype = status == HTTP_STATUS_OK ? "application/json" : "text/plain";
    h->headers_due = 1;
    discovery_free(d->gw->peerjs, d);
    lws_callback_on_writable(wsi);
}

static void discovery_timeout(lws_sorted_usec_list_t *sul)
{
    discovery_t *d = lws_container_of(sul, discovery_t, sul);
    ms_warn("PeerJS discovery %llu: no answer from the namespace's owner",
            (unsigned long long)d->n);
    discovery_answer(d, HTTP_STATUS_SERVICE_UNAVAILABLE,
                     strdup("the namespace's coordinator did not answer\n"));
}

void ms_gw_peerjs_discovered(ms_gateway_t *gw, uint64_t n, const Meshsig__Bus__PeerList *peers)
{
    discovery_t *d = NULL;
    if (gw->peerjs)
        HASH_FIND(hh, gw->peerjs->waiting, &n, sizeof(n), d);
    if (!d)
        return; /* timed out or the client went away */
    json_t *a = json_array();
    for (size_t i = 0; a && i < peers->n_ids; i++)
        if (json_array_append_new(a, json_string(peers->ids[i])))
            break; /* an id that is not UTF-8 cannot be a PeerJS id */
    char *body = a ? json_dumps(a, JSON_COMPACT) : NULL;
    json_decref(a);
    if (peers->truncated)
        ms_warn("PeerJS discovery %llu: the owner listed only %zu ids", (unsigned long long)n,
                peers->n_ids);
    if (body)
        discovery_answer(d, HTTP_STATUS_OK, body);
    else
        discovery_answer(d, HTTP_STATUS_INTERNAL_SERVER_ERROR, strdup("out of memory\n"));
}

void ms_gw_peerjs_http_closed(ms_gateway_t *gw, ms_gw_http_pss_t *h)
{
    if (!h->discovery || !gw->peerjs)
        return;
    discovery_t *d = NULL;
    HASH_FIND(hh, gw->peerjs->waiting, &h->discovery, sizeof(h->discovery), d);
    if (d)
        discovery_free(gw->peerjs, d);
}

/* Asks the owner of peerjs.<key> for its peer ids; 2: the answer comes later. */
static int discovery_start(ms_gateway_t *gw, struct lws *wsi, const char *key, ms_gw_http_pss_t *h)
{
    ms_gw_peerjs_t *p = gw->peerjs;
    if (gw->cut_off || p->n_waiting >= DISCOVERY_MAX_PENDING) {
        h->status = HTTP_STATUS_SERVICE_UNAVAILABLE;
        h->body = strdup(gw->cut_off ? "no NATS\n" : "too many discoveries at once\n");
        return 1;
    }
    discovery_t *d = calloc(1, sizeof(*d));
    if (!d)
        return -1;
    char ns[PEERJS_KEY_MAX + 8];
    snprintf(ns, sizeof(ns), "peerjs.%s", key);
    d->n = ++p->next_n;
    d->wsi = wsi;
    d->h = h;
    d->gw = gw;
    Meshsig__Bus__Discover disc = MESHSIG__BUS__DISCOVER__INIT;
    Meshsig__Bus__ShardRequest req = MESHSIG__BUS__SHARD_REQUEST__INIT;
    req.gateway_id = gw->id;
    req.session = d->n;
    req.namespace_ = ns;
    req.peer_id = (char *)"";
    req.op_case = MESHSIG__BUS__SHARD_REQUEST__OP_DISCOVER;
    req.discover = &disc;
    if (ms_gw_publish_shard(gw, ms_bus_shard_of(ns, (uint32_t)gw->cfg->shards), &req, 1) != 0) {
        free(d);
        h->status = HTTP_STATUS_SERVICE_UNAVAILABLE;
        h->body = strdup("no NATS\n");
        return 1;
    }
    HASH_ADD(hh, p->waiting, n, sizeof(d->n), d);
    p->n_waiting++;
    h->discovery = d->n;
    lws_sul_schedule(lws_get_context(wsi), 0, &d->sul, discovery_timeout, DISCOVERY_TIMEOUT_US);
    return 2;
}

int ms_gw_peerjs_http(ms_gateway_t *gw, struct lws *wsi, const char *uri, ms_gw_http_pss_t *h,
                      const char **ctype)
{
    ms_gw_peerjs_t *p = gw->peerjs;
    if (!p)
        return 0;
    for (size_t i = 0; i < p->n_keys; i++) {
        size_t n = strlen(p->http_path[i]);
        if (strncmp(uri, p->http_path[i], n) || uri[n] != '/')
            continue;
        const char *what = uri + n + 1;
        h->cors = 1;
        *ctype = "text/plain";
        if (!strcmp(what, "id")) {
            char id[37];
            if (fresh_id(id))
                return -1;
            h->status = HTTP_STATUS_OK;
            h->body = strdup(id);
        } else if (!strcmp(what, "peers") && gw->cfg->peerjs_discovery) {
            int r = discovery_start(gw, wsi, p->keys[i], h);
            if (r != 1)
                return r;
        } else if (!strcmp(what, "peers")) {
            /* Discovery is off, as PeerJS server's default (allow_discovery). */
            h->status = HTTP_STATUS_UNAUTHORIZED;
            h->body = strdup("");
        } else {
            return 0;
        }
        h->len = h->body ? strlen(h->body) : 0;
        return h->body ? 1 : -1;
    }
    return 0;
}
