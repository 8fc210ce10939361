/* SPDX-License-Identifier: Apache-2.0 */
/* PeerJS client frames read by a scan and server frames written by splicing, without jansson. */
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

const char *ms_pjframe_type(const char *name)
{
    for (size_t i = 0; i < sizeof(relayed) / sizeof(relayed[0]); i++)
        if (!strcmp(name, relayed[i].name))
            return relayed[i].name;
    return NULL;
}

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

/* The alphabet the owner allows in peer ids (coordinator/member.c): any
 * other dst names nobody, and the owner says so. */
static int id_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '_' || c == ':' || c == '@' || c == '-';
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
        if (!(p = ms_json_scan_string(p, end, &v, &vl, &esc)) || esc || !vl ||
            vl > MS_PJFRAME_ID_MAX)
            return NULL;
        for (size_t i = 0; i < vl; i++)
            if (!id_char(v[i]))
                return NULL;
        memcpy(sc->f->dst, v, vl);
        sc->f->dst[vl] = '\0';
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

int ms_pjframe_scan(const char *data, size_t len, ms_pjframe_t *out)
{
    const char *end = data + len;
    scan_t sc = {.f = out};
    memset(out, 0, sizeof(*out));
    const char *p = ms_json_scan_object(ms_json_ws(data, end), end, member, &sc);
    if (!p || ms_json_ws(p, end) != end || !sc.seen_type)
        return 0;
    if (key_is(sc.type, sc.type_len, "HEARTBEAT", 9)) {
        out->op = MS_PJFRAME_HEARTBEAT;
        return 1;
    }
    if (!sc.seen_dst)
        return 0; /* LEAVE without dst ends the peer: the full decoder's business */
    for (size_t i = 0; i < sizeof(relayed) / sizeof(relayed[0]); i++) {
        if (key_is(sc.type, sc.type_len, relayed[i].name, relayed[i].len)) {
            out->op = MS_PJFRAME_SIGNAL;
            out->type = relayed[i].name;
            out->expires = relayed[i].expires;
            return 1;
        }
    }
    return 0;
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

size_t ms_pjframe_write(char *out, const char *type, const char *src, const char *dst,
                        const char *payload, size_t payload_len)
{
    char *o = out;
    o = put(o, h_type, sizeof(h_type) - 1);
    o = put(o, type, strlen(type));
    o = put(o, h_src, sizeof(h_src) - 1);
    o = put(o, src, strlen(src));
    o = put(o, h_dst, sizeof(h_dst) - 1);
    o = put(o, dst, strlen(dst));
    if (payload) {
        o = put(o, h_payload, sizeof(h_payload) - 1);
        o = put(o, payload, payload_len);
    } else {
        *o++ = '"';
    }
    *o++ = '}';
    return (size_t)(o - out);
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
