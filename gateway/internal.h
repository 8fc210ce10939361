/* SPDX-License-Identifier: Apache-2.0 */
/* The gateway's private state and the calls its files make to each other (not installed).
 *
 * Everything here runs on the lws service thread (DESIGN.md §8) unless a
 * comment says otherwise: cnats threads only push into the mailbox (intake.c).
 *
 * Where each concept lives:
 *   gateway.c    lifecycle: ms_gw_create as a list of steps, run, drain, destroy
 *   ws.c         the lws WebSocket protocol callback and the write path to clients
 *   dispatch.c   one client frame: rate limits, decoding, routing, membership tracking
 *   hello.c      hello, token and resume-token checks, the join and its deadline
 *   relay.c      signals between neighbours without the owner (with a fast JSON scan)
 *   direct.c     the direct path: signals to neighbours on other gateways, and from them
 *   dout.c       the direct path's outgoing batches, one per destination gateway per turn
 *   publish.c    requests to the owner of a shard over NATS
 *   intake.c     deliveries from the bus: the mailbox, epoch fencing, delivery to sessions
 *   resync.c     reports of our sessions to a coordinator taking over a shard
 *   peers.c      the index of joined sessions by (namespace, peer id)
 *   liveness.c   hello/join deadlines and the idle ping/drop sweep
 *   heartbeat.c  the gateway heartbeat on the bus
 *   http.c       /healthz, /metrics, static files and the Origin allowlist
 *   metrics.c    the Prometheus text and the relay latency histogram
 */
#ifndef MS_GW_INTERNAL_H
#define MS_GW_INTERNAL_H

#include <signal.h>
#include <stdint.h>
#include <time.h>
#include <libwebsockets.h>

#include "clock.h"
#include "auth.h"
#include "bus.h"
#include "busver.h"
#include "bus.pb-c.h"
#include "client.pb-c.h"
#include "evloop.h"
#include "pbarena.h"
#include "gateway.h"
#include "ratelimit.h"
#include "ice.h"
#include "session.h"
#include "ptrindex.h"
#include "addrlimit.h"

#define ERR(code) MESHSIG__V1__ERROR_CODE__##code
#define CLOSE_TOO_BIG 1009
#define CLOSE_BAD_UTF8 1007
#define CLOSE_POLICY 1008
#define CLOSE_GOING_AWAY 1001
#define CLOSE_TRY_LATER 1013 /* RFC 6455 §7.4.1 registry: "Try Again Later" (gateway full) */
/* Bytes of frames written to one client in one send (ws.c); also the WebSocket protocols'
 * tx_packet_size (gateway.c), without which lws cuts every send to rx_buffer_size. */
#define MS_GW_WRITE_BATCH (32 * 1024)

/* The operator caps a gateway enforces (--max-*), counted in /metrics when reached. */
typedef enum {
    MS_GW_CAP_SESSIONS,
    MS_GW_CAP_ROOMS,
    MS_GW_CAP_SERVICES,
    MS_GW_CAP_SUBSCRIPTIONS,
    MS_GW_CAP_HANDSHAKES_PER_IP,
    MS_GW_CAP_SESSIONS_PER_IP,
    MS_GW_CAP_COUNT
} ms_gw_cap_t;

typedef struct ms_gw_direct ms_gw_direct_t;
typedef struct ms_gw_dout ms_gw_dout_t;

/* Fields are grouped by the file that owns them (writes them); others only read. */
typedef struct ms_gw_peerjs ms_gw_peerjs_t;

struct ms_gateway {
    /* gateway.c: configuration, identity, the lws context, shutdown */
    const ms_gw_config_t *cfg;
    char id[96];
    char subject[160]; /* <prefix>.gw.<id>: deliveries and join replies */
    struct lws_context *ctx;
    ms_evloop_t *loop;                 /* under ctx: libev (epoll) or lws's poll() */
    struct lws_protocols protocols[4]; /* the table in gateway.c with --rx-buffer */
    uint64_t started_ms;
    volatile sig_atomic_t stop;
    int draining; /* SIGTERM: no new sessions, the others told to reconnect elsewhere */
    /* NATS unreachable since nats_lost_us (0: connected); cut_off once that
     * lasted --nats-lost-ms: clients are sent elsewhere, /healthz says 503. */
    uint64_t nats_lost_us;
    int cut_off;

    /* http.c */
    struct lws_http_mount mounts[3]; /* /healthz, /metrics, then files at / */

    /* peerjs.c: NULL when the PeerJS endpoint is off */
    ms_gw_peerjs_t *peerjs;

    /* intake.c: the bus connection, the mailbox from cnats threads, fencing */
    char resync_subject[160];
    ms_bus_t *bus;
    ms_mailbox_t *inbox;
    uint64_t *epochs;         /* highest epoch seen per shard: older batches are fenced off */
    ms_busver_t busver;       /* coordinators of another bus major, refused */
    ms_pbarena_t batch_arena; /* what one unpacked GatewayBatch allocates */

    /* hello.c */
    ms_auth_t *auth;
    struct ms_resume_signer *resume; /* resume tokens' HMAC, keyed once; NULL: resume off */

    /* ws.c: per-client-address limits (addrlimit.h). A connection's tag lives in its wsi's
     * opaque user pointer; the one accepted last waits in al_pending until lws gives it a wsi. */
    ms_addrlimit_t *addrlimit;
    ms_addrlimit_tag_t al_pending;
    int al_pending_fd;

    /* ws.c: the sessions and the write path */
    ms_pidx_t sessions; /* every WebSocket session, by id (ms_gw_session_find) */
    size_t n_sessions;
    uint64_t next_session;
    char *out; /* scratch: one encoded message (relay.c builds into it too) */
    size_t out_cap;
    unsigned char ping[LWS_PRE + 2]; /* "ms": lws reports only pongs with a payload */
    unsigned char *wbuf;             /* frames for one client write */
    size_t wbuf_cap;
    /* Ids of the sessions that got frames this loop turn, written at its
     * end (ms_gw_write_flush); ids, not pointers: one may close meanwhile. */
    uint64_t *wsoon;
    size_t n_wsoon, wsoon_cap;

    /* dispatch.c */
    ms_ratelimit_rule_t rule_msgs, rule_bytes; /* per session, from the config */
    uint64_t frame_received_us;                /* wall clock of the frame being handled */

    /* publish.c */
    uint64_t next_req;
    uint8_t *pub; /* scratch: one packed request */
    size_t pub_cap;
    size_t pub_len; /* of the last request packed into pub */

    /* inflight.c: client requests to owners kept until answered */
    struct ms_gw_inflight *inflight;
    uint64_t n_resent;            /* sent again to a shard's new owner */
    uint64_t n_inflight_retried;  /* sent again to the same owner: no answer came */
    uint64_t n_inflight_gave_up;  /* answered UNAVAILABLE: no answer to any copy */
    uint64_t n_inflight_withheld; /* copies not sent: the owner may apply each (inflight.c) */
    uint64_t n_no_responders;     /* nats-server's "no responders" to a join (intake.c) */
    uint64_t n_dropped_again;     /* answers to copies whose first answer came (intake.c) */

    /* receipt.c: stored emits queued but not yet written, per session */
    struct ms_gw_receipts *receipts;

    /* direct.c */
    ms_gw_direct_t *direct;
    ms_gw_dout_t *dout;                 /* dout.c */
    uint64_t n_direct_out, n_direct_in; /* signals sent to / delivered from other gateways */
    uint64_t n_direct_to_owner;         /* direct signals this gateway handed to the owner */
    uint64_t n_direct_batches;          /* NATS messages that carried direct signals out */
    uint64_t n_direct_held;             /* direct signals held for the owner's announcement */
    uint64_t n_direct_retire_timeouts;  /* a moved sender's old place sent no END in time */

    /* peers.c */
    ms_pidx_t by_peer; /* joined sessions by (namespace, peer id): peer_key */

    /* liveness.c */
    lws_sorted_usec_list_t sul_sweep;
    ms_dlist_t hello_waits, join_waits; /* FIFO deadline lists */
    ms_dlist_t idle, pinged;            /* FIFO liveness lists */

    /* ice.c: STUN/TURN servers for the welcome, TURN credentials renewed */
    ms_gw_ice_t ice;
    uint64_t ice_next_walk_us; /* the renewal walk runs once a second */
    uint64_t n_ice_renewals;

    /* heartbeat.c */
    char hb_subject[160];
    lws_sorted_usec_list_t sul_heartbeat;

    /* metrics.c: relay latency, client frame at one gateway -> delivery at another */
    uint64_t lat_buckets[12]; /* per bucket (metrics.c lat_bounds_us), not cumulative */
    uint64_t lat_count, lat_sum_us;
    /* Counters, each bumped where its event happens, printed by metrics.c. */
    uint64_t n_in, n_out, n_dropped_epoch, n_dropped_session, n_closed_slow, n_rate_limited;
    uint64_t n_undeliverable; /* deliveries that could not be encoded for their receiver */
    uint64_t n_signals_local; /* relayed here between two sessions of this gateway */
    uint64_t n_cap_refused[MS_GW_CAP_COUNT]; /* requests refused at an operator cap */
    uint64_t n_throttled;                    /* reads paused for a client over its rate */
};

/* ---- ws.c ---------------------------------------------------------------- */

/* The session with this id, or NULL (ids are never reused). */
ms_session_t *ms_gw_session_find(ms_gateway_t *gw, uint64_t id);
/* ms_pidx hash of gw->sessions (gateway.c sets it up). */
uint64_t ms_gw_session_hash(const void *s);

/* The lws callback of the two WebSocket subprotocols. */
int ms_gw_ws_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                      size_t len);
/* Closes with code once the queue is written; nothing more is queued after. */
void ms_gw_session_close(ms_session_t *s, uint16_t code);
/* Every session is told to reconnect to another gateway (with its resume
 * token) and closed with 1001 once its queue is written. */
void ms_gw_send_all_elsewhere(ms_gateway_t *gw, const char *reason);
/* Service thread, every 100 ms: sends clients elsewhere once NATS has been
 * unreachable for --nats-lost-ms (gateway.c). */
void ms_gw_check_nats(ms_gateway_t *gw);
/* Queues one encoded message (in the session's encoding) for the client. */
void ms_gw_queue_frame(ms_gateway_t *gw, ms_session_t *s, const void *data, size_t len);
/* Grows the scratch buffer gw->out to hold need bytes; -1: out of memory (it is unchanged). */
int ms_gw_out_reserve(ms_gateway_t *gw, size_t need);
/* Writes {"signal":{"from":FROM,"payload":PAYLOAD}} into gw->out, the payload (JSON, or NULL
 * for none) as the sender wrote it, and returns its length; 0: out of memory. */
size_t ms_gw_signal_json(ms_gateway_t *gw, const char *from, const char *payload, size_t len);
/* The end of a loop turn: writes what this turn queued for each session. */
void ms_gw_write_flush(ms_gateway_t *gw);
/* Encodes msg in the session's encoding and queues it. */
/* Encodes msg in the session's encoding and queues it. MS_ERR_INVAL: msg
 * cannot be written in that encoding (e.g. nested deeper than JSON output
 * allows); MS_ERR_NOMEM. A full queue is not an error here: the slow reader
 * is closed. */
/* LWS_CALLBACK_HTTP_CONFIRM_UPGRADE: 426 for a WebSocket version but 13 (ws.c). */
int ms_gw_confirm_upgrade(struct lws *wsi, const char *up);
ms_err_t ms_gw_send(ms_gateway_t *gw, ms_session_t *s, const Meshsig__V1__ServerMessage *msg);
/* msg could not be written for s (err from ms_gw_send): its sender gets an
 * error instead of silence, directly or through the shard owner (intake.c). */
void ms_gw_bounce(ms_gateway_t *gw, ms_session_t *s, const Meshsig__V1__ServerMessage *msg,
                  ms_err_t err);
/* Why a message for t was not delivered, for the sender's error. */
const char *ms_gw_undeliverable_why(const ms_session_t *t, ms_err_t err);
void ms_gw_send_error(ms_gateway_t *gw, ms_session_t *s, const char *id,
                      Meshsig__V1__ErrorCode code, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
/* ok answering request id; nothing when id is NULL or empty (a request without an id hears
 * back only when it fails). */
void ms_gw_send_ok(ms_gateway_t *gw, ms_session_t *s, const char *id);

/* ---- inflight.c ---------------------------------------------------------- */

typedef struct ms_gw_inflight ms_gw_inflight_t;
ms_err_t ms_gw_inflight_init(ms_gateway_t *gw);
void ms_gw_inflight_cleanup(ms_gateway_t *gw);
/* The newest owner epoch this gateway has seen for shard (0: none yet); requests carry it. */
uint64_t ms_gw_inflight_epoch(const ms_gateway_t *gw, uint32_t shard);
/* Whether a request of s with client id cid is kept: 1 (it is then sent with resend=1 and given
 * to ms_gw_inflight_add); 0 when it cannot be (no id, an id already in flight): sent untracked;
 * -1 when too many of the session's (or the gateway's) wait for an owner: not sent, and
 * answered UNAVAILABLE. */
int ms_gw_inflight_room(ms_gateway_t *gw, const ms_session_t *s, const char *cid);
/* Keeps the packed request (copied), sent at epoch as req_id "<gateway id>/<req>", until a
 * message with its id comes back. */
void ms_gw_inflight_add(ms_gateway_t *gw, const ms_session_t *s, const char *cid,
                        const uint8_t *data, size_t len, uint64_t epoch, uint64_t req);
/* A message with id was delivered to s: its request is answered. 1 when it was kept. req_id
 * (Delivery.req_id: an answer to a copy) names the request it answers: one kept under the
 * same id for another req_id (the id used again once answered) is not answered by it, and
 * stays. NULL or "": any request with that id. */
int ms_gw_inflight_answered(ms_gateway_t *gw, const ms_session_t *s, const char *id,
                            const char *req_id);
/* The owner has s's request id (req_id, as above) and answers it later (Delivery.received):
 * no copies of it are sent until the shard changes hands. */
void ms_gw_inflight_received(ms_gateway_t *gw, const ms_session_t *s, const char *id,
                             const char *req_id);
/* s closed or left its namespace: its requests are forgotten. */
void ms_gw_inflight_forget(ms_gateway_t *gw, const ms_session_t *s);
/* The owner of shard is at epoch and stamps its messages with bus_version (a batch or a
 * ResyncRequest): when that epoch is newer, the kept requests of the shard sent at an older
 * epoch are sent again, in their order, if that owner applies copies once (busver.h). */
void ms_gw_inflight_new_epoch(ms_gateway_t *gw, uint32_t shard, uint64_t epoch,
                              uint32_t bus_version);
/* Sends a copy of each request unanswered for a while (with backoff), answers UNAVAILABLE to
 * those that got no answer to any copy, or none for longer than any client waits
 * (liveness.c, every 100 ms). */
void ms_gw_inflight_sweep(ms_gateway_t *gw, uint64_t now_us);

/* ---- dispatch.c ---------------------------------------------------------- */

/* One complete client message (data is borrowed). */
void ms_gw_handle_frame(ms_gateway_t *gw, ms_session_t *s, const unsigned char *data, size_t len,
                        int binary);
/* s went over its message rate (need_msg) or byte rate (need_bytes: the
 * message's size): its socket is not read for 100 ms, or until one more
 * message or need_bytes fit, at most 1 s; LWS_CALLBACK_TIMER resumes it. */
void ms_gw_throttle(ms_gateway_t *gw, ms_session_t *s, int need_msg, size_t need_bytes);
/* One decoded client message (cm is borrowed). */
void ms_gw_handle_message(ms_gateway_t *gw, ms_session_t *s, Meshsig__V1__ClientMessage *cm);
/* Keeps the client's view of its edges, from a message about to be sent to it. */
void ms_gw_track_delivery(ms_session_t *s, const Meshsig__V1__ServerMessage *m);

/* ---- hello.c ------------------------------------------------------------- */

/* Token verification and the resume key, from the config. */
ms_err_t ms_gw_hello_init(ms_gateway_t *gw);

/* ice.c: parses --stun-urls/--turn-urls/--turn-secret (a bad value stops the
 * start); adds the servers, with fresh credentials for s, to a welcome (buf
 * holds them until it is sent); sends sessions whose credentials are 80% gone
 * fresh ones (walks the sessions once a second). */
ms_err_t ms_gw_ice_setup(ms_gateway_t *gw);
void ms_gw_ice_welcome(ms_gateway_t *gw, ms_session_t *s, Meshsig__V1__Welcome *w,
                       ms_gw_ice_buf_t *buf);
void ms_gw_ice_sweep(ms_gateway_t *gw, uint64_t now_us);
void ms_gw_hello_cleanup(ms_gateway_t *gw);
void ms_gw_hello(ms_gateway_t *gw, ms_session_t *s, const char *cid, Meshsig__V1__Hello *hello);
/* The same with a claim on the peer id (bus Join.claim; peerjs.c). */
void ms_gw_hello_claim(ms_gateway_t *gw, ms_session_t *s, const char *cid,
                       Meshsig__V1__Hello *hello, const uint8_t *claim, size_t claim_len);
/* The session's hello or join deadline passed (liveness.c calls it). */
void ms_gw_hello_deadline(ms_gateway_t *gw, ms_session_t *s);
/* Back to "connected, not joined": after a leave, a refused or timed-out join. */
void ms_gw_session_reset(ms_gateway_t *gw, ms_session_t *s);
/* The client's latest position, packed, for a takeover's resync report. */
void ms_gw_keep_position(ms_session_t *s, const Meshsig__V1__Position *pos);

/* ---- relay.c ------------------------------------------------------------- */

/* Each returns 1 when the signal was relayed here (the caller is done), 0 when
 * it must take the owner's path. */
int ms_gw_relay_signal(ms_gateway_t *gw, ms_session_t *s, const Meshsig__V1__Signal *sig,
                       const char *cid);
int ms_gw_relay_json(ms_gateway_t *gw, ms_session_t *s, const char *data, size_t len);
/* The session of this gateway that a signal from s to peer `to` goes to
 * without the owner (a neighbour holding the edge too, or any joined peer of
 * a signal_any namespace), or NULL: the owner's path. Not the direct path to
 * other gateways: callers that may have edges ask ms_gw_direct_send first. */
ms_session_t *ms_gw_relay_local(ms_gateway_t *gw, ms_session_t *s, const char *to);

/* ---- direct.c ------------------------------------------------------------ */

ms_err_t ms_gw_direct_init(ms_gateway_t *gw);
void ms_gw_direct_cleanup(ms_gateway_t *gw);
/* A signal from s to its neighbour to (payload as JSON text, or decoded):
 * 1 when it was taken (sent to the neighbour's gateway, or held while the
 * neighbour moves), 0 when it takes relay.c's local path or the owner's. */
int ms_gw_direct_send(ms_gateway_t *gw, ms_session_t *s, const char *to, const char *json,
                      size_t json_len, const Meshsig__V1__Value *payload, const char *cid);
/* The same for a PeerJS frame the scan vouched for (pjframe.h), with its type and payload
 * text. */
struct ms_pjframe;
int ms_gw_direct_send_pj(ms_gateway_t *gw, ms_session_t *s, const struct ms_pjframe *f);
/* The owner says where s's ad-hoc pair lives (bus Delivery.pair): a neighbour from now on. */
void ms_gw_direct_pair(ms_gateway_t *gw, ms_session_t *s, const Meshsig__Bus__PeerLocation *loc,
                       uint32_t shard, uint64_t epoch);
/* s's ad-hoc pair with u->peer_id ends (it left; bus Delivery.unpair). */
void ms_gw_direct_unpair(ms_gateway_t *gw, ms_session_t *s, const Meshsig__Bus__PeerLocation *u);
/* The owner says where s's neighbour lives (with a connect, or after a move). */
void ms_gw_direct_location(ms_gateway_t *gw, ms_session_t *s, const Meshsig__Bus__PeerLocation *loc,
                           uint32_t shard, uint64_t epoch);
/* An owner path barrier delivered to session s (bus.proto Delivery.barrier). */
void ms_gw_direct_barrier(ms_gateway_t *gw, ms_session_t *s, const Meshsig__Bus__PeerLocation *b);
/* The owner's word that r->peer_id's old session r->gateway_id/r->session has
 * closed and its owner-path signals were routed (bus.proto Delivery.retired);
 * gone: its gateway is gone too, no END will come. */
void ms_gw_direct_retired(ms_gateway_t *gw, ms_session_t *s, const Meshsig__Bus__PeerLocation *r,
                          int gone);
/* The owner ends s (REPLACED): it reads nothing more, so its neighbours'
 * gateways get its END now, not when the connection has closed. */
void ms_gw_direct_closing(ms_gateway_t *gw, ms_session_t *s);
/* s's edge to peer is gone (NULL: all of s's, it is closing or leaving):
 * what it held goes to the owner. */
void ms_gw_direct_forget(ms_gateway_t *gw, ms_session_t *s, const char *peer);
/* A batch from another gateway. */
void ms_gw_direct_receive(ms_gateway_t *gw, const Meshsig__Bus__GatewayBatch *b);
/* Held signals again, after the owner's deliveries (and on the sweep). */
void ms_gw_direct_recheck(ms_gateway_t *gw, uint64_t now);
void ms_gw_direct_sweep(ms_gateway_t *gw, uint64_t now);

/* ---- dout.c -------------------------------------------------------------- */

ms_err_t ms_gw_dout_init(ms_gateway_t *gw);
void ms_gw_dout_cleanup(ms_gateway_t *gw);
/* Appends ds to to_gw's batch for this loop turn; -1 without memory. */
int ms_gw_dout_append(ms_gateway_t *gw, const char *to_gw, const Meshsig__Bus__DirectSignal *ds);
/* Publishes the batches built this loop turn, one per destination gateway. */
void ms_gw_dout_flush(ms_gateway_t *gw);

/* ---- receipt.c ----------------------------------------------------------- */

/* A stored emit with stream sequence seq and msg_id was just handed to
 * ms_gw_send for s (before: s->tail before that call): its frame is marked,
 * and the owner gets a receipt (bus Receipt) once it is written, or, for a
 * session whose hello set acksPersistent, once the client acks msg_id. */
void ms_gw_receipt_expect(ms_gateway_t *gw, ms_session_t *s, const ms_outmsg_t *before,
                          uint64_t seq, const char *msg_id);
/* A write to s took n marked frames: their receipts go to the owner (or
 * wait for the client's `received`). */
void ms_gw_receipt_written(ms_gateway_t *gw, ms_session_t *s, unsigned n);
/* The client of s acked these msgIds: their receipts go to the owner. */
void ms_gw_receipt_received(ms_gateway_t *gw, ms_session_t *s, const Meshsig__V1__Received *rc);
/* s closes or leaves: what it did not write, or its client did not ack, gets
 * no receipt (stays stored). */
void ms_gw_receipt_forget(ms_gateway_t *gw, ms_session_t *s);
void ms_gw_receipt_cleanup(ms_gateway_t *gw);

/* ---- publish.c ----------------------------------------------------------- */

/* Fills in the envelope (request id, gateway, session, namespace, peer) and
 * publishes to the shard's owner; with_reply asks for the answer on our subject. */
int ms_gw_publish_request(ms_gateway_t *gw, ms_session_t *s, Meshsig__Bus__ShardRequest *req,
                          int with_reply);
void ms_gw_publish_leave(ms_gateway_t *gw, ms_session_t *s, const char *reason);
/* req as it is (the caller fills in the envelope) to the owner of shard. */
int ms_gw_publish_shard(ms_gateway_t *gw, uint32_t shard, Meshsig__Bus__ShardRequest *req,
                        int with_reply);

/* ---- intake.c ------------------------------------------------------------ */

/* The mailbox, the NATS connection and our subscriptions. */
ms_err_t ms_gw_intake_start(ms_gateway_t *gw);
/* Handles what cnats threads queued (from LWS_CALLBACK_EVENT_WAIT_CANCELLED). */
void ms_gw_intake_drain(ms_gateway_t *gw);

/* ---- resync.c ------------------------------------------------------------ */

void ms_gw_resync_report(ms_gateway_t *gw, const Meshsig__Bus__ResyncRequest *rq);

/* ---- peers.c ------------------------------------------------------------- */

/* ms_pidx hash of gw->by_peer (gateway.c sets it up). */
uint64_t ms_gw_peer_hash(const void *s);
void ms_gw_peer_index_add(ms_gateway_t *gw, ms_session_t *s);
void ms_gw_peer_index_remove(ms_gateway_t *gw, ms_session_t *s);
/* The joined session of this gateway holding peer in ns, or NULL. ns is a
 * session's namespace (interned: ms_intern, whose hash it reuses). */
ms_session_t *ms_gw_peer_index_find(ms_gateway_t *gw, const char *ns, const char *peer);
/* The same for any string naming the namespace (a bus message's). */
ms_session_t *ms_gw_peer_index_find_name(ms_gateway_t *gw, const char *ns, const char *peer);

/* ---- liveness.c ---------------------------------------------------------- */

void ms_gw_liveness_start(ms_gateway_t *gw);
void ms_gw_deadline_arm(ms_gateway_t *gw, ms_session_t *s, ms_dlist_t *list, uint64_t after_us);
void ms_gw_deadline_cancel(ms_session_t *s);
/* A frame or pong from the client: back to the tail of the idle list. */
void ms_gw_idle_touch(ms_gateway_t *gw, ms_session_t *s);

/* ---- heartbeat.c --------------------------------------------------------- */

void ms_gw_heartbeat_start(ms_gateway_t *gw);

/* ---- http.c -------------------------------------------------------------- */

int ms_gw_http_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                        size_t len);
/* A 404 written whole from the gateway's own buffer, the transaction completed (any
 * protocol's LWS_CALLBACK_HTTP); 0, or -1 to close. */
int ms_gw_http_not_found(struct lws *wsi);
/* The HTTP protocol's per-connection storage. */
typedef struct {
    char *body;
    size_t len;
    int status;
    int cors;           /* Access-Control-Allow-Origin: * (PeerJS's /id is fetched cross-origin) */
    const char *ctype;  /* the answer's Content-Type (a static string) */
    int headers_due;    /* an answer that came later: headers go in the next writeable */
    uint64_t discovery; /* PeerJS /peers waiting for the owner (peerjs.c), 0: none */
    int close_after;    /* a request with a body (or not a GET): answered, then closed */
} ms_gw_http_pss_t;
/* Before closing a socket whose answer is written: FIN after the answer, then what the
 * client sent that nobody will read dropped (at most 16 KiB, never waiting), so that
 * the close does not reset the connection over the answer (Linux resets a socket
 * closed with unread bytes). ms_gw_http_linger: nothing while lws still holds part of
 * the answer (it sends that before it closes). */
void ms_gw_linger_fd(int fd);
void ms_gw_http_linger(struct lws *wsi);
/* The mount list (/healthz, /metrics, --static-dir), stored in gw->mounts. */
const struct lws_http_mount *ms_gw_http_mounts(ms_gateway_t *gw);
int ms_gw_origin_allowed(ms_gateway_t *gw, struct lws *wsi);

/* ---- metrics.c ----------------------------------------------------------- */

/* Wall clocks: exact on one host, off by the clock skew between hosts. */
void ms_gw_record_latency(ms_gateway_t *gw, uint64_t origin_us);
/* The /metrics body (malloc'd, caller frees), or NULL. */
char *ms_gw_metrics_text(ms_gateway_t *gw, size_t *len);

/* ---- peerjs.c ------------------------------------------------------------ */

ms_err_t ms_gw_peerjs_init(ms_gateway_t *gw);
void ms_gw_peerjs_cleanup(ms_gateway_t *gw);
/* Prepends the PeerJS HTTP mounts (<path><key>) to next. */
const struct lws_http_mount *ms_gw_peerjs_mounts(ms_gateway_t *gw,
                                                 const struct lws_http_mount *next);
/* 1 when uri is the PeerJS WebSocket path. */
int ms_gw_peerjs_ws_path(ms_gateway_t *gw, const char *uri);
/* A new PeerJS WebSocket (ESTABLISHED): checks key, id and token, then joins. */
void ms_gw_peerjs_open(ms_gateway_t *gw, ms_session_t *s, struct lws *wsi);
/* One PeerJS client frame, after the rate limits. */
void ms_gw_peerjs_frame(ms_gateway_t *gw, ms_session_t *s, const unsigned char *data, size_t len);
/* 1 when s speaks PeerJS (msg was translated, or dropped): ms_gw_send is done. */
int ms_gw_peerjs_send(ms_gateway_t *gw, ms_session_t *s, const Meshsig__V1__ServerMessage *msg);
/* GET <path><key>/id and /peers: 1 when answered into h (body, status), 0 when
 * uri is not PeerJS's, -1 when out of memory. */
/* 0: not a PeerJS URL; 1: answered in h; 2: the answer comes later (discovery:
 * h->headers_due is set and the connection asked to write); -1: failed. */
int ms_gw_peerjs_http(ms_gateway_t *gw, struct lws *wsi, const char *uri, ms_gw_http_pss_t *h,
                      const char **ctype);
/* The owner's answer to a discovery (bus Delivery.peers for request number n). */
void ms_gw_peerjs_discovered(ms_gateway_t *gw, uint64_t n, const Meshsig__Bus__PeerList *peers);
/* The HTTP connection of h closed: forget its discovery. */
void ms_gw_peerjs_http_closed(ms_gateway_t *gw, ms_gw_http_pss_t *h);

#endif
