/* SPDX-License-Identifier: Apache-2.0 */
/* Fault tests: a persistent emit handed to a gateway that dies (SIGKILL) or drains (SIGTERM)
 * before writing it, or written to a client that never acked it, reaches its receiver when it
 * resumes on another gateway, once. */
#include <check.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster.h"
#include "testutil.h"
#include "wsclient.h"

static cluster_t cl;
static int gs; /* the gateway that stays: senders live here, receivers resume here */
static int n_victims;
static const char *const coord_args[] = {"--resume-grace-ms", "10000", NULL};
static const char *const dev[] = {"--insecure-dev", "--drain-ms", "3000", NULL};

static void cluster_up(void)
{
    ck_assert_int_eq(cluster_start_args(&cl, NULL, coord_args), 0);
    gs = cluster_add_gateway(&cl, "gw-stay", dev);
    ck_assert_int_ge(gs, 0);
}

static void cluster_down(void)
{
    cluster_stop(&cl);
}

/* A fresh gateway for one test to kill. */
static int add_victim(void)
{
    char id[32];
    snprintf(id, sizeof(id), "gw-victim-%d", ++n_victims);
    int g = cluster_add_gateway(&cl, id, dev);
    ck_assert_int_ge(g, 0);
    return g;
}

static const char *metric = "meshsig_coordinator_stored_emits_total{event=\"receipted\"}";

/* Waits (bounded) until the owner has had at least n receipts: the stored
 * emits are then queued for deletion, before anything a later join queues. */
static void wait_receipts(long long n)
{
    long long got = 0;
    for (int i = 0; i < 200; i++) { /* at most 10 s */
        got = metric_at(cl.admin_port, NULL, metric);
        if (got >= n)
            return;
        wsc_pump(50);
    }
    ck_abort_msg("%lld receipts after 10 s, expected %lld", got, n);
}

/* Hellos of join_token and resume_at announce acks of persistent emits. */
static int acking;

static wsc_t *join_token(int gw, const char *ns, const char *peer, char **token)
{
    wsc_t *c = wsc_connect(cl.gw_port[gw], NULL, T_MS);
    ck_assert_ptr_nonnull(c);
    send_json(c, "{\"hello\":{\"namespace\":\"%s\",\"peerId\":\"%s\"%s}}", ns, peer,
              acking ? ",\"acksPersistent\":true" : "");
    json_t *j = expect_key(c, "welcome");
    *token = strdup(str_at(j, "welcome", "resumeToken", NULL));
    ck_assert_msg(**token, "welcome carries no resume token");
    json_decref(j);
    return c;
}

static wsc_t *resume_at(int gw, const char *ns, const char *peer, const char *token)
{
    wsc_t *c = wsc_connect(cl.gw_port[gw], NULL, T_MS);
    ck_assert_ptr_nonnull(c);
    send_json(c, "{\"id\":\"res\",\"hello\":{\"namespace\":\"%s\",\"resumeToken\":\"%s\"%s}}", ns,
              token, acking ? ",\"acksPersistent\":true" : "");
    json_t *j = expect_key(c, "welcome");
    ck_assert_str_eq(str_at(j, "welcome", "peerId", NULL), peer);
    json_decref(j);
    return c;
}

static void persistent_emit(wsc_t *from, const char *to, int data)
{
    send_json(from,
              "{\"id\":\"p%d\",\"emit\":{\"to\":\"%s\",\"event\":\"note\",\"data\":%d,"
              "\"persistent\":true}}",
              data, to, data);
    json_t *j = skip_to(from, "ok");
    char id[16];
    snprintf(id, sizeof(id), "p%d", data);
    ck_assert_str_eq(str_at(j, "id", NULL), id);
    json_decref(j);
}

/* msgIds a test already got: a copy of one is what a client drops. The
 * owner re-fetches an emit whose receipt is 3 s late (a loaded machine), so
 * a repeat may come at any time; a test that expects one says so. */
#define MAX_SEEN 16
static char seen[MAX_SEEN][64];
static int n_seen;

static int was_seen(const char *id)
{
    for (int i = 0; i < n_seen; i++)
        if (!strcmp(seen[i], id))
            return 1;
    return 0;
}

/* The next emit on c that is not a repeat (topology events before it are
 * skipped; repeat: the copy of a seen msgId is what is expected): from
 * alice with data. */
static void expect_note_ex(wsc_t *c, int data, char *msg_id, size_t cap, int repeat)
{
    json_t *j = skip_to(c, "emit");
    for (int i = 0; !repeat && was_seen(str_at(j, "emit", "msgId", NULL)); i++) {
        ck_assert_int_lt(i, 10);
        json_decref(j);
        j = skip_to(c, "emit");
    }
    if (!repeat && n_seen < MAX_SEEN)
        snprintf(seen[n_seen++], sizeof(seen[0]), "%s", str_at(j, "emit", "msgId", NULL));
    ck_assert_str_eq(str_at(j, "emit", "from", NULL), "alice");
    ck_assert_str_eq(str_at(j, "emit", "event", NULL), "note");
    ck_assert_int_eq(json_integer_value(json_object_get(json_object_get(j, "emit"), "data")), data);
    ck_assert_uint_gt(strlen(str_at(j, "emit", "msgId", NULL)), 0);
    snprintf(msg_id, cap, "%s", str_at(j, "emit", "msgId", NULL));
    json_decref(j);
}

static void expect_note(wsc_t *c, int data, char *msg_id, size_t cap)
{
    expect_note_ex(c, data, msg_id, cap, 0);
}

/* zoe joins afresh: whatever was receipted is gone from the stream. */
static void rejoin_gets_nothing(wsc_t *z, const char *ns)
{
    wsc_free(z);
    ck_assert_int_eq(cluster_wait_peer_gone(&cl, ns, "zoe", 10000), 0);
    z = join_as(cl.gw_port[gs], ns, "zoe");
    expect_connect(z, "alice", 0);
    expect_quiet(z, 1000);
    wsc_free(z);
}

/* The owner hands zoe's persistent emit to her gateway, which is stopped and
 * then killed before it could write it: zoe resumes on the other gateway and
 * gets it there. Before delivery receipts the owner purged it once handed
 * over, and it was lost. */
START_TEST(gateway_killed_after_handoff)
{
    ck_assert_int_eq(wsc_global_init(), 0);
    int gv = add_victim();
    long long before = metric_at(cl.admin_port, NULL, metric);
    wsc_t *a = join_as(cl.gw_port[gs], "rx-kill", "alice");
    char *tz;
    wsc_t *z = join_token(gv, "rx-kill", "zoe", &tz);
    expect_connect(a, "zoe", 1);
    expect_connect(z, "alice", 0);

    /* A first emit arrives live and is receipted (the normal case). */
    char id0[64], id1[64], id2[64];
    persistent_emit(a, "zoe", 1);
    expect_note(z, 1, id0, sizeof(id0));
    wait_receipts(before + 1);

    ck_assert_int_eq(kill(cl.gw[gv], SIGSTOP), 0);
    /* alice's ok comes once JetStream has the emit and the owner has handed
     * it to zoe's (stopped) gateway in the same turn. */
    persistent_emit(a, "zoe", 2);
    cluster_kill_gateway(&cl, gv);
    ck_assert(wsc_wait_closed(z, T_MS));
    wsc_free(z);

    z = resume_at(gs, "rx-kill", "zoe", tz);
    expect_note(z, 2, id1, sizeof(id1));
    ck_assert_str_ne(id0, id1);
    /* Written on the new gateway: receipted there, and not sent again. */
    wait_receipts(before + 2);
    persistent_emit(a, "zoe", 3);
    expect_note(z, 3, id2, sizeof(id2));
    wait_receipts(before + 3);
    rejoin_gets_nothing(z, "rx-kill");
    free(tz);
    wsc_free(a);
    wsc_global_cleanup();
}
END_TEST

/* zoe's gateway drains (SIGTERM) while the owner hands it her persistent
 * emit: she gets it before the gateway's reconnect (written, receipted) or
 * after resuming on the other gateway (not written: still stored), never
 * not at all. The gateway is stopped while the emit is handed over and the
 * SIGTERM is queued, so that the drain and the delivery meet on its loop. */
START_TEST(gateway_draining_at_handoff)
{
    ck_assert_int_eq(wsc_global_init(), 0);
    int gv = add_victim();
    long long before = metric_at(cl.admin_port, NULL, metric);
    wsc_t *a = join_as(cl.gw_port[gs], "rx-drain", "alice");
    char *tz;
    wsc_t *z = join_token(gv, "rx-drain", "zoe", &tz);
    expect_connect(a, "zoe", 1);
    expect_connect(z, "alice", 0);

    ck_assert_int_eq(kill(cl.gw[gv], SIGSTOP), 0);
    persistent_emit(a, "zoe", 7);
    ck_assert_int_eq(kill(cl.gw[gv], SIGTERM), 0);
    ck_assert_int_eq(kill(cl.gw[gv], SIGCONT), 0);

    int got = 0;
    char id[64] = "", id2[64];
    /* Before the reconnect, or not at all on this connection. */
    for (int i = 0; i < 50; i++) {
        json_t *j = recv_json(z);
        if (json_object_get(j, "reconnect")) {
            json_decref(j);
            break;
        }
        if (json_object_get(j, "emit")) {
            ck_assert_int_eq(
                json_integer_value(json_object_get(json_object_get(j, "emit"), "data")), 7);
            snprintf(id, sizeof(id), "%s", str_at(j, "emit", "msgId", NULL));
            got++;
        }
        json_decref(j);
    }
    ck_assert(wsc_wait_closed(z, T_MS));
    ck_assert_int_eq(wsc_close_code(z), 1001);
    wsc_free(z);
    cluster_kill(cl.gw[gv], SIGTERM); /* reaps it */
    cl.gw[gv] = -1;
    if (got)
        wait_receipts(before + 1); /* written there: deleted, not delivered again */

    z = resume_at(gs, "rx-drain", "zoe", tz);
    if (!got) {
        expect_note(z, 7, id, sizeof(id));
        wait_receipts(before + 1);
    }
    fprintf(stderr, "drain: the emit reached zoe %s\n",
            got ? "before the reconnect (written by the draining gateway)"
                : "after her resume (the draining gateway had closed her session)");
    /* Once: the next emit is the next thing she gets. */
    persistent_emit(a, "zoe", 8);
    expect_note(z, 8, id2, sizeof(id2));
    ck_assert_str_ne(id, id2);
    wait_receipts(before + 2);
    rejoin_gets_nothing(z, "rx-drain");
    free(tz);
    wsc_free(a);
    wsc_global_cleanup();
}
END_TEST

/* A persistent emit to a peer that is there: stored first, delivered, then
 * deleted on the receipt (a later join of the same peer gets nothing). */
START_TEST(present_receiver_receipted)
{
    ck_assert_int_eq(wsc_global_init(), 0);
    long long before = metric_at(cl.admin_port, NULL, metric);
    wsc_t *a = join_as(cl.gw_port[gs], "rx-live", "alice");
    wsc_t *z = join_as(cl.gw_port[gs], "rx-live", "zoe");
    expect_connect(a, "zoe", 1);
    expect_connect(z, "alice", 0);
    send_json(a, "{\"id\":\"q\",\"emit\":{\"to\":\"zoe\",\"event\":\"note\",\"data\":5,"
                 "\"persistent\":true}}");
    json_t *j = skip_to(a, "ok");
    ck_assert(json_is_true(json_object_get(json_object_get(j, "ok"), "delivered")));
    ck_assert(json_is_true(json_object_get(json_object_get(j, "ok"), "stored")));
    json_decref(j);
    char id[64];
    expect_note(z, 5, id, sizeof(id));
    wait_receipts(before + 1);
    rejoin_gets_nothing(z, "rx-live");
    wsc_free(a);
    wsc_global_cleanup();
}
END_TEST

/* zoe's client announces acks (as the JS SDK does): an emit written to her
 * socket that she never acked (her client died or moved before reading it)
 * comes again, with the same msgId, on her next session; her ack there
 * deletes it. With write receipts only it was deleted once written, and lost
 * to her. */
START_TEST(unacked_emit_redelivered_on_resume)
{
    ck_assert_int_eq(wsc_global_init(), 0);
    int gv = add_victim();
    long long before = metric_at(cl.admin_port, NULL, metric);
    wsc_t *a = join_as(cl.gw_port[gs], "rx-ack", "alice");
    char *tz;
    acking = 1;
    wsc_t *z = join_token(gv, "rx-ack", "zoe", &tz);
    expect_connect(a, "zoe", 1);
    expect_connect(z, "alice", 0);

    /* Acked: the receipt follows the ack, and only the ack. */
    char id0[64], id1[64], again[64], id2[64];
    persistent_emit(a, "zoe", 1);
    expect_note(z, 1, id0, sizeof(id0));
    wsc_pump(300);
    ck_assert_int_eq(metric_at(cl.admin_port, NULL, metric), before);
    send_json(z, "{\"received\":{\"msgIds\":[\"%s\"]}}", id0);
    wait_receipts(before + 1);

    /* Written, read by the socket, never acked: zoe moves to the other gateway. */
    persistent_emit(a, "zoe", 2);
    expect_note(z, 2, id1, sizeof(id1));
    wsc_free(z);
    z = resume_at(gs, "rx-ack", "zoe", tz);
    expect_note_ex(z, 2, again, sizeof(again), 1);
    ck_assert_str_eq(again, id1); /* the same msgId: a client drops the second copy */
    /* An id it does not hold is ignored, and acks without an id get no reply. */
    send_json(z, "{\"received\":{\"msgIds\":[\"0000000000000000\",\"%s\"]}}", again);
    wait_receipts(before + 2);
    expect_quiet(z, 300);
    persistent_emit(a, "zoe", 3);
    expect_note(z, 3, id2, sizeof(id2));
    send_json(z, "{\"received\":{\"msgIds\":[\"%s\"]}}", id2);
    wait_receipts(before + 3);
    acking = 0;
    rejoin_gets_nothing(z, "rx-ack");
    cluster_kill_gateway(&cl, gv);
    free(tz);
    wsc_free(a);
    wsc_global_cleanup();
}
END_TEST

int main(void)
{
    Suite *s = suite_create("emit_receipt");
    TCase *tc = tcase_create("cluster");
    tcase_add_unchecked_fixture(tc, cluster_up, cluster_down);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, present_receiver_receipted);
    tcase_add_test(tc, gateway_killed_after_handoff);
    tcase_add_test(tc, gateway_draining_at_handoff);
    tcase_add_test(tc, unacked_emit_redelivered_on_resume);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
