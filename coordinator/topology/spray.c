/* SPDX-License-Identifier: Apache-2.0 */
/* Spray random peer sampling: views of about a*ln(N) + b, shuffles, churn repair.
 *
 * How it works (after Nédelec, Molli, Mostefaoui, "Spray", and spray-wrtc)
 *   Each peer has a view: a multiset of out-arcs (duplicates allowed, as in
 *   Spray), each with an age. The signalling graph the engine exposes is the
 *   undirected union of all arcs: p and q are neighbours while at least one
 *   arc p->q or q->p exists. Diffs report only changes of that graph.
 *
 *   join(n):  a contact c is drawn from the PRNG; n gets the arc n->c and each
 *             arc c->x of c's view is duplicated as x->n, so a join injects
 *             arcs in proportion to the view size. The number of injected arcs
 *             is corrected towards the target total N*(a*ln N + b): if c's view
 *             is larger than the deficit only part of it is copied; if smaller,
 *             n also gets out-arcs n->x copied from c's view.
 *   leave(q): q's out-arcs vanish. Each peer p holding occ arcs to q drops them
 *             and, per Spray, occ times duplicates a random arc of its own view
 *             with probability 1 - 1/(|view(p)| + occ). About one in-arc per
 *             departure is lost, which is what keeps views near a*ln N + b.
 *             Then a connectivity check: a multi-source breadth-first search
 *             from q's former neighbours in the remaining graph unions them as
 *             the searches meet; any group still apart when the search ends (or
 *             exceeds its budget) gets an arc to the first group. Since the
 *             graph was connected before and every component of G - q holds a
 *             neighbour of q, G - q is connected afterwards.
 *   fail(a, b): the WebRTC edge a-b cannot come up. The pair is remembered as
 *             failed and every arc a->b (b->a) is replaced by an arc a->z
 *             (b->z') to a peer z drawn among those neither linked nor failed
 *             with a (with b), so both views keep their size; with no such
 *             peer, a duplicate of another arc of the view. If a and b are
 *             then apart, an arc from a peer of a's side (not failed with b)
 *             to b joins them again. Failed pairs are not linked again while
 *             both are present: a shuffle that would hand q an arc to a peer
 *             it failed with hands it an arc to its partner instead, and the
 *             connectivity arcs avoid failed pairs. Only when no other link
 *             can keep the graph connected is a failed pair linked (counted
 *             in forced_arcs).
 *   tick():   every peer in turn shuffles with the oldest neighbour q of its
 *             view: it sends half its view (the arc to q included, turned into
 *             q->p) and q sends back half of its own (arcs to p turned into
 *             p->q). The total number of arcs is unchanged and view sizes
 *             average out. An exchange keeps the graph connected: every moved
 *             arc's target stays adjacent to p or q, and p and q stay adjacent.
 *
 * Randomness: xoshiro256** seeded from params->seed through splitmix64; no
 *   other source, so a run is a pure function of the seed and the calls.
 *
 * Invariants (after every call): no self-arc; for each pair the adjacency
 *   entries of both ends agree on the arc counts each way; in_deg and the
 *   total arc count match the views; the undirected graph is connected.
 *
 * Errors: on MS_ERR_NOMEM a join is undone and an exchange rolled back; a
 *   leave completes but may lack a duplicated arc (never a connectivity arc
 *   unless that allocation fails too, which is then reported).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "spray.h"
#include "topology.h"

typedef struct {
    ms_peer_t to;
    uint32_t age;
} ms_spray_arc_t;

/* One neighbour of a peer in the undirected graph and the arcs behind it. */
typedef struct {
    ms_peer_t peer;
    uint32_t out; /* arcs self -> peer */
    uint32_t in;  /* arcs peer -> self */
} ms_spray_adj_t;

typedef struct {
    ms_spray_arc_t *view;
    uint32_t n_view, cap_view;
    ms_spray_adj_t *adj;
    uint32_t n_adj, cap_adj;
    uint32_t in_deg;
    ms_peer_t *failed; /* peers whose edge with this one failed (fail()) */
    uint32_t n_failed, cap_failed;
    uint32_t pos; /* index in alive[] */
    uint8_t present;
} ms_spray_peer_t;

typedef struct {
    ms_topo_t base;
    double a, b;
    uint64_t rng[4];
    ms_spray_peer_t *peer; /* indexed by handle */
    size_t n_slots;
    ms_peer_t *alive; /* dense list of present peers, for uniform draws */
    size_t count;
    uint64_t arcs;
    uint64_t exchanges, repair_arcs;
    uint64_t failed_pairs, replaced_arcs, forced_arcs;
    /* Scratch, sized n_slots: search stamps, group labels and queue. */
    uint32_t *stamp, *label;
    ms_peer_t *queue;
    size_t cap_aux; /* length of alive, stamp, label, queue (catches up with n_slots) */
    uint32_t gen;
    /* Scratch grown on demand: neighbour lists, union-find, samples. */
    ms_peer_t *s1, *s2;
    uint32_t *u1, *u2;
    size_t cap_s;
} ms_spray_t;

/* ---- PRNG: xoshiro256** ---- */

static uint64_t splitmix64(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

static uint64_t rng_next(ms_spray_t *t)
{
    uint64_t *s = t->rng;
    uint64_t r = rotl(s[1] * 5, 7) * 9, u = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= u;
    s[3] = rotl(s[3], 45);
    return r;
}

static uint32_t rng_below(ms_spray_t *t, uint32_t n)
{
    return (uint32_t)(((rng_next(t) >> 32) * (uint64_t)n) >> 32);
}

static double rng_unit(ms_spray_t *t)
{
    return (double)(rng_next(t) >> 11) * 0x1.0p-53;
}

/* ---- arcs and the undirected adjacency ---- */

static void diff_note(ms_err_t *acc, ms_err_t err)
{
    if (*acc == MS_OK)
        *acc = err;
}

static int has(const ms_spray_t *t, ms_peer_t p)
{
    return p < t->n_slots && t->peer[p].present;
}

static long adj_find(const ms_spray_peer_t *p, ms_peer_t q)
{
    for (uint32_t i = 0; i < p->n_adj; i++)
        if (p->adj[i].peer == q)
            return (long)i;
    return -1;
}

static ms_err_t grow_arr(void **v, uint32_t *cap, uint32_t need, size_t elem)
{
    if (need <= *cap)
        return MS_OK;
    uint32_t n = *cap ? *cap : 8;
    while (n < need)
        n *= 2;
    void *nv = realloc(*v, (size_t)n * elem);
    if (!nv)
        return MS_ERR_NOMEM;
    *v = nv;
    *cap = n;
    return MS_OK;
}

/* The edge p-q was reported failed (both present). */
static int failed_has(const ms_spray_t *t, ms_peer_t p, ms_peer_t q)
{
    const ms_spray_peer_t *pp = &t->peer[p], *qq = &t->peer[q];
    if (pp->n_failed > qq->n_failed) {
        pp = qq;
        q = p;
    }
    for (uint32_t i = 0; i < pp->n_failed; i++)
        if (pp->failed[i] == q)
            return 1;
    return 0;
}

static ms_err_t failed_add(ms_spray_t *t, ms_peer_t p, ms_peer_t q)
{
    ms_spray_peer_t *pp = &t->peer[p], *qq = &t->peer[q];
    if (grow_arr((void **)&pp->failed, &pp->cap_failed, pp->n_failed + 1, sizeof(*pp->failed)) ||
        grow_arr((void **)&qq->failed, &qq->cap_failed, qq->n_failed + 1, sizeof(*qq->failed)))
        return MS_ERR_NOMEM;
    pp->failed[pp->n_failed++] = q;
    qq->failed[qq->n_failed++] = p;
    t->failed_pairs++;
    return MS_OK;
}

/* q leaves: its failed pairs go with it (its handle may be reused). */
static void failed_forget(ms_spray_t *t, ms_peer_t q)
{
    ms_spray_peer_t *qq = &t->peer[q];
    for (uint32_t i = 0; i < qq->n_failed; i++) {
        ms_spray_peer_t *f = &t->peer[qq->failed[i]];
        for (uint32_t j = 0; j < f->n_failed; j++)
            if (f->failed[j] == q) {
                f->failed[j] = f->failed[--f->n_failed];
                break;
            }
        t->failed_pairs--;
    }
    qq->n_failed = 0;
}

/* Adds the arc p -> q (p != q). Allocates before changing anything, so on
 * failure nothing changed. */
static ms_err_t arc_add(ms_spray_t *t, ms_peer_t p, ms_peer_t q, ms_topo_diff_t *diff,
                        ms_err_t *derr)
{
    ms_spray_peer_t *pp = &t->peer[p], *qq = &t->peer[q];
    long ip = adj_find(pp, q), iq = ip >= 0 ? adj_find(qq, p) : -1;
    if (grow_arr((void **)&pp->view, &pp->cap_view, pp->n_view + 1, sizeof(*pp->view)) ||
        (ip < 0 && (grow_arr((void **)&pp->adj, &pp->cap_adj, pp->n_adj + 1, sizeof(*pp->adj)) ||
                    grow_arr((void **)&qq->adj, &qq->cap_adj, qq->n_adj + 1, sizeof(*qq->adj)))))
        return MS_ERR_NOMEM;
    pp->view[pp->n_view++] = (ms_spray_arc_t){.to = q, .age = 0};
    if (ip < 0) {
        ip = pp->n_adj++;
        pp->adj[ip] = (ms_spray_adj_t){.peer = q};
        iq = qq->n_adj++;
        qq->adj[iq] = (ms_spray_adj_t){.peer = p};
        diff_note(derr, ms_topo_diff_connect(diff, p, q, MS_EDGE_PEER));
    }
    pp->adj[ip].out++;
    qq->adj[iq].in++;
    qq->in_deg++;
    t->arcs++;
    return MS_OK;
}

/* Removes the arc at index i of p's view (the last arc takes its place). */
static void arc_remove_at(ms_spray_t *t, ms_peer_t p, uint32_t i, ms_topo_diff_t *diff,
                          ms_err_t *derr)
{
    ms_spray_peer_t *pp = &t->peer[p];
    ms_peer_t q = pp->view[i].to;
    ms_spray_peer_t *qq = &t->peer[q];
    pp->view[i] = pp->view[--pp->n_view];
    long ip = adj_find(pp, q), iq = adj_find(qq, p);
    pp->adj[ip].out--;
    qq->adj[iq].in--;
    qq->in_deg--;
    t->arcs--;
    if (pp->adj[ip].out + pp->adj[ip].in == 0) {
        pp->adj[ip] = pp->adj[--pp->n_adj];
        qq->adj[iq] = qq->adj[--qq->n_adj];
        diff_note(derr, ms_topo_diff_disconnect(diff, p, q, MS_EDGE_PEER));
    }
}

/* The engine logs every 0 <-> 1 change of an edge's arc count, so an edge can
 * toggle several times in one call (connect, disconnect, connect, ...). Its net
 * change is (#connects - #disconnects), which ms_topo_diff_normalize cannot see
 * once duplicates are dropped; this keeps the net change of each edge. */
static void diff_net(ms_topo_diff_t *d)
{
    if (d->n_connect > 1)
        qsort(d->connect, d->n_connect, sizeof(*d->connect), ms_edge_cmp);
    if (d->n_disconnect > 1)
        qsort(d->disconnect, d->n_disconnect, sizeof(*d->disconnect), ms_edge_cmp);
    size_t i = 0, j = 0, wc = 0, wd = 0;
    while (i < d->n_connect || j < d->n_disconnect) {
        const ms_edge_t *e;
        if (i == d->n_connect)
            e = &d->disconnect[j];
        else if (j == d->n_disconnect)
            e = &d->connect[i];
        else
            e = ms_edge_cmp(&d->connect[i], &d->disconnect[j]) <= 0 ? &d->connect[i]
                                                                    : &d->disconnect[j];
        ms_edge_t cur = *e;
        long net = 0;
        while (i < d->n_connect && ms_edge_cmp(&d->connect[i], &cur) == 0) {
            i++;
            net++;
        }
        while (j < d->n_disconnect && ms_edge_cmp(&d->disconnect[j], &cur) == 0) {
            j++;
            net--;
        }
        /* Writes never overtake reads: wc <= i and wd <= j. */
        if (net > 0)
            d->connect[wc++] = cur;
        else if (net < 0)
            d->disconnect[wd++] = cur;
    }
    d->n_connect = wc;
    d->n_disconnect = wd;
}

static double target_view(double a, double b, size_t n)
{
    return n > 1 ? a * log((double)n) + b : b;
}

static ms_err_t scratch_reserve(ms_spray_t *t, size_t need)
{
    if (need <= t->cap_s)
        return MS_OK;
    size_t n = t->cap_s ? t->cap_s : 64;
    while (n < need)
        n *= 2;
    ms_peer_t *s1 = realloc(t->s1, n * sizeof(*s1));
    if (!s1)
        return MS_ERR_NOMEM;
    t->s1 = s1;
    ms_peer_t *s2 = realloc(t->s2, n * sizeof(*s2));
    if (!s2)
        return MS_ERR_NOMEM;
    t->s2 = s2;
    uint32_t *u1 = realloc(t->u1, n * sizeof(*u1));
    if (!u1)
        return MS_ERR_NOMEM;
    t->u1 = u1;
    uint32_t *u2 = realloc(t->u2, n * sizeof(*u2));
    if (!u2)
        return MS_ERR_NOMEM;
    t->u2 = u2;
    t->cap_s = n;
    return MS_OK;
}

static ms_err_t grow_slots(ms_spray_t *t, ms_peer_t p)
{
    if (p >= t->n_slots) {
        size_t n = t->n_slots ? t->n_slots : 16;
        while (n <= p)
            n *= 2;
        ms_spray_peer_t *np = realloc(t->peer, n * sizeof(*np));
        if (!np)
            return MS_ERR_NOMEM;
        memset(np + t->n_slots, 0, (n - t->n_slots) * sizeof(*np));
        t->peer = np;
        t->n_slots = n;
    }
    if (t->cap_aux >= t->n_slots)
        return MS_OK;
    /* The per-handle scratch catches up; a failure leaves cap_aux behind and
     * the next join retries. */
    size_t n = t->n_slots;
    ms_peer_t *al = realloc(t->alive, n * sizeof(*al));
    if (!al)
        return MS_ERR_NOMEM;
    t->alive = al;
    uint32_t *st = realloc(t->stamp, n * sizeof(*st));
    if (!st)
        return MS_ERR_NOMEM;
    memset(st, 0, n * sizeof(*st));
    t->stamp = st;
    t->gen = 0;
    uint32_t *lb = realloc(t->label, n * sizeof(*lb));
    if (!lb)
        return MS_ERR_NOMEM;
    t->label = lb;
    ms_peer_t *qu = realloc(t->queue, n * sizeof(*qu));
    if (!qu)
        return MS_ERR_NOMEM;
    t->queue = qu;
    t->cap_aux = n;
    return MS_OK;
}

/* ---- ops ---- */

static ms_err_t spray_create(const ms_topo_params_t *params, ms_topo_t **out)
{
    ms_spray_t *t = calloc(1, sizeof(*t));
    if (!t)
        return MS_ERR_NOMEM;
    t->base.ops = &ms_topo_spray_ops;
    t->a = 1;
    t->b = 5;
    uint64_t seed = 0;
    if (params) {
        if (params->a != 0 || params->b != 0) {
            t->a = params->a;
            t->b = params->b;
        }
        seed = params->seed;
    }
    if (!(t->a >= 0) || !(t->b >= 0) || t->a + t->b <= 0) {
        free(t);
        return MS_ERR_INVAL;
    }
    for (int i = 0; i < 4; i++)
        t->rng[i] = splitmix64(&seed);
    *out = &t->base;
    return MS_OK;
}

static void spray_destroy(ms_topo_t *base)
{
    ms_spray_t *t = (ms_spray_t *)base;
    if (!t)
        return;
    for (size_t i = 0; i < t->n_slots; i++) {
        free(t->peer[i].view);
        free(t->peer[i].adj);
        free(t->peer[i].failed);
    }
    free(t->peer);
    free(t->alive);
    free(t->stamp);
    free(t->label);
    free(t->queue);
    free(t->s1);
    free(t->s2);
    free(t->u1);
    free(t->u2);
    free(t);
}

static void alive_remove(ms_spray_t *t, ms_peer_t p)
{
    uint32_t i = t->peer[p].pos;
    ms_peer_t last = t->alive[--t->count];
    t->alive[i] = last;
    t->peer[last].pos = i;
}

static void peer_drop(ms_spray_t *t, ms_peer_t p, ms_topo_diff_t *diff, ms_err_t *derr)
{
    ms_spray_peer_t *pp = &t->peer[p];
    while (pp->n_view)
        arc_remove_at(t, p, pp->n_view - 1, diff, derr);
}

static ms_err_t spray_join(ms_topo_t *base, ms_peer_t n, ms_topo_pos_t pos, ms_topo_diff_t *diff)
{
    ms_spray_t *t = (ms_spray_t *)base;
    (void)pos;
    if (n >= MS_PEER_MAX)
        return MS_ERR_INVAL;
    if (has(t, n))
        return MS_ERR_EXISTS;
    ms_err_t err = grow_slots(t, n);
    if (err != MS_OK)
        return err;
    ms_spray_peer_t *np = &t->peer[n];
    np->n_view = np->n_adj = np->in_deg = np->n_failed = 0;
    if (t->count == 0) {
        np->present = 1;
        np->pos = 0;
        t->alive[t->count++] = n;
        return MS_OK;
    }
    ms_peer_t c = t->alive[rng_below(t, (uint32_t)t->count)];
    np->present = 1;
    np->pos = (uint32_t)t->count;
    t->alive[t->count++] = n;
    ms_err_t derr = MS_OK;
    if ((err = arc_add(t, n, c, diff, &derr)) != MS_OK)
        goto fail;
    /* Arcs still to inject to reach the target total N*(a ln N + b), at most
     * twice a view's worth. */
    double tv = target_view(t->a, t->b, t->count);
    double want = (double)t->count * tv - (double)t->arcs;
    if (want > 2 * tv + 1)
        want = 2 * tv + 1;
    uint32_t inject = want < 0 ? 0 : (uint32_t)(want + 0.5);
    /* Copy from c's view; a contact without out-arcs lends its neighbours
     * (n among them, standing for c itself). */
    int use_view = t->peer[c].n_view > 0;
    uint32_t nl = use_view ? t->peer[c].n_view : t->peer[c].n_adj;
    uint32_t start = rng_below(t, nl);
    for (uint32_t i = 0; i < inject && err == MS_OK; i++) {
        uint32_t j = (start + i) % nl;
        ms_peer_t x = use_view ? t->peer[c].view[j].to : t->peer[c].adj[j].peer;
        if (x == n)
            x = c;
        /* In-arcs x -> n first (Spray's join), then out-arcs n -> x. */
        err = i < nl ? arc_add(t, x, n, diff, &derr) : arc_add(t, n, x, diff, &derr);
    }
    if (err != MS_OK)
        goto fail;
    diff_net(diff);
    return derr;
fail:
    /* Undo: n's arcs both ways, then n itself. */
    while (np->n_adj) {
        ms_spray_adj_t e = np->adj[np->n_adj - 1];
        ms_spray_peer_t *xp = &t->peer[e.peer];
        for (uint32_t i = xp->n_view; i-- > 0;)
            if (xp->view[i].to == n)
                arc_remove_at(t, e.peer, i, diff, &derr);
        peer_drop(t, n, diff, &derr);
    }
    alive_remove(t, n);
    np->present = 0;
    diff_net(diff);
    return err;
}

static uint32_t uf_find(uint32_t *uf, uint32_t i)
{
    while (uf[i] != i) {
        uf[i] = uf[uf[i]];
        i = uf[i];
    }
    return i;
}

/* A peer the search reached in group g (a union-find root over s's indices)
 * that x may link to: not x and not failed with x. s[g] itself when every such
 * peer is failed with x (the caller counts that link as forced). */
static ms_peer_t bridge_end(ms_spray_t *t, const ms_peer_t *s, uint32_t *uf, uint32_t g,
                            ms_peer_t x, size_t tail, int *forced)
{
    *forced = 0;
    if (s[g] != x && !failed_has(t, x, s[g]))
        return s[g];
    for (size_t i = 0; i < tail; i++) {
        ms_peer_t v = t->queue[i];
        if (v != x && uf_find(uf, t->label[v]) == g && !failed_has(t, x, v))
            return v;
    }
    *forced = 1;
    return s[g];
}

/* Makes the ns peers in s (distinct, present) mutually reachable; see the top
 * comment. A group apart from s[0]'s is joined by an arc from s[r] to a peer of
 * s[0]'s group, or (inward) from a peer of s[0]'s group to s[r], which leaves
 * s[r]'s view as it is. */
static ms_err_t keep_connected(ms_spray_t *t, const ms_peer_t *s, size_t ns, int inward,
                               ms_topo_diff_t *diff, ms_err_t *derr)
{
    if (ns < 2)
        return MS_OK;
    uint32_t *uf = t->u1;
    if (++t->gen == 0) {
        memset(t->stamp, 0, t->n_slots * sizeof(*t->stamp));
        t->gen = 1;
    }
    size_t head = 0, tail = 0, groups = ns;
    for (size_t i = 0; i < ns; i++) {
        uf[i] = (uint32_t)i;
        t->stamp[s[i]] = t->gen;
        t->label[s[i]] = (uint32_t)i;
        t->queue[tail++] = s[i];
    }
    /* Budget: searches in a random graph meet after a few hundred peers; past
     * the budget the remaining groups are joined by an arc, which is safe. */
    size_t budget = 4096 + 64 * ns;
    while (head < tail && groups > 1 && tail < budget) {
        ms_peer_t u = t->queue[head++];
        uint32_t lu = uf_find(uf, t->label[u]);
        const ms_spray_peer_t *up = &t->peer[u];
        for (uint32_t j = 0; j < up->n_adj && groups > 1; j++) {
            ms_peer_t v = up->adj[j].peer;
            if (t->stamp[v] != t->gen) {
                t->stamp[v] = t->gen;
                t->label[v] = lu;
                t->queue[tail++] = v;
            } else {
                uint32_t lv = uf_find(uf, t->label[v]);
                if (lv != lu) {
                    uf[lv] = lu;
                    groups--;
                }
            }
        }
    }
    ms_err_t err = MS_OK;
    uint32_t r0 = uf_find(uf, 0);
    for (size_t i = 1; i < ns && groups > 1; i++) {
        uint32_t r = uf_find(uf, (uint32_t)i);
        if (r == r0)
            continue;
        int forced;
        ms_peer_t y = bridge_end(t, s, uf, r0, s[r], tail, &forced);
        ms_err_t e = inward ? arc_add(t, y, s[r], diff, derr) : arc_add(t, s[r], y, diff, derr);
        if (e != MS_OK) {
            err = e;
            continue;
        }
        uf[r] = r0;
        groups--;
        t->repair_arcs++;
        t->forced_arcs += (uint64_t)forced;
    }
    return err;
}

static ms_err_t spray_leave(ms_topo_t *base, ms_peer_t q, ms_topo_diff_t *diff)
{
    ms_spray_t *t = (ms_spray_t *)base;
    if (!has(t, q))
        return MS_ERR_NOTFOUND;
    ms_spray_peer_t *qp = &t->peer[q];
    ms_err_t err = scratch_reserve(t, qp->n_adj + 1);
    if (err != MS_OK)
        return err;
    ms_err_t derr = MS_OK;
    /* Former neighbours (s1) and how many arcs each held towards q (u2). */
    size_t ns = qp->n_adj;
    for (size_t i = 0; i < ns; i++) {
        t->s1[i] = qp->adj[i].peer;
        t->u2[i] = qp->adj[i].in;
    }
    peer_drop(t, q, diff, &derr);
    for (size_t i = 0; i < ns; i++) {
        ms_peer_t p = t->s1[i];
        uint32_t occ = t->u2[i];
        if (occ == 0)
            continue;
        ms_spray_peer_t *pp = &t->peer[p];
        for (uint32_t j = pp->n_view; j-- > 0;)
            if (pp->view[j].to == q)
                arc_remove_at(t, p, j, diff, &derr);
        for (uint32_t k = 0; k < occ; k++) {
            if (pp->n_view == 0 || rng_unit(t) <= 1.0 / (double)(pp->n_view + occ))
                continue;
            ms_peer_t x = pp->view[rng_below(t, pp->n_view)].to;
            if (arc_add(t, p, x, diff, &derr) != MS_OK)
                break; /* a missing duplicate only shrinks p's view */
        }
    }
    failed_forget(t, q);
    alive_remove(t, q);
    qp->present = 0;
    qp->n_view = qp->n_adj = qp->in_deg = 0;
    err = keep_connected(t, t->s1, ns, 0, diff, &derr);
    diff_net(diff);
    return err != MS_OK ? err : derr;
}

/* Picks m distinct indices below n into out (partial Fisher-Yates over u). */
static void sample_idx(ms_spray_t *t, uint32_t *u, uint32_t n, uint32_t m, uint32_t first)
{
    for (uint32_t i = 0; i < n; i++)
        u[i] = i;
    uint32_t from = 0;
    if (first < n) { /* force `first` into the sample */
        u[first] = 0;
        u[0] = first;
        from = 1;
    }
    for (uint32_t i = from; i < m; i++) {
        uint32_t j = i + rng_below(t, n - i);
        uint32_t x = u[i];
        u[i] = u[j];
        u[j] = x;
    }
}

static int cmp_desc(const void *x, const void *y)
{
    uint32_t a = *(const uint32_t *)x, b = *(const uint32_t *)y;
    return a < b ? 1 : a > b ? -1 : 0;
}

/* One Spray exchange initiated by p. */
static ms_err_t exchange(ms_spray_t *t, ms_peer_t p, ms_topo_diff_t *diff, ms_err_t *derr)
{
    ms_spray_peer_t *pp = &t->peer[p];
    if (pp->n_view == 0)
        return MS_OK;
    uint32_t oldest = 0;
    for (uint32_t i = 0; i < pp->n_view; i++) {
        pp->view[i].age++;
        if (pp->view[i].age > pp->view[oldest].age)
            oldest = i;
    }
    ms_peer_t q = pp->view[oldest].to;
    ms_spray_peer_t *qp = &t->peer[q];
    uint32_t np = pp->n_view, nq = qp->n_view;
    uint32_t sp = (np + 1) / 2, sq = (nq + 1) / 2;
    ms_err_t err = scratch_reserve(t, (np > nq ? np : nq) + 1);
    if (err != MS_OK)
        return err;
    sample_idx(t, t->u1, np, sp, oldest);
    sample_idx(t, t->u2, nq, sq, UINT32_MAX);
    /* Add the new arcs first (allocation may fail: then undo them), then drop
     * the sent originals, highest index first so that indices stay valid. */
    uint32_t added_q = 0, added_p = 0;
    for (; added_q < sp; added_q++) {
        ms_peer_t x = pp->view[t->u1[added_q]].to;
        if (x == q || (t->failed_pairs && failed_has(t, q, x)))
            x = p; /* q gets an arc back to p instead */
        if ((err = arc_add(t, q, x, diff, derr)) != MS_OK)
            goto undo;
    }
    for (; added_p < sq; added_p++) {
        ms_peer_t y = qp->view[t->u2[added_p]].to;
        if (y == p || (t->failed_pairs && failed_has(t, p, y)))
            y = q;
        if ((err = arc_add(t, p, y, diff, derr)) != MS_OK)
            goto undo;
    }
    qsort(t->u1, sp, sizeof(*t->u1), cmp_desc);
    qsort(t->u2, sq, sizeof(*t->u2), cmp_desc);
    for (uint32_t i = 0; i < sp; i++)
        arc_remove_at(t, p, t->u1[i], diff, derr);
    for (uint32_t i = 0; i < sq; i++)
        arc_remove_at(t, q, t->u2[i], diff, derr);
    t->exchanges++;
    return MS_OK;
undo:
    while (added_p > 0) {
        arc_remove_at(t, p, pp->n_view - 1, diff, derr);
        added_p--;
    }
    while (added_q > 0) {
        arc_remove_at(t, q, qp->n_view - 1, diff, derr);
        added_q--;
    }
    return err;
}

static ms_err_t spray_tick(ms_topo_t *base, uint64_t now_ms, ms_topo_diff_t *diff)
{
    ms_spray_t *t = (ms_spray_t *)base;
    (void)now_ms; /* the coordinator calls tick every shufflePeriodMs: one round */
    ms_err_t derr = MS_OK, err = MS_OK;
    for (size_t i = 0; i < t->count && err == MS_OK; i++)
        err = exchange(t, t->alive[i], diff, &derr);
    diff_net(diff);
    return err != MS_OK ? err : derr;
}

/* A peer for a new arc from x: neither x, nor linked to x, nor failed with x;
 * MS_PEER_NONE when there is none. A few uniform draws first (in a large
 * namespace nearly every peer qualifies), then a scan from a random place. */
static ms_peer_t fresh_target(ms_spray_t *t, ms_peer_t x)
{
    const ms_spray_peer_t *xp = &t->peer[x];
    uint32_t n = (uint32_t)t->count;
    for (uint32_t i = 0; i < 8 + n; i++) {
        ms_peer_t z = i < 8 ? t->alive[rng_below(t, n)] : t->alive[(i - 8) % n];
        if (z != x && adj_find(xp, z) < 0 && !failed_has(t, x, z))
            return z;
    }
    return MS_PEER_NONE;
}

/* Replaces every arc x -> y of x's view; see the top comment. */
static ms_err_t replace_arcs(ms_spray_t *t, ms_peer_t x, ms_peer_t y, ms_topo_diff_t *diff,
                             ms_err_t *derr)
{
    ms_spray_peer_t *xp = &t->peer[x];
    for (uint32_t guard = xp->n_view; guard > 0; guard--) {
        uint32_t i = 0;
        while (i < xp->n_view && xp->view[i].to != y)
            i++;
        if (i == xp->n_view)
            return MS_OK;
        ms_peer_t z = fresh_target(t, x);
        if (z == MS_PEER_NONE && xp->n_view > 1) {
            /* Everyone is linked already: a duplicate of another arc. */
            uint32_t j = rng_below(t, xp->n_view);
            for (uint32_t k = 0; k < xp->n_view && z == MS_PEER_NONE; k++)
                if (xp->view[(j + k) % xp->n_view].to != y)
                    z = xp->view[(j + k) % xp->n_view].to;
        }
        if (z == MS_PEER_NONE) {
            t->forced_arcs++; /* x has no other link: the arc stays */
            return MS_OK;
        }
        ms_err_t err = arc_add(t, x, z, diff, derr);
        if (err != MS_OK)
            return err;
        arc_remove_at(t, x, i, diff, derr);
        t->replaced_arcs++;
    }
    return MS_OK;
}

static ms_err_t spray_fail(ms_topo_t *base, ms_peer_t a, ms_peer_t b, ms_topo_diff_t *diff)
{
    ms_spray_t *t = (ms_spray_t *)base;
    if (a == b || !has(t, a) || !has(t, b))
        return MS_ERR_NOTFOUND;
    if (failed_has(t, a, b))
        return MS_OK;
    if (adj_find(&t->peer[a], b) < 0)
        return MS_ERR_NOTFOUND;
    ms_err_t err = failed_add(t, a, b), derr = MS_OK;
    if (err != MS_OK)
        return err;
    if ((err = replace_arcs(t, a, b, diff, &derr)) == MS_OK)
        err = replace_arcs(t, b, a, diff, &derr);
    if (err == MS_OK && adj_find(&t->peer[a], b) < 0 && (err = scratch_reserve(t, 2)) == MS_OK) {
        ms_peer_t s[2] = {a, b};
        err = keep_connected(t, s, 2, 1, diff, &derr);
    }
    diff_net(diff);
    return err != MS_OK ? err : derr;
}

static size_t spray_neighbours(const ms_topo_t *base, ms_peer_t p, ms_peer_t *out, size_t max)
{
    const ms_spray_t *t = (const ms_spray_t *)base;
    if (!has(t, p))
        return 0;
    const ms_spray_peer_t *pp = &t->peer[p];
    for (uint32_t i = 0; i < pp->n_adj && i < max; i++)
        out[i] = pp->adj[i].peer;
    return pp->n_adj;
}

static int spray_adjacent(const ms_topo_t *base, ms_peer_t a, ms_peer_t b)
{
    const ms_spray_t *t = (const ms_spray_t *)base;
    if (a == b || !has(t, a) || !has(t, b))
        return 0;
    if (t->peer[a].n_adj > t->peer[b].n_adj) {
        ms_peer_t x = a;
        a = b;
        b = x;
    }
    return adj_find(&t->peer[a], b) >= 0;
}

static void spray_edges(const ms_topo_t *base, ms_topo_edge_fn fn, void *ud)
{
    const ms_spray_t *t = (const ms_spray_t *)base;
    for (size_t p = 0; p < t->n_slots; p++) {
        const ms_spray_peer_t *pp = &t->peer[p];
        if (!pp->present)
            continue;
        for (uint32_t i = 0; i < pp->n_adj; i++)
            if (pp->adj[i].peer > p)
                fn((ms_peer_t)p, pp->adj[i].peer, MS_EDGE_PEER, ud);
    }
}

static size_t spray_count(const ms_topo_t *base)
{
    return ((const ms_spray_t *)base)->count;
}

/* Rebuild from reports: each reported neighbour link between two reported
 * peers becomes an arc (from the reporting end, once per pair), the fragments
 * are joined into one graph, and the diff is taken against the reported links,
 * so an intact overlay gives an empty diff. Arc directions are not reported;
 * shuffles rebalance them. */
static ms_err_t spray_restore(ms_topo_t *base, const ms_topo_report_t *reports, size_t n,
                              ms_topo_diff_t *diff)
{
    ms_spray_t *t = (ms_spray_t *)base;
    if (t->count != 0)
        return MS_ERR_STATE;
    ms_err_t err = MS_OK, derr = MS_OK;
    ms_topo_diff_t scratch;
    ms_topo_diff_init(&scratch);
    for (size_t i = 0; i < n; i++) {
        ms_peer_t p = reports[i].peer;
        if (p >= MS_PEER_MAX) {
            err = MS_ERR_INVAL;
            goto fail;
        }
        if (has(t, p))
            continue;
        if ((err = grow_slots(t, p)) != MS_OK)
            goto fail;
        ms_spray_peer_t *pp = &t->peer[p];
        pp->n_view = pp->n_adj = pp->in_deg = pp->n_failed = 0;
        pp->present = 1;
        pp->pos = (uint32_t)t->count;
        t->alive[t->count++] = p;
    }
    for (size_t i = 0; i < n; i++) {
        ms_peer_t p = reports[i].peer;
        for (size_t j = 0; j < reports[i].n_neighbours; j++) {
            ms_peer_t x = reports[i].neighbours[j];
            if (x == p || !has(t, x) || adj_find(&t->peer[p], x) >= 0)
                continue;
            if ((err = arc_add(t, p, x, &scratch, &derr)) != MS_OK)
                goto fail;
        }
    }
    /* Join the fragments: a union-find over handles, reusing label[] as parents. */
    for (size_t i = 0; i < t->count; i++)
        t->label[t->alive[i]] = t->alive[i];
    for (size_t i = 0; i < t->count; i++) {
        ms_peer_t p = t->alive[i];
        for (uint32_t j = 0; j < t->peer[p].n_adj; j++) {
            uint32_t a = uf_find(t->label, p), b = uf_find(t->label, t->peer[p].adj[j].peer);
            if (a != b)
                t->label[a] = b;
        }
    }
    for (size_t i = 1; i < t->count; i++) {
        ms_peer_t p = t->alive[i], p0 = t->alive[0];
        uint32_t a = uf_find(t->label, p), b = uf_find(t->label, p0);
        if (a == b)
            continue;
        if ((err = arc_add(t, p, p0, &scratch, &derr)) != MS_OK)
            goto fail;
        t->label[a] = b;
    }
    /* Views below target are topped up the Spray way: duplicate own arcs. */
    double tv = target_view(t->a, t->b, t->count);
    for (size_t i = 0; i < t->count; i++) {
        ms_peer_t p = t->alive[i];
        while (t->peer[p].n_view > 0 && t->peer[p].n_view < tv * 0.5) {
            ms_peer_t x = t->peer[p].view[rng_below(t, t->peer[p].n_view)].to;
            if ((err = arc_add(t, p, x, &scratch, &derr)) != MS_OK)
                goto fail;
        }
    }
    /* diff = edges now - edges reported */
    for (size_t i = 0; i < t->count; i++) {
        ms_peer_t p = t->alive[i];
        for (uint32_t j = 0; j < t->peer[p].n_adj; j++)
            if (t->peer[p].adj[j].peer > p)
                diff_note(&derr,
                          ms_topo_diff_connect(diff, p, t->peer[p].adj[j].peer, MS_EDGE_PEER));
    }
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < reports[i].n_neighbours; j++)
            if (reports[i].neighbours[j] != reports[i].peer)
                diff_note(&derr, ms_topo_diff_disconnect(diff, reports[i].peer,
                                                         reports[i].neighbours[j], MS_EDGE_PEER));
    /* Set difference, not a toggle log: each link may be reported by both ends. */
    ms_topo_diff_normalize(diff);
    err = derr;
fail:
    ms_topo_diff_cleanup(&scratch);
    return err;
}

void ms_spray_stats(const ms_topo_t *base, ms_spray_stats_t *out)
{
    const ms_spray_t *t = (const ms_spray_t *)base;
    memset(out, 0, sizeof(*out));
    out->count = t->count;
    out->arcs = t->arcs;
    out->target = target_view(t->a, t->b, t->count);
    out->exchanges = t->exchanges;
    out->repair_arcs = t->repair_arcs;
    out->failed_pairs = t->failed_pairs;
    out->replaced_arcs = t->replaced_arcs;
    out->forced_arcs = t->forced_arcs;
    if (t->count == 0)
        return;
    out->view_min = UINT32_MAX;
    double gap = 0;
    uint64_t adj = 0;
    for (size_t i = 0; i < t->count; i++) {
        const ms_spray_peer_t *pp = &t->peer[t->alive[i]];
        if (pp->n_view < out->view_min)
            out->view_min = pp->n_view;
        if (pp->n_view > out->view_max)
            out->view_max = pp->n_view;
        gap += fabs((double)pp->in_deg - (double)pp->n_view);
        adj += pp->n_adj;
    }
    out->edges = adj / 2;
    out->view_mean = (double)t->arcs / (double)t->count;
    out->mean_abs_in_out = gap / (double)t->count;
}

uint32_t ms_spray_view_size(const ms_topo_t *base, ms_peer_t p)
{
    const ms_spray_t *t = (const ms_spray_t *)base;
    return has(t, p) ? t->peer[p].n_view : 0;
}

uint32_t ms_spray_in_degree(const ms_topo_t *base, ms_peer_t p)
{
    const ms_spray_t *t = (const ms_spray_t *)base;
    return has(t, p) ? t->peer[p].in_deg : 0;
}

static ms_err_t spray_write_json(const ms_topo_t *base, json_t *obj)
{
    const ms_spray_t *t = (const ms_spray_t *)base;
    ms_spray_stats_t s;
    ms_spray_stats(base, &s);
    int rc = 0;
    rc |= json_object_set_new(obj, "a", json_real(t->a));
    rc |= json_object_set_new(obj, "b", json_real(t->b));
    rc |= json_object_set_new(obj, "peers", json_integer((json_int_t)s.count));
    rc |= json_object_set_new(obj, "view_target", json_real(s.target));
    rc |= json_object_set_new(obj, "view_mean", json_real(s.view_mean));
    rc |= json_object_set_new(obj, "view_min", json_integer(s.view_min));
    rc |= json_object_set_new(obj, "view_max", json_integer(s.view_max));
    /* Every arc is one peer's out and another's in: the two means are equal. */
    rc |= json_object_set_new(obj, "in_degree_mean", json_real(s.view_mean));
    rc |= json_object_set_new(obj, "out_degree_mean", json_real(s.view_mean));
    rc |= json_object_set_new(obj, "in_out_gap_mean", json_real(s.mean_abs_in_out));
    rc |= json_object_set_new(obj, "edges", json_integer((json_int_t)s.edges));
    rc |= json_object_set_new(obj, "exchanges", json_integer((json_int_t)s.exchanges));
    rc |= json_object_set_new(obj, "repair_arcs", json_integer((json_int_t)s.repair_arcs));
    rc |= json_object_set_new(obj, "failed_pairs", json_integer((json_int_t)s.failed_pairs));
    rc |= json_object_set_new(obj, "replaced_arcs", json_integer((json_int_t)s.replaced_arcs));
    return rc ? MS_ERR_NOMEM : MS_OK;
}

const ms_topo_ops_t ms_topo_spray_ops = {
    .name = "spray",
    .create = spray_create,
    .destroy = spray_destroy,
    .join = spray_join,
    .leave = spray_leave,
    .move = NULL,
    .neighbours = spray_neighbours,
    .adjacent = spray_adjacent,
    .edges = spray_edges,
    .count = spray_count,
    .restore = spray_restore,
    .fail_edge = spray_fail,
    .tick = spray_tick,
    .write_json = spray_write_json,
};

int ms_spray_failed(const ms_topo_t *base, ms_peer_t p, ms_peer_t q)
{
    const ms_spray_t *t = (const ms_spray_t *)base;
    return p != q && has(t, p) && has(t, q) && failed_has(t, p, q);
}
