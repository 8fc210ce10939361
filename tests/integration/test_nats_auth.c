/* SPDX-License-Identifier: Apache-2.0 */
/* NATS authorisation (deploy/nats/auth.conf) on a real nats-server: coordinator and gateway
 * work as their users, a backend is refused gateway subjects and the lease KV. */
#include <check.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <nats/nats.h>

#include "cluster.h"
#include "natsauth.h"
#include "testutil.h"
#include "wsclient.h"

static cluster_t cl;
static int gw;
static char conf[512], cpw[40], gpw[40], bpw[40];

/* A fresh password per run: nothing here works with a guessed one. */
static void random_password(char *buf, size_t cap, const char *tag)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    snprintf(buf, cap, "%s-%lx-%lx-%x", tag, (long)ts.tv_nsec, (long)getpid(), rand());
}

static void cluster_up(void)
{
    const char *src = getenv("MESHSIG_SOURCE_DIR");
    ck_assert_ptr_nonnull(src);
    snprintf(conf, sizeof(conf), "%s/deploy/nats/auth.conf", src);
    srand((unsigned)time(NULL) ^ (unsigned)getpid());
    random_password(cpw, sizeof(cpw), "c");
    random_password(gpw, sizeof(gpw), "g");
    random_password(bpw, sizeof(bpw), "b");
    /* nats-server reads them from its environment (auth.conf says so). */
    setenv("MESHSIG_NATS_COORDINATOR_PASSWORD", cpw, 1);
    setenv("MESHSIG_NATS_GATEWAY_PASSWORD", gpw, 1);
    setenv("MESHSIG_NATS_BACKEND_PASSWORD", bpw, 1);
    static const char *coord[] = {"--nats-user", "coordinator", "--nats-password", NULL, NULL};
    coord[3] = cpw;
    ck_assert_int_eq(cluster_start_conf(&cl, "admintoken", coord, conf), 0);
    const char *g[] = {"--insecure-dev", "--nats-user", "gateway", "--nats-password", gpw, NULL};
    gw = cluster_add_gateway(&cl, "gw-auth", g);
    ck_assert_int_ge(gw, 0);
}

static void cluster_down(void)
{
    cluster_stop(&cl);
}

/* Occurrences of needle in a log of cluster c's directory ("nats", a gateway's id). */
static int log_count_in(const cluster_t *c, const char *log, const char *needle)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s.log", c->dir, log);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    char line[2048];
    int n = 0;
    while (fgets(line, sizeof(line), f))
        n += strstr(line, needle) != NULL;
    fclose(f);
    return n;
}

/* The last bytes of a process's log, for a failed check's message. */
static const char *log_tail(const cluster_t *c, const char *log, char *buf, size_t cap)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s.log", c->dir, log);
    buf[0] = '\0';
    FILE *f = fopen(path, "r");
    if (!f)
        return "(no log)";
    if (fseek(f, 0, SEEK_END) == 0) {
        long end = ftell(f);
        fseek(f, end > (long)cap - 1 ? end - ((long)cap - 1) : 0, SEEK_SET);
    }
    size_t n = fread(buf, 1, cap - 1, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

static int log_count(const char *log, const char *needle)
{
    return log_count_in(&cl, log, needle);
}

/* What a plain NATS client saw: the async errors the server sent it. */
typedef struct {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int n_not_permitted;
    char last[256];
} seen_t;

static void on_error(natsConnection *nc, natsSubscription *sub, natsStatus err, void *closure)
{
    seen_t *s = closure;
    (void)sub;
    pthread_mutex_lock(&s->lock);
    if (err == NATS_NOT_PERMITTED) {
        s->n_not_permitted++;
        const char *text = NULL;
        natsConnection_GetLastError(nc, &text);
        snprintf(s->last, sizeof(s->last), "%s", text ? text : "");
    }
    pthread_cond_broadcast(&s->cond);
    pthread_mutex_unlock(&s->lock);
}

/* Waits (bounded) until the client has seen n permission errors; returns its text. */
static const char *wait_refused(seen_t *s, int n)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 5;
    pthread_mutex_lock(&s->lock);
    while (s->n_not_permitted < n)
        if (pthread_cond_timedwait(&s->cond, &s->lock, &until))
            break;
    int got = s->n_not_permitted;
    pthread_mutex_unlock(&s->lock);
    ck_assert_msg(got >= n, "permission error %d not reported (have %d)", n, got);
    return s->last;
}

static natsStatus connect_as(const char *user, const char *password, seen_t *s, natsConnection **nc)
{
    natsOptions *o = NULL;
    char url[64];
    snprintf(url, sizeof(url), "nats://127.0.0.1:%d", cl.nats_port);
    ck_assert_int_eq(natsOptions_Create(&o), NATS_OK);
    natsOptions_SetURL(o, url);
    if (user)
        natsOptions_SetUserInfo(o, user, password);
    if (s)
        natsOptions_SetErrorHandler(o, on_error, s);
    natsOptions_SetTimeout(o, 3000);
    natsStatus st = natsConnection_Connect(nc, o);
    natsOptions_Destroy(o);
    return st;
}

START_TEST(cluster_works_as_its_users)
{
    /* Join, topology, an emit across the coordinator and a leave: each process
     * publishes and receives on every subject kind it uses. */
    wsc_t *a = join_as(cl.gw_port[gw], "auth", "alice");
    wsc_t *b = join_as(cl.gw_port[gw], "auth", "bob");
    expect_connect(a, "bob", 1);
    expect_connect(b, "alice", 0);
    send_json(a, "{\"id\":\"e1\",\"emit\":{\"to\":\"bob\",\"event\":\"hi\",\"ackId\":\"k1\"}}");
    json_t *j = expect_key(b, "emit");
    ck_assert_str_eq(str_at(j, "emit", "from", NULL), "alice");
    json_decref(j);
    json_decref(expect_key(a, "ok")); /* the emit's reply; the ack follows on its own */
    send_json(b, "{\"ack\":{\"ackId\":\"k1\",\"to\":\"alice\"}}");
    json_decref(expect_key(a, "ack"));
    /* A stored (persistent) emit goes through JetStream: the coordinator's
     * stream permissions. */
    send_json(a, "{\"id\":\"p1\",\"emit\":{\"to\":\"carol\",\"event\":\"later\","
                 "\"persistent\":true}}");
    json_decref(expect_key(a, "ok")); /* stored */
    wsc_t *c = join_as(cl.gw_port[gw], "auth", "carol");
    j = skip_to(c, "emit");
    ck_assert_str_eq(str_at(j, "emit", "event", NULL), "later");
    json_decref(j);
    /* The admin API asks over NATS too. */
    char *body = NULL;
    ck_assert_int_eq(
        http_request(cl.admin_port, "GET", "/v1/namespaces/auth", "admintoken", NULL, &body), 200);
    free(body);
    ck_assert_int_eq(http_request(cl.admin_port, "PUT", "/v1/namespaces/auth2/policy", "admintoken",
                                  "{\"topology\":\"fullmesh\"}", NULL),
                     200);
    wsc_free(c);
    wsc_free(b);
    json_decref(skip_to(a, "peerLeft"));
    json_decref(skip_to(a, "peerLeft"));
    wsc_free(a);
    /* Nothing any meshsig process did was refused. */
    ck_assert_int_eq(log_count("nats", "Violation"), 0);
}
END_TEST

START_TEST(backend_cannot_impersonate)
{
    seen_t s = {.lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};
    natsConnection *nc = NULL;
    ck_assert_int_eq(connect_as("backend", bpw, &s, &nc), NATS_OK);
    /* Its own subjects work: a message to itself comes back. */
    natsSubscription *sub = NULL;
    natsMsg *m = NULL;
    ck_assert_int_eq(natsConnection_SubscribeSync(&sub, nc, "meshsig.backend.selftest"), NATS_OK);
    ck_assert_int_eq(natsConnection_PublishString(nc, "meshsig.backend.selftest", "x"), NATS_OK);
    ck_assert_int_eq(natsSubscription_NextMsg(&m, sub, 5000), NATS_OK);
    natsMsg_Destroy(m);
    natsSubscription_Destroy(sub);
    /* A gateway's request to a shard owner: refused. */
    ck_assert_int_eq(natsConnection_PublishString(nc, "meshsig.shard.0", "forged"), NATS_OK);
    natsConnection_FlushTimeout(nc, 2000);
    const char *why = wait_refused(&s, 1);
    ck_assert_msg(strstr(why, "Permissions Violation") && strstr(why, "meshsig.shard.0"), "%s",
                  why);
    /* Deliveries to a gateway and a gateway heartbeat: refused. */
    ck_assert_int_eq(natsConnection_PublishString(nc, "meshsig.gw.gw-auth", "forged"), NATS_OK);
    natsConnection_FlushTimeout(nc, 2000);
    why = wait_refused(&s, 2);
    ck_assert_msg(strstr(why, "meshsig.gw.gw-auth"), "%s", why);
    /* The lease KV: a direct write and the JetStream API, refused. */
    ck_assert_int_eq(natsConnection_PublishString(nc, "$KV.meshsig_shards.shard.0", "me"), NATS_OK);
    natsConnection_FlushTimeout(nc, 2000);
    why = wait_refused(&s, 3);
    ck_assert_msg(strstr(why, "$KV.meshsig_shards.shard.0"), "%s", why);
    jsCtx *js = NULL;
    kvStore *kv = NULL;
    ck_assert_int_eq(natsConnection_JetStream(&js, nc, NULL), NATS_OK);
    ck_assert_int_ne(js_KeyValue(&kv, js, "meshsig_shards"), NATS_OK);
    why = wait_refused(&s, 4);
    ck_assert_msg(strstr(why, "$JS.API"), "%s", why);
    jsCtx_Destroy(js);
    /* What coordinators send to backends: not from a backend. */
    ck_assert_int_eq(natsConnection_PublishString(nc, "meshsig.backend.v1.owner", "forged"),
                     NATS_OK);
    natsConnection_FlushTimeout(nc, 2000);
    why = wait_refused(&s, 5);
    ck_assert_msg(strstr(why, "meshsig.backend.v1.owner"), "%s", why);
    /* Listening to gateways' deliveries: refused as well. */
    ck_assert_int_eq(natsConnection_SubscribeSync(&sub, nc, "meshsig.gw.>"), NATS_OK);
    natsConnection_FlushTimeout(nc, 2000);
    why = wait_refused(&s, 6);
    ck_assert_msg(strstr(why, "Subscription") && strstr(why, "meshsig.gw.>"), "%s", why);
    natsSubscription_Destroy(sub);
    /* The server logged each refusal, and the cluster still owns its shards. */
    ck_assert_int_ge(log_count("nats", "Violation"), 6);
    ck_assert_int_eq(http_request(cl.admin_port, "GET", "/readyz", NULL, NULL, NULL), 200);
    natsConnection_Destroy(nc);
}
END_TEST

START_TEST(wrong_or_no_credentials_refused)
{
    natsConnection *nc = NULL;
    ck_assert_int_ne(connect_as(NULL, NULL, NULL, &nc), NATS_OK);
    ck_assert_int_ne(connect_as("gateway", "not-the-password", NULL, &nc), NATS_OK);
    ck_assert_int_ne(connect_as("backend", gpw, NULL, &nc), NATS_OK);
}
END_TEST

START_TEST(gateway_says_its_credentials_were_refused)
{
    /* A wrong password must not read like a NATS server that is down. */
    char bin[512], listen[64];
    snprintf(listen, sizeof(listen), "127.0.0.1:%d", cluster_free_port());
    cluster_bin("gateway/meshsig-gateway", bin, sizeof(bin));
    char *argv[] = {bin,        "--listen",        listen,
                    "--nats",   cl.nats_urls,      "--id",
                    "gw-badpw", "--insecure-dev",  "--nats-user",
                    "gateway",  "--nats-password", "not-the-password",
                    NULL};
    pid_t pid = cluster_spawn(&cl, "gw-badpw", argv);
    ck_assert_int_gt(pid, 0);
    int refused = 0;
    for (int i = 0; i < 500 && !refused; i++) {
        refused = log_count("gw-badpw", "refused the connection (Authorization Violation)") > 0;
        if (!refused)
            usleep(20000);
    }
    int unreachable = log_count("gw-badpw", "not reachable");
    static char tail[2048];
    log_tail(&cl, "gw-badpw", tail, sizeof(tail));
    cluster_kill(pid, SIGKILL);
    ck_assert_msg(unreachable == 0, "the gateway said NATS was not reachable; its log:\n%s", tail);
    ck_assert_msg(refused > 0,
                  "the gateway did not log that NATS refused its credentials; its log:\n%s", tail);
}
END_TEST

/* The same when the server is too slow for the first attempt (a loaded machine): that one only
 * times out, and the refusal comes to a connection the gateway renewed in the background. It
 * used to say nothing then (and could stop renewing), so a wrong password read like a server
 * that is down. A NATS node of its own, stopped until the gateway has said it is unreachable. */
START_TEST(gateway_says_a_slow_server_refused_its_credentials)
{
    cluster_t slow;
    ck_assert_int_eq(cluster_start_nats_only(&slow, conf), 0);
    ck_assert_int_eq(kill(slow.nats, SIGSTOP), 0);
    char bin[512];
    /* Port 0: no client connects here, and a port picked free before the start can be taken
     * by another test's process meanwhile (the gateway would exit before its first connect). */
    char listen[] = "127.0.0.1:0";
    cluster_bin("gateway/meshsig-gateway", bin, sizeof(bin));
    char *argv[] = {bin,       "--listen",        listen,
                    "--nats",  slow.nats_urls,    "--id",
                    "gw-slow", "--insecure-dev",  "--nats-user",
                    "gateway", "--nats-password", "not-the-password",
                    NULL};
    pid_t pid = cluster_spawn(&slow, "gw-slow", argv);
    ck_assert_int_gt(pid, 0);
    int unreachable = 0, refused = 0;
    for (long long end = cluster_now_ms() + 20000; !unreachable && cluster_now_ms() < end;
         usleep(20000))
        unreachable = log_count_in(&slow, "gw-slow", "not reachable") > 0;
    ck_assert_int_eq(kill(slow.nats, SIGCONT), 0);
    for (long long end = cluster_now_ms() + 20000;
         unreachable && !refused && cluster_now_ms() < end; usleep(20000))
        refused =
            log_count_in(&slow, "gw-slow", "refused the connection (Authorization Violation)");
    /* Renewals go on, paced (250 ms apart): three more refused logins take a pacing interval
     * at least; unpaced they came within a few ms of each other. */
    int logins0 = log_count_in(&slow, "nats", "authentication error"), logins = 0;
    long long t0 = cluster_now_ms(), dt = 0;
    while (refused && logins < 3 && dt < 20000) {
        usleep(20000);
        logins = log_count_in(&slow, "nats", "authentication error") - logins0;
        dt = cluster_now_ms() - t0;
    }
    static char tail[2048];
    log_tail(&slow, "gw-slow", tail, sizeof(tail));
    cluster_kill(pid, SIGKILL);
    cluster_stop(&slow);
    ck_assert_msg(unreachable,
                  "the gateway never found the stopped server unreachable; its log:\n%s", tail);
    ck_assert_msg(refused > 0,
                  "the gateway did not log that NATS refused its credentials; its log:\n%s", tail);
    ck_assert_msg(logins >= 3, "the gateway stopped trying: %d refused logins in %lld ms", logins,
                  dt);
    ck_assert_msg(dt >= 200, "%d refused logins in %lld ms: renewals not paced", logins, dt);
}
END_TEST

START_TEST(coordinator_says_its_credentials_were_refused)
{
    /* Its JetStream workers wait for a connection before it serves: a refused
     * login must be logged, not look like a hang. */
    char bin[512], admin[64];
    snprintf(admin, sizeof(admin), "127.0.0.1:%d", cluster_free_port());
    cluster_bin("coordinator/meshsig-coordinator", bin, sizeof(bin));
    char *argv[] = {bin,
                    "--nats",
                    cl.nats_urls,
                    "--admin-listen",
                    admin,
                    "--insecure-dev",
                    "--nats-user",
                    "coordinator",
                    "--nats-password",
                    "not-the-password",
                    NULL};
    pid_t pid = cluster_spawn(&cl, "coord-badpw", argv);
    ck_assert_int_gt(pid, 0);
    int refused = 0;
    for (int i = 0; i < 500 && !refused; i++) {
        refused = log_count("coord-badpw", "Authorization Violation; retrying") > 0;
        if (!refused)
            usleep(20000);
    }
    cluster_kill(pid, SIGKILL);
    ck_assert_msg(refused, "the coordinator did not log that NATS refused its credentials");
}
END_TEST

START_TEST(urls_redacted_for_logs)
{
    char buf[256];
    ck_assert_str_eq(
        ms_nats_urls_redact("nats://u:p@h:4222,nats://h2:4222,tok@h3", buf, sizeof(buf)),
        "nats://***@h:4222,nats://h2:4222,***@h3");
    ck_assert_str_eq(ms_nats_urls_redact("nats://h:4222", buf, sizeof(buf)), "nats://h:4222");
    ck_assert_str_eq(ms_nats_urls_redact("nats://a@b@h", buf, sizeof(buf)), "nats://***@h");
    ck_assert_str_eq(ms_nats_urls_redact("nats://u:p@h", buf, 8), "nats://");
    ms_nats_auth_t a = {.user = "u"};
    ck_assert_int_eq(ms_nats_auth_check(&a, buf, sizeof(buf)), MS_ERR_INVAL);
    a.password = "p";
    ck_assert_int_eq(ms_nats_auth_check(&a, buf, sizeof(buf)), MS_OK);
    a.token = "t";
    ck_assert_int_eq(ms_nats_auth_check(&a, buf, sizeof(buf)), MS_ERR_INVAL);
    ck_assert_int_eq(ms_nats_auth_check(NULL, buf, sizeof(buf)), MS_OK);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("nats_auth");
    TCase *tc = tcase_create("auth");
    tcase_add_unchecked_fixture(tc, cluster_up, cluster_down);
    tcase_add_checked_fixture(tc, client_up, client_down);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, cluster_works_as_its_users);
    tcase_add_test(tc, backend_cannot_impersonate);
    tcase_add_test(tc, wrong_or_no_credentials_refused);
    tcase_add_test(tc, gateway_says_its_credentials_were_refused);
    tcase_add_test(tc, gateway_says_a_slow_server_refused_its_credentials);
    tcase_add_test(tc, coordinator_says_its_credentials_were_refused);
    suite_add_tcase(s, tc);
    TCase *unit = tcase_create("redact");
    tcase_add_test(unit, urls_redacted_for_logs);
    suite_add_tcase(s, unit);
    return run_suite(s);
}
