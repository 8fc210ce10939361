/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for the policy file: YAML and JSON forms, first-match rules, errors that name the
 * rule. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "policy_rules.h"
#include "yamljson.h"

static const char yaml_doc[] = "# broadcast channels are trees, maps are geographic meshes\n"
                               "default:\n"
                               "  topology: fullmesh\n"
                               "  cap: 16\n"
                               "rules:\n"
                               "  - match: \"broadcast.*\"\n"
                               "    policy: {topology: tree, k: 4}\n"
                               "  - match: geo.*\n"
                               "    policy:\n"
                               "      topology: delaunay\n"
                               "      positioning: geo\n"
                               "  - match: \"open-*\"\n"
                               "    policy: {signals: any, duplicateIds: replace}\n";

static char *write_tmp(const char *suffix, const char *text)
{
    char *path = malloc(64);
    snprintf(path, 64, "/tmp/ms-policy-XXXXXX%s", suffix);
    int fd = mkstemps(path, (int)strlen(suffix));
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    return path;
}

START_TEST(peerjs_policy_fields)
{
    /* PeerJS namespaces: no topology, signals to anyone, held 5 s for an absent peer. */
    ms_policy_t def, p;
    ms_policy_peerjs(&def);
    ck_assert_str_eq(def.topology, "none");
    ck_assert_int_eq(def.signal_any, 1);
    ck_assert_uint_eq(def.hold_ms, 5000);
    char err[256] = "";
    json_t *j = json_loads("{\"topology\":\"none\",\"signals\":\"any\",\"holdMs\":5000}", 0, NULL);
    ck_assert_int_eq(ms_policy_parse(j, &p, err, sizeof(err)), MS_OK);
    ck_assert(ms_policy_same(&p, &def));
    json_t *back = ms_policy_to_json(&p);
    ck_assert_int_eq(json_integer_value(json_object_get(back, "holdMs")), 5000);
    json_decref(back);
    json_decref(j);
    j = json_loads("{\"holdMs\":-1}", 0, NULL);
    ck_assert_int_eq(ms_policy_parse(j, &p, err, sizeof(err)), MS_ERR_INVAL);
    ck_assert_ptr_nonnull(strstr(err, "holdMs"));
    json_decref(j);
    /* none is no `then` for auto: it has no edges to grow into. */
    j = json_loads("{\"topology\":\"auto\",\"then\":\"none\"}", 0, NULL);
    ck_assert_int_eq(ms_policy_parse(j, &p, err, sizeof(err)), MS_ERR_INVAL);
    json_decref(j);
}
END_TEST

START_TEST(yaml_scalars_as_json)
{
    char err[256];
    const char *y = "a: 1\nb: -2.5\nc: true\nd: ~\ne: \"7\"\nf: x.y\ng: [1, two]\nh: 1e3\n"
                    "i: +5\nj: ''\n";
    json_t *j = ms_yaml_loads(y, strlen(y), err, sizeof(err));
    ck_assert_msg(j != NULL, "%s", err);
    ck_assert(json_is_integer(json_object_get(j, "a")));
    ck_assert_int_eq(json_integer_value(json_object_get(j, "a")), 1);
    ck_assert(json_is_real(json_object_get(j, "b")));
    ck_assert(json_is_true(json_object_get(j, "c")));
    ck_assert(json_is_null(json_object_get(j, "d")));
    ck_assert_str_eq(json_string_value(json_object_get(j, "e")), "7"); /* quoted: a string */
    ck_assert_str_eq(json_string_value(json_object_get(j, "f")), "x.y");
    ck_assert_int_eq(json_array_size(json_object_get(j, "g")), 2);
    ck_assert(json_is_real(json_object_get(j, "h")));
    ck_assert_int_eq(json_integer_value(json_object_get(j, "i")), 5); /* YAML 1.2 core: +5 */
    ck_assert_str_eq(json_string_value(json_object_get(j, "j")), "");
    json_decref(j);
}
END_TEST

START_TEST(yaml_refuses_aliases_depth_and_duplicates)
{
    char err[256];
    const char *alias = "a: &x [1, 2]\nb: *x\n";
    ck_assert_ptr_null(ms_yaml_loads(alias, strlen(alias), err, sizeof(err)));
    ck_assert_ptr_nonnull(strstr(err, "aliases"));
    const char *dup = "a: 1\na: 2\n";
    ck_assert_ptr_null(ms_yaml_loads(dup, strlen(dup), err, sizeof(err)));
    ck_assert_ptr_nonnull(strstr(err, "duplicate key 'a'"));
    char deep[400];
    size_t n = 0;
    for (int i = 0; i < 100; i++)
        deep[n++] = '[';
    for (int i = 0; i < 100; i++)
        deep[n++] = ']';
    deep[n] = '\0';
    ck_assert_ptr_null(ms_yaml_loads(deep, n, err, sizeof(err)));
    ck_assert_ptr_nonnull(strstr(err, "nested deeper"));
    const char *bad = "a: [1, 2\n";
    ck_assert_ptr_null(ms_yaml_loads(bad, strlen(bad), err, sizeof(err)));
    ck_assert_ptr_nonnull(strstr(err, "line "));
    const char *two = "a: 1\n---\nb: 2\n";
    ck_assert_ptr_null(ms_yaml_loads(two, strlen(two), err, sizeof(err)));
    const char *complex_key = "? [1]\n: 2\n";
    ck_assert_ptr_null(ms_yaml_loads(complex_key, strlen(complex_key), err, sizeof(err)));
}
END_TEST

static void check_rules(ms_policy_rules_t *r)
{
    int rule;
    const ms_policy_t *p = ms_policy_rules_match(r, "broadcast.news", &rule);
    ck_assert_int_eq(rule, 0);
    ck_assert_str_eq(p->topology, "tree");
    ck_assert_uint_eq(p->params.k, 4);
    p = ms_policy_rules_match(r, "geo.paris", &rule);
    ck_assert_int_eq(rule, 1);
    ck_assert_str_eq(p->topology, "delaunay");
    ck_assert_int_eq(p->positioning, MS_POS_GEO);
    ck_assert_int_eq(p->params.geo, 1);
    p = ms_policy_rules_match(r, "open-lobby", &rule);
    ck_assert_int_eq(rule, 2);
    ck_assert_int_eq(p->signal_any, 1);
    ck_assert_int_eq(p->id_replace, 1);
    /* `broadcast.*` is not `broadcast*`: the dot is part of the pattern */
    p = ms_policy_rules_match(r, "broadcaster", &rule);
    ck_assert_int_eq(rule, -1);
    ck_assert_str_eq(p->topology, "fullmesh");
    ck_assert_uint_eq(p->params.cap, 16);
}

START_TEST(yaml_and_json_files_give_the_same_rules)
{
    char err[256];
    char *ypath = write_tmp(".yaml", yaml_doc);
    ms_policy_rules_t *r = NULL;
    ck_assert_msg(ms_policy_rules_load(ypath, &r, err, sizeof(err)) == MS_OK, "%s", err);
    check_rules(r);
    json_t *dump = ms_policy_rules_to_json(r);
    ck_assert_str_eq(json_string_value(json_object_get(dump, "source")), ypath);
    ck_assert_int_eq(json_array_size(json_object_get(dump, "rules")), 3);
    /* What the admin API lists reads back as the same rules. */
    json_object_del(dump, "source");
    char *text = json_dumps(dump, 0);
    char *jpath = write_tmp(".json", text);
    ms_policy_rules_t *r2 = NULL;
    ck_assert_msg(ms_policy_rules_load(jpath, &r2, err, sizeof(err)) == MS_OK, "%s", err);
    check_rules(r2);
    ms_policy_rules_destroy(r2);
    ms_policy_rules_destroy(r);
    json_decref(dump);
    free(text);
    unlink(ypath);
    unlink(jpath);
    free(ypath);
    free(jpath);
}
END_TEST

START_TEST(first_match_wins_and_star_catches_all)
{
    char err[256];
    const char *y = "rules:\n"
                    "  - {match: \"a.b.*\", policy: {topology: tree, k: 3}}\n"
                    "  - {match: \"a.*\", policy: {topology: spray}}\n"
                    "  - {match: \"*\", policy: {topology: fullmesh, cap: 8}}\n";
    json_t *doc = ms_yaml_loads(y, strlen(y), err, sizeof(err));
    ck_assert_msg(doc != NULL, "%s", err);
    ms_policy_rules_t *r = NULL;
    ck_assert_msg(ms_policy_rules_parse(doc, &r, err, sizeof(err)) == MS_OK, "%s", err);
    int rule;
    ck_assert_str_eq(ms_policy_rules_match(r, "a.b.c", &rule)->topology, "tree");
    ck_assert_str_eq(ms_policy_rules_match(r, "a.x", &rule)->topology, "spray");
    ck_assert_int_eq(rule, 1);
    ck_assert_uint_eq(ms_policy_rules_match(r, "zzz", &rule)->params.cap, 8);
    ck_assert_int_eq(rule, 2);
    ms_policy_rules_destroy(r);
    json_decref(doc);
}
END_TEST

START_TEST(errors_name_the_rule)
{
    char err[256];
    struct {
        const char *yaml, *want;
    } cases[] = {
        {"rules:\n  - {match: x, policy: {topology: ring}}\n", "rule 1 (x): unknown topology"},
        {"rules:\n  - {match: x, policy: {}}\n  - {match: y, policy: {k: 1}}\n",
         "rule 2 (y): k must be"},
        {"rules:\n  - {match: x}\n", "rule 1: must be {match"},
        {"rules:\n  - {match: \"\", policy: {}}\n", "rule 1: must be"},
        {"rules: {match: x}\n", "rules must be a list"},
        {"default: {cap: -1}\n", "default: cap must be"},
        {"defaults: {}\n", "unknown top-level field 'defaults'"},
        {"- 1\n", "must hold a mapping"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        json_t *doc = ms_yaml_loads(cases[i].yaml, strlen(cases[i].yaml), err, sizeof(err));
        ck_assert_msg(doc != NULL, "%s", err);
        ms_policy_rules_t *r = NULL;
        ck_assert_int_eq(ms_policy_rules_parse(doc, &r, err, sizeof(err)), MS_ERR_INVAL);
        ck_assert_msg(strstr(err, cases[i].want), "case %zu: '%s' lacks '%s'", i, err,
                      cases[i].want);
        json_decref(doc);
    }
    ms_policy_rules_t *r = NULL;
    ck_assert_int_eq(ms_policy_rules_load("/nonexistent/p.yaml", &r, err, sizeof(err)),
                     MS_ERR_INVAL);
    ck_assert_ptr_nonnull(strstr(err, "/nonexistent/p.yaml"));
    char *jpath = write_tmp(".json", "{\"rules\": [}");
    ck_assert_int_eq(ms_policy_rules_load(jpath, &r, err, sizeof(err)), MS_ERR_INVAL);
    ck_assert_ptr_nonnull(strstr(err, "line 1"));
    unlink(jpath);
    free(jpath);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("policy_rules");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, yaml_scalars_as_json);
    tcase_add_test(tc, peerjs_policy_fields);
    tcase_add_test(tc, yaml_refuses_aliases_depth_and_duplicates);
    tcase_add_test(tc, yaml_and_json_files_give_the_same_rules);
    tcase_add_test(tc, first_match_wins_and_star_catches_all);
    tcase_add_test(tc, errors_name_the_rule);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
