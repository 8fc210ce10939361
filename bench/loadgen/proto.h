/* SPDX-License-Identifier: Apache-2.0 */
/* The two signaling protocols the load generator speaks: meshsig JSON and PeerJS server. */
#ifndef MS_LG_PROTO_H
#define MS_LG_PROTO_H

#include <stddef.h>
#include <stdint.h>

/* What one server message meant to the load generator. */
typedef enum {
    MS_LG_EV_OTHER = 0,  /* pong, heartbeat echo, anything else: ignored */
    MS_LG_EV_JOINED,     /* meshsig welcome, PeerJS OPEN */
    MS_LG_EV_CONNECT,    /* meshsig topology.connect */
    MS_LG_EV_DISCONNECT, /* meshsig topology.disconnect */
    MS_LG_EV_SIGNAL,     /* a relayed signal carrying our payload */
    MS_LG_EV_ERROR,      /* meshsig error, PeerJS ERROR / ID-TAKEN / EXPIRE / LEAVE */
} ms_lg_ev_t;

/* Fields pulled out of one server message. */
typedef struct {
    ms_lg_ev_t ev;
    uint32_t heartbeat_ms; /* JOINED: the server's heartbeat interval, 0 when not given */
    uint64_t ts;           /* SIGNAL: sender's monotonic ns */
    uint64_t seq;          /* SIGNAL: sender's sequence number */
    uint32_t src;          /* SIGNAL: sender's client index (from the payload) */
    /* CONNECT, DISCONNECT: the neighbour's peer id, pointing into the parsed message (not
     * NUL-terminated; NULL when absent). */
    const char *peer;
    size_t peer_len;
} ms_lg_msg_t;

typedef struct {
    const char *name;
    const char *subprotocol; /* Sec-WebSocket-Protocol, NULL for none */
    int hello_on_open;       /* send a hello after the upgrade (meshsig); PeerJS joins in the URL */
    uint32_t default_heartbeat_ms;
    /* Request path (and query) for the client with this peer id. */
    int (*path)(char *buf, size_t cap, const char *peer);
    /* The first message after the upgrade, for hello_on_open protocols. */
    int (*hello)(char *buf, size_t cap, const char *ns, const char *peer);
    /* A signal to peer `to` with the JSON object `payload`. */
    int (*signal)(char *buf, size_t cap, const char *to, const char *payload, size_t plen);
    /* An application-level keepalive. */
    int (*heartbeat)(char *buf, size_t cap);
    /* Parses one text message into m; returns 0, or -1 if it is not JSON we understand. */
    int (*parse)(const char *msg, size_t len, ms_lg_msg_t *m);
} ms_lg_proto_t;

extern const ms_lg_proto_t ms_lg_proto_meshsig;
extern const ms_lg_proto_t ms_lg_proto_peerjs;

/* Builds the signal payload object (about `size` bytes) with seq, ts and src as strings, so
 * that no JSON codec on the way can round them through a double. Returns its length or -1. */
int ms_lg_payload(char *buf, size_t cap, size_t size, uint32_t src, uint64_t seq, uint64_t ts);

#endif
