/* SPDX-License-Identifier: Apache-2.0 */
/* Policy rules: namespace patterns to policies, from the operator's --policy-file. */
#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "policy_rules.h"
#include "yamljson.h"

/* More would be a configuration generator's job, and every join walks them. */
#define MS_POLICY_RULES_MAX 1024

typedef struct {
    char *pattern;
    ms_policy_t policy;
} ms_policy_rule_t;

struct ms_policy_rules {
    char *source;
    ms_policy_t def;
    ms_policy_rule_t *rules;
    size_t n;
};

void ms_policy_rules_destroy(ms_policy_rules_t *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->n; i++)
        free(r->rules[i].pattern);
    free(r->rules);
    free(r->source);
    free(r);
}

ms_err_t ms_policy_rules_parse(const json_t *doc, ms_policy_rules_t **out, char *err, size_t errlen)
{
    char why[200];
    ms_policy_rules_t *r = calloc(1, sizeof(*r));
    if (!r)
        return MS_ERR_NOMEM;
    ms_policy_default(&r->def);
    if (!json_is_object(doc)) {
        snprintf(err, errlen, "the policy file must hold a mapping with 'default' and 'rules'");
        goto inval;
    }
    const char *key;
    json_t *val;
    json_object_foreach((json_t *)doc, key, val)
    {
        if (strcmp(key, "default") && strcmp(key, "rules")) {
            snprintf(err, errlen, "unknown top-level field '%s' (known: default, rules)", key);
            goto inval;
        }
    }
    json_t *def = json_object_get(doc, "default");
    if (def && ms_policy_parse(def, &r->def, why, sizeof(why)) != MS_OK) {
        snprintf(err, errlen, "default: %s", why);
        goto inval;
    }
    json_t *rules = json_object_get(doc, "rules");
    if (rules && !json_is_array(rules)) {
        snprintf(err, errlen, "rules must be a list");
        goto inval;
    }
    size_t n = json_array_size(rules);
    if (n > MS_POLICY_RULES_MAX) {
        snprintf(err, errlen, "%zu rules; at most %d", n, MS_POLICY_RULES_MAX);
        goto inval;
    }
    if (n && !(r->rules = calloc(n, sizeof(*r->rules))))
        goto nomem;
    for (size_t i = 0; i < n; i++) {
        json_t *rule = json_array_get(rules, i);
        json_t *match = json_object_get(rule, "match");
        json_t *pol = json_object_get(rule, "policy");
        if (!json_is_object(rule) || json_object_size(rule) != 2 || !json_is_string(match) ||
            !json_string_length(match) || !pol) {
            snprintf(err, errlen, "rule %zu: must be {match: PATTERN, policy: {...}}", i + 1);
            goto inval;
        }
        if (ms_policy_parse(pol, &r->rules[i].policy, why, sizeof(why)) != MS_OK) {
            snprintf(err, errlen, "rule %zu (%s): %s", i + 1, json_string_value(match), why);
            goto inval;
        }
        if (!(r->rules[i].pattern = strdup(json_string_value(match))))
            goto nomem;
        r->n = i + 1;
    }
    *out = r;
    return MS_OK;
nomem:
    ms_policy_rules_destroy(r);
    return MS_ERR_NOMEM;
inval:
    ms_policy_rules_destroy(r);
    return MS_ERR_INVAL;
}

static int ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && !strcmp(s + n - m, suffix);
}

ms_err_t ms_policy_rules_load(const char *path, ms_policy_rules_t **out, char *err, size_t errlen)
{
    char why[256];
    json_t *doc;
    if (ends_with(path, ".yaml") || ends_with(path, ".yml")) {
        doc = ms_yaml_load_file(path, why, sizeof(why));
    } else {
        json_error_t je;
        doc = json_load_file(path, JSON_REJECT_DUPLICATES, &je);
        if (!doc)
            snprintf(why, sizeof(why), "line %d: %s", je.line, je.text);
    }
    if (!doc) {
        snprintf(err, errlen, "%s: %s", path, why);
        return MS_ERR_INVAL;
    }
    ms_err_t e = ms_policy_rules_parse(doc, out, why, sizeof(why));
    json_decref(doc);
    if (e == MS_ERR_INVAL)
        snprintf(err, errlen, "%s: %s", path, why);
    if (e == MS_OK && !((*out)->source = strdup(path))) {
        ms_policy_rules_destroy(*out);
        *out = NULL;
        e = MS_ERR_NOMEM;
    }
    return e;
}

const ms_policy_t *ms_policy_rules_match(const ms_policy_rules_t *r, const char *ns, int *rule_out)
{
    for (size_t i = 0; i < r->n; i++) {
        if (fnmatch(r->rules[i].pattern, ns, 0) == 0) {
            if (rule_out)
                *rule_out = (int)i;
            return &r->rules[i].policy;
        }
    }
    if (rule_out)
        *rule_out = -1;
    return &r->def;
}

json_t *ms_policy_rules_to_json(const ms_policy_rules_t *r)
{
    json_t *rules = json_array();
    json_t *j = json_pack("{s:s?, s:o, s:o}", "source", r->source, "default",
                          ms_policy_to_json(&r->def), "rules", rules);
    if (!j)
        return NULL;
    for (size_t i = 0; i < r->n; i++)
        json_array_append_new(rules, json_pack("{s:s, s:o}", "match", r->rules[i].pattern, "policy",
                                               ms_policy_to_json(&r->rules[i].policy)));
    return j;
}
