/* SPDX-License-Identifier: Apache-2.0 */
/* Starts real nats-server, coordinator and gateway processes on free loopback ports for tests.
 *
 * Children die with the test process (PR_SET_PDEATHSIG) and are stopped by
 * cluster_stop (SIGTERM, then SIGKILL after a bounded wait). Logs go to a
 * temporary directory that cluster_stop prints the tail of on failure.
 */
#ifndef MS_TEST_CLUSTER_H
#define MS_TEST_CLUSTER_H

#include <jansson.h>
#include <stdint.h>
#include <sys/types.h>

#define CLUSTER_MAX_GW 4
#define CLUSTER_MAX_COORD 4
#define CLUSTER_MAX_NATS 3
#define CLUSTER_SHARDS 64 /* the coordinators' default shard count */

typedef struct {
    char dir[256];
    int nats_port, admin_port;
    pid_t nats, coord;
    int n_gw;
    pid_t gw[CLUSTER_MAX_GW];
    int gw_port[CLUSTER_MAX_GW];
    const char *admin_token;        /* NULL: coordinator in insecure dev mode */
    const char *const *coord_extra; /* more coordinator arguments, NULL-terminated */
    /* Coordinators 1..n_coord-1 (index 0 is coord/admin_port above). */
    int n_coord;
    pid_t xcoord[CLUSTER_MAX_COORD];
    int xadmin[CLUSTER_MAX_COORD];
    char xid[CLUSTER_MAX_COORD][32];
    /* NATS nodes: 1 (the default, nats/nats_port above are node 0) or a
     * JetStream cluster of CLUSTER_MAX_NATS. Every coordinator and gateway
     * gets nats_urls, the full list, so it can reconnect to a survivor. */
    int n_nats;
    pid_t nats_pid[CLUSTER_MAX_NATS];
    int nats_cport[CLUSTER_MAX_NATS], nats_rport[CLUSTER_MAX_NATS], nats_mport[CLUSTER_MAX_NATS];
    char nats_urls[CLUSTER_MAX_NATS * 32];
    /* A nats-server config file (-c) under the command-line ports, or NULL. */
    const char *nats_conf;
} cluster_t;

/* The monotonic clock in ms: deadlines of the tests' bounded waits. */
long long cluster_now_ms(void);
/* fnv1a64(ns) mod CLUSTER_SHARDS: the shard that owns namespace ns. */
uint32_t cluster_shard_of(const char *ns);
/* A free TCP port on 127.0.0.1. */
int cluster_free_port(void);
/* Path of a built binary: $MESHSIG_BUILD_DIR/<rel>. */
const char *cluster_bin(const char *rel, char *buf, size_t cap);
/* Starts nats-server and a coordinator. */
int cluster_start(cluster_t *c, const char *admin_token);
/* The same with more coordinator arguments (NULL-terminated, kept by pointer). */
int cluster_start_args(cluster_t *c, const char *admin_token, const char *const *coord_extra);
/* The same on n_nats NATS nodes (1, or CLUSTER_MAX_NATS for a clustered
 * JetStream); returns once JetStream has a meta leader and the coordinator is ready. */
int cluster_start_nats(cluster_t *c, const char *admin_token, const char *const *coord_extra,
                       int n_nats);
/* cluster_start_args on one NATS node that also reads the config file nats_conf (its
 * authorization, say); coord_extra carries the coordinator's credentials. */
int cluster_start_conf(cluster_t *c, const char *admin_token, const char *const *coord_extra,
                       const char *nats_conf);
/* One NATS node with JetStream (and the config file nats_conf, or NULL) and nothing else:
 * for tests of a NATS client of ours alone. */
int cluster_start_nats_only(cluster_t *c, const char *nats_conf);
/* kill -9 of NATS node i (it is not restarted); a JetStream cluster of 3 keeps
 * its majority through one such kill, never two. */
void cluster_kill_nats(cluster_t *c, int i);
/* Starts NATS node i again with its store, name and ports; returns once it
 * hosts at least min_streams JetStream streams again and is current in all of
 * them (its /healthz; bounded wait). */
int cluster_restart_nats(cluster_t *c, int i, int min_streams);
/* Waits (up to timeout_ms) until every live NATS node hosts at least
 * min_streams JetStream streams and is current in each, so that one node may
 * die without a stream or KV bucket losing its quorum (a freshly started
 * cluster's replicas are still catching up). 0 when settled, -1 on timeout. */
int cluster_nats_settle(const cluster_t *c, int min_streams, int timeout_ms);
/* Client connections on NATS node i (monitoring /connz), -1 if unknown. */
int cluster_nats_connections(const cluster_t *c, int i);
/* 1 when NATS node i reports a JetStream meta leader (monitoring /jsz). */
int cluster_nats_js_ready(const cluster_t *c, int i);
/* kill -9 of gateway i (it is not restarted). */
void cluster_kill_gateway(cluster_t *c, int i);
/* Stops the coordinator (SIGTERM, or SIGKILL when hard) and starts it again
 * with the same arguments; returns once it is ready. */
int cluster_restart_coordinator(cluster_t *c, int hard);
/* Starts another coordinator "coord-<n+1>" with the same extra arguments and
 * its own admin port; returns its index (1..) or -1. Waits for /healthz only:
 * it becomes ready once the cluster has handed it its shards. */
int cluster_add_coordinator(cluster_t *c);
/* The fault tests' cluster: one NATS node, n_coord coordinators coord-1.. (each with its
 * admin port, all with coord_extra) and two gateways gw-1 and gw-2 (gateway 0 and 1,
 * with gw_extra); both NULL-terminated, coord_extra kept by pointer (restarts use it). Returns 0
 * once both gateways' heartbeats reached coordinator 0, -1 on failure. The coordinators after the
 * first become ready once the cluster has handed them their shards: a test that needs the
 * spread waits for it. */
int cluster_start_coords(cluster_t *c, int n_coord, const char *const *coord_extra,
                         const char *const *gw_extra);
/* PUTs policy_json (with a "topology") for namespace ns on coordinator 0, then waits
 * (bounded) until every live coordinator applies that topology to the namespace: the
 * policy reaches the others over NATS. 0 when all have it, -1 otherwise. */
int cluster_set_policy(cluster_t *c, const char *ns, const char *policy_json);
/* Waits (up to timeout_ms) until the owner of ns, asked through coordinator 0's admin, no
 * longer lists peer: a closed client's leave has arrived and the id may join again (before,
 * a join with it gets ID_TAKEN). 0 when gone, -1 on timeout. */
int cluster_wait_peer_gone(const cluster_t *c, const char *ns, const char *peer, int timeout_ms);
/* The shards coordinator i serves now ("here": "serving" in its /v1/cluster), as a bit set
 * (CLUSTER_SHARDS <= 64); -1 when its admin does not answer. */
int cluster_served_by(const cluster_t *c, int i, uint64_t *set);
/* GET /v1/namespaces/ns asked of coordinator i (it gathers from the owner); NULL if none. */
json_t *cluster_admin_ns(const cluster_t *c, int i, const char *ns);
/* pid and admin port of coordinator i (0 is the first). */
pid_t cluster_coord_pid(const cluster_t *c, int i);
int cluster_coord_admin(const cluster_t *c, int i);
const char *cluster_coord_id(const cluster_t *c, int i);
/* Sends sig to coordinator i and waits for it to exit (it is not restarted). */
void cluster_kill_coordinator(cluster_t *c, int i, int sig);
/* Adds a gateway; extra are more arguments (NULL-terminated). Returns its index
 * once coordinator 0 has heard its heartbeat (so its subscriptions are live),
 * or -1. */
int cluster_add_gateway(cluster_t *c, const char *id, const char *const *extra);
/* The same listening on host ("127.0.0.1", "[::1]", "[::ffff:127.0.0.1]": IPv4 clients of
 * 127.0.0.1 seen as IPv4-mapped IPv6 peers, as on a dual-stack socket). */
int cluster_add_gateway_at(cluster_t *c, const char *id, const char *host,
                           const char *const *extra);
/* Spawns argv with output to log; returns pid or -1. */
pid_t cluster_spawn(cluster_t *c, const char *log_name, char *const argv[]);
int cluster_wait_port(int port, int timeout_ms);
void cluster_kill(pid_t pid, int sig);
void cluster_stop(cluster_t *c);

/* A blocking HTTP/1.0 request to 127.0.0.1:port. Returns the status code and a
 * malloc'd body in *body (may be NULL), or -1. */
int http_request(int port, const char *method, const char *path, const char *token,
                 const char *body, char **resp_body);

#endif
