/* SPDX-License-Identifier: Apache-2.0 */
/* Delivery receipts for stored (persistent) emits: told to the owner once the client has them.
 *
 * The owner deletes a stored emit from the offline stream only on a receipt
 * from the receiver's gateway (bus Receipt), so an emit handed to a gateway
 * that dies or drains before the client has it stays stored and is delivered
 * again when the peer resumes elsewhere. When the receipt goes depends on the
 * client:
 * - one whose hello set acksPersistent (the JS SDK) acks each emit's msgId
 *   with `received` once its app has it; the receipt follows that ack. A
 *   frame written to a socket whose client died or resumed before reading it
 *   is thus delivered again, not lost.
 * - any other client: the receipt follows the write (frames still queued
 *   when a process is killed were never sent); what the socket took and the
 *   client never read is lost to it.
 *
 * Each such frame is marked in the session's queue (ms_outmsg_t.receipt)
 * and its stream sequence and msgId kept here, per session, in queue order;
 * a write that took n marked frames moves the first n on (receipt, or the
 * list waiting for the client's ack). Only sessions with receipts outstanding
 * have an entry, so an idle session costs nothing.
 */
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "log.h"
#include "uthash_keyed.h"

/* msgIds are 16 hex digits (coordinator/emit.c); longer ones are not acked
 * by id and get the write receipt instead. */
#define MSGID_MAX 40
/* Written emits waiting for the client's ack, per session. Past this the
 * oldest is forgotten: it stays stored and comes again (owner re-fetch or
 * next session), deduplicated by msgId. */
#define MAX_UNACKED 256
/* Sequences per Receipt built on the stack. */
#define BATCH 64

typedef struct {
    uint64_t seq;
    char msg_id[MSGID_MAX]; /* "" : receipted on write */
} entry_t;

typedef struct ms_gw_receipts {
    uint64_t session;
    entry_t *q; /* queued, not yet written: FIFO q[head .. head + n) */
    size_t head, n, cap;
    entry_t *unacked; /* written, waiting for `received`: oldest first */
    size_t n_unacked;
    UT_hash_handle hh;
} receipts_t;

static receipts_t *find(ms_gateway_t *gw, uint64_t session)
{
    receipts_t *r = NULL;
    HASH_FIND(hh, gw->receipts, &session, sizeof(session), r);
    return r;
}

static void drop(ms_gateway_t *gw, receipts_t *r)
{
    HASH_DEL(gw->receipts, r);
    free(r->q);
    free(r->unacked);
    free(r);
}

static void drop_if_idle(ms_gateway_t *gw, receipts_t *r)
{
    if (!r->n && !r->n_unacked)
        drop(gw, r);
}

/* Sends the receipt for seqs (borrowed) as session s. */
static void send_receipt(ms_gateway_t *gw, ms_session_t *s, uint64_t *seqs, size_t n)
{
    if (!n)
        return;
    if (!s->ns || s->state != MS_SESSION_JOINED) {
        /* Left meanwhile: no owner to tell; the emits stay stored and reach
         * the peer at its next join (a duplicate the client drops by msgId). */
        return;
    }
    Meshsig__Bus__Receipt rc = MESHSIG__BUS__RECEIPT__INIT;
    rc.seqs = seqs;
    rc.n_seqs = n;
    Meshsig__Bus__ShardRequest req = MESHSIG__BUS__SHARD_REQUEST__INIT;
    req.op_case = MESHSIG__BUS__SHARD_REQUEST__OP_RECEIPT;
    req.receipt = &rc;
    if (ms_gw_publish_request(gw, s, &req, 0) != 0)
        ms_warn("receipt of %zu stored emits for %s/%s not published; they will be delivered "
                "again",
                n, s->ns, s->peer_id ? s->peer_id : "?");
}

void ms_gw_receipt_expect(ms_gateway_t *gw, ms_session_t *s, const ms_outmsg_t *before,
                          uint64_t seq, const char *msg_id)
{
    if (s->tail == before) {
        /* Nothing was queued. Closing: the client resumes and gets it again.
         * Otherwise the session took it without a frame (a PeerJS client has
         * no emit, an encoding that cannot carry it): nothing will ever be
         * written or acked, so it is done. */
        if (!s->closing)
            send_receipt(gw, s, &seq, 1);
        return;
    }
    receipts_t *r = find(gw, s->id);
    if (!r) {
        r = calloc(1, sizeof(*r));
        if (!r)
            return; /* no receipt: delivered again later, deduplicated by msgId */
        r->session = s->id;
        HASH_ADD(hh, gw->receipts, session, sizeof(r->session), r);
    }
    if (r->head + r->n == r->cap) {
        if (r->head) {
            memmove(r->q, r->q + r->head, r->n * sizeof(*r->q));
            r->head = 0;
        } else {
            size_t ncap = r->cap ? 2 * r->cap : 8;
            entry_t *nq = realloc(r->q, ncap * sizeof(*nq));
            if (!nq) {
                drop_if_idle(gw, r);
                return; /* unmarked: no receipt, delivered again later */
            }
            r->q = nq;
            r->cap = ncap;
        }
    }
    entry_t *e = &r->q[r->head + r->n++];
    e->seq = seq;
    e->msg_id[0] = '\0';
    size_t len = msg_id ? strlen(msg_id) : 0;
    if (s->acks_persistent && len && len < sizeof(e->msg_id))
        memcpy(e->msg_id, msg_id, len + 1);
    s->tail->receipt = 1;
}

/* e was written to an acking client: it waits for its msgId. */
static void await_ack(receipts_t *r, const entry_t *e)
{
    for (size_t i = 0; i < r->n_unacked; i++)
        if (r->unacked[i].seq == e->seq)
            return; /* a redelivery of one still unacked: one ack settles both */
    if (!r->unacked && !(r->unacked = malloc(MAX_UNACKED * sizeof(*r->unacked))))
        return; /* never receipted here: delivered again later */
    if (r->n_unacked == MAX_UNACKED) {
        memmove(r->unacked, r->unacked + 1, (MAX_UNACKED - 1) * sizeof(*r->unacked));
        r->n_unacked--;
    }
    r->unacked[r->n_unacked++] = *e;
}

void ms_gw_receipt_written(ms_gateway_t *gw, ms_session_t *s, unsigned n)
{
    receipts_t *r = find(gw, s->id);
    if (!r || !n)
        return;
    if (n > r->n)
        n = (unsigned)r->n; /* cannot happen: each mark has its entry */
    uint64_t seqs[BATCH];
    size_t k = 0;
    for (unsigned i = 0; i < n; i++) {
        const entry_t *e = &r->q[r->head + i];
        if (e->msg_id[0]) {
            await_ack(r, e);
            continue;
        }
        seqs[k++] = e->seq;
        if (k == BATCH) {
            send_receipt(gw, s, seqs, k);
            k = 0;
        }
    }
    send_receipt(gw, s, seqs, k);
    r->head += n;
    r->n -= n;
    if (!r->n)
        r->head = 0;
    drop_if_idle(gw, r);
}

void ms_gw_receipt_received(ms_gateway_t *gw, ms_session_t *s, const Meshsig__V1__Received *rc)
{
    receipts_t *r = find(gw, s->id);
    if (!r)
        return; /* nothing waits: ids of an earlier session, or acked twice */
    uint64_t seqs[BATCH];
    size_t k = 0;
    for (size_t i = 0; i < rc->n_msg_ids && r->n_unacked; i++) {
        const char *id = rc->msg_ids[i];
        for (size_t j = 0; j < r->n_unacked; j++) {
            if (strcmp(r->unacked[j].msg_id, id))
                continue;
            seqs[k++] = r->unacked[j].seq;
            memmove(r->unacked + j, r->unacked + j + 1,
                    (r->n_unacked - j - 1) * sizeof(*r->unacked));
            r->n_unacked--;
            break;
        }
        if (k == BATCH) {
            send_receipt(gw, s, seqs, k);
            k = 0;
        }
    }
    send_receipt(gw, s, seqs, k);
    drop_if_idle(gw, r);
}

void ms_gw_receipt_forget(ms_gateway_t *gw, ms_session_t *s)
{
    receipts_t *r = find(gw, s->id);
    if (r)
        drop(gw, r);
    /* Frames still queued (a leave): their writes must not take the entries
     * of a later join's emits. */
    for (ms_outmsg_t *m = ms_session_head(s); m; m = m == s->tail ? NULL : m->next)
        m->receipt = 0;
}

void ms_gw_receipt_cleanup(ms_gateway_t *gw)
{
    receipts_t *r, *tmp;
    HASH_ITER(hh, gw->receipts, r, tmp)
    {
        drop(gw, r);
    }
}
