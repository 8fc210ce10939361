/* SPDX-License-Identifier: Apache-2.0 */
/* Shared copies of the policies live namespaces run: one counted copy per distinct policy.
 *
 * A namespace used to carry its own 112-byte ms_policy_t although nearly all of
 * them run one of a handful (the default, PeerJS's, a rule's). Each live
 * namespace now points at a shared copy here (ms_ns_t.policy), taken when it
 * is created or changes policy and given back when it is destroyed or changes
 * again. Copies are matched by their bytes, so two equal policies whose padding
 * differs are kept twice: less sharing, never a wrong one. Loop thread only.
 */
#ifndef MS_COORD_POLICYSHARE_H
#define MS_COORD_POLICYSHARE_H

#include "policy.h"
#include "ptrindex.h"

typedef struct {
    ms_pidx_t by_bytes; /* shared copies (struct ms_policy_shared) by a hash of their bytes */
} ms_policyshare_t;

void ms_policyshare_init(ms_policyshare_t *s);
/* Frees the copies still held (the namespaces that held them are gone). */
void ms_policyshare_cleanup(ms_policyshare_t *s);
/* A shared copy of p, counted once more; NULL when out of memory. p is borrowed. */
const ms_policy_t *ms_policyshare_take(ms_policyshare_t *s, const ms_policy_t *p);
/* Gives back one count of a copy ms_policyshare_take returned (NULL is ignored). */
void ms_policyshare_give(ms_policyshare_t *s, const ms_policy_t *p);

#endif
