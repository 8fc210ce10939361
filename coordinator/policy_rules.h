/* SPDX-License-Identifier: Apache-2.0 */
/* Policy rules: the operator's file of namespace patterns to policies (--policy-file).
 *
 * A rules set is a default policy and an ordered list of (pattern, policy); the
 * first pattern that matches a namespace name gives its policy. Patterns are
 * shell globs (fnmatch(3), `*` also matches dots), so `broadcast.*` is a prefix
 * and `*` matches everything. The file is YAML (.yaml, .yml) or JSON (anything
 * else); both read into the same JSON tree, so one parser checks them:
 *
 *     default: {topology: fullmesh, cap: 16}
 *     rules:
 *       - match: "broadcast.*"
 *         policy: {topology: tree, k: 4, k1: 10}
 *       - match: "geo.*"
 *         policy: {topology: delaunay, positioning: geo}
 *
 * A rules set is immutable once loaded: a reload (SIGHUP) loads a new one and
 * swaps it in whole, so a bad file leaves the running one in place.
 */
#ifndef MS_POLICY_RULES_H
#define MS_POLICY_RULES_H

#include <jansson.h>

#include "err.h"
#include "policy.h"

typedef struct ms_policy_rules ms_policy_rules_t;

/* Reads path (YAML or JSON by its ending). On MS_ERR_INVAL or MS_ERR_IO, err says
 * why, naming the rule at fault. */
ms_err_t ms_policy_rules_load(const char *path, ms_policy_rules_t **out, char *err, size_t errlen);
/* Builds a rules set from the JSON form shown above. */
ms_err_t ms_policy_rules_parse(const json_t *doc, ms_policy_rules_t **out, char *err,
                               size_t errlen);
void ms_policy_rules_destroy(ms_policy_rules_t *r);

/* The policy for a namespace: the first matching rule's, else the default.
 * rule_out, when not NULL, gets the index of the rule (-1 for the default).
 * The pointer lives as long as r. */
const ms_policy_t *ms_policy_rules_match(const ms_policy_rules_t *r, const char *ns, int *rule_out);

/* {"source": path, "default": {...}, "rules": [{"match": ..., "policy": {...}}, ...]}.
 * New reference. */
json_t *ms_policy_rules_to_json(const ms_policy_rules_t *r);

#endif
