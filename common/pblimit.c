/* SPDX-License-Identifier: Apache-2.0 */
/* A bounded, non-recursive walk of protobuf wire bytes that enforces the input limits. */
#include "pblimit.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "client.pb-c.h"
#include "codec.h"
#include "jsonscan.h"
#include "wkt.h"

const ms_pblimit_t ms_pblimit_client = {
    .max_depth = MS_CODEC_MAX_DEPTH,
    .max_elements = MS_CODEC_MAX_ELEMENTS,
    .max_string = MS_CODEC_MAX_STRING,
};

/* A bus envelope (GatewayBatch -> deliveries -> Delivery -> ServerMessage, or
 * ShardRequest -> ClientMessage, ResyncReport -> sessions -> SessionReport)
 * adds at most 4 levels; 8 leaves room for one more without a silent change. */
const ms_pblimit_t ms_pblimit_bus = {
    .max_depth = MS_CODEC_MAX_DEPTH + MS_CODEC_WRAP_DEPTH + 8,
    .max_elements = SIZE_MAX,
    .max_string = SIZE_MAX,
};

/* The deepest any caller may ask for; it sizes the walk's stack. */
#define DEPTH_CAP 128
/* Each JSON level takes at most two frames (Struct + its map entry, or
 * ListValue + Value); the outermost message and a margin. */
#define STACK_MAX (2 * DEPTH_CAP + 8)

typedef enum {
    K_MSG,    /* an ordinary message: a JSON object */
    K_ENTRY,  /* a map entry: a member of the map's object */
    K_VALUE,  /* a Value: no level of its own */
    K_STRUCT, /* a Struct: a JSON object */
    K_LIST,   /* a ListValue: a JSON array */
} kind_t;

typedef struct {
    const ProtobufCMessageDescriptor *d;
    const uint8_t *end;
    size_t n; /* elements of repeated fields seen so far */
    int depth;
    kind_t kind;
} frame_t;

static ms_err_t refuse(char *why, size_t why_len, const char *fmt, ...)
{
    if (why && why_len) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(why, why_len, fmt, ap);
        va_end(ap);
    }
    return MS_ERR_INVAL;
}

static bool read_varint(const uint8_t **p, const uint8_t *end, uint64_t *v)
{
    uint64_t r = 0;
    for (int i = 0; i < 10 && *p < end; i++) {
        uint8_t b = *(*p)++;
        r |= (uint64_t)(b & 0x7f) << (7 * i);
        if (!(b & 0x80)) {
            *v = r;
            return true;
        }
    }
    return false;
}

static kind_t kind_of(const ProtobufCFieldDescriptor *fd)
{
    /* Our own value types by address: the name tests below cost string
     * compares on every nested message. */
    const ProtobufCMessageDescriptor *d = fd->descriptor;
    if (d == &meshsig__v1__value__descriptor)
        return K_VALUE;
    if (d == &meshsig__v1__list_value__descriptor)
        return K_LIST;
    if (d == &meshsig__v1__struct__descriptor)
        return K_STRUCT;
    if (d == &meshsig__v1__struct__fields_entry__descriptor)
        return K_ENTRY;
    if (fd->label != PROTOBUF_C_LABEL_REPEATED && d->short_name[0] != 'V' &&
        d->short_name[0] != 'S' && d->short_name[0] != 'L')
        return K_MSG;
    if (ms_wkt_is_map(fd))
        return K_ENTRY;
    switch (ms_wkt_of(fd->descriptor)) {
    case MS_WKT_VALUE:
        return K_VALUE;
    case MS_WKT_STRUCT:
        return K_STRUCT;
    case MS_WKT_LIST:
        return K_LIST;
    default:
        return K_MSG;
    }
}

/* The JSON depth of a message-typed field's value inside frame f, as
 * codec.c's writer counts it. */
static int child_depth(const frame_t *f, const ProtobufCFieldDescriptor *fd, kind_t k)
{
    switch (f->kind) {
    case K_MSG:
        if (k == K_ENTRY)
            return f->depth + 1; /* the map's object */
        return fd->label == PROTOBUF_C_LABEL_REPEATED ? f->depth + 2 : f->depth + 1;
    case K_ENTRY:
    case K_LIST:
        return f->depth + 1;
    case K_VALUE:
    case K_STRUCT: /* a Struct is its map's object: entries at its own level */
        return f->depth;
    }
    return f->depth + 1;
}

static bool is_packable(ProtobufCType t)
{
    return t != PROTOBUF_C_TYPE_STRING && t != PROTOBUF_C_TYPE_BYTES &&
           t != PROTOBUF_C_TYPE_MESSAGE;
}

/* Elements in a packed run of type t over [p, end). */
static size_t packed_count(ProtobufCType t, const uint8_t *p, const uint8_t *end)
{
    size_t len = (size_t)(end - p);
    switch (t) {
    case PROTOBUF_C_TYPE_FIXED32:
    case PROTOBUF_C_TYPE_SFIXED32:
    case PROTOBUF_C_TYPE_FLOAT:
        return len / 4;
    case PROTOBUF_C_TYPE_FIXED64:
    case PROTOBUF_C_TYPE_SFIXED64:
    case PROTOBUF_C_TYPE_DOUBLE:
        return len / 8;
    default: {
        size_t n = 0;
        for (; p < end; p++)
            n += !(*p & 0x80);
        return n;
    }
    }
}

ms_err_t ms_pblimit_check(const ProtobufCMessageDescriptor *desc, const uint8_t *data, size_t len,
                          const ms_pblimit_t *lim, char *why, size_t why_len)
{
    if (!desc || !lim || (!data && len))
        return refuse(why, why_len, "no input");
    int max_depth = lim->max_depth < DEPTH_CAP ? lim->max_depth : DEPTH_CAP;
    frame_t st[STACK_MAX];
    int top = 0;
    const uint8_t *p = data;
    st[0] = (frame_t){.d = desc, .end = data + len, .depth = 1, .kind = K_MSG};
    switch (ms_wkt_of(desc)) {
    case MS_WKT_VALUE:
        st[0].kind = K_VALUE;
        break;
    case MS_WKT_STRUCT:
        st[0].kind = K_STRUCT;
        break;
    case MS_WKT_LIST:
        st[0].kind = K_LIST;
        break;
    default:
        break;
    }
    if (max_depth < 1)
        return refuse(why, why_len, "nested deeper than %d levels", max_depth);
    /* Every iteration consumes bytes or pops a frame; pushes are bounded by the
     * depth, so the loop ends after at most len + STACK_MAX rounds. */
    while (top >= 0) {
        frame_t *f = &st[top];
        if (p == f->end) {
            top--;
            continue;
        }
        uint64_t tag, v;
        if (!read_varint(&p, f->end, &tag) || (tag >> 3) == 0 || (tag >> 3) > 0x1fffffff)
            goto malformed;
        const ProtobufCFieldDescriptor *fd =
            protobuf_c_message_descriptor_get_field(f->d, (unsigned)(tag >> 3));
        int repeated = fd && fd->label == PROTOBUF_C_LABEL_REPEATED;
        size_t count = 0;
        switch (tag & 7) {
        case 0:
            if (!read_varint(&p, f->end, &v))
                goto malformed;
            count = repeated;
            break;
        case 1:
        case 5: {
            size_t w = (tag & 7) == 1 ? 8 : 4;
            if ((size_t)(f->end - p) < w)
                goto malformed;
            p += w;
            count = repeated;
            break;
        }
        case 2: {
            if (!read_varint(&p, f->end, &v) || v > (uint64_t)(f->end - p))
                goto malformed;
            const uint8_t *vend = p + v;
            if (!fd) {
                p = vend; /* unknown: kept opaque by protobuf-c */
                break;
            }
            if (fd->type == PROTOBUF_C_TYPE_MESSAGE) {
                kind_t k = kind_of(fd);
                int d = child_depth(f, fd, k);
                if (k != K_VALUE && d > max_depth)
                    return refuse(why, why_len, "nested deeper than %d levels", max_depth);
                if (repeated && ++f->n > lim->max_elements)
                    goto too_many;
                if (repeated && f->kind == K_MSG && k != K_ENTRY && f->depth + 1 > max_depth)
                    return refuse(why, why_len, "nested deeper than %d levels", max_depth);
                if (top + 1 >= STACK_MAX)
                    return refuse(why, why_len, "nested deeper than %d levels", max_depth);
                st[++top] =
                    (frame_t){.d = fd->descriptor, .end = vend, .n = 0, .depth = d, .kind = k};
                continue;
            }
            if (fd->type == PROTOBUF_C_TYPE_STRING || fd->type == PROTOBUF_C_TYPE_BYTES) {
                if (v > lim->max_string)
                    return refuse(why, why_len, "a string longer than %zu bytes", lim->max_string);
                /* proto3 strings are UTF-8; protobuf-c does not check. Refused
                 * here, a binary client's string can neither turn into a
                 * longer one for a JSON receiver (U+FFFD for each bad byte)
                 * nor reach a receiver as something it did not send. */
                if (fd->type == PROTOBUF_C_TYPE_STRING && !ms_utf8_valid((const char *)p, v))
                    return refuse(why, why_len, "a string that is not UTF-8 (field %s)", fd->name);
                count = repeated;
            } else if (repeated && is_packable(fd->type)) {
                count = packed_count(fd->type, p, vend);
            }
            p = vend;
            break;
        }
        default: /* groups (3, 4) are not proto3; 6 and 7 do not exist */
            goto malformed;
        }
        if (count) {
            if (f->kind == K_MSG && f->depth + 1 > max_depth)
                return refuse(why, why_len, "nested deeper than %d levels", max_depth);
            f->n += count;
            if (f->n > lim->max_elements)
                goto too_many;
        }
    }
    return MS_OK;
too_many:
    return refuse(why, why_len, "more than %zu elements in one array or object", lim->max_elements);
malformed:
    return refuse(why, why_len, "not a %s", desc->name);
}

ProtobufCMessage *ms_pblimit_unpack(const ProtobufCMessageDescriptor *desc, const uint8_t *data,
                                    size_t len, const ms_pblimit_t *lim, char *why, size_t why_len)
{
    if (ms_pblimit_check(desc, data, len, lim, why, why_len) != MS_OK)
        return NULL;
    ProtobufCMessage *m = protobuf_c_message_unpack(desc, NULL, len, data);
    if (!m)
        refuse(why, why_len, "not a %s", desc->name);
    return m;
}
