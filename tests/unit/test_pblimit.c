/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for the protobuf input limits: no recursion, and the same verdicts as the JSON codec.
 */
#include <check.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bus.pb-c.h"
#include "client.pb-c.h"
#include "codec.h"
#include "pblimit.h"

#define CLIENT (&meshsig__v1__client_message__descriptor)

/* ---- hand-made wire bytes, built inside out ----------------------------- */

typedef struct {
    uint8_t *p;
    size_t len, cap;
} buf_t;

static void prepend(buf_t *b, const void *d, size_t n)
{
    if (b->len + n > b->cap) {
        size_t cap = (b->len + n) * 2 + 64;
        uint8_t *np = malloc(cap);
        ck_assert_ptr_nonnull(np);
        if (b->len)
            memcpy(np + cap - b->len, b->p + b->cap - b->len, b->len);
        free(b->p);
        b->p = np;
        b->cap = cap;
    }
    memcpy(b->p + b->cap - b->len - n, d, n);
    b->len += n;
}

static void wrap(buf_t *b, unsigned field)
{
    uint8_t v[12];
    size_t n = 0;
    v[n++] = (uint8_t)(field << 3 | 2);
    for (size_t x = b->len;; x >>= 7) {
        v[n++] = (uint8_t)((x & 0x7f) | (x > 0x7f ? 0x80 : 0));
        if (x <= 0x7f)
            break;
    }
    prepend(b, v, n);
}

static void key_a(buf_t *b)
{
    static const uint8_t k[3] = {0x0a, 0x01, 'a'}; /* Entry.key = "a" */
    prepend(b, k, 3);
}

static const uint8_t *data_of(const buf_t *b)
{
    return b->p + b->cap - b->len;
}

/* Value nesting n lists: [[...null...]]. */
static void lists(buf_t *b, int n)
{
    for (int i = 0; i < n; i++) {
        wrap(b, 1);
        wrap(b, 6);
    }
}

/* Value nesting n objects: {"a":{"a":...null}}. */
static void structs(buf_t *b, int n)
{
    for (int i = 0; i < n; i++) {
        wrap(b, 2); /* Entry.value */
        key_a(b);
        wrap(b, 1); /* Struct.fields */
        wrap(b, 5); /* Value.struct_value */
    }
}

static void as_signal(buf_t *b)
{
    wrap(b, 3); /* Signal.payload */
    static const uint8_t to[3] = {0x0a, 0x01, 'x'};
    prepend(b, to, 3);
    wrap(b, 3); /* ClientMessage.signal */
}

/* JSON of the same shapes. */
static char *json_nest(int n, const char *open, const char *close, const char *pre,
                       const char *post)
{
    size_t cap = strlen(pre) + strlen(post) + (size_t)n * (strlen(open) + strlen(close)) + 8;
    char *s = malloc(cap);
    ck_assert_ptr_nonnull(s);
    size_t o = (size_t)snprintf(s, cap, "%s", pre);
    for (int i = 0; i < n; i++)
        o += (size_t)snprintf(s + o, cap - o, "%s", open);
    o += (size_t)snprintf(s + o, cap - o, "null");
    for (int i = 0; i < n; i++)
        o += (size_t)snprintf(s + o, cap - o, "%s", close);
    snprintf(s + o, cap - o, "%s", post);
    return s;
}

static int json_ok(const char *json)
{
    ProtobufCMessage *m = NULL;
    ms_codec_error_t err;
    ms_err_t rc = ms_codec_from_json(CLIENT, json, strlen(json), &m, &err);
    if (m)
        ms_codec_free(m);
    return rc == MS_OK;
}

static int pb_ok(const buf_t *b, char *why, size_t why_len)
{
    ms_err_t rc = ms_pblimit_check(CLIENT, data_of(b), b->len, &ms_pblimit_client, why, why_len);
    if (rc == MS_OK) {
        /* what the check passes, protobuf-c unpacks */
        ProtobufCMessage *m = protobuf_c_message_unpack(CLIENT, NULL, b->len, data_of(b));
        ck_assert_ptr_nonnull(m);
        protobuf_c_message_free_unpacked(m, NULL);
    }
    return rc == MS_OK;
}

/* Thousands of levels: refused by the walk, which does not recurse, naming the limit. */
START_TEST(deep_is_refused_without_recursion)
{
    int levels[] = {65, 5000, 200000};
    for (size_t i = 0; i < sizeof(levels) / sizeof(*levels); i++) {
        buf_t b = {0};
        lists(&b, levels[i]);
        as_signal(&b);
        char why[96] = "";
        ck_assert_int_eq(
            ms_pblimit_check(CLIENT, data_of(&b), b.len, &ms_pblimit_client, why, sizeof(why)),
            MS_ERR_INVAL);
        ck_assert_str_eq(why, "nested deeper than 64 levels");
        ck_assert_ptr_null(
            ms_pblimit_unpack(CLIENT, data_of(&b), b.len, &ms_pblimit_client, NULL, 0));
        /* the bus limit is deeper (65 passes it), yet as bounded */
        wrap(&b, 12); /* ShardRequest.client */
        ck_assert_int_eq(ms_pblimit_check(&meshsig__bus__shard_request__descriptor, data_of(&b),
                                          b.len, &ms_pblimit_bus, why, sizeof(why)),
                         levels[i] > 100 ? MS_ERR_INVAL : MS_OK);
        free(b.p);
    }
}
END_TEST

/* For each shape and every depth around the limit, the protobuf check and the
 * JSON codec give the same verdict. */
START_TEST(depth_agrees_with_json)
{
    for (int n = 1; n <= 70; n++) {
        char why[96];
        buf_t b = {0};
        lists(&b, n);
        as_signal(&b);
        char *j = json_nest(n, "[", "]", "{\"signal\":{\"to\":\"x\",\"payload\":", "}}");
        ck_assert_msg(pb_ok(&b, why, sizeof(why)) == json_ok(j), "lists, depth %d", n);
        free(j);
        free(b.p);

        b = (buf_t){0};
        structs(&b, n);
        as_signal(&b);
        j = json_nest(n, "{\"a\":", "}", "{\"signal\":{\"to\":\"x\",\"payload\":", "}}");
        ck_assert_msg(pb_ok(&b, why, sizeof(why)) == json_ok(j), "objects, depth %d", n);
        free(j);
        free(b.p);

        /* hello.metadata (a Struct field) holding n - 1 more objects */
        b = (buf_t){0};
        structs(&b, n - 1);
        wrap(&b, 2);
        key_a(&b);
        wrap(&b, 1);
        wrap(&b, 6); /* Hello.metadata */
        static const uint8_t ns[3] = {0x0a, 0x01, 'n'};
        prepend(&b, ns, 3);
        wrap(&b, 2); /* ClientMessage.hello */
        j = json_nest(n, "{\"a\":", "}", "{\"hello\":{\"namespace\":\"n\",\"metadata\":", "}}");
        ck_assert_msg(pb_ok(&b, why, sizeof(why)) == json_ok(j), "metadata, depth %d", n);
        free(j);
        free(b.p);

        /* hello.offers (repeated Value) holding lists */
        b = (buf_t){0};
        lists(&b, n);
        wrap(&b, 7); /* Hello.offers */
        prepend(&b, ns, 3);
        wrap(&b, 2);
        j = json_nest(n, "[", "]", "{\"hello\":{\"namespace\":\"n\",\"offers\":[", "]}}");
        ck_assert_msg(pb_ok(&b, why, sizeof(why)) == json_ok(j), "offers, depth %d", n);
        free(j);
        free(b.p);
    }
}
END_TEST

/* Element counts and string lengths: the same bounds, the same words. */
START_TEST(counts_and_lengths_agree_with_json)
{
    int counts[] = {MS_CODEC_MAX_ELEMENTS, MS_CODEC_MAX_ELEMENTS + 1};
    for (int k = 0; k < 2; k++) {
        buf_t b = {0};
        for (int i = 0; i < counts[k]; i++) {
            static const uint8_t empty[2] = {0x0a, 0x00};
            prepend(&b, empty, 2);
        }
        wrap(&b, 6);
        as_signal(&b);
        char why[96] = "";
        int pb = pb_ok(&b, why, sizeof(why));
        ck_assert_int_eq(pb, k == 0);
        if (!pb)
            ck_assert_str_eq(why, "more than 16384 elements in one array or object");
        size_t cap = (size_t)counts[k] * 5 + 64;
        char *j = malloc(cap);
        ck_assert_ptr_nonnull(j);
        size_t o = (size_t)snprintf(j, cap, "{\"signal\":{\"to\":\"x\",\"payload\":[");
        for (int i = 0; i < counts[k]; i++)
            o += (size_t)snprintf(j + o, cap - o, i ? ",null" : "null");
        snprintf(j + o, cap - o, "]}}");
        ck_assert_int_eq(json_ok(j), k == 0);
        free(j);
        free(b.p);
    }
    size_t lens[] = {MS_CODEC_MAX_STRING, MS_CODEC_MAX_STRING + 1};
    for (int k = 0; k < 2; k++) {
        char *s = malloc(lens[k] + 1);
        ck_assert_ptr_nonnull(s);
        memset(s, 'q', lens[k]);
        s[lens[k]] = '\0';
        Meshsig__V1__Value v = MESHSIG__V1__VALUE__INIT;
        v.kind_case = MESHSIG__V1__VALUE__KIND_STRING_VALUE;
        v.string_value = s;
        Meshsig__V1__Signal sg = MESHSIG__V1__SIGNAL__INIT;
        sg.to = "x";
        sg.payload = &v;
        Meshsig__V1__ClientMessage cm = MESHSIG__V1__CLIENT_MESSAGE__INIT;
        cm.msg_case = MESHSIG__V1__CLIENT_MESSAGE__MSG_SIGNAL;
        cm.signal = &sg;
        buf_t b = {0};
        b.cap = b.len = meshsig__v1__client_message__get_packed_size(&cm);
        b.p = malloc(b.cap);
        ck_assert_ptr_nonnull(b.p);
        meshsig__v1__client_message__pack(&cm, b.p);
        char why[96] = "";
        int pb = pb_ok(&b, why, sizeof(why));
        ck_assert_int_eq(pb, k == 0);
        if (!pb)
            ck_assert_str_eq(why, "a string longer than 65536 bytes");
        char *j = malloc(lens[k] + 64);
        ck_assert_ptr_nonnull(j);
        snprintf(j, lens[k] + 64, "{\"signal\":{\"to\":\"x\",\"payload\":\"%s\"}}", s);
        ck_assert_int_eq(json_ok(j), k == 0);
        free(j);
        free(s);
        free(b.p);
    }
}
END_TEST

/* Broken framing is refused, never read past its end. */
START_TEST(malformed_framing)
{
    static const struct {
        const char *what;
        uint8_t b[8];
        size_t n;
    } cases[] = {
        {"truncated tag", {0x80}, 1},
        {"length past the end", {0x1a, 0x05, 0x0a}, 3},
        {"nested length past its parent", {0x1a, 0x02, 0x1a, 0x05, 0, 0, 0, 0}, 8},
        {"group", {0x1b}, 1},
        {"wire type 7", {0x1f}, 1},
        {"field 0", {0x02, 0x00}, 2},
        {"truncated fixed64", {0x11, 1, 2, 3}, 4},
        {"varint of 11 bytes", {0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, 8},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
        char why[96] = "";
        ck_assert_msg(ms_pblimit_check(CLIENT, cases[i].b, cases[i].n, &ms_pblimit_client, why,
                                       sizeof(why)) == MS_ERR_INVAL,
                      "%s accepted", cases[i].what);
        ck_assert_str_eq(why, "not a meshsig.v1.ClientMessage");
    }
    /* empty input is an empty message */
    ck_assert_int_eq(ms_pblimit_check(CLIENT, NULL, 0, &ms_pblimit_client, NULL, 0), MS_OK);
}
END_TEST

/* proto3 strings are UTF-8: a ClientMessage id (field 1) that is not is refused. */
START_TEST(strings_must_be_utf8)
{
    static const struct {
        const char *what;
        uint8_t b[8];
        size_t n;
        int ok;
    } cases[] = {
        {"ascii", {0x0a, 0x02, 'a', 'b'}, 4, 1},
        {"two-byte e-acute", {0x0a, 0x02, 0xc3, 0xa9}, 4, 1},
        {"four-byte emoji", {0x0a, 0x04, 0xf0, 0x9f, 0x98, 0x80}, 6, 1},
        {"lone continuation", {0x0a, 0x01, 0x80}, 3, 0},
        {"bad second byte", {0x0a, 0x02, 0xc3, 0x28}, 4, 0},
        {"overlong NUL", {0x0a, 0x02, 0xc0, 0x80}, 4, 0},
        {"surrogate", {0x0a, 0x03, 0xed, 0xa0, 0x80}, 5, 0},
        {"above U+10FFFF", {0x0a, 0x04, 0xf4, 0x90, 0x80, 0x80}, 6, 0},
        {"truncated sequence", {0x0a, 0x02, 'a', 0xe2}, 4, 0},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
        char why[96] = "";
        ms_err_t err =
            ms_pblimit_check(CLIENT, cases[i].b, cases[i].n, &ms_pblimit_client, why, sizeof(why));
        ck_assert_msg((err == MS_OK) == cases[i].ok, "%s: %s", cases[i].what,
                      err == MS_OK ? "accepted" : why);
        if (!cases[i].ok)
            ck_assert_msg(strstr(why, "not UTF-8") != NULL, "%s: %s", cases[i].what, why);
    }
}
END_TEST

/* Every seed message (tests/fuzz/corpus/codec) passes: JSON -> protobuf -> check. */
START_TEST(corpus_passes)
{
    const char *src = getenv("MESHSIG_SOURCE_DIR");
    ck_assert_ptr_nonnull(src);
    char dir[512];
    snprintf(dir, sizeof(dir), "%s/tests/fuzz/corpus/codec", src);
    DIR *d = opendir(dir);
    ck_assert_ptr_nonnull(d);
    int seen = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        char path[1024];
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        FILE *f = fopen(path, "rb");
        ck_assert_ptr_nonnull(f);
        char text[65536];
        size_t n = fread(text, 1, sizeof(text) - 1, f);
        fclose(f);
        text[n] = '\0';
        ProtobufCMessage *m = NULL;
        ms_codec_error_t err;
        if (ms_codec_from_json(CLIENT, text, n, &m, &err) != MS_OK)
            continue;
        size_t len = protobuf_c_message_get_packed_size(m);
        uint8_t *b = malloc(len ? len : 1);
        ck_assert_ptr_nonnull(b);
        protobuf_c_message_pack(m, b);
        char why[96] = "";
        ck_assert_msg(ms_pblimit_check(CLIENT, b, len, &ms_pblimit_client, why, sizeof(why)) ==
                          MS_OK,
                      "%s: %s", e->d_name, why);
        free(b);
        ms_codec_free(m);
        seen++;
    }
    closedir(d);
    ck_assert_int_gt(seen, 5);
}
END_TEST

/* The JSON depth at which a Value, Struct or ListValue field's value sits,
 * over every path from d (at depth `at`), smallest and largest. */
static void value_depths(const ProtobufCMessageDescriptor *d, int at, int *lo, int *hi, int guard)
{
    ck_assert_int_lt(guard, 16); /* the schema nests messages only through Value */
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *fd = &d->fields[i];
        if (fd->type != PROTOBUF_C_TYPE_MESSAGE)
            continue;
        const ProtobufCMessageDescriptor *sub = fd->descriptor;
        int child = fd->label == PROTOBUF_C_LABEL_REPEATED ? at + 2 : at + 1;
        const char *n = sub->short_name;
        if (!strcmp(n, "Value") || !strcmp(n, "Struct") || !strcmp(n, "ListValue")) {
            if (child < *lo)
                *lo = child;
            if (child > *hi)
                *hi = child;
            continue;
        }
        value_depths(sub, child, lo, hi, guard + 1);
    }
}

/* A server message wraps client values at most MS_CODEC_WRAP_DEPTH levels
 * deeper than any client message carries them, so whatever a client may send
 * can be written for any receiver. */
START_TEST(server_wraps_within_slack)
{
    int clo = 1000, chi = 0, slo = 1000, shi = 0;
    value_depths(CLIENT, 1, &clo, &chi, 0);
    value_depths(&meshsig__v1__server_message__descriptor, 1, &slo, &shi, 0);
    ck_assert_int_gt(chi, 0);
    ck_assert_int_le(shi - clo, MS_CODEC_WRAP_DEPTH);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("pblimit");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, deep_is_refused_without_recursion);
    tcase_add_test(tc, depth_agrees_with_json);
    tcase_add_test(tc, counts_and_lengths_agree_with_json);
    tcase_add_test(tc, malformed_framing);
    tcase_add_test(tc, strings_must_be_utf8);
    tcase_add_test(tc, corpus_passes);
    tcase_add_test(tc, server_wraps_within_slack);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
