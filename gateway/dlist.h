/* SPDX-License-Identifier: Apache-2.0 */
/* An intrusive doubly linked FIFO list: 16-byte nodes (lws_dll2_t's owner pointer is 8 more).
 *
 * A list is a sentinel node, circular once used; a zeroed list is empty. A node
 * knows nothing of its list: detached when next is NULL (zeroed), and it
 * unlinks itself. The gateway's session has two of them (deadline, liveness),
 * so the 8 bytes matter: see session.h. One thread.
 */
#ifndef MS_GW_DLIST_H
#define MS_GW_DLIST_H

#include <stddef.h>

typedef struct ms_dnode {
    struct ms_dnode *prev, *next;
} ms_dnode_t;

typedef struct {
    ms_dnode_t head; /* the sentinel: head.next is the first, head.prev the last */
} ms_dlist_t;

static inline int ms_dnode_linked(const ms_dnode_t *n)
{
    return n->next != NULL;
}

/* Unlinks n from whatever list holds it; nothing if it is detached. */
static inline void ms_dnode_remove(ms_dnode_t *n)
{
    if (!n->next)
        return;
    n->prev->next = n->next;
    n->next->prev = n->prev;
    n->prev = n->next = NULL;
}

/* Appends n (detached first if it was linked). */
static inline void ms_dlist_add_tail(ms_dlist_t *l, ms_dnode_t *n)
{
    ms_dnode_remove(n);
    if (!l->head.next)
        l->head.next = l->head.prev = &l->head;
    n->prev = l->head.prev;
    n->next = &l->head;
    l->head.prev->next = n;
    l->head.prev = n;
}

/* The first node, or NULL. */
static inline ms_dnode_t *ms_dlist_first(const ms_dlist_t *l)
{
    return l->head.next && l->head.next != &l->head ? l->head.next : NULL;
}

#endif
