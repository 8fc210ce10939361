/* SPDX-License-Identifier: Apache-2.0 */
/* The keyed hash's key (hash.h): drawn once per process, before main(). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/random.h>

#include "hash.h"

_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "ms_siphash reads little-endian words");

uint64_t ms_hash_key[2];

/* A constructor, so that no table of any binary (daemons, tools, tests) can hash a key before
 * the key is set. getrandom() blocks only until the kernel's pool is first seeded, at boot. */
__attribute__((constructor)) static void hash_key_init(void)
{
    unsigned char *k = (unsigned char *)ms_hash_key;
    size_t got = 0;
    while (got < sizeof(ms_hash_key)) {
        ssize_t n = getrandom(k + got, sizeof(ms_hash_key) - got, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            fprintf(stderr, "meshsig: getrandom failed (%d): no key for the hash tables\n", errno);
            abort();
        }
        got += (size_t)n;
    }
}
