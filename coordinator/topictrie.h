/* SPDX-License-Identifier: Apache-2.0 */
/* The topic subscriptions of one namespace, indexed by token (topic.c): a trie as NATS's sublist
 * keeps it, so that a publish touches only the subscriptions that can match its topic and a
 * subscribe, an unsubscribe or an owner's leave only its own.
 *
 * A pattern is dot-separated tokens, '*' one token, '>' (last) one token or more. A node per
 * token path: its literal children in one table of the trie keyed by (parent, token) with the
 * process's keyed hash (hash.h: clients pick tokens), a '*' child, and two lists: the
 * subscriptions whose pattern ends at the node and those whose pattern goes on with '>'. Each
 * subscription is also on its owner's list (an owner: a member, by address) and in a table by
 * (owner, node, '>' or not), which is how a duplicate or an unsubscribe is found.
 *
 * A match visits at most one node per token of the topic and path of the trie (each node is
 * reached by exactly one path, at the depth of its token) and reports each owner once, however
 * many of its patterns match (a per-owner stamp of the match, no set built per publish). In no
 * particular order: the order of the trie, not of the subscriptions. Not thread-safe.
 */
#ifndef MS_TOPICTRIE_H
#define MS_TOPICTRIE_H

#include <stddef.h>
#include <stdint.h>

#include "ptrindex.h"

#define MS_TTRIE_MAX_PATTERN 256

/* p is 1 to MS_TTRIE_MAX_PATTERN bytes of dot-separated non-empty tokens of characters above
 * ' '; with wildcards, a token may be '*' or (the last) '>', nothing else may hold either. */
int ms_ttrie_valid(const char *p, int wildcards);

struct ms_ttrie_node;

typedef struct {
    struct ms_ttrie_node *root; /* NULL until the first subscription */
    ms_pidx_t lits;             /* every literal node, by (parent, token) */
    ms_pidx_t subs;             /* every subscription, by (owner, node, '>') */
    ms_pidx_t owners;           /* owners with a subscription, by address */
    size_t n;                   /* subscriptions */
    uint64_t gen;               /* matches made: the stamp of the current one */
} ms_ttrie_t;

void ms_ttrie_init(ms_ttrie_t *t);
void ms_ttrie_cleanup(ms_ttrie_t *t);

/* Whether owner subscribes to pattern (any string: an invalid one is never there). */
int ms_ttrie_has(const ms_ttrie_t *t, const void *owner, const char *pattern);
/* owner subscribes to pattern (valid, with wildcards). 1: added, 0: it already was, -1: out of
 * memory (nothing changed). */
int ms_ttrie_add(ms_ttrie_t *t, const void *owner, const char *pattern);
/* 1: removed, 0: owner did not subscribe to pattern. */
int ms_ttrie_remove(ms_ttrie_t *t, const void *owner, const char *pattern);
/* Removes every subscription of owner: how many. */
size_t ms_ttrie_remove_owner(ms_ttrie_t *t, const void *owner);
/* owner's subscriptions. */
size_t ms_ttrie_owner_count(const ms_ttrie_t *t, const void *owner);

/* Calls fn once per owner one of whose patterns matches topic; how many. fn must not change t
 * nor match on it. */
typedef void (*ms_ttrie_fn)(const void *owner, void *arg);
size_t ms_ttrie_match(ms_ttrie_t *t, const char *topic, ms_ttrie_fn fn, void *arg);

#endif
