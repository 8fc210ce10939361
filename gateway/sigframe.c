/* SPDX-License-Identifier: Apache-2.0 */
/* Native JSON signal frames read by a scan, without jansson. */
#include <stdint.h>
#include <string.h>

#include "jsonscan.h"
#include "sigframe.h"

static void clear(ms_sigframe_t *f)
{
    f->to_len = f->id_len = 0;
    f->payload = NULL;
    f->payload_len = 0;
    f->to[0] = f->id[0] = '\0';
}

/* ---- the general scan: any member order, whitespace ---- */

typedef struct {
    ms_sigframe_t *f;
    int seen_id, seen_signal, seen_to, seen_from;
} scan_t;

static int key_is(const char *k, size_t kl, const char *name, size_t nl)
{
    return kl == nl && !memcmp(k, name, nl);
}

/* s[0..n) into buf (MS_SIGFRAME_ID_MAX + 1 bytes), when it fits. */
static int put(char *buf, size_t *len, const char *s, size_t n)
{
    if (n > MS_SIGFRAME_ID_MAX)
        return 0;
    memcpy(buf, s, n);
    buf[n] = '\0';
    *len = n;
    return 1;
}

/* A member of "signal": "to" (a plain string), "from" (ignored: ours), "payload". */
static const char *signal_member(void *ud, const char *k, size_t kl, const char *p, const char *end)
{
    scan_t *sc = ud;
    const char *v;
    size_t vl;
    int esc;
    if (key_is(k, kl, "to", 2) && !sc->seen_to) {
        if (!(p = ms_json_scan_string(p, end, &v, &vl, &esc)) || esc ||
            !put(sc->f->to, &sc->f->to_len, v, vl))
            return NULL;
        sc->seen_to = 1;
        return p;
    }
    if (key_is(k, kl, "from", 4) && !sc->seen_from) {
        sc->seen_from = 1;
        return ms_json_scan_string(p, end, &v, &vl, &esc);
    }
    if (key_is(k, kl, "payload", 7) && !sc->f->payload) {
        const char *after = ms_json_scan(p, end);
        if (after) {
            sc->f->payload = p;
            sc->f->payload_len = (size_t)(after - p);
        }
        return after;
    }
    return NULL;
}

/* A member of the message: "id" (any plain string) and "signal", nothing else. */
static const char *message_member(void *ud, const char *k, size_t kl, const char *p,
                                  const char *end)
{
    scan_t *sc = ud;
    const char *v;
    size_t vl;
    int esc;
    if (key_is(k, kl, "id", 2) && !sc->seen_id) {
        sc->seen_id = 1;
        /* Kept for the owner's answers on the direct path: plain ids only. */
        if (!(p = ms_json_scan_string(p, end, &v, &vl, &esc)) || esc ||
            !put(sc->f->id, &sc->f->id_len, v, vl))
            return NULL;
        return p;
    }
    if (key_is(k, kl, "signal", 6) && !sc->seen_signal) {
        sc->seen_signal = 1;
        p = ms_json_scan_object(p, end, signal_member, sc);
        return p && sc->seen_to ? p : NULL;
    }
    return NULL;
}

int ms_sigframe_scan_any(const char *data, size_t len, ms_sigframe_t *out)
{
    const char *end = data + len;
    scan_t sc = {.f = out};
    clear(out);
    const char *p = ms_json_scan_object(ms_json_ws(data, end), end, message_member, &sc);
    return p && sc.seen_signal && ms_json_ws(p, end) == end;
}

/* ---- the walk for the clients' own layout ---- */

/* The alphabet the owner allows in peer ids (coordinator/member.c), as in
 * pjframe.c: A-Z a-z 0-9 . _ : @ - as a bit map of the 128 ASCII bytes. A
 * target outside it is left to the general scan (the owner answers it). */
static const uint64_t id_bits[2] = {0x07ff600000000000ull, 0x07fffffe87ffffffull};

static inline int id_char(unsigned char c)
{
    return c < 128 && (id_bits[c >> 6] >> (c & 63)) & 1;
}

/* A request id's byte that needs no look: printable ASCII but '"' and '\\'. */
static inline int plain_char(unsigned char c)
{
    return c >= 0x20 && c < 0x7f && c != '"' && c != '\\';
}

static inline int lit(const char *p, const char *end, const char *s, size_t n)
{
    return (size_t)(end - p) >= n && !memcmp(p, s, n);
}

/* p just after an id's opening quote: the id (plain bytes, at most
 * MS_SIGFRAME_ID_MAX) into f->id, past its closing quote; or NULL. */
static const char *walk_id(const char *p, const char *end, ms_sigframe_t *f)
{
    size_t n = 0;
    while (p < end && plain_char((unsigned char)*p)) {
        if (n == MS_SIGFRAME_ID_MAX)
            return NULL;
        f->id[n++] = *p++;
    }
    if (p >= end || *p != '"')
        return NULL;
    f->id[n] = '\0';
    f->id_len = n;
    return p + 1;
}

/* {"id":"I","signal":{"to":"T","payload":V}} with the id and the payload optional and the id
 * also after the signal, nothing else, no whitespace: JSON.stringify of the SDK's
 * {id, signal: {to, payload}} and the load generator's frame. Vouches for a subset of what
 * ms_sigframe_scan_any does, with the same result. */
static int scan_compact(const char *p, const char *end, ms_sigframe_t *f)
{
    if (!lit(p, end, "{\"", 2))
        return 0;
    p++;
    clear(f);
    int seen_id = 0;
    if (lit(p, end, "\"id\":\"", 6)) {
        if (!(p = walk_id(p + 6, end, f)) || p >= end || *p != ',')
            return 0;
        p++;
        seen_id = 1;
    }
    if (!lit(p, end, "\"signal\":{\"to\":\"", 16))
        return 0;
    p += 16;
    size_t n = 0;
    while (p < end && id_char((unsigned char)*p)) {
        if (n == MS_SIGFRAME_ID_MAX)
            return 0;
        f->to[n++] = *p++;
    }
    if (!n || p >= end || *p != '"')
        return 0;
    f->to[n] = '\0';
    f->to_len = n;
    p++;
    if (lit(p, end, ",\"payload\":", 11)) {
        p += 11;
        const char *after = ms_json_scan(p, end);
        if (!after)
            return 0;
        f->payload = p;
        f->payload_len = (size_t)(after - p);
        p = after;
    }
    if (p >= end || *p != '}')
        return 0;
    p++;
    if (!seen_id && lit(p, end, ",\"id\":\"", 7) && !(p = walk_id(p + 7, end, f)))
        return 0;
    return p + 1 == end && *p == '}';
}

int ms_sigframe_scan_compact(const char *data, size_t len, ms_sigframe_t *out)
{
    return scan_compact(data, data + len, out);
}

int ms_sigframe_scan(const char *data, size_t len, ms_sigframe_t *out)
{
    if (scan_compact(data, data + len, out))
        return 1;
    return ms_sigframe_scan_any(data, len, out);
}
