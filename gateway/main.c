/* SPDX-License-Identifier: Apache-2.0 */
/* meshsig-gateway: flags and environment into a config, then serve. */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <nats/nats.h>

#include "gateway.h"
#include "log.h"
#include "opts.h"

static ms_gateway_t *running;

static void on_signal(int sig)
{
    (void)sig;
    if (running)
        ms_gw_stop(running);
}

int main(int argc, char **argv)
{
    ms_gw_config_t cfg = {
        .listen = "127.0.0.1:8080",
        .nats_urls = "nats://127.0.0.1:4222",
        .prefix = "meshsig",
        .shards = 64,
        .jwt_alg = "HS256",
        .jwt_leeway_s = 30,
        .max_frame = 64 * 1024,
        .max_queue = 1024 * 1024,
        .rate_msgs = 200,
        .rate_bytes = 1024 * 1024,
        .hello_timeout_ms = 10000,
        .join_timeout_ms = 5000,
        .max_handshakes = 128,
        .handshake_timeout_s = 5,
        .max_sessions = 100000,
        .max_hs_per_ip = -1, /* a quarter of --max-handshakes */
        .max_sessions_per_ip = 500,
        .per_ip_exempt = "127.0.0.0/8,::1",
        .max_rooms = 256,
        .max_services = 64,
        .max_subscriptions = 256,
        .rx_buffer = 2028, /* + lws's 20 bytes of headroom: half a 4 KiB page */
        .rx_release_ms = 500,
        .direct_batch_max = 256 * 1024,
        .idle_ping_ms = 30000,
        .idle_timeout_ms = 70000,
        .drain_ms = 10000,
        .nats_lost_ms = 1000,
        .resume_ttl_s = 3600,
        .turn_ttl_s = 3600,
        .event_lib = "auto",
        .peerjs_path = "/",
        .peerjs_keys = "peerjs",
    };
    const char *log_level = "info";
    int log_json = 0;
    const ms_opt_t opts[] = {
        {"listen", MS_OPT_STR, &cfg.listen, "WebSocket and HTTP HOST:PORT"},
        {"nats", MS_OPT_STR, &cfg.nats_urls, "NATS server URLs, comma-separated"},
        {"nats-user", MS_OPT_STR, &cfg.nats_auth.user,
         "NATS user (with --nats-password; README \"NATS authorisation\")"},
        {"nats-password", MS_OPT_STR, &cfg.nats_auth.password,
         "NATS password; use MESHSIG_NATS_PASSWORD"},
        {"nats-token", MS_OPT_STR, &cfg.nats_auth.token, "NATS token; use MESHSIG_NATS_TOKEN"},
        {"nats-creds", MS_OPT_STR, &cfg.nats_auth.creds,
         "NATS credentials file (user JWT and NKey seed, nsc)"},
        {"id", MS_OPT_STR, &cfg.id, "gateway id (default gw-<host>-<pid>)"},
        {"prefix", MS_OPT_STR, &cfg.prefix, "NATS subject prefix"},
        {"shards", MS_OPT_INT, &cfg.shards, "shard count S, the same on every node"},
        {"jwt-secret", MS_OPT_STR, &cfg.jwt_secret, "HS256 secret for hello tokens"},
        {"jwt-alg", MS_OPT_STR, &cfg.jwt_alg, "HS256, RS256 or ES256"},
        {"jwt-key-file", MS_OPT_STR, &cfg.jwt_key_file, "public key (PEM) for RS256/ES256"},
        {"jwt-jwks-file", MS_OPT_STR, &cfg.jwt_jwks_file,
         "JWK Set file of more keys (oct/RSA/EC), picked by the token's kid: key rotation"},
        {"jwt-issuer", MS_OPT_STR, &cfg.jwt_issuer, "required iss claim (default: not checked)"},
        {"jwt-audience", MS_OPT_STR, &cfg.jwt_audience,
         "required aud claim (default: not checked)"},
        {"jwt-leeway-s", MS_OPT_INT, &cfg.jwt_leeway_s,
         "clock skew allowed for exp and nbf, seconds (0 to 86400)"},
        {"origins", MS_OPT_STR, &cfg.origins,
         "allowed Origin values, comma-separated (default any)"},
        {"static-dir", MS_OPT_STR, &cfg.static_dir, "directory served at / (the demo page)"},
        {"peerjs-path", MS_OPT_STR, &cfg.peerjs_path,
         "PeerJS server protocol under this path (the PeerJS client's `path` option)"},
        {"peerjs-keys", MS_OPT_STR, &cfg.peerjs_keys,
         "PeerJS keys accepted, comma-separated (namespace peerjs.<key>); empty: no PeerJS"},
        {"peerjs-discovery", MS_OPT_BOOL, &cfg.peerjs_discovery,
         "GET <path><key>/peers lists every peer id of the key, cluster-wide, to anyone"},
        {"max-frame", MS_OPT_INT, &cfg.max_frame,
         "largest client message in bytes (at most 64 MiB)"},
        {"max-queue", MS_OPT_INT, &cfg.max_queue,
         "bytes queued to one client before it is closed (at most 1 GiB)"},
        {"rate-msgs", MS_OPT_INT, &cfg.rate_msgs, "messages per second per session (burst 2x)"},
        {"rate-bytes", MS_OPT_INT, &cfg.rate_bytes, "bytes per second per session (burst 2x)"},
        {"hello-timeout-ms", MS_OPT_INT, &cfg.hello_timeout_ms, "time allowed before hello"},
        {"join-timeout-ms", MS_OPT_INT, &cfg.join_timeout_ms, "time to wait for a join answer"},
        {"rx-buffer", MS_OPT_INT, &cfg.rx_buffer,
         "receive buffer per connection in bytes (256 to 65536): memory against reads"},
        {"rx-release-ms", MS_OPT_INT, &cfg.rx_release_ms,
         "hand a connection's receive buffer back to the kernel after it was quiet this long "
         "(0: never; at most 3600000)"},
        {"direct-batch-max", MS_OPT_INT, &cfg.direct_batch_max,
         "most bytes of direct signals in one NATS message to another gateway (1024 to 1 MiB; "
         "also kept under the server's max_payload)"},
        {"max-handshakes", MS_OPT_INT, &cfg.max_handshakes,
         "WebSocket handshakes in progress at once; more wait (1 to 10000)"},
        {"handshake-timeout-s", MS_OPT_INT, &cfg.handshake_timeout_s,
         "a connection without a complete WebSocket handshake this long is closed (1 to 60)"},
        {"max-sessions", MS_OPT_INT, &cfg.max_sessions,
         "WebSocket sessions at once; more are closed with 1013 (try again later)"},
        {"max-handshakes-per-ip", MS_OPT_INT, &cfg.max_hs_per_ip,
         "connections from one client address (IPv6: one /64) that are not yet WebSocket "
         "sessions, at once; more are refused at accept; 0: no cap (default a quarter of "
         "--max-handshakes, 32)"},
        {"max-sessions-per-ip", MS_OPT_INT, &cfg.max_sessions_per_ip,
         "WebSocket sessions from one client address (IPv6: one /64); more are closed with "
         "1013 (0: no cap)"},
        {"per-ip-exempt", MS_OPT_STR, &cfg.per_ip_exempt,
         "client addresses never counted per address, CIDR[,CIDR...] (\"\": none)"},
        {"trusted-proxies", MS_OPT_STR, &cfg.trusted_proxies,
         "proxies (CIDR[,CIDR...]) whose last X-Forwarded-For address is the client's for "
         "--max-sessions-per-ip; their own connections are not counted"},
        {"max-rooms", MS_OPT_INT, &cfg.max_rooms, "rooms one session may be in at once"},
        {"max-services", MS_OPT_INT, &cfg.max_services, "services one session may provide at once"},
        {"max-subscriptions", MS_OPT_INT, &cfg.max_subscriptions,
         "topic patterns one session may subscribe to at once"},
        {"idle-ping-ms", MS_OPT_INT, &cfg.idle_ping_ms, "ping a client silent this long"},
        {"idle-timeout-ms", MS_OPT_INT, &cfg.idle_timeout_ms,
         "drop a client silent this long (its ping unanswered)"},
        {"drain-ms", MS_OPT_INT, &cfg.drain_ms,
         "on SIGTERM, time clients get to reconnect elsewhere"},
        {"nats-lost-ms", MS_OPT_INT, &cfg.nats_lost_ms,
         "NATS unreachable this long: clients are told to reconnect to another gateway"},
        {"resume-secret", MS_OPT_STR, &cfg.resume_secret,
         "key for resume tokens, the same on every gateway (default: derived from --jwt-secret)"},
        {"resume-ttl-s", MS_OPT_INT, &cfg.resume_ttl_s, "lifetime of a resume token"},
        {"stun-urls", MS_OPT_STR, &cfg.stun_urls,
         "STUN servers handed to clients in the welcome, comma-separated (stun:host:3478)"},
        {"turn-urls", MS_OPT_STR, &cfg.turn_urls,
         "TURN servers handed to clients with per-session credentials, comma-separated "
         "(turn:host:3478?transport=udp); needs --turn-secret"},
        {"turn-secret", MS_OPT_STR, &cfg.turn_secret,
         "the TURN server's shared secret (coturn static-auth-secret); use MESHSIG_TURN_SECRET"},
        {"turn-ttl-s", MS_OPT_INT, &cfg.turn_ttl_s,
         "lifetime of a TURN credential; fresh ones are sent when 80% of it is gone"},
        {"insecure-dev", MS_OPT_BOOL, &cfg.insecure_dev,
         "accept hellos without a token; loopback only. Never in production"},
        {"event-lib", MS_OPT_STR, &cfg.event_lib,
         "event loop: libev (epoll), poll, or auto = libev, else poll with a warning"},
        {"log-level", MS_OPT_STR, &log_level, "debug, info, warn or error"},
        {"log-json", MS_OPT_BOOL, &log_json, "log JSON lines instead of text"},
        {0},
    };
    ms_err_t err = ms_opts_parse(opts, argc, argv,
                                 "The meshsig gateway: client WebSockets at /ws, bridged to "
                                 "the coordinators over NATS.");
    if (err == MS_ERR_STATE)
        return 0;
    if (err != MS_OK)
        return 2;
    int lvl = ms_log_level_parse(log_level);
    ms_log_init("gateway", lvl < 0 ? MS_LOG_INFO : (ms_log_level_t)lvl, log_json);
    char why[128];
    if (ms_nats_auth_check(&cfg.nats_auth, why, sizeof(why)) != MS_OK) {
        ms_error("%s", why);
        return 2;
    }
    if (cfg.shards < 1 || cfg.shards > 65536 || cfg.max_frame < 1024 ||
        cfg.max_frame > (64L << 20) || cfg.max_queue < 4096 || cfg.max_queue > (1L << 30) ||
        cfg.max_handshakes < 1 || cfg.max_handshakes > 10000 || cfg.handshake_timeout_s < 1 ||
        cfg.handshake_timeout_s > 60 || cfg.max_sessions < 1 || cfg.max_rooms < 1 ||
        cfg.max_services < 1 || cfg.max_subscriptions < 1 || cfg.max_sessions > 10000000 ||
        cfg.max_rooms > 1000000 || cfg.max_services > 1000000 || cfg.max_subscriptions > 1000000 ||
        cfg.rx_buffer < 256 || cfg.rx_buffer > 65536 || cfg.rx_release_ms < 0 ||
        cfg.rx_release_ms > 3600000 || cfg.rate_msgs < 1 || cfg.direct_batch_max < 1024 ||
        cfg.direct_batch_max > (1L << 20) || cfg.rate_bytes < 1024 || cfg.jwt_leeway_s < 0 ||
        cfg.jwt_leeway_s > 86400) {
        ms_error("a limit is out of range (see --help)");
        return 2;
    }
    if (cfg.max_hs_per_ip < -1 || cfg.max_hs_per_ip > 10000 || cfg.max_sessions_per_ip < 0 ||
        cfg.max_sessions_per_ip > 10000000) {
        ms_error("--max-handshakes-per-ip or --max-sessions-per-ip is out of range (see --help)");
        return 2;
    }
    char host[128];
    int port, v6;
    if (ms_opts_hostport(cfg.listen, host, sizeof(host), &port, &v6) != MS_OK) {
        ms_error("--listen must be HOST:PORT (an IPv6 address in brackets: [::1]:8080), got '%s'",
                 cfg.listen);
        return 2;
    }
    if (cfg.max_hs_per_ip < 0)
        cfg.max_hs_per_ip = cfg.max_handshakes >= 4 ? cfg.max_handshakes / 4 : 1;
    if (cfg.insecure_dev) {
        ms_warn("INSECURE DEV MODE: hellos need no token and peers pick their own ids. Never "
                "run this in production.");
        if (!ms_opts_loopback(cfg.listen)) {
            ms_error("--insecure-dev binds to loopback only; --listen %s is not loopback",
                     cfg.listen);
            return 2;
        }
    } else if (!(cfg.jwt_secret && *cfg.jwt_secret) && !(cfg.jwt_key_file && *cfg.jwt_key_file) &&
               !(cfg.jwt_jwks_file && *cfg.jwt_jwks_file)) {
        ms_error(
            "--jwt-secret, --jwt-key-file or --jwt-jwks-file is required unless --insecure-dev");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    ms_gateway_t *gw = NULL;
    if ((err = ms_gw_create(&cfg, &gw)) != MS_OK) {
        ms_error("cannot start: %s", ms_err_str(err));
        return 1;
    }
    running = gw;
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    err = ms_gw_run(gw);
    running = NULL;
    ms_gw_destroy(gw);
    nats_Close();
    ms_info("stopped");
    return err == MS_OK ? 0 : 1;
}
