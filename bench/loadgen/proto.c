/* SPDX-License-Identifier: Apache-2.0 */
/* The two signaling protocols the load generator speaks: meshsig JSON and PeerJS server. */
#include "proto.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- a tiny JSON scanner: just enough to find members of objects we know the shape of ---- */

static const char *skip_ws(const char *p, const char *end)
{
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
        p++;
    return p;
}

static const char *skip_string(const char *p, const char *end)
{
    for (p++; p < end; p++) {
        if (*p == '\\')
            p++;
        else if (*p == '"')
            return p + 1;
    }
    return NULL;
}

/* Returns the first byte after the JSON value at p, or NULL if it is malformed or cut short. */
static const char *skip_value(const char *p, const char *end)
{
    p = skip_ws(p, end);
    if (p >= end)
        return NULL;
    if (*p == '"')
        return skip_string(p, end);
    if (*p == '{' || *p == '[') {
        int depth = 0;
        while (p < end) {
            if (*p == '"') {
                p = skip_string(p, end);
                if (!p)
                    return NULL;
                continue;
            }
            if (*p == '{' || *p == '[')
                depth++;
            else if (*p == '}' || *p == ']') {
                if (--depth == 0)
                    return p + 1;
            }
            p++;
        }
        return NULL;
    }
    while (p < end && *p != ',' && *p != '}' && *p != ']' && *p != ' ' && *p != '\n')
        p++;
    return p;
}

/* Finds member `key` of the object at p; returns its value's first byte and sets *vend. */
static const char *member(const char *p, const char *end, const char *key, const char **vend)
{
    size_t klen = strlen(key);
    p = skip_ws(p, end);
    if (p >= end || *p != '{')
        return NULL;
    p++;
    for (;;) {
        p = skip_ws(p, end);
        if (p >= end || *p != '"')
            return NULL;
        const char *ks = p + 1;
        const char *ke = skip_string(p, end);
        if (!ke)
            return NULL;
        int match = (size_t)(ke - 1 - ks) == klen && memcmp(ks, key, klen) == 0;
        p = skip_ws(ke, end);
        if (p >= end || *p != ':')
            return NULL;
        p = skip_ws(p + 1, end);
        const char *ve = skip_value(p, end);
        if (!ve)
            return NULL;
        if (match) {
            *vend = ve;
            return p;
        }
        p = skip_ws(ve, end);
        if (p >= end || *p != ',')
            return NULL;
        p++;
    }
}

/* Reads a member that is a decimal number, written either bare or as a string. */
static int member_u64(const char *p, const char *end, const char *key, uint64_t *out)
{
    const char *ve;
    const char *v = member(p, end, key, &ve);
    if (!v)
        return -1;
    if (*v == '"')
        v++;
    if (v >= ve || *v < '0' || *v > '9')
        return -1;
    uint64_t x = 0;
    while (v < ve && *v >= '0' && *v <= '9')
        x = x * 10 + (uint64_t)(*v++ - '0');
    *out = x;
    return 0;
}

static int streq(const char *v, const char *ve, const char *s)
{
    size_t n = strlen(s);
    return (size_t)(ve - v) == n + 2 && v[0] == '"' && memcmp(v + 1, s, n) == 0;
}

static int parse_payload(const char *p, const char *end, ms_lg_msg_t *m)
{
    uint64_t src = 0;
    if (member_u64(p, end, "ts", &m->ts) || member_u64(p, end, "seq", &m->seq) ||
        member_u64(p, end, "src", &src))
        return -1;
    m->src = (uint32_t)src;
    return 0;
}

/* ---- the payload both protocols carry ---- */

/* SDP-looking filler with nothing a JSON encoder would escape. */
static const char sdp_filler[] =
    "v=0 o=- 4611731400430051336 2 IN IP4 127.0.0.1 s=- t=0 0 a=group:BUNDLE 0 "
    "a=extmap-allow-mixed a=msid-semantic: WMS m=application 9 UDP-DTLS-SCTP webrtc-datachannel "
    "c=IN IP4 0.0.0.0 a=ice-ufrag:x8Yq a=ice-pwd:9p1kqVHYJbW3xJm0n7rUuCz2 a=ice-options:trickle "
    "a=fingerprint:sha-256 6B:8B:F0:65:5F:78:E2:51:3B:AC:6F:F3:3F:46:1B:35:DC:B8:5F:64:1A:24:"
    "C6:1F:8A:5C:11:D3:7E:63:0A:91 a=setup:actpass a=mid:0 a=sctp-port:5000 "
    "a=max-message-size:262144 ";

int ms_lg_payload(char *buf, size_t cap, size_t size, uint32_t src, uint64_t seq, uint64_t ts)
{
    int head = snprintf(
        buf, cap, "{\"type\":\"offer\",\"src\":\"%u\",\"seq\":\"%llu\",\"ts\":\"%llu\",\"sdp\":\"",
        src, (unsigned long long)seq, (unsigned long long)ts);
    if (head < 0 || (size_t)head + 3 > cap)
        return -1;
    size_t n = (size_t)head;
    size_t pad = size > n + 2 ? size - n - 2 : 0;
    if (n + pad + 3 > cap)
        pad = cap - n - 3;
    while (pad) {
        size_t k = pad < sizeof sdp_filler - 1 ? pad : sizeof sdp_filler - 1;
        memcpy(buf + n, sdp_filler, k);
        n += k;
        pad -= k;
    }
    buf[n++] = '"';
    buf[n++] = '}';
    buf[n] = 0;
    return (int)n;
}

/* ---- meshsig.v1.json ---- */

static int ms_path(char *buf, size_t cap, const char *peer)
{
    (void)peer;
    int n = snprintf(buf, cap, "/ws");
    return n < 0 || (size_t)n >= cap ? -1 : n;
}

static int ms_hello(char *buf, size_t cap, const char *ns, const char *peer)
{
    int n = snprintf(buf, cap, "{\"id\":\"1\",\"hello\":{\"namespace\":\"%s\",\"peerId\":\"%s\"}}",
                     ns, peer);
    return n < 0 || (size_t)n >= cap ? -1 : n;
}

static int ms_signal(char *buf, size_t cap, const char *to, const char *payload, size_t plen)
{
    int n =
        snprintf(buf, cap, "{\"signal\":{\"to\":\"%s\",\"payload\":%.*s}}", to, (int)plen, payload);
    return n < 0 || (size_t)n >= cap ? -1 : n;
}

static int ms_heartbeat(char *buf, size_t cap)
{
    int n = snprintf(buf, cap, "{\"ping\":{}}");
    return n < 0 || (size_t)n >= cap ? -1 : n;
}

static int ms_parse(const char *msg, size_t len, ms_lg_msg_t *m)
{
    const char *end = msg + len, *ve, *v;
    memset(m, 0, sizeof *m);
    if ((v = member(msg, end, "signal", &ve))) {
        const char *pe;
        const char *p = member(v, ve, "payload", &pe);
        if (!p || parse_payload(p, pe, m))
            return -1;
        m->ev = MS_LG_EV_SIGNAL;
        return 0;
    }
    if ((v = member(msg, end, "topology", &ve))) {
        const char *x, *xe, *pe;
        if ((x = member(v, ve, "connect", &xe)))
            m->ev = MS_LG_EV_CONNECT;
        else if ((x = member(v, ve, "disconnect", &xe)))
            m->ev = MS_LG_EV_DISCONNECT;
        const char *p = x ? member(x, xe, "peer", &pe) : NULL;
        if (p && *p == '"' && pe - p >= 2) {
            m->peer = p + 1;
            m->peer_len = (size_t)(pe - p - 2);
        }
        return 0;
    }
    if ((v = member(msg, end, "welcome", &ve))) {
        uint64_t hb = 0;
        if (member_u64(v, ve, "heartbeatMs", &hb) == 0)
            m->heartbeat_ms = (uint32_t)hb;
        m->ev = MS_LG_EV_JOINED;
        return 0;
    }
    if (member(msg, end, "error", &ve)) {
        m->ev = MS_LG_EV_ERROR;
        return 0;
    }
    m->ev = MS_LG_EV_OTHER;
    return 0;
}

const ms_lg_proto_t ms_lg_proto_meshsig = {
    .name = "meshsig",
    .subprotocol = "meshsig.v1.json",
    .hello_on_open = 1,
    .default_heartbeat_ms = 0,
    .path = ms_path,
    .hello = ms_hello,
    .signal = ms_signal,
    .heartbeat = ms_heartbeat,
    .parse = ms_parse,
};

/* ---- PeerJS server (npm `peer`) ---- */

static int pj_path(char *buf, size_t cap, const char *peer)
{
    int n = snprintf(buf, cap, "/peerjs?key=peerjs&id=%s&token=t%s", peer, peer);
    return n < 0 || (size_t)n >= cap ? -1 : n;
}

static int pj_signal(char *buf, size_t cap, const char *to, const char *payload, size_t plen)
{
    int n = snprintf(buf, cap, "{\"type\":\"OFFER\",\"dst\":\"%s\",\"payload\":%.*s}", to,
                     (int)plen, payload);
    return n < 0 || (size_t)n >= cap ? -1 : n;
}

static int pj_heartbeat(char *buf, size_t cap)
{
    int n = snprintf(buf, cap, "{\"type\":\"HEARTBEAT\"}");
    return n < 0 || (size_t)n >= cap ? -1 : n;
}

static int pj_parse(const char *msg, size_t len, ms_lg_msg_t *m)
{
    const char *end = msg + len, *ve;
    memset(m, 0, sizeof *m);
    const char *v = member(msg, end, "type", &ve);
    if (!v)
        return -1;
    if (streq(v, ve, "OFFER") || streq(v, ve, "ANSWER") || streq(v, ve, "CANDIDATE")) {
        const char *pe;
        const char *p = member(msg, end, "payload", &pe);
        if (!p || parse_payload(p, pe, m))
            return -1;
        m->ev = MS_LG_EV_SIGNAL;
    } else if (streq(v, ve, "OPEN")) {
        m->ev = MS_LG_EV_JOINED;
    } else if (streq(v, ve, "ERROR") || streq(v, ve, "ID-TAKEN") || streq(v, ve, "EXPIRE") ||
               streq(v, ve, "LEAVE")) {
        m->ev = MS_LG_EV_ERROR;
    } else {
        m->ev = MS_LG_EV_OTHER;
    }
    return 0;
}

const ms_lg_proto_t ms_lg_proto_peerjs = {
    .name = "peerjs",
    .subprotocol = NULL,
    .hello_on_open = 0,
    .default_heartbeat_ms = 5000, /* what the peerjs client library sends (pingInterval) */
    .path = pj_path,
    .hello = NULL,
    .signal = pj_signal,
    .heartbeat = pj_heartbeat,
    .parse = pj_parse,
};
