/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for hello JWT verification (HS256/RS256/ES256, algorithm confusion) and the bearer
 * check. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jwt.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>

#include "auth.h"

#define NOW 1700000000L
#define SECRET "test-secret-0123456789abcdef-0123"

/* Key pairs generated at start-up; public keys also written to a temp dir. */
static char *rsa_priv, *rsa_pub, *rsa2_priv, *ec_priv, *ec_pub;
static char tmpdir[] = "/tmp/test_auth.XXXXXX";
static char rsa_pub_path[256], ec_pub_path[256], rsa_priv_path[256];

static char *bio_string(BIO *bio)
{
    char *data;
    long n = BIO_get_mem_data(bio, &data);
    char *s = malloc((size_t)n + 1);
    if (!s)
        abort();
    memcpy(s, data, (size_t)n);
    s[n] = '\0';
    return s;
}

static void gen_pair(EVP_PKEY *pkey, char **priv, char **pub)
{
    BIO *a = BIO_new(BIO_s_mem()), *b = BIO_new(BIO_s_mem());
    if (!pkey || !a || !b || !PEM_write_bio_PrivateKey(a, pkey, NULL, NULL, 0, NULL, NULL) ||
        !PEM_write_bio_PUBKEY(b, pkey))
        abort();
    *priv = bio_string(a);
    if (pub)
        *pub = bio_string(b);
    BIO_free(a);
    BIO_free(b);
    EVP_PKEY_free(pkey);
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (!f || fputs(text, f) < 0 || fclose(f))
        abort();
}

static void keys_setup(void)
{
    gen_pair(EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048), &rsa_priv, &rsa_pub);
    gen_pair(EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048), &rsa2_priv, NULL);
    gen_pair(EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256"), &ec_priv, &ec_pub);
    if (!mkdtemp(tmpdir))
        abort();
    snprintf(rsa_pub_path, sizeof rsa_pub_path, "%s/rsa.pub.pem", tmpdir);
    snprintf(ec_pub_path, sizeof ec_pub_path, "%s/ec.pub.pem", tmpdir);
    snprintf(rsa_priv_path, sizeof rsa_priv_path, "%s/rsa.key.pem", tmpdir);
    write_file(rsa_pub_path, rsa_pub);
    write_file(ec_pub_path, ec_pub);
    write_file(rsa_priv_path, rsa_priv);
}

static void keys_teardown(void)
{
    unlink(rsa_pub_path);
    unlink(ec_pub_path);
    unlink(rsa_priv_path);
    rmdir(tmpdir);
    free(rsa_priv);
    free(rsa_pub);
    free(rsa2_priv);
    free(ec_priv);
    free(ec_pub);
}

/* A token with these claims (JSON object text), signed by libjwt. Caller frees. */
static char *mint(jwt_alg_t alg, const char *key, const char *claims)
{
    jwt_t *jwt = NULL;
    char *tok;
    ck_assert_int_eq(jwt_new(&jwt), 0);
    ck_assert_int_eq(jwt_add_grants_json(jwt, claims), 0);
    ck_assert_int_eq(jwt_set_alg(jwt, alg, (const unsigned char *)key, key ? (int)strlen(key) : 0),
                     0);
    tok = jwt_encode_str(jwt);
    ck_assert_ptr_nonnull(tok);
    jwt_free(jwt);
    return tok;
}

/* base64url without padding of n bytes into out (room for 4 * n / 3 + 4). */
static void b64url(const unsigned char *d, size_t n, char *out)
{
    static const char a[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    size_t o = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < n; i++) {
        acc = (acc << 8) | d[i];
        bits += 8;
        while (bits >= 6) {
            bits -= 6;
            out[o++] = a[(acc >> bits) & 63];
        }
    }
    if (bits > 0)
        out[o++] = a[(acc << (6 - bits)) & 63];
    out[o] = '\0';
}

/* An HS256-signed token with a hand-written header, so that headers libjwt would
 * never write (odd alg spellings, kid values) can be tested. Caller frees. */
static char *mint_raw_hs(const char *header, const char *claims, const char *secret)
{
    size_t hl = strlen(header), cl = strlen(claims);
    char *tok = malloc(2 * (hl + cl) + 128);
    unsigned char mac[32];
    unsigned int maclen = 0;
    size_t n;
    ck_assert_ptr_nonnull(tok);
    b64url((const unsigned char *)header, hl, tok);
    n = strlen(tok);
    tok[n++] = '.';
    b64url((const unsigned char *)claims, cl, tok + n);
    n = strlen(tok);
    ck_assert_ptr_nonnull(
        HMAC(EVP_sha256(), secret, (int)strlen(secret), (unsigned char *)tok, n, mac, &maclen));
    tok[n++] = '.';
    b64url(mac, maclen, tok + n);
    return tok;
}

static char *mint_hs(const char *claims)
{
    return mint(JWT_ALG_HS256, SECRET, claims);
}

static ms_auth_t *hs_verifier(long leeway)
{
    ms_auth_config_t cfg = {.alg = MS_AUTH_HS256, .secret = SECRET, .leeway_s = leeway};
    ms_auth_t *a = NULL;
    ck_assert_int_eq(ms_auth_create(&a, &cfg), MS_OK);
    return a;
}

/* Verifies claims signed HS256 against namespace ns; returns the result. */
static ms_err_t check_claims(const char *claims, const char *ns, const char **why)
{
    ms_auth_t *a = hs_verifier(-1);
    char *tok = mint_hs(claims);
    char id[MS_AUTH_PEER_ID_MAX + 1];
    ms_err_t err = ms_auth_verify(a, tok, ns, NOW, id, why);
    free(tok);
    ms_auth_destroy(a);
    return err;
}

START_TEST(hs256_valid)
{
    ms_auth_t *a = hs_verifier(-1);
    char *tok = mint_hs("{\"sub\":\"alice\",\"ns\":\"room1\",\"exp\":1700000060}");
    char id[MS_AUTH_PEER_ID_MAX + 1] = "";
    const char *why = NULL;
    ck_assert_int_eq(ms_auth_verify(a, tok, "room1", NOW, id, &why), MS_OK);
    ck_assert_str_eq(id, "alice");
    ck_assert_str_eq(why, "ok");
    free(tok);
    ms_auth_destroy(a);
}
END_TEST

START_TEST(exp_with_leeway)
{
    const char *why;
    ck_assert_int_eq(check_claims("{\"sub\":\"a\",\"ns\":\"n\",\"exp\":1699999969}", "n", &why),
                     MS_ERR_AUTH);
    ck_assert_str_eq(why, "expired");
    /* exp 30 s ago is the edge of the default leeway: refused; 29 s ago: accepted */
    ck_assert_int_eq(check_claims("{\"sub\":\"a\",\"ns\":\"n\",\"exp\":1699999970}", "n", NULL),
                     MS_ERR_AUTH);
    ck_assert_int_eq(check_claims("{\"sub\":\"a\",\"ns\":\"n\",\"exp\":1699999971}", "n", NULL),
                     MS_OK);
    /* fractional NumericDate */
    ck_assert_int_eq(check_claims("{\"sub\":\"a\",\"ns\":\"n\",\"exp\":1700000001.5}", "n", NULL),
                     MS_OK);

    /* leeway 0: exp == now is expired */
    ms_auth_t *a = hs_verifier(0);
    char id[MS_AUTH_PEER_ID_MAX + 1];
    char *tok = mint_hs("{\"sub\":\"a\",\"ns\":\"n\",\"exp\":1700000000}");
    ck_assert_int_eq(ms_auth_verify(a, tok, "n", NOW, id, NULL), MS_ERR_AUTH);
    ck_assert_int_eq(ms_auth_verify(a, tok, "n", NOW - 1, id, NULL), MS_OK);
    free(tok);
    ms_auth_destroy(a);
}
END_TEST

START_TEST(exp_missing_or_not_a_number)
{
    const char *why;
    ck_assert_int_eq(check_claims("{\"sub\":\"a\",\"ns\":\"n\"}", "n", &why), MS_ERR_AUTH);
    ck_assert_str_eq(why, "missing or invalid exp");
    ck_assert_int_eq(check_claims("{\"sub\":\"a\",\"ns\":\"n\",\"exp\":\"1800000000\"}", "n", NULL),
                     MS_ERR_AUTH);
    ck_assert_int_eq(check_claims("{\"sub\":\"a\",\"ns\":\"n\",\"exp\":true}", "n", NULL),
                     MS_ERR_AUTH);
}
END_TEST

START_TEST(nbf_in_future)
{
    const char *why;
    ck_assert_int_eq(
        check_claims("{\"sub\":\"a\",\"ns\":\"n\",\"exp\":1800000000,\"nbf\":1700000031}", "n",
                     &why),
        MS_ERR_AUTH);
    ck_assert_str_eq(why, "not yet valid (nbf)");
    ck_assert_int_eq(
        check_claims("{\"sub\":\"a\",\"ns\":\"n\",\"exp\":1800000000,\"nbf\":1700000030}", "n",
                     NULL),
        MS_OK);
    ck_assert_int_eq(
        check_claims("{\"sub\":\"a\",\"ns\":\"n\",\"exp\":1800000000,\"nbf\":1600000000}", "n",
                     NULL),
        MS_OK);
    ck_assert_int_eq(
        check_claims("{\"sub\":\"a\",\"ns\":\"n\",\"exp\":1800000000,\"nbf\":\"x\"}", "n", NULL),
        MS_ERR_AUTH);
}
END_TEST

START_TEST(wrong_secret)
{
    ms_auth_t *a = hs_verifier(-1);
    char id[MS_AUTH_PEER_ID_MAX + 1];
    char *tok =
        mint(JWT_ALG_HS256, "another-secret", "{\"sub\":\"a\",\"ns\":\"n\",\"exp\":1800000000}");
    ck_assert_int_eq(ms_auth_verify(a, tok, "n", NOW, id, NULL), MS_ERR_AUTH);
    free(tok);
    ms_auth_destroy(a);
}
END_TEST

START_TEST(tampered_payload)
{
    ms_auth_t *a = hs_verifier(-1);
    char id[MS_AUTH_PEER_ID_MAX + 1] = "untouched";
    char *good = mint_hs("{\"sub\":\"alice\",\"ns\":\"n\",\"exp\":1800000000}");
    char *evil = mint(JWT_ALG_HS256, "x", "{\"sub\":\"admin\",\"ns\":\"*\",\"exp\":1800000000}");
    /* evil's header and payload with good's signature */
    char *spliced = malloc(strlen(good) + strlen(evil) + 1);
    ck_assert_ptr_nonnull(spliced);
    strcpy(spliced, evil);
    strcpy(strrchr(spliced, '.'), strrchr(good, '.'));
    ck_assert_int_eq(ms_auth_verify(a, spliced, "n", NOW, id, NULL), MS_ERR_AUTH);
    ck_assert_str_eq(id, "untouched");
    /* one flipped payload character */
    strcpy(spliced, good);
    char *p = strchr(spliced, '.') + 5;
    *p = *p == 'A' ? 'B' : 'A';
    ck_assert_int_eq(ms_auth_verify(a, spliced, "n", NOW, id, NULL), MS_ERR_AUTH);
    ck_assert_int_eq(ms_auth_verify(a, good, "n", NOW, id, NULL), MS_OK);
    free(spliced);
    free(good);
    free(evil);
    ms_auth_destroy(a);
}
END_TEST

START_TEST(alg_none_and_other_hmac)
{
    ms_auth_t *a = hs_verifier(-1);
    char id[MS_AUTH_PEER_ID_MAX + 1];
    const char *why;
    const char *claims = "{\"sub\":\"a\",\"ns\":\"n\",\"exp\":1800000000}";
    char *none = mint(JWT_ALG_NONE, NULL, claims);
    ck_assert_int_eq(ms_auth_verify(a, none, "n", NOW, id, NULL), MS_ERR_AUTH);
    /* "none" with a real HS256 signature appended */
    char *hs = mint_hs(claims);
    char *both = malloc(strlen(none) + strlen(hs) + 1);
    ck_assert_ptr_nonnull(both);
    strcpy(both, none);
    strcat(both, strrchr(hs, '.') + 1);
    ck_assert_int_eq(ms_auth_verify(a, both, "n", NOW, id, NULL), MS_ERR_AUTH);
    /* hand-made {"alg":"none"} and {"alg":"None"} headers */
    ck_assert_int_eq(ms_auth_verify(a,
                                    "eyJhbGciOiJub25lIn0.eyJzdWIiOiJhIiwibnMiOiJuIiwiZXhwIjox"
                                    "ODAwMDAwMDAwfQ.",
                                    "n", NOW, id, NULL),
                     MS_ERR_AUTH);
    ck_assert_int_eq(ms_auth_verify(a,
                                    "eyJhbGciOiJOb25lIn0.eyJzdWIiOiJhIiwibnMiOiJuIiwiZXhwIjox"
                                    "ODAwMDAwMDAwfQ.",
                                    "n", NOW, id, NULL),
                     MS_ERR_AUTH);
    /* HS512 with the right secret is still the wrong algorithm */
    char *hs512 = mint(JWT_ALG_HS512, SECRET, claims);
    ck_assert_int_eq(ms_auth_verify(a, hs512, "n", NOW, id, &why), MS_ERR_AUTH);
    ck_assert_str_eq(why, "algorithm mismatch");
    free(none);
    free(hs);
    free(both);
    free(hs512);
    ms_auth_destroy(a);
}
END_TEST

/* RFC 7515 §4.1.1: "alg" is case-sensitive. libjwt maps "hs256" to HS256; we must not. */
START_TEST(alg_case_sensitive)
{
    ms_auth_t *a = hs_verifier(-1);
    char id[MS_AUTH_PEER_ID_MAX + 1];
    const char *why = NULL;
    const char *claims = "{\"sub\":\"a\",\"ns\":\"n\",\"exp\":1800000000}";
    const char *bad[] = {"{\"alg\":\"hs256\",\"typ\":\"JWT\"}",
                         "{\"alg\":\"Hs256\"}",
                         "{\"alg\":\"HS256 \"}",
                         "{\"typ\":\"JWT\"}",
                         "{\"alg\":256}",
                         "[\"HS256\"]",
                         "{\"alg\":\"HS256\",\"alg\":\"HS256\"}"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char *tok = mint_raw_hs(bad[i], claims, SECRET);
        ck_assert_msg(ms_auth_verify(a, tok, "n", NOW, id, &why) == MS_ERR_AUTH, "%s accepted",
                      bad[i]);
        free(tok);
    }
    /* the same hand-made token with the exact spelling passes */
    char *tok = mint_raw_hs("{\"alg\":\"HS256\",\"typ\":\"JWT\"}", claims, SECRET);
    ck_assert_int_eq(ms_auth_verify(a, tok, "n", NOW, id, &why), MS_OK);
    ck_assert_str_eq(id, "a");
    free(tok);
    tok = mint_raw_hs("{\"alg\":\"hs256\"}", claims, SECRET);
    ck_assert_int_eq(ms_auth_verify(a, tok, "n", NOW, id, &why), MS_ERR_AUTH);
    ck_assert_str_eq(why, "algorithm mismatch");
    free(tok);
    ms_auth_destroy(a);
}
END_TEST

START_TEST(rs256_valid_and_confusion)
{
    ms_auth_config_t cfg = {.alg = MS_AUTH_RS256, .key_file = rsa_pub_path, .leeway_s = -1};
    ms_auth_t *a = NULL;
    char id[MS_AUTH_PEER_ID_MAX + 1];
    const char *why;
    const char *claims = "{\"sub\":\"carol\",\"ns\":[\"x\",\"n\"],\"exp\":1800000000}";
    ck_assert_int_eq(ms_auth_create(&a, &cfg), MS_OK);

    char *tok = mint(JWT_ALG_RS256, rsa_priv, claims);
    ck_assert_int_eq(ms_auth_verify(a, tok, "n", NOW, id, NULL), MS_OK);
    ck_assert_str_eq(id, "carol");
    free(tok);

    /* signed by another RSA key */
    tok = mint(JWT_ALG_RS256, rsa2_priv, claims);
    ck_assert_int_eq(ms_auth_verify(a, tok, "n", NOW, id, NULL), MS_ERR_AUTH);
    free(tok);

    /* the classic confusion: HS256 with the public key PEM (exact file bytes) as secret */
    tok = mint(JWT_ALG_HS256, rsa_pub, claims);
    ck_assert_int_eq(ms_auth_verify(a, tok, "n", NOW, id, &why), MS_ERR_AUTH);
    ck_assert_str_eq(why, "algorithm mismatch");
    free(tok);

    /* ES256 token against an RS256 verifier */
    tok = mint(JWT_ALG_ES256, ec_priv, claims);
    ck_assert_int_eq(ms_auth_verify(a, tok, "n", NOW, id, NULL), MS_ERR_AUTH);
    free(tok);
    ms_auth_destroy(a);
}
END_TEST

START_TEST(es256_valid)
{
    ms_auth_config_t cfg = {.alg = MS_AUTH_ES256, .key_pem = ec_pub, .leeway_s = -1};
    ms_auth_t *a = NULL;
    char id[MS_AUTH_PEER_ID_MAX + 1];
    const char *claims = "{\"sub\":\"dave\",\"ns\":\"*\",\"exp\":1800000000}";
    ck_assert_int_eq(ms_auth_create(&a, &cfg), MS_OK);
    char *tok = mint(JWT_ALG_ES256, ec_priv, claims);
    /* JOSE form, R||S (64 bytes = 86 base64url chars), not DER: interoperable */
    ck_assert_uint_eq(strlen(strrchr(tok, '.') + 1), 86);
    ck_assert_int_eq(ms_auth_verify(a, tok, "any", NOW, id, NULL), MS_OK);
    ck_assert_str_eq(id, "dave");
    free(tok);
    /* confusion with the EC public key as HMAC secret */
    tok = mint(JWT_ALG_HS256, ec_pub, claims);
    ck_assert_int_eq(ms_auth_verify(a, tok, "any", NOW, id, NULL), MS_ERR_AUTH);
    free(tok);
    tok = mint(JWT_ALG_RS256, rsa_priv, claims);
    ck_assert_int_eq(ms_auth_verify(a, tok, "any", NOW, id, NULL), MS_ERR_AUTH);
    free(tok);
    ms_auth_destroy(a);

    /* the same key from a file */
    cfg.key_pem = NULL;
    cfg.key_file = ec_pub_path;
    ck_assert_int_eq(ms_auth_create(&a, &cfg), MS_OK);
    ms_auth_destroy(a);
}
END_TEST

START_TEST(create_rejects_bad_config)
{
    ms_auth_t *a = (ms_auth_t *)1;
    ms_auth_config_t cfg = {.alg = MS_AUTH_HS256, .leeway_s = -1};
    ck_assert_int_eq(ms_auth_create(&a, &cfg), MS_ERR_INVAL);
    ck_assert_ptr_null(a);
    cfg.secret = "";
    ck_assert_int_eq(ms_auth_create(&a, &cfg), MS_ERR_INVAL);
    cfg.secret = "s";
    cfg.leeway_s = MS_AUTH_LEEWAY_MAX + 1;
    ck_assert_int_eq(ms_auth_create(&a, &cfg), MS_ERR_INVAL);

    ms_auth_config_t rs = {.alg = MS_AUTH_RS256, .leeway_s = -1};
    ck_assert_int_eq(ms_auth_create(&a, &rs), MS_ERR_INVAL); /* no key */
    rs.key_pem = ec_pub;
    ck_assert_int_eq(ms_auth_create(&a, &rs), MS_ERR_INVAL); /* wrong key type */
    rs.key_pem = rsa_priv;
    ck_assert_int_eq(ms_auth_create(&a, &rs), MS_ERR_INVAL); /* a private key */
    rs.key_pem = NULL;
    rs.key_file = rsa_priv_path;
    ck_assert_int_eq(ms_auth_create(&a, &rs), MS_ERR_INVAL);
    rs.key_file = "/nonexistent/key.pem";
    ck_assert_int_eq(ms_auth_create(&a, &rs), MS_ERR_IO);
    rs.key_file = rsa_pub_path;
    rs.key_pem = rsa_pub;
    ck_assert_int_eq(ms_auth_create(&a, &rs), MS_ERR_INVAL); /* both */

    ms_auth_config_t es = {.alg = MS_AUTH_ES256, .key_pem = rsa_pub, .leeway_s = -1};
    ck_assert_int_eq(ms_auth_create(&a, &es), MS_ERR_INVAL);
    es.key_pem = "not a pem";
    ck_assert_int_eq(ms_auth_create(&a, &es), MS_ERR_INVAL);
    ck_assert_ptr_null(a);

    ms_auth_alg_t alg;
    ck_assert_int_eq(ms_auth_alg_parse("rs256", &alg), MS_OK);
    ck_assert_int_eq(alg, MS_AUTH_RS256);
    ck_assert_int_eq(ms_auth_alg_parse("none", &alg), MS_ERR_INVAL);
    ms_auth_destroy(NULL);
}
END_TEST

START_TEST(sub_rules)
{
    const char *why;
    char claims[512];
    ck_assert_int_eq(check_claims("{\"ns\":\"n\",\"exp\":1800000000}", "n", &why), MS_ERR_AUTH);
    ck_assert_str_eq(why, "missing sub");
    ck_assert_int_eq(check_claims("{\"sub\":42,\"ns\":\"n\",\"exp\":1800000000}", "n", NULL),
                     MS_ERR_AUTH);
    static const char *bad[] = {"", "a b", "a/b", "caf\\u00e9", "a\\nb", "<x>", NULL};
    for (int i = 0; bad[i]; i++) {
        snprintf(claims, sizeof claims, "{\"sub\":\"%s\",\"ns\":\"n\",\"exp\":1800000000}", bad[i]);
        ck_assert_int_eq(check_claims(claims, "n", &why), MS_ERR_AUTH);
        ck_assert_str_eq(why, "invalid sub");
    }
    char id[MS_AUTH_PEER_ID_MAX + 2];
    memset(id, 'x', sizeof id - 1);
    id[MS_AUTH_PEER_ID_MAX] = '\0';
    snprintf(claims, sizeof claims, "{\"sub\":\"%s\",\"ns\":\"n\",\"exp\":1800000000}", id);
    ck_assert_int_eq(check_claims(claims, "n", NULL), MS_OK);
    id[MS_AUTH_PEER_ID_MAX] = 'x';
    id[MS_AUTH_PEER_ID_MAX + 1] = '\0';
    snprintf(claims, sizeof claims, "{\"sub\":\"%s\",\"ns\":\"n\",\"exp\":1800000000}", id);
    ck_assert_int_eq(check_claims(claims, "n", NULL), MS_ERR_AUTH);
    ck_assert_int_eq(
        check_claims("{\"sub\":\"A-z.0_9:x@y\",\"ns\":\"n\",\"exp\":1800000000}", "n", NULL),
        MS_OK);
}
END_TEST

START_TEST(namespace_rules)
{
    const char *why;
    ck_assert_int_eq(
        check_claims("{\"sub\":\"a\",\"ns\":\"room1\",\"exp\":1800000000}", "room2", &why),
        MS_ERR_FORBIDDEN);
    ck_assert_str_eq(why, "namespace not allowed");
    ck_assert_int_eq(check_claims("{\"sub\":\"a\",\"ns\":\"*\",\"exp\":1800000000}", "room2", NULL),
                     MS_OK);
    ck_assert_int_eq(
        check_claims("{\"sub\":\"a\",\"ns\":[\"r1\",\"room2\"],\"exp\":1800000000}", "room2", NULL),
        MS_OK);
    ck_assert_int_eq(
        check_claims("{\"sub\":\"a\",\"ns\":[\"r1\",\"*\"],\"exp\":1800000000}", "room2", NULL),
        MS_OK);
    ck_assert_int_eq(
        check_claims("{\"sub\":\"a\",\"ns\":[\"r1\",\"r3\"],\"exp\":1800000000}", "room2", NULL),
        MS_ERR_FORBIDDEN);
    ck_assert_int_eq(check_claims("{\"sub\":\"a\",\"ns\":[],\"exp\":1800000000}", "room2", NULL),
                     MS_ERR_FORBIDDEN);
    /* a prefix or case variant is not the namespace */
    ck_assert_int_eq(
        check_claims("{\"sub\":\"a\",\"ns\":\"room\",\"exp\":1800000000}", "room2", NULL),
        MS_ERR_FORBIDDEN);
    ck_assert_int_eq(
        check_claims("{\"sub\":\"a\",\"ns\":\"ROOM2\",\"exp\":1800000000}", "room2", NULL),
        MS_ERR_FORBIDDEN);
    /* malformed claims are bad tokens, not forbidden */
    ck_assert_int_eq(check_claims("{\"sub\":\"a\",\"exp\":1800000000}", "room2", &why),
                     MS_ERR_AUTH);
    ck_assert_str_eq(why, "missing or invalid ns");
    ck_assert_int_eq(check_claims("{\"sub\":\"a\",\"ns\":7,\"exp\":1800000000}", "room2", NULL),
                     MS_ERR_AUTH);
    ck_assert_int_eq(
        check_claims("{\"sub\":\"a\",\"ns\":[\"room2\",7],\"exp\":1800000000}", "room2", NULL),
        MS_ERR_AUTH);
    ck_assert_int_eq(check_claims("{\"sub\":\"a\",\"ns\":\"\",\"exp\":1800000000}", "room2", NULL),
                     MS_ERR_AUTH);
    /* an expired token for the wrong namespace is unauthorized, not forbidden */
    ck_assert_int_eq(check_claims("{\"sub\":\"a\",\"ns\":\"x\",\"exp\":1}", "room2", NULL),
                     MS_ERR_AUTH);
}
END_TEST

START_TEST(garbage_and_arguments)
{
    ms_auth_t *a = hs_verifier(-1);
    char id[MS_AUTH_PEER_ID_MAX + 1];
    static const char *cases[] = {"",    ".",          "..",           "a.b.c",
                                  "a.b", "eyJ9.eyJ9.", "\xff\xfe.x.y", NULL};
    for (int i = 0; cases[i]; i++)
        ck_assert_int_eq(ms_auth_verify(a, cases[i], "n", NOW, id, NULL), MS_ERR_AUTH);
    char *big = malloc(MS_AUTH_TOKEN_MAX + 2);
    ck_assert_ptr_nonnull(big);
    memset(big, 'A', MS_AUTH_TOKEN_MAX + 1);
    big[MS_AUTH_TOKEN_MAX + 1] = '\0';
    const char *why;
    ck_assert_int_eq(ms_auth_verify(a, big, "n", NOW, id, &why), MS_ERR_AUTH);
    ck_assert_str_eq(why, "token too long");
    free(big);
    char *tok = mint_hs("{\"sub\":\"a\",\"ns\":\"n\",\"exp\":1800000000}");
    ck_assert_int_eq(ms_auth_verify(NULL, tok, "n", NOW, id, NULL), MS_ERR_INVAL);
    ck_assert_int_eq(ms_auth_verify(a, NULL, "n", NOW, id, NULL), MS_ERR_INVAL);
    ck_assert_int_eq(ms_auth_verify(a, tok, "", NOW, id, NULL), MS_ERR_INVAL);
    ck_assert_int_eq(ms_auth_verify(a, tok, NULL, NOW, id, NULL), MS_ERR_INVAL);
    ck_assert_int_eq(ms_auth_verify(a, tok, "n", NOW, NULL, NULL), MS_ERR_INVAL);
    free(tok);
    ms_auth_destroy(a);
}
END_TEST

START_TEST(bearer)
{
    ck_assert(ms_auth_bearer_ok("Bearer s3cret", "s3cret"));
    ck_assert(ms_auth_bearer_ok("bearer s3cret", "s3cret"));
    ck_assert(ms_auth_bearer_ok("  BEARER   s3cret  ", "s3cret"));
    ck_assert(!ms_auth_bearer_ok("Bearer s3cre", "s3cret"));
    ck_assert(!ms_auth_bearer_ok("Bearer s3cret2", "s3cret"));
    ck_assert(!ms_auth_bearer_ok("Bearer S3CRET", "s3cret"));
    ck_assert(!ms_auth_bearer_ok("Bearers3cret", "s3cret"));
    ck_assert(!ms_auth_bearer_ok("Basic s3cret", "s3cret"));
    ck_assert(!ms_auth_bearer_ok("s3cret", "s3cret"));
    ck_assert(!ms_auth_bearer_ok("Bearer ", "s3cret"));
    ck_assert(!ms_auth_bearer_ok("Bearer", "s3cret"));
    ck_assert(!ms_auth_bearer_ok("", "s3cret"));
    ck_assert(!ms_auth_bearer_ok(NULL, "s3cret"));
    /* no token configured: deny everything, even an empty bearer */
    ck_assert(!ms_auth_bearer_ok("Bearer ", ""));
    ck_assert(!ms_auth_bearer_ok("Bearer x", NULL));
    ck_assert(!ms_auth_bearer_ok("Bearer x", ""));
}
END_TEST

int main(void)
{
    keys_setup();
    Suite *s = suite_create("auth");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, hs256_valid);
    tcase_add_test(tc, exp_with_leeway);
    tcase_add_test(tc, exp_missing_or_not_a_number);
    tcase_add_test(tc, nbf_in_future);
    tcase_add_test(tc, wrong_secret);
    tcase_add_test(tc, tampered_payload);
    tcase_add_test(tc, alg_none_and_other_hmac);
    tcase_add_test(tc, alg_case_sensitive);
    tcase_add_test(tc, rs256_valid_and_confusion);
    tcase_add_test(tc, es256_valid);
    tcase_add_test(tc, create_rejects_bad_config);
    tcase_add_test(tc, sub_rules);
    tcase_add_test(tc, namespace_rules);
    tcase_add_test(tc, garbage_and_arguments);
    tcase_add_test(tc, bearer);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    keys_teardown();
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
