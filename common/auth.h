/* SPDX-License-Identifier: Apache-2.0 */
/* Client authentication: JWT verification for hello, and the admin bearer check.
 *
 * A verifier (ms_auth_t) is built once from configuration and is then
 * read-only: ms_auth_verify() may be called from any number of threads at once.
 * Token claims (see common/README.md):
 *   exp  required, NumericDate; rejected when now >= exp + leeway
 *   nbf  optional; rejected when now + leeway < nbf
 *   sub  required, the peer id: 1..128 chars of [A-Za-z0-9._:@-]
 *   ns   required, a namespace name or "*", or an array of them
 *   iss  checked only when an issuer is configured: must equal it
 *   aud  checked only when an audience is configured: a string equal to it, or
 *        an array of strings holding it
 * Keys: the verifier holds a set of up to MS_AUTH_KEYS_MAX keys, each with one
 * algorithm and an optional key id. The token's header picks one: its "kid"
 * (absent: the key without a kid) and its "alg", which must be exactly the
 * key's algorithm, case included (RFC 7515 §4.1.1). "none" is never accepted.
 * Several keys with their kids are how keys are rotated without downtime:
 * publish the new key next to the old one, move the issuer over, drop the old.
 */
#ifndef MS_AUTH_H
#define MS_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"

#define MS_AUTH_PEER_ID_MAX 128   /* longest peer id, without the NUL */
#define MS_AUTH_TOKEN_MAX 8192    /* longer tokens are rejected before any parsing */
#define MS_AUTH_LEEWAY_DEFAULT 30 /* seconds of clock skew allowed for exp and nbf */
#define MS_AUTH_LEEWAY_MAX 86400
#define MS_AUTH_KEYS_MAX 16 /* keys in one verifier (the configured key plus a JWKS) */
#define MS_AUTH_KID_MAX 64  /* longest key id */

typedef enum {
    MS_AUTH_HS256 = 0, /* shared secret (default) */
    MS_AUTH_RS256,     /* RSA public key, PEM */
    MS_AUTH_ES256      /* EC P-256 public key, PEM */
} ms_auth_alg_t;

typedef struct {
    ms_auth_alg_t alg;
    /* The key without a kid, used with alg (optional when a JWKS is given):
     * HS256: the shared secret, at least 1 byte (32 or more recommended). */
    const char *secret;
    /* RS256/ES256: the public key as a PEM file path, or as PEM text in key_pem.
     * At most one of the two. The key must be a public key of the right type. */
    const char *key_file;
    const char *key_pem;
    /* More keys, a JWK Set (RFC 7517) as a file path or as text: {"keys":[...]}
     * of "oct" (HS256, "k"), "RSA" (RS256, "n", "e"; 2048 bits or more) and
     * "EC" (ES256, "crv":"P-256", "x", "y") keys, each with an optional "kid";
     * an "alg" member must match the key type, "use" must be "sig". */
    const char *jwks_file;
    const char *jwks_json;
    /* NULL or "": not checked. */
    const char *issuer;
    const char *audience;
    /* Seconds of skew for exp/nbf; negative means MS_AUTH_LEEWAY_DEFAULT. */
    long leeway_s;
} ms_auth_config_t;

typedef struct ms_auth ms_auth_t; /* opaque, immutable after create */

/* Parses an algorithm name ("HS256", "RS256", "ES256", case-insensitive) into
 * *alg. Returns MS_ERR_INVAL for anything else. */
ms_err_t ms_auth_alg_parse(const char *name, ms_auth_alg_t *alg);

/* Builds a verifier. cfg and the strings it points to are borrowed: keys are
 * copied. Returns MS_ERR_INVAL when there is no key at all, for a wrong-type
 * key (an RSA key for ES256, a private key, a curve other than P-256, an RSA
 * key under 2048 bits), a malformed JWKS, two keys with the same kid and
 * algorithm, more than MS_AUTH_KEYS_MAX keys, or a leeway above
 * MS_AUTH_LEEWAY_MAX; MS_ERR_IO if a file cannot be read; MS_ERR_NOMEM. On
 * success *out is owned by the caller, freed with ms_auth_destroy(). */
ms_err_t ms_auth_create(ms_auth_t **out, const ms_auth_config_t *cfg);
/* The same, with a reason for the operator in why (why_len bytes) on failure. */
ms_err_t ms_auth_create_ex(ms_auth_t **out, const ms_auth_config_t *cfg, char *why, size_t why_len);

/* How many keys the verifier holds (for the start-up log). */
size_t ms_auth_key_count(const ms_auth_t *a);

/* Frees a verifier (wipes the secret). NULL is a no-op. No verify may be running. */
void ms_auth_destroy(ms_auth_t *a);

/* Verifies the hello token for namespace ns at time now (Unix seconds).
 * Returns:
 *   MS_OK            peer_id holds the token's sub (NUL-terminated)
 *   MS_ERR_AUTH      the token is unacceptable: malformed, too long, wrong or
 *                    missing alg, unknown kid, bad signature, expired, not yet
 *                    valid, wrong iss or aud, missing or invalid sub, missing or
 *                    malformed ns  (-> UNAUTHORIZED)
 *   MS_ERR_FORBIDDEN the token is valid but ns is not among its namespaces
 *                    (-> FORBIDDEN)
 *   MS_ERR_INVAL     a NULL argument or an empty ns (caller bug)
 *   MS_ERR_NOMEM
 * peer_id is the caller's buffer of MS_AUTH_PEER_ID_MAX + 1 bytes; it is only
 * written on MS_OK. why, if not NULL, receives a static string for the logs
 * saying which check failed ("expired", "bad signature", ...); never send it to
 * the client. Thread-safe. */
ms_err_t ms_auth_verify(const ms_auth_t *a, const char *token, const char *ns, int64_t now,
                        char peer_id[MS_AUTH_PEER_ID_MAX + 1], const char **why);

/* True when a token that ms_auth_verify accepted carries claim: true (e.g.
 * "policy", "source": what the hello may ask for). Reads, does not verify. */
bool ms_auth_token_grants(const char *token, const char *claim);

/* True if id is a valid peer id: 1..MS_AUTH_PEER_ID_MAX chars of [A-Za-z0-9._:@-]. */
bool ms_auth_peer_id_valid(const char *id);

/* The admin bearer check. authorization is the raw Authorization header value
 * (may be NULL); token the configured admin token. True only if a token is
 * configured (non-NULL, non-empty) and the header is "Bearer <token>" (scheme
 * case-insensitive, spaces around the token ignored). The comparison takes the
 * same time whatever the header holds. Pure and thread-safe. */
bool ms_auth_bearer_ok(const char *authorization, const char *token);

#endif
