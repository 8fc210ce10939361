/* SPDX-License-Identifier: Apache-2.0 */
/* The direct path's outgoing batches: one GatewayBatch per destination gateway per loop turn.
 *
 * direct.c decides that a signal goes straight to another gateway; here it is packed into
 * that gateway's batch (one NATS message, subject ms_subject_gw), and ms_gw_dout_flush
 * publishes every batch a loop turn filled at the turn's end. One publisher and one
 * subject per destination keep a pair's signals in order.
 */
#include <stdlib.h>
#include <string.h>

#include "dsig.h"
#include "internal.h"
#include "log.h"
#include "subject.h"
#include "uthash_keyed.h"

enum { T_DIRECT = 6 << 3 | 2 }; /* GatewayBatch.direct, a DirectSignal (dbatch.c's B_DIRECT) */

/* Outgoing batch to one gateway. */
typedef struct dest {
    char *gw;
    char subject[160];
    uint8_t *buf;
    size_t len, cap, header_len, n;
    struct dest *next_dirty;
    int dirty;
    UT_hash_handle hh;
} dest_t;

struct ms_gw_dout {
    dest_t *dests, *dirty;
    dest_t *last;     /* dest_get's last answer: across two gateways, every signal's */
    size_t batch_max; /* bytes of one batch: --direct-batch-max, under the server's max_payload */
};

static int reserve(uint8_t **buf, size_t *cap, size_t need)
{
    if (need <= *cap)
        return 0;
    size_t ncap = *cap ? *cap : 4096;
    while (ncap < need)
        ncap *= 2;
    uint8_t *nb = realloc(*buf, ncap);
    if (!nb)
        return -1;
    *buf = nb;
    *cap = ncap;
    return 0;
}

static void dest_free(dest_t *t)
{
    free(t->gw);
    free(t->buf);
    free(t);
}

static dest_t *dest_get(ms_gateway_t *gw, const char *to_gw)
{
    ms_gw_dout_t *o = gw->dout;
    dest_t *t = o->last;
    if (t && !strcmp(t->gw, to_gw))
        return t;
    HASH_FIND_STR(o->dests, to_gw, t);
    if (t)
        return o->last = t;
    if (!(t = calloc(1, sizeof(*t))) || !(t->gw = strdup(to_gw)))
        goto fail;
    ms_subject_gw(t->subject, sizeof(t->subject), gw->cfg->prefix, to_gw);
    Meshsig__Bus__GatewayBatch hdr = MESHSIG__BUS__GATEWAY_BATCH__INIT;
    hdr.gateway_id = gw->id;
    hdr.bus_version = MS_BUS_VERSION;
    size_t hl = meshsig__bus__gateway_batch__get_packed_size(&hdr);
    if (reserve(&t->buf, &t->cap, hl))
        goto fail;
    t->len = t->header_len = meshsig__bus__gateway_batch__pack(&hdr, t->buf);
    HASH_ADD_KEYPTR(hh, o->dests, t->gw, strlen(t->gw), t);
    return o->last = t;
fail:
    if (t)
        dest_free(t);
    return NULL;
}

/* Publishes t's batch now (it stays on the dirty list; an empty batch is not sent). */
static void dest_publish(ms_gateway_t *gw, dest_t *t)
{
    if (t->n && ms_bus_publish(gw->bus, t->subject, NULL, t->buf, t->len) != MS_OK)
        ms_warn("direct batch to %s (%zu signals) not published", t->gw, t->n);
    else if (t->n)
        gw->n_direct_batches++;
    t->len = t->header_len;
    t->n = 0;
}

/* The batch size for the next turn: --direct-batch-max, kept 4 KiB under what the server
 * takes (its max_payload, 1 MiB unless configured; the subject and headers count too). */
static void batch_max_update(ms_gateway_t *gw)
{
    size_t max = gw->cfg->direct_batch_max > 0 ? (size_t)gw->cfg->direct_batch_max : 256 * 1024;
    natsConnection *nc = gw->bus ? ms_bus_nats(gw->bus) : NULL;
    int64_t server = nc ? natsConnection_GetMaxPayload(nc) : 0;
    if (server > 8192 && (uint64_t)server - 4096 < max)
        max = (size_t)server - 4096;
    gw->dout->batch_max = max;
}

/* Packed by hand (dsig.c), or by protobuf-c when ds carries a decoded payload. A batch that
 * would grow past batch_max is published first: a loop turn after a stall (several merged
 * turns of 500 clients' reads) can hold thousands of signals for one gateway, more than the
 * server's max_payload, and NATS refuses such a message whole. The same publisher and
 * subject keep the order. */
int ms_gw_dout_append(ms_gateway_t *gw, const char *to_gw, const Meshsig__Bus__DirectSignal *ds)
{
    ms_dsig_lens_t lens;
    size_t len = ms_dsig_measure(ds, &lens);
    int by_hand = len != 0;
    if (!by_hand)
        len = meshsig__bus__direct_signal__get_packed_size(ds);
    dest_t *t = dest_get(gw, to_gw);
    if (t && t->n && t->len + len + 11 > gw->dout->batch_max)
        dest_publish(gw, t);
    if (!t || reserve(&t->buf, &t->cap, t->len + len + 11))
        return -1;
    uint8_t *p = t->buf + t->len;
    *p++ = T_DIRECT;
    p = ms_dsig_put_varint(p, len);
    p += by_hand ? ms_dsig_put(ds, &lens, p) : meshsig__bus__direct_signal__pack(ds, p);
    t->len = (size_t)(p - t->buf);
    t->n++;
    if (!t->dirty) {
        t->dirty = 1;
        t->next_dirty = gw->dout->dirty;
        gw->dout->dirty = t;
    }
    return 0;
}

void ms_gw_dout_flush(ms_gateway_t *gw)
{
    ms_gw_dout_t *o = gw->dout;
    if (!o || !o->dirty)
        return;
    while (o->dirty) {
        dest_t *t = o->dirty;
        o->dirty = t->next_dirty;
        t->dirty = 0;
        dest_publish(gw, t);
    }
    batch_max_update(gw);
}

ms_err_t ms_gw_dout_init(ms_gateway_t *gw)
{
    gw->dout = calloc(1, sizeof(*gw->dout));
    if (!gw->dout)
        return MS_ERR_NOMEM;
    batch_max_update(gw);
    return MS_OK;
}

void ms_gw_dout_cleanup(ms_gateway_t *gw)
{
    ms_gw_dout_t *o = gw->dout;
    if (!o)
        return;
    dest_t *t, *tmp;
    HASH_ITER(hh, o->dests, t, tmp)
    {
        HASH_DEL(o->dests, t);
        dest_free(t);
    }
    free(o);
    gw->dout = NULL;
}
