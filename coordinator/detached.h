/* SPDX-License-Identifier: Apache-2.0 */
/* Peers waiting out a resume grace period (member.c), oldest first: the liveness tick looks
 * at the head only, and the grace's end takes the leavers off the head, so neither walks the
 * members of every namespace.
 *
 * An entry names the peer (namespace and id) and the time it was detached; it holds no pointer
 * into a namespace. Nothing removes an entry when its peer resumes, its gateway comes back, it
 * leaves or its namespace goes (a takeover, an operator): the reader checks, when the entry
 * comes due, that the peer is still there and still detached at that time. So the queue is
 * only ever appended to (times never decrease: the loop's monotonic clock) and popped.
 * Loop thread only.
 */
#ifndef MS_COORD_DETACHED_H
#define MS_COORD_DETACHED_H

#include <stddef.h>
#include <stdint.h>

typedef struct ms_detached {
    uint64_t at_ms; /* when it was detached (ms_member_t.detached_ms) */
    const char *ns; /* its namespace's name (in this allocation) */
    char id[];      /* the peer id, NUL-terminated, then the namespace's name */
} ms_detached_t;

typedef struct {
    ms_detached_t **e; /* e[head .. head + n - 1], oldest first */
    size_t head, n, cap;
} ms_detq_t;

/* Appends a peer detached at at_ms (no earlier than the newest entry's). -1: out of memory
 * (the queue is unchanged). */
int ms_detq_push(ms_detq_t *q, uint64_t at_ms, const char *ns, const char *id);
/* The oldest entry when it was detached at or before until_ms, taken off the queue (free it
 * with free()); NULL otherwise. */
ms_detached_t *ms_detq_pop_due(ms_detq_t *q, uint64_t until_ms);
static inline size_t ms_detq_len(const ms_detq_t *q)
{
    return q->n;
}
/* The k-th oldest entry (k < ms_detq_len), still queued. */
static inline const ms_detached_t *ms_detq_at(const ms_detq_t *q, size_t k)
{
    return q->e[q->head + k];
}
/* Frees every entry and the array. */
void ms_detq_cleanup(ms_detq_t *q);

#endif
