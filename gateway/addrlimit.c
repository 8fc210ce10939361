/* SPDX-License-Identifier: Apache-2.0 */
/* Per-client-address counts of handshakes and sessions, and their limits (see addrlimit.h). */
#include "addrlimit.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "uthash_keyed.h"

/* Tag bits: an entry pointer (malloc'd, so 8-aligned) with what it counts as. */
#define TAG_HANDSHAKE ((uintptr_t)1)
#define TAG_SESSION ((uintptr_t)2)
#define TAG_BITS (TAG_HANDSHAKE | TAG_SESSION)
/* No entry: from a trusted proxy, nothing counted yet; refused at the session limit. */
#define TAG_PROXIED TAG_BITS
#define TAG_REFUSED TAG_SESSION

typedef struct entry {
    ms_addr_t key; /* the IPv4 address, or the IPv6 /64 with the rest zero */
    uint32_t handshakes, sessions;
    UT_hash_handle hh;
} entry_t;

typedef struct {
    ms_addr_t net;
    unsigned bits; /* prefix length, of 128 (an IPv4 /n is 96 + n) */
} cidr_t;

typedef struct {
    cidr_t *v;
    size_t n;
} cidrs_t;

struct ms_addrlimit {
    cidrs_t exempt, trusted;
    uint32_t max_handshakes, max_sessions; /* 0: unlimited */
    entry_t *by_addr;                      /* uthash */
};

static const uint8_t v4_prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

static int is_v4(const ms_addr_t *a)
{
    return !memcmp(a->b, v4_prefix, sizeof(v4_prefix));
}

int ms_addr_from_sockaddr(const struct sockaddr *sa, socklen_t len, ms_addr_t *out)
{
    if (sa->sa_family == AF_INET && len >= (socklen_t)sizeof(struct sockaddr_in)) {
        memcpy(out->b, v4_prefix, sizeof(v4_prefix));
        memcpy(out->b + 12, &((const struct sockaddr_in *)(const void *)sa)->sin_addr, 4);
        return 0;
    }
    if (sa->sa_family == AF_INET6 && len >= (socklen_t)sizeof(struct sockaddr_in6)) {
        memcpy(out->b, &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr, 16);
        return 0;
    }
    return -1;
}

/* An address as text: IPv4 (with an optional :port), IPv6, or [IPv6] (with an optional
 * :port); n bytes of s, trimmed. */
static int parse_addr(const char *s, size_t n, ms_addr_t *out)
{
    char buf[INET6_ADDRSTRLEN + 8];
    while (n && isspace((unsigned char)*s))
        s++, n--;
    while (n && isspace((unsigned char)s[n - 1]))
        n--;
    if (n && *s == '[') {
        const char *close = memchr(s, ']', n);
        if (!close)
            return -1;
        n = (size_t)(close - s - 1);
        s++;
    }
    if (!n || n >= sizeof(buf))
        return -1;
    memcpy(buf, s, n);
    buf[n] = '\0';
    struct in_addr v4;
    struct in6_addr v6;
    char *colon = strchr(buf, ':');
    if (colon && !strchr(colon + 1, ':'))
        *colon = '\0'; /* a.b.c.d:port */
    if (inet_pton(AF_INET, buf, &v4) == 1) {
        memcpy(out->b, v4_prefix, sizeof(v4_prefix));
        memcpy(out->b + 12, &v4, 4);
        return 0;
    }
    if (inet_pton(AF_INET6, buf, &v6) == 1) {
        memcpy(out->b, &v6, 16);
        return 0;
    }
    return -1;
}

int ms_addr_from_xff(const char *xff, ms_addr_t *out)
{
    if (!xff)
        return -1;
    const char *last = strrchr(xff, ',');
    last = last ? last + 1 : xff;
    return parse_addr(last, strlen(last), out);
}

void ms_addr_str(const ms_addr_t *a, char *buf, size_t cap)
{
    char t[INET6_ADDRSTRLEN];
    if (is_v4(a))
        inet_ntop(AF_INET, a->b + 12, t, sizeof(t));
    else
        inet_ntop(AF_INET6, a->b, t, sizeof(t));
    snprintf(buf, cap, "%s", t);
}

/* One "a.b.c.d/n" or "v6/n" (no /n: the one address) of n bytes; 1 when only blanks. */
static int parse_cidr(const char *p, size_t n, cidr_t *c)
{
    int blank = 1;
    for (size_t i = 0; i < n; i++)
        blank &= isspace((unsigned char)p[i]) != 0;
    if (blank)
        return 1;
    const char *slash = memchr(p, '/', n);
    size_t alen = slash ? (size_t)(slash - p) : n;
    if (parse_addr(p, alen, &c->net) != 0)
        return -1;
    unsigned max = is_v4(&c->net) ? 32 : 128, bits = max;
    if (slash) {
        char num[8], *e;
        size_t nl = n - alen - 1;
        if (nl == 0 || nl >= sizeof(num))
            return -1;
        memcpy(num, slash + 1, nl);
        num[nl] = '\0';
        long v = strtol(num, &e, 10);
        while (isspace((unsigned char)*e))
            e++;
        if (e == num || *e || v < 0 || v > (long)max)
            return -1;
        bits = (unsigned)v;
    }
    c->bits = max == 32 ? 96 + bits : bits;
    return 0;
}

/* A comma-separated list of CIDRs; -1 with why on a bad one. */
static int parse_cidrs(const char *list, cidrs_t *out, char *why, size_t why_cap)
{
    out->v = NULL;
    out->n = 0;
    if (!list)
        return 0;
    size_t cap = 1;
    for (const char *p = list; *p; p++)
        cap += *p == ',';
    if (!(out->v = calloc(cap, sizeof(*out->v))))
        goto fail;
    for (const char *p = list;;) {
        const char *end = strchr(p, ',');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        int r = parse_cidr(p, n, &out->v[out->n]);
        if (r < 0) {
            snprintf(why, why_cap, "'%.*s' is not an address or CIDR", (int)n, p);
            goto fail;
        }
        out->n += r == 0;
        if (!end)
            break;
        p = end + 1;
    }
    return 0;
fail:
    free(out->v);
    out->v = NULL;
    out->n = 0;
    return -1;
}

static int in_cidrs(const cidrs_t *l, const ms_addr_t *a)
{
    for (size_t i = 0; i < l->n; i++) {
        const cidr_t *c = &l->v[i];
        unsigned full = c->bits / 8, rest = c->bits % 8;
        if (memcmp(a->b, c->net.b, full))
            continue;
        if (rest && ((a->b[full] ^ c->net.b[full]) & (uint8_t)(0xff << (8 - rest))))
            continue;
        return 1;
    }
    return 0;
}

ms_err_t ms_addrlimit_create(const ms_addrlimit_config_t *cfg, ms_addrlimit_t **out, char *why,
                             size_t why_cap)
{
    ms_addrlimit_t *al = calloc(1, sizeof(*al));
    if (!al)
        return MS_ERR_NOMEM;
    snprintf(why, why_cap, "out of memory");
    if (parse_cidrs(cfg->exempt, &al->exempt, why, why_cap) != 0 ||
        parse_cidrs(cfg->trusted, &al->trusted, why, why_cap) != 0) {
        ms_addrlimit_destroy(al);
        return MS_ERR_INVAL;
    }
    al->max_handshakes = cfg->max_handshakes > 0 ? (uint32_t)cfg->max_handshakes : 0;
    al->max_sessions = cfg->max_sessions > 0 ? (uint32_t)cfg->max_sessions : 0;
    *out = al;
    return MS_OK;
}

void ms_addrlimit_destroy(ms_addrlimit_t *al)
{
    if (!al)
        return;
    entry_t *e, *tmp;
    HASH_ITER(hh, al->by_addr, e, tmp)
    {
        HASH_DEL(al->by_addr, e);
        free(e);
    }
    free(al->exempt.v);
    free(al->trusted.v);
    free(al);
}

static void key_of(const ms_addr_t *a, ms_addr_t *key)
{
    *key = *a;
    if (!is_v4(a))
        memset(key->b + 8, 0, 8); /* the /64 */
}

static entry_t *find(const ms_addrlimit_t *al, const ms_addr_t *a)
{
    ms_addr_t key;
    key_of(a, &key);
    entry_t *e;
    HASH_FIND(hh, al->by_addr, &key, sizeof(key), e);
    return e;
}

static entry_t *find_or_add(ms_addrlimit_t *al, const ms_addr_t *a)
{
    entry_t *e = find(al, a);
    if (e)
        return e;
    if (!(e = calloc(1, sizeof(*e))))
        return NULL;
    key_of(a, &e->key);
    HASH_ADD(hh, al->by_addr, key, sizeof(e->key), e);
    return e;
}

static void drop_if_unused(ms_addrlimit_t *al, entry_t *e)
{
    if (!e->handshakes && !e->sessions) {
        HASH_DEL(al->by_addr, e);
        free(e);
    }
}

int ms_addrlimit_accept(ms_addrlimit_t *al, const ms_addr_t *peer, ms_addrlimit_tag_t *tag)
{
    *tag = 0;
    if (!al->max_handshakes && !al->max_sessions)
        return 0; /* nothing to count */
    if (in_cidrs(&al->trusted, peer)) {
        *tag = TAG_PROXIED;
        return 0;
    }
    if (in_cidrs(&al->exempt, peer))
        return 0;
    entry_t *e = find_or_add(al, peer);
    if (!e)
        return 0; /* out of memory: not counted rather than refused */
    if (al->max_handshakes && e->handshakes >= al->max_handshakes) {
        drop_if_unused(al, e);
        return -1;
    }
    e->handshakes++;
    *tag = (uintptr_t)e | TAG_HANDSHAKE;
    return 0;
}

int ms_addrlimit_proxied(ms_addrlimit_tag_t tag)
{
    return tag == TAG_PROXIED;
}

int ms_addrlimit_session(ms_addrlimit_t *al, ms_addrlimit_tag_t *tag, const ms_addr_t *client)
{
    entry_t *e = NULL;
    if (*tag == TAG_PROXIED) {
        *tag = 0;
        if (client && !in_cidrs(&al->exempt, client))
            e = find_or_add(al, client);
    } else if ((*tag & ~TAG_BITS) && (*tag & TAG_HANDSHAKE)) {
        e = (entry_t *)(*tag & ~TAG_BITS);
        e->handshakes--; /* e stays: it is about to hold the session, or be dropped */
        *tag = 0;
    }
    if (!e)
        return 0;
    if (!al->max_sessions) {
        drop_if_unused(al, e); /* sessions are not counted */
        return 0;
    }
    if (e->sessions >= al->max_sessions) {
        drop_if_unused(al, e);
        *tag = TAG_REFUSED;
        return -1;
    }
    e->sessions++;
    *tag = (uintptr_t)e | TAG_SESSION;
    return 0;
}

int ms_addrlimit_refused(ms_addrlimit_tag_t tag)
{
    return tag == TAG_REFUSED;
}

void ms_addrlimit_release(ms_addrlimit_t *al, ms_addrlimit_tag_t *tag)
{
    ms_addrlimit_tag_t t = *tag;
    *tag = 0;
    if (!(t & ~TAG_BITS))
        return; /* nothing held */
    entry_t *e = (entry_t *)(t & ~TAG_BITS);
    if (t & TAG_HANDSHAKE)
        e->handshakes--;
    else
        e->sessions--;
    drop_if_unused(al, e);
}

size_t ms_addrlimit_addresses(const ms_addrlimit_t *al)
{
    return HASH_COUNT(al->by_addr);
}

void ms_addrlimit_counts(const ms_addrlimit_t *al, const ms_addr_t *a, long *handshakes,
                         long *sessions)
{
    const entry_t *e = find(al, a);
    *handshakes = e ? (long)e->handshakes : 0;
    *sessions = e ? (long)e->sessions : 0;
}
