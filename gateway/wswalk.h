/* SPDX-License-Identifier: Apache-2.0 */
/* The walk of one client's byte stream that wsguard follows: the HTTP request head, then
 * each WebSocket frame header (payloads skipped), stopping at the first frame that breaks a
 * rule lws 4.1 does not enforce (see wsguard.h).
 *
 * Pure: no socket, no clock of its own (the frame budget's window comes from the caller's
 * function, asked only for a frame the budget counts), so tests/unit/test_wswalk.c and
 * tests/fuzz/fuzz_wswalk.c drive it byte for byte against the walker it replaced
 * (tests/fuzz/wswalkref.h). A header wholly in the buffer is read in one step; one split
 * across reads is followed a byte at a time, its rules checked as each byte arrives.
 */
#ifndef MS_WSWALK_H
#define MS_WSWALK_H

#include <stddef.h>
#include <stdint.h>

/* The rule a frame broke (ms_wswalk_t.why), MS_WSWALK_FINE while none. */
enum {
    MS_WSWALK_FINE,
    MS_WSWALK_RSV,
    MS_WSWALK_OPCODE,
    MS_WSWALK_FRAG_CONTROL,
    MS_WSWALK_UNMASKED,
    MS_WSWALK_LONG_CONTROL,
    MS_WSWALK_FRAME_FLOOD
};

/* HEAD: where the walk is in the current header line. */
typedef struct {
    uint8_t line_pos; /* bytes into the line, capped */
    uint8_t up_match; /* bytes of "upgrade:" matched at the line start */
    uint8_t ws_match; /* bytes of "websocket" matched in an Upgrade line */
    uint8_t is_ws;    /* the request asks for websocket */
    uint8_t crlf;     /* "\r\n\r\n" bytes matched */
} ms_wswalk_head_t;

/* One connection's walk; the caller's storage, fields private to wswalk.c. Aligned to 2
 * bytes, 22 long, so that wsguard's per-descriptor entry (a flag, this, a pointer) stays 32
 * bytes: the payload count is kept in bytes (memcpy), not as a uint64_t member. */
typedef struct {
    uint8_t mode;              /* HEAD or FRAMES */
    uint8_t why;               /* the rule broken, MS_WSWALK_FINE while fine */
    uint8_t hdr_len, hdr_need; /* FRAMES: a header split across reads */
    uint8_t window;            /* FRAMES: the budget window n_frames counts in */
    union {
        ms_wswalk_head_t h; /* HEAD */
        /* FRAMES, while hdr_len > 0: the frame header read so far. */
        uint8_t hdr[14];
        /* FRAMES, while hdr_len == 0: payload bytes left of the current frame (a uint64_t
         * in host order); 0: a header is next. */
        uint8_t skip[8];
        /* FRAMES: frames that are not a whole data message, in window. */
        struct {
            uint8_t hdr_[14];
            uint16_t n_frames;
        } f;
    } u;
} ms_wswalk_t;

/* The budget's window, a number that changes about once a second (mod 256). */
typedef uint8_t (*ms_wswalk_window_fn)(void);

/* A new walk, at the start of an HTTP request head. */
void ms_wswalk_init(ms_wswalk_t *w);

/* Follows n bytes the client sent. Returns how many of them lws may see: n, or the offset
 * of the first frame that breaks a rule (w->why says which; the walk must not be followed
 * further). budget (1 to 65535): pings, pongs and fragments (every frame but a whole text or
 * binary message) allowed per window; window() is called once for each such frame. */
size_t ms_wswalk_follow(ms_wswalk_t *w, const uint8_t *p, size_t n, uint16_t budget,
                        ms_wswalk_window_fn window);

/* What rule each MS_WSWALK_* names, by ms_wswalk_t.why (NULL for MS_WSWALK_FINE). */
extern const char *const ms_wswalk_reasons[MS_WSWALK_FRAME_FLOOD + 1];

#endif
