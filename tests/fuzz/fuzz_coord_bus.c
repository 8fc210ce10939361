/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer target: bus messages of every type as the coordinator receives them, through its
 * real dispatch (ms_coord_bus_in: subject + payload -> unpack -> handler), without NATS.
 *
 * A coordinator is built per input as the unit tests build one (no bus, no
 * lease; one shard, owned), so that a handler's state is fresh each time. One
 * input is a sequence of messages, so a join can be followed by signals,
 * emits, rooms and leaves in the same namespace:
 *   record = selector (1 byte), length (2 bytes, big-endian), payload
 * The selector's low bits pick the subject (a shard request, a coordinator or
 * gateway heartbeat, a policy update, a resync report, an admin query or
 * reply, a backend's request or info); its top bit says the payload is a
 * nesting recipe (nest.h), to which the version stamp is appended (busver.h: a
 * bus message without it is refused before it is decoded, and a recipe cannot
 * spell it; a backend request carries contract version 1 there). What the handlers send
 * back stays in the outbox and is dropped with it.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "busver.h"
#include "clock.h"
#include "fakecoord.h"
#include "nest.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_RECORDS 64

static const char *const subjects[] = {
    "meshsig.shard.0",          "meshsig.shard.0",        "meshsig.coord.heartbeat",
    "meshsig.coord.policy",     "meshsig.coord.resync.0", "meshsig.admin.query",
    "meshsig.admin.reply.fuzz", "meshsig.gw.heartbeat",   "meshsig.backend.v1.shard.0",
    "meshsig.backend.v1.info",
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ms_coord_t *c = fake_coord_new();
    size_t pos = 0;
    for (int n = 0; n < MAX_RECORDS && size - pos >= 3; n++) {
        uint8_t sel = data[pos];
        size_t len = (size_t)data[pos + 1] << 8 | data[pos + 2];
        pos += 3;
        if (len > size - pos)
            len = size - pos;
        const uint8_t *payload = data + pos;
        uint8_t *nested = NULL;
        size_t nlen = len;
        pos += len;
        if ((sel & 0x80) && nest_expand(payload, len, &nested, &nlen) <= 0)
            continue;
        const char *subj = subjects[(sel & 0x7f) % (sizeof subjects / sizeof subjects[0])];
        uint32_t stamp = strstr(subj, ".backend.") ? 1u : MS_BUS_VERSION;
        if (nested) {
            /* Field 15 (bus_version) = MS_BUS_VERSION, as a varint after the
             * rest: protobuf fields may come in any order. */
            uint8_t *v = realloc(nested, nlen + 4);
            if (!v)
                abort();
            nested = v;
            nest_put_varint(nest_put_varint(nested + nlen, MS_BUS_VERSION_FIELD << 3), stamp);
            nlen += 1 + nest_varint_len(stamp);
        }
        /* A copy whose end is the end of the allocation: ASan sees overreads. */
        uint8_t *copy = malloc(nlen ? nlen : 1);
        if (!copy)
            abort();
        memcpy(copy, nested ? nested : payload, nlen);
        /* A reply subject, so that answers are built and packed as for a real request. */
        ms_coord_bus_in(c, subj, "_INBOX.fuzz", copy, nlen);
        free(copy);
        free(nested);
    }
    /* Timers: ack and call deadlines, engine shuffles, gateway liveness. */
    ms_ns_tick_all(c, ms_clock_mono_ms() + 60000);
    ms_backend_tick(c, ms_clock_mono_ms() + 60000); /* silent backends withdrawn */
    fake_coord_free(c);
    return 0;
}
