/* SPDX-License-Identifier: Apache-2.0 */
/* HS256 meshsig tokens for integration tests (libjwt), one place for every test file. */
#ifndef MS_TEST_JWT_H
#define MS_TEST_JWT_H

/* A token for peer sub in namespace ns ("*" for any), valid for ttl_s seconds
 * from now (negative: already expired), signed with secret; with bool_claim
 * (e.g. "treeSource") set to true when not NULL. Fails the test on error;
 * the caller frees it. */
char *test_jwt_mint(const char *secret, const char *sub, const char *ns, long ttl_s,
                    const char *bool_claim);

#endif
