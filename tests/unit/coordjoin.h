/* SPDX-License-Identifier: Apache-2.0 */
/* A join as a gateway sends it (a bus ShardRequest), handled by the coordinator under test:
 * how the coordinator's unit tests put a peer in a namespace. */
#ifndef MS_TEST_COORDJOIN_H
#define MS_TEST_COORDJOIN_H

#include "internal.h"

static inline void coord_join(ms_coord_t *c, uint32_t shards, const char *gw, const char *ns,
                              const char *peer, uint64_t session)
{
    Meshsig__Bus__Join j = MESHSIG__BUS__JOIN__INIT;
    j.peer_id = (char *)peer;
    Meshsig__Bus__ShardRequest req = MESHSIG__BUS__SHARD_REQUEST__INIT;
    req.gateway_id = (char *)gw;
    req.session = session;
    req.namespace_ = (char *)ns;
    req.client_id = "";
    req.op_case = MESHSIG__BUS__SHARD_REQUEST__OP_JOIN;
    req.join = &j;
    ms_shard_handle(c, ms_bus_shard_of(ns, shards), &req);
}

#endif
