/* SPDX-License-Identifier: Apache-2.0 */
/* Operator actions of the admin API through real processes: kick with a reason and a ban, emit
 * to a peer, publish to a topic, close a namespace; asked of the owner and of another
 * coordinator; token required; audited in the log; a ban survives the owner's exit. */
#include <check.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cluster.h"
#include "testutil.h"
#include "wsclient.h"

#define TOKEN "admintoken"

static cluster_t cl;
static int gw;
static const char *const coord_args[] = {"--coord-heartbeat-ms", "200", "--coord-timeout-ms", "800",
                                         NULL};

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void cluster_up(void)
{
    ck_assert_int_eq(cluster_start_args(&cl, TOKEN, coord_args), 0);
    ck_assert_int_eq(cluster_add_coordinator(&cl), 1);
    /* Both serve their share before any namespace exists: no shard moves mid-test. */
    long long end = now_ms() + 20000;
    while (http_request(cluster_coord_admin(&cl, 1), "GET", "/readyz", NULL, NULL, NULL) != 200 ||
           http_request(cluster_coord_admin(&cl, 0), "GET", "/readyz", NULL, NULL, NULL) != 200) {
        ck_assert_msg(now_ms() < end, "coordinators not ready");
        usleep(20000);
    }
    const char *dev[] = {"--insecure-dev", NULL};
    gw = cluster_add_gateway(&cl, "gw-a", dev);
    ck_assert_int_ge(gw, 0);
}

static void cluster_down(void)
{
    cluster_stop(&cl);
}

/* Index of the coordinator that owns ns (it has peers), from coordinator 0's view. */
static int owner_of(const char *ns)
{
    char path[256], *body = NULL;
    snprintf(path, sizeof(path), "/v1/namespaces/%s", ns);
    ck_assert_int_eq(http_request(cl.admin_port, "GET", path, TOKEN, NULL, &body), 200);
    json_t *j = json_loads(body, 0, NULL);
    free(body);
    const char *owner = json_string_value(json_object_get(j, "owner"));
    ck_assert_ptr_nonnull(owner);
    int idx = -1;
    for (int i = 0; i < cl.n_coord; i++)
        if (!strcmp(owner, cluster_coord_id(&cl, i)))
            idx = i;
    json_decref(j);
    ck_assert_int_ge(idx, 0);
    return idx;
}

/* POST /v1/namespaces/ns/op on coordinator i: the status, the answer in *out (may be NULL). */
static int act(int i, const char *token, const char *ns, const char *op, const char *body,
               json_t **out)
{
    char path[256], *resp = NULL;
    snprintf(path, sizeof(path), "/v1/namespaces/%s/%s", ns, op);
    int st = http_request(cluster_coord_admin(&cl, i), "POST", path, token, body, &resp);
    if (out)
        *out = resp ? json_loads(resp, 0, NULL) : NULL;
    free(resp);
    return st;
}

/* The hello answer for peer in ns: the welcome or the error, as JSON. */
static json_t *try_join(const char *ns, const char *peer, wsc_t **out)
{
    wsc_t *c = wsc_connect(cl.gw_port[gw], "meshsig.v1.json", T_MS);
    ck_assert_ptr_nonnull(c);
    send_json(c, "{\"id\":\"h\",\"hello\":{\"namespace\":\"%s\",\"peerId\":\"%s\"}}", ns, peer);
    json_t *j = recv_json(c);
    *out = c;
    return j;
}

/* Lines of a process log (relative to the cluster dir) holding every needle. */
static int log_lines_with(const char *log, const char *const *needles)
{
    char path[512], line[4096];
    snprintf(path, sizeof(path), "%s/%s.log", cl.dir, log);
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    int n = 0;
    while (fgets(line, sizeof(line), f)) {
        int all = 1;
        for (int i = 0; needles[i] && all; i++)
            all = strstr(line, needles[i]) != NULL;
        n += all;
    }
    fclose(f);
    return n;
}

static int audited(const char *const *needles)
{
    return log_lines_with("coordinator", needles) + log_lines_with("coord-2", needles);
}

/* The next message is error code with a message containing text; then the server closes with
 * close_code. */
static void expect_closed_with(wsc_t *c, const char *code, const char *text, int close_code)
{
    json_t *j = skip_to(c, "error");
    ck_assert_str_eq(str_at(j, "error", "code", NULL), code);
    ck_assert_msg(strstr(str_at(j, "error", "message", NULL), text), "message: %s",
                  str_at(j, "error", "message", NULL));
    json_decref(j);
    ck_assert_int_eq(wsc_wait_closed(c, T_MS), 1);
    ck_assert_int_eq(wsc_close_code(c), close_code);
}

START_TEST(emit_to_a_peer)
{
    wsc_t *a = join_as(cl.gw_port[gw], "act-emit", "alice");
    for (int i = 0; i < cl.n_coord; i++) {
        /* From the owner and from the other coordinator alike. */
        json_t *res = NULL;
        char body[128];
        snprintf(body, sizeof(body),
                 "{\"peer\":\"alice\",\"event\":\"notice\",\"data\":{\"n\":%d}}", i);
        ck_assert_int_eq(act(i, TOKEN, "act-emit", "emit", body, &res), 200);
        ck_assert(json_is_true(json_object_get(res, "delivered")));
        json_decref(res);
        json_t *j = expect_key(a, "emit");
        json_t *em = json_object_get(j, "emit");
        ck_assert_str_eq(str_at(j, "emit", "event", NULL), "notice");
        ck_assert_int_eq(json_integer_value(json_object_get(json_object_get(em, "data"), "n")), i);
        ck_assert_ptr_null(json_object_get(em, "from")); /* from the server, not a peer */
        json_decref(j);
    }
    /* An absent peer, an absent namespace, a bad event name. */
    ck_assert_int_eq(act(0, TOKEN, "act-emit", "emit", "{\"peer\":\"zoe\",\"event\":\"x\"}", NULL),
                     404);
    ck_assert_int_eq(act(1, TOKEN, "act-emit", "emit", "{\"peer\":\"zoe\",\"event\":\"x\"}", NULL),
                     404);
    ck_assert_int_eq(act(1, TOKEN, "nowhere", "emit", "{\"peer\":\"a\",\"event\":\"x\"}", NULL),
                     404);
    ck_assert_int_eq(act(0, TOKEN, "act-emit", "emit", "{\"peer\":\"alice\",\"event\":\"\"}", NULL),
                     400);
    expect_quiet(a, 200);
    wsc_free(a);
}
END_TEST

START_TEST(publish_to_a_topic)
{
    wsc_t *a = join_as(cl.gw_port[gw], "act-pub", "alice");
    wsc_t *b = join_as(cl.gw_port[gw], "act-pub", "bob");
    json_decref(skip_to(a, "topology"));
    json_decref(skip_to(b, "topology"));
    send_json(a, "{\"id\":\"s\",\"topic\":{\"subscribe\":{\"pattern\":\"news.>\"}}}");
    json_decref(expect_key(a, "ok"));
    int other = 1 - owner_of("act-pub");
    json_t *res = NULL;
    ck_assert_int_eq(act(other, TOKEN, "act-pub", "publish",
                         "{\"topic\":\"news.today\",\"data\":\"hello\",\"by\":\"ops-alice\"}",
                         &res),
                     200);
    ck_assert_int_eq(json_integer_value(json_object_get(res, "subscribers")), 1);
    json_decref(res);
    json_t *j = expect_key(a, "topic");
    ck_assert_str_eq(str_at(j, "topic", "publish", "topic", NULL), "news.today");
    ck_assert_str_eq(str_at(j, "topic", "publish", "data", NULL), "hello");
    ck_assert_ptr_null(
        json_object_get(json_object_get(json_object_get(j, "topic"), "publish"), "from"));
    json_decref(j);
    expect_quiet(b, 200); /* not subscribed */
    ck_assert_int_eq(act(0, TOKEN, "act-pub", "publish", "{\"topic\":\"news.*\"}", NULL), 400);
    wsc_free(a);
    wsc_free(b);
}
END_TEST

START_TEST(kick_with_reason_and_ban)
{
    wsc_t *a = join_as(cl.gw_port[gw], "act-kick", "alice");
    wsc_t *b = join_as(cl.gw_port[gw], "act-kick", "bob");
    expect_connect(a, "bob", 1);
    expect_connect(b, "alice", 0);
    /* Asked of the coordinator that does not own the namespace. */
    int other = 1 - owner_of("act-kick");
    json_t *res = NULL;
    ck_assert_int_eq(act(other, TOKEN, "act-kick", "kick",
                         "{\"peer\":\"bob\",\"reason\":\"spamming the room\",\"banS\":2,"
                         "\"by\":\"ops-alice\"}",
                         &res),
                     200);
    ck_assert(json_is_true(json_object_get(res, "kicked")));
    ck_assert_int_eq(json_integer_value(json_object_get(res, "bannedS")), 2);
    json_decref(res);
    expect_closed_with(b, "KICKED", "spamming the room", 4002);
    json_t *j = skip_to(a, "peerLeft");
    ck_assert_str_eq(str_at(j, "peerLeft", "peer", NULL), "bob");
    ck_assert_str_eq(str_at(j, "peerLeft", "reason", NULL), "kicked");
    json_decref(j);
    wsc_free(b);
    /* A rejoin with that id is refused, saying why, until the ban runs out. */
    long long banned_at = now_ms();
    j = try_join("act-kick", "bob", &b);
    ck_assert_str_eq(str_at(j, "error", "code", NULL), "BANNED");
    ck_assert_msg(strstr(str_at(j, "error", "message", NULL), "spamming the room"), "%s",
                  str_at(j, "error", "message", NULL));
    json_decref(j);
    wsc_free(b);
    /* Another id joins meanwhile. */
    wsc_t *c = join_as(cl.gw_port[gw], "act-kick", "carol");
    int welcomed = 0;
    long long end = now_ms() + 8000;
    while (!welcomed && now_ms() < end) {
        j = try_join("act-kick", "bob", &b);
        welcomed = json_object_get(j, "welcome") != NULL;
        if (!welcomed) {
            ck_assert_str_eq(str_at(j, "error", "code", NULL), "BANNED");
            wsc_pump(200); /* the ban runs on the coordinator's clock */
        }
        json_decref(j);
        wsc_free(b);
    }
    ck_assert_msg(welcomed, "bob still banned after 8 s");
    ck_assert_int_ge(now_ms() - banned_at, 1000);
    /* Kicking an absent peer without a ban: 404; a missing peer field: 400. */
    ck_assert_int_eq(act(0, TOKEN, "act-kick", "kick", "{\"peer\":\"nobody\"}", NULL), 404);
    ck_assert_int_eq(act(0, TOKEN, "act-kick", "kick", "{\"reason\":\"x\"}", NULL), 400);
    ck_assert_int_eq(act(0, TOKEN, "act-kick", "kick", "{\"peer\":\"bob\",\"banS\":-1}", NULL),
                     400);
    wsc_free(c);
    wsc_free(a);
    /* Audited where asked and where carried out: who, what, the outcome. */
    const char *asked[] = {"audit:",
                           "\"op\":\"kick\"",
                           "\"by\":\"ops-alice\"",
                           "\"peer\":\"bob\"",
                           "\"stage\":\"requested\"",
                           "\"from\":\"127.0.0.1:",
                           NULL};
    const char *done[] = {"audit:",
                          "\"op\":\"kick\"",
                          "\"stage\":\"carried out\"",
                          "\"status\":200",
                          "\"reason\":\"spamming the room\"",
                          NULL};
    ck_assert_int_ge(audited(asked), 1);
    ck_assert_int_ge(audited(done), 1);
}
END_TEST

START_TEST(token_required_and_bad_requests)
{
    ck_assert_int_eq(act(0, NULL, "act-x", "close", "{}", NULL), 401);
    ck_assert_int_eq(act(0, "wrong", "act-x", "kick", "{\"peer\":\"a\"}", NULL), 401);
    ck_assert_int_eq(act(0, TOKEN, "act-x", "explode", "{}", NULL), 400);
    ck_assert_int_eq(act(0, TOKEN, "act-x", "close", "{\"reason\":1}", NULL), 400);
    ck_assert_int_eq(act(0, TOKEN, "act-x", "close", "{\"extra\":true}", NULL), 400);
    ck_assert_int_eq(act(0, TOKEN, "act-x", "close", "not json", NULL), 400);
    const char *refused[] = {"audit:", "\"stage\":\"unauthorized\"", NULL};
    ck_assert_int_ge(audited(refused), 2);
}
END_TEST

START_TEST(close_a_namespace)
{
    wsc_t *a = join_as(cl.gw_port[gw], "act-close", "alice");
    wsc_t *b = join_as(cl.gw_port[gw], "act-close", "bob");
    json_decref(skip_to(a, "topology"));
    json_decref(skip_to(b, "topology"));
    int owner = owner_of("act-close");
    json_t *res = NULL;
    ck_assert_int_eq(act(owner, TOKEN, "act-close", "close",
                         "{\"reason\":\"maintenance at noon\",\"by\":\"ops-bob\"}", &res),
                     200);
    ck_assert_int_eq(json_integer_value(json_object_get(res, "peers")), 2);
    json_decref(res);
    expect_closed_with(a, "NAMESPACE_CLOSED", "maintenance at noon", 4003);
    expect_closed_with(b, "NAMESPACE_CLOSED", "maintenance at noon", 4003);
    wsc_free(a);
    wsc_free(b);
    char *body = NULL;
    ck_assert_int_eq(
        http_request(cl.admin_port, "GET", "/v1/namespaces/act-close", TOKEN, NULL, &body), 404);
    free(body);
    /* Gone: closing it again finds nothing, from either coordinator. */
    ck_assert_int_eq(act(owner, TOKEN, "act-close", "close", "{}", NULL), 404);
    ck_assert_int_eq(act(1 - owner, TOKEN, "act-close", "close", "{}", NULL), 404);
    const char *done[] = {"audit:", "\"op\":\"close\"", "\"by\":\"ops-bob\"",
                          "\"stage\":\"carried out\"", NULL};
    ck_assert_int_ge(audited(done), 1);
}
END_TEST

/* Last: it stops a coordinator. */
START_TEST(ban_survives_owner_change)
{
    wsc_t *a = join_as(cl.gw_port[gw], "act-ban", "alice");
    wsc_t *b = join_as(cl.gw_port[gw], "act-ban", "bob");
    expect_connect(a, "bob", 1);
    expect_connect(b, "alice", 0);
    int owner = owner_of("act-ban");
    ck_assert_int_eq(act(owner, TOKEN, "act-ban", "kick", "{\"peer\":\"bob\",\"banS\":600}", NULL),
                     200);
    expect_closed_with(b, "KICKED", "kicked by an operator", 4002);
    wsc_free(b);
    /* The owner leaves (graceful: it hands its shards over); the other takes the namespace. */
    cluster_kill_coordinator(&cl, owner, SIGTERM);
    int left = 1 - owner;
    long long end = now_ms() + 15000;
    char *body = NULL;
    while (http_request(cluster_coord_admin(&cl, left), "GET", "/v1/namespaces/act-ban", TOKEN,
                        NULL, &body) != 200) {
        free(body);
        body = NULL;
        ck_assert_msg(now_ms() < end, "act-ban not taken over");
        usleep(50000);
    }
    ck_assert_ptr_nonnull(strstr(body, cluster_coord_id(&cl, left)));
    free(body);
    json_t *j = try_join("act-ban", "bob", &b);
    char *dump = json_dumps(j, JSON_COMPACT);
    ck_assert_msg(!strcmp(str_at(j, "error", "code", NULL), "BANNED"), "got %s", dump);
    free(dump);
    json_decref(j);
    wsc_free(b);
    wsc_free(a);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("admin_actions");
    TCase *tc = tcase_create("cluster");
    tcase_add_unchecked_fixture(tc, cluster_up, cluster_down);
    tcase_add_checked_fixture(tc, client_up, client_down);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, emit_to_a_peer);
    tcase_add_test(tc, publish_to_a_topic);
    tcase_add_test(tc, kick_with_reason_and_ban);
    tcase_add_test(tc, token_required_and_bad_requests);
    tcase_add_test(tc, close_a_namespace);
    tcase_add_test(tc, ban_survives_owner_change);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
