/* SPDX-License-Identifier: Apache-2.0 */
/* Assertions for integration tests that talk JSON to a gateway (Check framework). */
#include <check.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cluster.h"
#include "testutil.h"

json_t *recv_json(wsc_t *c)
{
    json_t *j = wsc_recv_json(c, T_MS);
    ck_assert_msg(j != NULL, "no message within %d ms", T_MS);
    return j;
}

void send_json(wsc_t *c, const char *fmt, ...)
{
    char buf[8192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    ck_assert_int_eq(wsc_send_text(c, buf), 0);
}

const char *str_at(json_t *j, ...)
{
    va_list ap;
    va_start(ap, j);
    const char *k;
    while (j && (k = va_arg(ap, const char *)))
        j = json_object_get(j, k);
    va_end(ap);
    return json_is_string(j) ? json_string_value(j) : "";
}

json_t *expect_key(wsc_t *c, const char *key)
{
    json_t *j = recv_json(c);
    char *dump = json_dumps(j, JSON_COMPACT);
    ck_assert_msg(json_object_get(j, key) != NULL, "expected %s, got %s", key, dump);
    free(dump);
    return j;
}

void expect_error(wsc_t *c, const char *code, const char *id)
{
    json_t *j = recv_json(c);
    char *dump = json_dumps(j, JSON_COMPACT);
    ck_assert_msg(json_object_get(j, "error") != NULL, "expected error %s, got %s", code, dump);
    ck_assert_msg(!strcmp(str_at(j, "error", "code", NULL), code), "expected %s, got %s", code,
                  dump);
    ck_assert_msg(*str_at(j, "error", "message", NULL), "no message: %s", dump);
    if (id)
        ck_assert_msg(!strcmp(str_at(j, "id", NULL), id), "expected id %s: %s", id, dump);
    free(dump);
    json_decref(j);
}

wsc_t *join_as(int port, const char *ns, const char *peer)
{
    wsc_t *c = wsc_connect(port, "meshsig.v1.json", T_MS);
    ck_assert_ptr_nonnull(c);
    send_json(c, "{\"id\":\"h\",\"hello\":{\"namespace\":\"%s\",\"peerId\":\"%s\"}}", ns, peer);
    json_t *j = expect_key(c, "welcome");
    ck_assert_str_eq(str_at(j, "id", NULL), "h");
    ck_assert_str_eq(str_at(j, "welcome", "peerId", NULL), peer);
    json_decref(j);
    return c;
}

void expect_connect(wsc_t *c, const char *peer, int initiator)
{
    json_t *j = recv_json(c);
    json_t *cn = json_object_get(json_object_get(j, "topology"), "connect");
    char *dump = json_dumps(j, JSON_COMPACT);
    ck_assert_msg(cn != NULL, "expected connect to %s, got %s", peer, dump);
    ck_assert_msg(!strcmp(str_at(cn, "peer", NULL), peer), "expected connect to %s, got %s", peer,
                  dump);
    ck_assert_msg(json_is_true(json_object_get(cn, "initiator")) == initiator,
                  "wrong initiator flag: %s", dump);
    free(dump);
    json_decref(j);
}

void expect_left(wsc_t *c, const char *peer)
{
    json_t *j = recv_json(c);
    char *dump = json_dumps(j, JSON_COMPACT);
    ck_assert_msg(!strcmp(str_at(j, "topology", "disconnect", "peer", NULL), peer),
                  "expected disconnect %s, got %s", peer, dump);
    free(dump);
    json_decref(j);
    j = recv_json(c);
    dump = json_dumps(j, JSON_COMPACT);
    ck_assert_msg(!strcmp(str_at(j, "peerLeft", "peer", NULL), peer),
                  "expected peerLeft %s, got %s", peer, dump);
    free(dump);
    json_decref(j);
}

void expect_signal_from(wsc_t *c, const char *from)
{
    json_t *j = expect_key(c, "signal");
    ck_assert_str_eq(str_at(j, "signal", "from", NULL), from);
    json_decref(j);
}

void expect_quiet(wsc_t *c, int ms)
{
    json_t *j = wsc_recv_json(c, ms);
    char *dump = j ? json_dumps(j, JSON_COMPACT) : NULL;
    ck_assert_msg(j == NULL, "unexpected message %s", dump);
    free(dump);
}

json_t *skip_to(wsc_t *c, const char *key)
{
    for (int i = 0; i < 50; i++) {
        json_t *j = recv_json(c);
        if (json_object_get(j, key))
            return j;
        json_decref(j);
    }
    ck_abort_msg("no %s within 50 messages", key);
    return NULL;
}

void client_up(void)
{
    ck_assert_int_eq(wsc_global_init(), 0);
}

void client_down(void)
{
    wsc_global_cleanup();
}

int run_suite(Suite *s)
{
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

long long metric_at(int port, const char *token, const char *series)
{
    char *body = NULL;
    ck_assert_int_eq(http_request(port, "GET", "/metrics", token, NULL, &body), 200);
    char pat[256];
    snprintf(pat, sizeof(pat), "\n%s ", series);
    const char *p = body ? strstr(body, pat) : NULL;
    ck_assert_msg(p != NULL, "no %s in /metrics", series);
    long long v = strtoll(p + strlen(pat), NULL, 10);
    free(body);
    return v;
}

long proc_cpu_ms(pid_t pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    ck_assert_ptr_nonnull(f);
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *p = strrchr(buf, ')');
    ck_assert_ptr_nonnull(p);
    unsigned long ut = 0, st = 0;
    /* after the name: state, then fields 4..13, then utime (14) and stime (15) */
    ck_assert_int_eq(sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st),
                     2);
    long hz = sysconf(_SC_CLK_TCK);
    return (long)((ut + st) * 1000 / (unsigned long)(hz > 0 ? hz : 100));
}

long proc_rss_kb(pid_t pid)
{
    char path[64], line[256];
    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    long kb = -1;
    while (f && fgets(line, sizeof(line), f))
        if (!strncmp(line, "VmRSS:", 6))
            kb = strtol(line + 6, NULL, 10);
    if (f)
        fclose(f);
    return kb;
}

int proc_is_asan(pid_t pid)
{
    char path[64], line[512];
    snprintf(path, sizeof(path), "/proc/%d/maps", (int)pid);
    FILE *f = fopen(path, "r");
    int yes = 0;
    while (f && !yes && fgets(line, sizeof(line), f))
        yes = strstr(line, "libasan") != NULL;
    if (f)
        fclose(f);
    return yes;
}

void coord_seen(cluster_t *c, int by, int of, int *alive, int *lease_ok)
{
    *alive = *lease_ok = -1;
    char *body = NULL;
    int st = http_request(cluster_coord_admin(c, by), "GET", "/v1/cluster", NULL, NULL, &body);
    json_t *j = st == 200 && body ? json_loads(body, 0, NULL) : NULL;
    free(body);
    json_t *cs = json_object_get(j, "coordinators"), *o;
    size_t k;
    json_array_foreach(cs, k, o)
    {
        const char *id = json_string_value(json_object_get(o, "id"));
        if (!id || strcmp(id, cluster_coord_id(c, of)))
            continue;
        *alive = json_is_true(json_object_get(o, "alive"));
        *lease_ok = json_is_true(json_object_get(o, "leaseOk"));
    }
    json_decref(j);
}

void wait_coord_seen(cluster_t *c, int by, int of, int alive, int lease_ok, long long timeout_ms,
                     const char *what)
{
    for (long long end = cluster_now_ms() + timeout_ms;; usleep(20000)) {
        int a, ok;
        coord_seen(c, by, of, &a, &ok);
        if (a == alive && (lease_ok < 0 || ok == lease_ok))
            return;
        ck_assert_msg(cluster_now_ms() < end, "%s: %s sees %s alive %d, lease %d", what,
                      cluster_coord_id(c, by), cluster_coord_id(c, of), a, ok);
    }
}

natsConnection *bus_connect(const cluster_t *c)
{
    char url[64];
    snprintf(url, sizeof(url), "nats://127.0.0.1:%d", c->nats_port);
    natsConnection *nc = NULL;
    ck_assert_int_eq(natsConnection_ConnectTo(&nc, url), NATS_OK);
    return nc;
}

natsSubscription *bus_tap(natsConnection *nc, const char *subject)
{
    natsSubscription *sub = NULL;
    ck_assert_int_eq(natsConnection_SubscribeSync(&sub, nc, subject), NATS_OK);
    natsSubscription_SetPendingLimits(sub, -1, -1);
    /* The server has it before anything the test does next publishes there (cnats sends the
     * SUB from its flusher thread, later under load). */
    ck_assert_int_eq(natsConnection_FlushTimeout(nc, 5000), NATS_OK);
    return sub;
}

void expect_oks(wsc_t *c, int n, const char *what)
{
    for (int got = 0; got < n;) {
        json_t *j = recv_json(c);
        ck_assert_msg(!json_object_get(j, "error"), "%s %d refused: %s", what, got,
                      str_at(j, "error", "message", NULL));
        got += json_object_get(j, "id") != NULL;
        json_decref(j);
    }
}
