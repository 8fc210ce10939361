/* SPDX-License-Identifier: Apache-2.0 */
/* Namespace policy: parse and print the JSON form used by the admin API. */
#include <stdio.h>
#include <string.h>

#include "policy.h"
#include "tree.h"

static const char *const positioning_names[] = {"random", "client", "geo", "network"};

void ms_policy_default(ms_policy_t *p)
{
    memset(p, 0, sizeof(*p));
    snprintf(p->topology, sizeof(p->topology), "fullmesh");
    p->params.k = 4;
    p->params.a = 1;
    p->params.b = 5;
    p->shuffle_period_ms = 30000;
}

void ms_policy_peerjs(ms_policy_t *p)
{
    ms_policy_default(p);
    snprintf(p->topology, sizeof(p->topology), "none");
    p->signal_any = 1;
    p->hold_ms = 5000;
}

static int get_uint(const json_t *j, const char *key, uint32_t lo, uint32_t hi, uint32_t *out,
                    char *err, size_t errlen)
{
    json_t *v = json_object_get(j, key);
    if (!v)
        return 0;
    if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi) {
        snprintf(err, errlen, "%s must be an integer from %u to %u", key, lo, hi);
        return -1;
    }
    *out = (uint32_t)json_integer_value(v);
    return 0;
}

static int get_num(const json_t *j, const char *key, double lo, double hi, double *out, char *err,
                   size_t errlen)
{
    json_t *v = json_object_get(j, key);
    if (!v)
        return 0;
    if (!json_is_number(v) || json_number_value(v) < lo || json_number_value(v) > hi) {
        snprintf(err, errlen, "%s must be a number from %g to %g", key, lo, hi);
        return -1;
    }
    *out = json_number_value(v);
    return 0;
}

ms_err_t ms_policy_parse(const json_t *j, ms_policy_t *p, char *err, size_t errlen)
{
    static const char *const known[] = {"topology",
                                        "positioning",
                                        "k",
                                        "cap",
                                        "overflow",
                                        "a",
                                        "b",
                                        "shufflePeriodMs",
                                        "signals",
                                        "duplicateIds",
                                        "fullmeshUpTo",
                                        "then",
                                        "hysteresis",
                                        "k1",
                                        "beforeSource",
                                        "sourceLeaves",
                                        "p2pTargets",
                                        "holdMs",
                                        NULL};
    ms_policy_default(p);
    if (!json_is_object(j)) {
        snprintf(err, errlen, "policy must be a JSON object");
        return MS_ERR_INVAL;
    }
    const char *key;
    json_t *val;
    json_object_foreach((json_t *)j, key, val)
    {
        int ok = 0;
        for (int i = 0; known[i]; i++)
            ok |= !strcmp(key, known[i]);
        if (!ok) {
            snprintf(err, errlen, "unknown policy field '%s'", key);
            return MS_ERR_INVAL;
        }
    }
    json_t *t = json_object_get(j, "topology");
    if (t) {
        if (!json_is_string(t) || !ms_topo_find(json_string_value(t))) {
            snprintf(err, errlen,
                     "unknown topology (known: fullmesh, delaunay, tree, spray, auto, none)");
            return MS_ERR_INVAL;
        }
        snprintf(p->topology, sizeof(p->topology), "%s", json_string_value(t));
    }
    if (!strcmp(p->topology, "auto")) {
        /* A full mesh while small, `then` beyond fullmeshUpTo peers. */
        json_t *th = json_object_get(j, "then");
        const ms_topo_ops_t *then = json_is_string(th) ? ms_topo_find(json_string_value(th)) : NULL;
        if (!then || then == &ms_topo_adaptive_ops || then == &ms_topo_fullmesh_ops ||
            then == &ms_topo_none_ops) {
            snprintf(err, errlen, "auto needs then: delaunay, tree or spray");
            return MS_ERR_INVAL;
        }
        p->params.then = then;
        p->params.up_to = 8;
        if (get_uint(j, "fullmeshUpTo", 2, 1000, &p->params.up_to, err, errlen))
            return MS_ERR_INVAL;
        p->params.hysteresis = p->params.up_to / 4 ? p->params.up_to / 4 : 1;
        if (get_uint(j, "hysteresis", 1, p->params.up_to - 1, &p->params.hysteresis, err, errlen))
            return MS_ERR_INVAL;
    } else if (json_object_get(j, "then") || json_object_get(j, "fullmeshUpTo") ||
               json_object_get(j, "hysteresis")) {
        snprintf(err, errlen, "then, fullmeshUpTo and hysteresis go with topology auto");
        return MS_ERR_INVAL;
    }
    /* A tree has a source slot (tree.h): the source is the root with fan-out k1;
     * viewers before it and after it has gone either hold its place or not. */
    if (!strcmp(p->topology, "tree")) {
        p->params.k1 = 10;
        if (get_uint(j, "k1", 1, 1000, &p->params.k1, err, errlen))
            return MS_ERR_INVAL;
        p->params.source = MS_TREE_SOURCE;
        const char *names[2] = {"beforeSource", "sourceLeaves"};
        const char *vals[2][2] = {{"form", "wait"}, {"promote", "wait"}};
        uint32_t flags[2] = {MS_TREE_HOLD_BEFORE, MS_TREE_HOLD_AFTER};
        for (int i = 0; i < 2; i++) {
            json_t *v = json_object_get(j, names[i]);
            if (!v)
                continue;
            if (!json_is_string(v) || (strcmp(json_string_value(v), vals[i][0]) &&
                                       strcmp(json_string_value(v), vals[i][1]))) {
                snprintf(err, errlen, "%s must be %s or %s", names[i], vals[i][0], vals[i][1]);
                return MS_ERR_INVAL;
            }
            if (!strcmp(json_string_value(v), "wait"))
                p->params.source |= flags[i];
        }
    } else if (json_object_get(j, "k1") || json_object_get(j, "beforeSource") ||
               json_object_get(j, "sourceLeaves")) {
        snprintf(err, errlen, "k1, beforeSource and sourceLeaves go with topology tree");
        return MS_ERR_INVAL;
    }
    json_t *pos = json_object_get(j, "positioning");
    if (pos) {
        int found = -1;
        for (int i = 0; i < 4 && json_is_string(pos); i++)
            if (!strcmp(json_string_value(pos), positioning_names[i]))
                found = i;
        if (found < 0) {
            snprintf(err, errlen, "positioning must be random, client, geo or network");
            return MS_ERR_INVAL;
        }
        p->positioning = (ms_positioning_t)found;
        p->params.geo = found == MS_POS_GEO;
    }
    if (get_uint(j, "k", 2, 64, &p->params.k, err, errlen) ||
        get_uint(j, "cap", 0, 1000000, &p->params.cap, err, errlen) ||
        get_num(j, "a", 0, 100, &p->params.a, err, errlen) ||
        get_num(j, "b", 0, 1000, &p->params.b, err, errlen) ||
        get_uint(j, "shufflePeriodMs", 100, 3600000, &p->shuffle_period_ms, err, errlen) ||
        get_uint(j, "holdMs", 0, 600000, &p->hold_ms, err, errlen))
        return MS_ERR_INVAL;
    json_t *o = json_object_get(j, "overflow");
    if (o) {
        if (!json_is_string(o) ||
            (strcmp(json_string_value(o), "reject") && strcmp(json_string_value(o), "wait"))) {
            snprintf(err, errlen, "overflow must be reject or wait");
            return MS_ERR_INVAL;
        }
        p->overflow_wait = !strcmp(json_string_value(o), "wait");
    }
    json_t *s = json_object_get(j, "signals");
    if (s) {
        if (!json_is_string(s) ||
            (strcmp(json_string_value(s), "neighbours") && strcmp(json_string_value(s), "any"))) {
            snprintf(err, errlen, "signals must be neighbours or any");
            return MS_ERR_INVAL;
        }
        p->signal_any = !strcmp(json_string_value(s), "any");
    }
    json_t *pt = json_object_get(j, "p2pTargets");
    if (pt) {
        if (!json_is_boolean(pt)) {
            snprintf(err, errlen, "p2pTargets must be true or false");
            return MS_ERR_INVAL;
        }
        p->p2p_targets = json_is_true(pt);
    }
    json_t *d = json_object_get(j, "duplicateIds");
    if (d) {
        if (!json_is_string(d) ||
            (strcmp(json_string_value(d), "reject") && strcmp(json_string_value(d), "replace"))) {
            snprintf(err, errlen, "duplicateIds must be reject or replace");
            return MS_ERR_INVAL;
        }
        p->id_replace = !strcmp(json_string_value(d), "replace");
    }
    return MS_OK;
}

json_t *ms_policy_to_json(const ms_policy_t *p)
{
    json_t *j = json_object();
    if (!j)
        return NULL;
    json_object_set_new(j, "topology", json_string(p->topology));
    json_object_set_new(j, "signals", json_string(p->signal_any ? "any" : "neighbours"));
    json_object_set_new(j, "duplicateIds", json_string(p->id_replace ? "replace" : "reject"));
    if (p->p2p_targets) /* off is the default; left out so that existing policies read the same */
        json_object_set_new(j, "p2pTargets", json_true());
    if (p->hold_ms)
        json_object_set_new(j, "holdMs", json_integer(p->hold_ms));
    const char *eng = p->topology;
    if (!strcmp(p->topology, "auto") && p->params.then) {
        eng = p->params.then->name;
        json_object_set_new(j, "then", json_string(eng));
        json_object_set_new(j, "fullmeshUpTo", json_integer(p->params.up_to));
        json_object_set_new(j, "hysteresis", json_integer(p->params.hysteresis));
    }
    if (!strcmp(eng, "delaunay"))
        json_object_set_new(j, "positioning", json_string(positioning_names[p->positioning]));
    if (!strcmp(eng, "tree")) {
        json_object_set_new(j, "k", json_integer(p->params.k));
        if (p->params.source) {
            json_object_set_new(j, "k1", json_integer(p->params.k1));
            json_object_set_new(
                j, "beforeSource",
                json_string(p->params.source & MS_TREE_HOLD_BEFORE ? "wait" : "form"));
            json_object_set_new(
                j, "sourceLeaves",
                json_string(p->params.source & MS_TREE_HOLD_AFTER ? "wait" : "promote"));
        }
    }
    if (!strcmp(p->topology, "fullmesh")) {
        json_object_set_new(j, "cap", json_integer(p->params.cap));
        json_object_set_new(j, "overflow", json_string(p->overflow_wait ? "wait" : "reject"));
    }
    if (!strcmp(eng, "spray")) {
        json_object_set_new(j, "a", json_real(p->params.a));
        json_object_set_new(j, "b", json_real(p->params.b));
        json_object_set_new(j, "shufflePeriodMs", json_integer(p->shuffle_period_ms));
    }
    return j;
}

int ms_policy_same(const ms_policy_t *a, const ms_policy_t *b)
{
    json_t *ja = ms_policy_to_json(a), *jb = ms_policy_to_json(b);
    int same = ja && jb && json_equal(ja, jb);
    json_decref(ja);
    json_decref(jb);
    return same;
}
