/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer target: the native JSON signal scan (gateway/sigframe.c), its walk against its
 * general scan and both against the full decoder (sigref.h).
 *
 * The gateway copies the payload of what ms_sigframe_scan vouches for straight to the receiver
 * (relay.c), or into a DirectSignal for another gateway: it must be what jansson and the codec
 * read from the frame, and the walk for the clients' layout must read what the general scan
 * reads, or a client on the fast path is relayed another signal than on the slow one.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sigref.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* A private copy whose end is the end of the allocation, so that ASan sees any read
     * past it. */
    char *buf = malloc(size ? size : 1);
    if (!buf)
        return 0;
    memcpy(buf, data, size);
    int took;
    const char *why = sigref_check(buf, size, &took);
    if (why) {
        fprintf(stderr, "%s: %.*s\n", why, (int)size, buf);
        abort();
    }
    free(buf);
    return 0;
}
