/* SPDX-License-Identifier: Apache-2.0 */
/* Services: peers register as providers of a name; calls go round robin to a provider and
 * its reply back to the caller under the caller's call id (pending.c keeps the wait). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define ERR(code) MESHSIG__V1__ERROR_CODE__##code

/* ns->mods->services: a uthash of these by name. A service exists while it has providers. */
typedef struct ms_service {
    char *name;
    struct ms_member **providers;
    size_t n, cap, next; /* next: round-robin cursor */
    UT_hash_handle hh;
} ms_service_t;

static ms_service_t *service_find(ms_ns_t *ns, const char *name)
{
    ms_service_t *s;
    HASH_FIND_STR(ms_ns_mods(ns)->services, name, s);
    return s;
}

/* s into m's list of services it provides (rare->services). */
static ms_err_t provided_add(ms_member_t *m, ms_service_t *s)
{
    ms_member_rare_t *x = ms_member_rare_get(m);
    if (!x)
        return MS_ERR_NOMEM;
    if (x->n_services == x->cap_services) {
        uint32_t ncap = x->cap_services ? x->cap_services * 2 : 4;
        ms_service_t **nv = realloc(x->services, ncap * sizeof(*nv));
        if (!nv)
            return MS_ERR_NOMEM;
        x->services = nv;
        x->cap_services = ncap;
    }
    x->services[x->n_services++] = s;
    return MS_OK;
}

static void provided_remove(ms_member_t *m, const ms_service_t *s)
{
    ms_member_rare_t *x = m->rare;
    for (uint32_t i = 0; x && i < x->n_services; i++)
        if (x->services[i] == s) {
            x->services[i] = x->services[--x->n_services];
            return;
        }
}

static void service_free(ms_ns_t *ns, ms_service_t *s)
{
    HASH_DEL(ns->mods->services, s);
    free(s->name);
    free(s->providers);
    free(s);
}

/* Adds m to the providers of service name (created if absent); nothing when it is one. */
static ms_err_t service_add(ms_ns_t *ns, const char *name, ms_member_t *m)
{
    ms_service_t *s = service_find(ns, name);
    if (!s) {
        ms_ns_mods_t *mods = ms_ns_mods_get(ns);
        if (!mods || !(s = calloc(1, sizeof(*s))) || !(s->name = strdup(name))) {
            free(s);
            return MS_ERR_NOMEM;
        }
        HASH_ADD_KEYPTR(hh, mods->services, s->name, strlen(s->name), s);
    }
    for (size_t i = 0; i < s->n; i++)
        if (s->providers[i] == m)
            return MS_OK;
    if (s->n == s->cap) {
        size_t ncap = s->cap ? s->cap * 2 : 4;
        ms_member_t **nv = realloc(s->providers, ncap * sizeof(*nv));
        if (!nv)
            goto nomem;
        s->providers = nv;
        s->cap = ncap;
    }
    if (provided_add(m, s) != MS_OK)
        goto nomem;
    s->providers[s->n++] = m;
    return MS_OK;
nomem:
    if (s->n == 0)
        service_free(ns, s);
    return MS_ERR_NOMEM;
}

/* m out of s's providers (and s out of m's list unless m is leaving: member_gone drops the
 * whole list). */
static int service_remove(ms_ns_t *ns, ms_service_t *s, ms_member_t *m, int gone)
{
    for (size_t i = 0; i < s->n; i++) {
        if (s->providers[i] != m)
            continue;
        memmove(&s->providers[i], &s->providers[i + 1], (s->n - i - 1) * sizeof(*s->providers));
        s->n--;
        if (!gone)
            provided_remove(m, s);
        if (s->n == 0)
            service_free(ns, s);
        return 1;
    }
    return 0;
}

ms_err_t ms_service_provide(ms_ns_t *ns, const char *name, ms_member_t *m)
{
    return service_add(ns, name, m);
}

void ms_service_withdraw(ms_ns_t *ns, const char *name, ms_member_t *m)
{
    ms_service_t *s = service_find(ns, name);
    if (s)
        service_remove(ns, s, m, 0);
}

void ms_service_handle(ms_coord_t *c, ms_ns_t *ns, ms_member_t *from, const char *cid,
                       Meshsig__V1__Service *svc)
{
    switch (svc->op_case) {
    case MESHSIG__V1__SERVICE__OP_REGISTER: {
        const char *name = svc->register_->service;
        if (!ms_msg_name_ok(name)) {
            ms_member_error(c, ns, from, cid, ERR(BAD_REQUEST), "service names are 1 to 128 bytes");
            return;
        }
        if (service_add(ns, name, from) != MS_OK) {
            ms_member_error(c, ns, from, cid, ERR(INTERNAL), "out of memory");
            return;
        }
        ms_send_ok(c, ns, from, cid);
        return;
    }
    case MESHSIG__V1__SERVICE__OP_UNREGISTER: {
        ms_service_t *s = service_find(ns, svc->unregister->service);
        if (!s || !service_remove(ns, s, from, 0)) {
            ms_member_error(c, ns, from, cid, ERR(BAD_REQUEST), "you do not provide %s",
                            svc->unregister->service);
            return;
        }
        ms_send_ok(c, ns, from, cid);
        return;
    }
    case MESHSIG__V1__SERVICE__OP_CALL: {
        Meshsig__V1__ServiceCall *call = svc->call;
        uint32_t timeout_ms = 0;
        if (!*call->call_id) {
            ms_member_error(c, ns, from, cid, ERR(BAD_REQUEST), "service.call needs a callId");
            return;
        }
        if (!ms_pending_timeout(call->timeout_ms, &timeout_ms)) {
            ms_member_error(c, ns, from, cid, ERR(BAD_REQUEST),
                            "service.call.timeoutMs %u is over the %u ms limit", call->timeout_ms,
                            MS_PENDING_MAX_TIMEOUT_MS);
            return;
        }
        ms_service_t *s = service_find(ns, call->service);
        if (!s || s->n == 0) {
            /* Every outcome of a call is its reply, keyed by callId, whatever the cause:
             * no provider now is SERVICE_UNAVAILABLE there, as a provider leaving is. */
            ms_send_ok(c, ns, from, cid);
            char text[256];
            snprintf(text, sizeof(text), "no provider for service %s", call->service);
            ms_pending_outcome_error(c, ns, from, MS_PENDING_CALL, call->call_id, NULL,
                                     ERR(SERVICE_UNAVAILABLE), text);
            return;
        }
        /* Round robin over the providers. */
        ms_member_t *prov = s->providers[s->next++ % s->n];
        ms_pending_t *p = ms_pending_add_call(c, ns, from->id, prov->id, call->call_id, timeout_ms);
        if (!p) {
            ms_member_error(
                c, ns, from, cid, ERR(RATE_LIMITED),
                "too many pending acks and calls (at most %u per peer, %u per namespace)",
                MS_PENDING_MAX_PER_PEER, MS_PENDING_MAX_PER_NS);
            return;
        }
        Meshsig__V1__ServiceCall out = *call;
        out.call_id = p->key;
        out.from = from->id;
        Meshsig__V1__Service so = MESHSIG__V1__SERVICE__INIT;
        so.op_case = MESHSIG__V1__SERVICE__OP_CALL;
        so.call = &out;
        Meshsig__V1__ServerMessage sm = MESHSIG__V1__SERVER_MESSAGE__INIT;
        sm.msg_case = MESHSIG__V1__SERVER_MESSAGE__MSG_SERVICE;
        sm.service = &so;
        c->msg.n_calls++;
        ms_deliver(c, ns, prov, &sm);
        ms_send_ok_result(c, ns, from, cid, 1, 0);
        return;
    }
    case MESHSIG__V1__SERVICE__OP_REPLY: {
        Meshsig__V1__ServiceReply *rep = svc->reply;
        ms_pending_t *p = ms_pending_find(ns, rep->call_id);
        if (!p || p->kind != MS_PENDING_CALL || strcmp(p->to->id, from->id)) {
            ms_member_error(c, ns, from, cid, ERR(BAD_REQUEST),
                            "no call %s is waiting for your reply (it may have timed out)",
                            rep->call_id);
            return;
        }
        ms_member_t *caller = ms_ns_party(ns, p->from->id);
        if (caller) {
            Meshsig__V1__ServiceReply out = *rep;
            out.call_id = p->orig_id;
            Meshsig__V1__Service so = MESHSIG__V1__SERVICE__INIT;
            so.op_case = MESHSIG__V1__SERVICE__OP_REPLY;
            so.reply = &out;
            Meshsig__V1__ServerMessage sm = MESHSIG__V1__SERVER_MESSAGE__INIT;
            sm.msg_case = MESHSIG__V1__SERVER_MESSAGE__MSG_SERVICE;
            sm.service = &so;
            ms_deliver(c, ns, caller, &sm);
        }
        ms_pending_done(ns, p);
        ms_send_ok(c, ns, from, cid);
        return;
    }
    default:
        ms_member_error(c, ns, from, cid, ERR(BAD_REQUEST),
                        "service takes register, unregister, call or reply");
        return;
    }
}

/* m's services only (nobody is told: no order to keep). */
static void member_gone(ms_coord_t *c, ms_ns_t *ns, ms_member_t *m)
{
    (void)c;
    ms_member_rare_t *x = m->rare;
    if (!x || !x->n_services)
        return;
    for (uint32_t i = 0; i < x->n_services; i++)
        service_remove(ns, x->services[i], m, 1);
    free(x->services);
    x->services = NULL;
    x->n_services = x->cap_services = 0;
}

static void cleanup(ms_ns_t *ns)
{
    ms_service_t *s, *stmp;
    HASH_ITER(hh, ms_ns_mods(ns)->services, s, stmp)
    {
        HASH_DEL(ns->mods->services, s);
        free(s->name);
        free(s->providers);
        free(s);
    }
}

/* Takeover rebuild: a provider again of what its gateway reported. */
static ms_err_t restore(ms_ns_t *ns, ms_member_t *m, const Meshsig__Bus__SessionReport *sr)
{
    for (size_t i = 0; i < sr->n_services; i++)
        if (ms_msg_name_ok(sr->services[i]) && service_add(ns, sr->services[i], m) != MS_OK)
            return MS_ERR_NOMEM;
    return MS_OK;
}

const ms_ns_hooks_t ms_service_hooks = {
    .name = "service", .cleanup = cleanup, .member_gone = member_gone, .restore = restore};
