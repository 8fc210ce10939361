/* SPDX-License-Identifier: Apache-2.0 */
/* A GatewayBatch of direct signals decoded by hand, as protobuf-c decodes it (dbatch.h). */
#include <stdbool.h>

#include "dbatch.h"
#include "dsig.h"
#include "jsonscan.h"

/* GatewayBatch's tags (field << 3 | wire type) this decoder takes, all one byte;
 * DirectSignal's are the encoder's (dsig.h). */
enum {
    B_SHARD = 1 << 3,
    B_EPOCH = 2 << 3,
    B_COORDINATOR_ID = 3 << 3 | 2,
    B_GATEWAY_ID = 5 << 3 | 2,
    B_DIRECT = 6 << 3 | 2,
    B_BUS_VERSION = 15 << 3,
};

typedef struct {
    const uint8_t *p, *end;
} rd_t;

/* A varint of at most 10 bytes whose value fits 64 bits (a tenth byte over 1
 * has bits protobuf-c drops: refused rather than read differently). */
static inline bool rd_varint(rd_t *r, uint64_t *v)
{
    /* One byte: tags' neighbours, lengths under 128, small numbers. */
    if (r->p < r->end && !(*r->p & 0x80)) {
        *v = *r->p++;
        return true;
    }
    uint64_t x = 0;
    for (int i = 0; i < 10 && r->p < r->end; i++) {
        uint8_t b = *r->p++;
        if (i == 9 && b > 1)
            return false;
        x |= (uint64_t)(b & 0x7f) << (7 * i);
        if (!(b & 0x80)) {
            *v = x;
            return true;
        }
    }
    return false;
}

static bool rd_u32(rd_t *r, uint32_t *v)
{
    uint64_t x;
    if (!rd_varint(r, &x) || x > UINT32_MAX)
        return false;
    *v = (uint32_t)x;
    return true;
}

/* A length-delimited field's bytes. protobuf-c reads the length in at most 5
 * bytes; the length may not pass the end of what encloses it. */
static bool rd_span(rd_t *r, const uint8_t **s, size_t *n)
{
    const uint8_t *start = r->p;
    uint64_t x;
    if (!rd_varint(r, &x) || r->p - start > 5 || x > (uint64_t)(r->end - r->p))
        return false;
    *s = r->p;
    *n = (size_t)x;
    r->p += x;
    return true;
}

/* A string field: copied with its terminating NUL, as protobuf-c does. Not
 * UTF-8: ms_pblimit_check refuses the batch (proto3 strings are UTF-8). */
static bool rd_str(rd_t *r, ms_pbarena_t *a, char **out)
{
    const uint8_t *s;
    size_t n;
    if (!rd_span(r, &s, &n))
        return false;
    char *c = a->alloc.alloc(a->alloc.allocator_data, n + 1);
    if (!c)
        return false;
    /* Ids are short and ASCII: copied and checked in one pass, the full
     * UTF-8 check only when a byte has its top bit set. */
    uint8_t high = 0;
    for (size_t i = 0; i < n; i++) {
        c[i] = (char)s[i];
        high |= s[i];
    }
    c[n] = '\0';
    if ((high & 0x80) && !ms_utf8_valid(c, n))
        return false;
    *out = c;
    return true;
}

static bool rd_signal(rd_t *r, ms_pbarena_t *a, Meshsig__Bus__DirectSignal *ds)
{
    meshsig__bus__direct_signal__init(ds);
    /* Every round consumes at least the tag byte. */
    while (r->p < r->end) {
        uint8_t tag = *r->p++;
        uint64_t v;
        bool ok;
        switch (tag) {
        case MS_DSIG_T_KIND:
            /* An enum is an int32 to protobuf-c; senders write only 0..4. */
            ok = rd_varint(r, &v) && v <= INT32_MAX;
            if (ok)
                ds->kind = (Meshsig__Bus__DirectSignal__Kind)v;
            break;
        case MS_DSIG_T_SHARD:
            ok = rd_u32(r, &ds->shard);
            break;
        case MS_DSIG_T_EPOCH:
            ok = rd_varint(r, &ds->epoch);
            break;
        case MS_DSIG_T_NAMESPACE:
            ok = rd_str(r, a, &ds->namespace_);
            break;
        case MS_DSIG_T_FROM_PEER:
            ok = rd_str(r, a, &ds->from_peer);
            break;
        case MS_DSIG_T_FROM_SESSION:
            ok = rd_varint(r, &ds->from_session);
            break;
        case MS_DSIG_T_TO_PEER:
            ok = rd_str(r, a, &ds->to_peer);
            break;
        case MS_DSIG_T_TO_SESSION:
            ok = rd_varint(r, &ds->to_session);
            break;
        case MS_DSIG_T_PAYLOAD_JSON: {
            /* Bytes need no terminator: they stay in the caller's buffer. */
            const uint8_t *s;
            size_t n;
            ok = rd_span(r, &s, &n);
            if (ok) {
                ds->payload_json.data = n ? (uint8_t *)s : NULL;
                ds->payload_json.len = n;
            }
            break;
        }
        case MS_DSIG_T_CLIENT_ID:
            ok = rd_str(r, a, &ds->client_id);
            break;
        case MS_DSIG_T_ORIGIN_US:
            ok = rd_varint(r, &ds->origin_us);
            break;
        case MS_DSIG_T_OWNER_TOO:
            ok = rd_varint(r, &v) && v <= 1;
            if (ok)
                ds->owner_too = (protobuf_c_boolean)v;
            break;
        case MS_DSIG_T_PEERJS_TYPE:
            ok = rd_str(r, a, &ds->peerjs_type);
            break;
        default:
            /* A decoded payload, an unknown field, another wire type, a longer tag. */
            return false;
        }
        if (!ok)
            return false;
    }
    return true;
}

/* The first pass: the batch's top-level framing (each field whole inside len)
 * and how many direct signals it holds. */
static bool count_direct(const uint8_t *data, size_t len, size_t *n)
{
    rd_t r = {data, data + len};
    *n = 0;
    while (r.p < r.end) {
        uint8_t tag = *r.p++;
        uint64_t v;
        const uint8_t *s;
        size_t sn;
        switch (tag) {
        case B_SHARD:
        case B_EPOCH:
        case B_BUS_VERSION:
            if (!rd_varint(&r, &v))
                return false;
            break;
        case B_DIRECT:
            (*n)++;
            /* fall through */
        case B_COORDINATOR_ID:
        case B_GATEWAY_ID:
            if (!rd_span(&r, &s, &sn))
                return false;
            break;
        default:
            return false; /* deliveries (a coordinator's batch), unknown, or malformed */
        }
    }
    return true;
}

Meshsig__Bus__GatewayBatch *ms_dbatch_decode(const uint8_t *data, size_t len, ms_pbarena_t *arena)
{
    size_t n;
    if ((!data && len) || !count_direct(data, len, &n))
        return NULL;
    void *(*alloc)(void *, size_t) = arena->alloc.alloc;
    void *ud = arena->alloc.allocator_data;
    Meshsig__Bus__GatewayBatch *b = alloc(ud, sizeof(*b));
    if (!b)
        return NULL;
    meshsig__bus__gateway_batch__init(b);
    if (n) {
        /* n <= len / 2: each signal took a tag and a length byte. */
        Meshsig__Bus__DirectSignal **v = alloc(ud, n * sizeof(*v));
        Meshsig__Bus__DirectSignal *ds = alloc(ud, n * sizeof(*ds));
        if (!v || !ds)
            return NULL;
        for (size_t i = 0; i < n; i++)
            v[i] = &ds[i];
        b->direct = v;
    }
    /* The framing is known good: every read below stays inside it. */
    rd_t r = {data, data + len};
    while (r.p < r.end) {
        uint8_t tag = *r.p++;
        bool ok;
        switch (tag) {
        case B_SHARD:
            ok = rd_u32(&r, &b->shard);
            break;
        case B_EPOCH:
            ok = rd_varint(&r, &b->epoch);
            break;
        case B_BUS_VERSION:
            ok = rd_u32(&r, &b->bus_version);
            break;
        case B_COORDINATOR_ID:
            ok = rd_str(&r, arena, &b->coordinator_id);
            break;
        case B_GATEWAY_ID:
            ok = rd_str(&r, arena, &b->gateway_id);
            break;
        case B_DIRECT: {
            const uint8_t *s;
            size_t sn;
            ok = rd_span(&r, &s, &sn);
            if (ok) {
                rd_t sub = {s, s + sn};
                ok = b->n_direct < n && rd_signal(&sub, arena, b->direct[b->n_direct]);
                b->n_direct++;
            }
            break;
        }
        default:
            ok = false;
            break;
        }
        if (!ok)
            return NULL;
    }
    return b;
}
