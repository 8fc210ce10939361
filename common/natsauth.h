/* SPDX-License-Identifier: Apache-2.0 */
/* NATS credentials of a meshsig process: user/password, token or a creds file, for every
 * connection it opens (README "NATS authorisation").
 *
 * Credentials may also sit in the URLs (nats://user:pass@host:4222, nats://token@host); cnats
 * uses those for that server. The options here are for all servers at once and keep secrets
 * out of the URL list, which the processes log (redacted, see ms_nats_urls_redact).
 */
#ifndef MS_NATSAUTH_H
#define MS_NATSAUTH_H

#include <stddef.h>
#include <nats/nats.h>

#include "err.h"

typedef struct {
    const char *user;     /* with password */
    const char *password; /* MESHSIG_NATS_PASSWORD: keeps it out of `ps` */
    const char *token;    /* MESHSIG_NATS_TOKEN */
    const char *creds;    /* a .creds file (user JWT + NKey seed, from nsc): operator mode */
} ms_nats_auth_t;

/* MS_OK when a names at most one method, complete (a user needs a password);
 * else MS_ERR_INVAL with a sentence in why. a may be NULL (no credentials). */
ms_err_t ms_nats_auth_check(const ms_nats_auth_t *a, char *why, size_t cap);
/* Sets a's credentials on o; a may be NULL or empty (nothing set). */
ms_err_t ms_nats_auth_apply(const ms_nats_auth_t *a, natsOptions *o);
/* urls with the userinfo of each URL (user:pass@, token@) replaced by "***@": what may be
 * logged. Returns buf (truncated to cap). */
const char *ms_nats_urls_redact(const char *urls, char *buf, size_t cap);

#endif
