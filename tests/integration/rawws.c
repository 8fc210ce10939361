/* SPDX-License-Identifier: Apache-2.0 */
/* A raw-bytes WebSocket client for conformance and abuse tests. */
#include "rawws.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static long long mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Reads more into c->buf before deadline; -1 on EOF, error or timeout. */
static int fill(rws_t *c, long long deadline)
{
    if (c->len == sizeof(c->buf))
        return -1;
    for (;;) {
        long long left = deadline - mono_ms();
        if (left <= 0)
            return -1;
        struct pollfd pfd = {.fd = c->fd, .events = POLLIN};
        int r = poll(&pfd, 1, (int)left);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        ssize_t n = read(c->fd, c->buf + c->len, sizeof(c->buf) - c->len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        c->len += (size_t)n;
        return 0;
    }
}

static int write_all(int fd, const void *p, size_t n)
{
    const uint8_t *b = p;
    while (n) {
        ssize_t w = send(fd, b, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        b += w;
        n -= (size_t)w;
    }
    return 0;
}

rws_t *rws_connect(int port, const char *version, const char *subprotocol, const char *extra,
                   int timeout_ms)
{
    return rws_connect_with(port, version, subprotocol, extra, NULL, 0, timeout_ms);
}

/* From an IPv6 source src to [::1]:port. */
static int tcp6_from(int fd, const char *src, int port)
{
    struct sockaddr_in6 s = {.sin6_family = AF_INET6};
    struct sockaddr_in6 a = {.sin6_family = AF_INET6, .sin6_port = htons((uint16_t)port)};
    a.sin6_addr = in6addr_loopback;
    if (inet_pton(AF_INET6, src, &s.sin6_addr) != 1 ||
        bind(fd, (struct sockaddr *)&s, sizeof(s)) != 0)
        return -1;
    return connect(fd, (struct sockaddr *)&a, sizeof(a));
}

int rws_tcp_from(const char *src, int port)
{
    int v6 = src && strchr(src, ':');
    int fd = socket(v6 ? AF_INET6 : AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    if (v6) {
        if (tcp6_from(fd, src, port) != 0)
            goto fail;
    } else {
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (src) {
            struct sockaddr_in s = {.sin_family = AF_INET};
            if (inet_pton(AF_INET, src, &s.sin_addr) != 1 ||
                bind(fd, (struct sockaddr *)&s, sizeof(s)) != 0)
                goto fail;
        }
        if (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0)
            goto fail;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    return fd;
fail:
    close(fd);
    return -1;
}

rws_t *rws_connect_with(int port, const char *version, const char *subprotocol, const char *extra,
                        const void *after, size_t after_len, int timeout_ms)
{
    return rws_connect_from(NULL, port, "/ws", version, subprotocol, extra, after, after_len,
                            timeout_ms);
}

rws_t *rws_connect_from(const char *src, int port, const char *path, const char *version,
                        const char *subprotocol, const char *extra, const void *after,
                        size_t after_len, int timeout_ms)
{
    rws_t *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    if ((c->fd = rws_tcp_from(src, port)) < 0)
        goto fail;
    char req[4096];
    int n = snprintf(req, sizeof(req),
                     "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                     "%s%s%s%s%s%s\r\n",
                     path, port, version ? "Sec-WebSocket-Version: " : "", version ? version : "",
                     version ? "\r\n" : "", subprotocol ? "Sec-WebSocket-Protocol: " : "",
                     subprotocol ? subprotocol : "", subprotocol ? "\r\n" : "");
    if (extra && n > 0 && (size_t)n + strlen(extra) < sizeof(req)) {
        /* extra lines go before the blank line that ends the request */
        n -= 2;
        n += snprintf(req + n, sizeof(req) - (size_t)n, "%s\r\n", extra);
    }
    if (n <= 0 || (size_t)n + after_len >= sizeof(req))
        goto fail;
    if (after_len) {
        memcpy(req + n, after, after_len);
        n += (int)after_len;
    }
    if (write_all(c->fd, req, (size_t)n) != 0)
        goto fail;
    long long deadline = mono_ms() + timeout_ms;
    for (;;) {
        uint8_t *e = memmem(c->buf, c->len, "\r\n\r\n", 4);
        if (e) {
            size_t hl = (size_t)(e - c->buf) + 4;
            size_t cp = hl < sizeof(c->head) ? hl : sizeof(c->head) - 1;
            memcpy(c->head, c->buf, cp);
            c->head[cp] = '\0';
            memmove(c->buf, c->buf + hl, c->len - hl);
            c->len -= hl;
            break;
        }
        if (fill(c, deadline) != 0)
            goto fail;
    }
    if (sscanf(c->head, "HTTP/1.%*d %d", &c->status) != 1)
        goto fail;
    return c;
fail:
    rws_free(c);
    return NULL;
}

void rws_free(rws_t *c)
{
    if (!c)
        return;
    if (c->fd >= 0)
        close(c->fd);
    free(c);
}

uint8_t *rws_frame(uint8_t b0, int masked, const void *payload, size_t len, size_t *out_len)
{
    static const uint8_t key[4] = {0x37, 0xfa, 0x21, 0x3d};
    size_t hl = 2;
    uint8_t *f = malloc(len + 14);
    if (!f)
        return NULL;
    f[0] = b0;
    if (len < 126) {
        f[1] = (uint8_t)len;
    } else if (len <= 0xffff) {
        f[1] = 126;
        f[2] = (uint8_t)(len >> 8);
        f[3] = (uint8_t)len;
        hl = 4;
    } else {
        f[1] = 127;
        for (int i = 0; i < 8; i++)
            f[2 + i] = (uint8_t)((uint64_t)len >> (56 - 8 * i));
        hl = 10;
    }
    if (masked) {
        f[1] |= 0x80;
        memcpy(f + hl, key, 4);
        hl += 4;
    }
    const uint8_t *p = payload;
    for (size_t i = 0; i < len; i++)
        f[hl + i] = masked ? p[i] ^ key[i % 4] : p[i];
    *out_len = hl + len;
    return f;
}

int rws_write(rws_t *c, const void *bytes, size_t len)
{
    return write_all(c->fd, bytes, len);
}

int rws_send_frame(rws_t *c, uint8_t b0, int masked, const void *payload, size_t len)
{
    size_t n = 0;
    uint8_t *f = rws_frame(b0, masked, payload, len, &n);
    if (!f)
        return -1;
    int rc = write_all(c->fd, f, n);
    free(f);
    return rc;
}

int rws_recv_frame(rws_t *c, int timeout_ms, uint8_t **payload, size_t *len, uint8_t *b0)
{
    long long deadline = mono_ms() + timeout_ms;
    *payload = NULL;
    *len = 0;
    for (;;) {
        if (c->len >= 2) {
            size_t hl = 2;
            uint64_t pl = c->buf[1] & 0x7f;
            if (pl == 126)
                hl = 4;
            else if (pl == 127)
                hl = 10;
            if (c->buf[1] & 0x80)
                hl += 4;
            if (c->len >= hl) {
                if (pl == 126)
                    pl = (uint64_t)c->buf[2] << 8 | c->buf[3];
                else if (pl == 127) {
                    pl = 0;
                    for (int i = 0; i < 8; i++)
                        pl = pl << 8 | c->buf[2 + i];
                }
                if (pl > sizeof(c->buf) - hl)
                    return -1;
                if (c->len >= hl + pl) {
                    uint8_t *p = malloc(pl + 1);
                    if (!p)
                        return -1;
                    memcpy(p, c->buf + hl, pl);
                    p[pl] = '\0';
                    if (c->buf[1] & 0x80)
                        for (size_t i = 0; i < pl; i++)
                            p[i] ^= c->buf[hl - 4 + i % 4];
                    *b0 = c->buf[0];
                    memmove(c->buf, c->buf + hl + pl, c->len - hl - pl);
                    c->len -= hl + pl;
                    *payload = p;
                    *len = pl;
                    return *b0 & 0x0f;
                }
            }
        }
        if (fill(c, deadline) != 0)
            return -1;
    }
}

int rws_wait_close(rws_t *c, int timeout_ms)
{
    long long deadline = mono_ms() + timeout_ms;
    for (;;) {
        long long left = deadline - mono_ms();
        if (left <= 0)
            return -1;
        uint8_t *p, b0;
        size_t n;
        int op = rws_recv_frame(c, (int)left, &p, &n, &b0);
        if (op < 0)
            return -1;
        if (op == 8) {
            int code = n >= 2 ? p[0] << 8 | p[1] : 0;
            free(p);
            return code;
        }
        free(p);
    }
}

int rws_wait_eof(rws_t *c, int timeout_ms)
{
    long long deadline = mono_ms() + timeout_ms;
    for (;;) {
        c->len = 0;
        long long left = deadline - mono_ms();
        if (left <= 0)
            return 0;
        struct pollfd pfd = {.fd = c->fd, .events = POLLIN};
        if (poll(&pfd, 1, (int)left) <= 0)
            return 0;
        uint8_t tmp[4096];
        ssize_t r = read(c->fd, tmp, sizeof(tmp));
        if (r == 0 || (r < 0 && errno != EINTR && errno != EAGAIN))
            return 1;
    }
}
