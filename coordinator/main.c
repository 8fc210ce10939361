/* SPDX-License-Identifier: Apache-2.0 */
/* meshsig-coordinator: flags and environment into a config, then run. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <nats/nats.h>

#include "coordinator.h"
#include "log.h"
#include "opts.h"
#include "renewal.h"

int main(int argc, char **argv)
{
    ms_coord_config_t cfg = {
        .nats_urls = "nats://127.0.0.1:4222",
        .prefix = "meshsig",
        .shards = 64,
        .admin_listen = "127.0.0.1:8081",
        .admin_max_conns = 64,
        .admin_request_timeout_ms = 10000,
        .resume_grace_ms = 10000,
        .gateway_timeout_ms = 3000,
        .offline_max_msgs = 100,
        .offline_max_age_s = 86400,
        .lease_ttl_ms = 1200,
        .lease_renew_phases = 1, /* one batch per third of the lease: renewal.h says why */
        .coord_heartbeat_ms = 250,
        .coord_timeout_ms = 1000,
        .resync_timeout_ms = 400,
        .js_replicas = 1,
        .backend_timeout_ms = 3000,
        .max_peers = 100000,
        .max_namespaces = 100000,
        .max_streams = 256,
        .admin_view_max_peers = 2000,
    };
    const char *log_level = "info";
    int log_json = 0;
    const ms_opt_t opts[] = {
        {"nats", MS_OPT_STR, &cfg.nats_urls, "NATS server URLs, comma-separated"},
        {"nats-user", MS_OPT_STR, &cfg.nats_auth.user,
         "NATS user (with --nats-password; README \"NATS authorisation\")"},
        {"nats-password", MS_OPT_STR, &cfg.nats_auth.password,
         "NATS password; use MESHSIG_NATS_PASSWORD"},
        {"nats-token", MS_OPT_STR, &cfg.nats_auth.token, "NATS token; use MESHSIG_NATS_TOKEN"},
        {"nats-creds", MS_OPT_STR, &cfg.nats_auth.creds,
         "NATS credentials file (user JWT and NKey seed, nsc)"},
        {"id", MS_OPT_STR, &cfg.id, "coordinator id (default coord-<host>-<pid>)"},
        {"prefix", MS_OPT_STR, &cfg.prefix, "NATS subject prefix"},
        {"shards", MS_OPT_INT, &cfg.shards, "shard count S, the same on every node"},
        {"admin-listen", MS_OPT_STR, &cfg.admin_listen, "admin endpoint HOST:PORT"},
        {"admin-token", MS_OPT_STR, &cfg.admin_token, "bearer token for the admin API"},
        {"admin-cors", MS_OPT_STR, &cfg.admin_cors,
         "Access-Control-Allow-Origin for the admin API (insecure dev: *)"},
        {"admin-max-connections", MS_OPT_INT, &cfg.admin_max_conns,
         "connections open at once on the admin port; one more is closed unanswered"},
        {"admin-request-timeout-ms", MS_OPT_INT, &cfg.admin_request_timeout_ms,
         "an admin request must arrive whole and be answered within this of its connection "
         "being ready for it, or the connection is closed"},
        {"resume-grace-ms", MS_OPT_INT, &cfg.resume_grace_ms,
         "peers of a failed gateway keep their place this long, to resume elsewhere"},
        {"gateway-timeout-ms", MS_OPT_INT, &cfg.gateway_timeout_ms,
         "a gateway without heartbeat this long is dead"},
        {"offline-max-msgs", MS_OPT_INT, &cfg.offline_max_msgs,
         "persistent emits kept per absent peer (oldest dropped first)"},
        {"offline-max-age-s", MS_OPT_INT, &cfg.offline_max_age_s,
         "how long persistent emits are kept"},
        {"lease-ttl-ms", MS_OPT_INT, &cfg.lease_ttl_ms,
         "shard lease duration; renewed every third of it, given up after two thirds"},
        {"lease-renew-phases", MS_OPT_INT, &cfg.lease_renew_phases,
         "renewals spread over at most this many batches per third of the lease (default 1: "
         "all shards in one batch; up to 64)"},
        {"coord-heartbeat-ms", MS_OPT_INT, &cfg.coord_heartbeat_ms,
         "how often a coordinator announces itself to the others"},
        {"coord-timeout-ms", MS_OPT_INT, &cfg.coord_timeout_ms,
         "a coordinator without heartbeat this long is dead; its shards move"},
        {"resync-timeout-ms", MS_OPT_INT, &cfg.resync_timeout_ms,
         "a new shard owner waits this long at most for the gateways' session reports"},
        {"js-replicas", MS_OPT_INT, &cfg.js_replicas,
         "JetStream replicas of the lease and policy buckets and the offline stream "
         "(3 on a 3-node NATS cluster survives the loss of a node)"},
        {"backend-timeout-ms", MS_OPT_INT, &cfg.backend_timeout_ms,
         "a backend that sent no attach (its heartbeat) this long is withdrawn; backends are "
         "told to send one every third of it (README \"Backends\")"},
        {"max-peers", MS_OPT_INT, &cfg.max_peers,
         "peers in one namespace (a policy's cap may be lower); more get NAMESPACE_FULL"},
        {"max-namespaces", MS_OPT_INT, &cfg.max_namespaces,
         "namespaces in the whole cluster; a hello that would open one more gets LIMIT_REACHED"},
        {"max-streams", MS_OPT_INT, &cfg.max_streams,
         "streams one peer may have opened and not closed; more get LIMIT_REACHED"},
        {"admin-view-max-peers", MS_OPT_INT, &cfg.admin_view_max_peers,
         "peers one admin namespace view lists (and 8x as many edges); a larger namespace is "
         "shown in part, with \"truncated\": true and its full counts in stats"},
        {"policy-file", MS_OPT_STR, &cfg.policy_file,
         "namespace policy rules, YAML or JSON (README \"Policy file\"); reloaded on SIGHUP"},
        {"insecure-dev", MS_OPT_BOOL, &cfg.insecure_dev,
         "no admin token; listen on loopback only. Never in production"},
        {"log-level", MS_OPT_STR, &log_level, "debug, info, warn or error"},
        {"log-json", MS_OPT_BOOL, &log_json, "log JSON lines instead of text"},
        {0},
    };
    ms_err_t err = ms_opts_parse(opts, argc, argv,
                                 "The meshsig coordinator: owns namespaces, runs their "
                                 "topologies, routes signals, serves the admin API.");
    if (err == MS_ERR_STATE)
        return 0;
    if (err != MS_OK)
        return 2;
    int lvl = ms_log_level_parse(log_level);
    ms_log_init("coordinator", lvl < 0 ? MS_LOG_INFO : (ms_log_level_t)lvl, log_json);
    char why[128];
    if (ms_nats_auth_check(&cfg.nats_auth, why, sizeof(why)) != MS_OK) {
        ms_error("%s", why);
        return 2;
    }
    if (cfg.shards < 1 || cfg.shards > 65536) {
        ms_error("--shards must be 1..65536");
        return 2;
    }
    if (cfg.lease_ttl_ms < 300 || cfg.coord_heartbeat_ms < 10 ||
        cfg.coord_timeout_ms <= cfg.coord_heartbeat_ms || cfg.resync_timeout_ms < 0) {
        ms_error("--lease-ttl-ms must be >= 300 and --coord-timeout-ms above "
                 "--coord-heartbeat-ms");
        return 2;
    }
    if (cfg.lease_renew_phases < 1 || cfg.lease_renew_phases > 64) {
        ms_error("--lease-renew-phases must be 1..64");
        return 2;
    }
    if (cfg.backend_timeout_ms < 300 || cfg.backend_timeout_ms > 3600000) {
        ms_error("--backend-timeout-ms must be 300..3600000");
        return 2;
    }
    if (cfg.max_peers < 1 || cfg.max_peers > 100000000 || cfg.max_namespaces < 1 ||
        cfg.max_namespaces > 100000000 || cfg.max_streams < 1 || cfg.max_streams > 1000000) {
        ms_error("--max-peers, --max-namespaces or --max-streams is out of range (see --help)");
        return 2;
    }
    if (cfg.admin_max_conns < 1 || cfg.admin_max_conns > 100000 ||
        cfg.admin_request_timeout_ms < 100 || cfg.admin_request_timeout_ms > 3600000) {
        ms_error("--admin-max-connections must be 1..100000 and --admin-request-timeout-ms "
                 "100..3600000");
        return 2;
    }
    if (cfg.admin_view_max_peers < 1 || cfg.admin_view_max_peers > 1000000) {
        ms_error("--admin-view-max-peers must be 1..1000000");
        return 2;
    }
    if (cfg.js_replicas < 1 || cfg.js_replicas > 5) {
        ms_error("--js-replicas must be 1..5 (JetStream's limit)");
        return 2;
    }
    char host[128];
    int port, v6;
    if (ms_opts_hostport(cfg.admin_listen, host, sizeof(host), &port, &v6) != MS_OK) {
        ms_error("--admin-listen must be HOST:PORT (an IPv6 address in brackets: [::1]:8081), "
                 "got '%s'",
                 cfg.admin_listen);
        return 2;
    }
    if (cfg.insecure_dev) {
        ms_warn("INSECURE DEV MODE: the admin API needs no token. Never run this in production.");
        if (!ms_opts_loopback(cfg.admin_listen)) {
            ms_error("--insecure-dev binds to loopback only; --admin-listen %s is not loopback",
                     cfg.admin_listen);
            return 2;
        }
        if (!cfg.admin_cors)
            cfg.admin_cors = "*";
    } else if (!cfg.admin_token || !*cfg.admin_token) {
        ms_error("--admin-token (MESHSIG_ADMIN_TOKEN) is required unless --insecure-dev");
        return 2;
    }
    ms_coord_t *c = NULL;
    if ((err = ms_coord_create(&cfg, &c)) != MS_OK) {
        ms_error("cannot start: %s", ms_err_str(err));
        return 1;
    }
    err = ms_coord_run(c);
    ms_coord_destroy(c);
    nats_Close();
    ms_info("stopped");
    return err == MS_OK ? 0 : 1;
}
