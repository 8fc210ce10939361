/* SPDX-License-Identifier: Apache-2.0 */
/* Two hashes of bytes: the shard function, the same on every node, and the keyed hash of
 * in-process tables, different in every process.
 *
 * ms_fnv1a64 (FNV-1a 64) picks a namespace's shard (DESIGN.md §2) and seeds what every
 * coordinator must compute alike: it must be identical on every node, so it has no key.
 *
 * ms_hash_keyed (SipHash-1-3 under a random key drawn once per process from getrandom()) is
 * what a hash table in one process hashes keys with: every uthash table (uthash_keyed.h), the
 * ptrindex tables keyed by names (intern.c, the gateway's peer index, the coordinator's
 * namespaces and members) and the gateway's direct edges. Their keys are peer ids, room,
 * topic, service and stream names, namespaces and client addresses, which clients choose;
 * with an unkeyed hash anyone can compute, offline, thousands of keys that share one bucket
 * and turn every lookup into a walk of all of them (uthash then also stops expanding that
 * table for good). Without the key nobody can.
 *
 * Why SipHash-1-3 written here and not libsodium's crypto_shorthash (SipHash-2-4): per call
 * it costs 106 / 126 / 146 / 169 instructions for 8 / 16 / 24 / 36-byte keys against
 * libsodium's 178 / 212 / 246 / 291 (callgrind, gcc -O2), FNV-1a's 63 / 111 / 159 / 231 and
 * uthash's default Jenkins hash's 97 / 178 / 255 / 343, and it needs no new dependency.
 * SipHash-1-3 is what Rust's HashMap and CPython (3.11 and later) hash strings with for the
 * same reason. ms_siphash() runs any c-d variant, and the unit test checks its 2-4 against
 * the reference vectors.
 */
#ifndef MS_HASH_H
#define MS_HASH_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

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

/* The process's key: random, set before main() runs (hash.c). */
extern uint64_t ms_hash_key[2];

#define MS_SIP_ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))
#define MS_SIP_ROUND(v0, v1, v2, v3)                                                               \
    do {                                                                                           \
        v0 += v1;                                                                                  \
        v1 = MS_SIP_ROTL(v1, 13);                                                                  \
        v1 ^= v0;                                                                                  \
        v0 = MS_SIP_ROTL(v0, 32);                                                                  \
        v2 += v3;                                                                                  \
        v3 = MS_SIP_ROTL(v3, 16);                                                                  \
        v3 ^= v2;                                                                                  \
        v0 += v3;                                                                                  \
        v3 = MS_SIP_ROTL(v3, 21);                                                                  \
        v3 ^= v0;                                                                                  \
        v2 += v1;                                                                                  \
        v1 = MS_SIP_ROTL(v1, 17);                                                                  \
        v1 ^= v2;                                                                                  \
        v2 = MS_SIP_ROTL(v2, 32);                                                                  \
    } while (0)

/* n rounds, unrolled (n is a constant where ms_hash_keyed inlines it). */
#define MS_SIP_ROUNDS(n, v0, v1, v2, v3)                                                           \
    do {                                                                                           \
        _Pragma("GCC unroll 4") for (int r_ = 0; r_ < (n); r_++) MS_SIP_ROUND(v0, v1, v2, v3);     \
    } while (0)

/* SipHash-c-d (Aumasson and Bernstein, 2012) of len bytes under key k (k[0], k[1]: the key's
 * two little-endian halves). Little-endian machines only (the build checks). */
static inline uint64_t ms_siphash(const uint64_t k[2], int c, int d, const void *data, size_t len)
{
    const unsigned char *p = data, *end = p + (len & ~(size_t)7);
    uint64_t v0 = 0x736f6d6570736575ULL ^ k[0], v1 = 0x646f72616e646f6dULL ^ k[1];
    uint64_t v2 = 0x6c7967656e657261ULL ^ k[0], v3 = 0x7465646279746573ULL ^ k[1];
    uint64_t m, b = (uint64_t)len << 56;
    for (; p != end; p += 8) {
        memcpy(&m, p, 8);
        v3 ^= m;
        MS_SIP_ROUNDS(c, v0, v1, v2, v3);
        v0 ^= m;
    }
    size_t t = len & 7; /* the last 0-7 bytes, in two overlapping reads or three bytes */
    if (t >= 4) {
        uint32_t lo, hi;
        memcpy(&lo, p, 4);
        memcpy(&hi, p + t - 4, 4);
        b |= lo | (uint64_t)hi << (8 * (t - 4));
    } else if (t) {
        b |= p[0] | (uint64_t)p[t / 2] << (8 * (t / 2)) | (uint64_t)p[t - 1] << (8 * (t - 1));
    }
    v3 ^= b;
    MS_SIP_ROUNDS(c, v0, v1, v2, v3);
    v0 ^= b;
    v2 ^= 0xff;
    MS_SIP_ROUNDS(d, v0, v1, v2, v3);
    return v0 ^ v1 ^ v2 ^ v3;
}

/* The keyed hash of an in-process table's key: SipHash-1-3 under the process's key. */
static inline uint64_t ms_hash_keyed(const void *data, size_t len)
{
    return ms_siphash(ms_hash_key, 1, 3, data, len);
}

#endif
