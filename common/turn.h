/* SPDX-License-Identifier: Apache-2.0 */
/* Short-lived TURN credentials by the shared-secret scheme coturn implements ("TURN REST API").
 *
 * The TURN server and meshsig share a secret (coturn: use-auth-secret,
 * static-auth-secret). A credential for a peer is
 *     username = "<expiry unix seconds>:<peer id>"
 *     password = base64(HMAC-SHA1(secret, username))
 * and the TURN server accepts it until the expiry, without any call back to
 * us: it recomputes the password from the username. Nothing is stored.
 */
#ifndef MS_TURN_H
#define MS_TURN_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"

/* Longest username (20 digits, ':', a peer id of up to 128 bytes) and password
 * (base64 of 20 bytes is 28 characters), with their NULs. */
#define MS_TURN_USER_MAX 160
#define MS_TURN_PASS_MAX 32

/* Mints the credential of peer_id valid until expiry (unix seconds). The
 * secret is taken as bytes, as coturn takes static-auth-secret. MS_ERR_INVAL
 * for an empty secret or peer id, or a peer id that does not fit. */
ms_err_t ms_turn_credential(const char *secret, const char *peer_id, int64_t expiry,
                            char user[MS_TURN_USER_MAX], char pass[MS_TURN_PASS_MAX]);

#endif
