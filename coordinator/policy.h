/* SPDX-License-Identifier: Apache-2.0 */
/* Namespace policy: which topology engine, its parameters, and the namespace's rules. */
#ifndef MS_POLICY_H
#define MS_POLICY_H

#include <jansson.h>

#include "err.h"
#include "topology.h"

typedef enum {
    MS_POS_RANDOM = 0, /* hash of namespace and peer id */
    MS_POS_CLIENT,     /* hello.position x, y */
    MS_POS_GEO,        /* hello.position lat, lon */
    MS_POS_NETWORK,    /* Vivaldi coordinates from reported RTTs */
} ms_positioning_t;

typedef struct {
    char topology[16]; /* engine name: fullmesh, delaunay, tree, spray */
    ms_topo_params_t params;
    ms_positioning_t positioning;
    int signal_any;             /* 1: signals to any peer in the namespace; 0: neighbours only */
    int id_replace;             /* 1: a duplicate id replaces the old session; 0: ID_TAKEN */
    int overflow_wait;          /* fullmesh over its cap: wait in line instead of NAMESPACE_FULL */
    int p2p_targets;            /* 1: peers may ask each other for edges outside the topology */
    uint32_t shuffle_period_ms; /* spray */
    /* 0: a signal to an absent peer is PEER_NOT_FOUND at once. Else it is held
     * this long for the peer to join (delivered then), and only then answered
     * PEER_NOT_FOUND (PeerJS's EXPIRE). */
    uint32_t hold_ms;
} ms_policy_t;

/* Full mesh, no cap, neighbours only, reject duplicate ids. */
void ms_policy_default(ms_policy_t *p);
/* The policy of PeerJS namespaces (the gateway's peerjs.<key>) unless a rule
 * says otherwise: no topology, signals to any peer, held for 5 s. */
void ms_policy_peerjs(ms_policy_t *p);
/* Parses a policy object, starting from defaults. On MS_ERR_INVAL, err says why. */
ms_err_t ms_policy_parse(const json_t *j, ms_policy_t *out, char *err, size_t errlen);
/* New reference. */
json_t *ms_policy_to_json(const ms_policy_t *p);
/* 1 when a and b mean the same (fields an engine ignores do not count). */
int ms_policy_same(const ms_policy_t *a, const ms_policy_t *b);

#endif
