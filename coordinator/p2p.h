/* SPDX-License-Identifier: Apache-2.0 */
/* Requested extra edges (p2p targets, policy p2pTargets): a peer asks another for an edge
 * outside the topology, which that peer accepts or refuses. Loop thread only. */
#ifndef MS_COORD_P2P_H
#define MS_COORD_P2P_H

#include "client.pb-c.h"
#include "namespace.h"

/* A p2pTarget client message from m: a request (t->answer false) or m's answer. */
void ms_p2p_handle(ms_coord_t *c, ms_ns_t *ns, ms_member_t *m, const char *client_id,
                   const Meshsig__V1__P2pTarget *t);
/* 1 when a and b have a requested edge. */
int ms_p2p_linked(const ms_member_t *a, const ms_member_t *b);
/* member_gone: m's linked peers get a disconnect, the requests it did not answer PEER_LEFT;
 * cleanup (the namespace goes): its members' p2p state is freed. */
extern const ms_ns_hooks_t ms_p2p_hooks;

#endif
