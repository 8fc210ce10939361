/* SPDX-License-Identifier: Apache-2.0 */
/* Which policy a namespace gets: an admin override (PUT .../policy, kept in the cluster's KV
 * bucket), else the first matching rule of --policy-file, else the built-in default.
 *
 * This module only keeps and answers; namespace.c applies a policy to a live
 * namespace (ms_ns_policy_set, ms_ns_policies_reapply). Loop thread only.
 */
#ifndef MS_COORD_POLICIES_H
#define MS_COORD_POLICIES_H

#include <stdint.h>
#include <jansson.h>

#include "err.h"
#include "policy.h"
#include "table.h"

typedef struct ms_coord ms_coord_t;

/* An override set through the admin API, kept when its namespace empties. */
typedef struct ms_policy_entry {
    char *ns;
    ms_policy_t policy;
    UT_hash_handle hh;
} ms_policy_entry_t;

typedef struct {
    ms_policy_entry_t *overrides;  /* uthash by namespace name */
    struct ms_policy_rules *rules; /* --policy-file, or NULL */
    uint64_t n_reloads, n_reload_failures;
    char error[512]; /* why the last load failed, "" after a good one */
} ms_policies_t;

/* Loads --policy-file (nothing without one). Fails on a bad file. */
ms_err_t ms_policies_load(ms_coord_t *c);
/* SIGHUP: loads the file again; a bad file keeps the rules in force (MS_ERR_INVAL). */
ms_err_t ms_policies_reload(ms_coord_t *c);
void ms_policies_cleanup(ms_coord_t *c);
/* The policy namespace ns gets. The pointer lives until the next change. */
const ms_policy_t *ms_policies_for(ms_coord_t *c, const char *ns);
int ms_policies_has_override(ms_coord_t *c, const char *ns);
/* Keeps p as the admin override of ns. */
void ms_policies_override(ms_coord_t *c, const char *ns, const ms_policy_t *p);
/* {"file", "default", "rules", "overrides", ...}: GET /v1/policies. New reference. */
json_t *ms_policies_json(ms_coord_t *c);

#endif
