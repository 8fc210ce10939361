/* SPDX-License-Identifier: Apache-2.0 */
/* JWT verification for hello (libjwt 1.10) and the admin bearer check.
 *
 * libjwt checks the signature against whatever alg the token's header names,
 * using the one key we hand it. That is the algorithm-confusion hole (an HS256
 * token HMAC-signed with our RSA public key as the secret verifies), so the
 * decoded alg is compared with the configured one before anything else is
 * believed. libjwt 1.10 does not check exp/nbf; the claims are read here, from
 * the grants as JSON, so that types are checked exactly (a string "exp" is not
 * an expiry).
 */
#include "auth.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>
#include <jwt.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/obj_mac.h>
#include <openssl/pem.h>
#include <openssl/sha.h>

#define KEY_FILE_MAX (64 * 1024)
#define RSA_MIN_BITS 2048
#define HEADER_MAX 1024 /* longest JOSE header accepted, decoded */

struct ms_auth {
    ms_auth_alg_t alg;
    jwt_alg_t jwt_alg;
    unsigned char *key; /* the secret, or the PEM text (NUL-terminated either way) */
    size_t key_len;     /* without the NUL */
    long leeway_s;
};

ms_err_t ms_auth_alg_parse(const char *name, ms_auth_alg_t *alg)
{
    if (!name || !alg)
        return MS_ERR_INVAL;
    if (!strcasecmp(name, "HS256"))
        *alg = MS_AUTH_HS256;
    else if (!strcasecmp(name, "RS256"))
        *alg = MS_AUTH_RS256;
    else if (!strcasecmp(name, "ES256"))
        *alg = MS_AUTH_ES256;
    else
        return MS_ERR_INVAL;
    return MS_OK;
}

/* Reads a whole (small) file into a NUL-terminated malloc'd buffer. */
static ms_err_t read_file(const char *path, unsigned char **out, size_t *out_len)
{
    ms_err_t err = MS_ERR_IO;
    unsigned char *buf = NULL;
    size_t len = 0;
    FILE *f = fopen(path, "rb");
    if (!f)
        return MS_ERR_IO;
    buf = malloc(KEY_FILE_MAX + 1);
    if (!buf) {
        err = MS_ERR_NOMEM;
        goto fail;
    }
    len = fread(buf, 1, KEY_FILE_MAX + 1, f);
    if (ferror(f))
        goto fail;
    if (len > KEY_FILE_MAX) {
        err = MS_ERR_INVAL;
        goto fail;
    }
    buf[len] = '\0';
    fclose(f);
    *out = buf;
    *out_len = len;
    return MS_OK;
fail:
    free(buf);
    fclose(f);
    return err;
}

/* Checks that pem holds a public key (SubjectPublicKeyInfo) fit for alg, so that
 * a wrong key fails at start-up rather than on every hello. */
static ms_err_t check_public_key(ms_auth_alg_t alg, const unsigned char *pem, size_t len)
{
    ms_err_t err = MS_ERR_INVAL;
    EVP_PKEY *pkey = NULL;
    BIO *bio = BIO_new_mem_buf(pem, (int)len);
    if (!bio)
        return MS_ERR_NOMEM;
    pkey = PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL);
    if (!pkey)
        goto fail;
    if (alg == MS_AUTH_RS256) {
        if (!EVP_PKEY_is_a(pkey, "RSA") || EVP_PKEY_get_bits(pkey) < RSA_MIN_BITS)
            goto fail;
    } else {
        char group[64];
        size_t glen = 0;
        if (!EVP_PKEY_is_a(pkey, "EC") ||
            !EVP_PKEY_get_group_name(pkey, group, sizeof group, &glen) ||
            strcmp(group, SN_X9_62_prime256v1) != 0)
            goto fail;
    }
    err = MS_OK;
fail:
    EVP_PKEY_free(pkey);
    BIO_free(bio);
    return err;
}

ms_err_t ms_auth_create(ms_auth_t **out, const ms_auth_config_t *cfg)
{
    ms_err_t err = MS_ERR_INVAL;
    ms_auth_t *a = NULL;
    if (!out || !cfg)
        return MS_ERR_INVAL;
    *out = NULL;
    if (cfg->leeway_s > MS_AUTH_LEEWAY_MAX)
        return MS_ERR_INVAL;
    a = calloc(1, sizeof *a);
    if (!a)
        return MS_ERR_NOMEM;
    a->alg = cfg->alg;
    a->leeway_s = cfg->leeway_s < 0 ? MS_AUTH_LEEWAY_DEFAULT : cfg->leeway_s;

    switch (cfg->alg) {
    case MS_AUTH_HS256:
        a->jwt_alg = JWT_ALG_HS256;
        if (!cfg->secret || !cfg->secret[0])
            goto fail;
        a->key_len = strlen(cfg->secret);
        a->key = malloc(a->key_len + 1);
        if (!a->key) {
            err = MS_ERR_NOMEM;
            goto fail;
        }
        memcpy(a->key, cfg->secret, a->key_len + 1);
        break;
    case MS_AUTH_RS256:
    case MS_AUTH_ES256:
        a->jwt_alg = cfg->alg == MS_AUTH_RS256 ? JWT_ALG_RS256 : JWT_ALG_ES256;
        if (!cfg->key_file == !cfg->key_pem)
            goto fail;
        if (cfg->key_file) {
            err = read_file(cfg->key_file, &a->key, &a->key_len);
            if (err != MS_OK)
                goto fail;
        } else {
            a->key_len = strlen(cfg->key_pem);
            a->key = malloc(a->key_len + 1);
            if (!a->key) {
                err = MS_ERR_NOMEM;
                goto fail;
            }
            memcpy(a->key, cfg->key_pem, a->key_len + 1);
        }
        if (a->key_len == 0 || a->key_len > KEY_FILE_MAX) {
            err = MS_ERR_INVAL;
            goto fail;
        }
        err = check_public_key(cfg->alg, a->key, a->key_len);
        if (err != MS_OK)
            goto fail;
        break;
    default:
        goto fail;
    }
    *out = a;
    return MS_OK;
fail:
    ms_auth_destroy(a);
    return err;
}

void ms_auth_destroy(ms_auth_t *a)
{
    if (!a)
        return;
    if (a->key) {
        OPENSSL_cleanse(a->key, a->key_len);
        free(a->key);
    }
    free(a);
}

bool ms_auth_peer_id_valid(const char *id)
{
    size_t n = 0;
    if (!id)
        return false;
    for (const char *p = id; *p; p++, n++) {
        char c = *p;
        bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                  c == '.' || c == '_' || c == ':' || c == '@' || c == '-';
        if (!ok || n >= MS_AUTH_PEER_ID_MAX)
            return false;
    }
    return n > 0;
}

/* Decodes unpadded base64url (RFC 7515 §2) of n chars into out (room for
 * n * 3 / 4 bytes). Returns the decoded length, or -1 for a character outside
 * the alphabet, padding, or a length that no encoding produces. */
static long b64url_decode(const char *s, size_t n, unsigned char *out)
{
    uint32_t acc = 0;
    int bits = 0;
    long len = 0;
    if (n % 4 == 1)
        return -1;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        int v;
        if (c >= 'A' && c <= 'Z')
            v = c - 'A';
        else if (c >= 'a' && c <= 'z')
            v = c - 'a' + 26;
        else if (c >= '0' && c <= '9')
            v = c - '0' + 52;
        else if (c == '-')
            v = 62;
        else if (c == '_')
            v = 63;
        else
            return -1;
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[len++] = (unsigned char)(acc >> bits);
        }
    }
    return len;
}

/* Reads the JOSE header (the token's first segment) ourselves, before libjwt:
 * libjwt maps "alg" to its enum case-insensitively, and RFC 7515 §4.1.1 says the
 * value is case-sensitive, so "hs256" must not pass as HS256. Only a JSON
 * object with a string "alg" equal to want is accepted. */
static ms_err_t header_check(const char *token, const char *want, const char **reason)
{
    unsigned char buf[HEADER_MAX * 3 / 4 + 4];
    const char *dot = strchr(token, '.');
    json_t *hdr = NULL;
    const char *alg;
    ms_err_t err = MS_ERR_AUTH;
    long n;
    if (!dot || (size_t)(dot - token) > HEADER_MAX) {
        *reason = "malformed header";
        return MS_ERR_AUTH;
    }
    n = b64url_decode(token, (size_t)(dot - token), buf);
    if (n <= 0) {
        *reason = "malformed header";
        return MS_ERR_AUTH;
    }
    hdr = json_loadb((const char *)buf, (size_t)n, JSON_REJECT_DUPLICATES, NULL);
    alg = json_string_value(json_object_get(hdr, "alg"));
    if (!alg) {
        *reason = "missing alg";
        goto fail;
    }
    if (strcmp(alg, want) != 0) {
        *reason = "algorithm mismatch";
        goto fail;
    }
    err = MS_OK;
fail:
    json_decref(hdr);
    return err;
}

static const char *alg_name(ms_auth_alg_t alg)
{
    return alg == MS_AUTH_RS256 ? "RS256" : alg == MS_AUTH_ES256 ? "ES256" : "HS256";
}

/* Reads a NumericDate claim. Returns false if it is absent or not a number
 * within range; fractional seconds are truncated toward the past. */
static bool numeric_date(json_t *claims, const char *name, int64_t *out)
{
    json_t *v = json_object_get(claims, name);
    if (json_is_integer(v)) {
        *out = (int64_t)json_integer_value(v);
        return true;
    }
    if (json_is_real(v)) {
        double d = json_real_value(v);
        if (!isfinite(d) || d < -9.0e18 || d > 9.0e18)
            return false;
        *out = (int64_t)d; /* toward zero, then down: floor without libm */
        if ((double)*out > d)
            (*out)--;
        return true;
    }
    return false;
}

/* MS_OK if ns is allowed by the "ns" claim, MS_ERR_FORBIDDEN if the claim is
 * well formed but does not name it, MS_ERR_AUTH if the claim is malformed. */
static ms_err_t ns_allowed(json_t *claim, const char *ns)
{
    size_t i;
    json_t *v;
    bool found = false;
    if (json_is_string(claim)) {
        const char *s = json_string_value(claim);
        if (!s[0])
            return MS_ERR_AUTH;
        return !strcmp(s, "*") || !strcmp(s, ns) ? MS_OK : MS_ERR_FORBIDDEN;
    }
    if (!json_is_array(claim))
        return MS_ERR_AUTH;
    json_array_foreach(claim, i, v)
    {
        const char *s = json_string_value(v);
        if (!s || !s[0])
            return MS_ERR_AUTH;
        if (!strcmp(s, "*") || !strcmp(s, ns))
            found = true;
    }
    return found ? MS_OK : MS_ERR_FORBIDDEN;
}

ms_err_t ms_auth_verify(const ms_auth_t *a, const char *token, const char *ns, int64_t now,
                        char peer_id[MS_AUTH_PEER_ID_MAX + 1], const char **why)
{
    ms_err_t err = MS_ERR_AUTH;
    const char *reason = "malformed token or bad signature";
    jwt_t *jwt = NULL;
    char *claims_text = NULL;
    json_t *claims = NULL;
    const char *sub;
    int64_t exp, nbf;
    int rc;

    if (!a || !token || !ns || !ns[0] || !peer_id) {
        err = MS_ERR_INVAL;
        reason = "invalid argument";
        goto fail;
    }
    if (strnlen(token, MS_AUTH_TOKEN_MAX + 1) > MS_AUTH_TOKEN_MAX) {
        reason = "token too long";
        goto fail;
    }
    err = header_check(token, alg_name(a->alg), &reason);
    if (err != MS_OK)
        goto fail;
    err = MS_ERR_AUTH;
    /* A key is always passed, so libjwt itself refuses alg "none". */
    rc = jwt_decode(&jwt, token, a->key, (int)a->key_len);
    if (rc != 0) {
        jwt = NULL;
        if (rc == ENOMEM) {
            err = MS_ERR_NOMEM;
            reason = "out of memory";
        }
        goto fail;
    }
    if (jwt_get_alg(jwt) != a->jwt_alg) {
        reason = "algorithm mismatch";
        goto fail;
    }
    claims_text = jwt_get_grants_json(jwt, NULL);
    if (!claims_text) {
        reason = "no claims";
        goto fail;
    }
    claims = json_loads(claims_text, JSON_REJECT_DUPLICATES, NULL);
    if (!json_is_object(claims)) {
        reason = "claims are not an object";
        goto fail;
    }

    if (!numeric_date(claims, "exp", &exp)) {
        reason = "missing or invalid exp";
        goto fail;
    }
    /* now - leeway cannot overflow for any real clock; exp + leeway could. */
    if (now - a->leeway_s >= exp) {
        reason = "expired";
        goto fail;
    }
    if (json_object_get(claims, "nbf")) {
        if (!numeric_date(claims, "nbf", &nbf)) {
            reason = "invalid nbf";
            goto fail;
        }
        if (now + a->leeway_s < nbf) {
            reason = "not yet valid (nbf)";
            goto fail;
        }
    }
    sub = json_string_value(json_object_get(claims, "sub"));
    if (!sub) {
        reason = "missing sub";
        goto fail;
    }
    if (!ms_auth_peer_id_valid(sub)) {
        reason = "invalid sub";
        goto fail;
    }
    err = ns_allowed(json_object_get(claims, "ns"), ns);
    if (err != MS_OK) {
        reason = err == MS_ERR_FORBIDDEN ? "namespace not allowed" : "missing or invalid ns";
        goto fail;
    }

    memcpy(peer_id, sub, strlen(sub) + 1);
    reason = "ok";
fail:
    if (why)
        *why = reason;
    json_decref(claims);
    free(claims_text);
    jwt_free(jwt);
    return err;
}

static bool is_space(char c)
{
    return c == ' ' || c == '\t';
}

bool ms_auth_bearer_ok(const char *authorization, const char *token)
{
    unsigned char want[SHA256_DIGEST_LENGTH], got[SHA256_DIGEST_LENGTH];
    const char *p, *end;
    if (!token || !token[0] || !authorization)
        return false;
    p = authorization;
    while (is_space(*p))
        p++;
    if (strncasecmp(p, "Bearer", 6) != 0 || !is_space(p[6]))
        return false;
    p += 6;
    while (is_space(*p))
        p++;
    end = p + strlen(p);
    while (end > p && is_space(end[-1]))
        end--;
    if (end == p)
        return false;
    /* Comparing digests keeps the time independent of both lengths and of where
     * the first difference is. */
    SHA256((const unsigned char *)p, (size_t)(end - p), got);
    SHA256((const unsigned char *)token, strlen(token), want);
    return CRYPTO_memcmp(got, want, sizeof want) == 0;
}
