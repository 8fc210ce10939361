/* SPDX-License-Identifier: Apache-2.0 */
/* A meshsig.v1.Value built straight from JSON text the scanner vouched for, without jansson. */
#include <stdlib.h>
#include <string.h>

#include "jsonscan.h"
#include "jsonvalue.h"

static const char *build(const char *p, const char *end, Meshsig__V1__Value *v);

/* Grows a pointer array to hold one more (n in use). */
static int grow(void ***arr, size_t n, size_t *cap)
{
    if (n < *cap)
        return 0;
    size_t nc = *cap ? *cap * 2 : 4;
    void **na = realloc(*arr, nc * sizeof(*na));
    if (!na)
        return -1;
    *arr = na;
    *cap = nc;
    return 0;
}

static size_t put_utf8(char *o, unsigned cp)
{
    if (cp < 0x80) {
        o[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (char)(0xC0 | (cp >> 6));
        o[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (char)(0xE0 | (cp >> 12));
        o[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (char)(0xF0 | (cp >> 18));
    o[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    o[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

static unsigned hex4(const char *p)
{
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        char c = p[i];
        v = (v << 4) | (unsigned)(c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10);
    }
    return v;
}

/* The decoded contents of a string the scanner checked (escapes well formed,
 * surrogates paired, no \u0000): never longer than its text. */
static char *decode(const char *s, size_t len, int escaped)
{
    char *o = malloc(len + 1), *w = o;
    if (!o)
        return NULL;
    if (!escaped) {
        memcpy(o, s, len);
        o[len] = '\0';
        return o;
    }
    const char *end = s + len;
    while (s < end) {
        const char *bs = memchr(s, '\\', (size_t)(end - s));
        size_t run = (size_t)((bs ? bs : end) - s);
        memcpy(w, s, run);
        w += run;
        s += run;
        if (!bs)
            break;
        char c = s[1];
        s += 2;
        switch (c) {
        case 'b':
            *w++ = '\b';
            break;
        case 'f':
            *w++ = '\f';
            break;
        case 'n':
            *w++ = '\n';
            break;
        case 'r':
            *w++ = '\r';
            break;
        case 't':
            *w++ = '\t';
            break;
        case 'u': {
            unsigned cp = hex4(s);
            s += 4;
            if (cp >= 0xD800 && cp <= 0xDBFF) {
                cp = 0x10000 + ((cp - 0xD800) << 10) + (hex4(s + 2) - 0xDC00);
                s += 6;
            }
            w += put_utf8(w, cp);
            break;
        }
        default:
            *w++ = c;
            break; /* " \ / */
        }
    }
    *w = '\0';
    return o;
}

static const char *build_string(const char *p, const char *end, Meshsig__V1__Value *v)
{
    const char *s;
    size_t len;
    int esc;
    if (!(p = ms_json_scan_string(p, end, &s, &len, &esc)) ||
        !(v->string_value = decode(s, len, esc)))
        return NULL;
    v->kind_case = MESHSIG__V1__VALUE__KIND_STRING_VALUE;
    return p;
}

/* As jansson reads numbers (then the codec takes the double): an integer
 * through long long, anything with a fraction or exponent by strtod. */
static const char *build_number(const char *p, const char *end, Meshsig__V1__Value *v)
{
    const char *q = p;
    int real = 0;
    while (q < end && ((*q >= '0' && *q <= '9') || *q == '-' || *q == '+' || *q == '.' ||
                       *q == 'e' || *q == 'E')) {
        real |= *q == '.' || *q == 'e' || *q == 'E';
        q++;
    }
    size_t n = (size_t)(q - p);
    char small[64], *text = n < sizeof(small) ? small : malloc(n + 1);
    if (!n || !text)
        return NULL;
    memcpy(text, p, n);
    text[n] = '\0';
    /* The scanner's bounds (at most 18 integer digits, 200 before a point,
     * |exponent| < 100) keep both in range: no overflow to check for, and an
     * underflow is a number jansson takes too. */
    char *stop;
    double d = real ? strtod(text, &stop) : (double)strtoll(text, &stop, 10);
    int ok = stop == text + n;
    if (text != small)
        free(text);
    if (!ok)
        return NULL;
    v->kind_case = MESHSIG__V1__VALUE__KIND_NUMBER_VALUE;
    v->number_value = d;
    return q;
}

typedef struct {
    Meshsig__V1__Struct *st;
    size_t cap;
} object_t;

/* One member of an object: a fields entry, then its value built in place. */
static const char *build_member(void *ud, const char *k, size_t kl, const char *p, const char *end)
{
    object_t *o = ud;
    Meshsig__V1__Struct *st = o->st;
    if (grow((void ***)&st->fields, st->n_fields, &o->cap))
        return NULL;
    Meshsig__V1__Struct__FieldsEntry *e = malloc(sizeof(*e));
    Meshsig__V1__Value *ev = malloc(sizeof(*ev));
    char *key = decode(k, kl, 0);
    if (!e || !ev || !key) {
        free(e);
        free(ev);
        free(key);
        return NULL;
    }
    meshsig__v1__struct__fields_entry__init(e);
    meshsig__v1__value__init(ev);
    e->key = key;
    e->value = ev;
    st->fields[st->n_fields++] = e;
    return build(p, end, ev);
}

static const char *build_object(const char *p, const char *end, Meshsig__V1__Value *v)
{
    Meshsig__V1__Struct *st = malloc(sizeof(*st));
    if (!st)
        return NULL;
    meshsig__v1__struct__init(st);
    v->kind_case = MESHSIG__V1__VALUE__KIND_STRUCT_VALUE;
    v->struct_value = st; /* from here on the caller's free reaches it */
    /* The scanner's walk: it refuses an escaped key, as the scan that vouched
     * for this text did. */
    object_t o = {st, 0};
    return ms_json_scan_object(p, end, build_member, &o);
}

static const char *build_array(const char *p, const char *end, Meshsig__V1__Value *v)
{
    Meshsig__V1__ListValue *l = malloc(sizeof(*l));
    if (!l)
        return NULL;
    meshsig__v1__list_value__init(l);
    v->kind_case = MESHSIG__V1__VALUE__KIND_LIST_VALUE;
    v->list_value = l;
    size_t cap = 0;
    p = ms_json_ws(p + 1, end);
    if (p < end && *p == ']')
        return p + 1;
    for (;;) {
        Meshsig__V1__Value *ev = NULL;
        if (grow((void ***)&l->values, l->n_values, &cap) || !(ev = malloc(sizeof(*ev))))
            return NULL;
        meshsig__v1__value__init(ev);
        l->values[l->n_values++] = ev;
        if (!(p = build(p, end, ev)))
            return NULL;
        p = ms_json_ws(p, end);
        if (p < end && *p == ']')
            return p + 1;
        if (p >= end || *p != ',')
            return NULL;
        p = ms_json_ws(p + 1, end);
    }
}

static const char *build(const char *p, const char *end, Meshsig__V1__Value *v)
{
    if (p >= end)
        return NULL;
    switch (*p) {
    case '{':
        return build_object(p, end, v);
    case '[':
        return build_array(p, end, v);
    case '"':
        return build_string(p, end, v);
    case 't':
    case 'f':
        v->kind_case = MESHSIG__V1__VALUE__KIND_BOOL_VALUE;
        v->bool_value = *p == 't';
        return p + (*p == 't' ? 4 : 5);
    case 'n':
        v->kind_case = MESHSIG__V1__VALUE__KIND_NULL_VALUE;
        v->null_value = MESHSIG__V1__NULL_VALUE__NULL_VALUE;
        return p + 4;
    default:
        return build_number(p, end, v);
    }
}

ms_err_t ms_json_value_build(const char *json, size_t len, Meshsig__V1__Value **out)
{
    const char *end = json + len;
    *out = NULL;
    /* The contract is text the scanner vouched for; checking it again keeps
     * every walk below in bounds whatever a caller passes. */
    if (ms_json_scan(json, end) != end)
        return MS_ERR_INVAL;
    Meshsig__V1__Value *v = malloc(sizeof(*v));
    if (!v)
        return MS_ERR_NOMEM;
    meshsig__v1__value__init(v);
    if (build(json, end, v) != end) {
        meshsig__v1__value__free_unpacked(v, NULL);
        return MS_ERR_NOMEM; /* the text was vouched for: only memory can fail */
    }
    *out = v;
    return MS_OK;
}
