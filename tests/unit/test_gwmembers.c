/* SPDX-License-Identifier: Apache-2.0 */
/* The members of each gateway (coordinator/gwmembers.c): random adds, moves and removes against
 * a brute-force list (every member in its gateway's list, at its slot, once; a list goes with
 * its last member), and a gateway lost among many peers of other gateways detaches its own
 * after looking at them only (before, detach_members_of walked every member of every
 * namespace: 6 ms of the loop per 100,000 peers elsewhere). */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "intern.h"
#include "coordjoin.h"
#include "internal.h"

#define SHARDS 64
#define N 500
#define GWS 5

static ms_ns_t *fake_ns[3]; /* never read through: told apart by address */

/* Every member listed in its gateway's list at its slot, each list holding exactly the live
 * members of its gateway, no empty list. */
static void check(ms_gwm_t *x, ms_member_t **live, const char *const *gw)
{
    size_t total = 0;
    for (int g = 0; g < GWS; g++) {
        ms_gwm_list_t *l = ms_gwm_of(x, gw[g]);
        size_t want = 0;
        for (int i = 0; i < N; i++)
            want += live[i] && !strcmp(live[i]->gateway, gw[g]);
        if (!want) {
            ck_assert_ptr_null(l);
            continue;
        }
        ck_assert_ptr_nonnull(l);
        ck_assert_uint_eq(l->n, want);
        for (uint32_t k = 0; k < l->n; k++) {
            ck_assert_uint_eq(l->v[k].m->gw_slot, k);
            ck_assert_str_eq(l->v[k].m->gateway, gw[g]);
        }
        total += l->n;
    }
    size_t n_live = 0;
    for (int i = 0; i < N; i++)
        n_live += live[i] != NULL;
    ck_assert_uint_eq(total, n_live);
}

START_TEST(lists_match_brute_force)
{
    ms_gwm_t x = {0};
    const char *gw[GWS];
    char name[16];
    for (int g = 0; g < GWS; g++) {
        snprintf(name, sizeof(name), "gw-%d", g);
        gw[g] = ms_intern(name);
    }
    ms_member_t *live[N] = {0};
    for (int k = 0; k < 3; k++)
        ck_assert_ptr_nonnull(fake_ns[k] = calloc(1, sizeof(ms_ns_t) + 8));
    srand(7);
    for (int step = 0; step < 20000; step++) {
        int i = rand() % N, g = rand() % GWS, op = rand() % 3;
        if (!live[i]) { /* a join */
            snprintf(name, sizeof(name), "p%d", i);
            ms_member_t *m = ms_member_new(name);
            ck_assert_ptr_nonnull(m);
            m->gateway = ms_intern(gw[g]);
            ck_assert_int_eq(ms_gwm_add(&x, fake_ns[i % 3], m), MS_OK);
            live[i] = m;
        } else if (op == 0) { /* a leave */
            ms_gwm_remove(&x, live[i]);
            ms_member_free(live[i]); /* releases its gateway */
            live[i] = NULL;
        } else { /* a resume or a replace, on another gateway or the same */
            ms_member_t *m = live[i];
            const char *to = ms_intern(gw[g]);
            ck_assert_int_eq(ms_gwm_reserve(&x, to), MS_OK);
            ms_gwm_move(&x, fake_ns[i % 3], m, to);
            ms_intern_release(m->gateway);
            m->gateway = to;
        }
        if (step % 97 == 0)
            check(&x, live, gw);
    }
    check(&x, live, gw);
    for (int i = 0; i < N; i++)
        if (live[i]) {
            ck_assert_ptr_eq(ms_gwm_of(&x, live[i]->gateway)->v[live[i]->gw_slot].ns,
                             fake_ns[i % 3]);
            ms_gwm_remove(&x, live[i]);
            ms_member_free(live[i]);
        }
    ck_assert_ptr_null(x.by_gw);
    ms_gwm_cleanup(&x);
    for (int g = 0; g < GWS; g++)
        ms_intern_release(gw[g]);
    for (int k = 0; k < 3; k++)
        free(fake_ns[k]);
}
END_TEST

static ms_coord_config_t cfg = {
    .prefix = "meshsig", .shards = SHARDS, .gateway_timeout_ms = 1000, .resume_grace_ms = 10000};

static void join(ms_coord_t *c, const char *ns, const char *peer, const char *gw, uint64_t session)
{
    coord_join(c, SHARDS, gw, ns, peer, session);
}

/* 10,000 peers on gw-a and gw-b in pairs, 10 on gw-lost (some in the others' namespaces): gw-lost
 * goes silent; its 10 are detached, after looking at those 10 only; none of the others is. A
 * shard given away takes its members out of the lists. */
START_TEST(a_loss_looks_at_its_own_members)
{
    ms_coord_t *c = calloc(1, sizeof(*c));
    ck_assert_ptr_nonnull(c);
    ck_assert_int_eq(ms_coord_core_init(c, &cfg, "coord-1"), MS_OK);
    char ns[32], id[32];
    uint64_t s = 1;
    for (int i = 0; i < 10000; i++) {
        snprintf(ns, sizeof(ns), "pair%d", i / 2);
        snprintf(id, sizeof(id), "p%d", i);
        join(c, ns, id, i % 2 ? "gw-a" : "gw-b", s++);
    }
    for (int i = 0; i < 10; i++) {
        snprintf(ns, sizeof(ns), "pair%d", i * 7); /* a third peer in a pair's namespace */
        snprintf(id, sizeof(id), "lost%d", i);
        join(c, ns, id, "gw-lost", s++);
    }
    ck_assert_uint_eq(ms_gwm_of(&c->members.by_gw, "gw-lost")->n, 10);
    ck_assert_uint_eq(ms_gwm_of(&c->members.by_gw, "gw-a")->n, 5000);
    uint64_t now = ms_clock_mono_ms() + 5000;
    ms_gw_info_t *g, *tmp;
    MS_GW_FOREACH(c, g, tmp)
    if (strcmp(g->id, "gw-lost"))
        g->last_seen_ms = now; /* the others are heard */
    c->members.next_liveness_ms = 0;
    uint64_t visited = c->members.n_lost_visited;
    ms_member_liveness(c, now);
    ck_assert_uint_eq(c->members.n_lost_visited - visited, 10);
    ck_assert_uint_eq(ms_detq_len(&c->members.detached), 10);
    ms_ns_t *n7 = ms_ns_find(c, "pair7");
    ck_assert_ptr_nonnull(n7);
    ck_assert_uint_ne(ms_ns_member(n7, "lost1")->detached_ms, 0);
    ck_assert_uint_eq(ms_ns_member(n7, "p14")->detached_ms, 0);
    /* Every namespace destroyed (as a shard given away): the lists go with their members. */
    for (uint32_t sh = 0; sh < SHARDS; sh++)
        ms_ns_destroy_shard(c, sh);
    ck_assert_ptr_null(c->members.by_gw.by_gw);
    ms_coord_core_cleanup(c);
    free(c);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("gwmembers");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, lists_match_brute_force);
    tcase_add_test(tc, a_loss_looks_at_its_own_members);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
