/* SPDX-License-Identifier: Apache-2.0 */
/* A loopback TCP proxy whose connections a test can cut (cutproxy.h). */
#include "cutproxy.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_PAIRS 16

struct cutproxy {
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cond;
    int lfd, port, target;
    int cut, stop;
    int cut_done;                   /* the thread closed everything after the last cut request */
    int a[MAX_PAIRS], b[MAX_PAIRS]; /* client side, target side; -1: free */
    int n;
    /* cutproxy_cut_named: "name":"<name>" as the client's CONNECT has it; "" when none is cut. */
    char cut_name[96];
    long named_closed;           /* connections closed at their CONNECT for naming cut_name */
    char hello[MAX_PAIRS][1024]; /* what each client sent first (its CONNECT), NUL-terminated */
    size_t hello_len[MAX_PAIRS];
};

static void close_pair(cutproxy_t *p, int i)
{
    close(p->a[i]);
    close(p->b[i]);
    p->a[i] = p->b[i] = -1;
    p->hello_len[i] = 0;
    p->hello[i][0] = '\0';
    p->n--;
}

/* Whether pair i's client named itself as cut_name says. */
static int named_cut(const cutproxy_t *p, int i)
{
    return p->cut_name[0] && strstr(p->hello[i], p->cut_name);
}

/* Copies what is readable on pair i's side from (its client's when from_client) to the other;
 * 0 when the pair is done (or its client's name is cut). Loopback writes of a few KiB are not
 * expected to block for long, so they are blocking. */
static int pump(cutproxy_t *p, int i, int from_client)
{
    int from = from_client ? p->a[i] : p->b[i], to = from_client ? p->b[i] : p->a[i];
    char buf[16384];
    ssize_t r = read(from, buf, sizeof(buf));
    if (r <= 0)
        return r < 0 && (errno == EINTR || errno == EAGAIN) ? 1 : 0;
    size_t have = p->hello_len[i], cap = sizeof(p->hello[i]) - 1;
    if (from_client && have < cap) {
        size_t k = (size_t)r < cap - have ? (size_t)r : cap - have;
        memcpy(p->hello[i] + have, buf, k);
        p->hello_len[i] = have + k;
        p->hello[i][have + k] = '\0';
    }
    if (named_cut(p, i)) {
        p->named_closed++;
        return 0; /* before its CONNECT reaches the server */
    }
    for (ssize_t off = 0; off < r;) {
        ssize_t w = write(to, buf + off, (size_t)(r - off));
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return 0;
        off += w;
    }
    return 1;
}

static int connect_target(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0)
        return fd;
    if (fd >= 0)
        close(fd);
    return -1;
}

static void *run(void *arg)
{
    cutproxy_t *p = arg;
    for (;;) {
        pthread_mutex_lock(&p->mu);
        int stop = p->stop, cut = p->cut;
        if (!p->cut_done) {
            for (int i = 0; i < MAX_PAIRS; i++)
                if (p->a[i] >= 0 && (cut || named_cut(p, i)))
                    close_pair(p, i);
            p->cut_done = 1;
            pthread_cond_broadcast(&p->cond);
        }
        pthread_mutex_unlock(&p->mu);
        if (stop)
            break;
        struct pollfd pf[1 + 2 * MAX_PAIRS];
        int idx[1 + 2 * MAX_PAIRS], nf = 0;
        pf[nf].fd = p->lfd;
        pf[nf].events = POLLIN;
        idx[nf++] = -1;
        for (int i = 0; i < MAX_PAIRS; i++) {
            if (p->a[i] < 0)
                continue;
            pf[nf] = (struct pollfd){.fd = p->a[i], .events = POLLIN};
            idx[nf++] = i;
            pf[nf] = (struct pollfd){.fd = p->b[i], .events = POLLIN};
            idx[nf++] = i;
        }
        if (poll(pf, (nfds_t)nf, 20) <= 0)
            continue;
        pthread_mutex_lock(&p->mu);
        cut = p->cut;
        if (pf[0].revents & POLLIN) {
            int c = accept4(p->lfd, NULL, NULL, SOCK_CLOEXEC);
            int t = c >= 0 && !cut && p->n < MAX_PAIRS ? connect_target(p->target) : -1;
            if (t < 0) {
                if (c >= 0)
                    close(c);
            } else {
                for (int i = 0; i < MAX_PAIRS; i++)
                    if (p->a[i] < 0) {
                        p->a[i] = c;
                        p->b[i] = t;
                        p->n++;
                        break;
                    }
            }
        }
        for (int k = 1; k < nf && !cut; k++) {
            int i = idx[k];
            if (!pf[k].revents || p->a[i] < 0)
                continue;
            if (!pump(p, i, pf[k].fd == p->a[i]))
                close_pair(p, i);
        }
        pthread_mutex_unlock(&p->mu);
    }
    return NULL;
}

cutproxy_t *cutproxy_start(int target_port)
{
    cutproxy_t *p = calloc(1, sizeof(*p));
    if (!p)
        return NULL;
    p->target = target_port;
    for (int i = 0; i < MAX_PAIRS; i++)
        p->a[i] = p->b[i] = -1;
    struct sockaddr_in sa = {.sin_family = AF_INET};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t sl = sizeof(sa);
    int one = 1;
    if ((p->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0 ||
        setsockopt(p->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) ||
        bind(p->lfd, (struct sockaddr *)&sa, sizeof(sa)) || listen(p->lfd, 16) ||
        getsockname(p->lfd, (struct sockaddr *)&sa, &sl))
        goto fail;
    p->port = ntohs(sa.sin_port);
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cond, NULL);
    if (pthread_create(&p->thread, NULL, run, p) == 0)
        return p;
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cond);
fail:
    if (p->lfd >= 0)
        close(p->lfd);
    free(p);
    return NULL;
}

int cutproxy_port(const cutproxy_t *p)
{
    return p->port;
}

/* Waits (mu held) until the thread has closed what the last request cut. */
static void wait_cut(cutproxy_t *p)
{
    /* The thread closes within one poll (20 ms); bounded all the same. */
    for (int n = 0; !p->cut_done && n < 500; n++) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 10 * 1000 * 1000;
        if (ts.tv_nsec >= 1000000000) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000;
        }
        pthread_cond_timedwait(&p->cond, &p->mu, &ts);
    }
}

void cutproxy_cut(cutproxy_t *p, int cut)
{
    pthread_mutex_lock(&p->mu);
    p->cut = cut != 0;
    p->cut_done = 0;
    if (cut)
        wait_cut(p);
    pthread_mutex_unlock(&p->mu);
}

void cutproxy_cut_named(cutproxy_t *p, const char *name, int cut)
{
    pthread_mutex_lock(&p->mu);
    if (cut)
        snprintf(p->cut_name, sizeof(p->cut_name), "\"name\":\"%s\"", name);
    else
        p->cut_name[0] = '\0';
    p->cut_done = 0;
    if (cut)
        wait_cut(p);
    pthread_mutex_unlock(&p->mu);
}

int cutproxy_connections(cutproxy_t *p)
{
    pthread_mutex_lock(&p->mu);
    int n = p->n;
    pthread_mutex_unlock(&p->mu);
    return n;
}

long cutproxy_named_closed(cutproxy_t *p)
{
    pthread_mutex_lock(&p->mu);
    long n = p->named_closed;
    pthread_mutex_unlock(&p->mu);
    return n;
}

void cutproxy_stop(cutproxy_t *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->mu);
    p->stop = 1;
    pthread_mutex_unlock(&p->mu);
    pthread_join(p->thread, NULL);
    for (int i = 0; i < MAX_PAIRS; i++)
        if (p->a[i] >= 0)
            close_pair(p, i);
    close(p->lfd);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cond);
    free(p);
}
