/* SPDX-License-Identifier: Apache-2.0 */
/* pending.c's index: every wait in by_key and in the lists of its two peers (who waits, who
 * must answer), against a brute-force model under random adds, answers, leaves and expiry;
 * the per-peer cap. A leave counts exactly the waits on the peer that leaves (n_left). */
#include <check.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "internal.h"

static ms_coord_config_t cfg = {.prefix = "meshsig", .shards = 4};

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

static ms_ns_t *ns_new(ms_coord_t *c, const char *name)
{
    ms_ns_t *ns = NULL;
    ck_assert_int_eq(ms_ns_get(c, name, &ns), MS_OK);
    return ns;
}

/* What member_gone reads of a member: its id. */
static void leave(ms_coord_t *c, ms_ns_t *ns, const char *id)
{
    ms_member_t *m = calloc(1, sizeof(*m) + strlen(id) + 1);
    ck_assert_ptr_nonnull(m);
    strcpy(m->id, id);
    ms_pending_hooks.member_gone(c, ns, m);
    free(m);
}

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static unsigned rnd(unsigned n)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (unsigned)(rng % n);
}

#define PEERS 6
#define OPS 20000
#define MAXW 4096

typedef struct {
    char key[64];
    int from, to, kind;
    int tk; /* its timeout: tk x 10 s */
    int alive;
} model_t;

static model_t model[MAXW];
static int n_model;

static const char *peer(int i)
{
    static char names[PEERS][8];
    snprintf(names[i], sizeof(names[i]), "p%d", i);
    return names[i];
}

static int alive_count(void)
{
    int n = 0;
    for (int i = 0; i < n_model; i++)
        n += model[i].alive;
    return n;
}

/* The deadlines: a heap of n waits, each knowing its place. */
static void check_heap_of(const ms_coord_t *c, int n)
{
    const ms_pending_clock_t *k = &c->pending;
    ck_assert_uint_eq(k->n_due, (unsigned)n);
    ck_assert(k->n_due <= k->cap_due);
    ck_assert(k->cap_due <= 1024 || k->n_due >= k->cap_due / 4); /* it shrinks */
    /* One assertion for the lot: Check writes to a pipe for each. */
    uint32_t bad = UINT32_MAX;
    for (uint32_t i = 0; i < k->n_due && bad == UINT32_MAX; i++)
        if (k->due[i].p->due != i || (i && k->due[(i - 1) / 2].key > k->due[i].key))
            bad = i;
    ck_assert_msg(bad == UINT32_MAX, "deadline %u out of place", bad);
}

static void check_heap(const ms_coord_t *c)
{
    check_heap_of(c, alive_count());
}

/* Everything the index holds is what the model holds, in the order it was made. */
static void check_index(const ms_coord_t *c, ms_ns_t *ns)
{
    check_heap(c);
    ck_assert_uint_eq(ms_pending_count(ns), (size_t)alive_count());
    for (int i = 0; i < n_model; i++) {
        if (!model[i].alive)
            continue;
        ms_pending_t *p = ms_pending_find(ns, model[i].key);
        ck_assert_ptr_nonnull(p);
        ck_assert_str_eq(p->from->id, peer(model[i].from));
        ck_assert_str_eq(p->to->id, peer(model[i].to));
        ck_assert_int_eq(p->kind, model[i].kind);
    }
    for (int x = 0; x < PEERS; x++) {
        const ms_pending_party_t *pp = ms_pending_party(ns, peer(x));
        int n[2] = {0, 0};
        for (int i = 0; i < n_model; i++) {
            n[0] += model[i].alive && model[i].from == x;
            n[1] += model[i].alive && model[i].to == x;
        }
        if (!n[0] && !n[1]) {
            ck_assert_ptr_null(pp);
            continue;
        }
        ck_assert_ptr_nonnull(pp);
        ck_assert_uint_eq(pp->n_from, (unsigned)n[0]);
        for (int s = 0; s < 2; s++) {
            const ms_pending_t *p = pp->head[s], *last = NULL;
            for (int i = 0; i < n_model; i++) {
                if (!model[i].alive || (s == MS_PENDING_FROM ? model[i].from : model[i].to) != x)
                    continue;
                ck_assert_ptr_nonnull(p);
                ck_assert_str_eq(p->key, model[i].key);
                last = p;
                p = p->link[s].next;
            }
            ck_assert_ptr_null(p);
            if (last)
                ck_assert_ptr_eq(pp->head[s]->link[s].prev, last); /* the tail */
        }
    }
}

START_TEST(index_matches_model)
{
    ms_coord_t *c = new_coord();
    ms_ns_t *ns = ns_new(c, "t");
    n_model = 0;
    unsigned next_ack = 0, n_ticks = 0;
    /* Timeouts are whole 10 s and ticks fall 5 s past one: what expires does not depend on
     * when within the first 4 s a wait was made. */
    uint64_t start = ms_clock_mono_ms();
    for (int op = 0; op < OPS; op++) {
        unsigned r = rnd(100);
        if (r < 55 && n_model < MAXW) {
            model_t *e = &model[n_model];
            e->from = (int)rnd(PEERS);
            e->to = (int)rnd(PEERS);
            e->kind = rnd(4) ? MS_PENDING_ACK : MS_PENDING_CALL;
            e->tk = 1 + (int)rnd(12);
            uint32_t timeout = (uint32_t)e->tk * 10000;
            ms_pending_t *p;
            if (e->kind == MS_PENDING_ACK) {
                char ack[16];
                snprintf(ack, sizeof(ack), "k%u", next_ack++);
                snprintf(e->key, sizeof(e->key), "%s\x1f%s", peer(e->from), ack);
                p = ms_pending_add_ack(c, ns, e->key, peer(e->from), peer(e->to), ack, timeout);
            } else {
                p = ms_pending_add_call(c, ns, peer(e->from), peer(e->to), "c", timeout);
            }
            ck_assert_ptr_nonnull(p);
            if (e->kind == MS_PENDING_CALL)
                snprintf(e->key, sizeof(e->key), "%s", p->key);
            e->alive = 1;
            n_model++;
        } else if (r < 58) {
            if (ms_clock_mono_ms() - start >= 4000)
                continue;
            int k = (int)rnd(8);
            uint64_t want = c->pending.n_timeouts;
            for (int i = 0; i < n_model; i++)
                if (model[i].alive && model[i].tk <= k) {
                    model[i].alive = 0;
                    want++;
                }
            ms_pending_tick(c, start + (uint64_t)k * 10000 + 5000);
            ck_assert_uint_eq(c->pending.n_timeouts, want);
            n_ticks++;
        } else if (r < 85) {
            int i = (int)rnd((unsigned)(n_model ? n_model : 1));
            if (i < n_model && model[i].alive) {
                ms_pending_t *p = ms_pending_find(ns, model[i].key);
                ck_assert_ptr_nonnull(p);
                ms_pending_done(ns, p);
                model[i].alive = 0;
            }
        } else {
            int x = (int)rnd(PEERS);
            uint64_t want = c->pending.n_left;
            for (int i = 0; i < n_model; i++) {
                if (!model[i].alive || (model[i].from != x && model[i].to != x))
                    continue;
                want += model[i].to == x && model[i].from != x;
                model[i].alive = 0;
            }
            leave(c, ns, peer(x));
            ck_assert_uint_eq(c->pending.n_left, want);
        }
        /* Compact the model now and then: the dead go, the order stays. */
        if (n_model == MAXW) {
            int k = 0;
            for (int i = 0; i < n_model; i++)
                if (model[i].alive)
                    model[k++] = model[i];
            n_model = k;
        }
        if (op % 16 == 0)
            check_index(c, ns);
    }
    check_index(c, ns);
    ck_assert_uint_gt(n_ticks, 20);
    /* Expiry takes the rest, and every party with them. */
    uint64_t before = c->pending.n_timeouts;
    int left = alive_count();
    ms_pending_tick(c, ms_clock_mono_ms() + 200000);
    ck_assert_uint_eq(c->pending.n_timeouts - before, (uint64_t)left);
    for (int i = 0; i < n_model; i++)
        model[i].alive = 0;
    check_index(c, ns);
    coord_free(c);
}
END_TEST

/* MS_PENDING_MAX_PER_PEER waits per waiting peer, whoever answers; an answer or the target's
 * leave makes room; another waiting peer is not held back. */
START_TEST(cap_per_waiting_peer)
{
    ms_coord_t *c = new_coord();
    ms_ns_t *ns = ns_new(c, "cap");
    char key[32], ack[16];
    for (unsigned i = 0; i < MS_PENDING_MAX_PER_PEER; i++) {
        snprintf(ack, sizeof(ack), "k%u", i);
        snprintf(key, sizeof(key), "w\x1f%s", ack);
        ck_assert_ptr_nonnull(ms_pending_add_ack(c, ns, key, "w", i % 2 ? "a" : "b", ack, 120000));
    }
    ck_assert_ptr_null(ms_pending_add_ack(c, ns, "w\x1fmore", "w", "a", "more", 120000));
    ck_assert_ptr_null(ms_pending_add_call(c, ns, "w", "a", "call", 120000));
    ck_assert_ptr_nonnull(ms_pending_add_ack(c, ns, "o\x1fk0", "o", "a", "k0", 120000));
    ms_pending_done(ns, ms_pending_find(ns, "w\x1fk0"));
    ck_assert_ptr_nonnull(ms_pending_add_ack(c, ns, "w\x1fmore", "w", "a", "more", 120000));
    ck_assert_ptr_null(ms_pending_add_ack(c, ns, "w\x1fmore2", "w", "a", "more2", 120000));
    /* a leaves: its 512 + 1 from w and 1 from o fail, w's waits on b stay. */
    uint64_t left = c->pending.n_left;
    leave(c, ns, "a");
    ck_assert_uint_eq(c->pending.n_left - left, 514);
    ck_assert_ptr_null(ms_pending_party(ns, "a"));
    ck_assert_ptr_null(ms_pending_party(ns, "o"));
    ck_assert_uint_eq(ms_pending_party(ns, "w")->n_from, 511);
    ck_assert_uint_eq(ms_pending_count(ns), 511);
    /* w leaves: its waits go without a word. */
    leave(c, ns, "w");
    ck_assert_uint_eq(c->pending.n_left - left, 514);
    ck_assert_uint_eq(ms_pending_count(ns), 0);
    ck_assert_ptr_null(ms_pending_party(ns, "b"));
    coord_free(c);
}
END_TEST

/* The deadlines' array grows with the waits and gives memory back as they go. */
START_TEST(heap_grows_and_shrinks)
{
    ms_coord_t *c = new_coord();
    ms_ns_t *ns = ns_new(c, "heap");
    enum { N = 10000 };
    char from[16], key[48];
    for (int i = 0; i < N; i++) {
        snprintf(from, sizeof(from), "p%d", i % 100);
        snprintf(key, sizeof(key), "%s\x1fk%d", from, i);
        ck_assert_ptr_nonnull(ms_pending_add_ack(c, ns, key, from, "t", "k", 120000));
    }
    ck_assert_uint_ge(c->pending.cap_due, N);
    for (int i = 0; i < N; i++) {
        snprintf(key, sizeof(key), "p%d\x1fk%d", i % 100, i);
        ms_pending_done(ns, ms_pending_find(ns, key));
        if (i % 97 == 0)
            check_heap_of(c, N - 1 - i);
    }
    ck_assert_uint_eq(c->pending.cap_due, 1024);
    coord_free(c);
}
END_TEST

/* A peer waiting on itself: its leave fails nothing, and nothing of it stays. */
START_TEST(self_wait)
{
    ms_coord_t *c = new_coord();
    ms_ns_t *ns = ns_new(c, "self");
    ck_assert_ptr_nonnull(ms_pending_add_ack(c, ns, "s\x1fk", "s", "s", "k", 1000));
    ck_assert_ptr_nonnull(ms_pending_add_ack(c, ns, "t\x1fk", "t", "s", "k", 1000));
    leave(c, ns, "s");
    ck_assert_uint_eq(c->pending.n_left, 1);
    ck_assert_uint_eq(ms_pending_count(ns), 0);
    ck_assert_ptr_null(ms_pending_party(ns, "s"));
    ck_assert_ptr_null(ms_pending_party(ns, "t"));
    coord_free(c);
}
END_TEST

/* What a wait costs on the heap with ids of a usual length (20-character peer ids, a 6-character
 * ackId), 10,000 waits among 100 peers, each waiting on the next: printed, and bounded. */
START_TEST(bytes_per_wait)
{
    ms_coord_t *c = new_coord();
    ms_ns_t *ns = ns_new(c, "mem");
    enum { PEERS_M = 100, WAITS = 10000 };
    char from[32], to[32], ack[16], key[64];
    ck_assert_ptr_nonnull(ms_pending_add_ack(c, ns, "x\x1fk", "x", "y", "k", 120000));
    struct mallinfo2 a = mallinfo2();
    for (int i = 0; i < WAITS; i++) {
        snprintf(from, sizeof(from), "peer-%015d", i % PEERS_M);
        snprintf(to, sizeof(to), "peer-%015d", (i + 1) % PEERS_M);
        snprintf(ack, sizeof(ack), "k%05d", i);
        snprintf(key, sizeof(key), "%s\x1f%s", from, ack);
        ck_assert_ptr_nonnull(ms_pending_add_ack(c, ns, key, from, to, ack, 120000));
    }
    struct mallinfo2 b = mallinfo2();
    double per = (double)(b.uordblks + b.hblkhd - a.uordblks - a.hblkhd) / WAITS; /* + mmap */
    if (b.uordblks == a.uordblks) { /* AddressSanitizer's allocator: mallinfo2 does not see it */
        coord_free(c);
        return;
    }
    printf("pending: %.1f heap bytes per wait (sizeof %zu)\n", per, sizeof(ms_pending_t));
    ck_assert_double_lt(per, 320);
    coord_free(c);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("pending");
    TCase *tc = tcase_create("index");
    tcase_add_test(tc, index_matches_model);
    tcase_add_test(tc, cap_per_waiting_peer);
    tcase_add_test(tc, self_wait);
    tcase_add_test(tc, heap_grows_and_shrinks);
    tcase_add_test(tc, bytes_per_wait);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
