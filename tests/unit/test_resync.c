/* SPDX-License-Identifier: Apache-2.0 */
/* Takeover rebuild from gateway reports: a namespace rebuilt on a fresh coordinator has the same
 * edges (Delaunay) and parent links (tree) as the one it replaces and sends no event for an edge
 * that did not change; a missing edge is the only event; rooms and services come back. A late
 * report of a gateway the takeover did not hear is merged into the live namespace the same way. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coordjoin.h"
#include "internal.h"

#define SHARDS 64

static ms_coord_config_t cfg = {.prefix = "meshsig", .shards = SHARDS, .resync_timeout_ms = 300};

/* A coordinator without loop, NATS or HTTP: what ms_coord_core_init sets up. */
static ms_coord_t *new_coord(const char *id)
{
    ms_coord_t *c = calloc(1, sizeof(*c));
    ck_assert_ptr_nonnull(c);
    ck_assert_int_eq(ms_coord_core_init(c, &cfg, id), MS_OK);
    return c;
}

static void coord_free(ms_coord_t *c)
{
    ms_coord_core_cleanup(c);
    free(c);
}

static void set_policy(ms_coord_t *c, const char *ns, const char *json)
{
    json_t *j = json_loads(json, 0, NULL);
    ms_policy_t p;
    char why[160];
    ck_assert_int_eq(ms_policy_parse(j, &p, why, sizeof(why)), MS_OK);
    json_decref(j);
    ck_assert_int_eq(ms_cluster_policy_set(c, ns, &p, 0), MS_OK);
}

static void join(ms_coord_t *c, const char *ns, const char *peer, uint64_t session)
{
    coord_join(c, SHARDS, session % 2 ? "gw-1" : "gw-2", ns, peer, session);
}

/* Edges as "a|b|kind" strings, sorted, for comparison across coordinators. */
typedef struct {
    ms_ns_t *ns;
    char **v;
    size_t n;
} edge_list_t;

static void collect(ms_peer_t a, ms_peer_t b, uint8_t kind, void *ud)
{
    edge_list_t *l = ud;
    char buf[300];
    const char *x = l->ns->by_handle[a]->id, *y = l->ns->by_handle[b]->id;
    if (kind != MS_EDGE_TREE && strcmp(x, y) > 0) { /* handles differ between coordinators */
        const char *t = x;
        x = y;
        y = t;
    }
    snprintf(buf, sizeof(buf), "%s|%s|%u", x, y, kind);
    l->v = realloc(l->v, (l->n + 1) * sizeof(*l->v));
    l->v[l->n++] = strdup(buf);
}

static int cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static edge_list_t edges_of(ms_ns_t *ns)
{
    edge_list_t l = {.ns = ns};
    ns->engine->ops->edges(ns->engine, collect, &l);
    qsort(l.v, l.n, sizeof(*l.v), cmp);
    return l;
}

static void edges_free(edge_list_t *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->v[i]);
    free(l->v);
}

/* What the gateways would report: per member its neighbours and (tree) parent.
 * skip_a/skip_b: an edge the clients were never told about. */
static Meshsig__Bus__ResyncReport *report_of(ms_ns_t *ns, const char *gw, const char *skip_a,
                                             const char *skip_b)
{
    Meshsig__Bus__ResyncReport *rr = calloc(1, sizeof(*rr));
    meshsig__bus__resync_report__init(rr);
    rr->gateway_id = strdup(gw);
    rr->shard = ns->shard;
    rr->last = 1;
    rr->sessions = calloc(ns->members.n, sizeof(*rr->sessions));
    ms_member_t *m;
    MS_NS_MEMBERS_FOREACH(ns, i, m)
    {
        if (strcmp(m->gateway, gw))
            continue;
        Meshsig__Bus__SessionReport *sr = calloc(1, sizeof(*sr));
        meshsig__bus__session_report__init(sr);
        sr->session = m->session;
        sr->namespace_ = strdup(ns->name);
        sr->peer_id = strdup(m->id);
        ms_peer_t nb[64];
        size_t n = ns->engine->ops->neighbours(ns->engine, m->handle, nb, 64);
        sr->neighbours = calloc(n + 1, sizeof(char *));
        for (size_t i = 0; i < n && i < 64; i++) {
            const char *o = ns->by_handle[nb[i]]->id;
            if (skip_a && ((!strcmp(m->id, skip_a) && !strcmp(o, skip_b)) ||
                           (!strcmp(m->id, skip_b) && !strcmp(o, skip_a))))
                continue;
            sr->neighbours[sr->n_neighbours++] = strdup(o);
        }
        sr->parent = strdup("");
        /* Tree: the parent is the neighbour whose tree edge points at m. */
        for (size_t i = 0; i < n && i < 64; i++) {
            const char *o = ns->by_handle[nb[i]]->id;
            edge_list_t l = edges_of(ns);
            char want[300];
            snprintf(want, sizeof(want), "%s|%s|%u", o, m->id, MS_EDGE_TREE);
            for (size_t k = 0; k < l.n; k++)
                if (!strcmp(l.v[k], want)) {
                    free(sr->parent);
                    sr->parent = strdup(o);
                }
            edges_free(&l);
        }
        sr->rooms = calloc(1, sizeof(char *));
        sr->rooms[sr->n_rooms++] = strdup("lobby");
        rr->sessions[rr->n_sessions++] = sr;
    }
    return rr;
}

static void check_rebuild(const char *ns_name, const char *policy, int n_peers)
{
    ms_coord_t *old = new_coord("old"), *neu = new_coord("new");
    set_policy(old, ns_name, policy);
    set_policy(neu, ns_name, policy);
    for (int i = 0; i < n_peers; i++) {
        char id[16];
        snprintf(id, sizeof(id), "p%02d", i);
        join(old, ns_name, id, (uint64_t)i + 1);
    }
    ms_ns_t *ons = ms_ns_find(old, ns_name);
    ck_assert_ptr_nonnull(ons);
    ck_assert_uint_eq(ons->members.n, (unsigned)n_peers);
    uint32_t shard = ons->shard;

    /* 1. Everything reported: same edges, not a single event. */
    Meshsig__Bus__ResyncReport *rr[2] = {report_of(ons, "gw-1", NULL, NULL),
                                         report_of(ons, "gw-2", NULL, NULL)};
    long ev = ms_resync_rebuild(neu, shard, rr, 2);
    ck_assert_int_eq(ev, 0);
    ms_ns_t *nns = ms_ns_find(neu, ns_name);
    ck_assert_ptr_nonnull(nns);
    ck_assert_uint_eq(nns->members.n, (unsigned)n_peers);
    edge_list_t a = edges_of(ons), b = edges_of(nns);
    ck_assert_uint_eq(a.n, b.n);
    for (size_t i = 0; i < a.n; i++)
        ck_assert_str_eq(a.v[i], b.v[i]);
    /* Rooms came back, silently. */
    ck_assert_uint_eq(ms_room_size(nns, "lobby"), (unsigned)n_peers);
    ms_member_t *p0 = ms_ns_member(nns, "p00");
    ck_assert_ptr_nonnull(p0);
    ck_assert_str_eq(p0->gateway, "gw-1");
    ck_assert_uint_eq(p0->session, 1);
    meshsig__bus__resync_report__free_unpacked(rr[0], NULL);
    meshsig__bus__resync_report__free_unpacked(rr[1], NULL);

    /* 2. One edge the clients never heard of: exactly one connect. */
    char ea[150], eb[150];
    unsigned kind;
    ck_assert(a.n > 0);
    ck_assert_int_eq(sscanf(a.v[0], "%149[^|]|%149[^|]|%u", ea, eb, &kind), 3);
    ms_ns_destroy(neu, nns);
    Meshsig__Bus__ResyncReport *rr2[2] = {report_of(ons, "gw-1", ea, eb),
                                          report_of(ons, "gw-2", ea, eb)};
    ev = ms_resync_rebuild(neu, shard, rr2, 2);
    ck_assert_msg(ev == 1 || kind == MS_EDGE_TREE, "%ld events for one missing edge", ev);
    meshsig__bus__resync_report__free_unpacked(rr2[0], NULL);
    meshsig__bus__resync_report__free_unpacked(rr2[1], NULL);
    edges_free(&a);
    edges_free(&b);
    coord_free(old);
    coord_free(neu);
}

START_TEST(delaunay_rebuilt_without_churn)
{
    check_rebuild("dt", "{\"topology\":\"delaunay\",\"positioning\":\"random\"}", 24);
}
END_TEST

START_TEST(tree_rebuilt_with_same_parents)
{
    check_rebuild("tr", "{\"topology\":\"tree\",\"k\":2}", 15);
}
END_TEST

START_TEST(fullmesh_rebuilt)
{
    check_rebuild("fm", "{\"topology\":\"fullmesh\"}", 6);
}
END_TEST

/* Edges of b not in a (both sorted). */
static size_t count_missing(const edge_list_t *a, const edge_list_t *b)
{
    size_t n = 0;
    for (size_t i = 0; i < b->n; i++) {
        int found = 0;
        for (size_t k = 0; k < a->n && !found; k++)
            found = !strcmp(a->v[k], b->v[i]);
        n += !found;
    }
    return n;
}

/* A takeover that heard only gw-2 (gw-1 was silent), then gw-1's late report merged: the same
 * namespace as before the takeover. The only events are the undoing of the edges the partial
 * rebuild added among gw-2's peers (their neighbours on gw-1 were missing); no edge that both
 * ends still hold is announced again. */
static void check_merge(const char *ns_name, const char *policy, int n_peers, int exact)
{
    ms_coord_t *old = new_coord("old"), *neu = new_coord("new");
    set_policy(old, ns_name, policy);
    set_policy(neu, ns_name, policy);
    for (int i = 0; i < n_peers; i++) {
        char id[16];
        snprintf(id, sizeof(id), "p%02d", i);
        join(old, ns_name, id, (uint64_t)i + 1);
    }
    ms_ns_t *ons = ms_ns_find(old, ns_name);
    uint32_t shard = ons->shard;
    Meshsig__Bus__ResyncReport *gw1 = report_of(ons, "gw-1", NULL, NULL);
    Meshsig__Bus__ResyncReport *gw2 = report_of(ons, "gw-2", NULL, NULL);
    ck_assert_int_ge(ms_resync_rebuild(neu, shard, &gw2, 1), 0);
    ms_ns_t *nns = ms_ns_find(neu, ns_name);
    ck_assert_ptr_nonnull(nns);
    ck_assert_uint_eq(nns->members.n, (unsigned)(n_peers / 2));
    edge_list_t full = edges_of(ons), partial = edges_of(nns);

    long ev = ms_merge_report(neu, shard, gw1);
    ck_assert_int_ge(ev, 0);
    ck_assert_ptr_eq(ms_ns_find(neu, ns_name), nns);
    ck_assert_uint_eq(nns->members.n, (unsigned)n_peers);
    ms_member_t *p0 = ms_ns_member(nns, "p00");
    ck_assert_ptr_nonnull(p0);
    ck_assert_str_eq(p0->gateway, "gw-1");
    ck_assert_uint_eq(p0->session, 1);
    ck_assert_uint_eq(ms_room_size(nns, "lobby"), (unsigned)n_peers);
    edge_list_t merged = edges_of(nns);
    fprintf(stderr,
            "%s: merge of %d peers sent %ld events; the partial rebuild had %zu extra edges\n",
            policy, n_peers - n_peers / 2, ev, count_missing(&full, &partial));
    if (exact) {
        ck_assert_uint_eq(merged.n, full.n);
        for (size_t i = 0; i < full.n; i++)
            ck_assert_str_eq(merged.v[i], full.v[i]);
        /* Dropped: what the partial rebuild added. Nothing else. */
        ck_assert_int_eq(ev, (long)count_missing(&full, &partial));
    }
    ms_member_t *x;
    MS_NS_MEMBERS_FOREACH(nns, i, x)
    ck_assert_msg(!ms_member_rare(x)->n_dangling, "%s still holds %s", x->id,
                  ms_member_rare(x)->dangling[0]);

    /* The same report again (a retried ask): nothing changes. */
    ck_assert_int_eq(ms_merge_report(neu, shard, gw1), 0);
    edge_list_t again = edges_of(nns);
    ck_assert_uint_eq(again.n, merged.n);

    /* A stale session of a peer that lives on elsewhere is not merged over it. */
    gw1->sessions[0]->session = 999;
    char *stale_id = gw1->sessions[0]->peer_id;
    ck_assert_int_eq(ms_merge_report(neu, shard, gw1), 0);
    ms_member_t *m = ms_ns_member(nns, stale_id);
    ck_assert_ptr_nonnull(m);
    ck_assert_uint_ne(m->session, 999);

    edges_free(&full);
    edges_free(&partial);
    edges_free(&merged);
    edges_free(&again);
    meshsig__bus__resync_report__free_unpacked(gw1, NULL);
    meshsig__bus__resync_report__free_unpacked(gw2, NULL);
    coord_free(old);
    coord_free(neu);
}

START_TEST(delaunay_merged_after_silent_takeover)
{
    check_merge("dm", "{\"topology\":\"delaunay\",\"positioning\":\"random\"}", 24, 1);
}
END_TEST

START_TEST(fullmesh_merged_without_events)
{
    check_merge("fmm", "{\"topology\":\"fullmesh\"}", 6, 1);
}
END_TEST

START_TEST(tree_merged)
{
    check_merge("trm", "{\"topology\":\"tree\",\"k\":2}", 15, 0);
}
END_TEST

/* Every peer of a namespace was on the silent gateway: the merge rebuilds it from the report. */
START_TEST(namespace_only_on_silent_gateway)
{
    ms_coord_t *old = new_coord("old"), *neu = new_coord("new");
    join(old, "solo", "a", 1);
    join(old, "solo", "b", 3);
    ms_ns_t *ons = ms_ns_find(old, "solo");
    Meshsig__Bus__ResyncReport *rr = report_of(ons, "gw-1", NULL, NULL);
    ck_assert_int_eq(ms_merge_report(neu, ons->shard, rr), 0);
    ms_ns_t *nns = ms_ns_find(neu, "solo");
    ck_assert_ptr_nonnull(nns);
    ck_assert_uint_eq(nns->members.n, 2);
    edge_list_t a = edges_of(ons), b = edges_of(nns);
    ck_assert_uint_eq(a.n, b.n);
    edges_free(&a);
    edges_free(&b);
    meshsig__bus__resync_report__free_unpacked(rr, NULL);
    coord_free(old);
    coord_free(neu);
}
END_TEST

START_TEST(other_shards_ignored)
{
    ms_coord_t *old = new_coord("old"), *neu = new_coord("new");
    join(old, "x1", "a", 1);
    ms_ns_t *ns = ms_ns_find(old, "x1");
    Meshsig__Bus__ResyncReport *rr = report_of(ns, "gw-1", NULL, NULL);
    ck_assert_int_eq(ms_resync_rebuild(neu, (ns->shard + 1) % SHARDS, &rr, 1), 0);
    ck_assert_ptr_null(ms_ns_find(neu, "x1"));
    meshsig__bus__resync_report__free_unpacked(rr, NULL);
    coord_free(old);
    coord_free(neu);
}
END_TEST

/* A session report as a gateway of this release sends it: no neighbours, its ad-hoc pairs. */
static Meshsig__Bus__SessionReport *pj_session(const char *ns, const char *peer, uint64_t session,
                                               const char *const *pairs)
{
    Meshsig__Bus__SessionReport *sr = calloc(1, sizeof(*sr));
    meshsig__bus__session_report__init(sr);
    sr->session = session;
    sr->namespace_ = strdup(ns);
    sr->peer_id = strdup(peer);
    sr->parent = strdup("");
    size_t n = 0;
    while (pairs && pairs[n])
        n++;
    sr->pairs = calloc(n + 1, sizeof(char *));
    for (size_t i = 0; i < n; i++)
        sr->pairs[sr->n_pairs++] = strdup(pairs[i]);
    return sr;
}

static Meshsig__Bus__ResyncReport *pj_report(const char *gw, uint32_t shard, size_t n,
                                             Meshsig__Bus__SessionReport **srs)
{
    Meshsig__Bus__ResyncReport *rr = calloc(1, sizeof(*rr));
    meshsig__bus__resync_report__init(rr);
    rr->gateway_id = strdup(gw);
    rr->shard = shard;
    rr->last = 1;
    rr->sessions = calloc(n, sizeof(*rr->sessions));
    for (size_t i = 0; i < n; i++)
        rr->sessions[rr->n_sessions++] = srs[i];
    return rr;
}

static size_t pairs_of_peer(ms_ns_t *ns, const char *id)
{
    ms_member_t *m = ms_ns_member(ns, id);
    ck_assert_ptr_nonnull(m);
    return m->n_pairs;
}

static int paired(ms_ns_t *ns, const char *a, const char *b)
{
    ms_member_t *x = ms_ns_member(ns, a), *y = ms_ns_member(ns, b);
    ck_assert(x && y);
    ck_assert_int_eq(ms_pairs_linked(x, y), ms_pairs_linked(y, x)); /* both ends agree */
    return ms_pairs_linked(x, y);
}

/* gw-1: a (paired with b, c and gone, who left during the takeover), e (paired with b);
 * gw-2: b (paired with a only: e's pair is one-sided), c (reports none: one-sided). */
static void pj_reports(uint32_t shard, Meshsig__Bus__ResyncReport **gw1,
                       Meshsig__Bus__ResyncReport **gw2)
{
    const char *ns = "peerjs.ut";
    Meshsig__Bus__SessionReport *s1[] = {
        pj_session(ns, "a", 1, (const char *const[]){"b", "c", "gone", NULL}),
        pj_session(ns, "e", 3, (const char *const[]){"b", NULL})};
    Meshsig__Bus__SessionReport *s2[] = {pj_session(ns, "b", 2, (const char *const[]){"a", NULL}),
                                         pj_session(ns, "c", 4, NULL)};
    *gw1 = pj_report("gw-1", shard, 2, s1);
    *gw2 = pj_report("gw-2", shard, 2, s2);
}

static void expect_pj_pairs(ms_coord_t *c)
{
    ms_ns_t *ns = ms_ns_find(c, "peerjs.ut");
    ck_assert_ptr_nonnull(ns);
    ck_assert_uint_eq(ns->members.n, 4);
    ck_assert(paired(ns, "a", "b"));
    ck_assert(paired(ns, "a", "c"));
    ck_assert(paired(ns, "e", "b"));
    ck_assert(!paired(ns, "b", "c"));
    ck_assert(!paired(ns, "a", "e"));
    ck_assert_uint_eq(pairs_of_peer(ns, "a"), 2); /* not the gone one */
    ck_assert_uint_eq(ms_pairs_count(c), 3);
}

/* A new owner learns the ad-hoc pairs (signals:any) from both gateways' reports: a pair either
 * end reports, whose other end is here; not a gone partner. */
START_TEST(pairs_rebuilt_from_reports)
{
    ms_coord_t *c = new_coord("new");
    uint32_t shard = ms_bus_shard_of("peerjs.ut", SHARDS);
    Meshsig__Bus__ResyncReport *gw1, *gw2;
    pj_reports(shard, &gw1, &gw2);
    Meshsig__Bus__ResyncReport *rr[2] = {gw1, gw2};
    ck_assert_int_ge(ms_resync_rebuild(c, shard, rr, 2), 0);
    expect_pj_pairs(c);
    /* A leave ends the pair at both ends. */
    ms_ns_t *ns = ms_ns_find(c, "peerjs.ut");
    ms_member_leave(c, ns, ms_ns_member(ns, "b"), "closed");
    ns = ms_ns_find(c, "peerjs.ut");
    ck_assert_uint_eq(pairs_of_peer(ns, "a"), 1);
    ck_assert_uint_eq(pairs_of_peer(ns, "e"), 0);
    ck_assert_uint_eq(ms_pairs_count(c), 1);
    meshsig__bus__resync_report__free_unpacked(gw1, NULL);
    meshsig__bus__resync_report__free_unpacked(gw2, NULL);
    coord_free(c);
}
END_TEST

/* The same when gw-1 was silent during the takeover and its report is merged late; merging it
 * again changes nothing. */
START_TEST(pairs_merged_from_a_late_report)
{
    ms_coord_t *c = new_coord("new");
    uint32_t shard = ms_bus_shard_of("peerjs.ut", SHARDS);
    Meshsig__Bus__ResyncReport *gw1, *gw2;
    pj_reports(shard, &gw1, &gw2);
    ck_assert_int_ge(ms_resync_rebuild(c, shard, &gw2, 1), 0);
    ck_assert_uint_eq(ms_pairs_count(c), 0); /* b's partner is not here yet */
    ck_assert_int_ge(ms_merge_report(c, shard, gw1), 0);
    expect_pj_pairs(c);
    ck_assert_int_eq(ms_merge_report(c, shard, gw1), 0);
    expect_pj_pairs(c);
    meshsig__bus__resync_report__free_unpacked(gw1, NULL);
    meshsig__bus__resync_report__free_unpacked(gw2, NULL);
    coord_free(c);
}
END_TEST

/* A report past the per-peer bound restores MS_PAIRS_MAX pairs; a namespace whose policy does
 * not let any peer signal any other restores none. */
START_TEST(pairs_bounded_and_only_for_signals_any)
{
    ms_coord_t *c = new_coord("new");
    uint32_t shard = ms_bus_shard_of("peerjs.ut", SHARDS);
    enum { N = MS_PAIRS_MAX + 8 };
    char ids[N][8];
    const char *names[N + 1];
    Meshsig__Bus__SessionReport *others[N + 1];
    for (int i = 0; i < N; i++) {
        snprintf(ids[i], sizeof(ids[i]), "o%02d", i);
        names[i] = ids[i];
        others[i] =
            pj_session("peerjs.ut", ids[i], 10 + (uint64_t)i, (const char *const[]){"hub", NULL});
    }
    names[N] = NULL;
    Meshsig__Bus__SessionReport *hub = pj_session("peerjs.ut", "hub", 1, names);
    Meshsig__Bus__ResyncReport *gw1 = pj_report("gw-1", shard, 1, &hub);
    Meshsig__Bus__ResyncReport *gw2 = pj_report("gw-2", shard, N, others);
    Meshsig__Bus__ResyncReport *rr[2] = {gw1, gw2};
    ck_assert_int_ge(ms_resync_rebuild(c, shard, rr, 2), 0);
    ms_ns_t *ns = ms_ns_find(c, "peerjs.ut");
    ck_assert_uint_eq(pairs_of_peer(ns, "hub"), MS_PAIRS_MAX);
    ck_assert_uint_eq(ms_pairs_count(c), MS_PAIRS_MAX);
    meshsig__bus__resync_report__free_unpacked(gw1, NULL);
    meshsig__bus__resync_report__free_unpacked(gw2, NULL);

    uint32_t fshard = ms_bus_shard_of("fm-pj", SHARDS);
    set_policy(c, "fm-pj", "{\"topology\":\"fullmesh\"}");
    Meshsig__Bus__SessionReport *x = pj_session("fm-pj", "x", 1, (const char *const[]){"y", NULL});
    Meshsig__Bus__SessionReport *y = pj_session("fm-pj", "y", 2, (const char *const[]){"x", NULL});
    Meshsig__Bus__ResyncReport *f1 = pj_report("gw-1", fshard, 1, &x);
    Meshsig__Bus__ResyncReport *f2 = pj_report("gw-2", fshard, 1, &y);
    Meshsig__Bus__ResyncReport *fr[2] = {f1, f2};
    ck_assert_int_ge(ms_resync_rebuild(c, fshard, fr, 2), 0);
    ck_assert(!paired(ms_ns_find(c, "fm-pj"), "x", "y"));
    meshsig__bus__resync_report__free_unpacked(f1, NULL);
    meshsig__bus__resync_report__free_unpacked(f2, NULL);
    coord_free(c);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("resync");
    TCase *tc = tcase_create("rebuild");
    tcase_add_test(tc, delaunay_rebuilt_without_churn);
    tcase_add_test(tc, tree_rebuilt_with_same_parents);
    tcase_add_test(tc, fullmesh_rebuilt);
    tcase_add_test(tc, other_shards_ignored);
    tcase_add_test(tc, delaunay_merged_after_silent_takeover);
    tcase_add_test(tc, fullmesh_merged_without_events);
    tcase_add_test(tc, tree_merged);
    tcase_add_test(tc, namespace_only_on_silent_gateway);
    tcase_add_test(tc, pairs_rebuilt_from_reports);
    tcase_add_test(tc, pairs_merged_from_a_late_report);
    tcase_add_test(tc, pairs_bounded_and_only_for_signals_any);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
