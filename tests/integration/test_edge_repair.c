/* SPDX-License-Identifier: Apache-2.0 */
/* Failed edges repaired through real processes: raw WebSocket clients report a peer's edge
 * failed in spray and Delaunay namespaces, and the replacement edges are announced to the
 * peers they join and counted in /metrics. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster.h"
#include "testutil.h"
#include "wsclient.h"

enum { MAXP = 12, MAXN = MAXP };

static cluster_t cl;
static int gw;

static void cluster_up(void)
{
    ck_assert_int_eq(cluster_start(&cl, NULL), 0);
    const char *dev[] = {"--insecure-dev", NULL};
    gw = cluster_add_gateway(&cl, "gw-er", dev);
    ck_assert_int_ge(gw, 0);
}

static void cluster_down(void)
{
    cluster_stop(&cl);
}

/* A client and the neighbours its topology events have given it. */
typedef struct {
    char id[16];
    wsc_t *c;
    double x, y;
    char nb[MAXN][16];
    int n_nb;
} peer_t;

static int nb_find(const peer_t *p, const char *id)
{
    for (int i = 0; i < p->n_nb; i++)
        if (!strcmp(p->nb[i], id))
            return i;
    return -1;
}

/* Applies a topology connect or disconnect to p's set; returns 1 if j was one. */
static int apply_topology(peer_t *p, json_t *j)
{
    json_t *t = json_object_get(j, "topology");
    if (!t)
        return 0;
    const char *con = str_at(t, "connect", "peer", NULL),
               *dis = str_at(t, "disconnect", "peer", NULL);
    if (*con) {
        ck_assert_msg(nb_find(p, con) < 0, "%s: connect to %s twice", p->id, con);
        ck_assert_int_lt(p->n_nb, MAXN);
        snprintf(p->nb[p->n_nb++], sizeof(p->nb[0]), "%s", con);
        return 1;
    }
    if (*dis) {
        int i = nb_find(p, dis);
        ck_assert_msg(i >= 0, "%s: disconnect from %s, not a neighbour", p->id, dis);
        memcpy(p->nb[i], p->nb[--p->n_nb], sizeof(p->nb[0]));
        return 1;
    }
    return 0; /* retry, source, ... */
}

/* The coordinator's view of the namespace. Caller decrefs. */
static json_t *admin_ns(const char *ns)
{
    char path[128], *body = NULL;
    snprintf(path, sizeof(path), "/v1/namespaces/%s", ns);
    ck_assert_int_eq(http_request(cl.admin_port, "GET", path, NULL, NULL, &body), 200);
    json_t *j = json_loads(body, 0, NULL);
    free(body);
    ck_assert_ptr_nonnull(j);
    return j;
}

/* 1 when the admin view has the edge a-b. */
static int has_edge(json_t *detail, const char *a, const char *b)
{
    json_t *e;
    size_t i;
    json_array_foreach(json_object_get(detail, "edges"), i, e)
    {
        const char *x = json_string_value(json_array_get(e, 0)),
                   *y = json_string_value(json_array_get(e, 1));
        if ((!strcmp(x, a) && !strcmp(y, b)) || (!strcmp(x, b) && !strcmp(y, a)))
            return 1;
    }
    return 0;
}

/* Reads p's messages (applying topology events) until its set is the admin
 * view's. Every message comes within T_MS or the test fails; at most 100. */
static void sync_to(peer_t *p, json_t *detail, peer_t *all, int n)
{
    for (int round = 0; round <= 100; round++) {
        int same = 1, count = 0;
        for (int i = 0; i < n; i++) {
            if (&all[i] == p || !all[i].c)
                continue;
            int want = has_edge(detail, p->id, all[i].id);
            count += want;
            same &= want == (nb_find(p, all[i].id) >= 0);
        }
        if (same && count == p->n_nb)
            return;
        json_t *j = recv_json(p->c);
        char *dump = json_dumps(j, JSON_COMPACT);
        ck_assert_msg(apply_topology(p, j), "%s: expected topology events, got %s", p->id, dump);
        free(dump);
        json_decref(j);
    }
    ck_abort_msg("%s: neighbours never matched the admin view", p->id);
}

static void sync_all(const char *ns, peer_t *all, int n)
{
    json_t *d = admin_ns(ns);
    for (int i = 0; i < n; i++)
        if (all[i].c)
            sync_to(&all[i], d, all, n);
    json_decref(d);
}

/* Reads p's messages, applying topology events, until one has `key` (with
 * topology.retry: that peer). Returns it; caller decrefs. */
static json_t *await(peer_t *p, const char *key, const char *retry_peer)
{
    for (int i = 0; i < 100; i++) {
        json_t *j = recv_json(p->c);
        json_t *r = json_object_get(json_object_get(j, "topology"), "retry");
        if (retry_peer ? r && !strcmp(str_at(r, "peer", NULL), retry_peer)
                       : json_object_get(j, key) != NULL)
            return j;
        char *dump = json_dumps(j, JSON_COMPACT);
        ck_assert_msg(apply_topology(p, j), "%s: waiting for %s, got %s", p->id, key, dump);
        free(dump);
        json_decref(j);
    }
    ck_abort_msg("%s: no %s", p->id, key);
    return NULL;
}

static void join_all(const char *ns, peer_t *all, int n, int positioned)
{
    for (int i = 0; i < n; i++) {
        all[i].c = wsc_connect(cl.gw_port[gw], "meshsig.v1.json", T_MS);
        ck_assert_ptr_nonnull(all[i].c);
        char pos[96] = "";
        if (positioned)
            snprintf(pos, sizeof(pos), ",\"position\":{\"x\":%.3f,\"y\":%.3f}", all[i].x, all[i].y);
        send_json(all[i].c, "{\"id\":\"h\",\"hello\":{\"namespace\":\"%s\",\"peerId\":\"%s\"%s}}",
                  ns, all[i].id, pos);
        json_t *w = await(&all[i], "welcome", NULL);
        json_decref(w);
    }
    sync_all(ns, all, n);
}

static void leave_all(peer_t *all, int n)
{
    for (int i = 0; i < n; i++)
        wsc_free(all[i].c);
}

static void put_policy(const char *ns, const char *json)
{
    char path[128], *body = NULL;
    snprintf(path, sizeof(path), "/v1/namespaces/%s/policy", ns);
    int st = http_request(cl.admin_port, "PUT", path, NULL, json, &body);
    ck_assert_msg(st == 200, "PUT %s: %d %s", json, st, body ? body : "");
    free(body);
}

/* A sample of the coordinator's /metrics (exact series with labels), 0 if absent. */
static double metric(const char *series)
{
    char *body = NULL;
    ck_assert_int_eq(http_request(cl.admin_port, "GET", "/metrics", NULL, NULL, &body), 200);
    double v = 0;
    size_t n = strlen(series);
    for (const char *p = body; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
        if (!strncmp(p, series, n) && p[n] == ' ')
            v = atof(p + n + 1);
    free(body);
    return v;
}

static json_int_t health(json_t *detail, const char *key)
{
    return json_integer_value(
        json_object_get(json_object_get(json_object_get(detail, "stats"), "edgeHealth"), key));
}

/* Index of the peer nearest all[v] that is not linked to it in detail (nor v, nor skip). */
static int nearest_unlinked(json_t *detail, const peer_t *all, int n, int v, int skip)
{
    int best = -1;
    double bd = 0;
    for (int i = 0; i < n; i++) {
        if (i == v || i == skip || has_edge(detail, all[v].id, all[i].id))
            continue;
        double d = hypot(all[i].x - all[v].x, all[i].y - all[v].y);
        if (best < 0 || d < bd) {
            best = i;
            bd = d;
        }
    }
    return best;
}

START_TEST(delaunay_failed_edge_gets_nearest_links)
{
    put_policy("er-dl", "{\"topology\":\"delaunay\",\"positioning\":\"client\"}");
    peer_t all[9] = {0};
    int n = 9;
    uint64_t s = 12345;
    for (int i = 0; i < n; i++) {
        snprintf(all[i].id, sizeof(all[i].id), "d%d", i);
        s = s * 6364136223846793005ULL + 1442695040888963407ULL;
        all[i].x = (double)(s >> 40) / (1 << 24) * 1000;
        s = s * 6364136223846793005ULL + 1442695040888963407ULL;
        all[i].y = (double)(s >> 40) / (1 << 24) * 1000;
    }
    join_all("er-dl", all, n, 1);
    json_t *before = admin_ns("er-dl");
    /* The victim: a peer with a non-neighbour; the edge: its first neighbour. */
    int v = -1, w = -1;
    for (int i = 0; i < n && v < 0; i++)
        if (all[i].n_nb < n - 1 && all[i].n_nb > 0)
            v = i;
    ck_assert_int_ge(v, 0);
    for (int i = 0; i < n && w < 0; i++)
        if (!strcmp(all[i].id, all[v].nb[0]))
            w = i;
    int xv = nearest_unlinked(before, all, n, v, w), xw = nearest_unlinked(before, all, n, w, v);
    ck_assert_int_ge(xv, 0);
    double links0 = metric("meshsig_coordinator_edge_repairs_total{kind=\"delaunay_link\"}");
    double retries0 = metric("meshsig_coordinator_edge_repairs_total{kind=\"ice_restart\"}");

    /* First report: both ends are asked to restart ICE; nothing else changes. */
    send_json(all[v].c, "{\"id\":\"f1\",\"edge\":{\"peer\":\"%s\",\"state\":\"FAILED\"}}",
              all[w].id);
    json_decref(await(&all[v], "topology", all[w].id));
    json_t *ok = await(&all[v], "ok", NULL);
    ck_assert_str_eq(str_at(ok, "id", NULL), "f1");
    json_decref(ok);
    json_decref(await(&all[w], "topology", all[v].id));
    /* The other end's report of the same attempt is no second failure. */
    send_json(all[w].c, "{\"id\":\"g1\",\"edge\":{\"peer\":\"%s\",\"state\":\"FAILED\"}}",
              all[v].id);
    ok = await(&all[w], "ok", NULL);
    json_decref(ok);
    json_t *mid = admin_ns("er-dl");
    ck_assert_int_eq(health(mid, "failed"), 0);
    ck_assert_int_eq(json_array_size(json_object_get(mid, "edges")),
                     json_array_size(json_object_get(before, "edges")));
    json_decref(mid);
    ck_assert_double_eq(metric("meshsig_coordinator_edge_repairs_total{kind=\"ice_restart\"}"),
                        retries0 + 1);

    /* The retry fails too: the edge is marked failed, stays, and each end gets
     * a link to its nearest peer not yet linked. */
    send_json(all[v].c, "{\"id\":\"f2\",\"edge\":{\"peer\":\"%s\",\"state\":\"FAILED\"}}",
              all[w].id);
    ok = await(&all[v], "ok", NULL);
    ck_assert_str_eq(str_at(ok, "id", NULL), "f2");
    json_decref(ok);
    json_t *after = admin_ns("er-dl");
    ck_assert(has_edge(after, all[v].id, all[w].id));
    ck_assert_msg(has_edge(after, all[v].id, all[xv].id), "%s not linked to its nearest %s",
                  all[v].id, all[xv].id);
    if (xw >= 0)
        ck_assert_msg(has_edge(after, all[w].id, all[xw].id), "%s not linked to its nearest %s",
                      all[w].id, all[xw].id);
    json_t *e;
    size_t i;
    json_array_foreach(json_object_get(before, "edges"), i, e)
    {
        ck_assert(has_edge(after, json_string_value(json_array_get(e, 0)),
                           json_string_value(json_array_get(e, 1))));
    }
    ck_assert_int_eq(health(after, "failed"), 1);
    /* Every peer hears of exactly the new links. */
    for (int k = 0; k < n; k++)
        sync_to(&all[k], after, all, n);
    ck_assert(nb_find(&all[v], all[xv].id) >= 0 && nb_find(&all[xv], all[v].id) >= 0);
    json_t *rep = json_object_get(json_object_get(after, "stats"), "repair");
    ck_assert_int_eq(json_integer_value(json_object_get(rep, "failedPairs")), 1);
    ck_assert_double_eq(metric("meshsig_coordinator_edge_repairs_total{kind=\"delaunay_link\"}"),
                        links0 + 1);
    ck_assert_double_eq(metric("meshsig_coordinator_edges{topology=\"delaunay\",state=\"failed\"}"),
                        1);
    /* The new link comes up through a relay: counted by path. */
    send_json(all[v].c,
              "{\"id\":\"u\",\"edge\":{\"peer\":\"%s\",\"state\":\"UP\",\"relayed\":true}}",
              all[xv].id);
    json_decref(await(&all[v], "ok", NULL));
    ck_assert_double_ge(metric("meshsig_coordinator_edges_up{path=\"relayed\"}"), 1);
    json_decref(before);
    json_decref(after);
    leave_all(all, n);
}
END_TEST

START_TEST(spray_failed_arc_is_replaced)
{
    /* Small views (a ln N + b with a = 0.5, b = 1) leave peers unlinked; no
     * shuffle runs during the test. */
    put_policy("er-sp", "{\"topology\":\"spray\",\"a\":0.5,\"b\":1,\"shufflePeriodMs\":3600000}");
    peer_t all[10] = {0};
    int n = 10;
    for (int i = 0; i < n; i++)
        snprintf(all[i].id, sizeof(all[i].id), "s%d", i);
    join_all("er-sp", all, n, 0);
    json_t *before = admin_ns("er-sp");
    int v = -1, w = -1;
    for (int i = 0; i < n && v < 0; i++)
        if (all[i].n_nb < n - 1 && all[i].n_nb > 0)
            v = i;
    ck_assert_int_ge(v, 0);
    for (int i = 0; i < n && w < 0; i++)
        if (!strcmp(all[i].id, all[v].nb[0]))
            w = i;
    double rep0 = metric("meshsig_coordinator_edge_repairs_total{kind=\"spray_replace\"}");

    /* Spray does not wait for a retry: the arc goes and a new one replaces it. */
    send_json(all[v].c, "{\"id\":\"f\",\"edge\":{\"peer\":\"%s\",\"state\":\"FAILED\"}}",
              all[w].id);
    json_t *ok = await(&all[v], "ok", NULL);
    ck_assert_str_eq(str_at(ok, "id", NULL), "f");
    json_decref(ok);
    json_t *after = admin_ns("er-sp");
    ck_assert(!has_edge(after, all[v].id, all[w].id));
    /* An edge at v or w that was not there: the replacement, to a peer not yet linked. */
    int fresh = 0;
    for (int k = 0; k < n; k++) {
        fresh += k != w && has_edge(after, all[v].id, all[k].id) &&
                 !has_edge(before, all[v].id, all[k].id);
        fresh += k != v && has_edge(after, all[w].id, all[k].id) &&
                 !has_edge(before, all[w].id, all[k].id);
    }
    ck_assert_int_ge(fresh, 1);
    json_t *st = json_object_get(after, "stats");
    ck_assert_int_eq(json_integer_value(json_object_get(st, "failed_pairs")), 1);
    ck_assert_int_ge(json_integer_value(json_object_get(st, "replaced_arcs")), 1);
    for (int k = 0; k < n; k++)
        sync_to(&all[k], after, all, n);
    ck_assert(nb_find(&all[v], all[w].id) < 0 && nb_find(&all[w], all[v].id) < 0);
    ck_assert_double_eq(metric("meshsig_coordinator_edge_repairs_total{kind=\"spray_replace\"}"),
                        rep0 + 1);
    /* w's own report of the dead connection comes after the repair: stale, ignored. */
    send_json(all[w].c, "{\"edge\":{\"peer\":\"%s\",\"state\":\"FAILED\"}}", all[v].id);
    /* A later request of w's answered means the report was handled (one session, in order). */
    ck_assert_int_gt(all[w].n_nb, 0);
    send_json(all[w].c, "{\"id\":\"u\",\"edge\":{\"peer\":\"%s\",\"state\":\"UP\"}}", all[w].nb[0]);
    ok = await(&all[w], "ok", NULL);
    ck_assert_str_eq(str_at(ok, "id", NULL), "u");
    json_decref(ok);
    json_t *again = admin_ns("er-sp");
    ck_assert_int_eq(json_array_size(json_object_get(again, "edges")),
                     json_array_size(json_object_get(after, "edges")));
    json_decref(again);
    json_decref(before);
    json_decref(after);
    leave_all(all, n);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("edge_repair");
    TCase *tc = tcase_create("core");
    tcase_add_checked_fixture(tc, client_up, client_down);
    tcase_add_unchecked_fixture(tc, cluster_up, cluster_down);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, delaunay_failed_edge_gets_nearest_links);
    tcase_add_test(tc, spray_failed_arc_is_replaced);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
