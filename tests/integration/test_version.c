/* SPDX-License-Identifier: Apache-2.0 */
/* Integration test of versions: every binary's --version, meshsig_build_info on both /metrics,
 * versions on /v1/cluster agree with project(VERSION); and bus compatibility on the real bus:
 * fake peers publishing another bus major are refused and reported, never misread, while a
 * newer minor with unknown fields and an older minor are accepted. */
#include <check.h>
#include <nats/nats.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bus.pb-c.h"
#include "busver.h"
#include "cluster.h"
#include "testutil.h"

#ifndef MS_TEST_VERSION
#error "MS_TEST_VERSION comes from project(VERSION) (tests/CMakeLists.txt)"
#endif

#define TOKEN "admin-secret"
#define GW_ID "gw-v"
/* Bus protocol versions as (major << 16) | minor, as common/busver.h. 1.0: the first
 * release (0.1.0), before DirectSignal.REPLY and the other additions of bus 1.1. */
#define BUS_1_0 (1u << 16)
#define BUS_1_7 ((1u << 16) | 7u)
#define BUS_2_0 (2u << 16)

static cluster_t cl;
static natsConnection *nc;

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void setup(void)
{
    ck_assert_int_eq(cluster_start(&cl, TOKEN), 0);
    ck_assert_int_ge(cluster_add_gateway(&cl, GW_ID, (const char *const[]){"--insecure-dev", NULL}),
                     0);
    nc = bus_connect(&cl);
}

static void teardown(void)
{
    natsConnection_Destroy(nc);
    nc = NULL;
    cluster_stop(&cl);
}

/* The first line of `BIN --version`, in out. */
static void version_line(const char *rel, char *out, size_t cap)
{
    char bin[512], cmd[600];
    cluster_bin(rel, bin, sizeof(bin));
    snprintf(cmd, sizeof(cmd), "'%s' --version", bin);
    FILE *f = popen(cmd, "r");
    ck_assert_ptr_nonnull(f);
    out[0] = '\0';
    ck_assert_ptr_nonnull(fgets(out, (int)cap, f));
    out[strcspn(out, "\n")] = '\0';
    ck_assert_int_eq(pclose(f), 0);
}

/* "NAME VERSION (commit C)" or "NAME VERSION": checks NAME and VERSION, returns C ("" if none). */
static void parse_version(const char *line, const char *name, char *commit, size_t cap)
{
    char expect[128];
    snprintf(expect, sizeof(expect), "%s %s", name, MS_TEST_VERSION);
    ck_assert_msg(!strncmp(line, expect, strlen(expect)), "'%s' is not '%s...'", line, expect);
    const char *rest = line + strlen(expect);
    commit[0] = '\0';
    if (!*rest)
        return;
    ck_assert_msg(!strncmp(rest, " (commit ", 9) && rest[strlen(rest) - 1] == ')', "'%s'", line);
    snprintf(commit, cap, "%.*s", (int)(strlen(rest) - 10), rest + 9);
    ck_assert_int_gt(strlen(commit), 6);
}

static char *metrics(int port, const char *token)
{
    char *body = NULL;
    ck_assert_int_eq(http_request(port, "GET", "/metrics", token, NULL, &body), 200);
    ck_assert_ptr_nonnull(body);
    return body;
}

/* promtool, when installed, checks the exposition of the families this test is about (HELP,
 * TYPE, names, labels). */
static void promtool_check(const char *text)
{
    if (system("command -v promtool >/dev/null 2>&1") != 0)
        return;
    FILE *f = popen("promtool check metrics", "w");
    ck_assert_ptr_nonnull(f);
    for (const char *p = text; p && *p;) {
        const char *nl = strchr(p, '\n');
        size_t n = nl ? (size_t)(nl - p + 1) : strlen(p);
        char line[512];
        snprintf(line, sizeof(line), "%.*s", (int)n, p);
        if (strstr(line, "meshsig_build_info") || strstr(line, "meshsig_bus_refused_total"))
            fputs(line, f);
        p += n;
    }
    ck_assert_int_eq(pclose(f), 0);
}

/* The value of the first sample line starting with `name ` or `name{`, or -1. */
static double sample(const char *text, const char *name)
{
    size_t n = strlen(name);
    for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL) {
        if (!strncmp(p, name, n) && (p[n] == ' ' || p[n] == '{')) {
            const char *sp = strchr(p + n, ' ');
            return sp ? atof(sp + 1) : -1;
        }
    }
    return -1;
}

static json_t *cluster_view(void)
{
    char *body = NULL;
    ck_assert_int_eq(http_request(cl.admin_port, "GET", "/v1/cluster", TOKEN, NULL, &body), 200);
    json_t *j = body ? json_loads(body, 0, NULL) : NULL;
    free(body);
    ck_assert_ptr_nonnull(j);
    return j;
}

/* The entry with "id" == id in array key of the cluster view, or NULL (borrowed from j). */
static json_t *entry(json_t *j, const char *key, const char *id)
{
    json_t *arr = json_object_get(j, key), *e;
    size_t i;
    json_array_foreach(arr, i, e)
    {
        const char *eid = json_string_value(json_object_get(e, "id"));
        if (eid && !strcmp(eid, id))
            return e;
    }
    return NULL;
}

/* The cluster view once the gateway's heartbeat has arrived: it is then connected and its
 * subscriptions are on the server (they precede its first heartbeat on one connection). */
static json_t *view_with_gateway(void)
{
    for (long long end = now_ms() + 10000; now_ms() < end;) {
        json_t *j = cluster_view();
        if (entry(j, "gateways", GW_ID))
            return j;
        json_decref(j);
        usleep(100000);
    }
    ck_abort_msg("gateway %s never appeared on /v1/cluster", GW_ID);
    return NULL;
}

START_TEST(versions_agree)
{
    char line[256], commit_gw[64], commit_coord[64], commit_tok[64];
    version_line("gateway/meshsig-gateway", line, sizeof(line));
    parse_version(line, "meshsig-gateway", commit_gw, sizeof(commit_gw));
    version_line("coordinator/meshsig-coordinator", line, sizeof(line));
    parse_version(line, "meshsig-coordinator", commit_coord, sizeof(commit_coord));
    version_line("tools/meshsig-token", line, sizeof(line));
    parse_version(line, "meshsig-token", commit_tok, sizeof(commit_tok));
    ck_assert_str_eq(commit_gw, commit_coord);
    ck_assert_str_eq(commit_gw, commit_tok);
    /* Built from a checkout: the commit is one of its commits (the build may be older than
     * HEAD, so HEAD itself is not required). */
    const char *src = getenv("MESHSIG_SOURCE_DIR");
    if (src && *commit_gw) {
        char cmd[700];
        snprintf(cmd, sizeof(cmd), "git -C '%s' cat-file -e '%.*s^{commit}' 2>/dev/null", src,
                 (int)strcspn(commit_gw, "-"), commit_gw);
        ck_assert_msg(system(cmd) == 0, "commit %s is not in %s", commit_gw, src);
    }

    char want[160];
    snprintf(want, sizeof(want), "meshsig_build_info{version=\"%s\",commit=\"%s\"} 1\n",
             MS_TEST_VERSION, *commit_gw ? commit_gw : "unknown");
    char *m = metrics(cl.admin_port, TOKEN);
    ck_assert_msg(strstr(m, want), "coordinator /metrics lacks %s", want);
    ck_assert_ptr_nonnull(strstr(m, "# TYPE meshsig_build_info gauge\n"));
    promtool_check(m);
    free(m);
    m = metrics(cl.gw_port[0], NULL);
    ck_assert_msg(strstr(m, want), "gateway /metrics lacks %s", want);
    promtool_check(m);
    free(m);

    /* /v1/cluster: the coordinator's own version, and the gateway's from its heartbeat; both
     * speak the bus version of this build (common/busver.h), a later minor than the first
     * release's 1.0 since the bus gained fields and DirectSignal.REPLY after it. */
    char bus[16];
    ms_busver_str(MS_BUS_VERSION, bus, sizeof(bus));
    ck_assert_uint_eq(MS_BUS_MAJOR, 1);
    ck_assert_uint_ge(MS_BUS_MINOR, 1);
    json_t *j = view_with_gateway();
    json_t *gw = entry(j, "gateways", GW_ID);
    ck_assert_str_eq(json_string_value(json_object_get(gw, "version")), MS_TEST_VERSION);
    ck_assert_str_eq(json_string_value(json_object_get(gw, "busVersion")), bus);
    json_t *self = entry(j, "coordinators", json_string_value(json_object_get(j, "self")));
    ck_assert_ptr_nonnull(self);
    ck_assert_str_eq(json_string_value(json_object_get(self, "version")), MS_TEST_VERSION);
    ck_assert_str_eq(json_string_value(json_object_get(self, "busVersion")), bus);
    json_decref(j);
}
END_TEST

static void publish(const char *subj, const void *buf, size_t len)
{
    ck_assert_int_eq(natsConnection_Publish(nc, subj, buf, (int)len), NATS_OK);
    ck_assert_int_eq(natsConnection_FlushTimeout(nc, 2000), NATS_OK);
}

static void gw_heartbeat(const char *id, uint32_t bus_version, const char *release, int extra)
{
    Meshsig__Bus__Heartbeat hb = MESHSIG__BUS__HEARTBEAT__INIT;
    hb.gateway_id = (char *)id;
    hb.sessions = 3;
    hb.release = (char *)release;
    hb.bus_version = bus_version;
    uint8_t buf[512];
    size_t len = meshsig__bus__heartbeat__pack(&hb, buf);
    if (extra) {
        /* What a newer minor might add: field 13 (varint) and field 99 (bytes). */
        static const uint8_t more[] = {13 << 3, 0x2a, 0x9a, 0x06, 3, 'n', 'e', 'w'};
        memcpy(buf + len, more, sizeof(more));
        len += sizeof(more);
    }
    publish("meshsig.gw.heartbeat", buf, len);
}

/* Publishes (every 200 ms, to outlast a slow start) until pred holds on /v1/cluster. */
static json_t *until_view(void (*send)(void), int (*pred)(json_t *))
{
    json_t *j = NULL;
    for (long long end = now_ms() + 10000; now_ms() < end;) {
        send();
        j = cluster_view();
        if (pred(j))
            return j;
        json_decref(j);
        j = NULL;
        usleep(100000);
    }
    ck_abort_msg("condition never held on /v1/cluster");
    return NULL;
}

static void send_future_gw(void)
{
    gw_heartbeat("gw-future", BUS_2_0, "9.0.0", 0);
}
static void send_unversioned_gw(void)
{
    gw_heartbeat("gw-ancient", 0, "", 0);
}
static void send_minor_gw(void)
{
    gw_heartbeat("gw-minor", BUS_1_7, "0.9.0", 1);
}
static void send_older_minor_gw(void)
{
    gw_heartbeat("gw-older", BUS_1_0, "0.1.0", 0);
}
static void send_future_coord(void)
{
    /* Claims every shard: were it believed, this coordinator would hand them over. */
    uint32_t sh[64];
    uint64_t ep[64];
    for (uint32_t i = 0; i < 64; i++) {
        sh[i] = i;
        ep[i] = 1u << 30;
    }
    Meshsig__Bus__CoordinatorHeartbeat hb = MESHSIG__BUS__COORDINATOR_HEARTBEAT__INIT;
    hb.id = "coord-future";
    hb.shards = sh;
    hb.n_shards = 64;
    hb.epochs = ep;
    hb.n_epochs = 64;
    hb.admin = "127.0.0.1:1";
    hb.release = "9.0.0";
    hb.bus_version = BUS_2_0;
    uint8_t buf[2048];
    size_t len = meshsig__bus__coordinator_heartbeat__pack(&hb, buf);
    publish("meshsig.coord.heartbeat", buf, len);
}

static int incompatible_has(json_t *j, const char *id, const char *role, const char *bus)
{
    json_t *e = entry(j, "incompatible", id);
    return e && !strcmp(json_string_value(json_object_get(e, "role")), role) &&
           !strcmp(json_string_value(json_object_get(e, "busVersion")), bus) &&
           json_integer_value(json_object_get(e, "refused")) >= 1;
}
static int has_future_gw(json_t *j)
{
    return incompatible_has(j, "gw-future", "gateway", "2.0");
}
static int has_ancient_gw(json_t *j)
{
    return incompatible_has(j, "gw-ancient", "gateway", "0.0");
}
static int has_future_coord(json_t *j)
{
    return incompatible_has(j, "coord-future", "coordinator", "2.0");
}
static int has_minor_gw(json_t *j)
{
    return entry(j, "gateways", "gw-minor") != NULL;
}
static int has_older_minor_gw(json_t *j)
{
    return entry(j, "gateways", "gw-older") != NULL;
}

START_TEST(other_major_refused_and_reported)
{
    json_t *j = until_view(send_future_gw, has_future_gw);
    ck_assert_ptr_null(entry(j, "gateways", "gw-future"));
    ck_assert_str_eq(
        json_string_value(json_object_get(entry(j, "incompatible", "gw-future"), "version")),
        "9.0.0");
    json_decref(j);

    j = until_view(send_unversioned_gw, has_ancient_gw);
    ck_assert_ptr_null(entry(j, "gateways", "gw-ancient"));
    json_decref(j);

    /* A coordinator of another major that claims every shard is not a member: this one keeps
     * serving all 64 and stays ready. */
    j = until_view(send_future_coord, has_future_coord);
    ck_assert_ptr_null(entry(j, "coordinators", "coord-future"));
    json_t *sh = json_object_get(j, "shards"), *s;
    size_t i;
    json_array_foreach(sh, i, s)
    {
        ck_assert_str_eq(json_string_value(json_object_get(s, "here")), "serving");
        ck_assert_str_eq(json_string_value(json_object_get(s, "desired")),
                         json_string_value(json_object_get(j, "self")));
    }
    json_decref(j);
    ck_assert_int_eq(http_request(cl.admin_port, "GET", "/readyz", NULL, NULL, NULL), 200);
    char *m = metrics(cl.admin_port, TOKEN);
    ck_assert_double_ge(sample(m, "meshsig_bus_refused_total"), 3);
    free(m);
}
END_TEST

START_TEST(newer_minor_with_unknown_fields_accepted)
{
    json_t *j = until_view(send_minor_gw, has_minor_gw);
    json_t *g = entry(j, "gateways", "gw-minor");
    ck_assert_str_eq(json_string_value(json_object_get(g, "busVersion")), "1.7");
    ck_assert_str_eq(json_string_value(json_object_get(g, "version")), "0.9.0");
    ck_assert_int_eq(json_integer_value(json_object_get(g, "sessions")), 3);
    ck_assert_ptr_null(entry(j, "incompatible", "gw-minor"));
    json_decref(j);
}
END_TEST

/* A node of the first release (bus 1.0) in a cluster of this one: a rolling upgrade. */
START_TEST(older_minor_accepted)
{
    json_t *j = until_view(send_older_minor_gw, has_older_minor_gw);
    json_t *g = entry(j, "gateways", "gw-older");
    ck_assert_str_eq(json_string_value(json_object_get(g, "busVersion")), "1.0");
    ck_assert_str_eq(json_string_value(json_object_get(g, "version")), "0.1.0");
    ck_assert_ptr_null(entry(j, "incompatible", "gw-older"));
    json_decref(j);
}
END_TEST

/* FNV-1a 64 of the namespace mod 64, as the gateways pick a shard. */
static uint32_t shard_of(const char *ns)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (const unsigned char *p = (const unsigned char *)ns; *p; p++) {
        h ^= *p;
        h *= 0x100000001b3ULL;
    }
    return (uint32_t)(h % 64);
}

static void join_request(uint64_t session, const char *peer, uint32_t bus_version)
{
    Meshsig__V1__Hello hello = MESHSIG__V1__HELLO__INIT;
    hello.namespace_ = "compat";
    Meshsig__Bus__Join join = MESHSIG__BUS__JOIN__INIT;
    join.peer_id = (char *)peer;
    join.hello = &hello;
    Meshsig__Bus__ShardRequest rq = MESHSIG__BUS__SHARD_REQUEST__INIT;
    char rid[64];
    snprintf(rid, sizeof(rid), "gw-fake/%llu", (unsigned long long)session);
    rq.req_id = rid;
    rq.gateway_id = "gw-fake";
    rq.session = session;
    rq.namespace_ = "compat";
    rq.peer_id = (char *)peer;
    rq.op_case = MESHSIG__BUS__SHARD_REQUEST__OP_JOIN;
    rq.join = &join;
    rq.bus_version = bus_version;
    uint8_t buf[512];
    size_t len = meshsig__bus__shard_request__pack(&rq, buf);
    char subj[64];
    snprintf(subj, sizeof(subj), "meshsig.shard.%u", shard_of("compat"));
    ck_assert_int_eq(natsConnection_PublishRequest(nc, subj, "meshsig.gw.gw-fake", buf, (int)len),
                     NATS_OK);
}

START_TEST(request_of_other_major_not_answered)
{
    natsSubscription *sub = NULL;
    ck_assert_int_eq(natsConnection_SubscribeSync(&sub, nc, "meshsig.gw.gw-fake"), NATS_OK);
    ck_assert_int_eq(natsConnection_FlushTimeout(nc, 2000), NATS_OK);
    char *m = metrics(cl.admin_port, TOKEN);
    double before = sample(m, "meshsig_bus_refused_total");
    free(m);
    /* Both go to one shard, handled in order: had the first been decoded, its answer would
     * arrive before the second's. */
    join_request(1, "old-peer", BUS_2_0);
    join_request(2, "new-peer", BUS_1_0);
    ck_assert_int_eq(natsConnection_FlushTimeout(nc, 2000), NATS_OK);
    int answered2 = 0;
    for (long long end = now_ms() + 10000; !answered2 && now_ms() < end;) {
        natsMsg *msg = NULL;
        if (natsSubscription_NextMsg(&msg, sub, 500) != NATS_OK)
            continue;
        Meshsig__Bus__GatewayBatch *b = meshsig__bus__gateway_batch__unpack(
            NULL, (size_t)natsMsg_GetDataLength(msg), (const uint8_t *)natsMsg_GetData(msg));
        natsMsg_Destroy(msg);
        ck_assert_ptr_nonnull(b);
        ck_assert_int_eq(b->bus_version >> 16, 1);
        for (size_t i = 0; i < b->n_deliveries; i++) {
            ck_assert_msg(b->deliveries[i]->session != 1, "a request of bus 2.0 was answered");
            answered2 |= b->deliveries[i]->session == 2;
        }
        meshsig__bus__gateway_batch__free_unpacked(b, NULL);
    }
    ck_assert_msg(answered2, "the bus 1.0 join (an older minor) was not answered");
    natsSubscription_Destroy(sub);
    m = metrics(cl.admin_port, TOKEN);
    ck_assert_double_eq(sample(m, "meshsig_bus_refused_total"), before + 1);
    free(m);
}
END_TEST

START_TEST(gateway_refuses_batch_of_other_major)
{
    Meshsig__V1__ServerMessage sm = MESHSIG__V1__SERVER_MESSAGE__INIT;
    Meshsig__Bus__Delivery d = MESHSIG__BUS__DELIVERY__INIT;
    Meshsig__Bus__Delivery *ds[] = {&d};
    d.session = 1;
    d.msg = &sm;
    Meshsig__Bus__GatewayBatch b = MESHSIG__BUS__GATEWAY_BATCH__INIT;
    b.shard = 0;
    b.epoch = 1ull << 40; /* were it believed, every later batch for shard 0 would be fenced */
    b.coordinator_id = "coord-future";
    b.n_deliveries = 1;
    b.deliveries = ds;
    b.bus_version = BUS_2_0;
    json_decref(view_with_gateway());
    uint8_t buf[256];
    size_t len = meshsig__bus__gateway_batch__pack(&b, buf);
    publish("meshsig.gw." GW_ID, buf, len);
    double refused = 0;
    for (long long end = now_ms() + 10000; refused < 1 && now_ms() < end;) {
        char *m = metrics(cl.gw_port[0], NULL);
        refused = sample(m, "meshsig_bus_refused_total");
        free(m);
        if (refused < 1)
            usleep(50000);
    }
    ck_assert_double_eq(refused, 1);
    /* The gateway reports it in its heartbeat: the cluster view shows it per gateway. */
    json_t *j = NULL;
    long long got = 0;
    for (long long end = now_ms() + 10000; got < 1 && now_ms() < end;) {
        json_decref(j);
        j = cluster_view();
        got = json_integer_value(json_object_get(entry(j, "gateways", GW_ID), "busRefused"));
        if (got < 1)
            usleep(100000);
    }
    json_decref(j);
    ck_assert_int_eq(got, 1);
}
END_TEST

/* ---- copies of unanswered requests go only to an owner of bus 1.1 or later ---------------- */

/* A fake owner on its own subject prefix ("vt": the real coordinator never hears of it): it
 * welcomes every join, stamping its batch with the bus version of the namespace's shard, and
 * answers nothing else, counting each copy of a client request it gets. The third shard's
 * owner says 1.0 in its welcome; then a 1.1 owner takes the shard over, which the gateway hears
 * of only through its ResyncRequest (to every gateway, at FAKE_EPOCH + 1). */
#define FAKE_PREFIX "vt"
#define FAKE_GW "gw-copies"
#define FAKE_EPOCH 5
static struct {
    pthread_mutex_t lock;
    uint32_t shard_old, shard_new;  /* the shards whose owner says 1.0, and 1.1 */
    uint32_t shard_took;            /* 1.0 at the welcome, then taken over by a 1.1 owner */
    int got_old, got_new, got_took; /* copies of request "e1" per shard */
    uint32_t attempts_new;          /* attempt numbers seen from the 1.1 shard, as bits */
    uint32_t attempts_took;         /* and from the shard taken over */
    uint64_t epoch_took_min;        /* the lowest epoch its copies carried */
} fake = {.lock = PTHREAD_MUTEX_INITIALIZER};

static void fake_owner(natsConnection *conn, natsSubscription *sub, natsMsg *msg, void *closure)
{
    (void)sub;
    (void)closure;
    Meshsig__Bus__ShardRequest *rq = meshsig__bus__shard_request__unpack(
        NULL, (size_t)natsMsg_GetDataLength(msg), (const uint8_t *)natsMsg_GetData(msg));
    const char *subj = natsMsg_GetSubject(msg), *reply = natsMsg_GetReply(msg);
    uint32_t shard = (uint32_t)atoi(strrchr(subj, '.') + 1);
    if (rq && rq->op_case == MESHSIG__BUS__SHARD_REQUEST__OP_JOIN && reply) {
        Meshsig__V1__Welcome w = MESHSIG__V1__WELCOME__INIT;
        w.peer_id = rq->peer_id;
        Meshsig__V1__ServerMessage sm = MESHSIG__V1__SERVER_MESSAGE__INIT;
        sm.id = rq->client_id;
        sm.msg_case = MESHSIG__V1__SERVER_MESSAGE__MSG_WELCOME;
        sm.welcome = &w;
        Meshsig__Bus__Delivery d = MESHSIG__BUS__DELIVERY__INIT;
        Meshsig__Bus__Delivery *ds[] = {&d};
        d.session = rq->session;
        d.peer_id = rq->peer_id;
        d.msg = &sm;
        Meshsig__Bus__GatewayBatch b = MESHSIG__BUS__GATEWAY_BATCH__INIT;
        b.shard = shard;
        b.epoch = FAKE_EPOCH;
        b.coordinator_id = "coord-fake";
        b.n_deliveries = 1;
        b.deliveries = ds;
        b.bus_version = shard == fake.shard_new ? MS_BUS_COPIES_ONCE : BUS_1_0;
        uint8_t buf[512];
        size_t len = meshsig__bus__gateway_batch__pack(&b, buf);
        natsConnection_Publish(conn, reply, buf, (int)len);
    } else if (rq && rq->op_case == MESHSIG__BUS__SHARD_REQUEST__OP_CLIENT &&
               !strcmp(rq->client_id, "e1")) {
        pthread_mutex_lock(&fake.lock);
        if (shard == fake.shard_old)
            fake.got_old++;
        else if (shard == fake.shard_new) {
            fake.got_new++;
            fake.attempts_new |= 1u << (rq->attempt & 31);
        } else if (shard == fake.shard_took) {
            fake.got_took++;
            fake.attempts_took |= 1u << (rq->attempt & 31);
            if (!fake.epoch_took_min || rq->epoch < fake.epoch_took_min)
                fake.epoch_took_min = rq->epoch;
        }
        pthread_mutex_unlock(&fake.lock);
    }
    if (rq)
        meshsig__bus__shard_request__free_unpacked(rq, NULL);
    natsMsg_Destroy(msg);
}

/* A new owner of bus 1.1 takes shard over at epoch: its ResyncRequest to every gateway, as
 * coordinator/resync.c sends it. Returns once the gateway's last report part arrived (by then
 * the gateway has taken the request in). */
static void take_over(uint32_t shard, uint64_t epoch)
{
    natsSubscription *reports = NULL;
    ck_assert_int_eq(
        natsConnection_SubscribeSync(&reports, nc, FAKE_PREFIX ".coord.resync.coord-new"), NATS_OK);
    Meshsig__Bus__ResyncRequest rq = MESHSIG__BUS__RESYNC_REQUEST__INIT;
    rq.shard = shard;
    rq.epoch = epoch;
    rq.coordinator_id = "coord-new";
    rq.reply_to = FAKE_PREFIX ".coord.resync.coord-new";
    rq.shards = 64;
    rq.gateway_id = "";
    rq.bus_version = MS_BUS_COPIES_ONCE;
    uint8_t buf[256];
    size_t len = meshsig__bus__resync_request__pack(&rq, buf);
    ck_assert_int_eq(natsConnection_Publish(nc, FAKE_PREFIX ".gw.resync", buf, (int)len), NATS_OK);
    int last = 0;
    for (long long end = now_ms() + 10000; !last && now_ms() < end;) {
        natsMsg *m = NULL;
        if (natsSubscription_NextMsg(&m, reports, 1000) != NATS_OK)
            continue;
        Meshsig__Bus__ResyncReport *rr = meshsig__bus__resync_report__unpack(
            NULL, (size_t)natsMsg_GetDataLength(m), (const uint8_t *)natsMsg_GetData(m));
        last = rr && !strcmp(rr->gateway_id, FAKE_GW) && rr->epoch == epoch && rr->last;
        if (rr)
            meshsig__bus__resync_report__free_unpacked(rr, NULL);
        natsMsg_Destroy(m);
    }
    natsSubscription_Destroy(reports);
    ck_assert_msg(last, "the gateway did not answer the takeover's ResyncRequest");
}

/* Waits (bounded) for the error answering request id on c; returns its message text. */
static char *error_for(wsc_t *c, const char *id, long long within_ms)
{
    for (long long end = now_ms() + within_ms; now_ms() < end;) {
        json_t *j = wsc_recv_json(c, 1000);
        if (!j)
            continue;
        const char *jid = json_string_value(json_object_get(j, "id"));
        json_t *e = json_object_get(j, "error");
        char *text = NULL;
        if (e && jid && !strcmp(jid, id)) {
            ck_assert_str_eq(json_string_value(json_object_get(e, "code")), "UNAVAILABLE");
            text = strdup(json_string_value(json_object_get(e, "message")));
        }
        json_decref(j);
        if (text)
            return text;
    }
    ck_abort_msg("no error for request %s within %lld ms", id, within_ms);
    return NULL;
}

START_TEST(copies_only_to_owner_of_bus_1_1)
{
    /* Two namespaces on two shards: one owner says bus 1.0 (a coordinator not upgraded before
     * its gateways), the other 1.1. Each gets an emit it never answers: the 1.1 owner gets
     * the request and its four copies (0.5, 1.5, 3.5, 7.5 s), the 1.0 owner only the request,
     * which it would otherwise have applied five times; each client gets UNAVAILABLE saying
     * the request may have been applied, at the same time. A third shard's owner says 1.0 in
     * its welcome, and a 1.1 owner takes that shard over before the request: the gateway
     * learns the new owner's version from the takeover's ResyncRequest alone, so the request
     * gets its copies at once, at the new epoch (and none with the version not taken from
     * there: the gateway would not have heard from the new owner). */
    const char *ns_old = "copies-old", *ns_new = "copies-new", *ns_took = "copies-took";
    fake.shard_old = shard_of(ns_old);
    fake.shard_new = shard_of(ns_new);
    fake.shard_took = shard_of(ns_took);
    ck_assert_uint_ne(fake.shard_old, fake.shard_new);
    ck_assert_uint_ne(fake.shard_took, fake.shard_new);
    ck_assert_uint_ne(fake.shard_took, fake.shard_old);
    natsSubscription *sub = NULL;
    ck_assert_int_eq(natsConnection_Subscribe(&sub, nc, FAKE_PREFIX ".shard.>", fake_owner, NULL),
                     NATS_OK);
    ck_assert_int_eq(natsConnection_FlushTimeout(nc, 2000), NATS_OK);
    char bin[512], listen[32];
    int port = cluster_free_port();
    snprintf(listen, sizeof(listen), "127.0.0.1:%d", port);
    cluster_bin("gateway/meshsig-gateway", bin, sizeof(bin));
    char *argv[] = {bin,     "--listen",       listen,     "--nats",    cl.nats_urls, "--id",
                    FAKE_GW, "--insecure-dev", "--prefix", FAKE_PREFIX, NULL};
    pid_t pid = cluster_spawn(&cl, FAKE_GW, argv);
    ck_assert_int_gt(pid, 0);
    ck_assert_int_eq(cluster_wait_port(port, 20000), 0);
    wsc_t *a = join_as(port, ns_old, "alice");
    wsc_t *b = join_as(port, ns_new, "bob");
    wsc_t *t = join_as(port, ns_took, "tom");
    take_over(fake.shard_took, FAKE_EPOCH + 1);
    send_json(a, "{\"id\":\"e1\",\"emit\":{\"to\":\"nobody\",\"event\":\"x\"}}");
    send_json(b, "{\"id\":\"e1\",\"emit\":{\"to\":\"nobody\",\"event\":\"x\"}}");
    send_json(t, "{\"id\":\"e1\",\"emit\":{\"to\":\"nobody\",\"event\":\"x\"}}");
    long long t0 = now_ms();
    char *why_old = error_for(a, "e1", 30000);
    long long t_old = now_ms() - t0;
    char *why_new = error_for(b, "e1", 30000);
    char *why_took = error_for(t, "e1", 30000);
    /* Copies come before the UNAVAILABLE; the fake owner may still be reading the last. */
    natsConnection_FlushTimeout(nc, 2000);
    pthread_mutex_lock(&fake.lock);
    int got_old = fake.got_old, got_new = fake.got_new, got_took = fake.got_took;
    uint32_t attempts = fake.attempts_new, attempts_took = fake.attempts_took;
    uint64_t epoch_took = fake.epoch_took_min;
    pthread_mutex_unlock(&fake.lock);
    long long withheld = metric_at(port, NULL, "meshsig_gateway_requests_copies_withheld_total");
    natsSubscription_Unsubscribe(sub);
    natsSubscription_Destroy(sub);
    wsc_free(a);
    wsc_free(b);
    wsc_free(t);
    cluster_kill(pid, SIGTERM);
    ck_assert_msg(strstr(why_old, "may or may not have been applied"), "%s", why_old);
    ck_assert_msg(strstr(why_old, "copies withheld"), "%s", why_old);
    ck_assert_msg(strstr(why_new, "may or may not have been applied"), "%s", why_new);
    ck_assert_msg(t_old >= 11000, "UNAVAILABLE after %lld ms, before the last copy's time", t_old);
    ck_assert_int_eq(got_old, 1);
    ck_assert_int_eq(withheld, 4);
    ck_assert_int_eq(got_new, 5);
    ck_assert_uint_eq(attempts, 0x1f); /* attempts 0 to 4 */
    ck_assert_msg(!strstr(why_took, "copies withheld"), "%s", why_took);
    ck_assert_int_eq(got_took, 5);
    ck_assert_uint_eq(attempts_took, 0x1f);
    ck_assert_uint_eq(epoch_took, FAKE_EPOCH + 1); /* each sent at the new owner's epoch */
    free(why_old);
    free(why_new);
    free(why_took);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("version");
    TCase *tc = tcase_create("version");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, versions_agree);
    tcase_add_test(tc, other_major_refused_and_reported);
    tcase_add_test(tc, newer_minor_with_unknown_fields_accepted);
    tcase_add_test(tc, older_minor_accepted);
    tcase_add_test(tc, request_of_other_major_not_answered);
    tcase_add_test(tc, gateway_refuses_batch_of_other_major);
    suite_add_tcase(s, tc);
    TCase *copies = tcase_create("copies");
    tcase_add_checked_fixture(copies, setup, teardown);
    tcase_add_checked_fixture(copies, client_up, client_down);
    tcase_set_timeout(copies, 120);
    tcase_add_test(copies, copies_only_to_owner_of_bus_1_1);
    suite_add_tcase(s, copies);
    return run_suite(s);
}
