/* SPDX-License-Identifier: Apache-2.0 */
/* Namespaces: members, dense peer handles, topology diffs turned into events, policy changes.
 * namespace.h says who owns what in a namespace. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <stdarg.h>

#include "hash.h"
#include "intern.h"
#include "internal.h"
#include "log.h"
#include "delaunay.h"
#include "position.h"
#include "servermsg.h"

/* Namespaces and member ids are clients' names: keyed (hash.h). */
static uint64_t name_hash(const char *name)
{
    return ms_hash_keyed(name, strlen(name));
}

static uint64_t ns_hash(const void *ns)
{
    return name_hash(((const ms_ns_t *)ns)->name);
}

static int ns_is(const void *ns, const void *name)
{
    return !strcmp(((const ms_ns_t *)ns)->name, name);
}

void ms_ns_reg_init(ms_ns_reg_t *r, uint32_t n_shards, const ms_ns_hooks_t *const *hooks,
                    size_t n_hooks)
{
    memset(r, 0, sizeof(*r));
    ms_pidx_init(&r->by_name, ns_hash);
    ms_policyshare_init(&r->policies);
    r->n_shards = n_shards;
    r->hooks = hooks;
    r->n_hooks = n_hooks;
    ms_topo_diff_init(&r->diff);
}

void ms_ns_reg_cleanup(ms_coord_t *c)
{
    ms_ns_t *ns;
    MS_NS_FOREACH(c, ns, w)
    ms_ns_destroy(c, ns);
    ms_pidx_cleanup(&c->ns.by_name);
    ms_policyshare_cleanup(&c->ns.policies);
    ms_topo_diff_cleanup(&c->ns.diff);
    free(c->ns.n_by_shard);
    c->ns.n_by_shard = NULL;
    free(c->ns.walk_list);
    c->ns.walk_list = NULL;
    c->ns.walk_len = c->ns.walk_cap = 0;
}

size_t ms_ns_count(ms_coord_t *c)
{
    return c->ns.by_name.n;
}

ms_ns_walk_t ms_ns_walk_begin(ms_coord_t *c)
{
    /* Collected first: a destroy or a create moves records between the index's slots. The
     * room is there (walk_reserve): by_name.n <= walk_cap. */
    if (c->ns.walking++ == 0) {
        ms_ns_t *ns;
        c->ns.walk_len = 0;
        MS_PIDX_FOREACH(&c->ns.by_name, i, ns)
        c->ns.walk_list[c->ns.walk_len++] = ns;
    }
    return (ms_ns_walk_t){.n = c->ns.walk_len, .i = 0};
}

ms_ns_t *ms_ns_walk_next(ms_coord_t *c, ms_ns_walk_t *w)
{
    while (w->i < w->n) {
        ms_ns_t *ns = c->ns.walk_list[w->i++];
        if (!ns->dead)
            return ns;
    }
    w->n = w->i = 0;
    if (--c->ns.walking == 0) {
        c->ns.walk_len = 0;
        while (c->ns.dead) {
            ms_ns_t *ns = c->ns.dead;
            c->ns.dead = ns->next_dead;
            free(ns);
        }
    }
    return NULL;
}

/* Room in walk_list for one more namespace: every one held (the next first walk lists them)
 * and every one listed (a walk under way appends those created). */
static ms_err_t walk_reserve(ms_ns_reg_t *r)
{
    size_t need = (r->by_name.n > r->walk_len ? r->by_name.n : r->walk_len) + 1;
    if (need <= r->walk_cap)
        return MS_OK;
    size_t cap = r->walk_cap ? r->walk_cap * 2 : 16;
    while (cap < need)
        cap *= 2;
    ms_ns_t **nl = realloc(r->walk_list, cap * sizeof(*nl));
    if (!nl)
        return MS_ERR_NOMEM;
    r->walk_list = nl;
    r->walk_cap = cap;
    return MS_OK;
}

uint32_t ms_ns_count_shard(ms_coord_t *c, uint32_t shard)
{
    return c->ns.n_by_shard && shard < c->ns.n_shards ? c->ns.n_by_shard[shard] : 0;
}

uint32_t ms_ns_cap(const ms_coord_t *c, const ms_ns_t *ns)
{
    uint32_t cap = ns->policy->params.cap;
    long max = c->cfg->max_peers;
    if (max > 0 && (!cap || (uint64_t)max < cap))
        cap = max > UINT32_MAX ? UINT32_MAX : (uint32_t)max;
    return cap;
}

int ms_ns_full(const ms_coord_t *c, const ms_ns_t *ns)
{
    uint32_t cap = ms_ns_cap(c, ns);
    return cap && ns->engine->ops->count(ns->engine) >= cap;
}

ms_topo_diff_t *ms_ns_diff(ms_coord_t *c)
{
    ms_topo_diff_clear(&c->ns.diff);
    return &c->ns.diff;
}

ms_ns_t *ms_ns_find(ms_coord_t *c, const char *name)
{
    return ms_pidx_find(&c->ns.by_name, name_hash(name), ns_is, name);
}

static ms_err_t engine_create(const ms_policy_t *p, const char *ns_name, ms_topo_t **out)
{
    ms_topo_params_t params = p->params;
    /* Engines that randomise get a seed that is the same on every coordinator. */
    params.seed = ms_fnv1a64(ns_name, strlen(ns_name));
    return ms_topo_create(p->topology, &params, out);
}

static uint64_t id_hash(const char *id)
{
    return ms_hash_keyed(id, strlen(id));
}

static uint64_t member_hash(const void *m)
{
    return id_hash(((const ms_member_t *)m)->id);
}

const ms_ns_mods_t ms_ns_mods_none = {.faces = {.hash = member_hash}};

ms_ns_mods_t *ms_ns_mods_get(ms_ns_t *ns)
{
    if (!ns->mods && (ns->mods = calloc(1, sizeof(*ns->mods))))
        ms_pidx_init(&ns->mods->faces, member_hash);
    return ns->mods;
}

static int member_is(const void *m, const void *id)
{
    return !strcmp(((const ms_member_t *)m)->id, id);
}

ms_err_t ms_ns_get(ms_coord_t *c, const char *name, ms_ns_t **out)
{
    ms_ns_t *ns = ms_ns_find(c, name);
    if (ns) {
        *out = ns;
        return MS_OK;
    }
    ms_err_t err = MS_ERR_NOMEM;
    if (!c->ns.n_by_shard &&
        !(c->ns.n_by_shard = calloc(c->ns.n_shards ? c->ns.n_shards : 1, sizeof(uint32_t))))
        return MS_ERR_NOMEM;
    size_t len = strlen(name);
    if (!(ns = calloc(1, sizeof(*ns) + len + 1)))
        goto fail;
    memcpy(ns->name, name, len + 1);
    ms_pidx_init(&ns->members, member_hash);
    ns->by_handle = ns->by_handle_small;
    ns->n_handles = 2;
    ns->shard = ms_bus_shard_of(name, c->ns.n_shards);
    if (!(ns->policy = ms_policyshare_take(&c->ns.policies, ms_policies_for(c, name))))
        goto fail;
    if ((err = engine_create(ns->policy, name, &ns->engine)) != MS_OK)
        goto fail;
    if (ms_ns_has_source_slot(ns))
        ns->next_handle = 1;
    if ((err = walk_reserve(&c->ns)) != MS_OK) /* a walk then always has room */
        goto fail;
    if (ms_pidx_add(&c->ns.by_name, ns) < 0) {
        err = MS_ERR_NOMEM;
        goto fail;
    }
    if (c->ns.walking) /* the walks under way see it listed, after their own end */
        c->ns.walk_list[c->ns.walk_len++] = ns;
    if (ns->engine->ops->tick)
        c->ns.n_tick++;
    if (ns->shard < c->ns.n_shards)
        c->ns.n_by_shard[ns->shard]++;
    *out = ns;
    return MS_OK;
fail:
    if (ns && ns->engine)
        ns->engine->ops->destroy(ns->engine);
    if (ns)
        ms_policyshare_give(&c->ns.policies, ns->policy);
    free(ns);
    return err;
}

const ms_member_rare_t ms_member_rare_none = {0};

ms_member_rare_t *ms_member_rare_get(ms_member_t *m)
{
    if (!m->rare)
        m->rare = calloc(1, sizeof(*m->rare));
    return m->rare;
}

ms_err_t ms_member_set_client_pos(ms_member_t *m, Meshsig__V1__Position *p)
{
    ms_member_rare_t *r = p || m->rare ? ms_member_rare_get(m) : NULL;
    if (p && !r) {
        protobuf_c_message_free_unpacked(&p->base, NULL);
        return MS_ERR_NOMEM;
    }
    if (!r)
        return MS_OK;
    if (r->client_pos)
        protobuf_c_message_free_unpacked(&r->client_pos->base, NULL);
    r->client_pos = p;
    return MS_OK;
}

ms_err_t ms_member_set_metadata(ms_member_t *m, const Meshsig__V1__Struct *md, size_t len)
{
    ms_member_rare_t *r = ms_member_rare_get(m);
    uint8_t *buf = r ? malloc(len ? len : 1) : NULL;
    if (!buf)
        return MS_ERR_NOMEM;
    meshsig__v1__struct__pack(md, buf);
    free(r->metadata);
    r->metadata = buf;
    r->metadata_len = (uint16_t)len;
    return MS_OK;
}

ms_vivaldi_t *ms_member_viv(ms_member_t *m)
{
    /* Seeded with the position key, which depends only on namespace and peer
     * id: the same coordinate the member would have had from its join on. */
    ms_member_rare_t *r = ms_member_rare_get(m);
    if (r && !r->viv && (r->viv = malloc(sizeof(*r->viv))))
        ms_vivaldi_init(r->viv, m->pos.key);
    return r ? r->viv : NULL;
}

ms_topo_pos_t ms_member_network_origin(const ms_member_t *m)
{
    ms_vivaldi_t fresh;
    ms_vivaldi_init(&fresh, m->pos.key);
    return ms_vivaldi_position(&fresh, m->pos.key);
}

ms_member_t *ms_member_new(const char *id)
{
    size_t len = strlen(id);
    ms_member_t *m = calloc(1, offsetof(ms_member_t, id) + len + 1);
    if (m)
        memcpy(m->id, id, len + 1);
    return m;
}

void ms_member_free(ms_member_t *m)
{
    if (!m)
        return;
    ms_intern_release(m->gateway);
    ms_member_rare_t *r = m->rare;
    if (r) {
        free(r->metadata);
        if (r->client_pos)
            protobuf_c_message_free_unpacked(&r->client_pos->base, NULL);
        free(r->viv);
        ms_intern_release(r->prev_gateway);
        for (size_t i = 0; i < r->n_dangling; i++)
            free(r->dangling[i]);
        free(r->dangling);
        free(r->rooms);    /* the rooms are room.c's */
        free(r->services); /* and the services service.c's */
        free(r);
    }
    free(m);
}

ms_err_t ms_member_dangling_add(ms_member_t *m, const char *id)
{
    if (ms_member_dangling_has(m, id))
        return MS_OK;
    ms_member_rare_t *r = ms_member_rare_get(m);
    if (!r)
        return MS_ERR_NOMEM;
    char **nv = realloc(r->dangling, (r->n_dangling + 1) * sizeof(*nv));
    if (!nv)
        return MS_ERR_NOMEM;
    r->dangling = nv;
    if (!(nv[r->n_dangling] = strdup(id)))
        return MS_ERR_NOMEM;
    r->n_dangling++;
    return MS_OK;
}

int ms_member_dangling_has(const ms_member_t *m, const char *id)
{
    for (size_t i = 0; i < ms_member_rare(m)->n_dangling; i++)
        if (!strcmp(ms_member_rare(m)->dangling[i], id))
            return 1;
    return 0;
}

int ms_member_dangling_drop(ms_member_t *m, const char *id)
{
    for (size_t i = 0; i < ms_member_rare(m)->n_dangling; i++) {
        if (strcmp(ms_member_rare(m)->dangling[i], id))
            continue;
        ms_member_rare_t *r = m->rare; /* there: it holds id */
        free(r->dangling[i]);
        r->dangling[i] = r->dangling[--r->n_dangling];
        if (!r->n_dangling) {
            free(r->dangling);
            r->dangling = NULL;
        }
        return 1;
    }
    return 0;
}

void ms_ns_destroy(ms_coord_t *c, ms_ns_t *ns)
{
    /* Modules first, while the members are there: what a module keeps in a
     * member (p2p.c) goes with its namespace state. */
    for (size_t i = 0; i < c->ns.n_hooks; i++)
        if (c->ns.hooks[i]->cleanup)
            c->ns.hooks[i]->cleanup(ns);
    ms_member_t *m;
    MS_NS_MEMBERS_FOREACH(ns, i, m)
    {
        ms_gwm_remove(&c->members.by_gw, m);
        ms_member_free(m);
    }
    ms_pidx_cleanup(&ns->members);
    if (ns->mods) /* faces: empty, their module removed them (backend.c cleanup) */
        ms_pidx_cleanup(&ns->mods->faces);
    free(ns->mods);
    ms_pidx_remove(&c->ns.by_name, ns);
    if (c->ns.n_by_shard && ns->shard < c->ns.n_shards && c->ns.n_by_shard[ns->shard])
        c->ns.n_by_shard[ns->shard]--;
    if (ns->engine && ns->engine->ops->tick)
        c->ns.n_tick--;
    if (ns->engine)
        ns->engine->ops->destroy(ns->engine);
    if (ns->by_handle != ns->by_handle_small)
        free(ns->by_handle);
    free(ns->free_handles);
    ms_policyshare_give(&c->ns.policies, ns->policy);
    ns->policy = NULL;
    if (c->ns.walking) {
        /* A walk may still hold it (MS_NS_FOREACH): freed when the last one ends. */
        ns->dead = 1;
        ns->next_dead = c->ns.dead;
        c->ns.dead = ns;
        return;
    }
    free(ns);
}

int ms_ns_destroy_if_empty(ms_coord_t *c, ms_ns_t *ns)
{
    if (ns->members.n || ms_ns_mods(ns)->waiting || ms_ns_mods(ns)->faces.n)
        return 0;
    ms_ns_destroy(c, ns);
    return 1;
}

void ms_ns_destroy_shard(ms_coord_t *c, uint32_t shard)
{
    ms_ns_t *ns;
    MS_NS_FOREACH(c, ns, w)
    if (ns->shard == shard)
        ms_ns_destroy(c, ns);
}

void ms_ns_member_joined(ms_coord_t *c, ms_ns_t *ns, ms_member_t *m)
{
    for (size_t i = 0; i < c->ns.n_hooks; i++)
        if (c->ns.hooks[i]->member_joined)
            c->ns.hooks[i]->member_joined(c, ns, m);
}

void ms_ns_member_gone(ms_coord_t *c, ms_ns_t *ns, ms_member_t *m)
{
    for (size_t i = 0; i < c->ns.n_hooks; i++)
        if (c->ns.hooks[i]->member_gone)
            c->ns.hooks[i]->member_gone(c, ns, m);
}

ms_err_t ms_ns_restore_member(ms_coord_t *c, ms_ns_t *ns, ms_member_t *m,
                              const Meshsig__Bus__SessionReport *sr)
{
    for (size_t i = 0; i < c->ns.n_hooks; i++) {
        ms_err_t err = c->ns.hooks[i]->restore ? c->ns.hooks[i]->restore(ns, m, sr) : MS_OK;
        if (err != MS_OK)
            return err;
    }
    return MS_OK;
}

ms_member_t *ms_ns_member(ms_ns_t *ns, const char *id)
{
    return ms_pidx_find(&ns->members, id_hash(id), member_is, id);
}

ms_err_t ms_ns_member_add(ms_coord_t *c, ms_ns_t *ns, ms_member_t *m)
{
    if (ms_gwm_add(&c->members.by_gw, ns, m) != MS_OK)
        return MS_ERR_NOMEM;
    if (ms_pidx_add(&ns->members, m) != 0) {
        ms_gwm_remove(&c->members.by_gw, m);
        return MS_ERR_NOMEM;
    }
    return MS_OK;
}

void ms_ns_member_remove(ms_coord_t *c, ms_ns_t *ns, ms_member_t *m)
{
    ms_gwm_remove(&c->members.by_gw, m);
    ms_pidx_remove(&ns->members, m);
}

ms_member_t *ms_ns_party(ms_ns_t *ns, const char *id)
{
    ms_member_t *m = ms_ns_member(ns, id);
    return m ? m : ms_ns_face(ns, id);
}

ms_err_t ms_ns_face_add(ms_ns_t *ns, ms_member_t *m)
{
    ms_ns_mods_t *mods = ms_ns_mods_get(ns);
    return mods && ms_pidx_add(&mods->faces, m) == 0 ? MS_OK : MS_ERR_NOMEM;
}

void ms_ns_face_remove(ms_ns_t *ns, ms_member_t *m)
{
    if (ns->mods)
        ms_pidx_remove(&ns->mods->faces, m);
}

ms_member_t *ms_ns_face(ms_ns_t *ns, const char *id)
{
    return ms_pidx_find(&ms_ns_mods(ns)->faces, id_hash(id), member_is, id);
}

/* Free handles form a min-heap so the smallest is reused first (engines index arrays by handle).
 * It is allocated when the first handle is freed: a namespace whose peers only join (the
 * native protocol's pairs) holds none. Out of memory, a freed handle is not reused. */
static void heap_push(ms_ns_t *ns, uint32_t h)
{
    if (ns->n_free == ns->cap_free) {
        size_t n = ns->cap_free ? ns->cap_free * 2 : 4;
        uint32_t *nv = realloc(ns->free_handles, n * sizeof(*nv));
        if (!nv) {
            ms_warn("namespace %s: out of memory; handle %u is not reused", ns->name, h);
            return;
        }
        ns->free_handles = nv;
        ns->cap_free = (uint32_t)n;
    }
    size_t i = ns->n_free++;
    ns->free_handles[i] = h;
    while (i > 0 && ns->free_handles[(i - 1) / 2] > ns->free_handles[i]) {
        uint32_t t = ns->free_handles[i];
        ns->free_handles[i] = ns->free_handles[(i - 1) / 2];
        ns->free_handles[(i - 1) / 2] = t;
        i = (i - 1) / 2;
    }
}

static uint32_t heap_pop(ms_ns_t *ns)
{
    uint32_t top = ns->free_handles[0];
    ns->free_handles[0] = ns->free_handles[--ns->n_free];
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, s = i;
        if (l < ns->n_free && ns->free_handles[l] < ns->free_handles[s])
            s = l;
        if (r < ns->n_free && ns->free_handles[r] < ns->free_handles[s])
            s = r;
        if (s == i)
            break;
        uint32_t t = ns->free_handles[i];
        ns->free_handles[i] = ns->free_handles[s];
        ns->free_handles[s] = t;
        i = s;
    }
    return top;
}

int ms_ns_has_source_slot(const ms_ns_t *ns)
{
    return ns->policy->params.source != 0 && !strcmp(ns->policy->topology, "tree");
}

ms_member_t *ms_ns_source(const ms_ns_t *ns)
{
    ms_member_t *m = ns->n_handles ? ns->by_handle[0] : NULL;
    return m && m->source && ms_ns_has_source_slot(ns) ? m : NULL;
}

/* Keeps handle 0 for the source: a member holding it that is not the source
 * (the namespace was something else before) moves to another handle, and 0
 * leaves the free heap. Called before the engine is (re)built from handles. */
static ms_err_t reserve_source_slot(ms_ns_t *ns)
{
    size_t k = 0;
    for (size_t i = 0; i < ns->n_free; i++)
        if (ns->free_handles[i] != 0)
            ns->free_handles[k++] = ns->free_handles[i];
    if (k != ns->n_free) { /* 0 was the heap's minimum at the root: re-heapify */
        size_t n = k;
        ns->n_free = 0;
        for (size_t i = 0; i < n; i++)
            heap_push(ns, ns->free_handles[i]);
    }
    if (ns->next_handle == 0)
        ns->next_handle = 1;
    ms_member_t *m = ns->n_handles ? ns->by_handle[0] : NULL;
    if (!m || m->source)
        return MS_OK;
    ns->by_handle[0] = NULL;
    ms_err_t err = ms_ns_alloc_handle(ns, m);
    if (err != MS_OK)
        ns->by_handle[0] = m; /* unchanged: the caller fails */
    return err;
}

ms_err_t ms_ns_alloc_handle(ms_ns_t *ns, ms_member_t *m)
{
    if (!ns->n_free && ns->next_handle >= ns->n_handles) {
        size_t n = ns->n_handles ? ns->n_handles * 2 : 2;
        int small = ns->by_handle == ns->by_handle_small;
        ms_member_t **nv = realloc(small ? NULL : ns->by_handle, n * sizeof(*nv));
        if (!nv)
            return MS_ERR_NOMEM;
        if (small)
            memcpy(nv, ns->by_handle_small, sizeof(ns->by_handle_small));
        memset(nv + ns->n_handles, 0, (n - ns->n_handles) * sizeof(*nv));
        ns->by_handle = nv;
        ns->n_handles = n;
    }
    uint32_t h;
    if (m->source && ms_ns_has_source_slot(ns)) {
        if (ns->by_handle[0])
            return MS_ERR_EXISTS;
        h = 0;
    } else if (ns->n_free) {
        h = heap_pop(ns);
    } else {
        if (ns->next_handle >= MS_PEER_MAX)
            return MS_ERR_FULL;
        h = ns->next_handle++;
    }
    ns->by_handle[h] = m;
    m->handle = h;
    return MS_OK;
}

void ms_ns_free_handle(ms_ns_t *ns, ms_member_t *m)
{
    if (m->handle < ns->n_handles && ns->by_handle[m->handle] == m) {
        ns->by_handle[m->handle] = NULL;
        if (m->handle != 0 || !ms_ns_has_source_slot(ns))
            heap_push(ns, m->handle);
    }
}

Meshsig__V1__Position *ms_ns_position_dup(const Meshsig__V1__Position *p)
{
    Meshsig__V1__Position *c = malloc(sizeof(*c));
    if (!c)
        return NULL;
    meshsig__v1__position__init(c);
    c->x = p->x;
    c->y = p->y;
    c->lat = p->lat;
    c->lon = p->lon;
    return c;
}

int ms_ns_position_valid(const ms_ns_t *ns, const Meshsig__V1__Position *p, char *why, size_t cap)
{
    if (ns->policy->positioning == MS_POS_CLIENT &&
        !(isfinite(p->x) && isfinite(p->y) && fabs(p->x) <= MS_POS_CLIENT_RANGE &&
          fabs(p->y) <= MS_POS_CLIENT_RANGE)) {
        snprintf(why, cap, "position x and y must be numbers within +-%.0f", MS_POS_CLIENT_RANGE);
        return 0;
    }
    if (ns->policy->positioning == MS_POS_GEO &&
        !(p->lat >= -90 && p->lat <= 90 && p->lon >= -180 && p->lon <= 180)) {
        snprintf(why, cap, "position lat must be in [-90, 90] and lon in [-180, 180]");
        return 0;
    }
    return 1;
}

ms_topo_pos_t ms_ns_position(const ms_ns_t *ns, const char *peer_id,
                             const Meshsig__V1__Position *given)
{
    /* The random position and the key depend only on namespace and peer id, so
     * every coordinator places a peer alike (a takeover rebuilds the same mesh). */
    ms_topo_pos_t p = ms_position_random(ns->name, peer_id);
    if (given && ns->policy->positioning == MS_POS_CLIENT) {
        p.x = given->x;
        p.y = given->y;
    } else if (given && ns->policy->positioning == MS_POS_GEO) {
        p.x = given->lon;
        p.y = given->lat;
    }
    return p;
}

static void send_connect(ms_coord_t *c, ms_ns_t *ns, const ms_member_t *to,
                         const ms_member_t *other, int initiator, Meshsig__V1__Role role,
                         Meshsig__V1__Value *offer)
{
    Meshsig__V1__Connect cn = MESHSIG__V1__CONNECT__INIT;
    cn.peer = (char *)other->id;
    cn.initiator = initiator;
    cn.role = role;
    cn.offer = offer;
    Meshsig__V1__Struct *md = NULL;
    const ms_member_rare_t *orr = ms_member_rare(other);
    if (orr->metadata)
        md = meshsig__v1__struct__unpack(NULL, orr->metadata_len, orr->metadata);
    cn.metadata = md;
    Meshsig__V1__Position pos = MESHSIG__V1__POSITION__INIT;
    if (!strcmp(ns->policy->topology, "delaunay")) {
        if (ns->policy->positioning == MS_POS_GEO) {
            pos.lon = other->pos.x;
            pos.lat = other->pos.y;
        } else {
            pos.x = other->pos.x;
            pos.y = other->pos.y;
        }
        cn.position = &pos;
    }
    Meshsig__V1__Topology t = MESHSIG__V1__TOPOLOGY__INIT;
    t.event_case = MESHSIG__V1__TOPOLOGY__EVENT_CONNECT;
    t.connect = &cn;
    Meshsig__V1__ServerMessage m = MESHSIG__V1__SERVER_MESSAGE__INIT;
    m.msg_case = MESHSIG__V1__SERVER_MESSAGE__MSG_TOPOLOGY;
    m.topology = &t;
    /* With where the other end lives: the two gateways may then pass the
     * peers' signals to each other directly (gateway/direct.c). */
    ms_deliver_located(c, ns, to, &m, other);
    if (md)
        meshsig__v1__struct__free_unpacked(md, NULL);
}

static void send_disconnect(ms_coord_t *c, ms_ns_t *ns, const ms_member_t *to,
                            const ms_member_t *other)
{
    ms_sm_disconnect_t d;
    ms_deliver(c, ns, to, ms_sm_disconnect(&d, other->id));
}

void ms_ns_send_connect(ms_coord_t *c, ms_ns_t *ns, const ms_member_t *to, const ms_member_t *other,
                        int initiator, Meshsig__V1__Role role)
{
    send_connect(c, ns, to, other, initiator, role, NULL);
}

void ms_ns_send_disconnect(ms_coord_t *c, ms_ns_t *ns, const ms_member_t *to,
                           const ms_member_t *other)
{
    send_disconnect(c, ns, to, other);
}

ms_member_t *ms_ns_by_handle(const ms_ns_t *ns, ms_peer_t h)
{
    return h < ns->n_handles ? ns->by_handle[h] : NULL;
}

/* Both ends of a-b hear of the edge now: what they held of it before no longer matters. */
static void forget_dangling(ms_member_t *a, ms_member_t *b)
{
    if (ms_member_rare(a)->n_dangling)
        ms_member_dangling_drop(a, b->id);
    if (ms_member_rare(b)->n_dangling)
        ms_member_dangling_drop(b, a->id);
}

void ms_ns_apply_diff(ms_coord_t *c, ms_ns_t *ns, const ms_topo_diff_t *diff,
                      const ms_member_t *joiner, Meshsig__V1__Value **offers, size_t n_offers)
{
    for (size_t i = 0; i < diff->n_disconnect; i++) {
        for (size_t h = 0; h < c->ns.n_hooks; h++)
            if (c->ns.hooks[h]->edge_dropped)
                c->ns.hooks[h]->edge_dropped(ns, diff->disconnect[i].a, diff->disconnect[i].b);
        ms_member_t *a = ms_ns_by_handle(ns, diff->disconnect[i].a);
        ms_member_t *b = ms_ns_by_handle(ns, diff->disconnect[i].b);
        if (!a || !b)
            continue;
        forget_dangling(a, b);
        send_disconnect(c, ns, a, b);
        send_disconnect(c, ns, b, a);
    }
    size_t next_offer = 0;
    for (size_t i = 0; i < diff->n_connect; i++) {
        const ms_edge_t *e = &diff->connect[i];
        ms_member_t *a = ms_ns_by_handle(ns, e->a);
        ms_member_t *b = ms_ns_by_handle(ns, e->b);
        if (!a || !b)
            continue;
        forget_dangling(a, b);
        Meshsig__V1__Role role_of_b = MESHSIG__V1__ROLE__PEER, role_of_a = MESHSIG__V1__ROLE__PEER;
        if (e->kind == MS_EDGE_TREE) {
            role_of_b = MESHSIG__V1__ROLE__CHILD; /* a is the parent of b */
            role_of_a = MESHSIG__V1__ROLE__PARENT;
        }
        /* A pre-made offer from the joiner makes the joiner the initiator of
         * that edge; the other end answers it at once. The joiner gets its own
         * offer back so it knows which of its connections the peer answers. */
        if (joiner && next_offer < n_offers && (a == joiner || b == joiner)) {
            Meshsig__V1__Value *offer = offers[next_offer++];
            ms_member_t *other = a == joiner ? b : a;
            send_connect(c, ns, joiner, other, 1, a == joiner ? role_of_b : role_of_a, offer);
            send_connect(c, ns, other, joiner, 0, a == joiner ? role_of_a : role_of_b, offer);
            continue;
        }
        int a_initiates = strcmp(a->id, b->id) < 0;
        send_connect(c, ns, a, b, a_initiates, role_of_b, NULL);
        send_connect(c, ns, b, a, !a_initiates, role_of_a, NULL);
    }
}

typedef struct {
    ms_topo_diff_t *diff;
    int connect;
    ms_err_t err;
    ms_peer_t remap0; /* the handle that the member at 0 moved to, or MS_PEER_NONE */
} edge_collect_t;

static void collect(ms_peer_t a, ms_peer_t b, uint8_t kind, void *ud)
{
    edge_collect_t *ec = ud;
    if (ec->err != MS_OK)
        return;
    if (ec->remap0 != MS_PEER_NONE) {
        a = a == 0 ? ec->remap0 : a;
        b = b == 0 ? ec->remap0 : b;
    }
    ec->err = ec->connect ? ms_topo_diff_connect(ec->diff, a, b, kind)
                          : ms_topo_diff_disconnect(ec->diff, a, b, kind);
}

/* Every member's gateway learns whom it may signal now (bus Delivery.signal_scope):
 * a gateway relays signals between its own sessions only as the owner would allow. */
static void send_signal_scope(ms_coord_t *c, ms_ns_t *ns)
{
    ms_member_t *m;
    MS_NS_MEMBERS_FOREACH(ns, i, m)
    {
        Meshsig__Bus__Delivery d = MESHSIG__BUS__DELIVERY__INIT;
        d.session = m->session;
        d.peer_id = m->id;
        d.signal_scope = ns->policy->signal_any ? 2 : 1;
        ms_outbox_deliver_full(&c->outbox, ns->shard, m->gateway, &d);
    }
}

static ms_err_t set_policy(ms_coord_t *c, ms_ns_t *ns, const ms_policy_t *p)
{
    ms_topo_t *fresh = NULL;
    ms_topo_diff_t diff, scratch;
    ms_topo_diff_init(&diff);
    ms_topo_diff_init(&scratch);
    ms_err_t err;
    const ms_policy_t *old = ns->policy, *neu = ms_policyshare_take(&c->ns.policies, p);
    if (!neu) {
        err = MS_ERR_NOMEM;
        goto fail;
    }
    ns->policy = neu; /* positions below use the new mode */
    if ((err = engine_create(p, ns->name, &fresh)) != MS_OK)
        goto fail;
    ms_member_t *at0 = ns->n_handles ? ns->by_handle[0] : NULL;
    if (ms_ns_has_source_slot(ns) && (err = reserve_source_slot(ns)) != MS_OK)
        goto fail;
    /* The old engine still knows a moved member by handle 0. */
    ms_peer_t remap0 = at0 && at0->handle != 0 ? at0->handle : MS_PEER_NONE;
    for (size_t h = 0; h < ns->n_handles; h++) {
        ms_member_t *m = ns->by_handle[h];
        if (!m)
            continue;
        m->pos = ms_ns_position(ns, m->id, ms_member_rare(m)->client_pos);
        ms_topo_diff_clear(&scratch);
        if ((err = fresh->ops->join(fresh, m->handle, m->pos, &scratch)) != MS_OK)
            goto fail;
    }
    edge_collect_t ec = {.diff = &diff, .connect = 0, .err = MS_OK, .remap0 = remap0};
    ns->engine->ops->edges(ns->engine, collect, &ec);
    ec.connect = 1;
    ec.remap0 = MS_PEER_NONE;
    fresh->ops->edges(fresh, collect, &ec);
    if ((err = ec.err) != MS_OK)
        goto fail;
    ms_topo_diff_normalize(&diff);
    c->ns.n_tick += (fresh->ops->tick != NULL) - (ns->engine->ops->tick != NULL);
    ns->engine->ops->destroy(ns->engine);
    ns->engine = fresh;
    fresh = NULL;
    ms_ns_apply_diff(c, ns, &diff, NULL, NULL, 0);
    if (old->signal_any != p->signal_any)
        send_signal_scope(c, ns);
    ms_info("namespace %s: topology now %s (%zu edges added, %zu removed)", ns->name, p->topology,
            diff.n_connect, diff.n_disconnect);
fail:
    ns->policy = err == MS_OK ? neu : old;
    ms_policyshare_give(&c->ns.policies, err == MS_OK ? old : neu);
    if (fresh)
        fresh->ops->destroy(fresh);
    ms_topo_diff_cleanup(&diff);
    ms_topo_diff_cleanup(&scratch);
    return err;
}

void ms_ns_tick_all(ms_coord_t *c, uint64_t now)
{
    if (!c->ns.n_tick)
        return;
    ms_ns_t *ns;
    MS_NS_FOREACH(c, ns, w)
    {
        if (!ns->engine->ops->tick)
            continue;
        if (ns->next_tick_ms == 0)
            ns->next_tick_ms = now + ns->policy->shuffle_period_ms;
        if (now < ns->next_tick_ms)
            continue;
        ns->next_tick_ms = now + ns->policy->shuffle_period_ms;
        ms_topo_diff_t *diff = ms_ns_diff(c);
        ms_err_t err = ns->engine->ops->tick(ns->engine, now, diff);
        if (err != MS_OK) {
            ms_warn("namespace %s: periodic topology work failed: %s", ns->name, ms_err_str(err));
            continue;
        }
        ms_ns_apply_diff(c, ns, diff, NULL, NULL, 0);
    }
}

ms_err_t ms_ns_policy_from_hello(ms_coord_t *c, ms_ns_t *ns, const ms_policy_t *p)
{
    return set_policy(c, ns, p);
}

ms_err_t ms_ns_policy_set(ms_coord_t *c, const char *name, const ms_policy_t *p)
{
    ms_ns_t *ns = ms_ns_find(c, name);
    if (ns && !ms_policy_same(ns->policy, p)) {
        ms_err_t err = set_policy(c, ns, p);
        if (err != MS_OK)
            return err;
    }
    ms_policies_override(c, name, p);
    return MS_OK;
}

void ms_ns_policies_reapply(ms_coord_t *c)
{
    size_t changed = 0, failed = 0;
    ms_ns_t *ns;
    MS_NS_FOREACH(c, ns, w)
    {
        if (ms_policies_has_override(c, ns->name))
            continue;
        const ms_policy_t *p = ms_policies_for(c, ns->name);
        if (ms_policy_same(ns->policy, p))
            continue;
        if (set_policy(c, ns, p) == MS_OK)
            changed++;
        else
            failed++;
    }
    ms_info("SIGHUP: policy file %s reloaded; %zu live namespaces changed policy%s",
            c->cfg->policy_file, changed, failed ? ", some could not (see above)" : "");
}

void ms_deliver(ms_coord_t *c, ms_ns_t *ns, const ms_member_t *to,
                const Meshsig__V1__ServerMessage *msg)
{
    if (ms_member_rare(to)->deliver) {
        ms_member_rare(to)->deliver(c, ns, to, msg);
        return;
    }
    ms_outbox_deliver(&c->outbox, ns->shard, to->gateway, to->session, to->id, msg, 0);
}

void ms_deliver_located(ms_coord_t *c, ms_ns_t *ns, const ms_member_t *to,
                        const Meshsig__V1__ServerMessage *msg, const ms_member_t *where)
{
    Meshsig__Bus__PeerLocation loc = MESHSIG__BUS__PEER_LOCATION__INIT;
    loc.peer_id = (char *)where->id;
    loc.gateway_id = (char *)where->gateway;
    loc.session = where->session;
    ms_outbox_deliver_path(&c->outbox, ns->shard, to->gateway, to->session, to->id, msg, &loc,
                           NULL);
}

void ms_member_error(ms_coord_t *c, ms_ns_t *ns, const ms_member_t *to, const char *client_id,
                     Meshsig__V1__ErrorCode code, const char *fmt, ...)
{
    char text[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    if (ms_member_rare(to)->deliver) {
        ms_sm_error_t e;
        ms_member_rare(to)->deliver(c, ns, to, ms_sm_error(&e, client_id, code, text));
        return;
    }
    ms_outbox_error(&c->outbox, ns->shard, to->gateway, to->session, client_id, code, "%s", text);
}

void ms_send_ok_result(ms_coord_t *c, ms_ns_t *ns, const ms_member_t *to, const char *client_id,
                       int delivered, int stored)
{
    if (!client_id || !*client_id)
        return;
    ms_sm_ok_t ok;
    Meshsig__V1__ServerMessage *sm = ms_sm_ok(&ok, client_id);
    ok.ok.delivered = delivered != 0;
    ok.ok.stored = stored != 0;
    ms_deliver(c, ns, to, sm);
}

void ms_send_ok(ms_coord_t *c, ms_ns_t *ns, const ms_member_t *to, const char *client_id)
{
    ms_send_ok_result(c, ns, to, client_id, 0, 0);
}
