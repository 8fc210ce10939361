/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer target: the hello credentials: JWT verification (common/auth.c), resume tokens
 * (common/resume.c) and the admin bearer check.
 *
 * Random bytes almost never carry a valid signature, which would leave every
 * check after it unreached; so the first byte picks a mode, and two modes sign
 * what the fuzzer wrote with the key the verifier holds:
 *   0  the rest is a token, verified as it is (JWT, resume token, bearer header)
 *   1  the rest is "header JSON\nclaims JSON": encoded and HS256-signed here,
 *      so the header and claim checks (alg, kid, exp, nbf, iss, aud, sub, ns)
 *      see arbitrary JSON
 *   2  the rest is a resume payload, signed here, so its decoder sees
 *      arbitrary bytes
 *   3  the rest is a token for the ES256 verifier
 *   4  the rest is a JWK Set, loaded as --jwt-jwks-file would be
 * The HS256 verifier holds two keys (no kid, and kid "k1" with the same
 * secret), an issuer and an audience, so kid selection and the iss/aud checks
 * are all reachable in mode 1.
 */
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "resume.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define SECRET "fuzz-secret-0123456789abcdef-0123"
#define NOW 1700000000
static const unsigned char resume_key[32] = "fuzz-resume-key-0123456789abcdef";
static ms_auth_t *hs, *es;

/* Any valid P-256 public key: mode 3 exercises parsing and the signature check. */
static const char ec_pub[] = "-----BEGIN PUBLIC KEY-----\n"
                             "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEPmSYyhLN+od06G1MEnyXE5r9sCx1\n"
                             "kY3wnz/N6j8gOQ+dvqZ8lT8yspnrzpUNgzTOYvB0OgiNrZNwTsjZVy3+KA==\n"
                             "-----END PUBLIC KEY-----\n";

static void setup(void)
{
    /* "k" is base64url(SECRET) */
    static const char jwks[] = "{\"keys\":[{\"kty\":\"oct\",\"kid\":\"k1\","
                               "\"k\":\"ZnV6ei1zZWNyZXQtMDEyMzQ1Njc4OWFiY2RlZi0wMTIz\"}]}";
    ms_auth_config_t c1 = {.alg = MS_AUTH_HS256,
                           .secret = SECRET,
                           .jwks_json = jwks,
                           .issuer = "me",
                           .audience = "meshsig",
                           .leeway_s = -1};
    ms_auth_config_t c2 = {.alg = MS_AUTH_ES256, .key_pem = ec_pub, .leeway_s = -1};
    if (ms_auth_create(&hs, &c1) != MS_OK || ms_auth_create(&es, &c2) != MS_OK)
        abort();
}

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

static void verify_jwt(const ms_auth_t *a, const char *tok)
{
    char id[MS_AUTH_PEER_ID_MAX + 1];
    const char *why = NULL;
    ms_err_t err = ms_auth_verify(a, tok, "ns", NOW, id, &why);
    if (!why)
        abort();
    if (err == MS_OK && !ms_auth_peer_id_valid(id))
        abort(); /* only a valid peer id may come out */
}

/* "<b64 a>.<b64 b>.<b64 mac>" with mac = HMAC-SHA256(key, prefix "<b64 a>.<b64 b>"),
 * or "<b64 a>.<b64 mac>" when b is NULL (resume tokens). */
static char *sign(const unsigned char *key, size_t key_len, const char *prefix, const uint8_t *a,
                  size_t alen, const uint8_t *b, size_t blen)
{
    size_t plen = strlen(prefix);
    char *tok = malloc(plen + (alen + blen) * 4 / 3 + 64 + 8), *p;
    unsigned char mac[32];
    unsigned int maclen = 0;
    if (!tok)
        abort();
    memcpy(tok, prefix, plen);
    p = tok + plen;
    p += b64url(a, alen, p);
    if (b) {
        *p++ = '.';
        p += b64url(b, blen, p);
    }
    if (!HMAC(EVP_sha256(), key, (int)key_len, (unsigned char *)tok, (size_t)(p - tok), mac,
              &maclen))
        abort();
    *p++ = '.';
    b64url(mac, maclen, p);
    /* The prefix is signed over but is not part of the token. */
    memmove(tok, tok + plen, strlen(tok + plen) + 1);
    return tok;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!hs)
        setup();
    if (size < 1 || size > 16384)
        return 0;
    int mode = data[0] % 5;
    data++;
    size--;
    char *s = malloc(size + 1);
    if (!s)
        abort();
    memcpy(s, data, size);
    s[size] = '\0';
    switch (mode) {
    case 0: {
        ms_resume_claims_t rc;
        const char *why;
        verify_jwt(hs, s);
        if (ms_resume_verify(resume_key, sizeof resume_key, s, NOW, &rc, &why) == MS_OK &&
            !ms_auth_peer_id_valid(rc.peer_id))
            abort();
        (void)ms_auth_bearer_ok(s, "admin-token");
        break;
    }
    case 1: {
        const uint8_t *nl = memchr(data, '\n', size);
        if (!nl)
            break;
        char *tok = sign((const unsigned char *)SECRET, strlen(SECRET), "", data,
                         (size_t)(nl - data), nl + 1, size - (size_t)(nl - data) - 1);
        verify_jwt(hs, tok);
        free(tok);
        break;
    }
    case 2: {
        ms_resume_claims_t rc;
        const char *why;
        char *tok = sign(resume_key, sizeof resume_key, "meshsig-resume-v1.", data, size, NULL, 0);
        if (ms_resume_verify(resume_key, sizeof resume_key, tok, NOW, &rc, &why) == MS_OK &&
            (!ms_auth_peer_id_valid(rc.peer_id) || !rc.ns[0]))
            abort();
        free(tok);
        break;
    }
    case 3:
        verify_jwt(es, s);
        break;
    case 4: {
        ms_auth_config_t c = {.alg = MS_AUTH_HS256, .jwks_json = s, .leeway_s = -1};
        ms_auth_t *a = NULL;
        char why[160];
        if (ms_auth_create_ex(&a, &c, why, sizeof why) == MS_OK) {
            if (ms_auth_key_count(a) == 0)
                abort();
            ms_auth_destroy(a);
        } else if (a || !why[0]) {
            abort(); /* a failure leaves nothing behind and says why */
        }
        break;
    }
    }
    free(s);
    return 0;
}
