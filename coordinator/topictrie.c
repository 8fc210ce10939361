/* SPDX-License-Identifier: Apache-2.0 */
/* The topic subscriptions of one namespace, indexed by token (topictrie.h). */
#include "topictrie.h"

#include <stdlib.h>
#include <string.h>

#include "hash.h"

typedef struct ms_ttrie_sub tsub_t;

/* A member with subscriptions. */
typedef struct {
    const void *key;
    tsub_t *subs;  /* its subscriptions */
    uint64_t seen; /* the last match that reported it (ms_ttrie_t.gen) */
    size_t n;
} towner_t;

typedef struct ms_ttrie_node {
    struct ms_ttrie_node *parent; /* NULL: the root */
    struct ms_ttrie_node *star;   /* the '*' child */
    tsub_t *here;                 /* patterns that end here */
    tsub_t *rest;                 /* patterns that go on with '>' */
    uint32_t n_lit;               /* literal children (in ms_ttrie_t.lits) */
    uint16_t len;                 /* of tok */
    uint8_t is_star;              /* its parent's '*' child (tok is "*", not in lits) */
    char tok[];
} tnode_t;

struct ms_ttrie_sub {
    towner_t *owner;
    tnode_t *node;
    tsub_t *next, **pprev;     /* node->here or node->rest */
    tsub_t *o_next, **o_pprev; /* owner->subs */
    uint8_t rest;              /* the pattern goes on with '>' after node */
};

/* Pointers are no client's choice: a mix so that nearby addresses spread. */
static uint64_t mix(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

static uint64_t addr(const void *p)
{
    return mix((uint64_t)(uintptr_t)p);
}

/* Literal nodes by (parent, token): the token under the keyed hash. */
typedef struct {
    const tnode_t *parent;
    const char *tok;
    size_t len;
} litkey_t;

static uint64_t lit_hash_of(const tnode_t *parent, const char *tok, size_t len)
{
    return ms_hash_keyed(tok, len) ^ addr(parent);
}

static uint64_t lit_hash(const void *rec)
{
    const tnode_t *n = rec;
    return lit_hash_of(n->parent, n->tok, n->len);
}

static int lit_is(const void *rec, const void *key)
{
    const tnode_t *n = rec;
    const litkey_t *k = key;
    return n->parent == k->parent && n->len == k->len && !memcmp(n->tok, k->tok, k->len);
}

static tnode_t *lit_find(const ms_ttrie_t *t, const tnode_t *parent, const char *tok, size_t len)
{
    if (!parent->n_lit)
        return NULL;
    litkey_t k = {parent, tok, len};
    return ms_pidx_find(&t->lits, lit_hash_of(parent, tok, len), lit_is, &k);
}

/* Subscriptions by (owner, node, rest). */
typedef struct {
    const towner_t *owner;
    const tnode_t *node;
    int rest;
} subkey_t;

static uint64_t sub_hash_of(const towner_t *o, const tnode_t *n, int rest)
{
    return mix(addr(o) ^ ((uint64_t)(uintptr_t)n << 1 | (uint64_t)(rest != 0)));
}

static uint64_t sub_hash(const void *rec)
{
    const tsub_t *s = rec;
    return sub_hash_of(s->owner, s->node, s->rest);
}

static int sub_is(const void *rec, const void *key)
{
    const tsub_t *s = rec;
    const subkey_t *k = key;
    return s->owner == k->owner && s->node == k->node && s->rest == (k->rest != 0);
}

static tsub_t *sub_find(const ms_ttrie_t *t, const towner_t *o, const tnode_t *n, int rest)
{
    subkey_t k = {o, n, rest};
    return ms_pidx_find(&t->subs, sub_hash_of(o, n, rest), sub_is, &k);
}

static uint64_t owner_hash(const void *rec)
{
    return addr(((const towner_t *)rec)->key);
}

static int owner_is(const void *rec, const void *key)
{
    return ((const towner_t *)rec)->key == key;
}

static towner_t *owner_find(const ms_ttrie_t *t, const void *key)
{
    return ms_pidx_find(&t->owners, addr(key), owner_is, key);
}

int ms_ttrie_valid(const char *p, int wildcards)
{
    size_t n = strlen(p);
    if (n == 0 || n > MS_TTRIE_MAX_PATTERN)
        return 0;
    const char *tok = p;
    for (;;) {
        const char *dot = strchr(tok, '.');
        size_t tl = dot ? (size_t)(dot - tok) : strlen(tok);
        if (tl == 0)
            return 0;
        for (size_t i = 0; i < tl; i++) {
            if (tok[i] == '*' || tok[i] == '>') {
                if (!wildcards || tl != 1)
                    return 0;
                if (tok[i] == '>' && dot)
                    return 0;
            }
            if ((unsigned char)tok[i] <= ' ')
                return 0;
        }
        if (!dot)
            return 1;
        tok = dot + 1;
    }
}

void ms_ttrie_init(ms_ttrie_t *t)
{
    memset(t, 0, sizeof(*t));
    ms_pidx_init(&t->lits, lit_hash);
    ms_pidx_init(&t->subs, sub_hash);
    ms_pidx_init(&t->owners, owner_hash);
}

/* n and its ancestors that hold nothing any more go. */
static void prune(ms_ttrie_t *t, tnode_t *n)
{
    while (n && n->parent && !n->here && !n->rest && !n->star && !n->n_lit) {
        tnode_t *p = n->parent;
        if (n->is_star) {
            p->star = NULL;
        } else {
            ms_pidx_remove(&t->lits, n);
            p->n_lit--;
        }
        free(n);
        n = p;
    }
}

static tnode_t *node_new(tnode_t *parent, const char *tok, size_t len)
{
    tnode_t *n = calloc(1, sizeof(*n) + len + 1);
    if (!n)
        return NULL;
    n->parent = parent;
    n->len = (uint16_t)len;
    memcpy(n->tok, tok, len);
    return n;
}

/* The node of pattern and whether it goes on with '>' (*rest); with make, created as needed
 * (NULL when out of memory, nothing left created). NULL: not there. */
static tnode_t *node_of(ms_ttrie_t *t, const char *p, int *rest, int make)
{
    if (!t->root && (!make || !(t->root = node_new(NULL, "", 0))))
        return NULL;
    tnode_t *n = t->root;
    for (;;) {
        const char *dot = strchr(p, '.');
        size_t len = dot ? (size_t)(dot - p) : strlen(p);
        if (!dot && len == 1 && p[0] == '>') {
            *rest = 1;
            return n;
        }
        tnode_t *c;
        if (len == 1 && p[0] == '*') {
            c = n->star;
            if (!c && make && (c = node_new(n, "*", 1))) {
                c->is_star = 1;
                n->star = c;
            }
        } else {
            c = lit_find(t, n, p, len);
            if (!c && make && len <= MS_TTRIE_MAX_PATTERN && (c = node_new(n, p, len))) {
                if (ms_pidx_add(&t->lits, c) != 0) {
                    free(c);
                    c = NULL;
                } else {
                    n->n_lit++;
                }
            }
        }
        if (!c) {
            if (make)
                prune(t, n);
            return NULL;
        }
        n = c;
        if (!dot) {
            *rest = 0;
            return n;
        }
        p = dot + 1;
    }
}

static tsub_t *find(const ms_ttrie_t *t, const void *owner, const char *pattern)
{
    int rest = 0;
    const towner_t *o = owner_find(t, owner);
    const tnode_t *n = o ? node_of((ms_ttrie_t *)t, pattern, &rest, 0) : NULL;
    return n ? sub_find(t, o, n, rest) : NULL;
}

int ms_ttrie_has(const ms_ttrie_t *t, const void *owner, const char *pattern)
{
    return find(t, owner, pattern) != NULL;
}

/* The two lists a subscription is on: its node's, its owner's. */
static void node_link(tsub_t **head, tsub_t *s)
{
    if ((s->next = *head) != NULL)
        s->next->pprev = &s->next;
    *head = s;
    s->pprev = head;
}

static void owner_link(tsub_t **head, tsub_t *s)
{
    if ((s->o_next = *head) != NULL)
        s->o_next->o_pprev = &s->o_next;
    *head = s;
    s->o_pprev = head;
}

static void unlink_both(tsub_t *s)
{
    if ((*s->pprev = s->next) != NULL)
        s->next->pprev = s->pprev;
    if ((*s->o_pprev = s->o_next) != NULL)
        s->o_next->o_pprev = s->o_pprev;
}

int ms_ttrie_add(ms_ttrie_t *t, const void *owner, const char *pattern)
{
    int rest = 0;
    tnode_t *n = node_of(t, pattern, &rest, 1);
    if (!n)
        return -1;
    towner_t *o = owner_find(t, owner);
    if (o && sub_find(t, o, n, rest))
        return 0;
    tsub_t *s = calloc(1, sizeof(*s));
    int new_owner = !o;
    if (!s)
        goto fail;
    if (new_owner) {
        if (!(o = calloc(1, sizeof(*o))))
            goto fail;
        o->key = owner;
        if (ms_pidx_add(&t->owners, o) != 0)
            goto fail;
    }
    s->owner = o;
    s->node = n;
    s->rest = (uint8_t)rest;
    if (ms_pidx_add(&t->subs, s) != 0)
        goto fail;
    node_link(rest ? &n->rest : &n->here, s);
    owner_link(&o->subs, s);
    o->n++;
    t->n++;
    return 1;
fail:
    if (new_owner && o) {
        ms_pidx_remove(&t->owners, o);
        free(o);
    }
    free(s);
    prune(t, n);
    return -1;
}

static void drop(ms_ttrie_t *t, tsub_t *s)
{
    towner_t *o = s->owner;
    unlink_both(s);
    ms_pidx_remove(&t->subs, s);
    t->n--;
    if (!--o->n) {
        ms_pidx_remove(&t->owners, o);
        free(o);
    }
    prune(t, s->node);
    free(s);
}

int ms_ttrie_remove(ms_ttrie_t *t, const void *owner, const char *pattern)
{
    tsub_t *s = find(t, owner, pattern);
    if (!s)
        return 0;
    drop(t, s);
    return 1;
}

size_t ms_ttrie_remove_owner(ms_ttrie_t *t, const void *owner)
{
    towner_t *o = owner_find(t, owner);
    size_t n = o ? o->n : 0;
    for (size_t i = 0; i < n; i++)
        drop(t, o->subs); /* the last one frees o */
    return n;
}

size_t ms_ttrie_owner_count(const ms_ttrie_t *t, const void *owner)
{
    const towner_t *o = owner_find(t, owner);
    return o ? o->n : 0;
}

static size_t report(const ms_ttrie_t *t, const tsub_t *s, ms_ttrie_fn fn, void *arg)
{
    size_t k = 0;
    for (; s; s = s->next)
        if (s->owner->seen != t->gen) {
            s->owner->seen = t->gen;
            fn(s->owner->key, arg);
            k++;
        }
    return k;
}

/* The subscriptions under n that match tok (the rest of the topic, one token or more). Each
 * level recurses on at most two children: depth at most the trie's (MS_TTRIE_MAX_PATTERN / 2 +
 * 1 tokens). */
static size_t walk(const ms_ttrie_t *t, const tnode_t *n, const char *tok, ms_ttrie_fn fn,
                   void *arg)
{
    const char *dot = strchr(tok, '.');
    size_t len = dot ? (size_t)(dot - tok) : strlen(tok);
    size_t k = report(t, n->rest, fn, arg);
    const tnode_t *c[2] = {lit_find(t, n, tok, len), n->star};
    for (int i = 0; i < 2; i++) {
        if (!c[i])
            continue;
        k += dot ? walk(t, c[i], dot + 1, fn, arg) : report(t, c[i]->here, fn, arg);
    }
    return k;
}

size_t ms_ttrie_match(ms_ttrie_t *t, const char *topic, ms_ttrie_fn fn, void *arg)
{
    if (!t->root)
        return 0;
    t->gen++;
    return walk(t, t->root, topic, fn, arg);
}

/* n's '*' child, its '*' child and so on (their literal children are in t->lits). */
static void free_stars(tnode_t *n)
{
    for (tnode_t *s = n->star, *next; s; s = next) {
        next = s->star;
        free(s);
    }
}

void ms_ttrie_cleanup(ms_ttrie_t *t)
{
    tsub_t *s;
    MS_PIDX_FOREACH(&t->subs, i, s)
    free(s);
    towner_t *o;
    MS_PIDX_FOREACH(&t->owners, i, o)
    free(o);
    tnode_t *n;
    MS_PIDX_FOREACH(&t->lits, i, n)
    {
        free_stars(n);
        free(n);
    }
    if (t->root) {
        free_stars(t->root);
        free(t->root);
    }
    ms_pidx_cleanup(&t->subs);
    ms_pidx_cleanup(&t->owners);
    ms_pidx_cleanup(&t->lits);
    ms_ttrie_init(t);
}
