/* SPDX-License-Identifier: Apache-2.0 */
/* meshsig-loadgen: command line for the WebSocket signaling load generator. */
#include "loadgen.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f)
{
    fprintf(f,
            "usage: meshsig-loadgen --proto meshsig|peerjs --port P [--ports P2,...] --scenario S\n"
            "                       [options]\n"
            "  scenarios: idle, relay, latency, storm\n"
            "  --host A          server IPv4 address (127.0.0.1)\n"
            "  --port2 P         a second gateway: the two clients of every pair (2k, 2k+1)\n"
            "                    are on different ports\n"
            "  --ports P2,P3,..  more gateways after --port: relay and latency pairs span\n"
            "                    two ports each, every ordered pair of ports alike; idle\n"
            "                    and storm clients go round-robin\n"
            "  --clients N       clients to open (1000)\n"
            "  --group K         idle, storm: meshsig clients per namespace <ns><i/K>\n"
            "                    (idle 2; storm: all in --ns)\n"
            "  --namespaces M    with --group: namespace numbers modulo M\n"
            "  --ns-list A,B,..  idle, storm: client i joins the (i mod count)-th of these\n"
            "  --ns NAME         storm: namespace; others: namespace prefix (storm / b)\n"
            "  --base I          global index of the first client: peer ids <prefix><i>,\n"
            "                    namespaces and source addresses count from I (0), so that\n"
            "                    several load generators can fill the same namespaces\n"
            "  --id-prefix S     peer id prefix (p)\n"
            "  --join-rate R     connection attempts started per second at most (no limit)\n"
            "  --window W        connection attempts in flight (512)\n"
            "  --src-addrs K     source addresses 127.0.0.2.. to cycle over (250)\n"
            "  --pids a,b,c      server processes whose RSS and CPU are measured\n"
            "  --settle S        idle: seconds to hold before sampling RSS (3)\n"
            "  --inflight M      relay: messages in flight per pair (8)\n"
            "  --size B          signal frame size in bytes (450)\n"
            "  --rate R          latency: messages per second in total (2000)\n"
            "  --warmup S        seconds before measuring (1)\n"
            "  --duration S      seconds measured (10)\n"
            "  --quiet S         storm: silence that ends the run (1)\n"
            "  --timeout S       bound on each waiting phase (120)\n"
            "  --heartbeat-ms T  client keepalive interval (protocol default; 0 = off)\n"
            "  --degrees FILE    storm: write each client's final degree to FILE\n"
            "  --hold S          keep the clients connected S seconds after the report;\n"
            "                    SIGUSR1 prints a status line (and rewrites --degrees),\n"
            "                    SIGTERM ends the hold early\n"
            "  -v                progress on stderr\n");
}

int main(int argc, char **argv)
{
    int extra[MS_LG_MAX_PORTS], n_extra = 0;
    const char **ns_list = NULL;
    ms_lg_cfg_t cfg = {
        .proto = NULL,
        .scenario = MS_LG_IDLE,
        .host = "127.0.0.1",
        .port = 0,
        .clients = 1000,
        .group = 0,
        .ns = NULL,
        .id_prefix = "p",
        .window = 512,
        .src_addrs = 250,
        .settle_s = 3,
        .inflight = 8,
        .size = 450,
        .rate = 2000,
        .warmup_s = 1,
        .duration_s = 10,
        .quiet_s = 1,
        .timeout_s = 120,
        .heartbeat_ms = -1,
    };
    int have_scenario = 0;
    static const struct option longopts[] = {
        {"proto", required_argument, 0, 'P'},
        {"scenario", required_argument, 0, 'S'},
        {"host", required_argument, 0, 'H'},
        {"port", required_argument, 0, 'p'},
        {"port2", required_argument, 0, 'o'},
        {"ports", required_argument, 0, 1001},
        {"clients", required_argument, 0, 'n'},
        {"group", required_argument, 0, 'g'},
        {"ns", required_argument, 0, 'N'},
        {"window", required_argument, 0, 'w'},
        {"src-addrs", required_argument, 0, 'a'},
        {"pids", required_argument, 0, 'i'},
        {"settle", required_argument, 0, 's'},
        {"inflight", required_argument, 0, 'f'},
        {"size", required_argument, 0, 'b'},
        {"rate", required_argument, 0, 'r'},
        {"warmup", required_argument, 0, 'W'},
        {"duration", required_argument, 0, 'd'},
        {"quiet", required_argument, 0, 'q'},
        {"timeout", required_argument, 0, 't'},
        {"heartbeat-ms", required_argument, 0, 'h'},
        {"degrees", required_argument, 0, 'D'},
        {"hold", required_argument, 0, 'O'},
        {"base", required_argument, 0, 1002},
        {"namespaces", required_argument, 0, 1003},
        {"id-prefix", required_argument, 0, 1004},
        {"join-rate", required_argument, 0, 1005},
        {"ns-list", required_argument, 0, 1006},
        {"help", no_argument, 0, '?'},
        {0, 0, 0, 0},
    };
    int c;
    while ((c = getopt_long(argc, argv, "v", longopts, NULL)) != -1) {
        switch (c) {
        case 'P':
            if (strcmp(optarg, "meshsig") == 0)
                cfg.proto = &ms_lg_proto_meshsig;
            else if (strcmp(optarg, "peerjs") == 0)
                cfg.proto = &ms_lg_proto_peerjs;
            else
                goto bad;
            break;
        case 'S':
            have_scenario = 1;
            if (strcmp(optarg, "idle") == 0)
                cfg.scenario = MS_LG_IDLE;
            else if (strcmp(optarg, "relay") == 0)
                cfg.scenario = MS_LG_RELAY;
            else if (strcmp(optarg, "latency") == 0)
                cfg.scenario = MS_LG_LATENCY;
            else if (strcmp(optarg, "storm") == 0)
                cfg.scenario = MS_LG_STORM;
            else
                goto bad;
            break;
        case 'H':
            cfg.host = optarg;
            break;
        case 'p':
            cfg.port = atoi(optarg);
            break;
        case 'o': { /* --port2 P: the same as --ports with one more */
            int p2 = atoi(optarg);
            if (p2 <= 0 || p2 > 65535 || n_extra >= MS_LG_MAX_PORTS - 1)
                goto bad;
            extra[n_extra++] = p2;
            break;
        }
        case 1001: { /* --ports P1,P2,...: more gateways after --port */
            char *save = NULL, *copy = strdup(optarg);
            for (char *t = copy ? strtok_r(copy, ",", &save) : NULL; t;
                 t = strtok_r(NULL, ",", &save)) {
                int pp = atoi(t);
                if (pp <= 0 || pp > 65535 || n_extra >= MS_LG_MAX_PORTS - 1) {
                    free(copy);
                    goto bad;
                }
                extra[n_extra++] = pp;
            }
            free(copy);
            break;
        }
        case 'n':
            cfg.clients = (uint32_t)strtoul(optarg, NULL, 10);
            break;
        case 'g':
            cfg.group = (uint32_t)strtoul(optarg, NULL, 10);
            break;
        case 'N':
            cfg.ns = optarg;
            break;
        case 'w':
            cfg.window = (uint32_t)strtoul(optarg, NULL, 10);
            break;
        case 'a':
            cfg.src_addrs = (uint32_t)strtoul(optarg, NULL, 10);
            break;
        case 'i':
            if (ms_lg_pids_parse(&cfg.pids, optarg))
                goto bad;
            break;
        case 's':
            cfg.settle_s = atof(optarg);
            break;
        case 'f':
            cfg.inflight = (uint32_t)strtoul(optarg, NULL, 10);
            break;
        case 'b':
            cfg.size = (uint32_t)strtoul(optarg, NULL, 10);
            break;
        case 'r':
            cfg.rate = atof(optarg);
            break;
        case 'W':
            cfg.warmup_s = atof(optarg);
            break;
        case 'd':
            cfg.duration_s = atof(optarg);
            break;
        case 'q':
            cfg.quiet_s = atof(optarg);
            break;
        case 't':
            cfg.timeout_s = atof(optarg);
            break;
        case 'h':
            cfg.heartbeat_ms = strtoll(optarg, NULL, 10);
            break;
        case 'D':
            cfg.degrees = optarg;
            break;
        case 'O':
            cfg.hold_s = atof(optarg);
            break;
        case 'v':
            cfg.verbose = 1;
            break;
        case 1002:
            cfg.base = (uint32_t)strtoul(optarg, NULL, 10);
            break;
        case 1003:
            cfg.namespaces = (uint32_t)strtoul(optarg, NULL, 10);
            break;
        case 1004:
            if (!*optarg || strlen(optarg) > 32)
                goto bad;
            cfg.id_prefix = optarg;
            break;
        case 1005:
            cfg.join_rate = atof(optarg);
            break;
        case 1006: { /* the strings live in argv; only the array is ours (freed at exit) */
            char *save = NULL;
            free(ns_list);
            ns_list = NULL;
            cfg.n_ns_list = 0;
            for (char *t = strtok_r(optarg, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
                if (strlen(t) > 100 || cfg.n_ns_list >= 4096)
                    goto bad;
                const char **grown = realloc(ns_list, (cfg.n_ns_list + 1) * sizeof(*grown));
                if (!grown)
                    goto bad;
                ns_list = grown;
                ns_list[cfg.n_ns_list++] = t;
            }
            cfg.ns_list = ns_list;
            break;
        }
        default:
            goto bad;
        }
    }
    if (!cfg.proto || !have_scenario || cfg.port <= 0 || cfg.port > 65535 || cfg.clients == 0 ||
        cfg.window == 0 || cfg.src_addrs == 0 || cfg.src_addrs > 60000 || cfg.size > 60000 ||
        cfg.base > UINT32_MAX - cfg.clients - 1 || cfg.join_rate < 0)
        goto bad;
    /* Pairs are clients 2k and 2k+1 in one namespace <ns><k>: k counts from an even base. */
    if ((cfg.scenario == MS_LG_RELAY || cfg.scenario == MS_LG_LATENCY) && cfg.base % 2)
        goto bad;
    cfg.ports[0] = cfg.port;
    cfg.n_ports = 1 + n_extra;
    memcpy(cfg.ports + 1, extra, (size_t)n_extra * sizeof(extra[0]));
    if ((cfg.scenario == MS_LG_RELAY || cfg.scenario == MS_LG_LATENCY) && cfg.clients % 2)
        cfg.clients++;
    if (!cfg.ns)
        cfg.ns = cfg.scenario == MS_LG_STORM ? "storm" : "b";
    int rc = ms_lg_run(&cfg);
    free(ns_list);
    return rc;
bad:
    free(ns_list);
    usage(stderr);
    return 2;
}
