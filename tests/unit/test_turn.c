/* SPDX-License-Identifier: Apache-2.0 */
/* TURN REST API credentials: known vectors, bounds, and coturn itself accepting what we mint. */
#include <check.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <netinet/in.h>
#include <time.h>
#include <unistd.h>

#include "turn.h"

START_TEST(known_vector)
{
    char user[MS_TURN_USER_MAX], pass[MS_TURN_PASS_MAX];
    /* base64(HMAC-SHA1("north", "1700000000:alice")), computed independently. */
    ck_assert_int_eq(ms_turn_credential("north", "alice", 1700000000, user, pass), MS_OK);
    ck_assert_str_eq(user, "1700000000:alice");
    ck_assert_str_eq(pass, "Cd/49soE35ICqcJF/bCTn8Z4OyE=");
}
END_TEST

START_TEST(bounds)
{
    char user[MS_TURN_USER_MAX], pass[MS_TURN_PASS_MAX], id[200];
    ck_assert_int_eq(ms_turn_credential("", "alice", 1, user, pass), MS_ERR_INVAL);
    ck_assert_int_eq(ms_turn_credential("s", "", 1, user, pass), MS_ERR_INVAL);
    ck_assert_int_eq(ms_turn_credential("s", "a", -1, user, pass), MS_ERR_INVAL);
    memset(id, 'a', 128);
    id[128] = '\0';
    ck_assert_int_eq(ms_turn_credential("s", id, INT64_MAX, user, pass), MS_OK);
    ck_assert_uint_eq(strlen(pass), 28);
    memset(id, 'a', 199);
    id[199] = '\0';
    ck_assert_int_eq(ms_turn_credential("s", id, 1, user, pass), MS_ERR_INVAL);
}
END_TEST

/* A free UDP+TCP port on 127.0.0.1 (coturn listens on both). */
static int free_port(void)
{
    for (int i = 0; i < 50; i++) {
        int port = 20000 + (int)(((unsigned)getpid() * 7919u + (unsigned)i * 104729u) % 30000u);
        int ok = 1;
        int types[2] = {SOCK_DGRAM, SOCK_STREAM};
        for (int t = 0; t < 2 && ok; t++) {
            int fd = socket(AF_INET, types[t], 0);
            struct sockaddr_in a = {.sin_family = AF_INET,
                                    .sin_port = htons((uint16_t)port),
                                    .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
            ok = fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
            if (fd >= 0)
                close(fd);
        }
        if (ok)
            return port;
    }
    return -1;
}

static pid_t spawn(char *const argv[], const char *log)
{
    pid_t pid = fork();
    if (pid == 0) {
        FILE *f = freopen(log, "w", stdout);
        (void)f;
        dup2(1, 2);
        execvp(argv[0], argv);
        _exit(127);
    }
    return pid;
}

/* Runs turnutils_uclient against the server with user/pass; returns its exit status. */
static int uclient(int port, const char *user, const char *pass)
{
    char p[16];
    snprintf(p, sizeof(p), "%d", port);
    char *argv[] = {"turnutils_uclient",
                    "-p",
                    p,
                    "-u",
                    (char *)user,
                    "-w",
                    (char *)pass,
                    "-n",
                    "2",
                    "-y",
                    "-c",
                    "-l",
                    "50",
                    "127.0.0.1",
                    NULL};
    pid_t pid = spawn(argv, "/dev/null");
    ck_assert_int_gt(pid, 0);
    int status = 0;
    /* uclient gives up on its own within a few seconds; bound the wait anyway. */
    for (int i = 0; i < 300; i++) {
        if (waitpid(pid, &status, WNOHANG) == pid)
            return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
        usleep(100 * 1000);
    }
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
    return -1;
}

START_TEST(coturn_accepts_minted_and_refuses_expired_or_forged)
{
    if (access("/usr/bin/turnserver", X_OK) || access("/usr/bin/turnutils_uclient", X_OK))
        ck_abort_msg("coturn is not installed (deploy/install-deps.sh installs it)");
    int port = free_port();
    ck_assert_int_gt(port, 0);
    char ps[16], min[16], max[16];
    snprintf(ps, sizeof(ps), "%d", port);
    /* A relay port range that does not hold the listening port. */
    int lo = port >= 60000 && port <= 60040 ? 61000 : 60000;
    snprintf(min, sizeof(min), "%d", lo);
    snprintf(max, sizeof(max), "%d", lo + 40);
    char *argv[] = {"turnserver",
                    "-n",
                    "--listening-ip",
                    "127.0.0.1",
                    "--listening-port",
                    ps,
                    "--relay-ip",
                    "127.0.0.1",
                    "--min-port",
                    min,
                    "--max-port",
                    max,
                    "--use-auth-secret",
                    "--static-auth-secret",
                    "t3st-secret",
                    "--realm",
                    "meshsig",
                    "--no-tls",
                    "--no-dtls",
                    "--no-cli",
                    "--allow-loopback-peers",
                    "--log-file",
                    "stdout",
                    "--simple-log",
                    NULL};
    pid_t ts = spawn(argv, "/tmp/ms-test-turnserver.log");
    ck_assert_int_gt(ts, 0);
    char user[MS_TURN_USER_MAX], pass[MS_TURN_PASS_MAX];
    time_t now = time(NULL);
    ck_assert_int_eq(ms_turn_credential("t3st-secret", "alice", now + 3600, user, pass), MS_OK);
    /* coturn may take a moment to listen: the good credential is tried until it
     * works (bounded); the negative cases run once it does. */
    int rc = -1;
    for (int i = 0; i < 20 && rc != 0; i++)
        rc = uclient(port, user, pass);
    int expired_rc = -2, forged_rc = -2, wrong_secret_rc = -2;
    if (rc == 0) {
        char u2[MS_TURN_USER_MAX], p2[MS_TURN_PASS_MAX];
        ck_assert_int_eq(ms_turn_credential("t3st-secret", "alice", now - 60, u2, p2), MS_OK);
        expired_rc = uclient(port, u2, p2);
        char forged[MS_TURN_PASS_MAX];
        snprintf(forged, sizeof(forged), "%s", pass);
        forged[0] = forged[0] == 'A' ? 'B' : 'A';
        forged_rc = uclient(port, user, forged);
        ck_assert_int_eq(ms_turn_credential("other-secret", "alice", now + 3600, u2, p2), MS_OK);
        wrong_secret_rc = uclient(port, u2, p2);
    }
    kill(ts, SIGTERM);
    waitpid(ts, NULL, 0);
    ck_assert_msg(rc == 0, "coturn refused a freshly minted credential (see "
                           "/tmp/ms-test-turnserver.log)");
    ck_assert_int_ne(expired_rc, 0);
    ck_assert_int_ne(forged_rc, 0);
    ck_assert_int_ne(wrong_secret_rc, 0);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("turn");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, known_vector);
    tcase_add_test(tc, bounds);
    suite_add_tcase(s, tc);
    TCase *tc2 = tcase_create("coturn");
    tcase_set_timeout(tc2, 120);
    tcase_add_test(tc2, coturn_accepts_minted_and_refuses_expired_or_forged);
    suite_add_tcase(s, tc2);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
