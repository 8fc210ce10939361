/* SPDX-License-Identifier: Apache-2.0 */
/* Generic protobuf <-> proto3 JSON codec that walks protobuf-c descriptors. */
#include "codec.h"
#include "wkt.h"

#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Bounds the recursion a hostile client can cause (see codec.h). Output may
 * nest MS_CODEC_WRAP_DEPTH deeper than input: a server message wraps what a
 * client sent in at most that many more levels. */
#define MAX_DEPTH MS_CODEC_MAX_DEPTH
#define MAX_OUT_DEPTH (MS_CODEC_MAX_DEPTH + MS_CODEC_WRAP_DEPTH)

/* The texts name the limit, so a client that hits one knows which. */
#define STR_(x) #x
#define STR(x) STR_(x)
#define TOO_DEEP "nested deeper than " STR(MS_CODEC_MAX_DEPTH) " levels"
#define TOO_MANY "more than " STR(MS_CODEC_MAX_ELEMENTS) " elements in one array or object"
#define TOO_LONG "a string longer than " STR(MS_CODEC_MAX_STRING) " bytes"

#define MEMBER(msg, off) ((char *)(msg) + (off))
#define CMEMBER(msg, off) ((const char *)(msg) + (off))

static bool is_null_enum(const ProtobufCEnumDescriptor *ed)
{
    return strcmp(ed->short_name, "NullValue") == 0 && ms_wkt_package(ed->package_name);
}

static size_t elem_size(ProtobufCType t)
{
    switch (t) {
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
    case PROTOBUF_C_TYPE_DOUBLE:
        return 8;
    case PROTOBUF_C_TYPE_BOOL:
        return sizeof(protobuf_c_boolean);
    case PROTOBUF_C_TYPE_STRING:
        return sizeof(char *);
    case PROTOBUF_C_TYPE_BYTES:
        return sizeof(ProtobufCBinaryData);
    case PROTOBUF_C_TYPE_MESSAGE:
        return sizeof(ProtobufCMessage *);
    default:
        return 4;
    }
}

/* ======================================================================== */
/* Output: JSON text written straight into a growable buffer.              */

typedef struct {
    char *p;
    size_t len, cap;
    ms_err_t err; /* sticky: once set, every write is a no-op */
} wbuf_t;

static bool w_reserve(wbuf_t *w, size_t n)
{
    if (w->err)
        return false;
    if (n <= w->cap - w->len)
        return true;
    size_t need = w->len + n;
    if (need < w->len) {
        w->err = MS_ERR_NOMEM;
        return false;
    }
    size_t nc = w->cap < 256 ? 256 : w->cap;
    while (nc < need)
        nc = nc > SIZE_MAX / 2 ? need : nc * 2;
    char *np = realloc(w->p, nc);
    if (!np) {
        w->err = MS_ERR_NOMEM;
        return false;
    }
    w->p = np;
    w->cap = nc;
    return true;
}

static void w_mem(wbuf_t *w, const void *s, size_t n)
{
    if (n && w_reserve(w, n)) {
        memcpy(w->p + w->len, s, n);
        w->len += n;
    }
}

#define w_lit(w, s) w_mem((w), (s), sizeof(s) - 1)

static void w_ch(wbuf_t *w, char c)
{
    if (w_reserve(w, 1))
        w->p[w->len++] = c;
}

static void w_u64(wbuf_t *w, uint64_t v)
{
    char tmp[20];
    int i = 20;
    do {
        tmp[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    w_mem(w, tmp + i, (size_t)(20 - i));
}

static void w_i64(wbuf_t *w, int64_t v)
{
    if (v < 0) {
        w_ch(w, '-');
        w_u64(w, (uint64_t)0 - (uint64_t)v);
    } else {
        w_u64(w, (uint64_t)v);
    }
}

/* Shortest text that reads back as the same value; integral values below 1e15
 * are printed as plain integers (the common case, and no snprintf). */
static void w_real(wbuf_t *w, double v, bool is_float)
{
    if (isnan(v)) {
        w_lit(w, "\"NaN\"");
        return;
    }
    if (isinf(v)) {
        if (v > 0)
            w_lit(w, "\"Infinity\"");
        else
            w_lit(w, "\"-Infinity\"");
        return;
    }
    if (fabs(v) < 1e15 && v == (double)(int64_t)v) {
        /* "-0" would come back through jansson as the integer 0 */
        if (v == 0 && signbit(v))
            w_lit(w, "-0.0");
        else
            w_i64(w, (int64_t)v);
        return;
    }
    char tmp[40];
    int n;
    if (is_float) {
        n = snprintf(tmp, sizeof(tmp), "%.6g", v);
        if (strtof(tmp, NULL) != (float)v)
            n = snprintf(tmp, sizeof(tmp), "%.9g", v);
    } else {
        n = snprintf(tmp, sizeof(tmp), "%.15g", v);
        if (strtod(tmp, NULL) != v)
            n = snprintf(tmp, sizeof(tmp), "%.17g", v);
    }
    if (n > 0)
        w_mem(w, tmp, (size_t)n);
}

/* Length of the valid UTF-8 sequence at p, 0 if invalid (overlong,
 * surrogate, beyond U+10FFFF or truncated). */
static size_t utf8_len(const unsigned char *p, const unsigned char *end)
{
    unsigned char c = p[0];
    size_t avail = (size_t)(end - p);
    if (c >= 0xc2 && c <= 0xdf)
        return avail >= 2 && (p[1] & 0xc0) == 0x80 ? 2 : 0;
    if (c >= 0xe0 && c <= 0xef) {
        if (avail < 3 || (p[1] & 0xc0) != 0x80 || (p[2] & 0xc0) != 0x80)
            return 0;
        if ((c == 0xe0 && p[1] < 0xa0) || (c == 0xed && p[1] >= 0xa0))
            return 0;
        return 3;
    }
    if (c >= 0xf0 && c <= 0xf4) {
        if (avail < 4 || (p[1] & 0xc0) != 0x80 || (p[2] & 0xc0) != 0x80 || (p[3] & 0xc0) != 0x80)
            return 0;
        if ((c == 0xf0 && p[1] < 0x90) || (c == 0xf4 && p[1] >= 0x90))
            return 0;
        return 4;
    }
    return 0;
}

#define ONES 0x0101010101010101ull
#define HIGHS 0x8080808080808080ull

/* Non-zero when one of the 8 bytes in v is below 0x20, '"', '\\' or not ASCII. */
static inline uint64_t swar_special(uint64_t v)
{
    uint64_t q = v ^ (ONES * '"'), b = v ^ (ONES * '\\');
    return ((v - ONES * 0x20) & ~v) | ((q - ONES) & ~q) | ((b - ONES) & ~b) | (v & HIGHS);
}

/* Strings from binary clients are not validated by protobuf-c; an invalid
 * byte becomes U+FFFD so that a text frame never carries broken UTF-8 (a
 * browser would drop the connection). Works in chunks with room reserved for
 * the worst case (6 bytes out per byte in), so the inner loop never checks
 * capacity; plain ASCII runs are copied 8 bytes at a time. */
static void w_string(wbuf_t *w, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *p = (const unsigned char *)s, *end = p + n;
    w_ch(w, '"');
    while (p < end) {
        size_t chunk = (size_t)(end - p) < 4096 ? (size_t)(end - p) : 4096;
        const unsigned char *cend = p + chunk;
        if (!w_reserve(w, chunk * 6 + 2))
            return;
        char *o = w->p + w->len;
        while (p < cend) {
            while (cend - p >= 8) {
                uint64_t v;
                memcpy(&v, p, 8);
                if (swar_special(v) & HIGHS)
                    break;
                memcpy(o, p, 8);
                o += 8;
                p += 8;
            }
            if (p >= cend)
                break;
            unsigned char c = *p;
            if (c >= 0x20 && c < 0x80 && c != '"' && c != '\\') {
                *o++ = (char)c;
                p++;
                continue;
            }
            if (c >= 0x80) {
                /* may run past cend by up to 3 bytes: covered by this byte's 6 */
                size_t k = utf8_len(p, end);
                if (k) {
                    memcpy(o, p, k);
                    o += k;
                    p += k;
                } else {
                    memcpy(o, "\xef\xbf\xbd", 3);
                    o += 3;
                    p++;
                }
                continue;
            }
            *o++ = '\\';
            switch (c) {
            case '"':
            case '\\':
                *o++ = (char)c;
                break;
            case '\n':
                *o++ = 'n';
                break;
            case '\r':
                *o++ = 'r';
                break;
            case '\t':
                *o++ = 't';
                break;
            case '\b':
                *o++ = 'b';
                break;
            case '\f':
                *o++ = 'f';
                break;
            default:
                memcpy(o, "u00", 3);
                o[3] = hex[c >> 4];
                o[4] = hex[c & 15];
                o += 5;
            }
            p++;
        }
        w->len = (size_t)(o - w->p);
    }
    w_ch(w, '"');
}

static void w_cstr(wbuf_t *w, const char *s)
{
    w_string(w, s ? s : "", s ? strlen(s) : 0);
}

static void w_base64(wbuf_t *w, const uint8_t *d, size_t n)
{
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    if (n > (SIZE_MAX - 2) / 4 * 3 - 3) {
        w->err = MS_ERR_NOMEM;
        return;
    }
    size_t out = (n + 2) / 3 * 4 + 2;
    if (!w_reserve(w, out))
        return;
    char *o = w->p + w->len;
    *o++ = '"';
    size_t i = 0;
    for (; i + 3 <= n; i += 3) {
        uint32_t v = (uint32_t)d[i] << 16 | (uint32_t)d[i + 1] << 8 | d[i + 2];
        *o++ = tab[v >> 18];
        *o++ = tab[(v >> 12) & 63];
        *o++ = tab[(v >> 6) & 63];
        *o++ = tab[v & 63];
    }
    if (n - i == 1) {
        uint32_t v = (uint32_t)d[i] << 16;
        *o++ = tab[v >> 18];
        *o++ = tab[(v >> 12) & 63];
        *o++ = '=';
        *o++ = '=';
    } else if (n - i == 2) {
        uint32_t v = (uint32_t)d[i] << 16 | (uint32_t)d[i + 1] << 8;
        *o++ = tab[v >> 18];
        *o++ = tab[(v >> 12) & 63];
        *o++ = tab[(v >> 6) & 63];
        *o++ = '=';
    }
    *o++ = '"';
    w->len = (size_t)(o - w->p);
}

/* "peer_id" -> "peerId": written in place, so no per-field allocation. */
static void w_name(wbuf_t *w, const char *name, bool comma)
{
    size_t n = strlen(name);
    if (!w_reserve(w, n + 4))
        return;
    char *o = w->p + w->len;
    if (comma)
        *o++ = ',';
    *o++ = '"';
    bool up = false;
    for (; *name; name++) {
        char c = *name;
        if (c == '_') {
            up = true;
            continue;
        }
        if (up && c >= 'a' && c <= 'z')
            c = (char)(c - 'a' + 'A');
        up = false;
        *o++ = c;
    }
    *o++ = '"';
    *o++ = ':';
    w->len = (size_t)(o - w->p);
}

static void w_message(wbuf_t *w, const ProtobufCMessage *m, int depth);
static void w_wkt_value(wbuf_t *w, const ProtobufCMessage *m, int depth);

static bool w_depth_ok(wbuf_t *w, int depth)
{
    if (depth <= MAX_OUT_DEPTH)
        return true;
    if (!w->err)
        w->err = MS_ERR_INVAL;
    return false;
}

static void w_enum(wbuf_t *w, const ProtobufCEnumDescriptor *ed, int v)
{
    if (is_null_enum(ed)) {
        w_lit(w, "null");
        return;
    }
    const ProtobufCEnumValue *ev = protobuf_c_enum_descriptor_get_value(ed, v);
    if (ev) {
        w_ch(w, '"');
        w_mem(w, ev->name, strlen(ev->name));
        w_ch(w, '"');
    } else {
        w_i64(w, v); /* proto3 enums are open: keep numbers we have no name for */
    }
}

/* One value (a singular field, or one element of a repeated one) at mem. */
static void w_single(wbuf_t *w, const ProtobufCFieldDescriptor *fd, const void *mem, int depth)
{
    switch (fd->type) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
        w_i64(w, *(const int32_t *)mem);
        break;
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
        w_u64(w, *(const uint32_t *)mem);
        break;
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
        w_ch(w, '"');
        w_i64(w, *(const int64_t *)mem);
        w_ch(w, '"');
        break;
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        w_ch(w, '"');
        w_u64(w, *(const uint64_t *)mem);
        w_ch(w, '"');
        break;
    case PROTOBUF_C_TYPE_FLOAT:
        w_real(w, *(const float *)mem, true);
        break;
    case PROTOBUF_C_TYPE_DOUBLE:
        w_real(w, *(const double *)mem, false);
        break;
    case PROTOBUF_C_TYPE_BOOL:
        if (*(const protobuf_c_boolean *)mem)
            w_lit(w, "true");
        else
            w_lit(w, "false");
        break;
    case PROTOBUF_C_TYPE_ENUM:
        w_enum(w, fd->descriptor, *(const int *)mem);
        break;
    case PROTOBUF_C_TYPE_STRING:
        w_cstr(w, *(char *const *)mem);
        break;
    case PROTOBUF_C_TYPE_BYTES: {
        const ProtobufCBinaryData *bd = mem;
        w_base64(w, bd->data, bd->len);
        break;
    }
    case PROTOBUF_C_TYPE_MESSAGE: {
        const ProtobufCMessage *sub = *(ProtobufCMessage *const *)mem;
        if (sub)
            w_message(w, sub, depth);
        else if (ms_wkt_of(fd->descriptor) == MS_WKT_VALUE)
            w_lit(w, "null");
        else
            w_lit(w, "{}");
        break;
    }
    }
}

static void w_map(wbuf_t *w, const ProtobufCFieldDescriptor *fd, ProtobufCMessage *const *ents,
                  size_t n, int depth)
{
    if (!w_depth_ok(w, depth))
        return;
    const ProtobufCMessageDescriptor *ed = fd->descriptor;
    const ProtobufCFieldDescriptor *kf = &ed->fields[0], *vf = &ed->fields[1];
    w_ch(w, '{');
    for (size_t i = 0; i < n && !w->err; i++) {
        const ProtobufCMessage *e = ents[i];
        if (i)
            w_ch(w, ',');
        const void *k = CMEMBER(e, kf->offset);
        switch (kf->type) {
        case PROTOBUF_C_TYPE_STRING:
            w_cstr(w, *(char *const *)k);
            break;
        case PROTOBUF_C_TYPE_BOOL:
            if (*(const protobuf_c_boolean *)k)
                w_lit(w, "\"true\"");
            else
                w_lit(w, "\"false\"");
            break;
        case PROTOBUF_C_TYPE_INT64:
        case PROTOBUF_C_TYPE_SINT64:
        case PROTOBUF_C_TYPE_SFIXED64:
        case PROTOBUF_C_TYPE_UINT64:
        case PROTOBUF_C_TYPE_FIXED64:
            w_single(w, kf, k, depth + 1); /* already quoted */
            break;
        default:
            w_ch(w, '"');
            w_single(w, kf, k, depth + 1);
            w_ch(w, '"');
        }
        w_ch(w, ':');
        w_single(w, vf, CMEMBER(e, vf->offset), depth + 1);
    }
    w_ch(w, '}');
}

/* Matches protobuf-c's own test for what proto3 packing omits (bitwise zero
 * for numbers, so -0.0 is kept), so proto -> JSON -> proto is byte-exact. */
static bool is_default(const ProtobufCFieldDescriptor *fd, const void *mem)
{
    switch (fd->type) {
    case PROTOBUF_C_TYPE_BOOL:
        return *(const protobuf_c_boolean *)mem == 0;
    case PROTOBUF_C_TYPE_STRING: {
        const char *s = *(char *const *)mem;
        return !s || !*s;
    }
    case PROTOBUF_C_TYPE_BYTES:
        return ((const ProtobufCBinaryData *)mem)->len == 0;
    case PROTOBUF_C_TYPE_MESSAGE:
        return *(ProtobufCMessage *const *)mem == NULL;
    default:
        if (elem_size(fd->type) == 8)
            return *(const uint64_t *)mem == 0;
        return *(const uint32_t *)mem == 0;
    }
}

static bool is_present(const ProtobufCMessage *m, const ProtobufCFieldDescriptor *fd,
                       const void *mem)
{
    if (fd->flags & PROTOBUF_C_FIELD_FLAG_ONEOF)
        return *(const uint32_t *)CMEMBER(m, fd->quantifier_offset) == fd->id;
    if (fd->label == PROTOBUF_C_LABEL_REQUIRED)
        return true;
    if (fd->label == PROTOBUF_C_LABEL_OPTIONAL) {
        if (fd->type == PROTOBUF_C_TYPE_MESSAGE || fd->type == PROTOBUF_C_TYPE_STRING) {
            const void *p = *(void *const *)mem;
            return p && p != fd->default_value;
        }
        return *(const protobuf_c_boolean *)CMEMBER(m, fd->quantifier_offset);
    }
    return !is_default(fd, mem);
}

static void w_wkt_struct(wbuf_t *w, const ProtobufCMessage *m, int depth)
{
    const ProtobufCFieldDescriptor *fd = protobuf_c_message_descriptor_get_field(m->descriptor, 1);
    if (!fd || !ms_wkt_is_map(fd)) {
        w->err = MS_ERR_INVAL;
        return;
    }
    w_map(w, fd, *(ProtobufCMessage *const *const *)CMEMBER(m, fd->offset),
          *(const size_t *)CMEMBER(m, fd->quantifier_offset), depth);
}

static void w_wkt_list(wbuf_t *w, const ProtobufCMessage *m, int depth)
{
    const ProtobufCFieldDescriptor *fd = protobuf_c_message_descriptor_get_field(m->descriptor, 1);
    if (!fd || fd->label != PROTOBUF_C_LABEL_REPEATED || fd->type != PROTOBUF_C_TYPE_MESSAGE) {
        w->err = MS_ERR_INVAL;
        return;
    }
    if (!w_depth_ok(w, depth))
        return;
    size_t n = *(const size_t *)CMEMBER(m, fd->quantifier_offset);
    ProtobufCMessage *const *v = *(ProtobufCMessage *const *const *)CMEMBER(m, fd->offset);
    w_ch(w, '[');
    for (size_t i = 0; i < n && !w->err; i++) {
        if (i)
            w_ch(w, ',');
        w_wkt_value(w, v[i], depth + 1);
    }
    w_ch(w, ']');
}

static void w_wkt_value(wbuf_t *w, const ProtobufCMessage *m, int depth)
{
    if (!m) {
        w_lit(w, "null");
        return;
    }
    const ProtobufCMessageDescriptor *d = m->descriptor;
    if (!d->n_fields) {
        w->err = MS_ERR_INVAL;
        return;
    }
    uint32_t kind = *(const uint32_t *)CMEMBER(m, d->fields[0].quantifier_offset);
    const ProtobufCFieldDescriptor *fd =
        kind ? protobuf_c_message_descriptor_get_field(d, kind) : NULL;
    if (!fd) {
        w_lit(w, "null"); /* kind not set: the closest JSON has */
        return;
    }
    const void *mem = CMEMBER(m, fd->offset);
    switch (fd->type) {
    case PROTOBUF_C_TYPE_ENUM:
        w_lit(w, "null");
        break;
    case PROTOBUF_C_TYPE_MESSAGE: {
        const ProtobufCMessage *sub = *(ProtobufCMessage *const *)mem;
        if (!sub)
            w_mem(w, kind == 5 ? "{}" : "[]", 2);
        else if (kind == 5)
            w_wkt_struct(w, sub, depth);
        else
            w_wkt_list(w, sub, depth);
        break;
    }
    default:
        w_single(w, fd, mem, depth);
    }
}

static void w_message(wbuf_t *w, const ProtobufCMessage *m, int depth)
{
    const ProtobufCMessageDescriptor *d = m->descriptor;
    switch (ms_wkt_of(d)) {
    case MS_WKT_VALUE:
        w_wkt_value(w, m, depth);
        return;
    case MS_WKT_STRUCT:
        w_wkt_struct(w, m, depth);
        return;
    case MS_WKT_LIST:
        w_wkt_list(w, m, depth);
        return;
    case MS_WKT_NONE:
        break;
    }
    if (!w_depth_ok(w, depth))
        return;
    w_ch(w, '{');
    bool first = true;
    for (unsigned i = 0; i < d->n_fields && !w->err; i++) {
        const ProtobufCFieldDescriptor *fd = &d->fields[i];
        const void *mem = CMEMBER(m, fd->offset);
        if (fd->label == PROTOBUF_C_LABEL_REPEATED) {
            size_t n = *(const size_t *)CMEMBER(m, fd->quantifier_offset);
            if (!n)
                continue;
            w_name(w, fd->name, !first);
            first = false;
            const char *arr = *(const char *const *)mem;
            if (ms_wkt_is_map(fd)) {
                w_map(w, fd, (ProtobufCMessage *const *)arr, n, depth + 1);
                continue;
            }
            if (!w_depth_ok(w, depth + 1))
                return;
            size_t es = elem_size(fd->type);
            w_ch(w, '[');
            for (size_t j = 0; j < n && !w->err; j++) {
                if (j)
                    w_ch(w, ',');
                w_single(w, fd, arr + j * es, depth + 2);
            }
            w_ch(w, ']');
        } else {
            if (!is_present(m, fd, mem))
                continue;
            w_name(w, fd->name, !first);
            first = false;
            w_single(w, fd, mem, depth + 1);
        }
    }
    w_ch(w, '}');
}

ms_err_t ms_codec_append_json(const ProtobufCMessage *msg, char **buf, size_t *len, size_t *cap)
{
    if (!msg || !buf || !len || !cap || *len > *cap || (!*buf && *cap))
        return MS_ERR_INVAL;
    wbuf_t w = {.p = *buf, .len = *len, .cap = *cap, .err = MS_OK};
    w_message(&w, msg, 1);
    /* A NUL after the text (not counted) makes the buffer usable as a C string. */
    if (w_reserve(&w, 1))
        w.p[w.len] = '\0';
    *buf = w.p;
    *cap = w.cap;
    if (w.err)
        return w.err;
    *len = w.len;
    return MS_OK;
}

ms_err_t ms_codec_to_json(const ProtobufCMessage *msg, char **out, size_t *out_len)
{
    char *buf = NULL;
    size_t len = 0, cap = 0;
    if (!out)
        return MS_ERR_INVAL;
    *out = NULL;
    ms_err_t rc = ms_codec_append_json(msg, &buf, &len, &cap);
    if (rc != MS_OK) {
        free(buf);
        return rc;
    }
    *out = buf;
    if (out_len)
        *out_len = len;
    return MS_OK;
}

json_t *ms_codec_to_jansson(const ProtobufCMessage *msg)
{
    char *buf;
    size_t len;
    if (ms_codec_to_json(msg, &buf, &len) != MS_OK)
        return NULL;
    json_t *j = json_loadb(buf, len, JSON_DECODE_ANY, NULL);
    free(buf);
    return j;
}

/* ======================================================================== */
/* Input: a jansson tree into a message laid out as protobuf-c unpacks it.  */

typedef struct {
    ms_codec_error_t *err;
    char path[160]; /* where we are, e.g. "hello.offers[2]", for error messages */
    size_t plen;
} rctx_t;

#if defined(__GNUC__)
static ms_err_t fail_at(rctx_t *c, ms_err_t code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
#endif

static ms_err_t fail_at(rctx_t *c, ms_err_t code, const char *fmt, ...)
{
    if (!c->err || c->err->message[0])
        return code;
    char *msg = c->err->message;
    size_t cap = sizeof(c->err->message), n = 0;
    if (c->plen) {
        int k = snprintf(msg, cap, "%s: ", c->path);
        n = k < 0 ? 0 : (size_t)k < cap ? (size_t)k : cap - 1;
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg + n, cap - n, fmt, ap);
    va_end(ap);
    return code;
}

static size_t path_push(rctx_t *c, const char *key)
{
    size_t old = c->plen, room = sizeof(c->path) - 1 - c->plen;
    if (old && room) {
        c->path[c->plen++] = '.';
        room--;
    }
    size_t n = strlen(key);
    if (n > room)
        n = room;
    memcpy(c->path + c->plen, key, n);
    c->plen += n;
    c->path[c->plen] = '\0';
    return old;
}

static size_t path_push_index(rctx_t *c, size_t i)
{
    size_t old = c->plen;
    size_t room = sizeof(c->path) - c->plen;
    int n = snprintf(c->path + c->plen, room, "[%zu]", i);
    if (n > 0)
        c->plen = (size_t)n < room ? c->plen + (size_t)n : sizeof(c->path) - 1;
    return old;
}

static void path_pop(rctx_t *c, size_t old)
{
    c->plen = old;
    c->path[old] = '\0';
}

static bool camel_eq(const char *name, const char *key)
{
    bool up = false;
    for (; *name; name++) {
        char ch = *name;
        if (ch == '_') {
            up = true;
            continue;
        }
        if (up && ch >= 'a' && ch <= 'z')
            ch = (char)(ch - 'a' + 'A');
        up = false;
        if (*key++ != ch)
            return false;
    }
    return *key == '\0';
}

static const ProtobufCFieldDescriptor *find_field(const ProtobufCMessageDescriptor *d,
                                                  const char *key)
{
    const ProtobufCFieldDescriptor *fd = protobuf_c_message_descriptor_get_field_by_name(d, key);
    if (fd)
        return fd;
    for (unsigned i = 0; i < d->n_fields; i++)
        if (camel_eq(d->fields[i].name, key))
            return &d->fields[i];
    return NULL;
}

static ms_err_t new_message(rctx_t *c, const ProtobufCMessageDescriptor *d, ProtobufCMessage **out)
{
    ProtobufCMessage *m = malloc(d->sizeof_message);
    if (!m)
        return fail_at(c, MS_ERR_NOMEM, "out of memory");
    protobuf_c_message_init(d, m);
    *out = m;
    return MS_OK;
}

static ms_err_t dup_string(rctx_t *c, const json_t *v, char **out)
{
    if (!json_is_string(v))
        return fail_at(c, MS_ERR_INVAL, "expected a string");
    size_t n = json_string_length(v);
    const char *s = json_string_value(v);
    if (n > MS_CODEC_MAX_STRING)
        return fail_at(c, MS_ERR_INVAL, TOO_LONG);
    if (memchr(s, '\0', n))
        return fail_at(c, MS_ERR_INVAL, "string contains NUL");
    char *d = malloc(n + 1);
    if (!d)
        return fail_at(c, MS_ERR_NOMEM, "out of memory");
    memcpy(d, s, n + 1);
    *out = d;
    return MS_OK;
}

/* Strict decimal text: optional '-', digits, nothing else.
 * 0 ok, 1 not an integer, 2 out of range. */
static int text_to_i64(const char *s, int64_t *out)
{
    const char *p = s + (*s == '-');
    if (*p < '0' || *p > '9')
        return 1;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (*end)
        return 1;
    if (errno == ERANGE)
        return 2;
    *out = v;
    return 0;
}

static int text_to_u64(const char *s, uint64_t *out)
{
    if (*s == '-' && s[1] >= '0' && s[1] <= '9')
        return 2;
    if (*s < '0' || *s > '9')
        return 1;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (*end)
        return 1;
    if (errno == ERANGE)
        return 2;
    *out = v;
    return 0;
}

static ms_err_t get_i64(rctx_t *c, const json_t *v, int64_t min, int64_t max, int64_t *out)
{
    int64_t x = 0;
    int r = 0;
    if (json_is_integer(v)) {
        x = json_integer_value(v);
    } else if (json_is_real(v)) {
        double d = json_real_value(v);
        if (d != floor(d))
            r = 1;
        else if (d < -9223372036854775808.0 || d >= 9223372036854775808.0)
            r = 2;
        else
            x = (int64_t)d;
    } else if (json_is_string(v)) {
        r = text_to_i64(json_string_value(v), &x);
    } else {
        r = 1;
    }
    if (r == 0 && (x < min || x > max))
        r = 2;
    if (r == 1)
        return fail_at(c, MS_ERR_INVAL, "expected an integer");
    if (r == 2)
        return fail_at(c, MS_ERR_INVAL, "integer out of range");
    *out = x;
    return MS_OK;
}

static ms_err_t get_u64(rctx_t *c, const json_t *v, uint64_t max, uint64_t *out)
{
    uint64_t x = 0;
    int r = 0;
    if (json_is_integer(v)) {
        json_int_t i = json_integer_value(v);
        if (i < 0)
            r = 2;
        else
            x = (uint64_t)i;
    } else if (json_is_real(v)) {
        double d = json_real_value(v);
        if (d != floor(d))
            r = 1;
        else if (d < 0 || d >= 18446744073709551616.0)
            r = 2;
        else
            x = (uint64_t)d;
    } else if (json_is_string(v)) {
        r = text_to_u64(json_string_value(v), &x);
    } else {
        r = 1;
    }
    if (r == 0 && x > max)
        r = 2;
    if (r == 1)
        return fail_at(c, MS_ERR_INVAL, "expected an unsigned integer");
    if (r == 2)
        return fail_at(c, MS_ERR_INVAL, "integer out of range");
    *out = x;
    return MS_OK;
}

static ms_err_t get_real(rctx_t *c, const json_t *v, bool is_float, double *out)
{
    double d;
    if (json_is_real(v)) {
        d = json_real_value(v);
    } else if (json_is_integer(v)) {
        d = (double)json_integer_value(v);
    } else if (json_is_string(v)) {
        const char *s = json_string_value(v);
        if (strcmp(s, "NaN") == 0) {
            d = NAN;
        } else if (strcmp(s, "Infinity") == 0) {
            d = INFINITY;
        } else if (strcmp(s, "-Infinity") == 0) {
            d = -INFINITY;
        } else {
            /* Numeric text as proto3 allows; refuse what strtod alone would
             * take but JSON would not ("inf", " 1", "0x10"). */
            const char *p = s + (*s == '-');
            char *end;
            if (!((*p >= '0' && *p <= '9') || *p == '.') || strpbrk(s, "xXnN"))
                return fail_at(c, MS_ERR_INVAL, "expected a number");
            errno = 0;
            d = strtod(s, &end);
            if (*end)
                return fail_at(c, MS_ERR_INVAL, "expected a number");
            if (errno == ERANGE && isinf(d))
                return fail_at(c, MS_ERR_INVAL, "number out of range");
        }
    } else {
        return fail_at(c, MS_ERR_INVAL, "expected a number");
    }
    if (is_float && isfinite(d) && fabs(d) > FLT_MAX)
        return fail_at(c, MS_ERR_INVAL, "number out of range for a float");
    *out = d;
    return MS_OK;
}

/* "ErrorCode" -> "ERROR_CODE_": the prefix proto style puts on enum values. */
static size_t enum_prefix(const char *short_name, char *buf, size_t cap)
{
    size_t n = 0;
    for (const char *p = short_name; *p && n + 3 < cap; p++) {
        char ch = *p;
        if (ch >= 'A' && ch <= 'Z' && p != short_name &&
            ((p[-1] >= 'a' && p[-1] <= 'z') || (p[-1] >= '0' && p[-1] <= '9')))
            buf[n++] = '_';
        buf[n++] = (char)(ch >= 'a' && ch <= 'z' ? ch - 'a' + 'A' : ch);
    }
    buf[n++] = '_';
    buf[n] = '\0';
    return n;
}

static ms_err_t get_enum(rctx_t *c, const ProtobufCEnumDescriptor *ed, const json_t *v, int *out)
{
    if (json_is_null(v) && is_null_enum(ed)) {
        *out = 0;
        return MS_OK;
    }
    if (json_is_integer(v) || json_is_real(v)) {
        int64_t x;
        ms_err_t rc = get_i64(c, v, INT32_MIN, INT32_MAX, &x);
        if (rc == MS_OK)
            *out = (int)x;
        return rc;
    }
    if (!json_is_string(v))
        return fail_at(c, MS_ERR_INVAL, "expected an enum name");
    const char *s = json_string_value(v);
    const ProtobufCEnumValue *ev = protobuf_c_enum_descriptor_get_value_by_name(ed, s);
    if (!ev) {
        char pre[128];
        size_t pn = enum_prefix(ed->short_name, pre, sizeof(pre));
        size_t sn = strlen(s);
        if (strncmp(s, pre, pn) == 0) {
            ev = protobuf_c_enum_descriptor_get_value_by_name(ed, s + pn);
        } else if (pn + sn < sizeof(pre)) {
            memcpy(pre + pn, s, sn + 1);
            ev = protobuf_c_enum_descriptor_get_value_by_name(ed, pre);
        }
    }
    if (!ev)
        return fail_at(c, MS_ERR_INVAL, "unknown %s value \"%.40s\"", ed->short_name, s);
    *out = ev->value;
    return MS_OK;
}

static int b64val(unsigned char ch)
{
    if (ch >= 'A' && ch <= 'Z')
        return ch - 'A';
    if (ch >= 'a' && ch <= 'z')
        return ch - 'a' + 26;
    if (ch >= '0' && ch <= '9')
        return ch - '0' + 52;
    if (ch == '+' || ch == '-')
        return 62;
    if (ch == '/' || ch == '_')
        return 63;
    return -1;
}

static ms_err_t get_bytes(rctx_t *c, const json_t *v, ProtobufCBinaryData *out)
{
    if (!json_is_string(v))
        return fail_at(c, MS_ERR_INVAL, "expected a base64 string");
    const unsigned char *s = (const unsigned char *)json_string_value(v);
    size_t full = json_string_length(v), n = full;
    while (n && s[n - 1] == '=')
        n--;
    size_t pad = full - n;
    if (pad > 2 || (pad && full % 4) || n % 4 == 1)
        return fail_at(c, MS_ERR_INVAL, "invalid base64");
    size_t olen = n / 4 * 3 + (n % 4 ? n % 4 - 1 : 0);
    if (olen > MS_CODEC_MAX_STRING)
        return fail_at(c, MS_ERR_INVAL, TOO_LONG);
    uint8_t *d = NULL;
    if (olen) {
        d = malloc(olen);
        if (!d)
            return fail_at(c, MS_ERR_NOMEM, "out of memory");
    }
    size_t o = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < n; i++) {
        int x = b64val(s[i]);
        if (x < 0) {
            free(d);
            return fail_at(c, MS_ERR_INVAL, "invalid base64");
        }
        acc = acc << 6 | (uint32_t)x;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            d[o++] = (uint8_t)(acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }
    out->data = d;
    out->len = o;
    return MS_OK;
}

static ms_err_t parse_message(rctx_t *c, const ProtobufCMessageDescriptor *d, const json_t *j,
                              int depth, ProtobufCMessage **out);

/* A JSON null stands for the default, except where it is itself a value. */
static bool null_is_value(const ProtobufCFieldDescriptor *fd)
{
    if (fd->type == PROTOBUF_C_TYPE_MESSAGE)
        return ms_wkt_of(fd->descriptor) == MS_WKT_VALUE;
    if (fd->type == PROTOBUF_C_TYPE_ENUM)
        return is_null_enum(fd->descriptor);
    return false;
}

/* Writes dst only on success, so a failure never leaves a half-built value
 * where protobuf_c_message_free_unpacked would find it. */
static ms_err_t parse_single(rctx_t *c, const ProtobufCFieldDescriptor *fd, void *dst,
                             const json_t *v, int depth)
{
    ms_err_t rc;
    int64_t i;
    uint64_t u;
    double r;
    switch (fd->type) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
        if ((rc = get_i64(c, v, INT32_MIN, INT32_MAX, &i)) == MS_OK)
            *(int32_t *)dst = (int32_t)i;
        return rc;
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
        if ((rc = get_u64(c, v, UINT32_MAX, &u)) == MS_OK)
            *(uint32_t *)dst = (uint32_t)u;
        return rc;
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
        if ((rc = get_i64(c, v, INT64_MIN, INT64_MAX, &i)) == MS_OK)
            *(int64_t *)dst = i;
        return rc;
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        if ((rc = get_u64(c, v, UINT64_MAX, &u)) == MS_OK)
            *(uint64_t *)dst = u;
        return rc;
    case PROTOBUF_C_TYPE_FLOAT:
        if ((rc = get_real(c, v, true, &r)) == MS_OK)
            *(float *)dst = (float)r;
        return rc;
    case PROTOBUF_C_TYPE_DOUBLE:
        if ((rc = get_real(c, v, false, &r)) == MS_OK)
            *(double *)dst = r;
        return rc;
    case PROTOBUF_C_TYPE_BOOL:
        if (!json_is_boolean(v))
            return fail_at(c, MS_ERR_INVAL, "expected true or false");
        *(protobuf_c_boolean *)dst = json_is_true(v);
        return MS_OK;
    case PROTOBUF_C_TYPE_ENUM:
        return get_enum(c, fd->descriptor, v, (int *)dst);
    case PROTOBUF_C_TYPE_STRING:
        return dup_string(c, v, (char **)dst);
    case PROTOBUF_C_TYPE_BYTES:
        return get_bytes(c, v, (ProtobufCBinaryData *)dst);
    case PROTOBUF_C_TYPE_MESSAGE:
        return parse_message(c, fd->descriptor, v, depth, (ProtobufCMessage **)dst);
    }
    return fail_at(c, MS_ERR_INVAL, "unsupported field type");
}

static ms_err_t parse_map_key(rctx_t *c, const ProtobufCFieldDescriptor *kf, void *dst,
                              const char *key)
{
    json_t *tmp;
    ms_err_t rc;
    if (strlen(key) > MS_CODEC_MAX_STRING)
        return fail_at(c, MS_ERR_INVAL, TOO_LONG);
    switch (kf->type) {
    case PROTOBUF_C_TYPE_STRING:
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        /* Integer keys arrive as strings, which the integer parsers accept. */
        tmp = json_string(key);
        if (!tmp)
            return fail_at(c, MS_ERR_NOMEM, "out of memory");
        rc = parse_single(c, kf, dst, tmp, 0);
        json_decref(tmp);
        return rc;
    case PROTOBUF_C_TYPE_BOOL:
        if (strcmp(key, "true") && strcmp(key, "false"))
            return fail_at(c, MS_ERR_INVAL, "expected \"true\" or \"false\" as key");
        *(protobuf_c_boolean *)dst = key[0] == 't';
        return MS_OK;
    default:
        return fail_at(c, MS_ERR_INVAL, "unsupported map key type");
    }
}

/* Array storage is attached to the message before it is filled, and the count
 * grows one element at a time, so on failure free_unpacked frees exactly what
 * was built. */
static ms_err_t parse_map(rctx_t *c, const ProtobufCFieldDescriptor *fd, ProtobufCMessage *m,
                          const json_t *v, int depth)
{
    if (!json_is_object(v))
        return fail_at(c, MS_ERR_INVAL, "expected an object");
    if (depth > MAX_DEPTH)
        return fail_at(c, MS_ERR_INVAL, TOO_DEEP);
    size_t n = json_object_size(v);
    if (n > MS_CODEC_MAX_ELEMENTS)
        return fail_at(c, MS_ERR_INVAL, TOO_MANY);
    if (!n)
        return MS_OK;
    const ProtobufCMessageDescriptor *ed = fd->descriptor;
    const ProtobufCFieldDescriptor *kf = &ed->fields[0], *vf = &ed->fields[1];
    ProtobufCMessage **arr = calloc(n, sizeof(*arr));
    if (!arr)
        return fail_at(c, MS_ERR_NOMEM, "out of memory");
    size_t *np = (size_t *)MEMBER(m, fd->quantifier_offset);
    *(ProtobufCMessage ***)MEMBER(m, fd->offset) = arr;
    *np = 0;
    const char *key;
    json_t *val;
    json_object_foreach((json_t *)v, key, val)
    {
        if (*np == n)
            break;
        size_t old = path_push(c, key);
        ms_err_t rc = new_message(c, ed, &arr[*np]);
        if (rc != MS_OK)
            return rc;
        ProtobufCMessage *e = arr[(*np)++];
        if ((rc = parse_map_key(c, kf, MEMBER(e, kf->offset), key)) != MS_OK)
            return rc;
        if (!json_is_null(val) || null_is_value(vf))
            if ((rc = parse_single(c, vf, MEMBER(e, vf->offset), val, depth + 1)) != MS_OK)
                return rc;
        path_pop(c, old);
    }
    return MS_OK;
}

static ms_err_t parse_repeated(rctx_t *c, const ProtobufCFieldDescriptor *fd, ProtobufCMessage *m,
                               const json_t *v, int depth)
{
    if (ms_wkt_is_map(fd))
        return parse_map(c, fd, m, v, depth);
    if (!json_is_array(v))
        return fail_at(c, MS_ERR_INVAL, "expected an array");
    if (depth > MAX_DEPTH)
        return fail_at(c, MS_ERR_INVAL, TOO_DEEP);
    size_t n = json_array_size(v);
    if (n > MS_CODEC_MAX_ELEMENTS)
        return fail_at(c, MS_ERR_INVAL, TOO_MANY);
    if (!n)
        return MS_OK;
    size_t es = elem_size(fd->type);
    char *arr = calloc(n, es);
    if (!arr)
        return fail_at(c, MS_ERR_NOMEM, "out of memory");
    size_t *np = (size_t *)MEMBER(m, fd->quantifier_offset);
    *(char **)MEMBER(m, fd->offset) = arr;
    *np = 0;
    for (size_t i = 0; i < n; i++) {
        size_t old = path_push_index(c, i);
        ms_err_t rc = parse_single(c, fd, arr + i * es, json_array_get(v, i), depth + 1);
        if (rc != MS_OK)
            return rc;
        (*np)++;
        path_pop(c, old);
    }
    return MS_OK;
}

static ms_err_t parse_wkt(rctx_t *c, const ProtobufCMessageDescriptor *d, ms_wkt_t kind,
                          const json_t *j, int depth, ProtobufCMessage **out);

static ms_err_t parse_wkt_value(rctx_t *c, const ProtobufCMessageDescriptor *d, const json_t *j,
                                int depth, ProtobufCMessage *m)
{
    unsigned id;
    switch (json_typeof(j)) {
    case JSON_NULL:
        id = 1;
        break;
    case JSON_INTEGER:
    case JSON_REAL:
        id = 2;
        break;
    case JSON_STRING:
        id = 3;
        break;
    case JSON_TRUE:
    case JSON_FALSE:
        id = 4;
        break;
    case JSON_OBJECT:
        id = 5;
        break;
    default:
        id = 6;
        break;
    }
    const ProtobufCFieldDescriptor *fd = protobuf_c_message_descriptor_get_field(d, id);
    if (!fd)
        return fail_at(c, MS_ERR_INVAL, "%s has no field %u", d->name, id);
    void *mem = MEMBER(m, fd->offset);
    ms_err_t rc = MS_OK;
    if (id == 1)
        *(int *)mem = 0;
    else if (id == 5 || id == 6)
        rc = parse_wkt(c, fd->descriptor, id == 5 ? MS_WKT_STRUCT : MS_WKT_LIST, j, depth,
                       (ProtobufCMessage **)mem);
    else
        rc = parse_single(c, fd, mem, j, depth);
    if (rc != MS_OK)
        return rc;
    *(uint32_t *)MEMBER(m, fd->quantifier_offset) = id;
    return MS_OK;
}

static ms_err_t parse_wkt(rctx_t *c, const ProtobufCMessageDescriptor *d, ms_wkt_t kind,
                          const json_t *j, int depth, ProtobufCMessage **out)
{
    ProtobufCMessage *m = NULL;
    ms_err_t rc;
    const ProtobufCFieldDescriptor *fd = NULL;
    if (kind == MS_WKT_STRUCT && !json_is_object(j))
        return fail_at(c, MS_ERR_INVAL, "expected an object");
    if (kind == MS_WKT_LIST && !json_is_array(j))
        return fail_at(c, MS_ERR_INVAL, "expected an array");
    if ((json_is_object(j) || json_is_array(j)) && depth > MAX_DEPTH)
        return fail_at(c, MS_ERR_INVAL, TOO_DEEP);
    if (kind != MS_WKT_VALUE) {
        fd = protobuf_c_message_descriptor_get_field(d, 1);
        if (!fd || fd->label != PROTOBUF_C_LABEL_REPEATED || fd->type != PROTOBUF_C_TYPE_MESSAGE)
            return fail_at(c, MS_ERR_INVAL, "%s is not shaped like %s", d->name, d->short_name);
    }
    if ((rc = new_message(c, d, &m)) != MS_OK)
        return rc;
    if (kind == MS_WKT_VALUE)
        rc = parse_wkt_value(c, d, j, depth, m);
    else
        rc = parse_repeated(c, fd, m, j, depth);
    if (rc != MS_OK)
        goto fail;
    *out = m;
    return MS_OK;
fail:
    protobuf_c_message_free_unpacked(m, NULL);
    return rc;
}

static ms_err_t parse_message(rctx_t *c, const ProtobufCMessageDescriptor *d, const json_t *j,
                              int depth, ProtobufCMessage **out)
{
    ms_wkt_t kind = ms_wkt_of(d);
    if (kind != MS_WKT_NONE)
        return parse_wkt(c, d, kind, j, depth, out);
    if (!json_is_object(j))
        return fail_at(c, MS_ERR_INVAL, "expected an object");
    if (depth > MAX_DEPTH)
        return fail_at(c, MS_ERR_INVAL, TOO_DEEP);

    ProtobufCMessage *m = NULL;
    size_t elements = 0; /* over all repeated fields, as the protobuf check counts */
    uint64_t seen_small[4] = {0};
    uint64_t *seen = seen_small;
    ms_err_t rc;
    if (d->n_fields > 256) {
        seen = calloc((d->n_fields + 63) / 64, sizeof(*seen));
        if (!seen)
            return fail_at(c, MS_ERR_NOMEM, "out of memory");
    }
    if ((rc = new_message(c, d, &m)) != MS_OK)
        goto fail;

    const char *key;
    json_t *v;
    json_object_foreach((json_t *)j, key, v)
    {
        size_t old = path_push(c, key);
        const ProtobufCFieldDescriptor *fd = find_field(d, key);
        if (!fd) {
            if (c->err && depth == 1)
                c->err->unknown_top_level = 1;
            rc = fail_at(c, MS_ERR_NOTFOUND, "unknown field");
            goto fail;
        }
        /* "peerId" and "peer_id" in one object name the same field. */
        size_t idx = (size_t)(fd - d->fields);
        if (seen[idx / 64] & (1ull << (idx % 64))) {
            rc = fail_at(c, MS_ERR_INVAL, "field given twice");
            goto fail;
        }
        seen[idx / 64] |= 1ull << (idx % 64);
        if (json_is_null(v) && (fd->label == PROTOBUF_C_LABEL_REPEATED || !null_is_value(fd))) {
            path_pop(c, old);
            continue;
        }
        void *mem = MEMBER(m, fd->offset);
        if (fd->label == PROTOBUF_C_LABEL_REPEATED) {
            elements += json_is_array(v) ? json_array_size(v) : json_object_size(v);
            if (elements > MS_CODEC_MAX_ELEMENTS) {
                rc = fail_at(c, MS_ERR_INVAL, TOO_MANY);
                goto fail;
            }
            rc = parse_repeated(c, fd, m, v, depth + 1);
        } else if (fd->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
            uint32_t *cs = (uint32_t *)MEMBER(m, fd->quantifier_offset);
            if (*cs) {
                rc = fail_at(c, MS_ERR_INVAL, "only one of its oneof group may be set");
                goto fail;
            }
            rc = parse_single(c, fd, mem, v, depth + 1);
            if (rc == MS_OK)
                *cs = fd->id;
        } else {
            rc = parse_single(c, fd, mem, v, depth + 1);
            if (rc == MS_OK && fd->label == PROTOBUF_C_LABEL_OPTIONAL && fd->quantifier_offset &&
                fd->type != PROTOBUF_C_TYPE_STRING && fd->type != PROTOBUF_C_TYPE_MESSAGE)
                *(protobuf_c_boolean *)MEMBER(m, fd->quantifier_offset) = 1;
        }
        if (rc != MS_OK)
            goto fail;
        path_pop(c, old);
    }
    if (seen != seen_small)
        free(seen);
    *out = m;
    return MS_OK;
fail:
    if (m)
        protobuf_c_message_free_unpacked(m, NULL);
    if (seen != seen_small)
        free(seen);
    return rc;
}

ms_err_t ms_codec_from_jansson(const ProtobufCMessageDescriptor *desc, const json_t *json,
                               ProtobufCMessage **out, ms_codec_error_t *err)
{
    rctx_t c = {.err = err};
    if (err) {
        err->message[0] = '\0';
        err->unknown_top_level = 0;
    }
    if (!out)
        return MS_ERR_INVAL;
    *out = NULL;
    if (!desc || !json)
        return fail_at(&c, MS_ERR_INVAL, "no message");
    return parse_message(&c, desc, json, 1, out);
}

ms_err_t ms_codec_from_json(const ProtobufCMessageDescriptor *desc, const char *json, size_t len,
                            ProtobufCMessage **out, ms_codec_error_t *err)
{
    if (err) {
        err->message[0] = '\0';
        err->unknown_top_level = 0;
    }
    if (out)
        *out = NULL;
    if (!json || !out) {
        if (err)
            snprintf(err->message, sizeof(err->message), "no input");
        return MS_ERR_INVAL;
    }
    json_error_t jerr;
    json_t *j = json_loadb(json, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);
    if (!j) {
        if (err)
            snprintf(err->message, sizeof(err->message), "malformed JSON at %d:%d: %s", jerr.line,
                     jerr.column, jerr.text);
        return MS_ERR_INVAL;
    }
    ms_err_t rc = ms_codec_from_jansson(desc, j, out, err);
    json_decref(j);
    return rc;
}

void ms_codec_free(ProtobufCMessage *msg)
{
    if (msg)
        protobuf_c_message_free_unpacked(msg, NULL);
}
