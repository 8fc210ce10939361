/* SPDX-License-Identifier: Apache-2.0 */
/* Cost of a topic publish against the subscriptions of one namespace: the index by token
 * (coordinator/topictrie.c) beside the walk of every subscription topic.c did before it (its
 * array, matcher and delivered-to set, copied here). Deliveries only count: ms_deliver costs
 * the same either way.
 *
 *   bench_topics [old|new|both] [subscriptions] [publishes]
 *
 * Members of 10 subscriptions each, patterns over topics s<A>.k<B>.v<C> (A < subscriptions / 10,
 * B, C < 10): 70% literal, 15% s<A>.*.v<C>, 10% s<A>.k<B>.>, 5% *.k<B>.v<C> (those match across
 * every A). Publishes on random topics of that space. Prints ns per publish, deliveries, and the
 * heap per subscription (mallinfo2). For instruction counts run it under
 * `valgrind --tool=callgrind --toggle-collect=publish_old --toggle-collect=publish_new`. */
#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ptrindex.h"
#include "topicref.h"
#include "topictrie.h"

/* ---- before: topic.c at dec550c ---- */
typedef struct {
    const void *member;
    char *pattern;
} old_sub_t;

typedef struct {
    old_sub_t *subs;
    size_t n, cap;
    uint32_t *n_subs; /* per member: the old ms_member_rare(m)->n_subs */
    const char *members;
} old_t;

static uint64_t member_addr(const void *rec)
{
    return (uint64_t)(uintptr_t)rec;
}

static int same_member(const void *rec, const void *key)
{
    return rec == key;
}

static void old_add(old_t *t, const void *m, const char *pattern)
{
    if (t->n == t->cap) {
        t->cap = t->cap ? t->cap * 2 : 16;
        t->subs = realloc(t->subs, t->cap * sizeof(*t->subs));
    }
    t->subs[t->n++] = (old_sub_t){.member = m, .pattern = strdup(pattern)};
}

static volatile size_t sink;

static void deliver(const void *m, void *arg)
{
    (void)arg;
    sink += (size_t)(uintptr_t)m;
}

__attribute__((noinline)) size_t publish_old(old_t *t, const char *topic)
{
    size_t n = 0;
    ms_pidx_t seen;
    ms_pidx_init(&seen, member_addr);
    for (size_t i = 0; i < t->n; i++) {
        const void *m = t->subs[i].member;
        if (!topicref_match(t->subs[i].pattern, topic))
            continue;
        if (t->n_subs[(const char *)m - t->members] > 1) {
            if (ms_pidx_find(&seen, member_addr(m), same_member, m))
                continue;
            ms_pidx_add(&seen, (void *)m);
        }
        deliver(m, NULL);
        n++;
    }
    ms_pidx_cleanup(&seen);
    return n;
}

__attribute__((noinline)) size_t publish_new(ms_ttrie_t *t, const char *topic)
{
    return ms_ttrie_match(t, topic, deliver, NULL);
}

static uint64_t st = 88172645463325252ULL;
static uint32_t rnd(uint32_t n)
{
    st ^= st << 13;
    st ^= st >> 7;
    st ^= st << 17;
    return (uint32_t)(st % n);
}

static void pattern(char *out, size_t cap, uint32_t na)
{
    uint32_t a = rnd(na), b = rnd(10), c = rnd(10), kind = rnd(100);
    if (kind < 70)
        snprintf(out, cap, "s%u.k%u.v%u", a, b, c);
    else if (kind < 85)
        snprintf(out, cap, "s%u.*.v%u", a, c);
    else if (kind < 95)
        snprintf(out, cap, "s%u.k%u.>", a, b);
    else
        snprintf(out, cap, "*.k%u.v%u", b, c);
}

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static size_t heap(void)
{
    return mallinfo2().uordblks;
}

int main(int argc, char **argv)
{
    const char *which = argc > 1 ? argv[1] : "both";
    uint32_t n = argc > 2 ? (uint32_t)atoi(argv[2]) : 10000;
    uint32_t np = argc > 3 ? (uint32_t)atoi(argv[3]) : 2000;
    int do_old = strcmp(which, "new") != 0, do_new = strcmp(which, "old") != 0;
    uint32_t nm = (n + 9) / 10, na = nm > 0 ? nm : 1;
    char *members = calloc(nm, 1);
    old_t old = {.n_subs = calloc(nm, sizeof(uint32_t)), .members = members};
    ms_ttrie_t idx;
    ms_ttrie_init(&idx);
    char p[64];
    size_t h0 = heap(), h_old = 0, h_new = 0;
    /* The same patterns for both (one seed); a member's duplicate is skipped by both. */
    for (int pass = 0; pass < 2; pass++) {
        if ((pass == 0 && !do_old) || (pass == 1 && !do_new))
            continue;
        st = 88172645463325252ULL;
        size_t h = heap();
        for (uint32_t i = 0; i < n; i++) {
            const char *m = &members[i / 10];
            pattern(p, sizeof(p), na);
            if (pass == 0) {
                int dup = 0;
                for (size_t k = old.n; k-- > 0 && old.subs[k].member == m && !dup;)
                    dup = !strcmp(old.subs[k].pattern, p); /* a member's are consecutive */
                if (!dup) {
                    old_add(&old, m, p);
                    old.n_subs[i / 10]++;
                }
            } else {
                ms_ttrie_add(&idx, m, p);
            }
        }
        if (pass == 0)
            h_old = heap() - h;
        else
            h_new = heap() - h;
    }
    (void)h0;
    /* Topics: random, then each publish through both (the same deliveries checked). */
    char(*topics)[32] = malloc((size_t)np * 32);
    for (uint32_t i = 0; i < np; i++)
        snprintf(topics[i], 32, "s%u.k%u.v%u", rnd(na), rnd(10), rnd(10));
    size_t d_old = 0, d_new = 0;
    double t_old = 0, t_new = 0;
    if (do_old) {
        double t0 = now_ns();
        for (uint32_t i = 0; i < np; i++)
            d_old += publish_old(&old, topics[i]);
        t_old = (now_ns() - t0) / np;
    }
    if (do_new) {
        double t0 = now_ns();
        for (uint32_t i = 0; i < np; i++)
            d_new += publish_new(&idx, topics[i]);
        t_new = (now_ns() - t0) / np;
    }
    size_t subs = do_new ? idx.n : old.n;
    printf("subscriptions %zu (members %u), publishes %u\n", subs, nm, np);
    if (do_old)
        printf("old: %.0f ns/publish (%.0f/s), deliveries %zu, heap %.1f B/subscription\n", t_old,
               1e9 / t_old, d_old, (double)h_old / (double)old.n);
    if (do_new)
        printf("new: %.0f ns/publish (%.0f/s), deliveries %zu, heap %.1f B/subscription\n", t_new,
               1e9 / t_new, d_new, (double)h_new / (double)idx.n);
    if (do_old && do_new && d_old != d_new) {
        fprintf(stderr, "deliveries differ: %zu old, %zu new\n", d_old, d_new);
        return 1;
    }
    for (size_t i = 0; i < old.n; i++)
        free(old.subs[i].pattern);
    free(old.subs);
    free(old.n_subs);
    ms_ttrie_cleanup(&idx);
    free(topics);
    free(members);
    return 0;
}
