/* SPDX-License-Identifier: Apache-2.0 */
/* k-ary broadcast tree: breadth-first placement, subtree-preserving repair, bounded depth.
 *
 * How it works
 *   Every peer has a parent (except the root) and at most k children. Edges are
 *   MS_EDGE_TREE with a = parent, b = child.
 *
 *   join:  the newcomer goes under the shallowest peer with a free slot; among
 *          peers at that depth, the one that has had a free slot the longest
 *          (a FIFO per depth), so placement is a pure function of the call
 *          sequence.
 *   leave: the departed peer's children lose their parent. The child c with
 *          the fewest children (ties: smallest handle) is promoted into the
 *          departed peer's place and adopts its siblings, whose subtrees keep
 *          their depth. If c cannot take them all, c keeps one of its own
 *          children y (the emptiest) and its other children become y's
 *          spill, and so on down: spilled subtrees keep their depth, the chain
 *          c, y, ... rises one level, nothing sinks. Moves: the departed
 *          peer's children plus one spill per level of the chain (at most
 *          k x depth; 1.3-1.6 on average in the property tests). The root
 *          leaving promotes a child to root the same way.
 *   rebalance: repairs never deepen the tree, but leaves shrink N and with it
 *          the bound. Whenever the number of levels exceeds bound(N) + 1,
 *          where bound(N) = ceil(log_k((k-1)N+1)) is the fewest levels that
 *          can hold N peers, a deepest leaf moves into the shallowest free
 *          slot, one at a time, until the depth is back within bound + 1.
 *          Such a slot always exists at least two levels above the deepest:
 *          if every level but the last two were full the tree would already
 *          be within bound + 1.
 *   restore: keeps every reported parent link that is valid (both ends
 *          reported, fan-out <= k, no cycle), keeps the largest resulting tree
 *          as the tree, attaches the other fragments whole by the placement
 *          rule, rebalances, and diffs against the reported links.
 *
 * Invariants (after every call): exactly one root when N > 0; no cycle; every
 *   peer reachable from the root; fan-out <= k; levels <= bound(N) + 1;
 *   node[p].depth is p's distance from the root; each peer is in the level list
 *   of its depth and, iff it has fewer than k children, in the free list of its
 *   depth.
 *
 * Memory: O(N + highest handle); nothing allocates after join has grown the
 *   arrays, so leave and rebalance cannot fail half-way. A failed diff append
 *   (MS_ERR_NOMEM) leaves the tree consistent but the diff incomplete.
 */
#include <stdlib.h>
#include <string.h>

#include "topology.h"
#include "tree.h"

typedef struct {
    ms_peer_t parent;
    ms_peer_t first, prev, next; /* first child; siblings (doubly linked) */
    ms_peer_t lprev, lnext;      /* level list of depth */
    ms_peer_t fprev, fnext;      /* free list of depth (when nchild < k) */
    uint32_t depth;              /* root: 0 */
    uint32_t nchild;
    uint8_t present;
    uint8_t indexed; /* in the level/free lists (false while a subtree is in flight) */
    uint8_t infree;
    uint8_t mark; /* scratch for restore */
} ms_tree_node_t;

typedef struct {
    ms_peer_t head, tail;
    uint32_t n;
} ms_tree_list_t;

typedef struct {
    ms_topo_t base;
    uint32_t k;
    /* The source slot (params.source): handle 0 is the broadcast source, with
     * fan-out k1. A vacancy (ghost) keeps its place while no source is there
     * and the policy says viewers wait (hold_before: before the first source;
     * hold_after: once a source has left). The ghost is structure only: edges
     * to it are never reported, and it is not counted. */
    uint32_t k1;
    uint8_t source_slot, hold_before, hold_after;
    uint8_t ghost;         /* node 0 is a vacancy */
    ms_tree_node_t *node;  /* indexed by handle */
    ms_tree_list_t *level; /* indexed by depth: every peer at that depth */
    ms_tree_list_t *freel; /* indexed by depth: peers with a free slot */
    size_t n_slots;        /* length of node, level and freel */
    size_t count;
    uint32_t height; /* levels in use */
    ms_peer_t root;
    uint64_t leaves, moved_repair, moved_rebalance, max_moved_leave;
} ms_tree_t;

/* Lists are threaded through the nodes; which link pair is chosen by `free_list`. */
static ms_peer_t *lnk_prev(ms_tree_t *t, ms_peer_t p, int free_list)
{
    return free_list ? &t->node[p].fprev : &t->node[p].lprev;
}

static ms_peer_t *lnk_next(ms_tree_t *t, ms_peer_t p, int free_list)
{
    return free_list ? &t->node[p].fnext : &t->node[p].lnext;
}

static void list_push(ms_tree_t *t, ms_tree_list_t *l, ms_peer_t p, int free_list)
{
    *lnk_prev(t, p, free_list) = l->tail;
    *lnk_next(t, p, free_list) = MS_PEER_NONE;
    if (l->tail != MS_PEER_NONE)
        *lnk_next(t, l->tail, free_list) = p;
    else
        l->head = p;
    l->tail = p;
    l->n++;
}

static void list_remove(ms_tree_t *t, ms_tree_list_t *l, ms_peer_t p, int free_list)
{
    ms_peer_t pv = *lnk_prev(t, p, free_list), nx = *lnk_next(t, p, free_list);
    if (pv != MS_PEER_NONE)
        *lnk_next(t, pv, free_list) = nx;
    else
        l->head = nx;
    if (nx != MS_PEER_NONE)
        *lnk_prev(t, nx, free_list) = pv;
    else
        l->tail = pv;
    *lnk_prev(t, p, free_list) = *lnk_next(t, p, free_list) = MS_PEER_NONE;
    l->n--;
}

/* How many children p may have. */
static uint32_t cap_of(const ms_tree_t *t, ms_peer_t p)
{
    return t->source_slot && p == 0 ? t->k1 : t->k;
}

/* 1 for the vacancy in the source's place. */
static int is_ghost(const ms_tree_t *t, ms_peer_t p)
{
    return p == 0 && t->ghost;
}

/* Diff appends for tree links; a link to the vacancy is not an edge. */
static void link_up(ms_tree_t *t, ms_topo_diff_t *diff, ms_peer_t parent, ms_peer_t child,
                    ms_err_t *acc)
{
    if (is_ghost(t, parent))
        return;
    ms_err_t e = ms_topo_diff_connect(diff, parent, child, MS_EDGE_TREE);
    if (*acc == MS_OK)
        *acc = e;
}

static void link_down(ms_tree_t *t, ms_topo_diff_t *diff, ms_peer_t parent, ms_peer_t child,
                      ms_err_t *acc)
{
    if (is_ghost(t, parent))
        return;
    ms_err_t e = ms_topo_diff_disconnect(diff, parent, child, MS_EDGE_TREE);
    if (*acc == MS_OK)
        *acc = e;
}

/* Keeps p's free-list membership in step with its child count. */
static void free_update(ms_tree_t *t, ms_peer_t p)
{
    ms_tree_node_t *n = &t->node[p];
    if (!n->indexed)
        return;
    int want = n->nchild < cap_of(t, p);
    if (want && !n->infree)
        list_push(t, &t->freel[n->depth], p, 1);
    else if (!want && n->infree)
        list_remove(t, &t->freel[n->depth], p, 1);
    n->infree = (uint8_t)want;
}

static void node_index(ms_tree_t *t, ms_peer_t p, uint32_t depth)
{
    ms_tree_node_t *n = &t->node[p];
    n->depth = depth;
    n->indexed = 1;
    list_push(t, &t->level[depth], p, 0);
    if (depth + 1 > t->height)
        t->height = depth + 1;
    free_update(t, p);
}

static void node_unindex(ms_tree_t *t, ms_peer_t p)
{
    ms_tree_node_t *n = &t->node[p];
    if (!n->indexed)
        return;
    list_remove(t, &t->level[n->depth], p, 0);
    if (n->infree)
        list_remove(t, &t->freel[n->depth], p, 1);
    n->infree = 0;
    n->indexed = 0;
}

static void height_trim(ms_tree_t *t)
{
    while (t->height > 0 && t->level[t->height - 1].n == 0)
        t->height--;
}

/* Preorder walk of the subtree under s; fn gets each node and its depth relative to s. */
typedef void (*subtree_fn)(ms_tree_t *t, ms_peer_t p, uint32_t rel, void *ud);

static void subtree_walk(ms_tree_t *t, ms_peer_t s, subtree_fn fn, void *ud)
{
    ms_peer_t cur = s;
    uint32_t rel = 0;
    for (;;) {
        fn(t, cur, rel, ud);
        if (t->node[cur].first != MS_PEER_NONE) {
            cur = t->node[cur].first;
            rel++;
            continue;
        }
        while (cur != s && t->node[cur].next == MS_PEER_NONE) {
            cur = t->node[cur].parent;
            rel--;
        }
        if (cur == s)
            return;
        cur = t->node[cur].next;
    }
}

static void unindex_fn(ms_tree_t *t, ms_peer_t p, uint32_t rel, void *ud)
{
    (void)rel;
    (void)ud;
    node_unindex(t, p);
}

static void index_fn(ms_tree_t *t, ms_peer_t p, uint32_t rel, void *ud)
{
    node_index(t, p, *(const uint32_t *)ud + rel);
}

static void subtree_index(ms_tree_t *t, ms_peer_t s, uint32_t depth)
{
    subtree_walk(t, s, index_fn, &depth);
}

static void attach(ms_tree_t *t, ms_peer_t c, ms_peer_t parent)
{
    ms_tree_node_t *pn = &t->node[parent], *cn = &t->node[c];
    cn->parent = parent;
    cn->prev = MS_PEER_NONE;
    cn->next = pn->first;
    if (pn->first != MS_PEER_NONE)
        t->node[pn->first].prev = c;
    pn->first = c;
    pn->nchild++;
    free_update(t, parent);
}

static void detach(ms_tree_t *t, ms_peer_t c)
{
    ms_tree_node_t *cn = &t->node[c];
    ms_peer_t parent = cn->parent;
    if (parent == MS_PEER_NONE)
        return;
    ms_tree_node_t *pn = &t->node[parent];
    if (cn->prev != MS_PEER_NONE)
        t->node[cn->prev].next = cn->next;
    else
        pn->first = cn->next;
    if (cn->next != MS_PEER_NONE)
        t->node[cn->next].prev = cn->prev;
    cn->prev = cn->next = cn->parent = MS_PEER_NONE;
    pn->nchild--;
    free_update(t, parent);
}

/* The peer with a free slot nearest the root (oldest free at that depth), or NONE. */
static ms_peer_t shallowest_free(const ms_tree_t *t)
{
    for (uint32_t d = 0; d < t->height; d++)
        if (t->freel[d].n)
            return t->freel[d].head;
    return MS_PEER_NONE;
}

/* The same, never `except`. */
static ms_peer_t shallowest_free_but(const ms_tree_t *t, ms_peer_t except)
{
    for (uint32_t d = 0; d < t->height; d++)
        for (ms_peer_t c = t->freel[d].head; c != MS_PEER_NONE; c = t->node[c].fnext)
            if (c != except)
                return c;
    return MS_PEER_NONE;
}

/* The fewest levels that hold n nodes when the root has fan-out k1 and every
 * other node k (k1 == k: ceil(log_k((k-1)n+1))). */
static uint32_t levels_bound_k1(size_t n, uint32_t k, uint32_t k1)
{
    uint64_t cap = 0, pw = 1;
    uint32_t l = 0;
    while (cap < n) {
        cap += pw;
        uint32_t m = l == 0 ? k1 : k;
        pw = pw > UINT64_MAX / m ? UINT64_MAX / 2 : pw * m;
        l++;
    }
    return l;
}

/* The bound for t's current shape: the vacancy takes a place like a peer, and
 * the root's fan-out is k1 only while the source slot is the root. */
static uint32_t levels_bound(const ms_tree_t *t)
{
    uint32_t k1 = t->source_slot && t->root == 0 ? t->k1 : t->k;
    return levels_bound_k1(t->count + t->ghost, t->k, k1);
}

static void diff_note(ms_err_t *acc, ms_err_t err)
{
    if (*acc == MS_OK)
        *acc = err;
}

/* Moves deepest leaves up until levels <= bound + 1; returns how many moved.
 * `who` is never moved under `not_under` (a re-parented peer does not go back
 * to the parent it left; MS_PEER_NONE for no such rule). */
static uint64_t rebalance(ms_tree_t *t, ms_topo_diff_t *diff, ms_err_t *derr, ms_peer_t who,
                          ms_peer_t not_under)
{
    uint64_t moved = 0;
    height_trim(t);
    while (t->height > levels_bound(t) + 1) {
        ms_peer_t leaf = t->level[t->height - 1].head;
        ms_peer_t q = shallowest_free(t);
        if (leaf == who && q == not_under) {
            /* Another leaf of the deepest level goes there, or `who` elsewhere
             * if that keeps the bound; otherwise the bound wins. */
            ms_peer_t q2;
            if (t->node[leaf].lnext != MS_PEER_NONE)
                leaf = t->node[leaf].lnext;
            else if ((q2 = shallowest_free_but(t, not_under)) != MS_PEER_NONE &&
                     t->node[q2].depth + 2 < t->height)
                q = q2;
        }
        if (q == MS_PEER_NONE || t->node[q].depth + 2 >= t->height)
            break; /* cannot happen (see the top comment); never loop forever */
        ms_peer_t old = t->node[leaf].parent;
        detach(t, leaf);
        node_unindex(t, leaf);
        attach(t, leaf, q);
        node_index(t, leaf, t->node[q].depth + 1);
        link_down(t, diff, old, leaf, derr);
        link_up(t, diff, q, leaf, derr);
        moved++;
        height_trim(t);
    }
    t->moved_rebalance += moved;
    return moved;
}

static void node_reset(ms_tree_node_t *n)
{
    memset(n, 0, sizeof(*n));
    n->parent = n->first = n->prev = n->next = MS_PEER_NONE;
    n->lprev = n->lnext = n->fprev = n->fnext = MS_PEER_NONE;
}

static ms_err_t grow(ms_tree_t *t, ms_peer_t p)
{
    if (p < t->n_slots)
        return MS_OK;
    size_t n = t->n_slots ? t->n_slots : 16;
    while (n <= p)
        n *= 2;
    ms_tree_node_t *nn = realloc(t->node, n * sizeof(*nn));
    if (!nn)
        return MS_ERR_NOMEM;
    t->node = nn;
    /* Depths never reach the number of handles, so n lists per kind suffice. */
    ms_tree_list_t *nl = realloc(t->level, n * sizeof(*nl));
    if (!nl)
        return MS_ERR_NOMEM;
    t->level = nl;
    ms_tree_list_t *nf = realloc(t->freel, n * sizeof(*nf));
    if (!nf)
        return MS_ERR_NOMEM;
    t->freel = nf;
    for (size_t i = t->n_slots; i < n; i++) {
        node_reset(&t->node[i]);
        t->level[i] = t->freel[i] = (ms_tree_list_t){MS_PEER_NONE, MS_PEER_NONE, 0};
    }
    t->n_slots = n;
    return MS_OK;
}

/* p is a peer in the tree (not the vacancy). */
static int has(const ms_tree_t *t, ms_peer_t p)
{
    return p < t->n_slots && t->node[p].present && !is_ghost(t, p);
}

static ms_err_t tree_create(const ms_topo_params_t *params, ms_topo_t **out)
{
    uint32_t k = params && params->k ? params->k : 4;
    if (k < 2)
        return MS_ERR_INVAL;
    ms_tree_t *t = calloc(1, sizeof(*t));
    if (!t)
        return MS_ERR_NOMEM;
    t->base.ops = &ms_topo_tree_ops;
    t->k = k;
    t->k1 = params && params->k1 ? params->k1 : 10;
    if (params && params->source) {
        if (t->k1 < 1) {
            free(t);
            return MS_ERR_INVAL;
        }
        t->source_slot = 1;
        t->hold_before = (params->source & MS_TREE_HOLD_BEFORE) != 0;
        t->hold_after = (params->source & MS_TREE_HOLD_AFTER) != 0;
    }
    t->root = MS_PEER_NONE;
    *out = &t->base;
    return MS_OK;
}

static void tree_destroy(ms_topo_t *base)
{
    ms_tree_t *t = (ms_tree_t *)base;
    if (!t)
        return;
    free(t->node);
    free(t->level);
    free(t->freel);
    free(t);
}

/* The vacancy takes the root: viewers hang below it and wait for a source. */
static void ghost_root(ms_tree_t *t)
{
    node_reset(&t->node[0]);
    t->node[0].present = 1;
    t->ghost = 1;
    t->root = 0;
    node_index(t, 0, 0);
}

/* The source arrives: into the vacancy (its children get their parent), or
 * above the current root (re-root: one new link, everyone one level deeper,
 * then leaves move up into the source's free slots while the tree is too deep). */
static ms_err_t source_arrives(ms_tree_t *t, ms_topo_diff_t *diff)
{
    ms_err_t err = MS_OK;
    t->count++;
    if (t->ghost) {
        t->ghost = 0;
        free_update(t, 0);
        for (ms_peer_t c = t->node[0].first; c != MS_PEER_NONE; c = t->node[c].next)
            link_up(t, diff, 0, c, &err);
        return err;
    }
    node_reset(&t->node[0]);
    t->node[0].present = 1;
    ms_peer_t r = t->root;
    if (r == MS_PEER_NONE) {
        t->root = 0;
        node_index(t, 0, 0);
        return MS_OK;
    }
    subtree_walk(t, r, unindex_fn, NULL);
    t->height = 0;
    t->root = 0;
    attach(t, r, 0);
    subtree_index(t, 0, 0);
    link_up(t, diff, 0, r, &err);
    rebalance(t, diff, &err, MS_PEER_NONE, MS_PEER_NONE);
    return err;
}

static ms_err_t tree_join(ms_topo_t *base, ms_peer_t p, ms_topo_pos_t pos, ms_topo_diff_t *diff)
{
    ms_tree_t *t = (ms_tree_t *)base;
    (void)pos;
    if (p >= MS_PEER_MAX)
        return MS_ERR_INVAL;
    if (has(t, p))
        return MS_ERR_EXISTS;
    ms_err_t err = grow(t, p);
    if (err != MS_OK)
        return err;
    if (t->source_slot && p == 0)
        return source_arrives(t, diff);
    if (t->root == MS_PEER_NONE && t->source_slot && t->hold_before && (err = grow(t, 0)) == MS_OK)
        ghost_root(t);
    if (err != MS_OK)
        return err;
    node_reset(&t->node[p]);
    t->node[p].present = 1;
    t->count++;
    if (t->root == MS_PEER_NONE) {
        t->root = p;
        node_index(t, p, 0);
        return MS_OK;
    }
    ms_peer_t q = shallowest_free(t);
    attach(t, p, q);
    node_index(t, p, t->node[q].depth + 1);
    link_up(t, diff, q, p, &err);
    /* Breadth-first placement never exceeds the bound; this is a safety net. */
    rebalance(t, diff, &err, MS_PEER_NONE, MS_PEER_NONE);
    return err;
}

/* The child of x with the fewest children (ties: smallest handle), skipping marked ones. */
static ms_peer_t emptiest_child(const ms_tree_t *t, ms_peer_t x)
{
    ms_peer_t best = MS_PEER_NONE;
    for (ms_peer_t c = t->node[x].first; c != MS_PEER_NONE; c = t->node[c].next) {
        if (t->node[c].mark)
            continue;
        if (best == MS_PEER_NONE || t->node[c].nchild < t->node[best].nchild ||
            (t->node[c].nchild == t->node[best].nchild && c < best))
            best = c;
    }
    return best;
}

/* Moves every child of the departed peer `from` under `to` (their old links
 * are already disconnected); marks them with `mark`; returns how many moved. */
static uint64_t adopt_all(ms_tree_t *t, ms_peer_t from, ms_peer_t to, int mark,
                          ms_topo_diff_t *diff, ms_err_t *derr)
{
    uint64_t moved = 0;
    while (t->node[from].first != MS_PEER_NONE) {
        ms_peer_t s = t->node[from].first;
        detach(t, s);
        attach(t, s, to);
        t->node[s].mark = (uint8_t)mark;
        link_up(t, diff, to, s, derr);
        moved++;
    }
    return moved;
}

static void unmark_children(ms_tree_t *t, ms_peer_t x)
{
    for (ms_peer_t c = t->node[x].first; c != MS_PEER_NONE; c = t->node[c].next)
        t->node[c].mark = 0;
}

static ms_err_t leave_node(ms_tree_t *t, ms_peer_t p, ms_topo_diff_t *diff);

/* Moves children of x beyond its capacity, each with its subtree, to the free
 * slots nearest the root (never below themselves: a moving subtree is out of
 * the lists while it moves). */
static void fix_overfull(ms_tree_t *t, ms_peer_t x, ms_topo_diff_t *diff, ms_err_t *derr)
{
    uint64_t moved = 0;
    while (t->node[x].nchild > cap_of(t, x)) {
        ms_peer_t s = t->node[x].first;
        link_down(t, diff, x, s, derr);
        subtree_walk(t, s, unindex_fn, NULL);
        detach(t, s);
        ms_peer_t q = shallowest_free(t);
        if (q == MS_PEER_NONE) /* cannot happen: x's own siblings-to-be have slots */
            q = x;
        attach(t, s, q);
        subtree_index(t, s, t->node[q].depth + 1);
        link_up(t, diff, q, s, derr);
        moved++;
    }
    height_trim(t);
    t->moved_repair += moved;
    if (moved) {
        rebalance(t, diff, derr, MS_PEER_NONE, MS_PEER_NONE);
        ms_topo_diff_normalize(diff);
    }
}

static ms_err_t tree_leave(ms_topo_t *base, ms_peer_t p, ms_topo_diff_t *diff)
{
    ms_tree_t *t = (ms_tree_t *)base;
    if (!has(t, p))
        return MS_ERR_NOTFOUND;
    ms_err_t err = MS_OK;
    if (t->source_slot && p == 0 && t->hold_after && t->node[0].first != MS_PEER_NONE) {
        /* The source goes; its place is held and nothing else moves. */
        for (ms_peer_t c = t->node[0].first; c != MS_PEER_NONE; c = t->node[c].next)
            link_down(t, diff, 0, c, &err);
        if (t->node[0].parent != MS_PEER_NONE) { /* cannot happen: the source is the root */
            link_down(t, diff, t->node[0].parent, 0, &err);
            detach(t, 0);
        }
        t->ghost = 1;
        t->count--;
        t->leaves++;
        ms_topo_diff_normalize(diff);
        return err;
    }
    err = leave_node(t, p, diff);
    /* The promoted child took the source's children, up to k1 of them, but
     * may keep only k: the rest move, whole, to the free slots nearest the root. */
    if (t->source_slot && p == 0 && t->root != MS_PEER_NONE)
        fix_overfull(t, t->root, diff, &err);
    /* A vacancy with nobody waiting below it is no longer needed. */
    if (t->ghost && t->count == 0) {
        node_unindex(t, 0);
        node_reset(&t->node[0]);
        t->ghost = 0;
        t->root = MS_PEER_NONE;
        height_trim(t);
    }
    return err;
}

static ms_err_t leave_node(ms_tree_t *t, ms_peer_t p, ms_topo_diff_t *diff)
{
    ms_err_t derr = MS_OK;
    ms_tree_node_t *pn = &t->node[p];
    ms_peer_t g = pn->parent;
    uint32_t d = pn->depth;
    if (g != MS_PEER_NONE) {
        link_down(t, diff, g, p, &derr);
        detach(t, p);
    }
    /* Everything below p is re-indexed at the end; out of the lists meanwhile. */
    subtree_walk(t, p, unindex_fn, NULL);
    uint64_t moved = 0;
    ms_peer_t c = emptiest_child(t, p);
    if (c == MS_PEER_NONE && g == MS_PEER_NONE)
        t->root = MS_PEER_NONE;
    if (c != MS_PEER_NONE) {
        for (ms_peer_t s = pn->first; s != MS_PEER_NONE; s = t->node[s].next)
            link_down(t, diff, p, s, &derr);
        detach(t, c);
        if (g != MS_PEER_NONE) {
            attach(t, c, g);
            link_up(t, diff, g, c, &derr);
        } else {
            t->root = c;
        }
        moved++;
        /* p now holds c's siblings ("spill"), which must hang one level below c
         * to keep their depth. While c cannot take them all, c keeps one of its
         * own children y, hands its other children to p to become y's spill,
         * and so on down: every spilled subtree keeps its depth, the chain
         * c, y, ... rises by one, and nothing ever sinks. */
        ms_peer_t x = c;
        while (pn->first != MS_PEER_NONE) {
            ms_peer_t y = emptiest_child(t, x);
            if (y == MS_PEER_NONE || t->node[x].nchild + pn->nchild <= cap_of(t, x)) {
                moved += adopt_all(t, p, x, 0, diff, &derr);
                break;
            }
            /* x adopts the spill (marked so it is not parked again), then parks
             * its own children but y on p: they are y's spill next round. */
            moved += adopt_all(t, p, x, 1, diff, &derr);
            for (ms_peer_t o = t->node[x].first, nx; o != MS_PEER_NONE; o = nx) {
                nx = t->node[o].next;
                if (o == y || t->node[o].mark)
                    continue;
                detach(t, o);
                attach(t, o, p);
                link_down(t, diff, x, o, &derr);
            }
            unmark_children(t, x);
            x = y;
        }
        subtree_index(t, c, d);
    }
    node_reset(pn);
    t->count--;
    t->moved_repair += moved;
    moved += rebalance(t, diff, &derr, MS_PEER_NONE, MS_PEER_NONE);
    t->leaves++;
    if (moved > t->max_moved_leave)
        t->max_moved_leave = moved;
    ms_topo_diff_normalize(diff);
    return derr;
}

static size_t tree_neighbours(const ms_topo_t *base, ms_peer_t p, ms_peer_t *out, size_t max)
{
    const ms_tree_t *t = (const ms_tree_t *)base;
    if (!has(t, p))
        return 0;
    size_t n = 0;
    if (t->node[p].parent != MS_PEER_NONE && !is_ghost(t, t->node[p].parent)) {
        if (n < max)
            out[n] = t->node[p].parent;
        n++;
    }
    for (ms_peer_t c = t->node[p].first; c != MS_PEER_NONE; c = t->node[c].next) {
        if (n < max)
            out[n] = c;
        n++;
    }
    return n;
}

static int tree_adjacent(const ms_topo_t *base, ms_peer_t a, ms_peer_t b)
{
    const ms_tree_t *t = (const ms_tree_t *)base;
    if (!has(t, a) || !has(t, b))
        return 0;
    return t->node[a].parent == b || t->node[b].parent == a;
}

static void tree_edges(const ms_topo_t *base, ms_topo_edge_fn fn, void *ud)
{
    const ms_tree_t *t = (const ms_tree_t *)base;
    for (size_t p = 0; p < t->n_slots; p++)
        if (t->node[p].present && t->node[p].parent != MS_PEER_NONE &&
            !is_ghost(t, t->node[p].parent))
            fn(t->node[p].parent, (ms_peer_t)p, MS_EDGE_TREE, ud);
}

static size_t tree_count(const ms_topo_t *base)
{
    return ((const ms_tree_t *)base)->count;
}

static void size_fn(ms_tree_t *t, ms_peer_t p, uint32_t rel, void *ud)
{
    (void)t;
    (void)p;
    (void)rel;
    (*(size_t *)ud)++;
}

/* Breaks every cycle among the tentative parent links: walking up from each
 * peer in report order, the link that closes a cycle is cut. mark: 0 unseen,
 * 1 on the current walk, 2 done. */
static void break_cycles(ms_tree_t *t, const ms_topo_report_t *reports, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        ms_peer_t v = reports[i].peer;
        if (!has(t, v) || t->node[v].mark)
            continue;
        ms_peer_t u = v;
        for (;;) {
            t->node[u].mark = 1;
            ms_peer_t par = t->node[u].parent;
            if (par == MS_PEER_NONE || t->node[par].mark == 2)
                break;
            if (t->node[par].mark == 1) {
                detach(t, u);
                break;
            }
            u = par;
        }
        for (u = v; u != MS_PEER_NONE && t->node[u].mark == 1; u = t->node[u].parent)
            t->node[u].mark = 2;
    }
}

static ms_err_t tree_restore(ms_topo_t *base, const ms_topo_report_t *reports, size_t n,
                             ms_topo_diff_t *diff)
{
    ms_tree_t *t = (ms_tree_t *)base;
    ms_err_t err = MS_OK;
    if (t->count != 0)
        return MS_ERR_STATE;
    /* 1. Every reported peer (first report wins). */
    for (size_t i = 0; i < n; i++) {
        ms_peer_t p = reports[i].peer;
        if (p >= MS_PEER_MAX)
            return MS_ERR_INVAL;
        if ((err = grow(t, p)) != MS_OK)
            return err;
        if (t->node[p].present)
            continue;
        node_reset(&t->node[p]);
        t->node[p].present = 1;
        t->count++;
    }
    /* 2. Valid links: both ends reported, not a self-loop, fan-out <= k (earlier
     *    reports first; a peer reported twice keeps the first valid link).
     *    Nothing is indexed yet, so attach only links. */
    for (size_t i = 0; i < n; i++) {
        ms_peer_t p = reports[i].peer, par = reports[i].parent;
        if (t->node[p].parent != MS_PEER_NONE || par == MS_PEER_NONE || par == p || !has(t, par) ||
            t->node[par].nchild >= cap_of(t, par))
            continue;
        attach(t, p, par);
    }
    break_cycles(t, reports, n);
    /* 3. The largest fragment is the tree; the others attach whole by placement. */
    ms_peer_t root = MS_PEER_NONE;
    size_t best = 0;
    for (size_t i = 0; i < n; i++) {
        ms_peer_t p = reports[i].peer;
        if (t->node[p].parent != MS_PEER_NONE || t->node[p].indexed)
            continue;
        size_t sz = 0;
        subtree_walk(t, p, size_fn, &sz);
        if (sz > best) {
            best = sz;
            root = p;
        }
    }
    /* With a source slot the source is the root whatever the sizes; without a
     * source, a held place becomes the root and every fragment hangs below it. */
    if (t->source_slot && has(t, 0) && t->node[0].parent == MS_PEER_NONE) {
        root = 0;
    } else if (t->source_slot && !has(t, 0) && (t->hold_before || t->hold_after) && n > 0) {
        if ((err = grow(t, 0)) != MS_OK)
            return err;
        ghost_root(t);
        root = MS_PEER_NONE; /* indexed already; all fragments attach below */
        for (size_t i = 0; i < n; i++) {
            ms_peer_t p = reports[i].peer;
            if (t->node[p].parent != MS_PEER_NONE || t->node[p].indexed)
                continue;
            ms_peer_t q = shallowest_free(t);
            attach(t, p, q);
            subtree_index(t, p, t->node[q].depth + 1);
        }
    }
    if (root != MS_PEER_NONE) {
        t->root = root;
        subtree_index(t, root, 0);
        for (size_t i = 0; i < n; i++) {
            ms_peer_t p = reports[i].peer;
            if (t->node[p].parent != MS_PEER_NONE || t->node[p].indexed)
                continue;
            ms_peer_t q = shallowest_free(t);
            attach(t, p, q);
            subtree_index(t, p, t->node[q].depth + 1);
        }
    }
    for (size_t i = 0; i < n; i++)
        t->node[reports[i].peer].mark = 0;
    /* A reported chain may be deeper than bound + 1. The moves need no diff of
     * their own: the diff below is taken against the final tree. */
    ms_topo_diff_t scratch;
    ms_topo_diff_init(&scratch);
    ms_err_t serr = MS_OK;
    rebalance(t, &scratch, &serr, MS_PEER_NONE, MS_PEER_NONE);
    ms_topo_diff_cleanup(&scratch);
    /* 4. diff = edges now - edges reported. A report names its parent and, among
     *    its neighbours, its children; each link may be reported by both ends. */
    for (size_t p = 0; p < t->n_slots; p++)
        if (t->node[p].present && t->node[p].parent != MS_PEER_NONE)
            link_up(t, diff, t->node[p].parent, (ms_peer_t)p, &err);
    for (size_t i = 0; i < n; i++) {
        const ms_topo_report_t *r = &reports[i];
        if (r->parent != MS_PEER_NONE)
            diff_note(&err, ms_topo_diff_disconnect(diff, r->parent, r->peer, MS_EDGE_TREE));
        for (size_t j = 0; j < r->n_neighbours; j++) {
            ms_peer_t nb = r->neighbours[j];
            if (nb != r->parent && nb != r->peer)
                diff_note(&err, ms_topo_diff_disconnect(diff, r->peer, nb, MS_EDGE_TREE));
        }
    }
    ms_topo_diff_normalize(diff);
    return err;
}

void ms_tree_stats(const ms_topo_t *base, ms_tree_stats_t *out)
{
    const ms_tree_t *t = (const ms_tree_t *)base;
    memset(out, 0, sizeof(*out));
    out->count = t->count;
    out->k = t->k;
    out->depth = t->height;
    out->bound = levels_bound(t);
    out->k1 = t->source_slot ? t->k1 : t->k;
    out->source = t->source_slot && has(t, 0) && t->root == 0;
    out->waiting = t->ghost;
    for (size_t p = 0; p < t->n_slots; p++)
        if (t->node[p].present && t->node[p].nchild > out->max_fanout && !is_ghost(t, (ms_peer_t)p))
            out->max_fanout = t->node[p].nchild;
    out->leaves = t->leaves;
    out->moved_repair = t->moved_repair;
    out->moved_rebalance = t->moved_rebalance;
    out->max_moved_leave = t->max_moved_leave;
}

ms_peer_t ms_tree_parent(const ms_topo_t *base, ms_peer_t p)
{
    const ms_tree_t *t = (const ms_tree_t *)base;
    if (!has(t, p) || is_ghost(t, t->node[p].parent))
        return MS_PEER_NONE;
    return t->node[p].parent;
}

int ms_tree_waiting(const ms_topo_t *base)
{
    const ms_tree_t *t = (const ms_tree_t *)base;
    return t->ghost;
}

static void mark_fn(ms_tree_t *t, ms_peer_t p, uint32_t rel, void *ud)
{
    (void)rel;
    t->node[p].mark = (uint8_t)(uintptr_t)ud;
}

ms_err_t ms_tree_reparent(ms_topo_t *base, ms_peer_t p, ms_peer_t avoid, ms_topo_diff_t *diff)
{
    ms_tree_t *t = (ms_tree_t *)base;
    if (!has(t, p))
        return MS_ERR_NOTFOUND;
    ms_peer_t old = t->node[p].parent;
    if (old == MS_PEER_NONE)
        return MS_ERR_INVAL; /* the root has no parent to change */
    /* The new parent: a free slot nearest the root, outside p's subtree (no
     * cycle), neither the current parent nor `avoid`. */
    subtree_walk(t, p, mark_fn, (void *)(uintptr_t)1);
    ms_peer_t q = MS_PEER_NONE;
    for (uint32_t d = 0; d < t->height && q == MS_PEER_NONE; d++)
        for (ms_peer_t c = t->freel[d].head; c != MS_PEER_NONE; c = t->node[c].fnext)
            if (!t->node[c].mark && c != old && c != avoid) {
                q = c;
                break;
            }
    subtree_walk(t, p, mark_fn, (void *)(uintptr_t)0);
    if (q == MS_PEER_NONE)
        return MS_ERR_FULL;
    ms_err_t err = MS_OK;
    link_down(t, diff, old, p, &err);
    subtree_walk(t, p, unindex_fn, NULL);
    detach(t, p);
    attach(t, p, q);
    subtree_index(t, p, t->node[q].depth + 1);
    link_up(t, diff, q, p, &err);
    t->moved_repair++;
    rebalance(t, diff, &err, p, old);
    ms_topo_diff_normalize(diff);
    /* Only back under old keeps the depth bound: p stays (diff has the rest). */
    if (err == MS_OK && t->node[p].parent == old)
        return MS_ERR_FULL;
    return err;
}

/* A failed tree edge: the child moves (with its subtree) under another parent,
 * never the one it could not reach. */
static ms_err_t tree_fail(ms_topo_t *base, ms_peer_t a, ms_peer_t b, ms_topo_diff_t *diff)
{
    ms_tree_t *t = (ms_tree_t *)base;
    if (!has(t, a) || !has(t, b))
        return MS_ERR_NOTFOUND;
    if (t->node[b].parent == a)
        return ms_tree_reparent(base, b, a, diff);
    if (t->node[a].parent == b)
        return ms_tree_reparent(base, a, b, diff);
    return MS_ERR_NOTFOUND;
}

static ms_err_t tree_write_json(const ms_topo_t *base, json_t *obj)
{
    ms_tree_stats_t s;
    ms_tree_stats(base, &s);
    int rc = 0;
    rc |= json_object_set_new(obj, "k", json_integer(s.k));
    rc |= json_object_set_new(obj, "k1", json_integer(s.k1));
    rc |= json_object_set_new(obj, "source", json_boolean(s.source));
    rc |= json_object_set_new(obj, "waiting_for_source", json_boolean(s.waiting));
    rc |= json_object_set_new(obj, "peers", json_integer((json_int_t)s.count));
    rc |= json_object_set_new(obj, "depth", json_integer(s.depth));
    rc |= json_object_set_new(obj, "depth_bound", json_integer(s.bound));
    rc |= json_object_set_new(obj, "max_fanout", json_integer(s.max_fanout));
    rc |= json_object_set_new(obj, "moves_repair", json_integer((json_int_t)s.moved_repair));
    rc |= json_object_set_new(obj, "moves_rebalance", json_integer((json_int_t)s.moved_rebalance));
    rc |= json_object_set_new(obj, "moves",
                              json_integer((json_int_t)(s.moved_repair + s.moved_rebalance)));
    rc |= json_object_set_new(obj, "max_moves_per_leave",
                              json_integer((json_int_t)s.max_moved_leave));
    return rc ? MS_ERR_NOMEM : MS_OK;
}

const ms_topo_ops_t ms_topo_tree_ops = {
    .name = "tree",
    .create = tree_create,
    .destroy = tree_destroy,
    .join = tree_join,
    .leave = tree_leave,
    .move = NULL,
    .neighbours = tree_neighbours,
    .adjacent = tree_adjacent,
    .edges = tree_edges,
    .count = tree_count,
    .restore = tree_restore,
    .fail_edge = tree_fail,
    .tick = NULL,
    .write_json = tree_write_json,
};
