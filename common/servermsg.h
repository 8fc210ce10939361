/* SPDX-License-Identifier: Apache-2.0 */
/* The ServerMessages both binaries send most: error, ok, signal, emit, topology disconnect.
 *
 * Each builder fills a small struct the caller provides (usually on its
 * stack) and returns the ServerMessage inside it: nothing is allocated, and
 * the strings and payloads are borrowed, so the message lives as long as the
 * struct and what it points at. One definition per message keeps the wire
 * shape in one place (the id of a reply, `from` set by the server, never the
 * client).
 */
#ifndef MS_SERVERMSG_H
#define MS_SERVERMSG_H

#include "client.pb-c.h"

typedef struct {
    Meshsig__V1__ServerMessage sm;
    Meshsig__V1__Error error;
} ms_sm_error_t;

typedef struct {
    Meshsig__V1__ServerMessage sm;
    Meshsig__V1__Ok ok;
} ms_sm_ok_t;

typedef struct {
    Meshsig__V1__ServerMessage sm;
    Meshsig__V1__Signal signal;
} ms_sm_signal_t;

typedef struct {
    Meshsig__V1__ServerMessage sm;
    Meshsig__V1__Emit emit;
} ms_sm_emit_t;

typedef struct {
    Meshsig__V1__ServerMessage sm;
    Meshsig__V1__Topology topology;
    Meshsig__V1__Disconnect disconnect;
} ms_sm_disconnect_t;

/* An error answering request id (NULL or "" when none). */
Meshsig__V1__ServerMessage *ms_sm_error(ms_sm_error_t *b, const char *id,
                                        Meshsig__V1__ErrorCode code, const char *text);
/* ok answering request id. */
Meshsig__V1__ServerMessage *ms_sm_ok(ms_sm_ok_t *b, const char *id);
/* A signal from peer `from` (the server's word for the sender) with payload (may be NULL). */
Meshsig__V1__ServerMessage *ms_sm_signal(ms_sm_signal_t *b, const char *from,
                                         Meshsig__V1__Value *payload);
/* An emit: a copy of *emit's fields (the pointers are borrowed). */
Meshsig__V1__ServerMessage *ms_sm_emit(ms_sm_emit_t *b, const Meshsig__V1__Emit *emit);
/* topology.disconnect from peer. */
Meshsig__V1__ServerMessage *ms_sm_disconnect(ms_sm_disconnect_t *b, const char *peer);

#endif
