/* SPDX-License-Identifier: Apache-2.0 */
/* One client WebSocket's bounded outbound queue and buffers. */
#include <stdlib.h>
#include <string.h>

#include "intern.h"
#include "session.h"

int ms_session_queue(ms_session_t *s, const void *data, size_t len, int binary, size_t max_queue)
{
    if (s->queued + len > max_queue)
        return -1;
    ms_outmsg_t *m = malloc(sizeof(*m) + LWS_PRE + len);
    if (!m)
        return -1;
    m->len = len;
    m->binary = (uint8_t)binary;
    m->receipt = 0;
    memcpy(m->buf + LWS_PRE, data, len);
    if (s->tail) { /* after the tail, before the head */
        m->next = s->tail->next;
        s->tail->next = m;
    } else {
        m->next = m;
    }
    s->tail = m;
    s->queued += len;
    return 0;
}

/* RFC 6455 §5.2 header of an unmasked, final frame (server to client). */
static size_t frame_header(unsigned char *h, size_t len, int binary)
{
    h[0] = (unsigned char)(0x80 | (binary ? 0x2 : 0x1));
    if (len < 126) {
        h[1] = (unsigned char)len;
        return 2;
    }
    if (len <= 0xffff) {
        h[1] = 126;
        h[2] = (unsigned char)(len >> 8);
        h[3] = (unsigned char)len;
        return 4;
    }
    h[1] = 127;
    for (int i = 0; i < 8; i++)
        h[2 + i] = (unsigned char)((uint64_t)len >> (56 - 8 * i));
    return 10;
}

ssize_t ms_session_take_frames(ms_session_t *s, unsigned char **buf, size_t *cap, size_t limit,
                               unsigned *receipts)
{
    size_t total = 0;
    *receipts = 0;
    while (s->tail) {
        ms_outmsg_t *m = s->tail->next;
        size_t need = 10 + m->len;
        if (total && total + need > limit)
            break;
        if (LWS_PRE + total + need > *cap) {
            size_t ncap = *cap ? *cap : 4096;
            while (ncap < LWS_PRE + total + need)
                ncap *= 2;
            unsigned char *nb = realloc(*buf, ncap);
            if (!nb)
                return -1;
            *buf = nb;
            *cap = ncap;
        }
        unsigned char *p = *buf + LWS_PRE + total;
        size_t h = frame_header(p, m->len, m->binary);
        memcpy(p + h, m->buf + LWS_PRE, m->len);
        total += h + m->len;
        *receipts += m->receipt;
        if (m == s->tail)
            s->tail = NULL;
        else
            s->tail->next = m->next;
        s->queued -= m->len;
        free(m);
    }
    return (ssize_t)total;
}

void ms_session_cleanup(ms_session_t *s)
{
    if (s->tail) {
        ms_outmsg_t *m = s->tail->next;
        s->tail->next = NULL; /* the queue ends at the tail */
        while (m) {
            ms_outmsg_t *n = m->next;
            free(m);
            m = n;
        }
    }
    s->tail = NULL;
    s->queued = 0;
    ms_intern_release(s->ns);
    ms_session_set_peer(s, NULL);
    free(s->join);
    s->join = NULL;
    free(s->rx);
    ms_session_forget_peer(s);
    s->ns = NULL;
    s->rx = NULL;
}

int ms_session_set_peer(ms_session_t *s, const char *peer)
{
    if (s->peer_id != s->peer_small)
        free(s->peer_id);
    s->peer_id = NULL;
    if (!peer)
        return 0;
    size_t len = strlen(peer);
    if (len <= MS_SESSION_PEER_SMALL) {
        memcpy(s->peer_small, peer, len + 1);
        s->peer_id = s->peer_small;
        return 0;
    }
    s->peer_id = strdup(peer);
    return s->peer_id ? 0 : -1;
}

void ms_session_join_done(ms_session_t *s)
{
    free(s->join);
    s->join = NULL;
}

ms_session_ext_t *ms_session_ext(ms_session_t *s)
{
    if (!s->ext)
        s->ext = calloc(1, sizeof(*s->ext));
    return s->ext;
}

void ms_session_forget_peer(ms_session_t *s)
{
    ms_strset_clear(&s->neighbours);
    ms_strset_clear(&s->owner_routed);
    ms_strset_clear(&s->pairs);
    s->signal_any = s->owner_routed_all = 0;
    ms_session_ext_t *x = s->ext;
    if (x) {
        ms_strset_clear(&x->rooms);
        ms_strset_clear(&x->services);
        ms_strset_clear(&x->subscriptions);
        free(x->parent);
        free(x->hello_pos);
        free(x->hello_meta);
        free(x);
        s->ext = NULL;
    }
}
