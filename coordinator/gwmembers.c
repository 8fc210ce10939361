/* SPDX-License-Identifier: Apache-2.0 */
/* The members of each gateway (gwmembers.h). */
#include "gwmembers.h"

#include <stdlib.h>
#include <string.h>

#include "namespace.h"
#include "uthash_keyed.h"

ms_gwm_list_t *ms_gwm_of(ms_gwm_t *x, const char *gateway)
{
    ms_gwm_list_t *l = NULL;
    HASH_FIND(hh, x->by_gw, gateway, strlen(gateway), l);
    return l;
}

ms_err_t ms_gwm_reserve(ms_gwm_t *x, const char *gateway)
{
    ms_gwm_list_t *l = ms_gwm_of(x, gateway);
    int made = 0;
    if (!l) {
        if (!(l = calloc(1, sizeof(*l))))
            return MS_ERR_NOMEM;
        l->gateway = gateway;
        HASH_ADD_KEYPTR(hh, x->by_gw, l->gateway, strlen(l->gateway), l);
        made = 1;
    }
    if (l->n < l->cap)
        return MS_OK;
    uint32_t cap = l->cap ? l->cap * 2 : 4;
    ms_gwm_entry_t *v = realloc(l->v, cap * sizeof(*v));
    if (!v) {
        if (made) {
            HASH_DEL(x->by_gw, l);
            free(l);
        }
        return MS_ERR_NOMEM;
    }
    l->v = v;
    l->cap = cap;
    return MS_OK;
}

ms_err_t ms_gwm_add(ms_gwm_t *x, ms_ns_t *ns, ms_member_t *m)
{
    if (ms_gwm_reserve(x, m->gateway) != MS_OK)
        return MS_ERR_NOMEM;
    ms_gwm_list_t *l = ms_gwm_of(x, m->gateway);
    m->gw_slot = l->n;
    l->v[l->n++] = (ms_gwm_entry_t){.ns = ns, .m = m};
    return MS_OK;
}

void ms_gwm_remove(ms_gwm_t *x, ms_member_t *m)
{
    ms_gwm_list_t *l = ms_gwm_of(x, m->gateway);
    if (!l || m->gw_slot >= l->n || l->v[m->gw_slot].m != m)
        return; /* not listed (never added) */
    ms_gwm_entry_t last = l->v[--l->n];
    if (m->gw_slot < l->n) {
        l->v[m->gw_slot] = last;
        last.m->gw_slot = m->gw_slot;
    }
    if (!l->n) { /* its key may be freed with the last member's reference */
        HASH_DEL(x->by_gw, l);
        free(l->v);
        free(l);
    }
}

void ms_gwm_move(ms_gwm_t *x, ms_ns_t *ns, ms_member_t *m, const char *gateway)
{
    if (!strcmp(m->gateway, gateway))
        return; /* the same list */
    ms_gwm_remove(x, m);
    ms_gwm_list_t *l = ms_gwm_of(x, gateway); /* reserved: there, with room */
    m->gw_slot = l->n;
    l->v[l->n++] = (ms_gwm_entry_t){.ns = ns, .m = m};
}

void ms_gwm_cleanup(ms_gwm_t *x)
{
    ms_gwm_list_t *l, *tmp;
    HASH_ITER(hh, x->by_gw, l, tmp)
    {
        HASH_DEL(x->by_gw, l);
        free(l->v);
        free(l);
    }
}
