/* SPDX-License-Identifier: Apache-2.0 */
/* Shared, reference-counted copies of strings that many records repeat.
 *
 * Every coordinator member names its gateway; with a few gateways and many
 * members one copy per gateway id is enough. Every gateway session names its
 * namespace; PeerJS clients of one key all share one. One thread per process
 * only (the coordinator's loop, the gateway's lws service thread).
 */
#ifndef MS_INTERN_H
#define MS_INTERN_H

#include <stdint.h>

/* A shared copy of s (one more reference), or NULL when out of memory. */
const char *ms_intern(const char *s);
/* The keyed hash (hash.h) of a string ms_intern returned (still referenced),
 * kept since it was interned: ms_hash_keyed(s, strlen(s)) without the walk.
 * Not the shard function: it differs from process to process. */
uint64_t ms_intern_hash(const char *s);
/* Drops one reference to a string ms_intern returned; NULL is ignored. */
void ms_intern_release(const char *s);

#endif
