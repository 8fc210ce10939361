/* SPDX-License-Identifier: Apache-2.0 */
/* GET /v1/namespaces[/{ns}] for the whole cluster: scatter a query to every coordinator, gather.
 *
 * Each coordinator knows only the namespaces of the shards it serves. The one
 * asked publishes an AdminQuery on <prefix>.admin.query naming its own reply
 * subject (subscribed once at start), keeps the evhttp request, and answers
 * when every live coordinator (cluster.c's live set) has replied, or at the
 * deadline with what it has. Nothing here blocks: the loop's NATS connection
 * is driven by this very loop, so a NATS request/reply call would deadlock.
 *
 * An evhttp request outlives its callback. If the client goes away first,
 * libevent detaches the request from the dying connection and leaves it to
 * us (it would be freed by the reply we no longer send): the close callback
 * frees it and forgets the query.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <event2/http.h>

#include "clock.h"
#include "internal.h"
#include "log.h"
#include "subject.h"

/* Replies usually take a few ms on loopback; the tick checks every 50 ms. */
#define ADMIN_DEADLINE_MS 300
/* Bounds what one admin client can make the cluster hold. */
#define ADMIN_MAX_PENDING 256

struct ms_admin_pending {
    uint64_t id; /* query id: the hash key */
    ms_coord_t *c;
    struct evhttp_request *req; /* owned by evhttp until answered (see the file comment) */
    struct evhttp_connection *evcon;
    char *ns;             /* NULL: the list */
    char *action;         /* an operator action (admin_action.c) as JSON text, or NULL */
    char *owner;          /* NAMESPACE: the shard's owner by heartbeats; its "no" is final */
    json_t *replied;      /* coordinator id -> true, this one included */
    json_t *merged;       /* list: namespace name -> entry */
    uint64_t deadline_ms; /* monotonic */
    UT_hash_handle hh;
};

ms_err_t ms_admin_cluster_init(ms_coord_t *c)
{
    char subj[200];
    ms_subject(c->admin.reply_subject, sizeof(c->admin.reply_subject), c->cfg->prefix,
               MS_SUBJ_ADMIN_REPLY, c->id);
    ms_subject(subj, sizeof(subj), c->cfg->prefix, MS_SUBJ_ADMIN_QUERY, NULL);
    ms_err_t err = ms_bus_subscribe(c->bus, subj, NULL, c->loop.inbox);
    if (err == MS_OK)
        err = ms_bus_subscribe(c->bus, c->admin.reply_subject, NULL, c->loop.inbox);
    if (err != MS_OK)
        ms_error("cannot subscribe %s.admin.*: %s", c->cfg->prefix, ms_err_str(err));
    return err;
}

static void pending_free(ms_admin_pending_t *p)
{
    if (!p)
        return;
    json_decref(p->replied);
    json_decref(p->merged);
    free(p->ns);
    free(p->action);
    free(p->owner);
    free(p);
}

static void forget(ms_coord_t *c, ms_admin_pending_t *p)
{
    HASH_DEL(c->admin.pending, p);
    if (p->evcon)
        ms_admin_conn_on_close(c, p->evcon, NULL, NULL);
    pending_free(p);
}

static void on_close(struct evhttp_connection *evcon, void *arg)
{
    ms_admin_pending_t *p = arg;
    ms_coord_t *c = p->c;
    /* Detached by libevent (the client left): ours to free. Still attached
     * (evhttp_free): the connection frees it right after this. */
    if (!evhttp_request_get_connection(p->req))
        evhttp_request_free(p->req);
    (void)evcon;
    p->evcon = NULL;
    forget(c, p);
}

/* Answers and forgets p. found: the NAMESPACE detail (reference taken), or NULL.
 * sure: a missing namespace is known to be missing (its owner or everyone said so). */
static void finish(ms_coord_t *c, ms_admin_pending_t *p, json_t *found, int sure)
{
    struct evhttp_request *req = p->req;
    json_t *miss = ms_cluster_live_missing(c, p->replied);
    if (p->ns) {
        json_t *body = found;
        int code = 200;
        if (!body && p->action && (sure || !miss)) {
            /* No coordinator serves it: it exists nowhere. */
            json_t *a = json_loads(p->action, 0, NULL);
            body = a ? ms_admin_action_absent(a) : NULL;
            json_decref(a);
        }
        json_t *status = json_object_get(body, "status");
        if (json_is_integer(status)) {
            /* An action's answer carries its HTTP code. */
            code = (int)json_integer_value(status);
            json_object_del(body, "status");
        } else if (!body && !sure && miss) {
            /* Not authoritative: a coordinator that may serve it did not answer. */
            code = 504;
            body = json_pack("{s:s, s:O}", "error", "some coordinators did not answer in time",
                             "missing", miss);
        } else if (!body) {
            code = 404;
            body = json_pack("{s:s}", "error", "no such namespace (it has no peers)");
        }
        forget(c, p);
        ms_admin_reply_json(c, req, code, body);
        json_decref(miss);
        return;
    }
    json_decref(found);
    json_t *arr = json_array(), *body = NULL;
    const char *name;
    json_t *entry;
    if (arr)
        json_object_foreach(p->merged, name, entry) json_array_append(arr, entry);
    body = json_pack("{s:o}", "namespaces", arr);
    /* A partial list says whose namespaces may be absent. */
    if (body && miss)
        json_object_set(body, "missing", miss);
    json_decref(miss);
    forget(c, p);
    ms_admin_reply_json(c, req, 200, body);
}

static int complete(ms_coord_t *c, const ms_admin_pending_t *p)
{
    return ms_cluster_all_live_in(c, p->replied);
}

/* Adds a coordinator's list entries; during a shard move two may list one
 * namespace, and the shard's owner by heartbeats wins. */
static void merge_list(ms_coord_t *c, ms_admin_pending_t *p, json_t *list)
{
    json_t *arr = json_object_get(list, "namespaces"), *e;
    size_t i;
    json_array_foreach(arr, i, e)
    {
        const char *name = json_string_value(json_object_get(e, "name"));
        const char *from = json_string_value(json_object_get(e, "owner"));
        json_int_t shard = json_integer_value(json_object_get(e, "shard"));
        if (!name || !from || shard < 0 || shard >= c->cfg->shards)
            continue;
        json_t *have = json_object_get(p->merged, name);
        const char *owner = ms_cluster_owner(c, (uint32_t)shard);
        if (!have || (owner && !strcmp(owner, from)))
            json_object_set(p->merged, name, e);
    }
}

static json_t *local_view(ms_coord_t *c, const char *name)
{
    if (!name)
        return ms_admin_ns_list(c);
    ms_ns_t *ns = ms_ns_find(c, name);
    return ns ? ms_admin_ns_detail(c, ns) : NULL;
}

static ms_err_t publish_query(ms_coord_t *c, const ms_admin_pending_t *p)
{
    Meshsig__Bus__AdminQuery q = MESHSIG__BUS__ADMIN_QUERY__INIT;
    q.kind = p->action ? MESHSIG__BUS__ADMIN_QUERY__KIND__ACTION
             : p->ns   ? MESHSIG__BUS__ADMIN_QUERY__KIND__NAMESPACE
                       : MESHSIG__BUS__ADMIN_QUERY__KIND__LIST;
    q.action_json = p->action ? p->action : (char *)"";
    q.namespace_ = p->ns ? p->ns : (char *)"";
    q.reply_to = c->admin.reply_subject;
    q.query_id = p->id;
    q.bus_version = MS_BUS_VERSION;
    size_t len = meshsig__bus__admin_query__get_packed_size(&q);
    uint8_t *buf = malloc(len ? len : 1);
    if (!buf)
        return MS_ERR_NOMEM;
    meshsig__bus__admin_query__pack(&q, buf);
    char subj[200];
    ms_subject(subj, sizeof(subj), c->cfg->prefix, MS_SUBJ_ADMIN_QUERY, NULL);
    ms_err_t err = ms_bus_publish(c->bus, subj, NULL, buf, len);
    free(buf);
    return err;
}

void ms_admin_cluster_get(ms_coord_t *c, struct evhttp_request *r, const char *name)
{
    json_t *local = local_view(c, name);
    const char *owner = NULL;
    if (name) {
        owner = ms_cluster_owner(c, ms_bus_shard_of(name, (uint32_t)c->cfg->shards));
        if (local || (owner && !strcmp(owner, c->id))) {
            /* This coordinator serves its shard: its view is the answer. */
            if (local)
                ms_admin_reply_json(c, r, 200, local);
            else
                ms_admin_reply_json(
                    c, r, 404, json_pack("{s:s}", "error", "no such namespace (it has no peers)"));
            return;
        }
    }
    if (!ms_cluster_has_live_peer(c)) {
        if (name)
            ms_admin_reply_json(c, r, 404,
                                json_pack("{s:s}", "error", "no such namespace (it has no peers)"));
        else
            ms_admin_reply_json(c, r, 200, local);
        return;
    }
    if (HASH_COUNT(c->admin.pending) >= ADMIN_MAX_PENDING) {
        json_decref(local);
        ms_admin_reply_json(c, r, 503,
                            json_pack("{s:s}", "error", "too many admin requests waiting"));
        return;
    }
    ms_admin_pending_t *p = calloc(1, sizeof(*p));
    if (!p)
        goto fail;
    p->c = c;
    p->req = r;
    p->id = ++c->admin.next_query;
    p->deadline_ms = ms_clock_mono_ms() + ADMIN_DEADLINE_MS;
    if (!(p->replied = json_object()) || json_object_set_new(p->replied, c->id, json_true()))
        goto fail;
    if (name) {
        if (!(p->ns = strdup(name)) || (owner && !(p->owner = strdup(owner))))
            goto fail;
    } else {
        if (!local || !(p->merged = json_object()))
            goto fail;
        merge_list(c, p, local);
    }
    if (publish_query(c, p) != MS_OK)
        goto fail;
    json_decref(local);
    p->evcon = evhttp_request_get_connection(r);
    if (p->evcon)
        ms_admin_conn_on_close(c, p->evcon, on_close, p);
    HASH_ADD(hh, c->admin.pending, id, sizeof(p->id), p);
    return;
fail:
    pending_free(p);
    json_decref(local);
    ms_admin_reply_json(c, r, 503,
                        json_pack("{s:s}", "error", "cannot ask the other coordinators"));
}

/* Whether this coordinator serves namespace name (has it, or owns its shard by heartbeats). */
static int serves(ms_coord_t *c, const char *name)
{
    const char *owner = ms_cluster_owner(c, ms_bus_shard_of(name, (uint32_t)c->cfg->shards));
    return ms_ns_find(c, name) || (owner && !strcmp(owner, c->id));
}

/* An operator action from another coordinator: keep its ban; carry it out if ours. */
static json_t *action_in(ms_coord_t *c, const Meshsig__Bus__AdminQuery *q)
{
    json_t *a = json_loads(q->action_json, 0, NULL);
    if (!json_is_object(a)) {
        json_decref(a);
        return NULL;
    }
    ms_admin_action_ban(c, q->namespace_, a);
    json_t *res = NULL;
    /* "ban": only the ban of an action its owner carried out itself (see ms_admin_cluster_act). */
    const char *op = json_string_value(json_object_get(a, "op"));
    if (op && strcmp(op, "ban") && serves(c, q->namespace_)) {
        res = ms_admin_action_run(c, q->namespace_, a);
        ms_admin_action_audit(c, q->namespace_, a, "carried out",
                              (int)json_integer_value(json_object_get(res, "status")));
    }
    json_decref(a);
    return res;
}

/* Every coordinator keeps every ban (ban.h): the ban of an action carried out here goes to the
 * others as op "ban", which they only record; their answers match no query and are dropped. */
static void tell_ban(ms_coord_t *c, const char *name, const json_t *action)
{
    json_t *a = json_deep_copy(action);
    ms_admin_pending_t p = {.id = ++c->admin.next_query, .ns = (char *)name};
    if (a && !json_object_set_new(a, "op", json_string("ban")) &&
        (p.action = json_dumps(a, JSON_COMPACT)) && publish_query(c, &p) == MS_OK) {
        free(p.action);
        json_decref(a);
        return;
    }
    free(p.action);
    json_decref(a);
    ms_warn("the ban of %s in %s was not sent to the other coordinators",
            json_string_value(json_object_get(action, "peer")), name);
}

void ms_admin_cluster_act(ms_coord_t *c, struct evhttp_request *r, const char *name,
                          const json_t *action)
{
    if (serves(c, name) || !ms_cluster_has_live_peer(c)) {
        if (json_integer_value(json_object_get(action, "banS")) > 0 && ms_cluster_has_live_peer(c))
            tell_ban(c, name, action);
        json_t *res = ms_admin_action_run(c, name, action);
        int code = (int)json_integer_value(json_object_get(res, "status"));
        ms_admin_action_audit(c, name, action, "carried out", code);
        json_object_del(res, "status");
        ms_admin_reply_json(c, r, res ? code : 500,
                            res ? res : json_pack("{s:s}", "error", "out of memory"));
        return;
    }
    if (HASH_COUNT(c->admin.pending) >= ADMIN_MAX_PENDING) {
        ms_admin_reply_json(c, r, 503,
                            json_pack("{s:s}", "error", "too many admin requests waiting"));
        return;
    }
    const char *owner = ms_cluster_owner(c, ms_bus_shard_of(name, (uint32_t)c->cfg->shards));
    ms_admin_pending_t *p = calloc(1, sizeof(*p));
    if (!p)
        goto fail;
    p->c = c;
    p->req = r;
    p->id = ++c->admin.next_query;
    p->deadline_ms = ms_clock_mono_ms() + ADMIN_DEADLINE_MS;
    if (!(p->replied = json_object()) || json_object_set_new(p->replied, c->id, json_true()) ||
        !(p->ns = strdup(name)) || (owner && !(p->owner = strdup(owner))) ||
        !(p->action = json_dumps(action, JSON_COMPACT)) || publish_query(c, p) != MS_OK)
        goto fail;
    p->evcon = evhttp_request_get_connection(r);
    if (p->evcon)
        ms_admin_conn_on_close(c, p->evcon, on_close, p);
    HASH_ADD(hh, c->admin.pending, id, sizeof(p->id), p);
    return;
fail:
    pending_free(p);
    ms_admin_reply_json(c, r, 503,
                        json_pack("{s:s}", "error", "cannot ask the other coordinators"));
}

void ms_admin_cluster_query_in(ms_coord_t *c, const Meshsig__Bus__AdminQuery *q)
{
    /* Its own query: the asker put its local view in already. */
    if (!*q->reply_to || !strcmp(q->reply_to, c->admin.reply_subject))
        return;
    int action = q->kind == MESHSIG__BUS__ADMIN_QUERY__KIND__ACTION;
    int detail = q->kind == MESHSIG__BUS__ADMIN_QUERY__KIND__NAMESPACE || action;
    if (detail && !*q->namespace_)
        return;
    json_t *view = action ? action_in(c, q) : local_view(c, detail ? q->namespace_ : NULL);
    char *text = view ? json_dumps(view, JSON_COMPACT) : NULL;
    json_decref(view);
    if (view && !text) {
        ms_warn("admin query %llu: out of memory", (unsigned long long)q->query_id);
        return;
    }
    Meshsig__Bus__AdminReply ar = MESHSIG__BUS__ADMIN_REPLY__INIT;
    ar.coordinator_id = c->id;
    ar.query_id = q->query_id;
    ar.found = text != NULL;
    ar.bus_version = MS_BUS_VERSION;
    ar.json.data = (uint8_t *)text;
    ar.json.len = text ? strlen(text) : 0;
    size_t len = meshsig__bus__admin_reply__get_packed_size(&ar);
    uint8_t *buf = malloc(len ? len : 1);
    if (buf) {
        meshsig__bus__admin_reply__pack(&ar, buf);
        if (ms_bus_publish(c->bus, q->reply_to, NULL, buf, len) != MS_OK)
            ms_warn("admin query %llu: reply of %zu bytes not sent",
                    (unsigned long long)q->query_id, len);
    }
    free(buf);
    free(text);
}

void ms_admin_cluster_reply_in(ms_coord_t *c, const Meshsig__Bus__AdminReply *ar)
{
    ms_admin_pending_t *p;
    uint64_t id = ar->query_id;
    HASH_FIND(hh, c->admin.pending, &id, sizeof(id), p);
    /* Late (answered at the deadline) or a duplicate. */
    if (!p || !*ar->coordinator_id || json_object_get(p->replied, ar->coordinator_id))
        return;
    json_object_set_new(p->replied, ar->coordinator_id, json_true());
    json_t *view =
        ar->found ? json_loadb((const char *)ar->json.data, ar->json.len, 0, NULL) : NULL;
    if (p->ns) {
        if (view && json_is_object(view)) {
            finish(c, p, view, 1);
            return;
        }
        json_decref(view);
        if ((p->owner && !strcmp(p->owner, ar->coordinator_id)) || complete(c, p))
            finish(c, p, NULL, 1);
        return;
    }
    if (view)
        merge_list(c, p, view);
    json_decref(view);
    if (complete(c, p))
        finish(c, p, NULL, 1);
}

void ms_admin_cluster_tick(ms_coord_t *c, uint64_t mono_ms)
{
    ms_admin_pending_t *p, *tmp;
    /* The live set may have shrunk since the query: who is left may be done. */
    HASH_ITER(hh, c->admin.pending, p, tmp)
    {
        int done = complete(c, p);
        if (done || mono_ms >= p->deadline_ms)
            finish(c, p, NULL, done);
    }
}

void ms_admin_cluster_cleanup(ms_coord_t *c)
{
    ms_admin_pending_t *p, *tmp;
    /* evhttp_free, right after, frees the requests with their connections. */
    HASH_ITER(hh, c->admin.pending, p, tmp)
    forget(c, p);
}
