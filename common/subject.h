/* SPDX-License-Identifier: Apache-2.0 */
/* The bus subjects (DESIGN.md §3): every subject is built and parsed here, by both binaries and
 * the tests.
 *
 * All subjects start with a configurable prefix ("meshsig"):
 *   <p>.shard.<n>            gateway -> owner of shard n: requests (ShardRequest)
 *   <p>.gw.<gateway-id>      coordinator -> gateway: deliveries (GatewayBatch)
 *   <p>.gw.heartbeat         gateway -> all (Heartbeat)
 *   <p>.gw.resync            new owner -> gateways: report a shard (ResyncRequest)
 *   <p>.coord.heartbeat      coordinator -> coordinators (CoordinatorHeartbeat)
 *   <p>.coord.policy         coordinator -> coordinators (PolicyUpdate)
 *   <p>.coord.resync.<id>    gateways -> new owner <id> (ResyncReport)
 *   <p>.admin.query          coordinator -> coordinators (AdminQuery)
 *   <p>.admin.reply.<id>     coordinators -> asker <id> (AdminReply)
 *   <p>.probe.<id>           a coordinator to itself: its subscriptions are live
 *   <p>.offline.<h>.<h>      JetStream: persistent emits kept for an absent peer
 * Backends (any NATS client; proto/backend.proto, README "Backends"), contract version 1; the
 * only subjects a backend's NATS user may publish on are <p>.backend.> (deploy/nats/auth.conf):
 *   <p>.backend.v1.info          backend -> any coordinator (request: Info)
 *   <p>.backend.v1.shard.<n>     backend -> owner of shard n (request: Request/Response)
 *   <p>.backend.v1.to.<id>       owner -> backend instance <id> (Batch)
 *   <p>.backend.v1.owner         coordinator -> backends: it took a shard over (Owner)
 * A gateway id named "heartbeat" or "resync" would collide with the fixed gw.*
 * subjects; ids are checked with ms_subject_id_ok where they are chosen.
 */
#ifndef MS_SUBJECT_H
#define MS_SUBJECT_H

#include <stddef.h>
#include <stdint.h>

typedef enum {
    MS_SUBJ_UNKNOWN = 0,
    MS_SUBJ_SHARD,           /* .shard.<n> (n in ms_subject_t.shard) */
    MS_SUBJ_GW,              /* .gw.<id> */
    MS_SUBJ_GW_HEARTBEAT,    /* .gw.heartbeat */
    MS_SUBJ_GW_RESYNC,       /* .gw.resync */
    MS_SUBJ_COORD_HEARTBEAT, /* .coord.heartbeat */
    MS_SUBJ_COORD_POLICY,    /* .coord.policy */
    MS_SUBJ_COORD_RESYNC,    /* .coord.resync.<id> */
    MS_SUBJ_ADMIN_QUERY,     /* .admin.query */
    MS_SUBJ_ADMIN_REPLY,     /* .admin.reply.<id> */
    MS_SUBJ_PROBE,           /* .probe.<id> */
    MS_SUBJ_BACKEND_INFO,    /* .backend.v1.info */
    MS_SUBJ_BACKEND_OWNER,   /* .backend.v1.owner */
    MS_SUBJ_BACKEND_TO,      /* .backend.v1.to.<id> */
    MS_SUBJ_BACKEND_SHARD,   /* .backend.v1.shard.<n> (n in ms_subject_t.shard) */
} ms_subject_kind_t;

/* A parsed subject. id points into the parsed string (borrowed). */
typedef struct {
    ms_subject_kind_t kind;
    uint32_t shard; /* MS_SUBJ_SHARD, MS_SUBJ_BACKEND_SHARD */
    const char *id; /* MS_SUBJ_GW, _COORD_RESYNC, _ADMIN_REPLY, _PROBE, _BACKEND_TO; else NULL */
} ms_subject_t;

/* Writes <prefix>.<subject of kind> into buf and returns buf, or NULL when it
 * does not fit (or kind is MS_SUBJ_SHARD, _BACKEND_SHARD or UNKNOWN: use
 * ms_subject_shard, ms_subject_backend_shard). id is
 * used by the kinds that name one (see above) and ignored by the others; it is
 * not checked here: ids are checked where they are chosen (ms_subject_id_ok). */
const char *ms_subject(char *buf, size_t cap, const char *prefix, ms_subject_kind_t kind,
                       const char *id);
/* <prefix>.shard.<n>, or NULL when it does not fit. */
const char *ms_subject_shard(char *buf, size_t cap, const char *prefix, uint32_t shard);
/* <prefix>.shard.*: what every coordinator subscribes (cluster.c says why). */
const char *ms_subject_shard_any(char *buf, size_t cap, const char *prefix);
/* <prefix>.backend.v1.shard.<n>, and .backend.v1.shard.* (what every coordinator subscribes). */
const char *ms_subject_backend_shard(char *buf, size_t cap, const char *prefix, uint32_t shard);
const char *ms_subject_backend_shard_any(char *buf, size_t cap, const char *prefix);
/* <prefix>.gw.<id>: the subject a gateway receives deliveries on. */
const char *ms_subject_gw(char *buf, size_t cap, const char *prefix, const char *gateway_id);

/* <prefix>.offline.<fnv(ns)>.<fnv(ns\0peer)> in hex: hashes keep arbitrary
 * namespace and peer names out of subject syntax. */
const char *ms_subject_offline(char *buf, size_t cap, const char *prefix, const char *ns,
                               const char *peer);
/* <prefix>.offline.>: the offline stream's subjects. */
const char *ms_subject_offline_any(char *buf, size_t cap, const char *prefix);

/* Parses subject under prefix. Returns its kind (MS_SUBJ_UNKNOWN for anything
 * else: another prefix, an unknown subject, a shard number that is not a plain
 * decimal below 2^32, an empty id). */
ms_subject_kind_t ms_subject_parse(const char *prefix, const char *subject, ms_subject_t *out);

/* Whether id can be the last token of a subject: non-empty, no '.', '*', '>',
 * space or control bytes. */
int ms_subject_id_ok(const char *id);

#endif
