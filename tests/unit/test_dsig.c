/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for the hand-packed DirectSignal (gateway/dsig.c): the same bytes as protobuf-c's
 * pack for every kind of field value, and protobuf-c reads back what was written. */
#include <check.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dsig.h"

/* Packs ds both ways and compares; returns the size. */
static size_t same_as_protobuf_c(const Meshsig__Bus__DirectSignal *ds)
{
    size_t want = meshsig__bus__direct_signal__get_packed_size(ds);
    uint8_t *a = malloc(want + 1), *b = malloc(want + 1);
    ck_assert_ptr_nonnull(a);
    ck_assert_ptr_nonnull(b);
    ck_assert_uint_eq(meshsig__bus__direct_signal__pack(ds, a), want);
    ck_assert_uint_eq(ms_dsig_size(ds), want);
    ck_assert_uint_eq(ms_dsig_write(ds, b), want);
    ck_assert_mem_eq(a, b, want);
    Meshsig__Bus__DirectSignal *back = meshsig__bus__direct_signal__unpack(NULL, want, b);
    ck_assert_ptr_nonnull(back);
    ck_assert_int_eq(back->kind, ds->kind);
    ck_assert_uint_eq(back->epoch, ds->epoch);
    ck_assert_uint_eq(back->to_session, ds->to_session);
    ck_assert_uint_eq(back->payload_json.len, ds->payload_json.len);
    meshsig__bus__direct_signal__free_unpacked(back, NULL);
    free(a);
    free(b);
    return want;
}

START_TEST(typical_signal)
{
    static const char payload[] = "{\"sdp\":\"v=0\\r\\n\",\"type\":\"offer\"}";
    Meshsig__Bus__DirectSignal ds = MESHSIG__BUS__DIRECT_SIGNAL__INIT;
    ds.shard = 37;
    ds.epoch = 123456789;
    ds.namespace_ = (char *)"room-1";
    ds.from_peer = (char *)"alice";
    ds.from_session = 42;
    ds.to_peer = (char *)"bob";
    ds.to_session = 7;
    ds.payload_json.data = (uint8_t *)payload;
    ds.payload_json.len = sizeof(payload) - 1;
    ds.client_id = (char *)"r1";
    ds.origin_us = 1765000000123456ull;
    ck_assert_uint_gt(same_as_protobuf_c(&ds), sizeof(payload));
}
END_TEST

/* Defaults are left out as protobuf-c leaves them out: zeros, "" and NULL strings, no bytes. */
START_TEST(defaults_left_out)
{
    Meshsig__Bus__DirectSignal ds = MESHSIG__BUS__DIRECT_SIGNAL__INIT;
    ck_assert_uint_eq(meshsig__bus__direct_signal__get_packed_size(&ds), 0);
    ds.client_id = (char *)"";
    ds.namespace_ = (char *)"";
    same_as_protobuf_c(&ds);
    ds.namespace_ = NULL;
    ds.from_peer = NULL;
    ds.to_peer = NULL;
    ds.kind = MESHSIG__BUS__DIRECT_SIGNAL__KIND__END;
    ds.owner_too = 1;
    ck_assert_uint_eq(same_as_protobuf_c(&ds), 4);
}
END_TEST

/* Every kind, the largest numbers (10-byte varints) and lengths that need 1, 2 and 3 bytes. */
START_TEST(kinds_numbers_and_lengths)
{
    static const size_t lens[] = {1, 127, 128, 16383, 16384, 70000};
    char *big = malloc(70001);
    ck_assert_ptr_nonnull(big);
    memset(big, 'x', 70000);
    big[70000] = '\0';
    for (int kind = 0; kind <= 4; kind++) {
        for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
            Meshsig__Bus__DirectSignal ds = MESHSIG__BUS__DIRECT_SIGNAL__INIT;
            ds.kind = (Meshsig__Bus__DirectSignal__Kind)kind;
            ds.shard = UINT32_MAX;
            ds.epoch = UINT64_MAX;
            ds.from_session = 1ull << 63;
            ds.to_session = 128;
            ds.origin_us = 127;
            ds.payload_json.data = (uint8_t *)big;
            ds.payload_json.len = lens[i];
            ds.peerjs_type = big + 70000 - lens[i] % 300; /* a string of lens[i] % 300 bytes */
            ds.from_peer = big + 70000 - lens[i];
            ds.owner_too = kind == 4;
            same_as_protobuf_c(&ds);
        }
    }
    free(big);
}
END_TEST

/* A decoded payload (field 10) is protobuf-c's to pack. */
START_TEST(decoded_payload_left_to_protobuf_c)
{
    Meshsig__V1__Value v = MESHSIG__V1__VALUE__INIT;
    Meshsig__Bus__DirectSignal ds = MESHSIG__BUS__DIRECT_SIGNAL__INIT;
    ds.to_peer = (char *)"bob";
    ds.payload = &v;
    ck_assert_uint_eq(ms_dsig_size(&ds), 0);
    ck_assert_uint_gt(meshsig__bus__direct_signal__get_packed_size(&ds), 0);
}
END_TEST

/* Random field values (a fixed seed, so a failure repeats). */
START_TEST(random_signals)
{
    static const char *const strs[] = {NULL, "", "a", "peer-with-a-longer-id@host:1.a_b-c", "é"};
    uint64_t x = 0x9e3779b97f4a7c15ull;
    uint8_t payload[300];
    for (size_t i = 0; i < sizeof(payload); i++)
        payload[i] = (uint8_t)(i * 7);
    for (int n = 0; n < 20000; n++) {
        uint64_t r[8];
        for (int i = 0; i < 8; i++) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            r[i] = x;
        }
        Meshsig__Bus__DirectSignal ds = MESHSIG__BUS__DIRECT_SIGNAL__INIT;
        ds.kind = (Meshsig__Bus__DirectSignal__Kind)(r[0] % 5);
        ds.shard = (uint32_t)(r[1] >> (r[0] % 33));
        ds.epoch = r[2] >> (r[1] % 65 == 64 ? 63 : r[1] % 64);
        ds.from_session = r[3] % 3 ? r[3] >> (r[2] % 64) : 0;
        ds.to_session = r[4] % 3 ? r[4] : 0;
        ds.origin_us = r[5] % 4 ? r[5] >> 10 : 0;
        ds.owner_too = r[6] & 1;
        ds.namespace_ = (char *)strs[r[6] % 5];
        ds.from_peer = (char *)strs[(r[6] >> 8) % 5];
        ds.to_peer = (char *)strs[(r[6] >> 16) % 5];
        ds.client_id = (char *)strs[(r[6] >> 24) % 5];
        ds.peerjs_type = (char *)strs[(r[6] >> 32) % 5];
        ds.payload_json.len = r[7] % 4 ? (size_t)(r[7] % sizeof(payload)) : 0;
        ds.payload_json.data = ds.payload_json.len ? payload : NULL;
        same_as_protobuf_c(&ds);
    }
}
END_TEST

int main(void)
{
    Suite *s = suite_create("dsig");
    TCase *tc = tcase_create("pack");
    tcase_add_test(tc, typical_signal);
    tcase_add_test(tc, defaults_left_out);
    tcase_add_test(tc, kinds_numbers_and_lengths);
    tcase_add_test(tc, decoded_payload_left_to_protobuf_c);
    tcase_add_test(tc, random_signals);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
