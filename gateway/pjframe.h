/* SPDX-License-Identifier: Apache-2.0 */
/* PeerJS client frames read by a scan and server frames written by splicing, without jansson.
 *
 * A PeerJS client sends {type, dst, payload} (npm `peerjs`: JSON.stringify of
 * exactly these); the server sends {type, src, dst, payload}. Relaying one is
 * copying the payload's text between two fixed heads, as relay.c does for
 * meshsig's own JSON signals. ms_pjframe_scan vouches only for frames that
 * peerjs.c's full decoder (jansson with JSON_REJECT_DUPLICATES, then the
 * codec's limits) would relay the same way: an object of the keys type, dst
 * and payload, each at most once, type one of the relayed ones and a plain
 * string, dst a plain non-empty string of at most MS_PJFRAME_ID_MAX bytes,
 * payload any value common/jsonscan.h vouches for. HEARTBEAT is vouched for
 * too (it is only a sign of life). Anything else, invalid or merely unusual
 * (escapes in type or dst, other keys, a duplicate key), is left to the full
 * decoder, which decides.
 *
 * Pure: no allocation, no state; any thread.
 */
#ifndef MS_GW_PJFRAME_H
#define MS_GW_PJFRAME_H

#include <stddef.h>

#include "client.pb-c.h"
#include "err.h"

#define MS_PJFRAME_ID_MAX 128

typedef enum {
    MS_PJFRAME_HEARTBEAT = 1, /* nothing to do */
    MS_PJFRAME_SIGNAL,        /* relay {type, payload} to dst */
} ms_pjframe_op_t;

typedef struct ms_pjframe {
    ms_pjframe_op_t op;
    const char *type; /* MS_PJFRAME_SIGNAL: a static string, "OFFER", ... */
    int expires;      /* an absent dst is answered with EXPIRE (not for LEAVE and EXPIRE) */
    size_t type_len, dst_len;
    char dst[MS_PJFRAME_ID_MAX + 1];
    const char *payload; /* inside the frame; NULL: the frame has none */
    size_t payload_len;
} ms_pjframe_t;

/* 1 when data[0..len) is a frame the scan vouches for (out filled), 0 when
 * the full decoder must decide. Frames as the PeerJS client writes them
 * (compact, type first, then dst and payload in either order) are read by a
 * walk that expects exactly that; any other layout takes ms_pjframe_scan_any,
 * which decides. */
int ms_pjframe_scan(const char *data, size_t len, ms_pjframe_t *out);

/* The general scan alone (any member order, whitespace): what ms_pjframe_scan
 * falls back to, and the reference it must agree with (tests, fuzz_pjframe). */
int ms_pjframe_scan_any(const char *data, size_t len, ms_pjframe_t *out);

/* The relayed type named `name` (the static string), or NULL: not one PeerJS relays. */
const char *ms_pjframe_type(const char *name);
/* The same, and its length in *len (when len is not NULL). */
const char *ms_pjframe_type_n(const char *name, size_t *len);

/* Bytes ms_pjframe_write needs for these parts. */
size_t ms_pjframe_size(const char *type, const char *src, const char *dst, size_t payload_len);

/* The same two with the lengths known (type_len, src_len, dst_len: strlen of
 * each): the relay's path, which knows them from the scan. */
static inline size_t ms_pjframe_size_n(size_t type_len, size_t src_len, size_t dst_len,
                                       size_t payload_len)
{
    /* {"type":"","src":"","dst":"","payload":} is 40 bytes */
    return 40 + type_len + src_len + dst_len + payload_len;
}
size_t ms_pjframe_write_n(char *out, const char *type, size_t type_len, const char *src,
                          size_t src_len, const char *dst, size_t dst_len, const char *payload,
                          size_t payload_len);

/* Writes {"type":T,"src":S,"dst":D,"payload":P} (no payload member when
 * payload is NULL) into out, which holds ms_pjframe_size bytes; returns the
 * length. type, src and dst must need no JSON escaping (PeerJS message types;
 * peer ids, which the owner restricts to A-Z a-z 0-9 . _ : @ -); payload is
 * JSON text. */
size_t ms_pjframe_write(char *out, const char *type, const char *src, const char *dst,
                        const char *payload, size_t payload_len);

/* A scanned signal as the Value {type, payload} the owner's path carries
 * (bus ShardRequest.client.signal.payload): body, with the payload built
 * from its text without jansson (common/jsonvalue.h) and the rest pointing
 * into the struct and into f. */
typedef struct {
    Meshsig__V1__Value body, type;
    Meshsig__V1__Struct st;
    Meshsig__V1__Struct__FieldsEntry e_type, e_payload, *fields[2];
    ProtobufCMessage *payload; /* owned */
} ms_pjframe_value_t;

/* MS_OK, or MS_ERR_NOMEM (the full decoder then decides).
 * f must outlive v; ms_pjframe_value_cleanup frees the payload. */
ms_err_t ms_pjframe_value_init(ms_pjframe_value_t *v, const ms_pjframe_t *f);
void ms_pjframe_value_cleanup(ms_pjframe_value_t *v);

/* The frame for a signal (from, payload) to peer `to`, as the owner's path
 * delivers it: payload is the Value {type, payload} a PeerJS sender's frame
 * became. Appended at *len of *buf (grown with realloc; *cap its size), the
 * inner payload written by the codec (common/codec.h). MS_ERR_INVAL: not a
 * signal this writer vouches for (no payload object, a type that is not a
 * string or needs escaping, a key twice, ids that need escaping, a value the
 * codec cannot write); *len is then unchanged and the caller's jansson path
 * decides. MS_ERR_NOMEM. */
ms_err_t ms_pjframe_append_signal(char **buf, size_t *len, size_t *cap, const char *from,
                                  const char *to, const Meshsig__V1__Value *payload);

#endif
