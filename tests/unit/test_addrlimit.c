/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for the per-client-address limits (gateway/addrlimit.c): addresses and their keys
 * (IPv4, IPv6 by /64, IPv4-mapped), CIDR lists, X-Forwarded-For, the handshake and session
 * counts with entries freed at zero, and a churn against a brute-force count. */
#include <arpa/inet.h>
#include <check.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "addrlimit.h"

static ms_addr_t addr(const char *text)
{
    ms_addr_t a;
    ck_assert_msg(ms_addr_from_xff(text, &a) == 0, "%s does not parse", text);
    return a;
}

static ms_addrlimit_t *make(const char *exempt, const char *trusted, long hs, long sess)
{
    ms_addrlimit_config_t c = {
        .exempt = exempt, .trusted = trusted, .max_handshakes = hs, .max_sessions = sess};
    ms_addrlimit_t *al = NULL;
    char why[160];
    ck_assert_int_eq(ms_addrlimit_create(&c, &al, why, sizeof(why)), MS_OK);
    return al;
}

START_TEST(addresses)
{
    ms_addr_t a, b;
    char s[64];
    struct sockaddr_in v4 = {.sin_family = AF_INET, .sin_port = htons(1234)};
    inet_pton(AF_INET, "192.0.2.7", &v4.sin_addr);
    ck_assert_int_eq(ms_addr_from_sockaddr((struct sockaddr *)&v4, sizeof(v4), &a), 0);
    ms_addr_str(&a, s, sizeof(s));
    ck_assert_str_eq(s, "192.0.2.7");
    /* The same IPv4 address reached over a dual-stack socket is the same address. */
    struct sockaddr_in6 m = {.sin6_family = AF_INET6};
    inet_pton(AF_INET6, "::ffff:192.0.2.7", &m.sin6_addr);
    ck_assert_int_eq(ms_addr_from_sockaddr((struct sockaddr *)&m, sizeof(m), &b), 0);
    ck_assert_mem_eq(a.b, b.b, 16);
    struct sockaddr un = {.sa_family = AF_UNIX};
    ck_assert_int_eq(ms_addr_from_sockaddr(&un, sizeof(un), &b), -1);

    /* X-Forwarded-For: the last address, in its forms. */
    ck_assert_int_eq(ms_addr_from_xff("203.0.113.9, 10.1.2.3,192.0.2.7", &b), 0);
    ck_assert_mem_eq(a.b, b.b, 16);
    ck_assert_int_eq(ms_addr_from_xff(" 192.0.2.7:5555 ", &b), 0);
    ck_assert_mem_eq(a.b, b.b, 16);
    ck_assert_int_eq(ms_addr_from_xff("[2001:db8::1]:443", &b), 0);
    ms_addr_str(&b, s, sizeof(s));
    ck_assert_str_eq(s, "2001:db8::1");
    ck_assert_int_eq(ms_addr_from_xff("2001:db8::1", &b), 0);
    ck_assert_int_eq(ms_addr_from_xff("unknown", &b), -1);
    ck_assert_int_eq(ms_addr_from_xff("192.0.2.7, ", &b), -1);
    ck_assert_int_eq(ms_addr_from_xff("", &b), -1);
    ck_assert_int_eq(ms_addr_from_xff(NULL, &b), -1);
}
END_TEST

START_TEST(cidr_lists)
{
    ms_addrlimit_config_t c = {.exempt = "10.0.0.0/8, 2001:db8::/32,192.0.2.1",
                               .max_handshakes = 1};
    ms_addrlimit_t *al = NULL;
    char why[160];
    ck_assert_int_eq(ms_addrlimit_create(&c, &al, why, sizeof(why)), MS_OK);
    ms_addrlimit_tag_t t;
    const char *exempt[] = {"10.0.0.1", "10.255.255.255", "2001:db8:ffff::1", "192.0.2.1"};
    for (size_t i = 0; i < sizeof(exempt) / sizeof(*exempt); i++) {
        ms_addr_t a = addr(exempt[i]);
        for (int k = 0; k < 3; k++) {
            ck_assert_int_eq(ms_addrlimit_accept(al, &a, &t), 0);
            ck_assert_uint_eq(t, 0);
        }
    }
    ck_assert_uint_eq(ms_addrlimit_addresses(al), 0);
    const char *counted[] = {"11.0.0.1", "9.255.255.255", "2001:db9::1", "192.0.2.2"};
    for (size_t i = 0; i < sizeof(counted) / sizeof(*counted); i++) {
        ms_addr_t a = addr(counted[i]);
        ck_assert_int_eq(ms_addrlimit_accept(al, &a, &t), 0);
        ck_assert_uint_ne(t, 0);
    }
    ck_assert_uint_eq(ms_addrlimit_addresses(al), 4);
    ms_addrlimit_destroy(al); /* frees what is still counted */

    const char *bad[] = {"10.0.0.0/33", "10.0.0.0/",   "nonsense",
                         "::1/129",     "10.0.0.0/8x", "1.2.3.4,,x"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
        ms_addrlimit_config_t b = {.trusted = bad[i]};
        ck_assert_int_eq(ms_addrlimit_create(&b, &al, why, sizeof(why)), MS_ERR_INVAL);
        ck_assert_ptr_nonnull(strstr(why, "not an address"));
    }
    ms_addrlimit_config_t empty = {.exempt = "", .trusted = " , "};
    ck_assert_int_eq(ms_addrlimit_create(&empty, &al, why, sizeof(why)), MS_OK);
    ms_addrlimit_destroy(al);
}
END_TEST

/* Handshakes per address: refused at the limit, another address unaffected, counts back at
 * zero when released, IPv6 counted by /64. */
START_TEST(handshakes)
{
    ms_addrlimit_t *al = make(NULL, NULL, 2, 0);
    ms_addr_t a = addr("198.51.100.1"), b = addr("198.51.100.2");
    ms_addrlimit_tag_t ta[3], tb;
    ck_assert_int_eq(ms_addrlimit_accept(al, &a, &ta[0]), 0);
    ck_assert_int_eq(ms_addrlimit_accept(al, &a, &ta[1]), 0);
    ck_assert_int_eq(ms_addrlimit_accept(al, &a, &ta[2]), -1);
    ck_assert_uint_eq(ta[2], 0);
    ck_assert_int_eq(ms_addrlimit_accept(al, &b, &tb), 0);
    long hs, sess;
    ms_addrlimit_counts(al, &a, &hs, &sess);
    ck_assert_int_eq(hs, 2);
    ms_addrlimit_release(al, &ta[0]);
    ck_assert_uint_eq(ta[0], 0);
    ck_assert_int_eq(ms_addrlimit_accept(al, &a, &ta[0]), 0);
    ms_addrlimit_release(al, &ta[0]);
    ms_addrlimit_release(al, &ta[1]);
    ms_addrlimit_release(al, &tb);
    ck_assert_uint_eq(ms_addrlimit_addresses(al), 0);

    /* One /64: every address in it shares the count; the next /64 does not. */
    ms_addr_t x = addr("2001:db8:1:2::1"), y = addr("2001:db8:1:2:ffff:ffff:ffff:ffff"),
              z = addr("2001:db8:1:3::1");
    ms_addrlimit_tag_t tx, ty, tz, t;
    ck_assert_int_eq(ms_addrlimit_accept(al, &x, &tx), 0);
    ck_assert_int_eq(ms_addrlimit_accept(al, &y, &ty), 0);
    ck_assert_int_eq(ms_addrlimit_accept(al, &x, &t), -1);
    ck_assert_int_eq(ms_addrlimit_accept(al, &z, &tz), 0);
    ck_assert_uint_eq(ms_addrlimit_addresses(al), 2);
    /* IPv4 addresses are not lumped together into one /64 (::ffff:0:0/96). */
    ms_addr_t v1 = addr("203.0.113.1"), v2 = addr("203.0.113.2"), v3 = addr("203.0.113.3");
    ms_addrlimit_tag_t t1, t2, t3;
    ck_assert_int_eq(ms_addrlimit_accept(al, &v1, &t1), 0);
    ck_assert_int_eq(ms_addrlimit_accept(al, &v2, &t2), 0);
    ck_assert_int_eq(ms_addrlimit_accept(al, &v3, &t3), 0);
    ck_assert_uint_eq(ms_addrlimit_addresses(al), 5);
    ms_addrlimit_tag_t *all[] = {&tx, &ty, &tz, &t1, &t2, &t3};
    for (size_t i = 0; i < 6; i++)
        ms_addrlimit_release(al, all[i]);
    ck_assert_uint_eq(ms_addrlimit_addresses(al), 0);
    ms_addrlimit_destroy(al);
}
END_TEST

/* A handshake becomes a session: counted as one or the other, refused at the session limit,
 * the refused tag holding nothing. */
START_TEST(sessions)
{
    ms_addrlimit_t *al = make(NULL, NULL, 5, 2);
    ms_addr_t a = addr("198.51.100.1");
    ms_addrlimit_tag_t t[3];
    long hs, sess;
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(ms_addrlimit_accept(al, &a, &t[i]), 0);
    ck_assert_int_eq(ms_addrlimit_session(al, &t[0], NULL), 0);
    ck_assert_int_eq(ms_addrlimit_session(al, &t[1], NULL), 0);
    ms_addrlimit_counts(al, &a, &hs, &sess);
    ck_assert_int_eq(hs, 1);
    ck_assert_int_eq(sess, 2);
    ck_assert_int_eq(ms_addrlimit_refused(t[0]), 0);
    ck_assert_int_eq(ms_addrlimit_session(al, &t[2], NULL), -1);
    ck_assert_int_eq(ms_addrlimit_refused(t[2]), 1);
    ms_addrlimit_counts(al, &a, &hs, &sess);
    ck_assert_int_eq(hs, 0);
    ck_assert_int_eq(sess, 2);
    ms_addrlimit_release(al, &t[2]); /* holds nothing */
    ms_addrlimit_counts(al, &a, &hs, &sess);
    ck_assert_int_eq(sess, 2);
    /* A place freed is a place taken. */
    ms_addrlimit_release(al, &t[0]);
    ck_assert_int_eq(ms_addrlimit_accept(al, &a, &t[2]), 0);
    ck_assert_int_eq(ms_addrlimit_session(al, &t[2], NULL), 0);
    ms_addrlimit_release(al, &t[1]);
    ms_addrlimit_release(al, &t[2]);
    ck_assert_uint_eq(ms_addrlimit_addresses(al), 0);
    ms_addrlimit_destroy(al);

    /* No session limit: a session holds nothing, the handshake is given back. */
    al = make(NULL, NULL, 5, 0);
    ck_assert_int_eq(ms_addrlimit_accept(al, &a, &t[0]), 0);
    ck_assert_int_eq(ms_addrlimit_session(al, &t[0], NULL), 0);
    ck_assert_uint_eq(t[0], 0);
    ck_assert_uint_eq(ms_addrlimit_addresses(al), 0);
    ms_addrlimit_destroy(al);
    /* No limit at all: nothing is counted. */
    al = make(NULL, NULL, 0, 0);
    ck_assert_int_eq(ms_addrlimit_accept(al, &a, &t[0]), 0);
    ck_assert_uint_eq(t[0], 0);
    ck_assert_uint_eq(ms_addrlimit_addresses(al), 0);
    ms_addrlimit_destroy(al);
}
END_TEST

/* A trusted proxy: its connections are not counted as handshakes, each session counts against
 * the client address it names (or its own when it names none); an exempt client is not
 * counted; other peers are counted as themselves. */
START_TEST(trusted_proxy)
{
    ms_addrlimit_t *al = make("127.0.0.0/8", "10.9.0.0/16", 1, 1);
    ms_addr_t proxy = addr("10.9.0.5"), c1 = addr("198.51.100.1"), c2 = addr("198.51.100.2"),
              lo = addr("127.0.0.1");
    ms_addrlimit_tag_t t[6];
    for (int i = 0; i < 6; i++) {
        ck_assert_int_eq(ms_addrlimit_accept(al, &proxy, &t[i]), 0); /* over 1: not counted */
        ck_assert_int_eq(ms_addrlimit_proxied(t[i]), 1);
    }
    ck_assert_uint_eq(ms_addrlimit_addresses(al), 0);
    ck_assert_int_eq(ms_addrlimit_session(al, &t[0], &c1), 0);
    ck_assert_int_eq(ms_addrlimit_session(al, &t[1], &c1), -1);
    ck_assert_int_eq(ms_addrlimit_session(al, &t[2], &c2), 0);
    ck_assert_int_eq(ms_addrlimit_session(al, &t[3], &lo), 0);
    ck_assert_uint_eq(t[3], 0);
    ck_assert_int_eq(ms_addrlimit_session(al, &t[4], &proxy), 0); /* no X-Forwarded-For */
    ck_assert_int_eq(ms_addrlimit_session(al, &t[5], &proxy), -1);
    ck_assert_uint_eq(ms_addrlimit_addresses(al), 3);
    for (int i = 0; i < 6; i++)
        ms_addrlimit_release(al, &t[i]);
    ck_assert_uint_eq(ms_addrlimit_addresses(al), 0);
    /* A client that is not the proxy is counted as itself. */
    ck_assert_int_eq(ms_addrlimit_accept(al, &c1, &t[0]), 0);
    ck_assert_int_eq(ms_addrlimit_proxied(t[0]), 0);
    ck_assert_int_eq(ms_addrlimit_accept(al, &c1, &t[1]), -1);
    ms_addrlimit_release(al, &t[0]);
    ms_addrlimit_destroy(al);
}
END_TEST

/* Random accepts, sessions and releases over a few addresses, against a brute-force count. */
START_TEST(churn)
{
    enum { N_ADDR = 5, N_CONN = 400, HS = 3, SESS = 4 };
    ms_addrlimit_t *al = make(NULL, NULL, HS, SESS);
    ms_addr_t a[N_ADDR];
    for (int i = 0; i < N_ADDR; i++) {
        char s[32];
        snprintf(s, sizeof(s), "192.0.2.%d", i + 1);
        a[i] = addr(s);
    }
    ms_addrlimit_tag_t tag[N_CONN] = {0};
    int who[N_CONN], state[N_CONN] = {0}; /* 0 none, 1 handshake, 2 session */
    long hs[N_ADDR] = {0}, sess[N_ADDR] = {0};
    srand(7);
    for (int step = 0; step < 200000; step++) {
        int c = rand() % N_CONN;
        if (state[c] == 0) {
            int i = rand() % N_ADDR;
            int r = ms_addrlimit_accept(al, &a[i], &tag[c]);
            ck_assert_int_eq(r, hs[i] >= HS ? -1 : 0);
            if (r == 0) {
                who[c] = i;
                hs[i]++;
                state[c] = 1;
            }
        } else if (state[c] == 1 && rand() % 2) {
            int i = who[c];
            int r = ms_addrlimit_session(al, &tag[c], NULL);
            ck_assert_int_eq(r, sess[i] >= SESS ? -1 : 0);
            hs[i]--;
            if (r == 0) {
                sess[i]++;
                state[c] = 2;
            } else {
                ms_addrlimit_release(al, &tag[c]);
                state[c] = 0;
            }
        } else {
            int i = who[c];
            ms_addrlimit_release(al, &tag[c]);
            if (state[c] == 1)
                hs[i]--;
            else
                sess[i]--;
            state[c] = 0;
        }
        if (step % 1000 == 0) {
            size_t live = 0;
            for (int i = 0; i < N_ADDR; i++) {
                long h, s;
                ms_addrlimit_counts(al, &a[i], &h, &s);
                ck_assert_int_eq(h, hs[i]);
                ck_assert_int_eq(s, sess[i]);
                live += hs[i] || sess[i];
            }
            ck_assert_uint_eq(ms_addrlimit_addresses(al), live);
        }
    }
    for (int c = 0; c < N_CONN; c++)
        ms_addrlimit_release(al, &tag[c]);
    ck_assert_uint_eq(ms_addrlimit_addresses(al), 0);
    ms_addrlimit_destroy(al);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("addrlimit");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, addresses);
    tcase_add_test(tc, cidr_lists);
    tcase_add_test(tc, handshakes);
    tcase_add_test(tc, sessions);
    tcase_add_test(tc, trusted_proxy);
    tcase_add_test(tc, churn);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
