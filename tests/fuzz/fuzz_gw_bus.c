/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer target: bus messages as the gateway receives them (a coordinator's GatewayBatch of
 * deliveries, another gateway's batch of direct signals, a ResyncRequest), decoded and re-encoded
 * for both client encodings.
 *
 * Both are checked against the bus limits and unpacked as gateway.c does
 * (ms_pblimit_unpack). A batch is first offered to the hand decoder of direct
 * batches (gateway/dbatch.c), as intake.c does: whatever it takes must be what
 * protobuf-c reads (dbatchref.h), or the target aborts. For each delivery the gateway writes the
 * ServerMessage to its client as JSON (meshsig.v1.json) or protobuf (meshsig.v1.proto); both
 * writers run here on every decoded message. The session lookup and the lws write around them are
 * not driven (they need a live libwebsockets context). The first byte picks
 * the message type; the rest may be a nesting recipe (nest.h).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "bus.pb-c.h"
#include "client.pb-c.h"
#include "codec.h"
#include "dbatchref.h"
#include "nest.h"
#include "pblimit.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void encode_both(const Meshsig__V1__ServerMessage *m)
{
    char *json = NULL;
    size_t len = 0, cap = 0;
    if (ms_codec_append_json(&m->base, &json, &len, &cap) == MS_OK) {
        /* A JSON client's SDK parses what we write: it must be JSON the codec
         * reads, or over one of its limits (see fuzz_client_proto.c). */
        ProtobufCMessage *back = NULL;
        ms_codec_error_t err;
        ms_err_t rc =
            ms_codec_from_json(&meshsig__v1__server_message__descriptor, json, len, &back, &err);
        if (rc != MS_OK && rc != MS_ERR_INVAL)
            abort();
        ms_codec_free(back);
    }
    free(json);
    size_t n = meshsig__v1__server_message__get_packed_size(m);
    uint8_t *buf = malloc(n ? n : 1);
    if (!buf)
        abort();
    if (meshsig__v1__server_message__pack(m, buf) != n)
        abort();
    free(buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    int kind = data[0] & 1;
    uint8_t *nested = NULL;
    size_t len = size - 1;
    if (nest_expand(data + 1, size - 1, &nested, &len) < 0)
        return 0;
    const uint8_t *in = nested ? nested : data + 1;
    if (kind == 0) {
        if (dbatchref_check(in, len) < 0)
            abort();
        Meshsig__Bus__GatewayBatch *b = (Meshsig__Bus__GatewayBatch *)ms_pblimit_unpack(
            &meshsig__bus__gateway_batch__descriptor, in, len, &ms_pblimit_bus, NULL, 0);
        if (b) {
            for (size_t i = 0; i < b->n_deliveries; i++)
                if (b->deliveries[i]->msg)
                    encode_both(b->deliveries[i]->msg);
            meshsig__bus__gateway_batch__free_unpacked(b, NULL);
        }
    } else {
        Meshsig__Bus__ResyncRequest *rq = (Meshsig__Bus__ResyncRequest *)ms_pblimit_unpack(
            &meshsig__bus__resync_request__descriptor, in, len, &ms_pblimit_bus, NULL, 0);
        if (rq)
            meshsig__bus__resync_request__free_unpacked(rq, NULL);
    }
    free(nested);
    return 0;
}
