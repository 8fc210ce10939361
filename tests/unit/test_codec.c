/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for the protobuf <-> proto3 JSON codec: round trips, exact shapes, errors, mutation.
 */
#include <check.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bus.pb-c.h"
#include "client.pb-c.h"
#include "codec.h"
#include "mutate.h"

#define CLIENT (&meshsig__v1__client_message__descriptor)
#define SERVER (&meshsig__v1__server_message__descriptor)
#define SHARD (&meshsig__bus__shard_request__descriptor)
#define BATCH (&meshsig__bus__gateway_batch__descriptor)

static ProtobufCMessage *parse_ok(const ProtobufCMessageDescriptor *d, const char *json)
{
    ProtobufCMessage *m = NULL;
    ms_codec_error_t err;
    ms_err_t rc = ms_codec_from_json(d, json, strlen(json), &m, &err);
    ck_assert_msg(rc == MS_OK, "%s: %s (%s)", json, ms_err_str(rc), err.message);
    ck_assert_ptr_nonnull(m);
    return m;
}

static char *print_ok(const ProtobufCMessage *m)
{
    char *out = NULL;
    size_t len = 0;
    ck_assert_int_eq(ms_codec_to_json(m, &out, &len), MS_OK);
    ck_assert_uint_eq(len, strlen(out));
    return out;
}

static uint8_t *pack(const ProtobufCMessage *m, size_t *len)
{
    *len = protobuf_c_message_get_packed_size(m);
    uint8_t *b = malloc(*len ? *len : 1);
    ck_assert_ptr_nonnull(b);
    ck_assert_uint_eq(protobuf_c_message_pack(m, b), *len);
    return b;
}

/* Parses json, prints it and expects `want` (json itself when NULL); parsing
 * the printed text again must give byte-identical protobuf. */
static void roundtrip(const ProtobufCMessageDescriptor *d, const char *json, const char *want)
{
    ProtobufCMessage *m = parse_ok(d, json);
    char *out = print_ok(m);
    ck_assert_str_eq(out, want ? want : json);
    ProtobufCMessage *m2 = parse_ok(d, out);
    size_t l1, l2;
    uint8_t *b1 = pack(m, &l1), *b2 = pack(m2, &l2);
    ck_assert_msg(l1 == l2 && memcmp(b1, b2, l1) == 0, "packed bytes differ for %s", json);
    /* and the binary path agrees: unpack(pack(m)) prints the same JSON */
    ProtobufCMessage *m3 = protobuf_c_message_unpack(d, NULL, l1, b1);
    ck_assert_ptr_nonnull(m3);
    char *out3 = print_ok(m3);
    ck_assert_str_eq(out3, out);
    free(out3);
    protobuf_c_message_free_unpacked(m3, NULL);
    free(b1);
    free(b2);
    free(out);
    ms_codec_free(m);
    ms_codec_free(m2);
}

static void expect_err(const ProtobufCMessageDescriptor *d, const char *json, ms_err_t want,
                       int top, const char *msg_part)
{
    ProtobufCMessage *m = (ProtobufCMessage *)1;
    ms_codec_error_t err;
    ms_err_t rc = ms_codec_from_json(d, json, strlen(json), &m, &err);
    ck_assert_msg(rc == want, "%s: got %s want %s (%s)", json, ms_err_str(rc), ms_err_str(want),
                  err.message);
    ck_assert_ptr_null(m);
    ck_assert_int_eq(err.unknown_top_level, top);
    ck_assert_msg(err.message[0], "%s: empty error message", json);
    if (msg_part)
        ck_assert_msg(strstr(err.message, msg_part), "%s: message \"%s\" lacks \"%s\"", json,
                      err.message, msg_part);
    /* err may be NULL */
    ck_assert_int_eq(ms_codec_from_json(d, json, strlen(json), &m, NULL), want);
}

/* Canonical JSON (fields in number order, lowerCamelCase): prints back verbatim. */
static const char *const client_cases[] = {
    "{\"id\":\"1\",\"hello\":{\"namespace\":\"room1\",\"token\":\"x\",\"peerId\":\"alice\","
    "\"resumeToken\":\"rt\",\"position\":{\"x\":1.5,\"y\":-2,\"lat\":48.8566,\"lon\":2.3522},"
    "\"metadata\":{\"name\":\"Alice\",\"age\":30,\"tags\":[\"a\",\"b\"],\"nested\":{\"ok\":true,"
    "\"none\":null}},\"offers\":[{\"type\":\"offer\",\"sdp\":\"v=0\\r\\n\"},null,\"str\",1.25]}}",
    "{\"id\":\"2\",\"signal\":{\"to\":\"bob\",\"payload\":{\"type\":\"offer\",\"sdp\":\"v=0\\r\\no="
    "- "
    "1 2 IN IP4 127.0.0.1\\r\\n\",\"candidates\":[{\"candidate\":\"candidate:1 1 udp 2122260223 "
    "10.0.0.1 54321 typ host\",\"sdpMLineIndex\":0,\"usernameFragment\":null}],\"flags\":[true,"
    "false],\"n\":-12.5,\"big\":1e+300,\"tiny\":1e-300,\"third\":0.33333333333333331,"
    "\"unicode\":\"h\xc3\xa9llo w\xc3\xb6rld \xe2\x9c\x93 \xf0\x9f\x98\x80 "
    "\xe6\x97\xa5\xe6\x9c\xac\","
    "\"esc\":\"quote\\\" backslash\\\\ tab\\t "
    "ctl\\u0001\\u001f\\b\\f\",\"empty\":{},\"none\":[]}}}",
    "{\"signal\":{\"to\":\"b\",\"payload\":0}}",
    "{\"id\":\"3\",\"emit\":{\"to\":\"bob\",\"event\":\"chat\",\"data\":{\"text\":\"hi\"},"
    "\"ackId\":\"a1\",\"timeoutMs\":5000,\"persistent\":true}}",
    "{\"ack\":{\"ackId\":\"a1\",\"to\":\"alice\",\"data\":[1,2,3],\"error\":{\"code\":\"ACK_"
    "TIMEOUT\","
    "\"message\":\"late\"}}}",
    "{\"id\":\"4\",\"room\":{\"join\":{\"room\":\"lobby\"}}}",
    "{\"room\":{\"leave\":{\"room\":\"lobby\"}}}",
    "{\"room\":{\"emit\":{\"room\":\"lobby\",\"event\":\"e\",\"data\":\"x\",\"echo\":true}}}",
    "{\"id\":\"5\",\"room\":{\"list\":{\"room\":\"lobby\"}}}",
    "{\"stream\":{\"streamId\":\"s1\",\"open\":{\"to\":\"bob\",\"label\":\"file\","
    "\"metadata\":{\"size\":1024}}}}",
    "{\"stream\":{\"streamId\":\"s1\",\"data\":{\"data\":\"aGVsbG8gd29ybGQ=\"}}}",
    "{\"stream\":{\"streamId\":\"s1\",\"data\":{}}}",
    "{\"stream\":{\"streamId\":\"s1\",\"credit\":{\"bytes\":65536}}}",
    "{\"stream\":{\"streamId\":\"s1\",\"close\":{\"abort\":true,\"error\":{\"code\":\"NO_CREDIT\"}}"
    "}}",
    "{\"service\":{\"register\":{\"service\":\"echo\"}}}",
    "{\"service\":{\"unregister\":{\"service\":\"echo\"}}}",
    "{\"service\":{\"call\":{\"service\":\"echo\",\"callId\":\"c1\",\"args\":{\"x\":[]},"
    "\"timeoutMs\":100}}}",
    "{\"service\":{\"reply\":{\"callId\":\"c1\",\"result\":{}}}}",
    "{\"service\":{\"reply\":{\"callId\":\"c1\",\"error\":{\"code\":\"INTERNAL\",\"message\":\"x\"}"
    "}}}",
    "{\"topic\":{\"subscribe\":{\"pattern\":\"news.*\"}}}",
    "{\"topic\":{\"unsubscribe\":{\"pattern\":\"news.*\"}}}",
    "{\"topic\":{\"publish\":{\"topic\":\"news.sport\",\"data\":{\"score\":[1,0]}}}}",
    "{\"position\":{\"x\":3,\"y\":4}}",
    "{\"position\":{}}",
    "{\"position\":{\"x\":\"NaN\",\"y\":\"Infinity\",\"lat\":\"-Infinity\",\"lon\":0.1}}",
    "{\"rtt\":{\"peer\":\"bob\",\"ms\":12.75}}",
    "{\"leave\":{}}",
    "{\"ping\":{}}",
    "{\"id\":\"e\",\"edge\":{\"peer\":\"bob\",\"state\":\"FAILED\",\"reason\":\"timeout\"}}",
    "{\"edge\":{\"peer\":\"bob\",\"state\":\"UP\",\"relayed\":true}}",
    "{\"id\":\"r\",\"reparent\":{}}",
    "{\"id\":\"h2\",\"hello\":{\"namespace\":\"b\",\"role\":\"SOURCE\",\"policy\":"
    "{\"topology\":\"tree\",\"k1\":8}}}",
    "{\"p2pTarget\":{\"peer\":\"bob\"}}",
    "{\"p2pTarget\":{\"peer\":\"alice\",\"answer\":true,\"reason\":\"busy\"}}",
    "{\"received\":{\"msgIds\":[\"9f2c51d07a3be418\",\"0123456789abcdef\"]}}",
    "{\"id\":\"h3\",\"hello\":{\"namespace\":\"b\",\"acksPersistent\":true}}",
};

static const char *const server_cases[] = {
    "{\"id\":\"1\",\"welcome\":{\"peerId\":\"alice\",\"gatewayId\":\"gw-1\",\"resumeToken\":\"r\","
    "\"limits\":{\"maxFrameBytes\":65536,\"msgsPerSec\":50,\"bytesPerSec\":1048576,"
    "\"maxQueueBytes\":4294967295},\"heartbeatMs\":25000,\"namespace\":\"room1\","
    "\"topology\":\"delaunay\"}}",
    "{\"topology\":{\"connect\":{\"peer\":\"bob\",\"initiator\":true,\"role\":\"PARENT\","
    "\"metadata\":{\"name\":\"Bob\"},\"offer\":{\"type\":\"offer\",\"sdp\":\"v=0\"},"
    "\"position\":{\"x\":1,\"y\":2}}}}",
    "{\"topology\":{\"connect\":{\"peer\":\"carol\",\"role\":\"CHILD\"}}}",
    "{\"topology\":{\"disconnect\":{\"peer\":\"bob\"}}}",
    "{\"signal\":{\"from\":\"alice\",\"payload\":{\"type\":\"answer\",\"sdp\":\"v=0\"}}}",
    "{\"emit\":{\"from\":\"alice\",\"event\":\"chat\",\"data\":null,\"msgId\":\"m1\"}}",
    "{\"ack\":{\"ackId\":\"a1\",\"from\":\"bob\",\"data\":\"ok\"}}",
    "{\"peerLeft\":{\"peer\":\"bob\",\"reason\":\"timeout\"}}",
    "{\"id\":\"5\",\"room\":{\"members\":{\"room\":\"lobby\",\"peers\":[\"alice\",\"bob\"]}}}",
    "{\"room\":{\"peerJoined\":{\"room\":\"lobby\",\"peer\":\"carol\"}}}",
    "{\"room\":{\"peerLeft\":{\"room\":\"lobby\",\"peer\":\"carol\"}}}",
    "{\"room\":{\"emit\":{\"room\":\"lobby\",\"event\":\"e\",\"data\":1,\"from\":\"bob\"}}}",
    "{\"stream\":{\"streamId\":\"s1\",\"open\":{\"from\":\"alice\",\"label\":\"f\"}}}",
    "{\"stream\":{\"streamId\":\"s1\",\"close\":{}}}",
    "{\"service\":{\"call\":{\"service\":\"echo\",\"callId\":\"c1\",\"args\":[true],"
    "\"from\":\"alice\"}}}",
    "{\"service\":{\"reply\":{\"callId\":\"c1\",\"error\":{\"code\":\"TIMEOUT\"}}}}",
    "{\"topic\":{\"publish\":{\"topic\":\"news\",\"data\":\"x\",\"from\":\"bob\"}}}",
    "{\"id\":\"7\",\"error\":{\"code\":\"NOT_NEIGHBOUR\",\"message\":\"bob is not a neighbour of "
    "alice\"}}",
    "{\"pong\":{}}",
    "{\"waiting\":{\"position\":3}}",
    "{\"reconnect\":{\"reason\":\"draining\"}}",
    "{\"id\":\"9\",\"ok\":{}}",
    "{\"iceServers\":{\"servers\":[{\"urls\":[\"stun:s:3478\"]},{\"urls\":[\"turn:s:3478\"],"
    "\"username\":\"1700000000:alice\",\"credential\":\"Cd/49soE35ICqcJF/bCTn8Z4OyE=\"}],"
    "\"expiresAt\":\"1700000000\"}}",
    "{\"topology\":{\"retry\":{\"peer\":\"bob\",\"iceRestart\":true}}}",
    "{\"topology\":{\"source\":{\"present\":true,\"peer\":\"studio\"}}}",
    "{\"p2pTarget\":{\"peer\":\"alice\"}}",
};

static const char *const shard_cases[] = {
    "{\"reqId\":\"gw-1/42\",\"gatewayId\":\"gw-1\",\"session\":\"18446744073709551615\","
    "\"namespace\":\"room1\",\"peerId\":\"alice\",\"join\":{\"peerId\":\"alice\",\"hello\":"
    "{\"namespace\":\"room1\",\"position\":{\"x\":1},\"metadata\":{\"k\":[1,[2,{\"z\":null}]]}}}}",
    "{\"reqId\":\"gw-1/43\",\"gatewayId\":\"gw-1\",\"session\":\"7\",\"namespace\":\"room1\","
    "\"peerId\":\"alice\",\"clientId\":\"c9\",\"client\":{\"id\":\"c9\",\"signal\":{\"to\":\"bob\","
    "\"payload\":{\"a\":[1,{\"b\":null}]}}}}",
    "{\"session\":\"1\",\"leave\":{\"reason\":\"bye\"}}",
};

static const char *const batch_cases[] = {
    "{\"shard\":17,\"epoch\":\"9007199254740993\",\"coordinatorId\":\"co-1\",\"deliveries\":["
    "{\"session\":\"5\",\"msg\":{\"id\":\"1\",\"welcome\":{\"peerId\":\"alice\"}},\"peerId\":"
    "\"alice\"},{\"session\":\"6\",\"msg\":{\"error\":{\"code\":\"REPLACED\"}},\"closeCode\":4001,"
    "\"peerId\":\"bob\"},{\"session\":\"7\",\"msg\":{\"signal\":{\"from\":\"a\",\"payload\":"
    "{\"sdp\":\"v=0\"}}}}]}",
};

#define N(a) (sizeof(a) / sizeof((a)[0]))

START_TEST(client_roundtrips)
{
    for (size_t i = 0; i < N(client_cases); i++)
        roundtrip(CLIENT, client_cases[i], NULL);
}
END_TEST

START_TEST(server_roundtrips)
{
    for (size_t i = 0; i < N(server_cases); i++)
        roundtrip(SERVER, server_cases[i], NULL);
}
END_TEST

START_TEST(bus_roundtrips)
{
    for (size_t i = 0; i < N(shard_cases); i++)
        roundtrip(SHARD, shard_cases[i], NULL);
    for (size_t i = 0; i < N(batch_cases); i++)
        roundtrip(BATCH, batch_cases[i], NULL);
}
END_TEST

/* Every oneof member of both top-level messages appears in the case tables. */
START_TEST(cases_cover_every_oneof_member)
{
    const ProtobufCMessageDescriptor *ds[] = {CLIENT, SERVER};
    const char *const *tabs[] = {client_cases, server_cases};
    size_t ns[] = {N(client_cases), N(server_cases)};
    for (int k = 0; k < 2; k++) {
        for (unsigned f = 0; f < ds[k]->n_fields; f++) {
            const ProtobufCFieldDescriptor *fd = &ds[k]->fields[f];
            if (!(fd->flags & PROTOBUF_C_FIELD_FLAG_ONEOF))
                continue;
            int found = 0;
            for (size_t i = 0; i < ns[k] && !found; i++) {
                ProtobufCMessage *m = parse_ok(ds[k], tabs[k][i]);
                found = *(const uint32_t *)((const char *)m + fd->quantifier_offset) == fd->id;
                ms_codec_free(m);
            }
            ck_assert_msg(found, "%s.%s not covered", ds[k]->short_name, fd->name);
        }
    }
}
END_TEST

static void example(const ProtobufCMessageDescriptor *d, const char *in, const char *want)
{
    roundtrip(d, in, want);
    /* same JSON value as the documented shape, whatever the key order */
    ProtobufCMessage *m = parse_ok(d, in);
    char *out = print_ok(m);
    json_t *a = json_loads(in, 0, NULL), *b = json_loads(out, 0, NULL);
    ck_assert(json_equal(a, b));
    json_t *c = ms_codec_to_jansson(m);
    ck_assert_ptr_nonnull(c);
    ck_assert(json_equal(a, c));
    json_decref(a);
    json_decref(b);
    json_decref(c);
    free(out);
    ms_codec_free(m);
}

START_TEST(documented_examples)
{
    example(
        CLIENT,
        "{\"id\":\"1\",\"hello\":{\"namespace\":\"room1\",\"peerId\":\"alice\",\"token\":\"x\"}}",
        "{\"id\":\"1\",\"hello\":{\"namespace\":\"room1\",\"token\":\"x\",\"peerId\":\"alice\"}}");
    example(SERVER, "{\"id\":\"1\",\"welcome\":{\"peerId\":\"alice\",\"gatewayId\":\"gw-1\"}}",
            NULL);
    example(SERVER, "{\"topology\":{\"connect\":{\"peer\":\"bob\",\"initiator\":true}}}", NULL);
    example(CLIENT,
            "{\"signal\":{\"to\":\"bob\",\"payload\":{\"type\":\"offer\",\"sdp\":\"v=0...\"}}}",
            NULL);
    example(SERVER,
            "{\"id\":\"7\",\"error\":{\"code\":\"NOT_NEIGHBOUR\",\"message\":\"bob is not a "
            "neighbour of alice\"}}",
            NULL);
    example(CLIENT, "{\"ping\":{}}", NULL);
    example(SERVER, "{\"pong\":{}}", NULL);

    /* and the parsed values are where the gateway looks for them */
    Meshsig__V1__ClientMessage *cm = (Meshsig__V1__ClientMessage *)parse_ok(
        CLIENT,
        "{\"id\":\"1\",\"hello\":{\"namespace\":\"room1\",\"peerId\":\"alice\",\"token\":\"x\"}}");
    ck_assert_int_eq(cm->msg_case, MESHSIG__V1__CLIENT_MESSAGE__MSG_HELLO);
    ck_assert_str_eq(cm->id, "1");
    ck_assert_str_eq(cm->hello->namespace_, "room1");
    ck_assert_str_eq(cm->hello->peer_id, "alice");
    ck_assert_str_eq(cm->hello->token, "x");
    ck_assert_str_eq(cm->hello->resume_token, "");
    ck_assert_ptr_null(cm->hello->position);
    ms_codec_free(&cm->base);

    Meshsig__V1__ServerMessage *sm = (Meshsig__V1__ServerMessage *)parse_ok(
        SERVER, "{\"topology\":{\"connect\":{\"peer\":\"bob\",\"initiator\":true,\"role\":\"ROLE_"
                "PARENT\"}}}");
    ck_assert_int_eq(sm->msg_case, MESHSIG__V1__SERVER_MESSAGE__MSG_TOPOLOGY);
    ck_assert_int_eq(sm->topology->event_case, MESHSIG__V1__TOPOLOGY__EVENT_CONNECT);
    ck_assert(sm->topology->connect->initiator);
    ck_assert_int_eq(sm->topology->connect->role, MESHSIG__V1__ROLE__PARENT);
    ms_codec_free(&sm->base);
}
END_TEST

/* What input accepts beyond the canonical form, and how it prints. */
START_TEST(lenient_input)
{
    roundtrip(CLIENT, "{\"hello\":{\"peer_id\":\"a\",\"resume_token\":\"r\"}}",
              "{\"hello\":{\"peerId\":\"a\",\"resumeToken\":\"r\"}}");
    roundtrip(SERVER, "{\"error\":{\"code\":9}}", "{\"error\":{\"code\":\"NOT_NEIGHBOUR\"}}");
    roundtrip(SERVER, "{\"error\":{\"code\":\"ERROR_CODE_NOT_NEIGHBOUR\"}}",
              "{\"error\":{\"code\":\"NOT_NEIGHBOUR\"}}");
    roundtrip(SERVER, "{\"topology\":{\"connect\":{\"role\":\"ROLE_PARENT\"}}}",
              "{\"topology\":{\"connect\":{\"role\":\"PARENT\"}}}");
    roundtrip(SERVER, "{\"topology\":{\"connect\":{\"role\":1}}}",
              "{\"topology\":{\"connect\":{\"role\":\"PARENT\"}}}");
    /* unknown numbers survive (proto3 enums are open) */
    roundtrip(SERVER, "{\"error\":{\"code\":99}}", NULL);
    /* default enum value is omitted */
    roundtrip(SERVER, "{\"error\":{\"code\":\"CODE_UNSPECIFIED\"}}", "{\"error\":{}}");
    roundtrip(SHARD, "{\"session\":5}", "{\"session\":\"5\"}");
    roundtrip(SHARD, "{\"session\":\"0\"}", "{}");
    roundtrip(CLIENT, "{\"emit\":{\"timeoutMs\":\"5000\"}}", "{\"emit\":{\"timeoutMs\":5000}}");
    roundtrip(CLIENT, "{\"emit\":{\"timeoutMs\":5000.0}}", "{\"emit\":{\"timeoutMs\":5000}}");
    roundtrip(CLIENT, "{\"rtt\":{\"ms\":\"2.5\"}}", "{\"rtt\":{\"ms\":2.5}}");
    roundtrip(CLIENT, "{\"rtt\":{\"ms\":0}}", "{\"rtt\":{}}");
    roundtrip(CLIENT, "{\"rtt\":{\"ms\":23.0}}", "{\"rtt\":{\"ms\":23}}");
    roundtrip(CLIENT, "{\"rtt\":{\"ms\":2.3e1}}", "{\"rtt\":{\"ms\":23}}");
    roundtrip(CLIENT, "{\"rtt\":{\"ms\":1e15}}", "{\"rtt\":{\"ms\":1e+15}}");
    roundtrip(CLIENT, "{\"rtt\":{\"ms\":123456789012345}}", NULL);
    /* null means default for ordinary fields */
    roundtrip(CLIENT, "{\"id\":null,\"ping\":{}}", "{\"ping\":{}}");
    roundtrip(CLIENT, "{\"hello\":{\"position\":null,\"metadata\":null,\"offers\":null}}",
              "{\"hello\":{}}");
    /* ... but is a value for a Value field */
    roundtrip(CLIENT, "{\"signal\":{\"payload\":null}}", NULL);
    /* bytes: URL-safe and unpadded */
    roundtrip(CLIENT, "{\"stream\":{\"data\":{\"data\":\"-_-_\"}}}",
              "{\"stream\":{\"data\":{\"data\":\"+/+/\"}}}");
    roundtrip(CLIENT, "{\"stream\":{\"data\":{\"data\":\"aGk\"}}}",
              "{\"stream\":{\"data\":{\"data\":\"aGk=\"}}}");
    roundtrip(CLIENT, "{\"stream\":{\"data\":{\"data\":\"aA\"}}}",
              "{\"stream\":{\"data\":{\"data\":\"aA==\"}}}");
    roundtrip(CLIENT, "{\"stream\":{\"data\":{\"data\":\"\"}}}", "{\"stream\":{\"data\":{}}}");
    /* a JSON integer beyond 2^53 in a Value keeps double precision */
    roundtrip(CLIENT, "{\"signal\":{\"payload\":9007199254740993}}",
              "{\"signal\":{\"payload\":9007199254740992}}");
    /* uint64 extremes */
    roundtrip(BATCH, "{\"epoch\":\"18446744073709551615\"}", NULL);
    roundtrip(BATCH, "{\"epoch\":9223372036854775807}", "{\"epoch\":\"9223372036854775807\"}");
}
END_TEST

START_TEST(errors)
{
    expect_err(CLIENT, "{\"hello\":", MS_ERR_INVAL, 0, "malformed JSON");
    expect_err(CLIENT, "", MS_ERR_INVAL, 0, NULL);
    expect_err(CLIENT, "[1,2]", MS_ERR_INVAL, 0, "expected an object");
    expect_err(CLIENT, "\"x\"", MS_ERR_INVAL, 0, "expected an object");
    expect_err(CLIENT, "{\"hello\":5}", MS_ERR_INVAL, 0, "hello: expected an object");
    expect_err(CLIENT, "{\"hello\":{\"namespace\":7}}", MS_ERR_INVAL, 0,
               "hello.namespace: expected a string");
    expect_err(CLIENT, "{\"signal\":{\"to\":5}}", MS_ERR_INVAL, 0, "signal.to: expected a string");
    expect_err(CLIENT, "{\"bogus\":{}}", MS_ERR_NOTFOUND, 1, "bogus");
    expect_err(CLIENT, "{\"id\":\"1\",\"bogus\":{}}", MS_ERR_NOTFOUND, 1, "bogus");
    expect_err(CLIENT, "{\"hello\":{\"bogus\":1}}", MS_ERR_NOTFOUND, 0, "hello.bogus");
    expect_err(CLIENT, "{\"hello\":{\"namespace\":\"a\"},\"ping\":{}}", MS_ERR_INVAL, 0, "ping");
    expect_err(CLIENT, "{\"room\":{\"join\":{},\"leave\":{}}}", MS_ERR_INVAL, 0, "room.leave");
    expect_err(CLIENT, "{\"hello\":{\"peerId\":\"a\",\"peer_id\":\"b\"}}", MS_ERR_INVAL, 0,
               "twice");
    expect_err(CLIENT, "{\"id\":\"1\",\"id\":\"2\"}", MS_ERR_INVAL, 0, "malformed JSON");
    expect_err(SERVER, "{\"error\":{\"code\":\"NOPE\"}}", MS_ERR_INVAL, 0, "error.code");
    expect_err(SERVER, "{\"error\":{\"code\":true}}", MS_ERR_INVAL, 0, "error.code");
    expect_err(SERVER, "{\"topology\":{\"connect\":{\"role\":\"ERROR_CODE_PARENT\"}}}",
               MS_ERR_INVAL, 0, "topology.connect.role");
    expect_err(CLIENT, "{\"stream\":{\"data\":{\"data\":\"!!!!\"}}}", MS_ERR_INVAL, 0, "base64");
    expect_err(CLIENT, "{\"stream\":{\"data\":{\"data\":\"abcde\"}}}", MS_ERR_INVAL, 0, "base64");
    expect_err(CLIENT, "{\"stream\":{\"data\":{\"data\":\"ab=c\"}}}", MS_ERR_INVAL, 0, "base64");
    expect_err(CLIENT, "{\"stream\":{\"data\":{\"data\":\"abc==\"}}}", MS_ERR_INVAL, 0, "base64");
    expect_err(CLIENT, "{\"stream\":{\"data\":{\"data\":7}}}", MS_ERR_INVAL, 0, "base64");
    expect_err(CLIENT, "{\"stream\":{\"credit\":{\"bytes\":4294967296}}}", MS_ERR_INVAL, 0,
               "out of range");
    expect_err(CLIENT, "{\"stream\":{\"credit\":{\"bytes\":-1}}}", MS_ERR_INVAL, 0, "out of range");
    expect_err(CLIENT, "{\"stream\":{\"credit\":{\"bytes\":1.5}}}", MS_ERR_INVAL, 0,
               "stream.credit.bytes");
    expect_err(CLIENT, "{\"stream\":{\"credit\":{\"bytes\":\"12x\"}}}", MS_ERR_INVAL, 0, NULL);
    expect_err(CLIENT, "{\"stream\":{\"credit\":{\"bytes\":\" 12\"}}}", MS_ERR_INVAL, 0, NULL);
    expect_err(CLIENT, "{\"emit\":{\"timeoutMs\":true}}", MS_ERR_INVAL, 0, NULL);
    expect_err(BATCH, "{\"epoch\":\"18446744073709551616\"}", MS_ERR_INVAL, 0, "out of range");
    expect_err(BATCH, "{\"epoch\":\"-1\"}", MS_ERR_INVAL, 0, "epoch");
    expect_err(BATCH, "{\"deliveries\":[{\"session\":\"1\"},5]}", MS_ERR_INVAL, 0, "deliveries[1]");
    expect_err(BATCH, "{\"deliveries\":{}}", MS_ERR_INVAL, 0, "expected an array");
    expect_err(BATCH, "{\"deliveries\":[{\"msg\":{\"nope\":1}}]}", MS_ERR_NOTFOUND, 0,
               "deliveries[0].msg.nope");
    expect_err(CLIENT, "{\"emit\":{\"persistent\":1}}", MS_ERR_INVAL, 0, "emit.persistent");
    expect_err(CLIENT, "{\"rtt\":{\"ms\":\"fast\"}}", MS_ERR_INVAL, 0, "rtt.ms");
    expect_err(CLIENT, "{\"rtt\":{\"ms\":\"inf\"}}", MS_ERR_INVAL, 0, "rtt.ms");
    expect_err(CLIENT, "{\"hello\":{\"metadata\":[1]}}", MS_ERR_INVAL, 0, "hello.metadata");
    expect_err(CLIENT, "{\"hello\":{\"offers\":{}}}", MS_ERR_INVAL, 0, "hello.offers");
    expect_err(CLIENT, "{\"ping\":[]}", MS_ERR_INVAL, 0, "ping");
    /* an error deep inside a payload after much was built: all of it is freed */
    expect_err(
        CLIENT,
        "{\"id\":\"x\",\"hello\":{\"namespace\":\"n\",\"metadata\":{\"a\":[1,2,{\"b\":\"c\"}]},"
        "\"offers\":[{\"x\":1},{\"y\":[1]}],\"bogus\":1}}",
        MS_ERR_NOTFOUND, 0, "hello.bogus");
}
END_TEST

static char *nested(int levels, const char *open, const char *close, const char *pre,
                    const char *post)
{
    size_t n = strlen(pre) + strlen(post) + (size_t)levels * (strlen(open) + strlen(close)) + 2;
    char *s = malloc(n);
    ck_assert_ptr_nonnull(s);
    strcpy(s, pre);
    for (int i = 0; i < levels; i++)
        strcat(s, open);
    strcat(s, "1");
    for (int i = 0; i < levels; i++)
        strcat(s, close);
    strcat(s, post);
    return s;
}

START_TEST(nesting_depth)
{
    /* ClientMessage and signal are two levels, so a payload of 62 nested arrays is the most. */
    char *ok = nested(62, "[", "]", "{\"signal\":{\"payload\":", "}}");
    roundtrip(CLIENT, ok, NULL);
    free(ok);
    char *deep = nested(63, "[", "]", "{\"signal\":{\"payload\":", "}}");
    expect_err(CLIENT, deep, MS_ERR_INVAL, 0, "deep");
    free(deep);
    deep = nested(100, "{\"a\":", "}", "{\"signal\":{\"payload\":", "}}");
    expect_err(CLIENT, deep, MS_ERR_INVAL, 0, "deep");
    free(deep);
    deep = nested(100, "[{\"a\":", "}]", "{\"hello\":{\"metadata\":{\"m\":", "}}}");
    expect_err(CLIENT, deep, MS_ERR_INVAL, 0, "deep");
    free(deep);
    deep = nested(5000, "[", "]", "{\"signal\":{\"payload\":", "}}");
    expect_err(CLIENT, deep, MS_ERR_INVAL, 0, NULL);
    free(deep);

    /* output refuses what input would: a deep Value built in C */
    Meshsig__V1__Value *vals = calloc(100, sizeof(*vals));
    Meshsig__V1__ListValue *lists = calloc(100, sizeof(*lists));
    Meshsig__V1__Value **ptrs = calloc(100, sizeof(*ptrs));
    ck_assert(vals && lists && ptrs);
    for (int i = 0; i < 100; i++) {
        meshsig__v1__value__init(&vals[i]);
        meshsig__v1__list_value__init(&lists[i]);
        ptrs[i] = &vals[i];
        if (i < 99) {
            vals[i].kind_case = MESHSIG__V1__VALUE__KIND_LIST_VALUE;
            vals[i].list_value = &lists[i];
            lists[i].n_values = 1;
            lists[i].values = &ptrs[i + 1];
        } else {
            vals[i].kind_case = MESHSIG__V1__VALUE__KIND_BOOL_VALUE;
            vals[i].bool_value = 1;
        }
    }
    Meshsig__V1__Signal sig = MESHSIG__V1__SIGNAL__INIT;
    sig.payload = &vals[0];
    Meshsig__V1__ServerMessage sm = MESHSIG__V1__SERVER_MESSAGE__INIT;
    sm.msg_case = MESHSIG__V1__SERVER_MESSAGE__MSG_SIGNAL;
    sm.signal = &sig;
    char *out = (char *)1;
    ck_assert_int_eq(ms_codec_to_json(&sm.base, &out, NULL), MS_ERR_INVAL);
    ck_assert_ptr_null(out);
    ck_assert_ptr_null(ms_codec_to_jansson(&sm.base));
    free(vals);
    free(lists);
    free(ptrs);
}
END_TEST

/* Built in C (as a coordinator or a binary client would), printed, parsed back:
 * the same protobuf bytes. */
START_TEST(proto_json_proto_identical)
{
    Meshsig__V1__Value v_name = MESHSIG__V1__VALUE__INIT, v_num = MESHSIG__V1__VALUE__INIT,
                       v_null = MESHSIG__V1__VALUE__INIT, v_t = MESHSIG__V1__VALUE__INIT,
                       v_list = MESHSIG__V1__VALUE__INIT, v_zero = MESHSIG__V1__VALUE__INIT,
                       v_sdp = MESHSIG__V1__VALUE__INIT, v_offer = MESHSIG__V1__VALUE__INIT;
    v_name.kind_case = MESHSIG__V1__VALUE__KIND_STRING_VALUE;
    v_name.string_value = "B\xc3\xb6"
                          "b \"the\" builder\n";
    v_num.kind_case = MESHSIG__V1__VALUE__KIND_NUMBER_VALUE;
    v_num.number_value = 0.1 + 0.2;
    v_null.kind_case = MESHSIG__V1__VALUE__KIND_NULL_VALUE;
    v_t.kind_case = MESHSIG__V1__VALUE__KIND_BOOL_VALUE;
    v_t.bool_value = 1;
    v_zero.kind_case = MESHSIG__V1__VALUE__KIND_NUMBER_VALUE;
    v_zero.number_value = 0;
    Meshsig__V1__Value *items[] = {&v_num, &v_null, &v_t, &v_zero};
    Meshsig__V1__ListValue lv = MESHSIG__V1__LIST_VALUE__INIT;
    lv.n_values = 4;
    lv.values = items;
    v_list.kind_case = MESHSIG__V1__VALUE__KIND_LIST_VALUE;
    v_list.list_value = &lv;
    Meshsig__V1__Struct__FieldsEntry e1 = MESHSIG__V1__STRUCT__FIELDS_ENTRY__INIT,
                                     e2 = MESHSIG__V1__STRUCT__FIELDS_ENTRY__INIT;
    e1.key = "name";
    e1.value = &v_name;
    e2.key = "list";
    e2.value = &v_list;
    Meshsig__V1__Struct__FieldsEntry *ents[] = {&e1, &e2};
    Meshsig__V1__Struct md = MESHSIG__V1__STRUCT__INIT;
    md.n_fields = 2;
    md.fields = ents;
    Meshsig__V1__Struct__FieldsEntry e3 = MESHSIG__V1__STRUCT__FIELDS_ENTRY__INIT;
    e3.key = "sdp";
    e3.value = &v_sdp;
    v_sdp.kind_case = MESHSIG__V1__VALUE__KIND_STRING_VALUE;
    v_sdp.string_value = "v=0\r\no=- 4611731400430051336 2 IN IP4 127.0.0.1\r\n";
    Meshsig__V1__Struct__FieldsEntry *oents[] = {&e3};
    Meshsig__V1__Struct os = MESHSIG__V1__STRUCT__INIT;
    os.n_fields = 1;
    os.fields = oents;
    v_offer.kind_case = MESHSIG__V1__VALUE__KIND_STRUCT_VALUE;
    v_offer.struct_value = &os;
    Meshsig__V1__Position pos = MESHSIG__V1__POSITION__INIT;
    pos.x = 1.0 / 3;
    pos.y = -1e-310;
    pos.lat = INFINITY;
    pos.lon = 1e300;
    Meshsig__V1__Connect conn = MESHSIG__V1__CONNECT__INIT;
    conn.peer = "bob";
    conn.initiator = 1;
    conn.role = MESHSIG__V1__ROLE__PARENT;
    conn.metadata = &md;
    conn.offer = &v_offer;
    conn.position = &pos;
    Meshsig__V1__Topology topo = MESHSIG__V1__TOPOLOGY__INIT;
    topo.event_case = MESHSIG__V1__TOPOLOGY__EVENT_CONNECT;
    topo.connect = &conn;
    Meshsig__V1__ServerMessage sm = MESHSIG__V1__SERVER_MESSAGE__INIT;
    sm.id = "42";
    sm.msg_case = MESHSIG__V1__SERVER_MESSAGE__MSG_TOPOLOGY;
    sm.topology = &topo;

    Meshsig__V1__ServerMessage sm2 = MESHSIG__V1__SERVER_MESSAGE__INIT;
    Meshsig__V1__Stream st = MESHSIG__V1__STREAM__INIT;
    Meshsig__V1__StreamData sd = MESHSIG__V1__STREAM_DATA__INIT;
    uint8_t bin[256];
    for (int i = 0; i < 256; i++)
        bin[i] = (uint8_t)(255 - i);
    sd.data.data = bin;
    sd.data.len = sizeof(bin);
    st.stream_id = "s";
    st.op_case = MESHSIG__V1__STREAM__OP_DATA;
    st.data = &sd;
    sm2.msg_case = MESHSIG__V1__SERVER_MESSAGE__MSG_STREAM;
    sm2.stream = &st;

    Meshsig__Bus__Delivery d1 = MESHSIG__BUS__DELIVERY__INIT, d2 = MESHSIG__BUS__DELIVERY__INIT;
    d1.session = UINT64_MAX;
    d1.msg = &sm;
    d1.peer_id = "alice";
    d2.session = 1;
    d2.msg = &sm2;
    d2.close_code = 4000;
    Meshsig__Bus__Delivery *dl[] = {&d1, &d2};
    Meshsig__Bus__GatewayBatch gb = MESHSIG__BUS__GATEWAY_BATCH__INIT;
    gb.shard = 63;
    gb.epoch = (1ull << 53) + 1;
    gb.coordinator_id = "co";
    gb.n_deliveries = 2;
    gb.deliveries = dl;

    const ProtobufCMessage *all[] = {&sm.base, &sm2.base, &gb.base};
    for (size_t i = 0; i < N(all); i++) {
        size_t l1, l2;
        uint8_t *b1 = pack(all[i], &l1);
        char *js = print_ok(all[i]);
        ProtobufCMessage *back = parse_ok(all[i]->descriptor, js);
        uint8_t *b2 = pack(back, &l2);
        ck_assert_msg(l1 == l2 && memcmp(b1, b2, l1) == 0, "bytes differ via %s", js);
        free(b1);
        free(b2);
        free(js);
        ms_codec_free(back);
    }

    char *js = print_ok(&sm.base);
    ck_assert_str_eq(js, "{\"id\":\"42\",\"topology\":{\"connect\":{\"peer\":\"bob\",\"initiator\":"
                         "true,\"role\":\"PARENT\",\"metadata\":{\"name\":\"B\xc3\xb6"
                         "b \\\"the\\\" "
                         "builder\\n\",\"list\":[0.30000000000000004,null,true,0]},\"offer\":{"
                         "\"sdp\":\"v=0\\r\\no=- 4611731400430051336 2 IN IP4 127.0.0.1\\r\\n\"},"
                         "\"position\":{\"x\":0.33333333333333331,\"y\":-9.99999999999997e-311,"
                         "\"lat\":\"Infinity\",\"lon\":1e+300}}}}");
    free(js);
}
END_TEST

START_TEST(output_strings)
{
    Meshsig__V1__Signal sig = MESHSIG__V1__SIGNAL__INIT;
    Meshsig__V1__ServerMessage sm = MESHSIG__V1__SERVER_MESSAGE__INIT;
    sm.msg_case = MESHSIG__V1__SERVER_MESSAGE__MSG_SIGNAL;
    sm.signal = &sig;
    sig.from = "a\"b\\c\n\r\t\b\f\x01\x1f\x7f/\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80";
    char *js = print_ok(&sm.base);
    ck_assert_str_eq(js, "{\"signal\":{\"from\":\"a\\\"b\\\\c\\n\\r\\t\\b\\f\\u0001\\u001f\x7f/"
                         "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\"}}");
    free(js);
    /* broken UTF-8 from a binary client: replaced, the frame stays valid */
    sig.from = "x\xff"
               "y\xc3"
               "z\xed\xa0\x80"
               "w\xf0\x9f\x98";
    js = print_ok(&sm.base);
    ck_assert_str_eq(js,
                     "{\"signal\":{\"from\":\"x\xef\xbf\xbdy\xef\xbf\xbdz\xef\xbf\xbd\xef\xbf\xbd"
                     "\xef\xbf\xbdw\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\"}}");
    json_t *j = json_loads(js, 0, NULL);
    ck_assert_ptr_nonnull(j);
    json_decref(j);
    free(js);
    /* a oneof member at its default is still written; a Value that is unset is not */
    Meshsig__V1__Value v = MESHSIG__V1__VALUE__INIT;
    v.kind_case = MESHSIG__V1__VALUE__KIND_STRING_VALUE;
    v.string_value = "";
    sig.from = "";
    sig.payload = &v;
    js = print_ok(&sm.base);
    ck_assert_str_eq(js, "{\"signal\":{\"payload\":\"\"}}");
    free(js);
    sig.payload = NULL;
    js = print_ok(&sm.base);
    ck_assert_str_eq(js, "{\"signal\":{}}");
    free(js);
}
END_TEST

/* Long strings cross the writer's internal chunks: whatever mix of ASCII, escapes
 * and multi-byte characters, jansson reads back exactly the original. */
START_TEST(long_strings_read_back)
{
    static const char *const pieces[] = {"a",
                                         "bcdefgh",
                                         "\"",
                                         "\\",
                                         "\n",
                                         "\x01",
                                         "\x1f",
                                         "\xc3\xa9",
                                         "\xe2\x82\xac",
                                         "\xf0\x9f\x98\x80",
                                         " ",
                                         "0123456789abcdef"};
    uint64_t r = 12345;
    for (int round = 0; round < 40; round++) {
        size_t target = 1 + (size_t)round * 517, n = 0;
        char *str = malloc(target + 8);
        ck_assert_ptr_nonnull(str);
        while (n < target) {
            r = r * 6364136223846793005ull + 1442695040888963407ull;
            const char *pc = pieces[(r >> 33) % (sizeof(pieces) / sizeof(pieces[0]))];
            size_t k = strlen(pc);
            if (n + k > target + 4)
                break;
            memcpy(str + n, pc, k);
            n += k;
        }
        str[n] = '\0';
        Meshsig__V1__PeerLeft pl = MESHSIG__V1__PEER_LEFT__INIT;
        pl.reason = str;
        Meshsig__V1__ServerMessage sm = MESHSIG__V1__SERVER_MESSAGE__INIT;
        sm.msg_case = MESHSIG__V1__SERVER_MESSAGE__MSG_PEER_LEFT;
        sm.peer_left = &pl;
        char *js = print_ok(&sm.base);
        json_t *j = json_loads(js, 0, NULL);
        ck_assert_ptr_nonnull(j);
        const char *back =
            json_string_value(json_object_get(json_object_get(j, "peerLeft"), "reason"));
        ck_assert_ptr_nonnull(back);
        ck_assert_str_eq(back, str);
        json_decref(j);
        free(js);
        free(str);
    }
}
END_TEST

START_TEST(append_after_headroom)
{
    ProtobufCMessage *m = parse_ok(SERVER, "{\"id\":\"7\",\"pong\":{}}");
    size_t cap = 20, len = 16;
    char *buf = malloc(cap);
    ck_assert_ptr_nonnull(buf);
    memset(buf, 'H', 16);
    ck_assert_int_eq(ms_codec_append_json(m, &buf, &len, &cap), MS_OK);
    ck_assert_uint_eq(len, 16 + strlen("{\"id\":\"7\",\"pong\":{}}"));
    ck_assert(cap > len);
    ck_assert_int_eq(memcmp(buf, "HHHHHHHHHHHHHHHH{\"id\":\"7\",\"pong\":{}}", len), 0);
    /* reused: writing starts wherever len says */
    len = 16;
    ck_assert_int_eq(ms_codec_append_json(m, &buf, &len, &cap), MS_OK);
    ck_assert_int_eq(memcmp(buf + 16, "{\"id\":\"7\",\"pong\":{}}", len - 16), 0);
    /* nonsense arguments */
    len = cap + 1;
    ck_assert_int_eq(ms_codec_append_json(m, &buf, &len, &cap), MS_ERR_INVAL);
    free(buf);
    ms_codec_free(m);
}
END_TEST

/* ---- random mutations of valid JSON: never a crash, never a leak ---- */

static void mutate(char *s, size_t *len, size_t cap)
{
    mutate_with(s, len, cap, "{}[]\":,0123456789-+.eEtruefalsn \\u\xc3\xa9\x80_aZ");
}

START_TEST(mutation_never_crashes_or_leaks)
{
    rng_state = 0x9e3779b97f4a7c15ull;
    const ProtobufCMessageDescriptor *ds[] = {CLIENT, SERVER};
    const char *const *tabs[] = {client_cases, server_cases};
    size_t ns[] = {N(client_cases), N(server_cases)};
    char buf[4096];
    int accepted = 0;
    for (int it = 0; it < 4000; it++) {
        int k = (int)(rnd() % 2);
        const char *src = tabs[k][rnd() % ns[k]];
        size_t len = strlen(src);
        ck_assert(len < sizeof(buf));
        memcpy(buf, src, len);
        int muts = 1 + (int)(rnd() % 4);
        for (int i = 0; i < muts; i++)
            mutate(buf, &len, sizeof(buf));
        ProtobufCMessage *m = NULL;
        ms_codec_error_t err;
        ms_err_t rc = ms_codec_from_json(ds[k], buf, len, &m, &err);
        if (rc != MS_OK) {
            ck_assert_ptr_null(m);
            ck_assert(rc == MS_ERR_INVAL || rc == MS_ERR_NOTFOUND);
            ck_assert(err.message[0]);
            continue;
        }
        accepted++;
        char *out = print_ok(m);
        ProtobufCMessage *m2 = parse_ok(ds[k], out);
        size_t l1, l2;
        uint8_t *b1 = pack(m, &l1), *b2 = pack(m2, &l2);
        ck_assert_msg(l1 == l2 && memcmp(b1, b2, l1) == 0, "bytes differ via %s", out);
        free(b1);
        free(b2);
        free(out);
        ms_codec_free(m);
        ms_codec_free(m2);
    }
    /* the mutations are mild enough that some survive, so both paths ran */
    ck_assert_int_gt(accepted, 50);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("codec");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, client_roundtrips);
    tcase_add_test(tc, server_roundtrips);
    tcase_add_test(tc, bus_roundtrips);
    tcase_add_test(tc, cases_cover_every_oneof_member);
    tcase_add_test(tc, documented_examples);
    tcase_add_test(tc, lenient_input);
    tcase_add_test(tc, errors);
    tcase_add_test(tc, nesting_depth);
    tcase_add_test(tc, proto_json_proto_identical);
    tcase_add_test(tc, output_strings);
    tcase_add_test(tc, long_strings_read_back);
    tcase_add_test(tc, append_after_headroom);
    tcase_add_test(tc, mutation_never_crashes_or_leaks);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
