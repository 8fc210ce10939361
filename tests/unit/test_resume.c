/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for resume tokens: round trip, tampering, expiry, malformed input. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "resume.h"

/* OpenSSL's allocations, counted (set in main before OpenSSL allocates anything). */
static long n_allocs;
static int counting; /* the counters are installed */
static void *count_malloc(size_t n, const char *file, int line)
{
    (void)file;
    (void)line;
    n_allocs++;
    return malloc(n);
}
static void *count_realloc(void *p, size_t n, const char *file, int line)
{
    (void)file;
    (void)line;
    n_allocs++;
    return realloc(p, n);
}
static void count_free(void *p, const char *file, int line)
{
    (void)file;
    (void)line;
    free(p);
}

static const unsigned char key[] = "0123456789abcdef0123456789abcdef";
#define KEYLEN (sizeof key - 1)
#define NOW 1700000000

START_TEST(round_trip)
{
    char tok[MS_RESUME_TOKEN_MAX];
    ms_resume_claims_t c;
    const char *why = NULL;
    ck_assert_int_eq(ms_resume_issue(key, KEYLEN, "alice@x.y:1-2_3", "room1", 0x0123456789abcdefull,
                                     NOW, 60, tok, sizeof tok),
                     MS_OK);
    ck_assert_ptr_nonnull(strchr(tok, '.'));
    ck_assert_int_eq(ms_resume_verify(key, KEYLEN, tok, NOW + 59, &c, &why), MS_OK);
    ck_assert_str_eq(why, "ok");
    ck_assert_str_eq(c.peer_id, "alice@x.y:1-2_3");
    ck_assert_str_eq(c.ns, "room1");
    ck_assert_uint_eq(c.epoch, 0x0123456789abcdefull);
    ck_assert_int_eq(c.exp, NOW + 60);
}
END_TEST

/* A session's grants travel in the token (version 2); without grants the token
 * stays version 1, which the previous release also reads. */
START_TEST(grants_round_trip)
{
    char tok[MS_RESUME_TOKEN_MAX], v1[MS_RESUME_TOKEN_MAX], flip[MS_RESUME_TOKEN_MAX];
    ms_resume_claims_t c;
    ck_assert_int_eq(ms_resume_issue_ex(key, KEYLEN, "studio", "broadcast.x", 9,
                                        MS_RESUME_GRANT_SOURCE | MS_RESUME_GRANT_POLICY, NOW, 60,
                                        tok, sizeof tok),
                     MS_OK);
    ck_assert_int_eq(ms_resume_verify(key, KEYLEN, tok, NOW, &c, NULL), MS_OK);
    ck_assert_uint_eq(c.grants, MS_RESUME_GRANT_SOURCE | MS_RESUME_GRANT_POLICY);
    ck_assert_str_eq(c.peer_id, "studio");
    ck_assert_str_eq(c.ns, "broadcast.x");
    ck_assert_uint_eq(c.epoch, 9);
    ck_assert_int_eq(
        ms_resume_issue_ex(key, KEYLEN, "studio", "broadcast.x", 9, 0, NOW, 60, v1, sizeof v1),
        MS_OK);
    ck_assert_int_eq(ms_resume_verify(key, KEYLEN, v1, NOW, &c, NULL), MS_OK);
    ck_assert_uint_eq(c.grants, 0);
    /* The grants are signed like the rest: one token's payload under the
     * other's signature is refused. */
    ck_assert_int_eq(ms_resume_issue_ex(key, KEYLEN, "studio", "broadcast.x", 9,
                                        MS_RESUME_GRANT_POLICY, NOW, 60, flip, sizeof flip),
                     MS_OK);
    ck_assert_uint_eq(strlen(flip), strlen(tok));
    strcpy(flip + strcspn(flip, "."), tok + strcspn(tok, "."));
    ck_assert_int_eq(ms_resume_verify(key, KEYLEN, flip, NOW, &c, NULL), MS_ERR_AUTH);
}
END_TEST

START_TEST(longest_fields_fit)
{
    char tok[MS_RESUME_TOKEN_MAX], id[MS_AUTH_PEER_ID_MAX + 1], ns[MS_RESUME_NS_MAX + 2];
    ms_resume_claims_t c;
    memset(id, 'a', MS_AUTH_PEER_ID_MAX);
    id[MS_AUTH_PEER_ID_MAX] = '\0';
    memset(ns, 'n', MS_RESUME_NS_MAX);
    ns[MS_RESUME_NS_MAX] = '\0';
    ck_assert_int_eq(ms_resume_issue(key, KEYLEN, id, ns, UINT64_MAX, NOW, 60, tok, sizeof tok),
                     MS_OK);
    ck_assert_int_eq(ms_resume_verify(key, KEYLEN, tok, NOW, &c, NULL), MS_OK);
    ck_assert_str_eq(c.peer_id, id);
    ck_assert_str_eq(c.ns, ns);
    ck_assert_uint_eq(c.epoch, UINT64_MAX);
    /* a buffer one byte short is refused, not overrun */
    ck_assert_int_eq(ms_resume_issue(key, KEYLEN, id, ns, 1, NOW, 60, tok, strlen(tok)),
                     MS_ERR_TOOBIG);
    ns[MS_RESUME_NS_MAX] = 'n';
    ns[MS_RESUME_NS_MAX + 1] = '\0';
    ck_assert_int_eq(ms_resume_issue(key, KEYLEN, id, ns, 1, NOW, 60, tok, sizeof tok),
                     MS_ERR_INVAL);
}
END_TEST

START_TEST(expiry)
{
    char tok[MS_RESUME_TOKEN_MAX];
    ms_resume_claims_t c;
    const char *why;
    ck_assert_int_eq(ms_resume_issue(key, KEYLEN, "bob", "ns", 7, NOW, 60, tok, sizeof tok), MS_OK);
    ck_assert_int_eq(ms_resume_verify(key, KEYLEN, tok, NOW + 60, &c, &why), MS_ERR_AUTH);
    ck_assert_str_eq(why, "expired");
    ck_assert_int_eq(ms_resume_verify(key, KEYLEN, tok, NOW + 100000, &c, NULL), MS_ERR_AUTH);
}
END_TEST

START_TEST(tamper_and_wrong_key)
{
    char tok[MS_RESUME_TOKEN_MAX], bad[MS_RESUME_TOKEN_MAX], other[MS_RESUME_TOKEN_MAX];
    static const unsigned char key2[] = "fedcba9876543210fedcba9876543210";
    ms_resume_claims_t c;
    const char *why;
    ck_assert_int_eq(ms_resume_issue(key, KEYLEN, "bob", "ns", 7, NOW, 60, tok, sizeof tok), MS_OK);
    ck_assert_int_eq(ms_resume_verify(key2, KEYLEN, tok, NOW, &c, &why), MS_ERR_AUTH);
    ck_assert_str_eq(why, "bad signature");

    /* flip every character in turn to another base64url character */
    size_t len = strlen(tok);
    for (size_t i = 0; i < len; i++) {
        if (tok[i] == '.')
            continue;
        strcpy(bad, tok);
        bad[i] = bad[i] == 'A' ? 'B' : 'A';
        ck_assert_int_eq(ms_resume_verify(key, KEYLEN, bad, NOW, &c, NULL), MS_ERR_AUTH);
    }
    /* another peer's payload with this signature */
    ck_assert_int_eq(ms_resume_issue(key, KEYLEN, "eve", "ns", 7, NOW, 60, other, sizeof other),
                     MS_OK);
    strcpy(bad, other);
    strcpy(strchr(bad, '.'), strchr(tok, '.'));
    ck_assert_int_eq(ms_resume_verify(key, KEYLEN, bad, NOW, &c, NULL), MS_ERR_AUTH);
    /* untouched claims on failure */
    memset(&c, 0x5a, sizeof c);
    ck_assert_int_eq(ms_resume_verify(key, KEYLEN, bad, NOW, &c, NULL), MS_ERR_AUTH);
    ck_assert_uint_eq(c.epoch, 0x5a5a5a5a5a5a5a5aull);
}
END_TEST

START_TEST(malformed)
{
    ms_resume_claims_t c;
    char tok[MS_RESUME_TOKEN_MAX], bad[2 * MS_RESUME_TOKEN_MAX];
    static const char *cases[] = {"", ".", "abc", "abc.", ".abc", "a.b.c", "!!!!.????", NULL};
    for (int i = 0; cases[i]; i++)
        ck_assert_int_eq(ms_resume_verify(key, KEYLEN, cases[i], NOW, &c, NULL), MS_ERR_AUTH);
    ck_assert_int_eq(ms_resume_issue(key, KEYLEN, "bob", "ns", 7, NOW, 60, tok, sizeof tok), MS_OK);
    /* trailing garbage and an over-long token */
    snprintf(bad, sizeof bad, "%sA", tok);
    ck_assert_int_eq(ms_resume_verify(key, KEYLEN, bad, NOW, &c, NULL), MS_ERR_AUTH);
    memset(bad, 'A', sizeof bad - 1);
    bad[sizeof bad - 1] = '\0';
    ck_assert_int_eq(ms_resume_verify(key, KEYLEN, bad, NOW, &c, NULL), MS_ERR_AUTH);
    /* a JWT-looking string */
    ck_assert_int_eq(
        ms_resume_verify(key, KEYLEN, "eyJhbGciOiJub25lIn0.eyJzdWIiOiJhIn0.", NOW, &c, NULL),
        MS_ERR_AUTH);
}
END_TEST

START_TEST(argument_checks)
{
    char tok[MS_RESUME_TOKEN_MAX];
    ms_resume_claims_t c;
    ck_assert_int_eq(ms_resume_issue(key, 15, "bob", "ns", 7, NOW, 60, tok, sizeof tok),
                     MS_ERR_INVAL);
    ck_assert_int_eq(ms_resume_issue(key, KEYLEN, "bad id", "ns", 7, NOW, 60, tok, sizeof tok),
                     MS_ERR_INVAL);
    ck_assert_int_eq(ms_resume_issue(key, KEYLEN, "bob", "", 7, NOW, 60, tok, sizeof tok),
                     MS_ERR_INVAL);
    ck_assert_int_eq(ms_resume_issue(key, KEYLEN, "bob", "ns", 7, NOW, 0, tok, sizeof tok),
                     MS_ERR_INVAL);
    ck_assert_int_eq(ms_resume_issue(key, KEYLEN, "bob", "ns", 7, INT64_MAX, 1, tok, sizeof tok),
                     MS_ERR_INVAL);
    ck_assert_int_eq(ms_resume_verify(key, 15, "x.y", NOW, &c, NULL), MS_ERR_INVAL);
    ck_assert_int_eq(ms_resume_verify(key, KEYLEN, NULL, NOW, &c, NULL), MS_ERR_INVAL);
}
END_TEST

/* A signer keyed once gives the same tokens as the one-shot functions, whatever came before on
 * it (a refused token, another signer's tokens, a key longer than SHA-256's block), and checks
 * them the same way. */
START_TEST(signer_same_tokens)
{
    static const unsigned char long_key[100] = "a key longer than the 64-byte block of SHA-256, "
                                               "hashed first by HMAC: the same either way........";
    ms_resume_signer_t *a = NULL, *b = NULL;
    ck_assert_int_eq(ms_resume_signer_new(key, KEYLEN, &a), MS_OK);
    ck_assert_int_eq(ms_resume_signer_new(long_key, sizeof long_key, &b), MS_OK);
    char peer[64], ns[300], t1[MS_RESUME_TOKEN_MAX], t2[MS_RESUME_TOKEN_MAX];
    ms_resume_claims_t c;
    const char *why = NULL;
    for (int i = 0; i < 200; i++) {
        snprintf(peer, sizeof peer, "peer-%d", i * 7919);
        /* payloads of 1 to 255-character namespaces: one, two and more SHA-256 blocks */
        memset(ns, 'a' + i % 26, sizeof ns);
        ns[1 + (i * 37) % MS_RESUME_NS_MAX] = '\0';
        uint8_t grants = (uint8_t)(i % 4);
        int use_a = i % 3 != 0;
        ms_resume_signer_t *k = use_a ? a : b;
        const unsigned char *kk = use_a ? key : long_key;
        size_t kl = use_a ? KEYLEN : sizeof long_key;
        ck_assert_int_eq(
            ms_resume_issue_ex(kk, kl, peer, ns, (uint64_t)i << 20, grants, NOW, 60, t1, sizeof t1),
            MS_OK);
        ck_assert_int_eq(
            ms_resume_issue_with(k, peer, ns, (uint64_t)i << 20, grants, NOW, 60, t2, sizeof t2),
            MS_OK);
        ck_assert_str_eq(t1, t2);
        ck_assert_int_eq(ms_resume_verify_with(k, t1, NOW + 59, &c, &why), MS_OK);
        ck_assert_str_eq(c.peer_id, peer);
        ck_assert_str_eq(c.ns, ns);
        ck_assert_uint_eq(c.grants, grants);
        /* the other key refuses it, and a forged signature is refused; then the next token
         * is right again (the context starts afresh each time) */
        ck_assert_int_eq(ms_resume_verify_with(use_a ? b : a, t1, NOW, &c, &why), MS_ERR_AUTH);
        ck_assert_str_eq(why, "bad signature");
        size_t last = strlen(t1) - 2;
        t1[last] = t1[last] == 'A' ? 'B' : 'A';
        ck_assert_int_eq(ms_resume_verify_with(k, t1, NOW, &c, &why), MS_ERR_AUTH);
        ck_assert_int_eq(ms_resume_verify(kk, kl, t2, NOW, &c, NULL), MS_OK);
    }
    ms_resume_signer_free(a);
    ms_resume_signer_free(b);
    ms_resume_signer_free(NULL);
    ck_assert_int_eq(ms_resume_signer_new(key, 15, &a), MS_ERR_INVAL);
    ck_assert_int_eq(ms_resume_signer_new(NULL, KEYLEN, &a), MS_ERR_INVAL);
}
END_TEST

/* The gateway issues a token with every welcome: with a signer, OpenSSL 3.0 allocates twice per
 * token (EVP_MAC_init without a key copies the keyed digest state into a new provider context)
 * instead of 13 times (HMAC() sets the key up each time). */
START_TEST(signer_allocations)
{
    ck_assert_msg(counting, "OpenSSL allocated before main installed the counters");
    ms_resume_signer_t *k = NULL;
    ck_assert_int_eq(ms_resume_signer_new(key, KEYLEN, &k), MS_OK);
    char tok[MS_RESUME_TOKEN_MAX];
    ms_resume_claims_t c;
    ck_assert_int_eq(ms_resume_issue_with(k, "alice", "room", 1, 0, NOW, 60, tok, sizeof tok),
                     MS_OK);
    long before = n_allocs;
    for (int i = 0; i < 100; i++)
        ck_assert_int_eq(ms_resume_issue_with(k, "alice", "room", 1, 0, NOW, 60, tok, sizeof tok),
                         MS_OK);
    long with = n_allocs - before;
    before = n_allocs;
    for (int i = 0; i < 100; i++)
        ck_assert_int_eq(ms_resume_verify_with(k, tok, NOW, &c, NULL), MS_OK);
    long verify_with = n_allocs - before;
    before = n_allocs;
    for (int i = 0; i < 100; i++)
        ck_assert_int_eq(ms_resume_issue(key, KEYLEN, "alice", "room", 1, NOW, 60, tok, sizeof tok),
                         MS_OK);
    long oneshot = n_allocs - before;
    ms_resume_signer_free(k);
    printf("resume token: %.2f OpenSSL allocations to issue with a signer, %.2f to verify, "
           "%.2f one-shot\n",
           with / 100.0, verify_with / 100.0, oneshot / 100.0);
    ck_assert_int_le(with, 2 * 100);
    ck_assert_int_le(verify_with, 2 * 100);
    ck_assert_int_lt(with * 4, oneshot);
}
END_TEST

int main(void)
{
    /* Before anything allocates through OpenSSL: each test counts its own difference. */
    counting = CRYPTO_set_mem_functions(count_malloc, count_realloc, count_free);
    Suite *s = suite_create("resume");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, round_trip);
    tcase_add_test(tc, grants_round_trip);
    tcase_add_test(tc, longest_fields_fit);
    tcase_add_test(tc, expiry);
    tcase_add_test(tc, tamper_and_wrong_key);
    tcase_add_test(tc, malformed);
    tcase_add_test(tc, argument_checks);
    tcase_add_test(tc, signer_same_tokens);
    tcase_add_test(tc, signer_allocations);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
