/* SPDX-License-Identifier: Apache-2.0 */
/* A synchronous WebSocket test client on the libwebsockets client API. */
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <libwebsockets.h>

#include "wsclient.h"

typedef struct msg {
    struct msg *next;
    size_t len;
    int binary;
    char data[];
} msg_t;

struct wsc {
    struct lws *wsi;
    int established, closed, failed, close_code;
    msg_t *in_head, *in_tail;
    msg_t *out_head, *out_tail; /* data has LWS_PRE headroom */
    char *rx;
    size_t rx_len;
};

static struct lws_context *ctx;
static lws_sorted_usec_list_t tick;

static void on_tick(lws_sorted_usec_list_t *sul)
{
    (void)sul;
}

/* lws 4 ignores lws_service()'s timeout and sleeps until its next timer; a
 * 10 ms timer keeps every wait below bounded by its own deadline. */
static void service(void)
{
    lws_sul_schedule(ctx, 0, &tick, on_tick, 10 * LWS_US_PER_MS);
    lws_service(ctx, 0);
}

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void push(msg_t **head, msg_t **tail, msg_t *m)
{
    m->next = NULL;
    if (*tail)
        (*tail)->next = m;
    else
        *head = m;
    *tail = m;
}

static int cb(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in, size_t len)
{
    wsc_t *c = lws_get_opaque_user_data(wsi);
    switch (reason) {
    case LWS_CALLBACK_CLIENT_ESTABLISHED:
        if (c)
            c->established = 1;
        break;
    case LWS_CALLBACK_CLIENT_CONNECTION_ERROR:
        if (c) {
            c->failed = 1;
            c->closed = 1;
            c->wsi = NULL;
        }
        break;
    case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE:
        if (c && len >= 2)
            c->close_code = ((unsigned char *)in)[0] << 8 | ((unsigned char *)in)[1];
        break;
    case LWS_CALLBACK_CLIENT_CLOSED:
        if (c) {
            c->closed = 1;
            c->wsi = NULL;
        }
        break;
    case LWS_CALLBACK_CLIENT_RECEIVE: {
        if (!c)
            break;
        char *nb = realloc(c->rx, c->rx_len + len + 1);
        if (!nb)
            return -1;
        c->rx = nb;
        memcpy(c->rx + c->rx_len, in, len);
        c->rx_len += len;
        if (lws_is_final_fragment(wsi) && !lws_remaining_packet_payload(wsi)) {
            msg_t *m = malloc(sizeof(*m) + c->rx_len + 1);
            if (!m)
                return -1;
            m->len = c->rx_len;
            m->binary = lws_frame_is_binary(wsi);
            memcpy(m->data, c->rx, c->rx_len);
            m->data[c->rx_len] = '\0';
            push(&c->in_head, &c->in_tail, m);
            c->rx_len = 0;
        }
        break;
    }
    case LWS_CALLBACK_CLIENT_WRITEABLE: {
        if (!c || !c->out_head)
            break;
        msg_t *m = c->out_head;
        c->out_head = m->next;
        if (!c->out_head)
            c->out_tail = NULL;
        int n = lws_write(wsi, (unsigned char *)m->data + LWS_PRE, m->len,
                          m->binary ? LWS_WRITE_BINARY : LWS_WRITE_TEXT);
        free(m);
        if (n < 0)
            return -1;
        if (c->out_head)
            lws_callback_on_writable(wsi);
        break;
    }
    default:
        break;
    }
    return 0;
}

static const struct lws_protocols protocols[] = {
    {"test-client", cb, 0, 4096, 0, NULL, 0},
    {NULL, NULL, 0, 0, 0, NULL, 0},
};

int wsc_global_init(void)
{
    struct lws_context_creation_info info;
    memset(&info, 0, sizeof(info));
    info.port = CONTEXT_PORT_NO_LISTEN;
    info.protocols = protocols;
    lws_set_log_level(LLL_ERR, NULL);
    ctx = lws_create_context(&info);
    return ctx ? 0 : -1;
}

void wsc_global_cleanup(void)
{
    if (ctx)
        lws_sul_cancel(&tick);
    if (ctx)
        lws_context_destroy(ctx);
    ctx = NULL;
}

void wsc_pump(int ms)
{
    long long end = now_ms() + ms;
    while (now_ms() < end)
        service();
}

wsc_t *wsc_connect(int port, const char *subprotocol, int timeout_ms)
{
    return wsc_connect_path(port, "/ws", subprotocol, timeout_ms);
}

wsc_t *wsc_connect_path(int port, const char *path, const char *subprotocol, int timeout_ms)
{
    wsc_t *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    struct lws_client_connect_info ci;
    memset(&ci, 0, sizeof(ci));
    ci.context = ctx;
    ci.address = "127.0.0.1";
    ci.port = port;
    ci.path = path;
    ci.host = "127.0.0.1";
    ci.origin = "http://127.0.0.1";
    ci.protocol = subprotocol;
    ci.local_protocol_name = "test-client";
    ci.opaque_user_data = c;
    ci.pwsi = &c->wsi;
    if (!lws_client_connect_via_info(&ci) && !c->wsi) {
        free(c);
        return NULL;
    }
    long long end = now_ms() + timeout_ms;
    while (!c->established && !c->closed && now_ms() < end)
        service();
    if (!c->established) {
        wsc_free(c);
        return NULL;
    }
    return c;
}

void wsc_free(wsc_t *c)
{
    if (!c)
        return;
    if (c->wsi && !c->closed) {
        lws_set_opaque_user_data(c->wsi, NULL);
        lws_set_timeout(c->wsi, PENDING_TIMEOUT_CLOSE_SEND, LWS_TO_KILL_ASYNC);
        wsc_pump(20);
    }
    for (msg_t *m = c->in_head, *n; m; m = n) {
        n = m->next;
        free(m);
    }
    for (msg_t *m = c->out_head, *n; m; m = n) {
        n = m->next;
        free(m);
    }
    free(c->rx);
    free(c);
}

int wsc_send(wsc_t *c, const void *data, size_t len, int binary)
{
    if (!c->wsi || c->closed)
        return -1;
    msg_t *m = malloc(sizeof(*m) + LWS_PRE + len);
    if (!m)
        return -1;
    m->len = len;
    m->binary = binary;
    memcpy(m->data + LWS_PRE, data, len);
    push(&c->out_head, &c->out_tail, m);
    lws_callback_on_writable(c->wsi);
    long long end = now_ms() + 2000;
    while (c->out_head && !c->closed && now_ms() < end)
        service();
    return c->out_head ? -1 : 0;
}

int wsc_send_text(wsc_t *c, const char *text)
{
    return wsc_send(c, text, strlen(text), 0);
}

char *wsc_recv(wsc_t *c, int timeout_ms, size_t *len, int *binary)
{
    long long end = now_ms() + timeout_ms;
    while (!c->in_head && !c->closed && now_ms() < end)
        service();
    msg_t *m = c->in_head;
    if (!m)
        return NULL;
    c->in_head = m->next;
    if (!c->in_head)
        c->in_tail = NULL;
    if (len)
        *len = m->len;
    if (binary)
        *binary = m->binary;
    char *out = malloc(m->len + 1);
    if (out) {
        memcpy(out, m->data, m->len + 1);
    }
    free(m);
    return out;
}

json_t *wsc_recv_json(wsc_t *c, int timeout_ms)
{
    size_t len = 0;
    int bin = 0;
    char *s = wsc_recv(c, timeout_ms, &len, &bin);
    if (!s)
        return NULL;
    json_t *j = bin ? NULL : json_loadb(s, len, 0, NULL);
    free(s);
    return j;
}

int wsc_wait_closed(wsc_t *c, int timeout_ms)
{
    long long end = now_ms() + timeout_ms;
    while (!c->closed && now_ms() < end)
        service();
    return c->closed;
}

int wsc_close_code(wsc_t *c)
{
    return c->close_code;
}

size_t wsc_pending(wsc_t *c)
{
    size_t n = 0;
    for (msg_t *m = c->in_head; m; m = m->next)
        n++;
    return n;
}
