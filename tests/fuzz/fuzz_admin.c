/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer target: the admin API's routing, path, header and body handling (coordinator/admin.c
 * ms_admin_handle), with requests built in memory instead of read from a socket.
 *
 * Input: "METHOD\nPATH\nAUTHORIZATION\nBODY". PATH is the raw URL path
 * (percent-decoding is the handler's); an AUTHORIZATION of "@" stands for the
 * right bearer token, so that the routes behind the token are reached, and an
 * empty one sends no header. The request gets a namespace with peers first
 * (through the real shard handler), so that namespace views have content.
 */
#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fakecoord.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const struct {
    const char *name;
    enum evhttp_cmd_type cmd;
} methods[] = {
    {"GET", EVHTTP_REQ_GET},         {"PUT", EVHTTP_REQ_PUT},   {"POST", EVHTTP_REQ_POST},
    {"OPTIONS", EVHTTP_REQ_OPTIONS}, {"HEAD", EVHTTP_REQ_HEAD}, {"DELETE", EVHTTP_REQ_DELETE},
};

/* Next '\n'-terminated field of [*p, end) as a new string (NULL at the end). */
static char *field(const uint8_t **p, const uint8_t *end)
{
    const uint8_t *nl = memchr(*p, '\n', (size_t)(end - *p));
    size_t n = nl ? (size_t)(nl - *p) : (size_t)(end - *p);
    char *s = malloc(n + 1);
    if (!s)
        abort();
    memcpy(s, *p, n);
    s[n] = '\0';
    *p = nl ? nl + 1 : end;
    return s;
}

static void join(ms_coord_t *c, const char *peer, uint64_t session)
{
    Meshsig__Bus__Join j = MESHSIG__BUS__JOIN__INIT;
    j.peer_id = (char *)peer;
    Meshsig__Bus__ShardRequest req = MESHSIG__BUS__SHARD_REQUEST__INIT;
    req.gateway_id = "gw-1";
    req.session = session;
    req.namespace_ = "room";
    req.client_id = "";
    req.op_case = MESHSIG__BUS__SHARD_REQUEST__OP_JOIN;
    req.join = &j;
    ms_shard_handle(c, 0, &req);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *p = data, *end = data + size;
    char *method = field(&p, end), *path = field(&p, end), *auth = field(&p, end);
    enum evhttp_cmd_type cmd = EVHTTP_REQ_GET;
    for (size_t i = 0; i < sizeof methods / sizeof methods[0]; i++)
        if (!strcmp(method, methods[i].name))
            cmd = methods[i].cmd;
    ms_coord_t *c = fake_coord_new();
    join(c, "alice", 1);
    join(c, "bob", 2);
    /* No connection: evhttp_send_reply frees a request that has none. */
    struct evhttp_request *r = evhttp_request_new(NULL, NULL);
    if (!r)
        abort();
    if (*auth) {
        char bearer[64];
        snprintf(bearer, sizeof bearer, "Bearer %s", fake_cfg.admin_token);
        evhttp_add_header(evhttp_request_get_input_headers(r), "Authorization",
                          strcmp(auth, "@") ? auth : bearer);
    }
    evbuffer_add(evhttp_request_get_input_buffer(r), p, (size_t)(end - p));
    ms_admin_handle(c, r, cmd, path);
    fake_coord_free(c);
    free(method);
    free(path);
    free(auth);
    return 0;
}
