/* SPDX-License-Identifier: Apache-2.0 */
/* The namespace registry: walks that destroy or create namespaces, shared policies, and what a
 * namespace of two plain peers allocates (no module state, no rare member fields). */
#include <check.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coordjoin.h"
#include "internal.h"

#define SHARDS 64

static ms_coord_config_t cfg = {.prefix = "meshsig", .shards = SHARDS};

/* A coordinator without loop, NATS or HTTP: what ms_coord_core_init sets up. */
static ms_coord_t *new_coord(void)
{
    ms_coord_t *c = calloc(1, sizeof(*c));
    ck_assert_ptr_nonnull(c);
    ck_assert_int_eq(ms_coord_core_init(c, &cfg, "coord-1"), MS_OK);
    return c;
}

static void coord_free(ms_coord_t *c)
{
    ms_coord_core_cleanup(c);
    free(c);
}

static ms_ns_t *make(ms_coord_t *c, const char *fmt, int i)
{
    char name[32];
    snprintf(name, sizeof(name), fmt, i);
    ms_ns_t *ns = NULL;
    ck_assert_int_eq(ms_ns_get(c, name, &ns), MS_OK);
    ck_assert_str_eq(ns->name, name);
    return ns;
}

#define N 200

/* Each visit destroys the namespace it stands on and the next one by number (if still there),
 * and creates one: every namespace is visited at most once, never after it was destroyed, and
 * none created during the walk is visited. ASan sees any use of a freed one. */
START_TEST(walk_survives_destroy_and_create)
{
    ms_coord_t *c = new_coord();
    for (int i = 0; i < N; i++)
        make(c, "ns%d", i);
    ck_assert_uint_eq(ms_ns_count(c), N);
    static char seen[N];
    memset(seen, 0, sizeof(seen));
    int visits = 0, created = 0;
    ms_ns_t *ns;
    MS_NS_FOREACH(c, ns, w)
    {
        int i = -1;
        ck_assert_int_eq(sscanf(ns->name, "ns%d", &i), 1); /* never one of "new%d" */
        ck_assert(i >= 0 && i < N && !seen[i]);
        seen[i] = 1;
        visits++;
        char next[32];
        snprintf(next, sizeof(next), "ns%d", i + 1);
        ms_ns_t *other = ms_ns_find(c, next);
        if (other) {
            seen[i + 1] = 1; /* destroyed: must not be visited */
            ms_ns_destroy(c, other);
        }
        ms_ns_destroy(c, ns);
        ck_assert_ptr_null(ms_ns_find(c, next));
        make(c, "new%d", created++);
    }
    ck_assert_int_gt(visits, 0);
    ck_assert_int_le(visits, N);
    for (int i = 0; i < N; i++)
        ck_assert_msg(seen[i], "ns%d neither visited nor destroyed", i);
    ck_assert_uint_eq(ms_ns_count(c), (size_t)created);
    /* A walk that destroys everything, then an empty one. */
    MS_NS_FOREACH(c, ns, w2)
    ms_ns_destroy(c, ns);
    ck_assert_uint_eq(ms_ns_count(c), 0);
    visits = 0;
    MS_NS_FOREACH(c, ns, w3)
    visits++;
    ck_assert_int_eq(visits, 0);
    coord_free(c);
}
END_TEST

/* A walk allocates nothing, so it cannot skip the namespaces for want of memory (it once
 * malloc'd its list, and a walk that got none visited nothing and said so only in a log line:
 * a gateway loss detached nobody, a shard given away kept its namespaces). The room is taken
 * when a namespace is created. mallinfo2 counts nothing under ASan (its own allocator): there
 * the test shows only that every namespace is visited. */
START_TEST(walk_allocates_nothing)
{
    ms_coord_t *c = new_coord();
    for (int i = 0; i < 1000; i++)
        make(c, "ns%d", i);
    size_t before = mallinfo2().uordblks, during = 0;
    int visits = 0;
    ms_ns_t *ns;
    MS_NS_FOREACH(c, ns, w)
    {
        if (!visits)
            during = mallinfo2().uordblks;
        visits++;
    }
    ck_assert_int_eq(visits, 1000);
    ck_assert_msg(during == before, "a walk over 1000 namespaces allocated %zd bytes",
                  (ssize_t)(during - before));
    coord_free(c);
}
END_TEST

/* A walk begun inside another visits what is held when it begins: the namespaces the outer
 * walk created are there, those it destroyed are not; the outer walk visits neither. */
START_TEST(nested_walks)
{
    ms_coord_t *c = new_coord();
    for (int i = 0; i < 100; i++)
        make(c, "ns%d", i);
    int outer = 0;
    ms_ns_t *ns, *in;
    MS_NS_FOREACH(c, ns, w)
    {
        int i = -1;
        ck_assert_int_eq(sscanf(ns->name, "ns%d", &i), 1);
        outer++;
        if (outer == 50) {
            ms_ns_destroy(c, ns); /* ns50-ish is gone, new0..new9 are there */
            for (int k = 0; k < 10; k++)
                make(c, "new%d", k);
            size_t inner = 0, news = 0;
            MS_NS_FOREACH(c, in, w2)
            {
                inner++;
                news += !strncmp(in->name, "new", 3);
            }
            ck_assert_uint_eq(inner, ms_ns_count(c)); /* 99 + 10 */
            ck_assert_uint_eq(inner, 109);
            ck_assert_uint_eq(news, 10);
        }
    }
    ck_assert_int_eq(outer, 100);
    /* The next walk starts afresh: every one held. */
    size_t all = 0;
    MS_NS_FOREACH(c, ns, w3)
    all++;
    ck_assert_uint_eq(all, 109);
    coord_free(c);
}
END_TEST

/* Namespaces that run the same policy point at one copy; a namespace given another policy
 * points elsewhere and the others keep theirs. */
START_TEST(policies_are_shared)
{
    ms_coord_t *c = new_coord();
    ms_ns_t *a = make(c, "a%d", 0), *b = make(c, "b%d", 0), *p = make(c, "peerjs.k%d", 0);
    ck_assert_ptr_eq(a->policy, b->policy);
    ck_assert_ptr_ne(a->policy, p->policy); /* the PeerJS endpoint's namespaces run PeerJS's */
    ck_assert(p->policy->signal_any);
    ms_policy_t tree = *a->policy;
    snprintf(tree.topology, sizeof(tree.topology), "tree");
    ck_assert_int_eq(ms_ns_policy_set(c, "b0", &tree), MS_OK);
    ck_assert_str_eq(b->policy->topology, "tree");
    ck_assert_str_eq(a->policy->topology, "fullmesh");
    ck_assert_ptr_ne(a->policy, b->policy);
    ms_ns_t *d = make(c, "b%d", 1); /* another name: the default, not b0's override */
    ck_assert_ptr_eq(d->policy, a->policy);
    coord_free(c);
}
END_TEST

static void join(ms_coord_t *c, const char *ns, const char *peer, uint64_t session)
{
    coord_join(c, SHARDS, "gw-1", ns, peer, session);
}

/* The bench's native idle case: a pair of plain peers keeps no module state and no rare member
 * fields (issues 16 and 22: memory per idle connection). */
START_TEST(a_pair_allocates_no_extras)
{
    ms_coord_t *c = new_coord();
    join(c, "pair", "p1", 1);
    join(c, "pair", "p2", 2);
    ms_ns_t *ns = ms_ns_find(c, "pair");
    ck_assert_ptr_nonnull(ns);
    ck_assert_uint_eq(ns->members.n, 2);
    ck_assert_ptr_null(ns->mods);
    ck_assert_ptr_null(ns->free_handles);                 /* nobody left: no free-handle heap */
    ck_assert_ptr_eq(ns->by_handle, ns->by_handle_small); /* two handles: inside the record */
    ck_assert_uint_le(malloc_usable_size(ns), 120);       /* one 128-byte chunk */
    ms_member_t *m;
    MS_NS_MEMBERS_FOREACH(ns, i, m)
    {
        ck_assert_ptr_null(m->rare);
        /* the id inside the record: one 112-byte chunk (104 usable) for a short id */
        ck_assert(!strcmp(m->id, "p1") || !strcmp(m->id, "p2"));
        ck_assert_uint_le(malloc_usable_size(m), 104);
    }
    coord_free(c);
}
END_TEST

/* A client position and metadata live in the member's rare record, made when first set. */
START_TEST(position_and_metadata_in_the_rare_record)
{
    ms_member_t *m = ms_member_new("peer-with-metadata");
    ck_assert_ptr_nonnull(m);
    ck_assert_str_eq(m->id, "peer-with-metadata");
    ck_assert_int_eq(ms_member_set_client_pos(m, NULL), MS_OK);
    ck_assert_ptr_null(m->rare); /* nothing to keep: nothing made */
    Meshsig__V1__Position pos = MESHSIG__V1__POSITION__INIT;
    pos.x = 3;
    pos.y = -4;
    ck_assert_int_eq(ms_member_set_client_pos(m, ms_ns_position_dup(&pos)), MS_OK);
    ck_assert_ptr_nonnull(m->rare);
    ck_assert(ms_member_rare(m)->client_pos->x == 3 && ms_member_rare(m)->client_pos->y == -4);
    pos.x = 5;
    ck_assert_int_eq(ms_member_set_client_pos(m, ms_ns_position_dup(&pos)), MS_OK); /* replaced */
    ck_assert(ms_member_rare(m)->client_pos->x == 5);

    Meshsig__V1__Value v = MESHSIG__V1__VALUE__INIT;
    v.kind_case = MESHSIG__V1__VALUE__KIND_STRING_VALUE;
    v.string_value = "blue";
    Meshsig__V1__Struct__FieldsEntry e = MESHSIG__V1__STRUCT__FIELDS_ENTRY__INIT, *ep = &e;
    e.key = "colour";
    e.value = &v;
    Meshsig__V1__Struct md = MESHSIG__V1__STRUCT__INIT;
    md.n_fields = 1;
    md.fields = &ep;
    size_t len = meshsig__v1__struct__get_packed_size(&md);
    ck_assert_int_eq(ms_member_set_metadata(m, &md, len), MS_OK);
    ck_assert_uint_eq(ms_member_rare(m)->metadata_len, len);
    Meshsig__V1__Struct *back = meshsig__v1__struct__unpack(NULL, ms_member_rare(m)->metadata_len,
                                                            ms_member_rare(m)->metadata);
    ck_assert_ptr_nonnull(back);
    ck_assert_uint_eq(back->n_fields, 1);
    ck_assert_str_eq(back->fields[0]->key, "colour");
    ck_assert_str_eq(back->fields[0]->value->string_value, "blue");
    meshsig__v1__struct__free_unpacked(back, NULL);
    ms_member_free(m); /* ASan: the position, the metadata and the record go */
}
END_TEST

/* A freed handle is reused, smallest first, once the free heap exists. */
START_TEST(freed_handles_are_reused)
{
    ms_coord_t *c = new_coord();
    join(c, "reuse", "a", 1);
    join(c, "reuse", "b", 2);
    join(c, "reuse", "c", 3);
    ms_ns_t *ns = ms_ns_find(c, "reuse");
    ck_assert_ptr_nonnull(ns);
    ms_member_t *a = ms_ns_member(ns, "a"), *b = ms_ns_member(ns, "b");
    ck_assert_ptr_nonnull(a);
    ck_assert_ptr_nonnull(b);
    ms_peer_t ha = a->handle, hb = b->handle;
    ck_assert_ptr_ne(ns->by_handle, ns->by_handle_small); /* three: grown out of the record */
    ck_assert_ptr_eq(ms_ns_by_handle(ns, ha), a);
    ck_assert_ptr_eq(ms_ns_by_handle(ns, hb), b);
    ms_member_leave(c, ns, b, "test");
    ms_member_leave(c, ns, a, "test");
    ck_assert_ptr_nonnull(ns->free_handles);
    join(c, "reuse", "d", 4);
    join(c, "reuse", "e", 5);
    ms_member_t *d = ms_ns_member(ns, "d"), *e = ms_ns_member(ns, "e");
    ck_assert_ptr_nonnull(d);
    ck_assert_ptr_nonnull(e);
    ck_assert_uint_eq(d->handle, ha < hb ? ha : hb);
    ck_assert_uint_eq(e->handle, ha < hb ? hb : ha);
    ck_assert_ptr_eq(ms_ns_by_handle(ns, d->handle), d);
    coord_free(c);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("namespace");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, walk_survives_destroy_and_create);
    tcase_add_test(tc, walk_allocates_nothing);
    tcase_add_test(tc, nested_walks);
    tcase_add_test(tc, policies_are_shared);
    tcase_add_test(tc, a_pair_allocates_no_extras);
    tcase_add_test(tc, freed_handles_are_reused);
    tcase_add_test(tc, position_and_metadata_in_the_rare_record);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
