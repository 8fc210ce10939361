/* SPDX-License-Identifier: Apache-2.0 */
/* uthash as every table here uses it: keys hashed with the process's keyed hash (hash.h).
 *
 * Include this, never <uthash.h> itself (tests/unit/CMakeLists.txt's lint_uthash checks). uthash
 * reads HASH_FUNCTION where a key is added or looked up, so any file that reached uthash.h
 * first still hashes with this one from here on; a table added to in one file and searched in
 * another must see the same hash in both, which including this header everywhere ensures.
 * Its default, Jenkins' hash without a key, lets a client who picks keys (peer ids, room
 * names, its own addresses) put thousands of them in one bucket (hash.h). Only the low bits
 * of the 32-bit value pick a bucket, as before.
 */
#ifndef MS_UTHASH_KEYED_H
#define MS_UTHASH_KEYED_H

#include <uthash.h>

#include "hash.h"

#undef HASH_FUNCTION
#define HASH_FUNCTION(keyptr, keylen, hashv)                                                       \
    ((hashv) = (unsigned)ms_hash_keyed((keyptr), (size_t)(keylen)))

#endif
