/* SPDX-License-Identifier: Apache-2.0 */
/* The load generator: one epoll loop driving many WebSocket clients through one scenario. */
#include "loadgen.h"
#include "ws.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

#define NS_PER_S 1000000000ull
#define MAX_MSG 65536
#define HANDSHAKE_MAX 8192
#define NOTES_MAX 12

enum { C_UNUSED = 0, C_CONNECTING, C_HANDSHAKE, C_OPEN, C_DEAD };

enum { PH_CONNECT, PH_SETTLE, PH_READY, PH_RUN, PH_DRAIN, PH_QUIET, PH_DONE, PH_HOLD };

/* One client. Kept small: tens of thousands of these sit idle. Buffers exist only while
 * something is pending. */
typedef struct {
    int fd;
    uint8_t state;
    uint8_t joined; /* welcome / OPEN received */
    uint8_t ready;  /* may signal its partner: joined, and for meshsig a topology connect */
    uint8_t failed; /* counted as a failed connection attempt */
    uint32_t connects, disconnects;
    uint32_t hb_ms;
    uint64_t hb_due;
    uint64_t tx_seq; /* last sequence number sent */
    uint64_t rx_seq; /* last sequence number received */
    uint8_t *rx;     /* unparsed input */
    uint32_t rx_len, rx_cap;
    uint8_t *tx; /* output the socket did not take yet */
    uint32_t tx_off, tx_len, tx_cap;
    uint8_t *frag; /* a fragmented message being reassembled */
    uint32_t frag_len;
} conn_t;

typedef struct {
    const ms_lg_cfg_t *cfg;
    conn_t *c;
    int ep;
    struct sockaddr_in dst; /* host and --port; port_of() picks each client's port */
    uint64_t key_salt;
    uint64_t rng;
    int phase;
    uint64_t now;

    uint32_t opened, joined, failed, ready;
    uint32_t fail_connect, fail_handshake, fail_closed, fail_timeout, closed_after_join;
    uint64_t t_start, t_connected, t_last_join;
    double cpu_start, cpu_connected;
    int64_t rss_before, rss_after;
    int64_t rss_before_each[MS_LG_MAX_PIDS], rss_after_each[MS_LG_MAX_PIDS];

    uint64_t topo_connect, topo_disconnect, t_last_topo;
    uint64_t late_topo;       /* topology events that arrived during --hold, after the report */
    uint64_t late_topo_other; /* ... of those, about peers that are not ours (probes) */
    uint64_t errors, bad_msgs, reorders;
    uint64_t sent, recv;

    /* traffic phases */
    uint32_t *pairs; /* indices of pairs whose both ends are ready */
    uint32_t npairs;
    uint32_t cursor;
    uint64_t t0, win_start, win_end, drain_end;
    int replying, win_open, win_closed;
    uint64_t win_recv, win_sent;
    double cpu_w0, cpu_w1;
    double cpu_w0_each[MS_LG_MAX_PIDS], cpu_w1_each[MS_LG_MAX_PIDS];
    uint64_t t_w0, t_w1;
    uint64_t sched_sent, max_lag;
    ms_lg_samples_t lat;

    uint64_t t_phase;
    uint64_t next_hb_scan, next_progress;
    uint32_t payload_size;
    int notes;
} lg_t;

static volatile sig_atomic_t got_status, got_stop;

static void on_status_signal(int sig)
{
    (void)sig;
    got_status = 1;
}

static void on_stop_signal(int sig)
{
    (void)sig;
    got_stop = 1;
}

static uint8_t rbuf[1 << 16];
static uint8_t fbuf[MS_LG_WS_MAX_HDR + MAX_MSG];

static void note(lg_t *lg, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void note(lg_t *lg, const char *fmt, ...)
{
    if (lg->notes++ >= NOTES_MAX)
        return;
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "loadgen: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "%s\n", lg->notes == NOTES_MAX ? " (further notes suppressed)" : "");
    va_end(ap);
}

static uint32_t xorshift32(lg_t *lg)
{
    uint64_t x = lg->rng;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    lg->rng = x;
    return (uint32_t)(x >> 16);
}

static uint32_t idx_of(lg_t *lg, conn_t *c)
{
    return (uint32_t)(c - lg->c);
}

static uint32_t partner_of(uint32_t idx)
{
    return idx ^ 1u;
}

/* The peer id of client idx. */
static void peer_name(const lg_t *lg, uint32_t idx, char *buf, size_t cap)
{
    snprintf(buf, cap, "%s%u", lg->cfg->id_prefix, lg->cfg->base + idx);
}

int ms_lg_namespace(const ms_lg_cfg_t *cfg, uint32_t idx, char *buf, size_t cap)
{
    uint32_t g = cfg->base + idx;
    uint32_t group = cfg->scenario == MS_LG_RELAY || cfg->scenario == MS_LG_LATENCY ? 2
                     : cfg->group                                                   ? cfg->group
                     : cfg->scenario == MS_LG_IDLE                                  ? 2
                                                                                    : 0;
    int n;
    if (cfg->n_ns_list && cfg->scenario != MS_LG_RELAY && cfg->scenario != MS_LG_LATENCY) {
        n = snprintf(buf, cap, "%s", cfg->ns_list[g % cfg->n_ns_list]);
    } else if (!group) {
        n = snprintf(buf, cap, "%s", cfg->ns);
    } else {
        uint32_t k = g / group;
        if (cfg->namespaces)
            k %= cfg->namespaces;
        n = snprintf(buf, cap, "%s%u", cfg->ns, k);
    }
    return n < 0 || (size_t)n >= cap ? -1 : n;
}

int ms_lg_own_peer(const ms_lg_cfg_t *cfg, const char *peer, size_t len)
{
    size_t pl = strlen(cfg->id_prefix);
    if (!peer || len <= pl || memcmp(peer, cfg->id_prefix, pl) != 0)
        return 0;
    for (size_t i = pl; i < len; i++)
        if (peer[i] < '0' || peer[i] > '9')
            return 0;
    return 1;
}

/* Which of the n_ports ports client idx connects to. Pairs (relay, latency:
 * clients 2k and 2k+1) always span two ports, and over consecutive pairs
 * every ordered pair of ports comes up equally often: pair k puts its first
 * client on port k mod G and its second offset 1 + (k / G) mod (G - 1)
 * further on. Other scenarios go round-robin. */
static int port_index(const ms_lg_cfg_t *cfg, uint32_t idx)
{
    uint32_t g = (uint32_t)cfg->n_ports;
    if (g <= 1)
        return 0;
    if (cfg->scenario != MS_LG_RELAY && cfg->scenario != MS_LG_LATENCY)
        return (int)(idx % g);
    uint32_t k = idx / 2, a = k % g;
    if (!(idx & 1u))
        return (int)a;
    return (int)((a + 1 + (k / g) % (g - 1)) % g);
}

static int port_of(const ms_lg_cfg_t *cfg, uint32_t idx)
{
    return cfg->n_ports > 1 ? cfg->ports[port_index(cfg, idx)] : cfg->port;
}

static void conn_release(conn_t *c)
{
    free(c->rx);
    free(c->tx);
    free(c->frag);
    c->rx = c->tx = c->frag = NULL;
    c->rx_len = c->rx_cap = c->tx_len = c->tx_off = c->tx_cap = c->frag_len = 0;
}

/* Closes c. Buffers are freed by the caller that is not iterating over them (conn_input or
 * the final cleanup), so this is safe to call from inside a frame handler. */
static void conn_close(lg_t *lg, conn_t *c, uint32_t *fail_counter, const char *why)
{
    if (c->state == C_DEAD || c->state == C_UNUSED)
        return;
    if (!c->joined) {
        if (!c->failed) {
            c->failed = 1;
            lg->failed++;
            if (fail_counter)
                (*fail_counter)++;
        }
    } else {
        lg->closed_after_join++;
    }
    if (why)
        note(lg, "client %u: %s", idx_of(lg, c), why);
    close(c->fd);
    c->fd = -1;
    c->state = C_DEAD;
}

static int buf_append(uint8_t **buf, uint32_t *len, uint32_t *cap, const uint8_t *data, size_t n)
{
    if ((uint64_t)*len + n > (1u << 26))
        return -1;
    if (*len + n > *cap) {
        uint32_t ncap = *cap ? *cap : 1024;
        while (ncap < *len + n)
            ncap *= 2;
        uint8_t *p = realloc(*buf, ncap);
        if (!p)
            return -1;
        *buf = p;
        *cap = ncap;
    }
    memcpy(*buf + *len, data, n);
    *len += (uint32_t)n;
    return 0;
}

static void conn_flush(lg_t *lg, conn_t *c)
{
    while (c->state != C_DEAD && c->tx_off < c->tx_len) {
        ssize_t n = send(c->fd, c->tx + c->tx_off, c->tx_len - c->tx_off, MSG_NOSIGNAL);
        if (n > 0) {
            c->tx_off += (uint32_t)n;
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else if (n < 0 && errno == EAGAIN) {
            return;
        } else {
            conn_close(lg, c, &lg->fail_closed, "send failed");
            return;
        }
    }
    if (c->tx_off == c->tx_len) {
        free(c->tx);
        c->tx = NULL;
        c->tx_off = c->tx_len = c->tx_cap = 0;
    }
}

static int conn_write(lg_t *lg, conn_t *c, const uint8_t *data, size_t len)
{
    if (c->state == C_DEAD)
        return -1;
    if (c->tx_off == c->tx_len) {
        ssize_t n = send(c->fd, data, len, MSG_NOSIGNAL);
        if (n == (ssize_t)len)
            return 0;
        if (n < 0) {
            if (errno != EAGAIN && errno != EINTR) {
                conn_close(lg, c, &lg->fail_closed, "send failed");
                return -1;
            }
            n = 0;
        }
        data += n;
        len -= (size_t)n;
    }
    if (buf_append(&c->tx, &c->tx_len, &c->tx_cap, data, len)) {
        conn_close(lg, c, &lg->fail_closed, "output queue over 64 MiB");
        return -1;
    }
    return 0;
}

static int conn_send(lg_t *lg, conn_t *c, int opcode, const void *msg, size_t len)
{
    if (len > MAX_MSG)
        return -1;
    uint32_t mask = xorshift32(lg);
    size_t h = ms_lg_ws_frame_header(fbuf, opcode, len, mask);
    ms_lg_ws_mask(fbuf + h, msg, len, mask);
    return conn_write(lg, c, fbuf, h + len);
}

static void mark_ready(lg_t *lg, conn_t *c)
{
    if (!c->ready) {
        c->ready = 1;
        lg->ready++;
    }
}

static void send_signal(lg_t *lg, conn_t *from)
{
    char payload[MAX_MSG / 2], msg[MAX_MSG];
    uint32_t idx = idx_of(lg, from);
    uint64_t ts = ms_lg_now_ns();
    int pl = ms_lg_payload(payload, sizeof payload, lg->payload_size, idx, ++from->tx_seq, ts);
    if (pl < 0)
        return;
    char to[64];
    peer_name(lg, partner_of(idx), to, sizeof to);
    int n = lg->cfg->proto->signal(msg, sizeof msg, to, payload, (size_t)pl);
    if (n < 0)
        return;
    if (conn_send(lg, from, MS_LG_OP_TEXT, msg, (size_t)n) == 0) {
        lg->sent++;
        if (ts >= lg->win_start && ts < lg->win_end)
            lg->win_sent++;
    }
}

static void on_signal(lg_t *lg, conn_t *c, const ms_lg_msg_t *m)
{
    uint64_t now = ms_lg_now_ns();
    lg->recv++;
    if (m->seq != c->rx_seq + 1)
        lg->reorders++;
    c->rx_seq = m->seq;
    if (m->src != partner_of(idx_of(lg, c)))
        lg->bad_msgs++;
    if (lg->cfg->scenario == MS_LG_RELAY) {
        if (now >= lg->win_start && now < lg->win_end) {
            lg->win_recv++;
            ms_lg_samples_add(&lg->lat, now - m->ts);
        }
        if (lg->replying)
            send_signal(lg, c);
    } else if (m->ts >= lg->win_start && m->ts < lg->win_end) {
        lg->win_recv++;
        ms_lg_samples_add(&lg->lat, now - m->ts);
    }
}

static void on_message(lg_t *lg, conn_t *c, const uint8_t *msg, size_t len)
{
    const ms_lg_cfg_t *cfg = lg->cfg;
    ms_lg_msg_t m;
    if (cfg->proto->parse((const char *)msg, len, &m)) {
        lg->bad_msgs++;
        note(lg, "client %u: unparsed message: %.*s", idx_of(lg, c), (int)(len > 200 ? 200 : len),
             (const char *)msg);
        return;
    }
    switch (m.ev) {
    case MS_LG_EV_JOINED:
        if (c->joined)
            break;
        c->joined = 1;
        lg->joined++;
        lg->t_last_join = ms_lg_now_ns();
        c->hb_ms = cfg->heartbeat_ms >= 0 ? (uint32_t)cfg->heartbeat_ms
                   : m.heartbeat_ms       ? m.heartbeat_ms
                                          : cfg->proto->default_heartbeat_ms;
        if (c->hb_ms)
            c->hb_due = lg->t_last_join + (uint64_t)(xorshift32(lg) % c->hb_ms) * 1000000ull;
        if (!cfg->proto->hello_on_open)
            mark_ready(lg, c); /* PeerJS has no topology: relay works as soon as both are open */
        break;
    case MS_LG_EV_CONNECT:
        if (lg->phase == PH_HOLD) {
            lg->late_topo++;
            lg->late_topo_other += !ms_lg_own_peer(cfg, m.peer, m.peer_len);
        }
        c->connects++;
        lg->topo_connect++;
        lg->t_last_topo = ms_lg_now_ns();
        if (c->joined)
            mark_ready(lg, c);
        break;
    case MS_LG_EV_DISCONNECT:
        if (lg->phase == PH_HOLD) {
            lg->late_topo++;
            lg->late_topo_other += !ms_lg_own_peer(cfg, m.peer, m.peer_len);
        }
        c->disconnects++;
        lg->topo_disconnect++;
        lg->t_last_topo = ms_lg_now_ns();
        break;
    case MS_LG_EV_SIGNAL:
        on_signal(lg, c, &m);
        break;
    case MS_LG_EV_ERROR:
        lg->errors++;
        note(lg, "client %u: server error: %.*s", idx_of(lg, c), (int)(len > 300 ? 300 : len),
             (const char *)msg);
        break;
    case MS_LG_EV_OTHER:
        break;
    }
}

static void on_frame(lg_t *lg, conn_t *c, const ms_lg_ws_frame_t *f, uint8_t *pl)
{
    switch (f->opcode) {
    case MS_LG_OP_TEXT:
    case MS_LG_OP_BINARY:
        if (c->frag) {
            conn_close(lg, c, &lg->fail_closed, "new message inside a fragmented one");
            return;
        }
        if (f->fin) {
            on_message(lg, c, pl, f->len);
            return;
        }
        if (buf_append(&c->frag, &c->frag_len, &(uint32_t){c->frag_len}, pl, f->len))
            conn_close(lg, c, &lg->fail_closed, "out of memory");
        return;
    case MS_LG_OP_CONT: {
        if (!c->frag) {
            conn_close(lg, c, &lg->fail_closed, "continuation without a start");
            return;
        }
        uint32_t cap = c->frag_len;
        if (buf_append(&c->frag, &c->frag_len, &cap, pl, f->len)) {
            conn_close(lg, c, &lg->fail_closed, "out of memory");
            return;
        }
        if (f->fin) {
            on_message(lg, c, c->frag, c->frag_len);
            free(c->frag);
            c->frag = NULL;
            c->frag_len = 0;
        }
        return;
    }
    case MS_LG_OP_PING:
        conn_send(lg, c, MS_LG_OP_PONG, pl, f->len);
        return;
    case MS_LG_OP_PONG:
        return;
    case MS_LG_OP_CLOSE: {
        unsigned code = f->len >= 2 ? ((unsigned)pl[0] << 8) | pl[1] : 1005;
        char why[200];
        snprintf(why, sizeof why, "server closed: code %u reason \"%.*s\"", code,
                 f->len > 2 ? (int)(f->len - 2 > 120 ? 120 : f->len - 2) : 0,
                 f->len > 2 ? (const char *)pl + 2 : "");
        conn_send(lg, c, MS_LG_OP_CLOSE, pl, f->len >= 2 ? 2 : 0);
        conn_close(lg, c, &lg->fail_closed, why);
        return;
    }
    default:
        conn_close(lg, c, &lg->fail_closed, "unknown opcode");
        return;
    }
}

static void on_open(lg_t *lg, conn_t *c)
{
    const ms_lg_cfg_t *cfg = lg->cfg;
    if (!cfg->proto->hello_on_open)
        return;
    uint32_t idx = idx_of(lg, c);
    char ns[128], msg[512], peer[64];
    if (ms_lg_namespace(cfg, idx, ns, sizeof ns) < 0) {
        conn_close(lg, c, &lg->fail_handshake, "namespace name too long");
        return;
    }
    peer_name(lg, idx, peer, sizeof peer);
    int n = cfg->proto->hello(msg, sizeof msg, ns, peer);
    if (n > 0)
        conn_send(lg, c, MS_LG_OP_TEXT, msg, (size_t)n);
}

/* Consumes input: the handshake response, then frames. */
static void conn_input(lg_t *lg, conn_t *c, uint8_t *data, size_t len)
{
    uint8_t *buf = data;
    size_t avail = len, off = 0;
    if (c->rx_len) {
        if (buf_append(&c->rx, &c->rx_len, &c->rx_cap, data, len)) {
            conn_close(lg, c, &lg->fail_closed, "input buffer over 64 MiB");
            goto out;
        }
        buf = c->rx;
        avail = c->rx_len;
    }
    if (c->state == C_HANDSHAKE) {
        uint8_t *e = memmem(buf, avail, "\r\n\r\n", 4);
        if (!e) {
            if (avail > HANDSHAKE_MAX)
                conn_close(lg, c, &lg->fail_handshake, "handshake response too long");
            goto keep;
        }
        size_t hl = (size_t)(e - buf) + 4;
        char key[25];
        ms_lg_ws_key(lg->key_salt ^ idx_of(lg, c), key);
        if (ms_lg_ws_check_response((const char *)buf, hl, key, lg->cfg->proto->subprotocol)) {
            const uint8_t *eol = memchr(buf, '\r', hl);
            char why[160];
            snprintf(why, sizeof why, "handshake refused: %.*s",
                     (int)(eol && eol - buf < 100 ? eol - buf : 0), (const char *)buf);
            conn_close(lg, c, &lg->fail_handshake, why);
            goto out;
        }
        c->state = C_OPEN;
        off = hl;
        on_open(lg, c);
    }
    while (c->state == C_OPEN) {
        ms_lg_ws_frame_t f;
        int r = ms_lg_ws_parse(buf + off, avail - off, &f);
        if (r < 0) {
            conn_close(lg, c, &lg->fail_closed, "bad frame from server");
            break;
        }
        if (r == 0)
            break;
        uint8_t *pl = buf + off + f.hdr_len;
        if (f.masked)
            ms_lg_ws_mask(pl, pl, f.len, f.mask_key);
        off += f.hdr_len + f.len;
        on_frame(lg, c, &f, pl);
    }
keep:
    if (c->state == C_DEAD)
        goto out;
    if (buf == c->rx) {
        memmove(c->rx, c->rx + off, avail - off);
        c->rx_len = (uint32_t)(avail - off);
        if (c->rx_len == 0) {
            free(c->rx);
            c->rx = NULL;
            c->rx_cap = 0;
        }
    } else if (avail > off) {
        if (buf_append(&c->rx, &c->rx_len, &c->rx_cap, buf + off, avail - off))
            conn_close(lg, c, &lg->fail_closed, "out of memory");
    }
    return;
out:
    if (c->state == C_DEAD)
        conn_release(c);
}

static void conn_readable(lg_t *lg, conn_t *c)
{
    /* Edge-triggered: read until EAGAIN. Bounded by what the kernel has buffered, and by a
     * count in case a server floods us faster than we parse. */
    for (int i = 0; i < 4096 && (c->state == C_HANDSHAKE || c->state == C_OPEN); i++) {
        ssize_t n = recv(c->fd, rbuf, sizeof rbuf, 0);
        if (n > 0) {
            conn_input(lg, c, rbuf, (size_t)n);
            continue;
        }
        if (n == 0) {
            conn_close(lg, c, &lg->fail_closed, c->joined ? NULL : "server closed the connection");
            conn_release(c);
            return;
        }
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN)
            return;
        char why[96];
        snprintf(why, sizeof why, "recv: %s", strerror(errno));
        conn_close(lg, c, &lg->fail_closed, why);
        conn_release(c);
        return;
    }
}

static void conn_connected(lg_t *lg, conn_t *c)
{
    int err = 0;
    socklen_t el = sizeof err;
    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el) || err) {
        char why[96];
        snprintf(why, sizeof why, "connect: %s", strerror(err ? err : errno));
        conn_close(lg, c, &lg->fail_connect, why);
        return;
    }
    char path[256], req[1024], key[25], peer[64];
    uint32_t idx = idx_of(lg, c);
    char host[64];
    snprintf(host, sizeof host, "%s:%d", lg->cfg->host, port_of(lg->cfg, idx));
    ms_lg_ws_key(lg->key_salt ^ idx, key);
    peer_name(lg, idx, peer, sizeof peer);
    if (lg->cfg->proto->path(path, sizeof path, peer) < 0) {
        conn_close(lg, c, &lg->fail_connect, "path too long");
        return;
    }
    int n = ms_lg_ws_request(req, sizeof req, host, path, key, lg->cfg->proto->subprotocol);
    if (n < 0) {
        conn_close(lg, c, &lg->fail_connect, "request too long");
        return;
    }
    c->state = C_HANDSHAKE;
    conn_write(lg, c, (const uint8_t *)req, (size_t)n);
}

static void conn_open(lg_t *lg, uint32_t idx)
{
    conn_t *c = &lg->c[idx];
    const ms_lg_cfg_t *cfg = lg->cfg;
    memset(c, 0, sizeof *c);
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    c->state = C_CONNECTING;
    if (c->fd < 0) {
        c->state = C_DEAD;
        c->failed = 1;
        lg->failed++;
        lg->fail_connect++;
        note(lg, "client %u: socket: %s", idx, strerror(errno));
        return;
    }
    int one = 1;
    /* Defer the port choice to connect(), so that ports are unique per 4-tuple and not per
     * source address: with many source addresses, far more than 28k sockets fit. */
    setsockopt(c->fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct sockaddr_in src = {.sin_family = AF_INET, .sin_port = 0};
    /* By global index, so that load generators side by side share the addresses evenly. */
    src.sin_addr.s_addr = htonl(0x7f000002u + (cfg->base + idx) % cfg->src_addrs);
    char why[96];
    if (bind(c->fd, (struct sockaddr *)&src, sizeof src)) {
        snprintf(why, sizeof why, "bind: %s", strerror(errno));
        goto fail;
    }
    struct sockaddr_in dst_port = lg->dst;
    dst_port.sin_port = htons((uint16_t)port_of(cfg, idx));
    const struct sockaddr_in *dst = &dst_port;
    if (connect(c->fd, (const struct sockaddr *)dst, sizeof *dst) && errno != EINPROGRESS) {
        snprintf(why, sizeof why, "connect: %s", strerror(errno));
        goto fail;
    }
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, .data.u32 = idx};
    if (epoll_ctl(lg->ep, EPOLL_CTL_ADD, c->fd, &ev)) {
        snprintf(why, sizeof why, "epoll_ctl: %s", strerror(errno));
        goto fail;
    }
    return;
fail:
    conn_close(lg, c, &lg->fail_connect, why);
}

static void open_more(lg_t *lg)
{
    const ms_lg_cfg_t *cfg = lg->cfg;
    uint32_t limit = cfg->clients;
    if (cfg->join_rate > 0) {
        /* Paced from the start: at most join_rate attempts per second, one at once. */
        double due = 1 + (double)(lg->now - lg->t_start) * cfg->join_rate / 1e9;
        if (due < limit)
            limit = (uint32_t)due;
    }
    while (lg->opened < limit && lg->opened - lg->joined - lg->failed < cfg->window)
        conn_open(lg, lg->opened++);
}

static void heartbeats(lg_t *lg)
{
    char msg[64];
    int n = lg->cfg->proto->heartbeat(msg, sizeof msg);
    if (n < 0)
        return;
    for (uint32_t i = 0; i < lg->opened; i++) {
        conn_t *c = &lg->c[i];
        if (c->state != C_OPEN || !c->hb_ms || c->hb_due > lg->now)
            continue;
        c->hb_due = lg->now + (uint64_t)c->hb_ms * 1000000ull;
        conn_send(lg, c, MS_LG_OP_TEXT, msg, (size_t)n);
    }
}

static double secs(uint64_t ns)
{
    return (double)ns / 1e9;
}

static void start_traffic(lg_t *lg)
{
    const ms_lg_cfg_t *cfg = lg->cfg;
    lg->npairs = 0;
    for (uint32_t i = 0; i + 1 < cfg->clients; i += 2) {
        if (lg->c[i].ready && lg->c[i + 1].ready && lg->c[i].state == C_OPEN &&
            lg->c[i + 1].state == C_OPEN)
            lg->pairs[lg->npairs++] = i / 2;
    }
    if (lg->npairs < cfg->clients / 2)
        note(lg, "%u of %u pairs are not ready; traffic runs on %u pairs",
             cfg->clients / 2 - lg->npairs, cfg->clients / 2, lg->npairs);
    lg->t0 = lg->now;
    lg->win_start = lg->t0 + (uint64_t)(cfg->warmup_s * 1e9);
    lg->win_end = lg->win_start + (uint64_t)(cfg->duration_s * 1e9);
    if (cfg->scenario == MS_LG_RELAY) {
        lg->replying = 1;
        uint32_t half = cfg->inflight / 2;
        for (uint32_t k = 0; k < lg->npairs; k++) {
            conn_t *a = &lg->c[2 * lg->pairs[k]], *b = a + 1;
            for (uint32_t j = 0; j < half; j++)
                send_signal(lg, a);
            for (uint32_t j = half; j < cfg->inflight; j++)
                send_signal(lg, b);
        }
    }
}

/* Latency scenario: send what the schedule says is due by now. */
static void paced_send(lg_t *lg)
{
    const ms_lg_cfg_t *cfg = lg->cfg;
    if (!lg->npairs || lg->now >= lg->win_end)
        return;
    uint64_t due = (uint64_t)((double)(lg->now - lg->t0) * cfg->rate / 1e9);
    if (due > lg->sched_sent + 1) {
        uint64_t lag_ns = (uint64_t)((double)(due - lg->sched_sent - 1) * 1e9 / cfg->rate);
        if (lag_ns > lg->max_lag)
            lg->max_lag = lag_ns;
    }
    for (uint32_t guard = 0; lg->sched_sent < due && guard < 100000; guard++) {
        /* Round robin over pairs, alternating which end sends. */
        uint32_t k = lg->cursor % lg->npairs;
        uint32_t side = (lg->cursor / lg->npairs) & 1;
        lg->cursor++;
        send_signal(lg, &lg->c[2 * lg->pairs[k] + side]);
        lg->sched_sent++;
    }
}

static void phase(lg_t *lg, int ph)
{
    lg->phase = ph;
    lg->t_phase = lg->now;
}

static void tick(lg_t *lg)
{
    const ms_lg_cfg_t *cfg = lg->cfg;
    uint64_t timeout = (uint64_t)(cfg->timeout_s * 1e9);
    open_more(lg);
    if (lg->now >= lg->next_hb_scan) {
        heartbeats(lg);
        lg->next_hb_scan = lg->now + 100000000ull;
    }
    if (cfg->verbose && lg->now >= lg->next_progress) {
        fprintf(stderr,
                "loadgen: t=%.1fs phase=%d opened=%u joined=%u failed=%u ready=%u sent=%llu "
                "recv=%llu topo=%llu/%llu errors=%llu\n",
                secs(lg->now - lg->t_start), lg->phase, lg->opened, lg->joined, lg->failed,
                lg->ready, (unsigned long long)lg->sent, (unsigned long long)lg->recv,
                (unsigned long long)lg->topo_connect, (unsigned long long)lg->topo_disconnect,
                (unsigned long long)lg->errors);
        lg->next_progress = lg->now + NS_PER_S;
    }

    switch (lg->phase) {
    case PH_CONNECT:
        if (lg->joined + lg->failed < cfg->clients && lg->now - lg->t_phase < timeout)
            return;
        if (lg->joined + lg->failed < cfg->clients) {
            note(lg, "connect phase timed out: %u of %u never joined",
                 cfg->clients - lg->joined - lg->failed, cfg->clients);
            for (uint32_t i = 0; i < cfg->clients; i++) {
                conn_t *c = &lg->c[i];
                if (!c->joined && !c->failed) {
                    if (c->state == C_UNUSED) {
                        c->state = C_DEAD;
                        c->failed = 1;
                        lg->failed++;
                        lg->fail_timeout++;
                    } else {
                        conn_close(lg, c, &lg->fail_timeout, NULL);
                    }
                }
            }
        }
        lg->t_connected = lg->t_last_join ? lg->t_last_join : lg->now;
        lg->cpu_connected = ms_lg_pids_cpu(&cfg->pids, NULL);
        if (cfg->scenario == MS_LG_IDLE)
            phase(lg, PH_SETTLE);
        else if (cfg->scenario == MS_LG_STORM)
            phase(lg, PH_QUIET);
        else
            phase(lg, PH_READY);
        return;
    case PH_SETTLE:
        if (lg->now - lg->t_phase >= (uint64_t)(cfg->settle_s * 1e9)) {
            lg->rss_after = ms_lg_pids_rss(&cfg->pids, lg->rss_after_each);
            phase(lg, PH_DONE);
        }
        return;
    case PH_READY:
        if (lg->ready < lg->joined && lg->now - lg->t_phase < timeout)
            return;
        start_traffic(lg);
        phase(lg, PH_RUN);
        return;
    case PH_RUN:
        if (cfg->scenario == MS_LG_LATENCY)
            paced_send(lg);
        if (!lg->win_open && lg->now >= lg->win_start) {
            lg->win_open = 1;
            lg->cpu_w0 = ms_lg_pids_cpu(&cfg->pids, lg->cpu_w0_each);
            lg->t_w0 = ms_lg_now_ns();
        }
        if (lg->now >= lg->win_end) {
            lg->cpu_w1 = ms_lg_pids_cpu(&cfg->pids, lg->cpu_w1_each);
            lg->t_w1 = ms_lg_now_ns();
            lg->replying = 0;
            lg->drain_end = lg->now + 3 * NS_PER_S;
            phase(lg, PH_DRAIN);
        }
        return;
    case PH_DRAIN:
        if (lg->recv >= lg->sent || lg->now >= lg->drain_end)
            phase(lg, PH_DONE);
        return;
    case PH_QUIET: {
        uint64_t last = lg->t_last_topo > lg->t_last_join ? lg->t_last_topo : lg->t_last_join;
        if (lg->now - last >= (uint64_t)(cfg->quiet_s * 1e9) || lg->now - lg->t_phase >= timeout)
            phase(lg, PH_DONE);
        return;
    }
    default:
        return;
    }
}

static void report(lg_t *lg)
{
    const ms_lg_cfg_t *cfg = lg->cfg;
    double connect_s = secs(lg->t_connected - lg->t_start);
    printf("{\"proto\":\"%s\",\"scenario\":\"%s\",\"clients\":%u,\"opened\":%u,\"joined\":%u,"
           "\"failed\":%u,\"fail_connect\":%u,\"fail_handshake\":%u,\"fail_closed\":%u,"
           "\"fail_timeout\":%u,\"closed_after_join\":%u,\"errors\":%llu,\"bad_msgs\":%llu,",
           cfg->proto->name,
           cfg->scenario == MS_LG_IDLE      ? "idle"
           : cfg->scenario == MS_LG_RELAY   ? "relay"
           : cfg->scenario == MS_LG_LATENCY ? "latency"
                                            : "storm",
           cfg->clients, lg->opened, lg->joined, lg->failed, lg->fail_connect, lg->fail_handshake,
           lg->fail_closed, lg->fail_timeout, lg->closed_after_join, (unsigned long long)lg->errors,
           (unsigned long long)lg->bad_msgs);
    printf("\"connect_s\":%.4f,\"conns_per_s\":%.1f,\"server_cpu_connect_s\":%.3f,", connect_s,
           connect_s > 0 ? lg->joined / connect_s : 0, lg->cpu_connected - lg->cpu_start);
    if (cfg->scenario == MS_LG_IDLE) {
        printf("\"rss_before\":%lld,\"rss_after\":%lld,\"mem_per_conn\":%.1f,",
               (long long)lg->rss_before, (long long)lg->rss_after,
               lg->joined && lg->rss_after >= 0 && lg->rss_before >= 0
                   ? (double)(lg->rss_after - lg->rss_before) / lg->joined
                   : -1.0);
        /* Per process, in --pids order: where the memory went. */
        printf("\"mem_per_conn_each\":[");
        for (int i = 0; i < cfg->pids.n; i++)
            printf("%s%.1f", i ? "," : "",
                   lg->joined && lg->rss_after >= 0 && lg->rss_before >= 0
                       ? (double)(lg->rss_after_each[i] - lg->rss_before_each[i]) / lg->joined
                       : -1.0);
        printf("],");
    }
    if (cfg->scenario == MS_LG_RELAY || cfg->scenario == MS_LG_LATENCY) {
        double win = secs(lg->t_w1 - lg->t_w0);
        double cpu = lg->cpu_w1 - lg->cpu_w0;
        ms_lg_samples_sort(&lg->lat);
        printf("\"pairs\":%u,\"sent\":%llu,\"recv\":%llu,\"lost\":%lld,\"reorders\":%llu,"
               "\"win_s\":%.3f,\"win_sent\":%llu,\"win_recv\":%llu,\"msgs_per_s\":%.1f,"
               "\"server_cpu_s\":%.3f,\"msgs_per_cpu_s\":%.1f,\"max_send_lag_us\":%.1f,",
               lg->npairs, (unsigned long long)lg->sent, (unsigned long long)lg->recv,
               (long long)(lg->sent - lg->recv), (unsigned long long)lg->reorders, win,
               (unsigned long long)lg->win_sent, (unsigned long long)lg->win_recv,
               win > 0 ? lg->win_recv / win : 0, cpu, cpu > 0 ? lg->win_recv / cpu : 0,
               lg->max_lag / 1e3);
        printf("\"server_cpu_each\":[");
        for (int i = 0; i < cfg->pids.n; i++)
            printf("%s%.3f", i ? "," : "", lg->cpu_w1_each[i] - lg->cpu_w0_each[i]);
        printf("],");
        printf("\"lat_n\":%zu,\"p50_us\":%.1f,\"p90_us\":%.1f,\"p99_us\":%.1f,\"p999_us\":%.1f,"
               "\"max_us\":%.1f,",
               lg->lat.n, ms_lg_samples_pct(&lg->lat, 50) / 1e3,
               ms_lg_samples_pct(&lg->lat, 90) / 1e3, ms_lg_samples_pct(&lg->lat, 99) / 1e3,
               ms_lg_samples_pct(&lg->lat, 99.9) / 1e3, ms_lg_samples_pct(&lg->lat, 100) / 1e3);
    }
    if (cfg->scenario == MS_LG_STORM) {
        uint64_t last = lg->t_last_topo > lg->t_last_join ? lg->t_last_topo : lg->t_last_join;
        uint32_t dmin = UINT32_MAX, dmax = 0;
        uint64_t dsum = 0, n = 0;
        for (uint32_t i = 0; i < cfg->clients; i++) {
            conn_t *c = &lg->c[i];
            if (!c->joined)
                continue;
            uint32_t d = c->connects >= c->disconnects ? c->connects - c->disconnects : 0;
            dmin = d < dmin ? d : dmin;
            dmax = d > dmax ? d : dmax;
            dsum += d;
            n++;
        }
        printf("\"joins_per_s\":%.1f,\"topo_connect\":%llu,\"topo_disconnect\":%llu,"
               "\"topo_events\":%llu,\"converge_s\":%.3f,\"deg_min\":%u,\"deg_mean\":%.2f,"
               "\"deg_max\":%u,\"edges\":%.1f,",
               connect_s > 0 ? lg->joined / connect_s : 0, (unsigned long long)lg->topo_connect,
               (unsigned long long)lg->topo_disconnect,
               (unsigned long long)(lg->topo_connect + lg->topo_disconnect),
               secs(last - lg->t_start), n ? dmin : 0, n ? (double)dsum / n : 0, dmax, dsum / 2.0);
    }
    struct rusage ru;
    double self = 0;
    if (getrusage(RUSAGE_SELF, &ru) == 0)
        self = ru.ru_utime.tv_sec + ru.ru_stime.tv_sec +
               (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
    /* CLOCK_MONOTONIC, so that a script can put several load generators on one time line. */
    printf("\"t_start_ns\":%llu,\"t_last_join_ns\":%llu,\"t_last_topo_ns\":%llu,",
           (unsigned long long)lg->t_start, (unsigned long long)lg->t_last_join,
           (unsigned long long)lg->t_last_topo);
    printf("\"loadgen_cpu_s\":%.3f,\"total_s\":%.3f}\n", self, secs(lg->now - lg->t_start));
    fflush(stdout);
}

/* One JSON line about the hold so far; `status` 1 for a SIGUSR1 line, 0 for the last one. */
static void hold_status(lg_t *lg, int status)
{
    uint32_t open = 0;
    for (uint32_t i = 0; i < lg->opened; i++)
        open += lg->c[i].joined && lg->c[i].state == C_OPEN;
    printf("{\"status\":%d,\"late_topo_events\":%llu,\"late_topo_other\":%llu,"
           "\"closed_after_join\":%u,\"open\":%u,\"errors\":%llu,\"t_last_topo_ns\":%llu,"
           "\"now_ns\":%llu}\n",
           status, (unsigned long long)lg->late_topo, (unsigned long long)lg->late_topo_other,
           lg->closed_after_join, open, (unsigned long long)lg->errors,
           (unsigned long long)lg->t_last_topo, (unsigned long long)ms_lg_now_ns());
    fflush(stdout);
}

static int write_degrees(lg_t *lg, const char *path)
{
    FILE *f = fopen(path, "w");
    if (!f)
        return -1;
    char peer[64];
    for (uint32_t i = 0; i < lg->cfg->clients; i++) {
        conn_t *c = &lg->c[i];
        if (!c->joined)
            continue;
        peer_name(lg, i, peer, sizeof peer);
        fprintf(f, "%s %d\n", peer, (int)c->connects - (int)c->disconnects);
    }
    return fclose(f);
}

int ms_lg_run(const ms_lg_cfg_t *cfg)
{
    lg_t lg_storage = {0}, *lg = &lg_storage;
    int rc = 1;
    struct epoll_event *evs = NULL;
    lg->cfg = cfg;
    lg->ep = -1;
    signal(SIGPIPE, SIG_IGN);
    {
        /* A status request before the hold is answered when the hold starts. */
        struct sigaction sa = {.sa_handler = on_status_signal};
        sigemptyset(&sa.sa_mask);
        sigaction(SIGUSR1, &sa, NULL);
    }

    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < (rlim_t)cfg->clients + 32) {
        fprintf(stderr, "loadgen: %u clients need %u file descriptors; RLIMIT_NOFILE is %llu\n",
                cfg->clients, cfg->clients + 32, (unsigned long long)rl.rlim_cur);
        goto fail;
    }

    lg->dst.sin_family = AF_INET;
    lg->dst.sin_port = htons((uint16_t)cfg->port);
    if (inet_pton(AF_INET, cfg->host, &lg->dst.sin_addr) != 1) {
        fprintf(stderr, "loadgen: bad host %s\n", cfg->host);
        goto fail;
    }
    lg->c = calloc(cfg->clients, sizeof *lg->c);
    lg->pairs = calloc(cfg->clients / 2 + 1, sizeof *lg->pairs);
    evs = calloc(1024, sizeof *evs);
    lg->ep = epoll_create1(EPOLL_CLOEXEC);
    if (!lg->c || !lg->pairs || !evs || lg->ep < 0) {
        fprintf(stderr, "loadgen: setup failed\n");
        goto fail;
    }
    ms_lg_samples_init(&lg->lat, 50u * 1000 * 1000);
    lg->rng = ms_lg_now_ns() | 1;
    lg->key_salt = ms_lg_now_ns() * 0x9e3779b97f4a7c15ull;
    lg->win_start = lg->win_end = UINT64_MAX;

    {
        /* The payload is sized so that the whole client message is about cfg->size bytes. */
        char msg[512];
        char to[64];
        peer_name(lg, cfg->clients, to, sizeof to);
        int env = cfg->proto->signal(msg, sizeof msg, to, "{}", 2);
        lg->payload_size =
            env > 0 && cfg->size > (uint32_t)env ? cfg->size - (uint32_t)env + 2 : 64;
    }

    lg->rss_before = ms_lg_pids_rss(&cfg->pids, lg->rss_before_each);
    lg->cpu_start = ms_lg_pids_cpu(&cfg->pids, NULL);
    lg->now = lg->t_start = ms_lg_now_ns();
    phase(lg, PH_CONNECT);
    /* Every phase is bounded by cfg->timeout_s; this bounds the whole loop on top of that. */
    uint64_t hard_end =
        lg->t_start +
        (uint64_t)((5 * cfg->timeout_s + cfg->warmup_s + cfg->duration_s + cfg->settle_s + 10) *
                   1e9);
    while (lg->phase != PH_DONE && lg->now < hard_end) {
        int to = 10;
        if (lg->phase == PH_RUN && cfg->scenario == MS_LG_LATENCY)
            to = 1;
        int n = epoll_wait(lg->ep, evs, 1024, to);
        if (n < 0 && errno != EINTR) {
            perror("loadgen: epoll_wait");
            goto fail;
        }
        for (int i = 0; i < n; i++) {
            conn_t *c = &lg->c[evs[i].data.u32];
            uint32_t e = evs[i].events;
            if (c->state == C_CONNECTING) {
                if (!(e & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
                    continue;
                conn_connected(lg, c);
            }
            if ((e & EPOLLOUT) && c->tx_len)
                conn_flush(lg, c);
            if (e & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
                conn_readable(lg, c);
            if (c->state == C_DEAD)
                conn_release(c);
        }
        lg->now = ms_lg_now_ns();
        tick(lg);
    }
    if (lg->phase != PH_DONE)
        note(lg, "run hit its overall time bound in phase %d", lg->phase);
    if (cfg->degrees && write_degrees(lg, cfg->degrees))
        note(lg, "cannot write %s: %s", cfg->degrees, strerror(errno));
    report(lg);
    if (cfg->hold_s > 0) {
        /* Someone is looking at the server's state while every client is still there. Keep
         * answering pings, and count topology events that were still on their way. */
        phase(lg, PH_HOLD);
        struct sigaction sa = {.sa_handler = on_stop_signal};
        sigemptyset(&sa.sa_mask);
        sigaction(SIGTERM, &sa, NULL);
        sigaction(SIGINT, &sa, NULL);
        uint64_t end = lg->now + (uint64_t)(cfg->hold_s * 1e9);
        while (lg->now < end && !got_stop) {
            if (got_status) {
                got_status = 0;
                if (cfg->degrees && write_degrees(lg, cfg->degrees))
                    note(lg, "cannot write %s: %s", cfg->degrees, strerror(errno));
                hold_status(lg, 1);
            }
            int n = epoll_wait(lg->ep, evs, 1024, 50);
            for (int i = 0; i < n; i++) {
                conn_t *c = &lg->c[evs[i].data.u32];
                if ((evs[i].events & EPOLLOUT) && c->tx_len)
                    conn_flush(lg, c);
                if (evs[i].events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
                    conn_readable(lg, c);
                if (c->state == C_DEAD)
                    conn_release(c);
            }
            lg->now = ms_lg_now_ns();
            if (lg->now >= lg->next_hb_scan) {
                heartbeats(lg);
                lg->next_hb_scan = lg->now + 100000000ull;
            }
        }
        fprintf(stderr, "loadgen: hold: %llu late topology events, %u closed after join\n",
                (unsigned long long)lg->late_topo, lg->closed_after_join);
        hold_status(lg, 0);
    }
    rc = 0;
fail:
    if (lg->c) {
        for (uint32_t i = 0; i < lg->opened; i++) {
            if (lg->c[i].state != C_DEAD && lg->c[i].state != C_UNUSED)
                close(lg->c[i].fd);
            conn_release(&lg->c[i]);
        }
    }
    if (lg->ep >= 0)
        close(lg->ep);
    ms_lg_samples_cleanup(&lg->lat);
    free(lg->c);
    free(lg->pairs);
    free(evs);
    return rc;
}
