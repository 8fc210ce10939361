/* SPDX-License-Identifier: Apache-2.0 */
/* Stored emits handed to a peer's gateway and not receipted yet: the owner delivers them again.
 *
 * A stored emit leaves the offline stream only on the receiver gateway's
 * receipt. A session that ends, resumes or rejoins fetches it again, but a
 * peer that stays joined while a hand-off was lost (its gateway died between
 * the hand-off and the write, a Delivery or Receipt lost on the bus while a
 * NATS node failed over, a client that never acked) would wait for its next
 * session. So the owner remembers each sequence it handed out, per peer, and
 * when the oldest of a peer's has no receipt after a few seconds it fetches
 * that peer's stored emits again: at most once per backoff step (3 s,
 * doubling to 60 s), at most MS_REDELIVER_MAX_TRIES times, then it leaves
 * them for the peer's next session. The client drops the duplicates by msgId.
 *
 * Pure bookkeeping: time comes in as an argument, the caller fetches. Loop
 * thread only.
 */
#ifndef MS_COORD_REDELIVER_H
#define MS_COORD_REDELIVER_H

#include <stddef.h>
#include <stdint.h>

#define MS_REDELIVER_FIRST_MS 3000u
#define MS_REDELIVER_MAX_MS 60000u
#define MS_REDELIVER_MAX_TRIES 10u
/* Sequences tracked at once; past it new ones are not (they still reach the
 * peer's next session). Bounded as the stream is: per peer by
 * --offline-max-msgs. */
#define MS_REDELIVER_MAX_SEQS 200000u

typedef struct ms_redeliver {
    struct rd_peer *peers; /* by "<ns>\x1f<peer>" */
    struct rd_seq *seqs;   /* by stream sequence */
    size_t n_seqs;
    uint64_t next_scan_ms;
    uint64_t n_refetched; /* fetches made because a receipt was missing */
    uint64_t n_given_up;  /* peers left to their next session after the last try */
} ms_redeliver_t;

void ms_redeliver_init(ms_redeliver_t *r);
void ms_redeliver_cleanup(ms_redeliver_t *r);
/* Stored emit seq was handed to the gateway of peer in ns at now (ms,
 * monotonic). A sequence handed out again (a re-fetch) keeps its peer's
 * backoff. */
void ms_redeliver_sent(ms_redeliver_t *r, const char *ns, const char *peer, uint64_t seq,
                       uint64_t now);
/* A fetch of everything stored for peer in ns was just queued (its join,
 * resume or a rebuild): its re-fetch waits a full first step again, so
 * that the two do not deliver the same emits twice. */
void ms_redeliver_fetched(ms_redeliver_t *r, const char *ns, const char *peer, uint64_t now);
/* A receipt for seq (any gateway's, for a sequence this owner may not know). */
void ms_redeliver_receipted(ms_redeliver_t *r, uint64_t seq);
/* Calls refetch for every peer whose oldest unreceipted hand-off is due
 * (its backoff passed). refetch returns 1 when it fetched again, 0 when the
 * peer is not a member here (any more): its entries are forgotten, as after
 * the last try. */
void ms_redeliver_tick(ms_redeliver_t *r, uint64_t now,
                       int (*refetch)(const char *ns, const char *peer, void *ud), void *ud);

#endif
