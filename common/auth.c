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
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/obj_mac.h>
#include <openssl/pem.h>
#include <openssl/sha.h>

#define KEY_FILE_MAX (64 * 1024)
#define RSA_MIN_BITS 2048
#define HEADER_MAX 1024 /* longest JOSE header accepted, decoded */

/* One verification key. kid "" is a key without an id (the --jwt-secret or
 * --jwt-key-file key, or a JWK without "kid"). */
typedef struct {
    char kid[MS_AUTH_KID_MAX + 1];
    ms_auth_alg_t alg;
    jwt_alg_t jwt_alg;
    unsigned char *key; /* the secret, or the public key as PEM (NUL-terminated either way) */
    size_t key_len;     /* without the NUL */
} auth_key_t;

struct ms_auth {
    auth_key_t keys[MS_AUTH_KEYS_MAX];
    size_t n_keys;
    long leeway_s;
    char *issuer;   /* NULL: iss not checked */
    char *audience; /* NULL: aud not checked */
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

static const char *alg_name(ms_auth_alg_t alg)
{
    return alg == MS_AUTH_RS256 ? "RS256" : alg == MS_AUTH_ES256 ? "ES256" : "HS256";
}

static jwt_alg_t jwt_alg_of(ms_auth_alg_t alg)
{
    return alg == MS_AUTH_RS256   ? JWT_ALG_RS256
           : alg == MS_AUTH_ES256 ? JWT_ALG_ES256
                                  : JWT_ALG_HS256;
}

/* Adds a key (copied) under kid. Refuses a second key with the same kid and
 * algorithm: the token could not say which one it means. */
static ms_err_t add_key(ms_auth_t *a, const char *kid, ms_auth_alg_t alg, const void *key,
                        size_t len)
{
    auth_key_t *k;
    if (strlen(kid) > MS_AUTH_KID_MAX || len == 0 || len > KEY_FILE_MAX)
        return MS_ERR_INVAL;
    for (size_t i = 0; i < a->n_keys; i++)
        if (a->keys[i].alg == alg && !strcmp(a->keys[i].kid, kid))
            return MS_ERR_INVAL;
    if (a->n_keys == MS_AUTH_KEYS_MAX)
        return MS_ERR_INVAL;
    k = &a->keys[a->n_keys];
    k->key = malloc(len + 1);
    if (!k->key)
        return MS_ERR_NOMEM;
    memcpy(k->key, key, len);
    k->key[len] = '\0';
    k->key_len = len;
    k->alg = alg;
    k->jwt_alg = jwt_alg_of(alg);
    snprintf(k->kid, sizeof k->kid, "%s", kid);
    a->n_keys++;
    return MS_OK;
}

/* The PEM text of a public key, for libjwt (which takes keys as PEM). */
static ms_err_t pkey_pem(EVP_PKEY *pkey, char **out, size_t *len)
{
    BIO *bio = BIO_new(BIO_s_mem());
    char *data;
    long n;
    if (!bio)
        return MS_ERR_NOMEM;
    if (!PEM_write_bio_PUBKEY(bio, pkey) || (n = BIO_get_mem_data(bio, &data)) <= 0) {
        BIO_free(bio);
        return MS_ERR_INVAL;
    }
    *out = malloc((size_t)n + 1);
    if (!*out) {
        BIO_free(bio);
        return MS_ERR_NOMEM;
    }
    memcpy(*out, data, (size_t)n);
    (*out)[n] = '\0';
    *len = (size_t)n;
    BIO_free(bio);
    return MS_OK;
}

/* A base64url JWK member decoded into a new buffer (at most max bytes). */
static unsigned char *jwk_bytes(json_t *jwk, const char *name, size_t max, size_t *len)
{
    const char *s = json_string_value(json_object_get(jwk, name));
    size_t n;
    unsigned char *buf;
    long got;
    if (!s || !(n = strlen(s)) || n > (max * 4 + 2) / 3)
        return NULL;
    buf = malloc(n * 3 / 4 + 4);
    if (!buf)
        return NULL;
    got = b64url_decode(s, n, buf);
    if (got <= 0) {
        free(buf);
        return NULL;
    }
    *len = (size_t)got;
    return buf;
}

/* Builds the public key of an RSA ({"kty":"RSA","n","e"}) or EC P-256
 * ({"kty":"EC","crv":"P-256","x","y"}) JWK (RFC 7518 §6) with OpenSSL. */
static ms_err_t jwk_public_key(json_t *jwk, ms_auth_alg_t alg, EVP_PKEY **out)
{
    ms_err_t err = MS_ERR_INVAL;
    OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
    OSSL_PARAM *params = NULL;
    EVP_PKEY_CTX *ctx = NULL;
    BIGNUM *n = NULL, *e = NULL;
    unsigned char *a = NULL, *b = NULL, point[65];
    size_t alen = 0, blen = 0;
    *out = NULL;
    if (!bld)
        return MS_ERR_NOMEM;
    if (alg == MS_AUTH_RS256) {
        if (!(a = jwk_bytes(jwk, "n", 2048, &alen)) || !(b = jwk_bytes(jwk, "e", 8, &blen)))
            goto fail;
        n = BN_bin2bn(a, (int)alen, NULL);
        e = BN_bin2bn(b, (int)blen, NULL);
        if (!n || !e || !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, n) ||
            !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, e))
            goto fail;
        ctx = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL);
    } else {
        const char *crv = json_string_value(json_object_get(jwk, "crv"));
        if (!crv || strcmp(crv, "P-256") != 0)
            goto fail;
        /* Coordinates are exactly 32 bytes each (RFC 7518 §6.2.1.2). */
        if (!(a = jwk_bytes(jwk, "x", 32, &alen)) || !(b = jwk_bytes(jwk, "y", 32, &blen)) ||
            alen != 32 || blen != 32)
            goto fail;
        point[0] = 0x04; /* uncompressed */
        memcpy(point + 1, a, 32);
        memcpy(point + 33, b, 32);
        if (!OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, SN_X9_62_prime256v1,
                                             0) ||
            !OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, point, sizeof point))
            goto fail;
        ctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
    }
    if (!ctx || !(params = OSSL_PARAM_BLD_to_param(bld)) || EVP_PKEY_fromdata_init(ctx) <= 0 ||
        EVP_PKEY_fromdata(ctx, out, EVP_PKEY_PUBLIC_KEY, params) <= 0) {
        *out = NULL;
        goto fail;
    }
    err = MS_OK;
fail:
    BN_free(n);
    BN_free(e);
    free(a);
    free(b);
    OSSL_PARAM_free(params);
    EVP_PKEY_CTX_free(ctx);
    OSSL_PARAM_BLD_free(bld);
    return err;
}

/* Adds one JWK of a JWKS (RFC 7517). The algorithm comes from the key type
 * ("oct" HS256, "RSA" RS256, "EC" ES256); an "alg" member, if present, must
 * agree, so a key is only ever used with its one algorithm. Keys for other
 * uses ("use" other than "sig") are refused rather than skipped: a JWKS file
 * here is written for meshsig. */
static ms_err_t add_jwk(ms_auth_t *a, json_t *jwk, char *why, size_t why_len)
{
    const char *kty = json_string_value(json_object_get(jwk, "kty"));
    const char *kid = json_string_value(json_object_get(jwk, "kid"));
    const char *jalg = json_string_value(json_object_get(jwk, "alg"));
    const char *use = json_string_value(json_object_get(jwk, "use"));
    json_t *kidv = json_object_get(jwk, "kid");
    ms_auth_alg_t alg;
    ms_err_t err;
    if (!json_is_object(jwk) || !kty) {
        snprintf(why, why_len, "a key is not an object with \"kty\"");
        return MS_ERR_INVAL;
    }
    if ((kidv && !kid) || (kid && strlen(kid) > MS_AUTH_KID_MAX)) {
        snprintf(why, why_len, "\"kid\" must be a string of at most %d bytes", MS_AUTH_KID_MAX);
        return MS_ERR_INVAL;
    }
    if (!strcmp(kty, "oct"))
        alg = MS_AUTH_HS256;
    else if (!strcmp(kty, "RSA"))
        alg = MS_AUTH_RS256;
    else if (!strcmp(kty, "EC"))
        alg = MS_AUTH_ES256;
    else {
        snprintf(why, why_len, "key type \"%s\" (known: oct, RSA, EC)", kty);
        return MS_ERR_INVAL;
    }
    if ((jalg && strcmp(jalg, alg_name(alg)) != 0) || (use && strcmp(use, "sig") != 0)) {
        snprintf(why, why_len, "key \"%s\": alg or use does not fit a %s signing key",
                 kid ? kid : "", kty);
        return MS_ERR_INVAL;
    }
    if (alg == MS_AUTH_HS256) {
        size_t len = 0;
        unsigned char *k = jwk_bytes(jwk, "k", KEY_FILE_MAX, &len);
        if (!k) {
            snprintf(why, why_len, "key \"%s\": \"k\" is not base64url", kid ? kid : "");
            return MS_ERR_INVAL;
        }
        err = add_key(a, kid ? kid : "", alg, k, len);
        OPENSSL_cleanse(k, len);
        free(k);
    } else {
        EVP_PKEY *pkey = NULL;
        char *pem = NULL;
        size_t len = 0;
        err = jwk_public_key(jwk, alg, &pkey);
        if (err == MS_OK)
            err = pkey_pem(pkey, &pem, &len);
        if (err == MS_OK)
            err = check_public_key(alg, (unsigned char *)pem, len);
        if (err == MS_OK)
            err = add_key(a, kid ? kid : "", alg, pem, len);
        free(pem);
        EVP_PKEY_free(pkey);
        if (err == MS_ERR_INVAL) {
            snprintf(why, why_len, "key \"%s\": not a valid %s public key", kid ? kid : "",
                     alg == MS_AUTH_RS256 ? "RSA (2048 bits or more)" : "P-256");
            return err;
        }
    }
    if (err == MS_ERR_INVAL)
        snprintf(why, why_len, "key \"%s\" (%s) given twice, or over %d keys", kid ? kid : "",
                 alg_name(alg), MS_AUTH_KEYS_MAX);
    return err;
}

static ms_err_t add_jwks(ms_auth_t *a, const char *text, size_t len, char *why, size_t why_len)
{
    json_error_t jerr;
    json_t *set = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr), *keys, *k;
    ms_err_t err = MS_ERR_INVAL;
    size_t i;
    if (!set) {
        snprintf(why, why_len, "JWKS is not JSON (%d:%d: %s)", jerr.line, jerr.column, jerr.text);
        return MS_ERR_INVAL;
    }
    keys = json_object_get(set, "keys");
    if (!json_is_array(keys) || json_array_size(keys) == 0) {
        snprintf(why, why_len, "JWKS has no \"keys\" array");
        goto fail;
    }
    json_array_foreach(keys, i, k)
    {
        if ((err = add_jwk(a, k, why, why_len)) != MS_OK)
            goto fail;
    }
    err = MS_OK;
fail:
    json_decref(set);
    return err;
}

ms_err_t ms_auth_create(ms_auth_t **out, const ms_auth_config_t *cfg)
{
    char scratch[160];
    return ms_auth_create_ex(out, cfg, scratch, sizeof scratch);
}

ms_err_t ms_auth_create_ex(ms_auth_t **out, const ms_auth_config_t *cfg, char *why, size_t why_len)
{
    ms_err_t err = MS_ERR_INVAL;
    ms_auth_t *a = NULL;
    unsigned char *text = NULL;
    size_t text_len = 0;
    if (!out || !cfg || !why || !why_len)
        return MS_ERR_INVAL;
    *out = NULL;
    why[0] = '\0';
    if (cfg->leeway_s > MS_AUTH_LEEWAY_MAX) {
        snprintf(why, why_len, "leeway over %d s", MS_AUTH_LEEWAY_MAX);
        return MS_ERR_INVAL;
    }
    a = calloc(1, sizeof *a);
    if (!a)
        return MS_ERR_NOMEM;
    a->leeway_s = cfg->leeway_s < 0 ? MS_AUTH_LEEWAY_DEFAULT : cfg->leeway_s;
    if ((cfg->issuer && cfg->issuer[0] && !(a->issuer = strdup(cfg->issuer))) ||
        (cfg->audience && cfg->audience[0] && !(a->audience = strdup(cfg->audience)))) {
        err = MS_ERR_NOMEM;
        goto fail;
    }

    /* The key without a kid: a secret, or a PEM public key. */
    switch (cfg->alg) {
    case MS_AUTH_HS256:
        if (cfg->key_file || cfg->key_pem) {
            snprintf(why, why_len, "a public key file is for RS256/ES256, not HS256");
            goto fail;
        }
        if (cfg->secret && cfg->secret[0] &&
            (err = add_key(a, "", MS_AUTH_HS256, cfg->secret, strlen(cfg->secret))) != MS_OK)
            goto fail;
        break;
    case MS_AUTH_RS256:
    case MS_AUTH_ES256:
        if (cfg->key_file && cfg->key_pem) {
            snprintf(why, why_len, "both a key file and a PEM text");
            goto fail;
        }
        if (cfg->key_file) {
            err = read_file(cfg->key_file, &text, &text_len);
            if (err != MS_OK) {
                snprintf(why, why_len, "cannot read %s", cfg->key_file);
                goto fail;
            }
        } else if (cfg->key_pem) {
            text_len = strlen(cfg->key_pem);
            if (!(text = (unsigned char *)strdup(cfg->key_pem))) {
                err = MS_ERR_NOMEM;
                goto fail;
            }
        }
        if (text) {
            err = text_len && text_len <= KEY_FILE_MAX ? check_public_key(cfg->alg, text, text_len)
                                                       : MS_ERR_INVAL;
            if (err == MS_OK)
                err = add_key(a, "", cfg->alg, text, text_len);
            if (err != MS_OK) {
                snprintf(why, why_len, "not a %s public key (PEM)",
                         cfg->alg == MS_AUTH_RS256 ? "RSA (2048 bits or more)" : "P-256");
                goto fail;
            }
        }
        break;
    default:
        goto fail;
    }
    free(text);
    text = NULL;

    if (cfg->jwks_file || cfg->jwks_json) {
        if (cfg->jwks_file) {
            if ((err = read_file(cfg->jwks_file, &text, &text_len)) != MS_OK) {
                snprintf(why, why_len, "cannot read %s", cfg->jwks_file);
                goto fail;
            }
        } else {
            text_len = strlen(cfg->jwks_json);
        }
        err = add_jwks(a, text ? (const char *)text : cfg->jwks_json, text_len, why, why_len);
        if (err != MS_OK)
            goto fail;
    }
    if (a->n_keys == 0) {
        snprintf(why, why_len, "no key: a secret, a public key or a JWKS is required");
        err = MS_ERR_INVAL;
        goto fail;
    }
    free(text);
    *out = a;
    return MS_OK;
fail:
    if (text) {
        OPENSSL_cleanse(text, text_len);
        free(text);
    }
    if (err == MS_OK)
        err = MS_ERR_INVAL;
    if (!why[0])
        snprintf(why, why_len, "%s", ms_err_str(err));
    ms_auth_destroy(a);
    return err;
}

void ms_auth_destroy(ms_auth_t *a)
{
    if (!a)
        return;
    for (size_t i = 0; i < a->n_keys; i++) {
        OPENSSL_cleanse(a->keys[i].key, a->keys[i].key_len);
        free(a->keys[i].key);
    }
    free(a->issuer);
    free(a->audience);
    free(a);
}

size_t ms_auth_key_count(const ms_auth_t *a)
{
    return a ? a->n_keys : 0;
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

/* Reads the JOSE header (the token's first segment) ourselves, before libjwt,
 * and picks the key. libjwt maps "alg" to its enum case-insensitively, and
 * RFC 7515 §4.1.1 says the value is case-sensitive, so "hs256" must not pass
 * as HS256. The key is the one with the header's kid (none: the key without a
 * kid) whose algorithm is exactly the header's alg: a key is never used with
 * another algorithm, which also closes the HS256-with-a-public-key confusion. */
static const auth_key_t *select_key(const ms_auth_t *a, const char *token, const char **reason)
{
    unsigned char buf[HEADER_MAX * 3 / 4 + 4];
    const char *dot = strchr(token, '.');
    const auth_key_t *key = NULL;
    json_t *hdr = NULL, *kidv;
    const char *alg, *kid = "";
    long n;
    *reason = "malformed header";
    if (!dot || (size_t)(dot - token) > HEADER_MAX)
        return NULL;
    n = b64url_decode(token, (size_t)(dot - token), buf);
    if (n <= 0)
        return NULL;
    hdr = json_loadb((const char *)buf, (size_t)n, JSON_REJECT_DUPLICATES, NULL);
    if (!json_is_object(hdr))
        goto out;
    alg = json_string_value(json_object_get(hdr, "alg"));
    if (!alg) {
        *reason = "missing alg";
        goto out;
    }
    if ((kidv = json_object_get(hdr, "kid")) && !(kid = json_string_value(kidv))) {
        *reason = "kid is not a string";
        goto out;
    }
    *reason = kid[0] ? "unknown kid" : "no key without a kid";
    for (size_t i = 0; i < a->n_keys; i++) {
        if (strcmp(a->keys[i].kid, kid) != 0)
            continue;
        if (!strcmp(alg, alg_name(a->keys[i].alg))) {
            key = &a->keys[i];
            break;
        }
        *reason = "algorithm mismatch";
    }
out:
    json_decref(hdr);
    return key;
}

/* True if the "aud" claim (a string or an array of strings, RFC 7519 §4.1.3)
 * names want. */
static bool audience_ok(json_t *claim, const char *want)
{
    size_t i;
    json_t *v;
    if (json_is_string(claim))
        return !strcmp(json_string_value(claim), want);
    json_array_foreach(claim, i, v)
    {
        if (json_is_string(v) && !strcmp(json_string_value(v), want))
            return true;
    }
    return false;
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
    const auth_key_t *key;
    const char *sub, *iss;
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
    if (!(key = select_key(a, token, &reason)))
        goto fail;
    reason = "malformed token or bad signature";
    /* A key is always passed, so libjwt itself refuses alg "none". */
    rc = jwt_decode(&jwt, token, key->key, (int)key->key_len);
    if (rc != 0) {
        jwt = NULL;
        if (rc == ENOMEM) {
            err = MS_ERR_NOMEM;
            reason = "out of memory";
        }
        goto fail;
    }
    if (jwt_get_alg(jwt) != key->jwt_alg) {
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
    iss = json_string_value(json_object_get(claims, "iss"));
    if (a->issuer && (!iss || strcmp(iss, a->issuer) != 0)) {
        reason = "wrong or missing iss";
        goto fail;
    }
    if (a->audience && !audience_ok(json_object_get(claims, "aud"), a->audience)) {
        reason = "wrong or missing aud";
        goto fail;
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

bool ms_auth_token_grants(const char *token, const char *claim)
{
    /* The payload is the part between the two dots; its size is bounded by
     * the token's, which ms_auth_verify capped. */
    const char *p = token ? strchr(token, '.') : NULL;
    const char *q = p ? strchr(p + 1, '.') : NULL;
    if (!q || q - p - 1 <= 0 || q - p - 1 > 8192)
        return false;
    size_t n = (size_t)(q - p - 1);
    unsigned char *buf = malloc(n * 3 / 4 + 4);
    if (!buf)
        return false;
    long len = b64url_decode(p + 1, n, buf);
    json_t *j = len > 0 ? json_loadb((const char *)buf, (size_t)len, 0, NULL) : NULL;
    bool yes = json_is_true(json_object_get(j, claim));
    json_decref(j);
    free(buf);
    return yes;
}
