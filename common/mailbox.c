/* SPDX-License-Identifier: Apache-2.0 */
/* Hands NATS messages from cnats threads to the owning thread (two swapping vectors). */
#include <pthread.h>
#include <stdlib.h>

#include "mailbox.h"

struct ms_mailbox {
    pthread_mutex_t lock;
    natsMsg **in; /* guarded by lock */
    size_t n_in, cap_in;
    natsMsg **out; /* owner thread only */
    size_t cap_out;
    size_t dropped; /* guarded by lock */
    ms_mailbox_wake_fn wake;
    void *wake_ud;
};

ms_err_t ms_mailbox_create(ms_mailbox_wake_fn wake, void *ud, ms_mailbox_t **out)
{
    ms_mailbox_t *m = calloc(1, sizeof(*m));
    if (!m)
        return MS_ERR_NOMEM;
    pthread_mutex_init(&m->lock, NULL);
    m->wake = wake;
    m->wake_ud = ud;
    *out = m;
    return MS_OK;
}

void ms_mailbox_destroy(ms_mailbox_t *m)
{
    if (!m)
        return;
    for (size_t i = 0; i < m->n_in; i++)
        natsMsg_Destroy(m->in[i]);
    free(m->in);
    free(m->out);
    pthread_mutex_destroy(&m->lock);
    free(m);
}

void ms_mailbox_push(ms_mailbox_t *m, natsMsg *msg)
{
    int was_empty;
    pthread_mutex_lock(&m->lock);
    if (m->n_in == m->cap_in) {
        size_t ncap = m->cap_in ? m->cap_in * 2 : 64;
        natsMsg **nv = realloc(m->in, ncap * sizeof(*nv));
        if (!nv) {
            m->dropped++;
            pthread_mutex_unlock(&m->lock);
            natsMsg_Destroy(msg);
            return;
        }
        m->in = nv;
        m->cap_in = ncap;
    }
    was_empty = m->n_in == 0;
    m->in[m->n_in++] = msg;
    pthread_mutex_unlock(&m->lock);
    if (was_empty && m->wake)
        m->wake(m->wake_ud);
}

size_t ms_mailbox_drain(ms_mailbox_t *m, ms_mailbox_msg_fn fn, void *ud)
{
    pthread_mutex_lock(&m->lock);
    natsMsg **batch = m->in;
    size_t n = m->n_in, cap = m->cap_in;
    /* Hand the producers the spare vector and keep the full one. */
    m->in = m->out;
    m->cap_in = m->cap_out;
    m->n_in = 0;
    pthread_mutex_unlock(&m->lock);
    for (size_t i = 0; i < n; i++) {
        fn(batch[i], ud);
        natsMsg_Destroy(batch[i]);
    }
    m->out = batch;
    m->cap_out = cap;
    return n;
}

size_t ms_mailbox_dropped(ms_mailbox_t *m)
{
    if (!m)
        return 0;
    pthread_mutex_lock(&m->lock);
    size_t d = m->dropped;
    pthread_mutex_unlock(&m->lock);
    return d;
}
