/* SPDX-License-Identifier: Apache-2.0 */
/* The heartbeat: id, session count and start time on <prefix>.gw.heartbeat every second. */
#include <stdio.h>

#include "internal.h"
#include "subject.h"
#include "version.h"

static void on_heartbeat(lws_sorted_usec_list_t *sul)
{
    ms_gateway_t *gw = lws_container_of(sul, ms_gateway_t, sul_heartbeat);
    Meshsig__Bus__Heartbeat hb = MESHSIG__BUS__HEARTBEAT__INIT;
    hb.gateway_id = gw->id;
    hb.sessions = (uint32_t)gw->n_sessions;
    hb.started_ms = gw->started_ms;
    hb.bus_refused = gw->busver.refused;
    hb.release = (char *)ms_version();
    hb.bus_version = MS_BUS_VERSION;
    uint8_t buf[256];
    size_t len = meshsig__bus__heartbeat__get_packed_size(&hb);
    if (len <= sizeof(buf)) {
        meshsig__bus__heartbeat__pack(&hb, buf);
        ms_bus_publish(gw->bus, gw->hb_subject, NULL, buf, len);
    }
    lws_sul_schedule(gw->ctx, 0, &gw->sul_heartbeat, on_heartbeat, LWS_US_PER_SEC);
}

void ms_gw_heartbeat_start(ms_gateway_t *gw)
{
    ms_subject(gw->hb_subject, sizeof(gw->hb_subject), gw->cfg->prefix, MS_SUBJ_GW_HEARTBEAT, NULL);
    lws_sul_schedule(gw->ctx, 0, &gw->sul_heartbeat, on_heartbeat, 1);
}
