/* SPDX-License-Identifier: Apache-2.0 */
/* HTTP on the gateway port: /healthz, /metrics, static files, and the Origin allowlist for /ws. */
#include <poll.h>
#include <sys/socket.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

static int write_headers(struct lws *wsi, ms_gw_http_pss_t *h)
{
    unsigned char buf[LWS_PRE + 512], *start = buf + LWS_PRE, *p = start,
                                      *end = buf + sizeof(buf) - 1;
    if (lws_add_http_common_headers(wsi, (unsigned int)h->status, h->ctype, h->len, &p, end) ||
        lws_add_http_header_by_token(wsi, WSI_TOKEN_HTTP_CACHE_CONTROL,
                                     (const unsigned char *)"no-store", 8, &p, end) ||
        (h->cors &&
         lws_add_http_header_by_name(wsi, (const unsigned char *)"access-control-allow-origin:",
                                     (const unsigned char *)"*", 1, &p, end)) ||
        (h->close_after &&
         lws_add_http_header_by_token(wsi, WSI_TOKEN_CONNECTION, (const unsigned char *)"close", 5,
                                      &p, end)) ||
        lws_finalize_write_http_header(wsi, start, &p, end))
        return -1;
    return 0;
}

/* Headers now, the body when writeable: for an answer that came later. */
static int send_headers(struct lws *wsi, ms_gw_http_pss_t *h)
{
    if (write_headers(wsi, h))
        return -1;
    lws_callback_on_writable(wsi);
    return 0;
}

static int complete(struct lws *wsi, const ms_gw_http_pss_t *h);

/* The body, and the transaction complete: what lws keeps of a partial write it sends. */
static int write_body(struct lws *wsi, ms_gw_http_pss_t *h)
{
    unsigned char *buf = malloc(LWS_PRE + h->len);
    if (!buf)
        return -1;
    memcpy(buf + LWS_PRE, h->body, h->len);
    int n = lws_write(wsi, buf + LWS_PRE, h->len, LWS_WRITE_HTTP_FINAL);
    free(buf);
    free(h->body);
    h->body = NULL;
    return n < 0 ? -1 : complete(wsi, h);
}

void ms_gw_http_linger(struct lws *wsi)
{
    /* What lws still holds of the answer it sends before it closes; a FIN now would cut it. */
    if (!lws_partial_buffered(wsi))
        ms_gw_linger_fd(lws_get_socket_fd(wsi));
}

void ms_gw_linger_fd(int fd)
{
    char junk[4096];
    (void)shutdown(fd, SHUT_WR);
    for (size_t got = 0; got < 4 * sizeof(junk);) {
        ssize_t r = recv(fd, junk, sizeof(junk), MSG_DONTWAIT);
        if (r <= 0)
            break;
        got += (size_t)r;
    }
}

/* No keep-alive after a request that is not a GET or carries body framing (any
 * Transfer-Encoding, a Content-Length other than 0): none of the gateway's answers
 * takes a body, and where such a body ends is what request smuggling plays on (two
 * Content-Length, one with Transfer-Encoding, an unknown coding; RFC 9112 6.1: close
 * after answering). lws used to drop these connections by accident: its own 404
 * overwrote the request after them (ms_gw_http_not_found). */
static int body_framed(struct lws *wsi)
{
    char cl[32];
    if (lws_hdr_total_length(wsi, WSI_TOKEN_GET_URI) <= 0 ||
        lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_TRANSFER_ENCODING) > 0)
        return 1;
    if (lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_CONTENT_LENGTH) <= 0)
        return 0;
    return lws_hdr_copy(wsi, cl, sizeof(cl), WSI_TOKEN_HTTP_CONTENT_LENGTH) != 1 || cl[0] != '0';
}

/* The answer is written: ready for the next request on the connection, or -1 to close. */
static int complete(struct lws *wsi, const ms_gw_http_pss_t *h)
{
    if (h->close_after) {
        ms_gw_http_linger(wsi);
        return -1;
    }
    /* All of it is in the socket, but the socket takes no more: the client has not read
     * earlier answers (it pipelines and does not read). lws would complete the
     * transaction and wait for the socket to take more before it looks at the next
     * request, polling that request's unread bytes without a timeout meanwhile: such
     * a client spun a gateway core. It is closed instead; what the socket holds still
     * goes out. (What lws itself holds of a partial write, it sends first.) */
    struct pollfd pf = {.fd = lws_get_socket_fd(wsi), .events = POLLOUT};
    if (!lws_partial_buffered(wsi) && poll(&pf, 1, 0) == 0)
        return -1;
    return lws_http_transaction_completed(wsi) ? -1 : 0;
}

int ms_gw_http_not_found(struct lws *wsi)
{
    /* Not lws_return_http_status: it builds the answer in lws's per-thread receive
     * buffer, over the bytes still to parse when requests came in one read, and the
     * next pipelined request was refused 403 (no path) and the connection closed. */
    ms_gw_http_pss_t nf = {
        .status = HTTP_STATUS_NOT_FOUND, .ctype = "text/plain", .close_after = body_framed(wsi)};
    if (!(nf.body = strdup("not found\n")))
        return -1;
    nf.len = strlen(nf.body);
    if (write_headers(wsi, &nf)) {
        free(nf.body);
        return -1;
    }
    return write_body(wsi, &nf);
}

/* /healthz, /metrics and PeerJS: headers in LWS_CALLBACK_HTTP (or, for an
 * answer that comes later, in the first writeable), the body when writeable. */
int ms_gw_http_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                        size_t len)
{
    ms_gateway_t *gw = lws_context_user(lws_get_context(wsi));
    ms_gw_http_pss_t *h = user;
    switch (reason) {
    case LWS_CALLBACK_HTTP_CONFIRM_UPGRADE:
        return ms_gw_confirm_upgrade(wsi, in);
    case LWS_CALLBACK_HTTP: {
        char uri[192] = "";
        h->close_after = body_framed(wsi);
        lws_hdr_copy(wsi, uri, sizeof(uri), WSI_TOKEN_GET_URI);
        const char *ctype = "text/plain";
        int pj = ms_gw_peerjs_http(gw, wsi, uri, h, &ctype);
        if (pj < 0)
            return -1;
        if (pj == 2)
            return 0; /* peerjs.c asks for writeable when the answer is in */
        if (pj) {
            /* answered by peerjs.c */
        } else if (!strcmp(uri, "/healthz")) {
            /* Draining or cut off from NATS counts as unhealthy so a load
             * balancer stops sending new clients. */
            int down = gw->draining || gw->cut_off;
            h->status = down ? HTTP_STATUS_SERVICE_UNAVAILABLE : HTTP_STATUS_OK;
            h->body = strdup(gw->draining ? "draining\n" : gw->cut_off ? "no NATS\n" : "ok\n");
            h->len = h->body ? strlen(h->body) : 0;
        } else if (!strcmp(uri, "/metrics")) {
            h->status = HTTP_STATUS_OK;
            h->body = ms_gw_metrics_text(gw, &h->len);
            ctype = "text/plain; version=0.0.4";
        } else {
            return ms_gw_http_not_found(wsi);
        }
        if (!h->body)
            return -1;
        h->ctype = ctype;
        /* Answered whole in this callback, not the body when writeable: as soon as it
         * returns, lws 4.1 parses a pipelined request that follows, and binding that
         * one's protocol drops this one's state, body included (of three pipelined
         * GET /healthz, the second got headers without a body, the third nothing, and
         * the connection hung). */
        return write_headers(wsi, h) ? -1 : write_body(wsi, h);
    }
    /* A --static-dir file (its mount binds this protocol). lws reads it through the buffer
     * that still holds what the client sent after the request, and a request pipelined
     * behind it was refused 403 and the connection closed. The connection is closed after
     * the file instead, and the file's answer says so (RFC 9112 9.6): a client sends no more
     * on it, and one that pipelined sends the rest again on a new connection. */
    case LWS_CALLBACK_ADD_HEADERS: {
        struct lws_process_html_args *a = in;
        unsigned char *p = (unsigned char *)a->p, *end = p + a->max_len;
        if (lws_add_http_header_by_token(wsi, WSI_TOKEN_CONNECTION, (const unsigned char *)"close",
                                         5, &p, end))
            return -1;
        a->max_len -= (int)(p - (unsigned char *)a->p);
        a->p = (char *)p;
        return 0;
    }
    case LWS_CALLBACK_HTTP_FILE_COMPLETION:
        ms_gw_http_linger(wsi);
        return -1;
    case LWS_CALLBACK_HTTP_WRITEABLE: {
        if (h->discovery)
            return 0; /* still waiting for the owner */
        if (!h->body)
            return -1;
        if (h->headers_due) {
            h->headers_due = 0;
            return send_headers(wsi, h);
        }
        return write_body(wsi, h);
    }
    case LWS_CALLBACK_CLOSED_HTTP:
    case LWS_CALLBACK_HTTP_DROP_PROTOCOL:
        if (h) {
            ms_gw_peerjs_http_closed(gw, h);
            free(h->body);
            h->body = NULL;
        }
        return 0;
    default:
        break;
    }
    return lws_callback_http_dummy(wsi, reason, user, in, len);
}

int ms_gw_origin_allowed(ms_gateway_t *gw, struct lws *wsi)
{
    const char *list = gw->cfg->origins;
    if (!list || !*list)
        return 1;
    char origin[256];
    if (lws_hdr_copy(wsi, origin, sizeof(origin), WSI_TOKEN_ORIGIN) <= 0)
        return 0; /* an allowlist is set: browsers always send Origin */
    size_t ol = strlen(origin);
    for (const char *p = list; *p;) {
        const char *comma = strchr(p, ',');
        size_t n = comma ? (size_t)(comma - p) : strlen(p);
        if (n == ol && !strncmp(p, origin, n))
            return 1;
        if (n == 1 && *p == '*')
            return 1;
        p += n + (comma ? 1 : 0);
    }
    return 0;
}

const struct lws_http_mount *ms_gw_http_mounts(ms_gateway_t *gw)
{
    static const char *const dyn[] = {"/healthz", "/metrics"};
    for (int i = 0; i < 2; i++) {
        gw->mounts[i].mountpoint = dyn[i];
        gw->mounts[i].mountpoint_len = (unsigned char)strlen(dyn[i]);
        gw->mounts[i].origin = "meshsig-http";
        gw->mounts[i].origin_protocol = LWSMPRO_CALLBACK;
        gw->mounts[i].mount_next = &gw->mounts[i + 1];
    }
    gw->mounts[1].mount_next = NULL;
    const char *dir = gw->cfg->static_dir;
    if (dir && *dir) {
        gw->mounts[1].mount_next = &gw->mounts[2];
        gw->mounts[2].mountpoint = "/";
        gw->mounts[2].mountpoint_len = 1;
        gw->mounts[2].origin = dir;
        gw->mounts[2].def = "index.html";
        gw->mounts[2].origin_protocol = LWSMPRO_FILE;
        /* lws asks this protocol for more headers of a file (LWS_CALLBACK_ADD_HEADERS), and
         * tells it when the file is sent */
        gw->mounts[2].protocol = "meshsig-http";
    }
    gw->mounts[1].mount_next = ms_gw_peerjs_mounts(gw, gw->mounts[1].mount_next);
    return &gw->mounts[0];
}
