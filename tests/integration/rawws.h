/* SPDX-License-Identifier: Apache-2.0 */
/* A raw-bytes WebSocket client for conformance and abuse tests: it sends whatever frames it is
 * told.
 *
 * Unlike wsclient (libwebsockets, always well-formed) this one writes each
 * frame's bits itself (mask or not, reserved bits, any opcode, fragments), so
 * a test can send what a broken or hostile client would. Every read has a
 * deadline. Single-threaded; for tests only.
 */
#ifndef MS_TEST_RAWWS_H
#define MS_TEST_RAWWS_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    int fd;
    int status;      /* HTTP status of the upgrade answer */
    char head[4096]; /* the answer's header block, NUL-terminated */
    uint8_t buf[1 << 17];
    size_t len; /* bytes in buf not yet consumed */
} rws_t;

#define RWS_FIN 0x80
#define RWS_RSV1 0x40
#define RWS_RSV2 0x20
#define RWS_RSV3 0x10

/* Connects to 127.0.0.1:port and sends a GET /ws upgrade with version
 * ("13" normally; NULL: no Sec-WebSocket-Version header), subprotocol (NULL:
 * none) and extra header lines (each ending "\r\n", may be NULL). Reads the
 * answer's head within timeout_ms. NULL when no answer arrived. */
rws_t *rws_connect(int port, const char *version, const char *subprotocol, const char *extra,
                   int timeout_ms);
/* The same, writing `after` (e.g. frames) in the same write as the request,
 * before the answer is read, as a pipelining client would. */
rws_t *rws_connect_with(int port, const char *version, const char *subprotocol, const char *extra,
                        const void *after, size_t after_len, int timeout_ms);
/* The same from source address src (NULL: any; 127.0.0.2, 127.0.0.3, ... are distinct
 * loopback addresses on Linux; "::1": to [::1]:port) to path ("/ws"). */
rws_t *rws_connect_from(const char *src, int port, const char *path, const char *version,
                        const char *subprotocol, const char *extra, const void *after,
                        size_t after_len, int timeout_ms);
/* A TCP connection from src (NULL: any) to 127.0.0.1:port, or from an IPv6 src ("::1") to
 * [::1]:port, nothing sent: its fd, or -1. */
int rws_tcp_from(const char *src, int port);
void rws_free(rws_t *c);

/* Writes one frame: first byte b0 (FIN, RSV bits and opcode), masked or
 * not (a fixed non-zero key), with len payload bytes. 0, or -1 on a write
 * error (e.g. the server closed). */
int rws_send_frame(rws_t *c, uint8_t b0, int masked, const void *payload, size_t len);

/* The bytes of that frame (malloc'd, *out_len of them), for a test that writes them in
 * pieces; NULL when out of memory. */
uint8_t *rws_frame(uint8_t b0, int masked, const void *payload, size_t len, size_t *out_len);
/* Writes bytes as they are. 0, or -1 on a write error. */
int rws_write(rws_t *c, const void *bytes, size_t len);

/* Reads the next frame: its opcode (b0 & 0x0f, with *b0 the whole byte),
 * payload in *payload (malloc'd, NUL-terminated; may be NULL) and *len.
 * -1 when the connection closed or nothing came within timeout_ms. */
int rws_recv_frame(rws_t *c, int timeout_ms, uint8_t **payload, size_t *len, uint8_t *b0);

/* Reads frames until a close frame: its status code (0: a close frame with
 * no code, -1: the TCP connection ended without one or nothing came within
 * timeout_ms). Data frames before it are discarded. */
int rws_wait_close(rws_t *c, int timeout_ms);

/* 1 once the server has closed the TCP connection (EOF within timeout_ms). */
int rws_wait_eof(rws_t *c, int timeout_ms);

#endif
