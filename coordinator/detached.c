/* SPDX-License-Identifier: Apache-2.0 */
/* Peers waiting out a resume grace period, oldest first (detached.h). */
#include "detached.h"

#include <stdlib.h>
#include <string.h>

int ms_detq_push(ms_detq_t *q, uint64_t at_ms, const char *ns, const char *id)
{
    if (q->head + q->n == q->cap) {
        if (q->head >= q->cap / 2 && q->head) {
            /* Mostly popped: slide the live entries down instead of growing. */
            memmove(q->e, q->e + q->head, q->n * sizeof(*q->e));
            q->head = 0;
        } else {
            size_t cap = q->cap ? q->cap * 2 : 64;
            ms_detached_t **e = realloc(q->e, cap * sizeof(*e));
            if (!e)
                return -1;
            q->e = e;
            q->cap = cap;
        }
    }
    size_t lid = strlen(id) + 1, lns = strlen(ns) + 1;
    ms_detached_t *d = malloc(sizeof(*d) + lid + lns);
    if (!d)
        return -1;
    d->at_ms = at_ms;
    memcpy(d->id, id, lid);
    memcpy(d->id + lid, ns, lns);
    d->ns = d->id + lid;
    q->e[q->head + q->n++] = d;
    return 0;
}

ms_detached_t *ms_detq_pop_due(ms_detq_t *q, uint64_t until_ms)
{
    if (!q->n || q->e[q->head]->at_ms > until_ms)
        return NULL;
    ms_detached_t *d = q->e[q->head++];
    if (!--q->n)
        q->head = 0;
    return d;
}

void ms_detq_cleanup(ms_detq_t *q)
{
    for (size_t k = 0; k < q->n; k++)
        free(q->e[q->head + k]);
    free(q->e);
    memset(q, 0, sizeof(*q));
}
