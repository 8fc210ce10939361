/* SPDX-License-Identifier: Apache-2.0 */
/* meshsig-loadgen's naming (peer ids, namespaces) and topology parsing, on which bench/scale's
 * several load generators in shared namespaces and its failover counts rely. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loadgen.h"
#include "proto.h"

static ms_lg_cfg_t cfg_of(ms_lg_scenario_t sc, uint32_t base, uint32_t group, uint32_t nss)
{
    ms_lg_cfg_t c = {.proto = &ms_lg_proto_meshsig,
                     .scenario = sc,
                     .ns = "scale-",
                     .id_prefix = "p",
                     .clients = 100,
                     .base = base,
                     .group = group,
                     .namespaces = nss};
    return c;
}

START_TEST(namespaces_by_global_index)
{
    char ns[64];
    /* Two load generators with 15000 clients each fill namespaces of 10000 between them. */
    ms_lg_cfg_t a = cfg_of(MS_LG_STORM, 0, 10000, 0), b = cfg_of(MS_LG_STORM, 15000, 10000, 0);
    ck_assert_int_gt(ms_lg_namespace(&a, 9999, ns, sizeof ns), 0);
    ck_assert_str_eq(ns, "scale-0");
    ms_lg_namespace(&a, 10000, ns, sizeof ns);
    ck_assert_str_eq(ns, "scale-1");
    ms_lg_namespace(&b, 4999, ns, sizeof ns);
    ck_assert_str_eq(ns, "scale-1");
    ms_lg_namespace(&b, 5000, ns, sizeof ns);
    ck_assert_str_eq(ns, "scale-2");
    /* A probe: one client in each of 10 namespaces, ids far from the others. */
    ms_lg_cfg_t p = cfg_of(MS_LG_STORM, 100003, 1, 10);
    for (uint32_t i = 0; i < 10; i++) {
        char want[16];
        snprintf(want, sizeof want, "scale-%u", (100003 + i) % 10);
        ms_lg_namespace(&p, i, ns, sizeof ns);
        ck_assert_str_eq(ns, want);
    }
    /* Storm without a group: everyone in --ns itself; idle defaults to pairs. */
    ms_lg_cfg_t s = cfg_of(MS_LG_STORM, 0, 0, 0), i2 = cfg_of(MS_LG_IDLE, 6, 0, 0);
    ms_lg_namespace(&s, 77, ns, sizeof ns);
    ck_assert_str_eq(ns, "scale-");
    ms_lg_namespace(&i2, 1, ns, sizeof ns);
    ck_assert_str_eq(ns, "scale-3");
    ck_assert_int_eq(ms_lg_namespace(&a, 0, ns, 4), -1);
    /* --ns-list: one client per named namespace (a probe of chosen shards), by global index. */
    static const char *const names[] = {"x-a", "x-b", "x-c"};
    ms_lg_cfg_t l = cfg_of(MS_LG_STORM, 7, 1, 0);
    l.ns_list = names;
    l.n_ns_list = 3;
    ms_lg_namespace(&l, 0, ns, sizeof ns);
    ck_assert_str_eq(ns, "x-b");
    ms_lg_namespace(&l, 2, ns, sizeof ns);
    ck_assert_str_eq(ns, "x-a");
}
END_TEST

START_TEST(own_peers)
{
    ms_lg_cfg_t c = cfg_of(MS_LG_STORM, 0, 0, 0);
    ck_assert(ms_lg_own_peer(&c, "p123", 4));
    ck_assert(ms_lg_own_peer(&c, "p123xyz", 4));
    ck_assert(!ms_lg_own_peer(&c, "probe7", 6));
    ck_assert(!ms_lg_own_peer(&c, "p", 1));
    ck_assert(!ms_lg_own_peer(&c, "q12", 3));
    ck_assert(!ms_lg_own_peer(&c, NULL, 0));
    c.id_prefix = "probe";
    ck_assert(ms_lg_own_peer(&c, "probe7", 6));
    ck_assert(!ms_lg_own_peer(&c, "p7", 2));
}
END_TEST

START_TEST(topology_peer_parsed)
{
    static const char conn[] =
        "{\"topology\":{\"connect\":{\"peer\":\"p42\",\"initiator\":true,\"position\":{}}}}";
    static const char disc[] = "{\"topology\":{\"disconnect\":{\"peer\":\"probe3\"}}}";
    ms_lg_msg_t m;
    ck_assert_int_eq(ms_lg_proto_meshsig.parse(conn, strlen(conn), &m), 0);
    ck_assert_int_eq(m.ev, MS_LG_EV_CONNECT);
    ck_assert_uint_eq(m.peer_len, 3);
    ck_assert(!memcmp(m.peer, "p42", 3));
    ck_assert_int_eq(ms_lg_proto_meshsig.parse(disc, strlen(disc), &m), 0);
    ck_assert_int_eq(m.ev, MS_LG_EV_DISCONNECT);
    ck_assert_uint_eq(m.peer_len, 6);
    ck_assert(!memcmp(m.peer, "probe3", 6));
    /* The hello carries the peer id and namespace it was given. */
    char buf[256];
    ck_assert_int_gt(ms_lg_proto_meshsig.hello(buf, sizeof buf, "scale-3", "p30000"), 0);
    ck_assert_str_eq(buf,
                     "{\"id\":\"1\",\"hello\":{\"namespace\":\"scale-3\",\"peerId\":\"p30000\"}}");
}
END_TEST

int main(void)
{
    Suite *s = suite_create("loadgen");
    TCase *tc = tcase_create("loadgen");
    tcase_add_test(tc, namespaces_by_global_index);
    tcase_add_test(tc, own_peers);
    tcase_add_test(tc, topology_peer_parsed);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
