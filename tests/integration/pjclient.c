/* SPDX-License-Identifier: Apache-2.0 */
/* The client side of the PeerJS server protocol for integration tests (pjclient.h). */
#include "pjclient.h"

#include <check.h>
#include <stdio.h>
#include <string.h>

wsc_t *pjc_connect(int port, const char *key, const char *id, const char *token, int timeout_ms)
{
    char path[256];
    snprintf(path, sizeof(path), "/peerjs?key=%s&id=%s&token=%s&version=1.5.4", key, id, token);
    return wsc_connect_path(port, path, NULL, timeout_ms);
}

json_t *pjc_expect(wsc_t *c, const char *type, const char *src, int timeout_ms)
{
    json_t *j = wsc_recv_json(c, timeout_ms);
    ck_assert_msg(j != NULL, "no %s within %d ms", type, timeout_ms);
    const char *t = json_string_value(json_object_get(j, "type"));
    ck_assert_msg(t && !strcmp(t, type), "expected %s, got %s", type, t ? t : "(no type)");
    if (src)
        ck_assert_str_eq(json_string_value(json_object_get(j, "src")), src);
    return j;
}

wsc_t *pjc_open(int port, const char *key, const char *id, const char *token, int timeout_ms)
{
    wsc_t *c = pjc_connect(port, key, id, token, timeout_ms);
    ck_assert_ptr_nonnull(c);
    json_decref(pjc_expect(c, "OPEN", NULL, timeout_ms));
    return c;
}

void pjc_send_numbered(wsc_t *c, const char *type, const char *dst, int n)
{
    char buf[512];
    snprintf(buf, sizeof(buf),
             "{\"type\":\"%s\",\"dst\":\"%s\",\"payload\":{\"candidate\":{\"candidate\":"
             "\"candidate:1 1 udp 2122260223 192.0.2.1 54400 typ host\"},\"n\":%d}}",
             type, dst, n);
    ck_assert_int_eq(wsc_send_text(c, buf), 0);
}

int pjc_candidate_n(json_t *j, const char *src)
{
    const char *t = json_string_value(json_object_get(j, "type"));
    const char *s = json_string_value(json_object_get(j, "src"));
    if (!t || strcmp(t, "CANDIDATE") || !s || strcmp(s, src))
        return -1;
    json_t *n = json_object_get(json_object_get(j, "payload"), "n");
    return json_is_integer(n) ? (int)json_integer_value(n) : -1;
}
