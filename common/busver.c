/* SPDX-License-Identifier: Apache-2.0 */
/* The bus protocol version check: a wire-level peek at fields 1, 14 and 15, and the record of
 * refused senders. */
#include <stdio.h>
#include <string.h>

#include "busver.h"
#include "log.h"

static int varint(const uint8_t **p, const uint8_t *end, uint64_t *out)
{
    uint64_t v = 0;
    for (int shift = 0; shift < 64 && *p < end; shift += 7) {
        uint8_t b = *(*p)++;
        v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            *out = v;
            return 1;
        }
    }
    return 0;
}

/* Copies a string field, keeping only printable ASCII: a peer of another major may put
 * anything there, and it ends up in logs and JSON. */
static void copy_text(char *dst, size_t cap, const uint8_t *src, size_t n)
{
    size_t k = 0;
    for (size_t i = 0; i < n && k + 1 < cap; i++)
        if (src[i] >= 0x20 && src[i] < 0x7f)
            dst[k++] = (char)src[i];
    dst[k] = '\0';
}

int ms_busver_peek(const uint8_t *data, size_t len, int named, uint32_t *version, char *id,
                   size_t id_cap, char *release, size_t release_cap)
{
    const uint8_t *p = data, *end = data + len;
    *version = 0;
    if (id_cap)
        id[0] = '\0';
    if (release_cap)
        release[0] = '\0';
    while (p < end) {
        uint64_t key, v;
        if (!varint(&p, end, &key))
            return 0;
        uint64_t field = key >> 3;
        switch (key & 7) {
        case 0: /* varint */
            if (!varint(&p, end, &v))
                return 0;
            if (field == MS_BUS_VERSION_FIELD)
                *version = (uint32_t)v;
            break;
        case 1: /* 64-bit */
            if (end - p < 8)
                return 0;
            p += 8;
            break;
        case 2: /* length-delimited */
            if (!varint(&p, end, &v) || v > (uint64_t)(end - p))
                return 0;
            if (named && field == 1 && id_cap)
                copy_text(id, id_cap, p, (size_t)v);
            else if (named && field == 14 && release_cap)
                copy_text(release, release_cap, p, (size_t)v);
            p += v;
            break;
        case 5: /* 32-bit */
            if (end - p < 4)
                return 0;
            p += 4;
            break;
        default: /* groups (3, 4) are not used by proto3; 6, 7 do not exist */
            return 0;
        }
    }
    return 1;
}

void ms_busver_str(uint32_t version, char *out, size_t cap)
{
    snprintf(out, cap, "%u.%u", version >> 16, version & 0xffff);
}

static ms_busver_peer_t *peer_slot(ms_busver_t *bv, const char *role, const char *id,
                                   uint32_t version)
{
    ms_busver_peer_t *oldest = NULL;
    for (size_t i = 0; i < bv->n_peers; i++) {
        ms_busver_peer_t *p = &bv->peers[i];
        if (!strcmp(p->role, role) && !strcmp(p->id, id) && p->version == version)
            return p;
        if (!oldest || p->last_ms < oldest->last_ms)
            oldest = p;
    }
    ms_busver_peer_t *p = bv->n_peers < MS_BUSVER_PEERS ? &bv->peers[bv->n_peers++] : oldest;
    memset(p, 0, sizeof(*p));
    snprintf(p->role, sizeof(p->role), "%s", role);
    snprintf(p->id, sizeof(p->id), "%s", id);
    p->version = version;
    return p;
}

int ms_busver_accept(ms_busver_t *bv, const char *role, int named, const uint8_t *data, size_t len,
                     uint64_t now_ms)
{
    uint32_t version;
    char id[64], release[32];
    if (!ms_busver_peek(data, len, named, &version, id, sizeof(id), release, sizeof(release)))
        return 1; /* not protobuf at all: the decoder rejects it as before */
    if (version >> 16 == MS_BUS_MAJOR)
        return 1;
    bv->refused++;
    /* A message without a name (a request, a batch) counts against the named entry of the
     * same role and version if there is one: it is most likely the same node. */
    ms_busver_peer_t *p = NULL;
    if (!*id)
        for (size_t i = 0; i < bv->n_peers && !p; i++)
            if (!strcmp(bv->peers[i].role, role) && bv->peers[i].version == version)
                p = &bv->peers[i];
    if (!p)
        p = peer_slot(bv, role, id, version);
    if (*release)
        snprintf(p->release, sizeof(p->release), "%s", release);
    p->refused++;
    p->last_ms = now_ms;
    if (!bv->last_log_ms || now_ms - bv->last_log_ms >= 10000) {
        bv->last_log_ms = now_ms;
        char theirs[16], ours[16];
        ms_busver_str(version, theirs, sizeof(theirs));
        ms_busver_str(MS_BUS_VERSION, ours, sizeof(ours));
        ms_warn("refusing bus messages from %s %s%s%s: bus protocol %s%s, this node speaks "
                "%s (major versions differ; %llu refused so far)",
                role, *id ? id : "(unnamed)", *p->release ? " release " : "", p->release, theirs,
                version ? "" : " (no version: older than versioning)", ours,
                (unsigned long long)bv->refused);
    }
    return 0;
}

int ms_busver_metrics(const ms_busver_t *bv, char *buf, size_t cap)
{
    return snprintf(buf, cap,
                    "# HELP meshsig_bus_refused_total bus messages refused because the "
                    "sender's bus protocol major version differs from this node's\n"
                    "# TYPE meshsig_bus_refused_total counter\n"
                    "meshsig_bus_refused_total %llu\n",
                    (unsigned long long)bv->refused);
}
