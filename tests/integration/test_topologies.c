/* SPDX-License-Identifier: Apache-2.0 */
/* Topologies through real gateways, coordinator and nats-server: full mesh with pre-made offers
 * and a waiting list, tree roles, Delaunay and spray neighbour sets against the admin view. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster.h"
#include "testutil.h"
#include "wsclient.h"

#define MAXN 24

static cluster_t cl;
static int g1, g2;

static void cluster_up(void)
{
    ck_assert_int_eq(cluster_start(&cl, NULL), 0);
    const char *dev[] = {"--insecure-dev", NULL};
    g1 = cluster_add_gateway(&cl, "gw-a", dev);
    g2 = cluster_add_gateway(&cl, "gw-b", dev);
    ck_assert_int_ge(g1, 0);
    ck_assert_int_ge(g2, 0);
}

static void cluster_down(void)
{
    cluster_stop(&cl);
}

static void set_policy(const char *ns, const char *json)
{
    char path[128];
    snprintf(path, sizeof(path), "/v1/namespaces/%s/policy", ns);
    char *body = NULL;
    int st = http_request(cl.admin_port, "PUT", path, NULL, json, &body);
    ck_assert_msg(st == 200, "policy %s: %d %s", json, st, body ? body : "");
    free(body);
}

static int gw_port(int i)
{
    return cl.gw_port[i % 2 ? g2 : g1];
}

/* A client's view of its neighbours, built from topology events. */
typedef struct {
    wsc_t *c;
    char id[32];
    char nb[MAXN][32];
    int n;
    char role[MAXN][8];
} peer_t;

static void apply_event(peer_t *p, json_t *j)
{
    json_t *t = json_object_get(j, "topology");
    if (!t)
        return;
    const char *con = str_at(t, "connect", "peer", NULL);
    const char *dis = str_at(t, "disconnect", "peer", NULL);
    if (*con) {
        for (int i = 0; i < p->n; i++)
            ck_assert_msg(strcmp(p->nb[i], con), "%s: connect to %s twice", p->id, con);
        ck_assert_int_lt(p->n, MAXN);
        snprintf(p->nb[p->n], 32, "%s", con);
        snprintf(p->role[p->n], 8, "%s", str_at(t, "connect", "role", NULL));
        p->n++;
    } else if (*dis) {
        for (int i = 0; i < p->n; i++)
            if (!strcmp(p->nb[i], dis)) {
                p->n--;
                memmove(p->nb[i], p->nb[p->n], 32);
                memmove(p->role[i], p->role[p->n], 8);
                return;
            }
        ck_abort_msg("%s: disconnect from %s which was no neighbour", p->id, dis);
    }
}

/* Reads everything each client has until all are quiet for quiet_ms. */
static void settle(peer_t *ps, int n, int quiet_ms)
{
    for (int round = 0; round < 200; round++) {
        int got = 0;
        wsc_pump(quiet_ms);
        for (int i = 0; i < n; i++) {
            if (!ps[i].c)
                continue;
            json_t *j;
            while ((j = wsc_recv_json(ps[i].c, 0))) {
                apply_event(&ps[i], j);
                json_decref(j);
                got = 1;
            }
        }
        if (!got)
            return;
    }
    ck_abort_msg("topology events did not settle");
}

static int has_nb(const peer_t *p, const char *id)
{
    for (int i = 0; i < p->n; i++)
        if (!strcmp(p->nb[i], id))
            return 1;
    return 0;
}

/* Where the clients' event-built views differ from the coordinator's edge list j, in why;
 * 0 when they agree. */
static int views_differ(json_t *j, peer_t *ps, int n, char *why, size_t cap)
{
    json_t *edges = json_object_get(j, "edges");
    int degree[MAXN] = {0};
    for (size_t e = 0; e < json_array_size(edges); e++) {
        const char *a = json_string_value(json_array_get(json_array_get(edges, e), 0));
        const char *b = json_string_value(json_array_get(json_array_get(edges, e), 1));
        for (int i = 0; i < n; i++) {
            if (!ps[i].c)
                continue;
            if (!strcmp(ps[i].id, a)) {
                if (!has_nb(&ps[i], b))
                    return snprintf(why, cap, "%s was not told about %s", a, b), 1;
                degree[i]++;
            }
            if (!strcmp(ps[i].id, b)) {
                if (!has_nb(&ps[i], a))
                    return snprintf(why, cap, "%s was not told about %s", b, a), 1;
                degree[i]++;
            }
        }
    }
    for (int i = 0; i < n; i++)
        if (ps[i].c && degree[i] != ps[i].n)
            return snprintf(why, cap, "%s: %d edges in admin, %d from events", ps[i].id, degree[i],
                            ps[i].n),
                   1;
    return 0;
}

/* Every client's event-built view equals the coordinator's edge list, once the events in
 * flight have arrived: the admin's answer may be ahead of them (a loaded machine delivers
 * late; spray shuffles and Vivaldi moves go on), so it reads and compares again until they
 * agree, for at most 15 s. Returns the admin's namespace detail. */
static json_t *check_against_admin(const char *ns, peer_t *ps, int n)
{
    char path[128], why[200] = "";
    snprintf(path, sizeof(path), "/v1/namespaces/%s", ns);
    for (long long end = cluster_now_ms() + 15000;;) {
        char *body = NULL;
        ck_assert_int_eq(http_request(cl.admin_port, "GET", path, NULL, NULL, &body), 200);
        json_t *j = json_loads(body, 0, NULL);
        free(body);
        ck_assert_ptr_nonnull(j);
        if (!views_differ(j, ps, n, why, sizeof(why)))
            return j;
        json_decref(j);
        ck_assert_msg(cluster_now_ms() < end, "%s", why);
        settle(ps, n, 50);
    }
}

static void join_all(const char *ns, peer_t *ps, int n, const char *fmt_pos)
{
    for (int i = 0; i < n; i++) {
        memset(&ps[i], 0, sizeof(ps[i]));
        snprintf(ps[i].id, sizeof(ps[i].id), "p%02d", i);
        ps[i].c = wsc_connect(gw_port(i), NULL, T_MS);
        ck_assert_ptr_nonnull(ps[i].c);
        char pos[128] = "";
        if (fmt_pos)
            snprintf(pos, sizeof(pos), fmt_pos, (i * 37) % 101 / 100.0, (i * 61) % 97 / 100.0);
        send_json(ps[i].c, "{\"hello\":{\"namespace\":\"%s\",\"peerId\":\"%s\"%s}}", ns, ps[i].id,
                  pos);
        json_t *w = expect_key(ps[i].c, "welcome");
        json_decref(w);
    }
}

static void free_all(peer_t *ps, int n)
{
    for (int i = 0; i < n; i++)
        if (ps[i].c)
            wsc_free(ps[i].c);
}

START_TEST(fullmesh_premade_offers)
{
    set_policy("offers", "{\"topology\":\"fullmesh\",\"cap\":8}");
    wsc_t *a = join_as(gw_port(0), "offers", "alice");
    wsc_t *b = join_as(gw_port(1), "offers", "bob");
    expect_connect(a, "bob", 1);
    expect_connect(b, "alice", 0);
    wsc_t *c = wsc_connect(gw_port(0), NULL, T_MS);
    send_json(c, "{\"hello\":{\"namespace\":\"offers\",\"peerId\":\"carol\",\"offers\":["
                 "{\"type\":\"offer\",\"sdp\":\"o1\",\"offerId\":\"x1\"},"
                 "{\"type\":\"offer\",\"sdp\":\"o2\",\"offerId\":\"x2\"}]}}");
    json_decref(expect_key(c, "welcome"));
    /* Each existing peer gets one offer inside its connect and answers it; carol
     * gets the same offer back to know which of her connections it is. */
    json_t *ja = expect_key(a, "topology"), *jb = expect_key(b, "topology");
    ck_assert_str_eq(str_at(ja, "topology", "connect", "peer", NULL), "carol");
    ck_assert(!json_is_true(
        json_object_get(json_object_get(json_object_get(ja, "topology"), "connect"), "initiator")));
    const char *oa = str_at(ja, "topology", "connect", "offer", "sdp", NULL);
    const char *ob = str_at(jb, "topology", "connect", "offer", "sdp", NULL);
    ck_assert(*oa && *ob && strcmp(oa, ob));
    for (int k = 0; k < 2; k++) {
        json_t *jc = expect_key(c, "topology");
        const char *peer = str_at(jc, "topology", "connect", "peer", NULL);
        ck_assert(json_is_true(json_object_get(
            json_object_get(json_object_get(jc, "topology"), "connect"), "initiator")));
        ck_assert_str_eq(str_at(jc, "topology", "connect", "offer", "sdp", NULL),
                         !strcmp(peer, "alice") ? oa : ob);
        json_decref(jc);
    }
    json_decref(ja);
    json_decref(jb);
    /* The answer goes straight back: one round trip. */
    send_json(a,
              "{\"signal\":{\"to\":\"carol\",\"payload\":{\"type\":\"answer\",\"sdp\":\"a1\"}}}");
    json_t *j = expect_key(c, "signal");
    ck_assert_str_eq(str_at(j, "signal", "payload", "type", NULL), "answer");
    json_decref(j);
    wsc_free(a);
    wsc_free(b);
    wsc_free(c);
}
END_TEST

START_TEST(fullmesh_cap_and_waiting_list)
{
    set_policy("capped", "{\"topology\":\"fullmesh\",\"cap\":2,\"overflow\":\"wait\"}");
    wsc_t *a = join_as(gw_port(0), "capped", "alice");
    wsc_t *b = join_as(gw_port(1), "capped", "bob");
    expect_connect(a, "bob", 1);
    expect_connect(b, "alice", 0);
    wsc_t *c = wsc_connect(gw_port(0), NULL, T_MS), *d = wsc_connect(gw_port(1), NULL, T_MS);
    send_json(c, "{\"id\":\"hc\",\"hello\":{\"namespace\":\"capped\",\"peerId\":\"carol\"}}");
    /* A notice without the id: the hello's one reply is the welcome that comes later. */
    json_t *j = expect_key(c, "waiting");
    ck_assert_str_eq(str_at(j, "id", NULL), "");
    ck_assert_int_eq(json_integer_value(json_object_get(json_object_get(j, "waiting"), "position")),
                     1);
    json_decref(j);
    send_json(d, "{\"id\":\"hd\",\"hello\":{\"namespace\":\"capped\",\"peerId\":\"dave\"}}");
    json_decref(expect_key(c, "waiting"));
    j = expect_key(d, "waiting");
    ck_assert_int_eq(json_integer_value(json_object_get(json_object_get(j, "waiting"), "position")),
                     2);
    json_decref(j);
    /* Longer than the gateway's join deadline: waiting is not a timeout. */
    wsc_pump(5500);
    ck_assert_uint_eq(wsc_pending(c), 0);
    /* A place frees: carol is admitted, dave moves up. */
    wsc_free(a);
    expect_left(b, "alice");
    j = expect_key(c, "welcome");
    ck_assert_str_eq(str_at(j, "id", NULL), "hc");
    json_decref(j);
    expect_connect(c, "bob", 0);
    expect_connect(b, "carol", 1);
    j = expect_key(d, "waiting");
    ck_assert_int_eq(json_integer_value(json_object_get(json_object_get(j, "waiting"), "position")),
                     1);
    json_decref(j);
    /* Without "wait": NAMESPACE_FULL. */
    set_policy("capped2", "{\"topology\":\"fullmesh\",\"cap\":1}");
    wsc_t *e = join_as(gw_port(0), "capped2", "erin");
    wsc_t *f = wsc_connect(gw_port(1), NULL, T_MS);
    send_json(f, "{\"id\":\"hf\",\"hello\":{\"namespace\":\"capped2\",\"peerId\":\"fay\"}}");
    expect_error(f, "NAMESPACE_FULL", "hf");
    wsc_free(b);
    wsc_free(c);
    wsc_free(d);
    wsc_free(e);
    wsc_free(f);
}
END_TEST

START_TEST(tree_roles)
{
    set_policy("tree", "{\"topology\":\"tree\",\"k\":2}");
    peer_t ps[7];
    join_all("tree", ps, 7, NULL);
    settle(ps, 7, 300);
    json_t *j = check_against_admin("tree", ps, 7);
    /* Roles: every peer but the root has exactly one PARENT; at most 2 CHILD. */
    int roots = 0;
    for (int i = 0; i < 7; i++) {
        int parents = 0, children = 0;
        for (int k = 0; k < ps[i].n; k++) {
            parents += !strcmp(ps[i].role[k], "PARENT");
            children += !strcmp(ps[i].role[k], "CHILD");
        }
        ck_assert_int_le(parents, 1);
        ck_assert_int_le(children, 2);
        ck_assert_int_eq(parents + children, ps[i].n);
        roots += parents == 0;
    }
    ck_assert_int_eq(roots, 1);
    json_t *peers = json_object_get(j, "peers");
    int with_parent = 0;
    for (size_t i = 0; i < json_array_size(peers); i++)
        with_parent += json_object_get(json_array_get(peers, i), "parent") != NULL;
    ck_assert_int_eq(with_parent, 6);
    json_decref(j);
    /* The root leaves: a child is promoted, the tree stays whole. */
    for (int i = 0; i < 7; i++) {
        int parents = 0;
        for (int k = 0; k < ps[i].n; k++)
            parents += !strcmp(ps[i].role[k], "PARENT");
        if (!parents) {
            wsc_free(ps[i].c);
            ps[i].c = NULL;
            break;
        }
    }
    settle(ps, 7, 300);
    json_decref(check_against_admin("tree", ps, 7));
    free_all(ps, 7);
}
END_TEST

START_TEST(delaunay_through_cluster)
{
    set_policy("dt", "{\"topology\":\"delaunay\",\"positioning\":\"random\"}");
    peer_t ps[14];
    join_all("dt", ps, 14, NULL);
    settle(ps, 14, 300);
    json_t *j = check_against_admin("dt", ps, 14);
    json_t *peers = json_object_get(j, "peers");
    for (size_t i = 0; i < json_array_size(peers); i++)
        ck_assert_ptr_nonnull(
            json_object_get(json_object_get(json_array_get(peers, i), "position"), "x"));
    /* A planar triangulation of n points has at most 3n - 6 edges. */
    ck_assert_uint_le(json_array_size(json_object_get(j, "edges")), 3 * 14 - 6);
    ck_assert_uint_ge(json_array_size(json_object_get(j, "edges")), 14 - 1);
    json_decref(j);
    /* Leaves repair locally; every view still matches. */
    for (int i = 0; i < 14; i += 4) {
        wsc_free(ps[i].c);
        ps[i].c = NULL;
    }
    settle(ps, 14, 300);
    json_decref(check_against_admin("dt", ps, 14));
    free_all(ps, 14);

    /* Client positions: a square and its centre; the centre links to all corners. */
    set_policy("dtc", "{\"topology\":\"delaunay\",\"positioning\":\"client\"}");
    const double xy[5][2] = {{0, 0}, {10, 0}, {10, 10}, {0, 10}, {5, 4}};
    peer_t q[5];
    for (int i = 0; i < 5; i++) {
        memset(&q[i], 0, sizeof(q[i]));
        snprintf(q[i].id, sizeof(q[i].id), "c%d", i);
        q[i].c = wsc_connect(gw_port(i), NULL, T_MS);
        send_json(q[i].c,
                  "{\"hello\":{\"namespace\":\"dtc\",\"peerId\":\"%s\",\"position\":"
                  "{\"x\":%g,\"y\":%g}}}",
                  q[i].id, xy[i][0], xy[i][1]);
        json_decref(expect_key(q[i].c, "welcome"));
    }
    settle(q, 5, 300);
    json_decref(check_against_admin("dtc", q, 5));
    ck_assert_int_eq(q[4].n, 4);
    /* Missing position in a client-positioned namespace is an error. */
    wsc_t *x = wsc_connect(gw_port(0), NULL, T_MS);
    send_json(x, "{\"id\":\"np\",\"hello\":{\"namespace\":\"dtc\",\"peerId\":\"nopos\"}}");
    expect_error(x, "BAD_REQUEST", "np");
    wsc_free(x);
    /* Moving the centre out past a corner changes only some edges. */
    send_json(q[4].c, "{\"id\":\"mv\",\"position\":{\"x\":20,\"y\":5}}");
    settle(q, 5, 300);
    json_decref(check_against_admin("dtc", q, 5));
    free_all(q, 5);
}
END_TEST

/* Geo positioning: neighbours on the sphere. Two peers either side of the
 * antimeridian, a ring near the North pole, one near the South pole. */
START_TEST(delaunay_geo_positions)
{
    set_policy("geo", "{\"topology\":\"delaunay\",\"positioning\":\"geo\"}");
    static const double ll[][2] = {
        {10, 179.5}, {10, -179.5}, {88, 0},    {88, 120}, {88, -120}, {-85, 40},
        {48, 2},     {40, -74},    {-34, 151}, {35, 139}, {-23, -46}, {1, 104},
    };
    enum { N = sizeof(ll) / sizeof(ll[0]) };
    peer_t q[N];
    for (int i = 0; i < N; i++) {
        memset(&q[i], 0, sizeof(q[i]));
        snprintf(q[i].id, sizeof(q[i].id), "g%02d", i);
        q[i].c = wsc_connect(gw_port(i), NULL, T_MS);
        ck_assert_ptr_nonnull(q[i].c);
        send_json(q[i].c,
                  "{\"hello\":{\"namespace\":\"geo\",\"peerId\":\"%s\",\"position\":"
                  "{\"lat\":%g,\"lon\":%g}}}",
                  q[i].id, ll[i][0], ll[i][1]);
        json_decref(expect_key(q[i].c, "welcome"));
    }
    settle(q, N, 300);
    json_t *j = check_against_admin("geo", q, N);
    ck_assert_str_eq(json_string_value(json_object_get(json_object_get(j, "stats"), "mode")),
                     "geo");
    json_decref(j);
    /* N points in general position on the sphere: 3N - 6 edges. */
    int sum = 0;
    for (int i = 0; i < N; i++)
        sum += q[i].n;
    ck_assert_int_eq(sum, 2 * (3 * N - 6));
    ck_assert(has_nb(&q[0], "g01"));
    ck_assert(has_nb(&q[2], "g03") && has_nb(&q[3], "g04") && has_nb(&q[4], "g02"));
    /* A geo namespace needs a position. */
    wsc_t *x = wsc_connect(gw_port(0), NULL, T_MS);
    send_json(x, "{\"id\":\"np\",\"hello\":{\"namespace\":\"geo\",\"peerId\":\"nopos\"}}");
    expect_error(x, "BAD_REQUEST", "np");
    wsc_free(x);
    /* Out of range is refused, naming the range, not clamped. */
    x = wsc_connect(gw_port(0), NULL, T_MS);
    send_json(x, "{\"id\":\"op\",\"hello\":{\"namespace\":\"geo\",\"peerId\":\"far\","
                 "\"position\":{\"lat\":91,\"lon\":0}}}");
    json_t *e = expect_key(x, "error");
    ck_assert_str_eq(str_at(e, "id", NULL), "op");
    ck_assert_str_eq(str_at(e, "error", "code", NULL), "BAD_REQUEST");
    ck_assert_ptr_nonnull(strstr(str_at(e, "error", "message", NULL), "[-90, 90]"));
    json_decref(e);
    wsc_free(x);
    /* Moving across the antimeridian keeps every view equal to the admin's. */
    send_json(q[1].c, "{\"id\":\"mv\",\"position\":{\"lat\":-10,\"lon\":179.8}}");
    settle(q, N, 300);
    json_decref(check_against_admin("geo", q, N));
    free_all(q, N);
}
END_TEST

/* Network positioning: RTT reports move peers' Vivaldi coordinates; moves
 * announce only changed edges and every view keeps matching the admin's. */
START_TEST(delaunay_network_positions)
{
    set_policy("net", "{\"topology\":\"delaunay\",\"positioning\":\"network\"}");
    peer_t ps[6];
    join_all("net", ps, 6, NULL);
    settle(ps, 6, 300);
    json_decref(check_against_admin("net", ps, 6));
    /* Two clusters: p0-p2 close to each other, p3-p5 close, far between. */
    for (int round = 0; round < 15; round++) {
        for (int i = 0; i < 6; i++)
            for (int k = 0; k < 6; k++) {
                if (k == i)
                    continue;
                double ms = (i < 3) == (k < 3) ? 4.0 : 180.0;
                send_json(ps[i].c, "{\"rtt\":{\"peer\":\"%s\",\"ms\":%g}}", ps[k].id, ms);
            }
        settle(ps, 6, 50);
    }
    settle(ps, 6, 300);
    json_t *j = check_against_admin("net", ps, 6);
    /* The clusters separate in whichever direction the first coincident
     * updates chose (it depends on the order the reports arrive), so compare
     * plane distances, not one axis. */
    json_t *peers = json_object_get(j, "peers");
    ck_assert_int_eq((int)json_array_size(peers), 6);
    double px[6], py[6];
    for (size_t i = 0; i < 6; i++) {
        json_t *p = json_array_get(peers, i);
        int k = atoi(str_at(p, "id", NULL) + 1);
        ck_assert(k >= 0 && k < 6);
        json_t *pos = json_object_get(p, "position");
        px[k] = json_number_value(json_object_get(pos, "x"));
        py[k] = json_number_value(json_object_get(pos, "y"));
    }
    double near = 0, far = 1e9;
    for (int a = 0; a < 6; a++)
        for (int b = a + 1; b < 6; b++) {
            double d = hypot(px[a] - px[b], py[a] - py[b]);
            if ((a < 3) == (b < 3))
                near = d > near ? d : near;
            else
                far = d < far ? d : far;
        }
    ck_assert_msg(far > 50 && near < far / 3,
                  "coordinates did not separate the clusters (farthest within %g ms, "
                  "nearest between %g ms)",
                  near, far);
    json_decref(j);
    send_json(ps[0].c, "{\"id\":\"bad\",\"rtt\":{\"peer\":\"nobody\",\"ms\":3}}");
    expect_error(ps[0].c, "PEER_NOT_FOUND", "bad");
    free_all(ps, 6);
}
END_TEST

START_TEST(spray_through_cluster)
{
    set_policy("spray", "{\"topology\":\"spray\",\"a\":1,\"b\":2,\"shufflePeriodMs\":1000}");
    peer_t ps[12];
    join_all("spray", ps, 12, NULL);
    settle(ps, 12, 300);
    json_t *j = check_against_admin("spray", ps, 12);
    json_decref(j);
    for (int i = 0; i < 12; i++)
        ck_assert_msg(ps[i].n >= 1, "%s has no neighbour", ps[i].id);
    free_all(ps, 12);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("topologies");
    TCase *tc = tcase_create("cluster");
    tcase_add_unchecked_fixture(tc, cluster_up, cluster_down);
    tcase_add_checked_fixture(tc, client_up, client_down);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, fullmesh_premade_offers);
    tcase_add_test(tc, fullmesh_cap_and_waiting_list);
    tcase_add_test(tc, tree_roles);
    tcase_add_test(tc, delaunay_through_cluster);
    tcase_add_test(tc, delaunay_geo_positions);
    tcase_add_test(tc, delaunay_network_positions);
    tcase_add_test(tc, spray_through_cluster);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
