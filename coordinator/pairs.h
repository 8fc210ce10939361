/* SPDX-License-Identifier: Apache-2.0 */
/* Ad-hoc pairs of signals:any namespaces (PeerJS keys): where the other end lives, told to both
 * gateways on the first routed signal, so that the next ones go gateway to gateway. Loop thread
 * only. */
#ifndef MS_COORD_PAIRS_H
#define MS_COORD_PAIRS_H

#include "namespace.h"

/* Pairs per peer: PeerJS apps signal few peers; past this a pair stays on the owner's path. */
#define MS_PAIRS_MAX 32

/* 1 when a and b are a pair (the owner told both gateways where the other lives). */
int ms_pairs_linked(const ms_member_t *a, const ms_member_t *b);
/* The owner just routed a signal from `from` to `to`: in a signals:any namespace, two peers on
 * different gateways without a topology edge become a pair (both gateways are told). */
void ms_pairs_routed(ms_coord_t *c, ms_ns_t *ns, ms_member_t *from, ms_member_t *to);
/* m moved to another session (resume, a PeerJS reconnect): both ends of each of its pairs
 * learn the new place, as for a topology edge. */
void ms_pairs_moved(ms_coord_t *c, ms_ns_t *ns, const ms_member_t *m);
/* After a rebuild or merge placed the members placed[i] from their gateways' reports srs[i]
 * (n of them, all of ns): the pairs those gateways hold (SessionReport.pairs). A pair both
 * ends' gateways hold (both reported it, in this call or as one end placed before) stays as
 * it is: their records keep working and nothing is sent. A pair one end reported whose other
 * end is here too is told to both gateways again, as when it is made. A reported partner that
 * is not here (it left during the takeover) is unpaired at the reporting gateway. Past the
 * bounds, or outside a signals:any namespace, the reporter is unpaired too. */
void ms_pairs_restore(ms_coord_t *c, ms_ns_t *ns, ms_member_t *const *placed,
                      const Meshsig__Bus__SessionReport *const *srs, size_t n);
/* Pairs the owner knows, over all the namespaces it holds (/metrics). */
size_t ms_pairs_count(ms_coord_t *c);
/* The pairs of m, for the callers that treat them as edges (member.c send_retired). */
size_t ms_pairs_of(const ms_member_t *m, const char *const **ids);
/* member_gone: m's partners' gateways forget m (Delivery.unpair); cleanup: frees the lists. */
extern const ms_ns_hooks_t ms_pairs_hooks;

#endif
