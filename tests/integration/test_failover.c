/* SPDX-License-Identifier: Apache-2.0 */
/* Fault tests with real processes: a gateway killed with SIGKILL; its clients resume on another
 * gateway with their resume tokens and their neighbours see no disconnect. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <time.h>

#include <nats/nats.h>

#include "bus.pb-c.h"
#include "cluster.h"
#include "subject.h"
#include "testutil.h"
#include "wsclient.h"

#define GRACE_MS 2000
#define GW_TIMEOUT_MS 1000

static cluster_t cl;
static int g1, g2, g3;
static const char *const coord_args[] = {"--resume-grace-ms", "2000", "--gateway-timeout-ms",
                                         "1000", NULL};

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void cluster_up(void)
{
    ck_assert_int_eq(cluster_start_args(&cl, NULL, coord_args), 0);
    const char *dev[] = {"--insecure-dev", NULL};
    g1 = cluster_add_gateway(&cl, "gw-1", dev);
    g2 = cluster_add_gateway(&cl, "gw-2", dev);
    g3 = cluster_add_gateway(&cl, "gw-3", dev);
    ck_assert(g1 >= 0 && g2 >= 0 && g3 >= 0);
}

static void cluster_down(void)
{
    cluster_stop(&cl);
}

/* Joins and returns the resume token from the welcome (malloc'd). */
static wsc_t *join_token(int gw, const char *ns, const char *peer, char **token)
{
    wsc_t *c = wsc_connect(cl.gw_port[gw], NULL, T_MS);
    ck_assert_ptr_nonnull(c);
    send_json(c, "{\"hello\":{\"namespace\":\"%s\",\"peerId\":\"%s\"}}", ns, peer);
    json_t *j = expect_key(c, "welcome");
    const char *t = str_at(j, "welcome", "resumeToken", NULL);
    ck_assert_msg(*t, "welcome carries no resume token");
    *token = strdup(t);
    json_decref(j);
    return c;
}

/* Whether the coordinator's /v1/cluster shows gateway id alive (1), dead (0), or not at all (-1).
 */
static int gateway_alive(const char *id)
{
    char *body = NULL;
    int st = http_request(cl.admin_port, "GET", "/v1/cluster", cl.admin_token, NULL, &body);
    ck_assert_int_eq(st, 200);
    json_t *j = json_loads(body, 0, NULL);
    free(body);
    ck_assert_ptr_nonnull(j);
    int alive = -1;
    size_t i;
    json_t *g;
    json_array_foreach(json_object_get(j, "gateways"), i, g)
    {
        if (!strcmp(json_string_value(json_object_get(g, "id")), id))
            alive = json_is_true(json_object_get(g, "alive"));
    }
    json_decref(j);
    return alive;
}

/* A gateway silent for longer than --gateway-timeout-ms but the same process
 * when it is heard again (a NATS link cut and healed, here a SIGSTOP): its
 * peers were detached to wait for a resume, and are attached again, so they
 * do not leave when the resume grace runs out. */
START_TEST(silent_gateway_back_keeps_its_peers)
{
    ck_assert_int_eq(wsc_global_init(), 0);
    char *ta, *tb;
    wsc_t *a = join_token(g2, "silent", "s-a", &ta);
    wsc_t *b = join_token(g3, "silent", "s-b", &tb);
    expect_connect(a, "s-b", 1);
    expect_connect(b, "s-a", 0);
    ck_assert_int_eq(kill(cl.gw[g2], SIGSTOP), 0);
    long long t0 = now_ms();
    int dead = 0;
    for (int i = 0; i < 100 && !dead; i++) { /* bounded: 10 s */
        dead = gateway_alive("gw-2") == 0;
        if (!dead)
            wsc_pump(100);
    }
    ck_assert_int_eq(kill(cl.gw[g2], SIGCONT), 0);
    ck_assert_msg(dead, "gw-2 never counted as dead");
    int back = 0;
    for (int i = 0; i < 100 && !back; i++) {
        back = gateway_alive("gw-2") == 1;
        if (!back)
            wsc_pump(100);
    }
    ck_assert(back);
    /* Past the grace from the moment it was detached, plus a liveness sweep:
     * without the reattach, s-a leaves here ("gateway lost"). */
    while (now_ms() < t0 + GRACE_MS + GW_TIMEOUT_MS + 1000)
        wsc_pump(100);
    send_json(a, "{\"id\":\"sig\",\"signal\":{\"to\":\"s-b\",\"payload\":{\"n\":1}}}");
    json_t *j = NULL;
    for (int i = 0; i < 10; i++) {
        j = recv_json(b);
        if (json_object_get(j, "signal"))
            break;
        ck_assert_msg(!json_object_get(j, "peerLeft") &&
                          !str_at(j, "topology", "disconnect", "peer", NULL)[0],
                      "s-b was told s-a left: %s", json_dumps(j, JSON_COMPACT));
        json_decref(j);
        j = NULL;
    }
    ck_assert_ptr_nonnull(j);
    ck_assert_str_eq(str_at(j, "signal", "from", NULL), "s-a");
    json_decref(j);
    free(ta);
    free(tb);
    wsc_free(a);
    wsc_free(b);
}
END_TEST

START_TEST(gateway_killed_clients_resume)
{
    ck_assert_int_eq(wsc_global_init(), 0);
    char *ta, *tb, *tc;
    wsc_t *a = join_token(g1, "fo", "alice", &ta);
    wsc_t *b = join_token(g2, "fo", "bob", &tb);
    expect_connect(a, "bob", 1);
    expect_connect(b, "alice", 0);
    wsc_t *c = join_token(g3, "fo", "carol", &tc);
    expect_connect(a, "carol", 1);
    expect_connect(b, "carol", 1);
    expect_connect(c, "alice", 0);
    expect_connect(c, "bob", 0);

    /* A bad token is refused with RESUME_FAILED. */
    wsc_t *x = wsc_connect(cl.gw_port[g2], NULL, T_MS);
    send_json(x, "{\"id\":\"r\",\"hello\":{\"namespace\":\"fo\",\"resumeToken\":\"%s\"}}",
              "AAAA.BBBB");
    expect_error(x, "RESUME_FAILED", "r");
    wsc_free(x);

    /* gw-1 dies; alice comes back through gw-2 with her token. */
    long long t0 = now_ms();
    cluster_kill_gateway(&cl, g1);
    ck_assert(wsc_wait_closed(a, T_MS));
    long long t_closed = now_ms() - t0;
    wsc_free(a);
    a = wsc_connect(cl.gw_port[g2], NULL, T_MS);
    ck_assert_ptr_nonnull(a);
    fprintf(stderr, "failover: client saw the close after %lld ms, reconnected after %lld ms\n",
            t_closed, now_ms() - t0);
    send_json(a, "{\"id\":\"res\",\"hello\":{\"namespace\":\"fo\",\"resumeToken\":\"%s\"}}", ta);
    json_t *j = expect_key(a, "welcome");
    ck_assert_str_eq(str_at(j, "welcome", "peerId", NULL), "alice");
    ck_assert_str_eq(str_at(j, "welcome", "gatewayId", NULL), "gw-2");
    json_decref(j);
    long long resumed = now_ms() - t0;
    /* A snapshot of her edges (she keeps the WebRTC connections she has). */
    expect_connect(a, "bob", 1);
    expect_connect(a, "carol", 1);

    /* gw-3 dies too; carol never comes back. */
    long long t1 = now_ms();
    cluster_kill_gateway(&cl, g3);
    wsc_free(c);

    /* bob sees nothing about alice, and carol's leave only after the grace period. It comes
     * about GW_TIMEOUT_MS + GRACE_MS after the kill; the bound leaves a loaded machine room. */
    j = wsc_recv_json(b, GW_TIMEOUT_MS + GRACE_MS + 10000);
    long long left = now_ms() - t1;
    ck_assert_msg(j != NULL, "carol did not leave within %lld ms", left);
    ck_assert_str_eq(str_at(j, "topology", "disconnect", "peer", NULL), "carol");
    json_decref(j);
    j = expect_key(b, "peerLeft");
    ck_assert_str_eq(str_at(j, "peerLeft", "peer", NULL), "carol");
    json_decref(j);
    ck_assert_msg(left >= GRACE_MS, "carol left after %lld ms, before the grace period", left);
    j = expect_key(a, "topology");
    ck_assert_str_eq(str_at(j, "topology", "disconnect", "peer", NULL), "carol");
    json_decref(j);
    json_decref(expect_key(a, "peerLeft"));
    expect_quiet(b, 500);

    /* Signals flow both ways on the new path. */
    send_json(a, "{\"signal\":{\"to\":\"bob\",\"payload\":\"after\"}}");
    j = expect_key(b, "signal");
    ck_assert_str_eq(str_at(j, "signal", "from", NULL), "alice");
    json_decref(j);
    send_json(b, "{\"signal\":{\"to\":\"alice\",\"payload\":\"back\"}}");
    json_decref(expect_key(a, "signal"));
    fprintf(stderr,
            "failover: alice resumed %lld ms after gw-1 was killed; carol (no resume) left "
            "%lld ms after gw-3 was killed (gateway timeout %d ms + grace %d ms)\n",
            resumed, left, GW_TIMEOUT_MS, GRACE_MS);
    free(ta);
    free(tb);
    free(tc);
    wsc_free(a);
    wsc_free(b);
    wsc_global_cleanup();
}
END_TEST

static int has(char **v, size_t n, const char *x)
{
    for (size_t i = 0; i < n; i++)
        if (!strcmp(v[i], x))
            return 1;
    return 0;
}

/* A coordinator taking a shard asks the gateways what they hold: each reports
 * its sessions with the edges, rooms, services and subscriptions their clients
 * have, which is what a takeover rebuilds from. */
START_TEST(gateways_answer_resync)
{
    ck_assert_int_eq(wsc_global_init(), 0);
    char *ta, *tb;
    wsc_t *a = join_token(g2, "rs", "alice", &ta);
    wsc_t *b = join_token(g2, "rs", "bob", &tb);
    expect_connect(a, "bob", 1);
    expect_connect(b, "alice", 0);
    send_json(a, "{\"id\":\"1\",\"room\":{\"join\":{\"room\":\"lobby\"}}}");
    json_decref(expect_key(a, "room"));
    send_json(a, "{\"id\":\"2\",\"service\":{\"register\":{\"service\":\"svc\"}}}");
    json_decref(expect_key(a, "ok"));
    send_json(a, "{\"id\":\"3\",\"topic\":{\"subscribe\":{\"pattern\":\"t.>\"}}}");
    json_decref(expect_key(a, "ok"));

    natsConnection *nc = NULL;
    nc = bus_connect(&cl);
    natsSubscription *sub = NULL;
    ck_assert_int_eq(natsConnection_SubscribeSync(&sub, nc, "test.resync.reply"), NATS_OK);
    natsConnection_Flush(nc);
    uint32_t shard = 0;
    /* the shard of "rs" with 64 shards: fnv1a64 mod 64 */
    uint64_t h = 0xcbf29ce484222325ULL;
    for (const char *p = "rs"; *p; p++) {
        h ^= (unsigned char)*p;
        h *= 0x100000001b3ULL;
    }
    shard = (uint32_t)(h % 64);
    Meshsig__Bus__ResyncRequest rq = MESHSIG__BUS__RESYNC_REQUEST__INIT;
    rq.shard = shard;
    rq.epoch = 42;
    rq.coordinator_id = "test";
    rq.reply_to = "test.resync.reply";
    rq.shards = 64;
    rq.bus_version = 1u << 16; /* bus protocol 1.0 (common/busver.h) */
    uint8_t buf[256];
    size_t len = meshsig__bus__resync_request__pack(&rq, buf);
    char subj[200];
    ck_assert_ptr_nonnull(ms_subject(subj, sizeof(subj), "meshsig", MS_SUBJ_GW_RESYNC, NULL));
    ck_assert_int_eq(natsConnection_Publish(nc, subj, buf, (int)len), NATS_OK);
    int lasts = 0, found = 0;
    for (int i = 0; i < 20 && lasts < 3; i++) {
        natsMsg *m = NULL;
        if (natsSubscription_NextMsg(&m, sub, 3000) != NATS_OK)
            break;
        Meshsig__Bus__ResyncReport *rr = meshsig__bus__resync_report__unpack(
            NULL, (size_t)natsMsg_GetDataLength(m), (const uint8_t *)natsMsg_GetData(m));
        natsMsg_Destroy(m);
        ck_assert_ptr_nonnull(rr);
        ck_assert_int_eq(rr->epoch, 42);
        lasts += rr->last;
        for (size_t k = 0; k < rr->n_sessions; k++) {
            Meshsig__Bus__SessionReport *r = rr->sessions[k];
            if (strcmp(r->namespace_, "rs"))
                continue;
            ck_assert_str_eq(rr->gateway_id, "gw-2");
            if (!strcmp(r->peer_id, "alice")) {
                found++;
                ck_assert(has(r->neighbours, r->n_neighbours, "bob"));
                ck_assert(has(r->rooms, r->n_rooms, "lobby"));
                ck_assert(has(r->services, r->n_services, "svc"));
                ck_assert(has(r->subscriptions, r->n_subscriptions, "t.>"));
            } else if (!strcmp(r->peer_id, "bob")) {
                found++;
                ck_assert(has(r->neighbours, r->n_neighbours, "alice"));
                ck_assert_uint_eq(r->n_rooms, 0);
            }
        }
        meshsig__bus__resync_report__free_unpacked(rr, NULL);
    }
    /* Both live gateways answered (gw-1 and gw-3 may be dead by now). */
    ck_assert_int_eq(lasts, 3); /* every gateway answered, with a final part */
    ck_assert_int_eq(found, 2);
    natsSubscription_Destroy(sub);
    natsConnection_Destroy(nc);
    free(ta);
    free(tb);
    wsc_free(a);
    wsc_free(b);
    wsc_global_cleanup();
}
END_TEST

/* Operations: a gateway's /healthz and /metrics (with the relay latency
 * histogram), and its SIGTERM drain: clients are told to reconnect and closed
 * with 1001, new connections refused, the process exits. */
START_TEST(gateway_metrics_and_drain)
{
    ck_assert_int_eq(wsc_global_init(), 0);
    const char *dev[] = {"--insecure-dev", "--drain-ms", "3000", NULL};
    int g4 = cluster_add_gateway(&cl, "gw-4", dev);
    ck_assert_int_ge(g4, 0);
    int port = cl.gw_port[g4];
    char *body = NULL;
    ck_assert_int_eq(http_request(port, "GET", "/healthz", NULL, NULL, &body), 200);
    free(body);
    wsc_t *a = join_as(port, "ops", "alice");
    wsc_t *b = join_as(port, "ops", "bob");
    expect_connect(a, "bob", 1);
    expect_connect(b, "alice", 0);
    for (int i = 0; i < 5; i++) {
        send_json(a, "{\"signal\":{\"to\":\"bob\",\"payload\":%d}}", i);
        json_decref(expect_key(b, "signal"));
    }
    ck_assert_int_eq(http_request(port, "GET", "/metrics", NULL, NULL, &body), 200);
    ck_assert_ptr_nonnull(strstr(body, "meshsig_gateway_sessions 2"));
    const char *cnt = strstr(body, "meshsig_gateway_relay_latency_seconds_count ");
    ck_assert_ptr_nonnull(cnt);
    ck_assert_int_ge(atoi(cnt + strlen("meshsig_gateway_relay_latency_seconds_count ")), 5);
    ck_assert_ptr_nonnull(strstr(body, "meshsig_gateway_slow_readers_closed_total 0"));
    ck_assert_ptr_nonnull(strstr(body, "meshsig_gateway_dropped_total{reason=\"stale_epoch\"}"));
    free(body);
    kill(cl.gw[g4], SIGTERM);
    json_t *j = skip_to(a, "reconnect");
    ck_assert(*str_at(j, "reconnect", "reason", NULL));
    json_decref(j);
    ck_assert(wsc_wait_closed(a, T_MS));
    ck_assert_int_eq(wsc_close_code(a), 1001);
    ck_assert(wsc_wait_closed(b, T_MS));
    cluster_kill(cl.gw[g4], SIGTERM); /* reaps it; it has exited already */
    cl.gw[g4] = -1;
    wsc_free(a);
    wsc_free(b);
    wsc_global_cleanup();
}
END_TEST

/* A peer of a lost gateway resumes on another within the grace, and that one is lost too:
 * it waits out a whole new grace from then (the coordinator queues detached peers by time, and
 * its first entry, come due, must not take the peer that was detached again since). Its
 * neighbour hears nothing until that second grace ends, then its leave. */
START_TEST(resumed_then_lost_again_waits_a_new_grace)
{
    ck_assert_int_eq(wsc_global_init(), 0);
    char *ta, *tw;
    wsc_t *a = join_token(g1, "again", "re-a", &ta);
    wsc_t *w = join_token(g2, "again", "re-w", &tw);
    expect_connect(a, "re-w", 1);
    expect_connect(w, "re-a", 0);
    cluster_kill_gateway(&cl, g1);
    ck_assert(wsc_wait_closed(a, T_MS));
    wsc_free(a);
    /* Detached (gw-1 counted dead) before it resumes: its first grace runs from then. */
    int dead = 0;
    for (int i = 0; i < 100 && !dead; i++) { /* bounded: 10 s */
        dead = gateway_alive("gw-1") == 0;
        if (!dead)
            wsc_pump(100);
    }
    ck_assert_msg(dead, "gw-1 never counted as dead");
    long long t_detached = now_ms();
    a = wsc_connect(cl.gw_port[g3], NULL, T_MS);
    ck_assert_ptr_nonnull(a);
    send_json(a, "{\"id\":\"res\",\"hello\":{\"namespace\":\"again\",\"resumeToken\":\"%s\"}}", ta);
    json_decref(expect_key(a, "welcome"));
    expect_connect(a, "re-w", 1);
    /* Half its first grace later, its second gateway is lost: the first grace ends about
     * GRACE_MS / 2 after this kill, the second about GW_TIMEOUT_MS + GRACE_MS after it. */
    while (now_ms() < t_detached + GRACE_MS / 2)
        wsc_pump(50);
    long long t1 = now_ms();
    cluster_kill_gateway(&cl, g3);
    wsc_free(a);
    json_t *j = wsc_recv_json(w, GW_TIMEOUT_MS + GRACE_MS + 10000);
    long long left = now_ms() - t1;
    ck_assert_msg(j != NULL, "re-a did not leave within %lld ms", left);
    ck_assert_str_eq(str_at(j, "topology", "disconnect", "peer", NULL), "re-a");
    json_decref(j);
    j = expect_key(w, "peerLeft");
    ck_assert_str_eq(str_at(j, "peerLeft", "peer", NULL), "re-a");
    ck_assert_str_eq(str_at(j, "peerLeft", "reason", NULL), "gateway lost");
    json_decref(j);
    /* Its first grace ended about GRACE_MS after t_detached, long before this. */
    ck_assert_msg(left >= GRACE_MS,
                  "re-a left %lld ms after its second gateway was killed (%lld ms after the "
                  "first detach), before its second grace period",
                  left, now_ms() - t_detached);
    fprintf(stderr, "failover: re-a, lost twice, left %lld ms after the second kill\n", left);
    free(ta);
    free(tw);
    wsc_free(w);
    wsc_global_cleanup();
}
END_TEST

int main(void)
{
    Suite *s = suite_create("failover");
    TCase *tc = tcase_create("cluster");
    tcase_add_unchecked_fixture(tc, cluster_up, cluster_down);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, gateways_answer_resync);
    tcase_add_test(tc, silent_gateway_back_keeps_its_peers);
    tcase_add_test(tc, gateway_killed_clients_resume);
    tcase_add_test(tc, gateway_metrics_and_drain);
    suite_add_tcase(s, tc);
    /* A cluster of its own: the tests above killed gw-1 and gw-3. */
    TCase *tc2 = tcase_create("again");
    tcase_add_unchecked_fixture(tc2, cluster_up, cluster_down);
    tcase_set_timeout(tc2, 120);
    tcase_add_test(tc2, resumed_then_lost_again_waits_a_new_grace);
    suite_add_tcase(s, tc2);
    return run_suite(s);
}
