/* SPDX-License-Identifier: Apache-2.0 */
/* A coordinator without NATS, JetStream or a lease, for the fuzz targets that drive its handlers.
 *
 * ms_coord_core_init builds what every module needs, as the unit tests do
 * (tests/unit/test_resync.c); here shard 0 of one is owned, with a lease that
 * never runs out; there is no bus (publishes fail, what handlers send stays in
 * the outbox), an inbox nothing pushes to (for /metrics), no offline store.
 * Logging is off: handlers log every refusal, which is what fuzzing causes.
 */
#ifndef MS_FUZZ_FAKECOORD_H
#define MS_FUZZ_FAKECOORD_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "internal.h"
#include "log.h"

static ms_coord_config_t fake_cfg = {.prefix = "meshsig",
                                     .admin_token = "fuzz-admin-token",
                                     .shards = 1,
                                     .resync_timeout_ms = 300,
                                     .offline_max_msgs = 100,
                                     .offline_max_age_s = 60};

static void no_wake(void *ud)
{
    (void)ud;
}

static ms_coord_t *fake_coord_new(void)
{
    static int logs_off;
    if (!logs_off) {
        /* Above every level. */
        ms_log_init("fuzz", (ms_log_level_t)(MS_LOG_ERROR + 1), 0);
        logs_off = 1;
    }
    ms_coord_t *c = calloc(1, sizeof(*c));
    if (!c || ms_coord_core_init(c, &fake_cfg, "fuzz") != MS_OK ||
        ms_mailbox_create(no_wake, NULL, &c->loop.inbox) != MS_OK)
        abort();
    snprintf(c->admin.reply_subject, sizeof(c->admin.reply_subject), "meshsig.admin.reply.fuzz");
    snprintf(c->loop.probe_subject, sizeof(c->loop.probe_subject), "meshsig.probe.fuzz");
    ms_shard_t *s = &c->cluster.shards[0];
    s->state = MS_SHARD_OWNED;
    s->rev = 1;
    s->epoch = 1;
    s->valid_until = UINT64_MAX / 2;
    return c;
}

static void fake_coord_free(ms_coord_t *c)
{
    ms_admin_cluster_cleanup(c);
    ms_coord_core_cleanup(c);
    ms_mailbox_destroy(c->loop.inbox);
    free(c);
}

#endif
