/* SPDX-License-Identifier: Apache-2.0 */
/* One client WebSocket's bounded outbound queue and buffers. */
#include <stdlib.h>
#include <string.h>

#include "session.h"

int ms_session_queue(ms_session_t *s, const void *data, size_t len, int binary, size_t max_queue)
{
    if (s->queued + len > max_queue)
        return -1;
    ms_outmsg_t *m = malloc(sizeof(*m) + LWS_PRE + len);
    if (!m)
        return -1;
    m->next = NULL;
    m->len = len;
    m->binary = (uint8_t)binary;
    memcpy(m->buf + LWS_PRE, data, len);
    if (s->tail)
        s->tail->next = m;
    else
        s->head = m;
    s->tail = m;
    s->queued += len;
    return 0;
}

void ms_session_cleanup(ms_session_t *s)
{
    ms_outmsg_t *m = s->head;
    while (m) {
        ms_outmsg_t *n = m->next;
        free(m);
        m = n;
    }
    s->head = s->tail = NULL;
    s->queued = 0;
    free(s->ns);
    free(s->peer_id);
    free(s->join_client_id);
    free(s->join_req);
    s->join_req = NULL;
    free(s->rx);
    ms_session_forget_peer(s);
    s->ns = s->peer_id = s->join_client_id = NULL;
    s->rx = NULL;
    s->rx_len = s->rx_cap = 0;
}

void ms_session_forget_peer(ms_session_t *s)
{
    ms_strset_clear(&s->neighbours);
    ms_strset_clear(&s->rooms);
    ms_strset_clear(&s->services);
    ms_strset_clear(&s->subscriptions);
    free(s->parent);
    free(s->hello_pos);
    free(s->hello_meta);
    s->parent = NULL;
    s->hello_pos = s->hello_meta = NULL;
    s->hello_pos_len = s->hello_meta_len = 0;
}
