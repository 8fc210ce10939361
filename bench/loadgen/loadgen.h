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
    uint32_t clients;   /* N */
    uint32_t group;     /* idle: clients per namespace (meshsig) */
    const char *ns;     /* storm: the namespace; others: a prefix */
    uint32_t window;    /* connection attempts in flight before welcome/OPEN */
    uint32_t src_addrs; /* source addresses 127.0.0.2 and up, cycled */
    ms_lg_pids_t pids;  /* server processes to measure (may be empty) */
    double settle_s;    /* idle: wait before sampling RSS */
    uint32_t inflight;  /* relay: messages in flight per pair */
    uint32_t size;      /* signal frame size to aim for, bytes */
    double rate;        /* latency: messages per second, all pairs together */
    double warmup_s, duration_s;
    double quiet_s;       /* storm: silence that ends the wait for topology events */
    double timeout_s;     /* bound on each waiting phase */
    int64_t heartbeat_ms; /* <0: the protocol's default */
    const char *degrees;  /* storm: write "peerId degree" lines here at the end (or NULL) */
    double hold_s;        /* keep the clients connected this long after the report */
    int verbose;
} ms_lg_cfg_t;

/* Runs the scenario and prints one JSON object with the results on stdout. Returns 0 when the
 * run completed (even with failures, which the JSON reports), 1 on a setup error. */
int ms_lg_run(const ms_lg_cfg_t *cfg);

#endif
