/* SPDX-License-Identifier: Apache-2.0 */
/* Follows a client's byte stream, HTTP head then frame headers, for wsguard (see wswalk.h). */
#include "wswalk.h"

#include <stddef.h>
#include <string.h>

_Static_assert(offsetof(ms_wswalk_t, u.f.n_frames) >= offsetof(ms_wswalk_t, u.hdr) + 14,
               "the frame count is clear of the header bytes");
_Static_assert(sizeof(ms_wswalk_t) == 22 && _Alignof(ms_wswalk_t) == 2,
               "wsguard's entry: a flag, the walk, a pointer in 32 bytes");

enum { HEAD, FRAMES };

const char *const ms_wswalk_reasons[MS_WSWALK_FRAME_FLOOD + 1] = {
    [MS_WSWALK_RSV] = "reserved bits set (no extension is negotiated)",
    [MS_WSWALK_OPCODE] = "reserved opcode",
    [MS_WSWALK_FRAG_CONTROL] = "fragmented control frame",
    [MS_WSWALK_UNMASKED] = "unmasked client frame",
    [MS_WSWALK_LONG_CONTROL] = "control frame over 125 bytes",
    [MS_WSWALK_FRAME_FLOOD] = "more pings, pongs and fragments than its frame budget",
};

static void start(ms_wswalk_t *w, uint8_t mode)
{
    memset(w, 0, sizeof(*w));
    w->mode = mode;
}

void ms_wswalk_init(ms_wswalk_t *w)
{
    start(w, HEAD);
}

static uint64_t skip_get(const ms_wswalk_t *w)
{
    uint64_t v;
    memcpy(&v, w->u.skip, sizeof(v));
    return v;
}

static void skip_set(ms_wswalk_t *w, uint64_t v)
{
    memcpy(w->u.skip, &v, sizeof(v));
}

/* Of a payload of len bytes, the part in the avail bytes read: skipped, the rest left. */
static size_t skip_over(ms_wswalk_t *w, uint64_t len, size_t avail)
{
    size_t take = avail < len ? avail : (size_t)len;
    skip_set(w, len - take);
    return take;
}

static int lower(int ch)
{
    return ch >= 'A' && ch <= 'Z' ? ch + 32 : ch;
}

/* One byte of an HTTP request head. When the head ends, frames follow if it
 * asked for a WebSocket upgrade, else another request. */
static void head_byte(ms_wswalk_t *w, uint8_t b)
{
    static const char up[] = "upgrade:", ws[] = "websocket", end[] = "\r\n\r\n";
    int ch = lower(b);
    ms_wswalk_head_t *h = &w->u.h;
    if (b == '\n') {
        h->line_pos = h->up_match = h->ws_match = 0;
    } else {
        if (h->line_pos < 8 && h->up_match == h->line_pos && ch == up[h->line_pos])
            h->up_match++;
        else if (h->line_pos >= 8 && h->up_match == 8 && h->ws_match < 9)
            h->ws_match = ch == ws[h->ws_match] ? h->ws_match + 1 : ch == ws[0];
        if (h->ws_match == 9)
            h->is_ws = 1;
        if (h->line_pos < 255)
            h->line_pos++;
    }
    h->crlf = b == (uint8_t)end[h->crlf] ? h->crlf + 1 : b == '\r';
    if (h->crlf == 4)
        start(w, h->is_ws ? FRAMES : HEAD);
}

/* Counts a ping, pong or fragment against the budget of its window. */
static uint8_t count_frame(ms_wswalk_t *w, uint16_t budget, ms_wswalk_window_fn window)
{
    uint8_t now = window();
    if (now != w->window) {
        w->window = now;
        w->u.f.n_frames = 0;
    }
    return ++w->u.f.n_frames > budget ? MS_WSWALK_FRAME_FLOOD : MS_WSWALK_FINE;
}

/* The rules of a header's first byte (FIN, RSV, opcode), and the frame budget. */
static inline uint8_t first_byte(ms_wswalk_t *w, uint8_t b0, uint16_t budget,
                                 ms_wswalk_window_fn window)
{
    /* lws checks these too, but then keeps reading the rest of the
     * frame as frames and lingers until its close timeout. */
    uint8_t op = b0 & 0x0f;
    if (b0 & 0x70)
        return MS_WSWALK_RSV;
    if ((op > 2 && op < 8) || op > 10)
        return MS_WSWALK_OPCODE;
    if ((op & 8) && !(b0 & 0x80))
        return MS_WSWALK_FRAG_CONTROL;
    /* Pings, pongs and fragments never reach the rate limit, which
     * counts whole messages: each costs a read, a parse and (a ping)
     * a pong, at whatever rate the client sends them. */
    if ((op & 8) || op == 0 || !(b0 & 0x80))
        return count_frame(w, budget, window);
    return MS_WSWALK_FINE;
}

/* The rules of its second byte (MASK, length), given the first. */
static inline uint8_t second_byte(uint8_t b0, uint8_t b1)
{
    if (!(b1 & 0x80))
        return MS_WSWALK_UNMASKED;
    if ((b0 & 0x08) && (b1 & 0x7f) > 125)
        return MS_WSWALK_LONG_CONTROL;
    return MS_WSWALK_FINE;
}

/* A header's size from its second byte: 2, the extended length (0, 2 or 8), the mask key. */
static size_t header_size(uint8_t b1)
{
    uint8_t len7 = b1 & 0x7f;
    return 2 + (len7 == 126 ? 2 : len7 == 127 ? 8 : 0) + 4;
}

/* The payload length of a whole header. */
static uint64_t payload_len(const uint8_t *h)
{
    uint64_t len = h[1] & 0x7f;
    if (len == 126) {
        len = (uint64_t)h[2] << 8 | h[3];
    } else if (len == 127) {
        len = 0;
        for (int k = 0; k < 8; k++)
            len = len << 8 | h[2 + k];
    }
    return len;
}

size_t ms_wswalk_follow(ms_wswalk_t *w, const uint8_t *p, size_t n, uint16_t budget,
                        ms_wswalk_window_fn window)
{
    size_t i = 0, frame_start = 0;
    while (i < n) {
        if (w->mode == HEAD) {
            head_byte(w, p[i++]);
            continue;
        }
        if (w->hdr_len == 0) {
            uint64_t skip = skip_get(w);
            if (skip) {
                i += skip_over(w, skip, n - i);
                continue;
            }
            frame_start = i;
            /* The common case: the whole header is here, its rules checked in the order
             * the byte-at-a-time walk below checks them. */
            size_t size = n - i >= 2 ? header_size(p[i + 1]) : 0;
            if (size && n - i >= size) {
                if ((w->why = first_byte(w, p[i], budget, window)) ||
                    (w->why = second_byte(p[i], p[i + 1])))
                    return frame_start;
                uint64_t len = payload_len(p + i);
                i += size;
                i += skip_over(w, len, n - i);
                continue;
            }
        }
        /* A header split across reads: each rule as soon as its byte is in (a client that
         * sends a bad first byte and then nothing is closed at once). */
        w->u.hdr[w->hdr_len++] = p[i++];
        if (w->hdr_len == 1 && (w->why = first_byte(w, w->u.hdr[0], budget, window)))
            return frame_start;
        if (w->hdr_len == 2) {
            if ((w->why = second_byte(w->u.hdr[0], w->u.hdr[1])))
                return frame_start;
            w->hdr_need = (uint8_t)header_size(w->u.hdr[1]);
        }
        if (w->hdr_len >= 2 && w->hdr_len == w->hdr_need) {
            skip_set(w, payload_len(w->u.hdr)); /* over the header, read */
            w->hdr_len = 0;
        }
    }
    return n;
}
