/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer target: namespace policy JSON (coordinator/policy.c), as the admin API's PUT and the
 * config file hand it over, and a parsed policy must survive its own JSON round trip. */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "policy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char why[256];
    ms_policy_t p, p2;
    json_t *j = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, NULL);
    if (!j)
        return 0;
    if (ms_policy_parse(j, &p, why, sizeof why) == MS_OK) {
        json_t *back = ms_policy_to_json(&p);
        if (!back)
            abort();
        /* What the admin API shows is accepted again, and means the same. */
        if (ms_policy_parse(back, &p2, why, sizeof why) != MS_OK)
            abort();
        json_t *again = ms_policy_to_json(&p2);
        if (!again || !json_equal(back, again))
            abort();
        json_decref(again);
        json_decref(back);
    }
    json_decref(j);
    return 0;
}
