/* SPDX-License-Identifier: Apache-2.0 */
/* Operator caps through real processes: sessions per gateway, peers per namespace, namespaces per
 * cluster (over two coordinators), rooms, services, subscriptions and streams per session. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bus.h"
#include "cluster.h"
#include "rawws.h"
#include "testutil.h"
#include "wsclient.h"

static cluster_t cl;

static long long mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The value of the first sample of metric `name` (the exact name, then a space
 * or '{' with labels matching `labels` when given) in a /metrics body, or -1. */
static double metric(int port, const char *name, const char *labels)
{
    char *body = NULL;
    double v = -1;
    if (http_request(port, "GET", "/metrics", NULL, NULL, &body) == 200 && body) {
        char want[256];
        snprintf(want, sizeof(want), "\n%s%s ", name, labels ? labels : "");
        char *p = strstr(body, want);
        if (p)
            v = strtod(p + strlen(want), NULL);
    }
    free(body);
    return v;
}

/* Waits (bounded) until the metric reads want; fails the test otherwise. */
static void await_metric(int port, const char *name, const char *labels, double want)
{
    double v = -1;
    for (long long end = mono_ms() + 10000; mono_ms() < end; usleep(20000))
        if ((v = metric(port, name, labels)) == want)
            return;
    ck_abort_msg("%s%s is %g, not %g, after 10 s", name, labels ? labels : "", v, want);
}

static json_t *welcome_limits(wsc_t *c, const char *ns, const char *peer)
{
    send_json(c, "{\"id\":\"h\",\"hello\":{\"namespace\":\"%s\",\"peerId\":\"%s\"}}", ns, peer);
    json_t *j = expect_key(c, "welcome");
    json_t *lim = json_incref(json_object_get(json_object_get(j, "welcome"), "limits"));
    json_decref(j);
    ck_assert_ptr_nonnull(lim);
    return lim;
}

static long limit_of(json_t *lim, const char *key)
{
    return (long)json_integer_value(json_object_get(lim, key));
}

/* ---- per gateway and per session (one coordinator, one capped gateway) ---- */

static void gateway_up(void)
{
    ck_assert_int_eq(cluster_start(&cl, NULL), 0);
    const char *args[] = {"--insecure-dev",
                          "--max-sessions",
                          "3",
                          "--max-rooms",
                          "2",
                          "--max-services",
                          "2",
                          "--max-subscriptions",
                          "2",
                          "--hello-timeout-ms",
                          "1500",
                          NULL};
    ck_assert_int_eq(cluster_add_gateway(&cl, "gw-caps", args), 0);
}

static void gateway_down(void)
{
    cluster_stop(&cl);
}

START_TEST(sessions_per_gateway)
{
    int port = cl.gw_port[0];
    await_metric(port, "meshsig_gateway_sessions", NULL, 0);
    wsc_t *c[3];
    for (int i = 0; i < 3; i++) {
        char ns[32];
        snprintf(ns, sizeof(ns), "caps-sessions-%d", i); /* alone: no topology events */
        c[i] = join_as(port, ns, "s");
    }
    /* The fourth is upgraded, told why and closed with 1013 (try again later;
     * read raw: the lws client library takes 1013 for a reserved code). */
    rws_t *over = rws_connect(port, "13", "meshsig.v1.json", NULL, T_MS);
    ck_assert_ptr_nonnull(over);
    ck_assert_int_eq(over->status, 101);
    uint8_t *payload = NULL, b0 = 0;
    size_t len = 0;
    ck_assert_int_eq(rws_recv_frame(over, T_MS, &payload, &len, &b0), 1);
    json_t *j = json_loads((const char *)payload, 0, NULL);
    free(payload);
    ck_assert_str_eq(str_at(j, "error", "code", NULL), "LIMIT_REACHED");
    ck_assert_ptr_nonnull(strstr(str_at(j, "error", "message", NULL), "--max-sessions"));
    json_decref(j);
    ck_assert_int_eq(rws_wait_close(over, T_MS), 1013);
    rws_free(over);
    ck_assert_double_ge(metric(port, "meshsig_gateway_cap_refused_total", "{cap=\"sessions\"}"), 1);
    /* The others were not touched: each still answers. */
    for (int i = 0; i < 3; i++) {
        send_json(c[i], "{\"id\":\"p\",\"ping\":{}}");
        json_decref(expect_key(c[i], "pong"));
    }
    /* A place freed is a place taken. */
    wsc_free(c[0]);
    await_metric(port, "meshsig_gateway_sessions", NULL, 2);
    c[0] = join_as(port, "caps-sessions-3", "s");
    for (int i = 0; i < 3; i++)
        wsc_free(c[i]);
}
END_TEST

/* A session that left its namespace has to say hello again in time, or it
 * is closed: it does not keep a --max-sessions place while in no namespace. */
START_TEST(hello_deadline_after_leave)
{
    await_metric(cl.gw_port[0], "meshsig_gateway_sessions", NULL, 0);
    wsc_t *c = join_as(cl.gw_port[0], "caps-leave", "leaver");
    send_json(c, "{\"id\":\"bye\",\"leave\":{}}");
    json_t *j = expect_key(c, "ok");
    ck_assert_str_eq(str_at(j, "id", NULL), "bye");
    json_decref(j);
    j = recv_json(c); /* within T_MS (5 s): the deadline is 1.5 s */
    ck_assert_str_eq(str_at(j, "error", "code", NULL), "BAD_REQUEST");
    ck_assert_ptr_nonnull(strstr(str_at(j, "error", "message", NULL), "no hello within"));
    json_decref(j);
    ck_assert(wsc_wait_closed(c, T_MS));
    ck_assert_int_eq(wsc_close_code(c), 1008);
    wsc_free(c);
}
END_TEST

/* op: "room", "service" or "topic"; the JSON of joining/leaving `name`. */
static void join_one(wsc_t *c, const char *kind, const char *name, const char *id)
{
    if (!strcmp(kind, "room"))
        send_json(c, "{\"id\":\"%s\",\"room\":{\"join\":{\"room\":\"%s\"}}}", id, name);
    else if (!strcmp(kind, "service"))
        send_json(c, "{\"id\":\"%s\",\"service\":{\"register\":{\"service\":\"%s\"}}}", id, name);
    else
        send_json(c, "{\"id\":\"%s\",\"topic\":{\"subscribe\":{\"pattern\":\"%s\"}}}", id, name);
}

static void leave_one(wsc_t *c, const char *kind, const char *name, const char *id)
{
    if (!strcmp(kind, "room"))
        send_json(c, "{\"id\":\"%s\",\"room\":{\"leave\":{\"room\":\"%s\"}}}", id, name);
    else if (!strcmp(kind, "service"))
        send_json(c, "{\"id\":\"%s\",\"service\":{\"unregister\":{\"service\":\"%s\"}}}", id, name);
    else
        send_json(c, "{\"id\":\"%s\",\"topic\":{\"unsubscribe\":{\"pattern\":\"%s\"}}}", id, name);
}

/* The answer to request id is not an error (ok, or the room's member list). */
static void expect_accepted(wsc_t *c, const char *id)
{
    json_t *j = recv_json(c);
    char *dump = json_dumps(j, JSON_COMPACT);
    ck_assert_msg(!json_object_get(j, "error") && !strcmp(str_at(j, "id", NULL), id),
                  "expected %s accepted, got %s", id, dump);
    free(dump);
    json_decref(j);
}

static void per_session_cap(const char *kind, const char *flag, const char *limit_key)
{
    await_metric(cl.gw_port[0], "meshsig_gateway_sessions", NULL, 0);
    wsc_t *c = wsc_connect(cl.gw_port[0], "meshsig.v1.json", T_MS);
    ck_assert_ptr_nonnull(c);
    json_t *lim = welcome_limits(c, "caps-session", "alice");
    ck_assert_int_eq(limit_of(lim, limit_key), 2);
    json_decref(lim);
    join_one(c, kind, "a.one", "1");
    expect_accepted(c, "1");
    join_one(c, kind, "a.two", "2");
    expect_accepted(c, "2");
    join_one(c, kind, "a.three", "3");
    json_t *j = recv_json(c);
    ck_assert_str_eq(str_at(j, "id", NULL), "3");
    ck_assert_str_eq(str_at(j, "error", "code", NULL), "LIMIT_REACHED");
    ck_assert_msg(strstr(str_at(j, "error", "message", NULL), flag), "%s not named in \"%s\"", flag,
                  str_at(j, "error", "message", NULL));
    json_decref(j);
    /* Asking again for one it has is no growth. */
    join_one(c, kind, "a.one", "4");
    expect_accepted(c, "4");
    /* One left, one more taken. */
    leave_one(c, kind, "a.one", "5");
    expect_accepted(c, "5");
    join_one(c, kind, "a.three", "6");
    expect_accepted(c, "6");
    join_one(c, kind, "a.four", "7");
    expect_error(c, "LIMIT_REACHED", "7");
    wsc_free(c);
}

START_TEST(rooms_per_session)
{
    per_session_cap("room", "--max-rooms", "maxRooms");
}
END_TEST

START_TEST(services_per_session)
{
    per_session_cap("service", "--max-services", "maxServices");
}
END_TEST

START_TEST(subscriptions_per_session)
{
    per_session_cap("topic", "--max-subscriptions", "maxSubscriptions");
}
END_TEST

/* ---- per namespace, per cluster, streams (two coordinators) ------------- */

#define SHARDS 16
static const char *const coord_args[] = {
    "--shards", "16", "--max-namespaces", "3", "--max-peers", "2", "--max-streams", "2", NULL};

/* Owner index (0 or 1) of each shard from /v1/cluster; 1 once both coordinators
 * serve some shards and are ready. */
static int owners(int owner[SHARDS])
{
    char *body = NULL;
    int ok = 0;
    if (http_request(cl.admin_port, "GET", "/v1/cluster", NULL, NULL, &body) != 200)
        goto done;
    json_t *j = json_loads(body ? body : "", 0, NULL), *e;
    size_t k;
    for (int n = 0; n < SHARDS; n++)
        owner[n] = -1;
    json_array_foreach(json_object_get(j, "shards"), k, e)
    {
        json_int_t n = json_integer_value(json_object_get(e, "shard"));
        const char *o = json_string_value(json_object_get(e, "owner"));
        if (n >= 0 && n < SHARDS && o)
            owner[n] = !strcmp(o, cluster_coord_id(&cl, 0))   ? 0
                       : !strcmp(o, cluster_coord_id(&cl, 1)) ? 1
                                                              : -1;
    }
    json_decref(j);
    int per[2] = {0, 0};
    for (int n = 0; n < SHARDS; n++) {
        if (owner[n] < 0)
            goto done;
        per[owner[n]]++;
    }
    ok = per[0] && per[1] &&
         http_request(cluster_coord_admin(&cl, 0), "GET", "/readyz", NULL, NULL, NULL) == 200 &&
         http_request(cluster_coord_admin(&cl, 1), "GET", "/readyz", NULL, NULL, NULL) == 200;
done:
    free(body);
    return ok;
}

static void coords_up(void)
{
    ck_assert_int_eq(cluster_start_args(&cl, NULL, coord_args), 0);
    ck_assert_int_eq(cluster_add_coordinator(&cl), 1);
    const char *args[] = {"--insecure-dev", "--shards", "16", NULL};
    ck_assert_int_eq(cluster_add_gateway(&cl, "gw-caps-1", args), 0);
}

/* A namespace name whose shard coordinator `want` owns, not in taken[]. */
static void name_owned_by(const int owner[SHARDS], int want, int seq, char *out, size_t cap)
{
    for (int i = 0; i < 10000; i++) {
        snprintf(out, cap, "caps-ns-%d-%d", seq, i);
        if (owner[ms_bus_shard_of(out, SHARDS)] == want)
            return;
    }
    ck_abort_msg("no namespace name for coordinator %d", want);
}

static void await_cluster_namespaces(double want)
{
    for (int i = 0; i < 2; i++)
        await_metric(cluster_coord_admin(&cl, i), "meshsig_coordinator_cluster_namespaces", NULL,
                     want);
}

START_TEST(namespaces_peers_streams)
{
    int owner[SHARDS];
    long long end = mono_ms() + 20000;
    while (!owners(owner)) {
        ck_assert_msg(mono_ms() < end, "two coordinators did not share the shards in 20 s");
        usleep(50000);
    }
    int port = cl.gw_port[0];
    /* Three namespaces: two on one coordinator, one on the other. */
    char ns[5][64];
    name_owned_by(owner, 0, 0, ns[0], sizeof(ns[0]));
    name_owned_by(owner, 0, 1, ns[1], sizeof(ns[1]));
    name_owned_by(owner, 1, 2, ns[2], sizeof(ns[2]));
    name_owned_by(owner, 0, 3, ns[3], sizeof(ns[3]));
    name_owned_by(owner, 1, 4, ns[4], sizeof(ns[4]));
    wsc_t *a = wsc_connect(port, "meshsig.v1.json", T_MS);
    ck_assert_ptr_nonnull(a);
    json_t *lim = welcome_limits(a, ns[0], "alice");
    ck_assert_int_eq(limit_of(lim, "maxStreams"), 2);
    json_decref(lim);
    wsc_t *x = join_as(port, ns[1], "x");
    wsc_t *y = join_as(port, ns[2], "y");
    await_cluster_namespaces(3);
    /* A fourth is refused whichever coordinator owns it. */
    for (int i = 3; i < 5; i++) {
        wsc_t *z = wsc_connect(port, "meshsig.v1.json", T_MS);
        ck_assert_ptr_nonnull(z);
        send_json(z, "{\"id\":\"h\",\"hello\":{\"namespace\":\"%s\",\"peerId\":\"z\"}}", ns[i]);
        json_t *j = recv_json(z);
        ck_assert_str_eq(str_at(j, "error", "code", NULL), "LIMIT_REACHED");
        ck_assert_ptr_nonnull(strstr(str_at(j, "error", "message", NULL), "--max-namespaces"));
        json_decref(j);
        wsc_free(z);
    }
    /* An existing namespace still takes peers, up to --max-peers (2). */
    wsc_t *b = join_as(port, ns[0], "bob");
    expect_connect(a, "bob", 1);
    expect_connect(b, "alice", 0);
    wsc_t *c = wsc_connect(port, "meshsig.v1.json", T_MS);
    ck_assert_ptr_nonnull(c);
    send_json(c, "{\"id\":\"h\",\"hello\":{\"namespace\":\"%s\",\"peerId\":\"carol\"}}", ns[0]);
    expect_error(c, "NAMESPACE_FULL", "h");
    wsc_free(c);

    /* Streams per peer: two open at once, the third refused until one closes. */
    for (int i = 1; i <= 2; i++) {
        send_json(a, "{\"id\":\"o%d\",\"stream\":{\"streamId\":\"s%d\",\"open\":{\"to\":\"bob\"}}}",
                  i, i);
        json_decref(expect_key(a, "ok"));
        json_decref(expect_key(b, "stream"));
    }
    send_json(a, "{\"id\":\"o3\",\"stream\":{\"streamId\":\"s3\",\"open\":{\"to\":\"bob\"}}}");
    json_t *j = recv_json(a);
    ck_assert_str_eq(str_at(j, "id", NULL), "o3");
    ck_assert_str_eq(str_at(j, "error", "code", NULL), "LIMIT_REACHED");
    ck_assert_ptr_nonnull(strstr(str_at(j, "error", "message", NULL), "--max-streams"));
    json_decref(j);
    /* bob's own streams are his: alice's count does not stop him. */
    send_json(b, "{\"id\":\"ob\",\"stream\":{\"streamId\":\"t1\",\"open\":{\"to\":\"alice\"}}}");
    json_decref(expect_key(b, "ok"));
    json_decref(expect_key(a, "stream"));
    /* Closed by the receiver: the opener's place is free again. */
    send_json(b, "{\"stream\":{\"streamId\":\"alice/s1\",\"close\":{}}}");
    json_decref(expect_key(a, "stream"));
    send_json(a, "{\"id\":\"o4\",\"stream\":{\"streamId\":\"s3\",\"open\":{\"to\":\"bob\"}}}");
    json_decref(expect_key(a, "ok"));
    json_decref(expect_key(b, "stream"));

    /* A namespace emptied frees its place in the cluster for a new one. */
    wsc_free(y);
    await_cluster_namespaces(2);
    wsc_t *z = join_as(port, ns[4], "z");
    await_cluster_namespaces(3);
    wsc_free(z);
    wsc_free(x);
    wsc_free(a);
    wsc_free(b);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("caps");
    TCase *tg = tcase_create("gateway");
    tcase_add_unchecked_fixture(tg, gateway_up, gateway_down);
    tcase_add_checked_fixture(tg, client_up, client_down);
    tcase_set_timeout(tg, 60);
    tcase_add_test(tg, rooms_per_session);
    tcase_add_test(tg, services_per_session);
    tcase_add_test(tg, subscriptions_per_session);
    tcase_add_test(tg, sessions_per_gateway);
    tcase_add_test(tg, hello_deadline_after_leave);
    suite_add_tcase(s, tg);
    TCase *tc = tcase_create("cluster");
    tcase_add_unchecked_fixture(tc, coords_up, gateway_down);
    tcase_add_checked_fixture(tc, client_up, client_down);
    tcase_set_timeout(tc, 90);
    tcase_add_test(tc, namespaces_peers_streams);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
