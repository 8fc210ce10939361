/* SPDX-License-Identifier: Apache-2.0 */
/* A GatewayBatch from another gateway decoded by hand: the direct path's per-batch decoder.
 *
 * The receiving gateway ran ms_pblimit_check and then protobuf-c's unpack on
 * every batch; the two generic walks were a fifth of its user-space
 * instructions per signal across gateways. A batch of direct signals has a
 * fixed shape (GatewayBatch with gateway_id and DirectSignals, nothing nested
 * deeper), so this reads it in one bounded pass: every tag, varint and length
 * is checked against the bytes that are left, and nothing recurses.
 *
 * It takes only what it reads exactly as protobuf-c would, and returns NULL
 * for everything else, for the general path (ms_pblimit_check, then
 * protobuf-c) to accept or refuse as before: a coordinator's deliveries, a
 * decoded payload (DirectSignal.payload, a Value), any field this release does
 * not know (protobuf-c keeps those, and a held or forwarded signal is packed
 * again with them), a tag in more than one byte, a number wider than its
 * field, a bool other than 0 or 1, a string that is not UTF-8 (which
 * ms_pblimit_check refuses), and anything malformed or truncated.
 * tests/unit/test_dbatch.c and tests/fuzz/fuzz_gw_bus.c compare it with
 * protobuf-c.
 */
#ifndef MS_DBATCH_H
#define MS_DBATCH_H

#include <stddef.h>
#include <stdint.h>

#include "bus.pb-c.h"
#include "pbarena.h"

/* The batch in data, allocated in arena (freed by its reset; strings are
 * copied, payload_json.data points into data, which must outlive the batch),
 * or NULL (see above; what it allocated stays in the arena until the reset).
 * Never call free_unpacked on the result. */
Meshsig__Bus__GatewayBatch *ms_dbatch_decode(const uint8_t *data, size_t len, ms_pbarena_t *arena);

#endif
