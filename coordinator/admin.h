/* SPDX-License-Identifier: Apache-2.0 */
/* The admin endpoint (libevent evhttp): routes in admin.c, cluster-wide namespace views by
 * scatter/gather in admin_cluster.c, JSON views and replies in admin_view.c. Loop thread only. */
#ifndef MS_COORD_ADMIN_H
#define MS_COORD_ADMIN_H

#include <stdint.h>
#include <event2/http.h>
#include <jansson.h>

#include "bus.pb-c.h"
#include "err.h"
#include "metrics.h"

typedef struct ms_coord ms_coord_t;
typedef struct ms_admin_pending ms_admin_pending_t;
typedef struct ms_admin_conn ms_admin_conn_t;
struct ms_ns;

typedef struct {
    struct evhttp *http;         /* admin.c */
    ms_admin_pending_t *pending; /* admin_cluster.c: requests waiting, uthash by query id */
    uint64_t next_query;         /* admin_cluster.c */
    char reply_subject[200];     /* admin_cluster.c: <prefix>.admin.reply.<id> */
    ms_admin_conn_t *conns;      /* admin_conn.c: every connection, uthash by bufferevent */
    size_t n_open;               /* admin_conn.c: connections open, refused ones not counted */
    uint64_t n_refused;          /* admin_conn.c: closed over the cap */
    uint64_t n_evicted;          /* admin_conn.c: closed to make room for one over the cap */
    uint64_t next_ready;         /* admin_conn.c: orders connections by when they became ready */
    uint64_t n_timed_out;        /* admin_conn.c: closed at the request deadline */
} ms_admin_t;

/* admin.c: binds cfg->admin_listen. */
ms_err_t ms_admin_start(ms_coord_t *c);
/* Frees the server and what waits on it (shutdown). */
void ms_admin_stop(ms_coord_t *c);
/* Routes one admin request (method, raw URL path, r's headers and body) and
 * answers on r. The evhttp callback is a wrapper; the fuzz target
 * (tests/fuzz/fuzz_admin.c) calls it with requests it builds in memory. */
void ms_admin_handle(ms_coord_t *c, struct evhttp_request *r, enum evhttp_cmd_type method,
                     const char *raw_path);

/* admin_conn.c: the connection cap and the request deadline (cfg->admin_max_conns,
 * cfg->admin_request_timeout_ms). */
/* Tracks every connection evhttp accepts from now on (after evhttp_new). */
void ms_admin_conn_start(ms_coord_t *c);
/* A request arrived whole (the evhttp callback, before routing): 0 when its connection was
 * refused and the request must not be answered (it is closed shortly). */
int ms_admin_conn_request(ms_coord_t *c, struct evhttp_request *r);
/* The connection's close callback (evhttp has one, and admin_conn.c takes it): cb(evcon, arg)
 * is called when evcon goes, before it is freed; NULL cb: none. */
void ms_admin_conn_on_close(ms_coord_t *c, struct evhttp_connection *evcon,
                            void (*cb)(struct evhttp_connection *, void *), void *arg);
/* Forgets the connections evhttp_free did not close (it closes the rest): after it. */
void ms_admin_conn_cleanup(ms_coord_t *c);
/* Open connections, and those closed by cap and deadline, for /metrics. */
void ms_admin_conn_metrics(ms_coord_t *c, ms_metrics_t *m);

/* admin_view.c */
/* Sends j (its reference is taken) as the JSON answer to r, with the admin headers. */
void ms_admin_reply_json(ms_coord_t *c, struct evhttp_request *r, int code, json_t *j);
void ms_admin_reply_text(ms_coord_t *c, struct evhttp_request *r, int code, const char *ctype,
                         const char *body, size_t len);
/* This coordinator's namespaces, {"namespaces":[{name, peers, topology, shard, owner}]}. */
json_t *ms_admin_ns_list(ms_coord_t *c);
/* One namespace as GET /v1/namespaces/{ns} shows it, with "owner": this coordinator. */
json_t *ms_admin_ns_detail(ms_coord_t *c, const struct ms_ns *ns);

/* admin_cluster.c: GET /v1/namespaces[/{ns}] answered for the whole cluster by
 * scatter/gather over <prefix>.admin.*. */
/* Subscribes the query subject and this coordinator's reply subject. */
ms_err_t ms_admin_cluster_init(ms_coord_t *c);
/* Answers r later, once the live coordinators replied or the deadline passed.
 * name: NULL for the list, else the namespace asked for. */
void ms_admin_cluster_get(ms_coord_t *c, struct evhttp_request *r, const char *name);
void ms_admin_cluster_query_in(ms_coord_t *c, const Meshsig__Bus__AdminQuery *q);
void ms_admin_cluster_reply_in(ms_coord_t *c, const Meshsig__Bus__AdminReply *ar);
/* Answers what is past its deadline. */
void ms_admin_cluster_tick(ms_coord_t *c, uint64_t mono_ms);
/* Forgets every waiting request (shutdown): before evhttp_free, which frees them. */
void ms_admin_cluster_cleanup(ms_coord_t *c);
/* Carries out a checked action (admin_action.c) on namespace name here if this coordinator
 * serves it, else asks the owner (AdminQuery ACTION) and answers r later. */
void ms_admin_cluster_act(ms_coord_t *c, struct evhttp_request *r, const char *name,
                          const json_t *action);

/* admin_action.c: operator actions (README "Operator actions"). */
/* POST /v1/namespaces/{name}/{op} with body (borrowed): the checked action (new reference),
 * audited and its ban recorded; NULL when refused (r is answered 400 then). */
json_t *ms_admin_action_check(ms_coord_t *c, struct evhttp_request *r, const char *name,
                              const char *op, const json_t *body);
/* Records the ban a checked action carries, if any (every coordinator does). */
void ms_admin_action_ban(ms_coord_t *c, const char *name, const json_t *action);
/* Carries out a checked action on this coordinator's namespace name; the answer is
 * {"status": <HTTP code>, ...} (new reference, NULL when out of memory). */
json_t *ms_admin_action_run(ms_coord_t *c, const char *name, const json_t *action);
/* The answer when the namespace exists nowhere. */
json_t *ms_admin_action_absent(const json_t *action);
/* One audit line for action at stage ("carried out", ...) with the HTTP status. */
void ms_admin_action_audit(ms_coord_t *c, const char *name, const json_t *action, const char *stage,
                           int status);

#endif
