/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer target: client JSON through the codec, and what it accepts back out and in again. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "client.pb-c.h"
#include "codec.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const ProtobufCMessageDescriptor *d = &meshsig__v1__client_message__descriptor;
    ProtobufCMessage *m = NULL, *m2 = NULL;
    ms_codec_error_t err;
    char *out = NULL;
    size_t len = 0;
    ms_err_t rc = ms_codec_from_json(d, (const char *)data, size, &m, &err);
    if (rc != MS_OK) {
        if (m || (rc != MS_ERR_INVAL && rc != MS_ERR_NOTFOUND && rc != MS_ERR_NOMEM))
            abort();
        return 0;
    }
    /* Whatever is accepted must print, parse back, and pack to the same bytes. */
    if (ms_codec_to_json(m, &out, &len) != MS_OK)
        abort();
    if (ms_codec_from_json(d, out, len, &m2, &err) != MS_OK)
        abort();
    size_t l1 = protobuf_c_message_get_packed_size(m), l2 = protobuf_c_message_get_packed_size(m2);
    uint8_t *b1 = malloc(l1 + 1), *b2 = malloc(l2 + 1);
    if (!b1 || !b2)
        abort();
    protobuf_c_message_pack(m, b1);
    protobuf_c_message_pack(m2, b2);
    if (l1 != l2 || memcmp(b1, b2, l1) != 0)
        abort();
    free(b1);
    free(b2);
    free(out);
    ms_codec_free(m);
    ms_codec_free(m2);
    return 0;
}
