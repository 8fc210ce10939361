/* SPDX-License-Identifier: Apache-2.0 */
/* Wall-clock steps of +1 h and -1 h on a running coordinator and gateways: nothing lost, nothing
 * expires early.
 *
 * The coordinator and both gateways run under libfaketime with their wall
 * clock (CLOCK_REALTIME, time(), gettimeofday()) read from a file this test
 * rewrites, and the monotonic clock left alone (DONT_FAKE_MONOTONIC=1), as an
 * NTP step would leave it. A deadline measured on the wall clock expires at
 * once after +1 h and never after -1 h; one measured on the monotonic clock
 * does not notice.
 */
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

#define FAKETIME_LIB "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1"
#define ACK_TIMEOUT_MS 3000

static cluster_t cl;
static int g1, g2;
static char offset_file[300];

static void set_offset(const char *offset)
{
    char tmp[320];
    snprintf(tmp, sizeof(tmp), "%s.tmp", offset_file);
    FILE *f = fopen(tmp, "w");
    ck_assert_ptr_nonnull(f);
    fprintf(f, "%s\n", offset);
    ck_assert_int_eq(fclose(f), 0);
    /* atomically, so no process reads a half-written file */
    ck_assert_int_eq(rename(tmp, offset_file), 0);
}

static void cluster_up(void)
{
    ck_assert_msg(access(FAKETIME_LIB, R_OK) == 0, "libfaketime is not installed");
    snprintf(offset_file, sizeof(offset_file), "/tmp/meshsig-faketime-%d", (int)getpid());
    set_offset("+0");
    /* Only the processes this test starts inherit these. */
    setenv("LD_PRELOAD", FAKETIME_LIB, 1);
    setenv("FAKETIME_TIMESTAMP_FILE", offset_file, 1);
    setenv("FAKETIME_NO_CACHE", "1", 1);
    setenv("DONT_FAKE_MONOTONIC", "1", 1);
    /* libfaketime is preloaded ahead of the sanitizer runtime in the ASan build */
    const char *asan = getenv("ASAN_OPTIONS");
    char opts[512];
    snprintf(opts, sizeof(opts), "%s%sverify_asan_link_order=0", asan ? asan : "",
             asan && *asan ? ":" : "");
    setenv("ASAN_OPTIONS", opts, 1);
    ck_assert_int_eq(cluster_start(&cl, NULL), 0);
    const char *dev[] = {"--insecure-dev", NULL};
    g1 = cluster_add_gateway(&cl, "gw-t1", dev);
    g2 = cluster_add_gateway(&cl, "gw-t2", dev);
    ck_assert_int_ge(g1, 0);
    ck_assert_int_ge(g2, 0);
    unsetenv("LD_PRELOAD");
}

static void cluster_down(void)
{
    cluster_stop(&cl);
    unlink(offset_file);
}

static long long mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* n signals each way across the gateways: all arrive, in order, and nothing
 * else comes first (no peerLeft, no disconnect). */
static void signals_cross(wsc_t *a, wsc_t *b, int n, const char *tag)
{
    for (int i = 0; i < n; i++) {
        send_json(a, "{\"signal\":{\"to\":\"bob\",\"payload\":\"%s-%d\"}}", tag, i);
        send_json(b, "{\"signal\":{\"to\":\"alice\",\"payload\":\"%s-%d\"}}", tag, i);
    }
    for (int i = 0; i < n; i++) {
        char want[64];
        snprintf(want, sizeof(want), "%s-%d", tag, i);
        json_t *j = expect_key(b, "signal");
        ck_assert_str_eq(str_at(j, "signal", "payload", NULL), want);
        json_decref(j);
        j = expect_key(a, "signal");
        ck_assert_str_eq(str_at(j, "signal", "payload", NULL), want);
        json_decref(j);
    }
}

/* A pending emit-with-ack while the wall clock steps: signals keep crossing,
 * no gateway is declared lost, and the ack times out after its real timeout,
 * not at once (+1 h) and not an hour late (-1 h). */
static void step_with_pending_ack(wsc_t *a, wsc_t *b, const char *to_offset, const char *tag)
{
    send_json(a, "{\"emit\":{\"to\":\"bob\",\"event\":\"slow\",\"ackId\":\"%s\",\"timeoutMs\":%d}}",
              tag, ACK_TIMEOUT_MS);
    long long sent = mono_ms();
    json_decref(expect_key(b, "emit"));
    set_offset(to_offset);
    signals_cross(a, b, 20, tag);
    /* more than a liveness period (250 ms) and a heartbeat (1 s) pass in here */
    json_t *j = wsc_recv_json(a, ACK_TIMEOUT_MS + 5000);
    long long took = mono_ms() - sent;
    if (!j) {
        /* what the processes saw, for the failure report */
        char cmd[600];
        snprintf(cmd, sizeof(cmd), "tail -n 25 '%s/coordinator.log' '%s/gw-t1.log' >&2", cl.dir,
                 cl.dir);
        if (system(cmd) != 0)
            fprintf(stderr, "no logs in %s\n", cl.dir);
    }
    ck_assert_msg(j != NULL, "%s: no ack timeout within %d ms", tag, ACK_TIMEOUT_MS + 5000);
    char *dump = json_dumps(j, JSON_COMPACT);
    ck_assert_msg(!strcmp(str_at(j, "ack", "error", "code", NULL), "ACK_TIMEOUT"),
                  "%s: expected the ack timeout, got %s", tag, dump);
    free(dump);
    json_decref(j);
    ck_assert_msg(took >= ACK_TIMEOUT_MS - 100, "%s: the ack timed out after %lld ms, not %d", tag,
                  took, ACK_TIMEOUT_MS);
    signals_cross(a, b, 20, tag);
}

START_TEST(wall_clock_steps)
{
    wsc_t *a = join_as(cl.gw_port[g1], "clockstep", "alice");
    wsc_t *b = join_as(cl.gw_port[g2], "clockstep", "bob");
    expect_connect(a, "bob", 1);
    expect_connect(b, "alice", 0);
    step_with_pending_ack(a, b, "+3600", "forward"); /* +1 h */
    step_with_pending_ack(a, b, "+0", "back");       /* -1 h */
    /* the cluster still takes newcomers on either gateway */
    wsc_t *c = join_as(cl.gw_port[g2], "clockstep", "carol");
    json_decref(skip_to(c, "topology"));
    for (int i = 0; i < cl.n_gw; i++)
        ck_assert_int_eq(kill(cl.gw[i], 0), 0);
    ck_assert_int_eq(kill(cl.coord, 0), 0);
    wsc_free(c);
    wsc_free(a);
    wsc_free(b);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("clockstep");
    TCase *tc = tcase_create("cluster");
    tcase_add_unchecked_fixture(tc, cluster_up, cluster_down);
    tcase_add_checked_fixture(tc, client_up, client_down);
    tcase_set_timeout(tc, 90);
    tcase_add_test(tc, wall_clock_steps);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
