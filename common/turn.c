/* SPDX-License-Identifier: Apache-2.0 */
/* Short-lived TURN credentials by the shared-secret scheme coturn implements ("TURN REST API"). */
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <string.h>

#include "turn.h"

ms_err_t ms_turn_credential(const char *secret, const char *peer_id, int64_t expiry,
                            char user[MS_TURN_USER_MAX], char pass[MS_TURN_PASS_MAX])
{
    if (!secret || !*secret || !peer_id || !*peer_id || expiry < 0)
        return MS_ERR_INVAL;
    int n = snprintf(user, MS_TURN_USER_MAX, "%lld:%s", (long long)expiry, peer_id);
    if (n < 0 || n >= MS_TURN_USER_MAX)
        return MS_ERR_INVAL;
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int mac_len = 0;
    if (!HMAC(EVP_sha1(), secret, (int)strlen(secret), (const unsigned char *)user, (size_t)n, mac,
              &mac_len) ||
        mac_len != 20)
        return MS_ERR_UNSUPPORTED; /* no SHA-1 (a FIPS-only OpenSSL) */
    /* base64 of 20 bytes: 28 characters and a NUL. */
    EVP_EncodeBlock((unsigned char *)pass, mac, (int)mac_len);
    return MS_OK;
}
