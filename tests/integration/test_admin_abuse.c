/* SPDX-License-Identifier: Apache-2.0 */
/* Slow and many clients on the coordinator's admin port (admin_conn.c): a request trickled a
 * byte at a time is cut at the whole-request deadline (evhttp's idle timeout starts again at
 * every byte, so before it was never cut), one connection past --admin-max-connections takes
 * the place of the oldest with no whole request yet (a trickler), so a legitimate request is
 * answered at once all along, beside tricklers under the cap and with the cap full of them; it
 * is closed at once unanswered and counted when every open connection is idle after an answer.
 * A keep-alive client that asks every few hundred ms (the admin page polls) is not cut.
 *
 * One NATS node and one coordinator with a cap of 8 and a deadline of 2 s. The tricklers are
 * raw sockets of this process; every wait is bounded and waits on the socket (poll). */
#include <check.h>
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>

#include "cluster.h"
#include "testutil.h"

#define CAP 8
#define DEADLINE_MS 2000
#define PACE_MS 300 /* a trickler's byte every PACE_MS: far below evhttp's 10 s idle timeout */

static cluster_t cl;
static const char *const coord_args[] = {"--admin-max-connections", "8",
                                         "--admin-request-timeout-ms", "2000", NULL};

static void cluster_up(void)
{
    signal(SIGPIPE, SIG_IGN);
    ck_assert_int_eq(cluster_start_args(&cl, NULL, coord_args), 0);
}

static void cluster_down(void)
{
    cluster_stop(&cl);
}

static int dial(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    ck_assert_int_ge(fd, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)cl.admin_port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ck_assert_int_eq(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    return fd;
}

static void send_all(int fd, const char *s)
{
    size_t n = strlen(s);
    ck_assert_int_eq(send(fd, s, n, MSG_NOSIGNAL), (ssize_t)n);
}

/* Waits up to ms for the socket to be readable and reads; returns what recv returned (0: EOF,
 * -2: nothing within ms). A reset counts as EOF. */
static ssize_t recv_within(int fd, char *buf, size_t cap, int ms)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    int r = poll(&p, 1, ms);
    ck_assert_int_ge(r, 0);
    if (r == 0)
        return -2;
    ssize_t n = recv(fd, buf, cap, 0);
    return n < 0 && errno == ECONNRESET ? 0 : n;
}

/* A trickler: a request line and the start of a header, then one byte every PACE_MS. */
static int trickler(void)
{
    int fd = dial();
    send_all(fd, "GET /healthz HTTP/1.1\r\nHost: a\r\nX-Slow: ");
    return fd;
}

/* Sends each open trickler its next byte, every PACE_MS, until the coordinator closes each (its
 * socket reads EOF, or a send fails) or timeout_ms passes; returns how many are still open.
 * closed_ms[i]: when trickler i was closed, in ms from the call. Nothing is ever answered. */
static int trickle(int *fds, int n, long long *closed_ms, long long timeout_ms)
{
    long long t0 = cluster_now_ms(), end = t0 + timeout_ms;
    int open = n;
    while (open > 0 && cluster_now_ms() < end) {
        for (int i = 0; i < n; i++) {
            if (fds[i] < 0)
                continue;
            char buf[256];
            ssize_t r = recv(fds[i], buf, sizeof(buf), MSG_DONTWAIT);
            ck_assert_msg(r <= 0, "trickler %d got an answer: %.*s", i, (int)r, buf);
            int gone = r == 0 || (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK) ||
                       send(fds[i], "x", 1, MSG_NOSIGNAL) != 1;
            if (gone) {
                closed_ms[i] = cluster_now_ms() - t0;
                close(fds[i]);
                fds[i] = -1;
                open--;
            }
        }
        /* The pace; a close shows at the next round. */
        struct pollfd p[CAP + 1];
        int np = 0;
        for (int i = 0; i < n && np < CAP + 1; i++)
            if (fds[i] >= 0)
                p[np++] = (struct pollfd){.fd = fds[i], .events = POLLIN};
        ck_assert_int_ge(poll(p, (nfds_t)np, PACE_MS), 0);
    }
    return open;
}

static long long closed_by(const char *reason)
{
    char series[160];
    snprintf(series, sizeof(series),
             "meshsig_coordinator_admin_connections_closed_total{reason=\"%s\"}", reason);
    return metric_at(cl.admin_port, NULL, series);
}

/* One trickler is cut at the deadline though it sends a byte every PACE_MS. */
START_TEST(trickler_cut_at_deadline)
{
    long long before = closed_by("request_timeout");
    int fd = trickler();
    long long closed = -1;
    int open = trickle(&fd, 1, &closed, DEADLINE_MS * 3);
    if (fd >= 0)
        close(fd);
    ck_assert_msg(open == 0, "a trickler sending a byte every %d ms was still open after %d ms",
                  PACE_MS, DEADLINE_MS * 3);
    printf("admin trickler closed after %lld ms (deadline %d ms)\n", closed, DEADLINE_MS);
    fflush(stdout);
    ck_assert_msg(closed >= DEADLINE_MS - PACE_MS, "closed after %lld ms, before the deadline",
                  closed);
    ck_assert_int_eq(closed_by("request_timeout"), before + 1);
}
END_TEST

/* GET path on the open connection fd (keep-alive); returns the body (caller frees) of a 200
 * answer read whole, by its Content-Length. */
static char *ka_get(int fd, const char *path)
{
    char req[256];
    snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: a\r\n\r\n", path);
    send_all(fd, req);
    size_t cap = 1 << 20, got = 0;
    char *buf = malloc(cap);
    ck_assert_ptr_nonnull(buf);
    buf[0] = '\0';
    const char *end;
    while (!(end = strstr(buf, "\r\n\r\n"))) {
        ssize_t n = recv_within(fd, buf + got, cap - 1 - got, T_MS);
        ck_assert_msg(n > 0, "keep-alive GET %s: %s", path, n == 0 ? "closed" : "no answer");
        got += (size_t)n;
        buf[got] = '\0';
        ck_assert_uint_lt(got, cap - 1);
    }
    ck_assert_msg(!strncmp(buf, "HTTP/1.1 200", 12), "GET %s: %s", path, buf);
    const char *cl = strcasestr(buf, "\r\nContent-Length:");
    ck_assert_msg(cl && cl < end, "GET %s: no Content-Length: %s", path, buf);
    size_t head = (size_t)(end + 4 - buf), len = strtoul(cl + 17, NULL, 10);
    ck_assert_uint_lt(head + len, cap);
    while (got < head + len) {
        ssize_t n = recv_within(fd, buf + got, head + len - got, T_MS);
        ck_assert_msg(n > 0, "keep-alive GET %s: the body %s", path, n == 0 ? "closed" : "late");
        got += (size_t)n;
    }
    buf[head + len] = '\0';
    memmove(buf, buf + head, len + 1);
    return buf;
}

/* One keep-alive request on a new connection, answered; the connection stays open, idle
 * between requests. */
static int keepalive_answered(void)
{
    int fd = dial();
    char *body = ka_get(fd, "/healthz");
    ck_assert_str_eq(body, "ok\n");
    free(body);
    return fd;
}

/* closed_by, asked on the open connection fd. */
static long long closed_by_on(int fd, const char *reason)
{
    char pat[160];
    snprintf(pat, sizeof(pat),
             "\nmeshsig_coordinator_admin_connections_closed_total{reason=\"%s\"} ", reason);
    char *body = ka_get(fd, "/metrics");
    const char *p = strstr(body, pat);
    ck_assert_msg(p != NULL, "no %s in /metrics", pat + 1);
    long long v = strtoll(p + strlen(pat), NULL, 10);
    free(body);
    return v;
}

/* CAP - 1 tricklers: a request is answered at once beside them. The CAP-th fills the cap: a
 * request on one more connection is still answered at once, the oldest trickler closed
 * (unanswered) to make room, and counted; the deadline closes the others. Before, the one more
 * was closed unanswered, and every admin client (the /metrics scraper, /healthz) waited for the
 * deadline. */
START_TEST(tricklers_fill_the_cap)
{
    long long evicted0 = closed_by("evicted"), refused0 = closed_by("refused");
    long long cut0 = closed_by("request_timeout");
    int fds[CAP];
    long long closed[CAP];
    long long t0 = cluster_now_ms();
    for (int i = 0; i < CAP - 1; i++)
        fds[i] = trickler();
    char *body = NULL;
    long long t = cluster_now_ms();
    ck_assert_int_eq(http_request(cl.admin_port, "GET", "/healthz", NULL, NULL, &body), 200);
    free(body);
    long long beside = cluster_now_ms() - t;
    fds[CAP - 1] = trickler();
    /* The cap is full of tricklers: /healthz on one more connection is answered at once. */
    t = cluster_now_ms();
    ck_assert_int_eq(http_request(cl.admin_port, "GET", "/healthz", NULL, NULL, &body), 200);
    free(body);
    long long full = cluster_now_ms() - t;
    ck_assert_msg(cluster_now_ms() - t0 < DEADLINE_MS - PACE_MS,
                  "too slow to tell the eviction from the deadline");
    /* The oldest trickler was closed for it, unanswered (trickle asserts no answer). */
    char buf[256];
    ck_assert_int_eq(recv_within(fds[0], buf, sizeof(buf), DEADLINE_MS / 2), 0);
    long long evicted_in = cluster_now_ms() - t;
    close(fds[0]);
    fds[0] = -1;
    int open = trickle(fds + 1, CAP - 1, closed + 1, DEADLINE_MS * 3);
    for (int i = 1; i < CAP; i++)
        if (fds[i] >= 0)
            close(fds[i]);
    ck_assert_msg(open == 0, "%d tricklers still open after %d ms", open, DEADLINE_MS * 3);
    ck_assert_int_eq(closed_by("evicted"), evicted0 + 1);
    ck_assert_int_eq(closed_by("refused"), refused0);
    ck_assert_int_eq(closed_by("request_timeout"), cut0 + CAP - 1);
    printf("admin cap: answered in %lld ms beside %d tricklers, in %lld ms with the cap full of "
           "them (the oldest closed within %lld ms)\n",
           beside, CAP - 1, full, evicted_in);
    fflush(stdout);
    ck_assert_msg(beside < DEADLINE_MS / 2, "answered in %lld ms beside the tricklers", beside);
    ck_assert_msg(full < DEADLINE_MS / 2, "answered in %lld ms with the cap full", full);
}
END_TEST

/* CAP - 1 idle keep-alive connections (each answered once) and one trickler: one more is
 * answered, the trickler closed for it. With the cap full of connections idle after an answer,
 * one more is closed at once, unanswered, and counted as refused: they are left alone. The
 * counters are read on a held connection (a new one would be refused). */
START_TEST(keepalives_fill_the_cap)
{
    long long evicted0 = closed_by("evicted"), refused0 = closed_by("refused");
    int fds[CAP];
    for (int i = 0; i < CAP - 1; i++)
        fds[i] = keepalive_answered();
    int slow = trickler();
    long long t0 = cluster_now_ms();
    fds[CAP - 1] = keepalive_answered(); /* one more: answered, the trickler goes */
    char buf[256];
    ck_assert_int_eq(recv_within(slow, buf, sizeof(buf), DEADLINE_MS / 2), 0);
    close(slow);
    /* The cap is full of idle keep-alive connections: one more is closed unanswered. */
    int extra = dial();
    send_all(extra, "GET /healthz HTTP/1.0\r\n\r\n");
    ssize_t n = recv_within(extra, buf, sizeof(buf), DEADLINE_MS / 2);
    close(extra);
    ck_assert_msg(n == 0, "a connection over a cap of idle keep-alives: %zd bytes (%.*s)", n,
                  n > 0 ? (int)n : 0, buf);
    ck_assert_msg(cluster_now_ms() - t0 < DEADLINE_MS - PACE_MS,
                  "too slow to tell the cap from the deadline");
    ck_assert_int_eq(closed_by_on(fds[0], "evicted"), evicted0 + 1);
    ck_assert_int_eq(closed_by_on(fds[0], "refused"), refused0 + 1);
    for (int i = 1; i < CAP; i++) /* every keep-alive connection is still open */
        ck_assert_int_eq(recv_within(fds[i], buf, sizeof(buf), 0), -2);
    for (int i = 0; i < CAP; i++)
        close(fds[i]);
}
END_TEST

/* A keep-alive client asking every PACE_MS for twice the deadline: each answer starts the
 * deadline again (the admin page polls on one connection). */
START_TEST(keepalive_poller_not_cut)
{
    long long cut0 = closed_by("request_timeout");
    int fd = dial();
    int answers = 0;
    for (long long end = cluster_now_ms() + DEADLINE_MS * 2; cluster_now_ms() < end;) {
        send_all(fd, "GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n");
        char buf[512] = "";
        size_t got = 0;
        while (!strstr(buf, "\r\n\r\nok\n")) { /* the head and the 3-byte body */
            ssize_t n = recv_within(fd, buf + got, sizeof(buf) - 1 - got, T_MS);
            ck_assert_msg(n > 0, "keep-alive request %d: %s", answers,
                          n == 0 ? "closed" : "no answer");
            got += (size_t)n;
            buf[got] = '\0';
            ck_assert_uint_lt(got, sizeof(buf) - 1);
        }
        ck_assert_msg(!strncmp(buf, "HTTP/1.1 200", 12), "answer %d: %s", answers, buf);
        answers++;
        ck_assert_int_eq(recv_within(fd, buf, sizeof(buf), PACE_MS), -2); /* the pace; open */
    }
    close(fd);
    ck_assert_int_ge(answers, 4);
    ck_assert_int_eq(closed_by("request_timeout"), cut0);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("admin_abuse");
    TCase *tc = tcase_create("admin");
    tcase_add_unchecked_fixture(tc, cluster_up, cluster_down);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, trickler_cut_at_deadline);
    tcase_add_test(tc, tricklers_fill_the_cap);
    tcase_add_test(tc, keepalives_fill_the_cap);
    tcase_add_test(tc, keepalive_poller_not_cut);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
