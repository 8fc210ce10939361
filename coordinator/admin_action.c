/* SPDX-License-Identifier: Apache-2.0 */
/* Operator actions of the admin API: kick (with a ban), emit, publish, close a namespace.
 *
 * POST /v1/namespaces/{ns}/{kick|emit|publish|close} with a JSON body. The coordinator asked
 * checks the body, writes an audit line and records a ban (here); admin_cluster.c carries the
 * action out (ms_admin_action_run) if it serves the namespace, or hands the checked action
 * (AdminQuery ACTION) to every coordinator: the owner carries it out and answers, and every
 * one records the ban.
 * Each side logs one "audit:" line as a JSON object, so that an operator's text cannot forge
 * log lines.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <event2/http.h>

#include "clock.h"
#include "codec.h"
#include "internal.h"
#include "log.h"

#define MAX_REASON 256
#define MAX_BY 128
#define MAX_PEER 128

static int str_ok(const json_t *v, size_t max, int may_be_empty)
{
    if (!json_is_string(v))
        return 0;
    size_t n = json_string_length(v);
    return n <= max && (may_be_empty || n > 0) && strlen(json_string_value(v)) == n;
}

/* Checks body for op and builds the action {"op", ...} (new reference), or NULL with why. */
static json_t *check_action(const char *op, const json_t *body, char *why, size_t cap)
{
    static const struct {
        const char *op;
        const char *fields[5];
    } ops[] = {
        {"kick", {"peer", "reason", "banS", "by", NULL}},
        {"emit", {"peer", "event", "data", "by", NULL}},
        {"publish", {"topic", "data", "by", NULL}},
        {"close", {"reason", "by", NULL}},
    };
    size_t k = 0;
    while (k < sizeof(ops) / sizeof(ops[0]) && strcmp(ops[k].op, op))
        k++;
    if (k == sizeof(ops) / sizeof(ops[0])) {
        snprintf(why, cap, "unknown action %s", op);
        return NULL;
    }
    if (!json_is_object(body)) {
        snprintf(why, cap, "the body must be a JSON object");
        return NULL;
    }
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)body, key, v)
    {
        int known = 0;
        for (int i = 0; ops[k].fields[i] && !known; i++)
            known = !strcmp(ops[k].fields[i], key);
        if (!known) {
            snprintf(why, cap, "%s takes no field %.64s", op, key);
            return NULL;
        }
    }
    const json_t *peer = json_object_get(body, "peer"), *reason = json_object_get(body, "reason");
    const json_t *ban = json_object_get(body, "banS"), *by = json_object_get(body, "by");
    const json_t *event = json_object_get(body, "event"), *topic = json_object_get(body, "topic");
    const json_t *data = json_object_get(body, "data");
    if ((!strcmp(op, "kick") || !strcmp(op, "emit")) && !str_ok(peer, MAX_PEER, 0)) {
        snprintf(why, cap, "peer: a peer id of 1 to %d characters", MAX_PEER);
        return NULL;
    }
    if (reason && !str_ok(reason, MAX_REASON, 1)) {
        snprintf(why, cap, "reason: a string of at most %d bytes", MAX_REASON);
        return NULL;
    }
    if (by && !str_ok(by, MAX_BY, 1)) {
        snprintf(why, cap, "by: a string of at most %d bytes (who acts)", MAX_BY);
        return NULL;
    }
    if (ban && (!json_is_integer(ban) || json_integer_value(ban) < 0 ||
                json_integer_value(ban) > MS_BAN_MAX_S)) {
        snprintf(why, cap, "banS: whole seconds, 0 to %ld", (long)MS_BAN_MAX_S);
        return NULL;
    }
    if (!strcmp(op, "emit") && (!str_ok(event, MS_MSG_MAX_NAME, 0))) {
        snprintf(why, cap, "event: a name of 1 to %d bytes", MS_MSG_MAX_NAME);
        return NULL;
    }
    if (!strcmp(op, "publish") &&
        (!json_is_string(topic) || !ms_topic_name_ok(json_string_value(topic)))) {
        snprintf(why, cap, "topic: dot-separated tokens, no wildcards");
        return NULL;
    }
    if (data) {
        /* The same limits as a client's data: what passes here can be delivered. */
        ProtobufCMessage *val = NULL;
        ms_codec_error_t cerr;
        if (ms_codec_from_jansson(&meshsig__v1__value__descriptor, data, &val, &cerr) != MS_OK) {
            snprintf(why, cap, "data: %s", cerr.message);
            return NULL;
        }
        ms_codec_free(val);
    }
    json_t *a = json_deep_copy(body);
    if (!a || json_object_set_new(a, "op", json_string(op))) {
        json_decref(a);
        snprintf(why, cap, "out of memory");
        return NULL;
    }
    return a;
}

static const char *str_or(const json_t *a, const char *key, const char *dflt)
{
    const char *s = json_string_value(json_object_get(a, key));
    return s && *s ? s : dflt;
}

/* One audit line: {"op", "ns", the action's fields, "from", "result", ...}. */
static void audit(ms_coord_t *c, const char *ns, const json_t *action, const char *from,
                  const char *stage, int status)
{
    json_t *line = json_deep_copy(action);
    if (!line)
        return;
    json_object_del(line, "data"); /* what was said is the peers' business, not the log's */
    json_object_set_new(line, "ns", json_string(ns));
    json_object_set_new(line, "coordinator", json_string(c->id));
    json_object_set_new(line, "stage", json_string(stage));
    if (from)
        json_object_set_new(line, "from", json_string(from));
    if (status)
        json_object_set_new(line, "status", json_integer(status));
    char *text = json_dumps(line, JSON_COMPACT | JSON_SORT_KEYS);
    if (text)
        ms_info("audit: %s", text);
    free(text);
    json_decref(line);
}

void ms_admin_action_ban(ms_coord_t *c, const char *ns, const json_t *action)
{
    long ban_s = (long)json_integer_value(json_object_get(action, "banS"));
    const char *op = str_or(action, "op", "");
    if ((strcmp(op, "kick") && strcmp(op, "ban")) || ban_s <= 0)
        return;
    const char *peer = str_or(action, "peer", "");
    ms_err_t err =
        ms_ban_add(&c->bans, ns, peer, ban_s, str_or(action, "reason", "banned by an operator"),
                   ms_clock_mono_ms());
    if (err != MS_OK)
        ms_warn("ban of %s/%s not kept: %s", ns, peer, ms_err_str(err));
}

json_t *ms_admin_action_absent(const json_t *action)
{
    long ban_s = (long)json_integer_value(json_object_get(action, "banS"));
    if (!strcmp(str_or(action, "op", ""), "kick") && ban_s > 0)
        return json_pack("{s:i, s:b, s:I}", "status", 200, "kicked", 0, "bannedS",
                         (json_int_t)ban_s);
    return json_pack("{s:i, s:s}", "status", 404, "error", "no such namespace (it has no peers)");
}

json_t *ms_admin_action_run(ms_coord_t *c, const char *name, const json_t *action)
{
    const char *op = str_or(action, "op", "");
    ms_ns_t *ns = ms_ns_find(c, name);
    json_t *res = NULL;
    if (!ns) {
        res = ms_admin_action_absent(action);
    } else if (!strcmp(op, "close")) {
        size_t n = ms_member_close_ns(c, ns, str_or(action, "reason", "closed by an operator"));
        res = json_pack("{s:i, s:b, s:I}", "status", 200, "closed", 1, "peers", (json_int_t)n);
    } else if (!strcmp(op, "publish")) {
        ProtobufCMessage *val = NULL;
        ms_codec_error_t cerr;
        const json_t *data = json_object_get(action, "data");
        if (data && ms_codec_from_jansson(&meshsig__v1__value__descriptor, data, &val, &cerr))
            return json_pack("{s:i, s:s}", "status", 400, "error", cerr.message);
        size_t n =
            ms_topic_publish(c, ns, "", str_or(action, "topic", ""), (Meshsig__V1__Value *)val);
        ms_codec_free(val);
        res = json_pack("{s:i, s:I}", "status", 200, "subscribers", (json_int_t)n);
    } else {
        ms_member_t *m = ms_ns_member(ns, str_or(action, "peer", ""));
        long ban_s = (long)json_integer_value(json_object_get(action, "banS"));
        if (!m && !strcmp(op, "kick") && ban_s > 0) {
            res = json_pack("{s:i, s:b, s:I}", "status", 200, "kicked", 0, "bannedS",
                            (json_int_t)ban_s);
        } else if (!m) {
            res = json_pack("{s:i, s:s}", "status", 404, "error", "no such peer in the namespace");
        } else if (!strcmp(op, "kick")) {
            ms_member_kick(c, ns, m, str_or(action, "reason", "kicked by an operator"));
            res = json_pack("{s:i, s:b, s:I}", "status", 200, "kicked", 1, "bannedS",
                            (json_int_t)ban_s);
        } else if (m->detached_ms) {
            res = json_pack("{s:i, s:s}", "status", 409, "error",
                            "the peer's gateway is gone; it may resume elsewhere");
        } else {
            /* An emit from the server: no `from`, no ack asked. */
            ProtobufCMessage *val = NULL;
            ms_codec_error_t cerr;
            const json_t *data = json_object_get(action, "data");
            if (data && ms_codec_from_jansson(&meshsig__v1__value__descriptor, data, &val, &cerr))
                return json_pack("{s:i, s:s}", "status", 400, "error", cerr.message);
            Meshsig__V1__Emit em = MESHSIG__V1__EMIT__INIT;
            em.event = (char *)str_or(action, "event", "");
            em.data = (Meshsig__V1__Value *)val;
            Meshsig__V1__ServerMessage sm = MESHSIG__V1__SERVER_MESSAGE__INIT;
            sm.msg_case = MESHSIG__V1__SERVER_MESSAGE__MSG_EMIT;
            sm.emit = &em;
            ms_deliver(c, ns, m, &sm);
            ms_codec_free(val);
            res = json_pack("{s:i, s:b}", "status", 200, "delivered", 1);
        }
    }
    ms_outbox_flush(&c->outbox);
    return res;
}

void ms_admin_action_audit(ms_coord_t *c, const char *ns, const json_t *action, const char *stage,
                           int status)
{
    audit(c, ns, action, NULL, stage, status);
}

json_t *ms_admin_action_check(ms_coord_t *c, struct evhttp_request *r, const char *name,
                              const char *op, const json_t *body)
{
    char why[200], from[80] = "";
    struct evhttp_connection *evcon = evhttp_request_get_connection(r);
    if (evcon) {
        char *addr = NULL;
        ev_uint16_t port = 0;
        evhttp_connection_get_peer(evcon, &addr, &port);
        snprintf(from, sizeof(from), "%s:%u", addr ? addr : "?", (unsigned)port);
    }
    json_t *action = check_action(op, body, why, sizeof(why));
    if (!action) {
        json_t *line = json_pack("{s:s}", "op", op);
        audit(c, name, line, from, "refused", 400);
        json_decref(line);
        ms_admin_reply_json(c, r, 400, json_pack("{s:s}", "error", why));
        return NULL;
    }
    audit(c, name, action, from, "requested", 0);
    ms_admin_action_ban(c, name, action);
    return action;
}
