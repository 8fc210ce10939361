/* SPDX-License-Identifier: Apache-2.0 */
/* The native JSON signal scan (gateway/sigframe.h) against itself and against the full decoder.
 *
 * sigref_check_walks: the walk for the clients' layout vouches only for what the general scan
 * takes, with the same parts, and ms_sigframe_scan decides as the general scan does.
 * sigref_check: that, and whatever the scan vouches for is what dispatch.c's full decoder
 * (jansson with JSON_REJECT_DUPLICATES, then the codec) reads as the same signal: the same
 * target and request id, and the payload's text the same JSON value. Used by the unit test
 * (tests/unit/test_sigframe.c) and the fuzz target (fuzz_sigframe.c).
 */
#ifndef MS_TEST_SIGREF_H
#define MS_TEST_SIGREF_H

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "client.pb-c.h"
#include "codec.h"
#include "sigframe.h"

static inline int sigref_same(const ms_sigframe_t *a, const ms_sigframe_t *b)
{
    return a->to_len == b->to_len && a->id_len == b->id_len && !strcmp(a->to, b->to) &&
           !strcmp(a->id, b->id) && a->payload == b->payload && a->payload_len == b->payload_len;
}

static inline const char *sigref_check_walks(const char *buf, size_t len)
{
    ms_sigframe_t w, f, g;
    int walk = ms_sigframe_scan_compact(buf, len, &w);
    int fast = ms_sigframe_scan(buf, len, &f), any = ms_sigframe_scan_any(buf, len, &g);
    if (fast != any)
        return "ms_sigframe_scan and the general scan disagree on taking it";
    if (walk && !any)
        return "the walk vouched for what the general scan refuses";
    if (walk && !sigref_same(&w, &g))
        return "the walk and the general scan read different parts";
    if (fast && !sigref_same(&f, &g))
        return "ms_sigframe_scan and the general scan read different parts";
    if (any && (g.to_len != strlen(g.to) || g.id_len != strlen(g.id)))
        return "to_len or id_len is not the length";
    return NULL;
}

/* NULL when the scan and the full decoder agree on buf (or the scan left it to the full
 * decoder), else what differs. *took: 1 when the scan vouched for it, 2 when its walk did. */
static inline const char *sigref_check(const char *buf, size_t len, int *took)
{
    ms_sigframe_t f, w;
    const char *why;
    json_t *j = NULL, *pl = NULL;
    Meshsig__V1__ClientMessage *cm = NULL;
    *took = 0;
    if ((why = sigref_check_walks(buf, len)) || !ms_sigframe_scan(buf, len, &f))
        return why;
    *took = ms_sigframe_scan_compact(buf, len, &w) ? 2 : 1;
    j = json_loadb(buf, len, JSON_REJECT_DUPLICATES, NULL);
    json_t *sig = json_object_get(j, "signal"), *id = json_object_get(j, "id");
    why = "jansson reads another message";
    if (!json_is_object(j) || json_object_size(j) != 1u + (id != NULL) || !json_is_object(sig))
        goto done;
    if (id ? !json_is_string(id) || json_string_length(id) != f.id_len ||
                 memcmp(json_string_value(id), f.id, f.id_len)
           : f.id_len != 0)
        goto done;
    json_t *to = json_object_get(sig, "to"), *jp = json_object_get(sig, "payload");
    if (!json_is_string(to) || json_string_length(to) != f.to_len ||
        memcmp(json_string_value(to), f.to, f.to_len) || !jp != !f.payload)
        goto done;
    if (f.payload) {
        pl = json_loadb(f.payload, f.payload_len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, NULL);
        if (!pl || !json_equal(pl, jp)) {
            why = "the payload's text is not the payload jansson reads";
            goto done;
        }
    }
    ms_codec_error_t cerr = {0};
    if (ms_codec_from_jansson(&meshsig__v1__client_message__descriptor, j, (ProtobufCMessage **)&cm,
                              &cerr) != MS_OK) {
        why = "the codec refuses a signal the scan vouched for";
        goto done;
    }
    if (cm->msg_case != MESHSIG__V1__CLIENT_MESSAGE__MSG_SIGNAL || !cm->signal ||
        strcmp(cm->signal->to, f.to) || strcmp(cm->id, f.id) || !cm->signal->payload != !f.payload)
        goto done;
    why = NULL;
done:
    if (cm)
        meshsig__v1__client_message__free_unpacked(cm, NULL);
    json_decref(pl);
    json_decref(j);
    return why;
}

#endif
