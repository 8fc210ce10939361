/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for the JSON scanner: what it accepts, jansson accepts (differential, with
 * mutations and random documents); ordinary signalling payloads are accepted. */
#include <check.h>
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jsonscan.h"
#include "../fuzz/jsonscanref.h"
#include "../fuzz/utf8ref.h"
#include "mutate.h"

#define N(a) (sizeof(a) / sizeof((a)[0]))

/* 1 if the scanner vouches for the whole text as one value. */
static int scan_all(const char *s, size_t len)
{
    const char *end = s + len;
    const char *p = ms_json_ws(s, end);
    p = ms_json_scan(p, end);
    return p && ms_json_ws(p, end) == end;
}

static int jansson_ok(const char *s, size_t len)
{
    json_t *j = json_loadb(s, len, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, NULL);
    json_decref(j);
    return j != NULL;
}

static const char *const valid[] = {
    "{}",
    "[]",
    "0",
    "-0",
    "12",
    "-1.5e10",
    "2.5E-3",
    "1e+2",
    "123456789012345678",
    "true",
    "false",
    "null",
    "\"\"",
    "\"a\\\"b\\\\c\\/d\\b\\f\\n\\r\\t\"",
    "\"\\u00e9\\u4e2d\\ud83d\\ude00\"",
    "\"\xc3\xa9\xe4\xb8\xad\"",
    " { \"a\" : [ 1 , 2.0 , null , true , false , \"x\" , { } , [ ] ] } ",
    "{\"type\":\"offer\",\"sdp\":\"v=0\\r\\no=- 4611731400430051336 2 IN IP4 "
    "127.0.0.1\\r\\ns=-\\r\\n"
    "t=0 0\\r\\na=group:BUNDLE 0\\r\\na=msid-semantic: WMS\\r\\nm=application 9 UDP/DTLS/SCTP "
    "webrtc-datachannel\\r\\nc=IN IP4 0.0.0.0\\r\\na=ice-ufrag:abcd\\r\\na=ice-pwd:"
    "0123456789abcdefghijklmn\\r\\na=fingerprint:sha-256 AA:BB:CC\\r\\na=setup:actpass\\r\\n"
    "a=mid:0\\r\\na=sctp-port:5000\\r\\n\"}",
    "{\"candidate\":\"candidate:842163049 1 udp 1677729535 192.0.2.1 3478 typ srflx raddr "
    "0.0.0.0 rport 0 generation 0 ufrag abcd network-cost 999\",\"sdpMid\":\"0\","
    "\"sdpMLineIndex\":0,\"usernameFragment\":\"abcd\"}",
    "[[[[[[[[[[1]]]]]]]]]]",
    /* keys alike in length, first and last byte (the duplicate check's shortcut) */
    "{\"abc\":1,\"axc\":2,\"ab\":3,\"\":4,\"a\":5,\"b\":6}",
};

/* Not JSON, or JSON that jansson refuses: never vouched for. */
static const char *const invalid[] = {
    "",
    " ",
    "{",
    "}",
    "[1,]",
    "{\"a\":1,}",
    "{\"a\" 1}",
    "{\"a\":1 \"b\":2}",
    "[1 2]",
    "{1:2}",
    "01",
    "1.",
    ".5",
    "+1",
    "-",
    "1e",
    "1e+",
    "0x10",
    "NaN",
    "Infinity",
    "'a'",
    "tru",
    "nul",
    "falsey",
    "\"abc",
    "\"a\x01b\"",
    "\"\\u0000\"",
    "\"\\ud800\"",
    "\"\\ud800x\"",
    "\"\\ud800\\u0041\"",
    "\"\\udc00\"",
    "\"\\x\"",
    "\"\\u12g4\"",
    "{\"a\":1,\"a\":2}",
    "{\"\":1,\"\":2}",
    "{\"abc\":1,\"axc\":2,\"abc\":3}",
    "1234567890123456789012",
    "1e999",
    "[1]]",
    "\"\xc3\"",
    "\"\xc0\x80\"",
    "\"\xed\xa0\x80\"",
    "\"\xf4\x90\x80\x80\"",
};

START_TEST(accepts_valid)
{
    for (size_t i = 0; i < N(valid); i++) {
        ck_assert_msg(scan_all(valid[i], strlen(valid[i])), "refused: %s", valid[i]);
        ck_assert_msg(jansson_ok(valid[i], strlen(valid[i])), "jansson refused: %s", valid[i]);
    }
}
END_TEST

START_TEST(refuses_invalid)
{
    for (size_t i = 0; i < N(invalid); i++)
        ck_assert_msg(!scan_all(invalid[i], strlen(invalid[i])), "accepted: %s", invalid[i]);
}
END_TEST

START_TEST(limits)
{
    char deep[256] = {0};
    size_t n = 0;
    for (int i = 0; i < 40; i++)
        deep[n++] = '[';
    for (int i = 0; i < 40; i++)
        deep[n++] = ']';
    ck_assert(!scan_all(deep, n)); /* deeper than MS_JSON_SCAN_DEPTH: left to jansson */
    char obj[2048];
    n = (size_t)snprintf(obj, sizeof(obj), "{");
    for (int i = 0; i < MS_JSON_SCAN_KEYS + 1; i++)
        n += (size_t)snprintf(obj + n, sizeof(obj) - n, "%s\"k%d\":%d", i ? "," : "", i, i);
    n += (size_t)snprintf(obj + n, sizeof(obj) - n, "}");
    ck_assert(!scan_all(obj, n));
    ck_assert(jansson_ok(obj, n));
    /* A key with an escape is left to jansson too ("a" and "\u0061" are one key). */
    ck_assert(!scan_all("{\"\\u0061\":1}", 12));
    /* The string contents and whether they were escaped. */
    const char *s;
    size_t len;
    int esc;
    const char *t = "\"bob\" tail";
    ck_assert_ptr_eq(ms_json_scan_string(t, t + strlen(t), &s, &len, &esc), t + 5);
    ck_assert_uint_eq(len, 3);
    ck_assert(!memcmp(s, "bob", 3) && !esc);
    t = "\"a\\nb\"";
    ck_assert_ptr_nonnull(ms_json_scan_string(t, t + strlen(t), &s, &len, &esc));
    ck_assert(esc);
}
END_TEST

/* ---- differential: mutations and random documents ---- */

static void mutate(char *s, size_t *len, size_t cap)
{
    mutate_with(s, len, cap, "{}[]\":,0123456789-+.eEtruefalsn \\u\x01\xc3\xa9_aZdD");
}

START_TEST(mutations_agree_with_jansson)
{
    rng_state = 0x243f6a8885a308d3ull;
    char buf[4096];
    int both = 0, only_jansson = 0;
    for (int it = 0; it < 20000; it++) {
        const char *src = valid[rnd() % N(valid)];
        size_t len = strlen(src);
        memcpy(buf, src, len);
        int muts = 1 + (int)(rnd() % 3);
        for (int i = 0; i < muts; i++)
            mutate(buf, &len, sizeof(buf));
        int ours = scan_all(buf, len), theirs = jansson_ok(buf, len);
        ck_assert_msg(!ours || theirs, "vouched for what jansson refuses: %.*s", (int)len, buf);
        both += ours && theirs;
        only_jansson += theirs && !ours;
    }
    ck_assert_int_gt(both, 500);
    /* What only jansson takes is the deliberate conservatism (duplicate-free
     * escaped keys, huge numbers, depth); it must stay a small share. */
    ck_assert_int_lt(only_jansson, both / 10 + 10);
}
END_TEST

static size_t gen(char *o, size_t cap, int depth)
{
    if (cap < 64)
        return (size_t)snprintf(o, cap, "1");
    switch (depth > 5 ? 3 + rnd() % 4 : rnd() % 7) {
    case 0: {
        size_t n = 0, k = rnd() % 5;
        o[n++] = '{';
        for (size_t i = 0; i < k && n + 80 < cap; i++) {
            n += (size_t)snprintf(o + n, cap - n, "%s\"k%zu_%u\":", i ? "," : "", i, rnd() % 9);
            n += gen(o + n, (cap - n) / 2, depth + 1);
        }
        o[n++] = '}';
        return n;
    }
    case 1:
    case 2: {
        size_t n = 0, k = rnd() % 5;
        o[n++] = '[';
        for (size_t i = 0; i < k && n + 80 < cap; i++) {
            if (i)
                o[n++] = ',';
            n += gen(o + n, (cap - n) / 2, depth + 1);
        }
        o[n++] = ']';
        return n;
    }
    case 3: {
        static const char *const strs[] = {"\"\"", "\"x\"", "\"\\u00e9\\n\"", "\"\\ud83d\\ude00\"",
                                           "\"a b\\\"c\""};
        return (size_t)snprintf(o, cap, "%s", strs[rnd() % N(strs)]);
    }
    case 4:
        return (size_t)snprintf(o, cap, "%d", (int)(rnd() % 200000) - 100000);
    case 5:
        return (size_t)snprintf(o, cap, "%.17g", (double)(int)rnd() / 977.0);
    default: {
        static const char *const lits[] = {"true", "false", "null"};
        return (size_t)snprintf(o, cap, "%s", lits[rnd() % 3]);
    }
    }
}

START_TEST(random_documents_agree)
{
    rng_state = 0x13198a2e03707344ull;
    char buf[8192];
    for (int it = 0; it < 3000; it++) {
        size_t n = gen(buf, sizeof(buf), 0);
        ck_assert_msg(jansson_ok(buf, n), "generator bug: %.*s", (int)n, buf);
        ck_assert_msg(scan_all(buf, n), "refused a plain document: %.*s", (int)n, buf);
    }
}
END_TEST

/* Strings are scanned 16, 64 and 8 bytes at a time: every byte that needs a look
 * (quote, backslash, control, the bytes of UTF-8 sequences, well-formed or
 * not) at every offset of a long string, and strings cut at every length,
 * are judged as jansson judges them. */
START_TEST(long_strings_agree_with_jansson)
{
    static const char *const inserts[] = {
        "\"",       "\\\"", "\\n",          "\\u00e9",      "\x01",
        "\x1f",     "\x7f", "\xc3\xa9",     "\xe2\x82\xac", "\xf0\x9f\x98\x80",
        "\xc0\x80", "\xff", "\xed\xa0\x80", "\\",           "\\ud83d\\ude00"};
    char buf[160]; /* 1 + 99 + 12 + 30 + 1 */
    for (size_t i = 0; i < N(inserts); i++) {
        for (size_t off = 0; off < 100; off++) {
            size_t n = 0;
            buf[n++] = '"';
            for (size_t k = 0; k < off; k++)
                buf[n++] = (char)('a' + k % 26);
            size_t il = strlen(inserts[i]);
            memcpy(buf + n, inserts[i], il);
            n += il;
            for (size_t k = 0; k < 30; k++)
                buf[n++] = 'z';
            buf[n++] = '"';
            for (size_t len = 1; len <= n; len++) {
                /* exactly len bytes, so that a read past the end is an ASan error */
                char *s = malloc(len);
                ck_assert_ptr_nonnull(s);
                memcpy(s, buf, len);
                ck_assert_msg(scan_all(s, len) == jansson_ok(s, len),
                              "insert %zu at offset %zu, cut at %zu: scanner %d, jansson %d", i,
                              off, len, scan_all(s, len), jansson_ok(s, len));
                free(s);
            }
        }
    }
}
END_TEST

/* The string loop (16 bytes, then 64 a turn, then 16, then 8) against a byte
 * at a time: every byte value at every offset up to past three of its steps,
 * in a string that runs on to the end of the text or stops soon after. The
 * scanner must stop where the byte is (the quote ends the string there) and
 * judge the string as jansson does. */
/* ms_utf8_valid (a whole text message from a client, ws.c) against the reference: every
 * byte value and a few sequences, whole and cut, at every offset of ASCII runs up to 100
 * bytes long (its 32- and 8-byte steps). */
START_TEST(utf8_valid_agrees_with_reference)
{
    static const char *const seqs[] = {"\xc3\xa9",     "\xe2\x82\xac", "\xf0\x9f\x98\x80",
                                       "\xc0\xaf",     "\xed\xa0\x80", "\xf4\x90\x80\x80",
                                       "\xe0\x80\xaf", "\xc3\x28"};
    unsigned char buf[128];
    for (size_t n = 0; n <= 100; n++) {
        memset(buf, 'a', n);
        ck_assert(ms_utf8_valid((const char *)buf, n));
        for (size_t at = 0; at < n; at++) {
            for (int b = 0; b < 256; b++) {
                memset(buf, 'a', n);
                buf[at] = (unsigned char)b;
                ck_assert_msg(ms_utf8_valid((const char *)buf, n) == ms_test_utf8_ref(buf, n),
                              "byte %02x at %zu of %zu", b, at, n);
            }
            for (size_t k = 0; k < sizeof(seqs) / sizeof(*seqs); k++) {
                size_t sl = strlen(seqs[k]);
                for (size_t cut = 1; cut <= sl && at + cut <= n; cut++) {
                    memset(buf, 'a', n);
                    memcpy(buf + at, seqs[k], cut);
                    ck_assert_msg(ms_utf8_valid((const char *)buf, n) == ms_test_utf8_ref(buf, n),
                                  "sequence %zu (%zu bytes) at %zu of %zu", k, cut, at, n);
                }
            }
        }
    }
}
END_TEST

START_TEST(every_byte_at_every_offset)
{
    char buf[256];
    for (int b = 0; b < 256; b++) {
        for (size_t off = 0; off < 170; off++) {
            for (size_t tail = 0; tail < 40; tail += 13) {
                size_t n = 0;
                buf[n++] = '"';
                for (size_t k = 0; k < off; k++)
                    buf[n++] = (char)(' ' + 1 + k % 94 == '"' || ' ' + 1 + k % 94 == '\\'
                                          ? 'q'
                                          : ' ' + 1 + k % 94);
                buf[n++] = (char)b;
                for (size_t k = 0; k < tail; k++)
                    buf[n++] = 'z';
                buf[n++] = '"';
                char *s = malloc(n); /* exactly n bytes: a read past the end is an ASan error */
                ck_assert_ptr_nonnull(s);
                memcpy(s, buf, n);
                const char *str;
                size_t len;
                int esc;
                const char *q = ms_json_scan_string(s, s + n, &str, &len, &esc);
                int ok = jansson_ok(s, n);
                if (b == '"') {
                    /* ends at the byte; the rest is not part of the string */
                    ck_assert_ptr_eq(q, s + off + 2);
                    ck_assert_uint_eq(len, off);
                } else {
                    ck_assert_msg((q == s + n) == ok,
                                  "byte %d at %zu, tail %zu: scanner %d, jansson %d", b, off, tail,
                                  q == s + n, ok);
                    if (q) {
                        ck_assert_ptr_eq(q, s + n);
                        ck_assert_ptr_eq(str, s + 1);
                        ck_assert_uint_eq(len, n - 2);
                        ck_assert_int_eq(esc, 0);
                    }
                }
                free(s);
            }
        }
    }
}
END_TEST

/* The scanner against its reference (tests/fuzz/jsonscanref.h, the scanner before its walk
 * was tightened): from every start offset of every mutated text, copied to an allocation of
 * exactly its size (a read past the end is an ASan error), ms_json_scan gives the same end
 * (or NULL), and ms_json_scan_string at every quote the same end, contents and escape flag. */
static void agree_with_reference(const char *text, size_t n)
{
    char *b = malloc(n ? n : 1);
    ck_assert_ptr_nonnull(b);
    memcpy(b, text, n);
    const char *end = b + n;
    for (size_t o = 0; o <= n; o++) {
        const char *p = b + o;
        ck_assert_msg(ms_json_scan(p, end) == jsref_json_scan(p, end), "scan from %zu of %.*s", o,
                      (int)n, text);
        ck_assert_ptr_eq(ms_json_ws(p, end), jsref_json_ws(p, end));
        if (o < n && *p == '"') {
            const char *s1 = NULL, *s2 = NULL;
            size_t l1 = 0, l2 = 0;
            int e1 = -1, e2 = -1;
            const char *q1 = ms_json_scan_string(p, end, &s1, &l1, &e1);
            const char *q2 = jsref_json_scan_string(p, end, &s2, &l2, &e2);
            ck_assert_msg(q1 == q2, "string from %zu of %.*s", o, (int)n, text);
            if (q1) {
                ck_assert_ptr_eq(s1, s2);
                ck_assert_uint_eq(l1, l2);
                ck_assert_int_eq(e1, e2);
            }
        }
    }
    free(b);
}

START_TEST(mutations_agree_with_reference)
{
    rng_state = 0x452821e638d01377ull;
    char buf[4096];
    for (size_t i = 0; i < N(valid); i++)
        agree_with_reference(valid[i], strlen(valid[i]));
    for (size_t i = 0; i < N(invalid); i++)
        agree_with_reference(invalid[i], strlen(invalid[i]));
    for (int it = 0; it < 6000; it++) {
        const char *src = valid[rnd() % N(valid)];
        size_t len = strlen(src);
        memcpy(buf, src, len);
        int muts = 1 + (int)(rnd() % 4);
        for (int i = 0; i < muts; i++)
            mutate(buf, &len, sizeof(buf));
        agree_with_reference(buf, len);
    }
    /* random documents, and each cut at every length */
    for (int it = 0; it < 300; it++) {
        size_t n = gen(buf, 1024, 0);
        for (size_t cut = 0; cut <= n; cut++)
            agree_with_reference(buf, cut);
    }
}
END_TEST

int main(void)
{
    Suite *s = suite_create("jsonscan");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, accepts_valid);
    tcase_add_test(tc, refuses_invalid);
    tcase_add_test(tc, limits);
    tcase_add_test(tc, mutations_agree_with_jansson);
    tcase_add_test(tc, random_documents_agree);
    tcase_add_test(tc, long_strings_agree_with_jansson);
    tcase_add_test(tc, every_byte_at_every_offset);
    tcase_add_test(tc, utf8_valid_agrees_with_reference);
    tcase_add_test(tc, mutations_agree_with_reference);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
