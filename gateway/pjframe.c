/* SPDX-License-Identifier: Apache-2.0 */
/* PeerJS client frames read by a scan and server frames written by splicing, without jansson. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "jsonscan.h"
#include "jsonvalue.h"
#include "pjframe.h"

/* The types a PeerJS client relays through the server (peer 1.x's MessageHandler). */
static const struct {
    const char *name;
    size_t len;
    int expires;
} relayed[] = {
    {"OFFER", 5, 1}, {"ANSWER", 6, 1}, {"CANDIDATE", 9, 1}, {"LEAVE", 5, 0}, {"EXPIRE", 6, 0},
};

/* The index in relayed[] of the type t[0..n), or -1. Compared with constant
 * lengths, which the compiler does inline. */
static int relayed_find(const char *t, size_t n)
{
    switch (n) {
    case 5:
        return !memcmp(t, "OFFER", 5) ? 0 : !memcmp(t, "LEAVE", 5) ? 3 : -1;
    case 6:
        return !memcmp(t, "ANSWER", 6) ? 1 : !memcmp(t, "EXPIRE", 6) ? 4 : -1;
    case 9:
        return !memcmp(t, "CANDIDATE", 9) ? 2 : -1;
    default:
        return -1;
    }
}

static int is_heartbeat(const char *t, size_t n)
{
    return n == 9 && !memcmp(t, "HEARTBEAT", 9);
}

const char *ms_pjframe_type_n(const char *name, size_t *len)
{
    int i = relayed_find(name, strlen(name));
    if (i < 0)
        return NULL;
    if (len)
        *len = relayed[i].len;
    return relayed[i].name;
}

const char *ms_pjframe_type(const char *name)
{
    return ms_pjframe_type_n(name, NULL);
}

/* The alphabet the owner allows in peer ids (coordinator/member.c): any
 * other dst names nobody, and the owner says so. A-Z a-z 0-9 . _ : @ - as
 * a bit map of the 128 ASCII bytes. */
static const uint64_t id_bits[2] = {0x07ff600000000000ull, 0x07fffffe87ffffffull};

static inline int id_char(char c)
{
    unsigned char u = (unsigned char)c;
    return u < 128 && (id_bits[u >> 6] >> (u & 63)) & 1;
}

static void clear(ms_pjframe_t *f)
{
    f->op = 0;
    f->type = NULL;
    f->expires = 0;
    f->type_len = f->dst_len = 0;
    f->dst[0] = '\0';
    f->payload = NULL;
    f->payload_len = 0;
}

/* d[0..n), a peer id's characters, as the frame's target. */
static int put_dst(ms_pjframe_t *f, const char *d, size_t n)
{
    if (!n || n > MS_PJFRAME_ID_MAX)
        return 0;
    memcpy(f->dst, d, n);
    f->dst[n] = '\0';
    f->dst_len = n;
    return 1;
}

/* d[0..n) as the frame's target, when it is a peer id. */
static int set_dst(ms_pjframe_t *f, const char *d, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!id_char(d[i]))
            return 0;
    return put_dst(f, d, n);
}

/* What the scan vouches for once the members are read: 1 or 0, as ms_pjframe_scan. */
static int classify(ms_pjframe_t *f, const char *type, size_t type_len, int seen_dst)
{
    if (is_heartbeat(type, type_len)) {
        f->op = MS_PJFRAME_HEARTBEAT;
        return 1;
    }
    if (!seen_dst)
        return 0; /* LEAVE without dst ends the peer: the full decoder's business */
    int i = relayed_find(type, type_len);
    if (i < 0)
        return 0;
    f->op = MS_PJFRAME_SIGNAL;
    f->type = relayed[i].name;
    f->type_len = relayed[i].len;
    f->expires = relayed[i].expires;
    return 1;
}

/* ---- the general scan: any member order, whitespace ---- */

typedef struct {
    ms_pjframe_t *f;
    const char *type;
    size_t type_len;
    int seen_type, seen_dst, seen_payload;
} scan_t;

static int key_is(const char *k, size_t kl, const char *name, size_t nl)
{
    return kl == nl && !memcmp(k, name, nl);
}

static const char *member(void *ud, const char *k, size_t kl, const char *p, const char *end)
{
    scan_t *sc = ud;
    const char *v;
    size_t vl;
    int esc;
    if (key_is(k, kl, "type", 4) && !sc->seen_type) {
        sc->seen_type = 1;
        if (!(p = ms_json_scan_string(p, end, &v, &vl, &esc)) || esc)
            return NULL;
        sc->type = v;
        sc->type_len = vl;
        return p;
    }
    if (key_is(k, kl, "dst", 3) && !sc->seen_dst) {
        sc->seen_dst = 1;
        if (!(p = ms_json_scan_string(p, end, &v, &vl, &esc)) || esc || !set_dst(sc->f, v, vl))
            return NULL;
        return p;
    }
    if (key_is(k, kl, "payload", 7) && !sc->seen_payload) {
        sc->seen_payload = 1;
        const char *after = ms_json_scan(p, end);
        if (after) {
            sc->f->payload = p;
            sc->f->payload_len = (size_t)(after - p);
        }
        return after;
    }
    return NULL; /* another key, or one a second time: the full decoder decides */
}

int ms_pjframe_scan_any(const char *data, size_t len, ms_pjframe_t *out)
{
    const char *end = data + len;
    scan_t sc = {.f = out};
    clear(out);
    const char *p = ms_json_scan_object(ms_json_ws(data, end), end, member, &sc);
    if (!p || ms_json_ws(p, end) != end || !sc.seen_type)
        return 0;
    return classify(out, sc.type, sc.type_len, sc.seen_dst);
}

/* ---- the walk for the client's own layout ---- */

static int lit(const char *p, const char *end, const char *s, size_t n)
{
    return (size_t)(end - p) >= n && !memcmp(p, s, n);
}

/* {"type":"T" then ,"dst":"D" and ,"payload":V in either order, each at most
 * once, then } and nothing after it: JSON.stringify of the PeerJS client's
 * {type, payload, dst}, and the usual hand-written order. Vouches for a subset
 * of what ms_pjframe_scan_any does, with the same result: 1 (out filled), or
 * -1 for anything else (another layout, or invalid), which the general scan
 * then decides. */
static int scan_compact(const char *p, const char *end, ms_pjframe_t *out)
{
    if (!lit(p, end, "{\"type\":\"", 9))
        return -1;
    p += 9;
    const char *type = p;
    while (p < end && *p >= 'A' && *p <= 'Z')
        p++;
    if (p >= end || *p != '"')
        return -1;
    size_t type_len = (size_t)(p - type);
    p++;
    int seen_dst = 0, seen_payload = 0;
    clear(out);
    for (;;) {
        if (p >= end)
            return -1;
        if (*p == '}')
            break;
        if (*p != ',')
            return -1;
        p++;
        if (!seen_dst && lit(p, end, "\"dst\":\"", 7)) {
            p += 7;
            const char *d = p;
            while (p < end && id_char(*p))
                p++;
            if (p >= end || *p != '"' || !put_dst(out, d, (size_t)(p - d)))
                return -1;
            p++;
            seen_dst = 1;
        } else if (!seen_payload && lit(p, end, "\"payload\":", 10)) {
            p += 10;
            const char *after = ms_json_scan(p, end);
            if (!after)
                return -1;
            out->payload = p;
            out->payload_len = (size_t)(after - p);
            p = after;
            seen_payload = 1;
        } else {
            return -1;
        }
    }
    if (p + 1 != end || !classify(out, type, type_len, seen_dst))
        return -1;
    return 1;
}

int ms_pjframe_scan(const char *data, size_t len, ms_pjframe_t *out)
{
    if (scan_compact(data, data + len, out) == 1)
        return 1;
    return ms_pjframe_scan_any(data, len, out);
}

static const char h_type[] = "{\"type\":\"", h_src[] = "\",\"src\":\"", h_dst[] = "\",\"dst\":\"",
                  h_payload[] = "\",\"payload\":";

size_t ms_pjframe_size(const char *type, const char *src, const char *dst, size_t payload_len)
{
    return sizeof(h_type) + sizeof(h_src) + sizeof(h_dst) + sizeof(h_payload) + strlen(type) +
           strlen(src) + strlen(dst) + payload_len + 2;
}

static char *put(char *o, const char *s, size_t n)
{
    memcpy(o, s, n);
    return o + n;
}

size_t ms_pjframe_write_n(char *out, const char *type, size_t type_len, const char *src,
                          size_t src_len, const char *dst, size_t dst_len, const char *payload,
                          size_t payload_len)
{
    char *o = out;
    o = put(o, h_type, sizeof(h_type) - 1);
    o = put(o, type, type_len);
    o = put(o, h_src, sizeof(h_src) - 1);
    o = put(o, src, src_len);
    o = put(o, h_dst, sizeof(h_dst) - 1);
    o = put(o, dst, dst_len);
    if (payload) {
        o = put(o, h_payload, sizeof(h_payload) - 1);
        o = put(o, payload, payload_len);
    } else {
        *o++ = '"';
    }
    *o++ = '}';
    return (size_t)(o - out);
}

size_t ms_pjframe_write(char *out, const char *type, const char *src, const char *dst,
                        const char *payload, size_t payload_len)
{
    return ms_pjframe_write_n(out, type, strlen(type), src, strlen(src), dst, strlen(dst), payload,
                              payload_len);
}

/* 1 when s needs no JSON escaping (and is printable ASCII). */
static int plain(const char *s)
{
    for (; *s; s++)
        if (*s == '"' || *s == '\\' || (unsigned char)*s < 0x20 || (unsigned char)*s >= 0x7f)
            return 0;
    return 1;
}

static int reserve(char **buf, size_t *cap, size_t need)
{
    if (need <= *cap)
        return 0;
    char *nb = realloc(*buf, need);
    if (!nb)
        return -1;
    *buf = nb;
    *cap = need;
    return 0;
}

ms_err_t ms_pjframe_append_signal(char **buf, size_t *len, size_t *cap, const char *from,
                                  const char *to, const Meshsig__V1__Value *payload)
{
    const Meshsig__V1__Value *v = payload;
    if (!v || v->kind_case != MESHSIG__V1__VALUE__KIND_STRUCT_VALUE || !v->struct_value || !from ||
        !to || !plain(from) || !plain(to))
        return MS_ERR_INVAL;
    const Meshsig__V1__Struct *st = v->struct_value;
    const char *type = NULL;
    const Meshsig__V1__Value *pl = NULL;
    for (size_t i = 0; i < st->n_fields; i++) {
        const Meshsig__V1__Struct__FieldsEntry *e = st->fields[i];
        if (!e->key)
            return MS_ERR_INVAL;
        if (!strcmp(e->key, "type")) {
            if (type || !e->value || e->value->kind_case != MESHSIG__V1__VALUE__KIND_STRING_VALUE ||
                !e->value->string_value || !plain(e->value->string_value))
                return MS_ERR_INVAL;
            type = e->value->string_value;
        } else if (!strcmp(e->key, "payload")) {
            if (pl || !e->value)
                return MS_ERR_INVAL;
            pl = e->value;
        }
    }
    if (!type)
        return MS_ERR_INVAL;
    size_t at = *len;
    if (reserve(buf, cap, at + ms_pjframe_size(type, from, to, 0) + 2))
        return MS_ERR_NOMEM;
    /* The head without its closing brace, then the payload, then the brace. */
    size_t n = at + ms_pjframe_write(*buf + at, type, from, to, pl ? "" : NULL, 0) - 1;
    if (pl) {
        ms_err_t err = ms_codec_append_json(&pl->base, buf, &n, cap);
        if (err != MS_OK)
            return err;
        if (reserve(buf, cap, n + 2))
            return MS_ERR_NOMEM;
    }
    (*buf)[n++] = '}';
    (*buf)[n] = '\0';
    *len = n;
    return MS_OK;
}

ms_err_t ms_pjframe_value_init(ms_pjframe_value_t *v, const ms_pjframe_t *f)
{
    memset(v, 0, sizeof(*v));
    if (f->payload) {
        /* The scan vouched for it: built without jansson. */
        Meshsig__V1__Value *pl = NULL;
        ms_err_t err = ms_json_value_build(f->payload, f->payload_len, &pl);
        if (err != MS_OK)
            return err;
        v->payload = &pl->base;
    }
    meshsig__v1__value__init(&v->type);
    v->type.kind_case = MESHSIG__V1__VALUE__KIND_STRING_VALUE;
    v->type.string_value = (char *)f->type;
    meshsig__v1__struct__fields_entry__init(&v->e_type);
    v->e_type.key = (char *)"type";
    v->e_type.value = &v->type;
    meshsig__v1__struct__fields_entry__init(&v->e_payload);
    v->e_payload.key = (char *)"payload";
    v->e_payload.value = (Meshsig__V1__Value *)v->payload;
    v->fields[0] = &v->e_type;
    v->fields[1] = &v->e_payload;
    meshsig__v1__struct__init(&v->st);
    v->st.n_fields = v->payload ? 2 : 1;
    v->st.fields = v->fields;
    meshsig__v1__value__init(&v->body);
    v->body.kind_case = MESHSIG__V1__VALUE__KIND_STRUCT_VALUE;
    v->body.struct_value = &v->st;
    return MS_OK;
}

void ms_pjframe_value_cleanup(ms_pjframe_value_t *v)
{
    ms_codec_free(v->payload);
    v->payload = NULL;
}
