/* SPDX-License-Identifier: Apache-2.0 */
/* The request id of a client frame that the gateway will not decode (over the rate limit, or
 * refused before its decoder), so that the error still answers the request (README "Wire
 * protocol": one reply per request id).
 *
 * A scan, never a decode: a top-level "id" string in JSON (the first one; escaped ids are not
 * read), field 1 of ClientMessage in protobuf (the first length-delimited one). Pure; any thread.
 */
#ifndef MS_FRAMEID_H
#define MS_FRAMEID_H

#include <stddef.h>

/* Writes the id of frame data (binary: protobuf, else JSON) into out (cap bytes, NUL-terminated),
 * or "" when there is none, it does not fit, or the frame is not well-formed that far. */
void ms_frame_id(const unsigned char *data, size_t len, int binary, char *out, size_t cap);

#endif
