/* SPDX-License-Identifier: Apache-2.0 */
/* Admin overrides and the operator's policy file on a running coordinator: which policy a
 * namespace gets, load, reload on SIGHUP, list (policies.h).
 *
 * Every coordinator reads the same file; after a reload coordinator.c has
 * namespace.c re-apply the rules to the live namespaces this coordinator owns
 * that have no override, announcing only the edges that change.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "log.h"
#include "policy_rules.h"

ms_err_t ms_policies_load(ms_coord_t *c)
{
    char why[sizeof(c->policies.error) - 1];
    if (!c->cfg->policy_file || !*c->cfg->policy_file)
        return MS_OK;
    ms_policy_rules_t *r = NULL;
    ms_err_t err = ms_policy_rules_load(c->cfg->policy_file, &r, why, sizeof(why));
    if (err != MS_OK) {
        snprintf(c->policies.error, sizeof(c->policies.error), "%s",
                 err == MS_ERR_INVAL ? why : ms_err_str(err));
        ms_error("policy file: %s", c->policies.error);
        return err;
    }
    c->policies.error[0] = '\0';
    ms_policy_rules_t *old = c->policies.rules;
    c->policies.rules = r;
    ms_policy_rules_destroy(old);
    return MS_OK;
}

ms_err_t ms_policies_reload(ms_coord_t *c)
{
    if (!c->cfg->policy_file || !*c->cfg->policy_file) {
        ms_warn("SIGHUP: no --policy-file to reload");
        return MS_ERR_INVAL;
    }
    /* A bad file keeps the rules in force: a typo must not reset every namespace. */
    if (ms_policies_load(c) != MS_OK) {
        c->policies.n_reload_failures++;
        ms_warn("SIGHUP: policy file not reloaded; the previous rules stay in force");
        return MS_ERR_INVAL;
    }
    c->policies.n_reloads++;
    return MS_OK;
}

void ms_policies_cleanup(ms_coord_t *c)
{
    ms_policy_entry_t *e, *tmp;
    HASH_ITER(hh, c->policies.overrides, e, tmp)
    {
        HASH_DEL(c->policies.overrides, e);
        free(e->ns);
        free(e);
    }
    ms_policy_rules_destroy(c->policies.rules);
    c->policies.rules = NULL;
}

const ms_policy_t *ms_policies_for(ms_coord_t *c, const char *ns)
{
    static ms_policy_t def;
    static int def_ready;
    ms_policy_entry_t *e;
    HASH_FIND_STR(c->policies.overrides, ns, e);
    if (e)
        return &e->policy;
    static ms_policy_t peerjs;
    int rule = -1;
    const ms_policy_t *p =
        c->policies.rules ? ms_policy_rules_match(c->policies.rules, ns, &rule) : NULL;
    if (p && rule >= 0)
        return p;
    if (!def_ready) {
        ms_policy_default(&def);
        ms_policy_peerjs(&peerjs);
        def_ready = 1;
    }
    /* The gateway's PeerJS endpoint puts each key in peerjs.<key>: PeerJS
     * semantics there unless a rule of the operator's names the namespace. */
    if (!strncmp(ns, "peerjs.", 7))
        return &peerjs;
    return p ? p : &def;
}

int ms_policies_has_override(ms_coord_t *c, const char *ns)
{
    ms_policy_entry_t *e;
    HASH_FIND_STR(c->policies.overrides, ns, e);
    return e != NULL;
}

void ms_policies_override(ms_coord_t *c, const char *ns, const ms_policy_t *p)
{
    ms_policy_entry_t *e;
    HASH_FIND_STR(c->policies.overrides, ns, e);
    if (!e) {
        if (!(e = calloc(1, sizeof(*e))) || !(e->ns = strdup(ns))) {
            free(e);
            ms_error("out of memory keeping the policy of %s", ns);
            return;
        }
        HASH_ADD_KEYPTR(hh, c->policies.overrides, e->ns, strlen(e->ns), e);
    }
    e->policy = *p;
}

json_t *ms_policies_json(ms_coord_t *c)
{
    json_t *overrides = json_object();
    ms_policy_entry_t *e, *tmp;
    HASH_ITER(hh, c->policies.overrides, e, tmp)
    json_object_set_new(overrides, e->ns, ms_policy_to_json(&e->policy));
    json_t *def = NULL, *rules = NULL;
    if (c->policies.rules) {
        json_t *r = ms_policy_rules_to_json(c->policies.rules);
        def = json_incref(json_object_get(r, "default"));
        rules = json_incref(json_object_get(r, "rules"));
        json_decref(r);
    } else {
        ms_policy_t d;
        ms_policy_default(&d);
        def = ms_policy_to_json(&d);
        rules = json_array();
    }
    return json_pack("{s:s?, s:o, s:o, s:o, s:I, s:I, s:s?}", "file", c->cfg->policy_file,
                     "default", def, "rules", rules, "overrides", overrides, "reloads",
                     (json_int_t)c->policies.n_reloads, "reloadFailures",
                     (json_int_t)c->policies.n_reload_failures, "lastError",
                     c->policies.error[0] ? c->policies.error : NULL);
}
