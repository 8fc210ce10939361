/* SPDX-License-Identifier: Apache-2.0 */
/* One client WebSocket: its state, its inbound reassembly buffer and its bounded outbound queue.
 *
 * Sessions live in lws's per-session storage and belong to the lws service
 * thread; no other thread touches them.
 */
#ifndef MS_GW_SESSION_H
#define MS_GW_SESSION_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <libwebsockets.h>

#include "dlist.h"
#include "ratelimit.h"
#include "strset.h"

typedef enum {
    MS_SESSION_NEW = 0, /* connected, no hello yet (or after leave / failed hello) */
    MS_SESSION_JOINING, /* hello sent to the owner, no answer yet */
    MS_SESSION_JOINED,
} ms_session_state_t;
_Static_assert(MS_SESSION_JOINED < 4, "ms_session_t.state is a 2-bit field");

typedef struct ms_outmsg {
    struct ms_outmsg *next;
    size_t len;
    uint8_t binary;
    uint8_t receipt; /* a stored emit: its owner hears once it is written or acked (receipt.c) */
    unsigned char buf[]; /* LWS_PRE bytes of headroom, then len bytes */
} ms_outmsg_t;

/* What few sessions use (a tree parent, a position or metadata, rooms, services,
 * topic subscriptions), allocated on first use (ms_session_ext): an idle session
 * holds only the pointer, 80 bytes less per connection. */
typedef struct {
    /* What this client asked for, so that a coordinator taking over the shard
     * can rebuild it from the gateways (ResyncReport). */
    ms_strset_t rooms, services, subscriptions;
    char *parent;
    uint8_t *hello_pos, *hello_meta; /* packed Position / Struct from the hello */
    uint32_t hello_pos_len, hello_meta_len;
} ms_session_ext_t;

/* A join sent to the owner and not yet answered, packed: re-sent every
 * second until deadline_us (hello.c). Freed when answered: an idle session
 * holds only the pointer. buf holds len bytes of the packed request, then
 * the client's request id (a C string), for the error if nobody answers. */
typedef struct {
    uint64_t deadline_us;
    uint32_t len;
    uint8_t buf[];
} ms_session_join_t;

/* The client's request id of a kept join (its hello's id, maybe ""). */
static inline const char *ms_session_join_cid(const ms_session_join_t *j)
{
    return (const char *)j->buf + j->len;
}

/* A message that arrives in pieces (longer than lws's receive buffer, or
 * fragmented by the client), reassembled; freed once it is complete. Sizes
 * are bounded by --max-frame (under 4 GiB). cap MS_SESSION_RX_DISCARD: the
 * rest of an oversize message is read and dropped, len counts its bytes (cut
 * off at 16 times --max-frame, at most 64 MiB), and buf holds nothing. */
#define MS_SESSION_RX_DISCARD UINT32_MAX
typedef struct {
    uint32_t len, cap;
    unsigned char buf[];
} ms_session_rx_t;

/* A peer id of up to this many characters is kept inside the session (no allocation). */
#define MS_SESSION_PEER_SMALL 15

/* One per WebSocket, in lws's per-session storage: the fields are packed by
 * size (the idle benchmark's memory per connection counts every 16 bytes:
 * 216 bytes is a 224-byte chunk; the next step down is 200). */
typedef struct ms_session {
    uint64_t id; /* 0 until established: also marks HTTP connections */
    struct lws *wsi;
    char *ns; /* ms_intern: shared with the sessions of its namespace, never written */
    /* NULL, peer_small, or a heap copy of a longer id: set with ms_session_set_peer. */
    char *peer_id;
    ms_session_join_t *join; /* the join sent to the owner and not yet answered, or NULL */
    /* The outbound queue, circular: NULL when empty, else the last frame,
     * whose next is the first (ms_session_head). */
    ms_outmsg_t *tail;
    ms_session_rx_t *rx;      /* a message in pieces, or an oversize one being dropped; or NULL */
    ms_ratelimit_pair_t rate; /* messages, bytes; the rules are the gateway's */
    /* Hello or join deadline: the session sits in one of the gateway's two
     * FIFO deadline lists (all entries of a list share one timeout, so a list
     * stays sorted and arming is O(1); a per-session lws timer costs O(N)). */
    ms_dnode_t deadline_node;
    union {
        /* Only before the join is answered (MS_SESSION_NEW, JOINING): the
         * deadline lists hold no joined session. */
        uint64_t deadline_us;
        /* Only while peer_indexed, which only a joined session is: the key of
         * the gateway's index of joined sessions by (namespace, peer id), for
         * signals between neighbours that are both on this gateway (peers.c);
         * the index of all sessions is by id (ws.c). */
        uint64_t peer_key;
    };
    /* Liveness: the session sits in the gateway's idle list (ordered by its
     * last frame from the client) or, once pinged, in its pinged list
     * (ordered by the ping); a frame or pong puts it back at the idle tail. */
    ms_dnode_t idle_node;
    uint64_t last_rx_us;
    /* What this client was told, so that a coordinator taking over the
     * shard can rebuild it from the gateways (ResyncReport); what it asked
     * for is in ext. */
    ms_strset_t neighbours;
    /* Namespace with signals to any peer (signal_any): the peers this session
     * has signalled through the owner, which keep that path (relay.c). */
    ms_strset_t owner_routed;
    /* Ad-hoc pairs (bus Delivery.pair): peers of a signals:any namespace that the
     * owner told this session where they live; direct.c treats them as neighbours. */
    ms_strset_t pairs;
    ms_session_ext_t *ext; /* NULL until first used */
    /* Sizes are bounded by the frame and queue caps (under 4 GiB). */
    uint32_t queued;
    uint32_t shard;
    uint32_t ice_renew_s; /* monotonic second to send fresh TURN credentials; 0: none */
    uint16_t close_code;
    /* Flags, one bit each: the session's size decides lws's allocation (16-byte steps). */
    unsigned state : 2; /* ms_session_state_t */
    unsigned
        grants : 2; /* MS_RESUME_GRANT_*: what the hello token allowed, kept in resume tokens */
    unsigned binary : 1;   /* meshsig.v1.proto */
    unsigned closing : 1;  /* close after the queue drains */
    unsigned ping_due : 1; /* a ping is to be written */
    unsigned peer_indexed : 1;
    unsigned source : 1; /* joined as a tree's source (reported in a resync) */
    unsigned peerjs : 1; /* speaks the PeerJS server protocol (peerjs.c) */
    unsigned
        signal_any : 1; /* the owner lets it signal any peer of its namespace (bus signal_scope) */
    unsigned owner_routed_all : 1; /* every signal takes the owner's path (relay.c) */
    unsigned throttled : 1;        /* over its rate: not read until its lws timer (dispatch.c) */
    unsigned wsoon : 1; /* in the gateway's list of sessions to write at the end of the turn */
    unsigned
        owner_signalled : 1; /* sent a signal through the owner since it joined (direct.c END) */
    unsigned
        acks_persistent : 1; /* hello.acksPersistent: stored emits are receipted on `received` */
    char peer_small[MS_SESSION_PEER_SMALL + 1];
} ms_session_t;

/* The first frame queued, or NULL. */
static inline ms_outmsg_t *ms_session_head(const ms_session_t *s)
{
    return s->tail ? s->tail->next : NULL;
}

/* The session's peer id becomes a copy of peer (NULL: none). Returns 0, or -1
 * when out of memory (then it has none). */
int ms_session_set_peer(ms_session_t *s, const char *peer);

/* Queues a frame (copying data). Returns 0, or -1 when the queue is over
 * max_queue (the caller closes the slow reader) or memory ran out. */
int ms_session_queue(ms_session_t *s, const void *data, size_t len, int binary, size_t max_queue);
/* Moves frames from the head of the queue into *buf (after LWS_PRE bytes of
 * headroom, growing it as needed) as complete WebSocket frames, headers
 * included, until the queue is empty or the next frame would pass limit bytes
 * (at least one frame is taken). Returns the bytes written, or -1 when out of
 * memory. One write of the result sends them all. *receipts counts the frames
 * taken that were marked for a receipt. */
ssize_t ms_session_take_frames(ms_session_t *s, unsigned char **buf, size_t *cap, size_t limit,
                               unsigned *receipts);
/* The join was answered: drops what was kept to re-send it (the packed join
 * and the client's request id), ~100 B an idle session need not hold. */
void ms_session_join_done(ms_session_t *s);
/* s->ext, allocated (zeroed) if it was not; NULL when out of memory. */
ms_session_ext_t *ms_session_ext(ms_session_t *s);
/* Drops what the session knew about its peer (after leave or a failed join). */
void ms_session_forget_peer(ms_session_t *s);
/* Frees everything the session holds (not the session itself: lws owns it). */
void ms_session_cleanup(ms_session_t *s);

#endif
