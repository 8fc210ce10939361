/* SPDX-License-Identifier: Apache-2.0 */
/* FNV-1a 64: the shard function (DESIGN.md §2); must be identical on every node. */
#ifndef MS_HASH_H
#define MS_HASH_H

#include <stddef.h>
#include <stdint.h>

static inline uint64_t ms_fnv1a64(const void *data, size_t len)
{
    const unsigned char *p = data;
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

#endif
