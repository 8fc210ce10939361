/* SPDX-License-Identifier: Apache-2.0 */
/* Streams: ordered byte streams between two peers with credit-based flow control; the
 * coordinator forwards and counts, and closes a stream when either end leaves. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define ERR(code) MESHSIG__V1__ERROR_CODE__##code
#define MAX_CREDIT (1ull << 40) /* bytes one side may be granted and not yet sent */

/* ns->mods->streams: a uthash of these by key. */
typedef struct ms_stream {
    char *key; /* "<opener>/<streamId>" */
    char *opener, *receiver;
    uint64_t credit_to_receiver; /* bytes the opener may still send */
    uint64_t credit_to_opener;   /* bytes the receiver may still send */
    UT_hash_handle hh;
} ms_stream_t;

static void stream_free(ms_ns_t *ns, ms_stream_t *s)
{
    HASH_DEL(ns->mods->streams, s);
    free(s->key);
    free(s->opener);
    free(s->receiver);
    free(s);
}

/* A stream ends while its namespace lives: its opener has one fewer open, its receiver one
 * fewer coming in. */
static void stream_end(ms_ns_t *ns, ms_stream_t *s)
{
    ms_member_t *opener = ms_ns_member(ns, s->opener), *receiver = ms_ns_member(ns, s->receiver);
    if (opener && opener->n_streams)
        opener->n_streams--;
    if (receiver && receiver->rare && receiver->rare->n_streams_in)
        receiver->rare->n_streams_in--;
    stream_free(ns, s);
}

/* The stream sid names for member m, and whether m opened it. */
static ms_stream_t *stream_resolve(ms_ns_t *ns, const ms_member_t *m, const char *sid,
                                   int *is_opener)
{
    char key[512];
    snprintf(key, sizeof(key), "%s/%s", m->id, sid);
    ms_stream_t *s;
    HASH_FIND_STR(ms_ns_mods(ns)->streams, key, s);
    if (s && !strcmp(s->opener, m->id)) {
        *is_opener = 1;
        return s;
    }
    HASH_FIND_STR(ms_ns_mods(ns)->streams, sid, s);
    if (s && !strcmp(s->receiver, m->id)) {
        *is_opener = 0;
        return s;
    }
    return NULL;
}

/* Sends st to the opener of s (to_opener) or to its receiver. */
static void stream_send(ms_coord_t *c, ms_ns_t *ns, ms_stream_t *s, int to_opener,
                        Meshsig__V1__Stream *st)
{
    ms_member_t *to = ms_ns_member(ns, to_opener ? s->opener : s->receiver);
    if (!to)
        return;
    /* The opener knows its own id; the receiver knows "<opener>/<id>". */
    st->stream_id = to_opener ? s->key + strlen(s->opener) + 1 : s->key;
    Meshsig__V1__ServerMessage sm = MESHSIG__V1__SERVER_MESSAGE__INIT;
    sm.msg_case = MESHSIG__V1__SERVER_MESSAGE__MSG_STREAM;
    sm.stream = st;
    ms_deliver(c, ns, to, &sm);
}

void ms_stream_handle(ms_coord_t *c, ms_ns_t *ns, ms_member_t *from, const char *cid,
                      Meshsig__V1__Stream *st)
{
    if (!ms_msg_name_ok(st->stream_id)) {
        ms_member_error(c, ns, from, cid, ERR(BAD_REQUEST), "streamId is 1 to 128 bytes");
        return;
    }
    if (st->op_case == MESHSIG__V1__STREAM__OP_OPEN) {
        if (!*st->open->to) {
            ms_member_error(c, ns, from, cid, ERR(BAD_REQUEST), "stream.open.to is required");
            return;
        }
        char key[512];
        snprintf(key, sizeof(key), "%s/%s", from->id, st->stream_id);
        ms_stream_t *s;
        HASH_FIND_STR(ms_ns_mods(ns)->streams, key, s);
        if (s) {
            ms_member_error(c, ns, from, cid, ERR(BAD_REQUEST), "stream %s is already open",
                            st->stream_id);
            return;
        }
        ms_member_t *to = ms_ns_member(ns, st->open->to);
        if (!to || to == from) {
            /* Every end of a stream is a close keyed by its streamId, whatever the cause:
             * the open is answered, then the stream closes with PEER_NOT_FOUND. */
            ms_send_ok(c, ns, from, cid);
            Meshsig__V1__Error e = MESHSIG__V1__ERROR__INIT;
            char text[256];
            snprintf(text, sizeof(text), "%s is not in namespace %s", st->open->to, ns->name);
            e.code = ERR(PEER_NOT_FOUND);
            e.message = text;
            Meshsig__V1__StreamClose cl = MESHSIG__V1__STREAM_CLOSE__INIT;
            cl.abort = 1;
            cl.error = &e;
            Meshsig__V1__Stream out = MESHSIG__V1__STREAM__INIT;
            out.stream_id = st->stream_id;
            out.op_case = MESHSIG__V1__STREAM__OP_CLOSE;
            out.close = &cl;
            Meshsig__V1__ServerMessage sm = MESHSIG__V1__SERVER_MESSAGE__INIT;
            sm.msg_case = MESHSIG__V1__SERVER_MESSAGE__MSG_STREAM;
            sm.stream = &out;
            ms_deliver(c, ns, from, &sm);
            return;
        }
        long cap = c->cfg->max_streams;
        if (cap > 0 && from->n_streams >= (uint64_t)cap) {
            c->msg.n_cap_streams++;
            ms_member_error(c, ns, from, cid, ERR(LIMIT_REACHED),
                            "at most %ld open streams per peer (--max-streams); close one first",
                            cap);
            return;
        }
        ms_ns_mods_t *mods = ms_ns_mods_get(ns);
        ms_member_rare_t *to_rare = ms_member_rare_get(to);
        s = mods && to_rare ? calloc(1, sizeof(*s)) : NULL;
        if (!s || !(s->key = strdup(key)) || !(s->opener = strdup(from->id)) ||
            !(s->receiver = strdup(to->id))) {
            if (s) {
                free(s->key);
                free(s->opener);
            }
            free(s);
            ms_member_error(c, ns, from, cid, ERR(INTERNAL), "out of memory");
            return;
        }
        HASH_ADD_KEYPTR(hh, mods->streams, s->key, strlen(s->key), s);
        from->n_streams++;
        to_rare->n_streams_in++;
        Meshsig__V1__StreamOpen op = *st->open;
        op.from = from->id;
        op.to = to->id;
        Meshsig__V1__Stream out = MESHSIG__V1__STREAM__INIT;
        out.op_case = MESHSIG__V1__STREAM__OP_OPEN;
        out.open = &op;
        stream_send(c, ns, s, 0, &out);
        ms_send_ok_result(c, ns, from, cid, 1, 0);
        return;
    }
    int is_opener = 0;
    ms_stream_t *s = stream_resolve(ns, from, st->stream_id, &is_opener);
    if (!s) {
        ms_member_error(c, ns, from, cid, ERR(STREAM_NOT_FOUND), "no open stream %s",
                        st->stream_id);
        return;
    }
    Meshsig__V1__Stream out = *st;
    switch (st->op_case) {
    case MESHSIG__V1__STREAM__OP_DATA: {
        uint64_t *credit = is_opener ? &s->credit_to_receiver : &s->credit_to_opener;
        size_t len = st->data->data.len;
        if (len > *credit) {
            /* The sender ignored flow control: nothing is buffered on its behalf. */
            ms_member_error(c, ns, from, cid, ERR(NO_CREDIT),
                            "%zu bytes sent with %llu bytes of credit on stream %s", len,
                            (unsigned long long)*credit, st->stream_id);
            return;
        }
        *credit -= len;
        c->msg.n_stream_bytes += len;
        stream_send(c, ns, s, !is_opener, &out);
        ms_send_ok(c, ns, from, cid);
        return;
    }
    case MESHSIG__V1__STREAM__OP_CREDIT: {
        /* from grants the other side more bytes towards itself. */
        uint64_t *credit = is_opener ? &s->credit_to_opener : &s->credit_to_receiver;
        if (*credit + st->credit->bytes > MAX_CREDIT) {
            ms_member_error(c, ns, from, cid, ERR(BAD_REQUEST),
                            "stream %s: credit outstanding would exceed the limit of %llu bytes",
                            st->stream_id, (unsigned long long)MAX_CREDIT);
            return;
        }
        *credit += st->credit->bytes;
        stream_send(c, ns, s, !is_opener, &out);
        ms_send_ok(c, ns, from, cid);
        return;
    }
    case MESHSIG__V1__STREAM__OP_CLOSE:
        stream_send(c, ns, s, !is_opener, &out);
        stream_end(ns, s);
        ms_send_ok(c, ns, from, cid);
        return;
    default:
        ms_member_error(c, ns, from, cid, ERR(BAD_REQUEST),
                        "stream takes open, data, credit or close");
        return;
    }
}

/* Nothing to walk for a member at neither end of a stream (most); the streams of one that is
 * go in the order they were opened. */
static void member_gone(ms_coord_t *c, ms_ns_t *ns, ms_member_t *m)
{
    if (!m->n_streams && !ms_member_rare(m)->n_streams_in)
        return;
    ms_stream_t *st, *sttmp;
    HASH_ITER(hh, ms_ns_mods(ns)->streams, st, sttmp)
    {
        int opener = !strcmp(st->opener, m->id), receiver = !strcmp(st->receiver, m->id);
        if (!opener && !receiver)
            continue;
        Meshsig__V1__Error e = MESHSIG__V1__ERROR__INIT;
        e.code = ERR(PEER_LEFT);
        e.message = "the other end left";
        Meshsig__V1__StreamClose cl = MESHSIG__V1__STREAM_CLOSE__INIT;
        cl.abort = 1;
        cl.error = &e;
        Meshsig__V1__Stream out = MESHSIG__V1__STREAM__INIT;
        out.op_case = MESHSIG__V1__STREAM__OP_CLOSE;
        out.close = &cl;
        stream_send(c, ns, st, receiver, &out);
        stream_end(ns, st);
        if (!m->n_streams && !ms_member_rare(m)->n_streams_in)
            break; /* its last */
    }
}

static void cleanup(ms_ns_t *ns)
{
    ms_stream_t *st, *sttmp;
    HASH_ITER(hh, ms_ns_mods(ns)->streams, st, sttmp)
    stream_free(ns, st);
}

const ms_ns_hooks_t ms_stream_hooks = {
    .name = "stream", .cleanup = cleanup, .member_gone = member_gone};
