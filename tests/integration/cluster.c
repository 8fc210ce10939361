/* SPDX-License-Identifier: Apache-2.0 */
/* Starts real nats-server, coordinator and gateway processes on free loopback ports for tests. */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <jansson.h>

#include "cluster.h"

long long cluster_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

uint32_t cluster_shard_of(const char *ns)
{
    /* Written out rather than taken from common/: the test checks the product's
     * mapping against DESIGN.md §2, not against itself. */
    uint64_t h = 0xcbf29ce484222325ULL;
    for (const unsigned char *p = (const unsigned char *)ns; *p; p++) {
        h ^= *p;
        h *= 0x100000001b3ULL;
    }
    return (uint32_t)(h % CLUSTER_SHARDS);
}

int cluster_free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = 0};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t al = sizeof(a);
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) ||
        getsockname(fd, (struct sockaddr *)&a, &al)) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    close(fd);
    return ntohs(a.sin_port);
}

const char *cluster_bin(const char *rel, char *buf, size_t cap)
{
    const char *dir = getenv("MESHSIG_BUILD_DIR");
    snprintf(buf, cap, "%s/%s", dir && *dir ? dir : ".", rel);
    return buf;
}

/* A TCP connection to host ("127.0.0.1", "[::1]", ...; NULL: 127.0.0.1) and port, or -1. */
static int connect_host(const char *host, int port)
{
    char h[64];
    size_t n = host ? strlen(host) : 0;
    if (n >= 2 && host[0] == '[' && host[n - 1] == ']' && n - 2 < sizeof(h)) {
        memcpy(h, host + 1, n - 2);
        h[n - 2] = '\0';
    } else {
        snprintf(h, sizeof(h), "%s", host ? host : "127.0.0.1");
    }
    struct sockaddr_in a4 = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    struct sockaddr_in6 a6 = {.sin6_family = AF_INET6, .sin6_port = htons((uint16_t)port)};
    int v6 = strchr(h, ':') != NULL;
    if (inet_pton(v6 ? AF_INET6 : AF_INET, h, v6 ? (void *)&a6.sin6_addr : (void *)&a4.sin_addr) !=
        1)
        return -1;
    int fd = socket(v6 ? AF_INET6 : AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    if (connect(fd, v6 ? (struct sockaddr *)&a6 : (struct sockaddr *)&a4,
                v6 ? sizeof(a6) : sizeof(a4)) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static int connect_port(int port)
{
    return connect_host(NULL, port);
}

static int wait_host_port(const char *host, int port, int timeout_ms)
{
    long long end = cluster_now_ms() + timeout_ms;
    while (cluster_now_ms() < end) {
        int fd = connect_host(host, port);
        if (fd >= 0) {
            close(fd);
            return 0;
        }
        usleep(20000);
    }
    return -1;
}

int cluster_wait_port(int port, int timeout_ms)
{
    return wait_host_port(NULL, port, timeout_ms);
}

pid_t cluster_spawn(cluster_t *c, const char *log_name, char *const argv[])
{
    char log[512];
    snprintf(log, sizeof(log), "%s/%s.log", c->dir, log_name);
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(127);
        int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
            close(fd);
        }
        execv(argv[0], argv);
        fprintf(stderr, "exec %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    return pid;
}

/* Gone or a zombie: /proc says so even for a process that is not our child
 * (Check runs tests in a fork of the process that started the servers). */
static int exited(pid_t pid)
{
    char path[64], buf[256];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return 1;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *rp = strrchr(buf, ')');
    return !rp || rp[1] == '\0' || rp[2] == 'Z' || rp[2] == 'X';
}

void cluster_kill(pid_t pid, int sig)
{
    if (pid <= 0)
        return;
    kill(pid, sig);
    long long end = cluster_now_ms() + 5000;
    while (cluster_now_ms() < end) {
        pid_t r = waitpid(pid, NULL, WNOHANG);
        if (r == pid || (r < 0 && errno == ECHILD && exited(pid)))
            return;
        usleep(5000);
    }
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
}

/* Debian installs nats-server in /usr/sbin, which is not on every PATH. */
static const char *nats_server_path(void)
{
    static const char *const candidates[] = {"/usr/sbin/nats-server", "/usr/bin/nats-server",
                                             "/usr/local/bin/nats-server", NULL};
    const char *env = getenv("MESHSIG_NATS_SERVER");
    if (env && *env)
        return env;
    for (int i = 0; candidates[i]; i++)
        if (access(candidates[i], X_OK) == 0)
            return candidates[i];
    return "/usr/sbin/nats-server";
}

static int start_coordinator(cluster_t *c);

int cluster_start(cluster_t *c, const char *admin_token)
{
    return cluster_start_args(c, admin_token, NULL);
}

void cluster_kill_gateway(cluster_t *c, int i)
{
    cluster_kill(c->gw[i], SIGKILL);
    c->gw[i] = -1;
}

int cluster_start_args(cluster_t *c, const char *admin_token, const char *const *coord_extra)
{
    return cluster_start_nats(c, admin_token, coord_extra, 1);
}

/* A free port not already handed to this cluster's NATS nodes: two calls in a
 * row may get the same ephemeral port back, since nothing holds it. */
static int fresh_port(const cluster_t *c, int n_taken_nodes, int extra_taken)
{
    for (int tries = 0; tries < 50; tries++) {
        int p = cluster_free_port(), dup = p == extra_taken;
        for (int i = 0; i < n_taken_nodes && !dup; i++)
            dup = p == c->nats_cport[i] || p == c->nats_rport[i] || p == c->nats_mport[i];
        if (p > 0 && !dup)
            return p;
    }
    return -1;
}

/* Node i of n: alone, as before (no monitoring port, store <dir>/js); in a
 * cluster with its own server name, store, route and monitoring ports. */
static pid_t spawn_nats(cluster_t *c, int i, int n)
{
    char cport[16], mport[16], name[16], store[300], cluster_url[64], log[16];
    char routes[CLUSTER_MAX_NATS * 40] = "";
    snprintf(cport, sizeof(cport), "%d", c->nats_cport[i]);
    snprintf(mport, sizeof(mport), "%d", c->nats_mport[i]);
    snprintf(name, sizeof(name), "nats-%d", i);
    snprintf(store, sizeof(store), n == 1 ? "%s/js" : "%s/js-%d", c->dir, i);
    snprintf(cluster_url, sizeof(cluster_url), "nats://127.0.0.1:%d", c->nats_rport[i]);
    snprintf(log, sizeof(log), n == 1 ? "nats" : "nats-%d", i);
    for (int k = 0; k < n; k++) {
        size_t len = strlen(routes);
        if (k != i)
            snprintf(routes + len, sizeof(routes) - len, "%snats://127.0.0.1:%d", len ? "," : "",
                     c->nats_rport[k]);
    }
    char *argv[] = {(char *)nats_server_path(),
                    "-a",
                    "127.0.0.1",
                    "-p",
                    cport,
                    "-js",
                    "-sd",
                    store,
                    "-n",
                    name,
                    "-m",
                    mport,
                    "--cluster_name",
                    "meshsig-test",
                    "--cluster",
                    cluster_url,
                    "--routes",
                    routes,
                    NULL,
                    NULL,
                    NULL};
    int end = n == 1 ? 8 : 18;
    if (c->nats_conf) {
        argv[end++] = "-c";
        argv[end++] = (char *)c->nats_conf;
    }
    argv[end] = NULL;
    return cluster_spawn(c, log, argv);
}

int cluster_nats_js_ready(const cluster_t *c, int i)
{
    char *body = NULL;
    int ok = 0;
    if (http_request(c->nats_mport[i], "GET", "/jsz", NULL, NULL, &body) == 200 && body) {
        /* "leader": "nats-1" once the meta group has elected one; empty or absent before. */
        const char *p = strstr(body, "\"leader\"");
        if (p && (p = strchr(p + 8, ':'))) {
            p++;
            while (*p == ' ' || *p == '\t')
                p++;
            ok = p[0] == '"' && p[1] && p[1] != '"';
        }
    }
    free(body);
    return ok;
}

static int start_all(cluster_t *c, const char *admin_token, const char *const *coord_extra,
                     int n_nats, const char *nats_conf, int coordinator);

int cluster_start_nats(cluster_t *c, const char *admin_token, const char *const *coord_extra,
                       int n_nats)
{
    return start_all(c, admin_token, coord_extra, n_nats, NULL, 1);
}

int cluster_start_conf(cluster_t *c, const char *admin_token, const char *const *coord_extra,
                       const char *nats_conf)
{
    return start_all(c, admin_token, coord_extra, 1, nats_conf, 1);
}

int cluster_start_nats_only(cluster_t *c, const char *nats_conf)
{
    return start_all(c, NULL, NULL, 1, nats_conf, 0);
}

static int start_all(cluster_t *c, const char *admin_token, const char *const *coord_extra,
                     int n_nats, const char *nats_conf, int coordinator)
{
    memset(c, 0, sizeof(*c));
    c->nats_conf = nats_conf;
    c->admin_token = admin_token;
    c->coord_extra = coord_extra;
    if (n_nats != 1 && n_nats != CLUSTER_MAX_NATS)
        return -1;
    c->n_nats = n_nats;
    snprintf(c->dir, sizeof(c->dir), "/tmp/meshsig-test-XXXXXX");
    if (!mkdtemp(c->dir))
        return -1;
    for (int i = 0; i < n_nats; i++) {
        if ((c->nats_cport[i] = fresh_port(c, i, 0)) < 0 ||
            (c->nats_rport[i] = fresh_port(c, i, c->nats_cport[i])) < 0)
            return -1;
        c->nats_mport[i] = -1;
        if (n_nats > 1 && (c->nats_mport[i] = fresh_port(c, i + 1, 0)) < 0)
            return -1;
        size_t len = strlen(c->nats_urls);
        snprintf(c->nats_urls + len, sizeof(c->nats_urls) - len, "%snats://127.0.0.1:%d",
                 i ? "," : "", c->nats_cport[i]);
    }
    c->nats_port = c->nats_cport[0];
    if ((c->admin_port = fresh_port(c, n_nats, 0)) < 0)
        return -1;
    for (int i = 0; i < n_nats; i++)
        if ((c->nats_pid[i] = spawn_nats(c, i, n_nats)) < 0)
            return -1;
    c->nats = c->nats_pid[0];
    for (int i = 0; i < n_nats; i++)
        if (cluster_wait_port(c->nats_cport[i], 10000))
            return -1;
    if (n_nats > 1) {
        /* Streams and buckets cannot be created before the meta leader exists;
         * a coordinator would only retry, but its readiness wait is bounded. */
        long long end = cluster_now_ms() + 20000;
        int ready = 0;
        while (!ready && cluster_now_ms() < end) {
            ready = 1;
            for (int i = 0; i < n_nats && ready; i++)
                ready = cluster_nats_js_ready(c, i);
            if (!ready)
                usleep(50000);
        }
        if (!ready)
            return -1;
    }
    return coordinator ? start_coordinator(c) : 0;
}

/* An integer field of a NATS monitoring endpoint ("streams": 3), -1 if absent. */
static long nats_monitor_int(const cluster_t *c, int i, const char *path, const char *field)
{
    char *body = NULL, key[64];
    long v = -1;
    snprintf(key, sizeof(key), "\"%s\"", field);
    if (http_request(c->nats_mport[i], "GET", path, NULL, NULL, &body) == 200 && body) {
        const char *p = strstr(body, key);
        if (p && (p = strchr(p + strlen(key), ':')))
            v = strtol(p + 1, NULL, 10);
    }
    free(body);
    return v;
}

int cluster_nats_connections(const cluster_t *c, int i)
{
    return c->nats_pid[i] > 0 ? (int)nats_monitor_int(c, i, "/connz", "num_connections") : -1;
}

/* Node i in the meta group, hosting at least min_streams streams and current
 * in each (/healthz: 503 while a stream or the meta group catches up): only
 * then may another node die without a stream losing its majority. Hosting is
 * not enough: a replica still catching up does not count for a quorum. */
static int nats_settled(const cluster_t *c, int i, int min_streams)
{
    return c->n_nats == 1 ||
           (cluster_nats_js_ready(c, i) &&
            nats_monitor_int(c, i, "/jsz", "streams") >= min_streams &&
            http_request(c->nats_mport[i], "GET", "/healthz", NULL, NULL, NULL) == 200);
}

int cluster_restart_nats(cluster_t *c, int i, int min_streams)
{
    if (i < 0 || i >= c->n_nats || c->nats_pid[i] > 0)
        return -1;
    if ((c->nats_pid[i] = spawn_nats(c, i, c->n_nats)) < 0)
        return -1;
    if (i == 0)
        c->nats = c->nats_pid[i];
    if (cluster_wait_port(c->nats_cport[i], 10000))
        return -1;
    return cluster_nats_settle(c, min_streams, 30000);
}

/* Streams led by node i (named nats-<i>) whose every other replica the leader
 * sees as current, or -1 when node i's /jsz is not readable. A follower's own
 * /healthz can pass before the leader counts it: a freshly created stream
 * whose leader died then had no quorum (KV_meshsig_shards never elected a
 * new leader in 30 s, and every lease was lost). */
static int nats_led_current(const cluster_t *c, int i, int replicas)
{
    char *body = NULL, name[16];
    snprintf(name, sizeof(name), "nats-%d", i);
    if (http_request(c->nats_mport[i], "GET", "/jsz?streams=true", NULL, NULL, &body) != 200 ||
        !body) {
        free(body);
        return -1;
    }
    /* Its limits are uint64 (18446744073709551615): read as reals. */
    json_t *root = json_loads(body, JSON_DECODE_INT_AS_REAL, NULL);
    free(body);
    int n = 0;
    json_t *acc, *st;
    size_t ai, si;
    json_array_foreach(json_object_get(root, "account_details"), ai, acc)
    {
        json_array_foreach(json_object_get(acc, "stream_detail"), si, st)
        {
            json_t *cl = json_object_get(st, "cluster");
            const char *leader = json_string_value(json_object_get(cl, "leader"));
            if (!leader || strcmp(leader, name))
                continue;
            json_t *r;
            size_t ri;
            int current = 0;
            json_array_foreach(json_object_get(cl, "replicas"), ri, r)
            {
                current += json_is_true(json_object_get(r, "current"));
            }
            n += current >= replicas - 1;
        }
    }
    json_decref(root);
    return n;
}

int cluster_nats_settle(const cluster_t *c, int min_streams, int timeout_ms)
{
    long long end = cluster_now_ms() + timeout_ms;
    for (int i = 0; i < c->n_nats; i++) {
        while (c->nats_pid[i] > 0 && !nats_settled(c, i, min_streams)) {
            if (cluster_now_ms() >= end)
                return -1;
            usleep(50000);
        }
    }
    if (c->n_nats == 1)
        return 0;
    /* And each stream's leader counts every replica current. */
    int live = 0;
    for (int i = 0; i < c->n_nats; i++)
        live += c->nats_pid[i] > 0;
    for (;;) {
        int led = 0;
        for (int i = 0; i < c->n_nats; i++) {
            int n = c->nats_pid[i] > 0 ? nats_led_current(c, i, live) : 0;
            led += n > 0 ? n : 0;
        }
        if (led >= min_streams)
            return 0;
        if (cluster_now_ms() >= end)
            return -1;
        usleep(50000);
    }
}

void cluster_kill_nats(cluster_t *c, int i)
{
    if (i < 0 || i >= c->n_nats)
        return;
    cluster_kill(c->nats_pid[i], SIGKILL);
    c->nats_pid[i] = -1;
    if (i == 0)
        c->nats = -1;
}

static pid_t spawn_coordinator(cluster_t *c, const char *id, int admin_port)
{
    char admin[64], coord[512];
    snprintf(admin, sizeof(admin), "127.0.0.1:%d", admin_port);
    cluster_bin("coordinator/meshsig-coordinator", coord, sizeof(coord));
    char *coord_argv[32] = {coord,
                            "--nats",
                            c->nats_urls,
                            "--admin-listen",
                            admin,
                            "--id",
                            (char *)id,
                            c->admin_token ? "--admin-token" : "--insecure-dev",
                            (char *)c->admin_token};
    int n = c->admin_token ? 9 : 8;
    /* A lease the harness's tests do not lose to a starved machine: a renewal
     * must come back within a third of the TTL, and at the default 1200 ms a
     * loaded 2-core runner (ASan, parallel tests) misses that now and then;
     * the shard is then dropped and rebuilt, which is not what those tests
     * test. Tests about leases and failover times pass their own
     * --lease-ttl-ms after this one (the last one given counts). */
    coord_argv[n++] = "--lease-ttl-ms";
    coord_argv[n++] = "3000";
    for (int k = 0; c->coord_extra && c->coord_extra[k] && n < 31; k++)
        coord_argv[n++] = (char *)c->coord_extra[k];
    coord_argv[n] = NULL;
    char log[48];
    snprintf(log, sizeof(log), "%s", !strcmp(id, "coord-1") ? "coordinator" : id);
    pid_t pid = cluster_spawn(c, log, coord_argv);
    if (pid > 0 && cluster_wait_port(admin_port, 10000)) {
        cluster_kill(pid, SIGKILL);
        return -1;
    }
    return pid;
}

int cluster_add_coordinator(cluster_t *c)
{
    if (c->n_coord == 0)
        c->n_coord = 1;
    if (c->n_coord == CLUSTER_MAX_COORD)
        return -1;
    int i = c->n_coord;
    snprintf(c->xid[i], sizeof(c->xid[i]), "coord-%d", i + 1);
    c->xadmin[i] = cluster_free_port();
    pid_t pid = spawn_coordinator(c, c->xid[i], c->xadmin[i]);
    if (pid < 0)
        return -1;
    c->xcoord[i] = pid;
    c->n_coord++;
    return i;
}

int cluster_start_coords(cluster_t *c, int n_coord, const char *const *coord_extra,
                         const char *const *gw_extra)
{
    if (n_coord < 1 || n_coord > CLUSTER_MAX_COORD || cluster_start_args(c, NULL, coord_extra))
        return -1;
    for (int i = 1; i < n_coord; i++)
        if (cluster_add_coordinator(c) != i)
            return -1;
    if (cluster_add_gateway(c, "gw-1", gw_extra) != 0 ||
        cluster_add_gateway(c, "gw-2", gw_extra) != 1)
        return -1;
    return 0;
}

/* The topology coordinator i applies to new members of ns; 0 when it matches want. */
static int policy_is(const cluster_t *c, int i, const char *ns, const char *want)
{
    char path[300], *body = NULL;
    snprintf(path, sizeof(path), "/v1/namespaces/%s/policy", ns);
    int st = http_request(cluster_coord_admin(c, i), "GET", path, c->admin_token, NULL, &body);
    json_t *j = st == 200 && body ? json_loads(body, 0, NULL) : NULL;
    free(body);
    const char *t = json_string_value(json_object_get(j, "topology"));
    int same = t && !strcmp(t, want);
    json_decref(j);
    return same ? 0 : -1;
}

int cluster_set_policy(cluster_t *c, const char *ns, const char *policy_json)
{
    char path[300], *body = NULL;
    snprintf(path, sizeof(path), "/v1/namespaces/%s/policy", ns);
    int st = http_request(c->admin_port, "PUT", path, c->admin_token, policy_json, &body);
    if (st != 200) {
        fprintf(stderr, "policy %s of %s: %d %s\n", policy_json, ns, st, body ? body : "");
        free(body);
        return -1;
    }
    free(body);
    json_t *p = json_loads(policy_json, 0, NULL);
    const char *t = json_string_value(json_object_get(p, "topology"));
    char want[64];
    snprintf(want, sizeof(want), "%s", t ? t : "");
    json_decref(p);
    /* The other coordinators hear of it over NATS: every live one must apply it before a
     * join may be sent, whichever of them owns the namespace (or takes it over later). */
    for (int i = 0; i < (c->n_coord ? c->n_coord : 1); i++) {
        if (cluster_coord_pid(c, i) <= 0)
            continue;
        for (long long end = cluster_now_ms() + 10000; policy_is(c, i, ns, want); usleep(20000))
            if (cluster_now_ms() > end) {
                fprintf(stderr, "%s never applied the policy of %s\n", cluster_coord_id(c, i), ns);
                return -1;
            }
    }
    return 0;
}

int cluster_wait_peer_gone(const cluster_t *c, const char *ns, const char *peer, int timeout_ms)
{
    char path[300];
    snprintf(path, sizeof(path), "/v1/namespaces/%s", ns);
    for (long long end = cluster_now_ms() + timeout_ms; cluster_now_ms() < end; usleep(20000)) {
        char *body = NULL;
        int st = http_request(c->admin_port, "GET", path, c->admin_token, NULL, &body);
        json_t *j = st == 200 && body ? json_loads(body, 0, NULL) : NULL;
        free(body);
        if (st == 404) /* the namespace went with its last peer */
            return 0;
        int listed = !j;
        size_t k;
        json_t *p;
        json_array_foreach(json_object_get(j, "peers"), k, p)
        {
            const char *id = json_string_value(json_object_get(p, "id"));
            listed |= id && !strcmp(id, peer);
        }
        json_decref(j);
        if (!listed)
            return 0;
    }
    return -1;
}

int cluster_served_by(const cluster_t *c, int i, uint64_t *set)
{
    char *body = NULL;
    int st =
        http_request(cluster_coord_admin(c, i), "GET", "/v1/cluster", c->admin_token, NULL, &body);
    json_t *j = st == 200 && body ? json_loads(body, 0, NULL) : NULL;
    free(body);
    if (!j)
        return -1;
    *set = 0;
    json_t *sh = json_object_get(j, "shards");
    for (size_t k = 0; k < json_array_size(sh); k++) {
        json_t *s = json_array_get(sh, k);
        if (!strcmp(json_string_value(json_object_get(s, "here")), "serving"))
            *set |= 1ULL << json_integer_value(json_object_get(s, "shard"));
    }
    json_decref(j);
    return 0;
}

json_t *cluster_admin_ns(const cluster_t *c, int i, const char *ns)
{
    char path[300], *body = NULL;
    snprintf(path, sizeof(path), "/v1/namespaces/%s", ns);
    int st = http_request(cluster_coord_admin(c, i), "GET", path, c->admin_token, NULL, &body);
    json_t *j = st == 200 && body ? json_loads(body, 0, NULL) : NULL;
    free(body);
    return j;
}

pid_t cluster_coord_pid(const cluster_t *c, int i)
{
    return i == 0 ? c->coord : c->xcoord[i];
}

int cluster_coord_admin(const cluster_t *c, int i)
{
    return i == 0 ? c->admin_port : c->xadmin[i];
}

const char *cluster_coord_id(const cluster_t *c, int i)
{
    return i == 0 ? "coord-1" : c->xid[i];
}

void cluster_kill_coordinator(cluster_t *c, int i, int sig)
{
    if (i == 0) {
        cluster_kill(c->coord, sig);
        c->coord = -1;
    } else {
        cluster_kill(c->xcoord[i], sig);
        c->xcoord[i] = -1;
    }
}

static int start_coordinator(cluster_t *c)
{
    /* A restart on the same admin port can find it taken meanwhile (it is an
     * ephemeral port, and other tests on the machine take ports too): the
     * coordinator then exits at once, and it is started on a fresh port. */
    for (int attempt = 0; attempt < 3; attempt++) {
        if (attempt && (c->admin_port = fresh_port(c, c->n_nats, 0)) < 0)
            return -1;
        c->coord = spawn_coordinator(c, "coord-1", c->admin_port);
        if (c->coord < 0)
            continue;
        /* Ready once connected to NATS. */
        long long end = cluster_now_ms() + 10000;
        while (cluster_now_ms() < end) {
            if (http_request(c->admin_port, "GET", "/readyz", NULL, NULL, NULL) == 200)
                return 0;
            if (waitpid(c->coord, NULL, WNOHANG) == c->coord)
                break; /* it could not start (its port was taken) */
            usleep(20000);
        }
        if (cluster_now_ms() >= end)
            return -1;
    }
    return -1;
}

int cluster_restart_coordinator(cluster_t *c, int hard)
{
    cluster_kill(c->coord, hard ? SIGKILL : SIGTERM);
    return start_coordinator(c);
}

/* Whether coordinator 0 has heard gateway id's heartbeat: the gateway sends it
 * after its subscriptions on the same NATS connection, so from then on the
 * server delivers to the gateway (its port opens before that). */
static int gateway_seen(cluster_t *c, const char *id)
{
    char *body = NULL;
    int seen = 0;
    if (http_request(c->admin_port, "GET", "/v1/cluster", c->admin_token, NULL, &body) == 200) {
        json_t *j = json_loads(body ? body : "", 0, NULL);
        json_t *gws = json_object_get(j, "gateways"), *g;
        size_t k;
        json_array_foreach(gws, k, g)
        {
            const char *gid = json_string_value(json_object_get(g, "id"));
            if (gid && !strcmp(gid, id) && json_is_true(json_object_get(g, "alive")))
                seen = 1;
        }
        json_decref(j);
    }
    free(body);
    return seen;
}

int cluster_add_gateway(cluster_t *c, const char *id, const char *const *extra)
{
    return cluster_add_gateway_at(c, id, "127.0.0.1", extra);
}

int cluster_add_gateway_at(cluster_t *c, const char *id, const char *host, const char *const *extra)
{
    if (c->n_gw == CLUSTER_MAX_GW)
        return -1;
    int i = c->n_gw;
    char listen[96], bin[512];
    c->gw_port[i] = cluster_free_port();
    snprintf(listen, sizeof(listen), "%s:%d", host, c->gw_port[i]);
    cluster_bin("gateway/meshsig-gateway", bin, sizeof(bin));
    char *argv[32] = {bin, "--listen", listen, "--nats", c->nats_urls, "--id", (char *)id};
    int n = 7;
    for (int k = 0; extra && extra[k] && n < 31; k++)
        argv[n++] = (char *)extra[k];
    argv[n] = NULL;
    c->gw[i] = cluster_spawn(c, id, argv);
    if (c->gw[i] < 0 || wait_host_port(host, c->gw_port[i], 10000))
        return -1;
    c->n_gw++;
    for (long long end = cluster_now_ms() + 20000; !gateway_seen(c, id); usleep(20000))
        if (cluster_now_ms() > end)
            return -1;
    return i;
}

/* What a sanitizer writes when it finds something (ASan, LSan at exit, UBSan). */
static const char *const sanitizer_marks[] = {"ERROR: AddressSanitizer", "ERROR: LeakSanitizer",
                                              ": runtime error: ", NULL};

/* Prints each sanitizer report in the logs of dir (the processes a cluster ran: a memory
 * error aborts one, but a report at shutdown, a leak or an error in a process the test no
 * longer talks to went unseen, the logs removed); returns how many logs hold one. */
static int sanitizer_reports(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    int found = 0;
    for (struct dirent *e; (e = readdir(d));) {
        size_t n = strlen(e->d_name);
        if (n < 5 || strcmp(e->d_name + n - 4, ".log"))
            continue;
        char path[1024];
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        FILE *f = fopen(path, "r");
        if (!f)
            continue;
        char line[4096];
        int in_report = 0, shown = 0;
        while (fgets(line, sizeof(line), f) && shown < 60) {
            for (int i = 0; !in_report && sanitizer_marks[i]; i++)
                if (strstr(line, sanitizer_marks[i])) {
                    in_report = 1;
                    found++;
                    fprintf(stderr, "sanitizer report in %s:\n", path);
                }
            if (in_report) {
                fputs(line, stderr);
                shown++;
            }
        }
        fclose(f);
    }
    closedir(d);
    return found;
}

void cluster_stop(cluster_t *c)
{
    for (int i = 0; i < c->n_gw; i++)
        if (c->gw[i] > 0)
            cluster_kill(c->gw[i], SIGTERM);
    for (int i = 1; i < c->n_coord; i++)
        if (c->xcoord[i] > 0)
            cluster_kill(c->xcoord[i], SIGTERM);
    cluster_kill(c->coord, SIGTERM);
    for (int i = 0; i < c->n_nats; i++)
        if (c->nats_pid[i] > 0)
            cluster_kill(c->nats_pid[i], SIGTERM);
    if (sanitizer_reports(c->dir)) {
        /* The test fails (whether this runs in a test's process or the suite's), logs kept. */
        fprintf(stderr, "a process of this test reported a sanitizer error: logs kept in %s\n",
                c->dir);
        exit(EXIT_FAILURE);
    }
    if (getenv("MESHSIG_KEEP_LOGS")) {
        fprintf(stderr, "logs kept in %s\n", c->dir);
        return;
    }
    char cmd[400];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", c->dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", c->dir);
}

int http_request(int port, const char *method, const char *path, const char *token,
                 const char *body, char **resp_body)
{
    if (resp_body)
        *resp_body = NULL;
    int fd = connect_port(port);
    if (fd < 0)
        return -1;
    struct timeval tv = {.tv_sec = 5};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    char req[4096];
    int n = snprintf(req, sizeof(req),
                     "%s %s HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Length: %zu\r\n%s%s%s\r\n%s",
                     method, path, body ? strlen(body) : 0, token ? "Authorization: Bearer " : "",
                     token ? token : "", token ? "\r\n" : "", body ? body : "");
    if (write(fd, req, (size_t)n) != n) {
        close(fd);
        return -1;
    }
    size_t cap = 65536, len = 0;
    char *buf = malloc(cap);
    for (;;) {
        if (len + 4096 > cap) {
            cap *= 2;
            char *nb = realloc(buf, cap);
            if (!nb)
                break;
            buf = nb;
        }
        ssize_t r = read(fd, buf + len, cap - len - 1);
        if (r <= 0)
            break;
        len += (size_t)r;
    }
    close(fd);
    buf[len] = '\0';
    int status = -1;
    if (sscanf(buf, "HTTP/1.%*d %d", &status) != 1)
        status = -1;
    char *b = strstr(buf, "\r\n\r\n");
    if (resp_body && b)
        *resp_body = strdup(b + 4);
    free(buf);
    return status;
}
