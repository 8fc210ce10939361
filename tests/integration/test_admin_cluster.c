/* SPDX-License-Identifier: Apache-2.0 */
/* Integration test of the admin API across coordinators: any coordinator lists every namespace
 * of the cluster with its owner, and shows a namespace it does not serve as its owner does. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cluster.h"
#include "testutil.h"
#include "wsclient.h"

#define SHARDS CLUSTER_SHARDS
#define N_COORD 3

static cluster_t cl;
static const char *const coord_args[] = {"--coord-heartbeat-ms", "200", "--coord-timeout-ms", "800",
                                         NULL};

/* GET path on coordinator i: the status, and the body parsed in *out (may be NULL). */
static int get_json(int i, const char *path, json_t **out)
{
    char *body = NULL;
    int st = http_request(cluster_coord_admin(&cl, i), "GET", path, NULL, NULL, &body);
    *out = body ? json_loads(body, 0, NULL) : NULL;
    free(body);
    return st;
}

/* Which coordinator index serves each shard, from each one's own /v1/cluster; 1 once the split
 * is settled. */
static int serving(int owner[SHARDS])
{
    for (int n = 0; n < SHARDS; n++)
        owner[n] = -1;
    for (int i = 0; i < N_COORD; i++) {
        json_t *j = NULL;
        if (get_json(i, "/v1/cluster", &j) != 200 || !j) {
            json_decref(j);
            return 0;
        }
        json_t *sh = json_object_get(j, "shards"), *s;
        size_t k;
        json_array_foreach(sh, k, s)
        {
            if (strcmp(json_string_value(json_object_get(s, "here")), "serving"))
                continue;
            owner[json_integer_value(json_object_get(s, "shard"))] = i;
        }
        json_decref(j);
    }
    int per[N_COORD] = {0};
    for (int n = 0; n < SHARDS; n++) {
        if (owner[n] < 0)
            return 0;
        per[owner[n]]++;
    }
    /* The first coordinator serves everything until the others have taken
     * theirs: wait until each one serves some and says it is ready. */
    for (int i = 0; i < N_COORD; i++) {
        char *body = NULL;
        int st = http_request(cluster_coord_admin(&cl, i), "GET", "/readyz", NULL, NULL, &body);
        free(body);
        if (!per[i] || st != 200)
            return 0;
    }
    return 1;
}

static void cluster_up(void)
{
    ck_assert_int_eq(cluster_start_args(&cl, NULL, coord_args), 0);
    for (int i = 1; i < N_COORD; i++)
        ck_assert_int_eq(cluster_add_coordinator(&cl), i);
    const char *gw_args[] = {"--insecure-dev", NULL};
    ck_assert_int_eq(cluster_add_gateway(&cl, "gw-1", gw_args), 0);
}

static void cluster_down(void)
{
    cluster_stop(&cl);
}

/* The entry for name in a /v1/namespaces answer, or NULL. */
static json_t *entry_of(json_t *list, const char *name)
{
    json_t *e;
    size_t k;
    json_array_foreach(
        json_object_get(list, "namespaces"), k,
        e) if (!strcmp(json_string_value(json_object_get(e, "name")), name)) return e;
    return NULL;
}

/* Whether list shows ns[i] with owner id[i] and i + 1 peers, for every i. */
static int list_complete(json_t *list, char ns[N_COORD][64])
{
    for (int i = 0; i < N_COORD; i++) {
        json_t *e = entry_of(list, ns[i]);
        const char *owner = e ? json_string_value(json_object_get(e, "owner")) : NULL;
        if (!owner || strcmp(owner, cluster_coord_id(&cl, i)) ||
            json_integer_value(json_object_get(e, "peers")) != i + 1)
            return 0;
    }
    return 1;
}

START_TEST(any_coordinator_answers_for_the_cluster)
{
    client_up();
    int owner[SHARDS];
    long long t0 = cluster_now_ms();
    while (!serving(owner)) {
        ck_assert_msg(cluster_now_ms() - t0 < 15000, "shards still unserved after 15 s");
        usleep(50000);
    }
    /* ns[i] lives on coordinator i and has i + 1 peers (a full mesh). */
    char ns[N_COORD][64];
    wsc_t *peers[N_COORD][N_COORD] = {{NULL}};
    for (int i = 0; i < N_COORD; i++) {
        int k = 0;
        do
            snprintf(ns[i], sizeof(ns[i]), "adm%d-%d", i, k++);
        while (owner[cluster_shard_of(ns[i])] != i && k < 10000);
        ck_assert_int_eq(owner[cluster_shard_of(ns[i])], i);
        for (int p = 0; p <= i; p++) {
            char id[32];
            snprintf(id, sizeof(id), "p%d-%d", i, p);
            peers[i][p] = join_as(cl.gw_port[0], ns[i], id);
        }
    }

    /* The list, from every coordinator: all three namespaces with owner and peer count.
     * Joins are answered by the owner before it is asked, so the first answer should
     * hold them; the bounded retry only absorbs a coordinator missing one deadline. */
    for (int j = 0; j < N_COORD; j++) {
        json_t *list = NULL;
        long long t = cluster_now_ms();
        for (;;) {
            int st = get_json(j, "/v1/namespaces", &list);
            ck_assert_int_eq(st, 200);
            if ((list_complete(list, ns) && !json_object_get(list, "missing")) ||
                cluster_now_ms() - t > 5000)
                break;
            json_decref(list);
            usleep(100000);
        }
        char *dump = json_dumps(list, JSON_COMPACT);
        ck_assert_msg(list_complete(list, ns), "%s lists %s", cluster_coord_id(&cl, j), dump);
        ck_assert_msg(!json_object_get(list, "missing"), "%s: partial list %s",
                      cluster_coord_id(&cl, j), dump);
        free(dump);
        json_decref(list);
    }

    /* One namespace, from its owner and from the others: the same peers and edges. */
    for (int i = 0; i < N_COORD; i++) {
        char path[128];
        snprintf(path, sizeof(path), "/v1/namespaces/%s", ns[i]);
        json_t *want = NULL;
        ck_assert_int_eq(get_json(i, path, &want), 200);
        ck_assert_int_eq((int)json_array_size(json_object_get(want, "peers")), i + 1);
        ck_assert_int_eq((int)json_array_size(json_object_get(want, "edges")), i * (i + 1) / 2);
        for (int j = 0; j < N_COORD; j++) {
            if (j == i)
                continue;
            json_t *got = NULL;
            int st = get_json(j, path, &got);
            ck_assert_msg(st == 200, "%s on %s: %d", path, cluster_coord_id(&cl, j), st);
            ck_assert_str_eq(json_string_value(json_object_get(got, "owner")),
                             cluster_coord_id(&cl, i));
            ck_assert_msg(json_equal(json_object_get(got, "peers"), json_object_get(want, "peers")),
                          "%s: peers differ on %s", path, cluster_coord_id(&cl, j));
            ck_assert_msg(json_equal(json_object_get(got, "edges"), json_object_get(want, "edges")),
                          "%s: edges differ on %s", path, cluster_coord_id(&cl, j));
            json_decref(got);
        }
        json_decref(want);
    }

    /* A namespace nobody has: 404 everywhere (504 would mean someone did not answer). */
    for (int j = 0; j < N_COORD; j++) {
        json_t *none = NULL;
        int st = get_json(j, "/v1/namespaces/nobody-has-this", &none);
        ck_assert_msg(st == 404, "unknown namespace on %s: %d", cluster_coord_id(&cl, j), st);
        json_decref(none);
    }

    for (int i = 0; i < N_COORD; i++)
        for (int p = 0; p <= i; p++)
            wsc_free(peers[i][p]);
    client_down();
}
END_TEST

int main(void)
{
    Suite *s = suite_create("admin_cluster");
    TCase *tc = tcase_create("cluster");
    tcase_add_unchecked_fixture(tc, cluster_up, cluster_down);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, any_coordinator_answers_for_the_cluster);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
