/* SPDX-License-Identifier: Apache-2.0 */
/* The JSON scanner (common/jsonscan.c) as it was before its walk was tightened (jsonscan,
 * 2026-12-07, issue 16), kept as the reference the new one must agree with exactly: the same
 * accept/refuse and end pointer for ms_json_scan, and the same end, contents, length and
 * escape flag for ms_json_scan_string. Used by tests/unit/test_jsonscan.c and
 * fuzz_jsonscan.c. Only the names changed (ms_json_* -> jsref_json_*, the rest jsref_*).
 */
#ifndef MS_TEST_JSONSCANREF_H
#define MS_TEST_JSONSCANREF_H

#include <stdint.h>
#include <string.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "codec.h"
#include "jsonscan.h"

/* Inlined where the scanner calls it: most calls find no whitespace at all
 * (compact JSON), so the first byte above ' ' ends them at once. */
static inline const char *jsref_ws(const char *p, const char *end)
{
    while (p < end && (unsigned char)*p <= ' ' &&
           (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
        p++;
    return p;
}

static inline const char *jsref_json_ws(const char *p, const char *end)
{
    return jsref_ws(p, end);
}

static inline int jsref_hex4(const char *p, const char *end, unsigned *out)
{
    if (end - p < 4)
        return -1;
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        char c = p[i];
        v <<= 4;
        if (c >= '0' && c <= '9')
            v |= (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f')
            v |= (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F')
            v |= (unsigned)(c - 'A' + 10);
        else
            return -1;
    }
    *out = v;
    return 0;
}

/* p at a byte >= 0x80: past one well-formed UTF-8 sequence (RFC 3629: no
 * overlong forms, no surrogates, nothing above U+10FFFF), or NULL. */
static inline const char *jsref_utf8_char(const char *p, const char *end)
{
    const unsigned char *u = (const unsigned char *)p;
    size_t n;
    unsigned cp;
    if (u[0] >= 0xC2 && u[0] <= 0xDF) {
        n = 2;
        cp = u[0] & 0x1Fu;
    } else if (u[0] >= 0xE0 && u[0] <= 0xEF) {
        n = 3;
        cp = u[0] & 0x0Fu;
    } else if (u[0] >= 0xF0 && u[0] <= 0xF4) {
        n = 4;
        cp = u[0] & 0x07u;
    } else {
        return NULL;
    }
    if ((size_t)(end - p) < n)
        return NULL;
    for (size_t i = 1; i < n; i++) {
        if ((u[i] & 0xC0) != 0x80)
            return NULL;
        cp = (cp << 6) | (u[i] & 0x3Fu);
    }
    if ((n == 3 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) ||
        (n == 4 && (cp < 0x10000 || cp > 0x10FFFF)))
        return NULL;
    return p + n;
}

/* Whether any of the 8 bytes of x needs a look: '"', '\\', a control
 * character or a byte of a UTF-8 sequence. Exact, no false negatives: the
 * zero-byte test (x - 0x01..) & ~x & 0x80.. flags a byte below 0x20 (or a
 * zero after the XOR) whenever there is one. */
static inline int jsref_needs_look(uint64_t x)
{
    const uint64_t ones = 0x0101010101010101ull, high = 0x8080808080808080ull;
    uint64_t q = x ^ (ones * '"'), b = x ^ (ones * '\\');
    return ((x | ((x - ones * 0x20) & ~x) | ((q - ones) & ~q) | ((b - ones) & ~b)) & high) != 0;
}

#if defined(__SSE2__)
/* The bytes of the 16 at p that need a look, as a bit mask. (v ^ 2) maps '"'
 * (0x22) to 0x20 and keeps every byte below 0x20 below it (and every other one
 * at or above 0x21); a signed compare also takes bytes >= 0x80, which are
 * negative: so one compare finds '"', control characters and UTF-8 bytes,
 * and a second one the backslash. */
static inline __m128i jsref_look_mask(const char *p)
{
    const __m128i two = _mm_set1_epi8(2), below = _mm_set1_epi8(0x21), bslash = _mm_set1_epi8('\\');
    __m128i v = _mm_loadu_si128((const __m128i *)(const void *)p);
    return _mm_or_si128(_mm_cmplt_epi8(_mm_xor_si128(v, two), below), _mm_cmpeq_epi8(v, bslash));
}
#endif

/* Past the bytes inside a string that need no look: the first one that may
 * ('"', '\\', a control character, a byte >= 0x80), or a point less than
 * eight bytes before end. Signal payloads (SDP) are long runs of such bytes;
 * keys and most other strings end within the first 16. */
static inline const char *jsref_skip_plain(const char *p, const char *end)
{
#if defined(__SSE2__)
    if (end - p >= 16) {
        unsigned bits = (unsigned)_mm_movemask_epi8(jsref_look_mask(p));
        if (bits)
            return p + __builtin_ctz(bits);
        p += 16;
        /* Long runs 64 bytes a turn; the 16-byte loop below finds the byte. */
        while (end - p >= 64) {
            __m128i m =
                _mm_or_si128(_mm_or_si128(jsref_look_mask(p), jsref_look_mask(p + 16)),
                             _mm_or_si128(jsref_look_mask(p + 32), jsref_look_mask(p + 48)));
            if (_mm_movemask_epi8(m))
                break;
            p += 64;
        }
        while (end - p >= 16) {
            bits = (unsigned)_mm_movemask_epi8(jsref_look_mask(p));
            if (bits)
                return p + __builtin_ctz(bits);
            p += 16;
        }
    }
#endif
    while (end - p >= 8) {
        uint64_t x;
        memcpy(&x, p, 8);
        if (jsref_needs_look(x))
            break;
        p += 8;
    }
    return p;
}

/* Inlined into the scanner's own walks: a frame holds a score of short strings,
 * and a call each cost as much as scanning one. */
static inline __attribute__((always_inline)) const char *
jsref_scan_string(const char *p, const char *end, const char **s, size_t *len, int *escaped)
{
    if (p >= end || *p != '"')
        return NULL;
    const char *start = ++p;
    int esc = 0;
    while (p < end) {
        p = jsref_skip_plain(p, end);
        if (p >= end)
            break;
        unsigned char c = (unsigned char)*p;
        if (c == '"') {
            *s = start;
            *len = (size_t)(p - start);
            *escaped = esc;
            return p + 1;
        }
        if (c < 0x20)
            return NULL;
        if (c >= 0x80) {
            if (!(p = jsref_utf8_char(p, end)))
                return NULL;
            continue;
        }
        if (c != '\\') {
            p++;
            continue;
        }
        esc = 1;
        if (++p >= end)
            return NULL;
        switch (*p) {
        case '"':
        case '\\':
        case '/':
        case 'b':
        case 'f':
        case 'n':
        case 'r':
        case 't':
            p++;
            break;
        case 'u': {
            unsigned u;
            if (jsref_hex4(p + 1, end, &u) != 0 || u == 0)
                return NULL;
            p += 5;
            if (u >= 0xDC00 && u <= 0xDFFF)
                return NULL; /* a low surrogate first */
            if (u >= 0xD800 && u <= 0xDBFF) {
                unsigned lo;
                if (end - p < 6 || p[0] != '\\' || p[1] != 'u' ||
                    jsref_hex4(p + 2, end, &lo) != 0 || lo < 0xDC00 || lo > 0xDFFF)
                    return NULL;
                p += 6;
            }
            break;
        }
        default:
            return NULL;
        }
    }
    return NULL;
}

static inline const char *jsref_json_scan_string(const char *p, const char *end, const char **s,
                                                 size_t *len, int *escaped)
{
    return jsref_scan_string(p, end, s, len, escaped);
}

static inline int jsref_is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* jansson refuses integers beyond long long and reals that overflow a double:
 * anything near those limits is left to it. */
static inline const char *jsref_scan_number(const char *p, const char *end)
{
    int real = 0;
    if (p < end && *p == '-')
        p++;
    if (p >= end || !jsref_is_digit(*p))
        return NULL;
    const char *digits = p;
    if (*p == '0')
        p++;
    else
        while (p < end && jsref_is_digit(*p))
            p++;
    size_t int_digits = (size_t)(p - digits);
    if (p < end && *p == '.') {
        real = 1;
        p++;
        if (p >= end || !jsref_is_digit(*p))
            return NULL;
        while (p < end && jsref_is_digit(*p))
            p++;
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        real = 1;
        p++;
        if (p < end && (*p == '+' || *p == '-'))
            p++;
        if (p >= end || !jsref_is_digit(*p))
            return NULL;
        const char *e = p;
        while (p < end && jsref_is_digit(*p))
            p++;
        if (p - e > 2)
            return NULL; /* |exponent| >= 100: let jansson judge */
    }
    if ((!real && int_digits > 18) || (real && int_digits > 200))
        return NULL;
    return p;
}

static inline const char *jsref_json_scan_object(const char *p, const char *end,
                                                 ms_json_member_fn member, void *ud)
{
    if (p >= end || *p != '{')
        return NULL;
    p = jsref_ws(p + 1, end);
    if (p < end && *p == '}')
        return p + 1;
    for (;;) {
        const char *k;
        size_t kl;
        int esc;
        if (!(p = jsref_scan_string(p, end, &k, &kl, &esc)) || esc)
            return NULL;
        p = jsref_ws(p, end);
        if (p >= end || *p != ':')
            return NULL;
        p = jsref_ws(p + 1, end);
        if (!(p = member(ud, k, kl, p, end)))
            return NULL;
        p = jsref_ws(p, end);
        if (p >= end)
            return NULL;
        if (*p == '}')
            return p + 1;
        if (*p != ',')
            return NULL;
        p = jsref_ws(p + 1, end);
    }
}

/* The members seen so far in one object: duplicates and overlong objects are
 * left to jansson. */
typedef struct {
    const char *keys[MS_JSON_SCAN_KEYS];
    /* length, first and last byte: unequal ones need no memcmp */
    uint64_t sig[MS_JSON_SCAN_KEYS];
    size_t n;
    int depth;
} jsref_object_scan_t;

static inline uint64_t jsref_key_sig(const char *k, size_t kl)
{
    return kl ? (uint64_t)kl << 16 | (uint64_t)(unsigned char)k[0] << 8 | (unsigned char)k[kl - 1]
              : 0;
}

static inline const char *jsref_scan_value(const char *p, const char *end, int depth);

static inline const char *jsref_scan_member(void *ud, const char *k, size_t kl, const char *v,
                                            const char *end)
{
    jsref_object_scan_t *o = ud;
    if (o->n == MS_JSON_SCAN_KEYS)
        return NULL;
    uint64_t sig = jsref_key_sig(k, kl);
    for (size_t i = 0; i < o->n; i++)
        if (o->sig[i] == sig && !memcmp(o->keys[i], k, kl))
            return NULL; /* a duplicate key */
    o->keys[o->n] = k;
    o->sig[o->n++] = sig;
    return jsref_scan_value(v, end, o->depth + 1);
}

static inline const char *jsref_scan_object(const char *p, const char *end, int depth)
{
    jsref_object_scan_t o; /* keys[] and sig[] are written before they are read */
    o.n = 0;
    o.depth = depth;
    return jsref_json_scan_object(p, end, jsref_scan_member, &o);
}

static inline const char *jsref_scan_array(const char *p, const char *end, int depth)
{
    p = jsref_ws(p + 1, end);
    if (p < end && *p == ']')
        return p + 1;
    for (size_t n = 1;; n++) {
        if (n > MS_CODEC_MAX_ELEMENTS || !(p = jsref_scan_value(p, end, depth + 1)))
            return NULL;
        p = jsref_ws(p, end);
        if (p >= end)
            return NULL;
        if (*p == ']')
            return p + 1;
        if (*p != ',')
            return NULL;
        p = jsref_ws(p + 1, end);
    }
}

static inline const char *jsref_literal(const char *p, const char *end, const char *word, size_t n)
{
    return (size_t)(end - p) >= n && !memcmp(p, word, n) ? p + n : NULL;
}

static inline const char *jsref_scan_value(const char *p, const char *end, int depth)
{
    if (p >= end || depth > MS_JSON_SCAN_DEPTH)
        return NULL;
    const char *s;
    size_t len;
    int esc;
    switch (*p) {
    case '{':
        return jsref_scan_object(p, end, depth);
    case '[':
        return jsref_scan_array(p, end, depth);
    case '"':
        /* The length with escapes is at least the decoded one: over the
         * limit, jansson decodes and the codec decides. */
        p = jsref_scan_string(p, end, &s, &len, &esc);
        return p && len <= MS_CODEC_MAX_STRING ? p : NULL;
    case 't':
        return jsref_literal(p, end, "true", 4);
    case 'f':
        return jsref_literal(p, end, "false", 5);
    case 'n':
        return jsref_literal(p, end, "null", 4);
    default:
        return jsref_scan_number(p, end);
    }
}

static inline const char *jsref_json_scan(const char *p, const char *end)
{
    return jsref_scan_value(p, end, 0);
}

#endif
