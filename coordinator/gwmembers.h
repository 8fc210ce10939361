/* SPDX-License-Identifier: Apache-2.0 */
/* The members of each gateway (member.c): a gateway lost detaches its own peers without
 * walking every member of every namespace (6 ms of the loop per 100,000 peers elsewhere).
 *
 * One list per gateway that holds members, by its id (uthash, the keyed hash); each entry names
 * the member and its namespace, and the member keeps its place in the list (gw_slot), so an
 * add, a remove and a move between gateways are O(1). A list goes when its last member does.
 * Every member of every namespace is in the list of its m->gateway from ms_ns_member_add to
 * ms_ns_member_remove (or the namespace's destroy). Loop thread only.
 */
#ifndef MS_COORD_GWMEMBERS_H
#define MS_COORD_GWMEMBERS_H

#include <stdint.h>

#include "err.h"
#include "table.h"

struct ms_ns;
struct ms_member;

typedef struct {
    struct ms_ns *ns;
    struct ms_member *m;
} ms_gwm_entry_t;

typedef struct ms_gwm_list {
    const char *gateway; /* the key: a member's m->gateway (interned, held by its members) */
    ms_gwm_entry_t *v;
    uint32_t n, cap;
    UT_hash_handle hh;
} ms_gwm_list_t;

typedef struct {
    ms_gwm_list_t *by_gw; /* uthash by gateway id */
} ms_gwm_t;

/* Room for one more member in gateway's list (made if absent; gateway interned, held by the
 * member about to be added). MS_ERR_NOMEM: nothing changed. */
ms_err_t ms_gwm_reserve(ms_gwm_t *x, const char *gateway);
/* m (of ns) into the list of m->gateway. MS_ERR_NOMEM: not added (none when reserved). */
ms_err_t ms_gwm_add(ms_gwm_t *x, struct ms_ns *ns, struct ms_member *m);
/* m (of ns), in the list of m->gateway, into gateway's, reserved (ms_gwm_reserve): cannot
 * fail. Before m->gateway changes (and its old reference goes); the caller sets it. */
void ms_gwm_move(ms_gwm_t *x, struct ms_ns *ns, struct ms_member *m, const char *gateway);
/* m out of the list of m->gateway; the list goes when it empties. */
void ms_gwm_remove(ms_gwm_t *x, struct ms_member *m);
/* gateway's list; NULL when it holds no member. */
ms_gwm_list_t *ms_gwm_of(ms_gwm_t *x, const char *gateway);
void ms_gwm_cleanup(ms_gwm_t *x);

#endif
