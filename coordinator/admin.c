/* SPDX-License-Identifier: Apache-2.0 */
/* The admin endpoint (libevent evhttp): routes for health, metrics, namespaces, policies and the
 * mesh page. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <jansson.h>

#include "auth.h"
#include "internal.h"
#include "log.h"
#include "opts.h"
#include "metrics.h"

extern const unsigned char ms_admin_page[];
extern const size_t ms_admin_page_len;

#define MAX_BODY (64 * 1024)
/* The request line and headers: evhttp keeps them whole and has no limit of its own, so
 * an unauthenticated client could grow the coordinator by all it sent (200 MB of one
 * header line took its RSS from 10 to 212 MB, kept after the connection closed). */
#define MAX_HEADERS (32 * 1024)
/* A connection that sends nothing (or cannot be written) this long is closed; evhttp's
 * default is 50 s. Every byte received starts it again: the whole request's deadline and the
 * connection cap are admin_conn.c's. */
#define IDLE_TIMEOUT_S 10

static void reply_error(ms_coord_t *c, struct evhttp_request *r, int code, const char *msg)
{
    ms_admin_reply_json(c, r, code, json_pack("{s:s}", "error", msg));
}

static int authorized(ms_coord_t *c, struct evhttp_request *r)
{
    if (c->cfg->insecure_dev)
        return 1;
    return ms_auth_bearer_ok(
        evhttp_find_header(evhttp_request_get_input_headers(r), "Authorization"),
        c->cfg->admin_token);
}

static char *read_body(struct evhttp_request *r, size_t *len)
{
    struct evbuffer *in = evhttp_request_get_input_buffer(r);
    size_t n = evbuffer_get_length(in);
    if (n > MAX_BODY)
        return NULL;
    char *s = malloc(n + 1);
    if (!s)
        return NULL;
    evbuffer_copyout(in, s, n);
    s[n] = '\0';
    *len = n;
    return s;
}

/* POST /v1/namespaces/{name}/{op}: an operator action (admin_action.c). */
static void post_action(ms_coord_t *c, struct evhttp_request *r, const char *name, const char *op)
{
    size_t len = 0;
    char *body = read_body(r, &len);
    if (!body) {
        reply_error(c, r, 413, "body over 64 KiB");
        return;
    }
    json_error_t jerr;
    json_t *j = len ? json_loadb(body, len, 0, &jerr) : json_object();
    free(body);
    if (!j) {
        reply_error(c, r, 400, "body is not JSON");
        return;
    }
    json_t *action = ms_admin_action_check(c, r, name, op, j);
    json_decref(j);
    if (action)
        ms_admin_cluster_act(c, r, name, action);
    json_decref(action);
}

static void put_policy(ms_coord_t *c, struct evhttp_request *r, const char *name)
{
    size_t len = 0;
    char *body = read_body(r, &len);
    if (!body) {
        reply_error(c, r, 413, "body missing or over 64 KiB");
        return;
    }
    json_error_t jerr;
    json_t *j = json_loadb(body, len, 0, &jerr);
    free(body);
    if (!j) {
        reply_error(c, r, 400, "body is not JSON");
        return;
    }
    ms_policy_t p;
    char why[160];
    ms_err_t err = ms_policy_parse(j, &p, why, sizeof(why));
    json_decref(j);
    if (err != MS_OK) {
        reply_error(c, r, err == MS_ERR_UNSUPPORTED ? 501 : 400, why);
        return;
    }
    /* Kept here, applied if this coordinator serves the namespace, sent to
     * the other coordinators and stored for the next owner. */
    if ((err = ms_cluster_policy_set(c, name, &p, 1)) != MS_OK) {
        reply_error(c, r, err == MS_ERR_FULL ? 409 : 500,
                    err == MS_ERR_FULL ? "the namespace has more peers than the new cap"
                                       : ms_err_str(err));
        return;
    }
    ms_outbox_flush(&c->outbox);
    ms_info("policy of %s set to %s", name, p.topology);
    ms_admin_reply_json(c, r, 200,
                        json_pack("{s:s, s:o}", "name", name, "policy", ms_policy_to_json(&p)));
}

static int version_text(char *buf, size_t cap, void *ud)
{
    (void)ud;
    return ms_version_metrics(buf, cap);
}

static int busver_text(char *buf, size_t cap, void *ud)
{
    return ms_busver_metrics(ud, buf, cap);
}

static void get_metrics(ms_coord_t *c, struct evhttp_request *r)
{
    size_t n_peers = 0, n_backends = 0;
    ms_ns_t *ns;
    MS_NS_FOREACH(c, ns, w)
    {
        n_peers += ns->members.n;
        n_backends += ms_backend_count(ns);
    }
    ms_metrics_t m;
    ms_metrics_init(&m);
    ms_metrics_counter(&m, "meshsig_coordinator_requests_total", "shard requests handled",
                       c->route.n_requests);
    ms_metrics_counter(&m, "meshsig_coordinator_joins_total", "peers joined", c->members.n_joins);
    ms_metrics_counter(&m, "meshsig_coordinator_leaves_total", "peers left", c->members.n_leaves);
    ms_metrics_counter(&m, "meshsig_coordinator_signals_total", "signals routed",
                       c->route.n_signals);
    ms_metrics_counter(&m, "meshsig_coordinator_errors_total", "errors sent to clients",
                       c->outbox.n_errors);
    ms_metrics_family(&m, "meshsig_coordinator_stored_emits_total", MS_METRIC_COUNTER,
                      "stored (persistent) emits: handed to a gateway, received by the client "
                      "(the gateway's receipt: deleted from the stream), and a peer's fetched "
                      "again for a missing receipt; misaddressed: read from a peer's subject "
                      "but for another peer or namespace, left in the stream (a subject hash "
                      "collision or a bug)");
    ms_metrics_u64(&m, "event", "sent", c->msg.n_stored_sent);
    ms_metrics_u64(&m, "event", "receipted", c->msg.n_stored_receipts);
    ms_metrics_u64(&m, "event", "refetched", c->redeliver.n_refetched);
    ms_metrics_u64(&m, "event", "misaddressed", c->msg.n_stored_misaddressed);
    ms_metrics_family(&m, "meshsig_coordinator_dropped_total", MS_METRIC_COUNTER,
                      "bus messages dropped, by reason");
    ms_metrics_u64(&m, "reason", "bad_request", c->route.n_bad_requests);
    ms_metrics_u64(&m, "reason", "inbox_full", ms_mailbox_dropped(c->loop.inbox));
    ms_metrics_u64(&m, "reason", "not_owner", c->cluster.n_not_owner);
    ms_metrics_u64(&m, "reason", "rebuild_queue_full", c->cluster.n_queued_dropped);
    ms_metrics_u64(&m, "reason", "stale_epoch_resent", c->cluster.n_resend_dropped);
    ms_metrics_family(&m, "meshsig_coordinator_request_copies_total", MS_METRIC_COUNTER,
                      "copies of client requests a gateway sent again (no answer had reached "
                      "it) that were not applied again: answered with the recorded answer "
                      "(again) or as still being worked on (received)");
    ms_metrics_u64(&m, "answer", "again", c->dedupe.n_again);
    ms_metrics_u64(&m, "answer", "received", c->dedupe.n_received);
    ms_metrics_counter(&m, "meshsig_coordinator_request_records_evicted_total",
                       "records of client requests dropped early for room (a copy of one "
                       "would be applied again)",
                       c->dedupe.n_evicted);
    ms_metrics_gauge(&m, "meshsig_coordinator_request_records",
                     "client requests recorded for copies a gateway may send", (double)c->dedupe.n);
    ms_metrics_gauge(&m, "meshsig_coordinator_namespaces",
                     "namespaces in the shards this coordinator owns", (double)ms_ns_count(c));
    ms_metrics_gauge(&m, "meshsig_coordinator_cluster_namespaces",
                     "namespaces in the whole cluster as heartbeats tell (--max-namespaces)",
                     (double)ms_cluster_namespaces(c));
    ms_metrics_family(&m, "meshsig_coordinator_cap_refused_total", MS_METRIC_COUNTER,
                      "requests refused at an operator cap, by cap");
    ms_metrics_u64(&m, "cap", "namespaces", c->members.n_cap_ns);
    ms_metrics_u64(&m, "cap", "peers", c->members.n_cap_peers);
    ms_metrics_u64(&m, "cap", "streams", c->msg.n_cap_streams);
    ms_metrics_gauge(&m, "meshsig_coordinator_peers", "peers in the shards this coordinator owns",
                     (double)n_peers);
    ms_metrics_gauge(&m, "meshsig_coordinator_backends",
                     "backends attached, counted once per namespace (README \"Backends\")",
                     (double)n_backends);
    ms_metrics_counter(&m, "meshsig_coordinator_backend_requests_total",
                       "backend requests to shards this coordinator owns", c->backends.n_requests);
    ms_metrics_counter(&m, "meshsig_coordinator_backend_refused_total",
                       "backend requests refused as malformed", c->backends.n_bad);
    ms_metrics_counter(&m, "meshsig_coordinator_backend_retries_total",
                       "backend requests answered again by req_id", c->backends.n_retries);
    ms_metrics_counter(&m, "meshsig_coordinator_backend_expired_total",
                       "backends withdrawn after the heartbeat timeout", c->backends.n_expired);
    ms_metrics_gauge(&m, "meshsig_coordinator_shards", "shards in the cluster (--shards)",
                     (double)c->cfg->shards);
    ms_metrics_gauge(&m, "meshsig_coordinator_shards_owned", "shards this coordinator owns now",
                     (double)ms_cluster_n_owned(c));
    ms_metrics_family(&m, "meshsig_coordinator_shard_events_total", MS_METRIC_COUNTER,
                      "shard ownership changes, by event");
    ms_metrics_u64(&m, "event", "claimed", c->cluster.n_claims);
    ms_metrics_u64(&m, "event", "lost", c->cluster.n_losses);
    ms_metrics_u64(&m, "event", "handed_off", c->cluster.n_handoffs);
    /* The lease deadline passed before a renewal was confirmed; kept: a late one succeeded. */
    ms_metrics_u64(&m, "event", "in_doubt", c->cluster.n_doubts);
    ms_metrics_u64(&m, "event", "kept_late", c->cluster.n_kept_late);
    ms_metrics_counter(&m, "meshsig_coordinator_lease_renewals_total", "shard lease renewals sent",
                       c->cluster.n_renewals);
    ms_metrics_counter(&m, "meshsig_coordinator_lease_kv_calls_total",
                       "KV calls the lease worker made (claims' writes and reads, renewals, "
                       "releases, bucket calls), answered or not",
                       ms_lease_kv_calls(c->cluster.lease));
    ms_metrics_counter(&m, "meshsig_coordinator_lease_renewal_batches_total",
                       "batches the lease renewals went out in (one per tick that renewed any)",
                       c->cluster.n_renewal_batches);
    ms_metrics_counter(&m, "meshsig_coordinator_deliveries_discarded_total",
                       "deliveries held while a lease was in doubt, discarded when it was lost",
                       c->outbox.n_discarded);
    ms_metrics_counter(&m, "meshsig_nats_reconnects_total", "reconnections to NATS",
                       ms_bus_reconnects(c->bus));
    ms_admin_conn_metrics(c, &m);
    ms_edges_metrics(c, &m);
    ms_metrics_gauge(&m, "meshsig_coordinator_pairs",
                     "ad-hoc pairs of signals:any namespaces (PeerJS keys) whose gateways signal "
                     "each other directly, in the shards this coordinator owns",
                     (double)ms_pairs_count(c));
    ms_metrics_append(&m, version_text, NULL);
    ms_metrics_append(&m, busver_text, &c->loop.busver);
    if (m.err == MS_ERR_NOMEM || !m.buf)
        reply_error(c, r, 500, "out of memory");
    else
        ms_admin_reply_text(c, r, 200, "text/plain; version=0.0.4", m.buf, m.len);
    ms_metrics_cleanup(&m);
}

void ms_admin_handle(ms_coord_t *c, struct evhttp_request *r, enum evhttp_cmd_type method,
                     const char *raw)
{
    char *path = raw ? evhttp_uridecode(raw, 0, NULL) : NULL;
    if (!path) {
        reply_error(c, r, 400, "bad path");
        return;
    }
    if (method == EVHTTP_REQ_OPTIONS) {
        ms_admin_reply_text(c, r, 200, "text/plain", "", 0);
        goto out;
    }
    if (!strcmp(path, "/healthz")) {
        ms_admin_reply_text(c, r, 200, "text/plain", "ok\n", 3);
        goto out;
    }
    if (!strcmp(path, "/readyz")) {
        /* Ready once its subscriptions are live and it serves every shard
         * rendezvous hashing gives it. */
        int bus = ms_bus_connected(c->bus) && c->loop.ready, ok = bus && ms_cluster_ready(c);
        const char *why = ok ? "ready\n" : bus ? "claiming shards\n" : "nats not connected\n";
        ms_admin_reply_text(c, r, ok ? 200 : 503, "text/plain", why, strlen(why));
        goto out;
    }
    if (!strcmp(path, "/") || !strcmp(path, "/index.html")) {
        /* The page holds no data; its API calls carry the token. */
        ms_admin_reply_text(c, r, 200, "text/html; charset=utf-8", (const char *)ms_admin_page,
                            ms_admin_page_len);
        goto out;
    }
    if (!authorized(c, r)) {
        if (method == EVHTTP_REQ_POST) /* an attempted operator action: audited */
            ms_info("audit: {\"stage\":\"unauthorized\",\"coordinator\":\"%s\"} POST refused",
                    c->id);
        evhttp_add_header(evhttp_request_get_output_headers(r), "WWW-Authenticate", "Bearer");
        reply_error(c, r, 401, "admin bearer token required");
        goto out;
    }
    if (!strcmp(path, "/metrics") && method == EVHTTP_REQ_GET) {
        get_metrics(c, r);
    } else if (!strcmp(path, "/v1/cluster") && method == EVHTTP_REQ_GET) {
        ms_admin_reply_json(c, r, 200, ms_cluster_json(c));
    } else if (!strcmp(path, "/v1/policies") && method == EVHTTP_REQ_GET) {
        ms_admin_reply_json(c, r, 200, ms_policies_json(c));
    } else if (!strcmp(path, "/v1/namespaces") && method == EVHTTP_REQ_GET) {
        ms_admin_cluster_get(c, r, NULL);
    } else if (!strncmp(path, "/v1/namespaces/", 15)) {
        char *name = path + 15;
        char *slash = strchr(name, '/');
        if (slash && !strcmp(slash, "/policy") && method == EVHTTP_REQ_PUT) {
            *slash = '\0';
            put_policy(c, r, name);
        } else if (slash && !strcmp(slash, "/policy") && method == EVHTTP_REQ_GET) {
            *slash = '\0';
            ms_ns_t *ns = ms_ns_find(c, name);
            ms_admin_reply_json(c, r, 200,
                                ms_policy_to_json(ns ? ns->policy : ms_policies_for(c, name)));
        } else if (!slash && method == EVHTTP_REQ_GET) {
            ms_admin_cluster_get(c, r, name);
        } else if (slash && method == EVHTTP_REQ_POST && slash[1] && !strchr(slash + 1, '/')) {
            *slash = '\0';
            post_action(c, r, name, slash + 1);
        } else {
            reply_error(c, r, 404, "not found");
        }
    } else {
        reply_error(c, r, 404, "not found");
    }
out:
    free(path);
}

static void on_request(struct evhttp_request *r, void *arg)
{
    if (!ms_admin_conn_request(arg, r))
        return; /* over the connection cap: closed, not answered */
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(r);
    ms_admin_handle(arg, r, evhttp_request_get_command(r), uri ? evhttp_uri_get_path(uri) : NULL);
}

ms_err_t ms_admin_start(ms_coord_t *c)
{
    const char *listen = c->cfg->admin_listen;
    char host[128];
    int port, v6;
    if (ms_opts_hostport(listen, host, sizeof(host), &port, &v6) != MS_OK) {
        ms_error("admin-listen must be HOST:PORT (an IPv6 address in brackets: [::1]:8081), got "
                 "'%s'",
                 listen);
        return MS_ERR_INVAL;
    }
    struct evhttp *http = c->admin.http = evhttp_new(c->loop.base);
    if (!http)
        return MS_ERR_NOMEM;
    evhttp_set_allowed_methods(http, EVHTTP_REQ_GET | EVHTTP_REQ_PUT | EVHTTP_REQ_POST |
                                         EVHTTP_REQ_OPTIONS | EVHTTP_REQ_HEAD);
    evhttp_set_max_body_size(http, MAX_BODY);
    evhttp_set_max_headers_size(http, MAX_HEADERS);
    evhttp_set_timeout(http, IDLE_TIMEOUT_S);
    evhttp_set_gencb(http, on_request, c);
    ms_admin_conn_start(c);
    if (!evhttp_bind_socket_with_handle(http, *host ? host : "0.0.0.0", (ev_uint16_t)port)) {
        ms_error("admin endpoint cannot listen on %s", listen);
        return MS_ERR_IO;
    }
    ms_info("admin endpoint on http://%s/", listen);
    return MS_OK;
}

void ms_admin_stop(ms_coord_t *c)
{
    ms_admin_cluster_cleanup(c);
    if (c->admin.http)
        evhttp_free(c->admin.http);
    c->admin.http = NULL;
    ms_admin_conn_cleanup(c);
}
