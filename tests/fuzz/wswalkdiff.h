/* SPDX-License-Identifier: Apache-2.0 */
/* gateway/wswalk.c against the walk it replaced (wswalkref.h), shared by tests/unit/test_wswalk.c
 * and fuzz_wswalk.c: client streams built from recipe bytes (frames of every length form, some
 * breaking a rule, payloads that look like headers so that a walk off by a byte says so), fed
 * to both walks in the same chunks, as recv(2) would hand them over. After every chunk both
 * must pass the same bytes, name the same rule, read the budget's clock as often, and hold the
 * same state (what they will do with the next byte); once a rule is broken the guard follows
 * no further, and neither does the check.
 */
#ifndef MS_TEST_WSWALKDIFF_H
#define MS_TEST_WSWALKDIFF_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "wswalk.h"
#include "wswalkref.h"

static inline uint64_t wsdiff_rand(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15u);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return z ^ (z >> 31);
}

/* ---- streams --------------------------------------------------------- */

/* HTTP heads a stream may start with: none (frames read as HTTP), an upgrade, one in other
 * case and spacing, a plain request and then an upgrade, a request that is no upgrade. */
static const char *const wsdiff_heads[] = {
    "",
    "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
    "GET / HTTP/1.1\r\nupgrade:WebSocket\r\n\r\n",
    "GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nUPGRADE: xwebsocket\r\n\r\n",
    "GET / HTTP/1.1\r\nX-Upgrade: websocket\r\n\r\n",
};
#define WSDIFF_HEADS (sizeof(wsdiff_heads) / sizeof(wsdiff_heads[0]))

typedef struct {
    const uint8_t *p;
    size_t n, i;
} wsdiff_src_t;

static inline uint8_t wsdiff_byte(wsdiff_src_t *s)
{
    return s->i < s->n ? s->p[s->i++] : 0;
}

/* Frames from recipe bytes into out (cap bytes), after head; returns the stream's length.
 * Mostly well-formed (text, binary, fragments, pings, pongs, closes, masked, short lengths in
 * any of the three forms, the longer ones non-minimal), one in eight first bytes raw, one in
 * sixteen second bytes raw and one in sixteen unmasked; 16- and 64-bit lengths mostly under 1 KiB,
 * else anything up to 2^64 - 1. A payload longer than what is left ends the stream inside it. */
static inline size_t wsdiff_build(const char *head, const uint8_t *r, size_t rn, uint8_t *out,
                                  size_t cap)
{
    static const uint8_t b0s[8] = {0x81, 0x82, 0x01, 0x00, 0x80, 0x89, 0x8a, 0x88};
    static const uint8_t fill[8] = {0x81, 0xfe, 0x00, 0x7f, 0x89, 0x80, 0x0d, 0x0a};
    wsdiff_src_t s = {r, rn, 0};
    size_t n = strlen(head);
    if (n > cap)
        n = cap;
    memcpy(out, head, n);
    while (s.i < s.n && n + 14 <= cap) {
        uint8_t k = wsdiff_byte(&s), f = wsdiff_byte(&s);
        uint8_t hdr[14];
        size_t h = 2;
        uint64_t len;
        hdr[0] = k < 224 ? b0s[k & 7] : wsdiff_byte(&s);
        uint8_t mask = (f & 0xf0) == 0xf0 ? 0 : 0x80;
        switch (f & 3) {
        case 0:
        case 1:
            len = wsdiff_byte(&s) & 0x7f; /* 126 and 127 bare: extended lengths follow */
            hdr[1] = (uint8_t)(mask | len);
            if (len >= 126)
                len = 0;
            break;
        case 2: {
            uint8_t hi = wsdiff_byte(&s), lo = wsdiff_byte(&s);
            if (!(hi & 0x80))
                hi &= 3;
            hdr[1] = mask | 126;
            hdr[2] = hi;
            hdr[3] = lo;
            h = 4;
            len = (uint64_t)hi << 8 | lo;
            break;
        }
        default: {
            uint8_t e = wsdiff_byte(&s);
            len = 0;
            for (int j = 0; j < 8; j++) {
                uint8_t b = (e & 0x80) || j >= 6 ? wsdiff_byte(&s) : 0;
                if (!(e & 0x80) && j == 6)
                    b &= 3;
                hdr[2 + j] = b;
                len = len << 8 | b;
            }
            hdr[1] = mask | 127;
            h = 10;
            break;
        }
        }
        if ((f & 0xf0) == 0xe0) /* the second byte raw, whatever it says */
            hdr[1] = wsdiff_byte(&s);
        for (int j = 0; j < 4; j++)
            hdr[h++] = wsdiff_byte(&s);
        memcpy(out + n, hdr, h);
        n += h;
        uint8_t g = wsdiff_byte(&s);
        for (uint64_t j = 0; j < len && n < cap; j++)
            out[n++] = fill[(g + j) & 7];
    }
    return n;
}

/* ---- chunks ---------------------------------------------------------- */

/* How a stream is cut into reads: at most max bytes each (0: random sizes, 1 to rmax), or
 * once at cut (cut > 0). */
typedef struct {
    size_t max, rmax, cut;
    uint64_t seed;
} wsdiff_split_t;

static inline size_t wsdiff_next(wsdiff_split_t *sp, size_t off, size_t left)
{
    if (sp->cut)
        return off < sp->cut && sp->cut - off < left ? sp->cut - off : left;
    size_t len = sp->max ? sp->max : 1 + (size_t)(wsdiff_rand(&sp->seed) % sp->rmax);
    return len < left ? len : left;
}

/* ---- the check ------------------------------------------------------- */

/* The budget's window for either walk: base, plus one every tick reads (0: never changes).
 * Each walk has its own count, so a walk that reads the clock once too often sees a window
 * the other does not. */
static unsigned wsdiff_reads[2], wsdiff_tick;
static uint8_t wsdiff_base;

static inline uint8_t wsdiff_window(int k)
{
    unsigned c = wsdiff_reads[k]++;
    return (uint8_t)(wsdiff_base + (wsdiff_tick ? c / wsdiff_tick : 0));
}

static inline uint8_t wsdiff_window_ref(void)
{
    return wsdiff_window(0);
}

static inline uint8_t wsdiff_window_new(void)
{
    return wsdiff_window(1);
}

/* What differs between the two walks' states, or NULL. */
static inline const char *wsdiff_state(const wsref_conn_t *c, const ms_wswalk_t *w)
{
    if (c->mode != w->mode)
        return "mode";
    if (c->mode == WSREF_HEAD)
        return memcmp(&c->u.h, &w->u.h, sizeof(c->u.h)) ? "HTTP head state" : NULL;
    if (c->hdr_len != w->hdr_len || memcmp(c->u.hdr, w->u.hdr, c->hdr_len))
        return "header bytes held";
    if (c->hdr_len >= 2 && c->hdr_need != w->hdr_need)
        return "header size";
    if (c->hdr_len == 0) {
        uint64_t skip;
        memcpy(&skip, w->u.skip, sizeof(skip));
        if (c->u.skip != skip)
            return "payload left";
    }
    if (c->window != w->window || c->u.f.n_frames != w->u.f.n_frames)
        return "frame budget";
    return NULL;
}

/* Feeds s[0..n) to a new reference walk and a new ms_wswalk in the chunks sp gives, each
 * chunk copied to the end of an allocation of n bytes (ASan sees a read past its end).
 * Returns NULL if they agree all along, else what differed first, *at the offset of the
 * chunk it differed after. */
static inline const char *wsdiff_run(const uint8_t *s, size_t n, uint16_t budget, unsigned tick,
                                     uint8_t base, wsdiff_split_t *sp, size_t *at)
{
    wsref_conn_t c;
    memset(&c, 0, sizeof(c));
    wsref_reset(&c, WSREF_HEAD);
    ms_wswalk_t w;
    ms_wswalk_init(&w);
    wsref_frame_budget = budget;
    wsref_window_now = wsdiff_window_ref;
    wsdiff_reads[0] = wsdiff_reads[1] = 0;
    wsdiff_tick = tick;
    wsdiff_base = base;
    const char *diff = NULL;
    uint8_t *buf = malloc(n ? n : 1);
    if (!buf)
        abort();
    for (size_t off = 0; off < n && !diff;) {
        size_t len = wsdiff_next(sp, off, n - off);
        uint8_t *chunk = buf + n - len;
        memcpy(chunk, s + off, len);
        size_t a = wsref_follow(&c, chunk, len);
        size_t b = ms_wswalk_follow(&w, chunk, len, budget, wsdiff_window_new);
        *at = off;
        if (a != b)
            diff = "bytes passed";
        else if (c.why != w.why)
            diff = "rule broken";
        else if (c.why && strcmp(wsref_reasons[c.why], ms_wswalk_reasons[w.why]))
            diff = "reason";
        else if (wsdiff_reads[0] != wsdiff_reads[1])
            diff = "budget clock reads";
        else if (c.why)
            break; /* the guard follows no further */
        else
            diff = wsdiff_state(&c, &w);
        off += len;
    }
    free(buf);
    return diff;
}

#endif
