/* SPDX-License-Identifier: Apache-2.0 */
/* Shared copies of the policies live namespaces run (policyshare.h). */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "hash.h"
#include "policyshare.h"

typedef struct ms_policy_shared {
    ms_policy_t policy; /* first: a namespace's pointer to it is the record's */
    uint64_t refs;
} ms_policy_shared_t;

static uint64_t policy_hash(const ms_policy_t *p)
{
    return ms_fnv1a64(p, sizeof(*p));
}

static uint64_t shared_hash(const void *rec)
{
    return policy_hash(&((const ms_policy_shared_t *)rec)->policy);
}

static int shared_is(const void *rec, const void *p)
{
    return !memcmp(&((const ms_policy_shared_t *)rec)->policy, p, sizeof(ms_policy_t));
}

void ms_policyshare_init(ms_policyshare_t *s)
{
    ms_pidx_init(&s->by_bytes, shared_hash);
}

void ms_policyshare_cleanup(ms_policyshare_t *s)
{
    ms_policy_shared_t *e;
    MS_PIDX_FOREACH(&s->by_bytes, i, e)
    free(e);
    ms_pidx_cleanup(&s->by_bytes);
}

const ms_policy_t *ms_policyshare_take(ms_policyshare_t *s, const ms_policy_t *p)
{
    ms_policy_shared_t *e = ms_pidx_find(&s->by_bytes, policy_hash(p), shared_is, p);
    if (!e) {
        if (!(e = malloc(sizeof(*e))))
            return NULL;
        memcpy(&e->policy, p, sizeof(*p)); /* the bytes, padding too: they are the key */
        e->refs = 0;
        if (ms_pidx_add(&s->by_bytes, e) < 0) {
            free(e);
            return NULL;
        }
    }
    e->refs++;
    return &e->policy;
}

void ms_policyshare_give(ms_policyshare_t *s, const ms_policy_t *p)
{
    if (!p)
        return;
    ms_policy_shared_t *e =
        (ms_policy_shared_t *)((const char *)p - offsetof(ms_policy_shared_t, policy));
    if (--e->refs)
        return;
    ms_pidx_remove(&s->by_bytes, e);
    free(e);
}
