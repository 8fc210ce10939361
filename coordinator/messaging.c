/* SPDX-License-Identifier: Apache-2.0 */
/* Routes a member's messaging request to the module that owns it (messaging.h). */
#include "internal.h"

#define ERR(code) MESHSIG__V1__ERROR_CODE__##code

void ms_msg_handle(ms_coord_t *c, ms_ns_t *ns, ms_member_t *from, const char *cid,
                   Meshsig__V1__ClientMessage *cm)
{
    switch (cm->msg_case) {
    case MESHSIG__V1__CLIENT_MESSAGE__MSG_EMIT:
        ms_emit_handle(c, ns, from, cid, cm->emit);
        return;
    case MESHSIG__V1__CLIENT_MESSAGE__MSG_ACK:
        ms_emit_ack(c, ns, from, cid, cm->ack);
        return;
    case MESHSIG__V1__CLIENT_MESSAGE__MSG_ROOM:
        ms_room_handle(c, ns, from, cid, cm->room);
        return;
    case MESHSIG__V1__CLIENT_MESSAGE__MSG_SERVICE:
        ms_service_handle(c, ns, from, cid, cm->service);
        return;
    case MESHSIG__V1__CLIENT_MESSAGE__MSG_TOPIC:
        ms_topic_handle(c, ns, from, cid, cm->topic);
        return;
    case MESHSIG__V1__CLIENT_MESSAGE__MSG_STREAM:
        ms_stream_handle(c, ns, from, cid, cm->stream);
        return;
    default:
        ms_member_error(c, ns, from, cid, ERR(UNKNOWN_MESSAGE), "unsupported request");
        return;
    }
}
