/* SPDX-License-Identifier: Apache-2.0 */
/* What the admin endpoint shows of this coordinator's namespaces, and how it answers (JSON with
 * the admin headers). Used by admin.c and admin_cluster.c. */
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
    if (ns->policy.positioning == MS_POS_GEO)
        return json_pack("{s:f, s:f}", "lat", m->pos.y, "lon", m->pos.x);
    return json_pack("{s:f, s:f}", "x", m->pos.x, "y", m->pos.y);
}

typedef struct {
    const ms_ns_t *ns;
    json_t *edges;
    json_t *peers_by_id; /* id -> peer object, to add parent and degree */
} edge_ctx_t;

static void edge_cb(ms_peer_t a, ms_peer_t b, uint8_t kind, void *ud)
{
    edge_ctx_t *e = ud;
    const ms_member_t *ma = ms_ns_by_handle(e->ns, a), *mb = ms_ns_by_handle(e->ns, b);
    if (!ma || !mb)
        return;
    json_array_append_new(e->edges, json_pack("[s, s]", ma->id, mb->id));
    json_t *pa = json_object_get(e->peers_by_id, ma->id);
    json_t *pb = json_object_get(e->peers_by_id, mb->id);
    if (kind == MS_EDGE_TREE && pb)
        json_object_set_new(pb, "parent", json_string(ma->id));
    if (pa)
        json_object_set_new(pa, "degree",
                            json_integer(json_integer_value(json_object_get(pa, "degree")) + 1));
    if (pb)
        json_object_set_new(pb, "degree",
                            json_integer(json_integer_value(json_object_get(pb, "degree")) + 1));
}

json_t *ms_admin_ns_detail(ms_coord_t *c, const ms_ns_t *ns)
{
    json_t *peers = json_array(), *byid = json_object(), *edges = json_array();
    for (size_t h = 0; h < ns->n_handles; h++) {
        const ms_member_t *m = ns->by_handle[h];
        if (!m)
            continue;
        json_t *p = json_pack("{s:s, s:s, s:o, s:i}", "id", m->id, "gateway", m->gateway,
                              "position", pos_json(ns, m), "degree", 0);
        json_array_append(peers, p);
        json_object_set_new(byid, m->id, p);
    }
    edge_ctx_t ctx = {.ns = ns, .edges = edges, .peers_by_id = byid};
    ns->engine->ops->edges(ns->engine, edge_cb, &ctx);
    json_t *stats = json_object();
    if (ns->engine->ops->write_json)
        ns->engine->ops->write_json(ns->engine, stats);
    json_object_set_new(stats, "peers", json_integer((json_int_t)json_array_size(peers)));
    json_object_set_new(stats, "edges", json_integer((json_int_t)json_array_size(edges)));
    json_object_set_new(stats, "edgeHealth", ms_edges_json(ns));
    json_decref(byid);
    return json_pack("{s:s, s:i, s:s, s:s, s:o, s:o, s:o, s:o, s:o}", "name", ns->name, "shard",
                     (int)ns->shard, "owner", c->id, "topology", ns->policy.topology, "policy",
                     ms_policy_to_json(&ns->policy), "peers", peers, "edges", edges, "stats", stats,
                     "backends", ms_backend_json(ns));
}

json_t *ms_admin_ns_list(ms_coord_t *c)
{
    json_t *arr = json_array();
    ms_ns_t *ns, *tmp;
    MS_NS_FOREACH(c, ns, tmp)
    {
        json_array_append_new(arr, json_pack("{s:s, s:I, s:s, s:i, s:s}", "name", ns->name, "peers",
                                             (json_int_t)HASH_COUNT(ns->members), "topology",
                                             ns->policy.topology, "shard", (int)ns->shard, "owner",
                                             c->id));
    }
    return json_pack("{s:o}", "namespaces", arr);
}
