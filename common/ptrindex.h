/* SPDX-License-Identifier: Apache-2.0 */
/* An index of records by a hash of their key (a session's id, a member's id): open addressing.
 *
 * uthash puts a 56-byte UT_hash_handle in every record it indexes, idle or
 * not; this index keeps one 8-byte pointer per slot at a load between 3/8
 * and 3/4 (about 14 bytes a record) and nothing in the record. The hash is
 * computed from the record (the hash function given at init) when it is
 * placed, and from the key when it is looked up; the caller's match function
 * compares keys. Linear probing with backward-shift deletion, so no
 * tombstones pile up under churn; the slot array halves when it empties to an
 * eighth. Not thread-safe: one owner thread, as the records.
 *
 * Why not a library: the maintained ones packaged for Debian cost what this
 * index exists to save. uthash (used elsewhere here) is the 56-byte handle
 * above; GLib's GHashTable keeps a key, a value and a hash per slot (12-20
 * bytes) and would bring GLib into both daemons; Concurrency Kit's ck_hs
 * (libck-dev) does keep one pointer per slot, but grows at half full, starts
 * at 8 slots behind a ~100-byte map header (a coordinator holds one table per
 * namespace, most of them of 2 peers), leaves tombstones that need ck_hs_gc
 * under churn, never shrinks, and pays for single-writer/many-reader
 * publication we do not need. This is ~100 lines with its own unit test
 * (tests/unit/test_ptrindex.c).
 */
#ifndef MS_PTRINDEX_H
#define MS_PTRINDEX_H

#include <stddef.h>
#include <stdint.h>

/* The hash of a record's key: must equal what lookups pass for that key. */
typedef uint64_t (*ms_pidx_hash_fn)(const void *rec);
/* Nonzero when rec's key is key. */
typedef int (*ms_pidx_match_fn)(const void *rec, const void *key);

typedef struct {
    void **slot;  /* NULL: empty */
    uint32_t cap; /* 0 or a power of two */
    uint32_t n;   /* records indexed */
    ms_pidx_hash_fn hash;
} ms_pidx_t;

void ms_pidx_init(ms_pidx_t *x, ms_pidx_hash_fn hash);
/* Frees the slots (not the records). */
void ms_pidx_cleanup(ms_pidx_t *x);
/* Adds rec (not indexed yet; borrowed). -1: out of memory (the index is unchanged). */
int ms_pidx_add(ms_pidx_t *x, void *rec);
/* The record whose key hashes to h and matches key, or NULL. */
void *ms_pidx_find(const ms_pidx_t *x, uint64_t h, ms_pidx_match_fn match, const void *key);
/* Removes rec (by pointer; nothing when it is not indexed). */
void ms_pidx_remove(ms_pidx_t *x, const void *rec);

/* Visits every record (in no particular order) as type *rec. The body must
 * not add or remove records: collect them first (a removal moves others
 * between slots, so some would be missed or met twice). */
#define MS_PIDX_FOREACH(x, i, rec)                                                                 \
    for (uint32_t i = 0; i < (x)->cap; i++)                                                        \
        if (((rec) = (x)->slot[i]) != NULL)

#endif
