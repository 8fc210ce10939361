/* SPDX-License-Identifier: Apache-2.0 */
/* A minimal RFC 6455 client: upgrade request, handshake check, masked frames, frame parsing. */
#ifndef MS_LG_WS_H
#define MS_LG_WS_H

#include <stddef.h>
#include <stdint.h>

enum {
    MS_LG_OP_CONT = 0x0,
    MS_LG_OP_TEXT = 0x1,
    MS_LG_OP_BINARY = 0x2,
    MS_LG_OP_CLOSE = 0x8,
    MS_LG_OP_PING = 0x9,
    MS_LG_OP_PONG = 0xa,
};

/* Largest header a client frame needs: 2 + 8 (length) + 4 (mask). */
#define MS_LG_WS_MAX_HDR 14

/* Writes the Sec-WebSocket-Key for connection `seed` (24 chars + NUL) into out[25]. Deriving it
 * from a seed instead of storing it keeps 16 bytes per idle connection out of the load generator.
 */
void ms_lg_ws_key(uint64_t seed, char out[25]);

/* Formats the HTTP upgrade request into buf; returns its length, or -1 if buf is too small.
 * protocol may be NULL (no Sec-WebSocket-Protocol header). */
int ms_lg_ws_request(char *buf, size_t cap, const char *host, const char *path_and_query,
                     const char *key, const char *protocol);

/* Checks a complete response head (up to and including the blank line): status 101, the accept
 * hash of key, and, when protocol is not NULL, that the server chose it. Returns 0 or -1. */
int ms_lg_ws_check_response(const char *head, size_t len, const char *key, const char *protocol);

/* Writes a masked client frame header for a payload of len bytes into hdr and returns its size;
 * mask receives the 4 mask bytes the payload must be XORed with (ms_lg_ws_mask). */
size_t ms_lg_ws_frame_header(uint8_t *hdr, int opcode, uint64_t len, uint32_t mask_key);

/* XORs len bytes of src with the mask (starting at mask offset 0) into dst (may equal src). */
void ms_lg_ws_mask(uint8_t *dst, const uint8_t *src, size_t len, uint32_t mask_key);

/* A parsed frame header. */
typedef struct {
    int fin;
    int opcode;
    int masked;
    uint32_t mask_key;
    uint64_t len;   /* payload length */
    size_t hdr_len; /* bytes before the payload */
} ms_lg_ws_frame_t;

/* Parses the frame header at buf[0..avail). Returns 1 when the whole frame (header and payload)
 * is available, 0 when more bytes are needed, -1 on a protocol error. */
int ms_lg_ws_parse(const uint8_t *buf, size_t avail, ms_lg_ws_frame_t *f);

#endif
