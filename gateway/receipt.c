/* SPDX-License-Identifier: Apache-2.0 */
/* Delivery receipts for stored (persistent) emits: told to the owner once written to the client.
 *
 * The owner deletes a stored emit from the offline stream only when the
 * receiver's gateway says it wrote the frame (bus Receipt), so an emit
 * handed to a gateway that dies or drains before writing it stays stored and
 * is delivered again when the peer resumes elsewhere. A receipt follows the
 * write, not the queueing: frames still queued when a process is killed were
 * never sent.
 *
 * Each such frame is marked in the session's queue (ms_outmsg_t.receipt)
 * and its stream sequence kept here, per session, in queue order; a write
 * that took n marked frames sends the first n sequences. Only sessions with
 * receipts outstanding have an entry, so an idle session costs nothing.
 */
#include <stdlib.h>
#include <string.h>
#include <uthash.h>

#include "internal.h"
#include "log.h"

typedef struct ms_gw_receipts {
    uint64_t session;
    uint64_t *seqs; /* FIFO: seqs[head .. head + n) */
    size_t head, n, cap;
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
    free(r->seqs);
    free(r);
}

/* Sends the receipt for seqs (borrowed) as session s. */
static void send_receipt(ms_gateway_t *gw, ms_session_t *s, uint64_t *seqs, size_t n)
{
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
                          uint64_t seq)
{
    if (s->tail == before) {
        /* Nothing was queued. Closing: the client resumes and gets it again.
         * Otherwise the session took it without a frame (a PeerJS client has
         * no emit): nothing will ever be written, so it is done. */
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
            memmove(r->seqs, r->seqs + r->head, r->n * sizeof(*r->seqs));
            r->head = 0;
        } else {
            size_t ncap = r->cap ? 2 * r->cap : 8;
            uint64_t *ns = realloc(r->seqs, ncap * sizeof(*ns));
            if (!ns)
                return; /* unmarked: no receipt, delivered again later */
            r->seqs = ns;
            r->cap = ncap;
        }
    }
    r->seqs[r->head + r->n++] = seq;
    s->tail->receipt = 1;
}

void ms_gw_receipt_written(ms_gateway_t *gw, ms_session_t *s, unsigned n)
{
    receipts_t *r = find(gw, s->id);
    if (!r || !n)
        return;
    if (n > r->n)
        n = (unsigned)r->n; /* cannot happen: each mark has its sequence */
    send_receipt(gw, s, r->seqs + r->head, n);
    r->head += n;
    r->n -= n;
    if (!r->n)
        drop(gw, r);
}

void ms_gw_receipt_forget(ms_gateway_t *gw, ms_session_t *s)
{
    receipts_t *r = find(gw, s->id);
    if (r)
        drop(gw, r);
}

void ms_gw_receipt_cleanup(ms_gateway_t *gw)
{
    receipts_t *r, *tmp;
    HASH_ITER(hh, gw->receipts, r, tmp)
    {
        drop(gw, r);
    }
}
