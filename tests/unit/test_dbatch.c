/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for the hand decoder of direct batches (gateway/dbatch.c): the batch protobuf-c
 * reads, or none, on valid, truncated and hostile input. */
#include <check.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dsig.h"
#include "../fuzz/dbatchref.h"

static uint64_t rng = 0x9e3779b97f4a7c15ull;

static uint64_t next(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static const char *const strs[] = {NULL, "", "a", "peer-with-a-longer-id@host:1.a_b-c", "é"};
static uint8_t payload[300];

/* A random signal without a decoded payload (what the direct path sends). */
static void random_signal(Meshsig__Bus__DirectSignal *ds)
{
    uint64_t r[8];
    for (int i = 0; i < 8; i++)
        r[i] = next();
    meshsig__bus__direct_signal__init(ds);
    ds->kind = (Meshsig__Bus__DirectSignal__Kind)(r[0] % 5);
    ds->shard = (uint32_t)(r[1] >> (r[0] % 33));
    ds->epoch = r[2] >> (r[1] % 64);
    ds->from_session = r[3] % 3 ? r[3] >> (r[2] % 64) : 0;
    ds->to_session = r[4] % 3 ? r[4] : 0;
    ds->origin_us = r[5] % 4 ? r[5] >> 10 : 0;
    ds->owner_too = r[6] & 1;
    ds->namespace_ = (char *)strs[r[6] % 5];
    ds->from_peer = (char *)strs[(r[6] >> 8) % 5];
    ds->to_peer = (char *)strs[(r[6] >> 16) % 5];
    ds->client_id = (char *)strs[(r[6] >> 24) % 5];
    ds->peerjs_type = (char *)strs[(r[6] >> 32) % 5];
    ds->payload_json.len = r[7] % 4 ? (size_t)(r[7] % sizeof(payload)) : 0;
    ds->payload_json.data = ds->payload_json.len ? payload : NULL;
}

/* A packed batch from gateway "gw-1" with n random signals; *len its size. */
static uint8_t *random_batch(size_t n, size_t *len)
{
    Meshsig__Bus__DirectSignal *ds = calloc(n ? n : 1, sizeof(*ds));
    Meshsig__Bus__DirectSignal **v = calloc(n ? n : 1, sizeof(*v));
    ck_assert_ptr_nonnull(ds);
    ck_assert_ptr_nonnull(v);
    for (size_t i = 0; i < n; i++) {
        random_signal(&ds[i]);
        v[i] = &ds[i];
    }
    Meshsig__Bus__GatewayBatch b = MESHSIG__BUS__GATEWAY_BATCH__INIT;
    b.gateway_id = (char *)"gw-1";
    b.direct = v;
    b.n_direct = n;
    b.bus_version = (1u << 16) | 3;
    *len = meshsig__bus__gateway_batch__get_packed_size(&b);
    uint8_t *out = malloc(*len + 1);
    ck_assert_ptr_nonnull(out);
    ck_assert_uint_eq(meshsig__bus__gateway_batch__pack(&b, out), *len);
    free(ds);
    free(v);
    return out;
}

START_TEST(valid_batches_read_as_protobuf_c_reads_them)
{
    for (int i = 0; i < 2000; i++) {
        size_t len, n = (size_t)(next() % 40);
        uint8_t *data = random_batch(n, &len);
        ck_assert_int_eq(dbatchref_check(data, len), 1);
        free(data);
    }
}
END_TEST

/* In order, payloads left in the caller's buffer, the sender's own encoder's bytes read back. */
START_TEST(order_and_payload_in_place)
{
    static const char json[] = "{\"sdp\":\"v=0\\r\\n\",\"type\":\"offer\"}";
    enum { N = 1000 };
    size_t cap = 64 + N * 128, len = 0;
    uint8_t *data = malloc(cap);
    ck_assert_ptr_nonnull(data);
    data[len++] = 5 << 3 | 2;
    data[len++] = 4;
    memcpy(data + len, "gw-2", 4);
    len += 4;
    for (int i = 0; i < N; i++) {
        Meshsig__Bus__DirectSignal ds = MESHSIG__BUS__DIRECT_SIGNAL__INIT;
        ds.shard = 3;
        ds.epoch = 99;
        ds.namespace_ = (char *)"room";
        ds.from_peer = (char *)"alice";
        ds.to_peer = (char *)"bob";
        ds.to_session = (uint64_t)i + 1;
        ds.payload_json.data = (uint8_t *)json;
        ds.payload_json.len = sizeof(json) - 1;
        size_t n = ms_dsig_size(&ds);
        ck_assert_uint_lt(n, 127);
        data[len++] = 6 << 3 | 2;
        data[len++] = (uint8_t)n;
        ck_assert_uint_eq(ms_dsig_write(&ds, data + len), n);
        len += n;
    }
    ck_assert_int_eq(dbatchref_check(data, len), 1);
    ms_pbarena_t arena;
    ms_pbarena_init(&arena, 1u << 20);
    Meshsig__Bus__GatewayBatch *b = ms_dbatch_decode(data, len, &arena);
    ck_assert_ptr_nonnull(b);
    ck_assert_str_eq(b->gateway_id, "gw-2");
    ck_assert_uint_eq(b->n_direct, N);
    for (size_t i = 0; i < N; i++) {
        ck_assert_uint_eq(b->direct[i]->to_session, i + 1);
        ck_assert_str_eq(b->direct[i]->from_peer, "alice");
        const uint8_t *p = b->direct[i]->payload_json.data;
        ck_assert(p > data && p + sizeof(json) - 1 <= data + len);
        ck_assert_mem_eq(p, json, sizeof(json) - 1);
    }
    ms_pbarena_cleanup(&arena);
    free(data);
}
END_TEST

/* Every prefix of a batch: a shorter batch where it ends between fields, else refused by both
 * or left to protobuf-c; never read differently. */
START_TEST(truncated)
{
    for (int k = 0; k < 50; k++) {
        size_t len;
        uint8_t *data = random_batch(1 + (size_t)(next() % 6), &len);
        for (size_t cut = 0; cut < len; cut++) {
            uint8_t *copy = malloc(cut ? cut : 1);
            ck_assert_ptr_nonnull(copy);
            memcpy(copy, data, cut);
            ck_assert_int_ne(dbatchref_check(copy, cut), -1);
            free(copy);
        }
        free(data);
    }
}
END_TEST

/* Random flips, insertions and deletions of bytes in valid batches. */
START_TEST(mutated)
{
    int taken = 0, left = 0;
    for (int k = 0; k < 20000; k++) {
        size_t len;
        uint8_t *data = random_batch(1 + (size_t)(next() % 4), &len);
        uint8_t *m = malloc(len + 8);
        ck_assert_ptr_nonnull(m);
        memcpy(m, data, len);
        size_t mlen = len;
        for (int e = 0, edits = 1 + (int)(next() % 3); e < edits && mlen; e++) {
            size_t at = (size_t)(next() % mlen);
            switch (next() % 3) {
            case 0:
                m[at] = (uint8_t)next();
                break;
            case 1:
                memmove(m + at + 1, m + at, mlen - at);
                m[at] = (uint8_t)next();
                mlen++;
                break;
            default:
                memmove(m + at, m + at + 1, mlen - at - 1);
                mlen--;
                break;
            }
        }
        int rc = dbatchref_check(m, mlen);
        ck_assert_int_ne(rc, -1);
        taken += rc == 1;
        left += rc == 0;
        free(m);
        free(data);
    }
    /* Both outcomes were exercised. */
    ck_assert_int_gt(taken, 100);
    ck_assert_int_gt(left, 100);
}
END_TEST

static int check_bytes(const char *bytes, size_t len)
{
    return dbatchref_check((const uint8_t *)bytes, len);
}
#define CHECK(lit) check_bytes(lit, sizeof(lit) - 1)

/* Inputs built to differ: each is left to the general path (0), or refused there too. */
START_TEST(hostile_and_unusual)
{
    /* Empty: an empty batch, read the same. */
    ck_assert_int_eq(check_bytes("", 0), 1);
    /* A coordinator's delivery (field 4). */
    ck_assert_int_eq(CHECK("\x22\x00"), 0);
    /* A signal with a decoded payload (DirectSignal field 10). */
    ck_assert_int_eq(CHECK("\x32\x02\x52\x00"), 0);
    /* Unknown fields: top level (field 7) and in a signal (field 20, a two-byte tag). */
    ck_assert_int_eq(CHECK("\x38\x01"), 0);
    ck_assert_int_eq(CHECK("\x32\x03\xa0\x01\x01"), 0);
    /* A known field with another wire type: shard as bytes, signal kind as fixed32. */
    ck_assert_int_eq(CHECK("\x0a\x00"), 0);
    ck_assert_int_eq(CHECK("\x32\x05\x0d\x01\x00\x00\x00"), 0);
    /* A tag in two bytes for field 1 (valid protobuf, never written). */
    ck_assert_int_eq(CHECK("\x88\x00\x01"), 0);
    /* A length past the end, at top level and inside a signal. */
    ck_assert_int_eq(CHECK("\x2a\x05gw"), 0);
    ck_assert_int_eq(CHECK("\x32\x03\x3a\x09x"), 0);
    /* A signal's length past the batch. */
    ck_assert_int_eq(CHECK("\x32\x7f\x08\x00"), 0);
    /* A length in six bytes (protobuf-c reads at most five). */
    ck_assert_int_eq(CHECK("\x2a\x80\x80\x80\x80\x80\x00"), 0);
    /* A length near 2^64. */
    ck_assert_int_eq(CHECK("\x2a\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01"), 0);
    /* Varints: unterminated, eleven bytes, a tenth byte over 1. */
    ck_assert_int_eq(CHECK("\x10\x80"), 0);
    ck_assert_int_eq(CHECK("\x10\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80\x00"), 0);
    ck_assert_int_eq(CHECK("\x10\xff\xff\xff\xff\xff\xff\xff\xff\xff\x02"), 0);
    /* The largest 64-bit epoch, taken. */
    ck_assert_int_eq(CHECK("\x10\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01"), 1);
    /* A shard over 32 bits, an enum over int32, a bool of 2. */
    ck_assert_int_eq(CHECK("\x08\x80\x80\x80\x80\x10"), 0);
    ck_assert_int_eq(CHECK("\x32\x06\x08\x80\x80\x80\x80\x08"), 0);
    ck_assert_int_eq(CHECK("\x32\x02\x68\x02"), 0);
    ck_assert_int_eq(CHECK("\x32\x02\x68\x01"), 1);
    /* A field number of 0, a group, an end-group. */
    ck_assert_int_eq(CHECK("\x00\x00"), 0);
    ck_assert_int_eq(CHECK("\x33\x34"), 0);
    ck_assert_int_eq(CHECK("\x32\x01\x0c"), 0);
    /* An empty signal and strings with a NUL inside: C strings end there, as protobuf-c's do. */
    ck_assert_int_eq(CHECK("\x32\x00"), 1);
    ck_assert_int_eq(CHECK("\x2a\x03g\x00w\x32\x05\x2a\x03\x61\x00\x62"), 1);
    /* A string that is not UTF-8 (refused by the general path), one that is. */
    ck_assert_int_eq(CHECK("\x2a\x02\xc3\x28"), 0);
    ck_assert_int_eq(CHECK("\x32\x04\x3a\x02\xc3\xa9"), 1);
    /* Fields repeated: the last one counts, as in protobuf-c. */
    ck_assert_int_eq(CHECK("\x2a\x01\x61\x2a\x01\x62\x08\x05\x08\x07\x32\x04\x10\x01\x10\x02"), 1);
}
END_TEST

/* Many signals in few bytes (an empty signal is two bytes). */
START_TEST(many_empty_signals)
{
    enum { N = 100000 };
    uint8_t *data = malloc(2 * N);
    ck_assert_ptr_nonnull(data);
    for (size_t i = 0; i < N; i++) {
        data[2 * i] = 6 << 3 | 2;
        data[2 * i + 1] = 0;
    }
    ck_assert_int_eq(dbatchref_check(data, 2 * N), 1);
    free(data);
}
END_TEST

int main(void)
{
    for (size_t i = 0; i < sizeof(payload); i++)
        payload[i] = (uint8_t)(i * 7);
    Suite *s = suite_create("dbatch");
    TCase *tc = tcase_create("decode");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, valid_batches_read_as_protobuf_c_reads_them);
    tcase_add_test(tc, order_and_payload_in_place);
    tcase_add_test(tc, truncated);
    tcase_add_test(tc, mutated);
    tcase_add_test(tc, hostile_and_unusual);
    tcase_add_test(tc, many_empty_signals);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
