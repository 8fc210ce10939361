/* SPDX-License-Identifier: Apache-2.0 */
/* The client side of the PeerJS server protocol for integration tests, as peerjs 1.x speaks it
 * over a raw WebSocket (wsclient.h): one place for test_peerjs, test_peerjs_direct and
 * test_peerjs_takeover. Assertions are Check's: call these from a test. */
#ifndef MS_TEST_PJCLIENT_H
#define MS_TEST_PJCLIENT_H

#include <jansson.h>

#include "wsclient.h"

/* A PeerJS socket on the gateway at port, as the client opens it; NULL when not established
 * within timeout_ms. */
wsc_t *pjc_connect(int port, const char *key, const char *id, const char *token, int timeout_ms);

/* The next PeerJS message, which must come within timeout_ms, be of type `type` and (src not
 * NULL) from src. Caller decrefs. */
json_t *pjc_expect(wsc_t *c, const char *type, const char *src, int timeout_ms);

/* pjc_connect, which must succeed, and its OPEN within timeout_ms. */
wsc_t *pjc_open(int port, const char *key, const char *id, const char *token, int timeout_ms);

/* A signal of type (OFFER, ANSWER, CANDIDATE) to dst whose payload is a candidate numbered n. */
void pjc_send_numbered(wsc_t *c, const char *type, const char *dst, int n);

/* The number of a CANDIDATE from src (pjc_send_numbered), or -1 when j is not one. */
int pjc_candidate_n(json_t *j, const char *src);

#endif
