/* SPDX-License-Identifier: Apache-2.0 */
/* Bus subjects: what the builders write is what the parser reads back, under any prefix, and
 * nothing else parses as a subject of ours. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "subject.h"

START_TEST(round_trip)
{
    static const ms_subject_kind_t kinds[] = {
        MS_SUBJ_GW,           MS_SUBJ_GW_HEARTBEAT, MS_SUBJ_GW_RESYNC,     MS_SUBJ_COORD_HEARTBEAT,
        MS_SUBJ_COORD_POLICY, MS_SUBJ_COORD_RESYNC, MS_SUBJ_ADMIN_QUERY,   MS_SUBJ_ADMIN_REPLY,
        MS_SUBJ_PROBE,        MS_SUBJ_BACKEND_INFO, MS_SUBJ_BACKEND_OWNER, MS_SUBJ_BACKEND_TO};
    static const char *const prefixes[] = {"meshsig", "a", "x.y"};
    for (size_t p = 0; p < 3; p++)
        for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
            char buf[200];
            ck_assert_ptr_nonnull(ms_subject(buf, sizeof(buf), prefixes[p], kinds[i], "node-7"));
            ms_subject_t s;
            ck_assert_int_eq(ms_subject_parse(prefixes[p], buf, &s), kinds[i]);
            ck_assert_int_eq(s.kind, kinds[i]);
            int named = kinds[i] == MS_SUBJ_GW || kinds[i] == MS_SUBJ_COORD_RESYNC ||
                        kinds[i] == MS_SUBJ_ADMIN_REPLY || kinds[i] == MS_SUBJ_PROBE ||
                        kinds[i] == MS_SUBJ_BACKEND_TO;
            if (named)
                ck_assert_str_eq(s.id, "node-7");
            else
                ck_assert_ptr_null(s.id);
        }
}
END_TEST

START_TEST(wire_strings)
{
    /* The strings other NATS clients (backends, the tests, older nodes) rely on. */
    char buf[200];
    ck_assert_str_eq(ms_subject_shard(buf, sizeof(buf), "meshsig", 42), "meshsig.shard.42");
    ck_assert_str_eq(ms_subject_shard(buf, sizeof(buf), "meshsig", 0), "meshsig.shard.0");
    ck_assert_str_eq(ms_subject_shard(buf, sizeof(buf), "p", 4294967295u), "p.shard.4294967295");
    /* "p.shard.10" and its NUL take 11 bytes: 10 is one too few. */
    ck_assert_str_eq(ms_subject_shard(buf, 11, "p", 10), "p.shard.10");
    ck_assert_ptr_null(ms_subject_shard(buf, 10, "p", 10));
    ck_assert_str_eq(ms_subject_shard_any(buf, sizeof(buf), "meshsig"), "meshsig.shard.*");
    ck_assert_str_eq(ms_subject_gw(buf, sizeof(buf), "meshsig", "gw-1"), "meshsig.gw.gw-1");
    ck_assert_str_eq(ms_subject(buf, sizeof(buf), "meshsig", MS_SUBJ_GW_HEARTBEAT, NULL),
                     "meshsig.gw.heartbeat");
    ck_assert_str_eq(ms_subject(buf, sizeof(buf), "meshsig", MS_SUBJ_GW_RESYNC, "ignored"),
                     "meshsig.gw.resync");
    ck_assert_str_eq(ms_subject(buf, sizeof(buf), "meshsig", MS_SUBJ_COORD_RESYNC, "c1"),
                     "meshsig.coord.resync.c1");
    ck_assert_str_eq(ms_subject(buf, sizeof(buf), "meshsig", MS_SUBJ_ADMIN_REPLY, "c1"),
                     "meshsig.admin.reply.c1");
    ck_assert_str_eq(ms_subject(buf, sizeof(buf), "meshsig", MS_SUBJ_PROBE, "c1"),
                     "meshsig.probe.c1");
    ck_assert_str_eq(ms_subject_offline_any(buf, sizeof(buf), "meshsig"), "meshsig.offline.>");
    /* The backend contract (proto/backend.proto): version 1 in every name. */
    ck_assert_str_eq(ms_subject_backend_shard(buf, sizeof(buf), "meshsig", 7),
                     "meshsig.backend.v1.shard.7");
    ck_assert_str_eq(ms_subject_backend_shard_any(buf, sizeof(buf), "meshsig"),
                     "meshsig.backend.v1.shard.*");
    ck_assert_str_eq(ms_subject(buf, sizeof(buf), "meshsig", MS_SUBJ_BACKEND_INFO, NULL),
                     "meshsig.backend.v1.info");
    ck_assert_str_eq(ms_subject(buf, sizeof(buf), "meshsig", MS_SUBJ_BACKEND_OWNER, NULL),
                     "meshsig.backend.v1.owner");
    ck_assert_str_eq(ms_subject(buf, sizeof(buf), "meshsig", MS_SUBJ_BACKEND_TO, "echo-1"),
                     "meshsig.backend.v1.to.echo-1");
    ms_subject_t bs;
    ck_assert_int_eq(ms_subject_parse("meshsig", "meshsig.backend.v1.shard.63", &bs),
                     MS_SUBJ_BACKEND_SHARD);
    ck_assert_uint_eq(bs.shard, 63);
    ck_assert_int_eq(ms_subject_parse("meshsig", "meshsig.backend.v1.shard.x", &bs),
                     MS_SUBJ_UNKNOWN);
    ck_assert_int_eq(ms_subject_parse("meshsig", "meshsig.backend.v2.shard.1", &bs),
                     MS_SUBJ_UNKNOWN);
    /* Stored emits outlive a restart: the offline subject of (ns, peer) never changes. */
    ck_assert_str_eq(ms_subject_offline(buf, sizeof(buf), "meshsig", "room", "alice"),
                     ms_subject_offline(buf + 100, 100, "meshsig", "room", "alice"));
    ck_assert_int_eq(strlen(buf), strlen("meshsig.offline.") + 16 + 1 + 16);
    ck_assert_str_ne(buf, ms_subject_offline(buf + 100, 100, "meshsig", "room", "bob"));
}
END_TEST

START_TEST(shards)
{
    ms_subject_t s;
    ck_assert_int_eq(ms_subject_parse("meshsig", "meshsig.shard.0", &s), MS_SUBJ_SHARD);
    ck_assert_uint_eq(s.shard, 0);
    ck_assert_int_eq(ms_subject_parse("meshsig", "meshsig.shard.4294967295", &s), MS_SUBJ_SHARD);
    ck_assert_uint_eq(s.shard, 4294967295u);
    static const char *const bad[] = {
        "meshsig.shard.",  "meshsig.shard.-1", "meshsig.shard. 1",  "meshsig.shard.1x",
        "meshsig.shard.*", "meshsig.shard.+1", "meshsig.shard.1.2", "meshsig.shard.4294967296"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        ck_assert_msg(ms_subject_parse("meshsig", bad[i], &s) == MS_SUBJ_UNKNOWN, "%s", bad[i]);
}
END_TEST

START_TEST(foreign)
{
    ms_subject_t s;
    static const char *const bad[] = {"other.shard.1",
                                      "meshsigx.shard.1",
                                      "meshsig",
                                      "meshsig.",
                                      "meshsig.gw.",
                                      "meshsig.gw",
                                      "meshsig.coord.x",
                                      "meshsig.probe.",
                                      "meshsig.admin.reply.",
                                      "_INBOX.abc",
                                      ""};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        ck_assert_msg(ms_subject_parse("meshsig", bad[i], &s) == MS_SUBJ_UNKNOWN, "%s", bad[i]);
        ck_assert_ptr_null(s.id);
    }
}
END_TEST

START_TEST(limits)
{
    char small[16];
    ck_assert_ptr_null(ms_subject_gw(small, sizeof(small), "meshsig", "a-long-gateway-id"));
    ck_assert_ptr_null(ms_subject(small, sizeof(small), "meshsig", MS_SUBJ_SHARD, NULL));
    ck_assert_ptr_null(ms_subject(small, sizeof(small), "meshsig", MS_SUBJ_UNKNOWN, NULL));
    ck_assert(ms_subject_id_ok("coord-host-12"));
    static const char *const bad[] = {"", "a.b", "a*", "a>", "a b", "a\tb", "a\x7f"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        ck_assert_msg(!ms_subject_id_ok(bad[i]), "%s", bad[i]);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("subject");
    TCase *tc = tcase_create("subject");
    tcase_add_test(tc, round_trip);
    tcase_add_test(tc, wire_strings);
    tcase_add_test(tc, shards);
    tcase_add_test(tc, foreign);
    tcase_add_test(tc, limits);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
