/* SPDX-License-Identifier: Apache-2.0 */
/* Follows each client socket's frames to enforce what lws 4.1 does not (see wsguard.h). */
#include "wsguard.h"

#include <errno.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

enum { HEAD, FRAMES };

/* Why a connection broke a rule (ms_wsguard_violation), by conn_t.why. */
static const char *const reasons[] = {
    NULL,
    "reserved bits set (no extension is negotiated)",
    "reserved opcode",
    "fragmented control frame",
    "unmasked client frame",
    "control frame over 125 bytes",
    "more pings, pongs and fragments than its frame budget",
};
enum {
    WHY_NONE,
    WHY_RSV,
    WHY_OPCODE,
    WHY_FRAG_CONTROL,
    WHY_UNMASKED,
    WHY_LONG_CONTROL,
    WHY_FRAME_FLOOD
};

/* HEAD: where we are in the current header line. */
typedef struct {
    uint8_t line_pos; /* bytes into the line, capped */
    uint8_t up_match; /* bytes of "upgrade:" matched at the line start */
    uint8_t ws_match; /* bytes of "websocket" matched in an Upgrade line */
    uint8_t is_ws;    /* the request asks for websocket */
    uint8_t crlf;     /* "\r\n\r\n" bytes matched */
} head_t;

/* One per file descriptor, in the table itself (no allocation per connection):
 * 32 bytes where a pointer slot and a 64-byte chunk were 72. */
typedef struct {
    /* Set (release) once the rest is initialised, for an accepted client
     * socket; other threads read only this, for their own descriptors. */
    _Atomic uint8_t tracked;
    uint8_t mode;
    uint8_t hdr_len, hdr_need; /* FRAMES */
    uint8_t why;               /* reasons[], WHY_NONE while fine */
    uint8_t window;            /* FRAMES: the budget window n_frames counts in */
    uint16_t violation;        /* close code, 0 while fine */
    union {
        head_t h; /* HEAD */
        /* FRAMES, while hdr_len > 0: the frame header read so far. */
        uint8_t hdr[14];
        /* FRAMES, while hdr_len == 0: payload bytes left of the current frame
         * (the header it came from is no longer needed); 0: a header is next. */
        uint64_t skip;
        /* FRAMES: frames that are not a whole data message, in window. */
        struct {
            uint8_t hdr_[14];
            uint16_t n_frames;
        } f;
    } u;
    struct lws *wsi;
} conn_t;
_Static_assert(sizeof(conn_t) == 32, "conn_t: one table entry per descriptor");
_Static_assert(offsetof(conn_t, u.f.n_frames) >= offsetof(conn_t, u.hdr) + 14,
               "the frame count is clear of the header bytes");

/* Bytes read and dropped at once from a socket that broke a rule. */
#define DRAIN_MAX (256 * 1024)

static conn_t *table;
static size_t table_n;
static uint16_t frame_budget = 65535;

/* The budget's window: about a second (1024 ms), numbered mod 256. */
static uint8_t window_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    uint64_t ms = (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
    return (uint8_t)(ms >> 10);
}

ms_err_t ms_wsguard_init(unsigned frames_per_s)
{
    frame_budget = frames_per_s < 1 ? 1 : frames_per_s > 65535 ? 65535 : (uint16_t)frames_per_s;
    struct rlimit rl;
    size_t n = 65536;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur > n)
        n = (size_t)rl.rlim_cur;
    if (n > (1u << 21))
        n = 1u << 21;
    /* Untouched pages of the table cost nothing: calloc maps them lazily. */
    table = calloc(n, sizeof(*table));
    if (!table)
        return MS_ERR_NOMEM;
    table_n = n;
    return MS_OK;
}

void ms_wsguard_cleanup(void)
{
    free(table);
    table = NULL;
    table_n = 0;
}

static conn_t *lookup(int fd)
{
    if (!table || fd < 0 || (size_t)fd >= table_n)
        return NULL;
    conn_t *c = &table[fd];
    return atomic_load_explicit(&c->tracked, memory_order_acquire) ? c : NULL;
}

/* Everything but the tracked flag back to zero, then the mode. */
static void reset(conn_t *c, uint8_t mode)
{
    c->mode = mode;
    c->hdr_len = c->hdr_need = c->why = 0;
    c->violation = 0;
    memset(&c->u, 0, sizeof(c->u));
    c->wsi = NULL;
}

static void track(int fd)
{
    if (!table || fd < 0 || (size_t)fd >= table_n)
        return;
    conn_t *c = &table[fd];
    reset(c, HEAD);
    atomic_store_explicit(&c->tracked, 1, memory_order_release);
}

static void untrack(int fd)
{
    if (table && fd >= 0 && (size_t)fd < table_n)
        atomic_store_explicit(&table[fd].tracked, 0, memory_order_release);
}

int ms_wsguard_violation(int fd, const char **why)
{
    conn_t *c = lookup(fd);
    if (why)
        *why = c && c->violation ? reasons[c->why] : NULL;
    return c ? c->violation : 0;
}

int ms_wsguard_bind(int fd, struct lws *wsi, const char **why)
{
    conn_t *c = lookup(fd);
    if (c)
        c->wsi = wsi;
    return ms_wsguard_violation(fd, why);
}

void ms_wsguard_http(int fd)
{
    conn_t *c = lookup(fd);
    if (c && !c->violation)
        reset(c, HEAD);
}

static int lower(int ch)
{
    return ch >= 'A' && ch <= 'Z' ? ch + 32 : ch;
}

/* One byte of an HTTP request head. When the head ends, frames follow if it
 * asked for a WebSocket upgrade, else another request. */
static void head_byte(conn_t *c, uint8_t b)
{
    static const char up[] = "upgrade:", ws[] = "websocket", end[] = "\r\n\r\n";
    int ch = lower(b);
    head_t *h = &c->u.h;
    if (b == '\n') {
        h->line_pos = h->up_match = h->ws_match = 0;
    } else {
        if (h->line_pos < 8 && h->up_match == h->line_pos && ch == up[h->line_pos])
            h->up_match++;
        else if (h->line_pos >= 8 && h->up_match == 8 && h->ws_match < 9)
            h->ws_match = ch == ws[h->ws_match] ? h->ws_match + 1 : ch == ws[0];
        if (h->ws_match == 9)
            h->is_ws = 1;
        if (h->line_pos < 255)
            h->line_pos++;
    }
    h->crlf = b == (uint8_t)end[h->crlf] ? h->crlf + 1 : b == '\r';
    if (h->crlf == 4)
        reset(c, h->is_ws ? FRAMES : HEAD);
}

/* Follows n bytes the client sent. Returns how many of them lws may see: n,
 * or the offset of the first frame that breaks a rule. */
static size_t follow(conn_t *c, const uint8_t *p, size_t n)
{
    size_t i = 0, frame_start = 0;
    while (i < n) {
        if (c->mode == HEAD) {
            head_byte(c, p[i++]);
            continue;
        }
        if (c->hdr_len == 0 && c->u.skip) {
            size_t take = n - i < c->u.skip ? n - i : (size_t)c->u.skip;
            c->u.skip -= take;
            i += take;
            continue;
        }
        if (c->hdr_len == 0)
            frame_start = i;
        c->u.hdr[c->hdr_len++] = p[i++];
        if (c->hdr_len == 1) {
            /* lws checks these too, but then keeps reading the rest of the
             * frame as frames and lingers until its close timeout. */
            uint8_t op = c->u.hdr[0] & 0x0f;
            if (c->u.hdr[0] & 0x70)
                c->why = WHY_RSV;
            else if ((op > 2 && op < 8) || op > 10)
                c->why = WHY_OPCODE;
            else if ((op & 8) && !(c->u.hdr[0] & 0x80))
                c->why = WHY_FRAG_CONTROL;
            if (c->why) {
                c->violation = LWS_CLOSE_STATUS_PROTOCOL_ERR;
                return frame_start;
            }
            /* Pings, pongs and fragments never reach the rate limit, which
             * counts whole messages: each costs a read, a parse and (a ping)
             * a pong, at whatever rate the client sends them. */
            if ((op & 8) || op == 0 || !(c->u.hdr[0] & 0x80)) {
                uint8_t w = window_now();
                if (w != c->window) {
                    c->window = w;
                    c->u.f.n_frames = 0;
                }
                if (++c->u.f.n_frames > frame_budget) {
                    c->why = WHY_FRAME_FLOOD;
                    c->violation = LWS_CLOSE_STATUS_POLICY_VIOLATION;
                    return frame_start;
                }
            }
        }
        if (c->hdr_len == 2) {
            uint8_t len7 = c->u.hdr[1] & 0x7f;
            if (!(c->u.hdr[1] & 0x80))
                c->why = WHY_UNMASKED;
            else if ((c->u.hdr[0] & 0x08) && len7 > 125)
                c->why = WHY_LONG_CONTROL;
            if (c->why) {
                c->violation = LWS_CLOSE_STATUS_PROTOCOL_ERR;
                return frame_start;
            }
            c->hdr_need = (uint8_t)(2 + (len7 == 126 ? 2 : len7 == 127 ? 8 : 0) + 4);
        }
        if (c->hdr_len >= 2 && c->hdr_len == c->hdr_need) {
            uint64_t len = c->u.hdr[1] & 0x7f;
            if (len == 126) {
                len = (uint64_t)c->u.hdr[2] << 8 | c->u.hdr[3];
            } else if (len == 127) {
                len = 0;
                for (int k = 0; k < 8; k++)
                    len = len << 8 | c->u.hdr[2 + k];
            }
            c->u.skip = len; /* over the header, read */
            c->hdr_len = 0;
        }
    }
    return n;
}

/* ---- the libc functions lws calls, defined here first ------------------- */

ssize_t recv(int fd, void *buf, size_t len, int flags)
{
    ssize_t n = syscall(SYS_recvfrom, fd, buf, len, flags, NULL, NULL);
    conn_t *c = lookup(fd);
    if (!c || (flags & MSG_PEEK))
        return n;
    if (c->violation) {
        errno = EAGAIN;
        return -1;
    }
    if (n <= 0)
        return n;
    size_t ok = follow(c, buf, (size_t)n);
    if (!c->violation)
        return n;
    /* The rest is dropped: the connection is closing. So is what the kernel
     * holds already (up to DRAIN_MAX): closed with unread bytes, the socket
     * would send a reset, and the client would lose the close frame (and its
     * code) that went before. */
    uint8_t scratch[4096];
    for (size_t drained = 0; drained < DRAIN_MAX; drained += sizeof(scratch))
        if (syscall(SYS_recvfrom, fd, scratch, sizeof(scratch), MSG_DONTWAIT, NULL, NULL) <= 0)
            break;
    if (c->wsi)
        lws_callback_on_writable(c->wsi);
    if (ok)
        return (ssize_t)ok;
    errno = EAGAIN;
    return -1;
}

/* glibc declares these with a transparent union under _GNU_SOURCE (which
 * the build defines); the definitions must match it. */
#if defined(__USE_GNU)
#define SOCKADDR_PTR(a) ((a).__sockaddr__)
#else
#define SOCKADDR_PTR(a) (a)
#endif

int accept(int fd, __SOCKADDR_ARG addr, socklen_t *__restrict addrlen)
{
    int s = (int)syscall(SYS_accept4, fd, SOCKADDR_PTR(addr), addrlen, 0);
    if (s >= 0)
        track(s);
    return s;
}

int accept4(int fd, __SOCKADDR_ARG addr, socklen_t *__restrict addrlen, int flags)
{
    int s = (int)syscall(SYS_accept4, fd, SOCKADDR_PTR(addr), addrlen, flags);
    if (s >= 0)
        track(s);
    return s;
}

int close(int fd)
{
    untrack(fd);
    return (int)syscall(SYS_close, fd);
}
