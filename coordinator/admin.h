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

typedef struct ms_coord ms_coord_t;
typedef struct ms_admin_pending ms_admin_pending_t;
struct ms_ns;

typedef struct {
    struct evhttp *http;         /* admin.c */
    ms_admin_pending_t *pending; /* admin_cluster.c: requests waiting, uthash by query id */
    uint64_t next_query;         /* admin_cluster.c */
    char reply_subject[200];     /* admin_cluster.c: <prefix>.admin.reply.<id> */
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

#endif
