/* SPDX-License-Identifier: Apache-2.0 */
/* The jansson path of gateway/peerjs.c, as the reference the fast path (pjframe.h) is checked
 * against.
 *
 * pjref_frame is ms_gw_peerjs_frame's full decoder for a joined session
 * (what it does with a frame), pjref_out its MSG_SIGNAL case of
 * ms_gw_peerjs_send (the frame a PeerJS receiver gets). Keep them in step
 * with peerjs.c: the unit test (tests/unit/test_pjframe.c) and the fuzz
 * target (fuzz_pjframe.c) say that wherever the fast path vouches for a
 * frame, it does what this does.
 */
#ifndef MS_TEST_PJREF_H
#define MS_TEST_PJREF_H

#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "pjframe.h"

typedef enum {
    PJREF_IGNORE, /* HEARTBEAT, unparsable, unknown: nothing happens */
    PJREF_LEAVE,  /* LEAVE without dst: the session leaves */
    PJREF_DROP,   /* a signal the codec refuses: dropped (logged) */
    PJREF_SIGNAL, /* relayed: cm is the message handed to ms_gw_handle_message */
} pjref_op_t;

typedef struct {
    pjref_op_t op;
    Meshsig__V1__ClientMessage *cm; /* PJREF_SIGNAL; pjref_cleanup frees */
} pjref_t;

static inline void pjref_cleanup(pjref_t *r)
{
    if (r->cm)
        meshsig__v1__client_message__free_unpacked(r->cm, NULL);
    r->cm = NULL;
}

static inline pjref_op_t pjref_frame(const char *data, size_t len, pjref_t *r)
{
    memset(r, 0, sizeof(*r));
    json_error_t jerr;
    json_t *j = json_loadb(data, len, JSON_REJECT_DUPLICATES, &jerr);
    const char *type = json_string_value(json_object_get(j, "type"));
    const char *dst = json_string_value(json_object_get(j, "dst"));
    json_t *cmj = NULL;
    r->op = PJREF_IGNORE;
    if (!type || !strcmp(type, "HEARTBEAT"))
        goto done;
    if (!strcmp(type, "LEAVE") && !dst) {
        r->op = PJREF_LEAVE;
        goto done;
    }
    if (!dst || (strcmp(type, "OFFER") && strcmp(type, "ANSWER") && strcmp(type, "CANDIDATE") &&
                 strcmp(type, "LEAVE") && strcmp(type, "EXPIRE")))
        goto done;
    json_t *payload = json_object_get(j, "payload");
    int expires = strcmp(type, "LEAVE") && strcmp(type, "EXPIRE");
    r->op = PJREF_DROP;
    cmj = json_pack("{s:s, s:{s:s, s:{s:s}}}", "id", expires ? dst : "", "signal", "to", dst,
                    "payload", "type", type);
    if (!cmj)
        goto done;
    if (payload)
        json_object_set(json_object_get(json_object_get(cmj, "signal"), "payload"), "payload",
                        payload);
    ms_codec_error_t cerr = {0};
    if (ms_codec_from_jansson(&meshsig__v1__client_message__descriptor, cmj,
                              (ProtobufCMessage **)&r->cm, &cerr) == MS_OK)
        r->op = PJREF_SIGNAL;
done:
    json_decref(cmj);
    json_decref(j);
    return r->op;
}

/* The frame a PeerJS receiver `to` gets for a signal from `from` (a new
 * jansson object), or NULL when the jansson path drops it. */
static inline json_t *pjref_out(const char *from, const char *to, const Meshsig__V1__Value *v)
{
    if (!v)
        return NULL;
    json_t *body = ms_codec_to_jansson(&v->base);
    if (!json_is_object(body) || !json_is_string(json_object_get(body, "type"))) {
        json_decref(body);
        return NULL;
    }
    json_t *out =
        json_pack("{s:O, s:s, s:s}", "type", json_object_get(body, "type"), "src", from, "dst", to);
    json_t *pl = json_object_get(body, "payload");
    if (out && pl)
        json_object_set(out, "payload", pl);
    json_decref(body);
    /* What the client reads is the text: through json_dumps and back. */
    char *text = out ? json_dumps(out, JSON_COMPACT) : NULL;
    json_decref(out);
    json_t *back = text ? json_loads(text, JSON_DECODE_ANY, NULL) : NULL;
    free(text);
    return back;
}

/* JSON equality as a JavaScript client sees it: numbers by value (1 and 1.0
 * are one number there), everything else exactly. */
static inline int pjref_equal(const json_t *a, const json_t *b)
{
    if (json_is_number(a) && json_is_number(b)) {
        double x = json_number_value(a), y = json_number_value(b);
        return x == y || (isnan(x) && isnan(y));
    }
    if (json_typeof(a) != json_typeof(b))
        return 0;
    if (json_is_object(a)) {
        if (json_object_size(a) != json_object_size(b))
            return 0;
        const char *k;
        json_t *v;
        json_object_foreach((json_t *)a, k, v)
        {
            json_t *w = json_object_get(b, k);
            if (!w || !pjref_equal(v, w))
                return 0;
        }
        return 1;
    }
    if (json_is_array(a)) {
        if (json_array_size(a) != json_array_size(b))
            return 0;
        for (size_t i = 0; i < json_array_size(a); i++)
            if (!pjref_equal(json_array_get(a, i), json_array_get(b, i)))
                return 0;
        return 1;
    }
    return json_equal((json_t *)a, (json_t *)b);
}

/* ms_pjframe_scan (the compact walk first) against ms_pjframe_scan_any alone:
 * NULL when they say the same of buf. */
static inline const char *pjref_check_walks(const char *buf, size_t len)
{
    ms_pjframe_t f, g;
    int fast = ms_pjframe_scan(buf, len, &f), any = ms_pjframe_scan_any(buf, len, &g);
    if (fast != any)
        return "the compact walk and the general scan disagree on taking it";
    if (!fast)
        return NULL;
    if (f.op != g.op || f.type != g.type || f.expires != g.expires || f.type_len != g.type_len ||
        f.dst_len != g.dst_len || strcmp(f.dst, g.dst) || f.payload != g.payload ||
        f.payload_len != g.payload_len)
        return "the compact walk and the general scan read different parts";
    if (f.op == MS_PJFRAME_SIGNAL &&
        (f.type_len != strlen(f.type) || f.dst_len != strlen(f.dst) || f.dst_len == 0))
        return "type_len or dst_len is not the length";
    return NULL;
}

/* The fast path against the reference for one client frame: NULL when they
 * agree (or the scan left the frame to the full decoder), else what differs.
 * *op: what the scan vouched for (0: nothing). */
static inline const char *pjref_check(const char *buf, size_t len, int *op)
{
    static const char from[] = "src-1", to[] = "dst.2";
    ms_pjframe_t f;
    pjref_t r = {0};
    const char *why = NULL;
    json_t *fastj = NULL, *refj = NULL, *a = NULL, *b = NULL, *rx = NULL;
    char *out = NULL, *rxbuf = NULL;
    int have_v = 0;
    ms_pjframe_value_t v;
    *op = 0;
    if ((why = pjref_check_walks(buf, len)))
        return why;
    if (!ms_pjframe_scan(buf, len, &f))
        return NULL;
    *op = (int)f.op;
    pjref_frame(buf, len, &r);
    if (f.op == MS_PJFRAME_HEARTBEAT) {
        why = r.op == PJREF_IGNORE ? NULL : "a HEARTBEAT the full path does not ignore";
        goto done;
    }
    if (r.op != PJREF_SIGNAL) {
        why = "a signal the full path does not relay";
        goto done;
    }
    const Meshsig__V1__Signal *sig = r.cm->signal;
    if (strcmp(sig->to, f.dst) || strcmp(r.cm->id, f.expires ? f.dst : "")) {
        why = "another target or request id";
        goto done;
    }
    /* Same gateway: the spliced frame. */
    size_t cap = ms_pjframe_size(f.type, from, to, f.payload_len);
    if (!(out = malloc(cap)))
        goto done;
    size_t n = ms_pjframe_write(out, f.type, from, to, f.payload, f.payload_len);
    if (n > cap) {
        why = "ms_pjframe_write wrote past ms_pjframe_size";
        goto done;
    }
    /* The relay's writer, with the lengths the scan found: the same bytes, within its size. */
    size_t fl = strlen(from), tl = strlen(to);
    size_t cap_n = ms_pjframe_size_n(f.type_len, fl, tl, f.payload ? f.payload_len : 0);
    char *out_n = malloc(cap_n);
    if (!out_n)
        goto done;
    size_t n2 =
        ms_pjframe_write_n(out_n, f.type, f.type_len, from, fl, to, tl, f.payload, f.payload_len);
    int same = n2 == n && n2 <= cap_n && !memcmp(out, out_n, n);
    free(out_n);
    if (!same) {
        why = "ms_pjframe_write_n differs from ms_pjframe_write or passes ms_pjframe_size_n";
        goto done;
    }
    fastj = json_loadb(out, n, JSON_REJECT_DUPLICATES, NULL);
    refj = pjref_out(from, to, sig->payload);
    if (!fastj || !refj || !pjref_equal(fastj, refj)) {
        why = "the spliced frame differs from the full path's";
        goto done;
    }
    /* Across gateways: the Value for the bus, then the frame written from it. */
    if (ms_pjframe_value_init(&v, &f) != MS_OK) {
        why = "the payload alone does not decode where the whole frame did";
        goto done;
    }
    have_v = 1;
    a = ms_codec_to_jansson(&v.body.base);
    b = ms_codec_to_jansson(&sig->payload->base);
    if (!a || !b || !json_equal(a, b)) {
        why = "the bus Value differs from the full path's";
        goto done;
    }
    size_t rxlen = 0, rxcap = 0;
    if (ms_pjframe_append_signal(&rxbuf, &rxlen, &rxcap, from, to, &v.body) != MS_OK) {
        why = "the receiver's writer refused a Value the fast path built";
        goto done;
    }
    rx = json_loadb(rxbuf, rxlen, JSON_REJECT_DUPLICATES, NULL);
    if (!rx || !pjref_equal(rx, refj) || strlen(rxbuf) != rxlen)
        why = "the frame written from the Value differs from the full path's";
done:
    if (have_v)
        ms_pjframe_value_cleanup(&v);
    json_decref(fastj);
    json_decref(refj);
    json_decref(a);
    json_decref(b);
    json_decref(rx);
    free(out);
    free(rxbuf);
    pjref_cleanup(&r);
    return why;
}

/* The receiver's writer against the reference for any Value (e.g. one a
 * binary client sent): NULL when they agree or the writer left it to the
 * jansson path. */
static inline const char *pjref_check_value(const Meshsig__V1__Value *v)
{
    char *buf = NULL;
    size_t len = 0, cap = 0;
    const char *why = NULL;
    if (ms_pjframe_append_signal(&buf, &len, &cap, "src-1", "dst.2", v) != MS_OK) {
        free(buf);
        return NULL;
    }
    json_t *fastj = json_loadb(buf, len, JSON_REJECT_DUPLICATES, NULL);
    json_t *refj = pjref_out("src-1", "dst.2", v);
    if (!fastj || !refj || !pjref_equal(fastj, refj))
        why = "the frame written from a Value differs from the full path's";
    json_decref(fastj);
    json_decref(refj);
    free(buf);
    return why;
}

#endif
