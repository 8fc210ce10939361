/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for the protobuf-c arena: batches unpacked into it equal the malloc'd unpack,
 * blocks are aligned, what spills is freed at the reset and the buffer grows to fit. */
#include <check.h>
#include <stdalign.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bus.pb-c.h"
#include "pbarena.h"

/* A packed GatewayBatch with n direct signals (payloads of 200 bytes). */
static uint8_t *batch(size_t n, size_t *len)
{
    Meshsig__Bus__GatewayBatch b = MESHSIG__BUS__GATEWAY_BATCH__INIT;
    b.gateway_id = "gw-1";
    Meshsig__Bus__DirectSignal *ds = calloc(n, sizeof(*ds));
    Meshsig__Bus__DirectSignal **v = calloc(n, sizeof(*v));
    char(*peers)[24] = calloc(n, sizeof(*peers));
    char payload[201];
    memset(payload, 'x', 200);
    payload[200] = '\0';
    ck_assert(ds && v && peers);
    for (size_t i = 0; i < n; i++) {
        Meshsig__Bus__DirectSignal init = MESHSIG__BUS__DIRECT_SIGNAL__INIT;
        ds[i] = init;
        snprintf(peers[i], sizeof(peers[i]), "p%zu", i);
        ds[i].namespace_ = "ns";
        ds[i].from_peer = peers[i];
        ds[i].to_peer = "q";
        ds[i].from_session = i;
        ds[i].to_session = i + 1;
        ds[i].payload_json.data = (uint8_t *)payload;
        ds[i].payload_json.len = 200;
        ds[i].client_id = "";
        v[i] = &ds[i];
    }
    b.n_direct = n;
    b.direct = v;
    *len = meshsig__bus__gateway_batch__get_packed_size(&b);
    uint8_t *out = malloc(*len);
    ck_assert_ptr_nonnull(out);
    meshsig__bus__gateway_batch__pack(&b, out);
    free(ds);
    free(v);
    free(peers);
    return out;
}

static void same(const Meshsig__Bus__GatewayBatch *a, const Meshsig__Bus__GatewayBatch *b)
{
    ck_assert_str_eq(a->gateway_id, b->gateway_id);
    ck_assert_uint_eq(a->n_direct, b->n_direct);
    for (size_t i = 0; i < a->n_direct; i++) {
        const Meshsig__Bus__DirectSignal *x = a->direct[i], *y = b->direct[i];
        ck_assert_str_eq(x->from_peer, y->from_peer);
        ck_assert_str_eq(x->to_peer, y->to_peer);
        ck_assert_str_eq(x->namespace_, y->namespace_);
        ck_assert_uint_eq(x->from_session, y->from_session);
        ck_assert_uint_eq(x->to_session, y->to_session);
        ck_assert_uint_eq(x->payload_json.len, y->payload_json.len);
        ck_assert(!memcmp(x->payload_json.data, y->payload_json.data, x->payload_json.len));
        ck_assert_uint_eq((uintptr_t)x % alignof(max_align_t), 0);
    }
}

START_TEST(unpacks_like_malloc_spills_and_grows)
{
    ms_pbarena_t a;
    ms_pbarena_init(&a, 1u << 20);
    /* 1 and 10 fit after the first growth; 300 (~80 KB) spills, then fits;
     * 3000 (~800 KB) spills and grows up to the cap; 6000 passes the cap and
     * keeps spilling, freed at every reset (ASan/LSan checks that). */
    static const size_t sizes[] = {1, 10, 10, 300, 300, 3000, 3000, 6000, 6000, 1};
    for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
        size_t len;
        uint8_t *data = batch(sizes[k], &len);
        Meshsig__Bus__GatewayBatch *ref = meshsig__bus__gateway_batch__unpack(NULL, len, data);
        Meshsig__Bus__GatewayBatch *in = meshsig__bus__gateway_batch__unpack(&a.alloc, len, data);
        ck_assert_ptr_nonnull(ref);
        ck_assert_ptr_nonnull(in);
        same(ref, in);
        int spilled = a.spill != NULL;
        size_t cap_before = a.cap;
        meshsig__bus__gateway_batch__free_unpacked(ref, NULL);
        ms_pbarena_reset(&a);
        ck_assert_ptr_null(a.spill);
        ck_assert_uint_eq(a.used, 0);
        ck_assert_uint_le(a.cap, 1u << 20);
        if (spilled && cap_before < (1u << 20))
            ck_assert_uint_gt(a.cap, cap_before); /* grew for the next one */
        if (k > 0 && sizes[k] == sizes[k - 1] && sizes[k] <= 300)
            ck_assert(!spilled); /* the second of a size fits */
        free(data);
    }
    ms_pbarena_cleanup(&a);
    ms_pbarena_cleanup(&a); /* twice is harmless */
}
END_TEST

START_TEST(truncated_input_is_refused_and_reset_frees)
{
    ms_pbarena_t a;
    ms_pbarena_init(&a, 64 * 1024);
    size_t len;
    uint8_t *data = batch(50, &len);
    for (size_t cut = 1; cut < len; cut += 97) {
        /* protobuf-c frees what it took on failure: through arena_free, a no-op */
        Meshsig__Bus__GatewayBatch *b = meshsig__bus__gateway_batch__unpack(&a.alloc, cut, data);
        if (b)
            ck_assert_uint_le(b->n_direct, 50);
        ms_pbarena_reset(&a);
    }
    free(data);
    ms_pbarena_cleanup(&a);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("pbarena");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, unpacks_like_malloc_spills_and_grows);
    tcase_add_test(tc, truncated_input_is_refused_and_reset_frees);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
