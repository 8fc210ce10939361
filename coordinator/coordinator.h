/* SPDX-License-Identifier: Apache-2.0 */
/* The coordinator: owns shards of namespaces, runs their topologies and routes signals. */
#ifndef MS_COORDINATOR_H
#define MS_COORDINATOR_H

#include "err.h"
#include "natsauth.h"

typedef struct {
    const char *nats_urls;    /* comma-separated */
    ms_nats_auth_t nats_auth; /* for every NATS connection (bus, leases, offline) */
    const char *id;           /* unique per coordinator; generated when NULL */
    const char *prefix;       /* subject prefix, "meshsig" */
    long shards;              /* S in shard = fnv1a64(ns) mod S */
    const char *admin_listen; /* "127.0.0.1:8081" */
    const char *admin_token;  /* bearer token for the admin API */
    const char *admin_cors;   /* Access-Control-Allow-Origin value, or NULL */
    int insecure_dev;         /* admin API without token */
    long resume_grace_ms;     /* peers of a dead gateway may resume this long */
    long gateway_timeout_ms;  /* a gateway silent this long is dead */
    long offline_max_msgs;    /* persistent emits kept per absent peer */
    long offline_max_age_s;   /* and for how long */
    long lease_ttl_ms;        /* shard lease duration (KV bucket TTL) */
    long lease_renew_phases;  /* renewals in at most this many batches per third (renewal.c); 1 */
    long coord_heartbeat_ms;  /* coordinator heartbeat period */
    long coord_timeout_ms;    /* a coordinator silent this long is dead */
    long resync_timeout_ms;   /* a takeover waits this long at most for gateway reports */
    long js_replicas;         /* replicas of the KV buckets and the offline stream (1..5) */
    const char *policy_file;  /* namespace policy rules (YAML or JSON), reloaded on SIGHUP */
    long backend_timeout_ms;  /* a backend without an attach this long is withdrawn */
    /* Operator caps; 0: none. */
    long max_peers;                /* peers in one namespace (a policy's own cap may be lower) */
    long max_namespaces;           /* namespaces in the cluster, counted over every shard's owner */
    long max_streams;              /* streams one peer has opened and not closed */
    long admin_view_max_peers;     /* peers (and 8x as many edges) one namespace view lists */
    long admin_max_conns;          /* connections open on the admin port; one more is closed */
    long admin_request_timeout_ms; /* an admin request arrives whole and is answered within */
} ms_coord_config_t;

typedef struct ms_coord ms_coord_t;

/* Borrows cfg for the coordinator's lifetime. */
ms_err_t ms_coord_create(const ms_coord_config_t *cfg, ms_coord_t **out);
/* Runs the event loop until ms_coord_stop or SIGINT/SIGTERM. */
ms_err_t ms_coord_run(ms_coord_t *c);
/* Any thread. */
void ms_coord_stop(ms_coord_t *c);
void ms_coord_destroy(ms_coord_t *c);

#endif
