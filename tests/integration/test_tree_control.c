/* SPDX-License-Identifier: Apache-2.0 */
/* Topologies apps control, through real processes: a tree's source (hello.role SOURCE, held place
 * before and after it), reparent, edge reports with their repair, hello.policy, and the token
 * claims that allow the last two. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cluster.h"
#include "testjwt.h"
#include "testutil.h"
#include "wsclient.h"

#define SECRET "tree-control-secret"

static cluster_t cl;
static int gdev, gjwt;

static void cluster_up(void)
{
    ck_assert_int_eq(cluster_start(&cl, NULL), 0);
    const char *dev[] = {"--insecure-dev", NULL};
    const char *jwt[] = {"--jwt-secret", SECRET, NULL};
    gdev = cluster_add_gateway(&cl, "gw-dev", dev);
    gjwt = cluster_add_gateway(&cl, "gw-jwt", jwt);
    ck_assert(gdev >= 0 && gjwt >= 0);
}

static void cluster_down(void)
{
    cluster_stop(&cl);
}

static void put_policy(const char *ns, const char *json)
{
    char path[128], *body = NULL;
    snprintf(path, sizeof(path), "/v1/namespaces/%s/policy", ns);
    int st = http_request(cl.admin_port, "PUT", path, NULL, json, &body);
    ck_assert_msg(st == 200, "PUT %s: %d %s", json, st, body ? body : "");
    free(body);
}

/* Connects to the dev gateway and sends a hello with extra fields. */
static wsc_t *hello(int gw, const char *ns, const char *peer, const char *extra)
{
    wsc_t *c = wsc_connect(cl.gw_port[gw], "meshsig.v1.json", T_MS);
    ck_assert_ptr_nonnull(c);
    send_json(c, "{\"id\":\"h\",\"hello\":{\"namespace\":\"%s\",\"peerId\":\"%s\"%s}}", ns, peer,
              extra ? extra : "");
    return c;
}

static wsc_t *join(const char *ns, const char *peer, const char *extra)
{
    wsc_t *c = hello(gdev, ns, peer, extra);
    json_decref(expect_key(c, "welcome"));
    return c;
}

/* Next message is topology.source with present (and peer when present). */
static void expect_source(wsc_t *c, int present, const char *peer)
{
    json_t *j = expect_key(c, "topology");
    json_t *s = json_object_get(json_object_get(j, "topology"), "source");
    char *dump = json_dumps(j, JSON_COMPACT);
    ck_assert_msg(s != NULL, "expected topology.source, got %s", dump);
    ck_assert_msg(json_is_true(json_object_get(s, "present")) == present, "%s", dump);
    if (peer)
        ck_assert_str_eq(str_at(s, "peer", NULL), peer);
    free(dump);
    json_decref(j);
}

static void expect_disconnect(wsc_t *c, const char *peer)
{
    json_t *j = expect_key(c, "topology");
    char *dump = json_dumps(j, JSON_COMPACT);
    ck_assert_msg(!strcmp(str_at(j, "topology", "disconnect", "peer", NULL), peer),
                  "expected disconnect from %s, got %s", peer, dump);
    free(dump);
    json_decref(j);
}

static void expect_retry(wsc_t *c, const char *peer)
{
    json_t *j = expect_key(c, "topology");
    char *dump = json_dumps(j, JSON_COMPACT);
    json_t *r = json_object_get(json_object_get(j, "topology"), "retry");
    ck_assert_msg(r && !strcmp(str_at(r, "peer", NULL), peer) &&
                      json_is_true(json_object_get(r, "iceRestart")),
                  "expected retry with %s, got %s", peer, dump);
    free(dump);
    json_decref(j);
}

/* The next two messages connect c to p and q, in either order. */
static void expect_connects(wsc_t *c, const char *p, const char *q)
{
    int seen_p = 0, seen_q = 0;
    for (int i = 0; i < 2; i++) {
        json_t *j = expect_key(c, "topology");
        const char *peer = str_at(j, "topology", "connect", "peer", NULL);
        seen_p += !strcmp(peer, p);
        seen_q += !strcmp(peer, q);
        json_decref(j);
    }
    ck_assert_msg(seen_p == 1 && seen_q == 1, "expected connects to %s and %s", p, q);
}

static void expect_ok(wsc_t *c, const char *id)
{
    json_t *j = expect_key(c, "ok");
    ck_assert_str_eq(str_at(j, "id", NULL), id);
    json_decref(j);
}

static json_t *admin_ns(const char *ns)
{
    char path[128], *body = NULL;
    snprintf(path, sizeof(path), "/v1/namespaces/%s", ns);
    ck_assert_int_eq(http_request(cl.admin_port, "GET", path, NULL, NULL, &body), 200);
    json_t *j = json_loads(body, 0, NULL);
    free(body);
    ck_assert_ptr_nonnull(j);
    return j;
}

START_TEST(source_held_place_and_reparent)
{
    put_policy("bcast", "{\"topology\":\"tree\",\"k\":2,\"k1\":2,\"beforeSource\":\"wait\","
                        "\"sourceLeaves\":\"wait\"}");
    /* Viewers before the source: told it is not there; v1 and v2 wait in its
     * place (no parent), v3 hangs under v1. */
    wsc_t *v1 = join("bcast", "v1", NULL);
    expect_source(v1, 0, NULL);
    wsc_t *v2 = join("bcast", "v2", NULL);
    expect_source(v2, 0, NULL);
    wsc_t *v3 = join("bcast", "v3", NULL);
    expect_connect(v3, "v1", 0);
    expect_source(v3, 0, NULL);
    expect_connect(v1, "v3", 1);
    /* The source takes its place: one link to each waiting child, nothing else moves. */
    wsc_t *s = join("bcast", "s", ",\"role\":\"SOURCE\"");
    expect_connects(s, "v1", "v2");
    expect_connect(v1, "s", 0);
    expect_source(v1, 1, "s");
    expect_connect(v2, "s", 0);
    expect_source(v2, 1, "s");
    expect_source(v3, 1, "s");
    /* One source at a time; no source outside trees. */
    wsc_t *s2 = hello(gdev, "bcast", "s2", ",\"role\":\"SOURCE\"");
    expect_error(s2, "SOURCE_TAKEN", "h");
    wsc_free(s2);
    wsc_t *f = hello(gdev, "flat", "f", ",\"role\":\"SOURCE\"");
    expect_error(f, "BAD_REQUEST", "h");
    wsc_free(f);
    /* v3 asks for another parent: the source is full (k1 = 2), so v2. */
    send_json(v3, "{\"id\":\"rp\",\"reparent\":{}}");
    expect_disconnect(v3, "v1");
    expect_connect(v3, "v2", 0);
    expect_ok(v3, "rp");
    expect_disconnect(v1, "v3");
    expect_connect(v2, "v3", 1);
    /* The root cannot. */
    send_json(s, "{\"id\":\"rp2\",\"reparent\":{}}");
    expect_error(s, "BAD_REQUEST", "rp2");
    /* The source goes: its children lose that link and everyone hears it is
     * gone; v3 keeps its parent. */
    wsc_free(s);
    expect_left(v1, "s");
    expect_source(v1, 0, NULL);
    expect_left(v2, "s");
    expect_source(v2, 0, NULL);
    expect_source(v3, 0, NULL);
    expect_quiet(v3, 300);
    json_t *j = admin_ns("bcast");
    ck_assert(json_is_true(json_object_get(json_object_get(j, "stats"), "waiting_for_source")));
    json_decref(j);
    /* An edge reported failed in a tree: the child moves away from that parent. */
    send_json(v3, "{\"id\":\"e1\",\"edge\":{\"peer\":\"v2\",\"state\":\"FAILED\"}}");
    expect_disconnect(v3, "v2");
    expect_connect(v3, "v1", 0);
    expect_ok(v3, "e1");
    wsc_free(v1);
    wsc_free(v2);
    wsc_free(v3);
}
END_TEST

START_TEST(edge_reports_retry_then_fail)
{
    put_policy("em", "{\"topology\":\"fullmesh\"}");
    wsc_t *a = join("em", "a", NULL);
    wsc_t *b = join("em", "b", NULL);
    expect_connect(a, "b", 1);
    expect_connect(b, "a", 0);
    send_json(a, "{\"id\":\"u\",\"edge\":{\"peer\":\"b\",\"state\":\"UP\",\"relayed\":true}}");
    expect_ok(a, "u");
    json_t *j = admin_ns("em");
    json_t *h = json_object_get(json_object_get(j, "stats"), "edgeHealth");
    ck_assert_int_eq(json_integer_value(json_object_get(h, "up")), 1);
    ck_assert_int_eq(json_integer_value(json_object_get(h, "relayed")), 1);
    json_decref(j);
    /* First failure: both ends restart ICE. Second: failed. */
    send_json(b, "{\"id\":\"f1\",\"edge\":{\"peer\":\"a\",\"state\":\"FAILED\"}}");
    expect_retry(b, "a");
    expect_ok(b, "f1");
    expect_retry(a, "b");
    send_json(b, "{\"id\":\"f2\",\"edge\":{\"peer\":\"a\",\"state\":\"FAILED\"}}");
    expect_ok(b, "f2");
    j = admin_ns("em");
    h = json_object_get(json_object_get(j, "stats"), "edgeHealth");
    ck_assert_int_eq(json_integer_value(json_object_get(h, "failed")), 1);
    ck_assert_int_eq(json_integer_value(json_object_get(h, "up")), 0);
    json_decref(j);
    /* Reports about strangers and bad states are refused. */
    send_json(a, "{\"id\":\"x\",\"edge\":{\"peer\":\"nobody\",\"state\":\"UP\"}}");
    expect_error(a, "PEER_NOT_FOUND", "x");
    send_json(a, "{\"id\":\"y\",\"edge\":{\"peer\":\"b\"}}");
    expect_error(a, "BAD_REQUEST", "y");
    send_json(a, "{\"id\":\"z\",\"reparent\":{}}");
    expect_error(a, "BAD_REQUEST", "z");
    wsc_free(a);
    wsc_free(b);
}
END_TEST

START_TEST(hello_policy_first_empty_namespace_sets_it)
{
    wsc_t *a = hello(gdev, "hp", "a", ",\"policy\":{\"topology\":\"tree\",\"k\":3}");
    json_t *w = expect_key(a, "welcome");
    ck_assert_str_eq(str_at(w, "welcome", "topology", NULL), "tree");
    json_decref(w);
    /* The same policy, or none, is fine; another one is refused. */
    wsc_t *b = hello(gdev, "hp", "b", ",\"policy\":{\"topology\":\"tree\",\"k\":3}");
    json_decref(expect_key(b, "welcome"));
    wsc_t *c = hello(gdev, "hp", "c", ",\"policy\":{\"topology\":\"fullmesh\"}");
    expect_error(c, "BAD_REQUEST", "h");
    wsc_t *d = hello(gdev, "hp2", "d", ",\"policy\":{\"topology\":\"ring\"}");
    expect_error(d, "BAD_REQUEST", "h");
    wsc_free(a);
    wsc_free(b);
    wsc_free(c);
    wsc_free(d);
}
END_TEST

static char *mint(const char *sub, const char *claim)
{
    return test_jwt_mint(SECRET, sub, "*", 600, claim);
}

static wsc_t *hello_token(const char *ns, const char *tok, const char *extra)
{
    wsc_t *c = wsc_connect(cl.gw_port[gjwt], "meshsig.v1.json", T_MS);
    ck_assert_ptr_nonnull(c);
    send_json(c, "{\"id\":\"h\",\"hello\":{\"namespace\":\"%s\",\"token\":\"%s\"%s}}", ns, tok,
              extra);
    return c;
}

START_TEST(claims_allow_source_and_policy)
{
    put_policy("tc", "{\"topology\":\"tree\"}");
    char *plain = mint("p", NULL), *src = mint("s", "source"), *pol = mint("q", "policy");
    wsc_t *a = hello_token("tc", plain, ",\"role\":\"SOURCE\"");
    expect_error(a, "FORBIDDEN", "h");
    wsc_t *b = hello_token("tc", src, ",\"role\":\"SOURCE\"");
    json_decref(expect_key(b, "welcome"));
    wsc_t *c = hello_token("tc2", plain, ",\"policy\":{\"topology\":\"tree\"}");
    expect_error(c, "FORBIDDEN", "h");
    wsc_t *d = hello_token("tc2", pol, ",\"policy\":{\"topology\":\"tree\"}");
    json_t *w = expect_key(d, "welcome");
    ck_assert_str_eq(str_at(w, "welcome", "topology", NULL), "tree");
    json_decref(w);
    wsc_free(a);
    wsc_free(b);
    wsc_free(c);
    wsc_free(d);
    free(plain);
    free(src);
    free(pol);
}
END_TEST

/* Resumes on the JWT gateway with a resume token and no JWT. */
static wsc_t *hello_resume(const char *ns, const char *resume_token, const char *extra)
{
    wsc_t *c = wsc_connect(cl.gw_port[gjwt], "meshsig.v1.json", T_MS);
    ck_assert_ptr_nonnull(c);
    send_json(c, "{\"id\":\"h\",\"hello\":{\"namespace\":\"%s\",\"resumeToken\":\"%s\"%s}}", ns,
              resume_token, extra);
    return c;
}

/* A source that lost its connection resumes without a JWT and is the source
 * again: the claim travels in the resume token. A viewer's token does not
 * grant it, so neither does its resume token. */
START_TEST(resumed_source_keeps_its_claim)
{
    put_policy("rs", "{\"topology\":\"tree\"}");
    char *src = mint("studio", "source"), *plain = mint("viewer", NULL);
    wsc_t *s = hello_token("rs", src, ",\"role\":\"SOURCE\"");
    json_t *w = expect_key(s, "welcome");
    char *rt = strdup(str_at(w, "welcome", "resumeToken", NULL));
    json_decref(w);
    ck_assert(*rt);
    wsc_t *v = hello_token("rs", plain, "");
    w = expect_key(v, "welcome");
    char *vrt = strdup(str_at(w, "welcome", "resumeToken", NULL));
    json_decref(w);
    expect_connect(s, "viewer", 1);
    /* The source's connection drops; it comes back with its resume token. */
    wsc_free(s);
    s = hello_resume("rs", rt, ",\"role\":\"SOURCE\"");
    w = expect_key(s, "welcome");
    ck_assert_str_eq(str_at(w, "welcome", "peerId", NULL), "studio");
    json_decref(w);
    json_t *j = admin_ns("rs");
    ck_assert(json_is_true(json_object_get(json_object_get(j, "stats"), "source")));
    json_decref(j);
    /* The viewer's resume token carries no source claim. */
    wsc_t *bad = hello_resume("rs", vrt, ",\"role\":\"SOURCE\"");
    expect_error(bad, "FORBIDDEN", "h");
    wsc_free(bad);
    wsc_free(s);
    wsc_free(v);
    free(rt);
    free(vrt);
    free(src);
    free(plain);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("tree_control");
    TCase *tc = tcase_create("core");
    tcase_add_checked_fixture(tc, client_up, client_down);
    tcase_add_unchecked_fixture(tc, cluster_up, cluster_down);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, source_held_place_and_reparent);
    tcase_add_test(tc, edge_reports_retry_then_fail);
    tcase_add_test(tc, hello_policy_first_empty_namespace_sets_it);
    tcase_add_test(tc, claims_allow_source_and_policy);
    tcase_add_test(tc, resumed_source_keeps_its_claim);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
