/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer target: the PeerJS fast path (gateway/pjframe.c), checked against the jansson path.
 *
 * The gateway splices what ms_pjframe_scan vouches for straight to the
 * receiver, or builds the bus message around its payload alone; either way it
 * must be what the full decoder would have done with the frame (pjref.h), or a
 * PeerJS client on the fast path sees another message than on the slow one.
 * An input starting with 0xff is a protobuf Value instead (as a binary client
 * could send one into a PeerJS namespace): the frame the receiver's writer
 * makes of it must be the jansson path's.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pblimit.h"
#include "pjref.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size && data[0] == 0xff) {
        Meshsig__V1__Value *v = (Meshsig__V1__Value *)ms_pblimit_unpack(
            &meshsig__v1__value__descriptor, data + 1, size - 1, &ms_pblimit_client, NULL, 0);
        if (!v)
            return 0;
        const char *why = pjref_check_value(v);
        meshsig__v1__value__free_unpacked(v, NULL);
        if (why) {
            fprintf(stderr, "%s\n", why);
            abort();
        }
        return 0;
    }
    /* A private copy whose end is the end of the allocation, so that ASan
     * sees any read past it. */
    char *buf = malloc(size ? size : 1);
    if (!buf)
        return 0;
    memcpy(buf, data, size);
    int op;
    const char *why = pjref_check(buf, size, &op);
    if (why) {
        fprintf(stderr, "%s: %.*s\n", why, (int)size, buf);
        abort();
    }
    free(buf);
    return 0;
}
