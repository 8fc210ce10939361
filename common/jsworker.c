/* SPDX-License-Identifier: Apache-2.0 */
/* The JetStream worker: own NATS connection, one thread, ordered jobs, results back (jsworker.h).
 */
#include "jsworker.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

#define MAX_SERVERS 32

struct ms_jsworker {
    ms_jsworker_config_t cfg; /* read-only once created */
    natsConnection *nc;
    jsCtx *js;
    pthread_t thread;
    int started;
    pthread_mutex_t lock;               /* guards the two queues and stop */
    pthread_cond_t cond;                /* jobs arrived, or stop */
    uint64_t reconnects;                /* cnats' threads: reconnections (atomic) */
    unsigned seed;                      /* cnats' reconnect thread: the waits' jitter */
    pthread_mutex_t kick_lock;          /* guards kicked and closing */
    pthread_cond_t kick_cond;           /* kicked or closing (CLOCK_MONOTONIC) */
    int kicked;                         /* ms_jsworker_kick since the last wait ended */
    int closing;                        /* destroy: no wait any more */
    ms_jsjob_t *jobs, *jobs_tail;       /* to the worker */
    ms_jsjob_t *results, *results_tail; /* back to the loop */
    int stop;
};

/* Appends the chain first..(next == NULL) to a queue. Lock held. */
static void append(ms_jsjob_t **head, ms_jsjob_t **tail, ms_jsjob_t *first)
{
    ms_jsjob_t *last = first;
    while (last->next)
        last = last->next;
    if (*tail)
        (*tail)->next = first;
    else
        *head = first;
    *tail = last;
}

static void free_chain(ms_jsjob_t *j, void (*free_fn)(ms_jsjob_t *))
{
    for (ms_jsjob_t *n; j; j = n) {
        n = j->next;
        if (free_fn)
            free_fn(j);
        else
            free(j);
    }
}

static void *worker(void *arg)
{
    ms_jsworker_t *w = arg;
    if (w->cfg.start)
        w->cfg.start(w, w->cfg.ud);
    for (;;) {
        pthread_mutex_lock(&w->lock);
        while (!w->jobs && !w->stop)
            pthread_cond_wait(&w->cond, &w->lock);
        ms_jsjob_t *j = w->jobs;
        if (!j) { /* stopping and nothing left */
            pthread_mutex_unlock(&w->lock);
            break;
        }
        if (!(w->jobs = j->next))
            w->jobs_tail = NULL;
        int stopping = w->stop;
        pthread_mutex_unlock(&w->lock);
        j->next = NULL;
        w->cfg.run(w, j, stopping, w->cfg.ud);
    }
    if (w->cfg.finish)
        w->cfg.finish(w, w->cfg.ud);
    return NULL;
}

/* cnats' threads: the worker's link to NATS went or came back (which server it uses now). */
static void on_disconnected(natsConnection *nc, void *closure)
{
    const ms_jsworker_config_t *cfg = &((ms_jsworker_t *)closure)->cfg;
    if (natsConnection_IsClosed(nc))
        return; /* closed on purpose (destroy) */
    ms_warn("%s: NATS connection lost; reconnecting", cfg->name);
}

static void on_reconnected(natsConnection *nc, void *closure)
{
    ms_jsworker_t *w = closure;
    const ms_jsworker_config_t *cfg = &w->cfg;
    __atomic_add_fetch(&w->reconnects, 1, __ATOMIC_RELEASE);
    char url[256] = "";
    natsConnection_GetConnectedUrl(nc, url, sizeof(url));
    ms_info("%s: NATS reconnected to %s", cfg->name, url);
}

int64_t ms_jsworker_reconnect_delay(int base_ms, int max_ms, int attempts, uint32_t rnd)
{
    int64_t base = base_ms > 0 ? base_ms : 1;
    int64_t fast = MS_JSWORKER_RECONNECT_FAST_MS / base; /* rounds at cnats' own wait */
    if (attempts <= fast || base >= max_ms)
        return base + (int64_t)(rnd % 100); /* cnats' wait and its default jitter */
    int64_t d = 2 * base;
    for (int64_t i = fast + 1; i < attempts && d < max_ms; i++)
        d += d / 2;
    if (d > max_ms)
        d = max_ms;
    return d / 2 + (int64_t)(rnd % (uint32_t)(d / 2 + 1));
}

/* cnats' reconnect thread, before each round of the servers (with the connection unlocked):
 * waits here, where ms_jsworker_kick can end the wait, and tells cnats to wait no more. */
static int64_t reconnect_delay(natsConnection *nc, int attempts, void *closure)
{
    ms_jsworker_t *w = closure;
    (void)nc;
    int64_t ms = ms_jsworker_reconnect_delay(w->cfg.reconnect_wait_ms, w->cfg.reconnect_max_ms,
                                             attempts, (uint32_t)rand_r(&w->seed));
    struct timespec end;
    clock_gettime(CLOCK_MONOTONIC, &end);
    end.tv_sec += (time_t)(ms / 1000);
    end.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (end.tv_nsec >= 1000000000L) {
        end.tv_sec++;
        end.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&w->kick_lock);
    while (!w->kicked && !w->closing &&
           pthread_cond_timedwait(&w->kick_cond, &w->kick_lock, &end) == 0)
        ;
    w->kicked = 0;
    pthread_mutex_unlock(&w->kick_lock);
    return 0; /* cnats tries at once */
}

void ms_jsworker_kick(ms_jsworker_t *w)
{
    if (!w)
        return;
    pthread_mutex_lock(&w->kick_lock);
    w->kicked = 1;
    pthread_cond_signal(&w->kick_cond);
    pthread_mutex_unlock(&w->kick_lock);
}

/* The connection's options: the same for every JetStream user, but for its name and
 * reconnect wait. */
static ms_err_t options(ms_jsworker_t *w, natsOptions **out)
{
    ms_jsworker_config_t *cfg = &w->cfg;
    natsOptions *opts = NULL;
    char *urls = strdup(cfg->nats_urls ? cfg->nats_urls : "");
    ms_err_t err = MS_ERR_NOMEM;
    if (!urls)
        goto fail;
    err = MS_ERR_BUS;
    if (natsOptions_Create(&opts) != NATS_OK)
        goto fail;
    const char *list[MAX_SERVERS];
    int n = 0;
    for (char *save = NULL, *t = strtok_r(urls, ",", &save); t && n < MAX_SERVERS;
         t = strtok_r(NULL, ",", &save))
        list[n++] = t;
    natsOptions_SetServers(opts, list, n); /* copies the strings */
    if ((err = ms_nats_auth_apply(cfg->auth, opts)) != MS_OK)
        goto fail;
    err = MS_ERR_BUS;
    natsOptions_SetName(opts, cfg->name);
    natsOptions_SetMaxReconnect(opts, -1);
    natsOptions_SetReconnectWait(opts, cfg->reconnect_wait_ms);
    /* A link cut for long tried again every reconnect_wait_ms (100 ms for the leases: ten TCP
     * connects a second, each a CONNECT and INFO when a server answers but the link is cut
     * further on); the wait grows instead, to reconnect_max_ms. */
    if (cfg->reconnect_max_ms > 0)
        natsOptions_SetCustomReconnectDelay(opts, reconnect_delay, w);
    natsOptions_SetRetryOnFailedConnect(opts, true, NULL, NULL);
    /* cnats 3.4 takes 0 as it is (the default of 8 MB is set when the options are made, not
     * here, whatever nats.h says): a publish while reconnecting finds the buffer full and fails.
     * tests/integration/test_lease_replay.c checks it against the installed library. */
    if (cfg->no_reconnect_buffer)
        natsOptions_SetReconnectBufSize(opts, 0);
    /* A link to a node that a partition cut off must be given up in seconds
     * (stale after 4-6 s; cnats' default is minutes of 2-minute pings), or
     * renewals and stores fail although the rest of the cluster is reachable. */
    natsOptions_SetPingInterval(opts, 2000);
    natsOptions_SetMaxPingsOut(opts, 2);
    natsOptions_SetDisconnectedCB(opts, on_disconnected, w);
    natsOptions_SetReconnectedCB(opts, on_reconnected, w);
    free(urls);
    *out = opts;
    return MS_OK;
fail:
    natsOptions_Destroy(opts);
    free(urls);
    return err;
}

ms_err_t ms_jsworker_create(const ms_jsworker_config_t *cfg, ms_jsworker_t **out)
{
    *out = NULL;
    ms_jsworker_t *w = calloc(1, sizeof(*w));
    if (!w)
        return MS_ERR_NOMEM;
    w->cfg = *cfg;
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    w->seed = (unsigned)(uintptr_t)w ^ (unsigned)getpid() ^ (unsigned)now.tv_nsec;
    pthread_mutex_init(&w->lock, NULL);
    pthread_cond_init(&w->cond, NULL);
    pthread_mutex_init(&w->kick_lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&w->kick_cond, &ca);
    pthread_condattr_destroy(&ca);
    natsOptions *opts = NULL;
    ms_err_t err = options(w, &opts);
    if (err != MS_OK)
        goto fail;
    err = MS_ERR_BUS;
    /* One attempt first, to say why it failed: the retrying connect below
     * blocks until a server accepts it (the coordinator's start waits on it),
     * and a refused login would otherwise look like a silent hang. */
    natsOptions_SetRetryOnFailedConnect(opts, false, NULL, NULL);
    natsStatus s = natsConnection_Connect(&w->nc, opts);
    if (s != NATS_OK) {
        char shown[512];
        natsStatus why = NATS_OK;
        const char *text = nats_GetLastError(&why);
        const char *at = text && text[0] == '(' ? strstr(text, "): ") : NULL;
        if (at)
            text = at + 3; /* past cnats' "(conn.c:1905): " */
        ms_nats_urls_redact(cfg->nats_urls ? cfg->nats_urls : "", shown, sizeof(shown));
        ms_warn("%s: NATS at %s: %s; retrying until it accepts%s", cfg->name, shown,
                text && *text ? text : natsStatus_GetText(s),
                s == NATS_CONNECTION_AUTH_FAILED || (text && strstr(text, "uthoriz"))
                    ? " (check --nats-user/--nats-password/--nats-creds)"
                    : "");
        natsOptions_SetRetryOnFailedConnect(opts, true, NULL, NULL);
        s = natsConnection_Connect(&w->nc, opts);
    }
    natsOptions_Destroy(opts);
    if (s != NATS_OK && s != NATS_NOT_YET_CONNECTED)
        goto fail;
    jsOptions jo;
    jsOptions_Init(&jo);
    jo.Wait = cfg->js_wait_ms;
    if (natsConnection_JetStream(&w->js, w->nc, cfg->js_wait_ms > 0 ? &jo : NULL) != NATS_OK)
        goto fail;
    *out = w; /* before the thread starts: start() may reach the worker through it */
    if (pthread_create(&w->thread, NULL, worker, w) != 0) {
        *out = NULL;
        goto fail;
    }
    w->started = 1;
    return MS_OK;
fail:
    ms_jsworker_destroy(w);
    return err;
}

void ms_jsworker_destroy(ms_jsworker_t *w)
{
    if (!w)
        return;
    if (w->started) {
        pthread_mutex_lock(&w->lock);
        w->stop = 1;
        pthread_cond_signal(&w->cond);
        pthread_mutex_unlock(&w->lock);
        pthread_join(w->thread, NULL);
    }
    free_chain(w->jobs, w->cfg.free_job); /* only when the thread never started */
    free_chain(w->results, w->cfg.free_result);
    jsCtx_Destroy(w->js);
    /* A reconnect waiting in reconnect_delay ends now: the close joins its thread. */
    pthread_mutex_lock(&w->kick_lock);
    w->closing = 1;
    pthread_cond_broadcast(&w->kick_cond);
    pthread_mutex_unlock(&w->kick_lock);
    if (w->nc) {
        natsConnection_Close(w->nc);
        natsConnection_Destroy(w->nc);
    }
    pthread_cond_destroy(&w->cond);
    pthread_mutex_destroy(&w->lock);
    pthread_cond_destroy(&w->kick_cond);
    pthread_mutex_destroy(&w->kick_lock);
    free(w);
}

natsConnection *ms_jsworker_conn(ms_jsworker_t *w)
{
    return w->nc;
}

jsCtx *ms_jsworker_js(ms_jsworker_t *w)
{
    return w->js;
}

void ms_jsworker_submit(ms_jsworker_t *w, ms_jsjob_t *job)
{
    job->next = NULL;
    pthread_mutex_lock(&w->lock);
    append(&w->jobs, &w->jobs_tail, job);
    pthread_cond_signal(&w->cond);
    pthread_mutex_unlock(&w->lock);
}

void ms_jsworker_post(ms_jsworker_t *w, ms_jsjob_t *first)
{
    if (!first)
        return;
    pthread_mutex_lock(&w->lock);
    append(&w->results, &w->results_tail, first);
    pthread_mutex_unlock(&w->lock);
    if (w->cfg.wake)
        w->cfg.wake(w->cfg.wake_ud);
}

ms_jsjob_t *ms_jsworker_take(ms_jsworker_t *w)
{
    pthread_mutex_lock(&w->lock);
    ms_jsjob_t *r = w->results;
    w->results = w->results_tail = NULL;
    pthread_mutex_unlock(&w->lock);
    return r;
}

uint64_t ms_jsworker_reconnects(ms_jsworker_t *w)
{
    return __atomic_load_n(&w->reconnects, __ATOMIC_ACQUIRE);
}

int ms_jsworker_stopping(ms_jsworker_t *w)
{
    pthread_mutex_lock(&w->lock);
    int stop = w->stop;
    pthread_mutex_unlock(&w->lock);
    return stop;
}
