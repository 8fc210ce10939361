/* SPDX-License-Identifier: Apache-2.0 */
/* The common ServerMessage builders (servermsg.h). */
#include "servermsg.h"

Meshsig__V1__ServerMessage *ms_sm_error(ms_sm_error_t *b, const char *id,
                                        Meshsig__V1__ErrorCode code, const char *text)
{
    meshsig__v1__error__init(&b->error);
    b->error.code = code;
    b->error.message = (char *)(text ? text : "");
    meshsig__v1__server_message__init(&b->sm);
    b->sm.id = (char *)(id ? id : ""); /* protobuf-c fields are not const */
    b->sm.msg_case = MESHSIG__V1__SERVER_MESSAGE__MSG_ERROR;
    b->sm.error = &b->error;
    return &b->sm;
}

Meshsig__V1__ServerMessage *ms_sm_ok(ms_sm_ok_t *b, const char *id)
{
    meshsig__v1__ok__init(&b->ok);
    meshsig__v1__server_message__init(&b->sm);
    b->sm.id = (char *)(id ? id : "");
    b->sm.msg_case = MESHSIG__V1__SERVER_MESSAGE__MSG_OK;
    b->sm.ok = &b->ok;
    return &b->sm;
}

Meshsig__V1__ServerMessage *ms_sm_signal(ms_sm_signal_t *b, const char *from,
                                         Meshsig__V1__Value *payload)
{
    meshsig__v1__signal__init(&b->signal);
    b->signal.from = (char *)from;
    b->signal.payload = payload;
    meshsig__v1__server_message__init(&b->sm);
    b->sm.msg_case = MESHSIG__V1__SERVER_MESSAGE__MSG_SIGNAL;
    b->sm.signal = &b->signal;
    return &b->sm;
}

Meshsig__V1__ServerMessage *ms_sm_emit(ms_sm_emit_t *b, const Meshsig__V1__Emit *emit)
{
    b->emit = *emit;
    meshsig__v1__server_message__init(&b->sm);
    b->sm.msg_case = MESHSIG__V1__SERVER_MESSAGE__MSG_EMIT;
    b->sm.emit = &b->emit;
    return &b->sm;
}

Meshsig__V1__ServerMessage *ms_sm_disconnect(ms_sm_disconnect_t *b, const char *peer)
{
    meshsig__v1__disconnect__init(&b->disconnect);
    b->disconnect.peer = (char *)peer;
    meshsig__v1__topology__init(&b->topology);
    b->topology.event_case = MESHSIG__V1__TOPOLOGY__EVENT_DISCONNECT;
    b->topology.disconnect = &b->disconnect;
    meshsig__v1__server_message__init(&b->sm);
    b->sm.msg_case = MESHSIG__V1__SERVER_MESSAGE__MSG_TOPOLOGY;
    b->sm.topology = &b->topology;
    return &b->sm;
}
