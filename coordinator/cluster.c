/* SPDX-License-Identifier: Apache-2.0 */
/* Many coordinators: heartbeats and the live set, rendezvous hashing of shards, and each
 * shard's lease state machine (claim, renew, give up in time, hand off, release).
 *
 * Every coordinator hears every heartbeat and computes the same owner for a
 * shard, argmax over live coordinators of mix(fnv1a64("id\0n")), so a change
 * of the live set moves only the shards of the coordinator that came or went.
 * The lease in KV is what makes ownership exclusive while views disagree: a
 * coordinator serves a shard only between a successful claim and two thirds
 * of the lease after its last successful write, so it stops before anyone
 * else can claim.
 *
 * Late renewals. Under CPU starvation (or SIGSTOP) the deadline can pass
 * while a renewal is out, or before one could be sent. The shard is then not
 * dropped at once but held in doubt: its output is kept (ms_outbox_hold),
 * and a renewal (compare-and-set from the last revision we wrote) settles
 * it. A success proves that nobody else served in between: JetStream orders
 * every write to the key, a claim is always a write (create-if-absent, or
 * compare-and-set over a released empty value; nothing acts on a lease it
 * only read or saw expire), and a compare-and-set from our revision fails
 * once any other write came after it, the removal of the expired key
 * included. So the shard is kept, the held output sent, and it is served
 * until 2/3 of the lease after that renewal was sent (the new key lives a
 * lease from its write, which came after). A renewal that is refused, or
 * finds another coordinator's id at a newer revision, loses the shard and
 * the held output is discarded: the gateways never see it. The doubt lasts
 * one lease at most, then the shard is dropped as before.
 *
 * Lease health. A heartbeat says how long the sender's lease store (its own NATS connection,
 * lease.h) has not answered. Heartbeats and leases travel on different connections, and one
 * may work while the other does not: after a partition heals, the bus reconnects while the
 * lease connection is still down, or the other way round. A coordinator that hands shards to
 * one whose KV calls go nowhere gets them back a lease later (its claims never land, or its
 * renewals fail), and meanwhile nobody serves them. So rendezvous hashing counts only live
 * coordinators whose store answered within 2/3 of a lease (what a shard is served for after a
 * write): the others' shards stay, or are claimed, here until their heartbeats say their
 * store answers again, and are then handed over. A coordinator counts itself whatever its own
 * store does: its claims of its share are what tells it (and, through its heartbeats, the
 * others) that the store answers again, a refused claim included. A heartbeat without the
 * field (a 1.0 coordinator) reads as 0: a working store, as before.
 *
 * Retries while KV is silent. A claim or renewal that fails is tried again 50-150 ms later, per
 * shard. While the lease store answers, that is what a takeover waits on (a claim refused until
 * the old lease runs out). While it does not (the lease connection down, calls running out
 * their bound), every shard did so: a 10 s lease-link outage cost thousands of KV calls, each
 * failing at once. Then the tries go in slots instead (kvretry.h): one claim or renewal per
 * slot, a probe, the slots 50 ms apart doubling to 1 s, with jitter; any answer (a refusal too)
 * ends it, every shard tries again at the next tick, and the lease connection reconnecting
 * opens a slot at once, so a takeover or a return is not slowed.
 *
 * All coordinators subscribe <prefix>.shard.* and drop what they do not own
 * (gating here, on the loop thread, against the same state the leases
 * update). Per-shard subscriptions would have to follow every ownership
 * change with a subscribe/unsubscribe that races with the lease, and a
 * request could fall between the two; the cost of the filter is one subject
 * parse per foreign request.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "hash.h"
#include "internal.h"
#include "log.h"
#include "subject.h"

#define CLAIM_RETRY_MS 100
#define MAX_QUEUED 4096 /* requests held per shard during a rebuild */

static uint64_t mix64(uint64_t x)
{
    /* splitmix64's finaliser: FNV alone is weak in its high bits for short keys. */
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    x ^= x >> 31;
    return x;
}

static uint64_t score(const char *id, uint32_t shard)
{
    char buf[160];
    size_t n = strlen(id);
    if (n > 100)
        n = 100;
    memcpy(buf, id, n);
    buf[n] = '\0';
    int k = snprintf(buf + n + 1, sizeof(buf) - n - 1, "%u", shard);
    return mix64(ms_fnv1a64(buf, n + 1 + (size_t)k));
}

const char *ms_cluster_desired_owner(ms_coord_t *c, uint32_t shard)
{
    const char *best = c->cluster.stopping ? NULL : c->id;
    uint64_t bs = best ? score(best, shard) : 0;
    ms_coord_peer_t *p, *tmp;
    HASH_ITER(hh, c->cluster.coords, p, tmp)
    {
        if (!p->alive || !p->lease_ok)
            continue;
        uint64_t s = score(p->id, shard);
        if (!best || s > bs || (s == bs && strcmp(p->id, best) > 0)) {
            best = p->id;
            bs = s;
        }
    }
    return best;
}

static void recompute(ms_coord_t *c)
{
    size_t mine = 0, withdrawn = 0;
    for (uint32_t n = 0; n < (uint32_t)c->cfg->shards; n++) {
        ms_shard_t *s = &c->cluster.shards[n];
        const char *o = ms_cluster_desired_owner(c, n);
        s->mine = o && !strcmp(o, c->id);
        mine += s->mine;
        if (!s->mine && s->state == MS_SHARD_CLAIMING) {
            /* Queued while its owner seemed gone, and the owner is back: a claim that has not
             * run yet is dropped, so that it neither waits in the lease worker's queue ahead
             * of the claims of this coordinator's own shards nor takes the shard from its
             * owner only to hand it back. One that ran comes back with the old generation and
             * is released (ms_cluster_lease_results). */
            ms_lease_cancel_claim(c->cluster.lease, n);
            s->gen++;
            s->state = MS_SHARD_FREE;
            withdrawn++;
        }
    }
    ms_info("live coordinators changed: %zu of %ld shards are now this coordinator's%s", mine,
            c->cfg->shards, withdrawn ? " (claims of others' shards withdrawn)" : "");
}

ms_err_t ms_cluster_init(ms_coord_t *c)
{
    c->cluster.shards = calloc((size_t)c->cfg->shards, sizeof(*c->cluster.shards));
    if (!c->cluster.shards)
        return MS_ERR_NOMEM;
    c->cluster.mono_started_ms = ms_clock_mono_ms();
    /* Hear the others for a heartbeat and a half before claiming, so a
     * coordinator joining a running cluster does not grab what is theirs. */
    c->cluster.settle_until_ms =
        c->cluster.mono_started_ms + (uint64_t)c->cfg->coord_heartbeat_ms * 3 / 2 + 50;
    c->cluster.live_changed = 1;
    /* Set again at the first tick, which the phases follow. */
    ms_renewal_init(&c->cluster.renewal, (uint64_t)c->cfg->lease_ttl_ms, MS_CLUSTER_TICK_MS,
                    (uint32_t)c->cfg->lease_renew_phases, c->cluster.mono_started_ms);
    return MS_OK;
}

static void queue_free(ms_shard_t *s)
{
    for (ms_queued_t *q = s->queue, *n; q; q = n) {
        n = q->next;
        free(q);
    }
    s->queue = s->queue_tail = NULL;
    s->n_queued = 0;
}

void ms_cluster_cleanup(ms_coord_t *c)
{
    if (c->cluster.shards) {
        for (uint32_t n = 0; n < (uint32_t)c->cfg->shards; n++) {
            ms_resync_free(c->cluster.shards[n].resync);
            ms_gwsync_free(c->cluster.shards[n].sync);
            queue_free(&c->cluster.shards[n]);
        }
        free(c->cluster.shards);
        c->cluster.shards = NULL;
    }
    ms_coord_peer_t *p, *tmp;
    HASH_ITER(hh, c->cluster.coords, p, tmp)
    {
        HASH_DEL(c->cluster.coords, p);
        free(p->id);
        free(p->admin);
        free(p->shards);
        free(p->epochs);
        free(p->ns_counts);
        free(p);
    }
}

/* Whether a lease store silent this long (ms) works: it answered within the time a shard is
 * served after a write ("Lease health" above). */
static int lease_answers(ms_coord_t *c, uint64_t silent_ms)
{
    return silent_ms <= (uint64_t)c->cfg->lease_ttl_ms * 2 / 3;
}

void ms_cluster_heartbeat_in(ms_coord_t *c, const Meshsig__Bus__CoordinatorHeartbeat *hb)
{
    if (!*hb->id || !strcmp(hb->id, c->id))
        return;
    ms_coord_peer_t *p;
    HASH_FIND_STR(c->cluster.coords, hb->id, p);
    if (!p) {
        if (hb->leaving)
            return;
        if (!(p = calloc(1, sizeof(*p))) || !(p->id = strdup(hb->id))) {
            free(p);
            return;
        }
        HASH_ADD_KEYPTR(hh, c->cluster.coords, p->id, strlen(p->id), p);
    }
    uint32_t *sh = NULL;
    uint64_t *ep = NULL;
    size_t n = hb->n_shards < hb->n_epochs ? hb->n_shards : hb->n_epochs;
    if (n && (!(sh = malloc(n * sizeof(*sh))) || !(ep = malloc(n * sizeof(*ep))))) {
        free(sh);
        free(ep);
        sh = NULL;
        ep = NULL;
        n = 0;
    }
    uint32_t *nc = n && hb->n_namespaces == n ? malloc(n * sizeof(*nc)) : NULL;
    if (n) {
        memcpy(sh, hb->shards, n * sizeof(*sh));
        memcpy(ep, hb->epochs, n * sizeof(*ep));
    }
    if (nc)
        memcpy(nc, hb->namespaces, n * sizeof(*nc));
    free(p->shards);
    free(p->epochs);
    free(p->ns_counts);
    p->shards = sh;
    p->epochs = ep;
    p->ns_counts = nc;
    p->n_shards = n;
    if (*hb->admin && (!p->admin || strcmp(p->admin, hb->admin))) {
        free(p->admin);
        p->admin = strdup(hb->admin);
    }
    p->started_ms = hb->started_ms;
    p->last_seen_ms = ms_clock_mono_ms();
    p->bus_version = hb->bus_version;
    snprintf(p->release, sizeof(p->release), "%s", hb->release);
    int alive = !hb->leaving;
    int lease_ok = lease_answers(c, hb->lease_silent_ms);
    p->lease_silent_ms = hb->lease_silent_ms;
    if (alive != p->alive) {
        ms_info("coordinator %s %s", p->id, alive ? "is alive" : "is leaving");
        p->alive = alive;
        c->cluster.live_changed = 1;
    }
    if (lease_ok != p->lease_ok) {
        if (alive && lease_ok)
            ms_info("coordinator %s: its lease store answers again", p->id);
        else if (alive)
            ms_warn("coordinator %s: its lease store has not answered for %llu ms; no shards "
                    "go to it",
                    p->id, (unsigned long long)hb->lease_silent_ms);
        p->lease_ok = lease_ok;
        c->cluster.live_changed = 1;
    }
}

/* Stops serving: whatever it produced goes out first, then its state is forgotten. */
void ms_cluster_drop_shard(ms_coord_t *c, uint32_t shard)
{
    ms_shard_t *s = &c->cluster.shards[shard];
    ms_outbox_forget_shard(&c->outbox, shard);
    ms_dedupe_forget_shard(&c->dedupe, shard);
    ms_ns_destroy_shard(c, shard);
    ms_resync_free(s->resync);
    s->resync = NULL;
    ms_gwsync_free(s->sync);
    s->sync = NULL;
    queue_free(s);
    s->state = MS_SHARD_FREE;
    s->renewing = 0;
    s->doubt_until = 0;
    s->first_try_ms = 0;
    s->gen++;
    s->epoch = 0;
    s->next_claim = ms_clock_mono_ms() + CLAIM_RETRY_MS;
}

static void release(ms_coord_t *c, uint32_t shard, const char *why)
{
    uint64_t rev = c->cluster.shards[shard].rev;
    ms_cluster_drop_shard(c, shard);
    /* What the shard answered leaves before the lease does (the lease worker writes on its own
     * connection): a gateway then has those answers before the new owner's first message, and
     * sends again only what was not answered (gateway/inflight.c). */
    ms_bus_send_now(c->bus);
    ms_lease_release(c->cluster.lease, shard, rev);
    ms_debug("shard %u released (%s)", shard, why);
}

static void publish_heartbeat(ms_coord_t *c, int leaving)
{
    size_t cap = (size_t)c->cfg->shards;
    uint32_t *sh = calloc(cap, sizeof(*sh));
    uint64_t *ep = calloc(cap, sizeof(*ep));
    uint32_t *nc = calloc(cap, sizeof(*nc));
    size_t n = 0;
    if (sh && ep && nc && !leaving)
        for (uint32_t i = 0; i < (uint32_t)cap; i++)
            if (c->cluster.shards[i].state == MS_SHARD_OWNED ||
                c->cluster.shards[i].state == MS_SHARD_REBUILDING) {
                sh[n] = i;
                nc[n] = ms_ns_count_shard(c, i);
                ep[n++] = c->cluster.shards[i].epoch;
            }
    Meshsig__Bus__CoordinatorHeartbeat hb = MESHSIG__BUS__COORDINATOR_HEARTBEAT__INIT;
    hb.id = c->id;
    hb.started_ms = c->started_ms;
    hb.admin = (char *)c->cfg->admin_listen;
    hb.leaving = leaving != 0;
    hb.release = (char *)ms_version();
    hb.bus_version = MS_BUS_VERSION;
    hb.lease_silent_ms = ms_lease_silent_ms(c->cluster.lease, ms_clock_mono_ms());
    hb.shards = sh;
    hb.n_shards = n;
    hb.epochs = ep;
    hb.n_epochs = n;
    hb.namespaces = nc;
    hb.n_namespaces = n;
    size_t len = meshsig__bus__coordinator_heartbeat__get_packed_size(&hb);
    uint8_t *buf = malloc(len ? len : 1);
    if (buf) {
        meshsig__bus__coordinator_heartbeat__pack(&hb, buf);
        char subj[200];
        ms_subject(subj, sizeof(subj), c->cfg->prefix, MS_SUBJ_COORD_HEARTBEAT, NULL);
        if (leaving == 1) /* after the releases queued before it, on a flushed connection */
            ms_lease_publish(c->cluster.lease, subj, buf, len);
        else
            ms_bus_publish(c->bus, subj, NULL, buf, len);
    }
    free(buf);
    free(sh);
    free(ep);
    free(nc);
}

uint64_t ms_cluster_namespaces(ms_coord_t *c)
{
    uint32_t n_shards = (uint32_t)c->cfg->shards;
    uint64_t total = 0;
    /* Per shard, the count of the live coordinator with the highest epoch for
     * it: during a hand-off both may say they serve it, and the newer one is
     * the owner. Shards served here are counted above, not from others. */
    uint64_t *best_epoch = calloc(n_shards, sizeof(*best_epoch));
    uint32_t *best_count = calloc(n_shards, sizeof(*best_count));
    if (!best_epoch || !best_count)
        goto done;
    ms_coord_peer_t *p, *tmp;
    HASH_ITER(hh, c->cluster.coords, p, tmp)
    {
        if (!p->alive || !p->ns_counts)
            continue;
        for (size_t i = 0; i < p->n_shards; i++) {
            uint32_t sh = p->shards[i];
            if (sh >= n_shards || c->cluster.shards[sh].state == MS_SHARD_OWNED ||
                c->cluster.shards[sh].state == MS_SHARD_REBUILDING)
                continue;
            if (p->epochs[i] >= best_epoch[sh]) {
                best_epoch[sh] = p->epochs[i];
                best_count[sh] = p->ns_counts[i];
            }
        }
    }
    for (uint32_t sh = 0; sh < n_shards; sh++)
        total += best_count[sh];
    c->cluster.ns_elsewhere = total;
done:
    free(best_epoch);
    free(best_count);
    return ms_ns_count(c) + c->cluster.ns_elsewhere;
}

/* Handles the requests of list q (in order) and frees them. */
static void replay_list(ms_coord_t *c, uint32_t shard, ms_queued_t *q)
{
    ms_shard_t *s = &c->cluster.shards[shard];
    while (q) {
        ms_queued_t *n = q->next;
        /* A request may drop the shard (a failed renewal): the rest are then not ours. */
        if (s->state == MS_SHARD_OWNED)
            ms_cluster_request(c, shard, q->data, q->len);
        free(q);
        q = n;
    }
}

static void replay(ms_coord_t *c, uint32_t shard)
{
    ms_shard_t *s = &c->cluster.shards[shard];
    ms_queued_t *q = s->queue;
    s->queue = s->queue_tail = NULL;
    s->n_queued = 0;
    replay_list(c, shard, q);
}

/* The rebuild is done: the gateways that answered have reported at this epoch. */
static void rebuilt(ms_coord_t *c, uint32_t shard)
{
    ms_shard_t *s = &c->cluster.shards[shard];
    for (size_t i = 0; i < ms_resync_n_answered(s->resync); i++)
        replay_list(c, shard, ms_gwsync_reported(c, &s->sync, ms_resync_answered_at(s->resync, i)));
}

static void renew(ms_coord_t *c, uint32_t shard)
{
    ms_shard_t *s = &c->cluster.shards[shard];
    s->renewing = 1;
    c->cluster.n_renewals++;
    ms_lease_renew(c->cluster.lease, shard, s->gen, s->rev, s->first_try_ms);
}

/* Whether the shard may act now. Past valid_until it is put in doubt (held output, a
 * renewal decides: "Late renewals" above), and dropped when the doubt has lasted a lease. */
static int lease_check(ms_coord_t *c, uint32_t shard, uint64_t now)
{
    ms_shard_t *s = &c->cluster.shards[shard];
    if (s->state != MS_SHARD_OWNED && s->state != MS_SHARD_REBUILDING)
        return 0;
    if (now < s->valid_until && !s->doubt_until)
        return 1;
    if (!s->doubt_until) {
        s->doubt_until = now + (uint64_t)c->cfg->lease_ttl_ms;
        c->cluster.n_doubts++;
        /* What is still unsent waits too: past the deadline nothing goes out unconfirmed. */
        ms_outbox_hold(&c->outbox, shard, 1);
        ms_warn("shard %u: lease not renewed in time (%llu ms past the deadline); output held "
                "until a renewal settles it",
                shard, (unsigned long long)(now - s->valid_until));
        s->next_renew = now;
    } else if (now >= s->doubt_until) {
        ms_warn("shard %u: lease not renewed in time; no longer serving it", shard);
        c->cluster.n_losses++;
        ms_cluster_drop_shard(c, shard);
    }
    return 0;
}

/* Whether a claim or renewal may go this tick: kv_open (a slot is open), and while the store is
 * silent, none has gone yet (tried). */
static int may_try(const ms_kvretry_t *kr, int kv_open, int tried)
{
    return kv_open && !(kr->silent && tried);
}

void ms_cluster_tick(ms_coord_t *c, uint64_t now)
{
    if (now >= c->cluster.next_heartbeat_ms && !c->cluster.stopping) {
        c->cluster.next_heartbeat_ms = now + (uint64_t)c->cfg->coord_heartbeat_ms;
        publish_heartbeat(c, 0);
    }
    ms_coord_peer_t *p, *tmp;
    HASH_ITER(hh, c->cluster.coords, p, tmp)
    {
        if (p->alive && now - p->last_seen_ms > (uint64_t)c->cfg->coord_timeout_ms) {
            ms_warn("coordinator %s is silent: its shards move", p->id);
            p->alive = 0;
            c->cluster.live_changed = 1;
        }
    }
    if (c->cluster.live_changed) {
        c->cluster.live_changed = 0;
        recompute(c);
    }
    ms_cluster_namespaces(c); /* cluster.ns_elsewhere for the next joins */
    /* Each shard renews at its phase's points (renewal.c): a small batch every tick, not every
     * shard in one burst. The phases sit between the ticks of this coordinator, counted from its
     * first. */
    if (!c->cluster.renewal_origin_set) {
        c->cluster.renewal_origin_set = 1;
        ms_renewal_init(&c->cluster.renewal, (uint64_t)c->cfg->lease_ttl_ms, MS_CLUSTER_TICK_MS,
                        (uint32_t)c->cfg->lease_renew_phases, now);
    }
    uint64_t renewals_before = c->cluster.n_renewals;
    ms_kvretry_t *kr = &c->cluster.kvretry;
    /* The bus is back: the servers are, and the lease link need not wait out its backed-off
     * reconnect delay (up to 1 s) to find it. */
    uint64_t bus_reconnects = ms_bus_reconnects(c->bus);
    if (bus_reconnects != c->cluster.bus_reconnects) {
        c->cluster.bus_reconnects = bus_reconnects;
        ms_lease_kick(c->cluster.lease);
    }
    ms_kvretry_reconnects(kr, ms_lease_reconnects(c->cluster.lease), now);
    /* The store silent: this tick may try only in an open slot, and one claim or renewal at most
     * (a probe: its answer lets every shard go again at the next tick). */
    int kv_open = ms_kvretry_open(kr, now), tried = 0;
    for (uint32_t n = 0; n < (uint32_t)c->cfg->shards; n++) {
        ms_shard_t *s = &c->cluster.shards[n];
        switch (s->state) {
        case MS_SHARD_OWNED:
        case MS_SHARD_REBUILDING:
            if (!lease_check(c, n, now)) {
                /* In doubt: a renewal settles it; no hand-off, no rebuild step meanwhile. */
                if (s->state != MS_SHARD_FREE && !s->renewing && now >= s->next_renew &&
                    may_try(kr, kv_open, tried)) {
                    tried = 1;
                    renew(c, n);
                }
                break;
            }
            if (!s->mine) {
                c->cluster.n_handoffs++;
                ms_info("shard %u: handing over to %s", n, ms_cluster_desired_owner(c, n));
                release(c, n, "hand-off");
                break;
            }
            if (!s->renewing && now >= s->next_renew && may_try(kr, kv_open, tried)) {
                tried = 1;
                renew(c, n);
            }
            if (s->state == MS_SHARD_REBUILDING &&
                ms_resync_poll(c, s->resync, n, now, c->cluster.mono_started_ms)) {
                rebuilt(c, n);
                ms_resync_free(s->resync);
                s->resync = NULL;
                s->state = MS_SHARD_OWNED;
                replay(c, n);
                if (s->state == MS_SHARD_OWNED)
                    ms_backend_announce_owner(c, n, s->epoch);
            }
            if (s->state == MS_SHARD_OWNED)
                replay_list(c, n, ms_gwsync_tick(c, &s->sync, n, s->epoch, now));
            break;
        case MS_SHARD_FREE:
            if (s->mine && now >= c->cluster.settle_until_ms && now >= s->next_claim &&
                !c->cluster.stopping && may_try(kr, kv_open, tried)) {
                tried = 1;
                s->state = MS_SHARD_CLAIMING;
                ms_lease_claim(c->cluster.lease, n, s->gen);
            }
            break;
        default:
            break;
        }
    }
    if (c->cluster.n_renewals != renewals_before)
        c->cluster.n_renewal_batches++;
    if (tried)
        ms_kvretry_used(kr, now, (uint32_t)rand());
    ms_lease_flush(c->cluster.lease);
}

void ms_cluster_lease_results(ms_coord_t *c)
{
    uint64_t ttl = (uint64_t)c->cfg->lease_ttl_ms;
    for (ms_lease_result_t *r = ms_lease_take(c->cluster.lease), *next; r; r = next) {
        next = r->next;
        ms_shard_t *s = r->shard < (uint32_t)c->cfg->shards ? &c->cluster.shards[r->shard] : NULL;
        /* What it says of the store; one skipped or withdrawn before any KV call says nothing. */
        if ((r->kind == MS_LEASE_CLAIM || r->kind == MS_LEASE_RENEW) && (r->tried || r->ok))
            ms_kvretry_result(&c->cluster.kvretry, r->ok || r->lost || r->owner || r->answered,
                              ms_clock_mono_ms());
        switch (r->kind) {
        case MS_LEASE_POLICY: {
            json_error_t je;
            json_t *j = json_loads(r->value, 0, &je);
            ms_policy_t pol;
            char why[160];
            if (j && ms_policy_parse(j, &pol, why, sizeof(why)) == MS_OK)
                ms_cluster_policy_set(c, r->key, &pol, 0);
            else
                ms_warn("stored policy of %s is unreadable", r->key);
            json_decref(j);
            break;
        }
        case MS_LEASE_CLAIM:
            if (!s)
                break;
            if (r->gen != s->gen || s->state != MS_SHARD_CLAIMING) {
                if (r->ok) /* dropped meanwhile: give it straight back */
                    ms_lease_release(c->cluster.lease, r->shard, r->rev);
                break;
            }
            if (!r->ok) {
                s->state = MS_SHARD_FREE;
                s->next_claim = ms_clock_mono_ms() + CLAIM_RETRY_MS + (uint64_t)(rand() % 50);
                if (r->owner)
                    ms_debug("shard %u is held by %s", r->shard, r->owner);
                break;
            }
            s->epoch = s->rev = r->rev;
            ms_outbox_set_epoch(&c->outbox, r->shard, s->epoch);
            s->valid_until = r->sent_ms + ttl * 2 / 3;
            s->next_renew = ms_renewal_next(&c->cluster.renewal, r->shard, r->sent_ms);
            c->cluster.n_claims++;
            if (!s->mine || c->cluster.stopping) {
                s->state = MS_SHARD_OWNED;
                release(c, r->shard, "no longer ours");
                break;
            }
            ms_info("shard %u claimed (epoch %llu)", r->shard, (unsigned long long)s->epoch);
            s->state = MS_SHARD_REBUILDING;
            /* The previous owner may have stored emits this coordinator has
             * not heard of: the rebuild and later joins must find them. */
            if (c->offline)
                ms_offline_refresh(c->offline);
            s->resync = ms_resync_begin(c, r->shard, s->epoch);
            break;
        case MS_LEASE_RENEW: {
            if (!s || r->gen != s->gen)
                break;
            uint64_t now = ms_clock_mono_ms();
            s->renewing = 0;
            if (r->ok) {
                s->rev = r->rev;
                s->first_try_ms = 0;
                s->valid_until = r->sent_ms + ttl * 2 / 3;
                s->next_renew = ms_renewal_next(&c->cluster.renewal, r->shard, r->sent_ms);
                if (s->doubt_until && now < s->valid_until) {
                    /* Nobody wrote the key in between (the argument above): still ours. */
                    s->doubt_until = 0;
                    c->cluster.n_kept_late++;
                    ms_outbox_hold(&c->outbox, r->shard, 0);
                    ms_info("shard %u: lease renewed late (epoch %llu, revision %llu); kept",
                            r->shard, (unsigned long long)s->epoch, (unsigned long long)s->rev);
                } else if (s->doubt_until) {
                    s->next_renew = now; /* confirmed, but already past: once more */
                }
            } else if (r->lost) {
                ms_warn("shard %u: lease taken by another coordinator; no longer serving it",
                        r->shard);
                c->cluster.n_losses++;
                ms_cluster_drop_shard(c, r->shard);
            } else {
                if (!s->first_try_ms)
                    s->first_try_ms = r->sent_ms;
                /* Maybe only slow: try again; the deadline puts the shard in doubt. */
                s->next_renew = now + 50;
            }
            break;
        }
        default:
            break;
        }
        ms_lease_result_free(r);
    }
}

/* Whether the shard may act on a request: checked on each request too, not only on the tick,
 * because past valid_until another coordinator may own it (lease_check). */
static int check_lease(ms_coord_t *c, uint32_t shard)
{
    return lease_check(c, shard, ms_clock_mono_ms());
}

void ms_cluster_backend_request(ms_coord_t *c, uint32_t shard, const char *reply,
                                const uint8_t *data, size_t len)
{
    /* Backends get their answers straight, not through the outbox: in doubt they retry. */
    int ok = check_lease(c, shard);
    ms_shard_t *s = &c->cluster.shards[shard];
    if (s->state == MS_SHARD_REBUILDING || (s->state == MS_SHARD_OWNED && !ok))
        ms_backend_request_later(c, shard, reply, data, len);
    else if (s->state == MS_SHARD_OWNED)
        ms_backend_request(c, shard, reply, data, len);
}

void ms_cluster_request(ms_coord_t *c, uint32_t shard, const uint8_t *data, size_t len)
{
    ms_shard_t *s = &c->cluster.shards[shard];
    /* In doubt the request is handled as usual: what it sends is held with the rest. */
    check_lease(c, shard);
    if (s->state == MS_SHARD_REBUILDING) {
        ms_queued_t *q = s->n_queued < MAX_QUEUED ? malloc(sizeof(*q) + len) : NULL;
        if (!q) {
            c->cluster.n_queued_dropped++;
            return;
        }
        q->next = NULL;
        q->len = len;
        memcpy(q->data, data, len);
        if (s->queue_tail)
            s->queue_tail->next = q;
        else
            s->queue = q;
        s->queue_tail = q;
        s->n_queued++;
        return;
    }
    if (s->state != MS_SHARD_OWNED) {
        c->cluster.n_not_owner++;
        return;
    }
    Meshsig__Bus__ShardRequest *req = ms_shard_decode(c, shard, data, len);
    if (!req)
        return;
    if (req->resend && req->epoch < s->epoch) {
        /* Sent before its gateway knew this owner: the gateway keeps it and sends it again, in
         * order behind the ones lost with the old owner, once it learns this epoch (the claim's
         * ResyncRequest told it, or gwsync asks it). Only that copy is applied. */
        c->cluster.n_resend_dropped++;
        meshsig__bus__shard_request__free_unpacked(req, NULL);
        return;
    }
    /* A session unknown here, of a gateway that has not reported: it waits for the answer. */
    if (!ms_gwsync_hold(c, &s->sync, shard, s->epoch, req, data, len))
        ms_shard_handle(c, shard, req);
    meshsig__bus__shard_request__free_unpacked(req, NULL);
}

void ms_cluster_resync_report(ms_coord_t *c, const Meshsig__Bus__ResyncReport *rr)
{
    if (rr->shard >= (uint32_t)c->cfg->shards)
        return;
    ms_shard_t *s = &c->cluster.shards[rr->shard];
    if (s->resync) {
        ms_resync_add(s->resync, rr);
        return;
    }
    /* A gateway heard after the takeover (gwsync.c asked it): its sessions join in. */
    if (s->state != MS_SHARD_OWNED || rr->epoch != s->epoch || !*rr->gateway_id)
        return;
    check_lease(c, rr->shard);
    if (s->state != MS_SHARD_OWNED)
        return;
    long ev = ms_merge_report(c, rr->shard, rr);
    if (rr->n_sessions)
        ms_info("shard %u (epoch %llu): %zu sessions reported late by %s merged, %ld topology "
                "events",
                rr->shard, (unsigned long long)s->epoch, rr->n_sessions, rr->gateway_id, ev);
    if (rr->last)
        replay_list(c, rr->shard, ms_gwsync_reported(c, &s->sync, rr->gateway_id));
}

void ms_cluster_shutdown(ms_coord_t *c)
{
    if (c->cluster.stopping)
        return;
    c->cluster.stopping = 1;
    size_t n = 0;
    for (uint32_t i = 0; i < (uint32_t)c->cfg->shards; i++)
        if (c->cluster.shards[i].state == MS_SHARD_OWNED ||
            c->cluster.shards[i].state == MS_SHARD_REBUILDING) {
            release(c, i, "shutdown");
            n++;
        }
    publish_heartbeat(c, 1);
    ms_info("released %zu shards", n);
}

void ms_cluster_left(ms_coord_t *c)
{
    if (!c->cluster.stopping || !c->bus)
        return;
    /* Sent on the lease connection after the releases (ms_cluster_shutdown), so that the others
     * claim once the keys are free; when that link was down, they heard nothing until
     * --coord-timeout-ms. Now the releases are done or given up (ms_lease_destroy ran), the
     * same heartbeat goes on the bus too, where the regular ones go. Twice is harmless: a
     * coordinator already seen leaving stays so. */
    publish_heartbeat(c, 2);
}

int ms_cluster_ready(ms_coord_t *c)
{
    if (!ms_lease_ready(c->cluster.lease) || ms_clock_mono_ms() < c->cluster.settle_until_ms ||
        c->cluster.live_changed)
        return 0;
    for (uint32_t n = 0; n < (uint32_t)c->cfg->shards; n++)
        if (c->cluster.shards[n].mine && c->cluster.shards[n].state != MS_SHARD_OWNED)
            return 0;
    return 1;
}

ms_err_t ms_cluster_policy_set(ms_coord_t *c, const char *name, const ms_policy_t *p, int announce)
{
    ms_err_t err = ms_ns_policy_set(c, name, p);
    if (err != MS_OK)
        return err;
    if (!announce)
        return MS_OK;
    json_t *j = ms_policy_to_json(p);
    char *text = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    if (!text)
        return MS_ERR_NOMEM;
    ms_lease_policy_put(c->cluster.lease, name, text);
    Meshsig__Bus__PolicyUpdate pu = MESHSIG__BUS__POLICY_UPDATE__INIT;
    pu.namespace_ = (char *)name;
    pu.policy_json = text;
    pu.bus_version = MS_BUS_VERSION;
    size_t len = meshsig__bus__policy_update__get_packed_size(&pu);
    uint8_t *buf = malloc(len ? len : 1);
    if (buf) {
        meshsig__bus__policy_update__pack(&pu, buf);
        char subj[200];
        ms_subject(subj, sizeof(subj), c->cfg->prefix, MS_SUBJ_COORD_POLICY, NULL);
        ms_bus_publish(c->bus, subj, NULL, buf, len);
    }
    free(buf);
    free(text);
    return MS_OK;
}

void ms_cluster_policy_in(ms_coord_t *c, const Meshsig__Bus__PolicyUpdate *pu)
{
    json_error_t je;
    json_t *j = json_loads(pu->policy_json, 0, &je);
    ms_policy_t p;
    char why[160];
    if (j && ms_policy_parse(j, &p, why, sizeof(why)) == MS_OK) {
        ms_err_t err = ms_cluster_policy_set(c, pu->namespace_, &p, 0);
        if (err != MS_OK)
            ms_warn("policy of %s not applied here: %s", pu->namespace_, ms_err_str(err));
    }
    json_decref(j);
    ms_outbox_flush(&c->outbox);
}

const char *ms_cluster_owner(ms_coord_t *c, uint32_t shard)
{
    ms_shard_t *s = &c->cluster.shards[shard];
    if (s->state == MS_SHARD_OWNED || s->state == MS_SHARD_REBUILDING)
        return c->id;
    /* During a move two may say they serve it: the newer lease is the real one. */
    const char *owner = NULL;
    uint64_t epoch = 0;
    ms_coord_peer_t *p, *tmp;
    HASH_ITER(hh, c->cluster.coords, p, tmp)
    {
        if (!p->alive)
            continue;
        for (size_t i = 0; i < p->n_shards; i++)
            if (p->shards[i] == shard && p->epochs[i] > epoch) {
                owner = p->id;
                epoch = p->epochs[i];
            }
    }
    return owner;
}

static const char *state_name(const ms_shard_t *s, uint64_t now)
{
    /* Past the deadline (the tick may not have run yet) and no renewal confirmed: output held. */
    if ((s->state == MS_SHARD_OWNED || s->state == MS_SHARD_REBUILDING) &&
        (s->doubt_until || now >= s->valid_until))
        return "in-doubt";
    switch (s->state) {
    case MS_SHARD_CLAIMING:
        return "claiming";
    case MS_SHARD_REBUILDING:
        return "rebuilding";
    case MS_SHARD_OWNED:
        return "serving";
    default:
        return "free";
    }
}

/* A coordinator's lease health in /v1/cluster: leaseSilentMs (null before its store first
 * answered) and leaseOk, which says whether shards may go to it. */
static void lease_json(ms_coord_t *c, json_t *o, uint64_t silent)
{
    if (!o)
        return;
    json_object_set_new(o, "leaseSilentMs",
                        silent >= MS_LEASE_NEVER_ANSWERED ? json_null()
                                                          : json_integer((json_int_t)silent));
    json_object_set_new(o, "leaseOk", json_boolean(lease_answers(c, silent)));
}

json_t *ms_cluster_json(ms_coord_t *c)
{
    json_t *coords = json_array(), *shards = json_array(), *gws = json_array();
    json_t *self_sh = json_array();
    uint64_t now = ms_clock_mono_ms();
    for (uint32_t n = 0; n < (uint32_t)c->cfg->shards; n++) {
        ms_shard_t *s = &c->cluster.shards[n];
        const char *owner = NULL;
        uint64_t epoch = 0;
        if (s->state == MS_SHARD_OWNED || s->state == MS_SHARD_REBUILDING) {
            owner = c->id;
            epoch = s->epoch;
            json_array_append_new(self_sh, json_integer(n));
        } else {
            ms_coord_peer_t *p, *tmp;
            HASH_ITER(hh, c->cluster.coords, p, tmp)
            {
                if (!p->alive)
                    continue;
                for (size_t i = 0; i < p->n_shards; i++)
                    if (p->shards[i] == n && p->epochs[i] > epoch) {
                        owner = p->id;
                        epoch = p->epochs[i];
                    }
            }
        }
        const char *want = ms_cluster_desired_owner(c, n);
        json_t *sj =
            json_pack("{s:i, s:s?, s:I, s:s?, s:s}", "shard", (json_int_t)n, "owner", owner,
                      "epoch", (json_int_t)epoch, "desired", want, "here", state_name(s, now));
        /* How long this coordinator may still act without another confirmed renewal. */
        if (sj && (s->state == MS_SHARD_OWNED || s->state == MS_SHARD_REBUILDING))
            json_object_set_new(
                sj, "leaseValidMs",
                json_integer(now < s->valid_until ? (json_int_t)(s->valid_until - now) : 0));
        json_array_append_new(shards, sj);
    }
    char bv[16];
    ms_busver_str(MS_BUS_VERSION, bv, sizeof(bv));
    json_t *self =
        json_pack("{s:s, s:b, s:b, s:s, s:I, s:o, s:s, s:s}", "id", c->id, "alive", 1, "self", 1,
                  "admin", c->cfg->admin_listen, "startedMs", (json_int_t)c->started_ms, "shards",
                  self_sh, "version", ms_version(), "busVersion", bv);
    lease_json(c, self, ms_lease_silent_ms(c->cluster.lease, now));
    json_array_append_new(coords, self);
    ms_coord_peer_t *p, *tmp;
    HASH_ITER(hh, c->cluster.coords, p, tmp)
    {
        json_t *sh = json_array();
        for (size_t i = 0; i < p->n_shards && p->alive; i++)
            json_array_append_new(sh, json_integer(p->shards[i]));
        ms_busver_str(p->bus_version, bv, sizeof(bv));
        json_t *pj =
            json_pack("{s:s, s:b, s:b, s:s?, s:I, s:I, s:o, s:s, s:s}", "id", p->id, "alive",
                      p->alive, "self", 0, "admin", p->admin, "startedMs",
                      (json_int_t)p->started_ms, "silentMs", (json_int_t)(now - p->last_seen_ms),
                      "shards", sh, "version", p->release, "busVersion", bv);
        lease_json(c, pj, p->lease_silent_ms);
        json_array_append_new(coords, pj);
    }
    ms_gw_info_t *g, *gtmp;
    MS_GW_FOREACH(c, g, gtmp)
    {
        ms_busver_str(g->bus_version, bv, sizeof(bv));
        json_array_append_new(gws, json_pack("{s:s, s:b, s:i, s:s, s:s, s:I}", "id", g->id, "alive",
                                             !g->dead, "sessions", (json_int_t)g->sessions,
                                             "version", g->release, "busVersion", bv, "busRefused",
                                             (json_int_t)g->bus_refused));
    }
    /* Nodes of another bus major: heard, refused, never counted as members. */
    json_t *incompatible = json_array();
    for (size_t i = 0; i < c->loop.busver.n_peers; i++) {
        const ms_busver_peer_t *r = &c->loop.busver.peers[i];
        ms_busver_str(r->version, bv, sizeof(bv));
        json_array_append_new(incompatible,
                              json_pack("{s:s, s:s, s:s, s:s, s:I, s:I}", "id", r->id, "role",
                                        r->role, "version", r->release, "busVersion", bv, "refused",
                                        (json_int_t)r->refused, "silentMs",
                                        (json_int_t)(now - r->last_ms)));
    }
    return json_pack("{s:s, s:i, s:I, s:o, s:o, s:o, s:o}", "self", c->id, "shardCount",
                     (json_int_t)c->cfg->shards, "leaseTtlMs", (json_int_t)c->cfg->lease_ttl_ms,
                     "coordinators", coords, "shards", shards, "gateways", gws, "incompatible",
                     incompatible);
}

size_t ms_cluster_n_owned(ms_coord_t *c)
{
    size_t n = 0;
    for (uint32_t i = 0; i < (uint32_t)c->cfg->shards; i++)
        n += c->cluster.shards[i].state == MS_SHARD_OWNED;
    return n;
}

int ms_cluster_has_live_peer(ms_coord_t *c)
{
    ms_coord_peer_t *peer, *tmp;
    HASH_ITER(hh, c->cluster.coords, peer, tmp)
    if (peer->alive)
        return 1;
    return 0;
}

int ms_cluster_all_live_in(ms_coord_t *c, const json_t *seen)
{
    ms_coord_peer_t *peer, *tmp;
    HASH_ITER(hh, c->cluster.coords, peer, tmp)
    if (peer->alive && !json_object_get(seen, peer->id))
        return 0;
    return 1;
}

json_t *ms_cluster_live_missing(ms_coord_t *c, const json_t *seen)
{
    json_t *m = NULL;
    ms_coord_peer_t *peer, *tmp;
    HASH_ITER(hh, c->cluster.coords, peer, tmp)
    {
        if (!peer->alive || json_object_get(seen, peer->id))
            continue;
        if (!m && !(m = json_array()))
            return NULL;
        json_array_append_new(m, json_string(peer->id));
    }
    return m;
}
