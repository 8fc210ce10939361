/* SPDX-License-Identifier: Apache-2.0 */
/* Per-client-address limits through real processes (gateway/addrlimit.h): handshakes and
 * sessions per address, counts given back on close, X-Forwarded-For read from a trusted proxy
 * only. Clients bind 127.0.0.2, .3 and .4 (distinct loopback addresses on Linux); 127.0.0.1
 * (this test's /metrics requests) is the one exempt address.
 *
 * The same again with the gateway listening on [::ffff:127.0.0.1] (an IPv6 socket: its IPv4
 * peers arrive as IPv4-mapped addresses, as on a dual-stack [::] listener), where the IPv4
 * lists and counts must still apply; and on [::1] with an IPv6 client, ::1 counted (not
 * exempt). */
#include <arpa/inet.h>
#include <check.h>
#include <netinet/in.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cluster.h"
#include "rawws.h"
#include "testutil.h"

static cluster_t cl;
static int port;
static int seq; /* namespaces (with the pid of the test's process), one per session */

#define HS_PER_IP 2
#define SESS_PER_IP 2
#define PROXY "127.0.0.4"

static long long mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static double metric(const char *name, const char *labels)
{
    char *body = NULL;
    double v = -1;
    if (http_request(port, "GET", "/metrics", NULL, NULL, &body) == 200 && body) {
        char want[256];
        snprintf(want, sizeof(want), "\n%s%s ", name, labels ? labels : "");
        char *p = strstr(body, want);
        if (p)
            v = strtod(p + strlen(want), NULL);
    }
    free(body);
    return v;
}

/* Waits (bounded) until the metric reads want; fails the test otherwise. */
static void await_metric(const char *name, const char *labels, double want)
{
    double v = -1;
    for (long long end = mono_ms() + 10000; mono_ms() < end; usleep(20000))
        if ((v = metric(name, labels)) == want)
            return;
    ck_abort_msg("%s%s is %g, not %g, after 10 s", name, labels ? labels : "", v, want);
}

static void gateway_at(const char *host)
{
    ck_assert_int_eq(cluster_start(&cl, NULL), 0);
    char hs[16], sess[16];
    snprintf(hs, sizeof(hs), "%d", HS_PER_IP);
    snprintf(sess, sizeof(sess), "%d", SESS_PER_IP);
    const char *args[] = {"--insecure-dev",
                          "--per-ip-exempt",
                          "127.0.0.1/32",
                          "--trusted-proxies",
                          PROXY "/32",
                          "--max-handshakes-per-ip",
                          hs,
                          "--max-sessions-per-ip",
                          sess,
                          "--handshake-timeout-s",
                          "30",
                          NULL};
    ck_assert_int_eq(cluster_add_gateway_at(&cl, "gw-addr", host, args), 0);
    port = cl.gw_port[0];
}

static void gateway_up(void)
{
    gateway_at("127.0.0.1");
}

static void gateway_up_mapped(void)
{
    gateway_at("[::ffff:127.0.0.1]");
}

static void gateway_up_v6(void)
{
    gateway_at("[::1]");
}

static void gateway_down(void)
{
    cluster_stop(&cl);
}

/* Every test starts and ends with nothing counted. */
static void nothing_counted(void)
{
    await_metric("meshsig_gateway_client_addresses", NULL, 0);
}

/* The next text frame, as JSON (caller decrefs); fails on anything else. */
static json_t *next_json(rws_t *c)
{
    uint8_t *payload = NULL, b0 = 0;
    size_t len = 0;
    ck_assert_int_eq(rws_recv_frame(c, T_MS, &payload, &len, &b0), 1);
    json_t *j = json_loads((const char *)payload, 0, NULL);
    free(payload);
    ck_assert_ptr_nonnull(j);
    return j;
}

/* A WebSocket session from src (with extra header lines, may be NULL) that says hello and is
 * welcomed. */
static rws_t *join_from(const char *src, const char *extra)
{
    rws_t *c = rws_connect_from(src, port, "/ws", "13", "meshsig.v1.json", extra, NULL, 0, T_MS);
    ck_assert_msg(c != NULL, "no upgrade answer for %s", src);
    ck_assert_int_eq(c->status, 101);
    char hello[160];
    int n = snprintf(hello, sizeof(hello),
                     "{\"id\":\"h\",\"hello\":{\"namespace\":\"addr-%d-%d\",\"peerId\":\"p\"}}",
                     (int)getpid(), seq++);
    ck_assert_int_eq(rws_send_frame(c, RWS_FIN | 1, 1, hello, (size_t)n), 0);
    json_t *j = next_json(c);
    ck_assert_msg(json_object_get(j, "welcome") != NULL, "%s (%s) not welcomed: %s", src,
                  extra ? extra : "", str_at(j, "error", "message", NULL));
    json_decref(j);
    return c;
}

/* A WebSocket session from src to path is upgraded, told LIMIT_REACHED naming
 * --max-sessions-per-ip and closed with 1013. */
static void session_refused(const char *src, const char *path, const char *extra)
{
    rws_t *c = rws_connect_from(src, port, path, "13", "meshsig.v1.json", extra, NULL, 0, T_MS);
    ck_assert_ptr_nonnull(c);
    ck_assert_int_eq(c->status, 101);
    json_t *j = next_json(c);
    ck_assert_str_eq(str_at(j, "error", "code", NULL), "LIMIT_REACHED");
    ck_assert_ptr_nonnull(strstr(str_at(j, "error", "message", NULL), "--max-sessions-per-ip"));
    json_decref(j);
    ck_assert_int_eq(rws_wait_close(c, T_MS), 1013);
    rws_free(c);
}

/* A connection from src is answered 503 naming --max-handshakes-per-ip and closed, before it
 * sent anything. */
static void connection_refused(const char *src)
{
    int fd = rws_tcp_from(src, port);
    ck_assert_int_ge(fd, 0);
    struct timeval tv = {.tv_sec = T_MS / 1000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    char buf[1024];
    size_t len = 0;
    for (;;) {
        ssize_t n = read(fd, buf + len, sizeof(buf) - 1 - len);
        if (n <= 0)
            break; /* EOF: the gateway closed it (SO_RCVTIMEO below bounds the wait) */
        len += (size_t)n;
    }
    buf[len] = '\0';
    close(fd);
    ck_assert_msg(!strncmp(buf, "HTTP/1.1 503 ", 13), "not refused: '%s'", buf);
    ck_assert_ptr_nonnull(strstr(buf, "--max-handshakes-per-ip"));
}

/* A TCP connection from src that sends part of a request line and holds its handshake. */
static int hold_handshake(const char *src)
{
    int fd = rws_tcp_from(src, port);
    ck_assert_int_ge(fd, 0);
    struct timeval tv = {.tv_sec = T_MS / 1000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    ck_assert_int_eq(write(fd, "GET /ws HT", 10), 10);
    return fd;
}

START_TEST(handshakes_per_address)
{
    nothing_counted();
    double refused = metric("meshsig_gateway_cap_refused_total", "{cap=\"handshakes_per_ip\"}");
    ck_assert_double_ge(refused, 0);
    int held[HS_PER_IP];
    for (int i = 0; i < HS_PER_IP; i++)
        held[i] = hold_handshake("127.0.0.2");
    await_metric("meshsig_gateway_client_addresses", NULL, 1);
    /* One more from that address is refused at once (its request never read)... */
    connection_refused("127.0.0.2");
    ck_assert_double_eq(metric("meshsig_gateway_cap_refused_total", "{cap=\"handshakes_per_ip\"}"),
                        refused + 1);
    /* ...while another address still gets in. */
    rws_t *other = join_from("127.0.0.3", NULL);
    /* The held handshakes closed, their address is forgotten and welcome again. */
    for (int i = 0; i < HS_PER_IP; i++)
        close(held[i]);
    await_metric("meshsig_gateway_client_addresses", NULL, 1); /* 127.0.0.3's session */
    rws_free(join_from("127.0.0.2", NULL));
    rws_free(other);
    nothing_counted();
}
END_TEST

/* Clients over the cap that send their whole request at once, as a browser does, before the
 * gateway refuses them: each reads the whole 503 and then a clean end (EOF), not a reset. The
 * gateway answered at accept without reading, and closing with the request unread made the
 * kernel reset the connection: all 20 here got ECONNRESET after the answer (on stacks that
 * drop received data on a reset, or a client still writing, instead of it). */
START_TEST(refused_after_request_reads_503)
{
    nothing_counted();
    int held[HS_PER_IP];
    for (int i = 0; i < HS_PER_IP; i++)
        held[i] = hold_handshake("127.0.0.2");
    await_metric("meshsig_gateway_client_addresses", NULL, 1);
    static const char req[] = "GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                              "Connection: Upgrade\r\nSec-WebSocket-Key: "
                              "dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
    /* all connected and their requests written first: most are in the gateway's backlog,
     * request received, when it gets to them */
    enum { N = 20 };
    int fds[N];
    for (int k = 0; k < N; k++) {
        fds[k] = rws_tcp_from("127.0.0.2", port);
        ck_assert_int_ge(fds[k], 0);
        ck_assert_int_eq(write(fds[k], req, sizeof(req) - 1), (ssize_t)sizeof(req) - 1);
    }
    int resets = 0, short_answers = 0;
    for (int k = 0; k < N; k++) {
        struct timeval tv = {.tv_sec = T_MS / 1000};
        setsockopt(fds[k], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        char buf[1024];
        size_t len = 0;
        ssize_t n;
        while ((n = read(fds[k], buf + len, sizeof(buf) - 1 - len)) > 0)
            len += (size_t)n;
        buf[len] = '\0';
        close(fds[k]);
        const char *body = strstr(buf, "\r\n\r\n");
        if (strncmp(buf, "HTTP/1.1 503 ", 13) || !body || strlen(body + 4) != 65)
            short_answers++;
        if (n < 0)
            resets++;
    }
    for (int i = 0; i < HS_PER_IP; i++)
        close(held[i]);
    ck_assert_msg(resets == 0 && short_answers == 0,
                  "of %d refused clients that sent their request first, %d saw a reset and %d "
                  "not the whole 503",
                  N, resets, short_answers);
    nothing_counted();
}
END_TEST

START_TEST(sessions_per_address)
{
    nothing_counted();
    double refused = metric("meshsig_gateway_cap_refused_total", "{cap=\"sessions_per_ip\"}");
    rws_t *mine[SESS_PER_IP];
    for (int i = 0; i < SESS_PER_IP; i++)
        mine[i] = join_from("127.0.0.2", NULL);
    session_refused("127.0.0.2", "/ws", NULL);
    /* The PeerJS endpoint is the same port and the same sessions. */
    rws_t *pj = rws_connect_from("127.0.0.2", port, "/peerjs?key=peerjs&id=pj-over&token=t", "13",
                                 NULL, NULL, NULL, 0, T_MS);
    ck_assert_ptr_nonnull(pj);
    ck_assert_int_eq(pj->status, 101);
    json_t *j = next_json(pj); /* in PeerJS's protocol, as its server's concurrent_limit */
    ck_assert_str_eq(str_at(j, "type", NULL), "ERROR");
    ck_assert_ptr_nonnull(strstr(str_at(j, "payload", "msg", NULL), "--max-sessions-per-ip"));
    json_decref(j);
    ck_assert_int_ge(rws_wait_close(pj, T_MS), 0);
    rws_free(pj);
    ck_assert_double_eq(metric("meshsig_gateway_cap_refused_total", "{cap=\"sessions_per_ip\"}"),
                        refused + 2);
    rws_t *other = join_from("127.0.0.3", NULL);
    /* Each of those still answers. */
    for (int i = 0; i < SESS_PER_IP; i++) {
        static const char ping[] = "{\"id\":\"p\",\"ping\":{}}";
        ck_assert_int_eq(rws_send_frame(mine[i], RWS_FIN | 1, 1, ping, sizeof(ping) - 1), 0);
        json_t *j = next_json(mine[i]);
        ck_assert_ptr_nonnull(json_object_get(j, "pong"));
        json_decref(j);
    }
    /* A place freed is a place taken. */
    rws_free(mine[0]);
    await_metric("meshsig_gateway_sessions", NULL, SESS_PER_IP);
    mine[0] = join_from("127.0.0.2", NULL);
    for (int i = 0; i < SESS_PER_IP; i++)
        rws_free(mine[i]);
    rws_free(other);
    nothing_counted();
}
END_TEST

START_TEST(forwarded_for_from_trusted_proxy_only)
{
    nothing_counted();
    /* From any other peer X-Forwarded-For is not read: naming other clients does not get a
     * peer more sessions. */
    rws_t *u[SESS_PER_IP];
    for (int i = 0; i < SESS_PER_IP; i++) {
        char xff[64];
        snprintf(xff, sizeof(xff), "X-Forwarded-For: 198.51.100.%d\r\n", 10 + i);
        u[i] = join_from("127.0.0.2", xff);
    }
    session_refused("127.0.0.2", "/ws", "X-Forwarded-For: 198.51.100.20\r\n");
    await_metric("meshsig_gateway_client_addresses", NULL, 1);

    /* The trusted proxy's own connections are not counted as handshakes... */
    int held[HS_PER_IP + 1];
    for (int i = 0; i < HS_PER_IP + 1; i++)
        held[i] = hold_handshake(PROXY);
    /* ...its sessions count against the last address it forwarded for (what comes before it
     * the client wrote)... */
    rws_t *p[4];
    p[0] = join_from(PROXY, "X-Forwarded-For: 198.51.100.1\r\n");
    p[1] = join_from(PROXY, "X-Forwarded-For: 203.0.113.9, 198.51.100.1\r\n");
    session_refused(PROXY, "/ws", "X-Forwarded-For: 198.51.100.1\r\n");
    p[2] = join_from(PROXY, "X-Forwarded-For: 198.51.100.1, 198.51.100.2\r\n");
    /* ...or, when it names none, against the proxy itself. */
    p[3] = join_from(PROXY, NULL);
    /* 127.0.0.2, 198.51.100.1, 198.51.100.2 and the proxy. */
    await_metric("meshsig_gateway_client_addresses", NULL, 4);
    for (int i = 0; i < HS_PER_IP + 1; i++)
        close(held[i]);
    for (int i = 0; i < 4; i++)
        rws_free(p[i]);
    for (int i = 0; i < SESS_PER_IP; i++)
        rws_free(u[i]);
    nothing_counted();
}
END_TEST

/* A session from src once its address has room again (what closed before this was given
 * back): an answer 503 or LIMIT_REACHED is tried again, for at most 10 s. */
static rws_t *join_when_room(const char *src)
{
    for (long long end = mono_ms() + 10000; mono_ms() < end; usleep(20000)) {
        rws_t *c = rws_connect_from(src, port, "/ws", "13", "meshsig.v1.json", NULL, NULL, 0, T_MS);
        if (c && c->status == 101) {
            char hello[160];
            int n = snprintf(hello, sizeof(hello),
                             "{\"id\":\"h\",\"hello\":{\"namespace\":\"addr-%d-%d\",\"peerId\":"
                             "\"p\"}}",
                             (int)getpid(), seq++);
            ck_assert_int_eq(rws_send_frame(c, RWS_FIN | 1, 1, hello, (size_t)n), 0);
            json_t *j = next_json(c);
            int welcomed = json_object_get(j, "welcome") != NULL;
            json_decref(j);
            if (welcomed)
                return c;
        }
        if (c)
            rws_free(c);
    }
    ck_abort_msg("%s found no room in 10 s", src);
    return NULL;
}

/* ::1 (a client over IPv6) is counted like any address: handshakes, then sessions. */
START_TEST(ipv6_client_counted)
{
    int held[HS_PER_IP];
    for (int i = 0; i < HS_PER_IP; i++)
        held[i] = hold_handshake("::1");
    connection_refused("::1");
    for (int i = 0; i < HS_PER_IP; i++)
        close(held[i]);
    rws_t *mine[SESS_PER_IP];
    mine[0] = join_when_room("::1");
    for (int i = 1; i < SESS_PER_IP; i++)
        mine[i] = join_from("::1", NULL);
    session_refused("::1", "/ws", NULL);
    rws_free(mine[0]);
    mine[0] = join_when_room("::1");
    for (int i = 0; i < SESS_PER_IP; i++)
        rws_free(mine[i]);
}
END_TEST

/* Whether an IPv6 socket binds addr here (no IPv6 on the host, or net.ipv6.bindv6only=1 for a
 * mapped address: those cases are skipped, and say so). */
static int binds_v6(const char *addr)
{
    struct sockaddr_in6 a = {.sin6_family = AF_INET6};
    int fd = socket(AF_INET6, SOCK_STREAM, 0);
    int ok = fd >= 0 && inet_pton(AF_INET6, addr, &a.sin6_addr) == 1 &&
             bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
    if (fd >= 0)
        close(fd);
    if (!ok)
        printf("addrlimit: cannot bind [%s] here; its cases are skipped\n", addr);
    return ok;
}

int main(void)
{
    Suite *s = suite_create("addrlimit");
    TCase *tc = tcase_create("gateway");
    tcase_add_unchecked_fixture(tc, gateway_up, gateway_down);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, handshakes_per_address);
    tcase_add_test(tc, refused_after_request_reads_503);
    tcase_add_test(tc, sessions_per_address);
    tcase_add_test(tc, forwarded_for_from_trusted_proxy_only);
    suite_add_tcase(s, tc);
    /* IPv4 clients seen as ::ffff:a.b.c.d count as a.b.c.d; the exempt 127.0.0.1/32 and the
     * trusted 127.0.0.4/32 apply to them. */
    if (binds_v6("::ffff:127.0.0.1")) {
        TCase *mapped = tcase_create("mapped");
        tcase_add_unchecked_fixture(mapped, gateway_up_mapped, gateway_down);
        tcase_set_timeout(mapped, 60);
        tcase_add_test(mapped, handshakes_per_address);
        tcase_add_test(mapped, sessions_per_address);
        tcase_add_test(mapped, forwarded_for_from_trusted_proxy_only);
        suite_add_tcase(s, mapped);
    }
    if (binds_v6("::1")) {
        TCase *v6 = tcase_create("ipv6");
        tcase_add_unchecked_fixture(v6, gateway_up_v6, gateway_down);
        tcase_set_timeout(v6, 60);
        tcase_add_test(v6, ipv6_client_counted);
        suite_add_tcase(s, v6);
    }
    return run_suite(s);
}
