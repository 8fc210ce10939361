/* SPDX-License-Identifier: Apache-2.0 */
/* The operator's policy file on a running coordinator: load, reload on SIGHUP, list.
 *
 * A namespace's policy is, in order: an admin override (PUT .../policy, kept in
 * the cluster's KV bucket), the first matching rule of --policy-file, the
 * built-in default (ms_coord_policy_for). Every coordinator reads the same file;
 * a reload re-applies the rules to the live namespaces this coordinator owns
 * that have no override, announcing only the edges that change.
 */
#include <stdio.h>
#include <string.h>

#include "internal.h"
#include "log.h"
#include "policy_rules.h"

ms_err_t ms_coord_policies_load(ms_coord_t *c)
{
    char why[sizeof(c->policy_error) - 1];
    if (!c->cfg->policy_file || !*c->cfg->policy_file)
        return MS_OK;
    ms_policy_rules_t *r = NULL;
    ms_err_t err = ms_policy_rules_load(c->cfg->policy_file, &r, why, sizeof(why));
    if (err != MS_OK) {
        snprintf(c->policy_error, sizeof(c->policy_error), "%s",
                 err == MS_ERR_INVAL ? why : ms_err_str(err));
        ms_error("policy file: %s", c->policy_error);
        return err;
    }
    c->policy_error[0] = '\0';
    ms_policy_rules_t *old = c->rules;
    c->rules = r;
    ms_policy_rules_destroy(old);
    return MS_OK;
}

void ms_coord_policies_reload(ms_coord_t *c)
{
    if (!c->cfg->policy_file || !*c->cfg->policy_file) {
        ms_warn("SIGHUP: no --policy-file to reload");
        return;
    }
    /* A bad file keeps the rules in force: a typo must not reset every namespace. */
    if (ms_coord_policies_load(c) != MS_OK) {
        c->n_policy_reload_failures++;
        ms_warn("SIGHUP: policy file not reloaded; the previous rules stay in force");
        return;
    }
    c->n_policy_reloads++;
    size_t changed = 0, failed = 0;
    ms_ns_t *ns, *tmp;
    HASH_ITER(hh, c->namespaces, ns, tmp)
    {
        ms_policy_entry_t *e;
        HASH_FIND_STR(c->policies, ns->name, e);
        if (e)
            continue;
        const ms_policy_t *p = ms_policy_rules_match(c->rules, ns->name, NULL);
        if (ms_policy_same(&ns->policy, p))
            continue;
        if (ms_ns_set_policy(c, ns, p) == MS_OK)
            changed++;
        else
            failed++;
    }
    ms_info("SIGHUP: policy file %s reloaded; %zu live namespaces changed policy%s",
            c->cfg->policy_file, changed, failed ? ", some could not (see above)" : "");
}

json_t *ms_coord_policies_json(ms_coord_t *c)
{
    json_t *overrides = json_object();
    ms_policy_entry_t *e, *tmp;
    HASH_ITER(hh, c->policies, e, tmp)
    json_object_set_new(overrides, e->ns, ms_policy_to_json(&e->policy));
    json_t *def = NULL, *rules = NULL;
    if (c->rules) {
        json_t *r = ms_policy_rules_to_json(c->rules);
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
                     (json_int_t)c->n_policy_reloads, "reloadFailures",
                     (json_int_t)c->n_policy_reload_failures, "lastError",
                     c->policy_error[0] ? c->policy_error : NULL);
}
