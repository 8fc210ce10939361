/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for the PeerJS fast path (gateway/pjframe.c): what it takes, what it leaves to the
 * full decoder, the frames it writes, and agreement with the jansson path on real client frames
 * and their mutations. */
#include <check.h>
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../fuzz/pjref.h"
#include "mutate.h"
#include "pjframe.h"

#define N(a) (sizeof(a) / sizeof((a)[0]))

/* What peer 1.5's client sends (JSON.stringify of {type, payload, dst}), SDP and candidate
 * shortened; and what PeerJS-protocol load generators send. */
static const char *const client_frames[] = {
    "{\"type\":\"OFFER\",\"payload\":{\"sdp\":{\"type\":\"offer\",\"sdp\":\"v=0\\r\\no=- "
    "4611731400430051336 2 IN IP4 127.0.0.1\\r\\ns=-\\r\\nt=0 0\\r\\na=group:BUNDLE "
    "0\\r\\n\"},\"type\":\"data\",\"connectionId\":\"dc_x4tqoh8lyqa\",\"label\":\"dc_x4tqoh8lyqa\","
    "\"reliable\":false,\"serialization\":\"binary\",\"metadata\":{\"n\":1.5,\"ok\":true,\"l\":[1,"
    "null,\"\\u00e9\"]}},\"dst\":\"peer-b\"}",
    "{\"type\":\"ANSWER\",\"payload\":{\"sdp\":{\"type\":\"answer\",\"sdp\":\"v=0\\r\\n\"},"
    "\"type\":"
    "\"media\",\"connectionId\":\"mc_1\"},\"dst\":\"a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d\"}",
    "{\"type\":\"CANDIDATE\",\"payload\":{\"candidate\":{\"candidate\":\"candidate:1 1 udp "
    "2122260223 192.0.2.1 54400 typ host\",\"sdpMid\":\"0\",\"sdpMLineIndex\":0,"
    "\"usernameFragment\":\"abcd\"},\"type\":\"data\",\"connectionId\":\"dc_1\"},\"dst\":\"b\"}",
    "{\"type\":\"HEARTBEAT\"}",
    "{\"type\":\"LEAVE\",\"dst\":\"b\"}",
    "{\"type\":\"EXPIRE\",\"dst\":\"b\",\"payload\":null}",
    " { \"dst\" : \"p7\" , \"type\" : \"OFFER\" , \"payload\" : [ 1 , 2.50 , -3e2 ] } \n",
    "{\"type\":\"OFFER\",\"dst\":\"x\",\"payload\":\"caf\xc3\xa9\"}",
    "{\"type\":\"OFFER\",\"dst\":\"x\"}",
    "{\"type\":\"ANSWER\",\"dst\":\"u@h:1.a_b-c\",\"payload\":{}}",
    /* Escapes and numbers the payload builder (common/jsonvalue.c) decodes as jansson does. */
    "{\"type\":\"OFFER\",\"dst\":\"x\",\"payload\":{\"s\":\"\\ud83d\\ude00 \\u00e9\\u20ac "
    "\\n\\\"\\/\\t\\b\\f\\r\\\\\",\"\":\"\",\"n\":[-0,0.1,1e-5,-2.5E+3,123456789012345678,"
    "-123456789012345678,1e-99,0.000000000000000000000000000000000000000000000000000000000000000000"
    "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
    "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
    "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
    "0001],\"o\":{\"a\":{\"b\":[[],{},[{}]]}},\"t\":true,\"f\":false,\"z\":null}}",
};

START_TEST(takes_client_frames)
{
    for (size_t i = 0; i < N(client_frames); i++) {
        ms_pjframe_t f;
        ck_assert_msg(ms_pjframe_scan(client_frames[i], strlen(client_frames[i]), &f),
                      "left to the full decoder: %s", client_frames[i]);
        int op;
        const char *why = pjref_check(client_frames[i], strlen(client_frames[i]), &op);
        ck_assert_msg(!why, "%s: %s", why, client_frames[i]);
    }
}
END_TEST

START_TEST(reads_the_parts)
{
    ms_pjframe_t f;
    const char *s = "{\"payload\":{\"a\":[1,2]},\"dst\":\"peer-b\",\"type\":\"CANDIDATE\"}";
    ck_assert(ms_pjframe_scan(s, strlen(s), &f));
    ck_assert_int_eq(f.op, MS_PJFRAME_SIGNAL);
    ck_assert_str_eq(f.type, "CANDIDATE");
    ck_assert_str_eq(f.dst, "peer-b");
    ck_assert_int_eq(f.expires, 1);
    ck_assert_uint_eq(f.payload_len, strlen("{\"a\":[1,2]}"));
    ck_assert(!memcmp(f.payload, "{\"a\":[1,2]}", f.payload_len));

    s = "{\"type\":\"LEAVE\",\"dst\":\"b\"}";
    ck_assert(ms_pjframe_scan(s, strlen(s), &f));
    ck_assert_int_eq(f.op, MS_PJFRAME_SIGNAL);
    ck_assert_int_eq(f.expires, 0); /* PeerJS drops a LEAVE to an absent peer */
    ck_assert_ptr_null(f.payload);

    s = "{\"type\":\"HEARTBEAT\"}";
    ck_assert(ms_pjframe_scan(s, strlen(s), &f));
    ck_assert_int_eq(f.op, MS_PJFRAME_HEARTBEAT);
}
END_TEST

/* Each of these the full decoder must see: it ends a peer, is not PeerJS's,
 * is invalid, or only jansson can say what it means. */
static const char *const left_to_full[] = {
    "{\"type\":\"LEAVE\"}",                                /* the peer leaves */
    "{\"type\":\"LEAVE\",\"dst\":7}",                      /* the same: dst is no string */
    "{\"type\":\"OPEN\",\"dst\":\"b\"}",                   /* not relayed */
    "{\"type\":\"offer\",\"dst\":\"b\"}",                  /* types are upper case */
    "{\"type\":\"OFFER\"}",                                /* no target */
    "{\"type\":\"OFFER\",\"dst\":\"\"}",                   /* an empty target */
    "{\"type\":\"OFFER\",\"dst\":\"a b\"}",                /* not a peer id */
    "{\"type\":\"OFFER\",\"dst\":\"a\\\"b\"}",             /* escaped */
    "{\"type\":\"OFF\\u0045R\",\"dst\":\"b\"}",            /* escaped type */
    "{\"type\":\"OFFER\",\"dst\":\"b\",\"src\":\"evil\"}", /* another key */
    "{\"type\":\"OFFER\",\"dst\":\"b\",\"dst\":\"c\"}",    /* a key twice */
    "{\"type\":\"OFFER\",\"type\":\"OFFER\",\"dst\":\"c\"}",
    "{\"type\":\"OFFER\",\"dst\":\"b\",\"payload\":{\"a\":1,\"a\":2}}",
    "{\"type\":\"OFFER\",\"dst\":\"b\",\"payload\":01}",
    "{\"type\":\"OFFER\",\"dst\":\"b\",\"payload\":\"\\u0000\"}",
    "{\"type\":\"OFFER\",\"dst\":\"b\",\"payload\":\"\xff\"}",
    "{\"type\":\"OFFER\",\"dst\":\"b\",\"payload\":123456789012345678901234}",
    "{\"type\":\"OFFER\",\"dst\":\"b\"} x",
    "{\"type\":\"OFFER\",\"dst\":\"b\"",
    "[\"OFFER\"]",
    "\"HEARTBEAT\"",
    "",
    "{}",
    "{\"dst\":\"b\"}",
};

START_TEST(leaves_the_rest_to_the_full_decoder)
{
    for (size_t i = 0; i < N(left_to_full); i++) {
        ms_pjframe_t f;
        ck_assert_msg(!ms_pjframe_scan(left_to_full[i], strlen(left_to_full[i]), &f),
                      "vouched for: %s", left_to_full[i]);
    }
    /* Ids: up to 128 characters of the owner's alphabet. */
    char s[300], id[200];
    memset(id, 'a', sizeof(id));
    ms_pjframe_t f;
    snprintf(s, sizeof(s), "{\"type\":\"OFFER\",\"dst\":\"%.*s\"}", MS_PJFRAME_ID_MAX, id);
    ck_assert(ms_pjframe_scan(s, strlen(s), &f));
    snprintf(s, sizeof(s), "{\"type\":\"OFFER\",\"dst\":\"%.*s\"}", MS_PJFRAME_ID_MAX + 1, id);
    ck_assert(!ms_pjframe_scan(s, strlen(s), &f));
}
END_TEST

/* The compact walk (the client's layout) and the general scan read the same parts; the layouts
 * the walk leaves to the general scan are read by it. */
START_TEST(compact_walk_agrees_with_the_general_scan)
{
    static const char *const layouts[] = {
        "{\"type\":\"OFFER\",\"dst\":\"b\",\"payload\":{\"a\":1}}",
        "{\"type\":\"OFFER\",\"payload\":{\"a\":1},\"dst\":\"b\"}",
        "{\"dst\":\"b\",\"type\":\"OFFER\",\"payload\":{\"a\":1}}",
        "{\"payload\":{\"a\":1},\"type\":\"OFFER\",\"dst\":\"b\"}",
        "{ \"type\":\"OFFER\",\"dst\":\"b\",\"payload\":{\"a\":1}}",
        "{\"type\" :\"OFFER\",\"dst\":\"b\",\"payload\":{\"a\":1}}",
        "{\"type\":\"OFFER\" ,\"dst\":\"b\",\"payload\":{\"a\":1}}",
        "{\"type\":\"OFFER\",\"dst\": \"b\",\"payload\":{\"a\":1}}",
        "{\"type\":\"OFFER\",\"dst\":\"b\",\"payload\": {\"a\":1}}",
        "{\"type\":\"OFFER\",\"dst\":\"b\",\"payload\":{\"a\":1} }",
        "{\"type\":\"OFFER\",\"dst\":\"b\",\"payload\":{\"a\":1}}\n",
        "{\"type\":\"HEARTBEAT\"}",
        "{\"type\":\"HEARTBEAT\"} ",
        "{\"type\":\"HEARTBEAT\",\"dst\":\"b\"}",
        "{\"type\":\"HEARTBEAT\",\"payload\":1}",
        "{\"type\":\"LEAVE\",\"dst\":\"b\"}",
        "{\"type\":\"EXPIRE\",\"dst\":\"b\",\"payload\":null}",
        "{\"type\":\"ANSWER\",\"payload\":[],\"dst\":\"u@h:1.a_b-c\"}",
        "{\"type\":\"CANDIDATE\",\"dst\":\"b\"}",
    };
    for (size_t i = 0; i < N(layouts); i++) {
        ms_pjframe_t f;
        ck_assert_msg(ms_pjframe_scan(layouts[i], strlen(layouts[i]), &f), "%s", layouts[i]);
        const char *why = pjref_check_walks(layouts[i], strlen(layouts[i]));
        ck_assert_msg(!why, "%s: %s", why, layouts[i]);
    }
    /* What neither takes (left_to_full above) in the compact layout too. */
    static const char *const refused[] = {
        "{\"type\":\"OFFER\",\"dst\":\"b\",\"dst\":\"c\"}",
        "{\"type\":\"HEARTBEAT\",\"dst\":\"a b\"}", /* the general scan checks dst first */
        "{\"type\":\"OFFER\",\"payload\":1,\"payload\":2,\"dst\":\"c\"}",
        "{\"type\":\"OFFER\",\"dst\":\"b\",\"type\":\"OFFER\"}",
        "{\"type\":\"OFFER\",\"dst\":\"b\",\"src\":\"x\"}",
        "{\"type\":\"OFFER\",\"dst\":\"\"}",
        "{\"type\":\"OFFER\",\"dst\":\"b c\"}",
        "{\"type\":\"OFFER\",\"dst\":\"b\\u0041\"}",
        "{\"type\":\"OFFERS\",\"dst\":\"b\"}",
        "{\"type\":\"OPEN\",\"dst\":\"b\"}",
        "{\"type\":\"LEAVE\"}",
        "{\"type\":\"OFFER\",\"dst\":\"b\"}}",
        "{\"type\":\"OFFER\",\"dst\":\"b\",}",
        "{\"type\":\"OFFER\",\"dst\":\"b\",\"payload\":}",
        "{\"type\":\"OFFER\",\"dst\":\"b\",\"payload\":{\"a\":1,\"a\":2}}",
        "{\"type\":\"OFFER\",\"dst\":\"b\"",
        "{\"type\":\"OFFER\"",
        "{\"type\":\"",
    };
    for (size_t i = 0; i < N(refused); i++) {
        ms_pjframe_t f;
        ck_assert_msg(!ms_pjframe_scan(refused[i], strlen(refused[i]), &f), "vouched for: %s",
                      refused[i]);
        ck_assert_msg(!pjref_check_walks(refused[i], strlen(refused[i])), "%s", refused[i]);
    }
    /* Every prefix of a compact frame: the walk must not read past the end. */
    const char *s = layouts[1];
    for (size_t n = 0; n <= strlen(s); n++) {
        char *cut = malloc(n ? n : 1);
        memcpy(cut, s, n);
        ck_assert_msg(!pjref_check_walks(cut, n), "prefix %zu", n);
        free(cut);
    }
    /* An id of 128 characters, not 129, in the compact layout. */
    char buf[300], id[200];
    memset(id, 'a', sizeof(id));
    ms_pjframe_t f;
    snprintf(buf, sizeof(buf), "{\"type\":\"OFFER\",\"dst\":\"%.*s\"}", MS_PJFRAME_ID_MAX, id);
    ck_assert(ms_pjframe_scan(buf, strlen(buf), &f));
    ck_assert_uint_eq(f.dst_len, MS_PJFRAME_ID_MAX);
    snprintf(buf, sizeof(buf), "{\"type\":\"OFFER\",\"dst\":\"%.*s\"}", MS_PJFRAME_ID_MAX + 1, id);
    ck_assert(!ms_pjframe_scan(buf, strlen(buf), &f));
}
END_TEST

START_TEST(names_the_relayed_types)
{
    static const char *const yes[] = {"OFFER", "ANSWER", "CANDIDATE", "LEAVE", "EXPIRE"};
    for (size_t i = 0; i < N(yes); i++) {
        ck_assert_str_eq(ms_pjframe_type(yes[i]), yes[i]);
        size_t len = 0;
        ck_assert_str_eq(ms_pjframe_type_n(yes[i], &len), yes[i]);
        ck_assert_uint_eq(len, strlen(yes[i]));
    }
    static const char *const no[] = {"",       "HEARTBEAT", "OPEN",    "offer",      "OFFEr",
                                     "LEAVES", "ANSWEr",    "EXPIRE ", "CANDIDATES", "OFFER\t"};
    for (size_t i = 0; i < N(no); i++)
        ck_assert_ptr_null(ms_pjframe_type(no[i]));
}
END_TEST

START_TEST(writes_peerjs_frames)
{
    char out[256];
    const char *pl = "{\"sdp\":1}";
    size_t need = ms_pjframe_size("OFFER", "a", "b", strlen(pl));
    ck_assert_uint_le(need, sizeof(out));
    size_t n = ms_pjframe_write(out, "OFFER", "a", "b", pl, strlen(pl));
    ck_assert_uint_le(n, need);
    ck_assert_str_eq((out[n] = '\0', out),
                     "{\"type\":\"OFFER\",\"src\":\"a\",\"dst\":\"b\",\"payload\":{\"sdp\":1}}");
    n = ms_pjframe_write(out, "LEAVE", "a", "b", NULL, 0);
    ck_assert_str_eq((out[n] = '\0', out), "{\"type\":\"LEAVE\",\"src\":\"a\",\"dst\":\"b\"}");
    /* With the lengths known: the same bytes, and exactly the size with a payload. */
    memset(out, 'x', sizeof(out));
    n = ms_pjframe_write_n(out, "CANDIDATE", 9, "peer-a", 6, "b", 1, pl, strlen(pl));
    ck_assert_uint_eq(n, ms_pjframe_size_n(9, 6, 1, strlen(pl)));
    ck_assert_str_eq(
        (out[n] = '\0', out),
        "{\"type\":\"CANDIDATE\",\"src\":\"peer-a\",\"dst\":\"b\",\"payload\":{\"sdp\":1}}");
    n = ms_pjframe_write_n(out, "EXPIRE", 6, "a", 1, "bb", 2, NULL, 0);
    ck_assert_uint_le(n, ms_pjframe_size_n(6, 1, 2, 0));
    ck_assert_str_eq((out[n] = '\0', out), "{\"type\":\"EXPIRE\",\"src\":\"a\",\"dst\":\"bb\"}");
}
END_TEST

/* A Value as a binary meshsig client could send it in a PeerJS namespace. */
static Meshsig__V1__Value *value_of(const char *json)
{
    ProtobufCMessage *v = NULL;
    ms_codec_error_t cerr;
    ck_assert_int_eq(
        ms_codec_from_json(&meshsig__v1__value__descriptor, json, strlen(json), &v, &cerr), MS_OK);
    return (Meshsig__V1__Value *)v;
}

START_TEST(writes_from_values_or_leaves_them)
{
    static const struct {
        const char *json;
        int fast;
    } cases[] = {
        {"{\"type\":\"OFFER\",\"payload\":{\"sdp\":\"v=0\\r\\n\",\"n\":2,\"x\":[true,null]}}", 1},
        {"{\"type\":\"LEAVE\"}", 1},
        {"{\"payload\":\"\\u00e9\\\"\",\"type\":\"ANSWER\",\"other\":1}", 1},
        {"{\"type\":\"OF\\\"FER\",\"payload\":1}", 0}, /* a type that needs escaping */
        {"{\"type\":\"caf\\u00e9\"}", 0},
        {"{\"type\":1}", 0},
        {"{\"payload\":1}", 0},
        {"[\"OFFER\"]", 0},
        {"\"OFFER\"", 0},
    };
    for (size_t i = 0; i < N(cases); i++) {
        Meshsig__V1__Value *v = value_of(cases[i].json);
        char *buf = NULL;
        size_t len = 0, cap = 0;
        ms_err_t err = ms_pjframe_append_signal(&buf, &len, &cap, "src-1", "dst.2", v);
        ck_assert_msg((err == MS_OK) == cases[i].fast, "%s: %s", cases[i].json, ms_err_str(err));
        ck_assert_msg(!pjref_check_value(v), "%s", cases[i].json);
        free(buf);
        meshsig__v1__value__free_unpacked(v, NULL);
    }
    /* Appends after what the buffer holds. */
    Meshsig__V1__Value *v = value_of("{\"type\":\"OFFER\",\"payload\":[1]}");
    char *buf = malloc(4);
    memcpy(buf, "xyz", 4);
    size_t len = 3, cap = 4;
    ck_assert_int_eq(ms_pjframe_append_signal(&buf, &len, &cap, "a", "b", v), MS_OK);
    ck_assert_str_eq(buf, "xyz{\"type\":\"OFFER\",\"src\":\"a\",\"dst\":\"b\",\"payload\":[1]}");
    ck_assert_uint_eq(len, strlen(buf));
    /* Ids that would need escaping are the jansson path's. */
    ck_assert_int_eq(ms_pjframe_append_signal(&buf, &len, &cap, "a\"", "b", v), MS_ERR_INVAL);
    free(buf);
    meshsig__v1__value__free_unpacked(v, NULL);
}
END_TEST

static void mutate(char *s, size_t *len, size_t cap)
{
    mutate_with(s, len, cap, "{}[]\":,0123456789-+.eEtruefalsn \\u\x01\xc3\xa9_aZdD");
}

START_TEST(mutations_agree_with_the_full_path)
{
    rng_state = 0x9e3779b97f4a7c15ull;
    char buf[4096];
    int signals = 0, heartbeats = 0, left = 0;
    for (int it = 0; it < 30000; it++) {
        const char *src = client_frames[rnd() % N(client_frames)];
        size_t len = strlen(src);
        memcpy(buf, src, len);
        int muts = (int)(rnd() % 3);
        for (int i = 0; i < muts; i++)
            mutate(buf, &len, sizeof(buf));
        int op;
        const char *why = pjref_check(buf, len, &op);
        ck_assert_msg(!why, "%s: %.*s", why, (int)len, buf);
        signals += op == MS_PJFRAME_SIGNAL;
        heartbeats += op == MS_PJFRAME_HEARTBEAT;
        left += op == 0;
    }
    /* Mutations of valid frames stay mostly valid: the fast path must take many. */
    ck_assert_int_gt(signals, 5000);
    ck_assert_int_gt(heartbeats, 100);
    ck_assert_int_gt(left, 1000);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("pjframe");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, takes_client_frames);
    tcase_add_test(tc, reads_the_parts);
    tcase_add_test(tc, leaves_the_rest_to_the_full_decoder);
    tcase_add_test(tc, compact_walk_agrees_with_the_general_scan);
    tcase_add_test(tc, names_the_relayed_types);
    tcase_add_test(tc, writes_peerjs_frames);
    tcase_add_test(tc, writes_from_values_or_leaves_them);
    tcase_add_test(tc, mutations_agree_with_the_full_path);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
