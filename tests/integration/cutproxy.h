/* SPDX-License-Identifier: Apache-2.0 */
/* A loopback TCP proxy whose connections a test can cut: a client's NATS connection lost at a
 * chosen moment, so that nats-server forgets its subscriptions (the interest gap of a node loss).
 *
 * One thread forwards bytes both ways between each accepted connection and the target port.
 * Its sockets are close-on-exec: a process the test starts later must not hold a copy of a
 * connection, or a cut would not close it.
 * While cut, every connection is closed and new ones are accepted and closed at once (the
 * client keeps trying to reconnect); once uncut, connections go through again.
 */
#ifndef MS_TEST_CUTPROXY_H
#define MS_TEST_CUTPROXY_H

typedef struct cutproxy cutproxy_t;

/* Listens on a free loopback port and forwards to 127.0.0.1:target_port; NULL on failure. */
cutproxy_t *cutproxy_start(int target_port);
int cutproxy_port(const cutproxy_t *p);
/* cut 1: closes every connection now (before returning) and refuses new ones; 0: lets them in. */
void cutproxy_cut(cutproxy_t *p, int cut);
/* The same for the connections of one NATS client only: those whose CONNECT names it (the
 * coordinator's lease connection is "meshsig-lease"), closed before it reaches the server;
 * the others go on. cut 0 lets it in again. */
void cutproxy_cut_named(cutproxy_t *p, const char *name, int cut);
/* Connections forwarded right now. */
int cutproxy_connections(cutproxy_t *p);
/* Connections refused so far at their CONNECT for naming the client cut_named cut (each one
 * connection attempt of that client while cut). */
long cutproxy_named_closed(cutproxy_t *p);
void cutproxy_stop(cutproxy_t *p);

#endif
