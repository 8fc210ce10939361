/* SPDX-License-Identifier: Apache-2.0 */
/* Generic protobuf <-> proto3 JSON conversion, driven by protobuf-c descriptors.
 *
 * Follows the proto3 JSON mapping: lowerCamelCase names on output (both
 * lowerCamelCase and the original snake_case accepted on input), fields at
 * their default value omitted (oneof members always written), enums by name
 * (input also accepts the number, and the name with or without the enum's
 * prefix, e.g. "PARENT" or "ROLE_PARENT"), 64-bit integers as strings on output
 * (strings or numbers on input), bytes as base64, maps as objects. The messages
 * meshsig.v1.Value, Struct and ListValue (and google.protobuf.*) map to plain
 * JSON values, objects and arrays.
 *
 * Messages built by ms_codec_from_json/from_jansson are laid out like those of
 * protobuf_c_message_unpack with the default allocator: free them with
 * ms_codec_free (== protobuf_c_message_free_unpacked(msg, NULL)).
 *
 * Thread safety: all functions are reentrant; no shared state.
 */
#ifndef MS_CODEC_H
#define MS_CODEC_H

#include <stddef.h>
#include <jansson.h>
#include <protobuf-c/protobuf-c.h>

#include "err.h"

/* Limits on what a client may send, the same on the JSON and the protobuf
 * path (common/pblimit.h checks protobuf input against them, in the same
 * terms), so whatever one client sends every other can be sent:
 * - MS_CODEC_MAX_DEPTH: most objects and arrays that may enclose a value, the
 *   outermost message counting as one (protobuf: as its JSON would nest);
 * - MS_CODEC_MAX_ELEMENTS: most elements of one array or object, and most
 *   elements over all repeated and map fields of one message;
 * - MS_CODEC_MAX_STRING: most bytes in one string, map key or bytes value
 *   (decoded).
 * Input over a limit is MS_ERR_INVAL with a message naming the limit. Output
 * may nest MS_CODEC_WRAP_DEPTH levels deeper (a server message wraps client
 * values in at most that many more levels, e.g. hello.metadata ->
 * topology.connect.metadata); deeper output is MS_ERR_INVAL. */
#define MS_CODEC_MAX_DEPTH 64
#define MS_CODEC_MAX_ELEMENTS 16384
#define MS_CODEC_MAX_STRING 65536
#define MS_CODEC_WRAP_DEPTH 4

typedef struct {
    /* Human-readable reason, e.g. "hello.namespace: expected a string". */
    char message[192];
    /* Set when the failure is an unknown field name at the top level of the
     * message (the gateway answers UNKNOWN_MESSAGE rather than BAD_REQUEST). */
    int unknown_top_level;
} ms_codec_error_t;

/* Parses JSON text into a new message of type desc.
 * MS_ERR_INVAL: not JSON, wrong types or values; MS_ERR_NOTFOUND: unknown field. */
ms_err_t ms_codec_from_json(const ProtobufCMessageDescriptor *desc, const char *json, size_t len,
                            ProtobufCMessage **out, ms_codec_error_t *err);
/* The same from an already parsed jansson value (borrowed). */
ms_err_t ms_codec_from_jansson(const ProtobufCMessageDescriptor *desc, const json_t *json,
                               ProtobufCMessage **out, ms_codec_error_t *err);

/* Writes msg as compact JSON into a new NUL-terminated malloc'd buffer. */
ms_err_t ms_codec_to_json(const ProtobufCMessage *msg, char **out, size_t *out_len);
/* Appends the JSON of msg to buf (grown with realloc as needed). buf may hold
 * reserved headroom: writing starts at *len. Used by the gateway to write
 * straight after LWS_PRE bytes. A NUL follows the text (not counted in *len).
 * Invalid UTF-8 in strings is written as U+FFFD. On failure *len is unchanged
 * (*buf and *cap may have grown). */
ms_err_t ms_codec_append_json(const ProtobufCMessage *msg, char **buf, size_t *len, size_t *cap);
/* msg as a new jansson value (caller owns the reference), or NULL on failure. */
json_t *ms_codec_to_jansson(const ProtobufCMessage *msg);

void ms_codec_free(ProtobufCMessage *msg);

#endif
