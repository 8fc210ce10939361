/* SPDX-License-Identifier: Apache-2.0 */
/* Integration test: stored emits a join used to skip.
 *
 * A join reads the offline stream only when its subject is known to hold messages (or the
 * coordinator's list of such subjects is not loaded). A store another coordinator makes after
 * this one loaded its list (the shard's previous owner retrying through a JetStream election;
 * any coordinator storing into a subject this one serves) must still be read by a join here:
 * it is simulated by publishing, after the list is loaded, the bytes coordinator/emit.c stores
 * straight to the stream. And a session that replaces a peer's (duplicateIds "replace") gets
 * the emits stored for it at once, as a join does, not at the owner's re-fetch seconds later. */
#include <check.h>
#include <nats/nats.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client.pb-c.h"
#include "cluster.h"
#include "redeliver.h"
#include "subject.h"
#include "testutil.h"
#include "wsclient.h"

static cluster_t cl;
static int g1, g2;
static const char *const dev[] = {"--insecure-dev", NULL};
/* A gateway stopped for a few seconds is not declared lost meanwhile. */
static const char *const coord_args[] = {"--gateway-timeout-ms", "60000", NULL};

static void cluster_up(void)
{
    signal(SIGPIPE, SIG_IGN);
    ck_assert_int_eq(cluster_start_args(&cl, NULL, coord_args), 0);
    ck_assert_int_ge(g1 = cluster_add_gateway(&cl, "gw-1", dev), 0);
    ck_assert_int_ge(g2 = cluster_add_gateway(&cl, "gw-2", dev), 0);
}

static void cluster_down(void)
{
    cluster_stop(&cl);
}

/* Publishes to the stream, on the subject of (ns, to), what coordinator/emit.c stores for a
 * persistent emit from sam to `to` (another coordinator's store, as far as this one sees). */
static void forge(jsCtx *js, const char *ns, const char *to, const char *event, const char *msg_id)
{
    Meshsig__V1__Emit e = MESHSIG__V1__EMIT__INIT;
    e.to = (char *)to;
    e.from = (char *)"sam";
    e.event = (char *)event;
    e.persistent = 1;
    e.msg_id = (char *)msg_id;
    e.stored_ns = (char *)ns;
    uint8_t buf[512];
    size_t len = meshsig__v1__emit__get_packed_size(&e);
    ck_assert_uint_le(len, sizeof(buf));
    meshsig__v1__emit__pack(&e, buf);
    char subject[200];
    ck_assert_ptr_nonnull(ms_subject_offline(subject, sizeof(subject), "meshsig", ns, to));
    jsPubAck *pa = NULL;
    jsErrCode ec = 0;
    ck_assert_int_eq(js_Publish(&pa, js, subject, buf, (int)len, NULL, &ec), NATS_OK);
    jsPubAck_Destroy(pa);
}

/* The next emit c gets, within ms (other messages skipped); NULL if none. */
static json_t *next_emit(wsc_t *c, long long ms)
{
    for (long long end = cluster_now_ms() + ms, left = ms; left > 0;
         left = end - cluster_now_ms()) {
        json_t *j = wsc_recv_json(c, (int)left);
        if (j && json_object_get(j, "emit"))
            return j;
        json_decref(j);
    }
    return NULL;
}

/* A persistent emit from `from` to `to`; returns once the sender's ok says it is stored. */
static void store(wsc_t *from, const char *to, const char *event)
{
    send_json(from,
              "{\"id\":\"s-%s\",\"emit\":{\"to\":\"%s\",\"event\":\"%s\",\"data\":1,"
              "\"persistent\":true}}",
              event, to, event);
    json_t *j = expect_key(from, "ok");
    ck_assert(json_is_true(json_object_get(json_object_get(j, "ok"), "stored")));
    json_decref(j);
}

/* The coordinator has loaded its list (sam's store is acknowledged: the stream was ready, and
 * the load at start and the one after claiming the namespace's shard ran before it, in the
 * worker's order). An emit stored for "late" afterwards, by somebody else, reaches her join.
 * Before: her subject was not in the list, and her join read nothing. */
START_TEST(stored_after_the_load_reaches_a_join)
{
    const char *ns = "offlate";
    natsConnection *nc = bus_connect(&cl);
    jsCtx *js = NULL;
    ck_assert_int_eq(natsConnection_JetStream(&js, nc, NULL), NATS_OK);
    wsc_t *sam = join_as(cl.gw_port[g1], ns, "sam");
    store(sam, "nobody", "first");

    forge(js, ns, "late", "forged", "00000000000000b1");
    wsc_t *late = join_as(cl.gw_port[g1], ns, "late");
    json_t *e = next_emit(late, T_MS);
    ck_assert_msg(e, "the emit stored after the coordinator loaded its list never reached the "
                     "join");
    ck_assert_str_eq(str_at(e, "emit", "event", NULL), "forged");
    ck_assert_str_eq(str_at(e, "emit", "from", NULL), "sam");
    json_decref(e);

    /* Again once she has left, her first emit receipted: another store from elsewhere. */
    wsc_free(late);
    ck_assert_int_eq(cluster_wait_peer_gone(&cl, ns, "late", 5000), 0);
    forge(js, ns, "late", "forged-again", "00000000000000b2");
    late = join_as(cl.gw_port[g1], ns, "late");
    e = next_emit(late, T_MS);
    ck_assert_msg(e, "the second emit stored elsewhere never reached the join");
    ck_assert_str_eq(str_at(e, "emit", "event", NULL), "forged-again");
    json_decref(e);

    wsc_free(late);
    wsc_free(sam);
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
}
END_TEST

/* zoe's gateway is stopped when sam's persistent emit to her is stored: the owner hands it to
 * that gateway, which never writes it (no receipt). zoe then joins on the other gateway, and
 * the namespace lets the new session replace the old one. The new session gets the emit at
 * once. Before, it got it only from the owner's re-fetch of an unreceipted hand-off,
 * MS_REDELIVER_FIRST_MS (3 s) after it: the deadline below is well before that. */
START_TEST(replaced_session_gets_stored_emits_at_once)
{
    const char *ns = "offrep";
    /* One coordinator: it applies the policy before it answers. */
    ck_assert_int_eq(http_request(cl.admin_port, "PUT", "/v1/namespaces/offrep/policy", NULL,
                                  "{\"duplicateIds\":\"replace\"}", NULL),
                     200);
    wsc_t *sam = join_as(cl.gw_port[g1], ns, "sam");
    wsc_t *zoe = join_as(cl.gw_port[g2], ns, "zoe");
    expect_connect(sam, "zoe", 1);
    ck_assert_int_eq(kill(cl.gw[g2], SIGSTOP), 0);
    store(sam, "zoe", "kept");
    long long t_stored = cluster_now_ms();

    wsc_t *zoe2 = join_as(cl.gw_port[g1], ns, "zoe");
    long long t_joined = cluster_now_ms();
    json_t *e = next_emit(zoe2, t_stored + MS_REDELIVER_FIRST_MS - 500 - t_joined);
    long long t_got = cluster_now_ms();
    ck_assert_int_eq(kill(cl.gw[g2], SIGCONT), 0);
    ck_assert_msg(e,
                  "the replacing session got no stored emit within %lld ms of its welcome "
                  "(%lld ms after the store)",
                  t_got - t_joined, t_got - t_stored);
    ck_assert_str_eq(str_at(e, "emit", "event", NULL), "kept");
    json_decref(e);
    fprintf(stderr, "replace: stored emit %lld ms after the welcome, %lld ms after the store\n",
            t_got - t_joined, t_got - t_stored);

    wsc_free(zoe2);
    wsc_free(zoe);
    wsc_free(sam);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("offline_late");
    TCase *tc = tcase_create("cluster");
    tcase_set_timeout(tc, 120);
    tcase_add_unchecked_fixture(tc, cluster_up, cluster_down);
    tcase_add_unchecked_fixture(tc, client_up, client_down);
    tcase_add_test(tc, stored_after_the_load_reaches_a_join);
    tcase_add_test(tc, replaced_session_gets_stored_emits_at_once);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_set_fork_status(sr, CK_NOFORK);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    nats_Close();
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
