/* SPDX-License-Identifier: Apache-2.0 */
/* The direct path with real processes: signals between neighbours on two gateways go gateway to
 * gateway (not through the coordinator), in order, across a resume and a coordinator kill. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>

#include "cluster.h"
#include "testutil.h"
#include "wsclient.h"

#define ADMIN_TOKEN "test-admin-token"
#define BURST 1000

static cluster_t cl;
static int g1, g2, g3;
static const char *const coord_args[] = {"--lease-ttl-ms",
                                         "1200",
                                         "--coord-timeout-ms",
                                         "800",
                                         "--coord-heartbeat-ms",
                                         "200",
                                         "--resync-timeout-ms",
                                         "500",
                                         NULL};

static void cluster_up(void)
{
    ck_assert_int_eq(cluster_start_args(&cl, ADMIN_TOKEN, coord_args), 0);
    /* Bursts of 1,000 signals: above the default per-session rate. */
    const char *gw_args[] = {"--insecure-dev", "--rate-msgs", "100000",
                             "--rate-bytes",   "100000000",   NULL};
    g1 = cluster_add_gateway(&cl, "gw-1", gw_args);
    g2 = cluster_add_gateway(&cl, "gw-2", gw_args);
    g3 = cluster_add_gateway(&cl, "gw-3", gw_args);
    ck_assert(g1 >= 0 && g2 >= 0 && g3 >= 0);
}

static void cluster_down(void)
{
    cluster_stop(&cl);
}

/* ---- helpers ---- */

static long long gw_direct(int gw, const char *dir)
{
    char s[128];
    snprintf(s, sizeof(s), "meshsig_gateway_signals_direct_total{dir=\"%s\"}", dir);
    return metric_at(cl.gw_port[gw], NULL, s);
}

static long long coord_signals(void)
{
    return metric_at(cl.admin_port, ADMIN_TOKEN, "meshsig_coordinator_signals_total");
}

static void set_policy(const char *ns, const char *json)
{
    char path[256], *body = NULL;
    snprintf(path, sizeof(path), "/v1/namespaces/%s/policy", ns);
    int st = http_request(cl.admin_port, "PUT", path, ADMIN_TOKEN, json, &body);
    free(body);
    ck_assert_int_eq(st, 200);
}

/* Joins and returns the resume token from the welcome (malloc'd). */
static wsc_t *join_token(int gw, const char *ns, const char *peer, char **token)
{
    wsc_t *c = wsc_connect(cl.gw_port[gw], "meshsig.v1.json", T_MS);
    ck_assert_ptr_nonnull(c);
    send_json(c, "{\"hello\":{\"namespace\":\"%s\",\"peerId\":\"%s\"}}", ns, peer);
    json_t *j = expect_key(c, "welcome");
    *token = strdup(str_at(j, "welcome", "resumeToken", NULL));
    ck_assert_msg(**token, "welcome carries no resume token");
    json_decref(j);
    return c;
}

/* Reads connects until c has been told about every peer in want. */
static void expect_connects(wsc_t *c, const char *const *want, int n)
{
    int seen = 0;
    for (int i = 0; i < 50 && seen < n; i++) {
        json_t *j = recv_json(c);
        const char *peer = str_at(j, "topology", "connect", "peer", NULL);
        for (int k = 0; k < n; k++)
            seen += *peer && !strcmp(peer, want[k]);
        json_decref(j);
    }
    ck_assert_int_eq(seen, n);
}

static void send_burst(wsc_t *from, const char *to, int first, int n)
{
    for (int i = first; i < first + n; i++)
        send_json(from, "{\"signal\":{\"to\":\"%s\",\"payload\":{\"seq\":%d,\"pad\":\"%s\"}}}", to,
                  i, "0123456789abcdef0123456789abcdef");
}

/* Reads signals from `from` on c (skipping other messages) and checks that
 * their seq runs on from *next, in order, until *next reaches end or c closes
 * (when may_close). Returns 1 when c closed. */
static int read_burst(wsc_t *c, const char *from, int *next, int end, int may_close)
{
    for (int guard = 0; *next < end && guard < 4 * BURST; guard++) {
        json_t *j = wsc_recv_json(c, T_MS);
        if (!j) {
            ck_assert_msg(may_close && wsc_wait_closed(c, 0),
                          "signal %d from %s did not arrive within %d ms", *next, from, T_MS);
            return 1;
        }
        json_t *sig = json_object_get(j, "signal");
        if (sig) {
            ck_assert_str_eq(str_at(sig, "from", NULL), from);
            long long seq =
                json_integer_value(json_object_get(json_object_get(sig, "payload"), "seq"));
            ck_assert_msg(seq == *next, "from %s: expected seq %d, got %lld", from, *next, seq);
            (*next)++;
        }
        json_decref(j);
    }
    return 0;
}

/* ---- tests ---- */

/* Full mesh and Delaunay, peers on both gateways: both ways, 1,000 signals
 * per pair at once, all in order, none through the coordinator. */
START_TEST(signals_cross_directly_in_order)
{
    const char *nss[] = {"direct-fm", "direct-dl"};
    set_policy("direct-dl", "{\"topology\":\"delaunay\"}");
    for (int n = 0; n < 2; n++) {
        const char *ns = nss[n];
        wsc_t *a = join_as(cl.gw_port[g1], ns, "a1");
        wsc_t *b = join_as(cl.gw_port[g2], ns, "b1");
        wsc_t *c = join_as(cl.gw_port[g1], ns, "c1");
        wsc_t *d = join_as(cl.gw_port[g2], ns, "d1");
        /* Up to 4 peers every pair is an edge in both topologies. */
        const char *ka[] = {"b1", "c1", "d1"}, *kb[] = {"a1", "c1", "d1"};
        const char *kc[] = {"a1", "b1", "d1"}, *kd[] = {"a1", "b1", "c1"};
        expect_connects(a, ka, 3);
        expect_connects(b, kb, 3);
        expect_connects(c, kc, 3);
        expect_connects(d, kd, 3);

        long long coord0 = coord_signals();
        long long out1 = gw_direct(g1, "out"), in2 = gw_direct(g2, "in");
        long long out2 = gw_direct(g2, "out"), in1 = gw_direct(g1, "in");
        /* a1 -> b1 and b1 -> a1, c1 -> d1: three pairs across, at once. */
        send_burst(a, "b1", 0, BURST);
        send_burst(b, "a1", 0, BURST);
        send_burst(c, "d1", 0, BURST);
        int nb = 0, na = 0, nd = 0;
        read_burst(b, "a1", &nb, BURST, 0);
        read_burst(a, "b1", &na, BURST, 0);
        read_burst(d, "c1", &nd, BURST, 0);
        ck_assert_int_eq(coord_signals() - coord0, 0);
        ck_assert_int_eq(gw_direct(g1, "out") - out1, 2 * BURST);
        ck_assert_int_eq(gw_direct(g2, "in") - in2, 2 * BURST);
        ck_assert_int_eq(gw_direct(g2, "out") - out2, BURST);
        ck_assert_int_eq(gw_direct(g1, "in") - in1, BURST);
        fprintf(stderr, "%s: 3 x %d signals across two gateways, coordinator signals +%lld\n", ns,
                BURST, coord_signals() - coord0);
        wsc_free(a);
        wsc_free(b);
        wsc_free(c);
        wsc_free(d);
    }
}
END_TEST

/* The owner still answers what the gateways cannot vouch for. */
START_TEST(owner_answers_not_neighbour_and_peer_not_found)
{
    set_policy("direct-tree", "{\"topology\":\"tree\",\"k\":2}");
    wsc_t *root = join_as(cl.gw_port[g1], "direct-tree", "t-root");
    wsc_t *k1 = join_as(cl.gw_port[g2], "direct-tree", "t-kid1");
    wsc_t *k2 = join_as(cl.gw_port[g1], "direct-tree", "t-kid2");
    expect_connect(k1, "t-root", 1);
    expect_connect(k2, "t-root", 1);
    long long coord0 = coord_signals();
    /* Siblings on two gateways are not neighbours. */
    send_json(k1, "{\"id\":\"nn\",\"signal\":{\"to\":\"t-kid2\",\"payload\":{}}}");
    expect_error(k1, "NOT_NEIGHBOUR", "nn");
    send_json(k1, "{\"id\":\"pnf\",\"signal\":{\"to\":\"nobody\",\"payload\":{}}}");
    expect_error(k1, "PEER_NOT_FOUND", "pnf");
    ck_assert_int_eq(coord_signals() - coord0, 0); /* errors are not relayed signals */
    /* The parent edge crosses gateways: direct. */
    long long out2 = gw_direct(g2, "out");
    send_json(k1, "{\"id\":\"up\",\"signal\":{\"to\":\"t-root\",\"payload\":\"hi\"}}");
    json_t *j = skip_to(root, "signal");
    ck_assert_str_eq(str_at(j, "signal", "from", NULL), "t-kid1");
    json_decref(j);
    ck_assert_int_eq(gw_direct(g2, "out") - out2, 1);
    /* The root leaves: its former child's next signal gets PEER_NOT_FOUND. */
    send_json(root, "{\"id\":\"bye\",\"leave\":{}}");
    json_decref(expect_key(root, "ok"));
    json_decref(skip_to(k1, "peerLeft"));
    send_json(k1, "{\"id\":\"late\",\"signal\":{\"to\":\"t-root\",\"payload\":{}}}");
    j = skip_to(k1, "error");
    ck_assert_str_eq(str_at(j, "id", NULL), "late");
    ck_assert_str_eq(str_at(j, "error", "code", NULL), "PEER_NOT_FOUND");
    json_decref(j);
    wsc_free(root);
    wsc_free(k1);
    wsc_free(k2);
}
END_TEST

/* The receiver resumes on another gateway in the middle of a burst, then again
 * on the sender's own gateway: what its old session did not get arrives on
 * the new one, nothing twice, nothing out of order. */
START_TEST(resume_mid_burst_keeps_order)
{
    char *tx, *ty;
    wsc_t *x = join_token(g1, "direct-res", "x-recv", &tx);
    wsc_t *y = join_token(g2, "direct-res", "y-send", &ty);
    expect_connect(x, "y-send", 1);
    expect_connect(y, "x-recv", 0);
    long long coord0 = coord_signals();
    int next = 0;
    const int hops[] = {g3, g2};
    for (int h = 0; h < 2; h++) {
        int base = h * BURST, sent = base, old_got;
        send_burst(y, "x-recv", base, 50);
        sent += 50;
        /* Read a few on the old session, then move while the rest is sent. */
        read_burst(x, "y-send", &next, base + 10, 0);
        wsc_t *x2 = wsc_connect(cl.gw_port[hops[h]], "meshsig.v1.json", T_MS);
        ck_assert_ptr_nonnull(x2);
        send_json(x2, "{\"hello\":{\"namespace\":\"direct-res\",\"resumeToken\":\"%s\"}}", tx);
        for (; sent < base + BURST; sent += 10) {
            send_burst(y, "x-recv", sent, 10);
            wsc_pump(1);
        }
        /* The old session: signals until the owner closes it (REPLACED). */
        if (!read_burst(x, "y-send", &next, base + BURST, 1))
            ck_assert(wsc_wait_closed(x, T_MS));
        old_got = next - base;
        wsc_free(x);
        x = x2;
        read_burst(x, "y-send", &next, base + BURST, 0);
        ck_assert_int_eq(next, base + BURST);
        fprintf(stderr, "resume %d: the old session got %d of %d, the new one the rest\n", h,
                old_got, BURST);
    }
    /* The sender's own gateway now holds both: relayed there. */
    fprintf(stderr, "resume: coordinator relayed %lld of %d signals\n", coord_signals() - coord0,
            2 * BURST);
    send_json(y, "{\"signal\":{\"to\":\"x-recv\",\"payload\":{\"seq\":%d}}}", next);
    read_burst(x, "y-send", &next, next + 1, 0);
    free(tx);
    free(ty);
    wsc_free(x);
    wsc_free(y);
}
END_TEST

/* The sender resumes on another gateway in the middle of a burst (then on the
 * receiver's own gateway, where signals are relayed locally): the receiver
 * gets every signal the old session's gateway took before the owner's
 * REPLACED reached it, then the new session's, once each and in order
 * (README "The direct path between gateways"). The old session's gateway is
 * stopped (SIGSTOP) while the old session writes its burst and the new one
 * resumes, so that what it takes of the burst goes out after the owner has
 * moved the sender: the race this is about, every time. What it took is its
 * frame counter's difference (it holds no other session meanwhile); a pong
 * for the ping after the burst shows it took all of it. */
START_TEST(sender_resume_mid_burst_keeps_order)
{
    char *tr, *ts;
    wsc_t *r = join_token(g1, "direct-sres", "r-recv", &tr);
    wsc_t *s = join_token(g2, "direct-sres", "s-send", &ts);
    expect_connect(r, "s-send", 1);
    expect_connect(s, "r-recv", 0);
    const int hops[] = {g3, g1};
    int at = g2;
    for (int h = 0; h < 2; h++) {
        int base = 2 * h * BURST;
        long long in0 = metric_at(cl.gw_port[at], NULL, "meshsig_gateway_messages_in_total");
        ck_assert_int_eq(kill(cl.gw[at], SIGSTOP), 0);
        send_burst(s, "r-recv", base, BURST / 2);
        send_json(s, "{\"id\":\"after-burst\",\"ping\":{}}");
        wsc_t *s2 = wsc_connect(cl.gw_port[hops[h]], "meshsig.v1.json", T_MS);
        ck_assert_ptr_nonnull(s2);
        send_json(s2, "{\"hello\":{\"namespace\":\"direct-sres\",\"resumeToken\":\"%s\"}}", ts);
        ck_assert_int_eq(kill(cl.gw[at], SIGCONT), 0);
        json_decref(expect_key(s2, "welcome"));
        /* The rest from the new session, right after its welcome. */
        send_burst(s2, "r-recv", base + BURST, BURST);
        int old_got = 0, new_got = 0;
        for (int guard = 0; new_got < BURST && guard < 4 * BURST; guard++) {
            json_t *j = wsc_recv_json(r, T_MS);
            ck_assert_msg(j != NULL, "hop %d: %d of %d new-session signals arrived", h, new_got,
                          BURST);
            json_t *sig = json_object_get(j, "signal");
            if (sig) {
                ck_assert_str_eq(str_at(sig, "from", NULL), "s-send");
                long long seq =
                    json_integer_value(json_object_get(json_object_get(sig, "payload"), "seq"));
                if (seq < base + BURST) {
                    ck_assert_msg(!new_got, "hop %d: old-session seq %lld after %d new ones", h,
                                  seq, new_got);
                    ck_assert_msg(seq == base + old_got,
                                  "hop %d: old-session seq %lld, expected %d", h, seq,
                                  base + old_got);
                    old_got++;
                } else {
                    ck_assert_msg(seq == base + BURST + new_got,
                                  "hop %d: new-session seq %lld, expected %d", h, seq,
                                  base + BURST + new_got);
                    new_got++;
                }
            }
            json_decref(j);
        }
        ck_assert_int_eq(new_got, BURST);
        /* The old session: the pong (when its gateway took the ping before
         * the REPLACED), the REPLACED, the close. */
        int pong = 0, replaced = 0;
        for (int guard = 0; guard < 16; guard++) {
            json_t *j = wsc_recv_json(s, T_MS);
            if (!j)
                break;
            pong |= json_object_get(j, "pong") != NULL;
            replaced |= !strcmp(str_at(j, "error", "code", NULL), "REPLACED");
            json_decref(j);
        }
        ck_assert_msg(replaced, "hop %d: the old session was not told REPLACED", h);
        ck_assert(wsc_wait_closed(s, T_MS));
        long long took =
            metric_at(cl.gw_port[at], NULL, "meshsig_gateway_messages_in_total") - in0 - pong;
        ck_assert_msg(pong ? took == BURST / 2 : took <= BURST / 2,
                      "hop %d: the old gateway took %lld frames (pong %d)", h, took, pong);
        fprintf(stderr, "sender resume %d: %d of the %lld signals the old gateway took arrived\n",
                h, old_got, took);
        ck_assert_msg(old_got == took, "hop %d: %lld of the old session's signals lost", h,
                      took - old_got);
        wsc_free(s);
        s = s2;
        at = hops[h];
    }
    /* One more after the last move: still in order, and nothing of an old session after it. */
    send_json(s, "{\"signal\":{\"to\":\"r-recv\",\"payload\":{\"seq\":%d}}}", 5 * BURST);
    int next = 5 * BURST;
    read_burst(r, "s-send", &next, next + 1, 0);
    free(tr);
    free(ts);
    wsc_free(r);
    wsc_free(s);
}
END_TEST

/* The coordinator is killed in the middle of a burst: the direct path needs
 * no coordinator, so nothing is lost or reordered; after the takeover the
 * owner's answers come back. */
START_TEST(coordinator_killed_mid_burst)
{
    wsc_t *a = join_as(cl.gw_port[g1], "direct-kill", "k-a");
    wsc_t *b = join_as(cl.gw_port[g2], "direct-kill", "k-b");
    expect_connect(a, "k-b", 1);
    expect_connect(b, "k-a", 0);
    long long in2 = gw_direct(g2, "in");
    send_burst(a, "k-b", 0, BURST / 2);
    int next = 0;
    read_burst(b, "k-a", &next, 10, 0);
    cluster_kill(cl.coord, SIGKILL);
    send_burst(a, "k-b", BURST / 2, BURST / 2);
    read_burst(b, "k-a", &next, BURST, 0);
    ck_assert_int_eq(gw_direct(g2, "in") - in2, BURST);
    /* A new owner takes the shard over; the path stays direct. */
    ck_assert_int_eq(cluster_restart_coordinator(&cl, 1), 0);
    send_json(a, "{\"id\":\"pnf\",\"signal\":{\"to\":\"nobody\",\"payload\":{}}}");
    json_t *j = NULL;
    for (int i = 0; i < 10; i++) { /* UNAVAILABLE-free: requests wait for the rebuild */
        j = recv_json(a);
        if (json_object_get(j, "error"))
            break;
        json_decref(j);
        j = NULL;
    }
    ck_assert_ptr_nonnull(j);
    ck_assert_str_eq(str_at(j, "error", "code", NULL), "PEER_NOT_FOUND");
    json_decref(j);
    send_burst(a, "k-b", BURST, 100);
    read_burst(b, "k-a", &next, BURST + 100, 0);
    ck_assert_int_eq(coord_signals(), 0);
    wsc_free(a);
    wsc_free(b);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("direct");
    TCase *tc = tcase_create("core");
    tcase_add_unchecked_fixture(tc, cluster_up, cluster_down);
    tcase_add_checked_fixture(tc, client_up, client_down);
    tcase_set_timeout(tc, 240);
    tcase_add_test(tc, signals_cross_directly_in_order);
    tcase_add_test(tc, owner_answers_not_neighbour_and_peer_not_found);
    tcase_add_test(tc, resume_mid_burst_keeps_order);
    tcase_add_test(tc, sender_resume_mid_burst_keeps_order);
    tcase_add_test(tc, coordinator_killed_mid_burst);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
