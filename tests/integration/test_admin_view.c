/* SPDX-License-Identifier: Apache-2.0 */
/* Integration test of the admin namespace view's bound: a namespace larger than
 * --admin-view-max-peers is shown in part (that many peers, the edges between them, each
 * listed peer's full degree) with "truncated": true and its full counts in stats; a smaller one
 * is shown whole. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster.h"
#include "testutil.h"
#include "wsclient.h"

enum { N = 6, MAX_VIEW = 3 };

static cluster_t cl;
static const char *const coord_args[] = {"--admin-view-max-peers", "3", NULL};

static void cluster_up(void)
{
    client_up();
    ck_assert_int_eq(cluster_start_args(&cl, NULL, coord_args), 0);
    const char *gw_args[] = {"--insecure-dev", NULL};
    ck_assert_int_eq(cluster_add_gateway(&cl, "gw-1", gw_args), 0);
}

static void cluster_down(void)
{
    cluster_stop(&cl);
    client_down();
}

/* The owner's view of ns once it lists `peers` peers in stats (bounded wait). */
static json_t *view(const char *ns, int peers)
{
    char path[128];
    snprintf(path, sizeof(path), "/v1/namespaces/%s", ns);
    long long deadline = cluster_now_ms() + 10000;
    for (;;) {
        char *body = NULL;
        int st = http_request(cl.admin_port, "GET", path, NULL, NULL, &body);
        json_t *j = body && st == 200 ? json_loads(body, 0, NULL) : NULL;
        free(body);
        if (j && json_integer_value(json_object_get(json_object_get(j, "stats"), "peers")) == peers)
            return j;
        json_decref(j);
        ck_assert_msg(cluster_now_ms() < deadline, "%s never listed %d peers", ns, peers);
        wsc_pump(50);
    }
}

START_TEST(large_namespace_shown_in_part)
{
    ck_assert_int_eq(cluster_set_policy(&cl, "big", "{\"topology\":\"fullmesh\"}"), 0);
    wsc_t *c[N];
    for (int i = 0; i < N; i++) {
        char id[8];
        snprintf(id, sizeof(id), "p%d", i);
        c[i] = join_as(cl.gw_port[0], "big", id);
    }
    json_t *j = view("big", N);
    /* The counts are the whole namespace's: a full mesh of 6 has 15 edges. */
    ck_assert_int_eq(json_integer_value(json_object_get(json_object_get(j, "stats"), "edges")),
                     N * (N - 1) / 2);
    ck_assert(json_is_true(json_object_get(j, "truncated")));
    json_t *peers = json_object_get(j, "peers"), *edges = json_object_get(j, "edges");
    ck_assert_int_eq((int)json_array_size(peers), MAX_VIEW);
    /* Only edges between listed peers: 3 in a full mesh of the 3 shown. */
    ck_assert_int_eq((int)json_array_size(edges), MAX_VIEW * (MAX_VIEW - 1) / 2);
    size_t i;
    json_t *p, *e;
    json_array_foreach(peers, i, p)
    {
        /* The degree counts every edge, also those to peers not shown. */
        ck_assert_int_eq(json_integer_value(json_object_get(p, "degree")), N - 1);
    }
    json_array_foreach(edges, i, e)
    {
        for (size_t k = 0; k < 2; k++) {
            const char *id = json_string_value(json_array_get(e, k));
            int found = 0;
            size_t q;
            json_t *pp;
            json_array_foreach(peers, q, pp)
            {
                found |= !strcmp(json_string_value(json_object_get(pp, "id")), id);
            }
            ck_assert_msg(found, "edge end %s is not a listed peer", id);
        }
    }
    json_decref(j);
    for (int k = 0; k < N; k++)
        wsc_free(c[k]);
}
END_TEST

START_TEST(small_namespace_shown_whole)
{
    ck_assert_int_eq(cluster_set_policy(&cl, "small", "{\"topology\":\"fullmesh\"}"), 0);
    wsc_t *a = join_as(cl.gw_port[0], "small", "a");
    wsc_t *b = join_as(cl.gw_port[0], "small", "b");
    json_t *j = view("small", 2);
    ck_assert(json_is_false(json_object_get(j, "truncated")));
    ck_assert_int_eq((int)json_array_size(json_object_get(j, "peers")), 2);
    ck_assert_int_eq((int)json_array_size(json_object_get(j, "edges")), 1);
    ck_assert_int_eq(json_integer_value(json_object_get(json_object_get(j, "stats"), "edges")), 1);
    json_decref(j);
    wsc_free(a);
    wsc_free(b);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("admin_view");
    TCase *tc = tcase_create("bound");
    tcase_set_timeout(tc, 60);
    tcase_add_checked_fixture(tc, cluster_up, cluster_down);
    tcase_add_test(tc, large_namespace_shown_in_part);
    tcase_add_test(tc, small_namespace_shown_whole);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
