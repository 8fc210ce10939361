/* SPDX-License-Identifier: Apache-2.0 */
/* Receive buffers handed back while connections are quiet (gateway/rxslab.c), through a real
 * gateway: the pages go back once every connection on them is quiet, a message after that
 * arrives whole, and a page whose connection is inside a frame is kept: a ping written in two
 * pieces, with a release of another page between them, is answered with its whole payload.
 *
 * Connections take slots in the order they connect (1056 bytes each, about four to a page):
 * alice (raw bytes) slot 0, bob slot 1, fillers 2-13; the last filler's slot lies on page 3,
 * alice's on page 0. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cluster.h"
#include "rawws.h"
#include "testutil.h"
#include "wsclient.h"

#define RELEASE_MS "300"
#define FILLERS 12

static cluster_t cl;
static int g;

static void cluster_up(void)
{
    ck_assert_int_eq(cluster_start(&cl, NULL), 0);
    /* The layout below is that of 1 KiB buffers (1056-byte slots), whatever the default. */
    const char *args[] = {"--insecure-dev",  "--rx-buffer", "1024",
                          "--rx-release-ms", RELEASE_MS,    NULL};
    g = cluster_add_gateway(&cl, "gw-rx", args);
    ck_assert_int_ge(g, 0);
    client_up();
}

static void cluster_down(void)
{
    client_down();
    cluster_stop(&cl);
}

static long long resident(void)
{
    return metric_at(cl.gw_port[g], NULL, "meshsig_gateway_rx_buffer_pages_resident");
}

/* Waits (bounded) until the gateway reports exactly `pages` resident pages. */
static void wait_resident(long long pages, const char *what)
{
    long long v = -1;
    for (int i = 0; i < 400; i++) {
        v = resident();
        if (v == pages)
            return;
        nanosleep(&(struct timespec){0, 50 * 1000 * 1000}, NULL);
    }
    ck_abort_msg("%s: %lld resident pages, expected %lld", what, v, pages);
}

/* The next text frame on r with top-level key `key` (pings, pongs and other keys skipped). */
static json_t *raw_expect_key(rws_t *r, const char *key)
{
    for (int i = 0; i < 20; i++) {
        uint8_t *p = NULL, b0 = 0;
        size_t n = 0;
        int op = rws_recv_frame(r, T_MS, &p, &n, &b0);
        ck_assert_msg(op >= 0, "no %s", key);
        json_t *j = op == 1 ? json_loadb((const char *)p, n, 0, NULL) : NULL;
        free(p);
        if (j && json_object_get(j, key))
            return j;
        json_decref(j);
    }
    ck_abort_msg("no %s in 20 frames", key);
    return NULL;
}

/* A signal to bob carrying a long string of c (n bytes): its frame's bytes. */
static uint8_t *signal_frame(char c, size_t n, size_t *len)
{
    char *text = malloc(n + 64);
    ck_assert_ptr_nonnull(text);
    int k = sprintf(text, "{\"signal\":{\"to\":\"bob\",\"payload\":\"");
    memset(text + k, c, n);
    strcpy(text + k + n, "\"}}");
    uint8_t *f = rws_frame(0x80 | 1, 1, text, strlen(text), len);
    free(text);
    ck_assert_ptr_nonnull(f);
    return f;
}

/* bob's next signal is from alice with n bytes of c. */
static void bob_gets(wsc_t *bob, char c, size_t n)
{
    json_t *j = expect_key(bob, "signal");
    const char *p = str_at(j, "signal", "payload", NULL);
    ck_assert_ptr_nonnull(p);
    ck_assert_uint_eq(strlen(p), n);
    for (size_t i = 0; i < n; i++)
        ck_assert_msg(p[i] == c, "payload byte %zu is %d, not '%c'", i, p[i], c);
    ck_assert_str_eq(str_at(j, "signal", "from", NULL), "alice");
    json_decref(j);
}

START_TEST(quiet_pages_released_frames_kept_whole)
{
    rws_t *alice = rws_connect(cl.gw_port[g], "13", "meshsig.v1.json", NULL, T_MS);
    ck_assert_ptr_nonnull(alice);
    ck_assert_int_eq(alice->status, 101);
    const char hello[] = "{\"id\":\"h\",\"hello\":{\"namespace\":\"rx\",\"peerId\":\"alice\"}}";
    ck_assert_int_eq(rws_send_frame(alice, 0x80 | 1, 1, hello, strlen(hello)), 0);
    json_decref(raw_expect_key(alice, "welcome"));
    wsc_t *bob = join_as(cl.gw_port[g], "rx", "bob");
    expect_connect(bob, "alice", 0);
    json_decref(raw_expect_key(alice, "topology"));
    wsc_t *fill[FILLERS];
    for (int i = 0; i < FILLERS; i++) {
        char ns[16];
        snprintf(ns, sizeof(ns), "rxf%d", i);
        fill[i] = join_as(cl.gw_port[g], ns, "f");
    }
    ck_assert_int_eq(metric_at(cl.gw_port[g], NULL, "meshsig_gateway_rx_buffers"), 2 + FILLERS);

    /* Nobody speaks: every page goes back. */
    wait_resident(0, "all quiet");
    ck_assert_int_ge(
        metric_at(cl.gw_port[g], NULL, "meshsig_gateway_rx_buffer_pages_released_total"), 4);

    size_t n1 = 0;
    uint8_t *m1 = signal_frame('a', 700, &n1);

    /* One write: a whole signal into alice's page handed back (touched after a quiet spell:
     * it may go at the next sweep; the signal must arrive whole) and the first half of a
     * WebSocket ping, whose payload lws gathers in alice's receive buffer byte by byte until
     * the frame ends. */
    uint8_t ping[100];
    for (size_t i = 0; i < sizeof(ping); i++)
        ping[i] = (uint8_t)('A' + i % 26);
    size_t np = 0;
    uint8_t *pf = rws_frame(0x80 | 9, 1, ping, sizeof(ping), &np);
    ck_assert_ptr_nonnull(pf);
    size_t half = np / 2;
    uint8_t *both = malloc(n1 + half);
    ck_assert_ptr_nonnull(both);
    memcpy(both, m1, n1);
    memcpy(both + n1, pf, half);
    long long r0 = metric_at(cl.gw_port[g], NULL, "meshsig_gateway_rx_buffer_pages_released_total");
    ck_assert_int_eq(rws_write(alice, both, n1 + half), 0);
    bob_gets(bob, 'a', 700);
    /* Then the last filler (page 3) speaks; once a page has gone back after that, the sweep
     * has looked at alice's page while she was inside the ping, and must have kept it. */
    send_json(fill[FILLERS - 1], "{\"id\":\"p\",\"ping\":{}}");
    json_decref(expect_key(fill[FILLERS - 1], "pong"));
    long long r = r0;
    for (int i = 0; i < 400 && r < r0 + 1; i++) {
        nanosleep(&(struct timespec){0, 50 * 1000 * 1000}, NULL);
        r = metric_at(cl.gw_port[g], NULL, "meshsig_gateway_rx_buffer_pages_released_total");
    }
    ck_assert_int_ge(r, r0 + 1);
    ck_assert_int_eq(rws_write(alice, pf + half, np - half), 0);
    for (int i = 0;; i++) {
        ck_assert_int_lt(i, 20);
        uint8_t *p = NULL, b0 = 0;
        size_t n = 0;
        int op = rws_recv_frame(alice, T_MS, &p, &n, &b0);
        ck_assert_int_ge(op, 0);
        if (op != 10) {
            free(p);
            continue;
        }
        ck_assert_uint_eq(n, sizeof(ping));
        ck_assert_msg(!memcmp(p, ping, n), "the pong's payload differs from the ping's");
        free(p);
        break;
    }

    /* A text frame in two writes arrives whole too. */
    size_t n2 = 0;
    uint8_t *m2 = signal_frame('b', 900, &n2);
    ck_assert_int_eq(rws_write(alice, m2, n2 / 2), 0);
    ck_assert_int_eq(rws_write(alice, m2 + n2 / 2, n2 - n2 / 2), 0);
    bob_gets(bob, 'b', 900);

    free(both);
    free(pf);
    free(m1);
    free(m2);
    for (int i = 0; i < FILLERS; i++)
        wsc_free(fill[i]);
    wsc_free(bob);
    rws_free(alice);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("rxslab");
    TCase *tc = tcase_create("core");
    tcase_add_checked_fixture(tc, cluster_up, cluster_down);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, quiet_pages_released_frames_kept_whole);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
