/* SPDX-License-Identifier: Apache-2.0 */
/* Edge health survives a change of owner: clients on two gateways report a full mesh's edges
 * (one UP relayed, one FAILED for good, one retrying), the owner coordinator is killed, and the
 * other one, rebuilt from the gateways' reports, shows the same edgeHealth and edge metrics and
 * neither retries nor repairs again. */
#include <check.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cluster.h"
#include "testutil.h"
#include "wsclient.h"

#define SHARDS CLUSTER_SHARDS
static cluster_t cl;
static const char *const coord_args[] = {"--lease-ttl-ms",
                                         "1200",
                                         "--coord-timeout-ms",
                                         "800",
                                         "--coord-heartbeat-ms",
                                         "200",
                                         "--resync-timeout-ms",
                                         "1000",
                                         NULL};

static json_int_t health(json_t *detail, const char *key)
{
    json_t *h = json_object_get(json_object_get(detail, "stats"), "edgeHealth");
    ck_assert_ptr_nonnull(json_object_get(h, key));
    return json_integer_value(json_object_get(h, key));
}

/* Reads c's messages until the ok of request id; counts topology.retry events on the way. */
static void await_ok(wsc_t *c, const char *id, int *retries)
{
    for (int i = 0; i < 50; i++) {
        json_t *j = recv_json(c);
        ck_assert_msg(!json_object_get(j, "error"), "%s: %s", id, json_dumps(j, JSON_COMPACT));
        if (json_object_get(json_object_get(j, "topology"), "retry") && retries)
            (*retries)++;
        int done = json_object_get(j, "ok") && !strcmp(str_at(j, "ok", "id", NULL), id);
        if (!done && json_object_get(j, "id") && json_is_string(json_object_get(j, "id")))
            done = json_object_get(j, "ok") && !strcmp(str_at(j, "id", NULL), id);
        json_decref(j);
        if (done)
            return;
    }
    ck_abort_msg("no ok for %s", id);
}

/* Reads c's messages, adding the topology.retry events to *n: while *n is below want it waits
 * up to T_MS for each message (a loaded machine delivers late), then until none comes for
 * quiet_ms (an extra retry counts too). Any other topology event, or a peerLeft, fails. */
static void count_retries(wsc_t *c, int *n, int want, int quiet_ms)
{
    json_t *j;
    while ((j = wsc_recv_json(c, *n < want ? T_MS : quiet_ms))) {
        json_t *t = json_object_get(j, "topology");
        ck_assert_msg(!t || json_object_get(t, "retry"), "unexpected %s",
                      json_dumps(j, JSON_COMPACT));
        ck_assert_msg(!json_object_get(j, "peerLeft"), "unexpected %s",
                      json_dumps(j, JSON_COMPACT));
        *n += t != NULL;
        json_decref(j);
    }
}

/* No retry (nor any other topology event) for c within quiet_ms. */
static void expect_no_retry(wsc_t *c, int quiet_ms)
{
    int n = 0;
    count_retries(c, &n, 0, quiet_ms);
    ck_assert_int_eq(n, 0);
}

static void edge(wsc_t *c, const char *id, const char *peer, const char *state, int relayed)
{
    send_json(c, "{\"id\":\"%s\",\"edge\":{\"peer\":\"%s\",\"state\":\"%s\"%s}}", id, peer, state,
              relayed ? ",\"relayed\":true" : "");
}

static void expect_health(json_t *d, json_int_t up, json_int_t failed, json_int_t relayed,
                          json_int_t pending)
{
    char *dump =
        json_dumps(json_object_get(json_object_get(d, "stats"), "edgeHealth"), JSON_COMPACT);
    ck_assert_msg(health(d, "up") == up && health(d, "failed") == failed &&
                      health(d, "relayed") == relayed && health(d, "pending") == pending,
                  "edgeHealth %s, want up %lld failed %lld relayed %lld pending %lld", dump,
                  (long long)up, (long long)failed, (long long)relayed, (long long)pending);
    free(dump);
}

static void expect_metrics(int i)
{
    int port = cluster_coord_admin(&cl, i);
    ck_assert_int_eq(
        metric_at(port, NULL, "meshsig_coordinator_edges{topology=\"fullmesh\",state=\"up\"}"), 1);
    ck_assert_int_eq(
        metric_at(port, NULL, "meshsig_coordinator_edges{topology=\"fullmesh\",state=\"failed\"}"),
        1);
    ck_assert_int_eq(
        metric_at(port, NULL, "meshsig_coordinator_edges{topology=\"fullmesh\",state=\"pending\"}"),
        1);
    ck_assert_int_eq(metric_at(port, NULL, "meshsig_coordinator_edges_up{path=\"relayed\"}"), 1);
    ck_assert_int_eq(metric_at(port, NULL, "meshsig_coordinator_edges_up{path=\"direct\"}"), 0);
}

/* Reads c's messages until none comes for quiet_ms (at most 200). */
static void drain(wsc_t *c, int quiet_ms)
{
    json_t *j;
    for (int i = 0; i < 200 && (j = wsc_recv_json(c, quiet_ms)); i++)
        json_decref(j);
}

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

static json_int_t repair_stat(json_t *detail, const char *key)
{
    return json_integer_value(
        json_object_get(json_object_get(json_object_get(detail, "stats"), "repair"), key));
}

/* Same edge set in both views. */
static void expect_same_edges(json_t *x, json_t *y)
{
    size_t nx = json_array_size(json_object_get(x, "edges")),
           ny = json_array_size(json_object_get(y, "edges"));
    ck_assert_msg(nx == ny, "%zu edges before the takeover, %zu after", nx, ny);
    json_t *e;
    size_t i;
    json_array_foreach(json_object_get(x, "edges"), i, e)
    {
        const char *a = json_string_value(json_array_get(e, 0)),
                   *b = json_string_value(json_array_get(e, 1));
        ck_assert_msg(has_edge(y, a, b), "edge %s-%s lost in the takeover", a, b);
    }
}

static void cluster_up(void)
{
    static const char *const gw_args[] = {"--insecure-dev", NULL};
    ck_assert_int_eq(cluster_start_coords(&cl, 2, coord_args, gw_args), 0);
}

static void cluster_down(void)
{
    cluster_stop(&cl);
}

START_TEST(edge_health_survives_takeover)
{
    ck_assert_int_eq(wsc_global_init(), 0);
    /* Both coordinators serve shards, every shard once: the spread has settled. */
    uint64_t s0 = 0, s1 = 0;
    for (long long end = cluster_now_ms() + 15000;; usleep(50000)) {
        ck_assert_msg(cluster_now_ms() < end, "the shards never spread over both coordinators");
        if (cluster_served_by(&cl, 0, &s0) == 0 && cluster_served_by(&cl, 1, &s1) == 0 && s0 &&
            s1 && !(s0 & s1) && (s0 | s1) == ~0ULL)
            break;
    }
    char ns[64] = "";
    for (int k = 0; k < 10000 && !*ns; k++) {
        char name[64];
        snprintf(name, sizeof(name), "ek-%d", k);
        if (s1 >> cluster_shard_of(name) & 1)
            snprintf(ns, sizeof(ns), "%s", name);
    }
    ck_assert_msg(*ns, "no namespace on coord-2");

    /* A full mesh of three: a and c on gw-1, b on gw-2. */
    wsc_t *a = join_as(cl.gw_port[0], ns, "a");
    wsc_t *b = join_as(cl.gw_port[1], ns, "b");
    expect_connect(a, "b", 1);
    expect_connect(b, "a", 0);
    wsc_t *c = join_as(cl.gw_port[0], ns, "c");
    expect_connect(a, "c", 1);
    expect_connect(b, "c", 1);
    json_decref(expect_key(c, "topology"));
    json_decref(expect_key(c, "topology"));

    /* a-b up through TURN (both ends report it). */
    int ra = 0, rb = 0, rc = 0;
    edge(a, "u1", "b", "UP", 1);
    await_ok(a, "u1", NULL);
    edge(b, "u2", "a", "UP", 1);
    await_ok(b, "u2", NULL);
    /* a-c failed for good: a's attempt and its ICE restart both failed (one retry asked of
     * both ends), and c reported the first attempt too. */
    edge(a, "f1", "c", "FAILED", 0);
    await_ok(a, "f1", &ra);
    edge(c, "f2", "a", "FAILED", 0);
    await_ok(c, "f2", &rc);
    edge(a, "f3", "c", "FAILED", 0);
    await_ok(a, "f3", &ra);
    /* b-c retrying: b's first attempt failed. */
    edge(b, "f4", "c", "FAILED", 0);
    await_ok(b, "f4", &rb);
    count_retries(a, &ra, 1, 300);
    count_retries(b, &rb, 1, 10);
    count_retries(c, &rc, 2, 10);
    ck_assert_int_eq(ra, 1);
    ck_assert_int_eq(rb, 1);
    ck_assert_int_eq(rc, 2); /* for a-c and for b-c */

    json_t *d = cluster_admin_ns(&cl, 1, ns);
    ck_assert_ptr_nonnull(d);
    ck_assert_str_eq(str_at(d, "owner", NULL), "coord-2");
    expect_health(d, 1, 1, 1, 1);
    json_decref(d);
    expect_metrics(1);

    /* A Delaunay namespace on coord-2 too, with an edge failed for good: the old owner linked
     * each end to its nearest peer around it; the new one must keep those links. */
    char nsd[64] = "";
    for (int k = 0; k < 10000 && !*nsd; k++) {
        char name[64];
        snprintf(name, sizeof(name), "ekd-%d", k);
        if (s1 >> cluster_shard_of(name) & 1)
            snprintf(nsd, sizeof(nsd), "%s", name);
    }
    char path[128], *body = NULL;
    snprintf(path, sizeof(path), "/v1/namespaces/%s/policy", nsd);
    ck_assert_int_eq(http_request(cluster_coord_admin(&cl, 1), "PUT", path, NULL,
                                  "{\"topology\":\"delaunay\",\"positioning\":\"client\"}", &body),
                     200);
    free(body);
    enum { ND = 8 };
    wsc_t *dp[ND];
    char did[ND][8];
    uint64_t rnd = 777;
    for (int i = 0; i < ND; i++) {
        snprintf(did[i], sizeof(did[i]), "d%d", i);
        rnd = rnd * 6364136223846793005ULL + 1442695040888963407ULL;
        double x = (double)(rnd >> 40) / (1 << 24) * 1000;
        rnd = rnd * 6364136223846793005ULL + 1442695040888963407ULL;
        double y = (double)(rnd >> 40) / (1 << 24) * 1000;
        dp[i] = wsc_connect(cl.gw_port[i % 2], "meshsig.v1.json", T_MS);
        ck_assert_ptr_nonnull(dp[i]);
        send_json(dp[i],
                  "{\"id\":\"h\",\"hello\":{\"namespace\":\"%s\",\"peerId\":\"%s\",\"position\":"
                  "{\"x\":%.3f,\"y\":%.3f}}}",
                  nsd, did[i], x, y);
        json_t *w = skip_to(dp[i], "welcome");
        ck_assert_str_eq(str_at(w, "welcome", "topology", NULL), "delaunay");
        json_decref(w);
    }
    for (int i = 0; i < ND; i++)
        drain(dp[i], i ? 10 : 300);
    json_t *dd = cluster_admin_ns(&cl, 1, nsd);
    ck_assert_ptr_nonnull(dd);
    /* v: a peer not linked to everyone; w: one of its neighbours. */
    int v = -1, w = -1;
    for (int i = 0; i < ND && v < 0; i++) {
        int deg = 0, nb = -1;
        for (int k = 0; k < ND; k++)
            if (k != i && has_edge(dd, did[i], did[k])) {
                deg++;
                nb = k;
            }
        if (deg > 0 && deg < ND - 1) {
            v = i;
            w = nb;
        }
    }
    json_decref(dd);
    ck_assert_int_ge(v, 0);
    edge(dp[v], "df1", did[w], "FAILED", 0);
    await_ok(dp[v], "df1", NULL);
    edge(dp[w], "df2", did[v], "FAILED", 0);
    await_ok(dp[w], "df2", NULL);
    edge(dp[v], "df3", did[w], "FAILED", 0);
    await_ok(dp[v], "df3", NULL);
    for (int i = 0; i < ND; i++)
        drain(dp[i], i ? 10 : 300);
    json_t *dbefore = cluster_admin_ns(&cl, 1, nsd);
    ck_assert_ptr_nonnull(dbefore);
    ck_assert_int_eq(health(dbefore, "failed"), 1);
    ck_assert_int_ge(repair_stat(dbefore, "extraLinks"), 1);

    /* The owner dies; coord-1 claims its shards once the leases run out and rebuilds. */
    long long t0 = cluster_now_ms();
    cluster_kill_coordinator(&cl, 1, SIGKILL);
    for (long long end = cluster_now_ms() + 20000;; usleep(50000)) {
        ck_assert_msg(cluster_now_ms() < end, "coord-1 never rebuilt %s", ns);
        d = cluster_admin_ns(&cl, 0, ns);
        if (d && !strcmp(str_at(d, "owner", NULL), "coord-1") &&
            json_array_size(json_object_get(d, "peers")) == 3)
            break;
        json_decref(d);
    }
    fprintf(stderr, "edge takeover: %s rebuilt on coord-1 %lld ms after the kill\n", ns,
            cluster_now_ms() - t0);
    expect_health(d, 1, 1, 1, 1);
    json_decref(d);
    expect_metrics(0);
    /* Nothing moved: no edge event, no retry (the rebuild sends only the difference). */
    expect_no_retry(a, 300);
    expect_no_retry(b, 10);
    expect_no_retry(c, 10);

    /* The Delaunay namespace: same edges (the links around the failed edge kept), the edge
     * still failed, and no peer told of any change. */
    json_t *dafter = NULL;
    for (long long end = cluster_now_ms() + 10000;; usleep(50000)) {
        ck_assert_msg(cluster_now_ms() < end, "coord-1 never rebuilt %s", nsd);
        dafter = cluster_admin_ns(&cl, 0, nsd);
        if (dafter && !strcmp(str_at(dafter, "owner", NULL), "coord-1") &&
            json_array_size(json_object_get(dafter, "peers")) == ND)
            break;
        json_decref(dafter);
    }
    expect_same_edges(dbefore, dafter);
    ck_assert_int_eq(health(dafter, "failed"), 1);
    ck_assert_int_eq(repair_stat(dafter, "failedPairs"), 1);
    ck_assert_int_eq(repair_stat(dafter, "extraLinks"), repair_stat(dbefore, "extraLinks"));
    for (int i = 0; i < ND; i++)
        expect_no_retry(dp[i], i ? 10 : 200);
    json_decref(dbefore);
    json_decref(dafter);
    for (int i = 0; i < ND; i++)
        wsc_free(dp[i]);

    /* c's report of the failed retry: a-c stays failed, no second retry. b's retry of b-c
     * failed: failed for good without another retry (it had its one). */
    edge(c, "f5", "a", "FAILED", 0);
    await_ok(c, "f5", &rc);
    edge(b, "f6", "c", "FAILED", 0);
    await_ok(b, "f6", &rb);
    count_retries(b, &rb, 1, 300);
    count_retries(c, &rc, 2, 10);
    ra = 0;
    count_retries(a, &ra, 0, 10);
    ck_assert_msg(ra == 0 && rb == 1 && rc == 2, "retries after the takeover: a %d b %d c %d", ra,
                  rb - 1, rc - 2);
    d = cluster_admin_ns(&cl, 0, ns);
    ck_assert_ptr_nonnull(d);
    expect_health(d, 1, 2, 1, 0);
    json_decref(d);

    wsc_free(a);
    wsc_free(b);
    wsc_free(c);
    wsc_global_cleanup();
}
END_TEST

int main(void)
{
    Suite *s = suite_create("edge_takeover");
    TCase *tc = tcase_create("cluster");
    tcase_set_timeout(tc, 90);
    tcase_add_unchecked_fixture(tc, cluster_up, cluster_down);
    tcase_add_test(tc, edge_health_survives_takeover);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
