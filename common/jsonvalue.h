/* SPDX-License-Identifier: Apache-2.0 */
/* A meshsig.v1.Value built straight from JSON text the scanner vouched for, without jansson.
 *
 * The codec (codec.h) parses JSON into a jansson tree and converts that; a
 * signal payload the gateway already scanned (jsonscan.h) needs neither step:
 * this walks the text once more and allocates the Value as
 * protobuf_c_message_unpack would, so ms_codec_free (or
 * meshsig__v1__value__free_unpacked) frees it. The result equals what
 * ms_codec_from_json gives for the same text (numbers: integers through long
 * long as jansson reads them, reals by strtod), which the PeerJS fuzz target
 * checks.
 *
 * Reentrant; no shared state.
 */
#ifndef MS_JSONVALUE_H
#define MS_JSONVALUE_H

#include <stddef.h>

#include "client.pb-c.h"
#include "err.h"

/* json[0..len) must be one value that ms_json_scan vouched for (no leading
 * or trailing text): anything else is MS_ERR_INVAL. MS_ERR_NOMEM. */
ms_err_t ms_json_value_build(const char *json, size_t len, Meshsig__V1__Value **out);

#endif
