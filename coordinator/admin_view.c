/* SPDX-License-Identifier: Apache-2.0 */
/* What the admin endpoint shows of this coordinator's namespaces, and how it answers (JSON with
 * the admin headers). Used by admin.c and admin_cluster.c. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <jansson.h>

#include "internal.h"

static void add_common_headers(ms_coord_t *c, struct evhttp_request *r, const char *ctype)
{
    struct evkeyvalq *h = evhttp_request_get_output_headers(r);
    evhttp_add_header(h, "Content-Type", ctype);
    evhttp_add_header(h, "Cache-Control", "no-store");
    if (c->cfg->admin_cors && *c->cfg->admin_cors) {
        evhttp_add_header(h, "Access-Control-Allow-Origin", c->cfg->admin_cors);
        evhttp_add_header(h, "Access-Control-Allow-Headers", "Authorization, Content-Type");
        evhttp_add_header(h, "Access-Control-Allow-Methods", "GET, PUT, POST, OPTIONS");
    }
}

void ms_admin_reply_text(ms_coord_t *c, struct evhttp_request *r, int code, const char *ctype,
                         const char *body, size_t len)
{
    struct evbuffer *b = evbuffer_new();
    if (!b) {
        evhttp_send_error(r, 500, "out of memory");
        return;
    }
    add_common_headers(c, r, ctype);
    evbuffer_add(b, body, len);
    evhttp_send_reply(r, code, code == 200 ? "OK" : "Error", b);
    evbuffer_free(b);
}

void ms_admin_reply_json(ms_coord_t *c, struct evhttp_request *r, int code, json_t *j)
{
    char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    if (!s) {
        evhttp_send_error(r, 500, "out of memory");
        return;
    }
    ms_admin_reply_text(c, r, code, "application/json", s, strlen(s));
    free(s);
}

static json_t *pos_json(const ms_ns_t *ns, const ms_member_t *m)
{
    if (ns->policy->positioning == MS_POS_GEO)
        return json_pack("{s:f, s:f}", "lat", m->pos.y, "lon", m->pos.x);
    return json_pack("{s:f, s:f}", "x", m->pos.x, "y", m->pos.y);
}

/* The detail view walks every edge once with plain counters (degree and tree parent by
 * handle) and lists at most --admin-view-max-peers peers and the edges between them: a large
 * namespace (a 10k Delaunay took 0.3-0.7 s of the coordinator's loop through jansson objects,
 * an uncapped 10k full mesh did not finish) must not stall the loop that renews the leases. */
typedef struct {
    const ms_ns_t *ns;
    json_t *edges;
    uint32_t *degree;      /* by handle */
    ms_peer_t *parent;     /* by handle; UINT32_MAX: none */
    const uint8_t *listed; /* by handle: in the view's peers */
    size_t max_edges;
    size_t total;
} edge_ctx_t;

static void edge_cb(ms_peer_t a, ms_peer_t b, uint8_t kind, void *ud)
{
    edge_ctx_t *e = ud;
    size_t n = e->ns->n_handles;
    if (a >= n || b >= n || !e->ns->by_handle[a] || !e->ns->by_handle[b])
        return;
    e->total++;
    e->degree[a]++;
    e->degree[b]++;
    if (kind == MS_EDGE_TREE)
        e->parent[b] = a;
    if (e->listed[a] && e->listed[b] && json_array_size(e->edges) < e->max_edges)
        json_array_append_new(
            e->edges, json_pack("[s, s]", e->ns->by_handle[a]->id, e->ns->by_handle[b]->id));
}

json_t *ms_admin_ns_detail(ms_coord_t *c, const ms_ns_t *ns)
{
    size_t nh = ns->n_handles ? ns->n_handles : 1;
    /* 0 (a config built without the option): no cap, as for the other operator caps. */
    size_t max_peers =
        c->cfg->admin_view_max_peers > 0 ? (size_t)c->cfg->admin_view_max_peers : SIZE_MAX / 8;
    edge_ctx_t ctx = {.ns = ns,
                      .edges = json_array(),
                      .degree = calloc(nh, sizeof(uint32_t)),
                      .parent = malloc(nh * sizeof(ms_peer_t)),
                      .max_edges = max_peers * 8};
    uint8_t *listed = calloc(nh, 1);
    json_t *peers = json_array();
    if (!ctx.edges || !ctx.degree || !ctx.parent || !listed || !peers)
        goto fail;
    ctx.listed = listed;
    memset(ctx.parent, 0xff, nh * sizeof(ms_peer_t));
    size_t members = 0, shown = 0;
    for (size_t h = 0; h < ns->n_handles; h++) {
        if (!ns->by_handle[h])
            continue;
        members++;
        if (shown < max_peers) {
            listed[h] = 1;
            shown++;
        }
    }
    ns->engine->ops->edges(ns->engine, edge_cb, &ctx);
    for (size_t h = 0; h < ns->n_handles; h++) {
        const ms_member_t *m = ns->by_handle[h];
        if (!m || !listed[h])
            continue;
        json_t *p = json_pack("{s:s, s:s, s:o, s:I}", "id", m->id, "gateway", m->gateway,
                              "position", pos_json(ns, m), "degree", (json_int_t)ctx.degree[h]);
        const ms_member_t *pm =
            ctx.parent[h] != UINT32_MAX ? ms_ns_by_handle(ns, ctx.parent[h]) : NULL;
        if (p && pm)
            json_object_set_new(p, "parent", json_string(pm->id));
        json_array_append_new(peers, p);
    }
    json_t *stats = json_object();
    if (ns->engine->ops->write_json)
        ns->engine->ops->write_json(ns->engine, stats);
    json_object_set_new(stats, "peers", json_integer((json_int_t)members));
    json_object_set_new(stats, "edges", json_integer((json_int_t)ctx.total));
    json_object_set_new(stats, "edgeHealth", ms_edges_json(ns));
    int truncated = shown < members || json_array_size(ctx.edges) < ctx.total;
    json_t *edges = ctx.edges;
    ctx.edges = NULL;
    free(ctx.degree);
    free(ctx.parent);
    free(listed);
    return json_pack("{s:s, s:i, s:s, s:s, s:o, s:o, s:o, s:b, s:o, s:o}", "name", ns->name,
                     "shard", (int)ns->shard, "owner", c->id, "topology", ns->policy->topology,
                     "policy", ms_policy_to_json(ns->policy), "peers", peers, "edges", edges,
                     "truncated", truncated, "stats", stats, "backends", ms_backend_json(ns));
fail:
    json_decref(ctx.edges);
    json_decref(peers);
    free(ctx.degree);
    free(ctx.parent);
    free(listed);
    return NULL;
}

json_t *ms_admin_ns_list(ms_coord_t *c)
{
    json_t *arr = json_array();
    ms_ns_t *ns;
    MS_NS_FOREACH(c, ns, w)
    {
        json_array_append_new(arr,
                              json_pack("{s:s, s:I, s:s, s:i, s:s}", "name", ns->name, "peers",
                                        (json_int_t)ns->members.n, "topology", ns->policy->topology,
                                        "shard", (int)ns->shard, "owner", c->id));
    }
    return json_pack("{s:o}", "namespaces", arr);
}
