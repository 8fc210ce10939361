/* SPDX-License-Identifier: Apache-2.0 */
/* The coordinator's --policy-file through real processes: rules by namespace pattern, the admin
 * listing, SIGHUP reload of live namespaces, admin overrides winning, bad files refused. */
#include <check.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cluster.h"
#include "testutil.h"
#include "wsclient.h"

static cluster_t cl;
static int gw;
static char policy_path[300];

static const char first_rules[] = "default: {topology: fullmesh, cap: 16}\n"
                                  "rules:\n"
                                  "  - match: \"broadcast.*\"\n"
                                  "    policy: {topology: tree, k: 2}\n"
                                  "  - match: \"geo.*\"\n"
                                  "    policy: {topology: delaunay, positioning: geo}\n"
                                  "  - match: \"open-*\"\n"
                                  "    policy: {signals: any}\n"
                                  "  - match: \"grow.*\"\n"
                                  "    policy: {topology: auto, fullmeshUpTo: 3, then: "
                                  "delaunay, hysteresis: 1}\n";

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(fputs(text, f) >= 0, 1);
    ck_assert_int_eq(fclose(f), 0);
}

static void cluster_up(void)
{
    snprintf(policy_path, sizeof(policy_path), "/tmp/ms-policy-test-%d.yaml", (int)getpid());
    write_file(policy_path, first_rules);
    static const char *coord_args[3];
    coord_args[0] = "--policy-file";
    coord_args[1] = policy_path;
    coord_args[2] = NULL;
    ck_assert_int_eq(cluster_start_args(&cl, NULL, coord_args), 0);
    const char *dev[] = {"--insecure-dev", NULL};
    gw = cluster_add_gateway(&cl, "gw-a", dev);
    ck_assert_int_ge(gw, 0);
}

static void cluster_down(void)
{
    cluster_stop(&cl);
    unlink(policy_path);
}

/* Joins ns as peer and returns the welcome's topology name (copied into out). */
static wsc_t *join_topology(const char *ns, const char *peer, char *out, size_t cap)
{
    wsc_t *c = wsc_connect(cl.gw_port[gw], "meshsig.v1.json", T_MS);
    ck_assert_ptr_nonnull(c);
    /* A position is required by geo namespaces and ignored elsewhere. */
    send_json(c,
              "{\"id\":\"h\",\"hello\":{\"namespace\":\"%s\",\"peerId\":\"%s\","
              "\"position\":{\"lat\":48.85,\"lon\":2.35}}}",
              ns, peer);
    json_t *w = expect_key(c, "welcome");
    snprintf(out, cap, "%s", str_at(w, "welcome", "topology", NULL));
    json_decref(w);
    return c;
}

static json_t *get_json(const char *path)
{
    char *body = NULL;
    int st = http_request(cl.admin_port, "GET", path, NULL, NULL, &body);
    ck_assert_msg(st == 200, "GET %s: %d %s", path, st, body ? body : "");
    json_t *j = json_loads(body, 0, NULL);
    free(body);
    ck_assert_ptr_nonnull(j);
    return j;
}

/* The topology of rule i in GET /v1/policies. */
static const char *rule_topology(json_t *pol, size_t i)
{
    return str_at(json_array_get(json_object_get(pol, "rules"), i), "policy", "topology", NULL);
}

/* Polls GET /v1/policies until the counter `key` reaches n (bounded); returns the listing. */
static json_t *wait_counter(const char *key, json_int_t n)
{
    for (int i = 0; i < 200; i++) {
        json_t *p = get_json("/v1/policies");
        if (json_integer_value(json_object_get(p, key)) >= n)
            return p;
        json_decref(p);
        wsc_pump(25);
    }
    ck_abort_msg("the coordinator did not handle SIGHUP (%s < %d)", key, (int)n);
    return NULL;
}

START_TEST(rules_pick_the_topology_by_namespace)
{
    char topo[32];
    wsc_t *a = join_topology("broadcast.news", "a", topo, sizeof(topo));
    ck_assert_str_eq(topo, "tree");
    wsc_t *b = join_topology("geo.paris", "b", topo, sizeof(topo));
    ck_assert_str_eq(topo, "delaunay");
    wsc_t *c = join_topology("lobby", "c", topo, sizeof(topo));
    ck_assert_str_eq(topo, "fullmesh");
    json_t *ns = get_json("/v1/namespaces/geo.paris/policy");
    ck_assert_str_eq(str_at(ns, "positioning", NULL), "geo");
    json_decref(ns);
    ns = get_json("/v1/namespaces/lobby/policy");
    ck_assert_int_eq(json_integer_value(json_object_get(ns, "cap")), 16);
    json_decref(ns);
    /* `open-*` lets any peer signal any other. */
    wsc_t *d = join_topology("open-x", "d", topo, sizeof(topo));
    wsc_t *e = join_topology("open-x", "e", topo, sizeof(topo));
    json_decref(skip_to(d, "topology"));
    json_decref(skip_to(e, "topology"));
    send_json(d, "{\"signal\":{\"to\":\"e\",\"payload\":{\"k\":1}}}");
    expect_signal_from(e, "d");
    json_t *pol = get_json("/v1/policies");
    ck_assert_str_eq(str_at(pol, "file", NULL), policy_path);
    ck_assert_int_eq(json_array_size(json_object_get(pol, "rules")), 4);
    ck_assert_str_eq(str_at(json_array_get(json_object_get(pol, "rules"), 0), "match", NULL),
                     "broadcast.*");
    ck_assert_str_eq(str_at(pol, "default", "topology", NULL), "fullmesh");
    json_decref(pol);
    wsc_free(a);
    wsc_free(b);
    wsc_free(c);
    wsc_free(d);
    wsc_free(e);
}
END_TEST

/* Reads the namespace view until `key` in its stats equals want (bounded). */
static void wait_mode(const char *ns, const char *want, int edges)
{
    char path[128];
    snprintf(path, sizeof(path), "/v1/namespaces/%s", ns);
    for (int i = 0; i < 200; i++) {
        json_t *j = get_json(path);
        int ok = !strcmp(str_at(j, "stats", "auto", "mode", NULL), want) &&
                 (int)json_array_size(json_object_get(j, "edges")) == edges;
        json_decref(j);
        if (ok)
            return;
        wsc_pump(25);
    }
    ck_abort_msg("%s did not reach mode %s with %d edges", ns, want, edges);
}

/* Counts the topology events a client has received so far (connects - disconnects). */
static int drain_degree(wsc_t *c, int *changes)
{
    int deg = 0;
    json_t *j;
    while ((j = wsc_recv_json(c, 0))) {
        json_t *t = json_object_get(j, "topology");
        if (json_object_get(t, "connect")) {
            deg++;
            (*changes)++;
        }
        if (json_object_get(t, "disconnect")) {
            deg--;
            (*changes)++;
        }
        json_decref(j);
    }
    return deg;
}

START_TEST(auto_grows_from_full_mesh_and_back)
{
    char topo[32], id[8];
    wsc_t *p[5];
    for (int i = 0; i < 5; i++) {
        snprintf(id, sizeof(id), "g%d", i);
        p[i] = join_topology("grow.room", id, topo, sizeof(topo));
        ck_assert_str_eq(topo, "auto");
    }
    /* 5 peers > 3: a Delaunay mesh of 5 (a triangulation of 5 points in general
     * position has at most 3*5-6 = 9 edges, fewer than the 10 of a full mesh). */
    json_t *j = get_json("/v1/namespaces/grow.room");
    ck_assert_str_eq(str_at(j, "stats", "auto", "mode", NULL), "delaunay");
    ck_assert_int_eq(json_integer_value(json_object_get(
                         json_object_get(json_object_get(j, "stats"), "auto"), "switches")),
                     1);
    int edges = (int)json_array_size(json_object_get(j, "edges"));
    ck_assert_int_lt(edges, 10);
    json_decref(j);
    /* The clients' views, built from their events, add up to the mesh (events
     * may still be on their way when the admin view answers: wait for them). */
    int changes = 0, total = 0;
    for (int round = 0; round < 200 && total != 2 * edges; round++) {
        wsc_pump(25);
        for (int i = 0; i < 5; i++)
            total += drain_degree(p[i], &changes);
    }
    ck_assert_int_eq(total, 2 * edges);
    /* Down to 2 (= 3 - hysteresis 1): back to a full mesh of the 2 left. */
    wsc_free(p[4]);
    wsc_free(p[3]);
    wsc_free(p[2]);
    wait_mode("grow.room", "fullmesh", 1);
    wsc_free(p[0]);
    wsc_free(p[1]);
}
END_TEST

START_TEST(sighup_reloads_and_live_namespaces_follow)
{
    char topo[32];
    /* Three peers in a k=2 tree: the root has two children, who are not linked. */
    wsc_t *p[3];
    char id[8];
    for (int i = 0; i < 3; i++) {
        snprintf(id, sizeof(id), "t%d", i);
        p[i] = join_topology("broadcast.live", id, topo, sizeof(topo));
        ck_assert_str_eq(topo, "tree");
    }
    /* An admin override beats the file, before and after a reload. */
    char *body = NULL;
    ck_assert_int_eq(http_request(cl.admin_port, "PUT", "/v1/namespaces/broadcast.pinned/policy",
                                  NULL, "{\"topology\":\"spray\"}", &body),
                     200);
    free(body);
    write_file(policy_path, "rules:\n  - {match: \"broadcast.*\", policy: {topology: fullmesh}}\n");
    ck_assert_int_eq(kill(cl.coord, SIGHUP), 0);
    json_t *pol = wait_counter("reloads", 1);
    ck_assert_str_eq(rule_topology(pol, 0), "fullmesh");
    ck_assert_int_eq(json_array_size(json_object_get(pol, "rules")), 1);
    ck_assert(json_is_null(json_object_get(pol, "lastError")));
    json_decref(pol);
    /* The live tree became a full mesh: the two children are now told of each other. */
    for (int i = 0; i < 100; i++) {
        json_t *ns = get_json("/v1/namespaces/broadcast.live");
        int done = !strcmp(str_at(ns, "topology", NULL), "fullmesh") &&
                   json_array_size(json_object_get(ns, "edges")) == 3;
        json_decref(ns);
        if (done)
            break;
        ck_assert_int_lt(i, 99);
        wsc_pump(50);
    }
    wsc_t *x = join_topology("broadcast.other", "x", topo, sizeof(topo));
    ck_assert_str_eq(topo, "fullmesh");
    wsc_t *y = join_topology("broadcast.pinned", "y", topo, sizeof(topo));
    ck_assert_str_eq(topo, "spray");
    /* A broken file is refused and the rules in force stay. */
    write_file(policy_path, "rules:\n  - {match: \"broadcast.*\", policy: {topology: ring}}\n");
    ck_assert_int_eq(kill(cl.coord, SIGHUP), 0);
    pol = wait_counter("reloadFailures", 1);
    ck_assert_str_eq(rule_topology(pol, 0), "fullmesh");
    ck_assert_ptr_nonnull(strstr(str_at(pol, "lastError", NULL), "rule 1 (broadcast.*)"));
    json_decref(pol);
    wsc_t *z = join_topology("broadcast.third", "z", topo, sizeof(topo));
    ck_assert_str_eq(topo, "fullmesh");
    for (int i = 0; i < 3; i++)
        wsc_free(p[i]);
    wsc_free(x);
    wsc_free(y);
    wsc_free(z);
}
END_TEST

START_TEST(a_bad_file_stops_the_start)
{
    char bad[320], bin[512];
    snprintf(bad, sizeof(bad), "%s.bad.yaml", policy_path);
    write_file(bad, "rules:\n  - {match: \"x\", policy: {k: 1}}\n");
    char admin[32];
    snprintf(admin, sizeof(admin), "127.0.0.1:%d", cluster_free_port());
    char nats[64];
    snprintf(nats, sizeof(nats), "nats://127.0.0.1:%d", cl.nats_port);
    char *argv[] = {(char *)cluster_bin("coordinator/meshsig-coordinator", bin, sizeof(bin)),
                    "--insecure-dev",
                    "--nats",
                    nats,
                    "--admin-listen",
                    admin,
                    "--policy-file",
                    bad,
                    NULL};
    pid_t pid = cluster_spawn(&cl, "coord-bad.log", argv);
    ck_assert_int_gt(pid, 0);
    int status = 0;
    pid_t done = 0;
    for (int i = 0; i < 200 && done == 0; i++) {
        done = waitpid(pid, &status, WNOHANG);
        if (done == 0)
            wsc_pump(25);
    }
    if (done == 0)
        cluster_kill(pid, SIGKILL);
    unlink(bad);
    ck_assert_msg(done == pid, "the coordinator started with a bad policy file");
    ck_assert(WIFEXITED(status) && WEXITSTATUS(status) != 0);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("policy_file");
    TCase *tc = tcase_create("core");
    tcase_add_checked_fixture(tc, client_up, client_down);
    tcase_add_unchecked_fixture(tc, cluster_up, cluster_down);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, rules_pick_the_topology_by_namespace);
    tcase_add_test(tc, auto_grows_from_full_mesh_and_back);
    tcase_add_test(tc, sighup_reloads_and_live_namespaces_follow);
    tcase_add_test(tc, a_bad_file_stops_the_start);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
