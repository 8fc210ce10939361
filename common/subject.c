/* SPDX-License-Identifier: Apache-2.0 */
/* The bus subjects: builders and the one parser (subject.h lists them). */
#include "subject.h"

#include <stdio.h>
#include <string.h>

#include "hash.h"

/* The tail after "<prefix>." of each fixed-form kind; kinds that end in an id
 * end in '.' here. Indexed by ms_subject_kind_t. */
static const char *const tails[] = {
    [MS_SUBJ_GW] = "gw.",
    [MS_SUBJ_GW_HEARTBEAT] = "gw.heartbeat",
    [MS_SUBJ_GW_RESYNC] = "gw.resync",
    [MS_SUBJ_COORD_HEARTBEAT] = "coord.heartbeat",
    [MS_SUBJ_COORD_POLICY] = "coord.policy",
    [MS_SUBJ_COORD_RESYNC] = "coord.resync.",
    [MS_SUBJ_ADMIN_QUERY] = "admin.query",
    [MS_SUBJ_ADMIN_REPLY] = "admin.reply.",
    [MS_SUBJ_PROBE] = "probe.",
    [MS_SUBJ_BACKEND_INFO] = "backend.v1.info",
    [MS_SUBJ_BACKEND_OWNER] = "backend.v1.owner",
    [MS_SUBJ_BACKEND_TO] = "backend.v1.to.",
};
#define N_TAILS (sizeof(tails) / sizeof(tails[0]))

static int ends_in_id(const char *tail)
{
    return tail[strlen(tail) - 1] == '.';
}

static const char *fit(char *buf, size_t cap, int n)
{
    return n >= 0 && (size_t)n < cap ? buf : NULL;
}

const char *ms_subject(char *buf, size_t cap, const char *prefix, ms_subject_kind_t kind,
                       const char *id)
{
    if ((size_t)kind >= N_TAILS || !tails[kind])
        return NULL;
    const char *t = tails[kind];
    return fit(buf, cap, snprintf(buf, cap, "%s.%s%s", prefix, t, ends_in_id(t) && id ? id : ""));
}

const char *ms_subject_shard(char *buf, size_t cap, const char *prefix, uint32_t shard)
{
    /* Built by hand: every request a gateway sends its owner (each signal on the owner's path)
     * names this subject, and printf's format parsing cost more than the copy. */
    static const char mid[] = ".shard.";
    char digits[10];
    size_t n = 0, pl = strlen(prefix);
    for (uint32_t v = shard; v || !n; v /= 10)
        digits[n++] = (char)('0' + v % 10);
    if (pl + sizeof(mid) - 1 + n >= cap)
        return NULL;
    memcpy(buf, prefix, pl);
    memcpy(buf + pl, mid, sizeof(mid) - 1);
    pl += sizeof(mid) - 1;
    while (n)
        buf[pl++] = digits[--n];
    buf[pl] = '\0';
    return buf;
}

const char *ms_subject_shard_any(char *buf, size_t cap, const char *prefix)
{
    return fit(buf, cap, snprintf(buf, cap, "%s.shard.*", prefix));
}

#define BACKEND_SHARD "backend.v1.shard."

const char *ms_subject_backend_shard(char *buf, size_t cap, const char *prefix, uint32_t shard)
{
    return fit(buf, cap, snprintf(buf, cap, "%s." BACKEND_SHARD "%u", prefix, shard));
}

const char *ms_subject_backend_shard_any(char *buf, size_t cap, const char *prefix)
{
    return fit(buf, cap, snprintf(buf, cap, "%s." BACKEND_SHARD "*", prefix));
}

const char *ms_subject_gw(char *buf, size_t cap, const char *prefix, const char *gateway_id)
{
    return ms_subject(buf, cap, prefix, MS_SUBJ_GW, gateway_id);
}

const char *ms_subject_offline(char *buf, size_t cap, const char *prefix, const char *ns,
                               const char *peer)
{
    size_t nl = strlen(ns), pl = strlen(peer);
    char key[600];
    uint64_t hn = ms_fnv1a64(ns, nl), hp = 0;
    if (nl + pl + 1 < sizeof(key)) {
        memcpy(key, ns, nl);
        key[nl] = '\0';
        memcpy(key + nl + 1, peer, pl);
        hp = ms_fnv1a64(key, nl + 1 + pl);
    }
    return fit(buf, cap,
               snprintf(buf, cap, "%s.offline.%016llx.%016llx", prefix, (unsigned long long)hn,
                        (unsigned long long)hp));
}

const char *ms_subject_offline_any(char *buf, size_t cap, const char *prefix)
{
    return fit(buf, cap, snprintf(buf, cap, "%s.offline.>", prefix));
}

int ms_subject_id_ok(const char *id)
{
    if (!id || !*id)
        return 0;
    for (const unsigned char *p = (const unsigned char *)id; *p; p++)
        if (*p <= ' ' || *p == 0x7f || *p == '.' || *p == '*' || *p == '>')
            return 0;
    return 1;
}

/* A plain decimal below 2^32: digits only, no sign, no spaces. */
static int parse_u32(const char *s, uint32_t *out)
{
    uint64_t v = 0;
    if (!*s)
        return 0;
    for (; *s; s++) {
        if (*s < '0' || *s > '9')
            return 0;
        v = v * 10 + (uint64_t)(*s - '0');
        if (v > UINT32_MAX)
            return 0;
    }
    *out = (uint32_t)v;
    return 1;
}

ms_subject_kind_t ms_subject_parse(const char *prefix, const char *subject, ms_subject_t *out)
{
    out->kind = MS_SUBJ_UNKNOWN;
    out->shard = 0;
    out->id = NULL;
    size_t pl = strlen(prefix);
    if (strncmp(subject, prefix, pl) || subject[pl] != '.')
        return MS_SUBJ_UNKNOWN;
    const char *rest = subject + pl + 1;
    if (!strncmp(rest, "shard.", 6)) {
        if (parse_u32(rest + 6, &out->shard))
            out->kind = MS_SUBJ_SHARD;
        return out->kind;
    }
    if (!strncmp(rest, BACKEND_SHARD, strlen(BACKEND_SHARD))) {
        if (parse_u32(rest + strlen(BACKEND_SHARD), &out->shard))
            out->kind = MS_SUBJ_BACKEND_SHARD;
        return out->kind;
    }
    /* Exact subjects first: "gw.heartbeat" is not gateway "heartbeat". */
    for (size_t k = 0; k < N_TAILS; k++)
        if (tails[k] && !ends_in_id(tails[k]) && !strcmp(rest, tails[k]))
            return out->kind = (ms_subject_kind_t)k;
    for (size_t k = 0; k < N_TAILS; k++) {
        if (!tails[k] || !ends_in_id(tails[k]))
            continue;
        size_t tl = strlen(tails[k]);
        if (strncmp(rest, tails[k], tl) || !rest[tl])
            continue;
        out->id = rest + tl;
        return out->kind = (ms_subject_kind_t)k;
    }
    return MS_SUBJ_UNKNOWN;
}
