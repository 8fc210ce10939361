/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer target: a binary (meshsig.v1.proto) client frame, as the gateway handles it.
 *
 * The gateway checks the frame against the client limits and unpacks it
 * (ms_pblimit_unpack, as gateway.c does), packs it again inside a ShardRequest
 * for the owner, and a message relayed to a JSON peer is written as JSON. All
 * three are driven here. Inputs may be nesting recipes (nest.h), so deep recursion
 * through Value/ListValue/Struct is within the fuzzer's reach.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "bus.pb-c.h"
#include "client.pb-c.h"
#include "codec.h"
#include "frameid.h"
#include "nest.h"
#include "pblimit.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t *nested = NULL;
    size_t len = size;
    int rc = nest_expand(data, size, &nested, &len);
    if (rc < 0)
        return 0;
    const uint8_t *in = nested ? nested : data;
    /* The id of a frame the gateway will not decode (over the rate; refused before decoding). */
    char id[16];
    ms_frame_id(in, len, 1, id, sizeof(id));
    for (size_t i = 0; id[i]; i++)
        if (i >= sizeof(id) - 1 || (unsigned char)id[i] < 0x20 || (unsigned char)id[i] > 0x7e)
            abort();
    char why[96];
    Meshsig__V1__ClientMessage *cm = (Meshsig__V1__ClientMessage *)ms_pblimit_unpack(
        &meshsig__v1__client_message__descriptor, in, len, &ms_pblimit_client, why, sizeof why);
    if (cm) {
        Meshsig__Bus__ShardRequest req = MESHSIG__BUS__SHARD_REQUEST__INIT;
        req.op_case = MESHSIG__BUS__SHARD_REQUEST__OP_CLIENT;
        req.client = cm;
        size_t plen = meshsig__bus__shard_request__get_packed_size(&req);
        uint8_t *packed = malloc(plen ? plen : 1);
        if (!packed)
            abort();
        if (meshsig__bus__shard_request__pack(&req, packed) != plen)
            abort();
        /* What the owner unpacks is what the client sent. */
        Meshsig__Bus__ShardRequest *back = meshsig__bus__shard_request__unpack(NULL, plen, packed);
        if (!back || !back->client)
            abort();
        meshsig__bus__shard_request__free_unpacked(back, NULL);
        free(packed);

        char *json = NULL;
        size_t jlen = 0, cap = 0;
        if (ms_codec_append_json(&cm->base, &json, &jlen, &cap) == MS_OK) {
            ProtobufCMessage *m2 = NULL;
            ms_codec_error_t err;
            /* JSON written by the codec is read back by the codec, or refused
             * as over a limit (MS_ERR_INVAL): a binary string with invalid
             * UTF-8 is written with U+FFFD (3 bytes a byte), so a string near
             * the 64 KiB limit can come out longer than the JSON reader takes
             * (tests/fuzz/RESULTS.md). Anything else is a bug. */
            ms_err_t rc =
                ms_codec_from_json(&meshsig__v1__client_message__descriptor, json, jlen, &m2, &err);
            if (rc != MS_OK && rc != MS_ERR_INVAL)
                abort();
            ms_codec_free(m2);
        }
        free(json);
        meshsig__v1__client_message__free_unpacked(cm, NULL);
    }
    free(nested);
    return 0;
}
