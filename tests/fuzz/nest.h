/* SPDX-License-Identifier: Apache-2.0 */
/* Input shaping shared by the protobuf fuzz targets: deep nesting that random mutation cannot grow.
 *
 * A crash from recursion (a payload nested thousands of levels deep) needs an
 * input of tens of kilobytes whose every level carries a correct length
 * prefix: byte-level mutation never builds one. So an input whose first byte
 * has the top bit set is read as a recipe instead of as wire bytes:
 *
 *   depth (15 bits, big-endian, the marker bit cleared), k (1 byte, 1..4),
 *   k field numbers (1 byte each), m (1 byte, 0..4), m field numbers, rest
 *
 * rest is wrapped depth times in the cycle of k length-delimited fields
 * (innermost first), then once in each of the m outer fields (innermost first).
 * The fuzzer chooses the fields, so any recursive path of the schema can be
 * found (Value.list_value -> ListValue.values -> Value, Struct maps, ...);
 * nothing here names a message type. Other inputs are used as they are.
 */
#ifndef MS_FUZZ_NEST_H
#define MS_FUZZ_NEST_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define NEST_MAX_OUT (1u << 20) /* 1 MiB: NATS's default max payload, 16x the frame cap */

static size_t nest_varint_len(size_t v)
{
    size_t n = 1;
    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

static uint8_t *nest_put_varint(uint8_t *p, size_t v)
{
    while (v >= 0x80) {
        *p++ = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    *p++ = (uint8_t)v;
    return p;
}

/* Returns a malloc'd buffer in *out (caller frees) when data is a recipe, with
 * *out_len; otherwise *out = NULL and the caller uses data itself. Returns -1
 * when the recipe is malformed or would exceed NEST_MAX_OUT (skip the input). */
static int nest_expand(const uint8_t *data, size_t size, uint8_t **out, size_t *out_len)
{
    size_t depth, k, m, pos = 3, len, total;
    uint8_t cyc[4], outer[4];
    *out = NULL;
    if (size < 3 || !(data[0] & 0x80))
        return 0;
    depth = ((size_t)(data[0] & 0x7f) << 8) | data[1];
    k = data[2];
    if (k < 1 || k > 4 || size < pos + k + 1)
        return -1;
    memcpy(cyc, data + pos, k);
    pos += k;
    m = data[pos++];
    if (m > 4 || size < pos + m)
        return -1;
    memcpy(outer, data + pos, m);
    pos += m;
    for (size_t i = 0; i < k; i++)
        if (cyc[i] == 0 || cyc[i] > 31)
            return -1;
    for (size_t i = 0; i < m; i++)
        if (outer[i] == 0 || outer[i] > 31)
            return -1;
    /* Sizes from the inside out, to know each level's length prefix. */
    size_t levels = depth * k + m;
    size_t *lens = malloc((levels + 1) * sizeof *lens);
    if (!lens)
        return -1;
    len = size - pos;
    lens[0] = len;
    for (size_t i = 0; i < levels; i++) {
        len = 1 + nest_varint_len(len) + len;
        lens[i + 1] = len;
        if (len > NEST_MAX_OUT) {
            free(lens);
            return -1;
        }
    }
    total = len;
    uint8_t *buf = malloc(total ? total : 1), *p = buf;
    if (!buf) {
        free(lens);
        return -1;
    }
    /* Outermost first: level levels-1 down to 0. */
    for (size_t i = levels; i-- > 0;) {
        size_t field = i >= depth * k ? outer[i - depth * k] : cyc[i % k];
        *p++ = (uint8_t)(field << 3 | 2);
        p = nest_put_varint(p, lens[i]);
    }
    memcpy(p, data + pos, size - pos);
    free(lens);
    *out = buf;
    *out_len = total;
    return 1;
}

#endif
