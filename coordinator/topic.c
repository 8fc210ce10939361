/* SPDX-License-Identifier: Apache-2.0 */
/* Topics: peers subscribe to NATS-style patterns ('*' one token, '>' the rest) and receive what
 * any peer of the namespace publishes on a matching topic, once per subscriber. */
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "ptrindex.h"

#define ERR(code) MESHSIG__V1__ERROR_CODE__##code
#define MAX_PATTERN 256
#define MAX_SUBS_PER_NS 100000u

typedef struct {
    struct ms_member *member;
    char *pattern;
} ms_sub_t;

/* ns->mods->topics, allocated with the first subscription. */
struct ms_topics {
    ms_sub_t *subs; /* in subscription order: a publish is delivered in that order */
    size_t n, cap;
};

static ms_err_t sub_add(ms_ns_t *ns, ms_member_t *m, const char *pattern)
{
    ms_ns_mods_t *mods = ms_ns_mods_get(ns);
    ms_member_rare_t *x = ms_member_rare_get(m);
    if (!mods || !x || (!mods->topics && !(mods->topics = calloc(1, sizeof(*mods->topics)))))
        return MS_ERR_NOMEM;
    struct ms_topics *t = mods->topics;
    if (t->n == t->cap) {
        size_t ncap = t->cap ? t->cap * 2 : 16;
        ms_sub_t *nv = realloc(t->subs, ncap * sizeof(*nv));
        if (!nv)
            return MS_ERR_NOMEM;
        t->subs = nv;
        t->cap = ncap;
    }
    char *copy = strdup(pattern);
    if (!copy)
        return MS_ERR_NOMEM;
    t->subs[t->n++] = (ms_sub_t){.member = m, .pattern = copy};
    x->n_subs++;
    return MS_OK;
}

/* m's subscription to pattern: its index, or t->n (also when t is NULL: 0). A member without
 * subscriptions walks nothing; one with some, until the last of them. */
static size_t sub_find(const struct ms_topics *t, const ms_member_t *m, const char *pattern)
{
    size_t n = t ? t->n : 0;
    uint32_t left = ms_member_rare(m)->n_subs;
    for (size_t i = 0; left && i < n; i++)
        if (t->subs[i].member == m) {
            if (!strcmp(t->subs[i].pattern, pattern))
                return i;
            left--;
        }
    return n;
}

/* Subscription i goes (the last takes its place). */
static void sub_remove(struct ms_topics *t, size_t i)
{
    if (t->subs[i].member->rare)
        t->subs[i].member->rare->n_subs--;
    free(t->subs[i].pattern);
    t->subs[i] = t->subs[--t->n];
}

/* The members one publish has delivered to: a set by pointer (ptrindex.h mixes the hash). */
static uint64_t member_addr(const void *rec)
{
    return (uint64_t)(uintptr_t)rec;
}

static int same_member(const void *rec, const void *key)
{
    return rec == key;
}

/* NATS-style subject tokens: '*' matches one token, '>' (last) one or more. */
static int pattern_valid(const char *p, int wildcards)
{
    size_t n = strlen(p);
    if (n == 0 || n > MAX_PATTERN)
        return 0;
    const char *tok = p;
    for (;;) {
        const char *dot = strchr(tok, '.');
        size_t tl = dot ? (size_t)(dot - tok) : strlen(tok);
        if (tl == 0)
            return 0;
        for (size_t i = 0; i < tl; i++) {
            if (tok[i] == '*' || tok[i] == '>') {
                if (!wildcards || tl != 1)
                    return 0;
                if (tok[i] == '>' && dot)
                    return 0;
            }
            if ((unsigned char)tok[i] <= ' ')
                return 0;
        }
        if (!dot)
            return 1;
        tok = dot + 1;
    }
}

static int pattern_match(const char *pat, const char *subj)
{
    for (;;) {
        const char *pd = strchr(pat, '.'), *sd = strchr(subj, '.');
        size_t pl = pd ? (size_t)(pd - pat) : strlen(pat);
        size_t sl = sd ? (size_t)(sd - subj) : strlen(subj);
        if (pl == 1 && pat[0] == '>')
            return 1;
        if (!(pl == 1 && pat[0] == '*') && (pl != sl || strncmp(pat, subj, pl)))
            return 0;
        if (!pd || !sd)
            return !pd && !sd;
        pat = pd + 1;
        subj = sd + 1;
    }
}

int ms_topic_pattern_ok(const char *pattern)
{
    return pattern_valid(pattern, 1);
}

ms_err_t ms_topic_subscribe(ms_ns_t *ns, ms_member_t *m, const char *pattern)
{
    struct ms_topics *t = ms_ns_mods(ns)->topics;
    if (t && sub_find(t, m, pattern) < t->n)
        return MS_OK;
    if (t && t->n >= MAX_SUBS_PER_NS)
        return MS_ERR_FULL;
    return sub_add(ns, m, pattern);
}

void ms_topic_unsubscribe(ms_ns_t *ns, const ms_member_t *m, const char *pattern)
{
    struct ms_topics *t = ms_ns_mods(ns)->topics;
    size_t i = sub_find(t, m, pattern);
    if (t && i < t->n)
        sub_remove(t, i);
}

int ms_topic_name_ok(const char *topic)
{
    return pattern_valid(topic, 0);
}

size_t ms_topic_publish(ms_coord_t *c, ms_ns_t *ns, const char *from, const char *topic,
                        Meshsig__V1__Value *data)
{
    Meshsig__V1__TopicPublish out = MESHSIG__V1__TOPIC_PUBLISH__INIT;
    out.topic = (char *)topic;
    out.data = data;
    out.from = (char *)(from ? from : "");
    Meshsig__V1__Topic to = MESHSIG__V1__TOPIC__INIT;
    to.op_case = MESHSIG__V1__TOPIC__OP_PUBLISH;
    to.publish = &out;
    Meshsig__V1__ServerMessage sm = MESHSIG__V1__SERVER_MESSAGE__INIT;
    sm.msg_case = MESHSIG__V1__SERVER_MESSAGE__MSG_TOPIC;
    sm.topic = &to;
    /* One delivery per subscriber even when several of its patterns match: those delivered
     * to are in a set (before: each match walked the subscriptions before it, O(n^2)). A
     * member with one subscription cannot be a repeat. */
    const struct ms_topics *t_ = ms_ns_mods(ns)->topics;
    size_t n = 0;
    ms_pidx_t seen;
    int walk = 0;
    ms_pidx_init(&seen, member_addr);
    for (size_t i = 0; t_ && i < t_->n; i++) {
        const ms_member_t *m = t_->subs[i].member;
        if (!pattern_match(t_->subs[i].pattern, topic))
            continue;
        if (ms_member_rare(m)->n_subs > 1) {
            int dup = 0;
            if (!walk) {
                dup = ms_pidx_find(&seen, member_addr(m), same_member, m) != NULL;
                if (!dup && ms_pidx_add(&seen, (void *)m) != 0)
                    walk = 1; /* out of memory for the set: from then on, the walk before i */
            }
            for (size_t k = 0; walk && k < i && !dup; k++)
                dup = t_->subs[k].member == m && pattern_match(t_->subs[k].pattern, topic);
            if (dup)
                continue;
        }
        ms_deliver(c, ns, m, &sm);
        n++;
    }
    ms_pidx_cleanup(&seen);
    c->msg.n_publishes++;
    return n;
}

void ms_topic_handle(ms_coord_t *c, ms_ns_t *ns, ms_member_t *from, const char *cid,
                     Meshsig__V1__Topic *t)
{
    switch (t->op_case) {
    case MESHSIG__V1__TOPIC__OP_SUBSCRIBE: {
        const char *pat = t->subscribe->pattern;
        if (!pattern_valid(pat, 1)) {
            ms_member_error(c, ns, from, cid, ERR(BAD_REQUEST),
                            "bad pattern: 1 to 256 bytes of dot-separated tokens, '*' for "
                            "one token, '>' last");
            return;
        }
        struct ms_topics *t_ = ms_ns_mods(ns)->topics;
        if (t_ && sub_find(t_, from, pat) < t_->n) {
            ms_send_ok(c, ns, from, cid);
            return;
        }
        if (t_ && t_->n >= MAX_SUBS_PER_NS) {
            ms_member_error(c, ns, from, cid, ERR(RATE_LIMITED),
                            "too many subscriptions in this namespace (at most %u)",
                            MAX_SUBS_PER_NS);
            return;
        }
        if (sub_add(ns, from, pat) != MS_OK) {
            ms_member_error(c, ns, from, cid, ERR(INTERNAL), "out of memory");
            return;
        }
        ms_send_ok(c, ns, from, cid);
        return;
    }
    case MESHSIG__V1__TOPIC__OP_UNSUBSCRIBE: {
        struct ms_topics *t_ = ms_ns_mods(ns)->topics;
        size_t i = sub_find(t_, from, t->unsubscribe->pattern);
        if (t_ && i < t_->n) {
            sub_remove(t_, i);
            ms_send_ok(c, ns, from, cid);
            return;
        }
        ms_member_error(c, ns, from, cid, ERR(BAD_REQUEST), "not subscribed to %s",
                        t->unsubscribe->pattern);
        return;
    }
    case MESHSIG__V1__TOPIC__OP_PUBLISH: {
        if (!pattern_valid(t->publish->topic, 0)) {
            ms_member_error(c, ns, from, cid, ERR(BAD_REQUEST),
                            "bad topic: 1 to 256 bytes of dot-separated tokens, no wildcards");
            return;
        }
        ms_topic_publish(c, ns, from->id, t->publish->topic, t->publish->data);
        ms_send_ok(c, ns, from, cid);
        return;
    }
    default:
        ms_member_error(c, ns, from, cid, ERR(BAD_REQUEST),
                        "topic takes subscribe, unsubscribe or publish");
        return;
    }
}

/* A member without subscriptions (most) costs nothing; one with some, a walk until its last. */
static void member_gone(ms_coord_t *c, ms_ns_t *ns, ms_member_t *m)
{
    (void)c;
    struct ms_topics *t = ms_ns_mods(ns)->topics;
    for (size_t i = 0; t && m->rare && m->rare->n_subs && i < t->n;) {
        if (t->subs[i].member == m)
            sub_remove(t, i);
        else
            i++;
    }
}

static void cleanup(ms_ns_t *ns)
{
    struct ms_topics *t = ms_ns_mods(ns)->topics;
    if (!t)
        return;
    for (size_t i = 0; i < t->n; i++)
        free(t->subs[i].pattern);
    free(t->subs);
    free(t);
    ns->mods->topics = NULL;
}

/* Takeover rebuild: the subscriptions its gateway reported. */
static ms_err_t restore(ms_ns_t *ns, ms_member_t *m, const Meshsig__Bus__SessionReport *sr)
{
    for (size_t i = 0; i < sr->n_subscriptions; i++) {
        if (!pattern_valid(sr->subscriptions[i], 1) ||
            (ms_ns_mods(ns)->topics && ms_ns_mods(ns)->topics->n >= MAX_SUBS_PER_NS))
            continue;
        if (sub_add(ns, m, sr->subscriptions[i]) != MS_OK)
            return MS_ERR_NOMEM;
    }
    return MS_OK;
}

const ms_ns_hooks_t ms_topic_hooks = {
    .name = "topic", .cleanup = cleanup, .member_gone = member_gone, .restore = restore};
