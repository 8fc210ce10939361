/* SPDX-License-Identifier: Apache-2.0 */
/* Integration test: a stored (persistent) emit reaches only the peer it was stored for.
 *
 * The offline stream's subject is FNV-1a 64 of the namespace and of namespace + peer
 * (common/subject.c), and such collisions can be computed: a client choosing its peer id could
 * join on another peer's subject. Here the collision is simulated: emits the coordinator would
 * store for somebody else (packed with the same protobuf code, the same fields) are published
 * straight to mallory's subject. mallory's join reads them with her own; she must get hers only
 * (her stored ones, and one stored before emits named their namespace: no migration), and the
 * others must stay in the stream, unreceipted, undeleted, counted as misaddressed. */
#include <check.h>
#include <nats/nats.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client.pb-c.h"
#include "cluster.h"
#include "subject.h"
#include "testutil.h"
#include "wsclient.h"

#define NS "offto"
#define STREAM "MESHSIG_OFFLINE"

static cluster_t cl;
static int gw;
static const char *const dev[] = {"--insecure-dev", NULL};
static const char *const receipted = "meshsig_coordinator_stored_emits_total{event=\"receipted\"}";
static const char *const misaddressed =
    "meshsig_coordinator_stored_emits_total{event=\"misaddressed\"}";

static void cluster_up(void)
{
    signal(SIGPIPE, SIG_IGN);
    ck_assert_int_eq(cluster_start(&cl, NULL), 0);
    ck_assert_int_ge(gw = cluster_add_gateway(&cl, "gw-1", dev), 0);
}

static void cluster_down(void)
{
    cluster_stop(&cl);
}

/* Publishes to the stream, on the subject of (ns, on_subject_of), the bytes coordinator/emit.c
 * stores for a persistent emit to `to` in stored_ns (NULL: an emit stored before stored_ns
 * existed). Returns its stream sequence. */
static uint64_t forge(jsCtx *js, const char *ns, const char *on_subject_of, const char *to,
                      const char *stored_ns, const char *event, const char *msg_id)
{
    Meshsig__V1__Emit e = MESHSIG__V1__EMIT__INIT;
    e.to = (char *)to;
    e.from = (char *)"sam";
    e.event = (char *)event;
    e.persistent = 1;
    e.msg_id = (char *)msg_id;
    if (stored_ns)
        e.stored_ns = (char *)stored_ns;
    uint8_t buf[512];
    size_t len = meshsig__v1__emit__get_packed_size(&e);
    ck_assert_uint_le(len, sizeof(buf));
    meshsig__v1__emit__pack(&e, buf);
    char subject[200];
    ck_assert_ptr_nonnull(
        ms_subject_offline(subject, sizeof(subject), "meshsig", ns, on_subject_of));
    jsPubAck *pa = NULL;
    jsErrCode ec = 0;
    ck_assert_int_eq(js_Publish(&pa, js, subject, buf, (int)len, NULL, &ec), NATS_OK);
    uint64_t seq = pa->Sequence;
    jsPubAck_Destroy(pa);
    return seq;
}

/* Whether stream sequence seq is still in the stream. */
static int in_stream(jsCtx *js, uint64_t seq)
{
    natsMsg *m = NULL;
    jsErrCode ec = 0;
    natsStatus s = js_GetMsg(&m, js, STREAM, seq, NULL, &ec);
    natsMsg_Destroy(m);
    ck_assert_msg(s == NATS_OK || ec == JSNoMessageFoundErr, "get #%llu: %s (%d)",
                  (unsigned long long)seq, natsStatus_GetText(s), (int)ec);
    return s == NATS_OK;
}

/* The next emit c gets has this event. */
static void expect_emit(wsc_t *c, const char *event)
{
    json_t *j = skip_to(c, "emit");
    ck_assert_str_eq(str_at(j, "emit", "event", NULL), event);
    json_decref(j);
}

/* No emit reaches c within ms (topology messages may). */
static void expect_no_emit(wsc_t *c, int ms)
{
    for (long long end = cluster_now_ms() + ms, left = ms; left > 0;
         left = end - cluster_now_ms()) {
        json_t *j = wsc_recv_json(c, (int)left);
        if (!j)
            return;
        char *dump = json_dumps(j, JSON_COMPACT);
        int emit = json_object_get(j, "emit") != NULL;
        json_decref(j);
        ck_assert_msg(!emit, "unexpected emit %s", dump);
        free(dump);
    }
}

START_TEST(stored_emit_only_for_its_addressee)
{
    natsConnection *nc = NULL;
    jsCtx *js = NULL;
    nc = bus_connect(&cl);
    ck_assert_int_eq(natsConnection_JetStream(&js, nc, NULL), NATS_OK);
    /* mallory's own stored emit, stored by the coordinator: once it is ok the stream exists
     * and her subject is known to hold messages. */
    wsc_t *sam = join_as(cl.gw_port[gw], NS, "sam");
    send_json(sam, "{\"id\":\"p1\",\"emit\":{\"to\":\"mallory\",\"event\":\"mine\",\"data\":1,"
                   "\"persistent\":true}}");
    json_decref(expect_key(sam, "ok"));
    long long rc0 = metric_at(cl.admin_port, NULL, receipted);
    long long mis0 = metric_at(cl.admin_port, NULL, misaddressed);

    /* On mallory's subject: victim's emit in this namespace, and an emit to a mallory of
     * another namespace; then one to her stored before emits named their namespace. */
    uint64_t for_victim = forge(js, NS, "mallory", "victim", NS, "victims", "00000000000000a1");
    uint64_t other_ns =
        forge(js, NS, "mallory", "mallory", "offto-other", "other-ns", "00000000000000a2");
    uint64_t legacy = forge(js, NS, "mallory", "mallory", NULL, "legacy", "00000000000000a3");

    /* In stream order, hers only: a delivered forged one would come before "legacy". */
    wsc_t *mal = join_as(cl.gw_port[gw], NS, "mallory");
    expect_emit(mal, "mine");
    expect_emit(mal, "legacy");
    expect_no_emit(mal, 500);

    /* Her two receipts came back, and were deleted ... */
    for (int i = 0; metric_at(cl.admin_port, NULL, receipted) < rc0 + 2; i++) {
        ck_assert_msg(i < 200, "no receipts for mallory's stored emits after 10 s");
        wsc_pump(50);
    }
    for (int i = 0; in_stream(js, legacy); i++) {
        ck_assert_msg(i < 200, "mallory's receipted emit #%llu not deleted after 10 s",
                      (unsigned long long)legacy);
        wsc_pump(50);
    }
    /* ... the others are there still, seen as misaddressed. */
    ck_assert_msg(in_stream(js, for_victim), "victim's stored emit was deleted by mallory's join");
    ck_assert_msg(in_stream(js, other_ns), "another namespace's stored emit was deleted");
    /* The count before her second join: a join queues its fetch right after the welcome, and
     * the fetch can be read and counted before a /metrics request sent on the welcome is
     * answered (a baseline taken there failed 5 runs in 15 under load: 2 before the join, 4
     * right after its welcome, 4 still 10 s later). */
    long long mis1 = metric_at(cl.admin_port, NULL, misaddressed);
    ck_assert_int_ge(mis1, mis0 + 2);

    /* Joining again changes nothing for her. */
    wsc_free(mal);
    ck_assert_int_eq(cluster_wait_peer_gone(&cl, NS, "mallory", 5000), 0);
    mal = join_as(cl.gw_port[gw], NS, "mallory");
    for (int i = 0; metric_at(cl.admin_port, NULL, misaddressed) < mis1 + 2; i++) {
        ck_assert_msg(i < 200, "mallory's second join did not read her subject");
        wsc_pump(50);
    }
    expect_no_emit(mal, 500);
    ck_assert(in_stream(js, for_victim));
    ck_assert(in_stream(js, other_ns));

    /* victim's own subject is another one (this collision is simulated): nothing for her
     * there, and what lies on mallory's subject stays for a join whose subject it is. */
    wsc_t *vic = join_as(cl.gw_port[gw], NS, "victim");
    expect_no_emit(vic, 500);
    ck_assert(in_stream(js, for_victim));

    wsc_free(vic);
    wsc_free(mal);
    wsc_free(sam);
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("offline_addressee");
    TCase *tc = tcase_create("cluster");
    tcase_set_timeout(tc, 120);
    tcase_add_unchecked_fixture(tc, cluster_up, cluster_down);
    tcase_add_unchecked_fixture(tc, client_up, client_down);
    tcase_add_test(tc, stored_emit_only_for_its_addressee);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_set_fork_status(sr, CK_NOFORK);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    nats_Close();
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
