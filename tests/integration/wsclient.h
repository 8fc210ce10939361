/* SPDX-License-Identifier: Apache-2.0 */
/* A synchronous WebSocket test client on the libwebsockets client API.
 *
 * All clients share one lws context; every blocking call pumps lws_service
 * until its condition holds or its deadline passes, so a test reads like a
 * conversation. Single-threaded; for tests only.
 */
#ifndef MS_TEST_WSCLIENT_H
#define MS_TEST_WSCLIENT_H

#include <stddef.h>
#include <jansson.h>

typedef struct wsc wsc_t;

int wsc_global_init(void);
void wsc_global_cleanup(void);

/* Connects to ws://127.0.0.1:port/ws. subprotocol may be NULL (none named).
 * Returns NULL if not established within timeout_ms. */
wsc_t *wsc_connect(int port, const char *subprotocol, int timeout_ms);
/* Closes (if open) and frees. */
/* The same at another path (with its query string), e.g. PeerJS's /peerjs?key=... */
wsc_t *wsc_connect_path(int port, const char *path, const char *subprotocol, int timeout_ms);
void wsc_free(wsc_t *c);
int wsc_send(wsc_t *c, const void *data, size_t len, int binary);
int wsc_send_text(wsc_t *c, const char *text);
/* Next message (malloc'd, NUL-terminated), or NULL on timeout/close. */
char *wsc_recv(wsc_t *c, int timeout_ms, size_t *len, int *binary);
/* Next text message parsed as JSON, or NULL. */
json_t *wsc_recv_json(wsc_t *c, int timeout_ms);
/* 1 once the server closed the connection (waits up to timeout_ms). */
int wsc_wait_closed(wsc_t *c, int timeout_ms);
/* The close code the server sent, 0 if none. */
int wsc_close_code(wsc_t *c);
/* Pumps the loop for ms milliseconds (lets other clients' traffic flow). */
void wsc_pump(int ms);
/* Messages received but not yet read. */
size_t wsc_pending(wsc_t *c);

#endif
