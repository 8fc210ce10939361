/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer target: the allocation-free JSON scanner (common/jsonscan.c), checked against jansson.
 *
 * The scanner's contract (jsonscan.h) is that whatever it vouches for, jansson
 * accepts with JSON_REJECT_DUPLICATES; the gateway relays such text without
 * parsing it again, so a disagreement is a bug on the wire, not a curiosity.
 * ms_utf8_valid (every text message a client sends, gateway/ws.c) is checked against a
 * code-point-at-a-time reference (utf8ref.h), from every start offset up to 17 so that its
 * 32- and 8-byte ASCII steps meet the input at every alignment.
 * The scanner is also checked against its earlier self (jsonscanref.h): the same end (or NULL)
 * for ms_json_scan from every start offset up to 17 and from the first non-space byte, and the
 * same end, contents and escape flag for ms_json_scan_string at the first 8 quotes.
 */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "frameid.h"
#include "jsonscan.h"
#include "jsonscanref.h"
#include "utf8ref.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* ms_json_scan_object leaves duplicate keys to its caller (the gateway's
 * signal parser takes each key it knows once and refuses anything else):
 * this walk refuses them too, so that what it accepts must satisfy jansson. */
typedef struct {
    const char *keys[MS_JSON_SCAN_KEYS];
    size_t klen[MS_JSON_SCAN_KEYS];
    size_t n;
} walk_t;

/* Each member's value is scanned on its own, and string values are re-scanned
 * with ms_json_scan_string, as the gateway's signal parser does. */
static const char *member(void *ud, const char *key, size_t key_len, const char *value,
                          const char *end)
{
    walk_t *w = ud;
    const char *s;
    size_t len;
    int esc;
    if (w->n == MS_JSON_SCAN_KEYS)
        return NULL;
    for (size_t i = 0; i < w->n; i++)
        if (w->klen[i] == key_len && !memcmp(w->keys[i], key, key_len))
            return NULL;
    w->keys[w->n] = key;
    w->klen[w->n++] = key_len;
    if (value < end && *value == '"') {
        const char *q = ms_json_scan_string(value, end, &s, &len, &esc);
        if (q && (s < value || s + len > end))
            abort();
        return q;
    }
    return ms_json_scan(value, end);
}

static void must_parse(const char *p, size_t n)
{
    json_t *j = json_loadb(p, n, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
    if (!j)
        abort(); /* the scanner vouched for text jansson refuses */
    json_decref(j);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* Scan from a private copy whose end is the end of the allocation, so that
     * ASan sees any read past `end`. */
    char *buf = malloc(size ? size : 1);
    if (!buf)
        return 0;
    memcpy(buf, data, size);
    /* The gateway reads the id of a frame it will not decode (common/frameid.h) with this
     * scanner: it must stay in bounds and give a printable, terminated id. */
    char id[16];
    ms_frame_id((const unsigned char *)buf, size, 0, id, sizeof(id));
    for (size_t i = 0; id[i]; i++)
        if (i >= sizeof(id) - 1 || (unsigned char)id[i] < 0x20 || (unsigned char)id[i] > 0x7e)
            abort();
    for (size_t o = 0; o < size && o <= 17; o++)
        if (ms_utf8_valid(buf + o, size - o) != ms_test_utf8_ref(data + o, size - o))
            abort();
    const char *end = buf + size;
    const char *p = ms_json_ws(buf, end);
    if (p != jsref_json_ws(buf, end))
        abort();
    for (size_t o = 0; o < size && o <= 17; o++)
        if (ms_json_scan(buf + o, end) != jsref_json_scan(buf + o, end))
            abort();
    for (size_t o = 0, quotes = 0; o < size && quotes < 8; o++) {
        if (buf[o] != '"')
            continue;
        quotes++;
        const char *s1 = NULL, *s2 = NULL;
        size_t l1 = 0, l2 = 0;
        int e1 = -1, e2 = -1;
        const char *q1 = ms_json_scan_string(buf + o, end, &s1, &l1, &e1);
        if (q1 != jsref_json_scan_string(buf + o, end, &s2, &l2, &e2) ||
            (q1 && (s1 != s2 || l1 != l2 || e1 != e2)))
            abort();
    }
    const char *q = ms_json_scan(p, end);
    if (q != jsref_json_scan(p, end))
        abort();
    if (q) {
        if (q <= p || q > end)
            abort();
        if (ms_json_ws(q, end) == end)
            must_parse(buf, size);
        else
            must_parse(p, (size_t)(q - p)); /* the value alone */
    }
    walk_t w = {.n = 0};
    q = ms_json_scan_object(p, end, member, &w);
    if (q) {
        if (q <= p || q > end || *p != '{')
            abort();
        must_parse(p, (size_t)(q - p));
    }
    free(buf);
    return 0;
}
