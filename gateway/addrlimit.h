/* SPDX-License-Identifier: Apache-2.0 */
/* Per-client-address limits: handshakes in progress and WebSocket sessions per address.
 *
 * The gateway's global caps (--max-handshakes, --max-sessions) let one address
 * take every header table (a slowloris from one host makes every newcomer
 * wait) or every session place. This module counts, per client address, the
 * connections that are not (yet) a WebSocket session (they hold or wait for a
 * header table: an upgrade in progress, or a plain HTTP connection) and the
 * sessions, and refuses a connection over either limit.
 *
 * Addresses. An IPv4 address counts alone; an IPv6 address counts by its /64
 * prefix, since one host (one subscriber) is given a whole /64 and picks the
 * rest freely. An IPv4-mapped IPv6 peer (::ffff:a.b.c.d, a dual-stack socket)
 * counts as the IPv4 address.
 *
 * Exempt and trusted. Addresses in the exempt list (--per-ip-exempt, by default
 * loopback: benchmarks and load generators on the host) are not counted. A TCP
 * peer in the trusted list (--trusted-proxies, a load balancer) is not counted
 * either while it is handshaking (many clients share it); when its connection
 * becomes a session, the session counts against the last address of its
 * X-Forwarded-For header, which that proxy wrote (anything before it came from
 * the client), or against the proxy's own address when there is none that parses.
 * X-Forwarded-For from any other peer is never read.
 *
 * What a connection holds is one tag (ms_addrlimit_tag_t, a pointer-sized word
 * the caller keeps with the connection: the gateway keeps it in lws's opaque
 * user pointer of the wsi, so a connection costs no extra memory): which entry
 * it counts against and as what. An entry exists while some connection counts
 * against it (freed at zero); each call is O(1) (a uthash lookup of 16 bytes).
 *
 * Single-threaded: the lws service thread.
 */
#ifndef MS_GW_ADDRLIMIT_H
#define MS_GW_ADDRLIMIT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "err.h"

/* An IPv6 address, or an IPv4 one mapped into ::ffff:0:0/96. */
typedef struct {
    uint8_t b[16];
} ms_addr_t;

/* What a connection holds: 0 (nothing counted), or an entry and what it counts as. */
typedef uintptr_t ms_addrlimit_tag_t;

typedef struct ms_addrlimit ms_addrlimit_t;

typedef struct {
    const char *exempt;  /* CIDR[,CIDR...] never counted; NULL or "": none */
    const char *trusted; /* CIDR[,CIDR...] of proxies whose X-Forwarded-For is read */
    long max_handshakes; /* connections not yet sessions, per address; 0: unlimited */
    long max_sessions;   /* WebSocket sessions per address; 0: unlimited */
} ms_addrlimit_config_t;

/* The address of an AF_INET or AF_INET6 sockaddr; -1 for another family. */
int ms_addr_from_sockaddr(const struct sockaddr *sa, socklen_t len, ms_addr_t *out);
/* The last address of an X-Forwarded-For value ("a, b, c": c), IPv4 or IPv6, with or
 * without brackets or an IPv4 port; -1 when it does not parse. */
int ms_addr_from_xff(const char *xff, ms_addr_t *out);
/* Text of a (full) address, for logs. */
void ms_addr_str(const ms_addr_t *a, char *buf, size_t cap);

/* Parses both lists (a bad one: MS_ERR_INVAL and what in why). */
ms_err_t ms_addrlimit_create(const ms_addrlimit_config_t *cfg, ms_addrlimit_t **out, char *why,
                             size_t why_cap);
/* Every tag must have been released. */
void ms_addrlimit_destroy(ms_addrlimit_t *al);

/* A connection accepted from TCP peer `peer`: 0 with *tag what it holds (nothing when the peer
 * is exempt or a trusted proxy, else one handshake of its address); -1 when its address
 * already has max_handshakes (nothing is held: refuse the connection). */
int ms_addrlimit_accept(ms_addrlimit_t *al, const ms_addr_t *peer, ms_addrlimit_tag_t *tag);
/* Whether the connection came from a trusted proxy (then ms_addrlimit_session wants the
 * client's address). */
int ms_addrlimit_proxied(ms_addrlimit_tag_t tag);
/* The connection became a WebSocket session. Its address is the one its tag counts against,
 * or for a proxied one `client` (NULL: none known, nothing is counted). 0: *tag now holds one
 * session of that address instead of a handshake (or nothing, when exempt or the session limit
 * is 0); -1: that address has max_sessions already, *tag holds nothing and says so
 * (ms_addrlimit_refused): refuse the session. */
int ms_addrlimit_session(ms_addrlimit_t *al, ms_addrlimit_tag_t *tag, const ms_addr_t *client);
/* Whether ms_addrlimit_session refused the session of this tag. */
int ms_addrlimit_refused(ms_addrlimit_tag_t tag);
/* The connection closed: what *tag held is given back, *tag becomes 0. */
void ms_addrlimit_release(ms_addrlimit_t *al, ms_addrlimit_tag_t *tag);

/* Addresses counted now (entries of the table). */
size_t ms_addrlimit_addresses(const ms_addrlimit_t *al);
/* Handshakes and sessions counted now against a's address (tests). */
void ms_addrlimit_counts(const ms_addrlimit_t *al, const ms_addr_t *a, long *handshakes,
                         long *sessions);

#endif
