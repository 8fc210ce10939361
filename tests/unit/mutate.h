/* SPDX-License-Identifier: Apache-2.0 */
/* Random mutations of text for the parser tests: a seeded xorshift and six edit kinds. */
#ifndef MS_TEST_MUTATE_H
#define MS_TEST_MUTATE_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

static uint64_t rng_state;

static inline uint32_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 11);
}

/* One random edit of s (len bytes, room for cap): replace, insert (bytes from
 * alphabet), delete a range, duplicate a range, truncate, or flip a bit. */
static inline void mutate_with(char *s, size_t *len, size_t cap, const char *alphabet)
{
    size_t n = *len, na = strlen(alphabet);
    switch (rnd() % 6) {
    case 0: /* replace a byte */
        if (n)
            s[rnd() % n] = alphabet[rnd() % na];
        break;
    case 1: /* insert a byte */
        if (n + 1 < cap) {
            size_t at = n ? rnd() % (n + 1) : 0;
            memmove(s + at + 1, s + at, n - at);
            s[at] = alphabet[rnd() % na];
            n++;
        }
        break;
    case 2: /* delete a range */
        if (n) {
            size_t at = rnd() % n, k = 1 + rnd() % 8;
            if (k > n - at)
                k = n - at;
            memmove(s + at, s + at + k, n - at - k);
            n -= k;
        }
        break;
    case 3: /* duplicate a range */
        if (n) {
            size_t at = rnd() % n, k = 1 + rnd() % 16;
            if (k > n - at)
                k = n - at;
            if (n + k < cap) {
                memmove(s + at + k, s + at, n - at);
                n += k;
            }
        }
        break;
    case 4: /* truncate */
        if (n)
            n = rnd() % n;
        break;
    default: /* flip a bit */
        if (n)
            s[rnd() % n] ^= (char)(1u << (rnd() % 8));
    }
    *len = n;
}

#endif
