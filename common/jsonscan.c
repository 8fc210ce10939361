/* SPDX-License-Identifier: Apache-2.0 */
/* An allocation-free check of JSON text (RFC 8259), conservative where jansson is strict. */
#include <stdint.h>
#include <string.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "jsonscan.h"

#include "codec.h"

/* Inlined where the scanner calls it: most calls find no whitespace at all
 * (compact JSON), so the first byte above ' ' ends them at once. */
static inline const char *ws(const char *p, const char *end)
{
    while (p < end && (unsigned char)*p <= ' ' &&
           (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
        p++;
    return p;
}

const char *ms_json_ws(const char *p, const char *end)
{
    return ws(p, end);
}

static int hex4(const char *p, const char *end, unsigned *out)
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
static const char *utf8_char(const char *p, const char *end)
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

int ms_utf8_valid(const char *s, size_t n)
{
    const char *p = s, *end = s + n;
    while (p < end) {
        /* ASCII runs 32, then 8 bytes at a time: the common case (a whole text message from
         * a client is checked here, ws.c) */
#if defined(__SSE2__)
        while (end - p >= 32) {
            __m128i a = _mm_loadu_si128((const __m128i *)(const void *)p);
            __m128i b = _mm_loadu_si128((const __m128i *)(const void *)(p + 16));
            if (_mm_movemask_epi8(_mm_or_si128(a, b)))
                break;
            p += 32;
        }
#endif
        while (end - p >= 8) {
            uint64_t v;
            memcpy(&v, p, 8);
            if (v & 0x8080808080808080ull)
                break;
            p += 8;
        }
        if (p >= end)
            break;
        if (!((unsigned char)*p & 0x80))
            p++;
        else if (!(p = utf8_char(p, end)))
            return 0;
    }
    return 1;
}

/* Whether any of the 8 bytes of x needs a look: '"', '\\', a control
 * character or a byte of a UTF-8 sequence. Exact, no false negatives: the
 * zero-byte test (x - 0x01..) & ~x & 0x80.. flags a byte below 0x20 (or a
 * zero after the XOR) whenever there is one. */
static int needs_look(uint64_t x)
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
static inline __m128i look_mask(const char *p)
{
    const __m128i two = _mm_set1_epi8(2), below = _mm_set1_epi8(0x21), bslash = _mm_set1_epi8('\\');
    __m128i v = _mm_loadu_si128((const __m128i *)(const void *)p);
    return _mm_or_si128(_mm_cmplt_epi8(_mm_xor_si128(v, two), below), _mm_cmpeq_epi8(v, bslash));
}
#endif

/* Past the bytes inside a string that need no look: the first one that may
 * ('"', '\\', a control character, a byte >= 0x80), or end; without SSE2, or
 * when fewer than 16 bytes from lo (the string's opening quote, readable) to
 * end, maybe a point less than eight bytes before end. Signal payloads (SDP)
 * are long runs of such bytes; keys and most other strings end within the
 * first 16. */
static inline __attribute__((always_inline)) const char *skip_plain(const char *lo, const char *p,
                                                                    const char *end)
{
#if defined(__SSE2__)
    if (end - p >= 16) {
        unsigned bits = (unsigned)_mm_movemask_epi8(look_mask(p));
        if (bits)
            return p + __builtin_ctz(bits);
        p += 16;
        /* Long runs 64 bytes a turn; the 16-byte loop below finds the byte. */
        while (end - p >= 64) {
            __m128i m = _mm_or_si128(_mm_or_si128(look_mask(p), look_mask(p + 16)),
                                     _mm_or_si128(look_mask(p + 32), look_mask(p + 48)));
            if (_mm_movemask_epi8(m))
                break;
            p += 64;
        }
        while (end - p >= 16) {
            bits = (unsigned)_mm_movemask_epi8(look_mask(p));
            if (bits)
                return p + __builtin_ctz(bits);
            p += 16;
        }
    }
    /* The last 0..15 bytes: the 16 that end at end, read from no earlier than
     * lo, with the bits of the bytes before p dropped. */
    if (p < end && end - lo >= 16) {
        unsigned bits = (unsigned)_mm_movemask_epi8(look_mask(end - 16)) >> (16 - (end - p));
        return bits ? p + __builtin_ctz(bits) : end;
    }
#else
    (void)lo;
#endif
    while (end - p >= 8) {
        uint64_t x;
        memcpy(&x, p, 8);
        if (needs_look(x))
            break;
        p += 8;
    }
    return p;
}

/* Inlined into the scanner's own walks: a frame holds a score of short strings,
 * and a call each cost as much as scanning one. */
static inline __attribute__((always_inline)) const char *
scan_string(const char *p, const char *end, const char **s, size_t *len, int *escaped)
{
    if (p >= end || *p != '"')
        return NULL;
    const char *lo = p, *start = ++p;
    int esc = 0;
    while (p < end) {
        p = skip_plain(lo, p, end);
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
            if (!(p = utf8_char(p, end)))
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
            if (hex4(p + 1, end, &u) != 0 || u == 0)
                return NULL;
            p += 5;
            if (u >= 0xDC00 && u <= 0xDFFF)
                return NULL; /* a low surrogate first */
            if (u >= 0xD800 && u <= 0xDBFF) {
                unsigned lo;
                if (end - p < 6 || p[0] != '\\' || p[1] != 'u' || hex4(p + 2, end, &lo) != 0 ||
                    lo < 0xDC00 || lo > 0xDFFF)
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

const char *ms_json_scan_string(const char *p, const char *end, const char **s, size_t *len,
                                int *escaped)
{
    return scan_string(p, end, s, len, escaped);
}

static int is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* jansson refuses integers beyond long long and reals that overflow a double:
 * anything near those limits is left to it. */
static const char *scan_number(const char *p, const char *end)
{
    int real = 0;
    if (p < end && *p == '-')
        p++;
    if (p >= end || !is_digit(*p))
        return NULL;
    const char *digits = p;
    if (*p == '0')
        p++;
    else
        while (p < end && is_digit(*p))
            p++;
    size_t int_digits = (size_t)(p - digits);
    if (p < end && *p == '.') {
        real = 1;
        p++;
        if (p >= end || !is_digit(*p))
            return NULL;
        while (p < end && is_digit(*p))
            p++;
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        real = 1;
        p++;
        if (p < end && (*p == '+' || *p == '-'))
            p++;
        if (p >= end || !is_digit(*p))
            return NULL;
        const char *e = p;
        while (p < end && is_digit(*p))
            p++;
        if (p - e > 2)
            return NULL; /* |exponent| >= 100: let jansson judge */
    }
    if ((!real && int_digits > 18) || (real && int_digits > 200))
        return NULL;
    return p;
}

/* The object walk of ms_json_scan_object and scan_object, at '{': member(ud, key, key_len,
 * value, end) checks a member's value and returns past it (NULL refuses). Inlined into both:
 * in scan_object, member is a constant the compiler calls directly and folds in. */
static inline __attribute__((always_inline)) const char *
walk_object(const char *p, const char *end, ms_json_member_fn member, void *ud)
{
    p = ws(p + 1, end);
    if (p < end && *p == '}')
        return p + 1;
    for (;;) {
        const char *k;
        size_t kl;
        int esc;
        if (!(p = scan_string(p, end, &k, &kl, &esc)) || esc)
            return NULL;
        if (p < end && *p != ':') /* compact JSON has none of these ws() calls */
            p = ws(p, end);
        if (p >= end || *p != ':')
            return NULL;
        p = ws(p + 1, end);
        if (!(p = member(ud, k, kl, p, end)))
            return NULL;
        if (p < end && *p == ',') {
            p = ws(p + 1, end);
            continue;
        }
        p = ws(p, end);
        if (p >= end)
            return NULL;
        if (*p == '}')
            return p + 1;
        if (*p != ',')
            return NULL;
        p = ws(p + 1, end);
    }
}

const char *ms_json_scan_object(const char *p, const char *end, ms_json_member_fn member, void *ud)
{
    if (p >= end || *p != '{')
        return NULL;
    return walk_object(p, end, member, ud);
}

static inline uint64_t key_sig(const char *k, size_t kl)
{
    return kl ? (uint64_t)kl << 16 | (uint64_t)(unsigned char)k[0] << 8 | (unsigned char)k[kl - 1]
              : 0;
}

static const char *scan_value(const char *p, const char *end, int depth);

/* A member's value: strings (most of them) scanned here, the rest by scan_value. */
static inline __attribute__((always_inline)) const char *
scan_member_value(const char *p, const char *end, int depth)
{
    if (p < end && *p == '"' && depth <= MS_JSON_SCAN_DEPTH) {
        const char *s;
        size_t len;
        int esc;
        p = scan_string(p, end, &s, &len, &esc);
        return p && len <= MS_CODEC_MAX_STRING ? p : NULL;
    }
    return scan_value(p, end, depth);
}

/* The keys seen so far in one object (duplicates and overlong objects are left
 * to jansson), and its depth: each value is one level deeper. */
typedef struct {
    const char *keys[MS_JSON_SCAN_KEYS]; /* written before they are read */
    /* length, first and last byte: unequal ones need no memcmp */
    uint64_t sigs[MS_JSON_SCAN_KEYS];
    /* one bit per signature seen (of 64, by a multiplicative hash): a key whose
     * bit is clear cannot be a duplicate, and the loop over the keys is skipped */
    uint64_t seen;
    size_t n;
    int depth;
} object_scan_t;

static inline __attribute__((always_inline)) const char *
scan_member(void *ud, const char *k, size_t kl, const char *p, const char *end)
{
    object_scan_t *o = ud;
    if (o->n == MS_JSON_SCAN_KEYS)
        return NULL;
    uint64_t sig = key_sig(k, kl), bit = 1ull << ((sig * 0x9E3779B97F4A7C15ull) >> 58);
    if (o->seen & bit)
        for (size_t i = 0; i < o->n; i++)
            if (o->sigs[i] == sig && !memcmp(o->keys[i], k, kl))
                return NULL; /* a duplicate key */
    o->seen |= bit;
    o->keys[o->n] = k;
    o->sigs[o->n++] = sig;
    return scan_member_value(p, end, o->depth + 1);
}

static const char *scan_object(const char *p, const char *end, int depth)
{
    object_scan_t o;
    o.seen = 0;
    o.n = 0;
    o.depth = depth;
    return walk_object(p, end, scan_member, &o);
}

static const char *scan_array(const char *p, const char *end, int depth)
{
    p = ws(p + 1, end);
    if (p < end && *p == ']')
        return p + 1;
    for (size_t n = 1;; n++) {
        if (n > MS_CODEC_MAX_ELEMENTS || !(p = scan_value(p, end, depth + 1)))
            return NULL;
        p = ws(p, end);
        if (p >= end)
            return NULL;
        if (*p == ']')
            return p + 1;
        if (*p != ',')
            return NULL;
        p = ws(p + 1, end);
    }
}

static const char *literal(const char *p, const char *end, const char *word, size_t n)
{
    return (size_t)(end - p) >= n && !memcmp(p, word, n) ? p + n : NULL;
}

static const char *scan_value(const char *p, const char *end, int depth)
{
    if (p >= end || depth > MS_JSON_SCAN_DEPTH)
        return NULL;
    const char *s;
    size_t len;
    int esc;
    switch (*p) {
    case '{':
        return scan_object(p, end, depth);
    case '[':
        return scan_array(p, end, depth);
    case '"':
        /* The length with escapes is at least the decoded one: over the
         * limit, jansson decodes and the codec decides. */
        p = scan_string(p, end, &s, &len, &esc);
        return p && len <= MS_CODEC_MAX_STRING ? p : NULL;
    case 't':
        return literal(p, end, "true", 4);
    case 'f':
        return literal(p, end, "false", 5);
    case 'n':
        return literal(p, end, "null", 4);
    default:
        return scan_number(p, end);
    }
}

const char *ms_json_scan(const char *p, const char *end)
{
    return scan_value(p, end, 0);
}
