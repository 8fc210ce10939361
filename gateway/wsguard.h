/* SPDX-License-Identifier: Apache-2.0 */
/* The RFC 6455 framing checks libwebsockets 4.1 leaves out (masked client frames, short control
 * frames) and a budget of the frames the rate limit never sees.
 *
 * lws 4.1 (Debian 12) accepts and answers unmasked client frames (RFC 6455
 * §5.1: the server MUST close the connection) and drops a control frame over
 * 125 bytes without a close code; on reserved bits or opcodes it sends 1002
 * but reads the rest of the frame as frames, missing the client's close, and
 * keeps the socket until its close timeout. lws reads every client socket with recv(2)
 * and offers no hook on frame headers, so this module defines recv, accept,
 * accept4 and close in the gateway executable (the dynamic linker resolves
 * liblws's calls to them first) and follows the client->server byte stream of
 * each accepted socket (wswalk.h): the HTTP head until an "Upgrade: websocket" request
 * ends, then each frame header, skipping payloads. A frame that breaks a rule
 * is never handed to lws: recv returns the bytes before it (or EAGAIN), the
 * connection's wsi is asked for a writable callback, and the gateway closes it
 * with the code ms_wsguard_violation returns. Every other socket (NATS, files)
 * passes straight through. Upstream lws checks the mask itself since 2026
 * (commit cae06c63a); this module can go once the distribution ships that.
 *
 * Threads: accept/recv of client sockets happen on the lws service thread;
 * recv and close of other sockets on any thread (cnats) only read the table.
 */
#ifndef MS_WSGUARD_H
#define MS_WSGUARD_H

#include <libwebsockets.h>

#include "err.h"

/* Before the lws context exists (it sizes a table by RLIMIT_NOFILE).
 * frames_per_s (1 to 65535): pings, pongs and fragments (every frame but a
 * whole text or binary message) one connection may send in a window of
 * about a second; one more closes it with 1008. The rate limit counts
 * messages, never these, and lws answers pings itself: without this budget
 * a client sending empty continuation frames or pings as fast as its socket
 * takes them kept a gateway core busy, never throttled. */
ms_err_t ms_wsguard_init(unsigned frames_per_s);
/* After the lws context is destroyed. */
void ms_wsguard_cleanup(void);

/* lws thread, at LWS_CALLBACK_ESTABLISHED: the wsi to wake when fd breaks a
 * rule. Returns ms_wsguard_violation(fd, why). */
int ms_wsguard_bind(int fd, struct lws *wsi, const char **why);
/* The close code (1002) fd earned, or 0; *why (may be NULL) says what. */
int ms_wsguard_violation(int fd, const char **why);
/* The upgrade on fd was refused: what follows is HTTP again. */
void ms_wsguard_http(int fd);

#endif
