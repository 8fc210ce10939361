/* SPDX-License-Identifier: Apache-2.0 */
/* common/opts.c: listen addresses (HOST:PORT with bracketed IPv6) and the loopback test. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "opts.h"

START_TEST(hostport_forms)
{
    char host[128];
    int port = -1, v6 = -1;
    ck_assert(ms_opts_hostport("127.0.0.1:8080", host, sizeof(host), &port, &v6) == MS_OK);
    ck_assert(!strcmp(host, "127.0.0.1") && port == 8080 && v6 == 0);
    ck_assert(ms_opts_hostport("[::1]:8081", host, sizeof(host), &port, &v6) == MS_OK);
    ck_assert(!strcmp(host, "::1") && port == 8081 && v6 == 1);
    ck_assert(ms_opts_hostport("[::ffff:127.0.0.1]:0", host, sizeof(host), &port, &v6) == MS_OK);
    ck_assert(!strcmp(host, "::ffff:127.0.0.1") && port == 0 && v6 == 1);
    ck_assert(ms_opts_hostport("[::]:65535", host, sizeof(host), &port, &v6) == MS_OK);
    ck_assert(!strcmp(host, "::") && port == 65535 && v6 == 1);
    ck_assert(ms_opts_hostport(":9000", host, sizeof(host), &port, &v6) == MS_OK);
    ck_assert(!strcmp(host, "") && port == 9000 && v6 == 0);
    ck_assert(ms_opts_hostport("localhost:1", host, sizeof(host), &port, &v6) == MS_OK);
    ck_assert(!strcmp(host, "localhost") && port == 1);
}
END_TEST

START_TEST(hostport_refused)
{
    char host[16];
    int port, v6;
    const char *bad[] = {"",           "8080",        "127.0.0.1",     "127.0.0.1:",
                         "1.2.3.4:x",  "1.2.3.4:-1",  "1.2.3.4:65536", "1.2.3.4:123456",
                         "::1:8080",   "[::1]",       "[::1:8080",     "::1]:8080",
                         "[[::1]]:80", "1.2.3.4: 80", "1.2.3.4:80 ",   "averyveryverylonghost:80",
                         NULL};
    for (int i = 0; bad[i]; i++) {
        ck_assert_msg(ms_opts_hostport(bad[i], host, sizeof(host), &port, &v6) != MS_OK,
                      "taken: '%s'", bad[i]);
    }
    ck_assert(ms_opts_hostport(NULL, host, sizeof(host), &port, &v6) != MS_OK);
}
END_TEST

START_TEST(loopback)
{
    ck_assert(ms_opts_loopback("127.0.0.1:8080"));
    ck_assert(ms_opts_loopback("127.9.9.9:1"));
    ck_assert(ms_opts_loopback("[::1]:8080"));
    ck_assert(ms_opts_loopback("[::ffff:127.0.0.1]:8080"));
    ck_assert(ms_opts_loopback("localhost:8080"));
    ck_assert(!ms_opts_loopback("0.0.0.0:8080"));
    ck_assert(!ms_opts_loopback(":8080"));
    ck_assert(!ms_opts_loopback("[::]:8080"));
    ck_assert(!ms_opts_loopback("[::1.2.3.4]:8080"));
    ck_assert(!ms_opts_loopback("[::ffff:10.0.0.1]:8080"));
    ck_assert(!ms_opts_loopback("127.0.0.1.evil.example:8080"));
    ck_assert(!ms_opts_loopback("localhost.evil.example:8080"));
    ck_assert(!ms_opts_loopback("::1:8080"));
}
END_TEST

int main(void)
{
    Suite *s = suite_create("opts");
    TCase *tc = tcase_create("opts");
    tcase_add_test(tc, hostport_forms);
    tcase_add_test(tc, hostport_refused);
    tcase_add_test(tc, loopback);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
