/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for the walk of a client's byte stream (gateway/wswalk.c, what wsguard follows):
 * each rule stops the stream at the offending frame's first byte, whichever length form the
 * frames before it used and wherever the reads cut them; the frame budget counts pings,
 * pongs and fragments per window; and on random and adversarial streams in random reads it
 * agrees, chunk by chunk, with the byte-at-a-time walk it replaced (tests/fuzz/wswalkref.h). */
#include <check.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../fuzz/wswalkdiff.h"
#include "wswalk.h"

#define UPGRADE "GET /ws HTTP/1.1\r\nUpgrade: websocket\r\n\r\n"

static uint8_t window_value;

static uint8_t window_fixed(void)
{
    return window_value;
}

/* Appends a masked frame (mask key 1 2 3 4, payload of 'x') with len in the given length
 * form (7: one byte, 16: two more, 64: eight more). */
static size_t frame(uint8_t *out, size_t n, uint8_t b0, int form, uint64_t len)
{
    out[n++] = b0;
    if (form == 7) {
        out[n++] = (uint8_t)(0x80 | len);
    } else if (form == 16) {
        out[n++] = 0x80 | 126;
        out[n++] = (uint8_t)(len >> 8);
        out[n++] = (uint8_t)len;
    } else {
        out[n++] = 0x80 | 127;
        for (int k = 7; k >= 0; k--)
            out[n++] = (uint8_t)(len >> (8 * k));
    }
    for (int k = 1; k <= 4; k++)
        out[n++] = (uint8_t)k;
    memset(out + n, 'x', (size_t)len);
    return n + (size_t)len;
}

/* Follows s in reads cut at cut (0: one read) until a rule is broken; returns the bytes lws
 * was given, *why the rule. */
static size_t follow(const uint8_t *s, size_t n, size_t cut, uint16_t budget, int *why)
{
    ms_wswalk_t w;
    ms_wswalk_init(&w);
    size_t passed = 0;
    for (size_t off = 0; off < n;) {
        size_t len = cut && off < cut ? cut - off : n - off;
        size_t ok = ms_wswalk_follow(&w, s + off, len, budget, window_fixed);
        passed += ok;
        if (w.why) {
            ck_assert_uint_lt(ok, len);
            break;
        }
        ck_assert_uint_eq(ok, len);
        off += len;
    }
    *why = w.why;
    return passed;
}

START_TEST(frames_follow_an_upgrade_only)
{
    uint8_t s[256];
    const char *heads[] = {UPGRADE, "GET / HTTP/1.1\r\nX-Upgrade: websocket\r\n\r\n"};
    for (int h = 0; h < 2; h++) {
        size_t n = strlen(heads[h]);
        memcpy(s, heads[h], n);
        size_t bad = frame(s, n, 0x81, 7, 3);
        s[bad] = 0x81; /* unmasked */
        s[bad + 1] = 0x01;
        s[bad + 2] = 'x';
        int why;
        size_t passed = follow(s, bad + 3, 0, 65535, &why);
        if (h == 0) {
            ck_assert_int_eq(why, MS_WSWALK_UNMASKED);
            ck_assert_uint_eq(passed, bad);
            ck_assert_str_eq(ms_wswalk_reasons[why], "unmasked client frame");
        } else { /* no upgrade: still HTTP */
            ck_assert_int_eq(why, MS_WSWALK_FINE);
            ck_assert_uint_eq(passed, bad + 3);
        }
    }
}
END_TEST

/* Each rule, after frames of each length form, in one read and cut at every byte. */
START_TEST(each_rule_stops_at_its_frame)
{
    static const struct {
        uint8_t b0, b1;
        int why, second; /* second: the rule is the second byte's */
    } bad[] = {
        {0xc1, 0x80, MS_WSWALK_RSV, 0},
        {0x83, 0x80, MS_WSWALK_OPCODE, 0},
        {0x8b, 0x80, MS_WSWALK_OPCODE, 0},
        {0x09, 0x80, MS_WSWALK_FRAG_CONTROL, 0},
        {0x82, 0x05, MS_WSWALK_UNMASKED, 1},
        {0x89, 0x80 | 126, MS_WSWALK_LONG_CONTROL, 1},
        {0x88, 0x80 | 127, MS_WSWALK_LONG_CONTROL, 1},
    };
    static const int forms[] = {7, 16, 64};
    static const uint64_t lens[] = {0, 1, 125, 126, 200, 65535};
    static uint8_t s[70000];
    for (size_t b = 0; b < sizeof(bad) / sizeof(bad[0]); b++) {
        for (size_t f = 0; f < 3; f++) {
            for (size_t l = 0; l < sizeof(lens) / sizeof(lens[0]); l++) {
                if (forms[f] == 7 && lens[l] > 125)
                    continue;
                size_t head = strlen(UPGRADE);
                memcpy(s, UPGRADE, head);
                size_t at = frame(s, head, 0x82, forms[f], lens[l]), n = at;
                s[n++] = bad[b].b0;
                s[n++] = bad[b].b1;
                memset(s + n, 0x81, 12); /* the rest of a header, whatever it is */
                n += 12;
                /* One read (cut 0), then cuts at every byte around and in both headers. */
                for (size_t cut = 0; cut < n; cut++) {
                    if (cut > head + 16 && cut + 2 < at)
                        cut = at - 2;
                    int why;
                    size_t passed = follow(s, n, cut, 65535, &why);
                    ck_assert_int_eq(why, bad[b].why);
                    /* A header cut between its two bytes: the first went to lws already. */
                    ck_assert_uint_eq(passed, bad[b].second && cut == at + 1 ? at + 1 : at);
                }
            }
        }
    }
}
END_TEST

/* Whatever a 64-bit length says is skipped: a huge one hides the rest of the stream. */
START_TEST(long_lengths_are_skipped)
{
    uint8_t s[128];
    size_t n = strlen(UPGRADE);
    memcpy(s, UPGRADE, n);
    n = frame(s, n, 0x82, 64, 0);
    s[n - 4 - 8 + 3] = 0xff; /* bits 32-39 of the length: far past the end */
    memset(s + n, 0x70, 20); /* reserved bits, if it were a header */
    n += 20;
    int why;
    for (size_t cut = 0; cut < n; cut++) {
        ck_assert_uint_eq(follow(s, n, cut, 65535, &why), n);
        ck_assert_int_eq(why, MS_WSWALK_FINE);
    }
}
END_TEST

/* Pings, pongs and fragments count against the budget per window; whole messages do not. */
START_TEST(frame_budget_per_window)
{
    uint8_t s[256];
    size_t n = strlen(UPGRADE);
    memcpy(s, UPGRADE, n);
    n = frame(s, n, 0x82, 7, 2);  /* whole: not counted */
    n = frame(s, n, 0x89, 7, 0);  /* ping: 1 */
    n = frame(s, n, 0x02, 16, 1); /* first fragment: 2 */
    size_t third = n;
    n = frame(s, n, 0x00, 64, 0); /* continuation: 3 */
    window_value = 7;
    int why;
    ck_assert_uint_eq(follow(s, n, 0, 3, &why), n);
    ck_assert_int_eq(why, MS_WSWALK_FINE);
    for (size_t cut = 0; cut < n; cut++) {
        ck_assert_uint_eq(follow(s, n, cut, 2, &why), third);
        ck_assert_int_eq(why, MS_WSWALK_FRAME_FLOOD);
    }

    /* A new window between reads starts the count again. */
    ms_wswalk_t w;
    ms_wswalk_init(&w);
    ck_assert_uint_eq(ms_wswalk_follow(&w, s, third, 2, window_fixed), third);
    window_value = 8;
    ck_assert_uint_eq(ms_wswalk_follow(&w, s + third, n - third, 2, window_fixed), n - third);
    ck_assert_int_eq(w.why, MS_WSWALK_FINE);
}
END_TEST

/* The differential check: many streams, each in one read, a byte a read, random reads and
 * (short ones) cut once at every offset. */
START_TEST(agrees_with_the_byte_walk)
{
    enum { STREAMS = 4000, CAP = 2048 };
    uint64_t rng = 0x5eed0f0a5757u;
    uint8_t recipe[512], *s = malloc(CAP);
    ck_assert_ptr_nonnull(s);
    unsigned runs = 0, rules[8] = {0};
    for (int t = 0; t < STREAMS; t++) {
        size_t rn = 8 + wsdiff_rand(&rng) % (sizeof(recipe) - 8);
        for (size_t k = 0; k < rn; k++)
            recipe[k] = (uint8_t)wsdiff_rand(&rng);
        const char *head = wsdiff_heads[t % 8 < 5 ? 1 : wsdiff_rand(&rng) % WSDIFF_HEADS];
        size_t n = wsdiff_build(head, recipe, rn, s, t % 4 ? 400 : CAP);
        uint16_t budget = t % 3 ? 65535 : (uint16_t)(1 + wsdiff_rand(&rng) % 6);
        unsigned tick = (unsigned)(wsdiff_rand(&rng) % 4);
        uint8_t base = (uint8_t)wsdiff_rand(&rng);
        wsdiff_split_t splits[8] = {
            {.max = n}, {.max = 1}, {.rmax = 3}, {.rmax = 16}, {.rmax = 200},
        };
        size_t ns = 5;
        for (int k = 0; k < 3; k++)
            splits[ns++] = (wsdiff_split_t){.rmax = 1 + wsdiff_rand(&rng) % 40};
        for (size_t k = 0; k < ns; k++) {
            splits[k].seed = wsdiff_rand(&rng);
            size_t at = 0;
            const char *d = wsdiff_run(s, n, budget, tick, base, &splits[k], &at);
            if (d)
                ck_abort_msg("stream %d (%zu bytes), split %zu: %s after the read at %zu", t, n, k,
                             d, at);
            runs++;
        }
        if (n <= 200) {
            for (size_t cut = 1; cut < n; cut++) {
                wsdiff_split_t sp = {.cut = cut};
                size_t at = 0;
                const char *d = wsdiff_run(s, n, budget, tick, base, &sp, &at);
                if (d)
                    ck_abort_msg("stream %d (%zu bytes) cut at %zu: %s", t, n, cut, d);
                runs++;
            }
        }
        /* What the stream's whole walk ended with, to see every rule is reached. */
        ms_wswalk_t w;
        ms_wswalk_init(&w);
        wsdiff_reads[1] = 0;
        ms_wswalk_follow(&w, s, n, budget, wsdiff_window_new);
        rules[w.why]++;
    }
    for (int r = MS_WSWALK_FINE; r <= MS_WSWALK_FRAME_FLOOD; r++)
        ck_assert_msg(rules[r] > 20, "rule %d ended only %u streams", r, rules[r]);
    ck_assert_uint_gt(runs, STREAMS * 8);
    free(s);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("wswalk");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, frames_follow_an_upgrade_only);
    tcase_add_test(tc, each_rule_stops_at_its_frame);
    tcase_add_test(tc, long_lengths_are_skipped);
    tcase_add_test(tc, frame_budget_per_window);
    tcase_add_test(tc, agrees_with_the_byte_walk);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
