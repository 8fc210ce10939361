/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for the native JSON signal scan (gateway/sigframe.c): what its walk takes, what it
 * leaves to the general scan and the full decoder, and agreement of all three on client frames
 * and their mutations (tests/fuzz/sigref.h). */
#include <check.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../fuzz/sigref.h"
#include "mutate.h"
#include "sigframe.h"

#define N(a) (sizeof(a) / sizeof((a)[0]))

/* What clients send: the JS SDK (JSON.stringify of {id, signal: {to, payload}}) and the load
 * generator ({"signal":{"to":T,"payload":P}}); SDP shortened. */
static const char *const client_frames[] = {
    "{\"id\":\"s:peer-b\",\"signal\":{\"to\":\"peer-b\",\"payload\":{\"type\":\"offer\",\"sdp\":"
    "\"v=0\\r\\no=- 4611731400430051336 2 IN IP4 127.0.0.1\\r\\ns=-\\r\\nt=0 0\\r\\na=group:"
    "BUNDLE 0\\r\\n\"}}}",
    "{\"id\":\"s:b\",\"signal\":{\"to\":\"b\",\"payload\":{\"type\":\"candidate\",\"candidate\":"
    "{\"candidate\":\"candidate:1 1 udp 2122260223 192.0.2.1 54400 typ host\",\"sdpMid\":\"0\","
    "\"sdpMLineIndex\":0,\"usernameFragment\":\"abcd\"}}}}",
    "{\"signal\":{\"to\":\"p17\",\"payload\":{\"i\":\"16\",\"s\":\"4711\",\"t\":"
    "\"123456789012345\"}}}",
    "{\"id\":\"7\",\"signal\":{\"to\":\"u@h:1.a_b-c\",\"payload\":[1,2.5,-3e2,null,true,"
    "\"caf\xc3\xa9\"]}}",
    "{\"signal\":{\"to\":\"b\"}}",
    "{\"signal\":{\"to\":\"b\",\"payload\":null},\"id\":\"x y\"}",
    "{\"id\":\"\",\"signal\":{\"to\":\"b\",\"payload\":\"\\ud83d\\ude00\\n\"}}",
};

/* The general scan's layouts: its walk leaves them, the general scan takes them. */
static const char *const other_layouts[] = {
    " {\"signal\":{\"to\":\"b\",\"payload\":1}}",
    "{\"signal\":{\"to\":\"b\",\"payload\":1}}\n",
    "{\"signal\" : {\"to\":\"b\",\"payload\":1}}",
    "{\"signal\":{ \"to\":\"b\",\"payload\":1}}",
    "{\"signal\":{\"payload\":1,\"to\":\"b\"}}",
    "{\"signal\":{\"to\":\"b\",\"from\":\"evil\",\"payload\":1}}",
    "{\"signal\":{\"from\":\"e\\u0041\",\"to\":\"b\"}}",
    "{\"signal\":{\"to\":\"b\",\"payload\":1} }",
    "{\"signal\":{\"to\":\"\"}}",            /* an empty target: the owner answers */
    "{\"signal\":{\"to\":\"a b\"}}",         /* not a peer id: the owner answers */
    "{\"signal\":{\"to\":\"caf\xc3\xa9\"}}", /* the same */
    "{\"id\":\"caf\xc3\xa9\",\"signal\":{\"to\":\"b\"}}",
};

/* Neither scan takes these: the full decoder decides. */
static const char *const refused[] = {
    "{\"signal\":{\"to\":\"b\",\"to\":\"c\"}}",
    "{\"signal\":{\"to\":\"b\"},\"signal\":{\"to\":\"b\"}}",
    "{\"id\":\"1\",\"id\":\"2\",\"signal\":{\"to\":\"b\"}}",
    "{\"id\":\"1\",\"signal\":{\"to\":\"b\"},\"id\":\"2\"}",
    "{\"signal\":{\"to\":\"b\",\"payload\":1,\"payload\":2}}",
    "{\"signal\":{\"to\":\"b\",\"payload\":{\"a\":1,\"a\":2}}}",
    "{\"signal\":{\"to\":\"b\",\"payload\":01}}",
    "{\"signal\":{\"to\":\"b\",\"payload\":\"\\u0000\"}}",
    "{\"signal\":{\"to\":\"b\",\"payload\":\"\xff\"}}",
    "{\"signal\":{\"to\":\"b\",\"payload\":123456789012345678901234}}",
    "{\"signal\":{\"to\":\"b\",\"payload\":}}",
    "{\"signal\":{\"to\":\"b\\u0041\"}}",
    "{\"id\":\"a\\\"b\",\"signal\":{\"to\":\"b\"}}",
    "{\"id\":1,\"signal\":{\"to\":\"b\"}}",
    "{\"signal\":{\"to\":7}}",
    "{\"signal\":{\"payload\":1}}",
    "{\"signal\":{}}",
    "{\"signal\":[]}",
    "{\"signal\":{\"to\":\"b\"},\"emit\":{}}",
    "{\"signal\":{\"to\":\"b\",\"x\":1}}",
    "{\"id\":\"a\"}",
    "{\"id\":\"a\",}",
    "{\"signal\":{\"to\":\"b\"}}}",
    "{\"signal\":{\"to\":\"b\"}} x",
    "{\"signal\":{\"to\":\"b\"},}",
    "{\"signal\":{\"to\":\"b\",}}",
    "{\"signal\":{\"to\":\"b\"}",
    "{\"signal\":{\"to\":\"b",
    "{}",
    "",
    "[]",
};

START_TEST(takes_client_frames_with_its_walk)
{
    for (size_t i = 0; i < N(client_frames); i++) {
        const char *s = client_frames[i];
        ms_sigframe_t f;
        ck_assert_msg(ms_sigframe_scan_compact(s, strlen(s), &f), "not walked: %s", s);
        int took;
        const char *why = sigref_check(s, strlen(s), &took);
        ck_assert_msg(!why, "%s: %s", why, s);
        ck_assert_int_eq(took, 2);
    }
}
END_TEST

START_TEST(reads_the_parts)
{
    ms_sigframe_t f;
    const char *s = "{\"id\":\"s:b\",\"signal\":{\"to\":\"peer-b\",\"payload\":{\"a\":[1,2]}}}";
    ck_assert(ms_sigframe_scan(s, strlen(s), &f));
    ck_assert_str_eq(f.to, "peer-b");
    ck_assert_uint_eq(f.to_len, 6);
    ck_assert_str_eq(f.id, "s:b");
    ck_assert_uint_eq(f.id_len, 3);
    ck_assert_uint_eq(f.payload_len, strlen("{\"a\":[1,2]}"));
    ck_assert(!memcmp(f.payload, "{\"a\":[1,2]}", f.payload_len));

    s = "{\"signal\":{\"to\":\"b\"},\"id\":\"9\"}";
    ck_assert(ms_sigframe_scan_compact(s, strlen(s), &f));
    ck_assert_str_eq(f.to, "b");
    ck_assert_str_eq(f.id, "9");
    ck_assert_ptr_null(f.payload);

    /* A walk that gives up half way leaves nothing of its own behind. */
    s = "{\"id\":\"x\",\"signal\":{\"payload\":2,\"to\":\"b\"}}";
    ck_assert(!ms_sigframe_scan_compact(s, strlen(s), &f));
    ck_assert(ms_sigframe_scan(s, strlen(s), &f));
    ck_assert_str_eq(f.id, "x");
    ck_assert_str_eq(f.to, "b");
    ck_assert_uint_eq(f.payload_len, 1);
}
END_TEST

START_TEST(other_layouts_take_the_general_scan)
{
    for (size_t i = 0; i < N(other_layouts); i++) {
        const char *s = other_layouts[i];
        ms_sigframe_t f;
        ck_assert_msg(!ms_sigframe_scan_compact(s, strlen(s), &f), "walked: %s", s);
        ck_assert_msg(ms_sigframe_scan(s, strlen(s), &f), "refused: %s", s);
        int took;
        const char *why = sigref_check(s, strlen(s), &took);
        ck_assert_msg(!why, "%s: %s", why, s);
        ck_assert_int_eq(took, 1);
    }
}
END_TEST

START_TEST(leaves_the_rest_to_the_full_decoder)
{
    for (size_t i = 0; i < N(refused); i++) {
        const char *s = refused[i];
        ms_sigframe_t f;
        ck_assert_msg(!ms_sigframe_scan(s, strlen(s), &f), "vouched for: %s", s);
        ck_assert_msg(!sigref_check_walks(s, strlen(s)), "%s", s);
    }
    /* Every prefix of a walked frame, each in an allocation of its own size (ASan sees a read
     * past the end): refused, and the same by both. */
    const char *s = client_frames[0];
    for (size_t n = 0; n < strlen(s); n++) {
        char *cut = malloc(n ? n : 1);
        memcpy(cut, s, n);
        ms_sigframe_t f;
        ck_assert_msg(!ms_sigframe_scan(cut, n, &f), "prefix %zu", n);
        ck_assert_msg(!sigref_check_walks(cut, n), "prefix %zu", n);
        free(cut);
    }
}
END_TEST

/* Targets and request ids: up to 128 bytes, not 129, by the walk and the general scan. */
START_TEST(ids_up_to_the_limit)
{
    char buf[400], id[200];
    memset(id, 'a', sizeof(id));
    const char *const forms[] = {
        "{\"signal\":{\"to\":\"%.*s\"}}",
        "{ \"signal\":{\"to\":\"%.*s\"}}",
        "{\"id\":\"%.*s\",\"signal\":{\"to\":\"b\"}}",
        "{\"signal\":{\"to\":\"b\"},\"id\":\"%.*s\"}",
        "{\"id\" :\"%.*s\",\"signal\":{\"to\":\"b\"}}",
    };
    for (size_t i = 0; i < N(forms); i++) {
        ms_sigframe_t f;
        snprintf(buf, sizeof(buf), forms[i], MS_SIGFRAME_ID_MAX, id);
        ck_assert_msg(ms_sigframe_scan(buf, strlen(buf), &f), "%s", buf);
        ck_assert(!sigref_check_walks(buf, strlen(buf)));
        ck_assert_uint_eq(i < 2 ? f.to_len : f.id_len, MS_SIGFRAME_ID_MAX);
        snprintf(buf, sizeof(buf), forms[i], MS_SIGFRAME_ID_MAX + 1, id);
        ck_assert_msg(!ms_sigframe_scan(buf, strlen(buf), &f), "%s", buf);
        ck_assert(!sigref_check_walks(buf, strlen(buf)));
    }
}
END_TEST

static void mutate(char *s, size_t *len, size_t cap)
{
    mutate_with(s, len, cap, "{}[]\":,0123456789-+.eEtruefalsn \\u\x01\xc3\xa9_aZdisgo");
}

START_TEST(mutations_agree_with_the_full_path)
{
    rng_state = 0x9e3779b97f4a7c15ull;
    char buf[4096];
    int walked = 0, general = 0, left = 0;
    for (int it = 0; it < 30000; it++) {
        uint32_t k = rnd() % (N(client_frames) + N(other_layouts));
        const char *src =
            k < N(client_frames) ? client_frames[k] : other_layouts[k - N(client_frames)];
        size_t len = strlen(src);
        memcpy(buf, src, len);
        int muts = (int)(rnd() % 3);
        for (int i = 0; i < muts; i++)
            mutate(buf, &len, sizeof(buf));
        int took;
        const char *why = sigref_check(buf, len, &took);
        ck_assert_msg(!why, "%s: %.*s", why, (int)len, buf);
        walked += took == 2;
        general += took == 1;
        left += took == 0;
    }
    /* Mutations of client frames stay mostly valid: the walk must take many, and each of the
     * three outcomes must be met. */
    ck_assert_int_gt(walked, 3000);
    ck_assert_int_gt(general, 3000);
    ck_assert_int_gt(left, 1000);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("sigframe");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, takes_client_frames_with_its_walk);
    tcase_add_test(tc, reads_the_parts);
    tcase_add_test(tc, other_layouts_take_the_general_scan);
    tcase_add_test(tc, leaves_the_rest_to_the_full_decoder);
    tcase_add_test(tc, ids_up_to_the_limit);
    tcase_add_test(tc, mutations_agree_with_the_full_path);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
