/* SPDX-License-Identifier: Apache-2.0 */
/* An allocation-free check of JSON text, for passing values through without a DOM.
 *
 * jansson (the JSON library everywhere else) builds a tree of every value; a
 * signal's payload only has to be checked and copied to the receiver. These
 * functions walk the text once and say where a value ends. They vouch only for
 * text that jansson would accept with JSON_REJECT_DUPLICATES and decode to the
 * same value: anything else, invalid or merely unusual (nesting deeper than
 * MS_JSON_SCAN_DEPTH, an object with more than MS_JSON_SCAN_KEYS members, an
 * array or string over the codec's limits (codec.h) or
 * with escapes in a key, "\u0000", an unpaired surrogate escape, a number
 * jansson would refuse as out of range), gets NULL, and the caller hands the
 * text to jansson, which then decides and explains. Strings must be
 * well-formed UTF-8, as jansson requires.
 */
#ifndef MS_JSONSCAN_H
#define MS_JSONSCAN_H

#include <stddef.h>

#define MS_JSON_SCAN_DEPTH 32
#define MS_JSON_SCAN_KEYS 32

/* Past the JSON whitespace at p. */
const char *ms_json_ws(const char *p, const char *end);

/* p at a value (no leading whitespace): past its end, or NULL. */
const char *ms_json_scan(const char *p, const char *end);

/* p at a string's opening quote: past its closing quote, or NULL. The contents
 * (between the quotes) are *s, *len; *escaped says whether they hold a
 * backslash escape (then they are not the decoded string). */
const char *ms_json_scan_string(const char *p, const char *end, const char **s, size_t *len,
                                int *escaped);

/* p at an object's '{': walks its members, calling member(ud, key, key_len,
 * value, end) with value at the member's value (no leading whitespace); member
 * returns past the value, or NULL to stop. Returns past the '}', or NULL when
 * the text is not an object, a key holds an escape, or member stopped. */
typedef const char *(*ms_json_member_fn)(void *ud, const char *key, size_t key_len,
                                         const char *value, const char *end);
/* 1 when s[0..n) is well-formed UTF-8 (RFC 3629: no overlong forms, no
 * surrogates, nothing above U+10FFFF), as proto3 requires of a string field. */
int ms_utf8_valid(const char *s, size_t n);
const char *ms_json_scan_object(const char *p, const char *end, ms_json_member_fn member, void *ud);

#endif
