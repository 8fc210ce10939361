/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for common/intern.c: one shared copy per string, reference counts, and the kept
 * hash (ms_intern_hash), which the gateway's peer index reuses for every signal's lookup. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hash.h"
#include "intern.h"

START_TEST(shares_and_counts)
{
    char buf[32];
    snprintf(buf, sizeof(buf), "room-%d", 1);
    const char *a = ms_intern("room-1"), *b = ms_intern(buf);
    ck_assert_ptr_nonnull(a);
    ck_assert_ptr_eq(a, b);
    ck_assert_str_eq(a, "room-1");
    ms_intern_release(b);
    ck_assert_ptr_eq(ms_intern("room-1"), a); /* one reference was left */
    ms_intern_release(a);
    ms_intern_release(a);
    ms_intern_release(NULL);
}
END_TEST

/* The kept hash is the string's keyed hash (hash.h), for short and long strings and the empty one,
 * and stays right while the index grows around it (entries move, their hashes are reused). */
START_TEST(keeps_the_hash)
{
    enum { N = 3000 };
    static const char *s[N];
    char buf[300];
    for (int i = 0; i < N; i++) {
        int n = snprintf(buf, sizeof(buf), "ns-%d", i);
        if (i % 7 == 0) { /* longer ones, up to 250 more bytes */
            memset(buf + n, 'x', (size_t)(i % 250));
            buf[n + i % 250] = '\0';
        }
        if (i == 5)
            buf[0] = '\0';
        s[i] = ms_intern(buf);
        ck_assert_ptr_nonnull(s[i]);
        ck_assert_str_eq(s[i], buf);
    }
    for (int i = 0; i < N; i++) {
        ck_assert(ms_intern_hash(s[i]) == ms_hash_keyed(s[i], strlen(s[i])));
        ck_assert_ptr_eq(ms_intern(s[i]), s[i]); /* found by its hash after growth */
        ms_intern_release(s[i]);
    }
    for (int i = 0; i < N; i++)
        ms_intern_release(s[i]);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("intern");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, shares_and_counts);
    tcase_add_test(tc, keeps_the_hash);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
