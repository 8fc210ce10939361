/* SPDX-License-Identifier: Apache-2.0 */
/* A DirectSignal (proto/bus.proto) packed by hand: the direct path's per-signal encoder.
 *
 * protobuf-c packs a message by walking its descriptor twice (once for the size,
 * once to write), which was a tenth of a gateway's user-space instructions per
 * signal across gateways. These write the same bytes as
 * meshsig__bus__direct_signal__pack (fields in number order, proto3 defaults
 * left out; tests/unit/test_dsig.c compares the two), in one pass over known
 * fields. A signal with a decoded payload (field 10, a Value) is left to
 * protobuf-c: ms_dsig_size says 0 for it.
 */
#ifndef MS_DSIG_H
#define MS_DSIG_H

#include <stddef.h>
#include <stdint.h>

#include "bus.pb-c.h"

/* Tags (field << 3 | wire type) of DirectSignal's fields, all one byte: the encoder here and
 * the decoder of a received batch (dbatch.c) read and write the same ones. */
enum {
    MS_DSIG_T_KIND = 1 << 3,
    MS_DSIG_T_SHARD = 2 << 3,
    MS_DSIG_T_EPOCH = 3 << 3,
    MS_DSIG_T_NAMESPACE = 4 << 3 | 2,
    MS_DSIG_T_FROM_PEER = 5 << 3 | 2,
    MS_DSIG_T_FROM_SESSION = 6 << 3,
    MS_DSIG_T_TO_PEER = 7 << 3 | 2,
    MS_DSIG_T_TO_SESSION = 8 << 3,
    MS_DSIG_T_PAYLOAD_JSON = 9 << 3 | 2,
    MS_DSIG_T_CLIENT_ID = 11 << 3 | 2,
    MS_DSIG_T_ORIGIN_US = 12 << 3,
    MS_DSIG_T_OWNER_TOO = 13 << 3,
    MS_DSIG_T_PEERJS_TYPE = 14 << 3 | 2,
};

/* Writes v as a protobuf varint at p; returns the byte after it (at most 10 bytes). */
static inline uint8_t *ms_dsig_put_varint(uint8_t *p, uint64_t v)
{
    while (v >= 0x80) {
        *p++ = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    *p++ = (uint8_t)v;
    return p;
}

/* The lengths of ds's strings, taken once by ms_dsig_measure for ms_dsig_put. */
typedef struct {
    size_t namespace_, from_peer, to_peer, client_id, peerjs_type;
} ms_dsig_lens_t;

/* The packed size of ds, or 0 when ds has a decoded payload (pack it with protobuf-c). */
size_t ms_dsig_size(const Meshsig__Bus__DirectSignal *ds);
/* Writes ds (ms_dsig_size(ds) bytes, which must be > 0) to out; returns that size. */
size_t ms_dsig_write(const Meshsig__Bus__DirectSignal *ds, uint8_t *out);

/* ms_dsig_size, keeping the string lengths in *lens for ms_dsig_put. */
size_t ms_dsig_measure(const Meshsig__Bus__DirectSignal *ds, ms_dsig_lens_t *lens);
/* ms_dsig_write with the lengths ms_dsig_measure took of the same ds. */
size_t ms_dsig_put(const Meshsig__Bus__DirectSignal *ds, const ms_dsig_lens_t *lens, uint8_t *out);

#endif
