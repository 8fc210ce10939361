/* SPDX-License-Identifier: Apache-2.0 */
/* Checks protobuf wire bytes against nesting, count and length limits before they are unpacked.
 *
 * protobuf_c_message_unpack recurses once per nested message and has no depth
 * limit: a 60 KB frame of lists nested a few thousand deep overflows the
 * stack. ms_pblimit_check walks the wire format with its own bounded stack,
 * guided by the descriptors, and refuses input over the limits before
 * protobuf-c sees it; ms_pblimit_unpack does both. Every protobuf decode of
 * bytes from outside the process (client frames, bus messages, stored
 * records) goes through it.
 *
 * Depth is counted as the message's JSON would nest (codec.h), so a binary
 * client and a JSON client meet the same limits: Value is transparent, Struct,
 * ListValue, messages, maps and arrays of repeated fields each add a level.
 *
 * Thread safety: reentrant; no shared state.
 */
#ifndef MS_PBLIMIT_H
#define MS_PBLIMIT_H

#include <stddef.h>
#include <protobuf-c/protobuf-c.h>

#include "err.h"

typedef struct {
    int max_depth;       /* JSON nesting, the outermost message counting as one */
    size_t max_elements; /* per array or object, and per message over all its repeated fields */
    size_t max_string;   /* bytes of one string, bytes value or map key */
} ms_pblimit_t;

/* What a client may send: the codec's limits (codec.h). */
extern const ms_pblimit_t ms_pblimit_client;
/* Bus messages: client values wrapped in a server message (MS_CODEC_WRAP_DEPTH)
 * and in a bus envelope; counts and lengths are bounded by the NATS payload. */
extern const ms_pblimit_t ms_pblimit_bus;

/* MS_OK when data is well-formed protobuf framing for desc within lim;
 * MS_ERR_INVAL otherwise, with a reason in why (may be NULL) that names the
 * limit, e.g. "nested deeper than 64 levels". Fields unknown to desc are
 * skipped, not descended into (protobuf-c keeps them as opaque bytes). It does
 * not check everything protobuf-c checks (e.g. a varint where a message is
 * declared is left to unpack to refuse). */
ms_err_t ms_pblimit_check(const ProtobufCMessageDescriptor *desc, const uint8_t *data, size_t len,
                          const ms_pblimit_t *lim, char *why, size_t why_len);

/* ms_pblimit_check, then protobuf_c_message_unpack with the default
 * allocator: a new message, or NULL (why says which, when it was a limit or
 * the framing; "not a <type>" when protobuf-c refused it). */
ProtobufCMessage *ms_pblimit_unpack(const ProtobufCMessageDescriptor *desc, const uint8_t *data,
                                    size_t len, const ms_pblimit_t *lim, char *why, size_t why_len);

#endif
