/* SPDX-License-Identifier: Apache-2.0 */
/* Assertions for integration tests that talk JSON to a gateway (Check framework). */
#ifndef MS_TEST_UTIL_H
#define MS_TEST_UTIL_H

#include <check.h>
#include <jansson.h>
#include <nats/nats.h>
#include <sys/types.h>

#include "cluster.h"
#include "wsclient.h"

#define T_MS 5000

/* Next JSON message; fails the test if none arrives within T_MS. Caller decrefs. */
json_t *recv_json(wsc_t *c);
void send_json(wsc_t *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Next message is an error with this code (and this id, if id is not NULL). */
void expect_error(wsc_t *c, const char *code, const char *id);
/* Next message has top-level key `key`; returns it (caller decrefs). */
json_t *expect_key(wsc_t *c, const char *key);
/* Reads c's messages until n replies without error have come (other messages skipped); an
 * error fails the test, naming what and how many came before. */
void expect_oks(wsc_t *c, int n, const char *what);
/* Connects to the gateway on port and joins ns as peer; checks the welcome. */
wsc_t *join_as(int port, const char *ns, const char *peer);
/* Next message is topology.connect to peer with this initiator flag. */
void expect_connect(wsc_t *c, const char *peer, int initiator);
/* Next two messages: topology.disconnect and peerLeft for peer. */
void expect_left(wsc_t *c, const char *peer);
/* Next message is a signal from `from`. */
void expect_signal_from(wsc_t *c, const char *from);
/* No message within ms. */
void expect_quiet(wsc_t *c, int ms);
/* Reads and drops messages until one has top-level key `key` (at most 50). */
json_t *skip_to(wsc_t *c, const char *key);
/* A string at a path of object keys, e.g. str_at(j, "error", "code", NULL). */
const char *str_at(json_t *j, ...);
/* The value of the /metrics line on 127.0.0.1:port that starts with `series `
 * (labels included); fails the test when the series is missing. */
long long metric_at(int port, const char *token, const char *series);

/* Checked fixture pair: the lws client context each test's clients share. */
void client_up(void);
void client_down(void);
/* Runs the suite; returns the process exit status. */
int run_suite(Suite *s);

/* What a process costs, from /proc: resident set in kB (-1 when gone), user + system CPU in
 * ms (fails the test when gone), and whether it runs with AddressSanitizer (whose quarantine
 * keeps freed memory resident: RSS bounds are wider for it). */
long proc_rss_kb(pid_t pid);
long proc_cpu_ms(pid_t pid);
int proc_is_asan(pid_t pid);

/* A plain NATS connection to the cluster's nats-server (fails the test if none), and a
 * synchronous subscription on subject with no pending limit, flushed (a tap: what the
 * processes publish there from now on, read with natsSubscription_NextMsg). */
natsConnection *bus_connect(const cluster_t *c);
natsSubscription *bus_tap(natsConnection *nc, const char *subject);

/* Coordinator `of` as coordinator `by`'s GET /v1/cluster shows it: alive and leaseOk (each -1
 * when it is not listed or the admin does not answer). */
void coord_seen(cluster_t *c, int by, int of, int *alive, int *lease_ok);
/* Until coord_seen says alive and lease_ok (lease_ok -1: either); fails the test after
 * timeout_ms, naming what. */
void wait_coord_seen(cluster_t *c, int by, int of, int alive, int lease_ok, long long timeout_ms,
                     const char *what);

#endif
