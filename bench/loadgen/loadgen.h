/* SPDX-License-Identifier: Apache-2.0 */
/* The load generator: one epoll loop driving many WebSocket clients through one scenario. */
#ifndef MS_LG_LOADGEN_H
#define MS_LG_LOADGEN_H

#include <stdint.h>

#include "proto.h"
#include "stats.h"

typedef enum {
    MS_LG_IDLE,    /* connect N clients, hold them, sample server RSS */
    MS_LG_RELAY,   /* pairs relay signals back and forth, a fixed number in flight per pair */
    MS_LG_LATENCY, /* pairs, open loop at a fixed total rate, one-way latency */
    MS_LG_STORM,   /* N clients join one namespace; count topology events until quiet */
} ms_lg_scenario_t;

#define MS_LG_MAX_PORTS 16

/* Read-only after main() fills it. */
typedef struct {
    const ms_lg_proto_t *proto;
    ms_lg_scenario_t scenario;
    const char *host; /* server address, dotted IPv4 in 127.0.0.0/8 */
    int port;
    /* More gateways (--port2, --ports): n_ports > 1 spreads the clients over
     * ports[] (ports[0] == port); see ms_lg_port_index. */
    int ports[MS_LG_MAX_PORTS];
    int n_ports;
    uint32_t clients;    /* N */
    uint32_t base;       /* global index of client 0: peer ids and namespaces count from here, so
                          * that several load generators can share one namespace */
    uint32_t group;      /* idle, storm: clients per namespace (0: idle 2, storm all in --ns) */
    uint32_t namespaces; /* with group: namespace numbers wrap modulo this (0: never) */
    const char *ns;      /* storm without group: the namespace; others: a prefix */
    /* --ns-list: client i joins ns_list[(base + i) mod n_ns_list] instead (storm, idle). */
    const char *const *ns_list;
    uint32_t n_ns_list;
    const char *id_prefix; /* peer ids are id_prefix followed by the global index */
    double join_rate;      /* connection attempts started per second at most (0: no limit) */
    uint32_t window;       /* connection attempts in flight before welcome/OPEN */
    uint32_t src_addrs;    /* source addresses 127.0.0.2 and up, cycled */
    ms_lg_pids_t pids;     /* server processes to measure (may be empty) */
    double settle_s;       /* idle: wait before sampling RSS */
    uint32_t inflight;     /* relay: messages in flight per pair */
    uint32_t size;         /* signal frame size to aim for, bytes */
    double rate;           /* latency: messages per second, all pairs together */
    double warmup_s, duration_s;
    double quiet_s;       /* storm: silence that ends the wait for topology events */
    double timeout_s;     /* bound on each waiting phase */
    int64_t heartbeat_ms; /* <0: the protocol's default */
    const char *degrees;  /* storm: write "peerId degree" lines here at the end (or NULL) */
    double hold_s;        /* keep the clients connected this long after the report; SIGUSR1 then
                           * prints a status line (and rewrites --degrees), SIGTERM or SIGINT ends
                           * the hold early */
    int verbose;
} ms_lg_cfg_t;

/* The namespace client idx (0-based in this process) joins. Returns its length, or -1 when
 * it does not fit in cap. */
int ms_lg_namespace(const ms_lg_cfg_t *cfg, uint32_t idx, char *buf, size_t cap);

/* Whether a peer id (not NUL-terminated) is one of ours: id_prefix followed by digits only.
 * Tells the clients' own neighbours from probes and other peers that joined their
 * namespaces. */
int ms_lg_own_peer(const ms_lg_cfg_t *cfg, const char *peer, size_t len);

/* Runs the scenario and prints one JSON object with the results on stdout. Returns 0 when the
 * run completed (even with failures, which the JSON reports), 1 on a setup error. */
int ms_lg_run(const ms_lg_cfg_t *cfg);

#endif
