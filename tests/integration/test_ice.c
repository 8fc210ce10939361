/* SPDX-License-Identifier: Apache-2.0 */
/* STUN/TURN servers in the welcome through real processes: per-session TURN credentials of the
 * coturn shared-secret scheme, renewed before they expire, fresh after a resume, on JSON and
 * protobuf sessions; a gateway with a bad TURN configuration refuses to start. */
#include <check.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>

#include "cluster.h"
#include "testutil.h"
#include "turn.h"
#include "wsclient.h"

#define SECRET "ice-test-secret"
#define TTL 10

static cluster_t cl;
static int g1, g2;

static void cluster_up(void)
{
    ck_assert_int_eq(cluster_start(&cl, NULL), 0);
    static const char *args[] = {
        "--insecure-dev",
        "--stun-urls",
        "stun:127.0.0.1:3478",
        "--turn-urls",
        "turn:127.0.0.1:3478?transport=udp, turn:127.0.0.1:3478?transport=tcp",
        "--turn-secret",
        SECRET,
        "--turn-ttl-s",
        "10",
        NULL};
    g1 = cluster_add_gateway(&cl, "gw-a", args);
    g2 = cluster_add_gateway(&cl, "gw-b", args);
    ck_assert(g1 >= 0 && g2 >= 0);
}

static void cluster_down(void)
{
    cluster_stop(&cl);
}

/* Checks an iceServers list for peer: a STUN entry, and a TURN entry whose credential
 * is ours for its username; returns the expiry in the username. */
static long long check_servers(json_t *servers, const char *peer)
{
    ck_assert_int_eq(json_array_size(servers), 2);
    json_t *stun = json_array_get(servers, 0), *turn = json_array_get(servers, 1);
    ck_assert_str_eq(json_string_value(json_array_get(json_object_get(stun, "urls"), 0)),
                     "stun:127.0.0.1:3478");
    ck_assert_ptr_null(json_object_get(stun, "username"));
    json_t *urls = json_object_get(turn, "urls");
    ck_assert_int_eq(json_array_size(urls), 2);
    ck_assert_str_eq(json_string_value(json_array_get(urls, 1)),
                     "turn:127.0.0.1:3478?transport=tcp");
    const char *user = str_at(turn, "username", NULL);
    char *colon = strchr(user, ':');
    ck_assert_ptr_nonnull(colon);
    ck_assert_str_eq(colon + 1, peer);
    long long expiry = atoll(user);
    char u[MS_TURN_USER_MAX], p[MS_TURN_PASS_MAX];
    ck_assert_int_eq(ms_turn_credential(SECRET, peer, expiry, u, p), MS_OK);
    ck_assert_str_eq(u, user);
    ck_assert_str_eq(str_at(turn, "credential", NULL), p);
    long long now = (long long)time(NULL);
    ck_assert_msg(expiry > now && expiry <= now + TTL + 1, "expiry %lld, now %lld", expiry, now);
    return expiry;
}

START_TEST(welcome_then_renewal_then_resume)
{
    wsc_t *c = wsc_connect(cl.gw_port[g1], NULL, T_MS);
    ck_assert_ptr_nonnull(c);
    send_json(c, "{\"id\":\"h\",\"hello\":{\"namespace\":\"ice\",\"peerId\":\"alice\"}}");
    json_t *w = expect_key(c, "welcome");
    long long e1 =
        check_servers(json_object_get(json_object_get(w, "welcome"), "iceServers"), "alice");
    /* uint64 goes out as a string in proto3 JSON. */
    ck_assert_int_eq(atoll(str_at(w, "welcome", "iceExpiresAt", NULL)), e1);
    char *token = strdup(str_at(w, "welcome", "resumeToken", NULL));
    json_decref(w);
    /* 80% of a 10 s life: fresh credentials come after about 8 s, before the
     * old ones expire. Nothing else is sent to a lone peer meanwhile. */
    json_t *r = NULL;
    for (int i = 0; i < 3 && !r; i++) {
        json_t *j = wsc_recv_json(c, 6000);
        if (j && json_object_get(j, "iceServers"))
            r = j;
        else
            json_decref(j);
    }
    ck_assert_msg(r != NULL, "no iceServers update within 18 s");
    long long now = (long long)time(NULL);
    ck_assert_msg(now < e1, "the renewal came after the expiry (%lld >= %lld)", now, e1);
    long long e2 =
        check_servers(json_object_get(json_object_get(r, "iceServers"), "servers"), "alice");
    ck_assert_int_gt(e2, e1);
    ck_assert_int_eq(atoll(str_at(r, "iceServers", "expiresAt", NULL)), e2);
    json_decref(r);
    /* The gateway goes away for alice; she resumes on the other one and gets
     * credentials of her own there. */
    wsc_free(c);
    c = wsc_connect(cl.gw_port[g2], NULL, T_MS);
    send_json(c, "{\"id\":\"r\",\"hello\":{\"namespace\":\"ice\",\"resumeToken\":\"%s\"}}", token);
    w = expect_key(c, "welcome");
    ck_assert_str_eq(str_at(w, "welcome", "gatewayId", NULL), "gw-b");
    check_servers(json_object_get(json_object_get(w, "welcome"), "iceServers"), "alice");
    json_decref(w);
    free(token);
    wsc_free(c);
}
END_TEST

/* A gateway that cannot hand out working TURN credentials does not start. */
static void expect_refused(const char *const *extra)
{
    char bin[512], listen[32];
    snprintf(listen, sizeof(listen), "127.0.0.1:%d", cluster_free_port());
    const char *argv[16] = {cluster_bin("gateway/meshsig-gateway", bin, sizeof(bin)),
                            "--insecure-dev",
                            "--listen",
                            listen,
                            "--nats",
                            cl.nats_urls};
    int n = 6;
    for (int i = 0; extra[i] && n < 15; i++)
        argv[n++] = extra[i];
    argv[n] = NULL;
    pid_t pid = cluster_spawn(&cl, "gw-bad", (char *const *)argv);
    ck_assert_int_gt(pid, 0);
    int status = 0;
    pid_t done = 0;
    for (int i = 0; i < 200 && !done; i++) {
        done = waitpid(pid, &status, WNOHANG);
        if (!done)
            wsc_pump(25);
    }
    if (!done)
        cluster_kill(pid, SIGKILL);
    ck_assert_msg(done == pid && WIFEXITED(status) && WEXITSTATUS(status) != 0,
                  "the gateway started with a bad ICE configuration");
}

START_TEST(bad_configurations_are_refused)
{
    const char *no_secret[] = {"--turn-urls", "turn:127.0.0.1:3478", NULL};
    expect_refused(no_secret);
    const char *bad_scheme[] = {"--stun-urls", "http://127.0.0.1:3478", NULL};
    expect_refused(bad_scheme);
    const char *bad_ttl[] = {"--turn-urls", "turn:x:3478", "--turn-secret", "s", "--turn-ttl-s",
                             "1",           NULL};
    expect_refused(bad_ttl);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("ice");
    TCase *tc = tcase_create("core");
    tcase_add_checked_fixture(tc, client_up, client_down);
    tcase_add_unchecked_fixture(tc, cluster_up, cluster_down);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, welcome_then_renewal_then_resume);
    tcase_add_test(tc, bad_configurations_are_refused);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
