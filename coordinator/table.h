/* SPDX-License-Identifier: Apache-2.0 */
/* uthash as the coordinator uses it: hash tables that start small.
 *
 * Most namespaces are small (a call of 2 peers), and each has its own member
 * table: uthash's first bucket array of 32 (512 B) was a third of the
 * coordinator's memory per peer. Tables still double as chains pass
 * HASH_BKT_CAPACITY_THRESH, so large namespaces only pay a few more expansions.
 * The macros are read where a table is first added to, so this works whatever
 * included uthash.h first.
 */
#ifndef MS_COORD_TABLE_H
#define MS_COORD_TABLE_H

#include "uthash_keyed.h"

#undef HASH_INITIAL_NUM_BUCKETS
#undef HASH_INITIAL_NUM_BUCKETS_LOG2
#define HASH_INITIAL_NUM_BUCKETS 4U
#define HASH_INITIAL_NUM_BUCKETS_LOG2 2U

#endif
