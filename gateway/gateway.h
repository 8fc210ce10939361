/* SPDX-License-Identifier: Apache-2.0 */
/* The gateway: terminates client WebSockets and bridges them to the coordinators over NATS. */
#ifndef MS_GATEWAY_H
#define MS_GATEWAY_H

#include "err.h"
#include "natsauth.h"

typedef struct {
    const char *listen;        /* "127.0.0.1:8080" */
    const char *nats_urls;     /* comma-separated */
    ms_nats_auth_t nats_auth;  /* NATS credentials */
    const char *id;            /* unique per gateway; generated when NULL */
    const char *prefix;        /* subject prefix, "meshsig" */
    long shards;               /* must match the coordinators */
    const char *jwt_secret;    /* HS256 secret */
    const char *jwt_alg;       /* HS256, RS256, ES256 */
    const char *jwt_key_file;  /* public key for RS256/ES256 */
    const char *jwt_jwks_file; /* JWK Set: more keys (rotation), selected by kid */
    const char *jwt_issuer;    /* required iss claim; NULL: not checked */
    const char *jwt_audience;  /* required aud claim; NULL: not checked */
    long jwt_leeway_s;         /* clock skew allowed for exp/nbf, seconds */
    const char *origins;       /* comma-separated Origin allowlist; NULL: any */
    const char *static_dir;    /* files served at /, or NULL */
    int insecure_dev;
    long max_frame;            /* bytes; larger messages close with 1009 */
    long max_queue;            /* bytes queued towards one client before it is closed */
    long rate_msgs;            /* messages per second per session (burst 2x) */
    long rate_bytes;           /* bytes per second per session (burst 2x) */
    long hello_timeout_ms;     /* a connection must say hello within this */
    long join_timeout_ms;      /* a hello with no answer from the owner gets UNAVAILABLE */
    long rx_buffer;            /* lws receive buffer per connection, bytes */
    long rx_release_ms;        /* quiet this long, its pages go back (0: never) */
    long direct_batch_max;     /* bytes of one NATS message of direct signals (0: 256 KiB) */
    long max_handshakes;       /* WebSocket handshakes in progress at once (header tables) */
    long handshake_timeout_s;  /* a handshake holding a header table this long is closed */
    long max_sessions;         /* WebSocket sessions at once; more are closed with 1013 */
    long max_hs_per_ip;        /* connections not yet sessions per client address (0: no cap) */
    long max_sessions_per_ip;  /* WebSocket sessions per client address (0: no cap) */
    const char *per_ip_exempt; /* CIDRs never counted per address (addrlimit.h) */
    /* CIDRs of proxies whose X-Forwarded-For names the client (addrlimit.h) */
    const char *trusted_proxies;
    long max_rooms;            /* rooms one session may be in at once */
    long max_services;         /* services one session may provide at once */
    long max_subscriptions;    /* topic patterns one session may subscribe to at once */
    long idle_ping_ms;         /* a client silent this long gets a WebSocket ping */
    long idle_timeout_ms;      /* a client silent this long (ping unanswered) is dropped */
    long drain_ms;             /* on SIGTERM, how long clients get to leave */
    long nats_lost_ms;         /* NATS unreachable this long: clients are sent elsewhere */
    const char *resume_secret; /* HMAC key for resume tokens, shared by all gateways */
    long resume_ttl_s;         /* lifetime of a resume token */
    const char *event_lib;     /* "auto" (NULL), "libev" or "poll"; see evloop.h */
    const char *stun_urls;     /* comma-separated, handed out in the welcome */
    const char *turn_urls;     /* comma-separated, with per-session credentials */
    const char *turn_secret;   /* the TURN server's static-auth-secret */
    long turn_ttl_s;           /* TURN credential lifetime */
    const char *peerjs_path;   /* the PeerJS client's `path` ("/"): see peerjs.c */
    const char *peerjs_keys;   /* comma-separated PeerJS keys; "" turns the endpoint off */
    int peerjs_discovery; /* GET <path><key>/peers lists the key's peer ids (PeerJS allow_discovery)
                           */
} ms_gw_config_t;

typedef struct ms_gateway ms_gateway_t;

/* Borrows cfg for the gateway's lifetime. */
ms_err_t ms_gw_create(const ms_gw_config_t *cfg, ms_gateway_t **out);
/* Serves until ms_gw_stop or SIGINT/SIGTERM. */
ms_err_t ms_gw_run(ms_gateway_t *gw);
/* Any thread, and signal handlers. */
void ms_gw_stop(ms_gateway_t *gw);
void ms_gw_destroy(ms_gateway_t *gw);

#endif
