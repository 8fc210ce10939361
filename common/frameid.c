/* SPDX-License-Identifier: Apache-2.0 */
/* The request id of a client frame that is not decoded (frameid.h). */
#include <stdint.h>
#include <string.h>

#include "frameid.h"
#include "jsonscan.h"

typedef struct {
    char *out;
    size_t cap;
} frame_id_t;

/* Only printable ASCII is echoed: the id goes back in whichever encoding the session speaks
 * (a JSON session may send a binary frame), so it must be valid UTF-8 and need no care. */
static void put(char *out, size_t cap, const void *v, size_t n)
{
    const unsigned char *b = v;
    if (n >= cap)
        return;
    for (size_t i = 0; i < n; i++)
        if (b[i] < 0x20 || b[i] > 0x7e)
            return;
    memcpy(out, v, n);
    out[n] = '\0';
}

static const char *json_id_member(void *ud, const char *k, size_t kl, const char *p,
                                  const char *end)
{
    frame_id_t *f = ud;
    if (kl != 2 || memcmp(k, "id", 2))
        return ms_json_scan(p, end);
    const char *v;
    size_t vl;
    int esc;
    if (ms_json_scan_string(p, end, &v, &vl, &esc) && !esc)
        put(f->out, f->cap, v, vl);
    return NULL; /* found (or not a plain string): stop here */
}

static int pb_varint(const unsigned char **p, const unsigned char *end, uint64_t *v)
{
    *v = 0;
    for (int shift = 0; shift < 64 && *p < end; shift += 7) {
        unsigned char b = *(*p)++;
        *v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80))
            return 1;
    }
    return 0;
}

void ms_frame_id(const unsigned char *data, size_t len, int binary, char *out, size_t cap)
{
    if (!cap)
        return;
    *out = '\0';
    if (!binary) {
        frame_id_t f = {out, cap};
        const char *p = (const char *)data, *end = p + len;
        ms_json_scan_object(ms_json_ws(p, end), end, json_id_member, &f);
        return;
    }
    const unsigned char *p = data, *end = data + len;
    uint64_t tag, n;
    while (p < end && pb_varint(&p, end, &tag)) {
        switch (tag & 7) {
        case 0:
            if (!pb_varint(&p, end, &n))
                return;
            break;
        case 1:
        case 5:
            if ((size_t)(end - p) < ((tag & 7) == 1 ? 8u : 4u))
                return;
            p += (tag & 7) == 1 ? 8 : 4;
            break;
        case 2:
            if (!pb_varint(&p, end, &n) || n > (uint64_t)(end - p))
                return;
            if (tag >> 3 == 1) {
                put(out, cap, p, (size_t)n);
                return;
            }
            p += n;
            break;
        default:
            return;
        }
    }
}
