/* SPDX-License-Identifier: Apache-2.0 */
/* The frame walk of gateway/wsguard.c as it was before gateway/wswalk.c read a whole header in
 * one step (wsfast, 2026-12-07): every byte of a frame header through one state machine. Kept
 * as the reference the new walk must agree with exactly, in tests/unit/test_wswalk.c and
 * fuzz_wswalk.c (through wswalkdiff.h). Word for word but for the names (wsref_*, WSREF_*),
 * the entry's tracked flag and wsi pointer (the guard's, not the walk's), and its two globals
 * (the budget and the window's clock), which the caller sets here.
 */
#ifndef MS_TEST_WSWALKREF_H
#define MS_TEST_WSWALKREF_H

#include <libwebsockets.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

static uint16_t wsref_frame_budget = 65535;
static uint8_t (*wsref_window_now)(void);

enum { WSREF_HEAD, WSREF_FRAMES };

/* Why a connection broke a rule (ms_wsguard_violation), by wsref_conn_t.why. */
static const char *const wsref_reasons[] = {
    NULL,
    "reserved bits set (no extension is negotiated)",
    "reserved opcode",
    "fragmented control frame",
    "unmasked client frame",
    "control frame over 125 bytes",
    "more pings, pongs and fragments than its frame budget",
};
enum {
    WSREF_WHY_NONE,
    WSREF_WHY_RSV,
    WSREF_WHY_OPCODE,
    WSREF_WHY_FRAG_CONTROL,
    WSREF_WHY_UNMASKED,
    WSREF_WHY_LONG_CONTROL,
    WSREF_WHY_FRAME_FLOOD
};

/* WSREF_HEAD: where we are in the current header line. */
typedef struct {
    uint8_t line_pos; /* bytes into the line, capped */
    uint8_t up_match; /* bytes of "upgrade:" matched at the line start */
    uint8_t ws_match; /* bytes of "websocket" matched in an Upgrade line */
    uint8_t is_ws;    /* the request asks for websocket */
    uint8_t crlf;     /* "\r\n\r\n" bytes matched */
} wsref_head_t;

typedef struct {
    uint8_t mode;
    uint8_t hdr_len, hdr_need; /* WSREF_FRAMES */
    uint8_t why;               /* wsref_reasons[], WSREF_WHY_NONE while fine */
    uint8_t window;            /* WSREF_FRAMES: the budget window n_frames counts in */
    uint16_t violation;        /* close code, 0 while fine */
    union {
        wsref_head_t h; /* WSREF_HEAD */
        /* WSREF_FRAMES, while hdr_len > 0: the frame header read so far. */
        uint8_t hdr[14];
        /* WSREF_FRAMES, while hdr_len == 0: payload bytes left of the current frame
         * (the header it came from is no longer needed); 0: a header is next. */
        uint64_t skip;
        /* WSREF_FRAMES: frames that are not a whole data message, in window. */
        struct {
            uint8_t hdr_[14];
            uint16_t n_frames;
        } f;
    } u;
} wsref_conn_t;
_Static_assert(offsetof(wsref_conn_t, u.f.n_frames) >= offsetof(wsref_conn_t, u.hdr) + 14,
               "the frame count is clear of the header bytes");

/* Everything but the tracked flag back to zero, then the mode. */
static inline void wsref_reset(wsref_conn_t *c, uint8_t mode)
{
    c->mode = mode;
    c->hdr_len = c->hdr_need = c->why = 0;
    c->violation = 0;
    memset(&c->u, 0, sizeof(c->u));
}

static inline int wsref_lower(int ch)
{
    return ch >= 'A' && ch <= 'Z' ? ch + 32 : ch;
}

/* One byte of an HTTP request head. When the head ends, frames follow if it
 * asked for a WebSocket upgrade, else another request. */
static inline void wsref_head_byte(wsref_conn_t *c, uint8_t b)
{
    static const char up[] = "upgrade:", ws[] = "websocket", end[] = "\r\n\r\n";
    int ch = wsref_lower(b);
    wsref_head_t *h = &c->u.h;
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
        wsref_reset(c, h->is_ws ? WSREF_FRAMES : WSREF_HEAD);
}

/* Follows n bytes the client sent. Returns how many of them lws may see: n,
 * or the offset of the first frame that breaks a rule. */
static inline size_t wsref_follow(wsref_conn_t *c, const uint8_t *p, size_t n)
{
    size_t i = 0, frame_start = 0;
    while (i < n) {
        if (c->mode == WSREF_HEAD) {
            wsref_head_byte(c, p[i++]);
            continue;
        }
        if (c->hdr_len == 0 && c->u.skip) {
            size_t take = n - i < c->u.skip ? n - i : (size_t)c->u.skip;
            c->u.skip -= take;
            i += take;
            continue;
        }
        if (c->hdr_len == 0)
            frame_start = i;
        c->u.hdr[c->hdr_len++] = p[i++];
        if (c->hdr_len == 1) {
            /* lws checks these too, but then keeps reading the rest of the
             * frame as frames and lingers until its close timeout. */
            uint8_t op = c->u.hdr[0] & 0x0f;
            if (c->u.hdr[0] & 0x70)
                c->why = WSREF_WHY_RSV;
            else if ((op > 2 && op < 8) || op > 10)
                c->why = WSREF_WHY_OPCODE;
            else if ((op & 8) && !(c->u.hdr[0] & 0x80))
                c->why = WSREF_WHY_FRAG_CONTROL;
            if (c->why) {
                c->violation = LWS_CLOSE_STATUS_PROTOCOL_ERR;
                return frame_start;
            }
            /* Pings, pongs and fragments never reach the rate limit, which
             * counts whole messages: each costs a read, a parse and (a ping)
             * a pong, at whatever rate the client sends them. */
            if ((op & 8) || op == 0 || !(c->u.hdr[0] & 0x80)) {
                uint8_t w = wsref_window_now();
                if (w != c->window) {
                    c->window = w;
                    c->u.f.n_frames = 0;
                }
                if (++c->u.f.n_frames > wsref_frame_budget) {
                    c->why = WSREF_WHY_FRAME_FLOOD;
                    c->violation = LWS_CLOSE_STATUS_POLICY_VIOLATION;
                    return frame_start;
                }
            }
        }
        if (c->hdr_len == 2) {
            uint8_t len7 = c->u.hdr[1] & 0x7f;
            if (!(c->u.hdr[1] & 0x80))
                c->why = WSREF_WHY_UNMASKED;
            else if ((c->u.hdr[0] & 0x08) && len7 > 125)
                c->why = WSREF_WHY_LONG_CONTROL;
            if (c->why) {
                c->violation = LWS_CLOSE_STATUS_PROTOCOL_ERR;
                return frame_start;
            }
            c->hdr_need = (uint8_t)(2 + (len7 == 126 ? 2 : len7 == 127 ? 8 : 0) + 4);
        }
        if (c->hdr_len >= 2 && c->hdr_len == c->hdr_need) {
            uint64_t len = c->u.hdr[1] & 0x7f;
            if (len == 126) {
                len = (uint64_t)c->u.hdr[2] << 8 | c->u.hdr[3];
            } else if (len == 127) {
                len = 0;
                for (int k = 0; k < 8; k++)
                    len = len << 8 | c->u.hdr[2 + k];
            }
            c->u.skip = len; /* over the header, read */
            c->hdr_len = 0;
        }
    }
    return n;
}

#endif
