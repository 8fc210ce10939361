/* SPDX-License-Identifier: Apache-2.0 */
/* HS256 meshsig tokens for integration tests (libjwt). */
#include "testjwt.h"

#include <check.h>
#include <jwt.h>
#include <string.h>
#include <time.h>

char *test_jwt_mint(const char *secret, const char *sub, const char *ns, long ttl_s,
                    const char *bool_claim)
{
    jwt_t *jwt = NULL;
    ck_assert_int_eq(jwt_new(&jwt), 0);
    jwt_add_grant(jwt, "sub", sub);
    jwt_add_grant(jwt, "ns", ns);
    jwt_add_grant_int(jwt, "exp", (long)time(NULL) + ttl_s);
    if (bool_claim)
        jwt_add_grant_bool(jwt, bool_claim, 1);
    jwt_set_alg(jwt, JWT_ALG_HS256, (const unsigned char *)secret, (int)strlen(secret));
    char *tok = jwt_encode_str(jwt);
    jwt_free(jwt);
    ck_assert_ptr_nonnull(tok);
    return tok;
}
