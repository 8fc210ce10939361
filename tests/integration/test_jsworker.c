/* SPDX-License-Identifier: Apache-2.0 */
/* The JetStream worker (common/jsworker) against a real nats-server: jobs run in order on one
 * thread with the worker's connection, results come back in order with a wake each, destroy still
 * runs what was queued (lease releases, offline stores) and then finish on an open connection,
 * the connection comes back after nats-server restarts, and its credentials are used. */
#include <check.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <nats/nats.h>

#include "cluster.h"
#include "jsworker.h"
#include "testutil.h"

#define STREAM "JSWTEST"
#define N_JOBS 50

static cluster_t cl;

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void pause_ms(int ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

typedef struct {
    ms_jsjob_t link;
    int n;
    int block;         /* wait until destroy has been called */
    int retry_ms;      /* retry the store this long (through a NATS restart) */
    int stopping;      /* what run was told */
    natsStatus status; /* of the store */
    uint64_t seq;      /* where the stream put it */
} job_t;

typedef struct {
    ms_jsworker_t **self; /* where create puts the worker */
    ms_jsworker_t *seen;  /* what *self was when start ran */
    pthread_t thread;     /* the worker's */
    int started, finished, finish_ok;
    int ran[N_JOBS + 8];
    int n_ran, n_stopping, wrong_thread;
    atomic_int blocked; /* a blocking job runs */
    atomic_int wakes;
} state_t;

/* Worker thread, before the first job: the stream every job stores into. */
static void start(ms_jsworker_t *w, void *ud)
{
    state_t *s = ud;
    s->thread = pthread_self();
    s->seen = *s->self;
    s->started = 1;
    jsStreamConfig sc;
    jsStreamConfig_Init(&sc);
    const char *subjects[] = {"jsw.>"};
    sc.Name = STREAM;
    sc.Subjects = subjects;
    sc.SubjectsLen = 1;
    sc.Storage = js_FileStorage;
    jsErrCode ec = 0;
    jsStreamInfo *si = NULL;
    /* Until it answers (it may still be starting): later jobs count on the stream. */
    long long end = now_ms() + 10000;
    while (js_AddStream(&si, ms_jsworker_js(w), &sc, NULL, &ec) != NATS_OK && now_ms() < end)
        pause_ms(50);
    jsStreamInfo_Destroy(si);
}

/* Stores the job's number in the stream, on the worker's JetStream context. */
static void run(ms_jsworker_t *w, ms_jsjob_t *job, int stopping, void *ud)
{
    state_t *s = ud;
    job_t *j = (job_t *)job;
    if (!pthread_equal(pthread_self(), s->thread))
        s->wrong_thread++;
    if (j->block) {
        atomic_store(&s->blocked, 1);
        /* Bounded: destroy, called by the test, is what ends it. */
        long long end = now_ms() + 20000;
        while (!ms_jsworker_stopping(w) && now_ms() < end)
            pause_ms(1);
    }
    char body[16];
    int len = snprintf(body, sizeof(body), "%d", j->n);
    long long end = now_ms() + j->retry_ms;
    do {
        jsPubAck *pa = NULL;
        jsErrCode ec = 0;
        j->status = js_Publish(&pa, ms_jsworker_js(w), "jsw.t", body, len, NULL, &ec);
        if (pa)
            j->seq = pa->Sequence;
        jsPubAck_Destroy(pa);
        if (j->status != NATS_OK && now_ms() < end)
            pause_ms(100);
    } while (j->status != NATS_OK && now_ms() < end);
    s->ran[s->n_ran++] = j->n;
    s->n_stopping += stopping;
    j->stopping = stopping;
    if (j->n % 2 == 0)
        ms_jsworker_post(w, &j->link); /* even jobs come back as results */
    else
        free(j);
}

/* Worker thread, after the last job: the connection is still open. */
static void finish(ms_jsworker_t *w, void *ud)
{
    state_t *s = ud;
    s->finished = s->n_ran;
    jsPubAck *pa = NULL;
    s->finish_ok = js_Publish(&pa, ms_jsworker_js(w), "jsw.finish", "f", 1, NULL, NULL) == NATS_OK;
    jsPubAck_Destroy(pa);
}

static void wake(void *ud)
{
    atomic_fetch_add(&((state_t *)ud)->wakes, 1);
}

static ms_err_t make(state_t *s, ms_jsworker_t **w, const ms_nats_auth_t *auth)
{
    memset(s, 0, sizeof(*s));
    s->self = w;
    ms_jsworker_config_t cfg = {.nats_urls = cl.nats_urls,
                                .auth = auth,
                                .name = "test-jsworker",
                                .reconnect_wait_ms = 100,
                                .js_wait_ms = 2000,
                                .start = start,
                                .run = run,
                                .finish = finish,
                                .ud = s,
                                .wake = wake,
                                .wake_ud = s};
    return ms_jsworker_create(&cfg, w);
}

static job_t *submit(ms_jsworker_t *w, int n)
{
    job_t *j = calloc(1, sizeof(*j));
    ck_assert_ptr_nonnull(j);
    j->n = n;
    ms_jsworker_submit(w, &j->link);
    return j;
}

/* Waits (bounded) for want results and returns them as an array, oldest first. */
static int take_results(ms_jsworker_t *w, job_t **out, int want, int timeout_ms)
{
    int got = 0;
    long long end = now_ms() + timeout_ms;
    while (got < want && now_ms() < end) {
        ms_jsjob_t *r = ms_jsworker_take(w);
        if (!r)
            pause_ms(5);
        for (ms_jsjob_t *n; r; r = n) {
            n = r->next;
            out[got++] = (job_t *)r;
        }
    }
    return got;
}

/* The body of stream message seq, read on a connection of the test's own. */
static int stored_at(uint64_t seq, char *out, size_t cap)
{
    natsConnection *nc = NULL;
    jsCtx *js = NULL;
    natsMsg *m = NULL;
    int ok = natsConnection_ConnectTo(&nc, cl.nats_urls) == NATS_OK &&
             natsConnection_JetStream(&js, nc, NULL) == NATS_OK &&
             js_GetMsg(&m, js, STREAM, seq, NULL, NULL) == NATS_OK;
    if (ok)
        snprintf(out, cap, "%.*s", natsMsg_GetDataLength(m), natsMsg_GetData(m));
    natsMsg_Destroy(m);
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
    return ok;
}

static void nats_up(void)
{
    ck_assert_int_eq(cluster_start_nats_only(&cl, NULL), 0);
}

static void nats_down(void)
{
    cluster_stop(&cl);
}

START_TEST(jobs_run_in_order_and_results_come_back)
{
    static state_t s;
    ms_jsworker_t *w = NULL;
    ck_assert_int_eq(make(&s, &w, NULL), MS_OK);
    for (int i = 0; i < N_JOBS; i++)
        submit(w, i);
    job_t *res[N_JOBS];
    ck_assert_int_eq(take_results(w, res, N_JOBS / 2, 20000), N_JOBS / 2);
    for (int i = 0; i < N_JOBS / 2; i++) {
        ck_assert_int_eq(res[i]->n, 2 * i);
        ck_assert_int_eq(res[i]->status, NATS_OK);
        ck_assert_int_eq(res[i]->stopping, 0);
        /* Stored in submission order: job n is message n + 1 of the stream. */
        ck_assert_uint_eq(res[i]->seq, (uint64_t)(2 * i + 1));
        free(res[i]);
    }
    ck_assert_int_eq(atomic_load(&s.wakes), N_JOBS / 2);
    ms_jsworker_destroy(w);
    ck_assert(s.started);
    ck_assert_ptr_eq(s.seen, w);
    ck_assert_int_eq(s.n_ran, N_JOBS);
    for (int i = 0; i < N_JOBS; i++)
        ck_assert_int_eq(s.ran[i], i);
    ck_assert_int_eq(s.wrong_thread, 0);
    ck_assert_int_eq(s.n_stopping, 0);
    char body[16];
    ck_assert(stored_at(N_JOBS, body, sizeof(body)));
    ck_assert_str_eq(body, "49");
}
END_TEST

START_TEST(destroy_runs_the_queued_jobs_then_finish)
{
    static state_t s;
    ms_jsworker_t *w = NULL;
    ck_assert_int_eq(make(&s, &w, NULL), MS_OK);
    /* The first job holds the thread until destroy begins: every other one is still queued
     * then, as a lease's releases are when the coordinator stops. */
    job_t *first = calloc(1, sizeof(*first));
    ck_assert_ptr_nonnull(first);
    first->n = 1;
    first->block = 1;
    ms_jsworker_submit(w, &first->link);
    for (int i = 2; i <= 20; i++)
        submit(w, i);
    long long end = now_ms() + 20000;
    while (!atomic_load(&s.blocked) && now_ms() < end)
        pause_ms(1);
    ck_assert(atomic_load(&s.blocked));
    ms_jsworker_destroy(w); /* the even results nobody took are freed (ASan checks) */
    ck_assert_int_eq(s.n_ran, 20);
    for (int i = 0; i < 20; i++)
        ck_assert_int_eq(s.ran[i], i + 1);
    /* All but the first were still queued when destroy was called. */
    ck_assert_int_eq(s.n_stopping, 19);
    ck_assert_int_eq(s.finished, 20);
    ck_assert(s.finish_ok);
    ck_assert_int_eq(s.wrong_thread, 0);
    /* Each stored, in order, the finish hook's message last. */
    char body[16];
    for (int i = 1; i <= 20; i++) {
        ck_assert(stored_at((uint64_t)i, body, sizeof(body)));
        ck_assert_int_eq(atoi(body), i);
    }
    ck_assert(stored_at(21, body, sizeof(body)));
    ck_assert_str_eq(body, "f");
}
END_TEST

START_TEST(reconnects_after_nats_restarts)
{
    static state_t s;
    ms_jsworker_t *w = NULL;
    ck_assert_int_eq(make(&s, &w, NULL), MS_OK);
    job_t *res[2];
    submit(w, 0);
    ck_assert_int_eq(take_results(w, res, 1, 20000), 1);
    ck_assert_int_eq(res[0]->status, NATS_OK);
    free(res[0]);

    natsConnection *nc = ms_jsworker_conn(w);
    cluster_kill_nats(&cl, 0);
    long long end = now_ms() + 10000;
    while (natsConnection_Status(nc) == NATS_CONN_STATUS_CONNECTED && now_ms() < end)
        pause_ms(10);
    ck_assert_int_ne(natsConnection_Status(nc), NATS_CONN_STATUS_CONNECTED);
    /* Queued while NATS is down; it retries its store, as offline.c's stores do. */
    job_t *j = calloc(1, sizeof(*j));
    ck_assert_ptr_nonnull(j);
    j->n = 2;
    j->retry_ms = 30000;
    ms_jsworker_submit(w, &j->link);
    ck_assert_int_eq(cluster_restart_nats(&cl, 0, 0), 0);
    ck_assert_int_eq(take_results(w, res, 1, 40000), 1);
    ck_assert_int_eq(res[0]->n, 2);
    ck_assert_int_eq(res[0]->status, NATS_OK);
    ck_assert_int_eq(natsConnection_Status(nc), NATS_CONN_STATUS_CONNECTED);
    natsStatistics *st = NULL;
    uint64_t reconnects = 0;
    ck_assert_int_eq(natsStatistics_Create(&st), NATS_OK);
    ck_assert_int_eq(natsConnection_GetStats(nc, st), NATS_OK);
    natsStatistics_GetCounts(st, NULL, NULL, NULL, NULL, &reconnects);
    natsStatistics_Destroy(st);
    ck_assert_uint_ge(reconnects, 1);
    char body[16];
    ck_assert(stored_at(res[0]->seq, body, sizeof(body)));
    ck_assert_str_eq(body, "2");
    free(res[0]);
    ms_jsworker_destroy(w);
    ck_assert_int_eq(s.wrong_thread, 0);
}
END_TEST

/* A nats-server that wants a user and password. */
static char conf_dir[64] = "", conf[128], password[64];

static void auth_up(void)
{
    snprintf(conf_dir, sizeof(conf_dir), "/tmp/meshsig-jsw-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(conf_dir));
    snprintf(conf, sizeof(conf), "%s/auth.conf", conf_dir);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    snprintf(password, sizeof(password), "p%lx%lx", (long)ts.tv_nsec, (long)getpid());
    FILE *f = fopen(conf, "w");
    ck_assert_ptr_nonnull(f);
    fprintf(f, "authorization { user: jsw, password: %s }\n", password);
    fclose(f);
    ck_assert_int_eq(cluster_start_nats_only(&cl, conf), 0);
}

static void auth_down(void)
{
    cluster_stop(&cl);
    unlink(conf);
    rmdir(conf_dir);
}

/* Refused credentials are not tried: create would block, retrying, as the coordinator's start does
 * while NATS refuses it. */
START_TEST(uses_the_credentials)
{
    static state_t s;
    ms_jsworker_t *w = NULL;
    ms_nats_auth_t right = {.user = "jsw", .password = password};
    ck_assert_int_eq(make(&s, &w, &right), MS_OK);
    submit(w, 0);
    job_t *res[1];
    ck_assert_int_eq(take_results(w, res, 1, 20000), 1);
    ck_assert_int_eq(res[0]->status, NATS_OK);
    free(res[0]);
    ms_jsworker_destroy(w);
}
END_TEST

int main(void)
{
    Suite *su = suite_create("jsworker");
    TCase *tc = tcase_create("worker");
    tcase_add_checked_fixture(tc, nats_up, nats_down);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, jobs_run_in_order_and_results_come_back);
    tcase_add_test(tc, destroy_runs_the_queued_jobs_then_finish);
    tcase_add_test(tc, reconnects_after_nats_restarts);
    suite_add_tcase(su, tc);
    TCase *ta = tcase_create("auth");
    tcase_add_checked_fixture(ta, auth_up, auth_down);
    tcase_set_timeout(ta, 60);
    tcase_add_test(ta, uses_the_credentials);
    suite_add_tcase(su, ta);
    return run_suite(su);
}
