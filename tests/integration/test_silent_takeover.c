/* SPDX-License-Identifier: Apache-2.0 */
/* Fault tests: a gateway silent (SIGSTOP, as when its NATS node is on the minority side of a
 * partition) while its shard moves to another coordinator, or past the resume grace: once heard
 * again, the owner asks it what it holds and its peers are served as before. */
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
#define GW_TIMEOUT_MS 1000
#define GRACE_MS 2000

static cluster_t cl;
static const char *const coord_args[] = {"--lease-ttl-ms",
                                         "1200",
                                         "--coord-timeout-ms",
                                         "800",
                                         "--coord-heartbeat-ms",
                                         "200",
                                         "--resync-timeout-ms",
                                         "300",
                                         "--gateway-timeout-ms",
                                         "1000",
                                         "--resume-grace-ms",
                                         "2000",
                                         NULL};
/* The gateways: gw-1 is the one stopped. */
enum { g1 = 0, g2 = 1 };

static json_t *get_json(int port, const char *path)
{
    char *body = NULL;
    int st = http_request(port, "GET", path, NULL, NULL, &body);
    json_t *j = st == 200 && body ? json_loads(body, 0, NULL) : NULL;
    free(body);
    return j;
}

/* Whether coordinator i serves shard n itself ("here": "serving"). */
static int serves(int i, uint32_t n)
{
    json_t *j = get_json(cluster_coord_admin(&cl, i), "/v1/cluster");
    int yes = 0;
    size_t k;
    json_t *s;
    json_array_foreach(json_object_get(j, "shards"), k, s)
    {
        if ((uint32_t)json_integer_value(json_object_get(s, "shard")) == n)
            yes = !strcmp(str_at(s, "here", NULL), "serving");
    }
    json_decref(j);
    return yes;
}

/* The gateway of peer in ns as coordinator i sees it ("" when it is not a member there). */
static const char *peer_gateway(int i, const char *ns, const char *peer, char *out, size_t cap)
{
    char path[200];
    snprintf(path, sizeof(path), "/v1/namespaces/%s", ns);
    json_t *j = get_json(cluster_coord_admin(&cl, i), path);
    out[0] = '\0';
    size_t k;
    json_t *p;
    json_array_foreach(json_object_get(j, "peers"), k, p)
    {
        if (!strcmp(str_at(p, "id", NULL), peer))
            snprintf(out, cap, "%s", str_at(p, "gateway", NULL));
    }
    json_decref(j);
    return out;
}

static void cluster_up(void)
{
    static const char *const gw_args[] = {"--insecure-dev", "--join-timeout-ms", "1000", NULL};
    ck_assert_int_eq(cluster_start_coords(&cl, 2, coord_args, gw_args), 0);
}

static void cluster_down(void)
{
    cluster_stop(&cl);
}

static wsc_t *join_token(int gw, const char *ns, const char *peer, char **token)
{
    wsc_t *c = wsc_connect(cl.gw_port[gw], NULL, T_MS);
    ck_assert_ptr_nonnull(c);
    send_json(c, "{\"id\":\"j\",\"hello\":{\"namespace\":\"%s\",\"peerId\":\"%s\"}}", ns, peer);
    json_t *j = expect_key(c, "welcome");
    if (token)
        *token = strdup(str_at(j, "welcome", "resumeToken", NULL));
    json_decref(j);
    return c;
}

/* Reads c until a message with top-level key `key` and (if id) that id; an error with that id
 * fails the test, and so does any topology change or peerLeft unless `churn_ok`. */
static json_t *wait_for(wsc_t *c, const char *key, const char *id, int churn_ok)
{
    for (long long end = cluster_now_ms() + T_MS; cluster_now_ms() < end;) {
        json_t *j = wsc_recv_json(c, 100);
        if (!j)
            continue;
        char *dump = json_dumps(j, JSON_COMPACT);
        ck_assert_msg(churn_ok ||
                          (!json_object_get(j, "topology") && !json_object_get(j, "peerLeft")),
                      "a neighbour saw churn: %s", dump);
        ck_assert_msg(!id || !json_object_get(j, "error") || strcmp(str_at(j, "id", NULL), id),
                      "request %s failed: %s", id, dump);
        free(dump);
        if (json_object_get(j, key) && (!id || !strcmp(str_at(j, "id", NULL), id)))
            return j;
        json_decref(j);
    }
    ck_abort_msg("no %s%s%s within %d ms", key, id ? " for " : "", id ? id : "", T_MS);
    return NULL;
}

/* An emit from -> to with an ack request id: answered ok (served by the owner, not NOT_JOINED),
 * and delivered. */
static void emit_ok(wsc_t *from, wsc_t *to, const char *id, int churn_ok)
{
    send_json(from, "{\"id\":\"%s\",\"emit\":{\"to\":\"%s\",\"event\":\"probe\",\"data\":\"%s\"}}",
              id, strchr(id, ':') + 1, id);
    json_decref(wait_for(from, "ok", id, 1));
    json_t *e = wait_for(to, "emit", NULL, churn_ok);
    ck_assert_str_eq(str_at(e, "emit", "data", NULL), id);
    json_decref(e);
}

/* A namespace name with this prefix whose shard coordinator i serves. */
static void ns_served_by(int i, const char *prefix, char *out, size_t cap)
{
    for (int k = 0; k < 200; k++) {
        snprintf(out, cap, "%s-%d", prefix, k);
        if (serves(i, cluster_shard_of(out)))
            return;
    }
    ck_abort_msg("no namespace on %s", cluster_coord_id(&cl, i));
}

static void wait_serves(int i, uint32_t shard, long long timeout_ms)
{
    long long end = cluster_now_ms() + timeout_ms;
    while (!serves(i, shard)) {
        ck_assert_msg(cluster_now_ms() < end, "%s never served shard %u", cluster_coord_id(&cl, i),
                      shard);
        wsc_pump(50);
    }
}

/* Shards move from coord-2 to coord-1 while gw-1 is stopped: coord-1 rebuilds them from gw-2's
 * reports only. After SIGCONT, gw-1's peers are served (before the fix: NOT_JOINED until they
 * joined again), their neighbours on gw-2 see nothing, and a peer that resumed on gw-2 meanwhile
 * keeps its id while its stale session on gw-1 is told REPLACED. */
START_TEST(shard_moved_while_gateway_silent)
{
    ck_assert_int_eq(wsc_global_init(), 0);
    /* coord-2 serves its share once the hand-off from coord-1 (first up) is done. */
    char ns1[64], ns2[64];
    for (long long end = cluster_now_ms() + 15000;; wsc_pump(100)) {
        ck_assert_msg(cluster_now_ms() < end, "coord-2 never served a shard");
        json_t *j = get_json(cluster_coord_admin(&cl, 1), "/v1/cluster");
        size_t n_here = 0, k;
        json_t *s;
        json_array_foreach(json_object_get(j, "shards"), k, s) n_here +=
            !strcmp(str_at(s, "here", NULL), "serving");
        json_decref(j);
        if (n_here > 0)
            break;
    }
    ns_served_by(1, "quiet", ns1, sizeof(ns1));
    ns_served_by(1, "moved", ns2, sizeof(ns2));
    wait_serves(1, cluster_shard_of(ns1), 5000);
    char *tc = NULL;
    wsc_t *a = join_token(g1, ns1, "a", NULL);
    wsc_t *b = join_token(g2, ns1, "b", NULL);
    expect_connect(a, "b", 1);
    expect_connect(b, "a", 0);
    wsc_t *c_old = join_token(g1, ns2, "c", &tc);
    wsc_t *d = join_token(g2, ns2, "d", NULL);
    expect_connect(c_old, "d", 1);
    expect_connect(d, "c", 0);
    emit_ok(a, b, "e1:b", 0);

    /* gw-1 stops; coord-2 leaves and coord-1 takes its shards over without hearing gw-1. */
    ck_assert_int_eq(kill(cl.gw[g1], SIGSTOP), 0);
    long long t0 = cluster_now_ms();
    cluster_kill_coordinator(&cl, 1, SIGTERM);
    wait_serves(0, cluster_shard_of(ns1), 10000);
    wait_serves(0, cluster_shard_of(ns2), 10000);
    char gwbuf[64];
    ck_assert_str_eq(peer_gateway(0, ns1, "b", gwbuf, sizeof(gwbuf)), "gw-2");
    ck_assert_msg(!*peer_gateway(0, ns1, "a", gwbuf, sizeof(gwbuf)),
                  "coord-1 heard of a while gw-1 was stopped");
    /* c resumes on gw-2 meanwhile: the owner never heard of it, so it joins afresh. */
    wsc_t *c_new = wsc_connect(cl.gw_port[g2], NULL, T_MS);
    ck_assert_ptr_nonnull(c_new);
    send_json(c_new, "{\"id\":\"r\",\"hello\":{\"namespace\":\"%s\",\"resumeToken\":\"%s\"}}", ns2,
              tc);
    json_t *w = expect_key(c_new, "welcome");
    ck_assert_str_eq(str_at(w, "welcome", "peerId", NULL), "c");
    json_decref(w);
    ck_assert_int_eq(kill(cl.gw[g1], SIGCONT), 0);
    fprintf(stderr, "silent takeover: gw-1 stopped for %lld ms while its shards moved\n",
            cluster_now_ms() - t0);

    /* The first request after the silence is served: a is known again. */
    long long t1 = cluster_now_ms();
    emit_ok(a, b, "e2:b", 0);
    long long served = cluster_now_ms() - t1;
    emit_ok(b, a, "e3:a", 0);
    ck_assert_str_eq(peer_gateway(0, ns1, "a", gwbuf, sizeof(gwbuf)), "gw-1");
    /* The stale c on gw-1 is replaced, not merged over the one on gw-2. */
    json_t *e = wait_for(c_old, "error", NULL, 1);
    ck_assert_str_eq(str_at(e, "error", "code", NULL), "REPLACED");
    json_decref(e);
    ck_assert(wsc_wait_closed(c_old, T_MS));
    ck_assert_int_eq(wsc_close_code(c_old), 4001);
    ck_assert_str_eq(peer_gateway(0, ns2, "c", gwbuf, sizeof(gwbuf)), "gw-2");
    emit_ok(c_new, d, "e4:d", 1);
    /* b never saw a leave or come back. */
    expect_quiet(b, 300);
    fprintf(stderr, "silent takeover: a's first emit after SIGCONT answered in %lld ms\n", served);
    wsc_free(a);
    wsc_free(b);
    wsc_free(c_old);
    wsc_free(c_new);
    wsc_free(d);
    free(tc);
}
END_TEST

/* The same owner, gw-1 silent past the resume grace: its peers left at the owner (their
 * neighbours were told); once gw-1 is heard again they are members again and served. */
START_TEST(gateway_silent_past_grace)
{
    ck_assert_int_eq(wsc_global_init(), 0);
    char ns[64];
    ns_served_by(0, "grace", ns, sizeof(ns));
    wsc_t *a = join_token(g1, ns, "ga", NULL);
    wsc_t *b = join_token(g2, ns, "gb", NULL);
    expect_connect(a, "gb", 1);
    expect_connect(b, "ga", 0);
    ck_assert_int_eq(kill(cl.gw[g1], SIGSTOP), 0);
    char gwbuf[64];
    long long end = cluster_now_ms() + GW_TIMEOUT_MS + GRACE_MS + 10000;
    while (*peer_gateway(0, ns, "ga", gwbuf, sizeof(gwbuf))) {
        if (cluster_now_ms() > end)
            break;
        wsc_pump(100);
    }
    ck_assert_int_eq(kill(cl.gw[g1], SIGCONT), 0);
    ck_assert_msg(cluster_now_ms() <= end, "ga never left while gw-1 was stopped");
    expect_left(b, "ga");
    /* Heard again: ga is a member again, its neighbour reconnects to it. */
    json_t *cn = wait_for(b, "topology", NULL, 1);
    ck_assert_str_eq(str_at(cn, "topology", "connect", "peer", NULL), "ga");
    json_decref(cn);
    emit_ok(a, b, "g1:gb", 1);
    emit_ok(b, a, "g2:ga", 1);
    ck_assert_str_eq(peer_gateway(0, ns, "ga", gwbuf, sizeof(gwbuf)), "gw-1");
    wsc_free(a);
    wsc_free(b);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("silent_takeover");
    TCase *tc = tcase_create("cluster");
    tcase_add_unchecked_fixture(tc, cluster_up, cluster_down);
    tcase_set_timeout(tc, 90);
    tcase_add_test(tc, shard_moved_while_gateway_silent);
    tcase_add_test(tc, gateway_silent_past_grace);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
