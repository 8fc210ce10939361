/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer target: the walk wsguard follows each client stream with (gateway/wswalk.c), against
 * the byte-at-a-time walk it replaced (wswalkref.h), through wswalkdiff.h: the same bytes passed
 * to lws, the same rule, the same budget clock reads and the same state after every read.
 *
 * Input: byte 0 picks the HTTP head before the stream (low 3 bits, wsdiff_heads) and whether
 * the rest is the stream itself (bit 3) or a recipe of frames (wsdiff_build: every length
 * form, mostly well formed, so that the walk gets deep); byte 1 the frame budget (1 to 8, or
 * 65535); byte 2 how often the budget's window changes; byte 3 its first value; bytes 4-7 the
 * seed of the random reads. Each stream is followed in one read, a byte a read, and in reads
 * of random sizes up to 3, 16 and 300 bytes.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "wswalk.h"
#include "wswalkdiff.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 8)
        return 0;
    const char *head = wsdiff_heads[(data[0] & 7) % WSDIFF_HEADS];
    uint16_t budget = data[1] & 0x80 ? 65535 : (uint16_t)(1 + (data[1] & 7));
    unsigned tick = data[2] % 5;
    uint8_t base = data[3];
    uint64_t seed =
        (uint64_t)data[4] << 24 | (uint64_t)data[5] << 16 | (uint64_t)data[6] << 8 | data[7];
    const uint8_t *r = data + 8;
    size_t rn = size - 8, cap = strlen(head) + (data[0] & 8 ? rn : 4 * rn + 64);
    uint8_t *s = malloc(cap);
    if (!s)
        return 0;
    size_t n;
    if (data[0] & 8) {
        n = strlen(head);
        memcpy(s, head, n);
        memcpy(s + n, r, rn);
        n += rn;
    } else {
        n = wsdiff_build(head, r, rn, s, cap);
    }
    wsdiff_split_t splits[] = {
        {.max = n ? n : 1},          {.max = 1},
        {.rmax = 3, .seed = seed},   {.rmax = 16, .seed = seed},
        {.rmax = 300, .seed = seed},
    };
    for (size_t k = 0; k < sizeof(splits) / sizeof(splits[0]); k++) {
        size_t at = 0;
        if (wsdiff_run(s, n, budget, tick, base, &splits[k], &at))
            abort(); /* the walks disagree */
    }
    free(s);
    return 0;
}
