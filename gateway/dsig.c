/* SPDX-License-Identifier: Apache-2.0 */
/* A DirectSignal packed by hand, byte for byte as protobuf-c packs it (dsig.h). */
#include <string.h>

#include "dsig.h"

static size_t varint_len(uint64_t v)
{
    size_t n = 1;
    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

/* proto3: a zero number and an empty string or bytes are not written. */
static size_t num_size(uint64_t v)
{
    return v ? 1 + varint_len(v) : 0;
}

static size_t bytes_size(size_t len)
{
    return len ? 1 + varint_len(len) + len : 0;
}

static size_t str_len(const char *s)
{
    return s ? strlen(s) : 0;
}

static uint8_t *put_num(uint8_t *p, uint8_t tag, uint64_t v)
{
    if (!v)
        return p;
    *p++ = tag;
    return ms_dsig_put_varint(p, v);
}

static uint8_t *put_bytes(uint8_t *p, uint8_t tag, const void *data, size_t len)
{
    if (!len)
        return p;
    *p++ = tag;
    p = ms_dsig_put_varint(p, len);
    memcpy(p, data, len);
    return p + len;
}

size_t ms_dsig_measure(const Meshsig__Bus__DirectSignal *ds, ms_dsig_lens_t *l)
{
    if (ds->payload)
        return 0;
    l->namespace_ = str_len(ds->namespace_);
    l->from_peer = str_len(ds->from_peer);
    l->to_peer = str_len(ds->to_peer);
    l->client_id = str_len(ds->client_id);
    l->peerjs_type = str_len(ds->peerjs_type);
    /* kind is an enum: protobuf-c packs it as a (sign-extended) int32 varint. */
    return num_size((uint64_t)(int64_t)ds->kind) + num_size(ds->shard) + num_size(ds->epoch) +
           bytes_size(l->namespace_) + bytes_size(l->from_peer) + num_size(ds->from_session) +
           bytes_size(l->to_peer) + num_size(ds->to_session) + bytes_size(ds->payload_json.len) +
           bytes_size(l->client_id) + num_size(ds->origin_us) + num_size(ds->owner_too ? 1 : 0) +
           bytes_size(l->peerjs_type);
}

size_t ms_dsig_put(const Meshsig__Bus__DirectSignal *ds, const ms_dsig_lens_t *l, uint8_t *out)
{
    uint8_t *p = out;
    p = put_num(p, MS_DSIG_T_KIND, (uint64_t)(int64_t)ds->kind);
    p = put_num(p, MS_DSIG_T_SHARD, ds->shard);
    p = put_num(p, MS_DSIG_T_EPOCH, ds->epoch);
    p = put_bytes(p, MS_DSIG_T_NAMESPACE, ds->namespace_, l->namespace_);
    p = put_bytes(p, MS_DSIG_T_FROM_PEER, ds->from_peer, l->from_peer);
    p = put_num(p, MS_DSIG_T_FROM_SESSION, ds->from_session);
    p = put_bytes(p, MS_DSIG_T_TO_PEER, ds->to_peer, l->to_peer);
    p = put_num(p, MS_DSIG_T_TO_SESSION, ds->to_session);
    p = put_bytes(p, MS_DSIG_T_PAYLOAD_JSON, ds->payload_json.data, ds->payload_json.len);
    p = put_bytes(p, MS_DSIG_T_CLIENT_ID, ds->client_id, l->client_id);
    p = put_num(p, MS_DSIG_T_ORIGIN_US, ds->origin_us);
    p = put_num(p, MS_DSIG_T_OWNER_TOO, ds->owner_too ? 1 : 0);
    p = put_bytes(p, MS_DSIG_T_PEERJS_TYPE, ds->peerjs_type, l->peerjs_type);
    return (size_t)(p - out);
}

size_t ms_dsig_size(const Meshsig__Bus__DirectSignal *ds)
{
    ms_dsig_lens_t l;
    return ms_dsig_measure(ds, &l);
}

size_t ms_dsig_write(const Meshsig__Bus__DirectSignal *ds, uint8_t *out)
{
    ms_dsig_lens_t l;
    (void)ms_dsig_measure(ds, &l);
    return ms_dsig_put(ds, &l, out);
}
