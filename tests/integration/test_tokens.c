/* SPDX-License-Identifier: Apache-2.0 */
/* Hello tokens through a real gateway: key rotation by kid from a JWKS file, iss and aud checks,
 * clock-skew leeway, and the case-sensitive alg (--jwt-jwks-file, --jwt-issuer, --jwt-audience,
 * --jwt-leeway-s). */
#include <check.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cluster.h"
#include "testutil.h"
#include "wsclient.h"

#define OLD_KEY "rotation-old-key-0123456789abcdef"
#define NEW_KEY "rotation-new-key-0123456789abcdef"
#define MAIN_SECRET "rotation-main-secret-0123456789ab"
#define ISS "https://id.example"
#define AUD "meshsig-test"
#define LEEWAY 20

static cluster_t cl;
static int gw;
static char jwks_path[300];

static size_t b64url(const unsigned char *d, size_t n, char *out)
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
    return o;
}

static void cluster_up(void)
{
    char k1[64], k2[64];
    ck_assert_int_eq(cluster_start(&cl, "admin"), 0);
    b64url((const unsigned char *)OLD_KEY, strlen(OLD_KEY), k1);
    b64url((const unsigned char *)NEW_KEY, strlen(NEW_KEY), k2);
    snprintf(jwks_path, sizeof jwks_path, "%s/jwks.json", cl.dir);
    FILE *f = fopen(jwks_path, "w");
    ck_assert_ptr_nonnull(f);
    fprintf(f,
            "{\"keys\":[{\"kty\":\"oct\",\"kid\":\"old\",\"k\":\"%s\"},"
            "{\"kty\":\"oct\",\"kid\":\"new\",\"k\":\"%s\",\"alg\":\"HS256\"}]}",
            k1, k2);
    ck_assert_int_eq(fclose(f), 0);
    char leeway[16];
    snprintf(leeway, sizeof leeway, "%d", LEEWAY);
    const char *args[] = {"--jwt-secret",
                          MAIN_SECRET,
                          "--jwt-jwks-file",
                          jwks_path,
                          "--jwt-issuer",
                          ISS,
                          "--jwt-audience",
                          AUD,
                          "--jwt-leeway-s",
                          leeway,
                          NULL};
    gw = cluster_add_gateway(&cl, "gw-tokens", args);
    ck_assert_int_ge(gw, 0);
}

static void cluster_down(void)
{
    cluster_stop(&cl);
}

/* A token with a hand-written header, claims and an HS256 signature. Caller frees. */
static char *token(const char *header, const char *claims, const char *key)
{
    char *tok = malloc(4096);
    unsigned char mac[32];
    unsigned int maclen = 0;
    size_t n;
    ck_assert_ptr_nonnull(tok);
    n = b64url((const unsigned char *)header, strlen(header), tok);
    tok[n++] = '.';
    n += b64url((const unsigned char *)claims, strlen(claims), tok + n);
    ck_assert_ptr_nonnull(
        HMAC(EVP_sha256(), key, (int)strlen(key), (unsigned char *)tok, n, mac, &maclen));
    tok[n++] = '.';
    b64url(mac, maclen, tok + n);
    return tok;
}

/* Claims for peer sub in namespace "rot", with iss/aud as given (NULL: left
 * out) and exp/nbf relative to now. */
static char *claims(const char *sub, const char *iss, const char *aud, long exp_in, long nbf_in)
{
    char *c = malloc(512);
    long now = (long)time(NULL);
    int n;
    ck_assert_ptr_nonnull(c);
    n = snprintf(c, 512, "{\"sub\":\"%s\",\"ns\":\"rot\",\"exp\":%ld", sub, now + exp_in);
    if (nbf_in)
        n += snprintf(c + n, 512 - (size_t)n, ",\"nbf\":%ld", now + nbf_in);
    if (iss)
        n += snprintf(c + n, 512 - (size_t)n, ",\"iss\":\"%s\"", iss);
    if (aud)
        n += snprintf(c + n, 512 - (size_t)n, ",\"aud\":\"%s\"", aud);
    snprintf(c + n, 512 - (size_t)n, "}");
    return c;
}

/* Says hello with tok on a new connection; returns the error code, or
 * "welcome". */
static void hello_expect(const char *tok, const char *want)
{
    wsc_t *c = wsc_connect(cl.gw_port[gw], NULL, T_MS);
    ck_assert_ptr_nonnull(c);
    send_json(c, "{\"id\":\"h\",\"hello\":{\"namespace\":\"rot\",\"token\":\"%s\"}}", tok);
    if (!strcmp(want, "welcome")) {
        json_t *j = recv_json(c);
        ck_assert_msg(json_object_get(j, "welcome") != NULL, "no welcome for %s", tok);
        json_decref(j);
    } else {
        expect_error(c, want, "h");
    }
    wsc_free(c);
}

START_TEST(rotation_by_kid)
{
    char *cl_ok = claims("ann", ISS, AUD, 60, 0);
    char *t;
    /* both generations of the key are accepted at once, each under its kid */
    hello_expect(t = token("{\"alg\":\"HS256\",\"kid\":\"old\"}", cl_ok, OLD_KEY), "welcome");
    free(t);
    hello_expect(t = token("{\"alg\":\"HS256\",\"kid\":\"new\"}", cl_ok, NEW_KEY), "welcome");
    free(t);
    /* the key without a kid (--jwt-secret) still works */
    hello_expect(t = token("{\"alg\":\"HS256\",\"typ\":\"JWT\"}", cl_ok, MAIN_SECRET), "welcome");
    free(t);
    /* a key under another key's kid, and an unknown kid */
    hello_expect(t = token("{\"alg\":\"HS256\",\"kid\":\"new\"}", cl_ok, OLD_KEY), "UNAUTHORIZED");
    free(t);
    hello_expect(t = token("{\"alg\":\"HS256\",\"kid\":\"older\"}", cl_ok, OLD_KEY),
                 "UNAUTHORIZED");
    free(t);
    /* RFC 7515: "hs256" is not HS256 */
    hello_expect(t = token("{\"alg\":\"hs256\",\"kid\":\"new\"}", cl_ok, NEW_KEY), "UNAUTHORIZED");
    free(t);
    free(cl_ok);
}
END_TEST

START_TEST(issuer_audience_leeway)
{
    const char *hdr = "{\"alg\":\"HS256\",\"kid\":\"new\"}";
    struct {
        char *claims;
        const char *want;
    } cases[] = {
        {claims("bo", "https://evil.example", AUD, 60, 0), "UNAUTHORIZED"},
        {claims("bo", NULL, AUD, 60, 0), "UNAUTHORIZED"},
        {claims("bo", ISS, "someone-else", 60, 0), "UNAUTHORIZED"},
        {claims("bo", ISS, NULL, 60, 0), "UNAUTHORIZED"},
        /* expired by less than the leeway: still accepted; by more: refused */
        {claims("bo", ISS, AUD, -(LEEWAY / 2), 0), "welcome"},
        {claims("bo", ISS, AUD, -(LEEWAY + 10), 0), "UNAUTHORIZED"},
        /* not yet valid, within and beyond the leeway */
        {claims("cy", ISS, AUD, 60, LEEWAY / 2), "welcome"},
        {claims("cy", ISS, AUD, 600, LEEWAY + 60), "UNAUTHORIZED"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *t = token(hdr, cases[i].claims, NEW_KEY);
        hello_expect(t, cases[i].want);
        free(t);
        free(cases[i].claims);
    }
}
END_TEST

int main(void)
{
    Suite *s = suite_create("tokens");
    TCase *tc = tcase_create("cluster");
    tcase_add_unchecked_fixture(tc, cluster_up, cluster_down);
    tcase_add_checked_fixture(tc, client_up, client_down);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, rotation_by_kid);
    tcase_add_test(tc, issuer_audience_leeway);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
