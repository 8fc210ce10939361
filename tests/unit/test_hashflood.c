/* SPDX-License-Identifier: Apache-2.0 */
/* Hash flooding (common/hash.h): keys a client can choose, found offline to share one bucket
 * under the unkeyed hashes the tables used before, stay spread under the keyed hash.
 *
 * Each flood is what an attacker computes in well under a second: N names whose old hash
 * agrees in the bits that pick a bucket or slot (uthash: the low bits of Jenkins' hash; the
 * open-addressing index: the top bits of FNV-1a 64 times the Fibonacci constant). The test
 * checks that the old hash would indeed have put them all in one chain or run, then that the
 * tables as built now (uthash through uthash_keyed.h, the coordinator's namespace index, the
 * interned names' kept hash) keep the longest chain or run short and never stop uthash from
 * expanding. Also: SipHash-2-4 against the reference vectors (ms_siphash runs 1-3 with the
 * same code), and a key that differs from one process to the next. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "hash.h"
#include "intern.h"
#include "internal.h"
#include "ptrindex.h"
#include "uthash_keyed.h"

#define N 1000
#define BITS 12 /* the old hashes agree in this many bits: tables of up to 4096 buckets or slots   \
                 */
#define TRIES (1L << 26) /* bound of every brute-force search (about N << BITS are needed) */

/* The reference vectors of the SipHash paper's vectors.h: key 00..0f, message 00..len-1. */
static const uint64_t sip24_vectors[] = {
    0x726fdb47dd0e0e31ULL, 0x74f839c593dc67fdULL, 0x0d6c8009d9a94f5aULL, 0x85676696d7fb7e2dULL,
    0xcf2794e0277187b7ULL, 0x18765564cd99a68dULL, 0xcbc9466e58fee3ceULL, 0xab0200f58b01d137ULL,
    0x93f5f5799a932462ULL, 0x9e0082df0ba9e4b0ULL, 0x7a5dbbc594ddb9f3ULL, 0xf4b32f46226bada7ULL,
    0x751e8fbc860ee5fbULL, 0x14ea5627c0843d90ULL, 0xf723ca908e7af2eeULL, 0xa129ca6149be45e5ULL,
    0x3f2acc7f57c29bdbULL,
};

START_TEST(siphash_reference_vectors)
{
    const uint64_t k[2] = {0x0706050403020100ULL, 0x0f0e0d0c0b0a0908ULL};
    unsigned char m[sizeof(sip24_vectors) / sizeof(sip24_vectors[0])];
    for (size_t i = 0; i < sizeof(m); i++)
        m[i] = (unsigned char)i;
    for (size_t len = 0; len < sizeof(m); len++)
        ck_assert_msg(ms_siphash(k, 2, 4, m, len) == sip24_vectors[len], "length %zu", len);
    /* The keyed hash is SipHash-1-3 under the process's key. */
    ck_assert(ms_hash_keyed(m, 11) == ms_siphash(ms_hash_key, 1, 3, m, 11));
    ck_assert(ms_hash_keyed(m, 11) != ms_siphash(k, 1, 3, m, 11));
}
END_TEST

/* Another process of this binary has another key (getrandom() before main). */
START_TEST(key_differs_per_process)
{
    ck_assert(ms_hash_key[0] || ms_hash_key[1]);
    char self[4096], cmd[4200];
    ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    ck_assert(n > 0);
    self[n] = '\0';
    snprintf(cmd, sizeof(cmd), "'%s' --print-key", self);
    FILE *f = popen(cmd, "r");
    ck_assert_ptr_nonnull(f);
    unsigned long long k0 = 0, k1 = 0;
    ck_assert_int_eq(fscanf(f, "%llx %llx", &k0, &k1), 2);
    ck_assert_int_eq(pclose(f), 0);
    ck_assert(k0 != ms_hash_key[0] || k1 != ms_hash_key[1]);
}
END_TEST

/* ---- uthash: client strings whose Jenkins hash shares its low BITS bits ----------------- */

typedef struct {
    char *name;
    UT_hash_handle hh;
} item_t;

/* N names of one pattern (room names, say) in one bucket of uthash's default hash. */
static char **jenkins_flood(void)
{
    char **v = calloc(N, sizeof(*v)), buf[32];
    ck_assert_ptr_nonnull(v);
    unsigned target = 0, mask = (1u << BITS) - 1;
    int n = 0;
    for (long i = 0; i < TRIES && n < N; i++) {
        int len = snprintf(buf, sizeof(buf), "room-%lx", i);
        unsigned h;
        HASH_JEN(buf, (unsigned)len, h);
        if (i == 0)
            target = h & mask;
        if ((h & mask) == target)
            ck_assert_ptr_nonnull(v[n++] = strdup(buf));
    }
    ck_assert_int_eq(n, N);
    return v;
}

START_TEST(uthash_chains_stay_short)
{
    char **names = jenkins_flood();
    item_t *table = NULL, *items = calloc(N, sizeof(*items)), *it;
    ck_assert_ptr_nonnull(items);
    for (int i = 0; i < N; i++) {
        items[i].name = names[i];
        HASH_ADD_KEYPTR(hh, table, items[i].name, strlen(items[i].name), &items[i]);
    }
    UT_hash_table *tbl = table->hh.tbl;
    unsigned longest = 0, jen_mask = tbl->num_buckets - 1, jen0 = 0;
    for (unsigned b = 0; b < tbl->num_buckets; b++)
        if (tbl->buckets[b].count > longest)
            longest = tbl->buckets[b].count;
    /* Under Jenkins' hash all N would be in one bucket of this many (it is at most 2^BITS)... */
    ck_assert_uint_le(tbl->num_buckets, 1u << BITS);
    for (int i = 0; i < N; i++) {
        unsigned h;
        HASH_JEN(names[i], (unsigned)strlen(names[i]), h);
        if (i == 0)
            jen0 = h & jen_mask;
        ck_assert_uint_eq(h & jen_mask, jen0);
    }
    /* ...under the keyed hash: N in 128+ buckets, about 8 each, uthash still expanding. */
    ck_assert_msg(longest <= 30, "longest chain %u of %u in %u buckets", longest, N,
                  tbl->num_buckets);
    ck_assert_uint_eq(tbl->noexpand, 0);
    for (int i = 0; i < N; i++) {
        HASH_FIND_STR(table, names[i], it);
        ck_assert_ptr_eq(it, &items[i]);
    }
    HASH_CLEAR(hh, table);
    free(items);
    for (int i = 0; i < N; i++)
        free(names[i]);
    free(names);
}
END_TEST

/* ---- the open-addressing index: names whose FNV-1a 64 has one home ---------------------- */

static uint32_t fib_top(uint64_t h)
{
    return (uint32_t)((h * 0x9e3779b97f4a7c15ULL) >> (64 - BITS));
}

/* N names (namespaces, peer ids) with one home slot in any ptrindex of up to 2^BITS slots
 * when hashed with FNV-1a 64 as they were. */
static char **fnv_flood(const char *prefix)
{
    char **v = calloc(N, sizeof(*v)), buf[32];
    ck_assert_ptr_nonnull(v);
    uint32_t target = 0;
    int n = 0;
    for (long i = 0; i < TRIES && n < N; i++) {
        int len = snprintf(buf, sizeof(buf), "%s%lx", prefix, i);
        uint32_t top = fib_top(ms_fnv1a64(buf, (size_t)len));
        if (i == 0)
            target = top;
        if (top == target)
            ck_assert_ptr_nonnull(v[n++] = strdup(buf));
    }
    ck_assert_int_eq(n, N);
    return v;
}

/* The longest run of occupied slots: every lookup of a key whose home is in it may walk it. */
static uint32_t longest_run(const ms_pidx_t *x)
{
    uint32_t best = 0, run = 0;
    for (uint32_t i = 0; i < 2 * x->cap; i++) { /* twice round: a run may wrap */
        run = x->slot[i & (x->cap - 1)] ? run + 1 : 0;
        if (run > best)
            best = run;
    }
    return best > x->cap ? x->cap : best;
}

static void free_names(char **v)
{
    for (int i = 0; i < N; i++)
        free(v[i]);
    free(v);
}

static ms_coord_config_t cfg = {.prefix = "meshsig", .shards = 64};

/* The coordinator's namespaces by name (coordinator/namespace.c). */
START_TEST(namespace_index_runs_stay_short)
{
    char **names = fnv_flood("ns-");
    ms_coord_t *c = calloc(1, sizeof(*c));
    ck_assert_ptr_nonnull(c);
    ck_assert_int_eq(ms_coord_core_init(c, &cfg, "coord-1"), MS_OK);
    for (int i = 0; i < N; i++) {
        ms_ns_t *ns = NULL;
        ck_assert_int_eq(ms_ns_get(c, names[i], &ns), MS_OK);
    }
    const ms_pidx_t *x = &c->ns.by_name;
    ck_assert_uint_le(x->cap, 1u << BITS); /* FNV-1a would have put all N in one run */
    uint32_t run = longest_run(x);
    ck_assert_msg(run <= 60, "longest run %u of %u in %u slots", run, N, x->cap);
    for (int i = 0; i < N; i++)
        ck_assert_ptr_nonnull(ms_ns_find(c, names[i]));
    ms_coord_core_cleanup(c);
    free(c);
    free_names(names);
}
END_TEST

/* Interned names (the gateway's namespaces) and the hash the gateway's peer index reuses. */
static uint64_t interned_hash(const void *rec)
{
    return ms_intern_hash(rec);
}

static int interned_is(const void *rec, const void *key)
{
    return rec == key;
}

START_TEST(interned_hash_spreads)
{
    char **names = fnv_flood("app-");
    const char *in[N];
    ms_pidx_t x;
    ms_pidx_init(&x, interned_hash);
    for (int i = 0; i < N; i++) {
        ck_assert_ptr_nonnull(in[i] = ms_intern(names[i]));
        ck_assert_int_eq(ms_pidx_add(&x, (void *)in[i]), 0);
    }
    ck_assert_uint_le(x.cap, 1u << BITS);
    uint32_t run = longest_run(&x);
    ck_assert_msg(run <= 60, "longest run %u of %u in %u slots", run, N, x.cap);
    for (int i = 0; i < N; i++) {
        ck_assert_ptr_eq(ms_pidx_find(&x, ms_intern_hash(in[i]), interned_is, in[i]), in[i]);
        ms_intern_release(in[i]);
    }
    ms_pidx_cleanup(&x);
    free_names(names);
}
END_TEST

int main(int argc, char **argv)
{
    if (argc == 2 && !strcmp(argv[1], "--print-key")) {
        printf("%llx %llx\n", (unsigned long long)ms_hash_key[0],
               (unsigned long long)ms_hash_key[1]);
        return 0;
    }
    Suite *s = suite_create("hashflood");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, siphash_reference_vectors);
    tcase_add_test(tc, key_differs_per_process);
    tcase_add_test(tc, uthash_chains_stay_short);
    tcase_add_test(tc, namespace_index_runs_stay_short);
    tcase_add_test(tc, interned_hash_spreads);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
