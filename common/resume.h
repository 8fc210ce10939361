/* SPDX-License-Identifier: Apache-2.0 */
/* Resume tokens: HMAC-SHA256-signed (peer id, namespace, session epoch, expiry, grants).
 *
 * Issued in welcome, presented in a later hello to take the old session's peer
 * id and edges back. Format (see common/README.md):
 *   base64url(payload) "." base64url(HMAC-SHA256(key, "meshsig-resume-v1." base64url(payload)))
 * payload = version byte 1, epoch (u64 BE), exp (i64 BE, Unix seconds),
 *           sub length (u8), sub, ns length (u8), ns;
 *        or version byte 2, grants (u8), then the same: a session whose hello
 *           token granted a claim (MS_RESUME_GRANT_*) keeps it across a resume,
 *           where no JWT is presented. Tokens without grants stay version 1, so
 *           gateways of the previous release still accept them.
 * ms_resume_issue/_verify are pure functions with no state: thread-safe; the key is borrowed.
 * The _with forms take a signer keyed once (ms_resume_signer_new): a token then costs no
 * HMAC key setup and 2 allocations inside OpenSSL 3.0 instead of 13 (common/README.md). A
 * signer is one thread's: _with calls on it must not overlap.
 */
#ifndef MS_RESUME_H
#define MS_RESUME_H

#include <stddef.h>
#include <stdint.h>

#include "auth.h"
#include "err.h"

#define MS_RESUME_NS_MAX 255    /* longest namespace name a resume token can carry */
#define MS_RESUME_KEY_MIN 16    /* shortest accepted key, in bytes */
#define MS_RESUME_TOKEN_MAX 640 /* buffer size that fits any token, NUL included */

/* What the session's hello token allowed (its claims "source" and "policy"). */
#define MS_RESUME_GRANT_SOURCE 1u
#define MS_RESUME_GRANT_POLICY 2u

typedef struct {
    char peer_id[MS_AUTH_PEER_ID_MAX + 1];
    char ns[MS_RESUME_NS_MAX + 1];
    uint64_t epoch; /* the issuer's session epoch or nonce; opaque here */
    int64_t exp;    /* Unix seconds; the token is refused from this second on */
    uint8_t grants; /* MS_RESUME_GRANT_* (0 in a version 1 token) */
} ms_resume_claims_t;

/* Writes a token for (peer_id, ns, epoch) that expires at now + ttl_s into out
 * (the caller's buffer of out_size bytes; MS_RESUME_TOKEN_MAX always suffices).
 * The caller picks ttl_s: the disconnect grace plus a margin (60 s is usual).
 * Returns MS_ERR_INVAL for a key shorter than MS_RESUME_KEY_MIN, an invalid
 * peer id, an empty or too long ns, ttl_s <= 0 or an overflowing expiry;
 * MS_ERR_TOOBIG if out_size is too small; MS_ERR_NOMEM if OpenSSL fails. */
ms_err_t ms_resume_issue(const unsigned char *key, size_t key_len, const char *peer_id,
                         const char *ns, uint64_t epoch, int64_t now, int64_t ttl_s, char *out,
                         size_t out_size);
/* The same, carrying grants (MS_RESUME_GRANT_*; 0 issues a version 1 token). */
ms_err_t ms_resume_issue_ex(const unsigned char *key, size_t key_len, const char *peer_id,
                            const char *ns, uint64_t epoch, uint8_t grants, int64_t now,
                            int64_t ttl_s, char *out, size_t out_size);

/* Checks token's signature (constant-time), format and expiry at now (Unix
 * seconds). On MS_OK fills *claims; otherwise leaves it untouched. Returns
 * MS_ERR_AUTH for a malformed, forged or expired token (-> RESUME_FAILED),
 * MS_ERR_INVAL for NULL arguments or a short key. why, if not NULL, receives a
 * static reason for the logs. The caller must still check that claims->ns is
 * the namespace being joined and that claims->epoch names a resumable session. */
ms_err_t ms_resume_verify(const unsigned char *key, size_t key_len, const char *token, int64_t now,
                          ms_resume_claims_t *claims, const char **why);

/* HMAC-SHA256 keyed with key (copied), for the _with forms. MS_ERR_INVAL for a key shorter
 * than MS_RESUME_KEY_MIN; MS_ERR_NOMEM if OpenSSL fails. */
typedef struct ms_resume_signer ms_resume_signer_t;
ms_err_t ms_resume_signer_new(const unsigned char *key, size_t key_len, ms_resume_signer_t **out);
/* Frees k and cleanses its key state. NULL is a no-op. */
void ms_resume_signer_free(ms_resume_signer_t *k);
/* ms_resume_issue_ex and ms_resume_verify with k's key; the same tokens and checks. */
ms_err_t ms_resume_issue_with(ms_resume_signer_t *k, const char *peer_id, const char *ns,
                              uint64_t epoch, uint8_t grants, int64_t now, int64_t ttl_s, char *out,
                              size_t out_size);
ms_err_t ms_resume_verify_with(ms_resume_signer_t *k, const char *token, int64_t now,
                               ms_resume_claims_t *claims, const char **why);

#endif
