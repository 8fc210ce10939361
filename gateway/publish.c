/* SPDX-License-Identifier: Apache-2.0 */
/* Requests to the owner of a shard: the bus envelope around a client message, join or leave. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "subject.h"
#include "log.h"

/* "<gateway-id>/<counter>", the next request id, into rid (cap >= sizeof(gw->id) + 21): built
 * by hand because every signal on the owner's path gets one, and printf's format parsing was a
 * few percent of such a request's instructions. */
static char *next_req_id(ms_gateway_t *gw, char *rid)
{
    char digits[20];
    size_t n = 0, idl = strlen(gw->id);
    for (uint64_t v = ++gw->next_req; v || !n; v /= 10)
        digits[n++] = (char)('0' + v % 10);
    memcpy(rid, gw->id, idl);
    rid[idl++] = '/';
    while (n)
        rid[idl++] = digits[--n];
    rid[idl] = '\0';
    return rid;
}

int ms_gw_publish_request(ms_gateway_t *gw, ms_session_t *s, Meshsig__Bus__ShardRequest *req,
                          int with_reply)
{
    char subj[160], rid[sizeof(gw->id) + 24];
    req->req_id = next_req_id(gw, rid);
    req->gateway_id = gw->id;
    req->session = s->id;
    req->namespace_ = s->ns;
    req->peer_id = s->peer_id ? s->peer_id : (char *)"";
    req->received_us = gw->frame_received_us;
    req->bus_version = MS_BUS_VERSION;
    req->epoch = ms_gw_inflight_epoch(gw, s->shard);
    size_t len = meshsig__bus__shard_request__get_packed_size(req);
    if (len > gw->pub_cap) {
        uint8_t *nb = realloc(gw->pub, len);
        if (!nb)
            return -1;
        gw->pub = nb;
        gw->pub_cap = len;
    }
    meshsig__bus__shard_request__pack(req, gw->pub);
    gw->pub_len = len;
    if (req->op_case == MESHSIG__BUS__SHARD_REQUEST__OP_JOIN) {
        /* Kept for re-sending: the owner answers a repeated join once. */
        free(s->join);
        const char *cid = req->client_id ? req->client_id : "";
        size_t cid_len = strlen(cid) + 1;
        if ((s->join = malloc(sizeof(*s->join) + len + cid_len))) {
            s->join->deadline_us = 0; /* hello.c sets it once this publish succeeds */
            s->join->len = (uint32_t)len;
            memcpy(s->join->buf, gw->pub, len);
            memcpy(s->join->buf + len, cid, cid_len);
        }
    }
    ms_subject_shard(subj, sizeof(subj), gw->cfg->prefix, s->shard);
    return ms_bus_publish(gw->bus, subj, with_reply ? gw->subject : NULL, gw->pub, len) == MS_OK
               ? 0
               : -1;
}

void ms_gw_publish_leave(ms_gateway_t *gw, ms_session_t *s, const char *reason)
{
    Meshsig__Bus__Leave l = MESHSIG__BUS__LEAVE__INIT;
    l.reason = (char *)reason;
    Meshsig__Bus__ShardRequest req = MESHSIG__BUS__SHARD_REQUEST__INIT;
    req.op_case = MESHSIG__BUS__SHARD_REQUEST__OP_LEAVE;
    req.leave = &l;
    if (ms_gw_publish_request(gw, s, &req, 0) != 0)
        ms_warn("leave of %s/%s not published", s->ns, s->peer_id ? s->peer_id : "?");
}

int ms_gw_publish_shard(ms_gateway_t *gw, uint32_t shard, Meshsig__Bus__ShardRequest *req,
                        int with_reply)
{
    char subj[160], rid[sizeof(gw->id) + 24];
    req->req_id = next_req_id(gw, rid);
    req->bus_version = MS_BUS_VERSION;
    size_t len = meshsig__bus__shard_request__get_packed_size(req);
    if (len > gw->pub_cap) {
        uint8_t *nb = realloc(gw->pub, len);
        if (!nb)
            return -1;
        gw->pub = nb;
        gw->pub_cap = len;
    }
    meshsig__bus__shard_request__pack(req, gw->pub);
    ms_subject_shard(subj, sizeof(subj), gw->cfg->prefix, shard);
    return ms_bus_publish(gw->bus, subj, with_reply ? gw->subject : NULL, gw->pub, len) == MS_OK
               ? 0
               : -1;
}
