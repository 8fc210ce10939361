/* SPDX-License-Identifier: Apache-2.0 */
/* Fault test: a client request lost in NATS, or its answer lost, with no change of owner, is
 * answered once and applied once.
 *
 * After a NATS node loss the clients of that node reconnect to survivors, and until the route
 * between two nodes has carried a subscription, nats-server drops what is published to it for
 * want of interest. Here the gap is made deterministic: the coordinator's (or alice's
 * gateway's) NATS connection goes through a proxy that the test cuts, and the test waits
 * until nats-server itself answers "no responders" on the subject before the request is sent
 * (or the answer made). The gateway must send copies of the unanswered request
 * (gateway/inflight.c) and the owner must apply the first copy that reaches it and answer the
 * others as it answered that one (coordinator/dedupe.c). */
#include <check.h>
#include <nats/nats.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bus.pb-c.h"
#include "cluster.h"
#include "cutproxy.h"
#include "testutil.h"
#include "wsclient.h"

static cluster_t cl;
static cutproxy_t *px_coord, *px_alice;
static int ga, gz; /* alice's gateway (NATS through px_alice), zoe's */
static natsConnection *tap;
static char coord_nats[64], alice_nats[64];
/* A lease and a gateway timeout that outlast the cuts: no owner change, no session lost. */
static const char *const coord_args[] = {
    "--nats", coord_nats, "--lease-ttl-ms", "20000", "--gateway-timeout-ms", "60000", NULL};
static const char *const alice_args[] = {"--insecure-dev", "--nats", alice_nats, NULL};
static const char *const dev[] = {"--insecure-dev", NULL};
static const char *const retried = "meshsig_gateway_requests_retried_total";
static const char *const resent = "meshsig_gateway_requests_resent_total";
static const char *const again = "meshsig_coordinator_request_copies_total{answer=\"again\"}";

static void cluster_up(void)
{
    ck_assert_int_eq(cluster_start_nats_only(&cl, NULL), 0);
    ck_assert_ptr_nonnull(px_coord = cutproxy_start(cl.nats_port));
    ck_assert_ptr_nonnull(px_alice = cutproxy_start(cl.nats_port));
    snprintf(coord_nats, sizeof(coord_nats), "nats://127.0.0.1:%d", cutproxy_port(px_coord));
    snprintf(alice_nats, sizeof(alice_nats), "nats://127.0.0.1:%d", cutproxy_port(px_alice));
    cl.coord_extra = coord_args;
    ck_assert_int_eq(cluster_restart_coordinator(&cl, 1), 0); /* none yet: starts one */
    ck_assert_int_ge(ga = cluster_add_gateway(&cl, "gw-alice", alice_args), 0);
    ck_assert_int_ge(gz = cluster_add_gateway(&cl, "gw-zoe", dev), 0);
    tap = bus_connect(&cl);
    ck_assert_int_eq(wsc_global_init(), 0);
}

static void cluster_down(void)
{
    wsc_global_cleanup();
    natsConnection_Destroy(tap);
    tap = NULL;
    cluster_stop(&cl);
    cutproxy_stop(px_coord);
    cutproxy_stop(px_alice);
}

/* Until nats-server answers a request on subject with "no responders": nobody subscribed to
 * it has a connection any more. 1 then, 0 at the deadline. */
static int no_interest(const char *subject, long long deadline_ms)
{
    while (cluster_now_ms() < deadline_ms) {
        natsMsg *reply = NULL;
        natsStatus s = natsConnection_RequestString(&reply, tap, subject, "", 200);
        natsMsg_Destroy(reply);
        if (s == NATS_NO_RESPONDERS)
            return 1;
    }
    return 0;
}

/* The next message on c with top-level key (others skipped), or NULL at the deadline. */
static json_t *wait_key(wsc_t *c, const char *key, long long deadline_ms)
{
    while (cluster_now_ms() < deadline_ms) {
        json_t *j = wsc_recv_json(c, 100);
        if (j && json_object_get(j, key))
            return j;
        json_decref(j);
    }
    return NULL;
}

/* The next message on c with this id (others skipped), or NULL at the deadline. */
static json_t *wait_id(wsc_t *c, const char *id, long long deadline_ms)
{
    while (cluster_now_ms() < deadline_ms) {
        json_t *j = wsc_recv_json(c, 100);
        const char *got = j ? json_string_value(json_object_get(j, "id")) : NULL;
        if (got && !strcmp(got, id))
            return j;
        json_decref(j);
    }
    return NULL;
}

/* The next message on c for each of ids[0..n), in whatever order they come (others skipped):
 * answers to different requests are not ordered (one may wait for a delivery receipt while
 * another is answered at once). got[i] NULL for an id with no answer by the deadline; returns
 * the id answered first. */
static const char *wait_ids(wsc_t *c, const char *const *ids, json_t **got, int n,
                            long long deadline_ms)
{
    const char *first = "none";
    int missing = n;
    for (int i = 0; i < n; i++)
        got[i] = NULL;
    while (missing > 0 && cluster_now_ms() < deadline_ms) {
        json_t *j = wsc_recv_json(c, 100);
        const char *id = j ? json_string_value(json_object_get(j, "id")) : NULL;
        for (int i = 0; id && i < n; i++) {
            if (!got[i] && !strcmp(id, ids[i])) {
                got[i] = j;
                j = NULL;
                if (missing-- == n)
                    first = ids[i];
                break;
            }
        }
        json_decref(j);
    }
    return first;
}

/* Until deadline: no message with one of ids at a, no emit at z. */
static void expect_nothing_more(wsc_t *a, wsc_t *z, const char *const *ids, long long deadline_ms)
{
    while (cluster_now_ms() < deadline_ms) {
        json_t *j = wsc_recv_json(a, 50);
        const char *got = j ? json_string_value(json_object_get(j, "id")) : NULL;
        for (int i = 0; got && ids[i]; i++)
            ck_assert_msg(strcmp(got, ids[i]), "a second answer to %s", got);
        json_decref(j);
        j = wsc_recv_json(z, 50);
        ck_assert_msg(!j || !json_object_get(j, "emit"), "zoe got the emit twice");
        json_decref(j);
    }
}

static void emit_ok(json_t *j, const char *id)
{
    ck_assert_msg(j, "no answer to %s", id);
    ck_assert_msg(json_object_get(j, "ok"), "%s answered with %s", id, json_dumps(j, JSON_COMPACT));
    ck_assert(json_is_true(json_object_get(json_object_get(j, "ok"), "delivered")));
    json_decref(j);
}

static void joined_pair(const char *ns, wsc_t **a, wsc_t **z)
{
    *a = join_as(cl.gw_port[ga], ns, "alice");
    *z = join_as(cl.gw_port[gz], ns, "zoe");
    expect_connect(*a, "zoe", 1);
    expect_connect(*z, "alice", 0);
}

/* The owner has no connection when alice's emit is published: nats-server drops it, and its
 * first copy too. Once the owner is back the next copy reaches it: zoe gets the emit once,
 * alice one ok. */
START_TEST(request_lost_before_the_owner)
{
    const char *ns = "gap-request";
    wsc_t *a, *z;
    joined_pair(ns, &a, &z);
    long long retried0 = metric_at(cl.gw_port[ga], NULL, retried);
    long long resent0 = metric_at(cl.gw_port[ga], NULL, resent);
    char subj[64];
    snprintf(subj, sizeof(subj), "meshsig.shard.%u", cluster_shard_of(ns));

    cutproxy_cut(px_coord, 1);
    ck_assert_msg(no_interest(subj, cluster_now_ms() + 10000),
                  "the coordinator's subscription outlived its connection");
    long long t_sent = cluster_now_ms();
    send_json(a, "{\"id\":\"e1\",\"emit\":{\"to\":\"zoe\",\"event\":\"note\",\"data\":1}}");
    /* The first copy (at 0.5 s) went nowhere either. */
    while (metric_at(cl.gw_port[ga], NULL, retried) < retried0 + 1) {
        ck_assert_msg(cluster_now_ms() < t_sent + 10000, "the gateway sent no copy");
        wsc_pump(50);
    }
    cutproxy_cut(px_coord, 0);

    emit_ok(wait_id(a, "e1", t_sent + 15000), "e1");
    json_t *e = wait_key(z, "emit", t_sent + 15000);
    ck_assert_msg(e, "the emit never reached zoe");
    ck_assert_int_eq(json_integer_value(json_object_get(json_object_get(e, "emit"), "data")), 1);
    json_decref(e);
    long long t_answered = cluster_now_ms();
    /* Copies still on their way are answered again and dropped by the gateway: past the
     * gateway's last copy (7.5 s), nothing more. */
    const char *const ids[] = {"e1", NULL};
    expect_nothing_more(a, z, ids, t_sent + 9000);
    ck_assert_int_eq(metric_at(cl.gw_port[ga], NULL, resent), resent0); /* no new owner */
    /* An id may be used again once answered (the JS SDK does for signals): a new request. */
    send_json(a, "{\"id\":\"e1\",\"emit\":{\"to\":\"zoe\",\"event\":\"note\",\"data\":3}}");
    emit_ok(wait_id(a, "e1", cluster_now_ms() + 10000), "e1 again");
    e = wait_key(z, "emit", cluster_now_ms() + 10000);
    ck_assert_msg(e, "an emit with an id used before never reached zoe");
    ck_assert_int_eq(json_integer_value(json_object_get(json_object_get(e, "emit"), "data")), 3);
    json_decref(e);
    fprintf(stderr, "request gap: answered %lld ms after it was sent, %lld copies\n",
            t_answered - t_sent, metric_at(cl.gw_port[ga], NULL, retried) - retried0);
    wsc_free(z);
    wsc_free(a);
}
END_TEST

/* The owner applies alice's emit while her gateway has no connection: its answer is dropped.
 * The gateway's copy, once back, gets the same answer again: alice one ok, zoe one emit (and a
 * request that failed, one error). */
START_TEST(answer_lost_after_the_owner_applied)
{
    const char *ns = "gap-answer";
    wsc_t *a, *z;
    joined_pair(ns, &a, &z);
    long long again0 = metric_at(cl.admin_port, NULL, again);
    char subj[64], gw_subj[64];
    snprintf(subj, sizeof(subj), "meshsig.shard.%u", cluster_shard_of(ns));
    snprintf(gw_subj, sizeof(gw_subj), "meshsig.gw.gw-alice");
    natsSubscription *sub = NULL;
    ck_assert_int_eq(natsConnection_SubscribeSync(&sub, tap, subj), NATS_OK);
    ck_assert_int_eq(natsConnection_Flush(tap), NATS_OK);

    /* The owner holds both requests unread: e1, then m1 (to nobody: an error). */
    ck_assert_int_eq(kill(cl.coord, SIGSTOP), 0);
    long long t_sent = cluster_now_ms();
    send_json(a, "{\"id\":\"e1\",\"emit\":{\"to\":\"zoe\",\"event\":\"note\",\"data\":2}}");
    send_json(a, "{\"id\":\"m1\",\"emit\":{\"to\":\"nobody\",\"event\":\"note\"}}");
    /* nats-server hands out one publisher's messages in order: once the tap has m1, the
     * owner's connection has e1 and m1. */
    for (int seen = 0; !seen;) {
        ck_assert_msg(cluster_now_ms() < t_sent + 10000, "m1 never reached the bus");
        natsMsg *m = NULL;
        if (natsSubscription_NextMsg(&m, sub, 100) != NATS_OK)
            continue;
        Meshsig__Bus__ShardRequest *r = meshsig__bus__shard_request__unpack(
            NULL, (size_t)natsMsg_GetDataLength(m), (const uint8_t *)natsMsg_GetData(m));
        seen = r && !strcmp(r->client_id, "m1");
        if (r)
            meshsig__bus__shard_request__free_unpacked(r, NULL);
        natsMsg_Destroy(m);
    }
    natsSubscription_Destroy(sub);
    /* alice's gateway loses its connection, and with it its subscription. */
    ck_assert_int_eq(kill(cl.gw[ga], SIGSTOP), 0);
    cutproxy_cut(px_alice, 1);
    ck_assert_msg(no_interest(gw_subj, cluster_now_ms() + 10000),
                  "alice's gateway's subscription outlived its connection");
    ck_assert_int_eq(kill(cl.coord, SIGCONT), 0);
    /* Applied: zoe has the emit; alice's answers went nowhere. */
    json_t *e = wait_key(z, "emit", cluster_now_ms() + 15000);
    ck_assert_msg(e, "the emit never reached zoe");
    ck_assert_int_eq(json_integer_value(json_object_get(json_object_get(e, "emit"), "data")), 2);
    json_decref(e);

    long long t_back = cluster_now_ms();
    cutproxy_cut(px_alice, 0);
    ck_assert_int_eq(kill(cl.gw[ga], SIGCONT), 0);
    const char *const ids[] = {"e1", "m1", NULL};
    json_t *got[2];
    const char *first = wait_ids(a, ids, got, 2, t_back + 15000);
    emit_ok(got[0], "e1");
    json_t *m = got[1];
    ck_assert_msg(m, "no answer to m1");
    ck_assert_str_eq(str_at(m, "error", "code", NULL), "PEER_NOT_FOUND");
    json_decref(m);
    long long t_answered = cluster_now_ms();
    expect_nothing_more(a, z, ids, t_back + 9000);
    ck_assert_int_ge(metric_at(cl.admin_port, NULL, again), again0 + 2);
    fprintf(stderr, "answer gap: answered again %lld ms after the gateway came back, %s first\n",
            t_answered - t_back, first);
    wsc_free(z);
    wsc_free(a);
}
END_TEST

/* A request whose answer waits for another peer (a signal held for a peer that has not joined):
 * the gateway's copy gets "received" from the owner, so it neither sends copies until it gives
 * up nor answers UNAVAILABLE; the signal is delivered once when the peer joins, and answered
 * once. */
START_TEST(copy_of_a_request_still_being_worked_on)
{
    const char *ns = "gap-held";
    ck_assert_int_eq(cluster_set_policy(&cl, ns,
                                        "{\"topology\":\"none\",\"signals\":\"any\","
                                        "\"holdMs\":30000}"),
                     0);
    wsc_t *a = join_as(cl.gw_port[ga], ns, "alice");
    long long received0 = metric_at(
        cl.admin_port, NULL, "meshsig_coordinator_request_copies_total{answer=\"received\"}");
    long long t_sent = cluster_now_ms();
    send_json(a, "{\"id\":\"s1\",\"signal\":{\"to\":\"bob\",\"payload\":7}}");
    while (metric_at(cl.admin_port, NULL,
                     "meshsig_coordinator_request_copies_total{answer=\"received\"}") <
           received0 + 1) {
        ck_assert_msg(cluster_now_ms() < t_sent + 10000, "no copy was answered \"received\"");
        wsc_pump(50);
    }
    /* Past the time the gateway would have given up (11.5 s) had the copies gone unanswered. */
    json_t *j = wait_id(a, "s1", t_sent + 13000);
    ck_assert_msg(!j, "s1 answered before bob joined: %s", json_dumps(j, JSON_COMPACT));
    wsc_t *b = join_as(cl.gw_port[gz], ns, "bob");
    json_t *sig = wait_key(b, "signal", cluster_now_ms() + 10000);
    ck_assert_msg(sig, "the held signal never reached bob");
    ck_assert_str_eq(str_at(sig, "signal", "from", NULL), "alice");
    json_decref(sig);
    j = wait_id(a, "s1", cluster_now_ms() + 10000);
    ck_assert_msg(j && json_object_get(j, "ok"), "s1 not answered ok");
    json_decref(j);
    for (long long end = cluster_now_ms() + 2000; cluster_now_ms() < end;) {
        j = wsc_recv_json(a, 50);
        const char *id = j ? json_string_value(json_object_get(j, "id")) : NULL;
        ck_assert_msg(!id || strcmp(id, "s1"), "a second answer to s1");
        json_decref(j);
        j = wsc_recv_json(b, 50);
        ck_assert_msg(!j || !json_object_get(j, "signal"), "bob got the signal twice");
        json_decref(j);
    }
    wsc_free(b);
    wsc_free(a);
}
END_TEST

/* The next GatewayBatch on sub with a Delivery with again set and a message with id: a new
 * batch (packed into *len bytes, malloc'd) of that delivery alone, as the owner sends it for a
 * copy of the request; NULL at the deadline. */
static uint8_t *next_again(natsSubscription *sub, const char *id, size_t *len,
                           long long deadline_ms)
{
    uint8_t *out = NULL;
    while (!out && cluster_now_ms() < deadline_ms) {
        natsMsg *m = NULL;
        if (natsSubscription_NextMsg(&m, sub, 100) != NATS_OK)
            continue;
        Meshsig__Bus__GatewayBatch *b = meshsig__bus__gateway_batch__unpack(
            NULL, (size_t)natsMsg_GetDataLength(m), (const uint8_t *)natsMsg_GetData(m));
        for (size_t i = 0; b && !out && i < b->n_deliveries; i++) {
            Meshsig__Bus__Delivery *d = b->deliveries[i];
            if (!d->again || !d->msg || !d->msg->id || strcmp(d->msg->id, id))
                continue;
            Meshsig__Bus__GatewayBatch one = *b;
            one.n_deliveries = 1;
            one.deliveries = &b->deliveries[i];
            *len = meshsig__bus__gateway_batch__get_packed_size(&one);
            ck_assert_ptr_nonnull(out = malloc(*len));
            meshsig__bus__gateway_batch__pack(&one, out);
        }
        if (b)
            meshsig__bus__gateway_batch__free_unpacked(b, NULL);
        natsMsg_Destroy(m);
    }
    return out;
}

/* Until the tap sees a request of alice's on subj with client id id (the gateway has sent,
 * and kept, it). */
static void wait_request(natsSubscription *sub, const char *id, long long deadline_ms)
{
    for (int seen = 0; !seen;) {
        ck_assert_msg(cluster_now_ms() < deadline_ms, "%s never reached the bus", id);
        natsMsg *m = NULL;
        if (natsSubscription_NextMsg(&m, sub, 100) != NATS_OK)
            continue;
        Meshsig__Bus__ShardRequest *r = meshsig__bus__shard_request__unpack(
            NULL, (size_t)natsMsg_GetDataLength(m), (const uint8_t *)natsMsg_GetData(m));
        seen = r && !strcmp(r->client_id, id) && r->attempt == 0;
        if (r)
            meshsig__bus__shard_request__free_unpacked(r, NULL);
        natsMsg_Destroy(m);
    }
}

/* An id may be used again once answered, also when its request had copies: alice joins a room
 * as r1 while the owner is stopped (the gateway sends a copy), has the answer, and leaves the
 * room as r1 while the owner is stopped again. The owner's answer to the join's copy (again,
 * the room's members) then comes late, after the leave went out, here replayed from the tap:
 * it is not the leave's answer. The gateway drops it and keeps the leave, whose own answer (ok)
 * comes once the owner runs. Before, alice got the join's answer for her leave, and the gateway
 * forgot the leave (no copies, none sent to a new owner). */
START_TEST(answer_to_an_old_copy_after_the_id_is_used_again)
{
    const char *ns = "gap-reuse";
    wsc_t *a = join_as(cl.gw_port[ga], ns, "alice");
    char subj[64], gw_subj[64];
    snprintf(subj, sizeof(subj), "meshsig.shard.%u", cluster_shard_of(ns));
    snprintf(gw_subj, sizeof(gw_subj), "meshsig.gw.gw-alice");
    natsSubscription *rq = NULL, *batches = NULL;
    ck_assert_int_eq(natsConnection_SubscribeSync(&batches, tap, gw_subj), NATS_OK);
    ck_assert_int_eq(natsConnection_Flush(tap), NATS_OK);
    static const char *const dropped = "meshsig_gateway_dropped_total{reason=\"answered_already\"}";
    long long retried0 = metric_at(cl.gw_port[ga], NULL, retried);

    ck_assert_int_eq(kill(cl.coord, SIGSTOP), 0);
    long long t0 = cluster_now_ms();
    send_json(a, "{\"id\":\"r1\",\"room\":{\"join\":{\"room\":\"lobby\"}}}");
    while (metric_at(cl.gw_port[ga], NULL, retried) < retried0 + 1) {
        ck_assert_msg(cluster_now_ms() < t0 + 10000, "the gateway sent no copy of the join");
        wsc_pump(50);
    }
    ck_assert_int_eq(kill(cl.coord, SIGCONT), 0);
    json_t *j = wait_id(a, "r1", t0 + 15000);
    ck_assert_msg(j && json_object_get(j, "room"), "the join r1 answered with %s",
                  j ? json_dumps(j, JSON_COMPACT) : "nothing");
    json_decref(j);
    size_t len = 0;
    uint8_t *late = next_again(batches, "r1", &len, cluster_now_ms() + 10000);
    ck_assert_msg(late, "the owner did not answer the join's copy again");
    natsSubscription_Destroy(batches);

    ck_assert_int_eq(kill(cl.coord, SIGSTOP), 0);
    ck_assert_int_eq(natsConnection_SubscribeSync(&rq, tap, subj), NATS_OK);
    ck_assert_int_eq(natsConnection_Flush(tap), NATS_OK);
    long long dropped0 = metric_at(cl.gw_port[ga], NULL, dropped);
    send_json(a, "{\"id\":\"r1\",\"room\":{\"leave\":{\"room\":\"lobby\"}}}");
    wait_request(rq, "r1", cluster_now_ms() + 10000);
    natsSubscription_Destroy(rq);
    ck_assert_int_eq(natsConnection_Publish(tap, gw_subj, late, (int)len), NATS_OK);
    ck_assert_int_eq(natsConnection_Flush(tap), NATS_OK);
    free(late);
    /* Dropped by the gateway, or (the bug) passed to alice as the leave's answer. */
    long long t_late = cluster_now_ms();
    while (metric_at(cl.gw_port[ga], NULL, dropped) < dropped0 + 1) {
        j = wsc_recv_json(a, 50);
        const char *id = j ? json_string_value(json_object_get(j, "id")) : NULL;
        ck_assert_msg(!id || strcmp(id, "r1"), "the leave r1 answered by the join's copy: %s",
                      json_dumps(j, JSON_COMPACT));
        json_decref(j);
        ck_assert_msg(cluster_now_ms() < t_late + 10000, "the late answer was neither dropped "
                                                         "nor passed on");
    }
    ck_assert_int_eq(kill(cl.coord, SIGCONT), 0);
    j = wait_id(a, "r1", cluster_now_ms() + 15000);
    ck_assert_msg(j && json_object_get(j, "ok"), "the leave r1 answered with %s",
                  j ? json_dumps(j, JSON_COMPACT) : "nothing");
    json_decref(j);
    /* Applied once: the room is empty (a second leave is refused, as it should be). */
    send_json(a, "{\"id\":\"r2\",\"room\":{\"leave\":{\"room\":\"lobby\"}}}");
    j = wait_id(a, "r2", cluster_now_ms() + 10000);
    ck_assert_msg(j && json_object_get(j, "error"), "a second leave answered with %s",
                  j ? json_dumps(j, JSON_COMPACT) : "nothing");
    json_decref(j);
    /* No second answer to r1 (the leave's copies, if any, are answered again and dropped). */
    const char *const ids[] = {"r1", NULL};
    for (long long end = cluster_now_ms() + 2000; cluster_now_ms() < end;) {
        j = wsc_recv_json(a, 50);
        const char *id = j ? json_string_value(json_object_get(j, "id")) : NULL;
        ck_assert_msg(!id || strcmp(id, ids[0]), "a second answer to r1: %s",
                      json_dumps(j, JSON_COMPACT));
        json_decref(j);
    }
    wsc_free(a);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("request_gap");
    TCase *tc = tcase_create("cluster");
    tcase_add_checked_fixture(tc, cluster_up, cluster_down);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, request_lost_before_the_owner);
    tcase_add_test(tc, answer_lost_after_the_owner_applied);
    tcase_add_test(tc, copy_of_a_request_still_being_worked_on);
    tcase_add_test(tc, answer_to_an_old_copy_after_the_id_is_used_again);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
