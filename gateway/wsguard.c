/* SPDX-License-Identifier: Apache-2.0 */
/* Follows each client socket's frames to enforce what lws 4.1 does not (see wsguard.h); the
 * walk itself, and its rules, are wswalk.c's. */
#include "wsguard.h"

#include <errno.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "wswalk.h"

/* One per file descriptor, in the table itself (no allocation per connection):
 * 32 bytes where a pointer slot and a 64-byte chunk were 72. */
typedef struct {
    /* Set (release) once the rest is initialised, for an accepted client
     * socket; other threads read only this, for their own descriptors. */
    _Atomic uint8_t tracked;
    ms_wswalk_t w; /* w.why: the rule broken, MS_WSWALK_FINE while fine */
    struct lws *wsi;
} conn_t;
_Static_assert(sizeof(conn_t) == 32, "conn_t: one table entry per descriptor");

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

static void track(int fd)
{
    if (!table || fd < 0 || (size_t)fd >= table_n)
        return;
    conn_t *c = &table[fd];
    ms_wswalk_init(&c->w);
    c->wsi = NULL;
    atomic_store_explicit(&c->tracked, 1, memory_order_release);
}

static void untrack(int fd)
{
    if (table && fd >= 0 && (size_t)fd < table_n)
        atomic_store_explicit(&table[fd].tracked, 0, memory_order_release);
}

/* The close code of a connection that broke a rule, 0 while it is fine. */
static int close_code(const conn_t *c)
{
    if (!c->w.why)
        return 0;
    return c->w.why == MS_WSWALK_FRAME_FLOOD ? LWS_CLOSE_STATUS_POLICY_VIOLATION
                                             : LWS_CLOSE_STATUS_PROTOCOL_ERR;
}

int ms_wsguard_violation(int fd, const char **why)
{
    conn_t *c = lookup(fd);
    if (why)
        *why = c ? ms_wswalk_reasons[c->w.why] : NULL;
    return c ? close_code(c) : 0;
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
    if (c && !c->w.why) {
        ms_wswalk_init(&c->w);
        c->wsi = NULL;
    }
}

/* ---- the libc functions lws calls, defined here first ------------------- */

ssize_t recv(int fd, void *buf, size_t len, int flags)
{
    ssize_t n = syscall(SYS_recvfrom, fd, buf, len, flags, NULL, NULL);
    conn_t *c = lookup(fd);
    if (!c || (flags & MSG_PEEK))
        return n;
    if (c->w.why) {
        errno = EAGAIN;
        return -1;
    }
    if (n <= 0)
        return n;
    size_t ok = ms_wswalk_follow(&c->w, buf, (size_t)n, frame_budget, window_now);
    if (!c->w.why)
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
