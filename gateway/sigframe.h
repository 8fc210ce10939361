/* SPDX-License-Identifier: Apache-2.0 */
/* Native JSON signal frames ({"id"?, "signal": {"to", "from"?, "payload"?}}) read by a scan,
 * without jansson.
 *
 * A signal between neighbours is relayed by copying its payload's text (relay.c). The scan
 * vouches only for frames that the full decoder (jansson with JSON_REJECT_DUPLICATES, then
 * the codec) would read the same way: an object of the keys id and signal, each at most once,
 * id a plain string (no escapes) of at most MS_SIGFRAME_ID_MAX bytes; signal an object of the
 * keys to (required), from (ignored: the sender is the session) and payload, each at most
 * once, to a plain string of at most MS_SIGFRAME_ID_MAX bytes, payload any value
 * common/jsonscan.h vouches for. Anything else is left to the full decoder, which decides.
 *
 * Pure: no allocation, no state; any thread.
 */
#ifndef MS_GW_SIGFRAME_H
#define MS_GW_SIGFRAME_H

#include <stddef.h>

#define MS_SIGFRAME_ID_MAX 128

typedef struct ms_sigframe {
    size_t to_len, id_len;
    const char *payload; /* inside the frame; NULL: the signal has none */
    size_t payload_len;
    char to[MS_SIGFRAME_ID_MAX + 1];
    char id[MS_SIGFRAME_ID_MAX + 1]; /* "" when the frame has none */
} ms_sigframe_t;

/* 1 when data[0..len) is a frame the scan vouches for (out filled), 0 when the full decoder
 * must decide. Frames as clients write them (compact: an optional "id" first, then "signal"
 * with "to" and an optional "payload"; the JS SDK's and the load generator's) are read by a
 * walk that expects exactly that; any other layout takes ms_sigframe_scan_any, which decides. */
int ms_sigframe_scan(const char *data, size_t len, ms_sigframe_t *out);

/* The general scan alone (any member order, whitespace, "from"): what ms_sigframe_scan falls
 * back to, and the reference its walk must agree with (tests, fuzz_sigframe). */
int ms_sigframe_scan_any(const char *data, size_t len, ms_sigframe_t *out);

/* The walk alone: 1 (out filled, as ms_sigframe_scan_any would fill it), or 0 for anything it
 * does not expect (the general scan then decides). For the tests. */
int ms_sigframe_scan_compact(const char *data, size_t len, ms_sigframe_t *out);

#endif
