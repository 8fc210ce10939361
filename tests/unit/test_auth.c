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
#include <openssl/core_names.h>
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

/* A token signed by libjwt with a "kid" header. Caller frees. */
static char *mint_kid(jwt_alg_t alg, const char *key, const char *kid, const char *claims)
{
    jwt_t *jwt = NULL;
    char *tok;
    ck_assert_int_eq(jwt_new(&jwt), 0);
    ck_assert_int_eq(jwt_add_grants_json(jwt, claims), 0);
    ck_assert_int_eq(jwt_add_header(jwt, "kid", kid), 0);
    ck_assert_int_eq(jwt_set_alg(jwt, alg, (const unsigned char *)key, (int)strlen(key)), 0);
    tok = jwt_encode_str(jwt);
    ck_assert_ptr_nonnull(tok);
    jwt_free(jwt);
    return tok;
}

/* The JWK (RFC 7517) of a PEM public key, RSA or EC P-256, as JSON text with
 * the given kid and extra members (e.g. ",\"alg\":\"RS256\""). Caller frees. */
static char *jwk_of(const char *pub_pem, const char *kid, const char *extra)
{
    BIO *bio = BIO_new_mem_buf(pub_pem, -1);
    EVP_PKEY *pkey = PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL);
    char *out = malloc(4096), a[700], b[700];
    ck_assert_ptr_nonnull(pkey);
    ck_assert_ptr_nonnull(out);
    if (EVP_PKEY_is_a(pkey, "RSA")) {
        BIGNUM *n = NULL, *e = NULL;
        unsigned char nb[512], eb[8];
        ck_assert(EVP_PKEY_get_bn_param(pkey, OSSL_PKEY_PARAM_RSA_N, &n));
        ck_assert(EVP_PKEY_get_bn_param(pkey, OSSL_PKEY_PARAM_RSA_E, &e));
        b64url(nb, (size_t)BN_bn2bin(n, nb), a);
        b64url(eb, (size_t)BN_bn2bin(e, eb), b);
        snprintf(out, 4096, "{\"kty\":\"RSA\",\"kid\":\"%s\",\"n\":\"%s\",\"e\":\"%s\"%s}", kid, a,
                 b, extra);
        BN_free(n);
        BN_free(e);
    } else {
        unsigned char pt[65];
        size_t len = 0;
        ck_assert(
            EVP_PKEY_get_octet_string_param(pkey, OSSL_PKEY_PARAM_PUB_KEY, pt, sizeof pt, &len));
        ck_assert_uint_eq(len, 65);
        b64url(pt + 1, 32, a);
        b64url(pt + 33, 32, b);
        snprintf(out, 4096,
                 "{\"kty\":\"EC\",\"crv\":\"P-256\",\"kid\":\"%s\",\"x\":\"%s\",\"y\":\"%s\"%s}",
                 kid, a, b, extra);
    }
    EVP_PKEY_free(pkey);
    BIO_free(bio);
    return out;
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

/* Key rotation: several keys at once, each picked by the token's kid. */
START_TEST(kid_selects_key)
{
    const char *claims = "{\"sub\":\"a\",\"ns\":\"n\",\"exp\":1800000000}";
    char jwks[512], id[MS_AUTH_PEER_ID_MAX + 1], k1[64], k2[64];
    const char *why = NULL;
    ms_auth_t *a = NULL;
    b64url((const unsigned char *)"old-secret-0123456789abcdef", 27, k1);
    b64url((const unsigned char *)"new-secret-0123456789abcdef", 27, k2);
    snprintf(
        jwks, sizeof jwks,
        "{\"keys\":[{\"kty\":\"oct\",\"kid\":\"2026-11\",\"k\":\"%s\"},"
        "{\"kty\":\"oct\",\"kid\":\"2026-12\",\"k\":\"%s\",\"alg\":\"HS256\",\"use\":\"sig\"}]}",
        k1, k2);
    ms_auth_config_t cfg = {
        .alg = MS_AUTH_HS256, .secret = SECRET, .jwks_json = jwks, .leeway_s = -1};
    ck_assert_int_eq(ms_auth_create(&a, &cfg), MS_OK);
    ck_assert_uint_eq(ms_auth_key_count(a), 3);
    char *t_old = mint_kid(JWT_ALG_HS256, "old-secret-0123456789abcdef", "2026-11", claims);
    char *t_new = mint_kid(JWT_ALG_HS256, "new-secret-0123456789abcdef", "2026-12", claims);
    char *t_none = mint_hs(claims);
    ck_assert_int_eq(ms_auth_verify(a, t_old, "n", NOW, id, &why), MS_OK);
    ck_assert_int_eq(ms_auth_verify(a, t_new, "n", NOW, id, &why), MS_OK);
    ck_assert_int_eq(ms_auth_verify(a, t_none, "n", NOW, id, &why), MS_OK);
    /* the right key under the wrong kid, an unknown kid, a kid that is not a string */
    char *t_swap = mint_kid(JWT_ALG_HS256, "old-secret-0123456789abcdef", "2026-12", claims);
    ck_assert_int_eq(ms_auth_verify(a, t_swap, "n", NOW, id, &why), MS_ERR_AUTH);
    char *t_unknown = mint_kid(JWT_ALG_HS256, "old-secret-0123456789abcdef", "2025", claims);
    ck_assert_int_eq(ms_auth_verify(a, t_unknown, "n", NOW, id, &why), MS_ERR_AUTH);
    ck_assert_str_eq(why, "unknown kid");
    char *t_num = mint_raw_hs("{\"alg\":\"HS256\",\"kid\":7}", claims, SECRET);
    ck_assert_int_eq(ms_auth_verify(a, t_num, "n", NOW, id, &why), MS_ERR_AUTH);
    ck_assert_str_eq(why, "kid is not a string");
    ms_auth_destroy(a);

    /* after rotation the old key is gone: its tokens fail, the new ones pass */
    snprintf(jwks, sizeof jwks, "{\"keys\":[{\"kty\":\"oct\",\"kid\":\"2026-12\",\"k\":\"%s\"}]}",
             k2);
    cfg.secret = NULL;
    ck_assert_int_eq(ms_auth_create(&a, &cfg), MS_OK);
    ck_assert_int_eq(ms_auth_verify(a, t_old, "n", NOW, id, &why), MS_ERR_AUTH);
    ck_assert_int_eq(ms_auth_verify(a, t_none, "n", NOW, id, &why), MS_ERR_AUTH);
    ck_assert_str_eq(why, "no key without a kid");
    ck_assert_int_eq(ms_auth_verify(a, t_new, "n", NOW, id, &why), MS_OK);
    ms_auth_destroy(a);
    free(t_old);
    free(t_new);
    free(t_none);
    free(t_swap);
    free(t_unknown);
    free(t_num);
}
END_TEST

START_TEST(jwks_rs256_es256)
{
    const char *claims = "{\"sub\":\"eve\",\"ns\":\"n\",\"exp\":1800000000}";
    char *rsa = jwk_of(rsa_pub, "r1", ",\"alg\":\"RS256\",\"use\":\"sig\"");
    char *ec = jwk_of(ec_pub, "e1", "");
    char jwks[8192], path[300], id[MS_AUTH_PEER_ID_MAX + 1];
    const char *why = NULL;
    ms_auth_t *a = NULL;
    snprintf(jwks, sizeof jwks, "{\"keys\":[%s,%s]}", rsa, ec);
    snprintf(path, sizeof path, "%s/jwks.json", tmpdir);
    write_file(path, jwks);
    /* the configured alg is for --jwt-secret/--jwt-key-file: a JWKS alone works with any */
    ms_auth_config_t cfg = {.alg = MS_AUTH_HS256, .jwks_file = path, .leeway_s = -1};
    ck_assert_int_eq(ms_auth_create(&a, &cfg), MS_OK);
    ck_assert_uint_eq(ms_auth_key_count(a), 2);

    char *t = mint_kid(JWT_ALG_RS256, rsa_priv, "r1", claims);
    ck_assert_int_eq(ms_auth_verify(a, t, "n", NOW, id, &why), MS_OK);
    ck_assert_str_eq(id, "eve");
    free(t);
    t = mint_kid(JWT_ALG_ES256, ec_priv, "e1", claims);
    ck_assert_int_eq(ms_auth_verify(a, t, "n", NOW, id, &why), MS_OK);
    free(t);
    /* a key is only used with its own algorithm: ES256 under the RSA key's kid,
     * and HS256 keyed with the RSA PEM under its kid */
    t = mint_kid(JWT_ALG_ES256, ec_priv, "r1", claims);
    ck_assert_int_eq(ms_auth_verify(a, t, "n", NOW, id, &why), MS_ERR_AUTH);
    ck_assert_str_eq(why, "algorithm mismatch");
    free(t);
    t = mint_kid(JWT_ALG_HS256, rsa_pub, "r1", claims);
    ck_assert_int_eq(ms_auth_verify(a, t, "n", NOW, id, &why), MS_ERR_AUTH);
    free(t);
    /* signed by another RSA key under the right kid */
    t = mint_kid(JWT_ALG_RS256, rsa2_priv, "r1", claims);
    ck_assert_int_eq(ms_auth_verify(a, t, "n", NOW, id, &why), MS_ERR_AUTH);
    free(t);
    ms_auth_destroy(a);
    unlink(path);

    /* malformed sets and keys are refused at start-up, with a reason */
    char bad[8192], reason[160];
    const char *cases[] = {
        "",
        "[]",
        "{\"keys\":[]}",
        "{\"keys\":{}}",
        "{\"keys\":[{\"kty\":\"oct\"}]}",
        "{\"keys\":[{\"kty\":\"oct\",\"k\":\"a+b/\"}]}",
        "{\"keys\":[{\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"x\":\"AAAA\"}]}",
        "{\"keys\":[{\"kty\":\"oct\",\"k\":\"AAAA\",\"alg\":\"RS256\"}]}",
        "{\"keys\":[{\"kty\":\"oct\",\"k\":\"AAAA\",\"use\":\"enc\"}]}",
        "{\"keys\":[{\"kty\":\"oct\",\"k\":\"AAAA\",\"kid\":1}]}",
        "{\"keys\":[{\"kty\":\"oct\",\"k\":\"AAAA\",\"kid\":\"x\"},{\"kty\":\"oct\",\"k\":\"BBBB\","
        "\"kid\":\"x\"}]}",
        "{\"keys\":[{\"kty\":\"EC\",\"crv\":\"P-384\",\"x\":\"AAAA\",\"y\":\"AAAA\"}]}",
        "{\"keys\":[{\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"AAAA\",\"y\":\"AAAA\"}]}",
        "{\"keys\":[{\"kty\":\"RSA\",\"n\":\"AQAB\",\"e\":\"AQAB\"}]}",
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ms_auth_config_t c = {.alg = MS_AUTH_HS256, .jwks_json = cases[i], .leeway_s = -1};
        a = (ms_auth_t *)1;
        ck_assert_msg(ms_auth_create_ex(&a, &c, reason, sizeof reason) == MS_ERR_INVAL,
                      "accepted %s", cases[i]);
        ck_assert_ptr_null(a);
        ck_assert_msg(reason[0], "no reason for %s", cases[i]);
    }
    /* an EC point off the curve */
    snprintf(bad, sizeof bad, "{\"keys\":[%s]}", ec);
    char *x = strstr(bad, "\"x\":\"") + 5;
    *x = *x == 'A' ? 'B' : 'A';
    ms_auth_config_t c = {.alg = MS_AUTH_HS256, .jwks_json = bad, .leeway_s = -1};
    ck_assert_int_eq(ms_auth_create_ex(&a, &c, reason, sizeof reason), MS_ERR_INVAL);
    free(rsa);
    free(ec);
}
END_TEST

START_TEST(issuer_audience_leeway)
{
    ms_auth_config_t cfg = {.alg = MS_AUTH_HS256,
                            .secret = SECRET,
                            .issuer = "https://id.example",
                            .audience = "meshsig",
                            .leeway_s = 5};
    ms_auth_t *a = NULL;
    char id[MS_AUTH_PEER_ID_MAX + 1];
    const char *why = NULL;
    ck_assert_int_eq(ms_auth_create(&a, &cfg), MS_OK);
    struct {
        const char *claims;
        ms_err_t want;
    } cases[] = {
        {"{\"sub\":\"a\",\"ns\":\"n\",\"exp\":1800000000,\"iss\":\"https://"
         "id.example\",\"aud\":\"meshsig\"}",
         MS_OK},
        {"{\"sub\":\"a\",\"ns\":\"n\",\"exp\":1800000000,\"iss\":\"https://"
         "id.example\",\"aud\":[\"x\","
         "\"meshsig\"]}",
         MS_OK},
        {"{\"sub\":\"a\",\"ns\":\"n\",\"exp\":1800000000,\"aud\":\"meshsig\"}", MS_ERR_AUTH},
        {"{\"sub\":\"a\",\"ns\":\"n\",\"exp\":1800000000,\"iss\":\"https://evil.example\","
         "\"aud\":\"meshsig\"}",
         MS_ERR_AUTH},
        {"{\"sub\":\"a\",\"ns\":\"n\",\"exp\":1800000000,\"iss\":[\"https://id.example\"],"
         "\"aud\":\"meshsig\"}",
         MS_ERR_AUTH},
        {"{\"sub\":\"a\",\"ns\":\"n\",\"exp\":1800000000,\"iss\":\"https://id.example\"}",
         MS_ERR_AUTH},
        {"{\"sub\":\"a\",\"ns\":\"n\",\"exp\":1800000000,\"iss\":\"https://id.example\",\"aud\":"
         "\"Meshsig\"}",
         MS_ERR_AUTH},
        {"{\"sub\":\"a\",\"ns\":\"n\",\"exp\":1800000000,\"iss\":\"https://"
         "id.example\",\"aud\":[]}",
         MS_ERR_AUTH},
        /* leeway 5 s: exp 4 s ago and nbf 4 s ahead pass, 5 s fail */
        {"{\"sub\":\"a\",\"ns\":\"n\",\"exp\":1699999996,\"iss\":\"https://id.example\",\"aud\":"
         "\"meshsig\"}",
         MS_OK},
        {"{\"sub\":\"a\",\"ns\":\"n\",\"exp\":1699999995,\"iss\":\"https://id.example\",\"aud\":"
         "\"meshsig\"}",
         MS_ERR_AUTH},
        {"{\"sub\":\"a\",\"ns\":\"n\",\"exp\":1800000000,\"nbf\":1700000005,\"iss\":\"https://"
         "id.example\",\"aud\":\"meshsig\"}",
         MS_OK},
        {"{\"sub\":\"a\",\"ns\":\"n\",\"exp\":1800000000,\"nbf\":1700000006,\"iss\":\"https://"
         "id.example\",\"aud\":\"meshsig\"}",
         MS_ERR_AUTH},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *tok = mint_hs(cases[i].claims);
        ck_assert_msg(ms_auth_verify(a, tok, "n", NOW, id, &why) == cases[i].want, "%s: %s",
                      cases[i].claims, why);
        free(tok);
    }
    ms_auth_destroy(a);
    /* without iss/aud configured, the claims are not required */
    a = hs_verifier(-1);
    char *tok = mint_hs("{\"sub\":\"a\",\"ns\":\"n\",\"exp\":1800000000,\"aud\":\"other\"}");
    ck_assert_int_eq(ms_auth_verify(a, tok, "n", NOW, id, &why), MS_OK);
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
    tcase_add_test(tc, kid_selects_key);
    tcase_add_test(tc, jwks_rs256_es256);
    tcase_add_test(tc, issuer_audience_leeway);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    keys_teardown();
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
