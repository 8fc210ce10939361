/* SPDX-License-Identifier: Apache-2.0 */
/* Resume tokens: a compact payload.signature pair signed with HMAC-SHA256.
 *
 * The MAC covers a domain-separation prefix and the payload exactly as it
 * travels (its base64url text), so nothing untrusted is decoded before it has
 * been authenticated, and a resume key that an operator also used as the JWT
 * secret still cannot turn one kind of token into the other.
 */
#include "resume.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#define VERSION 1        /* no grants */
#define VERSION_GRANTS 2 /* a grants byte after the version */
#define MAC_LEN 32
#define MAC_B64_LEN 43 /* base64url of 32 bytes, unpadded */
#define PAYLOAD_MAX (1 + 1 + 8 + 8 + 1 + MS_AUTH_PEER_ID_MAX + 1 + MS_RESUME_NS_MAX)
#define PAYLOAD_B64_MAX ((PAYLOAD_MAX * 4 + 2) / 3)

static const char b64_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static const char domain[] = "meshsig-resume-v1.";

/* Unpadded base64url. out must hold (len * 4 + 2) / 3 + 1 bytes; returns the
 * length written, without the NUL. */
static size_t b64url_encode(const unsigned char *in, size_t len, char *out)
{
    size_t o = 0, i = 0;
    for (; i + 3 <= len; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        out[o++] = b64_alphabet[v >> 18 & 63];
        out[o++] = b64_alphabet[v >> 12 & 63];
        out[o++] = b64_alphabet[v >> 6 & 63];
        out[o++] = b64_alphabet[v & 63];
    }
    if (len - i == 1) {
        uint32_t v = (uint32_t)in[i] << 16;
        out[o++] = b64_alphabet[v >> 18 & 63];
        out[o++] = b64_alphabet[v >> 12 & 63];
    } else if (len - i == 2) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
        out[o++] = b64_alphabet[v >> 18 & 63];
        out[o++] = b64_alphabet[v >> 12 & 63];
        out[o++] = b64_alphabet[v >> 6 & 63];
    }
    out[o] = '\0';
    return o;
}

static int b64_value(char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '-')
        return 62;
    if (c == '_')
        return 63;
    return -1;
}

/* Strict decoding: unpadded, canonical (unused low bits zero). Returns the
 * decoded length, or -1. out must hold len * 3 / 4 bytes. */
static long b64url_decode(const char *in, size_t len, unsigned char *out)
{
    uint32_t acc = 0;
    int bits = 0;
    size_t o = 0;
    if (len % 4 == 1)
        return -1;
    for (size_t i = 0; i < len; i++) {
        int v = b64_value(in[i]);
        if (v < 0)
            return -1;
        acc = (acc << 6 | (uint32_t)v) & 0xffffff;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (unsigned char)(acc >> bits);
        }
    }
    if (bits > 0 && (acc & ((1u << bits) - 1)) != 0)
        return -1;
    return (long)o;
}

struct ms_resume_signer {
    EVP_MAC_CTX *ctx; /* keyed once; NULL: a one-shot HMAC() with key */
    const unsigned char *key;
    size_t key_len;
};

ms_err_t ms_resume_signer_new(const unsigned char *key, size_t key_len, ms_resume_signer_t **out)
{
    ms_err_t err = MS_ERR_NOMEM;
    EVP_MAC *hmac = NULL;
    ms_resume_signer_t *k = NULL;
    if (!key || key_len < MS_RESUME_KEY_MIN || !out)
        return MS_ERR_INVAL;
    char digest[] = "SHA256";
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
        OSSL_PARAM_construct_end(),
    };
    if (!(k = calloc(1, sizeof(*k))) || !(hmac = EVP_MAC_fetch(NULL, "HMAC", NULL)) ||
        !(k->ctx = EVP_MAC_CTX_new(hmac)) || !EVP_MAC_init(k->ctx, key, key_len, params))
        goto fail;
    EVP_MAC_free(hmac); /* the context holds its own reference */
    *out = k;
    return MS_OK;
fail:
    EVP_MAC_free(hmac);
    ms_resume_signer_free(k);
    return err;
}

void ms_resume_signer_free(ms_resume_signer_t *k)
{
    if (!k)
        return;
    EVP_MAC_CTX_free(k->ctx); /* cleanses the key's pads */
    free(k);
}

static bool mac(ms_resume_signer_t *k, const char *payload_b64, size_t len,
                unsigned char out[MAC_LEN])
{
    if (len > PAYLOAD_B64_MAX)
        return false;
    if (k->ctx) {
        /* No key: back to the keyed state set at creation (the pads' digests kept). */
        size_t out_len = 0;
        return EVP_MAC_init(k->ctx, NULL, 0, NULL) &&
               EVP_MAC_update(k->ctx, (const unsigned char *)domain, sizeof domain - 1) &&
               EVP_MAC_update(k->ctx, (const unsigned char *)payload_b64, len) &&
               EVP_MAC_final(k->ctx, out, &out_len, MAC_LEN) && out_len == MAC_LEN;
    }
    unsigned char msg[sizeof domain - 1 + PAYLOAD_B64_MAX];
    unsigned int out_len = 0;
    memcpy(msg, domain, sizeof domain - 1);
    memcpy(msg + sizeof domain - 1, payload_b64, len);
    return HMAC(EVP_sha256(), k->key, (int)k->key_len, msg, sizeof domain - 1 + len, out,
                &out_len) &&
           out_len == MAC_LEN;
}

static void put_u64(unsigned char *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--, v >>= 8)
        p[i] = (unsigned char)v;
}

static uint64_t get_u64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | p[i];
    return v;
}

ms_err_t ms_resume_issue(const unsigned char *key, size_t key_len, const char *peer_id,
                         const char *ns, uint64_t epoch, int64_t now, int64_t ttl_s, char *out,
                         size_t out_size)
{
    return ms_resume_issue_ex(key, key_len, peer_id, ns, epoch, 0, now, ttl_s, out, out_size);
}

ms_err_t ms_resume_issue_ex(const unsigned char *key, size_t key_len, const char *peer_id,
                            const char *ns, uint64_t epoch, uint8_t grants, int64_t now,
                            int64_t ttl_s, char *out, size_t out_size)
{
    if (!key || key_len < MS_RESUME_KEY_MIN)
        return MS_ERR_INVAL;
    ms_resume_signer_t k = {.key = key, .key_len = key_len};
    return ms_resume_issue_with(&k, peer_id, ns, epoch, grants, now, ttl_s, out, out_size);
}

ms_err_t ms_resume_issue_with(ms_resume_signer_t *k, const char *peer_id, const char *ns,
                              uint64_t epoch, uint8_t grants, int64_t now, int64_t ttl_s, char *out,
                              size_t out_size)
{
    unsigned char payload[PAYLOAD_MAX], tag[MAC_LEN];
    char payload_b64[PAYLOAD_B64_MAX + 1], tag_b64[MAC_B64_LEN + 1];
    size_t n = 0, sub_len, ns_len, b64_len;

    if (!k || !ms_auth_peer_id_valid(peer_id) || !ns || !out || ttl_s <= 0 ||
        now > INT64_MAX - ttl_s)
        return MS_ERR_INVAL;
    sub_len = strlen(peer_id);
    ns_len = strlen(ns);
    if (ns_len == 0 || ns_len > MS_RESUME_NS_MAX)
        return MS_ERR_INVAL;

    payload[n++] = grants ? VERSION_GRANTS : VERSION;
    if (grants)
        payload[n++] = grants;
    put_u64(payload + n, epoch);
    n += 8;
    put_u64(payload + n, (uint64_t)(now + ttl_s));
    n += 8;
    payload[n++] = (unsigned char)sub_len;
    memcpy(payload + n, peer_id, sub_len);
    n += sub_len;
    payload[n++] = (unsigned char)ns_len;
    memcpy(payload + n, ns, ns_len);
    n += ns_len;

    b64_len = b64url_encode(payload, n, payload_b64);
    if (!mac(k, payload_b64, b64_len, tag))
        return MS_ERR_NOMEM;
    b64url_encode(tag, MAC_LEN, tag_b64);
    if (b64_len + 1 + MAC_B64_LEN + 1 > out_size)
        return MS_ERR_TOOBIG;
    memcpy(out, payload_b64, b64_len);
    out[b64_len] = '.';
    memcpy(out + b64_len + 1, tag_b64, MAC_B64_LEN + 1);
    return MS_OK;
}

ms_err_t ms_resume_verify(const unsigned char *key, size_t key_len, const char *token, int64_t now,
                          ms_resume_claims_t *claims, const char **why)
{
    if (!key || key_len < MS_RESUME_KEY_MIN) {
        if (why)
            *why = "invalid argument";
        return MS_ERR_INVAL;
    }
    ms_resume_signer_t k = {.key = key, .key_len = key_len};
    return ms_resume_verify_with(&k, token, now, claims, why);
}

ms_err_t ms_resume_verify_with(ms_resume_signer_t *k, const char *token, int64_t now,
                               ms_resume_claims_t *claims, const char **why)
{
    ms_err_t err = MS_ERR_AUTH;
    const char *reason = "malformed";
    unsigned char payload[PAYLOAD_MAX + 3], want[MAC_LEN], got[MAC_LEN + 3];
    const char *dot;
    size_t len, b64_len, sub_len, ns_len, n = 0;
    long plen;
    int64_t exp;
    ms_resume_claims_t c;

    if (!k || !token || !claims) {
        err = MS_ERR_INVAL;
        reason = "invalid argument";
        goto fail;
    }
    len = strnlen(token, MS_RESUME_TOKEN_MAX);
    dot = memchr(token, '.', len);
    if (len >= MS_RESUME_TOKEN_MAX || !dot)
        goto fail;
    b64_len = (size_t)(dot - token);
    if (b64_len == 0 || b64_len > PAYLOAD_B64_MAX || len - b64_len - 1 != MAC_B64_LEN)
        goto fail;
    if (b64url_decode(dot + 1, MAC_B64_LEN, got) != MAC_LEN)
        goto fail;
    if (!mac(k, token, b64_len, want)) {
        err = MS_ERR_NOMEM;
        reason = "hmac failed";
        goto fail;
    }
    if (CRYPTO_memcmp(want, got, MAC_LEN) != 0) {
        reason = "bad signature";
        goto fail;
    }

    /* Authentic from here on; the checks below guard against our own bugs and
     * future versions, not against forgers. */
    plen = b64url_decode(token, b64_len, payload);
    if (plen < 1 + 8 + 8 + 1 + 1 + 1 + 1 || (payload[0] != VERSION && payload[0] != VERSION_GRANTS))
        goto fail;
    n = 1;
    c.grants = 0;
    if (payload[0] == VERSION_GRANTS) {
        c.grants = payload[n++];
        if (plen < 2 + 8 + 8 + 1 + 1 + 1 + 1)
            goto fail;
    }
    c.epoch = get_u64(payload + n);
    n += 8;
    exp = (int64_t)get_u64(payload + n);
    n += 8;
    sub_len = payload[n++];
    if (sub_len == 0 || sub_len > MS_AUTH_PEER_ID_MAX || n + sub_len + 1 > (size_t)plen)
        goto fail;
    ns_len = payload[n + sub_len];
    if (ns_len == 0 || n + sub_len + 1 + ns_len != (size_t)plen)
        goto fail;
    if (now >= exp) {
        reason = "expired";
        goto fail;
    }
    memcpy(c.peer_id, payload + n, sub_len);
    c.peer_id[sub_len] = '\0';
    n += sub_len + 1;
    memcpy(c.ns, payload + n, ns_len);
    c.ns[ns_len] = '\0';
    c.exp = exp;
    if (!ms_auth_peer_id_valid(c.peer_id) || strlen(c.ns) != ns_len)
        goto fail;
    *claims = c;
    err = MS_OK;
    reason = "ok";
fail:
    if (why)
        *why = reason;
    return err;
}
