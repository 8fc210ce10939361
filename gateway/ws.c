/* SPDX-License-Identifier: Apache-2.0 */
/* The lws WebSocket protocol callback and the write path: bounded queue, batched writes.
 *
 * Frames go to the session's bounded queue; at the end of the loop turn
 * (ms_gw_write_flush) all that a session got in the turn (up to MS_GW_WRITE_BATCH
 * bytes) is written in one send. Only what that send could not take waits
 * for LWS_CALLBACK_SERVER_WRITEABLE: asking lws for it on every frame costs
 * two epoll_ctl calls (POLLOUT on, then off) and a loop wakeup per write,
 * more than the write itself. A reader too slow to keep its queue under
 * --max-queue is closed.
 * LWS_CALLBACK_EVENT_WAIT_CANCELLED is where the mailbox from the cnats
 * threads is drained (DESIGN.md §8).
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "codec.h"
#include "jsonscan.h"
#include "internal.h"
#include "rxslab.h"
#include "servermsg.h"
#include "log.h"
#include "wsguard.h"

void ms_gw_session_close(ms_session_t *s, uint16_t code)
{
    if (s->closing)
        return;
    s->closing = 1;
    s->close_code = code;
    lws_callback_on_writable(s->wsi);
}

/* Queues one encoded message (in the session's encoding) for the client. */
void ms_gw_queue_frame(ms_gateway_t *gw, ms_session_t *s, const void *data, size_t len)
{
    if (ms_session_queue(s, data, len, s->binary, (size_t)gw->cfg->max_queue) != 0) {
        gw->n_closed_slow++;
        ms_warn("session %llu (%s): outbound queue over %ld bytes; closing the slow reader",
                (unsigned long long)s->id, s->peer_id ? s->peer_id : "-", gw->cfg->max_queue);
        ms_gw_session_close(s, CLOSE_POLICY);
        return;
    }
    gw->n_out++;
    if (s->wsoon)
        return;
    if (gw->n_wsoon == gw->wsoon_cap) {
        size_t ncap = gw->wsoon_cap ? 2 * gw->wsoon_cap : 256;
        uint64_t *nl = realloc(gw->wsoon, ncap * sizeof(*nl));
        if (!nl) {
            lws_callback_on_writable(s->wsi); /* written when writable instead */
            return;
        }
        gw->wsoon = nl;
        gw->wsoon_cap = ncap;
    }
    gw->wsoon[gw->n_wsoon++] = s->id;
    s->wsoon = 1;
}

/* Writes s's queue now unless lws still holds part of an earlier write, the
 * session is closing (the close frame follows the queue, in the callback)
 * or its socket broke the protocol (the callback closes it). */
static void write_now(ms_gateway_t *gw, ms_session_t *s)
{
    struct lws *wsi = s->wsi;
    if (!s->tail)
        return;
    if (s->closing || lws_partial_buffered(wsi) ||
        ms_wsguard_violation(lws_get_socket_fd(wsi), NULL)) {
        lws_callback_on_writable(wsi);
        return;
    }
    /* Framed here and written raw, as in the callback. A send that takes
     * only part is kept by lws, which asks for POLLOUT itself. */
    unsigned receipts;
    ssize_t n = ms_session_take_frames(s, &gw->wbuf, &gw->wbuf_cap, MS_GW_WRITE_BATCH, &receipts);
    if (n < 0 || lws_write(wsi, gw->wbuf + LWS_PRE, (size_t)n, LWS_WRITE_RAW) < 0) {
        /* Outside a callback a wsi cannot be closed by returning -1. */
        lws_set_timeout(wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
        return;
    }
    ms_gw_receipt_written(gw, s, receipts); /* stored emits: written, so the owner may delete */
    if (s->tail)
        lws_callback_on_writable(wsi);
}

uint64_t ms_gw_session_hash(const void *s)
{
    return ((const ms_session_t *)s)->id;
}

static int session_is(const void *s, const void *id)
{
    return ((const ms_session_t *)s)->id == *(const uint64_t *)id;
}

ms_session_t *ms_gw_session_find(ms_gateway_t *gw, uint64_t id)
{
    return ms_pidx_find(&gw->sessions, id, session_is, &id);
}

void ms_gw_write_flush(ms_gateway_t *gw)
{
    /* Bounded: a write queues nothing, so the list does not grow here. */
    for (size_t i = 0; i < gw->n_wsoon; i++) {
        ms_session_t *s = ms_gw_session_find(gw, gw->wsoon[i]);
        if (!s)
            continue; /* closed in this turn (ids are never reused) */
        s->wsoon = 0;
        write_now(gw, s);
    }
    gw->n_wsoon = 0;
}

int ms_gw_out_reserve(ms_gateway_t *gw, size_t need)
{
    if (need <= gw->out_cap)
        return 0;
    char *nb = realloc(gw->out, need);
    if (!nb)
        return -1;
    gw->out = nb;
    gw->out_cap = need;
    return 0;
}

ms_err_t ms_gw_send(ms_gateway_t *gw, ms_session_t *s, const Meshsig__V1__ServerMessage *msg)
{
    ms_err_t err = MS_ERR_NOMEM;
    if (s->closing || ms_gw_peerjs_send(gw, s, msg))
        return MS_OK;
    size_t len;
    const void *data;
    if (s->binary) {
        len = meshsig__v1__server_message__get_packed_size(msg);
        if (ms_gw_out_reserve(gw, len) != 0)
            goto fail;
        meshsig__v1__server_message__pack(msg, (uint8_t *)gw->out);
    } else {
        len = 0;
        if ((err = ms_codec_append_json(&msg->base, &gw->out, &len, &gw->out_cap)) != MS_OK)
            goto fail;
    }
    data = gw->out;
    ms_gw_queue_frame(gw, s, data, len);
    return MS_OK;
fail:
    gw->n_undeliverable++;
    ms_warn("cannot encode a message for session %llu: %s", (unsigned long long)s->id,
            ms_err_str(err));
    return err;
}

void ms_gw_send_error(ms_gateway_t *gw, ms_session_t *s, const char *id,
                      Meshsig__V1__ErrorCode code, const char *fmt, ...)
{
    char text[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    ms_sm_error_t e;
    ms_gw_send(gw, s, ms_sm_error(&e, id, code, text));
}

void ms_gw_send_ok(ms_gateway_t *gw, ms_session_t *s, const char *id)
{
    if (!id || !*id)
        return;
    ms_sm_ok_t ok;
    ms_gw_send(gw, s, ms_sm_ok(&ok, id));
}

/* RFC 6455 §4.2.2: a handshake for any version but 13 gets 426 Upgrade
 * Required naming the version we speak, and no upgrade (lws 4.1 would
 * answer 101 to any version). An upgrade to h2c (HTTP/2 in cleartext), which
 * lws 4.1 granted with a 101, closes the connection: no client of the gateway
 * speaks HTTP/2, and its parser is surface an attacker need not get. Returns
 * what LWS_CALLBACK_HTTP_CONFIRM_UPGRADE expects: 0 to go on, 1 when the
 * answer was written, -1 to close. */
int ms_gw_confirm_upgrade(struct lws *wsi, const char *up)
{
    char v[8] = "";
    if (up && !strcasecmp(up, "h2c"))
        return -1;
    if (!up || strcasecmp(up, "websocket") ||
        (lws_hdr_copy(wsi, v, sizeof(v), WSI_TOKEN_VERSION) == 2 && !strcmp(v, "13")))
        return 0;
    unsigned char buf[LWS_PRE + 256], *start = buf + LWS_PRE, *p = start,
                                      *end = buf + sizeof(buf) - 1;
    ms_wsguard_http(lws_get_socket_fd(wsi));
    if (lws_add_http_header_status(wsi, 426, &p, end) ||
        lws_add_http_header_by_token(wsi, WSI_TOKEN_VERSION, (const unsigned char *)"13", 2, &p,
                                     end) ||
        lws_add_http_header_content_length(wsi, 0, &p, end) ||
        lws_finalize_write_http_header(wsi, start, &p, end))
        return -1;
    return 1;
}

/* Whether a whole text message is valid UTF-8 (RFC 6455 §8.1, RFC 3629); closes s with 1007
 * when not. Checked here, once per message and eight ASCII bytes at a time, instead of by
 * lws's LWS_SERVER_OPTION_VALIDATE_UTF8, which walks every byte of every fragment through
 * its state machine: a quarter of a gateway's user-space instructions per relayed signal.
 * A message is checked when its last fragment arrives (it is held whole until then, under
 * --max-frame), so a sequence cut short at its end is caught too. */
static int text_valid(ms_session_t *s, const void *p, size_t len)
{
    if (ms_utf8_valid(p, len))
        return 1;
    ms_info("session %llu: text message is not valid UTF-8; closing with 1007",
            (unsigned long long)s->id);
    ms_gw_session_close(s, CLOSE_BAD_UTF8);
    return 0;
}

#define PER_IP_BODY "too many connections from your address (--max-handshakes-per-ip)\n"
_Static_assert(sizeof(PER_IP_BODY) - 1 == 65, "Content-Length in admit_connection");

/* LWS_CALLBACK_FILTER_NETWORK_CONNECTION: a connection just accepted, nothing read from it and
 * no header table taken. Over --max-handshakes-per-ip it is answered 503 without parsing its
 * request (what has arrived of it is read and dropped, so the close is a FIN after the answer,
 * not a reset) and closed; 1 refuses. */
static int admit_connection(ms_gateway_t *gw, const struct lws_filter_network_conn_args *f)
{
    /* A tag whose connection never got a wsi (lws failed to adopt it) is given back. */
    ms_addrlimit_release(gw->addrlimit, &gw->al_pending);
    ms_addr_t a;
    ms_addrlimit_tag_t tag;
    if (!f || ms_addr_from_sockaddr((const struct sockaddr *)&f->cli_addr, f->clilen, &a) != 0)
        return 0;
    if (ms_addrlimit_accept(gw->addrlimit, &a, &tag) == 0) {
        gw->al_pending = tag;
        gw->al_pending_fd = f->accept_fd;
        return 0;
    }
    gw->n_cap_refused[MS_GW_CAP_HANDSHAKES_PER_IP]++;
    static const char answer[] = "HTTP/1.1 503 Service Unavailable\r\n"
                                 "Content-Type: text/plain\r\n"
                                 "Content-Length: 65\r\n"
                                 "Retry-After: 5\r\n"
                                 "Connection: close\r\n\r\n" PER_IP_BODY;
    (void)!send(f->accept_fd, answer, sizeof(answer) - 1, MSG_DONTWAIT | MSG_NOSIGNAL);
    /* lws closes the socket when this returns: with the client's request received and
     * unread, that close was a reset (ECONNRESET after the answer at the client, or in place
     * of it where a stack drops received data on a reset or the client is still writing). */
    ms_gw_linger_fd(f->accept_fd);
    return 1;
}

/* LWS_CALLBACK_ESTABLISHED: the connection's handshake becomes a session of its client's
 * address (from a trusted proxy: the last X-Forwarded-For address, or the proxy's own when it
 * has none). -1 when that address is at --max-sessions-per-ip. */
static int admit_session(ms_gateway_t *gw, struct lws *wsi)
{
    ms_addrlimit_tag_t tag = (ms_addrlimit_tag_t)lws_get_opaque_user_data(wsi);
    ms_addr_t client, *cp = NULL;
    if (ms_addrlimit_proxied(tag)) {
        char xff[512];
        struct sockaddr_storage ss;
        socklen_t sl = sizeof(ss);
        if (lws_hdr_copy(wsi, xff, sizeof(xff), WSI_TOKEN_X_FORWARDED_FOR) > 0 &&
            ms_addr_from_xff(xff, &client) == 0)
            cp = &client;
        else if (getpeername(lws_get_socket_fd(wsi), (struct sockaddr *)&ss, &sl) == 0 &&
                 ms_addr_from_sockaddr((struct sockaddr *)&ss, sl, &client) == 0)
            cp = &client;
    }
    int r = ms_addrlimit_session(gw->addrlimit, &tag, cp);
    lws_set_opaque_user_data(wsi, (void *)tag);
    return r;
}

/* The WebSocket protocols: a session from ESTABLISHED to CLOSED, and the mailbox wake-up. */
int ms_gw_ws_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                      size_t len)
{
    struct lws_context *ctx = lws_get_context(wsi);
    ms_gateway_t *gw = ctx ? lws_context_user(ctx) : NULL;
    ms_session_t *s = user;

    switch (reason) {
    case LWS_CALLBACK_EVENT_WAIT_CANCELLED:
        if (gw && gw->inbox)
            ms_gw_intake_drain(gw);
        return 0;

    case LWS_CALLBACK_HTTP_CONFIRM_UPGRADE:
        return ms_gw_confirm_upgrade(wsi, in);

    case LWS_CALLBACK_HTTP: /* a path no mount serves (lws's own 404 broke pipelining) */
        return ms_gw_http_not_found(wsi);

    /* Per-address limits (addrlimit.h): protocols[0] hears of every connection's start and
     * end, whatever it becomes (a session, HTTP, nothing). */
    case LWS_CALLBACK_FILTER_NETWORK_CONNECTION:
        return admit_connection(gw, user);

    case LWS_CALLBACK_SERVER_NEW_CLIENT_INSTANTIATED:
        if (gw->al_pending && lws_get_socket_fd(wsi) == gw->al_pending_fd) {
            lws_set_opaque_user_data(wsi, (void *)gw->al_pending);
            gw->al_pending = 0;
        }
        break;

    case LWS_CALLBACK_WSI_DESTROY: {
        ms_addrlimit_tag_t tag = (ms_addrlimit_tag_t)lws_get_opaque_user_data(wsi);
        if (tag) {
            ms_addrlimit_release(gw->addrlimit, &tag);
            lws_set_opaque_user_data(wsi, NULL);
        }
        break;
    }

    case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION: {
        char uri[192];
        if (lws_hdr_copy(wsi, uri, sizeof(uri), WSI_TOKEN_GET_URI) <= 0 ||
            (strcmp(uri, "/ws") && !ms_gw_peerjs_ws_path(gw, uri))) {
            return 1; /* WebSockets live at /ws (and PeerJS's path) only */
        }
        if (gw->draining)
            return 1; /* shutting down: clients go to another gateway */
        if (!ms_gw_origin_allowed(gw, wsi)) {
            ms_info("WebSocket refused: origin not allowed");
            return 1;
        }
        return 0;
    }

    case LWS_CALLBACK_ESTABLISHED:
        memset(s, 0, sizeof(*s));
        s->id = ++gw->next_session;
        if (ms_pidx_add(&gw->sessions, s) < 0) {
            s->id = 0; /* out of memory: closed, and CLOSED has nothing to undo */
            return -1;
        }
        s->wsi = wsi;
        /* lws allocated its receive buffer just now (rxslab.h) */
        ms_gw_rxslab_bind(lws_get_socket_fd(wsi), wsi, ms_clock_mono_us());
        s->binary = !strcmp(lws_get_protocol(wsi)->name, "meshsig.v1.proto");
        ms_ratelimit_pair_start(&s->rate, &gw->rule_msgs, &gw->rule_bytes, ms_clock_mono_us());
        gw->n_sessions++;
        ms_gw_deadline_arm(gw, s, &gw->hello_waits, (uint64_t)gw->cfg->hello_timeout_ms * 1000u);
        ms_gw_idle_touch(gw, s);
        if (gw->peerjs) {
            /* Set before the caps: a PeerJS client is told a refusal in its protocol
             * ({type: ERROR}, as the PeerJS server's concurrent_limit is), which it shows. */
            char uri[192];
            s->peerjs = lws_hdr_copy(wsi, uri, sizeof(uri), WSI_TOKEN_GET_URI) > 0 &&
                        ms_gw_peerjs_ws_path(gw, uri);
        }
        if (gw->n_sessions > (size_t)gw->cfg->max_sessions) {
            /* Refused after the upgrade, not with an HTTP status: a browser
             * sees only the close code and reason of a WebSocket, and 1013
             * tells it (and the SDK) to try again later, or elsewhere. */
            gw->n_cap_refused[MS_GW_CAP_SESSIONS]++;
            ms_gw_send_error(gw, s, NULL, ERR(LIMIT_REACHED),
                             "this gateway holds its maximum of %ld sessions (--max-sessions); "
                             "try again later or another gateway",
                             gw->cfg->max_sessions);
            ms_gw_session_close(s, CLOSE_TRY_LATER);
            return 0;
        }
        if (admit_session(gw, wsi) != 0) {
            /* Told as at --max-sessions: an address over its share tries again later. */
            gw->n_cap_refused[MS_GW_CAP_SESSIONS_PER_IP]++;
            ms_gw_send_error(gw, s, NULL, ERR(LIMIT_REACHED),
                             "your address holds its maximum of %ld sessions on this gateway "
                             "(--max-sessions-per-ip); try again later",
                             gw->cfg->max_sessions_per_ip);
            ms_gw_session_close(s, CLOSE_TRY_LATER);
            return 0;
        }
        const char *why;
        int code = ms_wsguard_bind(lws_get_socket_fd(wsi), wsi, &why);
        if (code) {
            /* sent with the request, before the 101 */
            ms_info("session %llu: %s; closing with %d", (unsigned long long)s->id, why, code);
            ms_gw_session_close(s, (uint16_t)code);
            return 0;
        }
        if (s->peerjs)
            ms_gw_peerjs_open(gw, s, wsi);
        return 0;

    case LWS_CALLBACK_TIMER:
        /* The end of a rate-limit pause (ms_gw_throttle). */
        if (s && s->id && s->throttled) {
            s->throttled = 0;
            lws_rx_flow_control(wsi, 1);
        }
        return 0;

    case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE: {
        /* A close frame's body is empty or a code and a UTF-8 reason (§5.5.1), the code
         * under 5000 (§7.4.2). Otherwise the connection ends without the echo, as lws
         * ended it when it checked UTF-8; lws 4.1 answers codes under 3000 it does not
         * know with 1002 itself, but echoes a body of one byte and codes from 5000 up. */
        const uint8_t *b = in;
        return len == 1 || (len >= 2 && (b[0] << 8 | b[1]) >= 5000) ||
                       (len > 2 && !ms_utf8_valid((const char *)in + 2, len - 2))
                   ? -1
                   : 0;
    }

    case LWS_CALLBACK_RECEIVE_PONG:
        if (s && s->id)
            ms_gw_idle_touch(gw, s);
        return 0;

    case LWS_CALLBACK_RECEIVE: {
        if (!s || !s->id)
            return -1;
        if (s->closing)
            return 0;
        ms_gw_idle_touch(gw, s);
        size_t remaining = lws_remaining_packet_payload(wsi);
        int final = lws_is_final_fragment(wsi) && remaining == 0;
        if (s->rx && s->rx->cap == MS_SESSION_RX_DISCARD) {
            /* Reading the rest of an oversize message: closing while the client
             * is still sending would turn the close frame into a reset. An
             * endless message is cut off at 16 times the cap. */
            s->rx->len += (uint32_t)len; /* len: at most lws's receive buffer */
            if (s->rx->len > 16 * (uint64_t)gw->cfg->max_frame)
                return -1;
            if (final)
                ms_gw_session_close(s, CLOSE_TOO_BIG);
            return 0;
        }
        size_t have = s->rx ? s->rx->len : 0; /* of this message, in earlier pieces */
        if (have + len + remaining > (size_t)gw->cfg->max_frame) {
            ms_info("session %llu: message over %ld bytes; closing with 1009",
                    (unsigned long long)s->id, gw->cfg->max_frame);
            /* What is left of the buffer counts the bytes dropped. */
            ms_session_rx_t *d = realloc(s->rx, sizeof(*d));
            if (!d)
                return -1;
            d->len = (uint32_t)len;
            d->cap = MS_SESSION_RX_DISCARD;
            s->rx = d;
            if (final)
                ms_gw_session_close(s, CLOSE_TOO_BIG);
            return 0;
        }
        int binary = lws_frame_is_binary(wsi);
        if (final && have == 0) {
            if (binary || text_valid(s, in, len))
                ms_gw_handle_frame(gw, s, in, len, binary);
            return 0;
        }
        if (!s->rx || have + len > s->rx->cap) {
            size_t ncap = have + len + remaining; /* under --max-frame */
            ms_session_rx_t *nb = realloc(s->rx, sizeof(*nb) + ncap);
            if (!nb)
                return -1;
            nb->len = (uint32_t)have;
            nb->cap = (uint32_t)ncap;
            s->rx = nb;
        }
        memcpy(s->rx->buf + have, in, len);
        s->rx->len += (uint32_t)len;
        if (final) {
            if (binary || text_valid(s, s->rx->buf, s->rx->len))
                ms_gw_handle_frame(gw, s, s->rx->buf, s->rx->len, binary);
            /* Large buffers are not kept around between messages. */
            free(s->rx);
            s->rx = NULL;
        }
        return 0;
    }

    case LWS_CALLBACK_SERVER_WRITEABLE: {
        if (!s || !s->id)
            return 0;
        if (!s->closing) {
            const char *why;
            int code = ms_wsguard_violation(lws_get_socket_fd(wsi), &why);
            if (code) {
                ms_info("session %llu: %s; closing with %d", (unsigned long long)s->id, why, code);
                ms_gw_session_close(s, (uint16_t)code);
            }
        }
        if (s->ping_due) {
            s->ping_due = 0;
            memcpy(gw->ping + LWS_PRE, "ms", 2);
            if (lws_write(wsi, gw->ping + LWS_PRE, 2, LWS_WRITE_PING) < 0)
                return -1;
            if (s->tail)
                lws_callback_on_writable(wsi);
            return 0;
        }
        if (s->tail) {
            /* Everything queued (up to MS_GW_WRITE_BATCH bytes) in one send: the
             * frames are framed here and written raw, which lws passes
             * through unchanged (no extensions are enabled on this vhost). */
            unsigned receipts;
            ssize_t n =
                ms_session_take_frames(s, &gw->wbuf, &gw->wbuf_cap, MS_GW_WRITE_BATCH, &receipts);
            if (n < 0 || lws_write(wsi, gw->wbuf + LWS_PRE, (size_t)n, LWS_WRITE_RAW) < 0)
                return -1;
            /* Written (what lws could not send at once it keeps and sends). */
            ms_gw_receipt_written(gw, s, receipts);
        }
        if (s->tail) {
            lws_callback_on_writable(wsi);
        } else if (s->closing) {
            static unsigned char full[] = "gateway full", per_ip[] = "address full";
            const unsigned char *why = NULL;
            size_t why_len = 0;
            if (s->close_code == CLOSE_TRY_LATER) {
                int ip = ms_addrlimit_refused((ms_addrlimit_tag_t)lws_get_opaque_user_data(wsi));
                why = ip ? per_ip : full;
                why_len = ip ? sizeof(per_ip) - 1 : sizeof(full) - 1;
            }
            lws_close_reason(wsi, (enum lws_close_status)s->close_code, (unsigned char *)why,
                             why_len);
            return -1;
        }
        return 0;
    }

    case LWS_CALLBACK_CLOSED:
        if (!s || !s->id)
            return 0;
        ms_gw_deadline_cancel(s);
        ms_dnode_remove(&s->idle_node);
        ms_gw_direct_forget(gw, s, NULL); /* before the leave: its signals go first */
        ms_gw_receipt_forget(gw, s);      /* unwritten stored emits: sent again on resume */
        ms_gw_inflight_forget(gw, s);
        if (s->state != MS_SESSION_NEW && s->ns)
            ms_gw_publish_leave(gw, s, "closed");
        ms_gw_peer_index_remove(gw, s);
        ms_pidx_remove(&gw->sessions, s);
        gw->n_sessions--;
        ms_session_cleanup(s);
        s->id = 0;
        return 0;

    default:
        break;
    }
    return lws_callback_http_dummy(wsi, reason, user, in, len);
}
